//! The network edge on port 8013: the flagd evaluation services (`flagd.evaluation.v1`,
//! `flagd.evaluation.v2`, `schema.v1`) over gRPC, plus gRPC reflection and health.
//!
//! Everything tonic-specific lives here; the domain modules only see a [`Store`](crate::store::Store)
//! and a [`Context`](crate::eval::Context).

pub mod management;
pub mod metrics;
pub mod proto;
pub mod sync;
pub mod wire;

mod evaluation;
mod events;
mod schema_v1;
mod server;
mod v1;
mod v2;

pub use evaluation::{
    AllOutcome, AnyOutcome, AnyValue, Api, BoolKind, Evaluator, FloatKind, IntKind, Kind,
    ObjectKind, Outcome, StringKind, SELECTOR_HEADER,
};
pub use events::{Event, EventStream};
pub use schema_v1::SchemaV1;
pub use server::{EvaluationServer, ServeError};
pub use v1::V1;
pub use v2::V2;
