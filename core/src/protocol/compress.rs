//! Message body compression, as the Java client and broker flag it.
//!
//! A compressed body has sys-flag bit `0x1` set and its algorithm in bits 8..=10
//! (`CompressionType.java`): LZ4 `0x100`, ZSTD `0x200`, ZLIB `0x300`, and `0` for
//! ZLIB from clients older than compression types. The formats are the streams the
//! Java side reads and writes: a zlib stream (`java.util.zip.Deflater`), an LZ4
//! frame (lz4-java `LZ4FrameOutputStream`: independent blocks of up to 4 MiB, no
//! checksums) and a zstd frame (zstd-jni `ZstdOutputStream`).
//!
//! Decompression is capped: a body that would expand past the caller's limit is an
//! error, found without ever holding more than the limit (a decompression bomb
//! costs at most `limit` bytes).

use std::io::Read;

use bytes::Bytes;

/// Sys-flag bit: the body is compressed.
pub const COMPRESSED_FLAG: i32 = 0x1;
/// Sys-flag mask of the compression type bits.
pub const COMPRESSION_TYPE_MASK: i32 = 0x7 << 8;

/// Default limit on a decompressed body: 16 MiB, four times the Java producer's
/// 4 MiB `maxMessageSize`, which it checks before compressing.
pub const DEFAULT_MAX_DECOMPRESSED_LEN: usize = 16 * 1024 * 1024;

/// A body compression algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CompressionType {
    /// zlib (the Java producer's default, level 5).
    #[default]
    Zlib,
    /// LZ4 frame.
    Lz4,
    /// Zstandard frame.
    Zstd,
}

/// Why a body could not be compressed or decompressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompressError {
    /// The sys flag names a compression type that does not exist.
    #[error("unknown compression type {0} in sys flag")]
    UnknownType(i32),
    /// The compressed data is corrupt.
    #[error("corrupt {kind:?} body: {reason}")]
    Corrupt {
        /// The algorithm.
        kind: CompressionType,
        /// What the decoder reported.
        reason: String,
    },
    /// The body would decompress to more than the limit.
    #[error("{kind:?} body decompresses to more than {max} bytes")]
    TooLarge {
        /// The algorithm.
        kind: CompressionType,
        /// The limit.
        max: usize,
    },
    /// The compressor failed.
    #[error("{kind:?} compression failed: {reason}")]
    Compress {
        /// The algorithm.
        kind: CompressionType,
        /// What the encoder reported.
        reason: String,
    },
}

impl CompressionType {
    /// The type a compressed message's sys flag names.
    pub fn from_sys_flag(sys_flag: i32) -> Result<Self, CompressError> {
        match (sys_flag & COMPRESSION_TYPE_MASK) >> 8 {
            1 => Ok(Self::Lz4),
            2 => Ok(Self::Zstd),
            0 | 3 => Ok(Self::Zlib),
            other => Err(CompressError::UnknownType(other)),
        }
    }

    /// The sys-flag bits of a body compressed with this type (compressed bit included).
    pub const fn sys_flag(self) -> i32 {
        COMPRESSED_FLAG
            | match self {
                Self::Lz4 => 0x100,
                Self::Zstd => 0x200,
                Self::Zlib => 0x300,
            }
    }

    /// Compresses `data`. `level` is the zlib (0..=9) or zstd (1..=22) level; LZ4
    /// has none. The Java producer uses level 5.
    pub fn compress(self, data: &[u8], level: u32) -> Result<Bytes, CompressError> {
        let fail = |e: std::io::Error| CompressError::Compress {
            kind: self,
            reason: e.to_string(),
        };
        let out = match self {
            Self::Zlib => {
                let mut enc =
                    flate2::read::ZlibEncoder::new(data, flate2::Compression::new(level.min(9)));
                let mut out = Vec::with_capacity(data.len() / 2 + 64);
                enc.read_to_end(&mut out).map_err(fail)?;
                out
            }
            Self::Lz4 => {
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max4MB)
                    .block_mode(lz4_flex::frame::BlockMode::Independent);
                let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
                std::io::Write::write_all(&mut enc, data).map_err(fail)?;
                enc.finish().map_err(|e| CompressError::Compress {
                    kind: self,
                    reason: e.to_string(),
                })?
            }
            Self::Zstd => {
                let level = i32::try_from(level.clamp(1, 22)).unwrap_or(3);
                zstd::bulk::compress(data, level).map_err(fail)?
            }
        };
        Ok(Bytes::from(out))
    }

    /// Decompresses `data`, failing if the result would exceed `max_len` bytes.
    pub fn decompress(self, data: &[u8], max_len: usize) -> Result<Bytes, CompressError> {
        let corrupt = |e: std::io::Error| CompressError::Corrupt {
            kind: self,
            reason: e.to_string(),
        };
        let mut out = Vec::new();
        // Read at most one byte past the limit: enough to tell "too large" apart.
        let cap = max_len as u64 + 1;
        match self {
            Self::Zlib => flate2::read::ZlibDecoder::new(data)
                .take(cap)
                .read_to_end(&mut out)
                .map_err(corrupt)?,
            Self::Lz4 => lz4_flex::frame::FrameDecoder::new(data)
                .take(cap)
                .read_to_end(&mut out)
                .map_err(corrupt)?,
            Self::Zstd => {
                let mut dec = zstd::stream::read::Decoder::with_buffer(data).map_err(corrupt)?;
                // Refuse frames asking for a window larger than the limit needs,
                // so the decoder never allocates past it either.
                dec.window_log_max(window_log_for(max_len))
                    .map_err(corrupt)?;
                dec.take(cap).read_to_end(&mut out).map_err(corrupt)?
            }
        };
        if out.len() > max_len {
            return Err(CompressError::TooLarge {
                kind: self,
                max: max_len,
            });
        }
        Ok(Bytes::from(out))
    }
}

