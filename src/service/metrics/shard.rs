//! Per-thread counter shards: each thread records into its own [`Shard`] behind a mutex only
//! it (and the occasional scrape) ever locks, so recording never contends across cores and
//! never writes a cache line another core is writing.
//!
//! A shard outlives its thread (the registry keeps it), so counts of finished threads are not
//! lost; a thread's list of shards forgets registries that have been dropped.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Upper bounds of the request-duration histogram (Prometheus' default buckets, as flagd).
pub(super) const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Successful evaluations of one key label: variant label → (reason, count) pairs.
pub(super) type VariantCounts = Vec<(Box<str>, Vec<(&'static str, u64)>)>;

/// The labels of one request-duration series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct HttpSeries {
    /// `service_name`.
    pub service: &'static str,
    /// `http_route` (bounded by the route classifier).
    pub route: &'static str,
    /// `http_request_method`.
    pub method: &'static str,
    /// `http_response_status_code`.
    pub status: u16,
}

/// One histogram's per-bucket (non-cumulative) counts, total count and sum.
#[derive(Debug, Clone, Default)]
pub(super) struct Histogram {
    /// Observations per bucket; index `DURATION_BUCKETS.len()` is `+Inf`.
    pub buckets: [u64; DURATION_BUCKETS.len() + 1],
    /// Sum of all observations.
    pub sum: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, value: f64) {
        let index = DURATION_BUCKETS
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[index] += 1;
        self.sum += value;
    }

    /// Adds `other`'s observations to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum += other.sum;
    }
}

/// Everything one thread has recorded for one metrics instance.
#[derive(Debug, Default)]
pub(super) struct Shard {
    /// Successful evaluations: key label → variant label → reason → count.
    pub successes: HashMap<Box<str>, VariantCounts>,
    /// Failed evaluations: (reason, error code) → count.
    pub failures: Vec<((&'static str, &'static str), u64)>,
    /// Request durations per series.
    pub http: HashMap<HttpSeries, Histogram>,
}

impl Shard {
    /// Counts one successful evaluation under already-bounded labels.
    pub fn success(&mut self, key: &str, variant: &str, reason: &'static str) {
        let variants = match self.successes.get_mut(key) {
            Some(variants) => variants,
            None => self.successes.entry(key.into()).or_default(),
        };
        let reasons = match variants.iter().position(|(v, _)| &**v == variant) {
            Some(i) => &mut variants[i].1,
            None => {
                variants.push((variant.into(), Vec::new()));
                &mut variants.last_mut().expect("just pushed").1
            }
        };
        match reasons
            .iter_mut()
            .find(|(r, _)| std::ptr::eq(*r, reason) || *r == reason)
        {
            Some((_, count)) => *count += 1,
            None => reasons.push((reason, 1)),
        }
    }

    /// Counts one failed evaluation.
    pub fn failure(&mut self, reason: &'static str, code: &'static str) {
        match self.failures.iter_mut().find(|(k, _)| *k == (reason, code)) {
            Some((_, count)) => *count += 1,
            None => self.failures.push(((reason, code), 1)),
        }
    }
}

/// Every shard of one metrics instance.
#[derive(Debug)]
pub(super) struct Shards {
    id: u64,
    all: Mutex<Vec<Arc<Mutex<Shard>>>>,
}

/// Distinguishes metrics instances inside the thread-local lists (tests run several daemons).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One thread's shard of one instance; the `Weak` tells when the instance is gone.
type LocalShard = (u64, Weak<Shards>, Arc<Mutex<Shard>>);

thread_local! {
    static LOCAL: RefCell<Vec<LocalShard>> = const { RefCell::new(Vec::new()) };
}

impl Shards {
    /// An instance with no shards yet.
    pub fn new() -> Arc<Shards> {
        Arc::new(Shards {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            all: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` on the calling thread's shard, creating it on first use.
    pub fn with<R>(self: &Arc<Self>, f: impl FnOnce(&mut Shard) -> R) -> R {
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            let index = match local.iter().position(|(id, _, _)| *id == self.id) {
                Some(index) => index,
                None => {
                    local.retain(|(_, owner, _)| owner.strong_count() > 0);
                    let shard = Arc::new(Mutex::new(Shard::default()));
                    lock(&self.all).push(shard.clone());
                    local.push((self.id, Arc::downgrade(self), shard));
                    local.len() - 1
                }
            };
            let result = f(&mut lock(&local[index].2));
            result
        })
    }

    /// Visits every shard (for a scrape).
    pub fn for_each(&self, mut f: impl FnMut(&Shard)) {
        let all: Vec<Arc<Mutex<Shard>>> = lock(&self.all).clone();
        for shard in all {
            f(&lock(&shard));
        }
    }
}

/// Locks, ignoring poisoning: counters stay usable after a panic elsewhere.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(shards: &Shards) -> u64 {
        let mut total = 0;
        shards.for_each(|s| {
            for variants in s.successes.values() {
                for (_, reasons) in variants {
                    total += reasons.iter().map(|(_, c)| c).sum::<u64>();
                }
            }
        });
        total
    }

    #[test]
    fn shards_are_per_thread_and_survive_their_thread() {
        let shards = Shards::new();
        shards.with(|s| s.success("k", "on", "STATIC"));
        shards.with(|s| s.success("k", "on", "STATIC"));
        let other = shards.clone();
        std::thread::spawn(move || {
            for _ in 0..10 {
                other.with(|s| s.success("k", "off", "TARGETING_MATCH"));
            }
        })
        .join()
        .unwrap();
        let mut per_shard = Vec::new();
        shards.for_each(|s| per_shard.push(s.successes["k"].len()));
        assert_eq!(per_shard.len(), 2);
        assert_eq!(total(&shards), 12);
    }

    #[test]
    fn instances_do_not_share_shards() {
        let a = Shards::new();
        let b = Shards::new();
        a.with(|s| s.success("k", "v", "STATIC"));
        b.with(|s| s.success("k", "v", "STATIC"));
        b.with(|s| s.success("k", "v", "STATIC"));
        assert_eq!(total(&a), 1);
        assert_eq!(total(&b), 2);
    }

    #[test]
    fn histogram_buckets_are_upper_bounds() {
        let mut h = Histogram::default();
        h.observe(0.005);
        h.observe(0.006);
        h.observe(100.0);
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[DURATION_BUCKETS.len()], 1);
        assert!((h.sum - 100.011).abs() < 1e-9);
    }
}
