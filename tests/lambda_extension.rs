//! Extension mode under a real emulator of the Lambda Runtime and Extensions APIs
//! (`lambda-simulator`), reading S3 from moto: the real `flagpole lambda-extension` process
//! registers, loads, refreshes on INVOKE and drains on SHUTDOWN; the function is either
//! this test acting as the runtime (to look inside an invocation) or the real Python
//! OpenFeature provider in RPC mode (`tests/python/lambda_function.py`).

mod support;

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use http::Method;
use lambda_simulator::process::{ManagedProcess, ProcessConfig, ProcessRole};
use lambda_simulator::{InvocationStatus, ShutdownReason, Simulator};
use serde_json::{json, Value};
use support::moto::{free_port, Moto};
use support::{eventually, http1, PATIENCE};

const BUCKET: &str = "flags";
const KEY: &str = "flags.json";

fn document(color: &str) -> String {
    json!({"flags": {"color": {
        "state": "ENABLED",
        "variants": {"red": "RED", "blue": "BLUE"},
        "defaultVariant": color,
    }}})
    .to_string()
}

async fn put(moto: &Moto, body: String) {
    moto.s3()
        .put_object()
        .bucket(BUCKET)
        .key(KEY)
        .body(ByteStream::from(body.into_bytes()))
        .send()
        .await
        .expect("PutObject");
}

async fn bucket(moto: &Moto) {
    moto.s3()
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("CreateBucket");
}

/// The extension's ports on 127.0.0.1.
struct Ports {
    evaluation: u16,
    management: u16,
    sync: u16,
    ofrep: u16,
}

impl Ports {
    fn new() -> Ports {
        Ports {
            evaluation: free_port(),
            management: free_port(),
            sync: free_port(),
            ofrep: free_port(),
        }
    }

    fn management(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.management))
    }

    fn ofrep(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ofrep))
    }
}

/// An extension process killed when the test ends, whatever happened.
struct Running(ManagedProcess);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn_extension(sim: &Simulator, moto: &Moto, ports: &Ports, max_age: &str) -> Running {
    spawn_extension_with(sim, moto, ports, max_age, "2s")
}

/// As [`spawn_extension`], with `--refresh-timeout refresh_timeout`.
fn spawn_extension_with(
    sim: &Simulator,
    moto: &Moto,
    ports: &Ports,
    max_age: &str,
    refresh_timeout: &str,
) -> Running {
    let uri = format!("s3://{BUCKET}/{KEY}?use_path_style=true");
    let config = ProcessConfig::new(env!("CARGO_BIN_EXE_flagpole"), ProcessRole::Extension)
        .arg("lambda-extension")
        .arg("--uri")
        .arg(uri)
        .arg("--aws-endpoint-url")
        .arg(moto.endpoint())
        .arg("--aws-region")
        .arg(support::moto::REGION)
        .arg("--max-age")
        .arg(max_age)
        .arg("--refresh-timeout")
        .arg(refresh_timeout)
        .env("FLAGD_PORT", ports.evaluation.to_string())
        .env("FLAGD_MANAGEMENT_PORT", ports.management.to_string())
        .env("FLAGD_SYNC_PORT", ports.sync.to_string())
        .env("FLAGD_OFREP_PORT", ports.ofrep.to_string())
        .inherit_stdio(true);
    Running(
        sim.spawn_process_with_config(config)
            .expect("spawn the extension"),
    )
}

async fn simulator() -> Simulator {
    Simulator::builder()
        .function_name("flags-test")
        .shutdown_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("simulator")
}

/// The registered extension's id, once it has registered.
async fn extension_id(sim: &Simulator) -> String {
    eventually("the extension registers", || async {
        sim.extension_count().await == 1
    })
    .await;
    sim.get_registered_extensions().await[0].id.clone()
}

