//! The network edge on port 8013: the flagd evaluation services (`flagd.evaluation.v1`,
//! `flagd.evaluation.v2`, `schema.v1`) over gRPC, plus gRPC reflection and health.
//!
//! Everything tonic-specific lives here; the domain modules only see a [`Store`](crate::store::Store)
//! and a [`Context`](crate::eval::Context).

pub mod proto;
pub mod wire;
