//! The AWS providers against a real emulator (moto's server): S3 polling with conditional
//! GETs, SQS change events in every shape, inline documents, poison messages, the S3
//! configuration object, outages, and SNS fan-out to several replicas.

mod support;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use flagpole::config::Settings;
use flagpole::store::{Selector, Store};
use flagpole::sync::{SourceStats, Supervisor};
use serde_json::json;
use support::eventually_within;
use support::moto::{self, messages_in, s3_source, s3_uri, send, settings, Moto};

/// Upper bound for anything to happen; tests poll well below it.
const PATIENCE: Duration = Duration::from_secs(30);

const BUCKET: &str = "flags";

fn document(flag: &str, default: &str) -> String {
    format!(
        r#"{{"flags":{{"{flag}":{{"state":"ENABLED","variants":{{"a":"A","b":"B","c":"C"}},"defaultVariant":"{default}"}}}}}}"#
    )
}

fn yaml_document(flag: &str, default: &str) -> String {
    format!(
        "flags:\n  {flag}:\n    state: ENABLED\n    variants:\n      a: A\n      b: B\n    defaultVariant: {default}\n"
    )
}

fn variant(store: &Store, flag: &str) -> Option<String> {
    store
        .snapshot()
        .get(flag, &Selector::All)
        .and_then(|f| f.flag.default_variant.clone())
}

fn stats_of(supervisor: &Supervisor, uri: &str) -> SourceStats {
    supervisor
        .stats()
        .into_iter()
        .find(|s| s.uri == uri)
        .unwrap_or_else(|| panic!("no source {uri}"))
}

async fn put(moto: &Moto, key: &str, body: &str) {
    moto.s3()
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from(body.as_bytes().to_vec()))
        .send()
        .await
        .expect("PutObject");
}

async fn create_bucket(moto: &Moto) {
    moto.s3()
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("CreateBucket");
}

async fn create_queue(moto: &Moto, name: &str) -> (String, String) {
    let sqs = moto.sqs();
    let url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("CreateQueue")
        .queue_url
        .unwrap();
    let arn = queue_arn(&sqs, &url).await;
    (url, arn)
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .unwrap()
        .remove(&QueueAttributeName::QueueArn)
        .unwrap()
}

async fn started(settings: &Settings) -> (Arc<Store>, Supervisor) {
    let store = Arc::new(Store::new());
    let supervisor = Supervisor::from_config(settings.sync_config(), store.clone()).expect("start");
    let mut ready = supervisor.ready();
    tokio::time::timeout(PATIENCE, ready.wait_for(|r| *r))
        .await
        .expect("sources never became ready")
        .unwrap();
    (store, supervisor)
}

#[tokio::test]
async fn initial_load_from_json_and_yaml_objects() {
    let moto = Moto::start();
    create_bucket(&moto).await;
    put(&moto, "base.json", &document("f", "a")).await;
    put(&moto, "dir/more.yaml", &yaml_document("g", "b")).await;
    // No extension: the Content-Type decides.
    moto.s3()
        .put_object()
        .bucket(BUCKET)
        .key("typed")
        .content_type("application/yaml")
        .body(ByteStream::from(yaml_document("h", "a").into_bytes()))
        .send()
        .await
        .unwrap();
    let mut settings = settings(&moto.endpoint(), "r1");
    settings.sources = vec![
        s3_source(BUCKET, "base.json"),
        s3_source(BUCKET, "dir/more.yaml"),
        s3_source(BUCKET, "typed"),
    ];
    let (store, supervisor) = started(&settings).await;
    assert_eq!(variant(&store, "f").as_deref(), Some("a"));
    assert_eq!(variant(&store, "g").as_deref(), Some("b"));
    assert_eq!(variant(&store, "h").as_deref(), Some("a"));
    let uri = s3_uri(BUCKET, "dir/more.yaml");
    let flag = store
        .snapshot()
        .get("g", &Selector::Source(uri.clone()))
        .map(|f| f.flag.key.clone());
    assert_eq!(flag.as_deref(), Some("g"), "stored under its URI");
    let s = stats_of(&supervisor, &uri);
    assert_eq!((s.applied, s.fetched, s.ready), (1, 1, true));
    assert!(s.last_success.is_some());
    supervisor.shutdown().await;
}

