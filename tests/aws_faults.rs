//! Fault tests: the real daemon against moto, with a faulting proxy (tests/support/proxy.rs)
//! between the daemon and S3 or SQS. Each test checks what is served, what `/readyz` says,
//! what `/metrics` shows, and that no SQS message is deleted before its change was applied.
//! docs/reliability.md lists each failure with its expected and observed behaviour.

mod support;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::QueueAttributeName;
use flagpole::config::Settings;
use flagpole::service::proto::evaluation_v1 as v1;
use flagpole::store::{Selector, Store};
use flagpole::sync::Supervisor;
use serde_json::json;
use support::moto::{self, messages_in, s3_source, send, Moto};
use support::proxy::{FaultProxy, Mode};
use support::{eventually_within, TestDaemon};

/// Upper bound for anything to happen; tests poll well below it.
const PATIENCE: Duration = Duration::from_secs(30);
/// Long enough for one full backoff (30 s cap) plus the SDK's own retries after an outage.
const RECOVERY_PATIENCE: Duration = Duration::from_secs(90);
const BUCKET: &str = "flags";
const KEY: &str = "flags.json";

fn document(default: &str) -> String {
    format!(
        r#"{{"flags":{{"color":{{"state":"ENABLED","variants":{{"red":"RED","blue":"BLUE","green":"GREEN"}},"defaultVariant":"{default}"}}}}}}"#
    )
}

async fn put(moto: &Moto, body: &str) {
    moto.s3()
        .put_object()
        .bucket(BUCKET)
        .key(KEY)
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await
        .expect("PutObject");
}

/// moto with the bucket and a first document.
async fn moto_with(document: &str) -> Moto {
    let moto = Moto::start();
    moto.s3()
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("CreateBucket");
    put(&moto, document).await;
    moto
}

/// A queue receiving the bucket's object events; its URL.
async fn notified_queue(moto: &Moto, events: &[&str]) -> String {
    let sqs = moto.sqs();
    let url = sqs
        .create_queue()
        .queue_name("changes")
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()
        .remove(&QueueAttributeName::QueueArn)
        .unwrap();
    if !events.is_empty() {
        moto.notify_queue(BUCKET, &arn, events).await;
    }
    url
}

/// The S3 source reading the object through `endpoint` (the proxy) rather than the
/// daemon-wide endpoint (which SQS keeps using).
fn s3_source_via(endpoint: &str) -> flagpole::config::SourceConfig {
    let mut source = s3_source(BUCKET, KEY);
    source.uri = format!("{}&endpoint={endpoint}", source.uri);
    source
}

/// A daemon with the management port, reading the object through `s3_endpoint` and, if
/// given, consuming `queue` through moto.
async fn daemon(
    moto: &Moto,
    s3_endpoint: &str,
    configure: impl FnOnce(&mut Settings),
) -> TestDaemon {
    let endpoint = moto.endpoint();
    let s3_endpoint = s3_endpoint.to_owned();
    TestDaemon::with_files(&[])
        .management()
        .launch(move |settings, _| {
            settings.aws = moto::settings(&endpoint, "faults").aws;
            settings.sources = vec![s3_source_via(&s3_endpoint)];
            settings.shutdown_grace = Duration::from_secs(3);
            configure(settings);
        })
        .await
}

async fn color(daemon: &TestDaemon) -> String {
    let mut client = v1::service_client::ServiceClient::new(daemon.channel().await);
    client
        .resolve_string(v1::ResolveStringRequest {
            flag_key: "color".into(),
            context: None,
        })
        .await
        .map(|r| r.into_inner().value)
        .unwrap_or_else(|status| format!("error: {status}"))
}

async fn readyz(daemon: &TestDaemon) -> u16 {
    support::http1::call(daemon.management(), "GET", "/readyz")
        .await
        .expect("readyz")
        .0
}

