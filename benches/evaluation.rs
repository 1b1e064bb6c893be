//! Evaluation benchmarks: the resolution paths a daemon serves most, and document loading.
//!
//! Run with `cargo bench --bench evaluation` (add `-- --warm-up-time 1 --measurement-time 3`
//! for a short run). A counting global allocator reports heap allocations per resolve.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, Criterion};
use flagpole::eval::{resolve, Context, EvalOptions, ValueType};
use flagpole::flags::{parse_document, Flag, FlagDocument, Format};
use serde_json::{json, Value};

/// Counts heap allocations so the static path can be shown to allocate nothing.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A fixed evaluation time, so time-dependent rules are deterministic.
const NOW: i64 = 1_767_225_600;

fn static_flag() -> Value {
    json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"})
}

fn email_flag() -> Value {
    json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
        "targeting": {"if": [{"in": ["@example.com", {"var": "email"}]}, "on", "off"]}})
}

fn fractional_flag() -> Value {
    json!({"state": "ENABLED",
        "variants": {"clubs": "clubs", "diamonds": "diamonds", "hearts": "hearts", "spades": "spades"},
        "defaultVariant": "clubs",
        "targeting": {"fractional": [
            {"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]},
            ["clubs", 25], ["diamonds", 25], ["hearts", 25], ["spades", 25]]}})
}

fn semver_flag() -> Value {
    json!({"state": "ENABLED", "variants": {"new": "new", "old": "old"}, "defaultVariant": "old",
        "targeting": {"if": [{"sem_ver": [{"var": "version"}, ">=", "1.2.0"]}, "new", "old"]}})
}

fn context() -> Context {
    match json!({"targetingKey": "user-8d2f1c", "email": "jane.doe@example.com",
        "version": "1.5.3", "plan": "enterprise", "country": "DE"})
    {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn document(flags: impl IntoIterator<Item = (String, Value)>) -> String {
    let flags: serde_json::Map<String, Value> = flags.into_iter().collect();
    json!({ "flags": flags }).to_string()
}

fn load(text: &str) -> FlagDocument {
    parse_document(text.as_bytes(), Format::Json).expect("benchmark document parses")
}

fn flag<'d>(doc: &'d FlagDocument, key: &str) -> &'d Flag {
    doc.flags
        .iter()
        .find(|f| f.key == key)
        .expect("flag present")
}

/// 100 flags shaped like a typical ResolveAll: half static, the rest targeted.
fn resolve_all_document() -> String {
    document((0..100).map(|i| {
        let definition = match i % 4 {
            0 | 1 => static_flag(),
            2 => email_flag(),
            _ => fractional_flag(),
        };
        (format!("flag-{i:03}"), definition)
    }))
}

/// 10,000 flags, a quarter of them with targeting.
fn large_document() -> String {
    document((0..10_000).map(|i| {
        let definition = match i % 8 {
            0 => email_flag(),
            1 => fractional_flag(),
            _ => static_flag(),
        };
        (format!("flag-{i:05}"), definition)
    }))
}

fn allocations_per_resolve(flag: &Flag, ctx: &Context, want: ValueType) -> f64 {
    const ROUNDS: u64 = 10_000;
    let options = EvalOptions::default();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..ROUNDS {
        let r = resolve(black_box(flag), black_box(ctx), want, &options, NOW);
        let _ = black_box(r);
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / ROUNDS as f64
}

fn report_allocations(_c: &mut Criterion) {
    let text = document([
        ("static".to_owned(), static_flag()),
        ("email".to_owned(), email_flag()),
        ("fractional".to_owned(), fractional_flag()),
        ("semver".to_owned(), semver_flag()),
    ]);
    let doc = load(&text);
    let ctx = context();
    let static_allocs = allocations_per_resolve(flag(&doc, "static"), &ctx, ValueType::Boolean);
    println!("allocations per static resolve: {static_allocs}");
    for key in ["email", "fractional", "semver"] {
        let want = if key == "email" {
            ValueType::Boolean
        } else {
            ValueType::String
        };
        let n = allocations_per_resolve(flag(&doc, key), &ctx, want);
        println!("allocations per {key} resolve: {n}");
    }
    let big = large_document();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let loaded = load(&big);
    let n = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!(
        "allocations loading {} flags ({} bytes): {n}",
        loaded.flags.len(),
        big.len()
    );
}

fn bench_single(c: &mut Criterion) {
    let text = document([
        ("static".to_owned(), static_flag()),
        ("email".to_owned(), email_flag()),
        ("fractional".to_owned(), fractional_flag()),
        ("semver".to_owned(), semver_flag()),
    ]);
    let doc = load(&text);
    let ctx = context();
    let options = EvalOptions::default();
    let cases = [
        ("resolve/static_boolean", "static", ValueType::Boolean),
        ("resolve/targeting_if_in_email", "email", ValueType::Boolean),
        ("resolve/fractional_4way", "fractional", ValueType::String),
        ("resolve/sem_ver", "semver", ValueType::String),
    ];
    for (name, key, want) in cases {
        let f = flag(&doc, key);
        // A benchmark of an error path would measure the wrong thing.
        resolve(f, &ctx, want, &options, NOW).expect("benchmark flag resolves");
        c.bench_function(name, |b| {
            b.iter(|| resolve(black_box(f), black_box(&ctx), want, &options, NOW))
        });
    }
}

fn bench_resolve_all(c: &mut Criterion) {
    let doc = load(&resolve_all_document());
    let ctx = context();
    let options = EvalOptions::default();
    c.bench_function("resolve_all/100_flags", |b| {
        b.iter(|| {
            let mut resolved = 0usize;
            for f in &doc.flags {
                if resolve(f, black_box(&ctx), ValueType::Any, &options, NOW).is_ok() {
                    resolved += 1;
                }
            }
            assert_eq!(resolved, 100);
            resolved
        })
    });
}

fn bench_load(c: &mut Criterion) {
    let text = large_document();
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.bench_function("parse_document/10000_flags", |b| {
        b.iter(|| load(black_box(&text)))
    });
    group.finish();
}

criterion_group!(
    benches,
    report_allocations,
    bench_single,
    bench_resolve_all,
    bench_load
);
criterion_main!(benches);
