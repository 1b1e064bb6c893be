//! Prometheus metrics under flagd's names (spec 7.2) plus flagpole's own sync-health gauges,
//! rendered in the Prometheus text format (0.0.4) on the management port.
//!
//! Recording is built for the evaluation hot path: every thread counts into its own cells
//! ([`shard`]), found through a thread-local map, so an evaluation takes no lock, writes no
//! shared cache line and does not allocate once its key/variant/reason series exists.
//! Scrapes sum the cells.
//!
//! Label cardinality is bounded: the first `metrics_key_limit` distinct flag keys get their
//! own series; evaluations of any further key are counted under key and variant
//! [`OVERFLOW_LABEL`]. HTTP routes come from a closed set chosen by the caller.

mod emf;
mod exposition;
mod http;
mod labels;
mod shard;

pub use emf::{emf_lines, run_emf, EmfState};

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use labels::SourceLabels;

pub use http::{grpc_route, HttpMetricsLayer, HttpMetricsService, ResponseFuture};

use exposition::Family;
use shard::{lock, Histogram, HttpSeries, Registry, DURATION_BUCKETS};

use crate::store::SourceInfo;
use crate::sync::SourceStats;

/// The `feature_flag.provider.name` flagd reports.
const PROVIDER_NAME: &str = "flagd";

/// The key (and variant) label of evaluations beyond the key limit.
pub const OVERFLOW_LABEL: &str = "__other__";

/// Running totals for the EMF lines: evaluations and errors since start, open streams now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Evaluations since start (successes and failures).
    pub evaluations: u64,
    /// Of those, the ones that ended in an error.
    pub errors: u64,
    /// Open EventStream and SyncFlags streams.
    pub open_streams: i64,
}

/// Every metric of one daemon.
#[derive(Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    keys: KeyLimiter,
    event_streams: AtomicI64,
    sync_streams: Mutex<BTreeMap<(String, String), i64>>,
}

/// Decides which flag keys may become label values.
#[derive(Debug)]
struct KeyLimiter {
    limit: usize,
    admitted: RwLock<HashSet<Box<str>>>,
}

impl KeyLimiter {
    /// Whether `key` has (or now gets) its own series.
    fn admit(&self, key: &str) -> bool {
        {
            let admitted = self.admitted.read().unwrap_or_else(|e| e.into_inner());
            if admitted.contains(key) {
                return true;
            }
            if admitted.len() >= self.limit {
                return false;
            }
        }
        let mut admitted = self.admitted.write().unwrap_or_else(|e| e.into_inner());
        if admitted.len() >= self.limit && !admitted.contains(key) {
            return false;
        }
        admitted.insert(key.into());
        true
    }
}

/// The result of one evaluation as the metrics see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvaluationResult<'a> {
    /// A value (or a DISABLED / code-default answer): variant (`""` if none) and reason.
    Success {
        /// The variant name, `""` when there is none.
        variant: &'a str,
        /// The reason string.
        reason: &'static str,
    },
    /// An error: flagd's error code (`FLAG_NOT_FOUND`, `TYPE_MISMATCH`, ...).
    Failure {
        /// The error code string.
        code: &'static str,
    },
}

/// Decrements an open-stream gauge when the stream ends.
#[derive(Debug)]
pub struct StreamGuard {
    metrics: Arc<Metrics>,
    kind: StreamKind,
}

#[derive(Debug)]
enum StreamKind {
    Event,
    Sync(String, String),
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        match &self.kind {
            StreamKind::Event => {
                self.metrics.event_streams.fetch_sub(1, Ordering::Relaxed);
            }
            StreamKind::Sync(selector, provider) => {
                let mut streams = lock(&self.metrics.sync_streams);
                let key = (selector.clone(), provider.clone());
                if let Some(count) = streams.get_mut(&key) {
                    *count -= 1;
                    // Series of finished streams go away, so client-chosen provider ids
                    // cannot accumulate.
                    if *count <= 0 {
                        streams.remove(&key);
                    }
                }
            }
        }
    }
}

