//! The protobuf codec of every generated service and client (`build.rs`): tonic's prost
//! codec with a smaller first buffer.
//!
//! tonic allocates each RPC's encode buffer up front, 8 KiB by default, and keeps it for the
//! life of the call. flagd's messages are a few hundred bytes, and an open EventStream or
//! SyncFlags call lives for hours: 10,000 EventStreams held 80 MB in those buffers alone.
//! Larger messages still fit (prost grows the buffer as it writes; decoding reserves the
//! announced length at once), so only the idle reservation shrinks.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// First size of each RPC's encode and decode buffer.
const BUFFER_SIZE: usize = 512;

/// tonic's default: ready messages of one stream are batched into one write up to this.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// `tonic_prost::ProstCodec` with [`BUFFER_SIZE`] buffers.
#[derive(Debug, Clone)]
pub(crate) struct SmallBufferCodec<T, U>(PhantomData<fn() -> (T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        SmallBufferCodec(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
