//! The file provider against real files: initial load, every kind of rewrite, bad payloads
//! keeping the last good configuration, and the readiness latch.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flagpole::store::{Selector, Store};
use flagpole::sync::{FileSource, NamedSource, SourceStats, Supervisor, EMBEDDED_URI};
use flagpole::sync::{Provider, SourceConfig};

/// Upper bound for anything to happen; tests poll well below it.
const PATIENCE: Duration = Duration::from_secs(15);

fn document(default: &str) -> String {
    format!(
        r#"{{"flags":{{"f":{{"state":"ENABLED","variants":{{"a":"A","b":"B","c":"C"}},"defaultVariant":"{default}"}}}}}}"#
    )
}

fn file_config(path: &Path) -> SourceConfig {
    SourceConfig {
        uri: path.to_str().unwrap().to_owned(),
        provider: Provider::File,
        interval: Some(Duration::from_millis(200)),
        remote: Default::default(),
    }
}

/// Polls `condition` until it holds, failing the test after [`PATIENCE`].
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn default_variant(store: &Store) -> Option<String> {
    store
        .snapshot()
        .get("f", &Selector::All)
        .and_then(|f| f.flag.default_variant.clone())
}

fn stats(supervisor: &Supervisor) -> SourceStats {
    supervisor.stats().into_iter().next().unwrap()
}

/// Replaces `path` atomically (write a sibling, rename over).
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn started(path: &Path) -> (Arc<Store>, Supervisor) {
    let store = Arc::new(Store::new());
    let supervisor = Supervisor::start(&[file_config(path)], store.clone()).unwrap();
    let mut ready = supervisor.ready();
    tokio::time::timeout(PATIENCE, ready.wait_for(|r| *r))
        .await
        .expect("source never became ready")
        .unwrap();
    (store, supervisor)
}

#[tokio::test]
async fn initial_load_is_applied_under_the_path_as_source() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, document("a")).unwrap();
    let (store, supervisor) = started(&path).await;
    assert_eq!(default_variant(&store).as_deref(), Some("a"));
    let snapshot = store.snapshot();
    let source = Selector::Source(path.to_str().unwrap().to_owned());
    assert!(snapshot.get("f", &source).is_some());
    let s = stats(&supervisor);
    assert_eq!((s.applied, s.rejected, s.ready), (1, 0, true));
    supervisor.shutdown().await;
}

#[tokio::test]
async fn file_prefix_is_stripped_from_the_stored_uri() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, document("a")).unwrap();
    let store = Arc::new(Store::new());
    let mut config = file_config(&path);
    config.uri = format!("file:{}", config.uri);
    let supervisor = Supervisor::start(&[config], store.clone()).unwrap();
    eventually("load", || default_variant(&store).is_some()).await;
    assert_eq!(stats(&supervisor).uri, path.to_str().unwrap());
    supervisor.shutdown().await;
}

#[tokio::test]
async fn yaml_files_are_read_as_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.yaml");
    std::fs::write(
        &path,
        "flags:\n  f:\n    state: ENABLED\n    variants:\n      a: A\n      b: B\n    defaultVariant: b\n",
    )
    .unwrap();
    let (store, supervisor) = started(&path).await;
    assert_eq!(default_variant(&store).as_deref(), Some("b"));
    supervisor.shutdown().await;
}

#[tokio::test]
async fn in_place_rewrite_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, document("a")).unwrap();
    let (store, supervisor) = started(&path).await;
    std::fs::write(&path, document("b")).unwrap();
    eventually("in-place rewrite applied", || {
        default_variant(&store).as_deref() == Some("b")
    })
    .await;
    supervisor.shutdown().await;
}

#[tokio::test]
async fn write_then_rename_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, document("a")).unwrap();
    let (store, supervisor) = started(&path).await;
    replace(&path, &document("c"));
    eventually("renamed file applied", || {
        default_variant(&store).as_deref() == Some("c")
    })
    .await;
    assert_eq!(stats(&supervisor).rejected, 0);
    supervisor.shutdown().await;
}

