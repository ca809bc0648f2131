//! Decompression of a Kafka batch's records (gzip, snappy, lz4, zstd), bounded: what a native
//! reader does before `BatchView::kafka_records` when a Kafka producer compressed its batch.
//!
//! Each codec inflates into one `Vec` through a reader capped at the caller's limit, so a
//! small hostile batch (a "zip bomb") costs an error, never more than the limit in memory; no
//! length declared inside the compressed bytes is trusted before it is checked against the
//! limit. Pure functions of bytes. The broker stores and serves Kafka batches as received; it
//! inflates one only to find a record by timestamp (ListOffsets), as Kafka does.
//!
//! Crates, all kept by active maintainers and all but one already in the tree through
//! `kafka-protocol`: `flate2` on its pure-Rust `miniz_oxide` backend (gzip), `snap` (snappy,
//! pure Rust), `lz4_flex` with `safe-decode` (pure, safe Rust; reads the standard LZ4 frame
//! format Kafka's `KafkaLZ4BlockOutputStream` writes for RecordBatch v2), `zstd` (the
//! reference libzstd; no pure-Rust decoder matches its speed).
//!
//! Kafka's framings: gzip is a gzip stream (members may follow one another, as Java's
//! `GZIPInputStream` reads them); snappy is either Java's xerial framing (16-byte header
//! `\x82SNAPPY\0`, version, compatible version, then blocks each behind a big-endian 4-byte
//! length; what the Java client writes) or one raw snappy block (what librdkafka writes); lz4
//! is an LZ4 frame; zstd one or more zstd frames.
//!
//! [`compress`] writes each codec as the Java client does (xerial framing for snappy), for log
//! compaction, which recompresses a Kafka batch it rewrote with the batch's own codec.

use std::io::{Read, Write};

use super::Compression;
use crate::error::BatchError;

/// Xerial's snappy stream magic, the first 8 bytes of its 16-byte header.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";

/// Xerial header: magic, then version and compatible version (big-endian i32 each).
const XERIAL_HEADER_BYTES: usize = 16;

/// Largest zstd window this reader accepts, as a power of two. A frame names its window before
/// producing a byte, and the decoder allocates it; libzstd's own ceiling is 2^27 (128 MiB).
/// Kafka's producers stream without declaring the content size, so a frame's window follows
/// the compression level, not the batch: 2^19..2^23 for levels 1..19 (Kafka's default is 3),
/// up to 2^27 for the ultra levels 20..22. Every window up to 2^23 is accepted whatever the
/// limit; larger ones only as far as the limit itself reaches, so a reader with a small limit
/// is not made to allocate 128 MiB by a small hostile frame.
fn zstd_window_log_max(decompressed_bytes_max: usize) -> u32 {
    let bits = usize::BITS - decompressed_bytes_max.max(1).leading_zeros();
    bits.clamp(23, 27)
}

/// Decompresses `compressed` (a Kafka batch's bytes after its 61-byte header) with `codec`,
/// into at most `decompressed_bytes_max` bytes. More gives
/// [`BatchError::DecompressedTooLarge`]; bytes the codec cannot read give
/// [`BatchError::Decompression`]. `Compression::None` returns a copy.
pub fn decompress(
    codec: Compression,
    compressed: &[u8],
    decompressed_bytes_max: usize,
) -> Result<Vec<u8>, BatchError> {
    match codec {
        Compression::None => read_bounded(compressed, compressed.len(), decompressed_bytes_max),
        Compression::Gzip => read_bounded(
            flate2::read::MultiGzDecoder::new(compressed),
            compressed.len(),
            decompressed_bytes_max,
        ),
        Compression::Snappy => snappy(compressed, decompressed_bytes_max),
        Compression::Lz4 => read_bounded(
            lz4_flex::frame::FrameDecoder::new(compressed),
            compressed.len(),
            decompressed_bytes_max,
        ),
        Compression::Zstd => zstd(compressed, decompressed_bytes_max),
    }
    .map_err(|error| match error {
        ReadError::TooLarge => BatchError::DecompressedTooLarge {
            limit: decompressed_bytes_max,
        },
        ReadError::Codec(reason) => BatchError::Decompression {
            codec: codec.name(),
            reason,
        },
    })
}

/// Xerial's header after the magic: version 1, compatible version 1 (what the Java client's
/// `SnappyOutputStream` writes).
const XERIAL_VERSIONS: [u8; 8] = [0, 0, 0, 1, 0, 0, 0, 1];

/// Uncompressed bytes per xerial snappy block (the Java client's default block size).
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;

