//! Proxyless gRPC on the mesh: tonic clients for `xds:///host[:port]` targets, routed,
//! balanced and sent in-process from the mesh's xDS config — no sidecar, no extra hop.
//!
//! [`MeshChannel`] is what a tonic-generated client is built on, in place of
//! `tonic::transport::Channel`:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // GRPC_XDS_BOOTSTRAP / GRPC_XDS_BOOTSTRAP_CONFIG name the control plane (gRFC A27).
//! let channel = mesh_grpc::MeshChannel::connect("xds:///greeter.demo:50051").await?;
//! // let mut client = GreeterClient::new(channel);
//! # Ok(()) }
//! ```
//!
//! Following gRPC's xDS resolver (gRFC A27), the channel's target authority is the name of the
//! listener it subscribes to, exactly as written (no port defaulting), and every call picks its
//! route, cluster and endpoint per RPC from the target's current snapshot (gRFC A31's config
//! selector). The routing itself is mesh-tower's [`mesh_tower::MeshLayer`], the same one HTTP
//! clients use, over a pooled HTTP/2 client.
//!
//! [`XdsServer`] is the server side (gRFC A36): a tonic service served only once the server's
//! own inbound Listener arrived, with that Listener's RBAC (Istio AuthorizationPolicy) enforced
//! and followed live, optional mTLS, and graceful shutdown.
//!
//! Every failure the mesh makes reaches the caller as a `tonic::Status` from a single mapping
//! (`status.rs`): control-plane and routing failures are `UNAVAILABLE`, never a code of the
//! control plane's own (gRFC A54), with the mesh's explanation (host, path, route, cluster,
//! endpoint) as the message and the [`mesh_tower::MeshError`] as the status's `source`.

mod channel;
pub mod csds;
pub mod identity;
pub mod metrics;
pub mod server;
mod status;
mod target;

pub use channel::{ChannelError, MeshChannel, ResponseFuture, DEFAULT_CONNECT_TIMEOUT};
pub use metrics::ClientMetrics;
pub use server::{ServingState, XdsServer, XdsServerBuilder, XdsServerError};
