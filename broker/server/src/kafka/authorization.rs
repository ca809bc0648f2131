//! What a Kafka handler asks the authorizer (`auth::Authorizer`): one check per resource a
//! request touches, made before it touches it, with the principal and host of the request's
//! connection (its `Session`).
//!
//! Which operation on which resource each API needs is Kafka's table (`KafkaApis`, the Kafka
//! documentation's "Operations and resources on protocols"); each handler makes its own checks
//! and answers a refusal in Kafka's shape for that API: TOPIC_AUTHORIZATION_FAILED per
//! partition or topic (the rest of the request goes on), GROUP_AUTHORIZATION_FAILED,
//! CLUSTER_AUTHORIZATION_FAILED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED for the request. A topic
//! the principal may not describe is answered as refused whether it exists or not, so that
//! refusals never reveal which topics exist.

use spate_security::acl::CLUSTER_RESOURCE_NAME;
use spate_security::{Operation, ResourceType};

use super::KafkaContext;

impl KafkaContext<'_> {
    /// Whether the connection's principal may do `operation` on `resource_type` `name`.
    pub fn authorized(
        &self,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        self.services
            .authorizer
            .authorize(self.session, operation, resource_type, name)
    }

    /// `operation` on the cluster (Kafka's one cluster resource, "kafka-cluster").
    pub fn cluster_authorized(&self, operation: Operation) -> bool {
        self.authorized(operation, ResourceType::Cluster, CLUSTER_RESOURCE_NAME)
    }

    pub fn topic_authorized(&self, operation: Operation, topic: &str) -> bool {
        self.authorized(operation, ResourceType::Topic, topic)
    }

    pub fn group_authorized(&self, operation: Operation, group: &str) -> bool {
        self.authorized(operation, ResourceType::Group, group)
    }

    pub fn transactional_id_authorized(
        &self,
        operation: Operation,
        transactional_id: &str,
    ) -> bool {
        self.authorized(operation, ResourceType::TransactionalId, transactional_id)
    }

    /// Kafka's authorized-operations bit set of a resource for this connection (Metadata,
    /// DescribeCluster, DescribeGroups).
    pub fn authorized_operations(&self, resource_type: ResourceType, name: &str) -> i32 {
        self.services
            .authorizer
            .authorized_operations(self.session, resource_type, name)
    }

    /// The cluster's authorized-operations bit set.
    pub fn cluster_authorized_operations(&self) -> i32 {
        self.authorized_operations(ResourceType::Cluster, CLUSTER_RESOURCE_NAME)
    }
}

/// What Kafka answers for authorized operations nobody asked for (`Integer.MIN_VALUE`, "omitted").
pub const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;
