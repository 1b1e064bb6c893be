//! Re-reading files that rotate under a running daemon (TLS certificates, token files).

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::Watcher as _;

/// How long to wait after the first change event before reading: writers replace a file in
/// several steps, and a certificate and its key written one after the other must be read as
/// a pair.
const SETTLE: Duration = Duration::from_millis(250);

/// Calls `reload` after the files in `files` change, until the returned guard is dropped.
///
/// Watches their directories, not the files: Kubernetes secret mounts swap a symlink and
/// editors replace files by renaming, and both escape a watch on the file itself. Events
/// arriving while one reload settles are folded into it. The error names what could not be
/// watched.
pub(crate) fn watch_files(
    files: &[&Path],
    reload: impl Fn() + Send + 'static,
) -> Result<WatchGuard, String> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if !event.kind.is_access() {
                let _ = tx.send(());
            }
        }
    })
    .map_err(|e| e.to_string())?;
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .map(|p| match p.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        })
        .collect();
    dirs.dedup();
    for dir in &dirs {
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            tokio::time::sleep(SETTLE).await;
            while rx.try_recv().is_ok() {}
            reload();
        }
    });
    Ok(WatchGuard {
        _watcher: watcher,
        task,
    })
}

/// Keeps a [`watch_files`] reload running; dropping it stops watching.
pub(crate) struct WatchGuard {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for WatchGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchGuard").finish_non_exhaustive()
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}
