//! The flagd-testbed Gherkin scenarios, run against the core (parser + resolver).
//!
//! Two suites are driven from the testbed's `.feature` files:
//! - `evaluator/gherkin/*.feature` with `evaluator/flags/testkit-flags.json`;
//! - `gherkin/*.feature` with the flag sources the testbed's flagd is started with:
//!   `flags/allFlags.json` (the testbed launchpad deep-merges every `flags/*.json` except
//!   `selector-*`, in file-name order), then `rawflags/selector-flags.json` and
//!   `rawflags/selector-flag-combined-metadata.json` (later source wins), plus the static
//!   context `injectedmetadata=set` (static values beat request values, as in the daemon).
//!
//! Scenarios that need a provider connection, events or a provider cache cannot run against
//! the core; they stay in the run but are marked skipped (with the reason as their first
//! step), so the report shows them. Any other skipped step fails the run.
//! The testbed is found through `FLAGD_TESTBED_DIR` (default `../shared/flagd-testbed`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use cucumber::feature::Ext as _;
use cucumber::gherkin::{self, GherkinEnv, Step, StepType};
use cucumber::writer::Stats as _;
use cucumber::{given, then, when, World};
use flagpole::eval::{resolve, Context, EvalOptions, FractionalVersion, ResolvedValue, ValueType};
use flagpole::flags::{parse_document, Flag, Format};
use serde_json::{Map, Number, Value};

/// Tag given to scenarios that are deliberately not run against the core.
const SKIP_TAG: &str = "flagpole-skipped";

fn testbed_dir() -> PathBuf {
    std::env::var_os("FLAGD_TESTBED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../shared/flagd-testbed"
            ))
        })
}

// ---------------------------------------------------------------------------------------
// Flag sources: a tiny stand-in for the store, with flagd's selector semantics.
// ---------------------------------------------------------------------------------------

/// One flag source (as the daemon would be configured with).
#[derive(Debug)]
struct Source {
    uri: String,
    flags: Vec<Flag>,
}

/// The flags and static context of one suite.
#[derive(Debug)]
struct Testbed {
    /// In priority order: later sources win.
    sources: Vec<Source>,
    static_context: Context,
}

impl Testbed {
    /// flagd's single-flag lookup (spec 6.6) and the selector reflected into metadata.
    fn lookup(&self, selector: Option<&str>, key: &str) -> Option<(&Flag, Map<String, Value>)> {
        let mut reflection = Map::new();
        let found = match selector.map(|s| s.split_once('=').unwrap_or(("source", s))) {
            None => self
                .sources
                .iter()
                .rev()
                .find_map(|s| s.flags.iter().find(|f| f.key == key)),
            Some(("flagSetId", id)) => {
                reflection.insert("flagSetId".into(), Value::String(id.into()));
                let want = (!id.is_empty()).then_some(id);
                self.sources.iter().rev().find_map(|s| {
                    s.flags
                        .iter()
                        .find(|f| f.key == key && f.flag_set_id.as_deref() == want)
                })
            }
            Some(("source", uri)) => {
                reflection.insert("source".into(), Value::String(uri.into()));
                self.sources
                    .iter()
                    .find(|s| s.uri == uri)
                    .and_then(|s| s.flags.iter().find(|f| f.key == key))
            }
            Some((other, _)) => panic!("unsupported selector key `{other}`"),
        }?;
        Some((found, reflection))
    }
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(uri: &str, text: &[u8]) -> Source {
    let doc = parse_document(text, Format::Json).unwrap_or_else(|e| panic!("{uri}: {e}"));
    Source {
        uri: uri.to_owned(),
        flags: doc.flags,
    }
}

/// The launchpad's merge: objects merge key by key, anything else is replaced.
fn deep_merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (k, v) in from {
                match into.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        deep_merge(existing, v)
                    }
                    _ => {
                        into.insert(k, v);
                    }
                }
            }
        }
        (into, from) => *into = from,
    }
}

