//! Step definitions for the flagd testbed's provider scenarios (gherkin/*.feature), driving the
//! real Rust OpenFeature flagd provider (`open-feature-flagd`, through the `open-feature`
//! `FeatureProvider` trait) against a flagpole started by tests/conformance/run.
//!
//! Usage: flagpole-conformance-rust [cucumber options, e.g. --color never]
//! Environment (set by tests/conformance/run): CONFORMANCE_GHERKIN (the testbed's gherkin
//! directory), CONFORMANCE_WORK, CONFORMANCE_MODE (rpc or
//! in-process), CONFORMANCE_CLIENT, CONFORMANCE_SKIPS, CONFORMANCE_RESULTS, CONFORMANCE_CONTROL.
//!
//! Scenarios of the other mode are not run. A scenario matched by a rule of skips.json is not
//! run either and is reported as skipped with the rule's reason, as the Python and JS suites do.
//! Every scenario run writes one line to CONFORMANCE_RESULTS.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cucumber::writer::Stats as _;
use cucumber::{event, gherkin, given, then, when, World as _};
use open_feature::provider::{FeatureProvider, ResolutionDetails};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode,
    EvaluationReason, FlagMetadataValue, StructValue, Value,
};
use open_feature_flagd::{CacheSettings, CacheType, FlagdOptions, FlagdProvider, ResolverType};
use serde_json::{json, Value as Json};

const READY_TIMEOUT: Duration = Duration::from_secs(10);

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run through tests/conformance/run"))
}

fn ports() -> HashMap<String, u16> {
    let text = std::fs::read_to_string(Path::new(&env("CONFORMANCE_WORK")).join("ports"))
        .expect("the run's ports file");
    text.lines()
        .filter_map(|line| line.split_once('='))
        .filter_map(|(name, value)| Some((name.to_string(), value.parse().ok()?)))
        .collect()
}

fn control(args: &[&str]) {
    let status = std::process::Command::new(env("CONFORMANCE_CONTROL"))
        .args(args)
        .status()
        .expect("run the control script");
    assert!(status.success(), "control {args:?} failed: {status}");
}

/// The evaluated outcome in the testbed's terms (an `Err` from the provider becomes the
/// default value with reason ERROR, as the SDK's client reports it).
#[derive(Debug, Default)]
struct Outcome {
    value: Json,
    variant: Option<String>,
    reason: Option<String>,
    error_code: Option<String>,
    #[allow(dead_code)] // shown in failure messages (Debug)
    error_message: Option<String>,
    metadata: HashMap<String, Json>,
}

#[derive(Debug, Default, cucumber::World)]
struct World {
    options: FlagdOptions,
    /// Whether the scenario set the "cache" option.
    cache_option: bool,
    provider: Option<FlagdProvider>,
    flag: Option<(String, String, String)>,
    context: EvaluationContext,
    nested: HashMap<String, HashMap<String, Value>>,
    outcome: Option<Outcome>,
    /// Set by a step that cannot express this row with the Rust SDK: the row is reported as
    /// skipped with this reason (the step then stops the scenario).
    skip: Option<String>,
}

fn reason_name(reason: Option<EvaluationReason>) -> Option<String> {
    reason.map(|r| match r {
        EvaluationReason::Static => "STATIC".into(),
        EvaluationReason::Default => "DEFAULT".into(),
        EvaluationReason::TargetingMatch => "TARGETING_MATCH".into(),
        EvaluationReason::Split => "SPLIT".into(),
        EvaluationReason::Cached => "CACHED".into(),
        EvaluationReason::Disabled => "DISABLED".into(),
        EvaluationReason::Unknown => "UNKNOWN".into(),
        EvaluationReason::Error => "ERROR".into(),
        EvaluationReason::Other(other) => other.to_uppercase(),
    })
}

fn value_json(value: &Value) -> Json {
    match value {
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Float(f) => json!(f),
        Value::String(s) => json!(s),
        Value::Array(items) => Json::Array(items.iter().map(value_json).collect()),
        Value::Struct(s) => struct_json(s),
    }
}

fn struct_json(s: &StructValue) -> Json {
    Json::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), value_json(v)))
            .collect(),
    )
}

