//! Sync sources: everything that feeds flag documents into the [`Store`](crate::store::Store).
//!
//! Each provider implements [`Source`]; a supervisor runs every configured source, parses
//! each payload with [`parse_document`](crate::flags::parse_document), applies good ones to
//! the store, keeps the last good configuration when a payload is bad, and tracks readiness.
