//! Property tests: whatever arrives from a file, S3, SQS or a client, the parsers and the
//! evaluator return an answer or an error, never a panic, and rule evaluation always ends
//! within its step budget.
//!
//! The normal run is short and seeded (the same cases every time). A long run is one command:
//!
//! ```text
//! PROPTEST_CASES=20000 PROPTEST_RNG_SEED=$RANDOM cargo test --release --test properties
//! ```
//!
//! `PROPTEST_CASES` sets the cases per property (default 64) and `PROPTEST_RNG_SEED` the
//! seed (default fixed); a failure prints the minimal input it shrank to.

use std::collections::BTreeMap;

use flagpole::config::ConfigInput;
use flagpole::eval::{resolve, Context, Env, EvalOptions, FractionalVersion, Rule, ValueType};
use flagpole::flags::{parse_document, Format};
use flagpole::service::wire::JsonStruct;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use prost::Message;
use serde_json::{json, Map, Value};

/// Cases per property and the seed, from the environment (see the module docs).
fn config() -> Config {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    Config {
        cases: env("PROPTEST_CASES").map_or(64, |n| n as u32),
        rng_seed: RngSeed::Fixed(env("PROPTEST_RNG_SEED").unwrap_or(0x5eed_f1a9)),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Keys that make a generated object look like the things the parsers expect.
const KEYS: &[&str] = &[
    "flags",
    "state",
    "variants",
    "defaultVariant",
    "targeting",
    "metadata",
    "flagSetId",
    "$ref",
    "$evaluators",
    "$schema",
    "var",
    "if",
    "fractional",
    "on",
    "off",
    "a",
    "",
];

/// Operators the engine supports (and one it does not).
const OPERATORS: &[&str] = &[
    "if",
    "?:",
    "==",
    "===",
    "!=",
    "!==",
    "!",
    "!!",
    "or",
    "and",
    ">",
    ">=",
    "<",
    "<=",
    "max",
    "min",
    "+",
    "-",
    "*",
    "/",
    "%",
    "abs",
    "map",
    "filter",
    "reduce",
    "all",
    "none",
    "some",
    "merge",
    "in",
    "cat",
    "substr",
    "var",
    "missing",
    "missing_some",
    "fractional",
    "sem_ver",
    "starts_with",
    "ends_with",
    "contains_all",
    "contains_any",
    "contains_none",
    "set",
    "no_such_op",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(KEYS).prop_map(str::to_owned),
        "[a-zA-Z0-9_.$-]{0,8}",
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)), // NaN/infinity become null
        (-5i64..5).prop_map(Value::from),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(KEYS).prop_map(str::to_owned),
        "[a-z0-9.@ -]{0,12}",
        "(0|[1-9])\\.(0|[1-9])\\.(0|[1-9])(-[a-z]{1,3})?",
        any::<String>(),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ]
}

/// Any JSON value, biased towards flag-document keys.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// A rule built from the supported operators, with `var` paths into the context.
fn rule() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        3 => leaf(),
        2 => "[a-c](\\.[a-c0-9])?".prop_map(|path| json!({"var": path})),
        1 => Just(json!({"var": ""})),
    ];
    leaf.prop_recursive(6, 96, 5, |inner| {
        prop_oneof![
            4 => (prop::sample::select(OPERATORS), prop::collection::vec(inner.clone(), 0..5))
                .prop_map(|(op, args)| json!({op: args})),
            1 => (prop::sample::select(OPERATORS), inner.clone()).prop_map(|(op, arg)| json!({op: arg})),
            1 => prop::collection::vec(inner, 0..5).prop_map(Value::Array),
        ]
    })
}

/// An evaluation context: any object, with the keys rules read.
fn context() -> impl Strategy<Value = Context> {
    prop::collection::vec(
        (
            prop_oneof![
                prop::sample::select(&["a", "b", "c", "targetingKey", "$flagd"][..])
                    .prop_map(str::to_owned),
                "[a-z]{1,4}",
            ],
            json_value(),
        ),
        0..6,
    )
    .prop_map(|entries| entries.into_iter().collect())
}

