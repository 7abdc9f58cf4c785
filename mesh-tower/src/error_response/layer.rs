use tower::Layer;

use super::ErrorResponse;

/// Answers mesh failures with explained HTTP responses (see the [module docs](super)).
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorResponseLayer;

impl ErrorResponseLayer {
    /// The layer.
    pub fn new() -> Self {
        ErrorResponseLayer
    }
}

impl<S> Layer<S> for ErrorResponseLayer {
    type Service = ErrorResponse<S>;

    fn layer(&self, inner: S) -> ErrorResponse<S> {
        ErrorResponse::new(inner)
    }
}
