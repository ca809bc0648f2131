//! Kafka's ACL APIs: DescribeAcls (29), CreateAcls (30) and DeleteAcls (31), v1–3, over the
//! shared ACL store (`auth::acls`).
//!
//! As Kafka's `AclApis`: DescribeAcls needs Describe on the cluster, CreateAcls and DeleteAcls
//! Alter on the cluster (CLUSTER_AUTHORIZATION_FAILED otherwise, for the request or for each of
//! its creations and filters); with authorization off the broker has no authorizer and answers
//! SECURITY_DISABLED. A filter or creation with a code that is not a value (UNKNOWN, or ANY and
//! MATCH where a creation needs a value) is INVALID_REQUEST, as is a binding Kafka would not
//! create (an empty name, a principal that is not "Type:name", a host that is neither "*" nor an
//! address, a cluster resource not named "kafka-cluster"); the valid creations of the same
//! request are made. Creations and deletions are one durable write each request, on shard 0; a
//! connection's next check sees them (`auth::authorizer`).

use spate_kafka_protocol::kafka_protocol::messages::create_acls_request::AclCreation;
use spate_kafka_protocol::kafka_protocol::messages::create_acls_response::AclCreationResult;
use spate_kafka_protocol::kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use spate_kafka_protocol::kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use spate_kafka_protocol::kafka_protocol::messages::describe_acls_response::{
    AclDescription, DescribeAclsResource,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_security::acl::CLUSTER_RESOURCE_NAME;
use spate_security::{
    AclBinding, AclBindingFilter, Operation, PatternType, PatternTypeFilter, Permission,
    ResourceType,
};

use super::KafkaContext;
use crate::auth::acls::{self, AclChange, ChangeOutcome};

/// Kafka's message for the ACL APIs of a broker without an authorizer.
const NO_AUTHORIZER: &str = "No Authorizer is configured.";

/// Why a request's ACL APIs are not served before looking at its bindings: a Kafka code and
/// its message.
fn refusal(context: &KafkaContext<'_>, needed: Operation) -> Option<(i16, &'static str)> {
    if !context.cluster_authorized(needed) {
        return Some((
            ResponseError::ClusterAuthorizationFailed.code(),
            "Cluster authorization failed.",
        ));
    }
    if !context.services.authorizer.is_enabled() {
        return Some((ResponseError::SecurityDisabled.code(), NO_AUTHORIZER));
    }
    None
}

fn text(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

fn invalid(message: impl Into<String>) -> (i16, String) {
    (ResponseError::InvalidRequest.code(), message.into())
}

// ---------------------------------------------------------------------------------------------
// DescribeAcls

pub(crate) async fn describe_acls(
    context: &KafkaContext<'_>,
    _version: i16,
    request: DescribeAclsRequest,
) -> DescribeAclsResponse {
    if let Some((code, message)) = refusal(context, Operation::Describe) {
        return DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(Some(text(message)));
    }
    let filter = binding_filter(
        request.resource_type_filter,
        request.resource_name_filter.as_ref(),
        request.pattern_type_filter,
        request.principal_filter.as_ref(),
        request.host_filter.as_ref(),
        request.operation,
        request.permission_type,
    );
    let filter = match filter {
        Ok(filter) => filter,
        Err((code, message)) => {
            return DescribeAclsResponse::default()
                .with_error_code(code)
                .with_error_message(Some(text(message)))
        }
    };
    let snapshot = context.services.authorizer.acls().snapshot();
    let matching = snapshot.acls.matching(&filter);
    DescribeAclsResponse::default().with_resources(described_resources(matching))
}

/// Bindings grouped by resource pattern, as DescribeAcls answers them. `Acls::matching` lists
/// them ordered by resource type, pattern type and name, so each pattern's bindings are
/// consecutive.
fn described_resources(bindings: Vec<AclBinding>) -> Vec<DescribeAclsResource> {
    let mut resources: Vec<DescribeAclsResource> = Vec::new();
    let mut last: Option<(ResourceType, PatternType, String)> = None;
    for binding in bindings {
        let key = (
            binding.resource_type,
            binding.pattern,
            binding.resource_name.clone(),
        );
        if last.as_ref() != Some(&key) {
            resources.push(
                DescribeAclsResource::default()
                    .with_resource_type(binding.resource_type.to_kafka())
                    .with_resource_name(text(binding.resource_name.clone()))
                    .with_pattern_type(binding.pattern.to_kafka()),
            );
            last = Some(key);
        }
        let resource = resources.last_mut().expect("pushed above");
        resource.acls.push(
            AclDescription::default()
                .with_principal(text(binding.principal))
                .with_host(text(binding.host))
                .with_operation(binding.operation.to_kafka())
                .with_permission_type(binding.permission.to_kafka()),
        );
    }
    resources
}

/// A DescribeAcls or DeleteAcls filter from its wire codes; INVALID_REQUEST for a code that is
/// neither ANY nor a value (UNKNOWN 0 included).
#[allow(clippy::too_many_arguments)]
fn binding_filter(
    resource_type: i8,
    resource_name: Option<&StrBytes>,
    pattern: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclBindingFilter, (i16, String)> {
    let resource_type = ResourceType::filter_from_kafka(resource_type)
        .ok_or_else(|| invalid(format!("invalid resource type filter {resource_type}")))?;
    let pattern = PatternTypeFilter::from_kafka(pattern)
        .ok_or_else(|| invalid(format!("invalid pattern type filter {pattern}")))?;
    let operation = Operation::filter_from_kafka(operation)
        .ok_or_else(|| invalid(format!("invalid operation filter {operation}")))?;
    let permission = Permission::filter_from_kafka(permission)
        .ok_or_else(|| invalid(format!("invalid permission type filter {permission}")))?;
    Ok(AclBindingFilter {
        resource_type,
        resource_name: resource_name.map(|name| name.to_string()),
        pattern,
        principal: principal.map(|principal| principal.to_string()),
        host: host.map(|host| host.to_string()),
        operation,
        permission,
    })
}

// ---------------------------------------------------------------------------------------------
// CreateAcls

pub(crate) async fn create_acls(
    context: &KafkaContext<'_>,
    _version: i16,
    request: CreateAclsRequest,
) -> CreateAclsResponse {
    if let Some((code, message)) = refusal(context, Operation::Alter) {
        let results = request
            .creations
            .iter()
            .map(|_| {
                AclCreationResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(text(message)))
            })
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    // Per creation: refused here, or the index of its binding in the one change.
    let mut slots: Vec<Result<usize, (i16, String)>> = Vec::with_capacity(request.creations.len());
    let mut bindings = Vec::new();
    for creation in &request.creations {
        slots.push(creation_binding(creation).map(|binding| {
            bindings.push(binding);
            bindings.len() - 1
        }));
    }
    let created = if bindings.is_empty() {
        Ok(Vec::new())
    } else {
        match acls::change(context.services, AclChange::Create(bindings)).await {
            Ok(ChangeOutcome::Created(outcomes)) => Ok(outcomes),
            Ok(ChangeOutcome::Deleted(_)) => unreachable!("a creation answers what it created"),
            Err(error) => {
                tracing::error!(%error, "cannot create ACLs");
                Err(format!("the ACLs could not be written: {error}"))
            }
        }
    };
    let results = slots
        .into_iter()
        .map(|slot| {
            let outcome = slot.and_then(|index| match &created {
                Ok(outcomes) => outcomes[index]
                    .clone()
                    .map_err(|error| invalid(error.to_string())),
                Err(message) => Err((ResponseError::UnknownServerError.code(), message.clone())),
            });
            match outcome {
                Ok(()) => AclCreationResult::default(),
                Err((code, message)) => AclCreationResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(text(message))),
            }
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// The binding a creation asks for: every code a value (not ANY, MATCH or UNKNOWN), and the
/// cluster resource named as Kafka names it. The rest (`AclBinding::validate`) is checked as it
/// is added.
fn creation_binding(creation: &AclCreation) -> Result<AclBinding, (i16, String)> {
    let resource_type = ResourceType::from_kafka(creation.resource_type)
        .ok_or_else(|| invalid(format!("invalid resource type {}", creation.resource_type)))?;
    let pattern = PatternType::from_kafka(creation.resource_pattern_type).ok_or_else(|| {
        invalid(format!(
            "invalid resource pattern type {}",
            creation.resource_pattern_type
        ))
    })?;
    let operation = Operation::from_kafka(creation.operation)
        .ok_or_else(|| invalid(format!("invalid operation {}", creation.operation)))?;
    let permission = Permission::from_kafka(creation.permission_type).ok_or_else(|| {
        invalid(format!(
            "invalid permission type {}",
            creation.permission_type
        ))
    })?;
    let resource_name = creation.resource_name.to_string();
    if resource_type == ResourceType::Cluster && resource_name != CLUSTER_RESOURCE_NAME {
        return Err(invalid(format!(
            "The only valid name for the CLUSTER resource is {CLUSTER_RESOURCE_NAME}"
        )));
    }
    Ok(AclBinding {
        resource_type,
        resource_name,
        pattern,
        principal: creation.principal.to_string(),
        host: creation.host.to_string(),
        operation,
        permission,
    })
}

// ---------------------------------------------------------------------------------------------
// DeleteAcls

pub(crate) async fn delete_acls(
    context: &KafkaContext<'_>,
    _version: i16,
    request: DeleteAclsRequest,
) -> DeleteAclsResponse {
    if let Some((code, message)) = refusal(context, Operation::Alter) {
        let results = request
            .filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(text(message)))
            })
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let mut slots: Vec<Result<usize, (i16, String)>> = Vec::with_capacity(request.filters.len());
    let mut filters = Vec::new();
    for filter in &request.filters {
        slots.push(deletion_filter(filter).map(|filter| {
            filters.push(filter);
            filters.len() - 1
        }));
    }
    let deleted = if filters.is_empty() {
        Ok(Vec::new())
    } else {
        match acls::change(context.services, AclChange::Delete(filters)).await {
            Ok(ChangeOutcome::Deleted(removed)) => Ok(removed),
            Ok(ChangeOutcome::Created(_)) => unreachable!("a deletion answers what it removed"),
            Err(error) => {
                tracing::error!(%error, "cannot delete ACLs");
                Err(format!("the ACLs could not be written: {error}"))
            }
        }
    };
    let results = slots
        .into_iter()
        .map(|slot| {
            let outcome = slot.and_then(|index| match &deleted {
                Ok(removed) => Ok(&removed[index]),
                Err(message) => Err((ResponseError::UnknownServerError.code(), message.clone())),
            });
            match outcome {
                Ok(removed) => DeleteAclsFilterResult::default()
                    .with_matching_acls(removed.iter().map(matching_acl).collect()),
                Err((code, message)) => DeleteAclsFilterResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(text(message))),
            }
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

fn deletion_filter(filter: &DeleteAclsFilter) -> Result<AclBindingFilter, (i16, String)> {
    binding_filter(
        filter.resource_type_filter,
        filter.resource_name_filter.as_ref(),
        filter.pattern_type_filter,
        filter.principal_filter.as_ref(),
        filter.host_filter.as_ref(),
        filter.operation,
        filter.permission_type,
    )
}

fn matching_acl(binding: &AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(binding.resource_type.to_kafka())
        .with_resource_name(text(binding.resource_name.clone()))
        .with_pattern_type(binding.pattern.to_kafka())
        .with_principal(text(binding.principal.clone()))
        .with_host(text(binding.host.clone()))
        .with_operation(binding.operation.to_kafka())
        .with_permission_type(binding.permission.to_kafka())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(resource_type: ResourceType, name: &str, principal: &str) -> AclBinding {
        AclBinding {
            resource_type,
            resource_name: name.to_string(),
            pattern: PatternType::Literal,
            principal: principal.to_string(),
            host: "*".to_string(),
            operation: Operation::Read,
            permission: Permission::Allow,
        }
    }

    #[test]
    fn described_resources_group_the_bindings_of_each_resource_pattern() {
        let resources = described_resources(vec![
            binding(ResourceType::Topic, "orders", "User:alice"),
            binding(ResourceType::Topic, "orders", "User:bob"),
            binding(ResourceType::Topic, "payments", "User:alice"),
            binding(ResourceType::Group, "orders", "User:alice"),
        ]);
        let shape: Vec<(i8, String, usize)> = resources
            .iter()
            .map(|resource| {
                (
                    resource.resource_type,
                    resource.resource_name.to_string(),
                    resource.acls.len(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                (2, "orders".to_string(), 2),
                (2, "payments".to_string(), 1),
                (3, "orders".to_string(), 1)
            ]
        );
    }

    #[test]
    fn filters_with_unknown_codes_are_invalid_requests() {
        let any = |resource_type, pattern, operation, permission| {
            binding_filter(
                resource_type,
                None,
                pattern,
                None,
                None,
                operation,
                permission,
            )
        };
        assert!(any(1, 1, 1, 1).is_ok());
        let invalid_request = ResponseError::InvalidRequest.code();
        for (resource_type, pattern, operation, permission) in [
            (0, 1, 1, 1),
            (1, 0, 1, 1),
            (1, 1, 0, 1),
            (1, 1, 1, 0),
            (9, 1, 1, 1),
        ] {
            let refused =
                any(resource_type, pattern, operation, permission).expect_err("an unknown code");
            assert_eq!(refused.0, invalid_request);
        }
    }

    #[test]
    fn creations_need_values_and_kafkas_cluster_name() {
        let creation = |resource_type: i8, name: &str, pattern: i8| {
            AclCreation::default()
                .with_resource_type(resource_type)
                .with_resource_name(text(name))
                .with_resource_pattern_type(pattern)
                .with_principal(text("User:alice"))
                .with_host(text("*"))
                .with_operation(3)
                .with_permission_type(3)
        };
        assert!(creation_binding(&creation(2, "orders", 3)).is_ok());
        assert!(creation_binding(&creation(4, CLUSTER_RESOURCE_NAME, 3)).is_ok());
        // ANY and MATCH are filters' words, not a binding's; a cluster has one name.
        for refused in [
            creation(1, "orders", 3),
            creation(2, "orders", 1),
            creation(2, "orders", 2),
            creation(4, "my-cluster", 3),
        ] {
            assert_eq!(
                creation_binding(&refused).expect_err("refused").0,
                ResponseError::InvalidRequest.code()
            );
        }
    }
}
