//! Authorization of native requests (issue #17): what each request asks of the connection's
//! principal, by Kafka's table (`KafkaApis`; the Kafka listener's own checks are `kafka`'s),
//! and the refused parts taken out of a request before it runs.
//!
//! The rules, per native API: Produce Write on each topic (and Write on the transactional id a
//! transactional produce names, or every partition is refused); Fetch Read, ListOffsets
//! Describe, DeleteRecords Delete on each topic; Metadata Describe (named topics the principal
//! may not describe are answered `TopicAuthorizationFailed` whether they exist or not; a listing
//! of every topic leaves them out), ListTopics leaves them out, DescribeTopic Describe (and
//! DescribeConfigs for its configs, left out without it),
//! AlterTopicConfig AlterConfigs, CreatePartitions Alter, CreateTopics Create on the cluster or
//! the topic, DeleteTopics Delete; groups: join, sync, heartbeat and leave Read on the group,
//! OffsetCommit Read on the group and each topic, OffsetFetch Describe on both, OffsetDelete
//! Delete on the group and Read on each topic, DescribeGroups Describe and DeleteGroups Delete on
//! each group, ListGroups Describe on the cluster or only the groups it may describe;
//! transactions: InitProducerId Write on the transactional id (without one, IdempotentWrite on
//! the cluster or Write on some topic), AddPartitionsToTxn Write on the id and each topic,
//! AddOffsetsToTxn Write on the id and Read on the group, EndTxn Write on the id,
//! TxnOffsetCommit Write on the id, Read on the group and each topic; FindCoordinator Describe
//! on the group or transactional id; cluster operations: ElectLeaders, AlterReassignments and
//! DecommissionBroker Alter on the cluster, ListReassignments Describe; DescribeCluster
//! Describe (or ClusterAction, so that brokers learn each other's ids); the user and ACL APIs
//! Describe (listing) or Alter (changing) on the cluster; the APIs between brokers
//! (ReplicaFetch, RaftMessage, ClusterPropose, WriteTxnMarkers, VerifyTxn) ClusterAction on the
//! cluster. ApiVersions and the SASL APIs need nothing.
//!
//! A check goes through `auth::Authorizer` (its per-connection cache, super users, the switch
//! that turns authorization off). The shapes of the refusals are per API: where an answer has a
//! per-partition, per-topic or per-group code the refused items get it and the rest of the
//! request runs; otherwise the whole request is answered with the code.

use std::rc::Rc;

use spate_protocol::api::{MetadataResponse, ProduceRequest, TopicMetadata};
use spate_protocol::api::{TopicPartitionList, TopicPartitions};
use spate_protocol::error::ErrorCode;
use spate_security::acl::CLUSTER_RESOURCE_NAME;
use spate_security::{Operation, ResourceType};

use super::admin;
use crate::auth::Session;
use crate::services::Services;

/// One request's view of what its connection's principal may do. Lives for one request.
#[derive(Clone, Copy)]
pub(crate) struct Access<'a> {
    services: &'a Services,
    session: &'a Session,
}

impl<'a> Access<'a> {
    pub(crate) fn new(services: &'a Services, session: &'a Session) -> Access<'a> {
        Access { services, session }
    }

    /// Whether the broker checks requests at all (the ACL APIs answer `SecurityDisabled`
    /// without it, as Kafka without an authorizer).
    pub(crate) fn is_enabled(&self) -> bool {
        self.services.authorizer.is_enabled()
    }

    pub(crate) fn allows(
        &self,
        operation: Operation,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> bool {
        self.services
            .authorizer
            .authorize(self.session, operation, resource_type, resource_name)
    }

    pub(crate) fn topic(&self, operation: Operation, topic: &str) -> bool {
        self.allows(operation, ResourceType::Topic, topic)
    }

    /// The refusal of a topic `operation` is not allowed on: `TopicAuthorizationFailed`, or
    /// `None` when allowed (what `Refused::take` asks of each topic).
    pub(crate) fn topic_refusal(&self, operation: Operation, topic: &str) -> Option<ErrorCode> {
        (!self.topic(operation, topic)).then_some(ErrorCode::TopicAuthorizationFailed)
    }

    pub(crate) fn group(&self, operation: Operation, group_id: &str) -> bool {
        self.allows(operation, ResourceType::Group, group_id)
    }

    pub(crate) fn transactional_id(&self, operation: Operation, transactional_id: &str) -> bool {
        self.allows(operation, ResourceType::TransactionalId, transactional_id)
    }

    pub(crate) fn cluster(&self, operation: Operation) -> bool {
        self.allows(operation, ResourceType::Cluster, CLUSTER_RESOURCE_NAME)
    }

    /// Kafka's rule for creating a topic: Create on the cluster, or on the topic itself.
    pub(crate) fn may_create_topic(&self, topic: &str) -> bool {
        self.cluster(Operation::Create) || self.topic(Operation::Create, topic)
    }

    /// The code of a request refused as a whole for want of `operation` on the cluster, or
    /// `None` when the principal has it.
    pub(crate) fn refuse_unless_cluster(&self, operation: Operation) -> Option<ErrorCode> {
        (!self.cluster(operation)).then_some(ErrorCode::ClusterAuthorizationFailed)
    }

    /// The code for a transactional id the principal may not write to, or `None`.
    pub(crate) fn refuse_unless_transactional_id(
        &self,
        transactional_id: &str,
    ) -> Option<ErrorCode> {
        (!self.transactional_id(Operation::Write, transactional_id))
            .then_some(ErrorCode::TransactionalIdAuthorizationFailed)
    }

    /// The code for a group the principal may not do `operation` to, or `None`.
    pub(crate) fn refuse_unless_group(
        &self,
        operation: Operation,
        group_id: &str,
    ) -> Option<ErrorCode> {
        (!self.group(operation, group_id)).then_some(ErrorCode::GroupAuthorizationFailed)
    }
}

