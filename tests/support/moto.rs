//! A real AWS emulator for the tests: moto's server (S3, SQS, SNS) on a free loopback port,
//! started per test and killed when dropped, plus SDK clients pointed at it.
//!
//! Python comes from `FLAGPOLE_PYTHON`, default `<crate>/.venv/bin/python` (made by
//! `scripts/setup-test-env`). The daemon under test finds credentials through the standard
//! chain: this module sets the (fake, identical for every test) `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY` once per process before any daemon starts; endpoint and region are
//! passed per daemon through its settings.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration, TopicConfiguration};
use flagpole::config::{AwsSettings, Settings, SourceConfig};
use flagpole::sync::Provider;

/// The region every test uses.
pub const REGION: &str = "us-east-1";

/// A running moto server.
pub struct Moto {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

fn python() -> PathBuf {
    let path = std::env::var_os("FLAGPOLE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python")));
    assert!(
        path.exists(),
        "no Python with moto at {}: run scripts/setup-test-env (or set FLAGPOLE_PYTHON)",
        path.display()
    );
    path
}

/// Sets the fake credentials once, before any daemon reads the environment.
pub fn fake_credentials() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Set before any daemon or client of this process starts; every test uses the same
        // values, so the order between tests does not matter.
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    });
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    pub fn start() -> Moto {
        Moto::start_on(free_port())
    }

    /// Starts moto on `port` and waits until it answers.
    pub fn start_on(port: u16) -> Moto {
        fake_credentials();
        let child = Command::new(python())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto.server");
        let moto = Moto {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server now (to simulate an outage).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn sdk(&self) -> aws_config::SdkConfig {
        sdk_config(&self.endpoint())
    }

    /// An S3 client (path-style) for setting up the test.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&self.sdk())
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// An SQS client for setting up and inspecting the test.
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk())
    }

    /// An SNS client for setting up and inspecting the test.
    pub fn sns(&self) -> aws_sdk_sns::Client {
        aws_sdk_sns::Client::new(&self.sdk())
    }

    /// Creates the SNS topic `name` and returns its ARN.
    pub async fn create_topic(&self, name: &str) -> String {
        self.sns()
            .create_topic()
            .name(name)
            .send()
            .await
            .expect("CreateTopic")
            .topic_arn
            .expect("topic ARN")
    }

    /// Sends `bucket`'s ObjectCreated notifications to the SNS topic `topic_arn`.
    pub async fn notify_topic(&self, bucket: &str, topic_arn: &str) {
        let topic = TopicConfiguration::builder()
            .topic_arn(topic_arn)
            .events(Event::from("s3:ObjectCreated:*"))
            .build()
            .expect("topic configuration");
        let notifications = NotificationConfiguration::builder()
            .topic_configurations(topic)
            .build();
        self.put_notifications(bucket, notifications).await;
    }

    /// Sends `bucket`'s notifications for `events` (e.g. `s3:ObjectCreated:*`) to the SQS
    /// queue `queue_arn`.
    pub async fn notify_queue(&self, bucket: &str, queue_arn: &str, events: &[&str]) {
        let queue = QueueConfiguration::builder()
            .queue_arn(queue_arn)
            .set_events(Some(events.iter().map(|e| Event::from(*e)).collect()))
            .build()
            .expect("queue configuration");
        let notifications = NotificationConfiguration::builder()
            .queue_configurations(queue)
            .build();
        self.put_notifications(bucket, notifications).await;
    }

    async fn put_notifications(&self, bucket: &str, notifications: NotificationConfiguration) {
        self.s3()
            .put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(notifications)
            .send()
            .await
            .expect("PutBucketNotificationConfiguration");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An SDK configuration for `endpoint` with static fake credentials (test side only).
pub fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
            Credentials::new("testing", "testing", None, None, "tests"),
        ))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .build()
}

/// Daemon settings reading from `endpoint`: short S3 polls, SQS safety poll far beyond any
/// test's patience (so only notifications can explain a quick change), short SQS waits.
pub fn settings(endpoint: &str, replica: &str) -> Settings {
    Settings {
        aws: AwsSettings {
            region: Some(REGION.to_owned()),
            endpoint_url: Some(endpoint.to_owned()),
            replica_id: Some(replica.to_owned()),
            s3_poll_interval: Duration::from_millis(200),
            s3_safety_poll_interval: Duration::from_secs(3600),
            sqs_wait_time: Duration::from_secs(1),
            ..AwsSettings::default()
        },
        ..Settings::default()
    }
}

/// An S3 source entry (path-style, as moto on a bare IP needs).
pub fn s3_source(bucket: &str, key: &str) -> SourceConfig {
    SourceConfig {
        uri: s3_uri(bucket, key),
        provider: Provider::S3,
        interval: None,
        remote: Default::default(),
    }
}

/// `s3://bucket/key?use_path_style=true`.
pub fn s3_uri(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}?use_path_style=true")
}

/// Visible plus in-flight messages in the queue at `url`.
pub async fn messages_in(moto: &Moto, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attributes = moto
        .sqs()
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("GetQueueAttributes")
        .attributes
        .unwrap_or_default();
    attributes
        .values()
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

/// Sends `body` to the queue at `url`.
pub async fn send(moto: &Moto, url: &str, body: &str) {
    moto.sqs()
        .send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .expect("SendMessage");
}
