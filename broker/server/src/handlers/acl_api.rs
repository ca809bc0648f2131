//! The native ACL APIs: DescribeAcls, CreateAcls and DeleteAcls with Kafka's meaning, over the
//! shared ACL store (`auth::acls`: changed on one shard after a durable write, then published
//! to every shard, so a connection's next request sees the change; in cluster mode proposed to
//! the controller and answered once this broker applied it).
//!
//! The wire carries Kafka's numeric codes; this file turns them into `spate_security`'s model
//! and back, and answers a code that is neither a value nor ANY with `InvalidRequest`, as Kafka
//! does. Who may call these APIs (Describe or Alter on the cluster) is checked by the caller
//! (`handlers::execute`, through `access`); a broker with authorization off answers
//! `SecurityDisabled`, as Kafka without an authorizer.

use std::rc::Rc;

use spate_protocol::api::{AclCreationResult, AclEntry, AclFilter, AclFilterResult};
use spate_protocol::api::{CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest};
use spate_protocol::api::{DeleteAclsResponse, DescribeAclsRequest, DescribeAclsResponse};
use spate_protocol::error::ErrorCode;
use spate_security::{AclBinding, AclBindingFilter, Operation, PatternType, PatternTypeFilter};
use spate_security::{Permission, ResourceType};

use crate::auth::acls::{change, AclChange, ChangeOutcome};
use crate::services::Services;

/// Why a binding or filter from the wire cannot be read: the field and its code.
type Invalid = (ErrorCode, String);

pub(crate) fn describe_acls(
    services: &Services,
    request: &DescribeAclsRequest,
) -> DescribeAclsResponse {
    let filter = match filter_from_wire(&request.filter) {
        Ok(filter) => filter,
        Err((error_code, message)) => {
            return DescribeAclsResponse {
                error_code,
                error_message: Some(message),
                bindings: Vec::new(),
            }
        }
    };
    let snapshot = services.authorizer.acls().snapshot();
    DescribeAclsResponse {
        error_code: ErrorCode::None,
        error_message: None,
        bindings: snapshot
            .acls
            .matching(&filter)
            .iter()
            .map(entry_of)
            .collect(),
    }
}

pub(crate) async fn create_acls(
    services: &Rc<Services>,
    request: CreateAclsRequest,
) -> CreateAclsResponse {
    // Bindings that do not read are answered alone; the others are created in one write.
    let read: Vec<Result<AclBinding, Invalid>> =
        request.creations.iter().map(binding_from_wire).collect();
    let valid: Vec<AclBinding> = read
        .iter()
        .filter_map(|binding| binding.as_ref().ok().cloned())
        .collect();
    let created = match change(services, AclChange::Create(valid)).await {
        Ok(ChangeOutcome::Created(outcomes)) => outcomes,
        Ok(ChangeOutcome::Deleted(_)) => {
            unreachable!("a creation answers what it created")
        }
        Err(error) => {
            tracing::warn!(%error, "CreateAcls not written");
            return CreateAclsResponse {
                error_code: error.error_code(),
                error_message: Some(error.to_string()),
                results: Vec::new(),
            };
        }
    };
    let mut created = created.into_iter();
    let results = read
        .into_iter()
        .map(|binding| {
            let outcome = match binding {
                Err(invalid) => Err(invalid),
                Ok(_) => match created.next() {
                    Some(Ok(())) => Ok(()),
                    Some(Err(error)) => Err((ErrorCode::InvalidRequest, error.to_string())),
                    None => Err((
                        ErrorCode::Unknown,
                        "the ACL store answered fewer outcomes than it was given".to_string(),
                    )),
                },
            };
            match outcome {
                Ok(()) => AclCreationResult::default(),
                Err((error_code, message)) => AclCreationResult {
                    error_code,
                    error_message: Some(message),
                },
            }
        })
        .collect();
    CreateAclsResponse {
        error_code: ErrorCode::None,
        error_message: None,
        results,
    }
}

pub(crate) async fn delete_acls(
    services: &Rc<Services>,
    request: DeleteAclsRequest,
) -> DeleteAclsResponse {
    let read: Vec<Result<AclBindingFilter, Invalid>> =
        request.filters.iter().map(filter_from_wire).collect();
    let valid: Vec<AclBindingFilter> = read
        .iter()
        .filter_map(|filter| filter.as_ref().ok().cloned())
        .collect();
    let deleted = match change(services, AclChange::Delete(valid)).await {
        Ok(ChangeOutcome::Deleted(deleted)) => deleted,
        Ok(ChangeOutcome::Created(_)) => unreachable!("a deletion answers what it deleted"),
        Err(error) => {
            tracing::warn!(%error, "DeleteAcls not written");
            return DeleteAclsResponse {
                error_code: error.error_code(),
                error_message: Some(error.to_string()),
                results: Vec::new(),
            };
        }
    };
    let mut deleted = deleted.into_iter();
    let results = read
        .into_iter()
        .map(|filter| match filter {
            Err((error_code, message)) => AclFilterResult {
                error_code,
                error_message: Some(message),
                deleted: Vec::new(),
            },
            Ok(_) => AclFilterResult {
                error_code: ErrorCode::None,
                error_message: None,
                deleted: deleted
                    .next()
                    .unwrap_or_default()
                    .iter()
                    .map(entry_of)
                    .collect(),
            },
        })
        .collect();
    DeleteAclsResponse {
        error_code: ErrorCode::None,
        error_message: None,
        results,
    }
}