#[tokio::test]
async fn oversized_objects_are_refused_and_the_last_good_one_stays() {
    let moto = Moto::start();
    create_bucket(&moto).await;
    put(&moto, "flags.json", &document("f", "a")).await;
    let mut settings = settings(&moto.endpoint(), "r1");
    settings.max_document_size = 4096;
    settings.sources = vec![s3_source(BUCKET, "flags.json")];
    let uri = settings.sources[0].uri.clone();
    let (store, supervisor) = started(&settings).await;
    assert_eq!(variant(&store, "f").as_deref(), Some("a"));

    // Valid JSON, padded past the limit with whitespace.
    let padded = format!("{}{}", document("f", "b"), " ".repeat(8192));
    put(&moto, "flags.json", &padded).await;
    eventually_within(PATIENCE, "the oversized object is refused", || {
        let error = stats_of(&supervisor, &uri).last_error.unwrap_or_default();
        async move { error.contains("larger than 4096 bytes") }
    })
    .await;
    assert_eq!(variant(&store, "f").as_deref(), Some("a"), "last good kept");
    supervisor.shutdown().await;
}

#[tokio::test]
async fn unchanged_objects_cost_a_304_and_changes_are_polled() {
    let moto = Moto::start();
    create_bucket(&moto).await;
    put(&moto, "flags.json", &document("f", "a")).await;
    let mut settings = settings(&moto.endpoint(), "r1");
    let mut source = s3_source(BUCKET, "flags.json");
    source.interval = None; // the 200 ms s3_poll_interval applies
    settings.sources = vec![source];
    let uri = settings.sources[0].uri.clone();
    let (store, supervisor) = started(&settings).await;
    eventually_within(PATIENCE, "three conditional GETs answered 304", || {
        let s = stats_of(&supervisor, &uri);
        async move { s.not_modified >= 3 }
    })
    .await;
    let s = stats_of(&supervisor, &uri);
    assert_eq!((s.fetched, s.applied), (1, 1), "a 304 transfers nothing");

    put(&moto, "flags.json", &document("f", "b")).await;
    eventually_within(PATIENCE, "polled change applied", || {
        let v = variant(&store, "f");
        async move { v.as_deref() == Some("b") }
    })
    .await;
    let s = stats_of(&supervisor, &uri);
    assert_eq!((s.fetched, s.applied, s.errors), (2, 2, 0));
    let mut text = String::new();
    let now = std::time::SystemTime::now();
    flagpole::service::metrics::render_sources(
        &mut text,
        &store.sources(),
        &supervisor.stats(),
        now,
        // The full URI is the opt-in (`--metrics-source-uris`); the default masks account ids.
        flagpole::service::metrics::SourceLabels::Uri,
    );
    assert!(
        text.contains(&format!(
            "flagpole_source_fetches_total{{result=\"changed\",source=\"{uri}\"}} 2\n"
        )),
        "{text}"
    );
    supervisor.shutdown().await;
}

