//! The file provider (`file`, `fsnotify`, `fileinfo`): a local JSON or YAML document.
//!
//! Changes are seen two ways at once: `notify` watches the file's *parent directory* (so
//! write-then-rename and the Kubernetes ConfigMap `..data` symlink swap are caught), and a
//! poll compares `stat` (mtime, size, inode, following symlinks) every `interval` for
//! filesystems where inotify does not work. Bursts of events are debounced; the sink drops
//! content identical to the last delivery.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::watch;

use super::limit::{self, ReadError, DEFAULT_MAX_DOCUMENT_SIZE};
use super::source::{Payload, RefreshResult, Source, SourceContext, SourceFuture};
use crate::flags::Format;

/// How long to wait after a filesystem event for the burst to settle.
const DEBOUNCE: Duration = Duration::from_millis(30);

/// The default poll interval of the stat fallback.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Watches one local flag file.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    format: Format,
    poll_interval: Duration,
    use_watcher: bool,
    max_size: usize,
}

impl FileSource {
    /// A source for `path` (format from its extension); `None` if the extension is not
    /// `.json`, `.yaml` or `.yml`.
    pub fn new(path: impl Into<PathBuf>, poll_interval: Option<Duration>) -> Option<FileSource> {
        let path = path.into();
        let format = Format::from_path(&path)?;
        Some(FileSource {
            path,
            format,
            poll_interval: poll_interval
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_POLL_INTERVAL),
            use_watcher: true,
            max_size: DEFAULT_MAX_DOCUMENT_SIZE,
        })
    }

    /// Refuses files larger than `bytes` (default [`DEFAULT_MAX_DOCUMENT_SIZE`]).
    pub fn max_size(mut self, bytes: usize) -> FileSource {
        self.max_size = bytes;
        self
    }

    /// Turns the directory watcher off, leaving only the stat poll (for filesystems without
    /// inotify, and to test the fallback).
    pub fn poll_only(mut self) -> FileSource {
        self.use_watcher = false;
        self
    }
}

/// What `stat` says about the file; any difference means "re-read".
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn fingerprint(path: &Path) -> io::Result<Fingerprint> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Fingerprint {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

/// Watches `path`'s parent directory; every relevant event bumps the returned counter.
fn watch_parent(path: &Path) -> notify::Result<(notify::RecommendedWatcher, watch::Receiver<u64>)> {
    let (tx, rx) = watch::channel(0u64);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Our own reads show up as access events; reacting to them would loop. A writer
        // closing the file is the one access event that matters.
        if let Ok(event) = &event {
            if matches!(event.kind, EventKind::Access(kind) if kind != AccessKind::Close(AccessMode::Write))
            {
                return;
            }
        }
        tx.send_modify(|n| *n = n.wrapping_add(1));
    })?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    watcher.watch(parent, RecursiveMode::NonRecursive)?;
    Ok((watcher, rx))
}

impl FileSource {
    async fn watch_loop(self, mut ctx: SourceContext) {
        let uri = ctx.sink.uri().to_owned();
        let mut watcher: Option<(notify::RecommendedWatcher, watch::Receiver<u64>)> = None;
        let mut watch_failed_logged = false;
        let mut last_fingerprint: Option<Fingerprint> = None;
        let mut poll = tokio::time::interval(self.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut read_now = true;
        loop {
            if self.use_watcher && watcher.is_none() {
                match watch_parent(&self.path) {
                    Ok(w) => {
                        watcher = Some(w);
                        // Anything may have happened before the watch existed.
                        read_now = true;
                    }
                    Err(error) if !watch_failed_logged => {
                        watch_failed_logged = true;
                        tracing::warn!(
                            source = %uri,
                            error = %error,
                            "cannot watch the file's directory; relying on polling"
                        );
                    }
                    Err(_) => {}
                }
            }
            if read_now {
                read_now = false;
                last_fingerprint = fingerprint(&self.path).ok();
                self.read(&ctx).await;
            }
            let events = async {
                match watcher.as_mut() {
                    Some((_, rx)) => {
                        if rx.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = ctx.shutdown.wait() => return,
                _ = events => {
                    tokio::time::sleep(DEBOUNCE).await;
                    if let Some((_, rx)) = watcher.as_mut() {
                        rx.borrow_and_update();
                    }
                    read_now = true;
                }
                refresh = ctx.refresh.next() => {
                    last_fingerprint = fingerprint(&self.path).ok();
                    self.read(&ctx).await;
                    refresh.complete(RefreshResult::Done);
                }
                _ = poll.tick() => {
                    let now = fingerprint(&self.path).ok();
                    if now != last_fingerprint {
                        read_now = true;
                    }
                }
            }
        }
    }

    /// Reads the file and hands the bytes (or the failure) to the sink.
    async fn read(&self, ctx: &SourceContext) {
        match limit::read_file(&self.path, self.max_size).await {
            Ok(bytes) => {
                ctx.sink.publish(Payload {
                    bytes: Bytes::from(bytes),
                    format: self.format,
                });
            }
            Err(ReadError::Io(error)) if error.kind() == io::ErrorKind::NotFound => {
                ctx.sink.unavailable("file not found");
            }
            Err(error) => {
                ctx.sink.unavailable(format!("cannot read file: {error}"));
            }
        }
    }
}

impl Source for FileSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(self.watch_loop(ctx))
    }
}
