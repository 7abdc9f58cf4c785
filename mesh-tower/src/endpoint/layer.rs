use tower::Layer;

use super::PickService;

/// Picks an endpoint per attempt (see the [module docs](super)). Stateless.
#[derive(Clone, Copy, Debug, Default)]
pub struct PickLayer;

impl PickLayer {
    /// The layer.
    pub fn new() -> Self {
        PickLayer
    }
}

impl<S> Layer<S> for PickLayer {
    type Service = PickService<S>;

    fn layer(&self, inner: S) -> PickService<S> {
        PickService::new(inner)
    }
}
