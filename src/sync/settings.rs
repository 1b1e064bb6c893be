//! The sync layer's own configuration: its options as flags, `FLAGPOLE_*` variables and
//! config-file keys ([`AwsOptions`], one layer), resolved into [`AwsSettings`], and the whole
//! [`SyncConfig`] the [`Supervisor`](super::Supervisor) starts from.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::limit::DEFAULT_MAX_DOCUMENT_SIZE;
use super::provider::SourceConfig;
use crate::options::duration::duration_arg;
use crate::options::{layered, lenient};
use crate::telemetry::Tracer;

/// Messages per SQS receive, as SQS allows.
const SQS_BATCH: std::ops::RangeInclusive<i32> = 1..=10;
/// The longest SQS long-poll wait.
const MAX_SQS_WAIT: Duration = Duration::from_secs(20);
/// The longest SQS visibility timeout (12 h).
const MAX_SQS_VISIBILITY: Duration = Duration::from_secs(43_200);

layered! {
    /// The AWS options of one configuration layer (`None` = not given here).
    #[derive(Debug, Clone, Default, PartialEq, Args, Deserialize)]
    #[serde(default, rename_all = "kebab-case")]
    pub struct AwsOptions {
        /// AWS region for S3, SQS and SNS (default: the standard AWS chain).
        #[arg(long, env = "FLAGPOLE_AWS_REGION")]
        #[serde(deserialize_with = "lenient::name")]
        pub aws_region: Option<String>,
        /// Endpoint URL for S3, SQS and SNS (default: `AWS_ENDPOINT_URL[_S3|_SQS|_SNS]`, else AWS).
        #[arg(long, env = "FLAGPOLE_AWS_ENDPOINT_URL")]
        #[serde(deserialize_with = "lenient::name")]
        pub aws_endpoint_url: Option<String>,
        /// SQS queue to long-poll for S3 change events and inline flag documents.
        #[arg(long, env = "FLAGPOLE_SQS_QUEUE_URL")]
        #[serde(deserialize_with = "lenient::name")]
        pub sqs_queue_url: Option<String>,
        /// SNS topic to fan out from: each replica subscribes a queue of its own.
        #[arg(long, env = "FLAGPOLE_SNS_TOPIC_ARN")]
        #[serde(deserialize_with = "lenient::name")]
        pub sns_topic_arn: Option<String>,
        /// Name prefix of the per-replica fan-out queues (default `flagpole-`).
        #[arg(long, env = "FLAGPOLE_SQS_QUEUE_PREFIX")]
        #[serde(deserialize_with = "lenient::name")]
        pub sqs_queue_prefix: Option<String>,
        /// Dead-letter queue (ARN) for the fan-out queues: a message received 5 times without
        /// being handled moves there instead of returning until it expires.
        #[arg(long, env = "FLAGPOLE_SQS_DEAD_LETTER_ARN")]
        #[serde(deserialize_with = "lenient::name")]
        pub sqs_dead_letter_arn: Option<String>,
        /// Inline flag documents over SQS are accepted only for these source names
        /// (comma-separated; `*` for any). Off by default: whoever can publish to the queue
        /// would otherwise control every flag.
        #[arg(long, env = "FLAGPOLE_SQS_INLINE", value_delimiter = ',')]
        #[serde(deserialize_with = "lenient::list")]
        pub sqs_inline: Option<Vec<String>>,
        /// Remove an inline source after this long without a message for it (default 0: never).
        #[arg(long, env = "FLAGPOLE_SQS_INLINE_EXPIRY", value_parser = duration_arg)]
        #[serde(deserialize_with = "lenient::duration")]
        pub sqs_inline_expiry: Option<Duration>,
        /// Messages per SQS receive, 1 to 10 (default 10).
        #[arg(long, env = "FLAGPOLE_SQS_BATCH_SIZE")]
        #[serde(deserialize_with = "lenient::number")]
        pub sqs_batch_size: Option<i32>,
        /// Visibility timeout of received SQS messages (default 30s).
        #[arg(long, env = "FLAGPOLE_SQS_VISIBILITY_TIMEOUT", value_parser = duration_arg)]
        #[serde(deserialize_with = "lenient::duration")]
        pub sqs_visibility_timeout: Option<Duration>,
        /// SQS long-poll wait, at most 20s (default 20s).
        #[arg(long, env = "FLAGPOLE_SQS_WAIT_TIME", value_parser = duration_arg)]
        #[serde(deserialize_with = "lenient::duration")]
        pub sqs_wait_time: Option<Duration>,
        /// S3 poll interval without SQS, for sources without `interval` (default 5s).
        #[arg(long, env = "FLAGPOLE_S3_POLL_INTERVAL", value_parser = duration_arg)]
        #[serde(deserialize_with = "lenient::duration")]
        pub s3_poll_interval: Option<Duration>,
        /// S3 safety-net poll interval while SQS delivers changes (default 300s).
        #[arg(long, env = "FLAGPOLE_S3_SAFETY_POLL_INTERVAL", value_parser = duration_arg)]
        #[serde(deserialize_with = "lenient::duration")]
        pub s3_safety_poll_interval: Option<Duration>,
        /// This replica's name for its fan-out queue and poll jitter (default: ECS task id or
        /// hostname).
        #[arg(long, env = "FLAGPOLE_REPLICA_ID")]
        #[serde(deserialize_with = "lenient::name")]
        pub replica_id: Option<String>,
    }
}