impl Metrics {
    /// Metrics giving at most `key_limit` flag keys their own series.
    pub fn new(key_limit: usize) -> Metrics {
        Metrics {
            registry: Registry::new(),
            keys: KeyLimiter {
                limit: key_limit,
                admitted: RwLock::new(HashSet::new()),
            },
            event_streams: AtomicI64::new(0),
            sync_streams: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one flag evaluation (impression on success, result reason always).
    pub fn evaluation(&self, key: &str, result: EvaluationResult<'_>) {
        let registry = &self.registry;
        registry.with_local(|local| self.count(local, key, result));
    }

    /// Counts the evaluations of one bulk request with one look-up of the thread's cells.
    fn evaluations<'a>(&self, results: impl Iterator<Item = (&'a str, EvaluationResult<'a>)>) {
        let registry = &self.registry;
        registry.with_local(|local| {
            for (key, result) in results {
                self.count(local, key, result);
            }
        });
    }

    fn count(&self, local: &mut shard::Local, key: &str, result: EvaluationResult<'_>) {
        let registry = &self.registry;
        match result {
            EvaluationResult::Success { variant, reason } => {
                if Registry::knows(local, key) || self.keys.admit(key) {
                    registry.success(local, key, variant, reason);
                } else {
                    registry.success(local, OVERFLOW_LABEL, OVERFLOW_LABEL, reason);
                }
            }
            EvaluationResult::Failure { code } => registry.failure(local, "ERROR", code),
        }
    }

    /// Records one HTTP request's duration (see [`HttpMetricsLayer`]).
    pub fn request(
        &self,
        service: &'static str,
        route: &'static str,
        method: &'static str,
        status: u16,
        duration: Duration,
    ) {
        let series = HttpSeries {
            service,
            route,
            method,
            status,
        };
        let registry = &self.registry;
        registry.with_local(|local| registry.request(local, series, duration.as_secs_f64()));
    }

    /// Counts an open EventStream until the guard drops.
    pub fn event_stream_opened(self: &Arc<Self>) -> StreamGuard {
        self.event_streams.fetch_add(1, Ordering::Relaxed);
        StreamGuard {
            metrics: self.clone(),
            kind: StreamKind::Event,
        }
    }

    /// Counts an open SyncFlags stream until the guard drops.
    pub fn sync_stream_opened(self: &Arc<Self>, selector: &str, provider_id: &str) -> StreamGuard {
        let key = (selector.to_owned(), provider_id.to_owned());
        *lock(&self.sync_streams).entry(key.clone()).or_default() += 1;
        StreamGuard {
            metrics: self.clone(),
            kind: StreamKind::Sync(key.0, key.1),
        }
    }

    /// Evaluation and error counts since start, and the streams open now.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        self.registry
            .for_each_success(|_, count| totals.evaluations += count);
        self.registry.for_each_failure(|_, count| {
            totals.evaluations += count;
            totals.errors += count;
        });
        totals.open_streams = self.event_streams.load(Ordering::Relaxed)
            + lock(&self.sync_streams).values().sum::<i64>();
        totals
    }

    /// Appends every metric this instance records, in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        type Impressions = BTreeMap<(Box<str>, Box<str>, &'static str), u64>;
        let mut impressions: Impressions = BTreeMap::new();
        let mut failures: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
        let mut http: BTreeMap<HttpSeries, Histogram> = BTreeMap::new();
        self.registry.for_each_success(|labels, count| {
            *impressions.entry(labels.clone()).or_default() += count;
        });
        self.registry.for_each_failure(|labels, count| {
            *failures.entry(labels).or_default() += count;
        });
        self.registry.for_each_request(|series, cell| {
            http.entry(series).or_default().add(cell);
        });

        let mut family = Family::counter(
            out,
            "feature_flag_flagd_impression_total",
            "Measures the number of evaluations for a given flag.",
        );
        for ((key, variant, reason), count) in &impressions {
            family.sample(
                &[
                    ("feature_flag_key", key),
                    ("feature_flag_provider_name", PROVIDER_NAME),
                    ("feature_flag_reason", reason),
                    ("feature_flag_result_variant", variant),
                ],
                *count as f64,
            );
        }

