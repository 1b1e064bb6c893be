//! The real OpenFeature Python flagd provider against flagpole: RPC mode on the evaluation
//! port and in-process mode on the sync port (`tests/python/rpc_provider.py` drives it).
//!
//! Needs the project venv: run `scripts/setup-test-env` once (or point `FLAGPOLE_PYTHON` at
//! a Python with `tests/python/requirements.txt` installed).

mod support;

use std::path::PathBuf;
use std::process::Command;

use flagpole::eval::FractionalVersion;
use serde_json::{json, Value};
use support::TestDaemon;

const FLAGS: &str = include_str!("python/provider_flags.json");
const CHANGED: &str = include_str!("python/provider_flags_changed.json");

/// The fractional flag's variants, for sanity checks.
const COLOURS: [&str; 4] = ["red", "blue", "green", "yellow"];

fn python() -> PathBuf {
    let python = std::env::var_os("FLAGPOLE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python")));
    assert!(
        python.exists(),
        "no Python test environment at {}: run `scripts/setup-test-env` first (it creates \
         .venv with tests/python/requirements.txt), or set FLAGPOLE_PYTHON",
        python.display()
    );
    python
}

/// Runs the driver in `mode` against `port`; returns its JSON lines.
async fn drive(daemon: &TestDaemon, mode: &str, port: u16) -> Vec<Value> {
    let new_content = daemon.dir.path().join("changed.json.src");
    std::fs::write(&new_content, CHANGED).unwrap();
    let mut command = Command::new(python());
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/rpc_provider.py"
        ))
        .args(["--port", &port.to_string(), "--mode", mode])
        .arg("--flag-file")
        .arg(&daemon.files[0])
        .arg("--new-content")
        .arg(&new_content);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{mode} driver failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect()
}

fn evaluation<'a>(lines: &'a [Value], kind: &str, key: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["step"] == "evaluate" && l["type"] == kind && l["key"] == key)
        .unwrap_or_else(|| panic!("no {kind} evaluation of {key}"))
}

/// `(value, variant, reason, error_code)` of an evaluation line.
fn details(line: &Value) -> Value {
    json!([
        line["value"],
        line["variant"],
        line["reason"],
        line["error_code"]
    ])
}

