//! What a configured source is: its URI, its provider (as flagd spells it) and its interval.

use std::time::Duration;

/// The providers flagpole can run, under the names flagd gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// A local file, watched for changes (`file`).
    File,
    /// A local file (`fsnotify`, flagd's older name for `file`).
    Fsnotify,
    /// A local file (`fileinfo`, flagd's polling variant; flagpole watches and polls alike).
    Fileinfo,
    /// An S3 object (polling by ETag; change notifications via SQS).
    S3,
    /// An `http://` or `https://` URL, polled with conditional GETs (`http`).
    Http,
    /// A `flagd.sync.v1.FlagSyncService` stream of another flagd-compatible server (`grpc`).
    Grpc,
}

/// Provider names of flagd that flagpole does not have yet.
const UNSUPPORTED: [&str; 3] = ["kubernetes", "gcs", "azblob"];

/// A provider name flagpole cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// A flagd provider flagpole does not have yet.
    #[error(
        "the `{0}` provider is not supported by flagpole yet (supported: file, s3, http, grpc)"
    )]
    Unsupported(String),
    /// No provider of that name exists.
    #[error("unknown provider `{0}` (expected file, fsnotify, fileinfo, s3, http or grpc)")]
    Unknown(String),
}

impl Provider {
    /// Parses a provider name; flagd providers flagpole does not have yet get a clear message.
    pub fn parse(name: &str) -> Result<Provider, ProviderError> {
        match name {
            "file" => Ok(Provider::File),
            "fsnotify" => Ok(Provider::Fsnotify),
            "fileinfo" => Ok(Provider::Fileinfo),
            "s3" => Ok(Provider::S3),
            "http" => Ok(Provider::Http),
            "grpc" => Ok(Provider::Grpc),
            other if UNSUPPORTED.contains(&other) => {
                Err(ProviderError::Unsupported(other.to_owned()))
            }
            other => Err(ProviderError::Unknown(other.to_owned())),
        }
    }

    /// The name as configured (and shown in stats and logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::File => "file",
            Provider::Fsnotify => "fsnotify",
            Provider::Fileinfo => "fileinfo",
            Provider::S3 => "s3",
            Provider::Http => "http",
            Provider::Grpc => "grpc",
        }
    }

    /// Whether this provider reads a local file.
    pub fn is_file(self) -> bool {
        matches!(
            self,
            Provider::File | Provider::Fsnotify | Provider::Fileinfo
        )
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Provider {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Provider {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One configured sync source (a `--uri` entry or a `--sources` object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// The URI as stored and matched by `source=` selectors (e.g. `./flags.json`, `s3://b/k.json`).
    pub uri: String,
    /// The provider.
    pub provider: Provider,
    /// Poll interval for polling providers.
    pub interval: Option<Duration>,
    /// The options of remote (`http`, `grpc`) sources; default for the others.
    pub remote: RemoteOptions,
}

/// The `--sources` fields of flagd's `http` and `grpc` providers (spec 6.2).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RemoteOptions {
    /// http: the whole `Authorization` value (`authHeader`, or `Bearer <bearerToken>`).
    pub auth_header: Option<String>,
    /// http: extra request headers (`headers`).
    pub headers: Vec<(String, String)>,
    /// http: the limit of one request, body included (`timeoutS`; `None`: flagpole's default).
    pub timeout: Option<Duration>,
    /// grpc: connect with TLS (`tls`, or the `grpcs://` prefix).
    pub tls: bool,
    /// grpc, https: the CA certificate (PEM) to trust instead of the system roots (`certPath`).
    pub cert_path: Option<std::path::PathBuf>,
    /// grpc: sent upstream as `provider_id` (`providerID`).
    pub provider_id: Option<String>,
    /// grpc: sent upstream as `selector` and `flagd-selector` (`selector`).
    pub selector: Option<String>,
}

impl std::fmt::Debug for RemoteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials never reach a log line through `{:?}`.
        f.debug_struct("RemoteOptions")
            .field(
                "auth_header",
                &self.auth_header.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .field("cert_path", &self.cert_path)
            .field("provider_id", &self.provider_id)
            .field("selector", &self.selector)
            .finish()
    }
}

/// Names of the sources that are not configured but still show in stats and logs.
pub mod names {
    /// The built-in example flags (served when nothing is configured).
    pub const EMBEDDED: &str = "embedded";
    /// Documents delivered inside SQS messages.
    pub const INLINE: &str = "sqs-inline";
    /// An SQS queue being consumed (listed for its counters only).
    pub const QUEUE: &str = "sqs";
}
