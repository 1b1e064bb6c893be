use serde_json::{json, Map, Value};

use super::*;
use crate::eval::CompileError;
use crate::flags::{Flag, FlagState, Targeting};

fn flag(key: &str, set: Option<&str>, default: &str) -> Flag {
    Flag {
        key: key.into(),
        state: FlagState::Enabled,
        default_variant: Some(default.into()),
        variants: [
            ("on".to_owned(), json!(true)),
            ("off".to_owned(), json!(false)),
        ]
        .into_iter()
        .collect(),
        targeting: None,
        metadata: match set {
            Some(id) => [("flagSetId".to_owned(), json!(id))].into_iter().collect(),
            None => Map::new(),
        },
        flag_set_id: set.map(str::to_owned),
    }
}

fn doc(flags: Vec<Flag>) -> FlagDocument {
    FlagDocument {
        flags,
        warnings: Vec::new(),
    }
}

fn default_of(snapshot: &Snapshot, key: &str, selector: &Selector) -> Option<String> {
    snapshot
        .get(key, selector)
        .and_then(|f| f.flag.default_variant.clone())
}

#[test]
fn empty_store_has_version_zero_and_no_flags() {
    let store = Store::new();
    let snapshot = store.snapshot();
    assert_eq!(snapshot.version, 0);
    assert!(snapshot.is_empty());
    assert!(snapshot.get("x", &Selector::All).is_none());
    assert_eq!(
        snapshot.sync_document(&Selector::All).as_ref(),
        r#"{"flags":{}}"#
    );
}

#[test]
fn apply_publishes_a_new_version_to_readers_and_subscribers() {
    let store = Store::new();
    let mut rx = store.subscribe();
    let applied = store.apply(0, "a.json", doc(vec![flag("f", None, "on")]));
    assert_eq!(applied.version, 1);
    assert_eq!(store.snapshot().version, 1);
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.borrow_and_update().version, 1);
    let got = store.snapshot();
    let stored = got.get("f", &Selector::All).unwrap();
    assert_eq!(&*stored.source, "a.json");
    assert_eq!(stored.priority, 0);
}

#[test]
fn apply_replaces_all_flags_of_that_source_only() {
    let store = Store::new();
    store.apply(
        0,
        "a",
        doc(vec![flag("a1", None, "on"), flag("a2", None, "on")]),
    );
    store.apply(1, "b", doc(vec![flag("b1", None, "on")]));
    let snapshot = store.apply(0, "a", doc(vec![flag("a3", None, "on")]));
    let keys: Vec<_> = snapshot.flags(&Selector::All).map(|f| f.key()).collect();
    assert_eq!(keys, ["a3", "b1"]);
    assert_eq!(snapshot.version, 3);
}

#[test]
fn higher_priority_wins_for_the_same_set_and_key_in_either_apply_order() {
    for order in [[0usize, 1], [1, 0]] {
        let store = Store::new();
        for priority in order {
            let default = if priority == 0 { "off" } else { "on" };
            store.apply(
                priority,
                &format!("s{priority}"),
                doc(vec![flag("f", None, default)]),
            );
        }
        let snapshot = store.snapshot();
        assert_eq!(
            default_of(&snapshot, "f", &Selector::All).as_deref(),
            Some("on")
        );
        assert_eq!(snapshot.flags(&Selector::All).count(), 1);
        assert_eq!(
            default_of(&snapshot, "f", &Selector::FlagSetId(String::new())).as_deref(),
            Some("on")
        );
    }
}

#[test]
fn lower_priority_copy_reappears_when_the_higher_source_drops_it() {
    let store = Store::new();
    store.apply(0, "low", doc(vec![flag("f", None, "off")]));
    store.apply(1, "high", doc(vec![flag("f", None, "on")]));
    let snapshot = store.apply(1, "high", doc(vec![]));
    let stored = snapshot.get("f", &Selector::All).unwrap();
    assert_eq!(&*stored.source, "low");
    assert_eq!(stored.flag.default_variant.as_deref(), Some("off"));
}

#[test]
fn no_selector_picks_the_highest_priority_copy_across_flag_sets() {
    let store = Store::new();
    store.apply(0, "low", doc(vec![flag("f", Some("z"), "off")]));
    store.apply(1, "high", doc(vec![flag("f", Some("a"), "on")]));
    let snapshot = store.snapshot();
    assert_eq!(&*snapshot.get("f", &Selector::All).unwrap().source, "high");
    // Both flag sets stay listed in bulk results, ordered by (flagSetId, key).
    let listed: Vec<_> = snapshot
        .flags(&Selector::All)
        .map(|f| (f.flag_set_id().to_owned(), f.source.to_string()))
        .collect();
    assert_eq!(
        listed,
        [
            ("a".to_owned(), "high".to_owned()),
            ("z".into(), "low".into())
        ]
    );
}

