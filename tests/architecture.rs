//! The layer map of CONTRIBUTING.md, checked: domain modules import no transport or AWS
//! crate and only the layers below them. Reads the sources, so a new `use tonic` in the
//! evaluator fails here before review has to catch it.

use std::fs;
use std::path::{Path, PathBuf};

/// Each domain layer with the crate modules it may import (lowest layer first).
const LAYERS: &[(&str, &[&str])] = &[
    ("rules", &[]),
    ("flags", &["rules"]),
    ("eval", &["rules", "flags"]),
    ("store", &["rules", "flags", "eval"]),
    ("evaluator", &["rules", "flags", "eval", "store"]),
];

/// Crates that belong to the edges (network services, AWS sources), never to the domain.
const EDGE_CRATES: &[&str] = &[
    "tonic",
    "axum",
    "tower",
    "tower_http",
    "hyper",
    "hyper_util",
    "http",
    "http_body",
    "aws_config",
    "aws_sdk_s3",
    "aws_sdk_sqs",
    "aws_sdk_sns",
    "aws_smithy_http_client",
    "aws_smithy_types",
    "aws_types",
    "prost",
    "prost_types",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The first identifier at the start of `s`.
fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !is_ident(c)).unwrap_or(s.len());
    &s[..end]
}

/// Every module named right after `crate::`, including each item of `crate::{a, b::c}`.
fn crate_modules(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if at > 0 && code[..at].ends_with(is_ident) {
            continue; // e.g. `mycrate::`
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = ident(item.trim());
                if !name.is_empty() {
                    found.push(name.to_string());
                }
            }
        } else {
            found.push(ident(rest).to_string());
        }
    }
    found
}

/// Every edge crate named as a path root (`tonic::…`, `use axum::{…}`).
fn edge_crates(code: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    for name in EDGE_CRATES {
        let needle = format!("{name}::");
        for (at, _) in code.match_indices(&needle) {
            let before = code[..at].chars().next_back();
            // `::http::` or `foo_http::` are other paths; `crate::http` is a module of ours.
            if before.is_some_and(|c| is_ident(c) || c == ':') {
                continue;
            }
            found.push(*name);
        }
    }
    found
}

/// Comments say why and may name anything; only code counts.
fn strip_comments(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn violations() -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for (layer, allowed) in LAYERS {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "layer {layer} has no sources");
        for file in files {
            let code = strip_comments(&fs::read_to_string(&file).expect("source file"));
            let shown = file
                .strip_prefix(&src)
                .unwrap_or(&file)
                .display()
                .to_string();
            for module in crate_modules(&code) {
                if module != *layer && !allowed.contains(&module.as_str()) {
                    problems.push(format!(
                        "src/{shown}: layer `{layer}` imports crate::{module}"
                    ));
                }
            }
            for name in edge_crates(&code) {
                problems.push(format!(
                    "src/{shown}: layer `{layer}` uses the edge crate `{name}`"
                ));
            }
        }
    }
    problems
}

#[test]
fn domain_layers_import_only_lower_layers_and_no_edge_crates() {
    let problems = violations();
    assert!(
        problems.is_empty(),
        "layer map broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_scanner_sees_grouped_and_plain_imports() {
    let code =
        "use crate::{flags::Flag, store::Store};\nuse tonic::Status;\nlet x = crate::sync::X;";
    assert_eq!(crate_modules(code), ["flags", "store", "sync"]);
    assert_eq!(edge_crates(code), ["tonic"]);
    assert!(edge_crates("use crate::service::http::X; let a = my_http::b;").is_empty());
}
