//! flagpole: a flagd-compatible feature-flag evaluation daemon built for AWS.
//!
//! The crate is split the way flagd is, lowest layer first: [`rules`] (the JSONLogic
//! engine with flagd's operators), [`flags`] (the flag-definition model and its parser,
//! built on rules), [`eval`] (the resolution algorithm),
//! [`store`] (the merged configuration, swapped atomically), [`evaluator`] (evaluation
//! requests against the store, shared by every protocol), [`sync`] (sources that feed
//! the store) and [`service`] (the network edges: gRPC, Connect, OFREP, management).
//! Domain modules know nothing of tonic or AWS; services translate at the edge.

#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod cli;
pub mod config;
pub mod daemon;
pub mod eval;
pub(crate) mod evaluator;
pub mod flags;
#[cfg(feature = "lambda")]
pub mod lambda;
pub(crate) mod options;
pub mod probe;
pub(crate) mod rules;
pub mod service;
pub mod store;
pub mod sync;
pub mod telemetry;
