use tower::Layer;

use super::Fault;

/// Injects the route's configured faults (see the [module docs](super)).
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultLayer {
    grpc: bool,
}

impl FaultLayer {
    /// Envoy's semantics (HTTP callers).
    pub fn new() -> Self {
        FaultLayer { grpc: false }
    }

    /// gRPC's semantics (gRFC A33): selection fields ignored, the delay on the call's clock.
    pub fn grpc() -> Self {
        FaultLayer { grpc: true }
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = Fault<S>;

    fn layer(&self, inner: S) -> Fault<S> {
        Fault::new(inner, self.grpc)
    }
}
