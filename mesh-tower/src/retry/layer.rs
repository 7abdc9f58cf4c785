use tower::Layer;

use super::Retry;

/// Retries requests by their route's retry policy (see the [module docs](super)).
#[derive(Clone, Copy, Debug)]
pub struct RetryLayer {
    replay_cap: usize,
    grpc: bool,
}

impl RetryLayer {
    /// Default cap on a request body kept for replay: 64 KiB.
    pub const DEFAULT_REPLAY_CAP: usize = 64 * 1024;

    /// A layer with the default replay cap.
    pub fn new() -> Self {
        RetryLayer {
            replay_cap: Self::DEFAULT_REPLAY_CAP,
            grpc: false,
        }
    }

    /// gRPC's retry semantics (gRFC A6): at most 5 attempts, A6's backoff, and server pushback
    /// (`grpc-retry-pushback-ms`). See the [module docs](super).
    pub fn grpc(mut self) -> Self {
        self.grpc = true;
        self
    }

    /// Sets the largest request body (bytes) buffered for replay; larger bodies are never
    /// retried.
    pub fn replay_cap(mut self, bytes: usize) -> Self {
        self.replay_cap = bytes;
        self
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        RetryLayer::new()
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        let mut retry = Retry::new(inner, self.replay_cap);
        retry.grpc = self.grpc;
        retry
    }
}
