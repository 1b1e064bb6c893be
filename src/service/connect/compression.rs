//! gzip for Connect and gRPC+JSON, as connect-go offers it: the only encoding besides
//! identity. Requests are inflated through a size-limited reader, so a small body that
//! inflates past `--max-request-body` is refused without ever being held in full.

use std::io::{Read as _, Write as _};

use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use http::HeaderMap;
use tonic::Status;

/// The name of the one compression offered.
pub(super) const GZIP: &str = "gzip";

/// How a request's messages are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    /// The encoding named by the header `name`: absent or `identity` is identity, `gzip` is
    /// gzip, anything else is UNIMPLEMENTED (as connect-go and grpc-go answer it).
    pub(super) fn of(headers: &HeaderMap, name: &str) -> Result<Encoding, Status> {
        let Some(value) = headers.get(name) else {
            return Ok(Encoding::Identity);
        };
        let value = value.to_str().unwrap_or("?").trim();
        if value.is_empty() || value.eq_ignore_ascii_case("identity") {
            Ok(Encoding::Identity)
        } else if value.eq_ignore_ascii_case(GZIP) {
            Ok(Encoding::Gzip)
        } else {
            Err(Status::unimplemented(format!(
                "unknown compression \"{value}\": supported encodings are gzip, identity"
            )))
        }
    }

    /// `payload` decoded, refused with RESOURCE_EXHAUSTED once it inflates past `limit`
    /// bytes (0: no limit).
    pub(super) fn decode(self, payload: Bytes, limit: usize) -> Result<Bytes, Status> {
        match self {
            Encoding::Identity => Ok(payload),
            Encoding::Gzip => gunzip(&payload, limit),
        }
    }
}

/// Whether the comma-separated list in header `name` offers gzip (without `q=0`).
pub(super) fn accepts_gzip(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|param| {
                let param = param.replace(' ', "");
                param == "q=0" || param.starts_with("q=0.") && param[4..].bytes().all(|b| b == b'0')
            });
            coding.eq_ignore_ascii_case(GZIP) && !refused
        })
}

/// `payload` inflated; at most `limit + 1` bytes are ever allocated.
fn gunzip(payload: &[u8], limit: usize) -> Result<Bytes, Status> {
    let cap = if limit == 0 {
        u64::MAX
    } else {
        limit as u64 + 1
    };
    let mut out = Vec::new();
    MultiGzDecoder::new(payload)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| Status::invalid_argument(format!("decompress: {e}")))?;
    if limit != 0 && out.len() > limit {
        return Err(Status::resource_exhausted(format!(
            "decompressed message size is larger than configured max {limit}"
        )));
    }
    Ok(Bytes::from(out))
}

/// `payload` gzip-compressed.
pub(super) fn gzip(payload: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(payload.len() / 2 + 32),
        flate2::Compression::default(),
    );
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(payload);
    encoder.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        map
    }

    #[test]
    fn round_trips() {
        let text = b"{\"flagKey\":\"a\"}".repeat(50);
        let packed = gzip(&text);
        assert!(packed.len() < text.len());
        let unpacked = Encoding::Gzip.decode(packed.into(), 0).unwrap();
        assert_eq!(&unpacked[..], &text[..]);
    }

    #[test]
    fn inflation_stops_at_the_limit() {
        let bomb = gzip(&vec![b'a'; 1 << 20]);
        assert!(bomb.len() < 4096);
        let status = Encoding::Gzip
            .decode(bomb.clone().into(), 1000)
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            Encoding::Gzip.decode(bomb.into(), 1 << 20).unwrap().len(),
            1 << 20
        );
        let status = Encoding::Gzip
            .decode(Bytes::from_static(b"not gzip"), 0)
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }

    #[test]
    fn encodings_are_gzip_or_identity() {
        assert_eq!(
            Encoding::of(&HeaderMap::new(), "x").unwrap(),
            Encoding::Identity
        );
        assert_eq!(
            Encoding::of(&headers("x", "identity"), "x").unwrap(),
            Encoding::Identity
        );
        assert_eq!(
            Encoding::of(&headers("x", "GZIP"), "x").unwrap(),
            Encoding::Gzip
        );
        let status = Encoding::of(&headers("x", "br"), "x").unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented);
    }

    #[test]
    fn accept_lists_are_parsed() {
        assert!(accepts_gzip(&headers("a", "gzip"), "a"));
        assert!(accepts_gzip(&headers("a", "deflate, gzip;q=0.5, br"), "a"));
        assert!(!accepts_gzip(&headers("a", "gzip;q=0"), "a"));
        assert!(!accepts_gzip(&headers("a", "gzip; q=0.000"), "a"));
        assert!(!accepts_gzip(&headers("a", "identity"), "a"));
        assert!(!accepts_gzip(&HeaderMap::new(), "a"));
    }
}
