//! The built-in example flags, served when no source is configured.

use bytes::Bytes;

use super::source::{Payload, Source, SourceContext, SourceFuture};
use crate::flags::Format;

/// The example flag document compiled into the binary.
pub const DEFAULT_FLAGS: &str = include_str!("../../assets/default-flags.json");

/// The source name the embedded flags are stored under.
pub const EMBEDDED_URI: &str = "embedded:default-flags.json";

/// Publishes [`DEFAULT_FLAGS`] once and idles until shutdown.
#[derive(Debug, Default)]
pub struct EmbeddedSource;

impl Source for EmbeddedSource {
    fn run(self: Box<Self>, mut ctx: SourceContext) -> SourceFuture {
        Box::pin(async move {
            ctx.sink.publish(Payload {
                bytes: Bytes::from_static(DEFAULT_FLAGS.as_bytes()),
                format: Format::Json,
            });
            ctx.shutdown.wait().await;
        })
    }
}
