//! The Lambda figures of docs/lambda.md and docs/performance.md, measured under the same
//! emulator the tests use (`lambda-simulator`) with S3 from moto. Run by `scripts/bench-lambda`
//! (which builds the release binary and passes it); not a test: it prints and asserts nothing
//! about time.
//!
//!     lambda_figures BINARY [ROUNDS]
//!
//! Prints one JSON object: extension init to ready with a 100-flag document; the extension's
//! overhead per INVOKE when fresh and when stale (one conditional GET, 304); function-mode cold
//! start and warm latency per request; the emulator's own round trip; RSS of both shapes.

#[allow(dead_code, unused_imports)]
#[path = "../tests/support/http1.rs"]
mod http1;
#[path = "../tests/support/moto.rs"]
mod moto;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use http::Method;
use lambda_simulator::process::{ManagedProcess, ProcessConfig, ProcessRole};
use lambda_simulator::{InvocationStatus, Simulator};
use moto::{free_port, Moto};
use serde_json::{json, Value};

const BUCKET: &str = "flags";
const KEY: &str = "flags.json";
const PATIENCE: Duration = Duration::from_secs(60);

/// 100 flags of the kinds a service has: booleans, strings, numbers, objects, a third with
/// targeting rules.
fn document() -> String {
    let mut flags = serde_json::Map::new();
    for i in 0..100 {
        let flag = match i % 4 {
            0 => {
                json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on", "off"]}})
            }
            1 => {
                json!({"state": "ENABLED", "variants": {"a": "alpha", "b": "beta"}, "defaultVariant": "a",
                "targeting": {"fractional": [{"var": "targetingKey"}, ["a", 50], ["b", 50]]}})
            }
            2 => {
                json!({"state": "ENABLED", "variants": {"low": 10, "high": 1000}, "defaultVariant": "low"})
            }
            _ => {
                json!({"state": "ENABLED", "variants": {"v1": {"retries": 3, "mode": "fast"}, "v2": {"retries": 5}},
                "defaultVariant": "v1",
                "targeting": {"if": [{"in": [{"var": "tier"}, ["gold", "platinum"]]}, "v2", "v1"]}})
            }
        };
        flags.insert(format!("flag-{i:03}"), flag);
    }
    json!({"flags": flags}).to_string()
}

struct Running(ManagedProcess);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Resident and peak resident memory of `pid` in KiB (VmRSS, VmHWM).
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn micros_since_epoch(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).expect("clock").as_micros() as i64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50, p99 and max of `samples` (ms).
fn summary(mut samples: Vec<f64>) -> Value {
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    json!({"n": samples.len(), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": samples[samples.len() - 1]})
}

async fn simulator(name: &str) -> Simulator {
    Simulator::builder()
        .function_name(name)
        .shutdown_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("simulator")
}

fn s3_args(config: ProcessConfig, moto: &Moto) -> ProcessConfig {
    config
        .arg("--uri")
        .arg(format!("s3://{BUCKET}/{KEY}?use_path_style=true"))
        .arg("--aws-endpoint-url")
        .arg(moto.endpoint())
        .arg("--aws-region")
        .arg(moto::REGION)
}

fn extension(sim: &Simulator, binary: &str, moto: &Moto, max_age: &str) -> Running {
    let config = ProcessConfig::new(binary, ProcessRole::Extension).arg("lambda-extension");
    let config = s3_args(config, moto)
        .arg("--max-age")
        .arg(max_age)
        .env("FLAGD_PORT", free_port().to_string())
        .env("FLAGD_MANAGEMENT_PORT", free_port().to_string())
        .env("FLAGD_SYNC_PORT", free_port().to_string())
        .env("FLAGD_OFREP_PORT", free_port().to_string())
        .env("FLAGD_LOG_LEVEL", "warn");
    Running(
        sim.spawn_process_with_config(config)
            .expect("spawn the extension"),
    )
}

async fn until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < PATIENCE, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The harness as the function's runtime: takes the next event and answers it at once.
async fn answer_next(sim: &Simulator) -> String {
    let response = http1::open(
        sim.addr(),
        Method::GET,
        "/2018-06-01/runtime/invocation/next",
        &[],
        Bytes::new(),
    )
    .await;
    let id = response
        .headers()
        .get("lambda-runtime-aws-request-id")
        .expect("request id")
        .to_str()
        .unwrap()
        .to_owned();
    let reply = http1::post(
        sim.addr(),
        &format!("/2018-06-01/runtime/invocation/{id}/response"),
        &[("content-type", "application/json")],
        Bytes::from_static(b"{}"),
    )
    .await;
    assert!(reply.status.is_success(), "response: {}", reply.status);
    id
}

/// Extension: init to ready (spawn to first `next`), then `rounds` invocations with a
/// function that answers at once; returns init, registration and overhead per INVOKE.
async fn extension_run(
    binary: &str,
    moto: &Moto,
    max_age: &str,
    rounds: usize,
) -> (f64, f64, Vec<(f64, f64)>, (u64, u64)) {
    let sim = simulator("figures-extension").await;
    let spawned = SystemTime::now();
    let process = extension(&sim, binary, moto, max_age);
    until("registration", || async {
        sim.extension_count().await == 1
    })
    .await;
    let registered = sim
        .get_registered_extensions()
        .await
        .into_iter()
        .next()
        .expect("registered");
    let id = registered.id.clone();
    until("init", || async {
        sim.first_next_poll_at(&id).await.is_some()
    })
    .await;
    let first_next = sim.first_next_poll_at(&id).await.expect("first next");
    let init_ms = (first_next.timestamp_micros() - micros_since_epoch(spawned)) as f64 / 1000.0;
    let register_ms =
        (registered.registered_at.timestamp_micros() - micros_since_epoch(spawned)) as f64 / 1000.0;
    let mut overheads = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let expected = sim.enqueue_payload(json!({})).await;
        let id = answer_next(&sim).await;
        assert_eq!(id, expected);
        sim.wait_for_extensions_ready(&id, PATIENCE)
            .await
            .expect("the extension returns to next");
        let whole = ms(started.elapsed());
        // The emulator's overhead (runtime response to the extension's `next`, whole ms) is
        // unset when the extension was back before the runtime answered: nothing added.
        overheads.push((
            sim.get_extension_overhead_ms(&id).await.unwrap_or(0.0),
            whole,
        ));
    }
    let rss = memory(process.0.pid());
    drop(process);
    (init_ms, register_ms, overheads, rss)
}

/// The emulator alone: the harness as runtime, no extension.
async fn emulator_round_trip(rounds: usize) -> Vec<f64> {
    let sim = simulator("figures-empty").await;
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        sim.enqueue_payload(json!({})).await;
        let id = answer_next(&sim).await;
        sim.wait_for_invocation_complete(&id, PATIENCE)
            .await
            .expect("complete");
        samples.push(ms(started.elapsed()));
    }
    samples
}