/// The smallest zstd window log covering `max_len`, within zstd's bounds.
fn window_log_for(max_len: usize) -> u32 {
    let bits = usize::BITS - max_len.saturating_sub(1).leading_zeros();
    bits.clamp(10, 27)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [CompressionType; 3] = [
        CompressionType::Zlib,
        CompressionType::Lz4,
        CompressionType::Zstd,
    ];

    #[test]
    fn sys_flag_bits_match_java() {
        assert_eq!(CompressionType::Lz4.sys_flag(), 0x101);
        assert_eq!(CompressionType::Zstd.sys_flag(), 0x201);
        assert_eq!(CompressionType::Zlib.sys_flag(), 0x301);
        for t in ALL {
            assert_eq!(CompressionType::from_sys_flag(t.sys_flag()), Ok(t));
        }
        assert_eq!(
            CompressionType::from_sys_flag(0x1),
            Ok(CompressionType::Zlib)
        );
        assert_eq!(
            CompressionType::from_sys_flag(0x401),
            Err(CompressError::UnknownType(4))
        );
    }

    #[test]
    fn round_trip_every_type() {
        let body: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        for t in ALL {
            let c = t.compress(&body, 5).unwrap();
            assert!(c.len() < body.len(), "{t:?}");
            assert_eq!(
                &t.decompress(&c, body.len()).unwrap()[..],
                &body[..],
                "{t:?}"
            );
            assert_eq!(
                t.decompress(&c, body.len() - 1),
                Err(CompressError::TooLarge {
                    kind: t,
                    max: body.len() - 1
                })
            );
        }
    }

    #[test]
    fn bombs_are_capped() {
        let zeros = vec![0u8; 64 * 1024 * 1024];
        for t in ALL {
            // zstd level 1 uses a 512 KiB window, which the 1 MiB limit admits.
            let bomb = t
                .compress(&zeros, if t == CompressionType::Zstd { 1 } else { 9 })
                .unwrap();
            assert!(bomb.len() < 1024 * 1024, "{t:?}: {}", bomb.len());
            assert!(
                matches!(
                    t.decompress(&bomb, 1024 * 1024),
                    Err(CompressError::TooLarge { .. })
                ),
                "{t:?}"
            );
        }
        // A zstd frame asking for a window larger than the limit is refused before
        // the decoder allocates it.
        let wide = zstd::bulk::compress(&zeros, 19).unwrap();
        assert!(matches!(
            CompressionType::Zstd.decompress(&wide, 1024 * 1024),
            Err(CompressError::Corrupt { .. })
        ));
    }

    #[test]
    fn corrupt_bodies_are_errors() {
        for t in ALL {
            for bad in [&b""[..], b"\x00", b"not compressed at all", &[0xFF; 64]] {
                match t.decompress(bad, 1 << 20) {
                    Err(CompressError::Corrupt { .. }) => {}
                    // An empty or partial LZ4/zlib stream may legally end early with
                    // nothing decoded; what matters is that it is not a panic.
                    Ok(b) => assert!(b.is_empty(), "{t:?} {bad:?}"),
                    Err(e) => panic!("{t:?} {bad:?}: {e}"),
                }
            }
            let good = t.compress(b"hello hello hello hello", 5).unwrap();
            let cut = &good[..good.len() / 2];
            assert!(t.decompress(cut, 1 << 20).is_err(), "{t:?} truncated");
        }
    }

    proptest::proptest! {
        #[test]
        fn round_trip_any_body(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096), level in 1u32..10) {
            for t in ALL {
                let c = t.compress(&body, level).unwrap();
                proptest::prop_assert_eq!(&t.decompress(&c, body.len()).unwrap()[..], &body[..]);
            }
        }

        #[test]
        fn decompressing_garbage_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            for t in ALL {
                let _ = t.decompress(&data, 1 << 16);
            }
        }
    }
}
