//! Provider names as flagd spells them.

/// The providers flagpole can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// A local file (`file`, `fsnotify` and `fileinfo` all mean this).
    File,
    /// An S3 object (polling by ETag; change notifications via SQS).
    S3,
}

impl Provider {
    /// Parses a provider name; flagd providers flagpole does not have yet get a clear message.
    pub fn parse(name: &str) -> Result<Provider, String> {
        match name {
            "file" | "fsnotify" | "fileinfo" => Ok(Provider::File),
            "s3" => Ok(Provider::S3),
            "http" | "grpc" | "kubernetes" | "gcs" | "azblob" => Err(format!(
                "the `{name}` provider is not supported by flagpole yet (supported: file, s3)"
            )),
            other => Err(format!(
                "unknown provider `{other}` (expected file, fsnotify, fileinfo or s3)"
            )),
        }
    }
}
