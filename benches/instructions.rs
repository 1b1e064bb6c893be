//! Scenarios for `scripts/perf-guard`: runs one named hot-path operation N times.
//!
//! `instructions SCENARIO N` does the fixed set-up, then the operation N times. The guard runs
//! it under callgrind at two values of N and divides the difference in instructions by the
//! difference in N, so the set-up and process start-up cancel out. Inputs are fixed and the
//! time is a constant, so the count is the same on every run. Built only by the guard
//! (`--features perf-guard --profile perf-guard`); not a benchmark of wall time.

use std::hint::black_box;
use std::process::ExitCode;

use flagpole::eval::{resolve, resolve_lazy, Context, EvalOptions, ValueType};
use flagpole::flags::{parse_document, Flag, FlagDocument, Format};
use flagpole::service::wire::JsonStruct;
use flagpole::store::{Selector, Store};
use prost::Message;
use serde_json::{json, Value};

/// A fixed evaluation time, so time-dependent rules are deterministic.
const NOW: i64 = 1_767_225_600;

/// The scenario names, in the order of the baselines file.
const SCENARIOS: [&str; 6] = [
    "static",
    "targeting",
    "fractional",
    "struct_decode",
    "request_static",
    "request_missing",
];

fn document() -> FlagDocument {
    let text = json!({"flags": {
        "static": {"state": "ENABLED", "variants": {"on": true, "off": false},
            "defaultVariant": "off"},
        "targeting": {"state": "ENABLED", "variants": {"on": true, "off": false},
            "defaultVariant": "off",
            "targeting": {"if": [{"in": ["@example.com", {"var": "email"}]}, "on", "off"]}},
        "fractional": {"state": "ENABLED",
            "variants": {"clubs": "clubs", "diamonds": "diamonds", "hearts": "hearts",
                "spades": "spades"},
            "defaultVariant": "clubs",
            "targeting": {"fractional": [
                {"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]},
                ["clubs", 25], ["diamonds", 25], ["hearts", 25], ["spades", 25]]}}
    }})
    .to_string();
    parse_document(text.as_bytes(), Format::Json).expect("scenario document parses")
}

/// A typical evaluation context: a targeting key, a few strings, a number, a bool, a list.
fn context() -> Context {
    match json!({"targetingKey": "user-8d2f1c", "email": "jane.doe@example.com",
        "version": "1.5.3", "plan": "enterprise", "country": "DE", "age": 42,
        "beta": true, "groups": ["staff", "eu"]})
    {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

fn flag<'d>(doc: &'d FlagDocument, key: &str) -> &'d Flag {
    doc.flags
        .iter()
        .find(|f| f.key == key)
        .expect("flag present")
}

fn run_resolve(key: &str, want: ValueType, n: u64) {
    let doc = document();
    let ctx = context();
    let options = EvalOptions::default();
    let f = flag(&doc, key);
    // A scenario that hits an error path would guard the wrong thing.
    resolve(f, &ctx, want, &options, NOW).expect("scenario flag resolves");
    for _ in 0..n {
        let r = resolve(black_box(f), black_box(&ctx), want, &options, NOW);
        let _ = black_box(r);
    }
}

/// What the evaluator does per single-flag request after decoding: borrow the store's
/// snapshot, look the key up, resolve with a clock that is read only if the rule needs it.
fn run_request(key: &str, n: u64) {
    let store = Store::new();
    store.apply(0, "file:scenario.json", document());
    let ctx = context();
    let options = EvalOptions::default();
    let request = |key: &str| {
        let snapshot = store.current();
        snapshot.get(key, &Selector::All).map(|stored| {
            resolve_lazy(&stored.flag, &ctx, ValueType::Boolean, &options, || NOW).is_ok()
        })
    };
    // The scenario must take the path it is named after.
    assert_eq!(request(key), (key != "missing").then_some(true));
    for _ in 0..n {
        let _ = black_box(request(black_box(key)));
    }
}

fn run_struct_decode(n: u64) {
    let bytes = JsonStruct(context()).encode_to_vec();
    let decoded = JsonStruct::decode(bytes.as_slice()).expect("context decodes");
    assert_eq!(decoded.0, context());
    for _ in 0..n {
        let s = JsonStruct::decode(black_box(bytes.as_slice()));
        let _ = black_box(s);
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (scenario, n) = match args.as_slice() {
        [s, n] => match n.parse::<u64>() {
            Ok(n) => (s.as_str(), n),
            Err(_) => return usage(),
        },
        [s] if s == "--list" => {
            SCENARIOS.iter().for_each(|s| println!("{s}"));
            return ExitCode::SUCCESS;
        }
        _ => return usage(),
    };
    match scenario {
        "static" => run_resolve("static", ValueType::Boolean, n),
        "targeting" => run_resolve("targeting", ValueType::Boolean, n),
        "fractional" => run_resolve("fractional", ValueType::String, n),
        "struct_decode" => run_struct_decode(n),
        "request_static" => run_request("static", n),
        "request_missing" => run_request("missing", n),
        _ => return usage(),
    }
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: instructions SCENARIO ITERATIONS | --list  (scenarios: {})",
        SCENARIOS.join(", ")
    );
    ExitCode::from(2)
}
