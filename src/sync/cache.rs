//! `--cache-dir`: the last applied document of every source, kept on disk so a daemon that
//! restarts while its store is unreachable (an S3 outage, a network partition) starts
//! serving the last configuration it knew instead of nothing.
//!
//! One file per source, named by a hash of the source URI. The first line is a header
//! (`flagpole-cache 1 <json|yaml> <uri>`), the rest the document exactly as fetched. Files
//! are written to a temporary name, synced and renamed, so a crash leaves the old copy or the
//! new one, never half of one. A file whose header names another URI (a hash collision, a
//! directory shared by mistake) or that cannot be read is ignored with a warning.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::aws::stable_hash;
use super::limit;
use super::source::Payload;
use crate::flags::Format;

const MAGIC: &str = "flagpole-cache 1";

/// A directory of cached source documents.
#[derive(Debug)]
pub(super) struct Cache {
    dir: PathBuf,
    max_size: usize,
}

impl Cache {
    /// Uses `dir` (created if missing); documents above `max_size` bytes are not read back.
    pub(super) fn new(dir: &Path, max_size: usize) -> io::Result<Cache> {
        fs::create_dir_all(dir)?;
        Ok(Cache {
            dir: dir.to_owned(),
            max_size,
        })
    }

    fn path(&self, uri: &str) -> PathBuf {
        self.dir
            .join(format!("source-{:016x}.cache", stable_hash(&[uri])))
    }

    /// Replaces the cached copy of `uri` with `payload` (write, fsync, rename).
    pub(super) fn store(&self, uri: &str, payload: &Payload) -> io::Result<()> {
        let path = self.path(uri);
        let temporary = path.with_extension("tmp");
        let format = match payload.format {
            Format::Json => "json",
            Format::Yaml => "yaml",
        };
        {
            let mut file = fs::File::create(&temporary)?;
            // URIs hold no newline (they are single command-line or config values), but the
            // header must stay one line whatever they hold.
            let uri_line = uri.replace(['\n', '\r'], " ");
            writeln!(file, "{MAGIC} {format} {uri_line}")?;
            file.write_all(&payload.bytes)?;
            file.sync_all()?;
        }
        fs::rename(&temporary, &path)?;
        // The rename is durable only once the directory entry is.
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// The cached copy of `uri`, if there is a readable one made for that URI.
    pub(super) fn load(&self, uri: &str) -> Option<Payload> {
        let path = self.path(uri);
        let bytes = match limit::read_file_blocking(&path, self.max_size.saturating_add(4096)) {
            Ok(bytes) => bytes,
            Err(limit::ReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!(source = uri, path = %path.display(), %error, "ignoring the cached copy");
                return None;
            }
        };
        match parse(&bytes, uri) {
            Ok(payload) => Some(payload),
            Err(reason) => {
                tracing::warn!(source = uri, path = %path.display(), reason, "ignoring the cached copy");
                None
            }
        }
    }
}

fn parse(bytes: &[u8], uri: &str) -> Result<Payload, &'static str> {
    let end = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("no header line")?;
    let header = std::str::from_utf8(&bytes[..end]).map_err(|_| "the header is not UTF-8")?;
    let rest = header
        .strip_prefix(MAGIC)
        .ok_or("not a flagpole cache file")?;
    let (format, cached_uri) = rest
        .trim_start()
        .split_once(' ')
        .ok_or("malformed header")?;
    let format = match format {
        "json" => Format::Json,
        "yaml" => Format::Yaml,
        _ => return Err("unknown document format"),
    };
    if cached_uri != uri.replace(['\n', '\r'], " ") {
        return Err("made for another source");
    }
    Ok(Payload {
        bytes: Bytes::copy_from_slice(&bytes[end + 1..]),
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("flagpole-cache-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn round_trips_per_source() {
        let dir = dir("round");
        let cache = Cache::new(&dir, 1 << 20).unwrap();
        let payload = Payload {
            bytes: Bytes::from_static(b"flags: {}\n"),
            format: Format::Yaml,
        };
        cache.store("s3://b/a.yaml", &payload).unwrap();
        let back = cache.load("s3://b/a.yaml").unwrap();
        assert_eq!((back.bytes, back.format), (payload.bytes, Format::Yaml));
        assert!(cache.load("s3://b/other.yaml").is_none());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn corrupt_and_foreign_files_are_ignored() {
        let dir = dir("corrupt");
        let cache = Cache::new(&dir, 1 << 20).unwrap();
        let uri = "s3://b/a.json";
        fs::write(cache.path(uri), b"garbage without header").unwrap();
        assert!(cache.load(uri).is_none());
        fs::write(cache.path(uri), b"flagpole-cache 1 json s3://b/z.json\n{}").unwrap();
        assert!(cache.load(uri).is_none(), "made for another URI");
        fs::write(cache.path(uri), b"flagpole-cache 1 toml s3://b/a.json\n{}").unwrap();
        assert!(cache.load(uri).is_none());
        fs::write(cache.path(uri), b"flagpole-cache 1 json s3://b/a.json\n{}").unwrap();
        assert!(cache.load(uri).is_some());
        fs::remove_dir_all(dir).unwrap();
    }
}
