//! The load generator of `scripts/bench` (issue 16): drives a real flagpole daemon and a
//! constant-answer server of the same stack, alternating rounds, and measures the footprint.
//!
//! ```text
//! loadgen load --flagpole BIN [--rounds 2] [--seconds 5] [--connections 4] [--concurrency 32]
//!              [--server-cpu 0] [--scenarios a,b] [--tls PKI_DIR] [--out FILE]
//! loadgen subscribers --flagpole BIN --kind event|sync [--count 10000] [--server-cpu 0] [--out FILE]
//! loadgen footprint --flagpole BIN [--server-cpu 0] [--out FILE]
//! loadgen peer      (the constant-answer servers; prints their ports, runs until killed)
//! ```
//!
//! Loopback only, every run bounded in time and in recorded samples. The servers are started
//! as child processes pinned with `taskset -c CPU` when `--server-cpu` is given; pin the
//! load generator itself to another core (`taskset -c 1 loadgen …`). Built by CI with
//! `--features bench-tools`, never run by it.

mod client;
mod daemon;
mod peer;
mod subscribers;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use client::Stats;
use daemon::{Daemon, Peer};

/// Parsed `--key value` options.
struct Options(BTreeMap<String, String>);

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut map = BTreeMap::new();
        let mut it = args.iter();
        while let Some(key) = it.next() {
            let Some(name) = key.strip_prefix("--") else {
                return Err(format!("unexpected argument `{key}`"));
            };
            let value = it.next().ok_or_else(|| format!("`{key}` needs a value"))?;
            map.insert(name.to_owned(), value.clone());
        }
        Ok(Options(map))
    }

    fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn number<T>(&self, key: &str, default: T, max: T) -> Result<T, String>
    where
        T: std::str::FromStr + PartialOrd,
    {
        match self.0.get(key) {
            None => Ok(default),
            Some(v) => match v.parse::<T>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(format!("--{key}: `{v}` is not a number in range")),
            },
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        return usage();
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("runtime: {e}")),
    };
    if command == "peer" {
        // The servers of flagpole run on the multi-thread runtime; so do the peers, with one
        // worker per core they may use (taskset limits that to one when measuring).
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return fail(&format!("runtime: {e}")),
        };
        return match runtime.block_on(peer::serve()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    let options = match Options::parse(rest) {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    let result = runtime.block_on(async {
        match command.as_str() {
            "load" => load(&options).await,
            "subscribers" => subscribers::run(&options).await,
            "footprint" => footprint(&options).await,
            _ => Err("unknown command".to_owned()),
        }
    });
    match result {
        Ok(report) => {
            let text = serde_json::to_string_pretty(&report).unwrap_or_default();
            match options.text("out") {
                Some(path) => {
                    if let Err(e) = std::fs::write(path, text + "\n") {
                        return fail(&format!("{path}: {e}"));
                    }
                }
                None => println!("{text}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// Every scenario against flagpole and its constant-answer peer, alternating per round.
async fn load(options: &Options) -> Result<Value, String> {
    let binary = options
        .text("flagpole")
        .ok_or("--flagpole BIN is required")?;
    let rounds: usize = options.number("rounds", 2, 20)?;
    let seconds: f64 = options.number("seconds", 5.0, 120.0)?;
    let connections: usize = options.number("connections", 4, 64)?;
    let concurrency: usize = options.number("concurrency", 32, 1024)?;
    let cpu = options.text("server-cpu");
    let wanted: Option<Vec<&str>> = options.text("scenarios").map(|s| s.split(',').collect());
    let duration = Duration::from_secs_f64(seconds);

    // --tls DIR: flagpole serves TLS with DIR/server.pem and DIR/server.key (the files
    // tests/support/gen-test-certs makes) and is loaded through TLS; the peer stays plaintext,
    // so the ratio against a plaintext run shows the TLS cost.
    let tls_dir = options.text("tls").map(std::path::PathBuf::from);
    let tls = match &tls_dir {
        Some(dir) => Some(client::Tls::new(&dir.join("ca.pem"))?),
        None => None,
    };
    let tls_args: Vec<String> = match &tls_dir {
        Some(dir) => vec![
            "-c".into(),
            dir.join("server.pem").display().to_string(),
            "-k".into(),
            dir.join("server.key").display().to_string(),
        ],
        None => Vec::new(),
    };
    let tls_args: Vec<&str> = tls_args.iter().map(String::as_str).collect();
    let daemon = Daemon::start(
        binary,
        cpu,
        &daemon::load_document(),
        &tls_args,
        tls.as_ref(),
    )
    .await?;
    let peer = Peer::start(cpu).await?;
    let mut report = serde_json::Map::new();
    for scenario in client::scenarios() {
        if let Some(w) = &wanted {
            if !w.contains(&scenario.name) {
                continue;
            }
        }
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for round in 0..rounds {
            // Alternate which server goes first, so drift in machine load hits both alike.
            let order = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for flagpole in order {
                let addr = if flagpole {
                    scenario.address(true, daemon.grpc, daemon.ofrep)
                } else {
                    scenario.address(false, peer.grpc, peer.http)
                };
                let stats = client::run(
                    &scenario,
                    addr,
                    connections,
                    concurrency,
                    duration,
                    Duration::from_millis(500),
                    if flagpole { tls.as_ref() } else { None },
                )
                .await?;
                eprintln!(
                    "loadgen: {} round {} {}: {:.0} req/s, p99 {:.0} µs, {} errors",
                    scenario.name,
                    round + 1,
                    if flagpole { "flagpole" } else { "peer" },
                    stats.rps(),
                    stats.percentile_us(0.99),
                    stats.errors
                );
                if flagpole {
                    ours.push(stats);
                } else {
                    theirs.push(stats);
                }
            }
        }
        let a = Stats::merge(ours);
        let b = Stats::merge(theirs);
        let ratio = if b.rps() > 0.0 {
            a.rps() / b.rps()
        } else {
            0.0
        };
        report.insert(
            scenario.name.to_owned(),
            json!({
                "what": scenario.what,
                "flagpole": a.summary(),
                "peer": b.summary(),
                "ratio": ratio,
                "goal": scenario.goal,
            }),
        );
    }
    daemon.stop();
    peer.stop();
    Ok(json!({
        "rounds": rounds, "seconds_per_round": seconds, "connections": connections,
        "concurrency": concurrency, "server_cpu": cpu, "tls": tls.is_some(), "scenarios": report,
    }))
}

/// Binary size, cold start to ready, idle RSS, and the same with 10,000 flags.
async fn footprint(options: &Options) -> Result<Value, String> {
    let binary = options
        .text("flagpole")
        .ok_or("--flagpole BIN is required")?;
    let cpu = options.text("server-cpu");
    let size = std::fs::metadata(binary)
        .map_err(|e| format!("{binary}: {e}"))?
        .len();
    let small = daemon::load_document();
    let large = daemon::large_document(10_000);
    let mut starts = Vec::new();
    let mut idle = None;
    for run in 0..5 {
        let started = Instant::now();
        let d = Daemon::start(binary, cpu, &small, &[], None).await?;
        starts.push(d.ready_after.as_secs_f64() * 1e3);
        if run == 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            idle = Some(d.memory());
        }
        d.stop();
        let _ = started;
    }
    let mut large_starts = Vec::new();
    let mut large_memory = None;
    for run in 0..3 {
        let d = Daemon::start(binary, cpu, &large, &[], None).await?;
        large_starts.push(d.ready_after.as_secs_f64() * 1e3);
        if run == 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            large_memory = Some(d.memory());
        }
        d.stop();
    }
    starts.sort_by(f64::total_cmp);
    large_starts.sort_by(f64::total_cmp);
    Ok(json!({
        "binary_bytes": size,
        "cold_start_ms": starts,
        "cold_start_median_ms": starts[starts.len() / 2],
        "idle_memory": idle,
        "flags_100_document_bytes": small.len(),
        "flags_10000_document_bytes": large.len(),
        "flags_10000_ready_ms": large_starts,
        "flags_10000_ready_median_ms": large_starts[large_starts.len() / 2],
        "flags_10000_memory": large_memory,
    }))
}

fn usage() -> ExitCode {
    eprintln!("usage: loadgen load|subscribers|footprint --flagpole BIN [options] | loadgen peer");
    ExitCode::from(2)
}

fn fail(message: &str) -> ExitCode {
    eprintln!("loadgen: {message}");
    ExitCode::FAILURE
}