#[test]
fn same_source_ties_go_to_the_first_flag_set() {
    let store = Store::new();
    let snapshot = store.apply(
        0,
        "s",
        doc(vec![flag("f", Some("b"), "on"), flag("f", None, "off")]),
    );
    assert_eq!(
        default_of(&snapshot, "f", &Selector::All).as_deref(),
        Some("off")
    );
}

#[test]
fn repeated_set_and_key_in_one_document_keeps_the_last() {
    let store = Store::new();
    let snapshot = store.apply(
        0,
        "s",
        doc(vec![flag("f", None, "off"), flag("f", None, "on")]),
    );
    assert_eq!(snapshot.flags(&Selector::All).count(), 1);
    assert_eq!(
        default_of(&snapshot, "f", &Selector::All).as_deref(),
        Some("on")
    );
}

#[test]
fn flag_set_selector_is_exact() {
    let store = Store::new();
    let snapshot = store.apply(
        0,
        "s",
        doc(vec![
            flag("f", Some("x"), "on"),
            flag("g", None, "off"),
            flag("h", Some("y"), "on"),
        ]),
    );
    let x = Selector::FlagSetId("x".into());
    let none = Selector::FlagSetId(String::new());
    assert!(snapshot.get("f", &x).is_some());
    assert!(snapshot.get("g", &x).is_none());
    assert!(snapshot.get("g", &none).is_some());
    assert!(snapshot.get("f", &none).is_none());
    assert!(snapshot
        .get("f", &Selector::FlagSetId("missing".into()))
        .is_none());
    let keys: Vec<_> = snapshot.flags(&x).map(|f| f.key()).collect();
    assert_eq!(keys, ["f"]);
    let keys: Vec<_> = snapshot.flags(&none).map(|f| f.key()).collect();
    assert_eq!(keys, ["g"]);
}

#[test]
fn source_selector_sees_that_source_including_shadowed_copies() {
    let store = Store::new();
    store.apply(
        0,
        "low",
        doc(vec![flag("f", None, "off"), flag("l", None, "on")]),
    );
    let snapshot = store.apply(1, "high", doc(vec![flag("f", None, "on")]));
    let low = Selector::Source("low".into());
    assert_eq!(default_of(&snapshot, "f", &low).as_deref(), Some("off"));
    let keys: Vec<_> = snapshot.flags(&low).map(|f| f.key()).collect();
    assert_eq!(keys, ["f", "l"]);
    assert!(snapshot
        .get("l", &Selector::Source("high".into()))
        .is_none());
    assert_eq!(snapshot.flags(&Selector::Source("nope".into())).count(), 0);
}

#[test]
fn diff_reports_write_update_delete_for_visible_keys() {
    let store = Store::new();
    let v1 = store.apply(
        0,
        "s",
        doc(vec![
            flag("keep", None, "on"),
            flag("change", None, "on"),
            flag("drop", None, "on"),
        ]),
    );
    let v2 = store.apply(
        0,
        "s",
        doc(vec![
            flag("keep", None, "on"),
            flag("change", None, "off"),
            flag("new", None, "on"),
        ]),
    );
    let diff = v2.diff(&v1, &Selector::All);
    let expected: BTreeMap<String, ChangeKind> = [
        ("change".to_owned(), ChangeKind::Update),
        ("drop".to_owned(), ChangeKind::Delete),
        ("new".to_owned(), ChangeKind::Write),
    ]
    .into_iter()
    .collect();
    assert_eq!(diff, expected);
    // Reapplying identical content (new Arcs) is not a change.
    let v3 = store.apply(
        0,
        "s",
        doc(vec![
            flag("keep", None, "on"),
            flag("change", None, "off"),
            flag("new", None, "on"),
        ]),
    );
    assert!(v3.diff(&v2, &Selector::All).is_empty());
}

#[test]
fn diff_sees_targeting_and_metadata_changes() {
    let store = Store::new();
    let v1 = store.apply(0, "s", doc(vec![flag("f", None, "on")]));
    let mut targeted = flag("f", None, "on");
    targeted.targeting = Some(Targeting {
        raw: json!({"if": [true, "on", "off"]}),
        rule: Err(CompileError("not compiled in this test".into())),
    });
    let v2 = store.apply(0, "s", doc(vec![targeted]));
    assert_eq!(
        v2.diff(&v1, &Selector::All).get("f"),
        Some(&ChangeKind::Update)
    );
    let mut meta = flag("f", None, "on");
    meta.metadata.insert("owner".into(), Value::from("me"));
    let v3 = store.apply(0, "s", doc(vec![meta]));
    assert_eq!(
        v3.diff(&v2, &Selector::All).get("f"),
        Some(&ChangeKind::Update)
    );
}