#[tokio::test]
async fn s3_notifications_through_sqs_trigger_a_refetch_then_the_message_is_deleted() {
    let moto = Moto::start();
    create_bucket(&moto).await;
    put(&moto, "my flags.json", &document("f", "a")).await;
    let (queue, arn) = create_queue(&moto, "changes").await;
    moto.notify_queue(BUCKET, &arn, &["s3:ObjectCreated:*", "s3:ObjectRemoved:*"])
        .await;
    let mut settings = settings(&moto.endpoint(), "r1");
    settings.sources = vec![s3_source(BUCKET, "my flags.json")];
    settings.aws.sqs_queue_url = Some(queue.clone());
    let (store, supervisor) = started(&settings).await;
    // The s3:TestEvent moto sent is acknowledged and deleted.
    eventually_within(PATIENCE, "test event deleted", || {
        messages_in(&moto, &queue).then_zero()
    })
    .await;

    put(&moto, "my flags.json", &document("f", "b")).await;
    eventually_within(PATIENCE, "change applied through SQS", || {
        let v = variant(&store, "f");
        async move { v.as_deref() == Some("b") }
    })
    .await;
    eventually_within(PATIENCE, "event deleted after the re-fetch", || {
        messages_in(&moto, &queue).then_zero()
    })
    .await;
    let s = stats_of(&supervisor, &s3_uri(BUCKET, "my flags.json"));
    assert_eq!(
        (s.fetched, s.not_modified),
        (2, 0),
        "one GET per change (no poll), the key decoded from `my+flags.json`"
    );

    // Deleting the object keeps the last good flags and counts an error.
    moto.s3()
        .delete_object()
        .bucket(BUCKET)
        .key("my flags.json")
        .send()
        .await
        .unwrap();
    eventually_within(PATIENCE, "deletion seen", || {
        let s = stats_of(&supervisor, &s3_uri(BUCKET, "my flags.json"));
        async move { s.unavailable == 1 }
    })
    .await;
    assert_eq!(variant(&store, "f").as_deref(), Some("b"));
    supervisor.shutdown().await;
}

/// Makes `async { n == 0 }` out of a count future.
trait ThenZero {
    fn then_zero(self) -> impl std::future::Future<Output = bool>;
}

impl<F: std::future::Future<Output = u64>> ThenZero for F {
    async fn then_zero(self) -> bool {
        self.await == 0
    }
}

#[tokio::test]
async fn sns_wrapped_and_eventbridge_messages_trigger_refetches() {
    let moto = Moto::start();
    create_bucket(&moto).await;
    put(&moto, "flags.json", &document("f", "a")).await;
    let (queue, _) = create_queue(&moto, "changes").await;
    let mut settings = settings(&moto.endpoint(), "r1");
    settings.sources = vec![s3_source(BUCKET, "flags.json")];
    settings.aws.sqs_queue_url = Some(queue.clone());
    let (store, supervisor) = started(&settings).await;

    // No bucket notification: only the messages we send can explain a change.
    put(&moto, "flags.json", &document("f", "b")).await;
    let s3_event = json!({"Records": [{
        "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": BUCKET}, "object": {"key": "flags.json"}}
    }]});
    let envelope = json!({
        "Type": "Notification",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:flags",
        "Message": s3_event.to_string()
    });
    send(&moto, &queue, &envelope.to_string()).await;
    eventually_within(PATIENCE, "SNS-wrapped event applied", || {
        let v = variant(&store, "f");
        async move { v.as_deref() == Some("b") }
    })
    .await;

    put(&moto, "flags.json", &document("f", "c")).await;
    let eventbridge = json!({
        "version": "0", "detail-type": "Object Created", "source": "aws.s3",
        "detail": {"bucket": {"name": BUCKET}, "object": {"key": "flags.json"}}
    });
    send(&moto, &queue, &eventbridge.to_string()).await;
    eventually_within(PATIENCE, "EventBridge event applied", || {
        let v = variant(&store, "f");
        async move { v.as_deref() == Some("c") }
    })
    .await;
    eventually_within(PATIENCE, "both messages deleted", || {
        messages_in(&moto, &queue).then_zero()
    })
    .await;
    supervisor.shutdown().await;
}