/// The partitions a request named that its principal may not touch: taken out of the request
/// before it runs, and answered with their code after.
#[derive(Debug, Default)]
pub(crate) struct Refused {
    topics: Vec<(String, Vec<u32>, ErrorCode)>,
}

impl Refused {
    /// Takes out of `topics` each topic `refusal` answers with a code (`None`: allowed).
    pub(crate) fn take<P>(
        topics: &mut Vec<TopicPartitions<P>>,
        partition_of: impl Fn(&P) -> u32,
        mut refusal: impl FnMut(&str) -> Option<ErrorCode>,
    ) -> Refused {
        let mut refused = Refused::default();
        topics.retain(|topic| match refusal(&topic.name) {
            None => true,
            Some(code) => {
                let partitions = topic.partitions.iter().map(&partition_of).collect();
                refused.topics.push((topic.name.clone(), partitions, code));
                false
            }
        });
        refused
    }

    /// `take` for the lists that name partitions by number only.
    pub(crate) fn take_lists(
        topics: &mut Vec<TopicPartitionList>,
        mut refusal: impl FnMut(&str) -> Option<ErrorCode>,
    ) -> Refused {
        let mut refused = Refused::default();
        topics.retain(|topic| match refusal(&topic.name) {
            None => true,
            Some(code) => {
                refused
                    .topics
                    .push((topic.name.clone(), topic.partitions.clone(), code));
                false
            }
        });
        refused
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// Adds the refused partitions to an answer's topics, each built by `error`.
    pub(crate) fn answer<R>(
        self,
        topics: &mut Vec<TopicPartitions<R>>,
        error: impl Fn(u32, ErrorCode) -> R,
    ) {
        for (name, partitions, code) in self.topics {
            topics.push(TopicPartitions {
                name,
                partitions: partitions
                    .into_iter()
                    .map(|partition| error(partition, code))
                    .collect(),
            });
        }
    }
}

impl Access<'_> {
    /// Kafka's rule for an idempotent producer's InitProducerId: IdempotentWrite on the
    /// cluster, or Write on some topic (any binding that lets the principal write to a topic
    /// it names, checked like a real write so that deny rules count).
    pub(crate) fn may_produce_idempotently(&self) -> bool {
        if self.cluster(Operation::IdempotentWrite) {
            return true;
        }
        let snapshot = self.services.authorizer.acls().snapshot();
        let writable = snapshot.acls.iter().any(|binding| {
            binding.resource_type == ResourceType::Topic
                && matches!(binding.operation, Operation::Write | Operation::All)
                && binding.permission == spate_security::Permission::Allow
                && self.topic(Operation::Write, &binding.resource_name)
        });
        writable
    }
}

/// Metadata: named topics the principal may not describe are answered
/// `TopicAuthorizationFailed` whether they exist or not (so the answer reveals nothing), and a
/// listing of every topic leaves them out.
pub(crate) async fn metadata(
    services: &Rc<Services>,
    access: Access<'_>,
    names: Option<&[String]>,
) -> MetadataResponse {
    let describable = |name: &str| access.topic(Operation::Describe, name);
    let Some(names) = names else {
        let mut response = admin::metadata(services, None).await;
        response.topics.retain(|topic| describable(&topic.name));
        return response;
    };
    let (allowed, refused): (Vec<String>, Vec<String>) =
        names.iter().cloned().partition(|name| describable(name));
    let mut response = admin::metadata(services, Some(&allowed)).await;
    response
        .topics
        .extend(refused.into_iter().map(|name| TopicMetadata {
            error_code: ErrorCode::TopicAuthorizationFailed,
            name,
            partitions: Vec::new(),
        }));
    response
}

/// Produce: a transactional id the principal may not write to refuses every partition (Kafka's
/// rule), otherwise each topic it may not write to is refused.
pub(crate) fn refuse_produce(access: Access<'_>, request: &mut ProduceRequest) -> Refused {
    let transactional = request
        .transactional_id
        .as_deref()
        .and_then(|transactional_id| access.refuse_unless_transactional_id(transactional_id));
    Refused::take(
        &mut request.topics,
        |partition| partition.partition,
        |topic| transactional.or_else(|| access.topic_refusal(Operation::Write, topic)),
    )
}
