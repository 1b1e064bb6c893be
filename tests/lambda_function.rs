//! Function mode under a real emulator of the Lambda Runtime API (`lambda-simulator`): the
//! real `flagpole lambda` process receives API Gateway REST (payload 1.0), HTTP API (2.0)
//! and Function URL events (fixtures in tests/data/lambda, shaped as AWS documents them)
//! and must answer exactly what the daemon's OFREP and Connect ports answer for the same
//! request and flags.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use lambda_simulator::process::{ManagedProcess, ProcessConfig, ProcessRole};
use lambda_simulator::{InvocationStatus, Simulator};
use serde_json::{json, Value};
use support::{http1, TestDaemon};

const FLAGS: &str = r#"{"flags":{
  "color":{"state":"ENABLED","variants":{"red":"RED","blue":"BLUE"},"defaultVariant":"red",
    "targeting":{"if":[{"==":[{"var":"tier"},"gold"]},"blue"]}},
  "beta":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off"}
}}"#;

/// The three event shapes, by fixture file.
const SHAPES: [&str; 3] = ["apigw-rest-v1", "apigw-http-v2", "function-url"];

fn fixture(shape: &str, path: &str, body: &str, headers: &[(&str, &str)]) -> Value {
    let file = format!(
        "{}/tests/data/lambda/{shape}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(file).expect("fixture")).expect("JSON");
    event["body"] = json!(body);
    if event["version"] == "2.0" {
        event["rawPath"] = json!(path);
        event["requestContext"]["http"]["path"] = json!(path);
    } else {
        event["path"] = json!(path);
        event["pathParameters"]["proxy"] = json!(path.trim_start_matches('/'));
        event["requestContext"]["path"] = json!(format!("/prod{path}"));
    }
    for (name, value) in headers {
        event["headers"][*name] = json!(value);
        if event.get("multiValueHeaders").is_some() {
            event["multiValueHeaders"][*name] = json!([value]);
        }
    }
    event
}

/// The function process, killed when the test ends.
struct Running(ManagedProcess);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn function(flags: &std::path::Path) -> (Simulator, Running) {
    let sim = Simulator::builder()
        .function_name("flags-function")
        .build()
        .await
        .expect("simulator");
    let config = ProcessConfig::new(env!("CARGO_BIN_EXE_flagpole"), ProcessRole::Runtime)
        .arg("lambda")
        .arg("--uri")
        .arg(format!("file:{}", flags.display()))
        .inherit_stdio(true);
    let process = sim.spawn_process_with_config(config).expect("spawn");
    (sim, Running(process))
}

/// What the function answered: status, headers, body.
struct Answer {
    status: u16,
    headers: Value,
    body: String,
}

async fn invoke(sim: &Simulator, event: Value) -> Answer {
    let id = sim.enqueue_payload(event).await;
    let state = sim
        .wait_for_invocation_complete(&id, Duration::from_secs(60))
        .await
        .expect("the function answers");
    assert_eq!(state.status, InvocationStatus::Success, "{:?}", state.error);
    let payload = state.response.expect("response").payload;
    let body = payload["body"].as_str().unwrap_or_default().to_owned();
    assert_ne!(
        payload["isBase64Encoded"],
        json!(true),
        "JSON comes back as text"
    );
    // Payload 1.0 answers may carry headers in `multiValueHeaders` only.
    let mut headers = payload["headers"].clone();
    if let Some(multi) = payload["multiValueHeaders"].as_object() {
        for (name, values) in multi {
            if headers.get(name).is_none() {
                headers[name] = values[0].clone();
            }
        }
    }
    Answer {
        status: payload["statusCode"].as_u64().expect("statusCode") as u16,
        headers,
        body,
    }
}

fn header<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
    answer
        .headers
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))?
        .1
        .as_str()
}