        let mut by_reason: BTreeMap<(&str, &'static str), u64> = BTreeMap::new();
        for ((key, _, reason), count) in &impressions {
            *by_reason.entry((key, reason)).or_default() += count;
        }
        let mut family = Family::counter(
            out,
            "feature_flag_flagd_result_reason_total",
            "Measures the number of evaluations for a given reason.",
        );
        for ((reason, code), count) in &failures {
            family.sample(
                &[
                    ("ExceptionTypeKeyName", code),
                    ("feature_flag_provider_name", PROVIDER_NAME),
                    ("feature_flag_reason", reason),
                ],
                *count as f64,
            );
        }
        for ((key, reason), count) in &by_reason {
            family.sample(
                &[
                    ("feature_flag_key", key),
                    ("feature_flag_provider_name", PROVIDER_NAME),
                    ("feature_flag_reason", reason),
                ],
                *count as f64,
            );
        }

        let mut family = Family::histogram(
            out,
            "http_server_request_duration_seconds",
            "Measures the duration of inbound HTTP requests.",
        );
        for (series, histogram) in &http {
            let status = series.status.to_string();
            let labels = [
                ("http_request_method", series.method),
                ("http_response_status_code", status.as_str()),
                ("http_route", series.route),
                ("service_name", series.service),
                ("url_scheme", "http"),
            ];
            family.series(&labels, &DURATION_BUCKETS, histogram);
        }

        let mut family = Family::gauge(
            out,
            "feature_flag_flagd_sync_active_streams",
            "Measures the number of currently active gRPC sync streaming connections.",
        );
        for ((selector, provider), count) in lock(&self.sync_streams).iter() {
            if provider.is_empty() {
                family.sample(&[("selector", selector)], *count as f64);
            } else {
                family.sample(
                    &[("provider_id", provider), ("selector", selector)],
                    *count as f64,
                );
            }
        }

        let mut family = Family::gauge(
            out,
            "flagpole_event_streams_open",
            "Open EventStream calls (all evaluation API versions).",
        );
        family.sample(&[], self.event_streams.load(Ordering::Relaxed) as f64);
    }
}

/// Appends the per-source sync metrics: configuration age (newest overall and per source),
/// last apply and last successful read, payloads applied and rejected, readiness, read errors
/// and fetch results. Labels are bounded: one `source` per configured source or queue, named
/// as `labels` says (account ids masked unless `--metrics-source-uris`).
pub fn render_sources(
    out: &mut String,
    applied: &[SourceInfo],
    stats: &[SourceStats],
    now: SystemTime,
    labels: SourceLabels,
) {
    let unix = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let mut family = Family::gauge(
        out,
        "flagpole_configuration_age_seconds",
        "Seconds since the last flag configuration was applied (any source).",
    );
    if let Some(newest) = applied.iter().map(|s| s.applied_at).max() {
        let age = now.duration_since(newest).unwrap_or_default();
        family.sample(&[], age.as_secs_f64());
    }
    let mut family = Family::gauge(
        out,
        "flagpole_source_configuration_age_seconds",
        "Seconds since the source's current configuration was applied.",
    );
    for info in applied {
        let age = now.duration_since(info.applied_at).unwrap_or_default();
        family.sample(&[("source", &labels.label(&info.uri))], age.as_secs_f64());
    }
    let mut family = Family::gauge(
        out,
        "flagpole_source_last_sync_timestamp_seconds",
        "Unix time of the source's last successfully applied configuration.",
    );
    for info in applied {
        family.sample(
            &[("source", &labels.label(&info.uri))],
            unix(info.applied_at),
        );
    }
    let unix_time = |at: Option<SystemTime>| at.map(&unix);
    // Declaration, name, help and one source's value (`None`: no sample), in output order.
    let families: [SourceFamily<'_>; 6] = [
        (
            counter,
            "flagpole_source_applied_payloads_total",
            "Configurations from the source that were parsed and applied.",
            &|s| Some(s.applied as f64),
        ),
        (
            counter,
            "flagpole_source_rejected_payloads_total",
            "Payloads from the source that were not applied (invalid or source unavailable).",
            &|s| Some(s.rejected as f64),
        ),
        (
            gauge,
            "flagpole_source_ready",
            "1 once the source has applied a valid configuration.",
            &|s| Some(if s.ready { 1.0 } else { 0.0 }),
        ),
        (
            gauge,
            "flagpole_source_from_cache",
            "1 while the source is served from its --cache-dir copy because it has not answered.",
            &|s| Some(if s.from_cache { 1.0 } else { 0.0 }),
        ),
        // The read-level series move on every poll, unlike the payload counters, so an
        // outage shows even while the last good configuration keeps serving.
        (
            gauge,
            "flagpole_source_last_success_timestamp_seconds",
            "Unix time of the source's last successful read (a document or a not-modified answer) or, for an SQS queue, receive.",
            &|s| unix_time(s.last_success),
        ),
        (
            counter,
            "flagpole_source_errors_total",
            "Failed reads of the source or receives from the queue (every retry counts).",
            &|s| Some(s.errors as f64),
        ),
    ];
    for (declare, name, help, value) in families {
        let mut family = declare(out, name, help);
        for s in stats {
            if let Some(value) = value(s) {
                family.sample(&[("source", &labels.label(&s.uri))], value);
            }
        }
    }
    let mut family = Family::counter(
        out,
        "flagpole_source_fetches_total",
        "Successful reads of the source by result: changed (a document was transferred, HTTP 200) or not_modified (HTTP 304).",
    );
    for s in stats {
        family.sample(
            &[("result", "changed"), ("source", &labels.label(&s.uri))],
            s.fetched as f64,
        );
        family.sample(
            &[
                ("result", "not_modified"),
                ("source", &labels.label(&s.uri)),
            ],
            s.not_modified as f64,
        );
    }
}

