//! The Kafka APIs and versions the broker serves: one table, from which ApiVersions is answered
//! and against which every request's version is checked before its body is decoded.
//!
//! Floor: the Kafka 4.x client minimums (KIP-896). Ceiling: what Kafka 4.1 serves, within what
//! the generated codecs can read and write (`kafka_protocol`'s `VERSIONS` of each message; a test
//! checks every row against it). A handler module adds its rows when its handlers land.

use kafka_protocol::messages::ApiKey;

/// One served API: its key and the inclusive range of versions served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServedApi {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
}

const fn served(key: ApiKey, min_version: i16, max_version: i16) -> ServedApi {
    ServedApi {
        key,
        min_version,
        max_version,
    }
}

/// Every API the Kafka listener serves (admin and data rows, then one block per family).
pub const SERVED_APIS: &[ServedApi] = &[
    served(ApiKey::Metadata, 0, 13),
    served(ApiKey::ApiVersions, 0, 4),
    served(ApiKey::CreateTopics, 2, 7),
    served(ApiKey::DeleteTopics, 1, 6),
    served(ApiKey::DeleteRecords, 0, 2),
    served(ApiKey::DescribeConfigs, 1, 4),
    served(ApiKey::AlterConfigs, 0, 2),
    served(ApiKey::DescribeLogDirs, 1, 4),
    served(ApiKey::CreatePartitions, 0, 3),
    served(ApiKey::IncrementalAlterConfigs, 0, 1),
    served(ApiKey::DescribeCluster, 0, 2),
    // Cluster operations (issue #14)
    served(ApiKey::ElectLeaders, 0, 2),
    served(ApiKey::AlterPartitionReassignments, 0, 0),
    served(ApiKey::ListPartitionReassignments, 0, 0),
    served(ApiKey::Produce, 3, 13),
    served(ApiKey::Fetch, 4, 18),
    served(ApiKey::ListOffsets, 1, 10),
    served(ApiKey::OffsetForLeaderEpoch, 2, 4),
    // Groups
    served(ApiKey::OffsetCommit, 2, 9),
    served(ApiKey::OffsetFetch, 1, 9),
    served(ApiKey::FindCoordinator, 0, 6),
    served(ApiKey::JoinGroup, 0, 9),
    served(ApiKey::Heartbeat, 0, 4),
    served(ApiKey::LeaveGroup, 0, 5),
    served(ApiKey::SyncGroup, 0, 5),
    served(ApiKey::DescribeGroups, 0, 6),
    served(ApiKey::ListGroups, 0, 5),
    served(ApiKey::DeleteGroups, 0, 2),
    served(ApiKey::OffsetDelete, 0, 0),
    // Transactions (txn-coord)
    served(ApiKey::InitProducerId, 0, 5),
    served(ApiKey::AddPartitionsToTxn, 0, 5),
    served(ApiKey::AddOffsetsToTxn, 0, 4),
    served(ApiKey::EndTxn, 0, 5),
    served(ApiKey::DescribeTransactions, 0, 0),
    served(ApiKey::ListTransactions, 0, 1),
    // Transactions (txn-groups)
    served(ApiKey::TxnOffsetCommit, 0, 5),
    // Authentication and users (issue #17). SaslHandshake v0 is followed by bare SASL tokens
    // without Kafka headers (served too: librdkafka uses v1 only when v0 is listed). The two
    // SASL rows are listed only by a listener with SASL on.
    served(ApiKey::SaslHandshake, 0, 1),
    served(ApiKey::SaslAuthenticate, 0, 2),
    served(ApiKey::DescribeUserScramCredentials, 0, 0),
    served(ApiKey::AlterUserScramCredentials, 0, 0),
    // Authorization (issue #17): v1 is Kafka 4's floor (KIP-896), v3 its ceiling.
    served(ApiKey::DescribeAcls, 1, 3),
    served(ApiKey::CreateAcls, 1, 3),
    served(ApiKey::DeleteAcls, 1, 3),
];

/// The versions of `key` served, or `None` when the API is not served at all.
pub fn served_versions(key: ApiKey) -> Option<ServedApi> {
    SERVED_APIS.iter().copied().find(|api| api.key == key)
}

/// Whether `version` of `key` is served.
pub fn is_served(key: ApiKey, version: i16) -> bool {
    served_versions(key).is_some_and(|api| (api.min_version..=api.max_version).contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_range_is_within_what_the_codecs_read_and_write() {
        for api in SERVED_APIS {
            let codec = api.key.valid_versions();
            assert!(
                api.min_version <= api.max_version
                    && codec.min <= api.min_version
                    && api.max_version <= codec.max,
                "{:?} serves {}..={} but its codec reads {}..={}",
                api.key,
                api.min_version,
                api.max_version,
                codec.min,
                codec.max
            );
        }
    }

    #[test]
    fn every_api_has_one_row() {
        for (index, api) in SERVED_APIS.iter().enumerate() {
            assert!(
                SERVED_APIS[index + 1..]
                    .iter()
                    .all(|other| other.key != api.key),
                "{:?} has two rows",
                api.key
            );
        }
    }

    #[test]
    fn versions_outside_a_range_are_not_served() {
        assert!(is_served(ApiKey::ApiVersions, 0));
        assert!(is_served(ApiKey::ApiVersions, 4));
        assert!(!is_served(ApiKey::ApiVersions, 5));
        assert!(!is_served(ApiKey::ApiVersions, -1));
    }
}
