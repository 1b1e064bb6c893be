//! The generated flagd protocol types, servers and clients (from `proto/`, see `build.rs`).
//!
//! `google.protobuf.Struct` fields are [`JsonStruct`](super::wire::JsonStruct).

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// The encoded `FileDescriptorSet` of every flagd proto (for gRPC reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/flagd_descriptor.bin"));

/// `flagd.evaluation.v1`.
pub mod evaluation_v1 {
    include!(concat!(env!("OUT_DIR"), "/flagd.evaluation.v1.rs"));
}

/// `flagd.evaluation.v2`.
pub mod evaluation_v2 {
    include!(concat!(env!("OUT_DIR"), "/flagd.evaluation.v2.rs"));
}

/// `schema.v1` (legacy evaluation API).
pub mod schema_v1 {
    include!(concat!(env!("OUT_DIR"), "/schema.v1.rs"));
}

/// `flagd.sync.v1`.
pub mod sync_v1 {
    include!(concat!(env!("OUT_DIR"), "/flagd.sync.v1.rs"));
}