/// Appends the supervision metrics: restarts of each source's task (and of the SQS consumer,
/// on its queues), whether it is down now, and inline SQS messages dropped as older than the
/// applied one. Sources are named as `labels` says, like [`render_sources`].
pub fn render_supervision(
    out: &mut String,
    stats: &[SourceStats],
    inline_dropped_older: u64,
    labels: SourceLabels,
) {
    let mut family = Family::counter(
        out,
        "flagpole_source_restarts_total",
        "Times the source's task (for a queue: the SQS consumer) panicked or ended unexpectedly and was started again.",
    );
    for s in stats {
        family.sample(&[("source", &labels.label(&s.uri))], s.restarts as f64);
    }
    let mut family = Family::gauge(
        out,
        "flagpole_source_down",
        "1 while the source's task is down, waiting to be restarted (its last good flags are still served).",
    );
    for s in stats {
        family.sample(
            &[("source", &labels.label(&s.uri))],
            if s.down.is_some() { 1.0 } else { 0.0 },
        );
    }
    let mut family = Family::counter(
        out,
        "flagpole_sqs_inline_dropped_total",
        "Inline SQS documents dropped (and deleted) because they were not newer than the applied one.",
    );
    family.sample(&[("reason", "older")], inline_dropped_older as f64);
}

/// A per-source family: declaration, name, help and one source's value (`None`: no sample).
type SourceFamily<'v> = (
    Declare,
    &'static str,
    &'static str,
    &'v dyn Fn(&SourceStats) -> Option<f64>,
);

/// How a family is declared: [`gauge`] or [`counter`].
type Declare = for<'o> fn(&'o mut String, &'static str, &str) -> Family<'o>;

/// [`Family::gauge`] as a function pointer of type [`Declare`].
fn gauge<'o>(out: &'o mut String, name: &'static str, help: &str) -> Family<'o> {
    Family::gauge(out, name, help)
}

/// [`Family::counter`] as a function pointer of type [`Declare`].
fn counter<'o>(out: &'o mut String, name: &'static str, help: &str) -> Family<'o> {
    Family::counter(out, name, help)
}

