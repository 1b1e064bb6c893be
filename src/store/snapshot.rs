use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Bound;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use serde_json::{Map, Value};

use super::Selector;
use crate::flags::{Flag, FlagState};

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

impl StoredFlag {
    /// The flag key.
    pub fn key(&self) -> &str {
        &self.flag.key
    }

    /// The flag set id; `""` for flags without one (what `flagSetId=` selects).
    pub fn flag_set_id(&self) -> &str {
        self.flag.flag_set_id.as_deref().unwrap_or("")
    }

    /// Whether `other` is the same stored flag: same `Arc`, or equal content and source.
    pub fn same_as(&self, other: &StoredFlag) -> bool {
        if Arc::ptr_eq(&self.flag, &other.flag) && self.source == other.source {
            return true;
        }
        let (a, b) = (&*self.flag, &*other.flag);
        self.source == other.source
            && a.key == b.key
            && a.state == b.state
            && a.default_variant == b.default_variant
            && a.flag_set_id == b.flag_set_id
            && a.variants == b.variants
            && a.targeting.as_ref().map(|t| &t.raw) == b.targeting.as_ref().map(|t| &t.raw)
            && a.metadata == b.metadata
    }
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

/// The hasher of the per-request key lookup: a multiply-rotate hash over 8-byte words (the
/// FxHash scheme), several times cheaper than the default SipHash on short flag keys.
///
/// SipHash's random keys defend a map against inputs chosen to collide. Here every key in
/// the map comes from the configuration, built once per snapshot; a request only looks a key
/// up, and a request key that collides merely probes a little longer and misses. Whoever can
/// write the configuration can already make the daemon do far more work than collisions cost.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl KeyHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // The length first, so keys that differ only by trailing zero bytes hash apart.
        self.add(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by flag key with [`KeyHasher`].
pub(crate) type KeyMap<V> = HashMap<String, V, BuildHasherDefault<KeyHasher>>;

/// Flags indexed both by (flagSetId, key) for ordered listing and by key for single lookups.
#[derive(Debug, Default)]
struct FlagIndex {
    /// flagSetId (`""` = none) → key → flag; iteration order is the (flagSetId, key) order.
    sets: BTreeMap<String, BTreeMap<String, StoredFlag>>,
    /// key → the copy a selector-less (or source-only) lookup answers with.
    by_key: KeyMap<StoredFlag>,
}

impl FlagIndex {
    /// Inserts `flag` under (flagSetId, key), replacing an existing copy of equal or lower priority.
    fn insert_by_priority(&mut self, flag: &StoredFlag) {
        let slot = self
            .sets
            .entry(flag.flag_set_id().to_owned())
            .or_default()
            .entry(flag.key().to_owned());
        match slot {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(flag.clone());
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                if o.get().priority <= flag.priority {
                    o.insert(flag.clone());
                }
            }
        }
    }

    /// Fills `by_key`: highest priority wins; ties go to the first copy in flagSetId order.
    fn finish(mut self) -> FlagIndex {
        for set in self.sets.values() {
            for (key, flag) in set {
                match self.by_key.get(key.as_str()) {
                    Some(existing) if existing.priority >= flag.priority => {}
                    _ => {
                        self.by_key.insert(key.clone(), flag.clone());
                    }
                }
            }
        }
        self
    }

    fn len(&self) -> usize {
        self.sets.values().map(BTreeMap::len).sum()
    }
}

/// One immutable version of the merged configuration.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases by one with every applied change.
    pub version: u64,
    /// Every source merged by priority.
    merged: FlagIndex,
    /// Each source's own flags (what `source=` selects).
    by_source: HashMap<Arc<str>, FlagIndex>,
    /// The selector-less sync document, rendered on first use and shared by every stream;
    /// kept apart from `derived` so client-chosen selectors can never crowd it out.
    all_document: OnceLock<Arc<str>>,
    /// Sync documents for other selectors and diffs against older snapshots, computed once
    /// for all the streams that ask (10,000 EventStreams otherwise diff 10,000 times).
    derived: Derived,
}

/// The changes of one diff, shared by every stream that asked for it.
pub type Changes = Arc<BTreeMap<String, ChangeKind>>;

/// At most this many selectors (or older versions × selectors) are remembered per snapshot:
/// selectors come from clients, so past this bound results are computed and not kept.
const DERIVED_ENTRIES: usize = 64;