/// An AWS option with a value AWS would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for `{key}`: {message}")]
pub struct AwsOptionError {
    /// The option name.
    pub key: &'static str,
    /// What is wrong.
    pub message: &'static str,
}

impl AwsOptions {
    /// Rejects values AWS would refuse.
    pub fn check(&self) -> Result<(), AwsOptionError> {
        let fail = |key, message| Err(AwsOptionError { key, message });
        if let Some(arn) = self
            .sqs_dead_letter_arn
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            let parts: Vec<&str> = arn.split(':').collect();
            if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sqs" || parts[5].is_empty() {
                return fail(
                    "sqs-dead-letter-arn",
                    "expected an SQS queue ARN (arn:aws:sqs:<region>:<account>:<name>)",
                );
            }
        }
        if self.sqs_batch_size.is_some_and(|n| !SQS_BATCH.contains(&n)) {
            return fail("sqs-batch-size", "must be between 1 and 10");
        }
        if self.sqs_wait_time.is_some_and(|d| d > MAX_SQS_WAIT) {
            return fail("sqs-wait-time", "must be at most 20s");
        }
        if self
            .sqs_visibility_timeout
            .is_some_and(|d| d > MAX_SQS_VISIBILITY)
        {
            return fail("sqs-visibility-timeout", "must be at most 12h");
        }
        for (key, value) in [
            ("s3-poll-interval", self.s3_poll_interval),
            ("s3-safety-poll-interval", self.s3_safety_poll_interval),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                return fail(key, "must be more than 0");
            }
        }
        Ok(())
    }

    /// The settings, with defaults for whatever no layer gave.
    pub fn into_settings(self) -> AwsSettings {
        let d = AwsSettings::default();
        AwsSettings {
            region: self.aws_region,
            endpoint_url: self.aws_endpoint_url,
            config_object: None,
            sqs_queue_url: self.sqs_queue_url,
            sns_topic_arn: self.sns_topic_arn,
            sqs_queue_prefix: self.sqs_queue_prefix.unwrap_or(d.sqs_queue_prefix),
            sqs_dead_letter_arn: self.sqs_dead_letter_arn.filter(|s| !s.is_empty()),
            sqs_inline: self.sqs_inline.unwrap_or_default(),
            sqs_inline_expiry: self.sqs_inline_expiry.unwrap_or_default(),
            sqs_batch_size: self.sqs_batch_size.unwrap_or(d.sqs_batch_size),
            sqs_visibility_timeout: self
                .sqs_visibility_timeout
                .unwrap_or(d.sqs_visibility_timeout),
            sqs_wait_time: self.sqs_wait_time.unwrap_or(d.sqs_wait_time),
            s3_poll_interval: self.s3_poll_interval.unwrap_or(d.s3_poll_interval),
            s3_safety_poll_interval: self
                .s3_safety_poll_interval
                .unwrap_or(d.s3_safety_poll_interval),
            replica_id: self.replica_id,
        }
    }
}

