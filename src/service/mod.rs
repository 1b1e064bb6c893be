//! The network edges: the flagd evaluation services (`flagd.evaluation.v1`,
//! `flagd.evaluation.v2`, `schema.v1`) on port 8013 over gRPC, gRPC-Web and Connect with
//! reflection and health; the management port 8014 ([`management`], [`metrics`]);
//! `flagd.sync.v1` on 8015 ([`sync`]); and OFREP on 8016.
//!
//! Everything tonic-specific lives here; each protocol parses its request into a selector and
//! a [`Context`](crate::eval::Context), asks the transport-free
//! [`Evaluator`](crate::evaluator::Evaluator), and maps its result once at its edge.

pub(crate) mod auth;
pub(crate) mod listener;
pub(crate) mod management;
pub mod metrics;
pub mod proto;
pub(crate) mod protojson;
pub(crate) mod reload;
pub(crate) mod sync;
pub(crate) mod tls;
pub mod wire;

#[macro_use]
mod adapter;
mod codec;
mod connect;
pub(crate) mod cors;
mod evaluation;
mod events;
pub(crate) mod limits;
mod ofrep;
mod schema_v1;
mod server;
mod stream;
mod v1;
mod v2;

// Lambda's function mode builds Connect and CORS itself, around its own edge service.
#[cfg(feature = "lambda")]
pub(crate) use connect::ConnectLayer;
#[cfg(feature = "lambda")]
pub(crate) use cors::CorsOnOrigin;
#[cfg(feature = "lambda")]
pub(crate) use evaluation::EvaluationService;
pub(crate) use evaluation::StreamConfig;
pub(crate) use ofrep::{OfrepConfig, OfrepServer};
pub(crate) use server::{EvaluationConfig, EvaluationServer, ServeError};