/// A document with the shape of a flag document and arbitrary contents.
fn flag_document() -> impl Strategy<Value = Value> {
    let flag = (
        prop_oneof![Just(json!("ENABLED")), Just(json!("DISABLED")), leaf()],
        prop::collection::btree_map(
            prop::sample::select(&["on", "off", "a", "b"][..]),
            json_value(),
            0..4,
        ),
        prop_oneof![
            prop::sample::select(&["on", "off", "a", "zz"][..]).prop_map(|v| json!(v)),
            leaf()
        ],
        prop_oneof![
            3 => rule(),
            1 => Just(json!({"$ref": "shared"})),
            1 => json_value(),
        ],
        prop::option::of(json_value()),
    )
        .prop_map(|(state, variants, default, targeting, metadata)| {
            let mut flag = json!({
                "state": state, "variants": variants,
                "defaultVariant": default, "targeting": targeting
            });
            if let Some(metadata) = metadata {
                flag["metadata"] = metadata;
            }
            flag
        });
    (
        prop::collection::btree_map("[a-z]{1,6}", flag, 0..4),
        prop::option::of(rule()),
        prop::option::of(json_value()),
    )
        .prop_map(|(flags, shared, metadata)| {
            let mut doc = json!({ "flags": flags });
            if let Some(shared) = shared {
                doc["$evaluators"] = json!({ "shared": shared });
            }
            if let Some(metadata) = metadata {
                doc["metadata"] = metadata;
            }
            doc
        })
}

/// YAML-looking text: indentation, anchors, aliases, tags, flow collections, scalars.
fn yaml_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("\n".to_owned()),
        Just("  ".to_owned()),
        Just("- ".to_owned()),
        Just(": ".to_owned()),
        Just("flags:".to_owned()),
        Just("state: ENABLED".to_owned()),
        Just("variants:".to_owned()),
        Just("defaultVariant: on".to_owned()),
        Just("&a ".to_owned()),
        Just("*a".to_owned()),
        Just("<<: *a".to_owned()),
        Just("!!str ".to_owned()),
        Just("!!binary ".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just(", ".to_owned()),
        Just("|\n".to_owned()),
        Just("'".to_owned()),
        Just("\"".to_owned()),
        Just("---\n".to_owned()),
        Just("~".to_owned()),
        Just("1e400".to_owned()),
        Just("0x1F".to_owned()),
        Just(".inf".to_owned()),
        "[a-z0-9]{1,6}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(token, 0..48).prop_map(|tokens| tokens.concat())
}

/// The evaluator must answer every flag of a parsed document for any context.
fn resolve_everything(document: &flagpole::flags::FlagDocument, context: &Context) {
    let options = [
        EvalOptions::default(),
        EvalOptions {
            fractional: FractionalVersion::V3,
        },
    ];
    for flag in &document.flags {
        for want in [
            ValueType::Boolean,
            ValueType::String,
            ValueType::Integer,
            ValueType::Float,
            ValueType::Object,
            ValueType::Any,
        ] {
            for options in &options {
                let _ = resolve(flag, context, want, options, 1_700_000_000);
            }
        }
    }
}

/// An arbitrary `google.protobuf.Value` with finite numbers (JSON has no NaN).
fn proto_value() -> impl Strategy<Value = prost_types::Value> {
    use prost_types::value::Kind;
    let leaf = prop_oneof![
        Just(Kind::NullValue(0)),
        any::<bool>().prop_map(Kind::BoolValue),
        any::<String>().prop_map(Kind::StringValue),
        prop::num::f64::NORMAL
            .prop_union(prop::num::f64::ZERO)
            .or(prop::num::f64::SUBNORMAL)
            .prop_map(Kind::NumberValue),
        (-1_000_000i64..1_000_000).prop_map(|n| Kind::NumberValue(n as f64)),
    ];
    leaf.prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|values| {
                Kind::ListValue(prost_types::ListValue {
                    values: values
                        .into_iter()
                        .map(|k| prost_types::Value { kind: Some(k) })
                        .collect(),
                })
            }),
            prop::collection::btree_map(any::<String>(), inner, 0..5).prop_map(|fields| {
                Kind::StructValue(prost_types::Struct {
                    fields: fields
                        .into_iter()
                        .map(|(k, v)| (k, prost_types::Value { kind: Some(v) }))
                        .collect(),
                })
            }),
        ]
    })
    .prop_map(|kind| prost_types::Value { kind: Some(kind) })
}

fn proto_struct() -> impl Strategy<Value = prost_types::Struct> {
    prop::collection::btree_map(any::<String>(), proto_value(), 0..6)
        .prop_map(|fields: BTreeMap<String, prost_types::Value>| prost_types::Struct { fields })
}

/// The keys of a config file, each given arbitrary values.
const CONFIG_KEYS: &[&str] = &[
    "uri",
    "sources",
    "port",
    "management-port",
    "sync-port",
    "ofrep-port",
    "socket-path",
    "server-cert-path",
    "cors-origin",
    "context-value",
    "context-from-header",
    "fractional-version",
    "log-format",
    "stream-deadline",
    "shutdown-grace",
    "drain-delay",
    "keep-alive-interval",
    "metrics-emf-interval",
    "max-document-size",
    "max-request-body",
    "max-open-streams",
    "metrics-key-limit",
    "bind-address",
    "cache-dir",
    "sqs-inline",
    "sqs-inline-expiry",
    "sqs-batch-size",
    "sqs-wait-time",
    "sqs-visibility-timeout",
    "sqs-dead-letter-arn",
    "s3-poll-interval",
    "debug",
];