#[test]
fn diff_is_limited_to_the_selector() {
    let store = Store::new();
    let v1 = store.apply(0, "a", doc(vec![flag("f", Some("x"), "on")]));
    let v2 = store.apply(1, "b", doc(vec![flag("g", Some("y"), "on")]));
    assert!(v2.diff(&v1, &Selector::FlagSetId("x".into())).is_empty());
    assert!(v2.diff(&v1, &Selector::Source("a".into())).is_empty());
    assert_eq!(
        v2.diff(&v1, &Selector::FlagSetId("y".into())).get("g"),
        Some(&ChangeKind::Write)
    );
    assert_eq!(v2.diff(&v1, &Selector::All).len(), 1);
}

#[test]
fn changes_and_documents_are_computed_once_per_selector_and_shared() {
    let store = Store::new();
    let v1 = store.apply(0, "a", doc(vec![flag("f", Some("x"), "on")]));
    let v2 = store.apply(0, "a", doc(vec![flag("f", Some("x"), "off")]));
    let x = Selector::FlagSetId("x".into());
    let first = v2.changes_since(&v1, &x);
    assert_eq!(*first, v2.diff(&v1, &x));
    assert_eq!(first.get("f"), Some(&ChangeKind::Update));
    assert!(Arc::ptr_eq(&first, &v2.changes_since(&v1, &x)));
    // Another selector is its own entry, with its own answer.
    let other = v2.changes_since(&v1, &Selector::FlagSetId("y".into()));
    assert!(other.is_empty());
    let source = Selector::Source("a".into());
    let document = v2.sync_document(&source);
    assert!(Arc::ptr_eq(&document, &v2.sync_document(&source)));
    assert!(document.contains(r#""defaultVariant":"off""#));
}

#[test]
fn past_the_memo_bound_results_are_still_right_but_not_kept() {
    let store = Store::new();
    let v1 = store.apply(0, "a", doc(vec![flag("f", Some("x"), "on")]));
    let v2 = store.apply(0, "a", doc(vec![flag("f", Some("x"), "off")]));
    for i in 0..100 {
        let selector = Selector::FlagSetId(format!("set-{i}"));
        assert!(v2.changes_since(&v1, &selector).is_empty());
        assert_eq!(v2.sync_document(&selector).as_ref(), r#"{"flags":{}}"#);
    }
    let x = Selector::FlagSetId("x".into());
    let changes = v2.changes_since(&v1, &x);
    assert_eq!(changes.get("f"), Some(&ChangeKind::Update));
    // Client-chosen selectors beyond the bound are computed afresh each time.
    assert!(!Arc::ptr_eq(&changes, &v2.changes_since(&v1, &x)));
    assert!(v2.sync_document(&x).contains(r#""defaultVariant":"off""#));
}

#[test]
fn diff_when_a_higher_source_shadows_a_key_is_an_update() {
    let store = Store::new();
    let v1 = store.apply(0, "low", doc(vec![flag("f", None, "off")]));
    let v2 = store.apply(1, "high", doc(vec![flag("f", None, "on")]));
    assert_eq!(
        v2.diff(&v1, &Selector::All).get("f"),
        Some(&ChangeKind::Update)
    );
    // The low source's own view did not change.
    assert!(v2.diff(&v1, &Selector::Source("low".into())).is_empty());
}

#[test]
fn diff_across_flag_sets_of_one_key() {
    let store = Store::new();
    let v1 = store.apply(0, "s", doc(vec![flag("f", Some("x"), "on")]));
    let v2 = store.apply(
        0,
        "s",
        doc(vec![flag("f", Some("x"), "on"), flag("f", Some("y"), "on")]),
    );
    assert_eq!(
        v2.diff(&v1, &Selector::All).get("f"),
        Some(&ChangeKind::Update)
    );
    let v3 = store.apply(0, "s", doc(vec![flag("f", Some("y"), "on")]));
    assert_eq!(
        v3.diff(&v2, &Selector::All).get("f"),
        Some(&ChangeKind::Update)
    );
    let v4 = store.apply(0, "s", doc(vec![]));
    assert_eq!(
        v4.diff(&v3, &Selector::All).get("f"),
        Some(&ChangeKind::Delete)
    );
}

#[test]
fn sync_document_has_flagd_shape() {
    let store = Store::new();
    let mut disabled = flag("b-flag", None, "on");
    disabled.state = FlagState::Disabled;
    disabled.default_variant = None;
    let mut targeted = flag("a-flag", Some("set"), "on");
    targeted.targeting = Some(Targeting {
        raw: json!({"if": [true, "on", "off"]}),
        rule: Err(CompileError("not compiled in this test".into())),
    });
    store.apply(0, "src.json", doc(vec![disabled, targeted]));
    let text = store.snapshot().sync_document(&Selector::All);
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        value,
        json!({"flags": {
            "a-flag": {
                "state": "ENABLED", "defaultVariant": "on",
                "variants": {"off": false, "on": true},
                "targeting": {"if": [true, "on", "off"]},
                "source": "src.json",
                "metadata": {"flagSetId": "set"}
            },
            "b-flag": {
                "state": "DISABLED", "defaultVariant": "",
                "variants": {"off": false, "on": true},
                "source": "src.json"
            }
        }})
    );
    assert!(text.find("a-flag").unwrap() < text.find("b-flag").unwrap());
    let only_set = store
        .snapshot()
        .sync_document(&Selector::FlagSetId("set".into()));
    let value: Value = serde_json::from_str(&only_set).unwrap();
    assert_eq!(value["flags"].as_object().unwrap().len(), 1);
    assert!(value["flags"]["a-flag"].is_object());
}

#[test]
fn sync_document_collapses_a_key_to_the_winning_copy() {
    let store = Store::new();
    store.apply(0, "low", doc(vec![flag("f", Some("a"), "off")]));
    let snapshot = store.apply(1, "high", doc(vec![flag("f", Some("b"), "on")]));
    let value: Value = serde_json::from_str(&snapshot.sync_document(&Selector::All)).unwrap();
    assert_eq!(value["flags"]["f"]["source"], "high");
    assert_eq!(value["flags"].as_object().unwrap().len(), 1);
}

#[test]
fn sources_reports_applied_sources() {
    let store = Store::new();
    store.apply(0, "a", doc(vec![flag("f", None, "on")]));
    store.apply(
        0,
        "a",
        doc(vec![flag("f", None, "on"), flag("g", None, "on")]),
    );
    store.apply(1, "b", doc(vec![]));
    let infos = store.sources();
    assert_eq!(infos.len(), 2);
    assert_eq!(&*infos[0].uri, "a");
    assert_eq!(infos[0].flags, 2);
    assert_eq!(infos[0].applies, 2);
    assert_eq!(infos[1].priority, 1);
    let snapshot = store.remove("a");
    assert!(snapshot.get("f", &Selector::All).is_none());
    assert_eq!(store.sources().len(), 1);
}

#[test]
fn key_lookup_finds_every_key_and_only_those() {
    // Keys of every length around the hasher's 8-byte words, prefixes of one another, and
    // keys differing only by trailing zero bytes.
    let mut keys: Vec<String> = (0..2_000).map(|i| format!("flag-{i}")).collect();
    keys.extend((1..=24).map(|n| "k".repeat(n)));
    keys.extend(["a", "a\0", "a\0\0", "12345678", "123456780"].map(str::to_owned));
    let store = Store::new();
    let flags = keys.iter().map(|k| flag(k, None, "on")).collect();
    let snapshot = store.apply(0, "file:keys.json", doc(flags));
    for key in &keys {
        let found = snapshot.get(key, &Selector::All).map(StoredFlag::key);
        assert_eq!(found, Some(key.as_str()));
    }
    for missing in [
        "",
        "flag-2000",
        "k".repeat(25).as_str(),
        "a\0\0\0",
        "flag-1 ",
    ] {
        assert!(
            snapshot.get(missing, &Selector::All).is_none(),
            "{missing:?}"
        );
    }
}

#[test]
fn key_hasher_spreads_keys_that_differ_only_at_the_end() {
    use std::hash::{BuildHasher, BuildHasherDefault};
    let build = BuildHasherDefault::<super::snapshot::KeyHasher>::default();
    let hashes: std::collections::HashSet<u64> = ["a", "a\0", "a\0\0", "flag-1", "flag-10"]
        .iter()
        .map(|k| build.hash_one(k))
        .collect();
    assert_eq!(hashes.len(), 5);
}

#[test]
fn reprioritizing_swaps_winners_in_one_version_without_reloading() {
    let store = Store::new();
    store.apply(1, "a", doc(vec![flag("k", None, "on")]));
    store.apply(2, "b", doc(vec![flag("k", None, "off")]));
    let all = Selector::default();
    assert_eq!(
        default_of(&store.snapshot(), "k", &all).as_deref(),
        Some("off")
    );
    let before = store.snapshot().version;
    let after = store.reprioritize(&[("a", 2), ("b", 1), ("unknown", 5)]);
    assert_eq!(
        after.version,
        before + 1,
        "one snapshot for the whole reordering"
    );
    assert_eq!(default_of(&after, "k", &all).as_deref(), Some("on"));
    let applies: Vec<u64> = store.sources().iter().map(|s| s.applies).collect();
    assert_eq!(applies, [1, 1], "nothing re-applied");
    // The same order again publishes nothing.
    assert_eq!(
        store.reprioritize(&[("a", 2), ("b", 1)]).version,
        after.version
    );
}
