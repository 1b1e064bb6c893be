//! The S3 provider: `s3://bucket/key.json|.yaml[?region=..&endpoint=..&use_path_style=true]`.
//!
//! Each poll is one `GetObject` with `If-None-Match: <last ETag>`; an unchanged object costs a
//! 304 and nothing else. Polls are spread over the fleet: each replica's period is the
//! configured interval stretched by a deterministic factor in [0.9, 1.1) and its first poll is
//! offset by a deterministic phase, both from a hash of the replica id and the URI. A refresh
//! request (an SQS notification) fetches at once. Failures back off from 1 s to 30 s (never
//! later than the regular period) and keep the last good configuration.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use bytes::Bytes;
use tokio::time::Instant;

use super::aws::{stable_hash, Aws, Backoff, S3Endpoint};
use super::limit::{self, DEFAULT_MAX_DOCUMENT_SIZE};
use super::source::{Payload, RefreshResult, Source, SourceContext, SourceFuture};
use crate::flags::Format;

/// Longest a single GET may take before it counts as failed.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Query options of flagd's (gocloud's) S3 URLs that do not change how flagpole reads.
const IGNORED_OPTIONS: [&str; 6] = [
    "awssdk",
    "dualstack",
    "fips",
    "accelerate",
    "profile",
    "anonymous",
];

/// A malformed `s3://` URI or an unknown option in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct S3UriError(String);

/// A parsed `s3://` source URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The object key, as written in the URI.
    pub key: String,
    /// Client options from the query.
    pub endpoint: S3Endpoint,
}

