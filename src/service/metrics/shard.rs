//! Per-thread counters: every series a thread records into is a counter cell only that
//! thread writes (a plain load + store, no lock prefix, no shared cache line), found through
//! a thread-local map that no other thread touches. Scrapes read every cell through the
//! registry, which is locked only when a thread creates a new cell and when scraping.
//!
//! Cells outlive their thread (the registry keeps them), so counts of finished threads are
//! not lost; a thread's cache forgets registries that have been dropped.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Upper bounds of the request-duration histogram (Prometheus' default buckets, as flagd).
pub(super) const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A counter with a single writer thread and any number of readers.
#[derive(Debug, Default)]
pub(super) struct Cell(AtomicU64);

impl Cell {
    /// Adds one. Only the owning thread calls this, so load + store cannot lose updates.
    fn increment(&self) {
        self.0
            .store(self.0.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// The current count.
    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

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

/// One thread's histogram of one series (single writer, like [`Cell`]).
#[derive(Debug, Default)]
pub(super) struct HistogramCell {
    buckets: [Cell; DURATION_BUCKETS.len() + 1],
    /// `f64` bits of the sum.
    sum: AtomicU64,
}

impl HistogramCell {
    fn observe(&self, value: f64) {
        let index = DURATION_BUCKETS
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[index].increment();
        let sum = f64::from_bits(self.sum.load(Ordering::Relaxed)) + value;
        self.sum.store(sum.to_bits(), Ordering::Relaxed);
    }
}

/// A histogram merged from several threads' cells (for rendering).
#[derive(Debug, Clone, Default)]
pub(super) struct Histogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    pub buckets: [u64; DURATION_BUCKETS.len() + 1],
    /// Sum of all observations.
    pub sum: f64,
}

impl Histogram {
    /// Adds one thread's observations.
    pub(super) fn add(&mut self, cell: &HistogramCell) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&cell.buckets) {
            *mine += theirs.get();
        }
        self.sum += f64::from_bits(cell.sum.load(Ordering::Relaxed));
    }
}