/// `value` with every number as a float: RPC answers carry object values as protobuf
/// `Struct`s, whose numbers are all doubles (`3` arrives as `3.0`), while the in-process core
/// keeps the JSON integer. Python compares them equal; the JSON lines do not.
fn numbers_as_floats(value: &Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_floats).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), numbers_as_floats(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn change_event(lines: &[Value]) -> &Value {
    lines
        .iter()
        .find(|l| l["step"] == "changed")
        .expect("change step")
}

async fn start(fractional: FractionalVersion) -> TestDaemon {
    TestDaemon::full(&[("flags.json", FLAGS)])
        .start(|settings, _| {
            settings.fractional = fractional;
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_mode_against_the_evaluation_port() {
    let daemon = start(FractionalVersion::V2).await;
    let lines = drive(&daemon, "rpc", daemon.evaluation.port()).await;

    let expect = |kind, key, want: Value| {
        assert_eq!(details(evaluation(&lines, kind, key)), want, "{kind} {key}");
    };
    expect("boolean", "bool-flag", json!([true, "on", "STATIC", null]));
    expect(
        "string",
        "string-flag",
        json!(["hello", "greeting", "STATIC", null]),
    );
    expect("integer", "int-flag", json!([42, "answer", "STATIC", null]));
    expect("float", "float-flag", json!([2.5, "e", "STATIC", null]));
    expect(
        "object",
        "object-flag",
        json!([{"retries": 3.0, "mode": "fast"}, "config", "STATIC", null]),
    );
    expect(
        "string",
        "targeted-flag",
        json!(["staff", "internal", "TARGETING_MATCH", null]),
    );
    expect(
        "string",
        "missing-flag",
        json!(["fallback", null, "ERROR", "FLAG_NOT_FOUND"]),
    );
    expect(
        "boolean",
        "string-flag",
        json!([true, null, "ERROR", "TYPE_MISMATCH"]),
    );
    expect(
        "boolean",
        "disabled-flag",
        json!([true, null, "DISABLED", null]),
    );
    for line in lines.iter().filter(|l| l["key"] == "fractional-flag") {
        assert_eq!(line["reason"], "TARGETING_MATCH", "{line}");
        assert!(
            COLOURS.contains(&line["variant"].as_str().unwrap()),
            "{line}"
        );
        assert_eq!(line["value"], line["variant"]);
    }

    assert_eq!(change_event(&lines)["flags"], json!(["string-flag"]));
    let after = lines.last().unwrap();
    assert_eq!(after["key"], "string-flag");
    assert_eq!(
        details(after),
        json!(["goodbye", "farewell", "STATIC", null])
    );
}

/// With the bucketing algorithm the Python core implements (v3, CBOR), in-process
/// evaluation of the synced document gives exactly what the daemon answers over RPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_mode_matches_rpc_mode() {
    let daemon = start(FractionalVersion::V3).await;
    let rpc = drive(&daemon, "rpc", daemon.evaluation.port()).await;
    drop(daemon);
    let daemon = start(FractionalVersion::V3).await;
    let in_process = drive(&daemon, "in-process", daemon.sync().port()).await;

    let evaluations = |lines: &[Value]| -> Vec<Value> {
        lines
            .iter()
            .filter(|l| l["step"] == "evaluate")
            .map(numbers_as_floats)
            .collect()
    };
    let (rpc_evals, local_evals) = (evaluations(&rpc), evaluations(&in_process));
    assert_eq!(rpc_evals.len(), local_evals.len());
    for (remote, local) in rpc_evals.iter().zip(&local_evals) {
        assert_eq!(remote, local, "RPC vs in-process");
    }
    eprintln!(
        "change seen after: rpc {} ms, in-process {} ms",
        change_event(&rpc)["delay_ms"],
        change_event(&in_process)["delay_ms"]
    );
    assert_eq!(change_event(&in_process)["flags"], json!(["string-flag"]));
    assert_eq!(
        change_event(&rpc)["flags"],
        change_event(&in_process)["flags"]
    );
}

/// The daemon's default bucketing is flagd v0.16's (v2, MurmurHash3 over the joined
/// string); the Python in-process core buckets with v3. Both give each flag's variants in
/// proportion, but a given user may land in a different bucket (docs/compatibility.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_fractional_bucketing_differs_from_the_python_core() {
    let daemon = start(FractionalVersion::V2).await;
    let rpc = drive(&daemon, "rpc", daemon.evaluation.port()).await;
    drop(daemon);
    let daemon = start(FractionalVersion::V2).await;
    let in_process = drive(&daemon, "in-process", daemon.sync().port()).await;

    let fractional = |lines: &[Value]| -> Vec<Value> {
        lines
            .iter()
            .filter(|l| l["key"] == "fractional-flag")
            .map(|l| l["variant"].clone())
            .collect()
    };
    let (remote, local) = (fractional(&rpc), fractional(&in_process));
    assert_eq!(remote.len(), 20);
    let differing = remote.iter().zip(&local).filter(|(a, b)| a != b).count();
    eprintln!("v2 (daemon) vs v3 (Python core): {differing} of 20 users in another bucket");
    eprintln!("  daemon: {remote:?}\n  python: {local:?}");
    assert!(differing > 0, "v2 and v3 bucketing agreed on all 20 users");
    // Everything else agrees.
    let others = |lines: &[Value]| -> Vec<Value> {
        lines
            .iter()
            .filter(|l| l["step"] == "evaluate" && l["key"] != "fractional-flag")
            .map(numbers_as_floats)
            .collect()
    };
    assert_eq!(others(&rpc), others(&in_process));
}

/// Runs `tests/python/auth_provider.py` against `port`, sending `token` if given.
async fn drive_with_token(port: u16, token: Option<&str>) -> Value {
    let mut command = Command::new(python());
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/auth_provider.py"
        ))
        .args(["--port", &port.to_string()]);
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "auth driver failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON line")
}

#[tokio::test]
async fn rpc_mode_sends_a_bearer_token_as_call_credentials() {
    const COLOR: &str = r#"{"flags": {"color": {"state": "ENABLED",
        "variants": {"red": "RED"}, "defaultVariant": "red"}}}"#;
    let daemon = TestDaemon::with_files(&[("flags.json", COLOR)])
        .start(|settings, dir| {
            let file = dir.join("tokens");
            std::fs::write(&file, "python-token\n").unwrap();
            settings.auth_token_file = Some(file);
        })
        .await;
    let port = daemon.evaluation.port();
    let with = drive_with_token(port, Some("python-token")).await;
    assert_eq!(
        with,
        json!({"ready": true, "value": "RED", "error_code": null})
    );
    for token in [None, Some("wrong-token")] {
        let without = drive_with_token(port, token).await;
        assert_eq!(without["value"], "fallback", "{token:?}: {without}");
        assert!(!without["error_code"].is_null(), "{token:?}: {without}");
        assert_eq!(without["ready"], false, "{token:?}: {without}");
    }
}
