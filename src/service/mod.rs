//! The network edge on port 8013: the flagd evaluation services (`flagd.evaluation.v1`,
//! `flagd.evaluation.v2`, `schema.v1`) over gRPC, gRPC-Web and Connect, plus gRPC
//! reflection and health; and OFREP on port 8016.
//!
//! Everything tonic-specific lives here; the domain modules only see a [`Store`](crate::store::Store)
//! and a [`Context`](crate::eval::Context).

pub mod proto;
pub mod protojson;
pub mod wire;

mod connect;
mod cors;
mod evaluation;
mod events;
mod ofrep;
mod schema_v1;
mod server;
mod v1;
mod v2;

pub use connect::{Connect, ConnectLayer};
pub use cors::{CorsOnOrigin, CorsService};
pub use evaluation::{
    AllOutcome, AnyKind, AnyOutcome, AnyValue, Api, BoolKind, Evaluator, FloatKind, IntKind, Kind,
    ObjectKind, Outcome, StringKind, SELECTOR_HEADER,
};
pub use events::{Event, EventStream};
pub use ofrep::OfrepServer;
pub use schema_v1::SchemaV1;
pub use server::{EvaluationServer, ServeError};
pub use v1::V1;
pub use v2::V2;