/// Labels of a successful-evaluation series: key, variant, reason.
pub(super) type SuccessLabels = (Box<str>, Box<str>, &'static str);

/// Labels of a failed-evaluation series: reason, error code.
pub(super) type FailureLabels = (&'static str, &'static str);

/// A thread's success cells of one key label: (variant, reason, cell).
type KeySeries = Vec<(Box<str>, &'static str, Arc<Cell>)>;

/// Every cell of one metrics instance, for scrapes.
#[derive(Debug)]
pub(super) struct Registry {
    id: u64,
    successes: Mutex<Vec<(SuccessLabels, Arc<Cell>)>>,
    failures: Mutex<Vec<(FailureLabels, Arc<Cell>)>>,
    http: Mutex<Vec<(HttpSeries, Arc<HistogramCell>)>>,
}

/// FNV-1a: flag keys are short and chosen by the operator (only admitted keys are stored),
/// so a fast non-keyed hash is fine here.
#[derive(Default)]
pub(super) struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

pub(super) type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// One thread's view of one registry: its own cells by label.
#[derive(Default)]
pub(super) struct Local {
    /// Key label → (variant, reason, cell).
    successes: FnvMap<Box<str>, KeySeries>,
    failures: Vec<(FailureLabels, Arc<Cell>)>,
    http: FnvMap<HttpSeries, Arc<HistogramCell>>,
}

thread_local! {
    static LOCAL: RefCell<Vec<(u64, Weak<Registry>, Local)>> = const { RefCell::new(Vec::new()) };
}

/// Distinguishes metrics instances inside the thread-local caches (tests run several daemons).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Registry {
    /// A registry with no cells yet.
    pub(super) fn new() -> Arc<Registry> {
        Arc::new(Registry {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            successes: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            http: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` with the calling thread's cache for this registry.
    pub(super) fn with_local<R>(self: &Arc<Self>, f: impl FnOnce(&mut Local) -> R) -> R {
        LOCAL.with(|cache| {
            let mut cache = cache.borrow_mut();
            let index = match cache.iter().position(|(id, _, _)| *id == self.id) {
                Some(index) => index,
                None => {
                    cache.retain(|(_, owner, _)| owner.strong_count() > 0);
                    cache.push((self.id, Arc::downgrade(self), Local::default()));
                    cache.len() - 1
                }
            };
            f(&mut cache[index].2)
        })
    }

    /// Counts a success under already-bounded labels, in the calling thread's cell.
    pub(super) fn success(
        &self,
        local: &mut Local,
        key: &str,
        variant: &str,
        reason: &'static str,
    ) {
        let series = match local.successes.get_mut(key) {
            Some(series) => series,
            None => local.successes.entry(key.into()).or_default(),
        };
        let found = series
            .iter()
            .find(|(v, r, _)| &**v == variant && (std::ptr::eq(*r, reason) || *r == reason));
        match found {
            Some((_, _, cell)) => cell.increment(),
            None => {
                let cell = Arc::new(Cell::default());
                cell.increment();
                lock(&self.successes).push(((key.into(), variant.into(), reason), cell.clone()));
                series.push((variant.into(), reason, cell));
            }
        }
    }

    /// Whether this thread already has a series for `key`.
    pub(super) fn knows(local: &Local, key: &str) -> bool {
        local.successes.contains_key(key)
    }

    /// Counts a failure (reason, error code) in the calling thread's cell.
    pub(super) fn failure(&self, local: &mut Local, reason: &'static str, code: &'static str) {
        match local.failures.iter().find(|(k, _)| *k == (reason, code)) {
            Some((_, cell)) => cell.increment(),
            None => {
                let cell = Arc::new(Cell::default());
                cell.increment();
                lock(&self.failures).push(((reason, code), cell.clone()));
                local.failures.push(((reason, code), cell));
            }
        }
    }

    /// Records a request duration in the calling thread's histogram for `series`.
    pub(super) fn request(&self, local: &mut Local, series: HttpSeries, seconds: f64) {
        let cell = local.http.entry(series).or_insert_with(|| {
            let cell = Arc::new(HistogramCell::default());
            lock(&self.http).push((series, cell.clone()));
            cell
        });
        cell.observe(seconds);
    }

    /// Visits every success cell with its labels.
    pub(super) fn for_each_success(&self, mut f: impl FnMut(&SuccessLabels, u64)) {
        for (labels, cell) in lock(&self.successes).iter() {
            f(labels, cell.get());
        }
    }

    /// Visits every failure cell with its labels.
    pub(super) fn for_each_failure(&self, mut f: impl FnMut(FailureLabels, u64)) {
        for (labels, cell) in lock(&self.failures).iter() {
            f(*labels, cell.get());
        }
    }

    /// Visits every histogram cell with its series.
    pub(super) fn for_each_request(&self, mut f: impl FnMut(HttpSeries, &HistogramCell)) {
        for (series, cell) in lock(&self.http).iter() {
            f(*series, cell);
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

    fn total(registry: &Registry) -> u64 {
        let mut total = 0;
        registry.for_each_success(|_, count| total += count);
        total
    }

    #[test]
    fn cells_are_per_thread_and_survive_their_thread() {
        let registry = Registry::new();
        registry.with_local(|l| registry.success(l, "k", "on", "STATIC"));
        registry.with_local(|l| registry.success(l, "k", "on", "STATIC"));
        let other = registry.clone();
        std::thread::spawn(move || {
            for _ in 0..10 {
                other.with_local(|l| other.success(l, "k", "on", "STATIC"));
            }
        })
        .join()
        .unwrap();
        let mut cells = 0;
        registry.for_each_success(|_, _| cells += 1);
        assert_eq!(cells, 2, "one cell per thread");
        assert_eq!(total(&registry), 12);
    }

    #[test]
    fn registries_do_not_share_cells() {
        let a = Registry::new();
        let b = Registry::new();
        a.with_local(|l| a.success(l, "k", "v", "STATIC"));
        b.with_local(|l| b.success(l, "k", "v", "STATIC"));
        b.with_local(|l| b.success(l, "k", "v", "STATIC"));
        assert_eq!(total(&a), 1);
        assert_eq!(total(&b), 2);
    }

    #[test]
    fn histogram_buckets_are_upper_bounds() {
        let cell = HistogramCell::default();
        cell.observe(0.005);
        cell.observe(0.006);
        cell.observe(100.0);
        let mut h = Histogram::default();
        h.add(&cell);
        assert_eq!(h.buckets[0], 1);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[DURATION_BUCKETS.len()], 1);
        assert!((h.sum - 100.011).abs() < 1e-9);
    }
}