#[tokio::test]
async fn inline_documents_are_opt_in_per_source_and_ordered_by_sequence() {
    let moto = Moto::start();
    create_bucket(&moto).await;
    put(&moto, "flags.json", &document("f", "a")).await;
    let (queue, _) = create_queue(&moto, "changes").await;
    let mut settings = settings(&moto.endpoint(), "r1");
    settings.sources = vec![s3_source(BUCKET, "flags.json")];
    settings.aws.sqs_queue_url = Some(queue.clone());
    settings.aws.sqs_inline = vec!["inline:allowed".to_owned()];
    let (store, supervisor) = started(&settings).await;
    let inline = |source: &str, flag: &str, default: &str, sequence: u64| {
        json!({"flagpole": {"source": source, "sequence": sequence, "document": {
            "flags": {flag: {"state": "ENABLED", "variants": {"a": "A", "b": "B"},
                             "defaultVariant": default}}
        }}})
        .to_string()
    };

    // A source name outside the allow-list is refused and its message kept.
    send(&moto, &queue, &inline("inline:other", "takeover", "a", 1)).await;
    // Sequence 2 arrives before sequence 1: the older one must not win.
    send(&moto, &queue, &inline("inline:allowed", "promo", "b", 2)).await;
    eventually_within(PATIENCE, "the allowed inline document applied", || {
        let v = variant(&store, "promo");
        async move { v.as_deref() == Some("b") }
    })
    .await;
    send(&moto, &queue, &inline("inline:allowed", "promo", "a", 1)).await;
    eventually_within(PATIENCE, "only the refused message is left", || {
        let moto = &moto;
        let queue = &queue;
        async move { messages_in(moto, queue).await == 1 }
    })
    .await;
    assert_eq!(
        variant(&store, "promo").as_deref(),
        Some("b"),
        "older one dropped"
    );
    assert_eq!(variant(&store, "takeover"), None, "not allowed");
    supervisor.shutdown().await;
}

#[tokio::test]
async fn inline_documents_create_update_and_remove_a_source() {
    let moto = Moto::start();
    create_bucket(&moto).await;
    put(&moto, "flags.json", &document("f", "a")).await;
    let (queue, _) = create_queue(&moto, "changes").await;
    let mut settings = settings(&moto.endpoint(), "r1");
    settings.sources = vec![s3_source(BUCKET, "flags.json")];
    settings.aws.sqs_queue_url = Some(queue.clone());
    settings.aws.sqs_inline = vec!["*".to_owned()]; // inline documents are opt-in
    let (store, supervisor) = started(&settings).await;

    let inline = |default: &str| {
        json!({"flagpole": {"source": "inline:promo", "document": {
            "flags": {"promo": {"state": "ENABLED", "variants": {"a": "A", "b": "B"},
                                 "defaultVariant": default}}
        }}})
        .to_string()
    };
    send(&moto, &queue, &inline("a")).await;
    eventually_within(PATIENCE, "inline document applied", || {
        let v = variant(&store, "promo");
        async move { v.as_deref() == Some("a") }
    })
    .await;
    let promo = store
        .snapshot()
        .get("promo", &Selector::All)
        .unwrap()
        .source
        .to_string();
    assert_eq!(promo, "inline:promo");
    send(&moto, &queue, &inline("b")).await;
    eventually_within(PATIENCE, "inline document updated", || {
        let v = variant(&store, "promo");
        async move { v.as_deref() == Some("b") }
    })
    .await;
    let yaml = json!({"flagpole": {"source": "inline:yaml", "format": "yaml",
                                   "document": yaml_document("y", "b")}});
    send(&moto, &queue, &yaml.to_string()).await;
    eventually_within(PATIENCE, "YAML inline document applied", || {
        let v = variant(&store, "y");
        async move { v.as_deref() == Some("b") }
    })
    .await;
    send(
        &moto,
        &queue,
        &json!({"flagpole": {"source": "inline:promo", "document": null}}).to_string(),
    )
    .await;
    eventually_within(PATIENCE, "inline source removed", || {
        let v = variant(&store, "promo");
        async move { v.is_none() }
    })
    .await;
    assert_eq!(
        variant(&store, "f").as_deref(),
        Some("a"),
        "S3 source untouched"
    );
    eventually_within(PATIENCE, "all inline messages deleted", || {
        messages_in(&moto, &queue).then_zero()
    })
    .await;
    supervisor.shutdown().await;
}

