use tower::Layer;

use super::PickService;

/// Picks an endpoint per attempt (see the [module docs](super)). Stateless.
#[derive(Clone, Copy, Debug, Default)]
pub struct PickLayer {
    grpc: bool,
}

impl PickLayer {
    /// The layer, with Envoy's semantics: the pool breakers of the route's `priority`.
    pub fn new() -> Self {
        PickLayer { grpc: false }
    }

    /// The layer for gRPC calls: the pool breakers of priority DEFAULT whatever the route says
    /// (gRPC ignores `RouteAction.priority`, gRFC A32), as the retry layer in gRPC mode does.
    pub fn grpc() -> Self {
        PickLayer { grpc: true }
    }
}

impl<S> Layer<S> for PickLayer {
    type Service = PickService<S>;

    fn layer(&self, inner: S) -> PickService<S> {
        PickService {
            inner,
            grpc: self.grpc,
        }
    }
}