fn evaluator_testbed() -> &'static Testbed {
    static TESTBED: OnceLock<Testbed> = OnceLock::new();
    TESTBED.get_or_init(|| {
        let path = testbed_dir().join("evaluator/flags/testkit-flags.json");
        let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Testbed {
            sources: vec![load("evaluator/flags/testkit-flags.json", &text)],
            static_context: Context::new(),
        }
    })
}

fn provider_testbed() -> &'static Testbed {
    static TESTBED: OnceLock<Testbed> = OnceLock::new();
    TESTBED.get_or_init(|| {
        let dir = testbed_dir().join("flags");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("readable flags dir").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        let mut all = Value::Object(Map::new());
        for file in &files {
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !name.starts_with("selector-") {
                deep_merge(&mut all, read_json(file));
            }
        }
        let mut sources = vec![load("flags/allFlags.json", all.to_string().as_bytes())];
        for name in [
            "selector-flags.json",
            "selector-flag-combined-metadata.json",
        ] {
            let text = std::fs::read(dir.join(name)).expect("selector flag file");
            sources.push(load(&format!("rawflags/{name}"), &text));
        }
        let mut static_context = Context::new();
        static_context.insert("injectedmetadata".into(), Value::String("set".into()));
        Testbed {
            sources,
            static_context,
        }
    })
}

// ---------------------------------------------------------------------------------------
// The world and its steps.
// ---------------------------------------------------------------------------------------

/// A requested flag type, as the scenarios name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Boolean,
    String,
    Integer,
    Float,
    Object,
}

impl Kind {
    fn parse(name: &str) -> Kind {
        match name {
            "Boolean" => Kind::Boolean,
            "String" => Kind::String,
            "Integer" => Kind::Integer,
            "Float" => Kind::Float,
            "Object" => Kind::Object,
            other => panic!("unknown flag type {other}"),
        }
    }

    fn value_type(self) -> ValueType {
        match self {
            Kind::Boolean => ValueType::Boolean,
            Kind::String => ValueType::String,
            Kind::Integer => ValueType::Integer,
            Kind::Float => ValueType::Float,
            Kind::Object => ValueType::Object,
        }
    }

    /// Reads a value written in a scenario as this type.
    fn read(self, text: &str) -> Value {
        match self {
            Kind::Boolean => Value::Bool(text.trim().parse().expect("boolean")),
            Kind::String => Value::String(text.to_owned()),
            Kind::Integer => Value::Number(text.trim().parse::<i64>().expect("integer").into()),
            Kind::Float => float(text.trim().parse().expect("float")),
            Kind::Object => json_cell(text),
        }
    }
}

fn float(f: f64) -> Value {
    Value::Number(Number::from_f64(f).expect("finite float"))
}

/// JSON written in a table cell, where quotes may be backslash-escaped.
fn json_cell(text: &str) -> Value {
    serde_json::from_str(text)
        .or_else(|_| serde_json::from_str(&text.replace("\\\"", "\"")))
        .unwrap_or_else(|e| panic!("not JSON: {text}: {e}"))
}

#[derive(Debug)]
struct FlagRequest {
    kind: Kind,
    key: String,
    fallback: Value,
}

/// What an evaluation produced, as a provider would report it.
#[derive(Debug)]
struct Outcome {
    value: Value,
    variant: Option<String>,
    reason: String,
    error_code: Option<String>,
    metadata: Map<String, Value>,
}

#[derive(Debug, Default, World)]
struct TestbedWorld {
    testbed: Option<&'static Testbed>,
    fractional: FractionalVersion,
    selector: Option<String>,
    flag: Option<FlagRequest>,
    context: Context,
    outcome: Option<Outcome>,
}

impl TestbedWorld {
    fn outcome(&self) -> &Outcome {
        self.outcome.as_ref().expect("the flag was not evaluated")
    }