fn outcome<T>(
    result: Result<ResolutionDetails<T>, EvaluationError>,
    default: Json,
    to_json: impl Fn(&T) -> Json,
) -> Outcome {
    match result {
        Ok(details) => Outcome {
            value: to_json(&details.value),
            variant: details.variant,
            reason: reason_name(details.reason),
            error_code: None,
            error_message: None,
            metadata: details
                .flag_metadata
                .map(|m| {
                    m.values
                        .into_iter()
                        .map(|(k, v)| {
                            let v = match v {
                                FlagMetadataValue::Bool(b) => json!(b),
                                FlagMetadataValue::Int(i) => json!(i),
                                FlagMetadataValue::Float(f) => json!(f),
                                FlagMetadataValue::String(s) => json!(s),
                            };
                            (k, v)
                        })
                        .collect()
                })
                .unwrap_or_default(),
        },
        Err(error) => Outcome {
            value: default,
            reason: Some("ERROR".into()),
            // General carries the provider's message; the testbed names the code.
            error_code: Some(match error.code {
                EvaluationErrorCode::General(_) => "GENERAL".into(),
                code => code.to_string(),
            }),
            error_message: error.message,
            ..Outcome::default()
        },
    }
}

/// A JSON context value as the Rust SDK's `Value`, which has no null (None then).
fn sdk_value(json: &Json) -> Option<Value> {
    Some(match json {
        Json::Null => return None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => n
            .as_i64()
            .map_or_else(|| Value::Float(n.as_f64().unwrap_or_default()), Value::Int),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::Array(items.iter().map(sdk_value).collect::<Option<_>>()?),
        Json::Object(fields) => Value::Struct(StructValue {
            fields: fields
                .iter()
                .map(|(k, v)| Some((k.clone(), sdk_value(v)?)))
                .collect::<Option<_>>()?,
        }),
    })
}

const NO_NULL: &str = "open-feature 0.3.0 (the Rust SDK) has no null among its context value types, so a context holding a JSON null cannot be built (SDK's own limit)";

/// The testbed's typed text as JSON (numbers compared as numbers, objects as JSON).
fn typed(kind: &str, text: &str) -> Json {
    match kind {
        "Boolean" => json!(text.trim().eq_ignore_ascii_case("true")),
        "String" => json!(text),
        "Integer" | "Long" => json!(text.trim().parse::<i64>().expect("an integer")),
        "Float" => json!(text.trim().parse::<f64>().expect("a float")),
        "Object" => serde_json::from_str(text).expect("a JSON object"),
        other => panic!("unknown type {other}"),
    }
}

/// Numbers compare by value (the object flag's 100.0 and the provider's 100 are equal).
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        _ => a == b,
    }
}

impl World {
    fn outcome(&self) -> &Outcome {
        self.outcome.as_ref().expect("the flag was evaluated")
    }
}

// --- configuration and provider ------------------------------------------------------------------

#[given(regex = r#"^an option "([^"]+)" of type "([^"]+)" with value "([^"]*)"$"#)]
fn option(world: &mut World, name: String, _kind: String, value: String) {
    let o = &mut world.options;
    match name.as_str() {
        "cache" => {
            world.cache_option = true;
            o.cache_settings = Some(CacheSettings {
                cache_type: match value.to_lowercase().as_str() {
                    "lru" => CacheType::Lru,
                    "mem" => CacheType::InMemory,
                    "disabled" => CacheType::Disabled,
                    other => panic!("cache type {other} unknown to the provider"),
                },
                ..CacheSettings::default()
            })
        }
        "deadlineMs" => o.deadline_ms = value.parse().expect("a number"),
        "selector" => o.selector = Some(value),
        "retryBackoffMs" => o.retry_backoff_ms = value.parse().expect("a number"),
        "retryBackoffMaxMs" => o.retry_backoff_max_ms = value.parse().expect("a number"),
        "retryGracePeriod" => o.retry_grace_period = value.parse().expect("a number"),
        "streamDeadlineMs" => o.stream_deadline_ms = value.parse().expect("a number"),
        other => panic!("option {other} has no counterpart in open-feature-flagd's FlagdOptions"),
    }
}

