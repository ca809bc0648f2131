//! The transaction coordinator's calls to other brokers ([`spate_txn::peers::TxnPeers`]) over
//! this shard's peer connections, and the native handlers that answer them: WriteTxnMarkers
//! (a coordinator's markers for partitions this broker leads, and its groups' transactional
//! offsets) and VerifyTxn (KIP-890's check, asked of this broker as a transactional id's
//! coordinator). Only a cluster uses them: a single broker leads and coordinates everything.

use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

use spate_protocol::api::{
    GroupResult, PartitionResult, TopicPartitionList, TopicPartitions, VerifyTxnRequest,
    VerifyTxnResponse, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use spate_protocol::error::ErrorCode;
use spate_protocol::NodeId;

use crate::handlers::partition_error_code;
use crate::handlers::txn::txn_error_code;
use crate::peer::{resolve, PeerConnection, PeerError};
use crate::services::Services;
use crate::shard::messages::{PartitionError, TxnResult};
use crate::txn::coordinator;
use crate::txn::peers::{PeerFuture, RemoteMarker, TxnPeers};
use crate::txn::{TopicPartition, TxnError};

/// How long one call to another broker may take: a marker round waits for the leader's
/// in-sync replicas, so longer than the coordinators' own write timeout.
const PEER_CALL_TIMEOUT_MS: u64 = 15_000;

/// [`TxnPeers`] over one shard's peer pool. Holds its shard's services weakly: the services
/// own it.
pub struct PeerTxn {
    pub(crate) services: Weak<Services>,
}

/// The connection to broker `node`, at the native endpoint the metadata names for it.
async fn connection(
    services: Weak<Services>,
    node: NodeId,
) -> Result<(Rc<Services>, Rc<PeerConnection>), String> {
    let services = services
        .upgrade()
        .ok_or_else(|| "the shard is stopping".to_string())?;
    let snapshot = services.snapshot();
    let broker = snapshot
        .brokers
        .get(&node)
        .ok_or_else(|| format!("broker {node} is not in the cluster metadata"))?;
    let (host, port) = &broker.native;
    let address = resolve(node, host, *port).map_err(|error| error.to_string())?;
    let connection = services
        .peers
        .get(node, host, address)
        .await
        .map_err(|error: PeerError| error.to_string())?;
    Ok((services, connection))
}

impl TxnPeers for PeerTxn {
    fn write_markers(
        &self,
        node: NodeId,
        markers: Vec<RemoteMarker>,
    ) -> PeerFuture<Result<Vec<Result<(), PartitionError>>, TxnError>> {
        let connection = connection(self.services.clone(), node);
        Box::pin(async move {
            let (_services, connection) = connection
                .await
                .map_err(TxnError::CoordinatorNotAvailable)?;
            let Some(first) = markers.first() else {
                return Ok(Vec::new());
            };
            let marker = first.marker;
            assert!(
                markers.iter().all(|each| each.marker == marker),
                "one request carries one transaction's marker"
            );
            let mut topics: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
            for each in &markers {
                topics.entry(&each.topic).or_default().push(each.partition);
            }
            let request = WriteTxnMarkersRequest {
                producer_id: marker.producer_id,
                producer_epoch: marker.producer_epoch,
                coordinator_epoch: marker.coordinator_epoch,
                commit: marker.result == TxnResult::Commit,
                topics: topics
                    .into_iter()
                    .map(|(name, partitions)| TopicPartitionList {
                        name: name.to_string(),
                        partitions,
                    })
                    .collect(),
                groups: Vec::new(),
            };
            let response = connection
                .call(&request, PEER_CALL_TIMEOUT_MS)
                .await
                .map_err(|error| TxnError::CoordinatorNotAvailable(error.to_string()))?;
            let mut codes: BTreeMap<(String, u32), ErrorCode> = BTreeMap::new();
            for topic in response.topics {
                for partition in topic.partitions {
                    codes.insert(
                        (topic.name.clone(), partition.partition),
                        partition.error_code,
                    );
                }
            }
            Ok(markers
                .iter()
                .map(|each| {
                    let code = codes
                        .get(&(each.topic.clone(), each.partition))
                        .copied()
                        .unwrap_or(if response.error_code.is_none() {
                            ErrorCode::Unknown
                        } else {
                            response.error_code
                        });
                    partition_error_from_code(code, node)
                })
                .collect())
        })
    }

    fn complete_group(
        &self,
        node: NodeId,
        group: String,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> PeerFuture<Result<(), ErrorCode>> {
        let connection = connection(self.services.clone(), node);
        Box::pin(async move {
            let (_services, connection) = connection
                .await
                .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
            let request = WriteTxnMarkersRequest {
                producer_id,
                producer_epoch,
                // Groups take no coordinator epoch: the group coordinator checks the producer.
                coordinator_epoch: 0,
                commit,
                topics: Vec::new(),
                groups: vec![group.clone()],
            };
            let response = connection
                .call(&request, PEER_CALL_TIMEOUT_MS)
                .await
                .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
            if !response.error_code.is_none() {
                return Err(response.error_code);
            }
            match response.groups.iter().find(|each| each.group_id == group) {
                Some(result) if result.error_code.is_none() => Ok(()),
                Some(result) => Err(result.error_code),
                None => Err(ErrorCode::CoordinatorNotAvailable),
            }
        })
    }

    fn verify_partitions(
        &self,
        node: NodeId,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<TopicPartition>,
    ) -> PeerFuture<Result<Vec<Result<(), TxnError>>, TxnError>> {
        let connection = connection(self.services.clone(), node);
        Box::pin(async move {
            let (_services, connection) = connection
                .await
                .map_err(TxnError::CoordinatorNotAvailable)?;
            let mut topics: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
            for (topic, partition) in &partitions {
                topics.entry(topic).or_default().push(*partition);
            }
            let request = VerifyTxnRequest {
                transactional_id,
                producer_id,
                producer_epoch,
                topics: topics
                    .into_iter()
                    .map(|(name, partitions)| TopicPartitionList {
                        name: name.to_string(),
                        partitions,
                    })
                    .collect(),
                group_id: None,
            };
            let response = connection
                .call(&request, PEER_CALL_TIMEOUT_MS)
                .await
                .map_err(|error| TxnError::CoordinatorNotAvailable(error.to_string()))?;
            if !response.error_code.is_none() {
                return Err(txn_error_from_code(
                    response.error_code,
                    response.error_message.unwrap_or_default(),
                ));
            }
            let mut codes: BTreeMap<(String, u32), ErrorCode> = BTreeMap::new();
            for topic in response.topics {
                for partition in topic.partitions {
                    codes.insert(
                        (topic.name.clone(), partition.partition),
                        partition.error_code,
                    );
                }
            }
            Ok(partitions
                .iter()
                .map(|(topic, partition)| {
                    let code = codes
                        .get(&(topic.clone(), *partition))
                        .copied()
                        .unwrap_or(ErrorCode::Unknown);
                    if code.is_none() {
                        Ok(())
                    } else {
                        Err(txn_error_from_code(code, String::new()))
                    }
                })
                .collect())
        })
    }

    fn verify_group(
        &self,
        node: NodeId,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        group: String,
    ) -> PeerFuture<Result<(), TxnError>> {
        let connection = connection(self.services.clone(), node);
        Box::pin(async move {
            let (_services, connection) = connection
                .await
                .map_err(TxnError::CoordinatorNotAvailable)?;
            let request = VerifyTxnRequest {
                transactional_id,
                producer_id,
                producer_epoch,
                topics: Vec::new(),
                group_id: Some(group),
            };
            let response = connection
                .call(&request, PEER_CALL_TIMEOUT_MS)
                .await
                .map_err(|error| TxnError::CoordinatorNotAvailable(error.to_string()))?;
            if response.error_code.is_none() {
                Ok(())
            } else {
                Err(txn_error_from_code(
                    response.error_code,
                    response.error_message.unwrap_or_default(),
                ))
            }
        })
    }
}

/// A partition's answer from another broker as the error the coordinator's marker round
/// handles (`txn_error_code`'s and `partition_error_code`'s inverse where it matters: what is
/// skipped, what is retried).
fn partition_error_from_code(code: ErrorCode, node: NodeId) -> Result<(), PartitionError> {
    match code {
        ErrorCode::None => Ok(()),
        ErrorCode::UnknownTopicOrPartition => Err(PartitionError::UnknownTopicOrPartition),
        ErrorCode::ProducerFenced => Err(PartitionError::ProducerFenced(format!(
            "refused by broker {node}"
        ))),
        ErrorCode::TransactionCoordinatorFenced => Err(
            PartitionError::TransactionCoordinatorFenced(format!("refused by broker {node}")),
        ),
        ErrorCode::NotLeaderOrFollower => Err(PartitionError::NotLeaderOrFollower {
            leader: None,
            leader_epoch: -1,
        }),
        ErrorCode::LeaderNotAvailable => Err(PartitionError::Opening),
        ErrorCode::ShuttingDown => Err(PartitionError::ShuttingDown),
        other => Err(PartitionError::Storage(format!(
            "broker {node} answered {other:?}: {other}"
        ))),
    }
}

/// A coordinator's refusal from another broker, as the coordinator's own error type.
fn txn_error_from_code(code: ErrorCode, message: String) -> TxnError {
    match code {
        ErrorCode::InvalidRequest => TxnError::InvalidRequest(message),
        ErrorCode::ProducerFenced => TxnError::ProducerFenced,
        ErrorCode::InvalidTxnState => TxnError::InvalidTxnState(message),
        ErrorCode::InvalidProducerIdMapping => TxnError::InvalidProducerIdMapping,
        ErrorCode::ConcurrentTransactions => TxnError::ConcurrentTransactions,
        ErrorCode::TransactionAbortable => TxnError::TransactionAbortable,
        ErrorCode::UnknownTopicOrPartition => TxnError::UnknownTopicOrPartition,
        ErrorCode::OperationNotAttempted => TxnError::OperationNotAttempted,
        ErrorCode::CoordinatorLoadInProgress => TxnError::CoordinatorLoadInProgress,
        ErrorCode::NotCoordinator => TxnError::NotCoordinator,
        ErrorCode::ShuttingDown => TxnError::ShuttingDown,
        other => TxnError::CoordinatorNotAvailable(if message.is_empty() {
            format!("{other}")
        } else {
            message
        }),
    }
}

/// WriteTxnMarkers from another broker's transaction coordinator.
pub(crate) async fn write_txn_markers(
    services: &Rc<Services>,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let marker = crate::shard::messages::TxnMarker {
        producer_id: request.producer_id,
        producer_epoch: request.producer_epoch,
        coordinator_epoch: request.coordinator_epoch,
        result: if request.commit {
            TxnResult::Commit
        } else {
            TxnResult::Abort
        },
    };
    let mut asked = Vec::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            asked.push(RemoteMarker {
                topic: topic.name.clone(),
                partition: *partition,
                marker,
            });
        }
    }
    let answers = coordinator::markers::write_markers_here(services, asked.clone()).await;
    let mut topics: Vec<TopicPartitions<PartitionResult>> = Vec::new();
    for (sent, answer) in asked.iter().zip(answers) {
        let error_code = match &answer {
            Ok(()) => ErrorCode::None,
            Err(error) => partition_error_code(error),
        };
        let result = PartitionResult {
            partition: sent.partition,
            error_code,
        };
        match topics.last_mut() {
            Some(last) if last.name == sent.topic => last.partitions.push(result),
            _ => topics.push(TopicPartitions {
                name: sent.topic.clone(),
                partitions: vec![result],
            }),
        }
    }
    let mut groups = Vec::with_capacity(request.groups.len());
    for group in &request.groups {
        let completed = spate_group::coordinator::complete_transaction(
            services,
            group,
            request.producer_id,
            request.producer_epoch,
            request.commit,
        )
        .await;
        groups.push(GroupResult {
            group_id: group.clone(),
            error_code: completed.err().unwrap_or(ErrorCode::None),
        });
    }
    WriteTxnMarkersResponse {
        error_code: ErrorCode::None,
        topics,
        groups,
    }
}

