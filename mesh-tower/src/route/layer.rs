use std::time::Duration;

use mesh_core::mesh::Mesh;
use tower::Layer;

use super::MeshService;
use crate::tls::CertificateProviders;

/// Routes requests through the mesh. Configuration only: the mesh handle and how long the first
/// request to a new target may wait for it to warm (default 20 s — longer than the 15 s
/// does-not-exist timer, so a missing listener is reported as such rather than as a timeout).
#[derive(Clone, Debug)]
pub struct MeshLayer {
    mesh: Mesh,
    ready_timeout: Duration,
    providers: CertificateProviders,
}

impl MeshLayer {
    /// A layer over `mesh`.
    pub fn new(mesh: Mesh) -> Self {
        MeshLayer {
            mesh,
            ready_timeout: Duration::from_secs(20),
            providers: CertificateProviders::default(),
        }
    }

    /// The certificate provider instances TLS clusters are resolved against (see
    /// [`crate::tls::upstream`]).
    pub fn tls(mut self, providers: CertificateProviders) -> Self {
        self.providers = providers;
        self
    }

    /// Sets how long the first request to a new target waits for the target to warm.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }
}

impl<S> Layer<S> for MeshLayer {
    type Service = MeshService<S>;

    fn layer(&self, inner: S) -> MeshService<S> {
        MeshService::new(self.mesh.clone(), inner, self.ready_timeout)
            .with_tls(self.providers.clone())
    }
}
