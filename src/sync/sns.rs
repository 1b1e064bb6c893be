//! SNS fan-out: each replica creates a queue of its own, lets the topic send to it,
//! subscribes it (raw delivery off, so messages arrive in the SNS envelope), consumes it and,
//! on shutdown, unsubscribes and deletes it.
//!
//! Queue name: `<prefix><replica id>`, restricted to SQS's alphabet and 80 characters. The
//! queue is tagged `managed-by=flagpole`, `flagpole:topic=<topic ARN>` and
//! `flagpole:replica=<id>`, so queues orphaned by a crashed task can be found and removed.

use std::time::Duration;

use aws_sdk_sns::error::DisplayErrorContext;
use aws_sdk_sqs::types::QueueAttributeName;

/// How long each cleanup call may take at shutdown.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Messages older than this are useless (the safety poll has re-read everything by then).
const RETENTION_SECONDS: &str = "3600";

/// With a dead-letter queue: receives after which an unhandled message moves there.
pub const FANOUT_MAX_RECEIVES: u32 = 5;

/// The redrive policy sending messages received [`FANOUT_MAX_RECEIVES`] times to `dlq_arn`.
pub(super) fn redrive_policy(dlq_arn: &str) -> String {
    serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": FANOUT_MAX_RECEIVES.to_string(),
    })
    .to_string()
}

/// A replica's own queue, subscribed to the topic.
#[derive(Debug)]
pub(super) struct FanoutQueue {
    /// The queue URL to receive from.
    pub(super) url: String,
    subscription: Option<String>,
}

/// The queue name for `replica`: `prefix + replica`, invalid characters replaced by `-`,
/// cut to SQS's 80-character limit.
pub(super) fn queue_name(prefix: &str, replica: &str) -> String {
    format!("{prefix}{replica}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(80)
        .collect()
}

/// The queue policy that lets `topic_arn` (and nothing else) send to `queue_arn`.
pub(super) fn queue_policy(queue_arn: &str, topic_arn: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "flagpole-fanout",
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}}
        }]
    })
    .to_string()
}

impl FanoutQueue {
    /// Creates (idempotently) and subscribes this replica's queue.
    pub(super) async fn create(
        sqs: &aws_sdk_sqs::Client,
        sns: &aws_sdk_sns::Client,
        topic_arn: &str,
        name: &str,
        replica: &str,
        visibility_timeout: Duration,
        dead_letter_arn: Option<&str>,
    ) -> Result<FanoutQueue, String> {
        let created = sqs
            .create_queue()
            .set_attributes(dead_letter_arn.map(|arn| {
                std::collections::HashMap::from([(
                    QueueAttributeName::RedrivePolicy,
                    redrive_policy(arn),
                )])
            }))
            .queue_name(name)
            .attributes(
                QueueAttributeName::MessageRetentionPeriod,
                RETENTION_SECONDS,
            )
            .attributes(QueueAttributeName::ReceiveMessageWaitTimeSeconds, "20")
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout.as_secs().to_string(),
            )
            .tags("managed-by", "flagpole")
            .tags("flagpole:topic", topic_arn)
            .tags("flagpole:replica", replica)
            .send()
            .await
            .map_err(|e| format!("CreateQueue {name}: {}", DisplayErrorContext(&e)))?;
        let url = created
            .queue_url
            .ok_or_else(|| format!("CreateQueue {name}: no queue URL in the answer"))?;
        let mut queue = FanoutQueue {
            url,
            subscription: None,
        };
        match queue.subscribe(sqs, sns, topic_arn).await {
            Ok(()) => Ok(queue),
            Err(error) => {
                queue.delete(sqs, sns).await;
                Err(error)
            }
        }
    }

    async fn subscribe(
        &mut self,
        sqs: &aws_sdk_sqs::Client,
        sns: &aws_sdk_sns::Client,
        topic_arn: &str,
    ) -> Result<(), String> {
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| format!("GetQueueAttributes: {}", DisplayErrorContext(&e)))?;
        let queue_arn = attributes
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| "GetQueueAttributes: no QueueArn".to_owned())?;
        sqs.set_queue_attributes()
            .queue_url(&self.url)
            .attributes(
                QueueAttributeName::Policy,
                queue_policy(&queue_arn, topic_arn),
            )
            .send()
            .await
            .map_err(|e| format!("SetQueueAttributes: {}", DisplayErrorContext(&e)))?;
        let subscribed = sns
            .subscribe()
            .topic_arn(topic_arn)
            .protocol("sqs")
            .endpoint(&queue_arn)
            .return_subscription_arn(true)
            .send()
            .await
            .map_err(|e| format!("Subscribe: {}", DisplayErrorContext(&e)))?;
        self.subscription = subscribed.subscription_arn;
        tracing::info!(
            queue = %self.url,
            topic = topic_arn,
            "subscribed this replica's queue to the SNS topic"
        );
        Ok(())
    }

    /// Unsubscribes and deletes the queue (best effort, each call time-bounded).
    pub(super) async fn delete(self, sqs: &aws_sdk_sqs::Client, sns: &aws_sdk_sns::Client) {
        if let Some(subscription) = &self.subscription {
            let call = sns.unsubscribe().subscription_arn(subscription).send();
            match tokio::time::timeout(CLEANUP_TIMEOUT, call).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(
                    subscription = %subscription,
                    error = %DisplayErrorContext(&e),
                    "cannot unsubscribe the fan-out queue"
                ),
                Err(_) => tracing::warn!(subscription = %subscription, "Unsubscribe timed out"),
            }
        }
        let call = sqs.delete_queue().queue_url(&self.url).send();
        match tokio::time::timeout(CLEANUP_TIMEOUT, call).await {
            Ok(Ok(_)) => tracing::info!(queue = %self.url, "deleted this replica's fan-out queue"),
            Ok(Err(e)) => tracing::warn!(
                queue = %self.url,
                error = %DisplayErrorContext(&e),
                "cannot delete the fan-out queue"
            ),
            Err(_) => tracing::warn!(queue = %self.url, "DeleteQueue timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_policy_names_the_dead_letter_queue() {
        let policy: serde_json::Value =
            serde_json::from_str(&redrive_policy("arn:aws:sqs:eu-west-1:123456789012:dlq"))
                .unwrap();
        assert_eq!(
            policy,
            serde_json::json!({
                "deadLetterTargetArn": "arn:aws:sqs:eu-west-1:123456789012:dlq",
                "maxReceiveCount": "5"
            })
        );
    }

    #[test]
    fn queue_names_are_valid_sqs_names() {
        assert_eq!(
            queue_name("flagpole-", "ip-10-0-0-1.ec2"),
            "flagpole-ip-10-0-0-1-ec2"
        );
        let long = queue_name("p-", &"x".repeat(200));
        assert_eq!(long.len(), 80);
    }

    #[test]
    fn policy_names_topic_and_queue() {
        let policy: serde_json::Value =
            serde_json::from_str(&queue_policy("arn:q", "arn:t")).unwrap();
        let statement = &policy["Statement"][0];
        assert_eq!(statement["Resource"], "arn:q");
        assert_eq!(
            statement["Condition"]["ArnEquals"]["aws:SourceArn"],
            "arn:t"
        );
        assert_eq!(statement["Action"], "sqs:SendMessage");
    }
}
