//! Tower layers that apply the mesh's xDS config to HTTP requests in-process.
//!
//! [`MeshLayer`] routes each request by its authority, path, headers and query against the
//! target's current snapshot (lock-free), picks the cluster and an endpoint, and hands the
//! request — its URI now pointing at the endpoint, its `Host` kept — to the inner service,
//! normally the pooled HTTP/1.1 + HTTP/2 client from [`client`]. Every failure the mesh itself
//! makes is a [`MeshError`] with a kind and the route, cluster and endpoint involved.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tower::{ServiceBuilder, ServiceExt};
//! let mesh = mesh_core::mesh::Mesh::from_env()?;
//! let client = ServiceBuilder::new()
//!     .layer(mesh_tower::MeshLayer::new(mesh))
//!     .service(mesh_tower::client::http1());
//! let req = http::Request::get("http://reviews:9080/ratings")
//!     .body(http_body_util::Empty::<bytes::Bytes>::new())?;
//! let resp = client.oneshot(req).await?;
//! # Ok(()) }
//! ```

mod attempt;
pub mod authz;
pub mod client;
pub mod endpoint;
mod error;
pub mod error_response;
pub mod fault;
pub mod metrics;
pub mod retry;
pub mod route;
pub mod stack;
#[cfg(test)]
mod test_support;
pub mod timeout;
pub mod tls;

pub use error::{MeshError, MeshErrorKind, OverflowLimit, TlsReason};
pub use route::{MeshLayer, MeshService, RouteInfo, RouteLayer, Routed, SourceIp};
pub use stack::{MeshStack, MeshStackLayer};
