//! The default key partitioner: Kafka's murmur2 hash, so a key lands on the same partition as a
//! Java Kafka producer would put it (`toPositive(murmur2(key)) % partitions`), and stays there for
//! as long as the partition count does not change.
//!
//! Keyless records are spread by the accumulator (sticky or round-robin), not here.

/// Kafka's `Utils.murmur2`: MurmurHash2, 32 bits, seed `0x9747b28c`, little-endian words.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java takes the length as a signed int; keys are far below 2^31 bytes in any batch.
    let mut hash = SEED ^ (data.len() as u32);
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes(word.try_into().expect("chunks of 4"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        hash = hash.wrapping_mul(M);
        hash ^= k;
    }
    let tail = words.remainder();
    if tail.len() >= 3 {
        hash ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        hash ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        hash ^= u32::from(tail[0]);
        hash = hash.wrapping_mul(M);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(M);
    hash ^= hash >> 15;
    hash as i32
}

/// The partition the default partitioner picks for `key` among `partition_count` partitions.
///
/// ```
/// use spate_client::partition_for_key;
///
/// let partition = partition_for_key(b"customer-42", 12);
/// assert!(partition < 12);
/// assert_eq!(partition, partition_for_key(b"customer-42", 12)); // stable
/// ```
pub fn partition_for_key(key: &[u8], partition_count: u32) -> u32 {
    assert!(partition_count > 0, "a topic has at least one partition");
    // Kafka's toPositive: clear the sign bit (not abs, which overflows on i32::MIN).
    let positive = (murmur2(key) as u32) & 0x7fff_ffff;
    positive % partition_count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_values_kafkas_own_tests_pin() {
        // From Apache Kafka's UtilsTest.testMurmur2: what the Java producer computes.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(
                murmur2(key),
                expected,
                "key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn keys_spread_over_every_partition() {
        let partition_count = 8;
        let mut seen = [0usize; 8];
        for number in 0..8_000 {
            let key = format!("key-{number}");
            seen[partition_for_key(key.as_bytes(), partition_count) as usize] += 1;
        }
        for (partition, count) in seen.iter().enumerate() {
            assert!(
                (700..1300).contains(count),
                "partition {partition} got {count} of 8000 keys"
            );
        }
    }
}
