//! Control plane for the proxyless service mesh: reads Istio-style YAML (VirtualService,
//! DestinationRule, ServiceEntry, WorkloadEntry) and serves Envoy v3 xDS over ADS (state of the
//! world) in the form istiod's proxyless-gRPC generator emits, so both the mesh library and gRPC's
//! own xDS clients (grpcio, grpc-go, grpc-java) accept it.
//!
//! The pipeline is one-way (ARCHITECTURE.md "control-plane"):
//! [`source`] (YAML files, hot reload) → [`registry`] (services and endpoints) → [`mod@translate`]
//! (Istio model → xDS protos) → [`cache`] (versioned snapshots) → [`ads`] (the ADS server) and
//! the admin HTTP server (`/ready`, `/healthz`, `/debug/config`), tied together by [`ControlPlane`].
//!
//! Translation is usable in-process without a network:
//!
//! ```
//! let yaml = r#"
//! apiVersion: networking.istio.io/v1
//! kind: ServiceEntry
//! metadata: { name: greeter }
//! spec:
//!   hosts: [greeter.default.svc.cluster.local]
//!   ports: [{ number: 50051, name: grpc, protocol: GRPC }]
//!   endpoints: [{ address: 127.0.0.1 }]
//! "#;
//! let (config, warnings) = mesh_control_plane::load_str("inline.yaml", yaml).unwrap();
//! assert!(warnings.is_empty());
//! let xds = mesh_control_plane::translate(&config);
//! assert!(xds.listener("greeter.default.svc.cluster.local:50051").is_some());
//! assert!(xds.listener("greeter:50051").is_some());
//! ```

mod admin;
pub mod ads;
pub mod ca;
pub mod cache;
mod control_plane;
pub mod jwks;
pub mod registry;
pub mod source;
pub mod translate;

pub use ads::status::{ClientStatus, NackRecord, NodeInfo, TypeStatus};
pub use control_plane::{
    ConfigStatus, ControlPlane, ControlPlaneBuilder, ControlPlaneHandle, StartError, DEFAULT_ADMIN,
    DEFAULT_LISTEN,
};
pub use jwks::JwksOptions;
pub use source::watch::WatchOptions;
pub use source::{load_dir, load_sources, load_str, ConfigError, MeshConfig, Warning};
pub use translate::{translate, translate_with, ResourceType, TranslateOptions, XdsResources};
