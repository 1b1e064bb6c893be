//! End to end: the real daemon (gRPC on an ephemeral port) fed from S3 through moto, a
//! change delivered by an S3 event notification on SQS and seen by a gRPC client.

mod support;

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::QueueAttributeName;
use flagpole::service::proto::evaluation_v1 as v1;
use support::moto::{self, s3_source, Moto};
use support::TestDaemon;

const PATIENCE: Duration = Duration::from_secs(30);

fn document(default: &str) -> String {
    format!(
        r#"{{"flags":{{"color":{{"state":"ENABLED","variants":{{"red":"RED","blue":"BLUE"}},"defaultVariant":"{default}"}}}}}}"#
    )
}

async fn put(moto: &Moto, body: String) {
    moto.s3()
        .put_object()
        .bucket("flags")
        .key("flags.json")
        .body(ByteStream::from(body.into_bytes()))
        .send()
        .await
        .expect("PutObject");
}

#[tokio::test]
async fn grpc_clients_see_an_s3_change_delivered_through_sqs() {
    let moto = Moto::start();
    moto.s3()
        .create_bucket()
        .bucket("flags")
        .send()
        .await
        .unwrap();
    put(&moto, document("red")).await;
    let sqs = moto.sqs();
    let queue = sqs
        .create_queue()
        .queue_name("changes")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&QueueAttributeName::QueueArn)
        .unwrap();
    moto.notify_queue("flags", &arn, &["s3:ObjectCreated:*"])
        .await;

    let endpoint = moto.endpoint();
    let daemon = TestDaemon::with_files(&[])
        .start(|settings, _| {
            settings.aws = moto::settings(&endpoint, "e2e").aws;
            settings.aws.sqs_queue_url = Some(queue.clone());
            settings.sources = vec![s3_source("flags", "flags.json")];
        })
        .await;
    let mut client = v1::service_client::ServiceClient::new(daemon.channel().await);
    let resolve = |client: &mut v1::service_client::ServiceClient<_>| {
        let mut client = client.clone();
        async move {
            client
                .resolve_string(v1::ResolveStringRequest {
                    flag_key: "color".into(),
                    context: None,
                })
                .await
                .expect("ResolveString")
                .into_inner()
        }
    };
    let first = resolve(&mut client).await;
    assert_eq!(
        (first.value.as_str(), first.reason.as_str()),
        ("RED", "STATIC")
    );

    put(&moto, document("blue")).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let answer = resolve(&mut client).await;
        if answer.value == "BLUE" {
            assert_eq!(answer.variant, "blue");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "change never served"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    daemon.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_restart_during_an_s3_outage_serves_the_cached_copy() {
    let cache = tempfile::tempdir().expect("cache dir");
    let moto = Moto::start();
    moto.s3()
        .create_bucket()
        .bucket("flags")
        .send()
        .await
        .unwrap();
    put(&moto, document("red")).await;
    let endpoint = moto.endpoint();
    let configure = |settings: &mut flagpole::config::Settings, _: &std::path::Path| {
        settings.aws = moto::settings(&endpoint, "cache").aws;
        settings.sources = vec![s3_source("flags", "flags.json")];
        settings.cache_dir = Some(cache.path().to_owned());
    };
    // A first run fetches from S3 and leaves its copy in the cache directory.
    let daemon = TestDaemon::with_files(&[])
        .management()
        .start(configure)
        .await;
    assert_eq!(color(&daemon).await.expect("served"), "RED");
    daemon.stop().await.expect("clean shutdown");

    // S3 goes away; a restarted daemon serves the cached copy and says so.
    drop(moto);
    let started = std::time::Instant::now();
    let daemon = TestDaemon::with_files(&[])
        .management()
        .start(configure)
        .await;
    println!("ready from the cache {:?} after start", started.elapsed());
    assert_eq!(color(&daemon).await.expect("served from cache"), "RED");
    let (status, body) = support::http1::call(daemon.management(), "GET", "/readyz")
        .await
        .expect("readyz");
    assert_eq!(status, 200);
    assert!(
        body.contains("served from --cache-dir") && body.contains("s3://flags/flags.json"),
        "{body}"
    );
    let (_, metrics) = support::http1::call(daemon.management(), "GET", "/metrics")
        .await
        .expect("metrics");
    assert!(
        metrics.lines().any(|l| l
            .starts_with("flagpole_source_from_cache{source=\"s3://flags/flags.json")
            && l.ends_with("} 1")),
        "{metrics}"
    );
    daemon.stop().await.expect("clean shutdown");

    // Without the cache directory the same outage leaves the daemon unready.
    let daemon = TestDaemon::with_files(&[])
        .management()
        .launch(|settings, dir| {
            configure(settings, dir);
            settings.cache_dir = None;
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = support::http1::call(daemon.management(), "GET", "/readyz")
        .await
        .expect("readyz");
    assert_eq!(status, 412, "nothing to serve without a cache");
    daemon.stop().await.expect("clean shutdown");
}

async fn color(daemon: &TestDaemon) -> Result<String, tonic::Status> {
    let mut client = v1::service_client::ServiceClient::new(daemon.channel().await);
    client
        .resolve_string(v1::ResolveStringRequest {
            flag_key: "color".into(),
            context: None,
        })
        .await
        .map(|r| r.into_inner().value)
}

#[tokio::test]
async fn a_stop_during_a_hanging_s3_get_ends_within_the_grace_period() {
    // An "S3" that accepts connections and never answers: the GET hangs until its own 30 s
    // timeout unless shutdown cancels it.
    moto::fake_credentials();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
            let _ = accepted_tx.send(());
        }
    });
    let daemon = TestDaemon::with_files(&[])
        .management()
        .launch(|settings, _| {
            settings.aws = moto::settings(&endpoint, "hang").aws;
            settings.sources = vec![s3_source("flags", "flags.json")];
            settings.shutdown_grace = Duration::from_secs(2);
        })
        .await;
    tokio::time::timeout(PATIENCE, accepted.recv())
        .await
        .expect("the daemon's GET reached the silent endpoint");
    let started = std::time::Instant::now();
    daemon.stop().await.expect("clean shutdown");
    let took = started.elapsed();
    println!("stopped {took:?} after the request, with a GET in flight");
    // Well under the GET's own 30 s timeout: the grace period, not the GET, decided.
    assert!(
        took < Duration::from_secs(15),
        "stop waited for the GET: {took:?}"
    );
}
