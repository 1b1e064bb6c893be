//! The current merged configuration: an immutable [`Snapshot`] swapped atomically, merged
//! from every source by priority, with per-change diffs and change notifications.
//!
//! Readers call [`Store::snapshot`] (a lock-free `arc-swap` load) and never block writers.
//! Writers (the sync supervisor) serialize on a mutex that readers never touch.
//!
//! Unlike flagd, the store keeps every source's flags, so when a higher-priority source drops
//! a key the lower-priority copy reappears at once (see `docs/store.md`).

mod selector;
mod snapshot;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use tokio::sync::watch;

pub use selector::{Selector, SelectorError};
pub use snapshot::{ChangeKind, Changes, Snapshot, StoredFlag};

use crate::flags::FlagDocument;

/// What the store knows about one source (for management and metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// The stored source URI.
    pub uri: Arc<str>,
    /// Its priority (index; higher wins).
    pub priority: usize,
    /// How many flags its last applied document had (after per-(flagSetId, key) dedup).
    pub flags: usize,
    /// When its last document was applied.
    pub applied_at: SystemTime,
    /// How many documents it has applied so far.
    pub applies: u64,
}

/// A borrowed [`Snapshot`] for the length of one request (see [`Store::current`]).
pub struct Current(arc_swap::Guard<Arc<Snapshot>>);

impl std::ops::Deref for Current {
    type Target = Snapshot;

    #[inline]
    fn deref(&self) -> &Snapshot {
        &self.0
    }
}

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Current").field(&self.0.version).finish()
    }
}

/// One source's last applied flags.
#[derive(Debug)]
struct SourceState {
    info: SourceInfo,
    flags: Vec<StoredFlag>,
}

/// Writer-side state: every source's flags, from which snapshots are rebuilt.
#[derive(Debug, Default)]
struct Sources {
    by_uri: BTreeMap<Arc<str>, SourceState>,
    version: u64,
}

/// The merged configuration of all sources, shared by every service.
#[derive(Debug)]
pub struct Store {
    current: ArcSwap<Snapshot>,
    notify: watch::Sender<Arc<Snapshot>>,
    sources: Mutex<Sources>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        let empty = Arc::new(Snapshot::default());
        let (notify, _) = watch::channel(empty.clone());
        Store {
            current: ArcSwap::new(empty),
            notify,
            sources: Mutex::new(Sources::default()),
        }
    }

    /// The configuration in force now (lock-free).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The configuration in force now, borrowed for one request: unlike [`Store::snapshot`]
    /// it writes nothing shared (arc-swap marks the borrow in a slot of the calling thread
    /// instead of bumping the snapshot's shared reference count). Hold it only briefly, and
    /// never across an `.await`.
    #[inline]
    pub fn current(&self) -> Current {
        Current(self.current.load())
    }

    /// A receiver that sees every new snapshot (for event and sync streams).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.notify.subscribe()
    }

    /// Replaces every flag of source `source` (priority = its index; higher wins) with
    /// `document`'s flags and publishes the new snapshot.
    ///
    /// Within one document a repeated (flagSetId, key) keeps the last copy, as flagd does.
    pub fn apply(&self, priority: usize, source: &str, document: FlagDocument) -> Arc<Snapshot> {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let uri: Arc<str> = match sources.by_uri.get_key_value(source) {
            Some((uri, _)) => uri.clone(),
            None => source.into(),
        };
        let mut deduped: BTreeMap<(Option<String>, String), StoredFlag> = BTreeMap::new();
        for flag in document.flags {
            deduped.insert(
                (flag.flag_set_id.clone(), flag.key.clone()),
                StoredFlag {
                    flag: Arc::new(flag),
                    source: uri.clone(),
                    priority,
                },
            );
        }
        let flags: Vec<StoredFlag> = deduped.into_values().collect();
        let applies = sources.by_uri.get(source).map_or(0, |s| s.info.applies) + 1;
        let info = SourceInfo {
            uri: uri.clone(),
            priority,
            flags: flags.len(),
            applied_at: SystemTime::now(),
            applies,
        };
        sources.by_uri.insert(uri, SourceState { info, flags });
        self.publish(&mut sources)
    }

    /// Removes every flag of `source` and publishes the new snapshot (no-op if unknown).
    pub fn remove(&self, source: &str) -> Arc<Snapshot> {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if sources.by_uri.remove(source).is_none() {
            return self.snapshot();
        }
        self.publish(&mut sources)
    }

    /// Moves sources to new priorities (`(uri, priority)`; unknown URIs are skipped) in one
    /// snapshot, without re-reading them: a reordering is one change, not a removal and a
    /// re-add. Publishes nothing when no priority changes.
    pub fn reprioritize(&self, changes: &[(&str, usize)]) -> Arc<Snapshot> {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = false;
        for (uri, priority) in changes {
            if let Some(state) = sources.by_uri.get_mut(*uri) {
                if state.info.priority != *priority {
                    state.info.priority = *priority;
                    for flag in &mut state.flags {
                        flag.priority = *priority;
                    }
                    changed = true;
                }
            }
        }
        if !changed {
            return self.snapshot();
        }
        self.publish(&mut sources)
    }

    /// What each applied source last delivered, ordered by URI.
    pub fn sources(&self) -> Vec<SourceInfo> {
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.by_uri.values().map(|s| s.info.clone()).collect()
    }

    /// Rebuilds, swaps in and announces a snapshot; called with the writer lock held so
    /// versions and notifications stay in order.
    fn publish(&self, sources: &mut Sources) -> Arc<Snapshot> {
        sources.version += 1;
        let snapshot = Arc::new(Snapshot::build(
            sources.version,
            sources
                .by_uri
                .iter()
                .map(|(uri, s)| (uri, s.info.priority, s.flags.as_slice())),
        ));
        self.current.store(snapshot.clone());
        self.notify.send_replace(snapshot.clone());
        snapshot
    }
}

#[cfg(test)]
mod tests;
