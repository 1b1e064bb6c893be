//! The `grpc` provider: `grpc://host:port` (plain) and `grpcs://host:port` (TLS), as flagd has
//! them: a `flagd.sync.v1.FlagSyncService/SyncFlags` stream from another flagd-compatible
//! server (flagd, or flagpole's own sync port), each message a full snapshot applied as this
//! source's document.
//!
//! The stream is re-opened after any error or end, backing off from 1 s to 30 s (flagd: 4, 16,
//! 64 s then every 60 s; docs/deviations.md); the last good snapshot keeps being served
//! meanwhile. HTTP/2 keep-alive pings notice an upstream that vanished without closing.
//!
//! The request and response types are the generated protocol types of `service::proto` (the
//! messages only; this source uses nothing of the sync service itself).

use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use super::aws::Backoff;
use super::limit::DEFAULT_MAX_DOCUMENT_SIZE;
use super::provider::RemoteOptions;
use super::source::{Payload, RefreshResult, Source, SourceContext, SourceFuture};
use super::SourceError;
use crate::flags::Format;
use crate::service::proto::sync_v1::flag_sync_service_client::FlagSyncServiceClient;
use crate::service::proto::sync_v1::SyncFlagsRequest;

/// How long connecting may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 keep-alive: ping this often, give up when a ping is not answered in time.
const KEEP_ALIVE: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Streams one upstream's snapshots.
#[derive(Debug)]
pub(crate) struct GrpcSource {
    target: String,
    endpoint: Endpoint,
    provider_id: String,
    selector: Option<String>,
    max_size: usize,
    backoff: Backoff,
}

impl GrpcSource {
    /// A source for `host:port` with flagd's `grpc` options; fails on a bad target or CA file.
    pub(crate) fn new(target: &str, options: &RemoteOptions) -> Result<GrpcSource, SourceError> {
        let bad = |what: String| SourceError::Remote(what);
        let scheme = if options.tls { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{target}"))
            .map_err(|e| bad(format!("invalid grpc target `{target}`: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(KEEP_ALIVE)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        let endpoint = if options.tls {
            let tls = match &options.cert_path {
                Some(path) => {
                    let pem = std::fs::read(path).map_err(|e| {
                        bad(format!("cannot read certPath `{}`: {e}", path.display()))
                    })?;
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
                }
                None => ClientTlsConfig::new().with_native_roots(),
            };
            endpoint
                .tls_config(tls)
                .map_err(|e| bad(format!("TLS set-up for `{target}`: {e}")))?
        } else {
            endpoint
        };
        Ok(GrpcSource {
            target: target.to_owned(),
            endpoint,
            provider_id: options.provider_id.clone().unwrap_or_default(),
            selector: options.selector.clone(),
            max_size: DEFAULT_MAX_DOCUMENT_SIZE,
            backoff: Backoff::default(),
        })
    }

    /// Refuses snapshots larger than `bytes` (default [`DEFAULT_MAX_DOCUMENT_SIZE`]).
    pub(crate) fn max_size(mut self, bytes: usize) -> GrpcSource {
        self.max_size = bytes;
        self
    }

    /// Re-connect delays between `min` and `max` (tests shorten them).
    #[cfg(test)]
    fn backoff(mut self, min: Duration, max: Duration) -> GrpcSource {
        self.backoff = Backoff::new(min, max);
        self
    }

    fn request(&self) -> tonic::Request<SyncFlagsRequest> {
        #[allow(deprecated)] // the body selector is what older servers read
        let body = SyncFlagsRequest {
            provider_id: self.provider_id.clone(),
            selector: self.selector.clone().unwrap_or_default(),
        };
        let mut request = tonic::Request::new(body);
        if let Some(value) = self
            .selector
            .as_deref()
            .and_then(|s| s.parse::<tonic::metadata::MetadataValue<_>>().ok())
        {
            request.metadata_mut().insert("flagd-selector", value);
        }
        request
    }

    async fn run_loop(mut self, mut ctx: SourceContext) {
        let mut shutdown = ctx.shutdown.clone();
        loop {
            let outcome = tokio::select! {
                _ = shutdown.wait() => return,
                outcome = self.stream(&mut ctx) => outcome,
            };
            ctx.sink.read_failed(&outcome);
            let delay = self.backoff.next_delay();
            tracing::debug!(source = %self.target, ?delay, "re-opening the sync stream");
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Opens the stream and applies every snapshot until it fails; returns why it ended.
    async fn stream(&mut self, ctx: &mut SourceContext) -> String {
        let channel = match self.endpoint.connect().await {
            Ok(channel) => channel,
            Err(e) => return format!("connecting to {}: {}", self.target, super::error_chain(&e)),
        };
        // A little room for the message framing around the document.
        let limit = self.max_size.saturating_add(1024);
        let mut client = FlagSyncServiceClient::new(channel).max_decoding_message_size(limit);
        let mut stream = match client.sync_flags(self.request()).await {
            Ok(response) => response.into_inner(),
            Err(status) => return format!("SyncFlags refused: {}", status.message()),
        };
        tracing::info!(source = %self.target, "sync stream open");
        loop {
            let message = tokio::select! {
                message = stream.message() => message,
                // Every snapshot is pushed: a refresh request has nothing to fetch.
                request = ctx.refresh.next() => {
                    request.complete(RefreshResult::Done);
                    continue;
                }
            };
            match message {
                Ok(Some(response)) => {
                    self.backoff.reset();
                    ctx.sink.fetched();
                    ctx.sink.publish(Payload {
                        bytes: response.flag_configuration.into(),
                        format: Format::Json,
                    });
                }
                Ok(None) => return "the upstream ended the sync stream".into(),
                Err(status) => {
                    return format!(
                        "sync stream failed: {:?}: {}",
                        status.code(),
                        status.message()
                    )
                }
            }
        }
    }
}

impl Source for GrpcSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(self.run_loop(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_ca_files_are_checked_at_build() {
        let plain = RemoteOptions::default();
        assert!(GrpcSource::new("localhost:8015", &plain).is_ok());
        assert!(GrpcSource::new("bad host:1", &plain).is_err());
        let missing_ca = RemoteOptions {
            tls: true,
            cert_path: Some("/nonexistent/ca.pem".into()),
            ..RemoteOptions::default()
        };
        let error = GrpcSource::new("localhost:8015", &missing_ca).unwrap_err();
        assert!(error.to_string().contains("certPath"), "{error}");
    }

    #[test]
    fn the_selector_goes_in_the_body_and_the_header() {
        let options = RemoteOptions {
            provider_id: Some("edge-1".into()),
            selector: Some("source=a".into()),
            ..RemoteOptions::default()
        };
        let source = GrpcSource::new("localhost:8015", &options)
            .unwrap()
            .backoff(Duration::from_millis(1), Duration::from_millis(2));
        let request = source.request();
        assert_eq!(
            request.metadata().get("flagd-selector").unwrap(),
            "source=a"
        );
        #[allow(deprecated)]
        let selector = request.get_ref().selector.clone();
        assert_eq!(selector, "source=a");
        assert_eq!(request.get_ref().provider_id, "edge-1");
    }
}