/// AWS-specific options: endpoint overrides, SQS change notifications, SNS fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// Region for every AWS client (else the standard chain: `AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint for every AWS client (else `AWS_ENDPOINT_URL[_S3|_SQS|_SNS]`, else AWS).
    pub endpoint_url: Option<String>,
    /// `--config s3://...`: the configuration object whose `sources` are followed at run time.
    pub config_object: Option<String>,
    /// An SQS queue to long-poll for change events.
    pub sqs_queue_url: Option<String>,
    /// An SNS topic to fan out from: each replica creates, subscribes and deletes its own queue.
    pub sns_topic_arn: Option<String>,
    /// Name prefix of the per-replica fan-out queues.
    pub sqs_queue_prefix: String,
    /// Dead-letter queue of the fan-out queues: a message received
    /// [`crate::sync::FANOUT_MAX_RECEIVES`] times without being handled moves there.
    pub sqs_dead_letter_arn: Option<String>,
    /// Source names inline SQS documents may use (`*`: any); empty: inline documents are off.
    pub sqs_inline: Vec<String>,
    /// An inline source that receives no message for this long is removed (zero: never).
    pub sqs_inline_expiry: Duration,
    /// Messages per SQS receive (1..=10).
    pub sqs_batch_size: i32,
    /// How long a received message stays invisible while it is handled.
    pub sqs_visibility_timeout: Duration,
    /// SQS long-poll wait (0..=20 s).
    pub sqs_wait_time: Duration,
    /// S3 poll interval of sources without their own `interval` while no SQS is configured.
    pub s3_poll_interval: Duration,
    /// S3 poll interval of sources without their own `interval` while SQS delivers changes
    /// (a safety net for lost notifications).
    pub s3_safety_poll_interval: Duration,
    /// This replica's identity (queue name, poll jitter); else the ECS task id or hostname.
    pub replica_id: Option<String>,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: None,
            endpoint_url: None,
            config_object: None,
            sqs_queue_url: None,
            sns_topic_arn: None,
            sqs_queue_prefix: "flagpole-".to_owned(),
            sqs_inline: Vec::new(),
            sqs_inline_expiry: Duration::ZERO,
            sqs_dead_letter_arn: None,
            sqs_batch_size: 10,
            sqs_visibility_timeout: Duration::from_secs(30),
            sqs_wait_time: Duration::from_secs(20),
            s3_poll_interval: Duration::from_secs(5),
            s3_safety_poll_interval: Duration::from_secs(300),
            replica_id: None,
        }
    }
}

impl AwsSettings {
    /// Whether change events arrive through SQS (a queue or an SNS fan-out).
    pub fn notifications(&self) -> bool {
        self.sqs_queue_url.is_some() || self.sns_topic_arn.is_some()
    }
}

/// Everything the sync layer starts from.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Sources in priority order (later wins). Empty (and no configuration object) = the
    /// embedded example flags.
    pub sources: Vec<SourceConfig>,
    /// AWS options (S3 endpoints, SQS notifications, SNS fan-out, S3 configuration object).
    pub aws: AwsSettings,
    /// The largest document a source may deliver, in bytes.
    pub max_document_size: usize,
    /// Where each source's last applied document is kept (`None`: nowhere).
    pub cache_dir: Option<PathBuf>,
    /// Traces each delivered document when set (`--otel-collector-uri`).
    pub tracer: Option<Tracer>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            sources: Vec::new(),
            aws: AwsSettings::default(),
            max_document_size: DEFAULT_MAX_DOCUMENT_SIZE,
            cache_dir: None,
            tracer: None,
        }
    }
}

impl SyncConfig {
    /// Just these sources, everything else at its default.
    pub fn sources(sources: &[SourceConfig]) -> SyncConfig {
        SyncConfig {
            sources: sources.to_vec(),
            ..SyncConfig::default()
        }
    }
}
