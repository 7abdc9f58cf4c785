use tower::Layer;

use super::{Timeout, Which};

/// Applies the route's timeout or its per-try timeout (see the [module docs](super)).
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    which: Which,
}

impl TimeoutLayer {
    /// A layer applying `which` deadline.
    pub fn new(which: Which) -> Self {
        TimeoutLayer { which }
    }

    /// The route timeout (outside the retry layer).
    pub fn route() -> Self {
        TimeoutLayer::new(Which::Route)
    }

    /// The per-try timeout (inside the retry layer).
    pub fn per_try() -> Self {
        TimeoutLayer::new(Which::PerTry)
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout::new(inner, self.which)
    }
}
