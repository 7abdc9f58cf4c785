//! The observable-counter hook: values that live in a cluster's shared state (atomics next to
//! the balancer and breakers), read when the metrics are collected, never on the request path.
//!
//! See [`ClusterCounter`].

use mesh_core::{mesh::Mesh, snapshot::ClusterHandle};
use opentelemetry::{metrics::Meter, Key, KeyValue, Value};

use super::attr;

/// How a [`ClusterCounter`] is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterReading {
    /// A monotonic count (an observable counter; `_total` in Prometheus).
    Counter,
    /// A current level (an observable gauge).
    Gauge,
}

/// One number read from each cluster's live state at collection time.
///
/// Each [`ClusterCounter`] is a name, a kind and a `fn` reading one number from a
/// [`ClusterHandle`]; [`observe_clusters`] registers it as an observable instrument whose
/// callback walks the mesh's targets and their current snapshots and reports the value per
/// `(mesh.target, mesh.cluster)`. Per target, because each target's snapshot holds its own
/// handle for a cluster (so per-handle counters stay exact; sum over `mesh.target` for the
/// cluster). A new per-cluster counter is one `const` — e.g. the `max_requests` breaker's own
/// overflow count (which `mesh.client.overflows` also sees, from the request path):
///
/// ```
/// use mesh_tower::metrics::{ClusterCounter, ClusterReading};
/// const BREAKER_OVERFLOWS: ClusterCounter = ClusterCounter {
///     name: "mesh.cluster.max_requests.overflows",
///     description: "Requests refused by the cluster's max_requests breaker.",
///     unit: "{request}",
///     reading: ClusterReading::Counter,
///     read: |c| Some(c.retry_counters().overflows()),
/// };
/// ```
///
/// Outlier ejections and injected faults plug in the same way once their per-cluster atomics
/// exist (`read: |c| c.outlier().map(|o| o.ejections_total())`, clusters without detection
/// skipped), then go into [`ClusterCounter::ALL`].
#[derive(Clone, Copy, Debug)]
pub struct ClusterCounter {
    /// The instrument name, e.g. `mesh.cluster.endpoints`.
    pub name: &'static str,
    /// The instrument description.
    pub description: &'static str,
    /// The UCUM unit, e.g. `{endpoint}`.
    pub unit: &'static str,
    /// Counter or gauge.
    pub reading: ClusterReading,
    /// Reads the value (an atomic load; called once per cluster per collection); `None` skips
    /// the cluster (e.g. one without the feature counted).
    pub read: fn(&ClusterHandle) -> Option<u64>,
}

impl ClusterCounter {
    /// `mesh.cluster.endpoints`: endpoints in the cluster's current assignment (gauge).
    pub const ENDPOINTS: ClusterCounter = ClusterCounter {
        name: "mesh.cluster.endpoints",
        description: "Endpoints in the cluster's current assignment.",
        unit: "{endpoint}",
        reading: ClusterReading::Gauge,
        read: |c| Some(c.balancer().total_endpoints() as u64),
    };

    /// `mesh.cluster.active_requests`: requests in flight to the cluster, as its `max_requests`
    /// breaker counts them (gauge; [`crate::MeshStackLayer`] only).
    pub const ACTIVE_REQUESTS: ClusterCounter = ClusterCounter {
        name: "mesh.cluster.active_requests",
        description: "Requests in flight to the cluster, as its max_requests breaker counts them.",
        unit: "{request}",
        reading: ClusterReading::Gauge,
        read: |c| Some(c.retry_counters().active_requests() as u64),
    };

    /// `mesh.cluster.active_retries`: retries in flight to the cluster (gauge).
    pub const ACTIVE_RETRIES: ClusterCounter = ClusterCounter {
        name: "mesh.cluster.active_retries",
        description: "Retries in flight to the cluster, as its retry budget counts them.",
        unit: "{retry}",
        reading: ClusterReading::Gauge,
        read: |c| Some(c.retry_counters().active_retries() as u64),
    };

    /// The counters available today.
    pub const ALL: &'static [ClusterCounter] = &[
        ClusterCounter::ENDPOINTS,
        ClusterCounter::ACTIVE_REQUESTS,
        ClusterCounter::ACTIVE_RETRIES,
    ];
}

/// Registers each of `counters` on `meter` as an observable instrument over `mesh`'s clusters
/// (see [`ClusterCounter`]). The callbacks hold a clone of `mesh` and live as long as the
/// meter provider.
pub fn observe_clusters(meter: &Meter, mesh: &Mesh, counters: &[ClusterCounter]) {
    for c in counters {
        let mesh = mesh.clone();
        let read = c.read;
        match c.reading {
            ClusterReading::Counter => {
                meter
                    .u64_observable_counter(c.name)
                    .with_description(c.description)
                    .with_unit(c.unit)
                    .with_callback(move |o| each_cluster(&mesh, read, |v, a| o.observe(v, a)))
                    .build();
            }
            ClusterReading::Gauge => {
                meter
                    .u64_observable_gauge(c.name)
                    .with_description(c.description)
                    .with_unit(c.unit)
                    .with_callback(move |o| each_cluster(&mesh, read, |v, a| o.observe(v, a)))
                    .build();
            }
        }
    }
}

/// Calls `observe` with `read(cluster)` and its attributes for every cluster of every warm
/// target that `read` has a value for.
fn each_cluster(
    mesh: &Mesh,
    read: fn(&ClusterHandle) -> Option<u64>,
    mut observe: impl FnMut(u64, &[KeyValue]),
) {
    for target in mesh.targets() {
        let Some(snapshot) = target.snapshot().as_ref().cloned() else {
            continue;
        };
        let t = KeyValue::new(
            Key::from_static_str(attr::MESH_TARGET),
            Value::from(target.name().clone()),
        );
        for (name, handle) in snapshot.clusters() {
            let Some(v) = read(handle) else { continue };
            let c = KeyValue::new(
                Key::from_static_str(attr::MESH_CLUSTER),
                Value::from(name.clone()),
            );
            observe(v, &[t.clone(), c]);
        }
    }
}