#[given(regex = r"^an? (\w+) flagd provider$")]
async fn provider(world: &mut World, kind: String) {
    let in_process = env("CONFORMANCE_MODE") == "in-process";
    let ports = ports();
    let port = |name: &str| {
        *ports
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in the ports file"))
    };
    let mut options = std::mem::take(&mut world.options);
    options.host = "127.0.0.1".into();
    options.resolver_type = if in_process {
        ResolverType::InProcess
    } else {
        ResolverType::Rpc
    };
    options.port = if in_process {
        port("SYNC_PORT")
    } else {
        port("EVAL_PORT")
    };
    if in_process && !world.cache_option {
        // FlagdOptions::default() turns the cache on for RPC; for in-process the provider's
        // own default (from the environment) is none.
        options.cache_settings = None;
    }
    match kind.as_str() {
        "stable" | "metadata" => {}
        "ssl" => {
            options.tls = true;
            options.cert_path = Some(
                PathBuf::from(env("CONFORMANCE_WORK"))
                    .join("certs/ca.pem")
                    .to_string_lossy()
                    .into_owned(),
            );
            options.port = if in_process {
                port("SSL_SYNC_PORT")
            } else {
                port("SSL_EVAL_PORT")
            };
        }
        "socket" => {
            // The unix-socket instance (tests/conformance/lib.sh): the provider connects to the
            // socket instead of host and port (its :authority comes from a placeholder TCP URI).
            let socket = if in_process {
                "sync.sock"
            } else {
                "flagd.sock"
            };
            options.socket_path = Some(
                PathBuf::from(env("CONFORMANCE_WORK"))
                    .join(socket)
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        other => panic!("no {other} flagd provider in this suite"),
    }
    if std::path::Path::new(&env("CONFORMANCE_WORK"))
        .join("restarting")
        .exists()
    {
        control(&["await-up"]);
    }
    let provider = tokio::time::timeout(READY_TIMEOUT, FlagdProvider::new(options))
        .await
        .unwrap_or_else(|_| panic!("provider not ready after {READY_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("provider failed to start: {e}"));
    world.provider = Some(provider);
}

#[when(regex = r"^the flag was modified$")]
fn modified(_world: &mut World) {
    control(&["change"]);
}

// --- flag and context ----------------------------------------------------------------------------

#[given(regex = r#"^an? (\w+)-flag with key "([^"]*)" and a default value "(.*)"$"#)]
fn flag(world: &mut World, kind: String, key: String, default: String) {
    world.flag = Some((kind, key, default));
}

#[given(
    regex = r#"^a context containing a key "([^"]*)", with type "([^"]*)" and with value "(.*)"$"#
)]
fn context_key(world: &mut World, key: String, kind: String, value: String) {
    let field = match kind.as_str() {
        "Boolean" => EvaluationContextFieldValue::Bool(value.trim().eq_ignore_ascii_case("true")),
        "String" => EvaluationContextFieldValue::String(value),
        "Integer" | "Long" => {
            EvaluationContextFieldValue::Int(value.trim().parse().expect("an integer"))
        }
        "Float" => EvaluationContextFieldValue::Float(value.trim().parse().expect("a float")),
        // The in-process evaluator reads a struct field holding an open_feature::Value.
        "Object" => match sdk_value(&serde_json::from_str(&value).expect("a JSON context value")) {
            Some(v) => EvaluationContextFieldValue::new_struct(v),
            None => {
                world.skip = Some(NO_NULL.into());
                panic!("{NO_NULL}");
            }
        },
        other => panic!("context type {other}"),
    };
    world.context.custom_fields.insert(key, field);
}

#[given(regex = r#"^a context containing a targeting key with value "(.*)"$"#)]
fn targeting_key(world: &mut World, value: String) {
    world.context.targeting_key = Some(value);
}

#[given(
    regex = r#"^a context containing a nested property with outer key "([^"]*)" and inner key "([^"]*)", with value "(.*)"$"#
)]
fn nested(world: &mut World, outer: String, inner: String, value: String) {
    let fields = world.nested.entry(outer.clone()).or_default();
    fields.insert(inner, Value::String(value));
    let s = StructValue {
        fields: fields.clone(),
    };
    world
        .context
        .custom_fields
        .insert(outer, EvaluationContextFieldValue::new_struct(s));
}

#[when(regex = r"^the flag was evaluated with details$")]
async fn evaluate(world: &mut World) {
    let (kind, key, default) = world.flag.clone().expect("a flag was given");
    let provider = world.provider.as_ref().expect("a provider was given");
    let ctx = &world.context;
    let d = typed(&kind, &default);
    world.outcome = Some(match kind.as_str() {
        "Boolean" => outcome(provider.resolve_bool_value(&key, ctx).await, d, |v| {
            json!(v)
        }),
        "String" => outcome(provider.resolve_string_value(&key, ctx).await, d, |v| {
            json!(v)
        }),
        "Integer" | "Long" => outcome(provider.resolve_int_value(&key, ctx).await, d, |v| json!(v)),
        "Float" => outcome(provider.resolve_float_value(&key, ctx).await, d, |v| {
            json!(v)
        }),
        "Object" => outcome(
            provider.resolve_struct_value(&key, ctx).await,
            d,
            struct_json,
        ),
        other => panic!("flag type {other}"),
    });
}

