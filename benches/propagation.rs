//! Propagation delay: from `PutObject` returning to the new value being served by every one
//! of three replicas, over 20 changes, (1) with S3 event notifications fanned out through SNS
//! to one SQS queue per replica (default settings: 20 s long polls, 300 s safety poll) and
//! (2) with polling only (default 5 s interval, per-replica jitter).
//!
//! Runs against moto's server on loopback (`FLAGPOLE_PYTHON`, default `.venv/bin/python`;
//! run `scripts/setup-test-env` first). "Served" = the replica's store snapshot holds the new
//! value, the exact thing every evaluation reads. Run with
//! `cargo bench --bench propagation` (add `--profile dev` to skip the optimised build:
//! the delay is network- and schedule-bound, not CPU-bound).

#[path = "../tests/support/moto.rs"]
mod moto;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use flagpole::config::Settings;
use flagpole::store::{Selector, Store};
use flagpole::sync::Supervisor;
use moto::{s3_source, Moto};

const BUCKET: &str = "flags";
const KEY: &str = "flags.json";
const CHANGES: usize = 20;
const REPLICAS: usize = 3;

fn document(version: usize) -> String {
    format!(
        r#"{{"flags":{{"f":{{"state":"ENABLED","variants":{{"v{version}":{version}}},"defaultVariant":"v{version}"}}}}}}"#
    )
}

fn serves(store: &Store, version: usize) -> bool {
    store
        .snapshot()
        .get("f", &Selector::All)
        .and_then(|f| f.flag.default_variant.clone())
        .is_some_and(|v| v == format!("v{version}"))
}

async fn put(moto: &Moto, version: usize) {
    moto.s3()
        .put_object()
        .bucket(BUCKET)
        .key(KEY)
        .body(ByteStream::from(document(version).into_bytes()))
        .send()
        .await
        .expect("PutObject");
}

/// Waits (on the store's change channel, no polling) until `store` serves `version`.
async fn until_served(store: Arc<Store>, version: usize) {
    let mut changes = store.subscribe();
    while !serves(&store, version) {
        changes.changed().await.expect("store alive");
    }
}

/// Starts the replicas, makes 20 changes, returns each change's delay to the slowest replica.
async fn measure(
    moto: &Moto,
    first_version: usize,
    configure: impl Fn(&mut Settings),
    ready: impl AsyncFnOnce(),
) -> Vec<Duration> {
    let mut replicas = Vec::new();
    for i in 0..REPLICAS {
        let mut settings = moto::settings(&moto.endpoint(), &format!("bench-{i}"));
        settings.aws.s3_poll_interval = Duration::from_secs(5);
        settings.aws.s3_safety_poll_interval = Duration::from_secs(300);
        settings.aws.sqs_wait_time = Duration::from_secs(20);
        settings.sources = vec![s3_source(BUCKET, KEY)];
        configure(&mut settings);
        let store = Arc::new(Store::new());
        let supervisor =
            Supervisor::from_config(settings.sync_config(), store.clone()).expect("start");
        let mut r = supervisor.ready();
        r.wait_for(|r| *r).await.expect("ready");
        replicas.push((store, supervisor));
    }
    ready().await;
    let mut delays = Vec::with_capacity(CHANGES);
    let mut seed: u64 = 0x5eed;
    for version in first_version..first_version + CHANGES {
        let waits: Vec<_> = replicas
            .iter()
            .map(|(store, _)| tokio::spawn(until_served(store.clone(), version)))
            .collect();
        let started = Instant::now();
        put(moto, version).await;
        for wait in waits {
            tokio::time::timeout(Duration::from_secs(60), wait)
                .await
                .expect("change served within 60 s")
                .expect("waiter");
        }
        delays.push(started.elapsed());
        // Let the fleet settle, then wait a pseudo-random part of a poll period so changes
        // land at uncorrelated points of each replica's poll cycle (a fixed gap would put
        // every change right after the slowest replica's last poll).
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let gap = Duration::from_millis(300 + (seed >> 33) % 5_000);
        tokio::time::sleep(gap).await;
    }
    for (_, supervisor) in replicas {
        supervisor.shutdown().await;
    }
    delays
}

fn report(name: &str, mut delays: Vec<Duration>) {
    delays.sort();
    // Nearest-rank percentiles.
    let rank =
        |p: f64| delays[((p * delays.len() as f64).ceil() as usize).clamp(1, delays.len()) - 1];
    let mean = delays.iter().sum::<Duration>() / delays.len() as u32;
    println!(
        "{name:<28} n={:<3} p50={:>8.1} ms  p99={:>8.1} ms  max={:>8.1} ms  mean={:>8.1} ms",
        delays.len(),
        rank(0.50).as_secs_f64() * 1e3,
        rank(0.99).as_secs_f64() * 1e3,
        delays.last().unwrap().as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        // `cargo test --benches` lists benchmarks; there is nothing to list here.
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let moto = Moto::start();
        moto.s3().create_bucket().bucket(BUCKET).send().await.unwrap();
        put(&moto, 0).await;
        let sns = moto.sns();
        let topic = moto.create_topic("flag-changes").await;
        moto.notify_topic(BUCKET, &topic).await;

        println!("propagation delay, PutObject -> served by all {REPLICAS} replicas, {CHANGES} changes (moto on loopback)");
        let fanout = measure(
            &moto,
            1,
            |s| s.aws.sns_topic_arn = Some(topic.clone()),
            async || {
                // Wait until every replica's queue is subscribed.
                loop {
                    let subscribed = sns
                        .list_subscriptions_by_topic()
                        .topic_arn(&topic)
                        .send()
                        .await
                        .unwrap()
                        .subscriptions
                        .unwrap_or_default()
                        .len();
                    if subscribed == REPLICAS {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        )
        .await;
        report("SNS -> SQS fan-out", fanout);

        let polling = measure(&moto, 101, |_| {}, async || {}).await;
        report("polling only (5 s)", polling);
    });
}