/// Compresses a Kafka batch's records with `codec`, in the framing Kafka's Java client writes
/// (gzip stream, xerial-framed snappy, LZ4 frame, zstd frame). `Compression::None` returns a
/// copy. Pure; fails only if a codec library reports an error.
pub fn compress(codec: Compression, records: &[u8]) -> Result<Vec<u8>, BatchError> {
    let failed = |error: std::io::Error| BatchError::Decompression {
        codec: codec.name(),
        reason: format!("compressing: {error}"),
    };
    match codec {
        Compression::None => Ok(records.to_vec()),
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(records).map_err(failed)?;
            encoder.finish().map_err(failed)
        }
        Compression::Snappy => {
            let mut target = Vec::with_capacity(XERIAL_HEADER_BYTES + records.len());
            target.extend_from_slice(XERIAL_MAGIC);
            target.extend_from_slice(&XERIAL_VERSIONS);
            let mut encoder = snap::raw::Encoder::new();
            for block in records.chunks(XERIAL_BLOCK_BYTES) {
                let compressed = encoder
                    .compress_vec(block)
                    .map_err(|error| failed(std::io::Error::other(error)))?;
                // Fits: a block of at most 32 KiB compresses to well under 4 GiB.
                target.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                target.extend_from_slice(&compressed);
            }
            Ok(target)
        }
        Compression::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder.write_all(records).map_err(failed)?;
            encoder
                .finish()
                .map_err(|error| failed(std::io::Error::other(error)))
        }
        Compression::Zstd => zstd::stream::encode_all(records, 0).map_err(failed),
    }
}

enum ReadError {
    TooLarge,
    Codec(String),
}

/// Reads all of `reader`, failing once it yields more than `bytes_max` bytes.
fn read_bounded(
    reader: impl Read,
    compressed_bytes: usize,
    bytes_max: usize,
) -> Result<Vec<u8>, ReadError> {
    // A guess at the ratio saves most regrowth; it is capped, so it is no allocation from input.
    let mut target = Vec::with_capacity(compressed_bytes.saturating_mul(4).min(bytes_max));
    let limit = u64::try_from(bytes_max)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    reader
        .take(limit)
        .read_to_end(&mut target)
        .map_err(|error| ReadError::Codec(error.to_string()))?;
    if target.len() > bytes_max {
        return Err(ReadError::TooLarge);
    }
    Ok(target)
}

fn zstd(compressed: &[u8], bytes_max: usize) -> Result<Vec<u8>, ReadError> {
    let codec_error = |error: std::io::Error| ReadError::Codec(error.to_string());
    let mut decoder = zstd::stream::read::Decoder::with_buffer(compressed).map_err(codec_error)?;
    decoder
        .window_log_max(zstd_window_log_max(bytes_max))
        .map_err(codec_error)?;
    read_bounded(decoder, compressed.len(), bytes_max)
}

/// Snappy in either of Kafka's framings (see the module doc).
fn snappy(compressed: &[u8], bytes_max: usize) -> Result<Vec<u8>, ReadError> {
    let Some(mut blocks) = compressed
        .strip_prefix(XERIAL_MAGIC)
        .map(|_| compressed.get(XERIAL_HEADER_BYTES..).unwrap_or_default())
    else {
        let mut target = Vec::new();
        snappy_block(compressed, &mut target, bytes_max)?;
        return Ok(target);
    };
    let mut target = Vec::new();
    while !blocks.is_empty() {
        let Some((length, rest)) = blocks.split_first_chunk::<4>() else {
            return Err(ReadError::Codec("xerial block length truncated".into()));
        };
        let length = u32::from_be_bytes(*length) as usize;
        let Some(block) = rest.get(..length) else {
            return Err(ReadError::Codec("xerial block runs past the batch".into()));
        };
        snappy_block(block, &mut target, bytes_max)?;
        blocks = &rest[length..];
    }
    Ok(target)
}

/// Appends one raw snappy block to `target`, checking its declared length against what the
/// limit leaves before allocating for it.
fn snappy_block(block: &[u8], target: &mut Vec<u8>, bytes_max: usize) -> Result<(), ReadError> {
    let length =
        snap::raw::decompress_len(block).map_err(|error| ReadError::Codec(error.to_string()))?;
    if length > bytes_max - target.len() {
        return Err(ReadError::TooLarge);
    }
    let start = target.len();
    target.resize(start + length, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut target[start..])
        .map_err(|error| ReadError::Codec(error.to_string()))?;
    target.truncate(start + written);
    Ok(())
}