/// S3 GETs the extension has made so far: 200s, 304s and failures.
async fn s3_gets(ports: &Ports) -> u64 {
    let (status, body) = http1::call(ports.management(), "GET", "/metrics")
        .await
        .expect("GET /metrics");
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| {
            l.starts_with("flagpole_source_fetches_total{")
                || l.starts_with("flagpole_source_errors_total{")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `color` over OFREP: the value, or the error code.
async fn color(ports: &Ports) -> String {
    let reply = http1::post(
        ports.ofrep(),
        "/ofrep/v1/evaluate/flags/color",
        &[("content-type", "application/json")],
        Bytes::from_static(b"{\"context\":{}}"),
    )
    .await;
    let body = reply.json();
    match body.get("value") {
        Some(Value::String(value)) => value.clone(),
        _ => format!("error {}", body["errorCode"]),
    }
}

/// The test as the function's runtime: takes the next event off the Runtime API.
async fn next_invocation(sim: &Simulator) -> String {
    let addr = sim.addr();
    let response = http1::open(
        addr,
        Method::GET,
        "/2018-06-01/runtime/invocation/next",
        &[],
        Bytes::new(),
    )
    .await;
    response
        .headers()
        .get("lambda-runtime-aws-request-id")
        .expect("request id")
        .to_str()
        .unwrap()
        .to_owned()
}

/// The test as the function's runtime: answers invocation `id`.
async fn respond(sim: &Simulator, id: &str) {
    let reply = http1::post(
        sim.addr(),
        &format!("/2018-06-01/runtime/invocation/{id}/response"),
        &[("content-type", "application/json")],
        Bytes::from_static(b"{}"),
    )
    .await;
    assert!(reply.status.is_success(), "response: {}", reply.status);
}

/// One whole invocation with the test as the runtime; returns once the extension is back
/// in `next` (its INVOKE work done).
async fn invoke(sim: &Simulator) {
    let id = sim.enqueue_payload(json!({})).await;
    assert_eq!(next_invocation(sim).await, id);
    respond(sim, &id).await;
    sim.wait_for_extensions_ready(&id, PATIENCE)
        .await
        .expect("the extension returns to next");
}

async fn exited(process: &mut Running) -> ExitStatus {
    let mut status = None;
    eventually("the extension exits", || {
        status = process.0.try_wait().expect("try_wait");
        std::future::ready(status.is_some())
    })
    .await;
    status.unwrap()
}

#[tokio::test]
async fn init_ends_only_once_the_configuration_is_loaded() {
    let moto = Moto::start();
    bucket(&moto).await;
    let sim = simulator().await;
    let ports = Ports::new();
    let _extension = spawn_extension(&sim, &moto, &ports, "5s");
    let id = extension_id(&sim).await;
    // The object is missing: the extension has tried (and retried) S3 but stays in init.
    eventually("the extension has tried S3 twice", || async {
        http1::call(ports.management(), "GET", "/metrics")
            .await
            .is_ok()
            && s3_gets(&ports).await >= 2
    })
    .await;
    assert_eq!(
        sim.first_next_poll_at(&id).await,
        None,
        "init ended without flags"
    );

    put(&moto, document("red")).await;
    eventually("the extension ends its init", || async {
        sim.first_next_poll_at(&id).await.is_some()
    })
    .await;
    // The very first evaluation after init has the flags.
    assert_eq!(color(&ports).await, "RED");
}

#[tokio::test]
async fn a_stale_invoke_makes_one_conditional_get_and_serves_the_new_value_in_it() {
    let moto = Moto::start();
    bucket(&moto).await;
    put(&moto, document("red")).await;
    let sim = simulator().await;
    let ports = Ports::new();
    let _extension = spawn_extension(&sim, &moto, &ports, "0s");
    let id = extension_id(&sim).await;
    eventually("init", || async {
        sim.first_next_poll_at(&id).await.is_some()
    })
    .await;
    assert_eq!(color(&ports).await, "RED");

    // Unchanged object: one GET (a 304) per stale invocation.
    let before = s3_gets(&ports).await;
    invoke(&sim).await;
    assert_eq!(s3_gets(&ports).await, before + 1);

    // Changed object: the invocation that follows serves it before it ends.
    put(&moto, document("blue")).await;
    let before = s3_gets(&ports).await;
    let invocation = sim.enqueue_payload(json!({})).await;
    assert_eq!(next_invocation(&sim).await, invocation);
    eventually("the INVOKE refresh applies the new object", || async {
        color(&ports).await == "BLUE"
    })
    .await;
    respond(&sim, &invocation).await;
    sim.wait_for_extensions_ready(&invocation, PATIENCE)
        .await
        .expect("the extension returns to next");
    assert_eq!(s3_gets(&ports).await, before + 1, "exactly one GET");
}

#[tokio::test]
async fn a_fresh_configuration_triggers_no_get() {
    let moto = Moto::start();
    bucket(&moto).await;
    put(&moto, document("red")).await;
    let sim = simulator().await;
    let ports = Ports::new();
    let _extension = spawn_extension(&sim, &moto, &ports, "1h");
    let id = extension_id(&sim).await;
    eventually("init", || async {
        sim.first_next_poll_at(&id).await.is_some()
    })
    .await;
    let before = s3_gets(&ports).await;
    for _ in 0..3 {
        invoke(&sim).await;
    }
    assert_eq!(s3_gets(&ports).await, before, "no GET while fresh");
    assert_eq!(color(&ports).await, "RED");
}

#[tokio::test]
async fn with_s3_down_the_last_configuration_is_served() {
    let mut moto = Moto::start();
    bucket(&moto).await;
    put(&moto, document("red")).await;
    let sim = simulator().await;
    let ports = Ports::new();
    // A short refresh timeout: S3 is down, so the invocation should not wait long for it.
    // (With 2 s, under a loaded test run the simulator sometimes never saw the extension's
    // return to `next`; run alone, both the timed-out and the failed refresh pass.)
    let _extension = spawn_extension_with(&sim, &moto, &ports, "0s", "300ms");
    let id = extension_id(&sim).await;
    eventually("init", || async {
        sim.first_next_poll_at(&id).await.is_some()
    })
    .await;
    moto.kill();
    let before = s3_gets(&ports).await;
    invoke(&sim).await;
    // The SDK's own retries may outlast --refresh-timeout: the failure is counted later.
    eventually("the stale invoke tried S3", || async {
        s3_gets(&ports).await > before
    })
    .await;
    assert_eq!(color(&ports).await, "RED");
}

#[tokio::test]
async fn shutdown_drains_and_exits_cleanly() {
    let moto = Moto::start();
    bucket(&moto).await;
    put(&moto, document("red")).await;
    let sim = simulator().await;
    let ports = Ports::new();
    let mut extension = spawn_extension(&sim, &moto, &ports, "5s");
    let id = extension_id(&sim).await;
    eventually("init", || async {
        sim.first_next_poll_at(&id).await.is_some()
    })
    .await;
    invoke(&sim).await;
    let started = std::time::Instant::now();
    sim.graceful_shutdown(ShutdownReason::Spindown).await;
    let status = exited(&mut extension).await;
    eprintln!("SHUTDOWN to exit: {:?}", started.elapsed());
    assert!(status.success(), "exit status {status}");
    assert!(
        http1::call(ports.ofrep(), "POST", "/ofrep/v1/evaluate/flags")
            .await
            .is_err(),
        "the OFREP port is closed"
    );
}

#[tokio::test]
async fn the_python_provider_in_rpc_mode_reads_flags_through_the_extension() {
    let moto = Moto::start();
    bucket(&moto).await;
    let flags = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/provider_flags.json"
    ))
    .expect("provider flags");
    put(&moto, flags).await;
    let sim = simulator().await;
    let ports = Ports::new();
    let _extension = spawn_extension(&sim, &moto, &ports, "5s");
    let python = std::env::var("FLAGPOLE_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python").to_owned());
    let function = ProcessConfig::new(python, ProcessRole::Runtime)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/lambda_function.py"
        ))
        .env("FLAGD_PORT", ports.evaluation.to_string())
        .inherit_stdio(true);
    let _function = Running(
        sim.spawn_process_with_config(function)
            .expect("spawn the function"),
    );

    let event = json!({"flags": [
        {"key": "bool-flag", "type": "bool", "default": false},
        {"key": "string-flag", "type": "string", "default": "fallback"},
        {"key": "int-flag", "type": "int", "default": 0},
        {"key": "object-flag", "type": "object", "default": {}},
        {"key": "missing-flag", "type": "string", "default": "fallback"},
    ]});
    for _ in 0..2 {
        let id = sim.enqueue_payload(event.clone()).await;
        let state = sim
            .wait_for_invocation_complete(&id, Duration::from_secs(60))
            .await
            .expect("the function answers");
        assert_eq!(state.status, InvocationStatus::Success);
        let payload = state.response.expect("response").payload;
        let results = &payload["results"];
        assert_eq!(results[0]["value"], json!(true));
        assert_eq!(results[0]["reason"], json!("STATIC"));
        assert_eq!(results[1]["value"], json!("hello"));
        assert_eq!(results[2]["value"], json!(42));
        assert_eq!(results[3]["value"], json!({"retries": 3.0, "mode": "fast"}));
        assert_eq!(results[4]["value"], json!("fallback"));
        assert_eq!(results[4]["error_code"], json!("FLAG_NOT_FOUND"));
    }
}