#[tokio::test]
async fn poison_messages_stay_in_the_queue_for_the_redrive_policy() {
    let moto = Moto::start();
    create_bucket(&moto).await;
    put(&moto, "flags.json", &document("f", "a")).await;
    let (queue, _) = create_queue(&moto, "changes").await;
    let mut settings = settings(&moto.endpoint(), "r1");
    settings.sources = vec![s3_source(BUCKET, "flags.json")];
    settings.aws.sqs_queue_url = Some(queue.clone());
    settings.aws.sqs_inline = vec!["*".to_owned()]; // inline documents are opt-in
    settings.aws.sqs_visibility_timeout = Duration::from_secs(1);
    let (store, supervisor) = started(&settings).await;

    send(&moto, &queue, "this is not an event").await;
    // A bad inline document is refused as well (and the last good flags stay).
    send(
        &moto,
        &queue,
        &json!({"flagpole": {"source": "inline:bad", "document": {"flags": {"x": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "zz"}}}}})
            .to_string(),
    )
    .await;
    send(
        &moto,
        &queue,
        &json!({"flagpole": {"source": "inline:ok", "document": {"flags": {}}}}).to_string(),
    )
    .await;
    eventually_within(
        PATIENCE,
        "the good message applied and deleted, the two bad ones kept",
        || {
            let applied = store.sources().iter().any(|s| &*s.uri == "inline:ok");
            let count = messages_in(&moto, &queue);
            async move { applied && count.await == 2 }
        },
    )
    .await;
    supervisor.shutdown().await;

    // With the consumer gone, both poison messages come back with a receive count above 1.
    let received = moto
        .sqs()
        .receive_message()
        .queue_url(&queue)
        .max_number_of_messages(10)
        .wait_time_seconds(5)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert!(
        !received.is_empty(),
        "poison messages are still in the queue"
    );
    for message in &received {
        let count: u32 = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|c| c.parse().ok())
            .unwrap();
        assert!(count >= 2, "the daemon received it before: {message:?}");
        assert!(!message.body().unwrap().contains("inline:ok"));
    }
    assert_eq!(variant(&store, "x"), None);
}

#[tokio::test]
async fn the_configuration_object_adds_and_removes_sources_at_run_time() {
    let moto = Moto::start();
    create_bucket(&moto).await;
    put(&moto, "a.json", &document("fa", "a")).await;
    put(&moto, "b.yaml", &yaml_document("fb", "b")).await;
    let config = |keys: &[&str]| {
        let mut text = String::from("port: 9999\nsources:\n");
        for key in keys {
            text.push_str(&format!(
                "  - uri: \"{}\"\n    provider: s3\n",
                s3_uri(BUCKET, key)
            ));
        }
        text
    };
    put(&moto, "flagpole.yaml", &config(&["a.json"])).await;
    let mut settings = settings(&moto.endpoint(), "r1");
    settings.aws.config_object = Some(s3_uri(BUCKET, "flagpole.yaml"));
    let (store, supervisor) = started(&settings).await;
    assert_eq!(
        variant(&store, "fa").as_deref(),
        Some("a"),
        "ready means its sources too"
    );
    assert_eq!(variant(&store, "fb"), None);

    put(&moto, "flagpole.yaml", &config(&["a.json", "b.yaml"])).await;
    eventually_within(PATIENCE, "source b added", || {
        let v = variant(&store, "fb");
        async move { v.as_deref() == Some("b") }
    })
    .await;
    let a = stats_of(&supervisor, &s3_uri(BUCKET, "a.json"));
    assert_eq!(a.fetched, 1, "the unchanged source was not read again");

    put(&moto, "flagpole.yaml", &config(&["b.yaml"])).await;
    eventually_within(PATIENCE, "source a removed", || {
        let v = variant(&store, "fa");
        async move { v.is_none() }
    })
    .await;
    assert!(supervisor
        .stats()
        .iter()
        .all(|s| s.uri != s3_uri(BUCKET, "a.json")));
    assert_eq!(variant(&store, "fb").as_deref(), Some("b"));
    let b = stats_of(&supervisor, &s3_uri(BUCKET, "b.yaml"));
    assert_eq!(
        b.fetched, 1,
        "removing a source before it does not restart b"
    );

    // A broken configuration object is rejected; the running sources stay.
    put(
        &moto,
        "flagpole.yaml",
        "sources: [{uri: x, provider: carrier-pigeon}]",
    )
    .await;
    eventually_within(PATIENCE, "broken config rejected", || {
        let s = stats_of(&supervisor, &s3_uri(BUCKET, "flagpole.yaml"));
        async move { s.rejected == 1 }
    })
    .await;
    assert_eq!(variant(&store, "fb").as_deref(), Some("b"));
    supervisor.shutdown().await;
}

