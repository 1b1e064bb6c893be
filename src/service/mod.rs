//! The network edges: the flagd evaluation services (`flagd.evaluation.v1`,
//! `flagd.evaluation.v2`, `schema.v1`) on port 8013 over gRPC, gRPC-Web and Connect with
//! reflection and health; the management port 8014 ([`management`], [`metrics`]);
//! `flagd.sync.v1` on 8015 ([`sync`]); and OFREP on 8016.
//!
//! Everything tonic-specific lives here; each protocol parses its request into a selector and
//! a [`Context`](crate::eval::Context), asks the transport-free
//! [`Evaluator`](crate::evaluator::Evaluator), and maps its result once at its edge.

pub mod listener;
pub mod management;
pub mod metrics;
pub mod proto;
pub mod protojson;
pub mod sync;
pub mod tls;
pub mod wire;

#[macro_use]
mod adapter;
mod connect;
mod cors;
mod evaluation;
mod events;
pub mod limits;
mod ofrep;
mod schema_v1;
mod server;
mod stream;
mod v1;
mod v2;

pub use connect::{Connect, ConnectLayer};
pub use cors::{CorsOnOrigin, CorsService};
pub use evaluation::{EvaluationService, StreamConfig, SELECTOR_HEADER};
pub use events::{EventStream, StreamEvent};
pub use ofrep::{OfrepConfig, OfrepServer};
pub use schema_v1::SchemaV1;
pub use server::{EvaluationConfig, EvaluationServer, ServeError};
pub use v1::V1;
pub use v2::V2;
