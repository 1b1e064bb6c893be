//! Shared AWS plumbing: one SDK configuration per daemon, clients built from it, the
//! replica's identity, and the backoff every AWS loop uses.
//!
//! Credentials and region come from the standard chain (environment, shared profile files,
//! web identity, ECS container credentials, IMDS); `AWS_ENDPOINT_URL` and the per-service
//! `AWS_ENDPOINT_URL_S3|_SQS|_SNS` are honoured. HTTPS goes through rustls with the `ring`
//! provider (no OpenSSL, no aws-lc build).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use tokio::sync::OnceCell;

use super::settings::AwsSettings;

/// Lazily loaded AWS configuration and clients, shared by every AWS task of one daemon.
#[derive(Debug)]
pub struct Aws {
    settings: AwsSettings,
    replica: OnceCell<String>,
    sdk: OnceCell<SdkConfig>,
    s3: Mutex<HashMap<S3Endpoint, aws_sdk_s3::Client>>,
}

/// Per-source S3 client options (from the `s3://` URI's query).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct S3Endpoint {
    /// `region=`.
    pub region: Option<String>,
    /// `endpoint=` (a bare host gets `https://`, or `http://` with `disable_https`).
    pub endpoint: Option<String>,
    /// `use_path_style=true` / `s3ForcePathStyle=true`.
    pub path_style: bool,
    /// `disable_https=true`.
    pub disable_https: bool,
}

impl Aws {
    /// Shared state for the given options; nothing is loaded until a client is asked for.
    pub fn new(settings: AwsSettings) -> Aws {
        Aws {
            settings,
            replica: OnceCell::new(),
            sdk: OnceCell::new(),
            s3: Mutex::new(HashMap::new()),
        }
    }

    /// The options this was built from.
    pub fn settings(&self) -> &AwsSettings {
        &self.settings
    }

    /// This replica's identity (queue names, poll jitter): the configured id, else the ECS
    /// task id, else the hostname with a random suffix.
    pub async fn replica(&self) -> &str {
        self.replica
            .get_or_init(|| async {
                if let Some(id) = &self.settings.replica_id {
                    return id.clone();
                }
                match ecs_task_id().await {
                    Some(id) => id,
                    None => default_replica_id(),
                }
            })
            .await
    }

    /// The SDK configuration (loaded once: credentials chain, region chain, endpoints).
    pub async fn sdk_config(&self) -> &SdkConfig {
        self.sdk
            .get_or_init(|| async {
                let http = aws_smithy_http_client::Builder::new()
                    .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                    .build_https();
                let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
                if let Some(region) = &self.settings.region {
                    loader = loader.region(Region::new(region.clone()));
                }
                if let Some(url) = &self.settings.endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                loader.load().await
            })
            .await
    }

    /// An S3 client for one source's options (cached per distinct options).
    pub async fn s3(&self, endpoint: &S3Endpoint) -> aws_sdk_s3::Client {
        if let Some(client) = self.lock_s3().get(endpoint) {
            return client.clone();
        }
        let sdk = self.sdk_config().await;
        let mut config = aws_sdk_s3::config::Builder::from(sdk);
        if let Some(region) = &endpoint.region {
            config = config.region(Region::new(region.clone()));
        }
        if let Some(url) = &endpoint.endpoint {
            let url = if url.contains("://") {
                url.clone()
            } else if endpoint.disable_https {
                format!("http://{url}")
            } else {
                format!("https://{url}")
            };
            config = config.endpoint_url(url);
        }
        if endpoint.path_style {
            config = config.force_path_style(true);
        }
        let client = aws_sdk_s3::Client::from_conf(config.build());
        self.lock_s3()
            .entry(endpoint.clone())
            .or_insert(client)
            .clone()
    }

    /// The SQS client.
    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(self.sdk_config().await)
    }

    /// The SNS client.
    pub async fn sns(&self) -> aws_sdk_sns::Client {
        aws_sdk_sns::Client::new(self.sdk_config().await)
    }

    fn lock_s3(&self) -> std::sync::MutexGuard<'_, HashMap<S3Endpoint, aws_sdk_s3::Client>> {
        self.s3.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The hostname plus a random suffix (replicas on one host, restarts, must not collide).
fn default_replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "flagpole".to_owned());
    format!("{host}-{:08x}", random_u64() as u32)
}

/// A random number from the standard library's per-process hash keys (no RNG crate needed
/// for names and jitter).
pub(crate) fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    std::time::SystemTime::now().hash(&mut hasher);
    std::process::id().hash(&mut hasher);
    hasher.finish()
}

/// A stable hash (FNV-1a) for deterministic per-replica jitter.
pub(crate) fn stable_hash(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Reads the ECS task id from the task metadata endpoint (v4), if running on ECS.
///
/// `ECS_CONTAINER_METADATA_URI_V4` is a plain-HTTP link-local URL; `GET $URI/task` answers
/// JSON with `TaskARN` (`arn:aws:ecs:region:account:task/cluster/TASK_ID`).
pub(super) async fn ecs_task_id() -> Option<String> {
    let base = std::env::var("ECS_CONTAINER_METADATA_URI_V4").ok()?;
    ecs_task_id_from(&base).await
}

/// The task id the metadata endpoint at `base` reports.
async fn ecs_task_id_from(base: &str) -> Option<String> {
    let body = tokio::time::timeout(Duration::from_secs(2), http_get(&format!("{base}/task")))
        .await
        .ok()??;
    let value: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let arn = value.get("TaskARN")?.as_str()?;
    arn.rsplit('/').next().map(str::to_owned)
}

/// A minimal HTTP/1.0 GET for the metadata endpoint (no HTTP client needed for one request).
async fn http_get(url: &str) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = tokio::net::TcpStream::connect(authority).await.ok()?;
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = std::str::from_utf8(&response[..split]).ok()?;
    status
        .split_whitespace()
        .nth(1)
        .filter(|code| *code == "200")?;
    Some(response[split + 4..].to_vec())
}

/// Capped exponential backoff (1 s, 2 s, 4 s, ... 30 s), reset on success.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(30))
    }
}

impl Backoff {
    /// Starts at `min`, doubles up to `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            next: min,
            min,
            max,
        }
    }

    /// The delay before the next retry (doubling each call).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Back to the shortest delay after a success.
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// Whether the last call was a failure (a delay above the minimum is pending).
    pub fn failing(&self) -> bool {
        self.next > self.min
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert!(b.failing());
        b.reset();
        assert_eq!(b.next_delay().as_secs(), 1);
    }

    #[tokio::test]
    async fn the_task_id_comes_from_the_metadata_endpoint() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v4/abc", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 1024];
            let n = socket.read(&mut request).await.unwrap();
            let request = String::from_utf8_lossy(&request[..n]).into_owned();
            let body = r#"{"Cluster":"c","TaskARN":"arn:aws:ecs:us-east-1:1:task/c/0123abcd"}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            request
        });
        assert_eq!(ecs_task_id_from(&base).await.as_deref(), Some("0123abcd"));
        assert!(server
            .await
            .unwrap()
            .starts_with("GET /v4/abc/task HTTP/1.0"));
    }

    #[test]
    fn stable_hash_is_stable_and_separates_parts() {
        assert_eq!(stable_hash(&["a", "b"]), stable_hash(&["a", "b"]));
        assert_ne!(stable_hash(&["ab", ""]), stable_hash(&["a", "b"]));
    }
}