    fn evaluate(&self) -> Outcome {
        let testbed = self.testbed.expect("testbed chosen by the before hook");
        let request = self.flag.as_ref().expect("a flag was requested");
        let Some((flag, mut metadata)) = testbed.lookup(self.selector.as_deref(), &request.key)
        else {
            return Outcome {
                value: request.fallback.clone(),
                variant: None,
                reason: "ERROR".into(),
                error_code: Some("FLAG_NOT_FOUND".into()),
                metadata: Map::new(),
            };
        };
        metadata.extend(flag.metadata.clone());
        let mut context = self.context.clone();
        context.extend(testbed.static_context.clone());
        let options = EvalOptions {
            fractional: self.fractional,
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64;
        match resolve(flag, &context, request.kind.value_type(), &options, now) {
            Ok(resolution) => Outcome {
                value: resolution
                    .value
                    .map(to_json)
                    .unwrap_or_else(|| request.fallback.clone()),
                variant: resolution.variant.map(str::to_owned),
                reason: resolution.reason.as_str().into(),
                error_code: None,
                metadata,
            },
            Err(error) => Outcome {
                value: request.fallback.clone(),
                variant: None,
                reason: "ERROR".into(),
                error_code: Some(error.code.as_str().into()),
                metadata,
            },
        }
    }
}

fn to_json(value: ResolvedValue<'_>) -> Value {
    match value {
        ResolvedValue::Bool(b) => Value::Bool(b),
        ResolvedValue::String(s) => Value::String(s.to_owned()),
        ResolvedValue::Int(i) => Value::Number(i.into()),
        ResolvedValue::Float(f) => float(f),
        ResolvedValue::Object(map) => Value::Object(map.clone()),
        ResolvedValue::Any(v) => v.clone(),
    }
}

#[given(regex = r"^an evaluator$")]
fn an_evaluator(_world: &mut TestbedWorld) {}

#[given(regex = r"^a (?:stable|metadata) flagd provider$")]
fn a_provider(_world: &mut TestbedWorld) {}

#[given(regex = r#"^an option "([^"]*)" of type "([^"]*)" with value "([^"]*)"$"#)]
fn an_option(world: &mut TestbedWorld, name: String, _ty: String, value: String) {
    // Cache and resolver options are provider settings; only the selector reaches flagd.
    if name == "selector" {
        world.selector = Some(value);
    }
}

#[given(
    regex = r#"^a (Boolean|String|Integer|Float|Object)-flag with key "([^"]*)" and a (?:default|fallback) value "(.*)"$"#
)]
fn a_flag(world: &mut TestbedWorld, kind: String, key: String, fallback: String) {
    let kind = Kind::parse(&kind);
    world.flag = Some(FlagRequest {
        kind,
        key,
        fallback: kind.read(&fallback),
    });
}

#[given(
    regex = r#"^a context containing a key "([^"]*)", with type "([^"]*)" and with value "(.*)"$"#
)]
fn a_context_key(world: &mut TestbedWorld, key: String, ty: String, value: String) {
    let value = match ty.as_str() {
        "String" => Value::String(value),
        "Boolean" => Value::Bool(value.parse().expect("boolean")),
        // The daemon sees protobuf Struct numbers: every number is a double.
        "Integer" => float(value.parse::<i64>().expect("integer") as f64),
        "Float" => float(value.parse().expect("float")),
        "Object" => json_cell(&value),
        other => panic!("unknown context type {other}"),
    };
    world.context.insert(key, value);
}

#[given(regex = r#"^a context containing a targeting key with value "(.*)"$"#)]
fn a_targeting_key(world: &mut TestbedWorld, value: String) {
    world
        .context
        .insert("targetingKey".into(), Value::String(value));
}

#[given(
    regex = r#"^a context containing a nested property with outer key "([^"]*)" and inner key "([^"]*)", with value "(.*)"$"#
)]
fn a_nested_context_key(world: &mut TestbedWorld, outer: String, inner: String, value: String) {
    let entry = world
        .context
        .entry(outer)
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let Value::Object(map) = entry {
        map.insert(inner, Value::String(value));
    }
}

#[when(regex = r"^the flag was evaluated with details$")]
fn evaluated(world: &mut TestbedWorld) {
    world.outcome = Some(world.evaluate());
}