/// The value of metric `name` for the source whose label starts with `source`.
async fn metric(daemon: &TestDaemon, name: &str, source: &str) -> f64 {
    let (_, body) = support::http1::call(daemon.management(), "GET", "/metrics")
        .await
        .expect("metrics");
    let prefix = format!("{name}{{");
    let label = format!("source=\"{source}");
    body.lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn wait_color(daemon: &TestDaemon, want: &str, what: &str) {
    eventually_within(PATIENCE, what, || async { color(daemon).await == want }).await;
}

async fn wait_errors_above(daemon: &TestDaemon, source: &str, floor: f64, what: &str) {
    eventually_within(PATIENCE, what, || async {
        metric(daemon, "flagpole_source_errors_total", source).await > floor
    })
    .await;
}

#[tokio::test]
async fn s3_stopped_and_restarted_mid_run_keeps_serving_then_catches_up() {
    let moto = moto_with(&document("red")).await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let daemon = daemon(&moto, &proxy.endpoint(), |_| {}).await;
    daemon.wait_ready().await;
    assert_eq!(color(&daemon).await, "RED");

    proxy.set(Mode::Down).await;
    let before = metric(&daemon, "flagpole_source_errors_total", "s3://").await;
    wait_errors_above(
        &daemon,
        "s3://",
        before + 1.0,
        "refused connections counted",
    )
    .await;
    put(&moto, &document("blue")).await; // invisible while S3 is unreachable
    wait_errors_above(&daemon, "s3://", before + 2.0, "polls keep failing").await;
    assert_eq!(color(&daemon).await, "RED", "the last good configuration");
    assert_eq!(readyz(&daemon).await, 200, "readiness latched");
    assert_eq!(metric(&daemon, "flagpole_source_ready", "s3://").await, 1.0);

    proxy.set(Mode::Pass).await;
    wait_color(&daemon, "BLUE", "the change once S3 is back").await;
    assert_eq!(
        metric(&daemon, "flagpole_source_applied_payloads_total", "s3://").await,
        2.0
    );
    daemon.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_deleted_or_corrupt_object_keeps_the_last_good_configuration() {
    let moto = moto_with(&document("red")).await;
    let queue = notified_queue(&moto, &["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]).await;
    let daemon = daemon(&moto, &moto.endpoint(), |s| {
        s.aws.sqs_queue_url = Some(queue.clone());
        s.aws.sqs_visibility_timeout = Duration::from_secs(2);
        s.max_document_size = 4096;
    })
    .await;
    daemon.wait_ready().await;

    // Deleted: its removal event is handled (the object is reported missing) and deleted;
    // the flags stay.
    let before = metric(&daemon, "flagpole_source_errors_total", "s3://").await;
    moto.s3()
        .delete_object()
        .bucket(BUCKET)
        .key(KEY)
        .send()
        .await
        .expect("DeleteObject");
    wait_errors_above(&daemon, "s3://", before, "the missing object counted").await;
    eventually_within(PATIENCE, "the removal event deleted", || async {
        messages_in(&moto, &queue).await == 0
    })
    .await;
    assert_eq!(color(&daemon).await, "RED");
    assert_eq!(readyz(&daemon).await, 200);

    // Corrupt: rejected, counted, the last good configuration stays.
    put(&moto, "{\"flags\": {\"color\": ").await;
    eventually_within(PATIENCE, "the corrupt object rejected", || async {
        metric(&daemon, "flagpole_source_rejected_payloads_total", "s3://").await >= 1.0
    })
    .await;
    assert_eq!(color(&daemon).await, "RED");
    assert_eq!(readyz(&daemon).await, 200);
    eventually_within(PATIENCE, "its event handled and deleted", || async {
        messages_in(&moto, &queue).await == 0
    })
    .await;

    // Oversized (over --max-document-size): refused, and its event kept.
    let rejected = metric(&daemon, "flagpole_source_rejected_payloads_total", "s3://").await;
    let errors = metric(&daemon, "flagpole_source_errors_total", "s3://").await;
    let padding = " ".repeat(8192);
    put(&moto, &format!("{}{padding}", document("green"))).await;
    eventually_within(PATIENCE, "the oversized object refused", || async {
        metric(&daemon, "flagpole_source_rejected_payloads_total", "s3://").await > rejected
            || metric(&daemon, "flagpole_source_errors_total", "s3://").await > errors
    })
    .await;
    assert_eq!(
        color(&daemon).await,
        "RED",
        "the oversized document is not served"
    );
    assert_eq!(
        messages_in(&moto, &queue).await,
        1,
        "its event is kept: the change was not applied"
    );

    // A good document afterwards is served.
    put(&moto, &document("blue")).await;
    wait_color(&daemon, "BLUE", "a good document after the bad ones").await;
    eventually_within(PATIENCE, "every event handled and deleted", || async {
        messages_in(&moto, &queue).await == 0
    })
    .await;
    daemon.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn slowdown_keeps_the_event_until_its_change_is_applied() {
    let moto = moto_with(&document("red")).await;
    let queue = notified_queue(&moto, &["s3:ObjectCreated:*"]).await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let daemon = daemon(&moto, &proxy.endpoint(), |s| {
        s.aws.sqs_queue_url = Some(queue.clone());
        s.aws.sqs_visibility_timeout = Duration::from_secs(2);
    })
    .await;
    daemon.wait_ready().await;

    // S3 throttles; a change arrives with its event.
    proxy.set(Mode::SlowDown).await;
    put(&moto, &document("blue")).await;
    // With SQS the regular poll is an hour away: the first failed read is the event's
    // re-fetch (the SDK's own retries included).
    wait_errors_above(&daemon, "s3://", 0.0, "the event's re-fetch throttled").await;
    assert!(proxy.slowdowns() > 0);
    // The consumer handles a batch, deletes what it may, then receives again: a receive
    // that ends after this point proves the throttled event's handling is over.
    let handled = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    eventually_within(PATIENCE, "a receive after the handling", || async {
        metric(
            &daemon,
            "flagpole_source_last_success_timestamp_seconds",
            "http://",
        )
        .await
            > handled
    })
    .await;
    assert_eq!(
        color(&daemon).await,
        "RED",
        "nothing applied while throttled"
    );
    assert_eq!(readyz(&daemon).await, 200);
    assert_eq!(
        messages_in(&moto, &queue).await,
        1,
        "the event is kept while its change is not applied"
    );

    // Throttling ends: the kept event (or the poll) applies the change, then the event goes.
    proxy.set(Mode::Pass).await;
    wait_color(&daemon, "BLUE", "the change after throttling").await;
    eventually_within(PATIENCE, "the event deleted once applied", || async {
        messages_in(&moto, &queue).await == 0
    })
    .await;
    daemon.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn sqs_unreachable_is_retried_and_reported_while_serving() {
    let moto = moto_with(&document("red")).await;
    let queue = notified_queue(&moto, &["s3:ObjectCreated:*"]).await;
    // SQS (the daemon-wide endpoint) through the proxy, S3 straight to moto.
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    let proxied = proxy.endpoint();
    let daemon = daemon(&moto, &moto.endpoint(), |s| {
        s.aws.endpoint_url = Some(proxied.clone());
        s.aws.sqs_queue_url = Some(queue.clone());
    })
    .await;
    daemon.wait_ready().await;
    let queue_label = "http://";
    eventually_within(PATIENCE, "the queue received from", || async {
        metric(
            &daemon,
            "flagpole_source_last_success_timestamp_seconds",
            queue_label,
        )
        .await
            > 0.0
    })
    .await;

    proxy.set(Mode::Down).await;
    let before = metric(&daemon, "flagpole_source_errors_total", queue_label).await;
    wait_errors_above(&daemon, queue_label, before, "receive errors counted").await;
    put(&moto, &document("blue")).await; // its event waits in the queue
    assert_eq!(color(&daemon).await, "RED");
    assert_eq!(readyz(&daemon).await, 200, "an SQS outage does not unready");
    assert_eq!(messages_in(&moto, &queue).await, 1, "the event waits");

    // SQS is back: the waiting event delivers the change (the safety poll is an hour away).
    proxy.set(Mode::Pass).await;
    // The consumer backs off up to 30 s between failed receives (and the SDK retries inside
    // each), so the first receive after the outage may be that far away on a loaded machine.
    eventually_within(
        RECOVERY_PATIENCE,
        "the change delivered after the outage",
        || async { color(&daemon).await == "BLUE" },
    )
    .await;
    eventually_within(PATIENCE, "the event deleted", || async {
        messages_in(&moto, &queue).await == 0
    })
    .await;
    daemon.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn malformed_oversized_and_reordered_sqs_messages() {
    let moto = moto_with(&document("red")).await;
    let queue = notified_queue(&moto, &[]).await;
    let daemon = daemon(&moto, &moto.endpoint(), |s| {
        s.aws.sqs_queue_url = Some(queue.clone());
        s.aws.sqs_inline = vec!["inline:ops".to_owned()];
        s.max_document_size = 4096;
    })
    .await;
    daemon.wait_ready().await;
    let inline = |default: &str, sequence: u64, padding: usize| {
        json!({"flagpole": {"source": "inline:ops", "sequence": sequence, "document": {
            "flags": {"color": {"state": "ENABLED", "variants": {"red": "RED", "blue": "BLUE", "green": "GREEN"},
                                "defaultVariant": default, "metadata": {"padding": " ".repeat(padding)}}}
        }}})
        .to_string()
    };

    send(&moto, &queue, "this is not JSON").await;
    send(&moto, &queue, &json!({"Records": [{"s3": {}}]}).to_string()).await;
    send(&moto, &queue, &inline("green", 1, 8192)).await; // over --max-document-size
    send(&moto, &queue, &inline("blue", 3, 0)).await;
    wait_color(&daemon, "BLUE", "the good inline document").await;
    send(&moto, &queue, &inline("red", 2, 0)).await; // older than the applied one
    eventually_within(
        PATIENCE,
        "the older one handled (dropped and deleted)",
        || async { messages_in(&moto, &queue).await == 3 },
    )
    .await;
    assert_eq!(
        color(&daemon).await,
        "BLUE",
        "the older document did not win"
    );
    assert_eq!(readyz(&daemon).await, 200);
    assert_eq!(
        metric(
            &daemon,
            "flagpole_source_applied_payloads_total",
            "inline:ops"
        )
        .await,
        1.0,
        "only sequence 3 applied"
    );
    let (_, body) = support::http1::call(daemon.management(), "GET", "/metrics")
        .await
        .expect("metrics");
    assert!(
        body.lines()
            .any(|l| l == "flagpole_sqs_inline_dropped_total{reason=\"older\"} 1"),
        "the older message is counted as dropped:\n{body}"
    );
    daemon.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_stop_during_a_slow_s3_get_through_the_proxy_exits_within_the_grace() {
    let moto = moto_with(&document("red")).await;
    let proxy = FaultProxy::start(&moto.endpoint()).await;
    proxy.set(Mode::Delay(Duration::from_secs(120))).await;
    let daemon = daemon(&moto, &proxy.endpoint(), |s| {
        s.shutdown_grace = Duration::from_secs(2);
    })
    .await;
    eventually_within(PATIENCE, "the GET reached the slow proxy", || async {
        proxy.connections() > 0
    })
    .await;
    let started = std::time::Instant::now();
    daemon.stop().await.expect("exit 0");
    let took = started.elapsed();
    println!("stopped {took:?} after SIGTERM with a slow GET in flight");
    // Far below the proxy's delay and the GET's own timeout: the grace decided.
    assert!(
        took < Duration::from_secs(15),
        "the stop waited for the GET: {took:?}"
    );
}

// --- inline expiry (point 2) --------------------------------------------------------------

fn variant(store: &Store, flag: &str) -> Option<String> {
    store
        .snapshot()
        .get(flag, &Selector::All)
        .and_then(|f| f.flag.default_variant.clone())
}

#[tokio::test]
async fn idle_inline_sources_expire_and_forget_their_sequence() {
    let moto = moto_with(&document("red")).await;
    let queue = notified_queue(&moto, &[]).await;
    let mut settings = moto::settings(&moto.endpoint(), "expiry");
    settings.sources = vec![s3_source(BUCKET, KEY)];
    settings.aws.sqs_queue_url = Some(queue.clone());
    settings.aws.sqs_inline = vec!["inline:promo".to_owned()];
    settings.aws.sqs_inline_expiry = Duration::from_secs(1);
    let store = Arc::new(Store::new());
    let supervisor = Supervisor::from_config(settings.sync_config(), store.clone()).expect("start");
    let inline = |default: &str, sequence: u64| {
        json!({"flagpole": {"source": "inline:promo", "sequence": sequence, "document": {
            "flags": {"promo": {"state": "ENABLED", "variants": {"a": "A", "b": "B"},
                                "defaultVariant": default}}
        }}})
        .to_string()
    };
    send(&moto, &queue, &inline("a", 5)).await;
    eventually_within(PATIENCE, "the inline document applied", || {
        let v = variant(&store, "promo");
        async move { v.as_deref() == Some("a") }
    })
    .await;
    eventually_within(PATIENCE, "the idle inline source expired", || {
        let v = variant(&store, "promo");
        async move { v.is_none() }
    })
    .await;
    assert!(
        supervisor.stats().iter().all(|s| s.uri != "inline:promo"),
        "no longer listed"
    );
    assert_eq!(
        variant(&store, "color").as_deref(),
        Some("red"),
        "S3 untouched"
    );
    // A restarted publisher counting from 1 again is accepted: the sequence was forgotten.
    send(&moto, &queue, &inline("b", 1)).await;
    eventually_within(PATIENCE, "a new inline source after expiry", || {
        let v = variant(&store, "promo");
        async move { v.as_deref() == Some("b") }
    })
    .await;
    eventually_within(PATIENCE, "every message deleted", || async {
        messages_in(&moto, &queue).await == 0
    })
    .await;
    supervisor.shutdown().await;
}

#[tokio::test]
async fn a_fanout_queue_deleted_from_outside_is_reported_and_replaced_while_serving() {
    let moto = moto_with(&document("red")).await;
    let topic = moto.create_topic("flag-changes").await;
    let daemon = daemon(&moto, &moto.endpoint(), |s| {
        s.aws.sns_topic_arn = Some(topic.clone());
        s.aws.replica_id = Some("fanout-1".to_owned());
    })
    .await;
    daemon.wait_ready().await;
    let sqs = moto.sqs();
    let queue_url = || async {
        sqs.list_queues()
            .queue_name_prefix("flagpole-fanout-1")
            .send()
            .await
            .unwrap()
            .queue_urls
            .unwrap_or_default()
            .pop()
    };
    eventually_within(PATIENCE, "the fan-out queue received from", || async {
        metric(
            &daemon,
            "flagpole_source_last_success_timestamp_seconds",
            "http://",
        )
        .await
            > 0.0
    })
    .await;
    let url = queue_url().await.expect("fan-out queue");
    assert_eq!(
        metric(&daemon, "flagpole_source_errors_total", "http://").await,
        0.0
    );

    sqs.delete_queue().queue_url(&url).send().await.unwrap();
    wait_errors_above(&daemon, "http://", 0.0, "the missing queue reported").await;
    eventually_within(PATIENCE, "the queue created again", || async {
        queue_url().await.is_some()
    })
    .await;
    assert_eq!(color(&daemon).await, "RED");
    assert_eq!(readyz(&daemon).await, 200);

    // Only the new queue can deliver this change (the safety poll is an hour away).
    let message = json!({"Records": [{
        "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": BUCKET}, "object": {"key": KEY}}
    }]});
    put(&moto, &document("blue")).await;
    let sns = moto.sns();
    eventually_within(
        PATIENCE,
        "the change delivered through the new queue",
        || async {
            sns.publish()
                .topic_arn(&topic)
                .message(message.to_string())
                .send()
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            color(&daemon).await == "BLUE"
        },
    )
    .await;
    daemon.stop().await.expect("clean shutdown");
    assert!(queue_url().await.is_none(), "deleted at shutdown");
}