// --- evaluation details --------------------------------------------------------------------------

#[then(regex = r#"^the resolved details value should be "(.*)"$"#)]
fn resolved_value(world: &mut World, text: String) {
    let kind = &world.flag.as_ref().expect("a flag").0;
    let expected = typed(kind, &text);
    let o = world.outcome();
    assert!(
        same(&o.value, &expected),
        "value {}, expected {expected}; {o:?}",
        o.value
    );
}

#[then(regex = r#"^the variant should be "(.*)"$"#)]
fn variant_is(world: &mut World, variant: String) {
    let o = world.outcome();
    assert_eq!(
        o.variant.as_deref(),
        Some(variant.as_str()),
        "variant; {o:?}"
    );
}

#[then(regex = r#"^the reason should be "(.*)"$"#)]
fn reason_is(world: &mut World, reason: String) {
    let o = world.outcome();
    assert_eq!(o.reason.as_deref(), Some(reason.as_str()), "reason; {o:?}");
}

#[then(regex = r#"^the error-code should be "(.*)"$"#)]
fn error_code(world: &mut World, code: String) {
    let o = world.outcome();
    let expected = (!code.is_empty()).then_some(code);
    assert_eq!(o.error_code, expected, "error code; {o:?}");
}

#[then(regex = r"^the resolved metadata should contain$")]
fn metadata_contains(world: &mut World, step: &gherkin::Step) {
    let o = world.outcome();
    let table = step.table.as_ref().expect("a table");
    for row in table.rows.iter().skip(1) {
        let (key, kind, value) = (&row[0], &row[1], &row[2]);
        let expected = typed(kind, value);
        let actual = o.metadata.get(key);
        assert!(
            actual.is_some_and(|a| same(a, &expected)),
            "metadata {key} is {actual:?}, expected {expected}; all: {:?}",
            o.metadata
        );
    }
}

#[then(regex = r"^the resolved metadata is empty$")]
fn metadata_empty(world: &mut World) {
    let o = world.outcome();
    assert!(
        o.metadata.is_empty(),
        "metadata {:?}, expected none",
        o.metadata
    );
}

// --- scenario selection and results --------------------------------------------------------------

struct Rule {
    tags: Vec<String>,
    scenarios: Vec<String>,
    clients: Option<Vec<String>>,
    modes: Option<Vec<String>>,
    reason: String,
}

