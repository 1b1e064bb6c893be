//! Connect streaming envelopes (and gRPC's length-prefixed messages, the same layout): one
//! flags byte, a 4-byte big-endian length, the payload.

use bytes::{BufMut, Bytes, BytesMut};
use tonic::Status;

/// Flag of a compressed message.
pub(super) const COMPRESSED: u8 = 0x01;
/// Flag of the end-of-stream message.
pub(super) const END_STREAM: u8 = 0x02;
/// Length of the envelope prefix.
const PREFIX: usize = 5;

/// One envelope around `payload`.
pub(super) fn frame(flags: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(PREFIX + payload.len());
    out.put_u8(flags);
    // Payloads are bounded by the request limit or are our own small messages.
    out.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    out.put_slice(payload);
    out.freeze()
}

/// One message envelope around `payload`, gzip-compressed when `gzip`.
pub(super) fn message(payload: &[u8], gzip: bool) -> Bytes {
    if gzip {
        frame(COMPRESSED, &super::compression::gzip(payload))
    } else {
        frame(0, payload)
    }
}

/// The payload of the single request message of a call, and whether it is compressed
/// (allowed only when `compressed` says the request declared an encoding); an empty body is
/// `None` (the evaluation stream requests carry no fields anyway).
pub(super) fn single_message(
    body: &[u8],
    compressed: bool,
) -> Result<Option<(bool, &[u8])>, Status> {
    if body.is_empty() {
        return Ok(None);
    }
    let Some((prefix, rest)) = body.split_first_chunk::<PREFIX>() else {
        return Err(Status::invalid_argument(
            "protocol error: incomplete envelope",
        ));
    };
    let flags = prefix[0];
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if flags == COMPRESSED && !compressed {
        return Err(Status::invalid_argument(
            "protocol error: received compressed message without a content encoding",
        ));
    }
    if flags & !COMPRESSED != 0 {
        return Err(Status::invalid_argument(format!(
            "protocol error: invalid envelope flags {flags}"
        )));
    }
    if rest.len() < len {
        return Err(Status::invalid_argument(
            "protocol error: incomplete envelope",
        ));
    }
    if rest.len() > len {
        return Err(Status::invalid_argument(
            "protocol error: server-streaming request has more than one message",
        ));
    }
    Ok(Some((flags == COMPRESSED, rest)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn frames_round_trip() {
        let framed = frame(0, b"{}");
        assert_eq!(&framed[..], b"\x00\x00\x00\x00\x02{}");
        assert_eq!(
            single_message(&framed, false).unwrap(),
            Some((false, &b"{}"[..]))
        );
        let packed = message(b"{}", true);
        assert_eq!(packed[0], COMPRESSED);
        assert!(single_message(&packed, true).unwrap().unwrap().0);
        assert_eq!(frame(END_STREAM, b"")[0], END_STREAM);
    }

    #[test]
    fn rejects_broken_envelopes() {
        assert_eq!(single_message(b"", true).unwrap(), None);
        for bad in [
            &b"\x00\x00"[..],
            b"\x00\x00\x00\x00\x05{}",
            b"\x01\x00\x00\x00\x02{}",
            b"\x00\x00\x00\x00\x02{}\x00",
        ] {
            assert_eq!(
                single_message(bad, false).unwrap_err().code(),
                Code::InvalidArgument
            );
        }
    }
}