#[then(regex = r#"^the resolved details value should be "(.*)"$"#)]
fn value_should_be(world: &mut TestbedWorld, expected: String) {
    let kind = world.flag.as_ref().expect("a flag was requested").kind;
    let got = &world.outcome().value;
    let matches = match kind {
        Kind::Boolean => got.as_bool() == Some(expected.trim().parse().expect("boolean")),
        Kind::String => got.as_str() == Some(expected.as_str()),
        Kind::Integer => got.as_i64() == Some(expected.trim().parse().expect("integer")),
        Kind::Float => got.as_f64() == Some(expected.trim().parse().expect("float")),
        Kind::Object => *got == json_cell(&expected),
    };
    assert!(
        matches,
        "expected value {expected:?}, got {got} ({:?})",
        world.outcome()
    );
}

#[then(regex = r#"^the reason should be "([^"]*)"$"#)]
fn reason_should_be(world: &mut TestbedWorld, expected: String) {
    let outcome = world.outcome();
    assert_eq!(outcome.reason, expected, "{outcome:?}");
}

#[then(regex = r#"^the error-code should be "([^"]*)"$"#)]
fn error_code_should_be(world: &mut TestbedWorld, expected: String) {
    let outcome = world.outcome();
    let expected = (!expected.is_empty()).then_some(expected);
    assert_eq!(outcome.error_code, expected, "{outcome:?}");
}

#[then(regex = r#"^the variant should be "([^"]*)"$"#)]
fn variant_should_be(world: &mut TestbedWorld, expected: String) {
    let outcome = world.outcome();
    assert_eq!(
        outcome.variant.as_deref(),
        Some(expected.as_str()),
        "{outcome:?}"
    );
}

#[then(regex = r"^the resolved metadata should contain$")]
fn metadata_should_contain(world: &mut TestbedWorld, step: &Step) {
    let metadata = &world.outcome().metadata;
    let table = step.table.as_ref().expect("a metadata table");
    for row in table.rows.iter().skip(1) {
        let [key, ty, value] = &row[..] else {
            panic!("metadata rows have 3 cells: {row:?}")
        };
        let got = metadata
            .get(key)
            .unwrap_or_else(|| panic!("metadata has no `{key}`: {metadata:?}"));
        let ok = match ty.as_str() {
            "String" => got.as_str() == Some(value.as_str()),
            "Integer" => got.as_f64() == Some(value.parse::<i64>().expect("integer") as f64),
            "Float" => got.as_f64() == Some(value.parse().expect("float")),
            "Boolean" => got.as_bool() == Some(value.parse().expect("boolean")),
            other => panic!("unknown metadata type {other}"),
        };
        assert!(ok, "metadata `{key}`: expected {ty} {value}, got {got}");
    }
}

#[then(regex = r"^the resolved metadata is empty$")]
fn metadata_is_empty(world: &mut TestbedWorld) {
    let metadata = &world.outcome().metadata;
    assert!(metadata.is_empty(), "{metadata:?}");
}

// ---------------------------------------------------------------------------------------
// Which scenarios run, and how.
// ---------------------------------------------------------------------------------------

/// Why a scenario cannot run against the core, if it cannot.
fn skip_reason(file: &str, tags: &[&str]) -> Option<&'static str> {
    match file {
        "connection.feature" => return Some("needs a provider connection (connect, TLS, socket)"),
        "events.feature" => return Some("needs provider events"),
        "rpc-caching.feature" => return Some("tests the RPC provider's cache"),
        _ => {}
    }
    let reasons = [
        (
            "fractional-v1",
            "legacy fractional algorithm (flagd < 0.15), not served",
        ),
        ("grace", "needs connection loss (grace period)"),
        ("reconnect", "needs connection loss"),
        ("caching", "tests the provider's cache"),
        ("events", "needs provider events"),
        ("stream", "needs the event stream"),
        (
            "deprecated",
            "expects evaluation.v1's FLAG_NOT_FOUND for code defaults (the v1 service's job)",
        ),
    ];
    reasons
        .iter()
        .find(|(tag, _)| tags.contains(tag))
        .map(|(_, reason)| *reason)
}

/// gherkin only accepts `\n`, `\|` and `\\` in table cells; the testbed also writes `\"`
/// and `\u....`, so other backslashes are escaped before parsing (keeping them literal).
fn escape_table_backslashes(text: &str) -> String {
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
                    Some('n' | '|' | '\\') => out.push(chars.next().expect("peeked")),
                    _ => out.push('\\'),
                }
            }
        }
    }
    out
}