/// VerifyTxn from another broker: answered by this broker's coordinator of the id, never
/// passed on.
pub(crate) async fn verify_txn(
    services: &Rc<Services>,
    request: VerifyTxnRequest,
) -> VerifyTxnResponse {
    if let Some(group) = &request.group_id {
        let verified = coordinator::verify_group_here(
            services,
            &request.transactional_id,
            request.producer_id,
            request.producer_epoch,
            group,
        )
        .await;
        return match verified {
            Ok(()) => VerifyTxnResponse::default(),
            Err(error) => VerifyTxnResponse {
                error_code: txn_error_code(&error),
                error_message: Some(error.to_string()),
                topics: Vec::new(),
            },
        };
    }
    let partitions: Vec<TopicPartition> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| (topic.name.clone(), *partition))
        })
        .collect();
    let answers = coordinator::verify_partitions_here(
        services,
        &request.transactional_id,
        request.producer_id,
        request.producer_epoch,
        partitions,
    )
    .await;
    let mut topics: Vec<TopicPartitions<PartitionResult>> = Vec::new();
    for ((topic, partition), answer) in answers {
        let result = PartitionResult {
            partition,
            error_code: match &answer {
                Ok(()) => ErrorCode::None,
                Err(error) => txn_error_code(error),
            },
        };
        match topics.last_mut() {
            Some(last) if last.name == topic => last.partitions.push(result),
            _ => topics.push(TopicPartitions {
                name: topic,
                partitions: vec![result],
            }),
        }
    }
    VerifyTxnResponse {
        topics,
        ..VerifyTxnResponse::default()
    }
}