#[tokio::test]
async fn events_of_every_shape_answer_as_the_daemons_ofrep_and_connect() {
    let daemon = TestDaemon::with_files(&[("flags.json", FLAGS)])
        .ofrep()
        .start(|_, _| {})
        .await;
    let (sim, _function) = function(&daemon.files[0]).await;

    let requests: [(&str, &str); 5] = [
        (
            "/ofrep/v1/evaluate/flags/color",
            r#"{"context":{"tier":"gold"}}"#,
        ),
        ("/ofrep/v1/evaluate/flags/color", r#"{"context":{}}"#),
        ("/ofrep/v1/evaluate/flags/missing", r#"{"context":{}}"#),
        ("/ofrep/v1/evaluate/flags/color", r#"{"context":"#),
        ("/ofrep/v1/evaluate/flags", r#"{"context":{"tier":"gold"}}"#),
    ];
    for shape in SHAPES {
        for (path, body) in requests {
            let expected = http1::post(
                daemon.ofrep(),
                path,
                &[("content-type", "application/json")],
                Bytes::from(body.to_owned()),
            )
            .await;
            let answer = invoke(&sim, fixture(shape, path, body, &[])).await;
            assert_eq!(
                answer.status,
                expected.status.as_u16(),
                "{shape} {path} {body}"
            );
            let got: Value = serde_json::from_str(&answer.body).expect("JSON body");
            assert_eq!(got, expected.json(), "{shape} {path} {body}");
        }

        // Connect unary, as on the evaluation port.
        let path = "/flagd.evaluation.v1.Service/ResolveString";
        let body = r#"{"flagKey":"color","context":{"tier":"gold"}}"#;
        let expected = http1::post(
            daemon.evaluation,
            path,
            &[("content-type", "application/json")],
            Bytes::from_static(body.as_bytes()),
        )
        .await;
        let answer = invoke(&sim, fixture(shape, path, body, &[])).await;
        assert_eq!(answer.status, expected.status.as_u16(), "{shape} Connect");
        let got: Value = serde_json::from_str(&answer.body).expect("JSON body");
        assert_eq!(got, expected.json(), "{shape} Connect");
        assert_eq!(got["value"], json!("BLUE"));
    }
}

#[tokio::test]
async fn bulk_etags_give_304_and_cors_answers_as_the_daemon() {
    let daemon = TestDaemon::with_files(&[("flags.json", FLAGS)])
        .ofrep()
        .start(|_, _| {})
        .await;
    let (sim, _function) = function(&daemon.files[0]).await;
    let path = "/ofrep/v1/evaluate/flags";
    let body = r#"{"context":{}}"#;
    for shape in SHAPES {
        let first = invoke(&sim, fixture(shape, path, body, &[])).await;
        let etag = header(&first, "etag").expect("ETag").to_owned();
        let again = invoke(
            &sim,
            fixture(shape, path, body, &[("if-none-match", &etag)]),
        )
        .await;
        assert_eq!(again.status, 304, "{shape}");
        assert_eq!(again.body, "");

        let origin = [("origin", "https://app.example.com")];
        let expected = http1::post(
            daemon.ofrep(),
            path,
            &[
                ("content-type", "application/json"),
                ("origin", "https://app.example.com"),
            ],
            Bytes::from_static(body.as_bytes()),
        )
        .await;
        let answer = invoke(&sim, fixture(shape, path, body, &origin)).await;
        assert_eq!(
            header(&answer, "access-control-allow-origin"),
            expected.header("access-control-allow-origin"),
            "{shape}"
        );
    }
}

/// Figures for docs/lambda.md: cold start (spawn to the first answer) and warm latency per
/// request through the emulator. Prints; asserts nothing about time.
#[tokio::test]
#[ignore = "figures: cargo test --features lambda --test lambda_function -- --ignored --nocapture"]
async fn figures() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flags.json");
    std::fs::write(&file, FLAGS).unwrap();
    let event = fixture(
        "function-url",
        "/ofrep/v1/evaluate/flags/color",
        r#"{"context":{"tier":"gold"}}"#,
        &[],
    );
    let started = Instant::now();
    let (sim, _function) = function(&file).await;
    assert_eq!(invoke(&sim, event.clone()).await.status, 200);
    println!(
        "cold start (spawn to first answer): {:?}",
        started.elapsed()
    );
    let mut samples = Vec::new();
    for _ in 0..1000 {
        let started = Instant::now();
        assert_eq!(invoke(&sim, event.clone()).await.status, 200);
        samples.push(started.elapsed());
    }
    samples.sort();
    println!(
        "warm per request through the emulator: p50 {:?} p99 {:?}",
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100]
    );
}
