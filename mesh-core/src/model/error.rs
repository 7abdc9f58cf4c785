//! Validation errors: each names the resource type, the resource, the field and the reason.

use std::{fmt, sync::Arc};

/// The four xDS resource types the mesh consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// `envoy.config.listener.v3.Listener` (LDS).
    Listener,
    /// `envoy.config.route.v3.RouteConfiguration` (RDS).
    RouteConfiguration,
    /// `envoy.config.cluster.v3.Cluster` (CDS).
    Cluster,
    /// `envoy.config.endpoint.v3.ClusterLoadAssignment` (EDS).
    ClusterLoadAssignment,
}

impl ResourceType {
    /// All four, in the order a client subscribes to them (LDS → RDS → CDS → EDS).
    pub const ALL: [ResourceType; 4] = [
        ResourceType::Listener,
        ResourceType::RouteConfiguration,
        ResourceType::Cluster,
        ResourceType::ClusterLoadAssignment,
    ];

    /// The v3 type URL.
    pub const fn type_url(self) -> &'static str {
        match self {
            ResourceType::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            ResourceType::RouteConfiguration => {
                "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
            }
            ResourceType::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            ResourceType::ClusterLoadAssignment => {
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
            }
        }
    }

    /// The resource type for a type URL; v2 URLs are accepted as their v3 equivalents (gRFC A30).
    pub fn from_type_url(url: &str) -> Option<ResourceType> {
        let msg = url.rsplit('/').next().unwrap_or(url);
        Some(match msg {
            "envoy.config.listener.v3.Listener" | "envoy.api.v2.Listener" => ResourceType::Listener,
            "envoy.config.route.v3.RouteConfiguration" | "envoy.api.v2.RouteConfiguration" => {
                ResourceType::RouteConfiguration
            }
            "envoy.config.cluster.v3.Cluster" | "envoy.api.v2.Cluster" => ResourceType::Cluster,
            "envoy.config.endpoint.v3.ClusterLoadAssignment"
            | "envoy.api.v2.ClusterLoadAssignment" => ResourceType::ClusterLoadAssignment,
            _ => return None,
        })
    }

    /// Short name used in messages and on the admin page: `listener`, `route`, `cluster`,
    /// `endpoints`.
    pub const fn short_name(self) -> &'static str {
        match self {
            ResourceType::Listener => "listener",
            ResourceType::RouteConfiguration => "route",
            ResourceType::Cluster => "cluster",
            ResourceType::ClusterLoadAssignment => "endpoints",
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

/// Why a resource was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The value breaks a rule of the xDS API (weights summing to 0, a bad regex, a missing
    /// required field).
    Invalid,
    /// The value is valid xDS but asks for something this mesh does not implement (and cannot
    /// safely ignore, e.g. a required HTTP filter of unknown type).
    Unsupported,
}

/// A resource failed validation. `Display`: ``cluster `outbound|80||a`: lb_policy: unsupported …``.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{resource_type} `{resource}`: {field}: {reason}")]
pub struct ModelError {
    /// Which type of resource.
    pub resource_type: ResourceType,
    /// The resource's name (empty if the resource had none).
    pub resource: Arc<str>,
    /// Dotted path of the offending field, e.g. `virtual_hosts[0].routes[2].match.safe_regex`.
    pub field: String,
    /// Invalid or unsupported.
    pub kind: ErrorKind,
    /// What is wrong, lowercase and short.
    pub reason: String,
}

impl ModelError {
    /// An [`ErrorKind::Invalid`] error.
    pub fn invalid(
        resource_type: ResourceType,
        resource: &str,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ModelError {
            resource_type,
            resource: resource.into(),
            field: field.into(),
            kind: ErrorKind::Invalid,
            reason: reason.into(),
        }
    }

    /// An [`ErrorKind::Unsupported`] error.
    pub fn unsupported(
        resource_type: ResourceType,
        resource: &str,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ModelError {
            kind: ErrorKind::Unsupported,
            ..ModelError::invalid(resource_type, resource, field, reason)
        }
    }
}