/// Results derived from one snapshot, each computed by the first stream that asks.
#[derive(Debug, Default)]
struct Derived {
    documents: Memo<Selector, Arc<str>>,
    diffs: Memo<(u64, Selector), Changes>,
}

/// A small bounded map of once-computed values. The lock is held only to find or insert an
/// entry; the computation runs under the entry's own `OnceLock`, so streams asking for
/// different keys do not wait for each other.
struct Memo<K, V> {
    entries: Mutex<HashMap<K, Arc<OnceLock<V>>>>,
}

impl<K, V> std::fmt::Debug for Memo<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Memo")
    }
}

impl<K, V> Default for Memo<K, V> {
    fn default() -> Self {
        Memo {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Memo<K, V> {
    fn get_or_compute(&self, key: K, compute: impl FnOnce() -> V) -> V {
        let cell = match self.entries.lock() {
            Ok(mut entries) => match entries.get(&key) {
                Some(cell) => Some(cell.clone()),
                None if entries.len() < DERIVED_ENTRIES => {
                    Some(entries.entry(key).or_default().clone())
                }
                None => None,
            },
            // A panic while the lock was held (none is expected): compute without sharing.
            Err(_) => None,
        };
        match cell {
            Some(cell) => cell.get_or_init(compute).clone(),
            None => compute(),
        }
    }
}

impl Snapshot {
    /// Builds a snapshot from each source's (uri, priority, flags), given in any order; each
    /// source's flags are already deduplicated per (flagSetId, key).
    pub(super) fn build<'a>(
        version: u64,
        sources: impl IntoIterator<Item = (&'a Arc<str>, usize, &'a [StoredFlag])>,
    ) -> Snapshot {
        let mut sources: Vec<_> = sources.into_iter().collect();
        sources.sort_by_key(|&(_, priority, _)| priority);
        let mut merged = FlagIndex::default();
        let mut by_source = HashMap::with_capacity(sources.len());
        for (uri, _, flags) in sources {
            let mut own = FlagIndex::default();
            for flag in flags {
                merged.insert_by_priority(flag);
                own.insert_by_priority(flag);
            }
            by_source.insert(uri.clone(), own.finish());
        }
        Snapshot {
            version,
            merged: merged.finish(),
            by_source,
            all_document: OnceLock::new(),
            derived: Derived::default(),
        }
    }

    /// The flag `key` as seen under `selector` (spec 6.6), if any.
    ///
    /// Without a selector this is one hash lookup and never allocates.
    pub fn get(&self, key: &str, selector: &Selector) -> Option<&StoredFlag> {
        match selector {
            Selector::All => self.merged.by_key.get(key),
            Selector::FlagSetId(id) => self.merged.sets.get(id.as_str())?.get(key),
            Selector::Source(source) => self.by_source.get(source.as_str())?.by_key.get(key),
        }
    }

    /// Every flag visible under `selector`, ordered by (flagSetId, key).
    pub fn flags<'s>(
        &'s self,
        selector: &'s Selector,
    ) -> impl Iterator<Item = &'s StoredFlag> + 's {
        let (index, bounds): (Option<&FlagIndex>, (Bound<&str>, Bound<&str>)) = match selector {
            Selector::All => (Some(&self.merged), (Bound::Unbounded, Bound::Unbounded)),
            Selector::FlagSetId(id) => (
                Some(&self.merged),
                (Bound::Included(id.as_str()), Bound::Included(id.as_str())),
            ),
            Selector::Source(source) => (
                self.by_source.get(source.as_str()),
                (Bound::Unbounded, Bound::Unbounded),
            ),
        };
        index
            .into_iter()
            .flat_map(move |index| index.sets.range::<str, _>(bounds))
            .flat_map(|(_, set)| set.values())
    }

    /// How many flags are visible without a selector (all flag sets, deduplicated).
    pub fn len(&self) -> usize {
        self.merged.len()
    }

    /// `true` when no source has any flag.
    pub fn is_empty(&self) -> bool {
        self.merged.sets.is_empty()
    }

    /// The source URIs that currently have an applied configuration.
    pub fn sources(&self) -> impl Iterator<Item = &Arc<str>> {
        self.by_source.keys()
    }

    /// Which keys visible under `selector` changed from `older` to `self`.
    ///
    /// A key present in several flag sets is `Write` when no copy existed before, `Delete`
    /// when no copy remains, and `Update` when any copy appeared, vanished or changed.
    pub fn diff(&self, older: &Snapshot, selector: &Selector) -> BTreeMap<String, ChangeKind> {
        #[derive(Default)]
        struct Seen {
            before: bool,
            after: bool,
            changed: bool,
        }
        let old: BTreeMap<(&str, &str), &StoredFlag> = older
            .flags(selector)
            .map(|f| ((f.flag_set_id(), f.key()), f))
            .collect();
        let new: BTreeMap<(&str, &str), &StoredFlag> = self
            .flags(selector)
            .map(|f| ((f.flag_set_id(), f.key()), f))
            .collect();
        let mut keys: BTreeMap<&str, Seen> = BTreeMap::new();
        for (&(set, key), flag) in &new {
            let seen = keys.entry(key).or_default();
            seen.after = true;
            match old.get(&(set, key)) {
                Some(previous) => {
                    seen.before = true;
                    seen.changed |= !previous.same_as(flag);
                }
                None => seen.changed = true,
            }
        }
        for &(set, key) in old.keys() {
            if !new.contains_key(&(set, key)) {
                let seen = keys.entry(key).or_default();
                seen.before = true;
                seen.changed = true;
            }
        }
        keys.into_iter()
            .filter_map(|(key, seen)| {
                let kind = match (seen.before, seen.after) {
                    (false, true) => ChangeKind::Write,
                    (true, false) => ChangeKind::Delete,
                    (true, true) if seen.changed => ChangeKind::Update,
                    _ => return None,
                };
                Some((key.to_owned(), kind))
            })
            .collect()
    }

    /// [`Snapshot::diff`] from `older`, computed once per (older version, selector) and shared
    /// by every caller; `older` must come from the same store (versions identify snapshots).
    pub fn changes_since(&self, older: &Snapshot, selector: &Selector) -> Changes {
        self.derived
            .diffs
            .get_or_compute((older.version, selector.clone()), || {
                Arc::new(self.diff(older, selector))
            })
    }

    /// The flagd sync document for `selector` (spec 1.10): `{"flags":{key:{...}}}`, keys
    /// sorted; a key present in several flag sets collapses to the copy [`Snapshot::get`]
    /// answers with, as in flagd. Each document is rendered once per snapshot and selector.
    pub fn sync_document(&self, selector: &Selector) -> Arc<str> {
        if *selector == Selector::All {
            return self
                .all_document
                .get_or_init(|| self.render_sync_document(selector).into())
                .clone();
        }
        self.derived.documents.get_or_compute(selector.clone(), || {
            self.render_sync_document(selector).into()
        })
    }

    fn render_sync_document(&self, selector: &Selector) -> String {
        #[derive(Serialize)]
        struct Document<'a> {
            flags: BTreeMap<&'a str, SyncFlag<'a>>,
        }
        #[derive(Serialize)]
        struct SyncFlag<'a> {
            state: &'static str,
            #[serde(rename = "defaultVariant")]
            default_variant: &'a str,
            variants: &'a BTreeMap<String, Value>,
            #[serde(skip_serializing_if = "Option::is_none")]
            targeting: Option<&'a Value>,
            source: &'a str,
            #[serde(skip_serializing_if = "Map::is_empty")]
            metadata: &'a Map<String, Value>,
        }
        let mut flags = BTreeMap::new();
        for candidate in self.flags(selector) {
            if flags.contains_key(candidate.key()) {
                continue;
            }
            let Some(stored) = self.get(candidate.key(), selector) else {
                continue;
            };
            let flag = &*stored.flag;
            flags.insert(
                flag.key.as_str(),
                SyncFlag {
                    state: match flag.state {
                        FlagState::Enabled => "ENABLED",
                        FlagState::Disabled => "DISABLED",
                    },
                    default_variant: flag.default_variant.as_deref().unwrap_or(""),
                    variants: &flag.variants,
                    targeting: flag.targeting.as_ref().map(|t| &t.raw),
                    source: &stored.source,
                    metadata: &flag.metadata,
                },
            );
        }
        serde_json::to_string(&Document { flags }).unwrap_or_else(|_| r#"{"flags":{}}"#.into())
    }
}