#[cfg(unix)]
#[tokio::test]
async fn configmap_style_symlink_swap_is_picked_up() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The kubelet's layout: flags.json -> ..data/flags.json, ..data -> ..<timestamp>.
    std::fs::create_dir(root.join("..v1")).unwrap();
    std::fs::write(root.join("..v1/flags.json"), document("a")).unwrap();
    symlink("..v1", root.join("..data")).unwrap();
    symlink("..data/flags.json", root.join("flags.json")).unwrap();
    let path = root.join("flags.json");
    let (store, supervisor) = started(&path).await;
    assert_eq!(default_variant(&store).as_deref(), Some("a"));

    std::fs::create_dir(root.join("..v2")).unwrap();
    std::fs::write(root.join("..v2/flags.json"), document("b")).unwrap();
    symlink("..v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..v1")).unwrap();
    eventually("swapped ConfigMap applied", || {
        default_variant(&store).as_deref() == Some("b")
    })
    .await;
    assert_eq!(stats(&supervisor).rejected, 0);
    supervisor.shutdown().await;
}

#[tokio::test]
async fn bad_payloads_and_deletion_keep_the_last_good_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, document("a")).unwrap();
    let (store, supervisor) = started(&path).await;
    let version = store.snapshot().version;

    // A partial write: truncated JSON.
    replace(&path, &document("b")[..20]);
    eventually("invalid JSON rejected", || stats(&supervisor).rejected == 1).await;
    assert_eq!(default_variant(&store).as_deref(), Some("a"));

    // A default variant that does not exist rejects the whole document.
    replace(&path, &document("zzz"));
    eventually("missing default variant rejected", || {
        stats(&supervisor).rejected == 2
    })
    .await;
    assert_eq!(default_variant(&store).as_deref(), Some("a"));
    assert!(stats(&supervisor).last_error.unwrap().contains("zzz"));

    // An empty file (flagd would send `{}`).
    replace(&path, "");
    eventually("empty file rejected", || stats(&supervisor).rejected == 3).await;

    std::fs::remove_file(&path).unwrap();
    eventually("deletion reported", || stats(&supervisor).unavailable == 1).await;
    let s = stats(&supervisor);
    assert_eq!(s.rejected, 4);
    assert!(s.ready, "readiness is a latch");
    assert_eq!(default_variant(&store).as_deref(), Some("a"));
    assert_eq!(store.snapshot().version, version, "nothing was applied");

    // The file comes back.
    replace(&path, &document("b"));
    eventually("restored file applied", || {
        default_variant(&store).as_deref() == Some("b")
    })
    .await;
    assert_eq!(stats(&supervisor).applied, 2);
    supervisor.shutdown().await;
}

#[tokio::test]
async fn missing_file_at_startup_is_retried_until_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.json");
    let store = Arc::new(Store::new());
    let supervisor = Supervisor::start(&[file_config(&path)], store.clone()).unwrap();
    eventually("missing file reported", || {
        stats(&supervisor).unavailable == 1
    })
    .await;
    assert!(!*supervisor.ready().borrow());
    assert!(store.snapshot().is_empty());
    std::fs::write(&path, document("c")).unwrap();
    let mut ready = supervisor.ready();
    tokio::time::timeout(PATIENCE, ready.wait_for(|r| *r))
        .await
        .expect("never became ready")
        .unwrap();
    assert_eq!(default_variant(&store).as_deref(), Some("c"));
    supervisor.shutdown().await;
}

#[tokio::test]
async fn readiness_waits_for_every_source_and_then_latches() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.json");
    let second = dir.path().join("second.json");
    std::fs::write(&first, document("a")).unwrap();
    std::fs::write(&second, "{ not json").unwrap();
    let store = Arc::new(Store::new());
    let supervisor =
        Supervisor::start(&[file_config(&first), file_config(&second)], store.clone()).unwrap();
    eventually("first applied, second rejected", || {
        let s = supervisor.stats();
        s[0].applied == 1 && s[1].rejected == 1
    })
    .await;
    assert!(
        !*supervisor.ready().borrow(),
        "second source has no valid config"
    );

    replace(&second, &document("b"));
    let mut ready = supervisor.ready();
    tokio::time::timeout(PATIENCE, ready.wait_for(|r| *r))
        .await
        .expect("never became ready")
        .unwrap();
    // The later source has the higher priority.
    assert_eq!(default_variant(&store).as_deref(), Some("b"));

    std::fs::remove_file(&first).unwrap();
    eventually("deletion reported", || {
        supervisor.stats()[0].unavailable == 1
    })
    .await;
    assert!(*supervisor.ready().borrow(), "readiness never flips back");
    supervisor.shutdown().await;
}

