//! The current merged configuration: an immutable [`Snapshot`] swapped atomically, merged
//! from every source by priority, with per-change diffs and change notifications.
//!
//! Readers call [`Store::snapshot`] (a lock-free `arc-swap` load) and never block writers.

mod selector;
mod snapshot;

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

pub use selector::{Selector, SelectorError};
pub use snapshot::{ChangeKind, Snapshot, StoredFlag};

use crate::flags::FlagDocument;

/// The merged configuration of all sources, shared by every service.
#[derive(Debug)]
pub struct Store {
    current: ArcSwap<Snapshot>,
    notify: watch::Sender<Arc<Snapshot>>,
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
        }
    }

    /// The configuration in force now (lock-free).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A receiver that sees every new snapshot (for event and sync streams).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.notify.subscribe()
    }

    /// Replaces every flag of source `source` (priority = its index; higher wins) with
    /// `document`'s flags and publishes the new snapshot.
    pub fn apply(&self, _priority: usize, _source: &str, _document: FlagDocument) -> Arc<Snapshot> {
        todo!("Store::apply")
    }
}
