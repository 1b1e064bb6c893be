//! The corpus of `scripts/bench` through flagpole's evaluator, doing per evaluation what the
//! daemon does per request: borrow the store's snapshot, look the flag up, resolve (reading
//! the clock only for rules that can see `$flagd.timestamp`).
//!
//! `corpus [--old-path] CORPUS.json SECONDS_PER_CLASS` prints one JSON line with the nanoseconds per
//! evaluation of each class and of every case interleaved in corpus order, the shape the
//! JavaScript and Python runners beside this file print. Built with `--features bench-tools`.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flagpole::eval::{resolve, resolve_lazy, Context, EvalOptions, ValueType};
use flagpole::flags::{parse_document, Format};
use flagpole::store::{Selector, Store};
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Deserialize)]
struct Corpus {
    classes: Vec<String>,
    document: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    class: String,
    flag: String,
    #[serde(rename = "type")]
    kind: String,
    context: Map<String, Value>,
}

struct Prepared {
    class: usize,
    key: String,
    want: ValueType,
    context: Context,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// One request's evaluation as the daemon's evaluator does it: borrow the snapshot (no shared
/// write), look the key up, resolve reading the clock only if the rule can see it; `true`
/// when it produced a value (for the sink).
#[inline(never)]
fn evaluate(store: &Store, options: &EvalOptions, case: &Prepared) -> bool {
    let snapshot = store.current();
    let Some(stored) = snapshot.get(&case.key, &Selector::All) else {
        return false;
    };
    matches!(
        resolve_lazy(&stored.flag, &case.context, case.want, options, now),
        Ok(r) if r.value.is_some()
    )
}

/// The request path before the evaluator borrowed snapshots and read the clock lazily
/// (`--old-path`, for same-run comparisons): a shared reference-count increment per
/// snapshot load and a clock read per evaluation.
#[inline(never)]
fn evaluate_old(store: &Store, options: &EvalOptions, case: &Prepared) -> bool {
    let snapshot = store.snapshot();
    let Some(stored) = snapshot.get(&case.key, &Selector::All) else {
        return false;
    };
    matches!(
        resolve(&stored.flag, &case.context, case.want, options, now()),
        Ok(r) if r.value.is_some()
    )
}

type Evaluate = fn(&Store, &EvalOptions, &Prepared) -> bool;

/// Passes over `cases` for about `budget`; nanoseconds per evaluation.
fn measure(
    evaluate: Evaluate,
    store: &Store,
    options: &EvalOptions,
    cases: &[&Prepared],
    budget: Duration,
) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    let mut sink = 0u64;
    loop {
        for case in cases {
            sink += u64::from(evaluate(black_box(store), options, black_box(case)));
        }
        n += cases.len() as u64;
        if start.elapsed() >= budget {
            break;
        }
    }
    black_box(sink);
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (path, seconds, evaluate, name): (_, _, Evaluate, _) = match args.as_slice() {
        [path, seconds] => (path, seconds, evaluate as Evaluate, "flagpole"),
        [flag, path, seconds] if flag == "--old-path" => {
            (path, seconds, evaluate_old as Evaluate, "flagpole-old-path")
        }
        _ => return usage(),
    };
    let seconds = match seconds.parse::<f64>() {
        Ok(s) if s > 0.0 && s < 3600.0 => s,
        _ => return usage(),
    };
    let corpus: Corpus = match std::fs::read(path).map(|b| serde_json::from_slice(&b)) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return fail(&format!("{path}: {e}")),
        Err(e) => return fail(&format!("{path}: {e}")),
    };
    let document = match parse_document(corpus.document.as_bytes(), Format::Json) {
        Ok(d) => d,
        Err(e) => return fail(&format!("corpus document: {e}")),
    };
    let store = Store::new();
    store.apply(0, "file:corpus.json", document);
    let prepared: Vec<Prepared> = corpus
        .cases
        .into_iter()
        .map(|c| Prepared {
            class: corpus
                .classes
                .iter()
                .position(|k| *k == c.class)
                .unwrap_or(0),
            key: c.flag,
            want: if c.kind == "boolean" {
                ValueType::Boolean
            } else {
                ValueType::String
            },
            context: c.context,
        })
        .collect();
    let options = EvalOptions::default();
    let budget = Duration::from_secs_f64(seconds);
    let all: Vec<&Prepared> = prepared.iter().collect();
    // Cases that did not resolve to a value, per class (only `missing` should have any).
    let mut unresolved = Map::new();
    for case in &prepared {
        if !evaluate(&store, &options, case) {
            let class = &corpus.classes[case.class];
            let n = unresolved.get(class).and_then(Value::as_u64).unwrap_or(0);
            unresolved.insert(class.clone(), json!(n + 1));
        }
    }
    measure(evaluate, &store, &options, &all, budget); // warm-up, as the other runners do
    let mut classes = Map::new();
    for (index, class) in corpus.classes.iter().enumerate() {
        let only: Vec<&Prepared> = prepared.iter().filter(|c| c.class == index).collect();
        classes.insert(
            class.clone(),
            json!(measure(evaluate, &store, &options, &only, budget)),
        );
    }
    let interleaved = measure(evaluate, &store, &options, &all, budget);
    println!(
        "{}",
        json!({"evaluator": name, "version": format!("flagpole {}", env!("CARGO_PKG_VERSION")),
            "classes": classes, "interleaved": interleaved, "unresolved": unresolved})
    );
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("usage: corpus [--old-path] CORPUS.json SECONDS_PER_CLASS");
    ExitCode::from(2)
}

fn fail(message: &str) -> ExitCode {
    eprintln!("corpus: {message}");
    ExitCode::FAILURE
}