#[tokio::test]
async fn s3_down_at_start_is_retried_until_it_answers() {
    let port = moto::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    moto::fake_credentials();
    let mut settings = settings(&endpoint, "r1");
    settings.sources = vec![s3_source(BUCKET, "flags.json")];
    let uri = settings.sources[0].uri.clone();
    let store = Arc::new(Store::new());
    let supervisor =
        Supervisor::from_config(settings.sync_config(), store.clone()).expect("start anyway");
    eventually_within(PATIENCE, "first failures counted", || {
        let s = stats_of(&supervisor, &uri);
        async move { s.errors >= 1 }
    })
    .await;
    assert!(
        !*supervisor.ready().borrow(),
        "not ready without a valid config"
    );
    assert!(stats_of(&supervisor, &uri).last_error.is_some());

    let moto = Moto::start_on(port);
    create_bucket(&moto).await;
    put(&moto, "flags.json", &document("f", "a")).await;
    let mut ready = supervisor.ready();
    tokio::time::timeout(PATIENCE, ready.wait_for(|r| *r))
        .await
        .expect("ready once S3 answers")
        .unwrap();
    assert_eq!(variant(&store, "f").as_deref(), Some("a"));
    supervisor.shutdown().await;
}

#[tokio::test]
async fn s3_down_mid_run_keeps_serving_the_last_good_config() {
    let mut moto = Moto::start();
    create_bucket(&moto).await;
    put(&moto, "flags.json", &document("f", "a")).await;
    let mut settings = settings(&moto.endpoint(), "r1");
    settings.sources = vec![s3_source(BUCKET, "flags.json")];
    let uri = settings.sources[0].uri.clone();
    let (store, supervisor) = started(&settings).await;
    moto.kill();
    eventually_within(PATIENCE, "outage counted", || {
        let s = stats_of(&supervisor, &uri);
        async move { s.errors >= 2 }
    })
    .await;
    let s = stats_of(&supervisor, &uri);
    assert_eq!(s.unavailable, 1, "one state change, however many retries");
    assert!(s.ready && *supervisor.ready().borrow());
    assert_eq!(variant(&store, "f").as_deref(), Some("a"));
    supervisor.shutdown().await;
}