impl S3Location {
    /// Parses `s3://bucket/key[?options]`.
    pub fn parse(uri: &str) -> Result<S3Location, S3UriError> {
        let malformed = || S3UriError("expected s3://<bucket>/<key>".to_owned());
        let rest = uri.strip_prefix("s3://").ok_or_else(malformed)?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, key) = path
            .split_once('/')
            .filter(|(b, k)| !b.is_empty() && !k.is_empty())
            .ok_or_else(malformed)?;
        let mut endpoint = S3Endpoint::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value, false);
            let flag = || -> Result<bool, S3UriError> {
                match value.to_ascii_lowercase().as_str() {
                    "true" | "1" | "" => Ok(true),
                    "false" | "0" => Ok(false),
                    other => Err(S3UriError(format!("`{name}={other}` is not true or false"))),
                }
            };
            match name {
                "region" => endpoint.region = Some(value.clone()).filter(|v| !v.is_empty()),
                "endpoint" => endpoint.endpoint = Some(value.clone()).filter(|v| !v.is_empty()),
                "use_path_style" | "s3ForcePathStyle" => endpoint.path_style = flag()?,
                "disable_https" | "disableSSL" => endpoint.disable_https = flag()?,
                other if IGNORED_OPTIONS.contains(&other) => {}
                other => return Err(S3UriError(format!("unknown S3 URL option `{other}`"))),
            }
        }
        Ok(S3Location {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            endpoint,
        })
    }

    /// The format the key's extension names, if any.
    pub fn format(&self) -> Option<Format> {
        Format::from_path(Path::new(&self.key))
    }
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`, as S3 event keys use).
pub(crate) fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

/// What one conditional GET found.
#[derive(Debug)]
enum Fetch {
    /// A new version (200).
    Modified {
        bytes: Bytes,
        content_type: Option<String>,
    },
    /// Unchanged since the last ETag (304).
    NotModified,
    /// No such object (404).
    Missing,
}

/// Why a GET failed.
#[derive(Debug)]
enum FetchError {
    /// 503 SlowDown or 429: back off.
    Throttled(String),
    /// Anything else (unreachable, denied, timed out).
    Failed(String),
}

/// One S3 object and the ETag of the version last seen.
#[derive(Debug)]
struct S3Object {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    etag: Option<String>,
    max_size: usize,
}

/// Collects an object's body, failing as soon as it grows past `limit` bytes.
async fn read_body(
    mut body: aws_sdk_s3::primitives::ByteStream,
    limit: usize,
) -> Result<Bytes, FetchError> {
    let mut collected = bytes::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| FetchError::Failed(format!("reading the object: {e}")))?;
        limit::check(collected.len().saturating_add(chunk.len()), limit)
            .map_err(|e| FetchError::Failed(e.to_string()))?;
        collected.extend_from_slice(&chunk);
    }
    Ok(collected.freeze())
}

impl S3Object {
    async fn fetch(&mut self) -> Result<Fetch, FetchError> {
        let mut request = self.client.get_object().bucket(&self.bucket).key(&self.key);
        if let Some(etag) = &self.etag {
            request = request.if_none_match(etag);
        }
        let response = match tokio::time::timeout(FETCH_TIMEOUT, request.send()).await {
            Err(_) => return Err(FetchError::Failed("GetObject timed out".into())),
            Ok(response) => response,
        };
        match response {
            Ok(output) => {
                let etag = output.e_tag.clone();
                let content_type = output.content_type.clone();
                let too_large = |e: limit::ReadError| FetchError::Failed(e.to_string());
                // Refuse by the announced length first, then count while streaming: the
                // length may be absent or wrong (a proxy, another S3-compatible store).
                let announced = output.content_length.unwrap_or(0).max(0) as u64;
                limit::check(
                    usize::try_from(announced).unwrap_or(usize::MAX),
                    self.max_size,
                )
                .map_err(too_large)?;
                let body =
                    tokio::time::timeout(FETCH_TIMEOUT, read_body(output.body, self.max_size))
                        .await
                        .map_err(|_| FetchError::Failed("reading the object timed out".into()))??;
                self.etag = etag;
                Ok(Fetch::Modified {
                    bytes: body,
                    content_type,
                })
            }
            Err(SdkError::ServiceError(context)) => {
                let status = context.raw().status().as_u16();
                // Code and message only: request ids would make every retry look new.
                let error = context.err();
                let message = format!(
                    "HTTP {status} {}: {}",
                    error.code().unwrap_or("error"),
                    error.message().unwrap_or("no message")
                );
                match status {
                    304 => Ok(Fetch::NotModified),
                    404 => {
                        self.etag = None;
                        Ok(Fetch::Missing)
                    }
                    429 | 503 => Err(FetchError::Throttled(message)),
                    _ => Err(FetchError::Failed(message)),
                }
            }
            Err(other) => Err(FetchError::Failed(DisplayErrorContext(&other).to_string())),
        }
    }
}

/// Polls one S3 object and publishes each new version.
#[derive(Debug)]
pub struct S3Source {
    uri: String,
    location: S3Location,
    aws: Arc<Aws>,
    interval: Duration,
    max_size: usize,
}

impl S3Source {
    /// A source for `uri` polling every `interval` (spread per replica); fails on a malformed
    /// URI or an unknown option.
    pub fn new(uri: &str, aws: Arc<Aws>, interval: Duration) -> Result<S3Source, S3UriError> {
        Ok(S3Source {
            uri: uri.to_owned(),
            location: S3Location::parse(uri)?,
            aws,
            interval: interval.max(Duration::from_millis(10)),
            max_size: DEFAULT_MAX_DOCUMENT_SIZE,
        })
    }

    /// Refuses objects larger than `bytes` (default [`DEFAULT_MAX_DOCUMENT_SIZE`]).
    pub fn max_size(mut self, bytes: usize) -> S3Source {
        self.max_size = bytes;
        self
    }

    /// This replica's poll period and the offset of its first poll.
    fn schedule(&self, replica: &str) -> (Duration, Duration) {
        let hash = stable_hash(&[replica, &self.uri]);
        let stretch = 0.9 + (hash % 1000) as f64 / 5000.0;
        let period = self.interval.mul_f64(stretch);
        let phase = Duration::from_nanos((hash >> 20) % period.as_nanos().max(1) as u64);
        (period, phase)
    }

    async fn poll_loop(self, mut ctx: SourceContext) {
        let client = self.aws.s3(&self.location.endpoint).await;
        let (period, phase) = self.schedule(self.aws.replica().await);
        let mut object = S3Object {
            client,
            bucket: self.location.bucket.clone(),
            key: self.location.key.clone(),
            etag: None,
            max_size: self.max_size,
        };
        let mut backoff = Backoff::default();
        let mut next = Instant::now();
        let mut phase = Some(phase);
        loop {
            let refresh = tokio::select! {
                _ = ctx.shutdown.wait() => return,
                _ = tokio::time::sleep_until(next) => None,
                refresh = ctx.refresh.next() => Some(refresh),
            };
            let result = self.poll(&mut object, &ctx).await;
            next = Instant::now()
                + match &result {
                    RefreshResult::Done => {
                        backoff.reset();
                        phase.take().unwrap_or(period)
                    }
                    RefreshResult::Failed(_) => backoff.next_delay().min(period),
                };
            if let Some(refresh) = refresh {
                refresh.complete(result);
            }
        }
    }

    /// One conditional GET, its outcome handed to the sink.
    async fn poll(&self, object: &mut S3Object, ctx: &SourceContext) -> RefreshResult {
        let sink = &ctx.sink;
        match object.fetch().await {
            Ok(Fetch::Modified {
                bytes,
                content_type,
            }) => {
                sink.fetched();
                let format = self
                    .location
                    .format()
                    .or_else(|| content_type.as_deref().and_then(Format::from_content_type))
                    .unwrap_or_else(|| Format::sniff(&bytes));
                sink.publish(Payload { bytes, format });
                RefreshResult::Done
            }
            Ok(Fetch::NotModified) => {
                sink.not_modified();
                RefreshResult::Done
            }
            Ok(Fetch::Missing) => {
                sink.read_failed("object not found");
                RefreshResult::Done
            }
            Err(FetchError::Throttled(message)) => {
                let reason = format!("throttled by S3: {message}");
                sink.read_failed(&reason);
                RefreshResult::Failed(reason)
            }
            Err(FetchError::Failed(message)) => {
                sink.read_failed(&message);
                RefreshResult::Failed(message)
            }
        }
    }
}

impl Source for S3Source {
    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(self.poll_loop(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::AwsSettings;

    #[test]
    fn uris_with_flagd_options() {
        let l = S3Location::parse(
            "s3://bucket/dir/flags.yaml?region=eu-west-1&endpoint=localhost:9000&use_path_style=true&disable_https=true&awssdk=v2",
        )
        .unwrap();
        assert_eq!(
            (l.bucket.as_str(), l.key.as_str()),
            ("bucket", "dir/flags.yaml")
        );
        assert_eq!(l.endpoint.region.as_deref(), Some("eu-west-1"));
        assert_eq!(l.endpoint.endpoint.as_deref(), Some("localhost:9000"));
        assert!(l.endpoint.path_style && l.endpoint.disable_https);
        assert_eq!(l.format(), Some(Format::Yaml));
        let v1 = S3Location::parse("s3://b/k?s3ForcePathStyle=true").unwrap();
        assert!(v1.endpoint.path_style);
        assert_eq!(v1.format(), None);
        assert!(S3Location::parse("s3://b/k.json?bogus=1").is_err());
        assert!(S3Location::parse("s3://b/k.json?use_path_style=maybe").is_err());
        assert!(S3Location::parse("s3://bucket").is_err());
        assert!(S3Location::parse("s3:///key").is_err());
        assert!(S3Location::parse("file:x.json").is_err());
    }

    #[test]
    fn event_keys_decode() {
        assert_eq!(
            percent_decode("dir/my+flags%2B1.json", true),
            "dir/my flags+1.json"
        );
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("100%", true), "100%");
        assert_eq!(percent_decode("%zz", true), "%zz");
        assert_eq!(percent_decode("caf%C3%A9", true), "café");
    }

    #[test]
    fn formats_from_content_type_and_content() {
        assert_eq!(
            Format::from_content_type("application/x-yaml; charset=utf-8"),
            Some(Format::Yaml)
        );
        assert_eq!(
            Format::from_content_type("application/json"),
            Some(Format::Json)
        );
        assert_eq!(Format::from_content_type("binary/octet-stream"), None);
        assert_eq!(Format::sniff(b"  {\"flags\":{}}"), Format::Json);
        assert_eq!(Format::sniff(b"flags: {}"), Format::Yaml);
    }

    #[test]
    fn schedules_spread_replicas_deterministically() {
        let aws = Arc::new(Aws::new(AwsSettings::default()));
        let source = S3Source::new("s3://b/k.json", aws, Duration::from_secs(100)).unwrap();
        let a = source.schedule("replica-a");
        assert_eq!(a, source.schedule("replica-a"));
        let periods: std::collections::HashSet<_> = (0..20)
            .map(|i| source.schedule(&format!("replica-{i}")).0)
            .collect();
        assert!(periods.len() > 10, "periods should differ between replicas");
        for i in 0..20 {
            let (period, phase) = source.schedule(&format!("replica-{i}"));
            assert!(period >= Duration::from_secs(90) && period < Duration::from_secs(110));
            assert!(phase < period);
        }
    }
}