fn rules() -> Vec<Rule> {
    let text = std::fs::read_to_string(env("CONFORMANCE_SKIPS")).expect("skips.json");
    let doc: Json = serde_json::from_str(&text).expect("skips.json is JSON");
    let strings = |v: &Json| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    doc["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| Rule {
            tags: strings(&r["tags"]),
            scenarios: strings(&r["scenarios"]),
            clients: r.get("clients").map(strings),
            modes: r.get("modes").map(strings),
            reason: r["reason"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// Tags as the Python and JS suites see them: the feature's, the rule's and the scenario's
/// (cucumber expands an outline's Examples tags into the scenario's).
fn tags(
    feature: &gherkin::Feature,
    rule: Option<&gherkin::Rule>,
    scenario: &gherkin::Scenario,
) -> Vec<String> {
    feature
        .tags
        .iter()
        .chain(rule.map(|r| r.tags.iter()).into_iter().flatten())
        .chain(scenario.tags.iter())
        .map(|t| format!("@{t}"))
        .collect()
}

fn feature_file(feature: &gherkin::Feature) -> String {
    feature
        .path
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn record(
    feature: &gherkin::Feature,
    scenario: &gherkin::Scenario,
    status: &str,
    detail: Option<String>,
    seconds: f64,
) {
    let line = json!({
        "feature": feature.name,
        "scenario": scenario.name,
        "line": format!("{}:{}", feature_file(feature), scenario.position.line),
        "status": status,
        "detail": detail,
        "seconds": seconds,
    });
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(env("CONFORMANCE_RESULTS"))
        .expect("results file");
    writeln!(file, "{line}").expect("write a result");
}

fn failure(finished: &event::ScenarioFinished) -> Option<String> {
    match finished {
        event::ScenarioFinished::StepPassed => None,
        event::ScenarioFinished::StepSkipped => Some("a step matched no step definition".into()),
        event::ScenarioFinished::BeforeHookFailed(info) => {
            Some(format!("before hook: {}", panic_text(info)))
        }
        event::ScenarioFinished::StepFailed(_, _, error) => Some(match error {
            event::StepError::Panic(info) => panic_text(info),
            other => other.to_string(),
        }),
    }
}

fn panic_text(info: &event::Info) -> String {
    info.downcast_ref::<String>()
        .cloned()
        .or_else(|| info.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}

/// Copies the feature files into the work dir with one change the `gherkin` crate needs: in
/// table rows a backslash that starts no Gherkin escape (`\|`, `\n`, `\\`) is doubled. The
/// official Gherkin parsers keep such a backslash as it is (targeting.feature has cells like
/// `A\u0000B`), the crate refuses the whole file; doubling it yields the same cell text.
fn normalized_features(source: &Path) -> PathBuf {
    let dest =
        PathBuf::from(env("CONFORMANCE_WORK")).join(format!("rust-gherkin-{}", std::process::id()));
    std::fs::create_dir_all(&dest).expect("create the feature copy");
    for entry in std::fs::read_dir(source).expect("the testbed's gherkin directory") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|e| e != "feature") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a feature file");
        let mut out = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            if !line.trim_start().starts_with('|') {
                out.push_str(line);
                continue;
            }
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                out.push(c);
                if c == '\\' {
                    match chars.peek() {
                        Some('|' | 'n' | '\\') => out.push(chars.next().expect("peeked")),
                        _ => out.push('\\'),
                    }
                }
            }
        }
        std::fs::write(dest.join(path.file_name().expect("a file name")), out)
            .expect("write the feature copy");
    }
    dest
}

#[tokio::main]
async fn main() {
    let gherkin_dir = normalized_features(Path::new(&env("CONFORMANCE_GHERKIN")));
    let mode_tag = format!("@{}", env("CONFORMANCE_MODE"));
    let client = env("CONFORMANCE_CLIENT");
    let mode = env("CONFORMANCE_MODE");
    let rules = rules();
    let skipped_seen: Arc<Mutex<HashSet<(String, usize)>>> = Arc::default();
    let started: Arc<Mutex<Option<Instant>>> = Arc::default();
    let started_before = started.clone();
    let failed = Arc::new(AtomicUsize::new(0));
    let failed_after = failed.clone();

    let writer = World::cucumber()
        // Scenarios restart the shared daemon ("the connection is lost"): one at a time.
        .max_concurrent_scenarios(1)
        .fail_on_skipped()
        .before(move |_, _, _, _| {
            *started_before.lock().unwrap() = Some(Instant::now());
            Box::pin(async {})
        })
        .after(move |feature, _, scenario, finished, world| {
            let seconds = started
                .lock()
                .unwrap()
                .take()
                .map(|t| t.elapsed().as_secs_f64())
                .unwrap_or(0.0);
            let skip = world.and_then(|w| w.skip.take());
            let detail = failure(finished);
            let (status, detail) = match (skip, detail) {
                (Some(reason), _) => ("skipped", Some(reason)),
                (None, Some(detail)) => {
                    failed_after.fetch_add(1, Ordering::Relaxed);
                    ("failed", Some(detail))
                }
                (None, None) => ("passed", None),
            };
            record(feature, scenario, status, detail, seconds);
            Box::pin(async {})
        })
        .filter_run(gherkin_dir, move |feature, rule, scenario| {
            let tags = tags(feature, rule, scenario);
            if !tags.contains(&mode_tag) {
                return false;
            }
            let reason = rules.iter().find_map(|r| {
                let applies = r.clients.as_ref().is_none_or(|c| c.contains(&client))
                    && r.modes.as_ref().is_none_or(|m| m.contains(&mode));
                let matched =
                    r.tags.iter().any(|t| tags.contains(t)) || r.scenarios.contains(&scenario.name);
                (applies && matched).then(|| r.reason.clone())
            });
            match reason {
                Some(reason) => {
                    let key = (feature_file(feature), scenario.position.line);
                    if skipped_seen.lock().unwrap().insert(key) {
                        record(feature, scenario, "skipped", Some(reason), 0.0);
                    }
                    false
                }
                None => true,
            }
        })
        .await;
    // Our own verdict: a row skipped at run time (see World::skip) is no failure.
    let broken = writer.parsing_errors() + writer.hook_errors();
    if failed.load(Ordering::Relaxed) > 0 || broken > 0 {
        eprintln!(
            "conformance-rust: {} scenarios failed, {broken} parsing or hook errors",
            failed.load(Ordering::Relaxed)
        );
        std::process::exit(1);
    }
}