/// The evaluator reports every evaluation here; the error code arrives as such.
impl crate::evaluator::Observer for Metrics {
    fn evaluated(
        &self,
        flag_key: &str,
        result: Result<(&str, &'static str), crate::eval::ErrorCode>,
    ) {
        self.evaluation(flag_key, observed(result));
    }

    fn evaluated_all(&self, entries: &[crate::evaluator::BulkEntry]) {
        self.evaluations(
            entries
                .iter()
                .map(|entry| (entry.key.as_str(), observed(entry.result()))),
        );
    }
}

fn observed<'a>(
    result: Result<(&'a str, &'static str), crate::eval::ErrorCode>,
) -> EvaluationResult<'a> {
    match result {
        Ok((variant, reason)) => EvaluationResult::Success { variant, reason },
        Err(code) => EvaluationResult::Failure {
            code: code.as_str(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(metrics: &Metrics) -> String {
        let mut out = String::new();
        metrics.render(&mut out);
        out
    }

    #[test]
    fn successes_count_impressions_and_reasons() {
        let metrics = Metrics::new(10);
        let ok = EvaluationResult::Success {
            variant: "on",
            reason: "STATIC",
        };
        metrics.evaluation("flag", ok);
        metrics.evaluation("flag", ok);
        metrics.evaluation(
            "missing",
            EvaluationResult::Failure {
                code: "FLAG_NOT_FOUND",
            },
        );
        let text = rendered(&metrics);
        assert!(text.contains(
            "feature_flag_flagd_impression_total{feature_flag_key=\"flag\",feature_flag_provider_name=\"flagd\",feature_flag_reason=\"STATIC\",feature_flag_result_variant=\"on\"} 2\n"
        ), "{text}");
        assert!(text.contains(
            "feature_flag_flagd_result_reason_total{feature_flag_key=\"flag\",feature_flag_provider_name=\"flagd\",feature_flag_reason=\"STATIC\"} 2\n"
        ), "{text}");
        assert!(text.contains(
            "feature_flag_flagd_result_reason_total{ExceptionTypeKeyName=\"FLAG_NOT_FOUND\",feature_flag_provider_name=\"flagd\",feature_flag_reason=\"ERROR\"} 1\n"
        ), "{text}");
        assert!(!text.contains("missing"));
    }

    #[test]
    fn a_bulk_evaluation_counts_every_entry_like_single_ones() {
        use crate::eval::ErrorCode;
        use crate::evaluator::{BulkEntry, BulkValue, Observer as _};
        let entry = |key: &str, error: Option<ErrorCode>| BulkEntry {
            key: key.into(),
            reason: if error.is_some() { "ERROR" } else { "STATIC" },
            variant: if error.is_some() { "" } else { "on" }.into(),
            value: BulkValue::Bool(true),
            metadata: serde_json::Map::new(),
            error,
        };
        let entries = [
            entry("a", None),
            entry("b", Some(ErrorCode::TypeMismatch)),
            entry("a", None),
        ];
        let bulk = Metrics::new(10);
        bulk.evaluated_all(&entries);
        let single = Metrics::new(10);
        for entry in &entries {
            single.evaluated(&entry.key, entry.result());
        }
        let text = rendered(&bulk);
        assert_eq!(text, rendered(&single));
        assert!(text.contains(
            "feature_flag_flagd_impression_total{feature_flag_key=\"a\",feature_flag_provider_name=\"flagd\",feature_flag_reason=\"STATIC\",feature_flag_result_variant=\"on\"} 2\n"
        ), "{text}");
        assert!(text.contains(
            "feature_flag_flagd_result_reason_total{ExceptionTypeKeyName=\"TYPE_MISMATCH\",feature_flag_provider_name=\"flagd\",feature_flag_reason=\"ERROR\"} 1\n"
        ), "{text}");
    }

    #[test]
    fn keys_beyond_the_limit_share_one_series() {
        let metrics = Metrics::new(2);
        for key in ["a", "b", "c", "d", "a"] {
            metrics.evaluation(
                key,
                EvaluationResult::Success {
                    variant: key,
                    reason: "STATIC",
                },
            );
        }
        let text = rendered(&metrics);
        assert!(text.contains("feature_flag_key=\"a\",feature_flag_provider_name=\"flagd\",feature_flag_reason=\"STATIC\",feature_flag_result_variant=\"a\"} 2\n"), "{text}");
        assert!(text.contains("feature_flag_key=\"b\""));
        assert!(!text.contains("feature_flag_key=\"c\""));
        assert!(text.contains("feature_flag_key=\"__other__\",feature_flag_provider_name=\"flagd\",feature_flag_reason=\"STATIC\",feature_flag_result_variant=\"__other__\"} 2\n"), "{text}");
    }

    #[test]
    fn stream_gauges_follow_their_guards() {
        let metrics = Arc::new(Metrics::new(1));
        let a = metrics.sync_stream_opened("flagSetId=x", "p1");
        let b = metrics.sync_stream_opened("flagSetId=x", "p1");
        let e = metrics.event_stream_opened();
        let text = rendered(&metrics);
        assert!(text.contains("feature_flag_flagd_sync_active_streams{provider_id=\"p1\",selector=\"flagSetId=x\"} 2\n"), "{text}");
        assert!(text.contains("flagpole_event_streams_open 1\n"), "{text}");
        drop((a, b, e));
        let text = rendered(&metrics);
        assert!(!text.contains("provider_id=\"p1\""), "{text}");
        assert!(text.contains("flagpole_event_streams_open 0\n"), "{text}");
    }

    #[test]
    fn request_durations_render_cumulative_buckets() {
        let metrics = Metrics::new(1);
        metrics.request("flagd", "/x", "POST", 200, Duration::from_millis(1));
        metrics.request("flagd", "/x", "POST", 200, Duration::from_millis(30));
        let text = rendered(&metrics);
        let labels = "http_request_method=\"POST\",http_response_status_code=\"200\",http_route=\"/x\",service_name=\"flagd\",url_scheme=\"http\"";
        assert!(
            text.contains(&format!(
                "http_server_request_duration_seconds_bucket{{{labels},le=\"0.005\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "http_server_request_duration_seconds_bucket{{{labels},le=\"0.025\"}} 1\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "http_server_request_duration_seconds_bucket{{{labels},le=\"0.05\"}} 2\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "http_server_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 2\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "http_server_request_duration_seconds_count{{{labels}}} 2\n"
            )),
            "{text}"
        );
    }

    #[test]
    fn sources_render_age_and_counters() {
        let now = SystemTime::now();
        let info = SourceInfo {
            uri: "s3://b/k.json".into(),
            priority: 0,
            flags: 3,
            applied_at: now - Duration::from_secs(30),
            applies: 2,
        };
        let stats = SourceStats {
            uri: "s3://b/k.json".into(),
            provider: "s3".into(),
            applied: 2,
            rejected: 5,
            unavailable: 1,
            ready: true,
            last_error: None,
            errors: 0,
            fetched: 2,
            not_modified: 0,
            last_success: None,
            from_cache: false,
            restarts: 0,
            down: None,
        };
        let mut out = String::new();
        render_sources(&mut out, &[info], &[stats], now, SourceLabels::Uri);
        assert!(
            out.contains("flagpole_configuration_age_seconds 30\n"),
            "{out}"
        );
        assert!(
            out.contains("flagpole_source_rejected_payloads_total{source=\"s3://b/k.json\"} 5\n"),
            "{out}"
        );
        assert!(
            out.contains("flagpole_source_ready{source=\"s3://b/k.json\"} 1\n"),
            "{out}"
        );
    }

    #[test]
    fn source_labels_mask_account_ids_by_default() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_100);
        let queue = "https://sqs.eu-west-1.amazonaws.com/123456789012/flags";
        let stats = SourceStats {
            uri: queue.into(),
            provider: "sqs".into(),
            applied: 0,
            rejected: 0,
            unavailable: 0,
            ready: false,
            last_error: None,
            errors: 4,
            fetched: 0,
            not_modified: 0,
            last_success: None,
            from_cache: false,
            restarts: 2,
            down: Some("panicked".into()),
        };
        let mut out = String::new();
        render_sources(
            &mut out,
            &[],
            std::slice::from_ref(&stats),
            now,
            SourceLabels::default(),
        );
        render_supervision(&mut out, &[stats], 0, SourceLabels::default());
        assert!(!out.contains("123456789012"), "{out}");
        assert!(
            out.contains("flagpole_source_errors_total{source=\"https://sqs.eu-west-1.amazonaws.com/************/flags\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("flagpole_source_restarts_total{source=\"https://sqs.eu-west-1.amazonaws.com/************/flags\"} 2\n"),
            "{out}"
        );
    }

    #[test]
    fn sources_render_every_series_exactly() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_100);
        let s3 = "s3://b/k.json";
        let queue = "https://sqs.eu-west-1.amazonaws.com/1/q";
        let info = SourceInfo {
            uri: s3.into(),
            priority: 0,
            flags: 3,
            applied_at: now - Duration::from_secs(100),
            applies: 2,
        };
        let stats = [
            SourceStats {
                uri: s3.into(),
                provider: "s3".into(),
                applied: 2,
                rejected: 1,
                unavailable: 1,
                ready: true,
                last_error: Some("timeout".into()),
                errors: 7,
                fetched: 2,
                not_modified: 40,
                last_success: Some(now - Duration::from_secs(5)),
                from_cache: false,
                restarts: 0,
                down: None,
            },
            SourceStats {
                uri: queue.into(),
                provider: "sqs".into(),
                applied: 0,
                rejected: 0,
                unavailable: 0,
                ready: false,
                last_error: Some("unreachable".into()),
                errors: 3,
                fetched: 0,
                not_modified: 0,
                last_success: None,
                from_cache: false,
                restarts: 0,
                down: None,
            },
        ];
        let mut out = String::new();
        render_sources(&mut out, &[info], &stats, now, SourceLabels::Uri);
        let samples: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        let s3_label = format!("source=\"{s3}\"");
        let q_label = format!("source=\"{queue}\"");
        let expected = [
            "flagpole_configuration_age_seconds 100".to_owned(),
            format!("flagpole_source_configuration_age_seconds{{{s3_label}}} 100"),
            format!("flagpole_source_last_sync_timestamp_seconds{{{s3_label}}} 1700000000"),
            format!("flagpole_source_applied_payloads_total{{{s3_label}}} 2"),
            format!("flagpole_source_applied_payloads_total{{{q_label}}} 0"),
            format!("flagpole_source_rejected_payloads_total{{{s3_label}}} 1"),
            format!("flagpole_source_rejected_payloads_total{{{q_label}}} 0"),
            format!("flagpole_source_ready{{{s3_label}}} 1"),
            format!("flagpole_source_ready{{{q_label}}} 0"),
            format!("flagpole_source_from_cache{{{s3_label}}} 0"),
            format!("flagpole_source_from_cache{{{q_label}}} 0"),
            format!("flagpole_source_last_success_timestamp_seconds{{{s3_label}}} 1700000095"),
            format!("flagpole_source_errors_total{{{s3_label}}} 7"),
            format!("flagpole_source_errors_total{{{q_label}}} 3"),
            format!("flagpole_source_fetches_total{{result=\"changed\",{s3_label}}} 2"),
            format!("flagpole_source_fetches_total{{result=\"not_modified\",{s3_label}}} 40"),
            format!("flagpole_source_fetches_total{{result=\"changed\",{q_label}}} 0"),
            format!("flagpole_source_fetches_total{{result=\"not_modified\",{q_label}}} 0"),
        ];
        assert_eq!(samples, expected, "{out}");
        for family in [
            "# TYPE flagpole_source_configuration_age_seconds gauge\n",
            "# TYPE flagpole_source_last_success_timestamp_seconds gauge\n",
            "# TYPE flagpole_source_errors_total counter\n",
            "# TYPE flagpole_source_fetches_total counter\n",
            "# HELP flagpole_source_errors_total Failed reads of the source or receives from the queue (every retry counts).\n",
        ] {
            assert!(out.contains(family), "{family} missing from\n{out}");
        }
    }
}