/// Parses, expands and classifies every feature file; returns the features and the
/// skipped scenarios per reason.
fn load_features(paths: &[PathBuf]) -> (Vec<gherkin::Feature>, BTreeMap<&'static str, usize>) {
    let mut skipped = BTreeMap::new();
    let mut features = Vec::new();
    for path in paths {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut feature =
            gherkin::Feature::parse(escape_table_backslashes(&text), GherkinEnv::default())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        feature.path = Some(path.clone());
        let mut feature = feature
            .expand_examples()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let feature_tags = feature.tags.clone();
        let mut classify = |scenario: &mut gherkin::Scenario, rule_tags: &[String]| {
            let tags: Vec<&str> = feature_tags
                .iter()
                .chain(rule_tags)
                .chain(&scenario.tags)
                .map(String::as_str)
                .collect();
            if let Some(reason) = skip_reason(&file, &tags) {
                *skipped.entry(reason).or_insert(0) += 1;
                scenario.tags.push(SKIP_TAG.to_owned());
                // No step matches this text, so the scenario is reported as skipped here.
                scenario.steps.insert(
                    0,
                    Step {
                        keyword: "Given ".into(),
                        ty: StepType::Given,
                        value: format!("[not run against the core: {reason}]"),
                        docstring: None,
                        table: None,
                        span: scenario.span,
                        position: scenario.position,
                    },
                );
            }
        };
        for scenario in &mut feature.scenarios {
            classify(scenario, &[]);
        }
        for rule in &mut feature.rules {
            let rule_tags = rule.tags.clone();
            for scenario in &mut rule.scenarios {
                classify(scenario, &rule_tags);
            }
        }
        features.push(feature);
    }
    (features, skipped)
}

/// Hands the already prepared features to cucumber.
struct Prepared;

impl cucumber::Parser<Vec<gherkin::Feature>> for Prepared {
    type Cli = cucumber::cli::Empty;
    type Output =
        futures_util::stream::Iter<std::vec::IntoIter<cucumber::parser::Result<gherkin::Feature>>>;

    fn parse(self, input: Vec<gherkin::Feature>, _cli: Self::Cli) -> Self::Output {
        futures_util::stream::iter(input.into_iter().map(Ok).collect::<Vec<_>>())
    }
}

fn feature_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("readable feature dir").path())
        .filter(|p| p.extension().is_some_and(|e| e == "feature"))
        .collect();
    files.sort();
    files
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let root = testbed_dir();
    let mut paths = feature_files(&root.join("evaluator/gherkin"));
    paths.extend(feature_files(&root.join("gherkin")));
    let (features, skipped) = load_features(&paths);

    let writer = TestbedWorld::cucumber::<&str>()
        .with_parser(Prepared)
        .before(|feature, _rule, scenario, world| {
            Box::pin(async move {
                if scenario.tags.iter().any(|t| t == SKIP_TAG) {
                    return;
                }
                let in_evaluator_suite = feature
                    .path
                    .as_deref()
                    .is_some_and(|p| p.parent().is_some_and(|d| d.ends_with("evaluator/gherkin")));
                world.testbed = Some(if in_evaluator_suite {
                    evaluator_testbed()
                } else {
                    provider_testbed()
                });
                let v3 = feature
                    .tags
                    .iter()
                    .chain(&scenario.tags)
                    .any(|t| t == "fractional-v3");
                world.fractional = if v3 {
                    FractionalVersion::V3
                } else {
                    FractionalVersion::V2
                };
            })
        })
        .fail_on_skipped_with(|_, _, scenario| !scenario.tags.iter().any(|t| t == SKIP_TAG))
        .run(features)
        .await;

    let stats = writer.scenarios_stats();
    println!();
    for (reason, count) in &skipped {
        println!("skipped {count:>3} scenario(s): {reason}");
    }
    println!(
        "testbed: {} passed, {} failed, {} skipped",
        stats.passed, stats.failed, stats.skipped
    );
    if writer.execution_has_failed() || stats.passed == 0 {
        std::process::exit(1);
    }
}
