//! MurmurHash3 x86_32 (Austin Appleby's public-domain algorithm), streaming so callers can
//! hash several byte slices (e.g. flag key then targeting key) without concatenating them.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// An incremental MurmurHash3 x86_32 hasher.
#[derive(Debug, Clone)]
pub(crate) struct Murmur3 {
    h: u32,
    pending: [u8; 4],
    pending_len: usize,
    total_len: usize,
}

#[inline]
fn mix_k(mut k: u32) -> u32 {
    k = k.wrapping_mul(C1);
    k = k.rotate_left(15);
    k.wrapping_mul(C2)
}

#[inline]
fn mix_h(h: u32, k: u32) -> u32 {
    (h ^ mix_k(k))
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

impl Murmur3 {
    /// Starts a hash with `seed`.
    pub(crate) fn new(seed: u32) -> Self {
        Murmur3 {
            h: seed,
            pending: [0; 4],
            pending_len: 0,
            total_len: 0,
        }
    }

    /// Feeds more bytes.
    pub(crate) fn write(&mut self, mut data: &[u8]) {
        self.total_len += data.len();
        if self.pending_len > 0 {
            let take = (4 - self.pending_len).min(data.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            self.pending_len += take;
            data = &data[take..];
            if self.pending_len < 4 {
                return;
            }
            self.h = mix_h(self.h, u32::from_le_bytes(self.pending));
            self.pending_len = 0;
        }
        let mut blocks = data.chunks_exact(4);
        for block in &mut blocks {
            let k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
            self.h = mix_h(self.h, k);
        }
        let rest = blocks.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    /// Finishes the hash (the value flagd treats as an unsigned 32-bit integer).
    pub(crate) fn finish(self) -> u32 {
        let mut h = self.h;
        if self.pending_len > 0 {
            let mut k = 0u32;
            for (i, b) in self.pending[..self.pending_len].iter().enumerate() {
                k |= u32::from(*b) << (8 * i);
            }
            h ^= mix_k(k);
        }
        // The reference implementation mixes in the length as a 32-bit value.
        h ^= self.total_len as u32;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    }
}

/// MurmurHash3 x86_32 of one byte slice.
pub(crate) fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    let mut m = Murmur3::new(seed);
    m.write(data);
    m.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_vectors() {
        // Vectors from the SMHasher verification set and common test suites.
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_32(b"", 0xffff_ffff), 0x81f1_6f39);
        assert_eq!(murmur3_32(b"\0\0\0\0", 0), 0x2362_f9de);
        assert_eq!(murmur3_32(b"aaaa", 0x9747_b28c), 0x5a97_808a);
        assert_eq!(murmur3_32(b"abc", 0), 0xb3dd_93fa);
        assert_eq!(murmur3_32(b"Hello, world!", 0x9747_b28c), 0x2488_4cba);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog", 0x9747_b28c),
            0x2fa8_26cd
        );
    }

    #[test]
    fn flagd_testbed_edge_vectors() {
        assert_eq!(murmur3_32(b"ejOoVL", 0), 0);
        assert_eq!(murmur3_32(b"bY9fO-", 0), 1);
        assert_eq!(murmur3_32(b"SI7p-", 0), 2_147_483_647);
        assert_eq!(murmur3_32(b"6LvT0", 0), 2_147_483_648);
        assert_eq!(murmur3_32(b"ceQdGm", 0), 4_294_967_295);
    }

    #[test]
    fn streaming_matches_one_shot_for_every_split() {
        let data = b"fractional-flagjon@company.com-and-some-more-bytes";
        let whole = murmur3_32(data, 0);
        for split in 0..=data.len() {
            for split2 in split..=data.len() {
                let mut m = Murmur3::new(0);
                m.write(&data[..split]);
                m.write(&data[split..split2]);
                m.write(&data[split2..]);
                assert_eq!(m.finish(), whole, "split at {split}/{split2}");
            }
        }
    }
}