#[tokio::test]
async fn polling_alone_detects_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, document("a")).unwrap();
    let store = Arc::new(Store::new());
    let source = FileSource::new(&path, Some(Duration::from_millis(100)))
        .unwrap()
        .poll_only();
    let supervisor = Supervisor::spawn(
        vec![NamedSource {
            uri: path.to_str().unwrap().to_owned(),
            provider: Provider::Fileinfo.as_str(),
            source: Box::new(source),
        }],
        store.clone(),
    );
    eventually("initial load", || default_variant(&store).is_some()).await;
    replace(&path, &document("b"));
    eventually("polled change applied", || {
        default_variant(&store).as_deref() == Some("b")
    })
    .await;
    std::fs::remove_file(&path).unwrap();
    eventually("polled deletion", || stats(&supervisor).unavailable == 1).await;
    assert_eq!(default_variant(&store).as_deref(), Some("b"));
    supervisor.shutdown().await;
}

#[tokio::test]
async fn the_directory_watcher_alone_detects_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, document("a")).unwrap();
    let store = Arc::new(Store::new());
    // A poll period far beyond the test's patience: only inotify can see the changes.
    let source = FileSource::new(&path, Some(Duration::from_secs(3600))).unwrap();
    let supervisor = Supervisor::spawn(
        vec![NamedSource {
            uri: path.to_str().unwrap().to_owned(),
            provider: Provider::Fsnotify.as_str(),
            source: Box::new(source),
        }],
        store.clone(),
    );
    eventually("initial load", || default_variant(&store).is_some()).await;
    replace(&path, &document("b"));
    eventually("renamed file applied", || {
        default_variant(&store).as_deref() == Some("b")
    })
    .await;
    std::fs::write(&path, document("c")).unwrap();
    eventually("rewritten file applied", || {
        default_variant(&store).as_deref() == Some("c")
    })
    .await;
    supervisor.shutdown().await;
}

#[tokio::test]
async fn refresh_rereads_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, document("a")).unwrap();
    let store = Arc::new(Store::new());
    // Neither watcher nor (within the test) polling: only a refresh can see the change.
    let source = FileSource::new(&path, Some(Duration::from_secs(3600)))
        .unwrap()
        .poll_only();
    let uri = path.to_str().unwrap().to_owned();
    let supervisor = Supervisor::spawn(
        vec![NamedSource {
            uri: uri.clone(),
            provider: Provider::File.as_str(),
            source: Box::new(source),
        }],
        store.clone(),
    );
    eventually("initial load", || default_variant(&store).is_some()).await;
    replace(&path, &document("b"));
    assert!(supervisor.refresh(&uri));
    assert!(!supervisor.refresh("no-such-source"));
    eventually("refresh applied", || {
        default_variant(&store).as_deref() == Some("b")
    })
    .await;
    supervisor.shutdown().await;
}

#[tokio::test]
async fn no_sources_serves_the_embedded_examples() {
    let store = Arc::new(Store::new());
    let supervisor = Supervisor::start(&[], store.clone()).unwrap();
    let mut ready = supervisor.ready();
    tokio::time::timeout(PATIENCE, ready.wait_for(|r| *r))
        .await
        .expect("embedded flags never applied")
        .unwrap();
    let snapshot = store.snapshot();
    let flag = snapshot.get("show-welcome-banner", &Selector::All).unwrap();
    assert_eq!(&*flag.source, EMBEDDED_URI);
    assert!(snapshot.len() >= 8);
    assert_eq!(stats(&supervisor).rejected, 0);
    supervisor.shutdown().await;
}

#[tokio::test]
async fn invalid_sources_fail_at_start() {
    let store = Arc::new(Store::new());
    // The provider name is typed where configuration is read; an unknown one fails there.
    let start = |uri: &str, provider: &str| -> Result<Supervisor, String> {
        let provider = Provider::parse(provider).map_err(|e| e.to_string())?;
        let config = SourceConfig {
            uri: uri.into(),
            provider,
            interval: None,
            remote: Default::default(),
        };
        Supervisor::start(&[config], store.clone()).map_err(|e| e.to_string())
    };
    for (uri, provider, needle) in [
        ("flags.txt", "file", "unsupported file format"),
        ("flags.json", "carrier-pigeon", "unknown provider"),
        ("gs://x/flags.json", "gcs", "not supported"),
        (
            "s3://bucket/flags.json?bogus=1",
            "s3",
            "unknown S3 URL option",
        ),
    ] {
        let error = start(uri, provider).unwrap_err();
        assert!(
            error.to_string().contains(needle),
            "{uri}: `{error}` lacks `{needle}`"
        );
    }
}
