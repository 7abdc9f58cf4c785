use std::sync::Arc;

use opentelemetry::{
    metrics::{Meter, MeterProvider},
    InstrumentationScope,
};
use tower::Layer;

use super::{Instruments, Metrics, SCHEMA_URL};

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

    /// The layer on a meter of its own from `provider`: scope `mesh-tower`, this crate's
    /// version, and the schema URL of the semantic conventions followed ([`SCHEMA_URL`]).
    pub fn from_provider(provider: &impl MeterProvider) -> Self {
        let scope = InstrumentationScope::builder("mesh-tower")
            .with_version(env!("CARGO_PKG_VERSION"))
            .with_schema_url(SCHEMA_URL)
            .build();
        MetricsLayer::new(&provider.meter_with_scope(scope))
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Metrics<S> {
        Metrics::new(inner, self.instruments.clone())
    }
}
