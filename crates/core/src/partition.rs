//! Partitions of the domain events by entity key (`[domain] partitions`, `[sinks] partitions`).
//!
//! With P > 1 the publishers (the domain stage, the SaaS feeds) append a partition token to
//! each domain event's subject, `<prefix>.<entity>.<event>.p07`, and every sink runs one
//! durable consumer per partition filtered on it. The function must give the same answer in
//! every build and on every replica (publishers and consumers may run different versions),
//! so it is FNV-1a, not `std`'s hasher, whose algorithm may change between releases.

/// The largest partition count accepted in the configuration.
pub const MAX_PARTITIONS: u32 = 256;

/// 64-bit FNV-1a of `key`.
fn fnv1a(key: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The partition (0..partitions) of an entity. Only the key counts, not the entity type:
/// a sink target may read another entity's record with the same key (a Shopify fulfilment
/// reads its order's), which must be written by the same partition and lane.
pub fn partition_of(entity_key: &str, partitions: u32) -> u32 {
    if partitions <= 1 {
        return 0;
    }
    (fnv1a(entity_key.as_bytes()) % u64::from(partitions)) as u32
}

/// The subject token of a partition: `p07` (two digits at least, so names sort).
pub fn partition_token(partition: u32) -> String {
    format!("p{partition:02}")
}

/// The subject an event is published on: `subject` itself with one partition (today's
/// layout, unchanged), else `subject.<token>`.
pub fn partitioned_subject(subject: &str, entity_key: &str, partitions: u32) -> String {
    if partitions <= 1 {
        return subject.to_string();
    }
    format!(
        "{subject}.{}",
        partition_token(partition_of(entity_key, partitions))
    )
}

/// A consumer filter of unpartitioned subjects (`<prefix>.<entity>.>` or
/// `<prefix>.<entity>.<event>`) narrowed to one partition: `<prefix>.<entity>.*.p07`.
pub fn partition_filter(filter: &str, partition: u32) -> String {
    let base = filter
        .strip_suffix(".>")
        .map_or_else(|| filter.to_string(), |entity| format!("{entity}.*"));
    format!("{base}.{}", partition_token(partition))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_stable_across_builds() {
        // Published FNV-1a 64 test vectors, then partitions derived from them: a change
        // here moves entities between partitions of running deployments.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        let got: Vec<u32> = ["SO-1", "SO-2", "SKU-1@DC1", "C-42", ""]
            .iter()
            .map(|k| partition_of(k, 16))
            .collect();
        // Computed independently (Python) from the FNV-1a definition.
        assert_eq!(got, vec![13, 4, 8, 11, 5]);
        assert_eq!(partition_of("SO-1", 1), 0);
        assert_eq!(partition_of("anything", 0), 0);
    }

    #[test]
    fn spread_is_even() {
        for partitions in [3u32, 16, 64] {
            let mut counts = vec![0u32; partitions as usize];
            let n = 64_000u32;
            for i in 0..n {
                counts[partition_of(&format!("SO-{i}"), partitions) as usize] += 1;
            }
            let mean = f64::from(n) / f64::from(partitions);
            for (p, c) in counts.iter().enumerate() {
                let off = (f64::from(*c) - mean).abs() / mean;
                assert!(
                    off < 0.1,
                    "partition {p} of {partitions}: {c} keys, mean {mean}"
                );
            }
        }
    }

    #[test]
    fn subjects_and_filters() {
        assert_eq!(
            partitioned_subject("retail.v1.order.placed", "SO-1", 1),
            "retail.v1.order.placed"
        );
        let p = partition_of("SO-1", 16);
        assert_eq!(
            partitioned_subject("retail.v1.order.placed", "SO-1", 16),
            format!("retail.v1.order.placed.p{p:02}")
        );
        assert_eq!(
            partition_filter("retail.v1.order.>", 7),
            "retail.v1.order.*.p07"
        );
        assert_eq!(
            partition_filter("retail.v1.inventory.level_changed", 12),
            "retail.v1.inventory.level_changed.p12"
        );
        assert_eq!(partition_token(200), "p200");
    }
}
