//! Bounded reads: no file, S3 object or configuration document may be larger than the
//! configured maximum, and an oversized one is refused before it is held in memory (a
//! symlink to `/dev/zero` or a multi-gigabyte object must not exhaust the daemon).

use std::io;
use std::path::Path;

use tokio::io::AsyncReadExt;

/// The default `--max-document-size`: 16 MiB, far above any flag document seen in practice.
pub const DEFAULT_MAX_DOCUMENT_SIZE: usize = 16 << 20;

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The source could not be read.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The document is larger than allowed.
    #[error("document larger than {limit} bytes (raise --max-document-size to accept it)")]
    TooLarge {
        /// The configured maximum.
        limit: usize,
    },
}

/// Reads at most `limit` bytes of `path`; longer files are [`ReadError::TooLarge`].
pub async fn read_file(path: &Path, limit: usize) -> Result<Vec<u8>, ReadError> {
    let file = tokio::fs::File::open(path).await?;
    let mut bytes = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "over it".
    file.take(limit as u64 + 1).read_to_end(&mut bytes).await?;
    check(bytes.len(), limit)?;
    Ok(bytes)
}

/// The synchronous twin of [`read_file`], for the start-up configuration file.
pub fn read_file_blocking(path: &Path, limit: usize) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)?;
    check(bytes.len(), limit)?;
    Ok(bytes)
}

/// Fails when `len` exceeds `limit`.
pub fn check(len: usize, limit: usize) -> Result<(), ReadError> {
    if len > limit {
        Err(ReadError::TooLarge { limit })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endless_files_are_cut_at_the_limit() {
        let error = read_file(Path::new("/dev/zero"), 1024).await.unwrap_err();
        assert!(matches!(error, ReadError::TooLarge { limit: 1024 }));
        assert!(error.to_string().contains("--max-document-size"));
        let error = read_file_blocking(Path::new("/dev/zero"), 10).unwrap_err();
        assert!(matches!(error, ReadError::TooLarge { limit: 10 }));
    }

    #[tokio::test]
    async fn files_up_to_the_limit_are_read() {
        let dir = std::env::temp_dir().join(format!("flagpole-limit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.json");
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(read_file(&path, 10).await.unwrap(), b"0123456789");
        assert!(read_file(&path, 9).await.is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