fn config_value() -> impl Strategy<Value = Value> {
    let value = prop_oneof![
        json_value(),
        "[0-9]{1,25}(\\.[0-9]{1,3})?(e[0-9]{1,3})?(ns|us|ms|s|m|h)?".prop_map(Value::String),
        Just(json!(1e300)),
        Just(json!(-1)),
        Just(json!([{"uri": "s3://b/k.json", "provider": "s3", "interval": 1e20}])),
    ];
    prop::collection::vec((prop::sample::select(CONFIG_KEYS), value), 0..6).prop_map(|entries| {
        Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn json_documents_parse_or_fail_and_every_flag_resolves(
        document in flag_document(),
        context in context(),
    ) {
        let bytes = document.to_string();
        if let Ok(parsed) = parse_document(bytes.as_bytes(), Format::Json) {
            resolve_everything(&parsed, &context);
        }
        // JSON is YAML: the YAML reader must take the same text without panicking.
        let _ = parse_document(bytes.as_bytes(), Format::Yaml);
    }

    #[test]
    fn arbitrary_json_values_and_bytes_never_panic_the_parser(
        value in json_value(),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let _ = parse_document(value.to_string().as_bytes(), Format::Json);
        let _ = parse_document(&bytes, Format::Json);
        let _ = parse_document(&bytes, Format::Yaml);
    }

    #[test]
    fn yaml_text_parses_or_fails_and_every_flag_resolves(
        text in yaml_text(),
        context in context(),
    ) {
        if let Ok(parsed) = parse_document(text.as_bytes(), Format::Yaml) {
            resolve_everything(&parsed, &context);
        }
    }

    #[test]
    fn rules_from_the_supported_operators_end_within_the_step_budget(
        rule in rule(),
        context in context(),
        key in "[a-z]{0,8}",
    ) {
        // Compiling may refuse a rule; one that compiles must evaluate to a value or an
        // error (the budget error among them) and return: proptest would hang otherwise.
        if let Ok(compiled) = Rule::compile(&rule) {
            for fractional in [FractionalVersion::V2, FractionalVersion::V3] {
                let env = Env { context: &context, flag_key: &key, timestamp: 0, fractional };
                let _ = compiled.evaluate(&env);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_struct_decoder(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let _ = JsonStruct::decode(bytes.as_slice());
    }

    #[test]
    fn truncated_or_corrupted_structs_never_panic_the_decoder(
        original in proto_struct(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        bits in any::<u8>(),
    ) {
        // Random bytes rarely get past the first field; a real encoding cut or bent
        // somewhere reaches every length check.
        let bytes = original.encode_to_vec();
        if !bytes.is_empty() {
            let _ = JsonStruct::decode(&bytes[..cut.index(bytes.len())]);
            let mut bent = bytes.clone();
            bent[flip.index(bytes.len())] ^= bits;
            let _ = JsonStruct::decode(bent.as_slice());
        }
    }

    #[test]
    fn structs_round_trip_with_prost_types(original in proto_struct()) {
        let bytes = original.encode_to_vec();
        let decoded = JsonStruct::decode(bytes.as_slice()).expect("prost-types bytes decode");
        let again = decoded.encode_to_vec();
        let back = prost_types::Struct::decode(again.as_slice()).expect("our bytes decode");
        prop_assert_eq!(&back, &original);
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn config_files_never_panic_the_parser(
        value in config_value(),
        text in yaml_text(),
    ) {
        if let Ok(input) = ConfigInput::from_value(&value) {
            let _ = input.into_settings();
        }
        let _ = ConfigInput::from_text(&value.to_string(), true);
        let _ = ConfigInput::from_text(&text, false);
    }
}

#[test]
fn the_generators_reach_documents_that_parse() {
    // Guards the property above against generating only garbage: a fixed seed must yield
    // some documents that parse and rules that compile.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::new(Config {
        rng_seed: RngSeed::Fixed(7),
        ..Config::default()
    });
    let (mut parsed, mut compiled) = (0, 0);
    for _ in 0..200 {
        let doc = flag_document().new_tree(&mut runner).unwrap().current();
        parsed += usize::from(parse_document(doc.to_string().as_bytes(), Format::Json).is_ok());
        let rule = rule().new_tree(&mut runner).unwrap().current();
        compiled += usize::from(Rule::compile(&rule).is_ok());
    }
    assert!(
        parsed >= 10,
        "only {parsed} of 200 generated documents parsed"
    );
    assert!(
        compiled >= 50,
        "only {compiled} of 200 generated rules compiled"
    );
    let _: Map<String, Value> = Map::new();
}