#[tokio::test]
async fn three_replicas_on_one_sns_topic_each_serve_a_change() {
    let moto = Moto::start();
    create_bucket(&moto).await;
    put(&moto, "flags.json", &document("f", "a")).await;
    let sns = moto.sns();
    let topic = moto.create_topic("flag-changes").await;
    moto.notify_topic(BUCKET, &topic).await;
    let mut replicas = Vec::new();
    for id in ["task-1", "task-2", "task-3"] {
        let mut settings = settings(&moto.endpoint(), id);
        settings.sources = vec![s3_source(BUCKET, "flags.json")];
        settings.aws.sns_topic_arn = Some(topic.clone());
        settings.aws.sqs_queue_prefix = "fp-test-".to_owned();
        replicas.push(started(&settings).await);
    }
    let subscriptions = || async {
        sns.list_subscriptions_by_topic()
            .topic_arn(&topic)
            .send()
            .await
            .unwrap()
            .subscriptions
            .unwrap_or_default()
    };
    eventually_within(PATIENCE, "three queues subscribed", || async {
        subscriptions().await.len() == 3
    })
    .await;
    let queues = moto
        .sqs()
        .list_queues()
        .queue_name_prefix("fp-test-")
        .send()
        .await
        .unwrap()
        .queue_urls
        .unwrap_or_default();
    assert_eq!(queues.len(), 3);
    assert!(queues.iter().any(|q| q.ends_with("fp-test-task-2")));
    let tags = moto
        .sqs()
        .list_queue_tags()
        .queue_url(&queues[0])
        .send()
        .await
        .unwrap()
        .tags
        .unwrap_or_default();
    assert_eq!(tags.get("managed-by").map(String::as_str), Some("flagpole"));
    let policy = moto
        .sqs()
        .get_queue_attributes()
        .queue_url(&queues[0])
        .attribute_names(QueueAttributeName::Policy)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default()
        .remove(&QueueAttributeName::Policy)
        .unwrap_or_default();
    assert!(
        policy.contains(&topic),
        "queue policy names the topic: {policy}"
    );

    put(&moto, "flags.json", &document("f", "b")).await;
    for (store, _) in &replicas {
        eventually_within(PATIENCE, "every replica serves the change", || {
            let v = variant(store, "f");
            async move { v.as_deref() == Some("b") }
        })
        .await;
    }
    for (_, supervisor) in replicas {
        let s = stats_of(&supervisor, &s3_uri(BUCKET, "flags.json"));
        assert_eq!(
            (s.fetched, s.not_modified),
            (2, 0),
            "the change came through SNS"
        );
        supervisor.shutdown().await;
    }
    assert!(subscriptions().await.is_empty(), "unsubscribed at shutdown");
    let left = moto
        .sqs()
        .list_queues()
        .queue_name_prefix("fp-test-")
        .send()
        .await
        .unwrap()
        .queue_urls
        .unwrap_or_default();
    assert!(left.is_empty(), "queues deleted at shutdown: {left:?}");
}

#[tokio::test]
async fn a_fanout_queue_deleted_from_outside_is_created_again() {
    let moto = Moto::start();
    create_bucket(&moto).await;
    put(&moto, "flags.json", &document("f", "a")).await;
    let sns = moto.sns();
    let topic = moto.create_topic("flag-changes").await;
    let mut settings = settings(&moto.endpoint(), "task-9");
    settings.sources = vec![s3_source(BUCKET, "flags.json")];
    settings.aws.sns_topic_arn = Some(topic.clone());
    let (store, supervisor) = started(&settings).await;
    let sqs = moto.sqs();
    let queue_url = || async {
        sqs.list_queues()
            .queue_name_prefix("flagpole-task-9")
            .send()
            .await
            .unwrap()
            .queue_urls
            .unwrap_or_default()
            .pop()
    };
    let subscriptions = || async {
        sns.list_subscriptions_by_topic()
            .topic_arn(&topic)
            .send()
            .await
            .unwrap()
            .subscriptions
            .unwrap_or_default()
            .len()
    };
    eventually_within(PATIENCE, "queue subscribed", || async {
        subscriptions().await == 1
    })
    .await;
    let url = queue_url().await.expect("fan-out queue");
    sqs.delete_queue().queue_url(&url).send().await.unwrap();
    eventually_within(PATIENCE, "queue created again", || async {
        queue_url().await.is_some()
    })
    .await;
    eventually_within(PATIENCE, "one live subscription again", || async {
        subscriptions().await == 1 && queue_url().await.is_some()
    })
    .await;

    // Only the new queue can deliver this change (the safety poll is an hour away).
    let message = json!({"Records": [{
        "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": BUCKET}, "object": {"key": "flags.json"}}
    }]});
    put(&moto, "flags.json", &document("f", "b")).await;
    sns.publish()
        .topic_arn(&topic)
        .message(message.to_string())
        .send()
        .await
        .unwrap();
    eventually_within(PATIENCE, "change delivered through the new queue", || {
        let v = variant(&store, "f");
        async move { v.as_deref() == Some("b") }
    })
    .await;
    supervisor.shutdown().await;
    assert!(queue_url().await.is_none(), "deleted at shutdown");
}

