//! A sigvault request in Cedar's terms: the principal and resource as entities (with the
//! attributes and tags the schema declares), the action, and the request context.
//!
//! Only what a policy may read goes in: names, owner, namespace and tags of a key, the owner
//! of a credential or API key, the caller's groups and how it authenticated, the source
//! address, TLS flags and the time. Never a secret.

use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use cedar_policy::{Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression};

use super::{RequestFacts, Resource};
use crate::audit::action::Action;
use crate::auth::Principal;

/// The entity types of `policies/schema.cedarschema`, parsed once.
pub(super) struct Types {
    principal: EntityTypeName,
    group: EntityTypeName,
    key: EntityTypeName,
    credential: EntityTypeName,
    api_key: EntityTypeName,
    collection: EntityTypeName,
    action: EntityTypeName,
}

fn string(value: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(value.to_owned())
}

impl Types {
    pub(super) fn new() -> Result<Self, String> {
        let parse = |s: &str| EntityTypeName::from_str(s).map_err(|e| e.to_string());
        Ok(Self {
            principal: parse("Sigvault::Principal")?,
            group: parse("Sigvault::Group")?,
            key: parse("Sigvault::Key")?,
            credential: parse("Sigvault::Credential")?,
            api_key: parse("Sigvault::ApiKey")?,
            collection: parse("Sigvault::Collection")?,
            action: parse("Sigvault::Action")?,
        })
    }

    fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }

    /// The Cedar request and the entities it refers to.
    pub(super) fn request(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource<'_>,
        facts: RequestFacts,
    ) -> Result<(Request, Entities), String> {
        let principal_entity = self.principal_entity(principal)?;
        let resource_entity = self.resource_entity(resource)?;
        let request = Request::new(
            principal_entity.uid(),
            Self::uid(&self.action, action.as_str()),
            resource_entity.uid(),
            context(facts)?,
            None,
        )
        .map_err(|e| e.to_string())?;
        let entities = Entities::from_entities([principal_entity, resource_entity], None).map_err(|e| e.to_string())?;
        Ok((request, entities))
    }

    /// The caller, with its name, how it authenticated, and its groups as parents.
    fn principal_entity(&self, principal: &Principal) -> Result<Entity, String> {
        Entity::new(
            Self::uid(&self.principal, &principal.name),
            [
                ("name".to_owned(), string(&principal.name)),
                ("via".to_owned(), string(principal.via.as_str())),
            ]
            .into(),
            principal.groups.iter().map(|g| Self::uid(&self.group, g)).collect(),
        )
        .map_err(|e| e.to_string())
    }

    fn resource_entity(&self, resource: &Resource<'_>) -> Result<Entity, String> {
        match resource {
            Resource::Key { name, owner, tags } => {
                // `payments.webhook` is in the namespace `payments`; a name without a dot is
                // its own namespace.
                let namespace = name.split_once('.').map_or(*name, |(ns, _)| ns);
                Entity::new_with_tags(
                    Self::uid(&self.key, name),
                    [
                        ("name".to_owned(), string(name)),
                        ("owner".to_owned(), string(owner)),
                        ("namespace".to_owned(), string(namespace)),
                    ],
                    [],
                    tags.iter().map(|(k, v)| (k.clone(), string(v))),
                )
                .map_err(|e| e.to_string())
            }
            Resource::Credential { id, principal } | Resource::ApiKey { id, principal } => {
                let ty = if matches!(resource, Resource::ApiKey { .. }) {
                    &self.api_key
                } else {
                    &self.credential
                };
                Entity::new(
                    Self::uid(ty, id),
                    [
                        ("id".to_owned(), string(id)),
                        ("principal".to_owned(), string(principal)),
                    ]
                    .into(),
                    [].into(),
                )
                .map_err(|e| e.to_string())
            }
            Resource::Collection(name) => Ok(Entity::with_uid(Self::uid(&self.collection, name))),
        }
    }
}

/// The request context: source address (`0.0.0.0` when unknown), TLS flags, time.
///
/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, how a dual-stack listener on `[::]` sees
/// an IPv4 caller) goes in as its IPv4 address: Cedar's `ip()` refuses the mapped spelling,
/// and policies about IPv4 ranges or the loopback must see the caller as it is.
fn context(facts: RequestFacts) -> Result<Context, String> {
    let ip = facts
        .source_ip
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ip| ip.to_canonical());
    Context::from_pairs([
        ("source_ip".to_owned(), RestrictedExpression::new_ip(ip.to_string())),
        ("tls".to_owned(), RestrictedExpression::new_bool(facts.tls)),
        ("mtls".to_owned(), RestrictedExpression::new_bool(facts.mtls)),
        ("now".to_owned(), RestrictedExpression::new_long(facts.now_unix_s)),
    ])
    .map_err(|e| e.to_string())
}
