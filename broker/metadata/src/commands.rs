//! The commands of the metadata log, their outcomes, and their encoding.
//!
//! A command is an intention ("create topic t with 3 partitions"), not its result: every node
//! decides the result when it applies the command (`MetadataImage::apply`), so two concurrent
//! creates of one name resolve the same way everywhere. Each Raft entry is an [`EntryEnvelope`]:
//! a format version, the [`ProposalId`] that lets the proposer find its outcome, and the command,
//! as JSON (readable in a dump of the log, and serde's enum tagging keeps old entries decodable
//! when variants are added). The same encoding carries a command in the native `ClusterPropose`
//! request and an outcome in its answer ([`encode_command`], [`encode_result`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use spate_protocol::NodeId;

use crate::error::{ApplyError, MetadataError};
use crate::security::{AclBindingRecord, AclFilterRecord, ScramCredentialRecord};

/// The envelope format this build writes and reads.
pub const ENVELOPE_VERSION: u16 = 1;

/// Who proposed an entry: the proposing broker and its own sequence number, so that the
/// proposer recognises the outcome of its proposal among the applied entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProposalId {
    pub origin: NodeId,
    pub sequence: u64,
}

/// One change to the cluster metadata. Validated when applied, never when proposed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    /// Names the cluster, once (the first controller proposes a fresh id). Repeating the same id
    /// is a no-op; another id is refused.
    SetClusterId { cluster_id: String },
    /// A broker announces itself (at every start, with a new, larger incarnation). A new
    /// incarnation fences the broker until the controller unfences it: what the previous
    /// process led moves away, since it may have lost unsynced data.
    RegisterBroker {
        id: NodeId,
        incarnation: u64,
        native: (String, u16),
        kafka: Option<(String, u16)>,
        rack: Option<String>,
    },
    /// The controller stopped hearing the broker: it leaves every ISR (never emptying one) and
    /// its leaderships move to live in-sync replicas.
    FenceBroker { id: NodeId, incarnation: u64 },
    /// The controller hears the broker again and it has caught up with its registration:
    /// partitions left without a leader that it is in sync for get it as leader.
    UnfenceBroker { id: NodeId, incarnation: u64 },
    /// Creates a topic. `replication_factor` None = `min(3, active brokers)`; `assignments`
    /// (one replica list per partition, first = preferred leader) overrides the round-robin.
    CreateTopic {
        name: String,
        partitions: u32,
        replication_factor: Option<u16>,
        assignments: Option<Vec<Vec<NodeId>>>,
        config: BTreeMap<String, String>,
    },
    /// Deletes a topic; with `topic_id`, only if the name still has that id.
    DeleteTopic { name: String, topic_id: Option<u64> },
    /// Replaces the topic's whole config map (the proposer merges incremental changes).
    AlterTopicConfig {
        name: String,
        config: BTreeMap<String, String>,
    },
    /// Grows the topic to `count` partitions in total (Kafka's CreatePartitions);
    /// `assignments` lists the replicas of the new partitions only.
    CreatePartitions {
        name: String,
        count: u32,
        assignments: Option<Vec<Vec<NodeId>>>,
    },
    /// A partition leader changes its ISR. Refused unless `leader`, `leader_epoch` and
    /// `partition_epoch` are the partition's current ones (a stale leader's change is dropped).
    AlterPartition {
        topic_id: u64,
        partition: u32,
        leader: NodeId,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<NodeId>,
    },
    /// Moves a partition to `target` replicas (first = preferred leader); `None` cancels the
    /// reassignment in progress. Completes by itself once every target replica is in the ISR.
    ReassignPartition {
        topic_id: u64,
        partition: u32,
        target: Option<Vec<NodeId>>,
    },
    /// Gives each named partition (every partition when `None`) to its first replica, where
    /// that replica is in the ISR and not fenced.
    ElectPreferredLeaders { partitions: Option<Vec<(u64, u32)>> },
    /// Starts moving every replica off the broker (reassignments); the controller removes it
    /// once it holds none.
    DecommissionBroker { id: NodeId },
    /// Removes a decommissioned broker that holds no replica any more (proposed by the
    /// controller).
    RemoveBroker { id: NodeId },
    /// Hands `broker` the next `count` producer ids.
    AllocateProducerIds { broker: NodeId, count: u32 },
    /// Sets `user`'s SCRAM credential for `mechanism` ("SCRAM-SHA-256", "SCRAM-SHA-512"),
    /// replacing any before it (Kafka's AlterUserScramCredentials upsertion). The credential is
    /// salt, iterations and derived keys: a password never enters the log.
    UpsertScramCredential {
        user: String,
        mechanism: String,
        credential: ScramCredentialRecord,
    },
    /// Removes `user`'s credential for `mechanism`; a user left without one is gone.
    DeleteScramCredential { user: String, mechanism: String },
    /// Adds ACL bindings (Kafka's CreateAcls); each is validated on its own.
    CreateAcls { bindings: Vec<AclBindingRecord> },
    /// Removes every binding each filter matches (Kafka's DeleteAcls).
    DeleteAcls { filters: Vec<AclFilterRecord> },
}

/// Whether one partition of an `ElectPreferredLeaders` got its preferred leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionResult {
    /// The preferred replica leads now.
    Elected,
    /// It already led (Kafka's ELECTION_NOT_NEEDED).
    NotNeeded,
    /// It is fenced or not in the ISR (Kafka's PREFERRED_LEADER_NOT_AVAILABLE).
    PreferredNotAvailable,
    /// No such topic id or partition.
    UnknownPartition,
}

