use std::collections::BTreeMap;
use std::sync::Arc;

use super::Selector;
use crate::flags::Flag;

/// A flag as stored: the flag plus where it came from.
#[derive(Debug, Clone)]
pub struct StoredFlag {
    /// The flag.
    pub flag: Arc<Flag>,
    /// The source URI it came from (what `source=` selectors match).
    pub source: Arc<str>,
    /// The source's priority (index; higher wins).
    pub priority: usize,
}

/// How a key changed between two snapshots (EventStream `configuration_change`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Newly present.
    Write,
    /// Present before and after, but different.
    Update,
    /// No longer present.
    Delete,
}

impl ChangeKind {
    /// The wire string (`write`, `update`, `delete`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Write => "write",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
        }
    }
}

/// One immutable version of the merged configuration.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases by one with every applied change.
    pub version: u64,
}

impl Snapshot {
    /// The flag `key` as seen under `selector` (spec 6.6), if any.
    pub fn get(&self, _key: &str, _selector: &Selector) -> Option<&StoredFlag> {
        todo!("Snapshot::get")
    }

    /// Every flag visible under `selector`, ordered by (flagSetId, key).
    pub fn flags<'s>(
        &'s self,
        _selector: &'s Selector,
    ) -> impl Iterator<Item = &'s StoredFlag> + 's {
        std::iter::empty()
    }

    /// Which keys visible under `selector` changed from `older` to `self`.
    pub fn diff(&self, _older: &Snapshot, _selector: &Selector) -> BTreeMap<String, ChangeKind> {
        todo!("Snapshot::diff")
    }
}
