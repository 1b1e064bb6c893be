//! CloudWatch Embedded Metric Format (EMF): the few figures an operator alarms on, written as
//! JSON log lines that CloudWatch Logs turns into metrics. On ECS the `awslogs` driver ships
//! stdout, so the stack's alarms need no metrics sidecar or Prometheus scraper.
//!
//! Every interval the daemon writes one line without dimensions (the task's figures, what the
//! alarms read) and one line per flag source (dimension `Source`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::{Metrics, Totals};
use crate::store::SourceInfo;
use crate::sync::SourceStats;

/// What the previous interval's counters were, to report per-interval counts.
#[derive(Debug, Default, Clone, Copy)]
pub struct EmfState {
    totals: Totals,
    rejected: u64,
}

/// The EMF lines for one interval; updates `state` to the counters now.
pub fn emf_lines(
    namespace: &str,
    totals: Totals,
    applied: &[SourceInfo],
    stats: &[SourceStats],
    now: SystemTime,
    state: &mut EmfState,
) -> Vec<String> {
    let millis = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let age = |at: SystemTime| now.duration_since(at).unwrap_or_default().as_secs_f64();
    let rejected: u64 = stats.iter().map(|s| s.rejected).sum();

    let mut task = Map::new();
    let mut names = Vec::new();
    let mut put = |fields: &mut Map<String, Value>, name: &str, unit: &str, value: Value| {
        fields.insert(name.to_owned(), value);
        names.push(json!({"Name": name, "Unit": unit}));
    };
    if let Some(newest) = applied.iter().map(|s| s.applied_at).max() {
        put(
            &mut task,
            "ConfigurationAgeSeconds",
            "Seconds",
            json!(age(newest)),
        );
    }
    // The oldest last successful read among the sources: a stale source shows here.
    if let Some(oldest) = stats.iter().filter_map(|s| s.last_success).min() {
        put(
            &mut task,
            "SecondsSinceLastSync",
            "Seconds",
            json!(age(oldest)),
        );
    }
    let delta = |now: u64, before: u64| now.saturating_sub(before);
    put(
        &mut task,
        "RejectedDocuments",
        "Count",
        json!(delta(rejected, state.rejected)),
    );
    put(
        &mut task,
        "Evaluations",
        "Count",
        json!(delta(totals.evaluations, state.totals.evaluations)),
    );
    put(
        &mut task,
        "EvaluationErrors",
        "Count",
        json!(delta(totals.errors, state.totals.errors)),
    );
    put(
        &mut task,
        "OpenStreams",
        "Count",
        json!(totals.open_streams),
    );
    let mut lines = vec![line(namespace, millis, &[], names, task)];

    for info in applied {
        let mut fields = Map::new();
        fields.insert("Source".to_owned(), json!(&*info.uri));
        let mut names = vec![json!({"Name": "ConfigurationAgeSeconds", "Unit": "Seconds"})];
        fields.insert(
            "ConfigurationAgeSeconds".to_owned(),
            json!(age(info.applied_at)),
        );
        let last = stats.iter().find(|s| *s.uri == *info.uri);
        if let Some(at) = last.and_then(|s| s.last_success) {
            names.push(json!({"Name": "SecondsSinceLastSync", "Unit": "Seconds"}));
            fields.insert("SecondsSinceLastSync".to_owned(), json!(age(at)));
        }
        lines.push(line(namespace, millis, &["Source"], names, fields));
    }
    *state = EmfState { totals, rejected };
    lines
}

fn line(
    namespace: &str,
    millis: u64,
    dimensions: &[&str],
    metrics: Vec<Value>,
    mut fields: Map<String, Value>,
) -> String {
    fields.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": millis,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [dimensions],
                "Metrics": metrics,
            }],
        }),
    );
    Value::Object(fields).to_string()
}

/// Writes the EMF lines to stdout every `interval` until `shutdown` completes.
pub async fn run_emf(
    interval: Duration,
    namespace: String,
    metrics: std::sync::Arc<Metrics>,
    sources: impl Fn() -> (Vec<SourceInfo>, Vec<SourceStats>) + Send,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    use std::io::Write as _;
    let mut state = EmfState::default();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate: report after one interval
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticks.tick() => {}
        }
        let (applied, stats) = sources();
        let lines = emf_lines(
            &namespace,
            metrics.totals(),
            &applied,
            &stats,
            SystemTime::now(),
            &mut state,
        );
        // One write per line under stdout's lock, so lines never interleave with the logs.
        let mut out = std::io::stdout().lock();
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn stats(uri: &str, rejected: u64, last_success: Option<SystemTime>) -> SourceStats {
        SourceStats {
            uri: uri.to_owned(),
            provider: "s3".to_owned(),
            applied: 1,
            rejected,
            unavailable: 0,
            ready: true,
            last_error: None,
            errors: 0,
            fetched: 1,
            not_modified: 0,
            last_success,
            from_cache: false,
            restarts: 0,
            down: None,
        }
    }

    #[test]
    fn lines_carry_the_alarm_figures_as_emf() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let info = SourceInfo {
            uri: Arc::from("s3://b/flags/flags.json"),
            priority: 0,
            flags: 3,
            applied_at: now - Duration::from_secs(120),
            applies: 1,
        };
        let totals = Totals {
            evaluations: 10,
            errors: 2,
            open_streams: 3,
        };
        let mut state = EmfState::default();
        let source = stats(
            "s3://b/flags/flags.json",
            1,
            Some(now - Duration::from_secs(30)),
        );
        let lines = emf_lines(
            "flagpole/test",
            totals,
            std::slice::from_ref(&info),
            std::slice::from_ref(&source),
            now,
            &mut state,
        );
        assert_eq!(lines.len(), 2);
        let task: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(task["_aws"]["Timestamp"], 1_000_000_000u64);
        let directive = &task["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "flagpole/test");
        assert_eq!(directive["Dimensions"], json!([[]]));
        let names: Vec<&str> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "ConfigurationAgeSeconds",
                "SecondsSinceLastSync",
                "RejectedDocuments",
                "Evaluations",
                "EvaluationErrors",
                "OpenStreams"
            ]
        );
        // Every named metric has its value at the top level, as EMF requires.
        for name in names {
            assert!(task[name].is_number(), "{name}");
        }
        assert_eq!(task["ConfigurationAgeSeconds"], 120.0);
        assert_eq!(task["SecondsSinceLastSync"], 30.0);
        assert_eq!(task["Evaluations"], 10);
        let per_source: Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(per_source["Source"], "s3://b/flags/flags.json");
        assert_eq!(
            per_source["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Source"]])
        );

        // The next interval reports only what happened since.
        let later = Totals {
            evaluations: 15,
            errors: 2,
            open_streams: 1,
        };
        let lines = emf_lines("flagpole/test", later, &[info], &[source], now, &mut state);
        let task: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(task["Evaluations"], 5);
        assert_eq!(task["EvaluationErrors"], 0);
        assert_eq!(task["RejectedDocuments"], 0);
        assert_eq!(task["OpenStreams"], 1);
    }

    #[test]
    fn a_daemon_without_configuration_reports_counts_only() {
        let mut state = EmfState::default();
        let lines = emf_lines(
            "flagpole",
            Totals::default(),
            &[],
            &[],
            SystemTime::now(),
            &mut state,
        );
        assert_eq!(lines.len(), 1);
        let task: Value = serde_json::from_str(&lines[0]).unwrap();
        assert!(task.get("SecondsSinceLastSync").is_none());
        assert_eq!(task["RejectedDocuments"], 0);
    }
}