/// What an applied command did, reported to its proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyOutcome {
    /// Applied; nothing to report.
    Done,
    /// Applied and changed nothing (a repeated registration, the same cluster id again).
    Unchanged,
    TopicCreated {
        topic_id: u64,
    },
    TopicDeleted {
        topic_id: u64,
    },
    ProducerIds {
        first: i64,
        count: u32,
    },
    LeadersElected {
        results: Vec<(u64, u32, ElectionResult)>,
    },
    /// Per binding of a `CreateAcls`, in order: created (or already there), or why it is
    /// invalid.
    AclsCreated {
        results: Vec<Result<(), String>>,
    },
    /// Per filter of a `DeleteAcls`, in order: the bindings it removed, so that the proposer
    /// answers DeleteAcls with the matching bindings.
    AclsDeleted {
        deleted: Vec<Vec<AclBindingRecord>>,
    },
}

/// One Raft entry's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryEnvelope {
    pub version: u16,
    pub proposal: Option<ProposalId>,
    pub command: MetadataCommand,
}

/// The bytes of one Raft entry.
pub fn encode_entry(proposal: Option<ProposalId>, command: &MetadataCommand) -> Vec<u8> {
    let envelope = EntryEnvelope {
        version: ENVELOPE_VERSION,
        proposal,
        command: command.clone(),
    };
    serde_json::to_vec(&envelope).expect("a command always encodes as JSON")
}

/// Reads one Raft entry. An entry of a newer format version is refused (`Undecodable`): every
/// node of this version refuses it the same way, so the images stay equal.
pub fn decode_entry(bytes: &[u8]) -> Result<EntryEnvelope, ApplyError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        version: u16,
    }
    let undecodable = |reason: String| ApplyError::Undecodable { reason };
    let version: VersionOnly =
        serde_json::from_slice(bytes).map_err(|error| undecodable(error.to_string()))?;
    if version.version != ENVELOPE_VERSION {
        return Err(undecodable(format!(
            "entry format version {} (this build reads {ENVELOPE_VERSION})",
            version.version
        )));
    }
    serde_json::from_slice(bytes).map_err(|error| undecodable(error.to_string()))
}

/// A command as the native `ClusterPropose` request carries it (opaque to the wire layer).
pub fn encode_command(command: &MetadataCommand) -> Vec<u8> {
    serde_json::to_vec(command).expect("a command always encodes as JSON")
}

pub fn decode_command(bytes: &[u8]) -> Result<MetadataCommand, MetadataError> {
    serde_json::from_slice(bytes).map_err(|error| MetadataError::Codec {
        what: "metadata command",
        reason: error.to_string(),
    })
}

/// An apply result as the `ClusterPropose` answer carries it.
pub fn encode_result(result: &Result<ApplyOutcome, ApplyError>) -> Vec<u8> {
    serde_json::to_vec(result).expect("an apply result always encodes as JSON")
}

pub fn decode_result(bytes: &[u8]) -> Result<Result<ApplyOutcome, ApplyError>, MetadataError> {
    serde_json::from_slice(bytes).map_err(|error| MetadataError::Codec {
        what: "apply result",
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_with_their_proposal_id() {
        let command = MetadataCommand::CreateTopic {
            name: "orders".into(),
            partitions: 3,
            replication_factor: Some(3),
            assignments: None,
            config: BTreeMap::from([("retention.ms".into(), "1000".into())]),
        };
        let proposal = ProposalId {
            origin: 2,
            sequence: 7,
        };
        let decoded = decode_entry(&encode_entry(Some(proposal), &command)).unwrap();
        assert_eq!(decoded.proposal, Some(proposal));
        assert_eq!(decoded.command, command);
    }

    #[test]
    fn an_entry_of_a_newer_version_is_refused_not_misread() {
        let bytes = br#"{"version":2,"proposal":null,"command":{"DecommissionBroker":{"id":1}}}"#;
        assert!(matches!(
            decode_entry(bytes),
            Err(ApplyError::Undecodable { .. })
        ));
        assert!(matches!(
            decode_entry(b"\x00garbage"),
            Err(ApplyError::Undecodable { .. })
        ));
    }

    #[test]
    fn results_round_trip() {
        let ok = Ok(ApplyOutcome::ProducerIds {
            first: 1000,
            count: 10,
        });
        assert_eq!(decode_result(&encode_result(&ok)).unwrap(), ok);
        let refused = Err(ApplyError::TopicExists { name: "t".into() });
        assert_eq!(decode_result(&encode_result(&refused)).unwrap(), refused);
        let command = MetadataCommand::RemoveBroker { id: 4 };
        assert_eq!(decode_command(&encode_command(&command)).unwrap(), command);
    }

    #[test]
    fn a_credential_travels_as_base64_keys_and_never_prints_them() {
        let credential = ScramCredentialRecord {
            salt: vec![1, 2, 3],
            iterations: 4096,
            stored_key: vec![0xAB; 64],
            server_key: vec![0xCD; 64],
        };
        let command = MetadataCommand::UpsertScramCredential {
            user: "alice".into(),
            mechanism: "SCRAM-SHA-512".into(),
            credential: credential.clone(),
        };
        let bytes = encode_entry(None, &command);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"salt\":\"AQID\""), "{text}");
        assert_eq!(decode_entry(&bytes).unwrap().command, command);
        let printed = format!("{command:?}");
        assert!(!printed.contains("171"), "{printed}");
        assert!(printed.contains("iterations: 4096"), "{printed}");
    }
}
