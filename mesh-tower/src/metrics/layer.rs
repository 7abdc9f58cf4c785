use std::sync::Arc;

use opentelemetry::metrics::Meter;
use tower::Layer;

use super::{Instruments, Metrics};

/// Records OpenTelemetry metrics for each request (see the [module docs](super)). Building it
/// creates the instruments on `meter`; clones share them.
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    instruments: Arc<Instruments>,
}

impl MetricsLayer {
    /// The layer, its instruments created on `meter` (e.g.
    /// `provider.meter("mesh-tower")`, or `opentelemetry::global::meter("mesh-tower")`).
    pub fn new(meter: &Meter) -> Self {
        MetricsLayer {
            instruments: Arc::new(Instruments::new(meter)),
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Metrics<S> {
        Metrics::new(inner, self.instruments.clone())
    }
}