fn function_url_event(flag: &str) -> Value {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/lambda/function-url.json"
    );
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(file).expect("fixture")).expect("JSON");
    let path = format!("/ofrep/v1/evaluate/flags/{flag}");
    event["body"] =
        json!(r#"{"context":{"targetingKey":"user-7","email":"a@example.com","tier":"gold"}}"#);
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event
}

async fn invoke(sim: &Simulator, event: Value) -> Duration {
    let started = Instant::now();
    let id = sim.enqueue_payload(event).await;
    let state = sim
        .wait_for_invocation_complete(&id, PATIENCE)
        .await
        .expect("the function answers");
    let elapsed = started.elapsed();
    assert_eq!(state.status, InvocationStatus::Success, "{:?}", state.error);
    let status = state.response.expect("response").payload["statusCode"].as_u64();
    assert_eq!(status, Some(200), "the function answers 200");
    elapsed
}

/// Function: spawn to first answer (S3 load included), then warm requests.
async fn function_run(binary: &str, moto: &Moto, rounds: usize) -> (f64, Vec<f64>, (u64, u64)) {
    let sim = simulator("figures-function").await;
    let started = Instant::now();
    let config = s3_args(
        ProcessConfig::new(binary, ProcessRole::Runtime).arg("lambda"),
        moto,
    )
    .arg("--max-age")
    .arg("1h")
    .env("FLAGD_LOG_LEVEL", "warn");
    let process = Running(
        sim.spawn_process_with_config(config)
            .expect("spawn the function"),
    );
    invoke(&sim, function_url_event("flag-000")).await;
    let cold = ms(started.elapsed());
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        samples.push(ms(invoke(
            &sim,
            function_url_event(&format!("flag-{:03}", i % 100)),
        )
        .await));
    }
    let rss = memory(process.0.pid());
    (cold, samples, rss)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let binary = args.next().expect("usage: lambda_figures BINARY [ROUNDS]");
    let rounds: usize = args
        .next()
        .map(|r| r.parse().expect("ROUNDS"))
        .unwrap_or(200);
    let moto = Moto::start();
    let s3 = moto.s3();
    s3.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("CreateBucket");
    let body = document();
    let size = body.len();
    s3.put_object()
        .bucket(BUCKET)
        .key(KEY)
        .body(ByteStream::from(body.into_bytes()))
        .send()
        .await
        .expect("PutObject");

    let cold_runs = 5;
    let mut inits = Vec::new();
    let mut registers = Vec::new();
    let mut fresh = Vec::new();
    let mut extension_rss = (0, 0);
    for _ in 0..cold_runs {
        let (init, register, overheads, rss) =
            extension_run(&binary, &moto, "1h", rounds / cold_runs).await;
        inits.push(init);
        registers.push(register);
        fresh.extend(overheads);
        extension_rss = extension_rss.max(rss);
    }
    let (_, _, stale, stale_rss) = extension_run(&binary, &moto, "0s", rounds).await;
    let mut colds = Vec::new();
    let mut warm = Vec::new();
    let mut function_rss = (0, 0);
    for _ in 0..cold_runs {
        let (cold, samples, rss) = function_run(&binary, &moto, rounds / cold_runs).await;
        colds.push(cold);
        warm.extend(samples);
        function_rss = function_rss.max(rss);
    }
    let empty = emulator_round_trip(rounds).await;
    let binary_bytes = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
    let figures = json!({
        "document_bytes": size,
        "flags": 100,
        "binary_bytes": binary_bytes,
        "extension_register_ms": summary(registers),
        "extension_init_to_ready_ms": summary(inits),
        "extension_overhead_fresh_ms": summary(fresh.iter().map(|s| s.0).collect()),
        "extension_overhead_stale_304_ms": summary(stale.iter().map(|s| s.0).collect()),
        "extension_invocation_fresh_ms": summary(fresh.iter().map(|s| s.1).collect()),
        "extension_invocation_stale_304_ms": summary(stale.iter().map(|s| s.1).collect()),
        "extension_rss_kib": {"rss": extension_rss.0, "peak": extension_rss.1},
        "extension_stale_rss_kib": {"rss": stale_rss.0, "peak": stale_rss.1},
        "function_cold_start_ms": summary(colds),
        "function_warm_ms": summary(warm),
        "function_rss_kib": {"rss": function_rss.0, "peak": function_rss.1},
        "emulator_round_trip_ms": summary(empty),
    });
    println!("{}", serde_json::to_string_pretty(&figures).expect("JSON"));
}