fn entry_of(binding: &AclBinding) -> AclEntry {
    AclEntry {
        resource_type: wire_code(binding.resource_type.to_kafka()),
        resource_name: binding.resource_name.clone(),
        pattern_type: wire_code(binding.pattern.to_kafka()),
        principal: binding.principal.clone(),
        host: binding.host.clone(),
        operation: wire_code(binding.operation.to_kafka()),
        permission: wire_code(binding.permission.to_kafka()),
    }
}

/// Kafka's ACL codes are small positive numbers.
fn wire_code(code: i8) -> u8 {
    u8::try_from(code).expect("Kafka's ACL codes are positive")
}

/// The wire's u8 as Kafka's i8 code; a byte past i8's range is no code (`i8::MIN` is none).
fn kafka_code(code: u8) -> i8 {
    i8::try_from(code).unwrap_or(i8::MIN)
}

fn invalid(field: &str, code: u8) -> Invalid {
    (
        ErrorCode::InvalidRequest,
        format!("{field} code {code} is not valid here"),
    )
}

fn binding_from_wire(entry: &AclEntry) -> Result<AclBinding, Invalid> {
    Ok(AclBinding {
        resource_type: ResourceType::from_kafka(kafka_code(entry.resource_type))
            .ok_or_else(|| invalid("resource type", entry.resource_type))?,
        resource_name: entry.resource_name.clone(),
        pattern: PatternType::from_kafka(kafka_code(entry.pattern_type))
            .ok_or_else(|| invalid("pattern type", entry.pattern_type))?,
        principal: entry.principal.clone(),
        host: entry.host.clone(),
        operation: Operation::from_kafka(kafka_code(entry.operation))
            .ok_or_else(|| invalid("operation", entry.operation))?,
        permission: Permission::from_kafka(kafka_code(entry.permission))
            .ok_or_else(|| invalid("permission", entry.permission))?,
    })
}

fn filter_from_wire(filter: &AclFilter) -> Result<AclBindingFilter, Invalid> {
    Ok(AclBindingFilter {
        resource_type: ResourceType::filter_from_kafka(kafka_code(filter.resource_type))
            .ok_or_else(|| invalid("resource type", filter.resource_type))?,
        resource_name: filter.resource_name.clone(),
        pattern: PatternTypeFilter::from_kafka(kafka_code(filter.pattern_type))
            .ok_or_else(|| invalid("pattern type", filter.pattern_type))?,
        principal: filter.principal.clone(),
        host: filter.host.clone(),
        operation: Operation::filter_from_kafka(kafka_code(filter.operation))
            .ok_or_else(|| invalid("operation", filter.operation))?,
        permission: Permission::filter_from_kafka(kafka_code(filter.permission))
            .ok_or_else(|| invalid("permission", filter.permission))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binding_survives_the_wire_and_unknown_codes_are_invalid_requests() {
        for &operation in Operation::ALL {
            for &resource_type in ResourceType::ALL {
                let binding = AclBinding {
                    resource_type,
                    resource_name: "orders".into(),
                    pattern: PatternType::Prefixed,
                    principal: "User:alice".into(),
                    host: "*".into(),
                    operation,
                    permission: Permission::Deny,
                };
                assert_eq!(binding_from_wire(&entry_of(&binding)), Ok(binding));
            }
        }
        let mut entry = entry_of(&AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: "orders".into(),
            pattern: PatternType::Literal,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        });
        // ANY is for filters only; 200 is past i8.
        entry.operation = 1;
        assert_eq!(
            binding_from_wire(&entry).unwrap_err().0,
            ErrorCode::InvalidRequest
        );
        entry.operation = 200;
        assert_eq!(
            binding_from_wire(&entry).unwrap_err().0,
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn filters_read_any_and_match_from_the_wire() {
        let filter = AclFilter {
            resource_type: 1,
            resource_name: Some("orders".into()),
            pattern_type: 2,
            principal: None,
            host: None,
            operation: 1,
            permission: 3,
        };
        let read = filter_from_wire(&filter).expect("a valid filter");
        assert_eq!(read.resource_type, None);
        assert_eq!(read.pattern, PatternTypeFilter::Match);
        assert_eq!(read.operation, None);
        assert_eq!(read.permission, Some(Permission::Allow));
        let unknown = AclFilter {
            pattern_type: 9,
            ..filter
        };
        assert_eq!(
            filter_from_wire(&unknown).unwrap_err().0,
            ErrorCode::InvalidRequest
        );
    }
}