/// Both flags `shared` and `own` from one source (`own` names the source).
fn two_flags(own: &str, shared_default: &str) -> String {
    format!(
        r#"{{"flags":{{"shared":{{"state":"ENABLED","variants":{{"a":"A","b":"B","c":"C"}},"defaultVariant":"{shared_default}"}},"{own}":{{"state":"ENABLED","variants":{{"a":"A","b":"B","c":"C"}},"defaultVariant":"a"}}}}}}"#
    )
}

#[tokio::test]
async fn configuration_object_changes_are_make_before_break() {
    let moto = Moto::start();
    create_bucket(&moto).await;
    put(&moto, "a.json", &two_flags("fa", "a")).await;
    put(&moto, "b.json", &two_flags("fb", "b")).await;
    // The replacement of a: serves the same `fa` flag.
    put(&moto, "c.json", &two_flags("fa", "c")).await;
    let config = |keys: &[&str]| {
        let mut text = String::from("sources:\n");
        for key in keys {
            text.push_str(&format!(
                "  - uri: \"{}\"\n    provider: s3\n",
                s3_uri(BUCKET, key)
            ));
        }
        text
    };
    put(&moto, "flagpole.yaml", &config(&["a.json", "b.json"])).await;
    let mut settings = settings(&moto.endpoint(), "r1");
    settings.aws.config_object = Some(s3_uri(BUCKET, "flagpole.yaml"));
    let (store, supervisor) = started(&settings).await;
    assert_eq!(
        variant(&store, "shared").as_deref(),
        Some("b"),
        "later wins"
    );

    // A client polling every flag throughout: none may ever be missing.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut misses = Vec::new();
            let mut polls = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let snapshot = store.snapshot();
                for flag in ["shared", "fa", "fb"] {
                    let miss = (flag, snapshot.version);
                    if snapshot.get(flag, &Selector::All).is_none() && !misses.contains(&miss) {
                        misses.push(miss);
                    }
                }
                polls += 1;
                tokio::task::yield_now().await;
            }
            (misses, polls)
        })
    };

    // Reordering only re-ranks: one store change, nothing read again.
    let before = store.snapshot().version;
    put(&moto, "flagpole.yaml", &config(&["b.json", "a.json"])).await;
    eventually_within(PATIENCE, "a now outranks b", || {
        let v = variant(&store, "shared");
        async move { v.as_deref() == Some("a") }
    })
    .await;
    assert_eq!(
        store.snapshot().version,
        before + 1,
        "a reordering is one change, not a removal and a re-add"
    );
    for key in ["a.json", "b.json"] {
        let s = stats_of(&supervisor, &s3_uri(BUCKET, key));
        assert_eq!(s.fetched, 1, "{key} was not read again");
    }

    // Replacing a with c: a serves until c has applied its first document.
    put(&moto, "flagpole.yaml", &config(&["b.json", "c.json"])).await;
    eventually_within(PATIENCE, "c replaced a", || {
        let gone = supervisor
            .stats()
            .iter()
            .all(|s| s.uri != s3_uri(BUCKET, "a.json"));
        let v = variant(&store, "shared");
        async move { gone && v.as_deref() == Some("c") }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (misses, polls) = poller.await.unwrap();
    assert!(polls > 0);
    assert_eq!(
        misses,
        [],
        "a flag went missing during a change ({polls} polls)"
    );
    assert_eq!(variant(&store, "fb").as_deref(), Some("a"));
    supervisor.shutdown().await;
}
