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
/// Outlier ejections and the connection-pool breakers are read this way too
/// ([`ClusterCounter::OUTLIER_EJECTIONS`], [`ClusterCounter::PENDING_OVERFLOWS`], …; clusters
/// without outlier detection are skipped).
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

    /// `mesh.cluster.outlier.ejections`: ejections made by outlier detection (counter; clusters
    /// without detection report nothing).
    pub const OUTLIER_EJECTIONS: ClusterCounter = ClusterCounter {
        name: "mesh.cluster.outlier.ejections",
        description: "Endpoints ejected by outlier detection.",
        unit: "{ejection}",
        reading: ClusterReading::Counter,
        read: |c| c.outlier().map(|o| o.ejections_total()),
    };

    /// `mesh.cluster.outlier.ejected`: endpoints ejected now (gauge).
    pub const OUTLIER_EJECTED: ClusterCounter = ClusterCounter {
        name: "mesh.cluster.outlier.ejected",
        description: "Endpoints currently ejected by outlier detection.",
        unit: "{endpoint}",
        reading: ClusterReading::Gauge,
        read: |c| c.outlier().map(|o| o.ejected_now() as u64),
    };

    /// `mesh.cluster.pending_requests`: attempts waiting for a connection slot (gauge).
    pub const PENDING_REQUESTS: ClusterCounter = ClusterCounter {
        name: "mesh.cluster.pending_requests",
        description: "Attempts waiting for one of the cluster's connection slots.",
        unit: "{request}",
        reading: ClusterReading::Gauge,
        read: |c| Some(c.pool().pending() as u64),
    };

    /// `mesh.cluster.pending_overflows`: attempts refused by `max_pending_requests` (or by
    /// `max_connections` when nothing may queue) (counter).
    pub const PENDING_OVERFLOWS: ClusterCounter = ClusterCounter {
        name: "mesh.cluster.pending_overflows",
        description: "Attempts refused because the cluster's pending queue was full.",
        unit: "{request}",
        reading: ClusterReading::Counter,
        read: |c| Some(c.pool().pending_overflows()),
    };

    /// `mesh.cluster.fault.delays`: delays the fault filter injected on requests to the cluster
    /// (counter).
    pub const FAULT_DELAYS: ClusterCounter = ClusterCounter {
        name: "mesh.cluster.fault.delays",
        description: "Delays injected by fault injection on requests to the cluster.",
        unit: "{request}",
        reading: ClusterReading::Counter,
        read: |c| Some(c.fault_counts().delays()),
    };

    /// `mesh.cluster.fault.aborts`: requests to the cluster the fault filter aborted (counter).
    pub const FAULT_ABORTS: ClusterCounter = ClusterCounter {
        name: "mesh.cluster.fault.aborts",
        description: "Requests to the cluster aborted by fault injection.",
        unit: "{request}",
        reading: ClusterReading::Counter,
        read: |c| Some(c.fault_counts().aborts()),
    };

    /// `mesh.cluster.drop_overloads`: requests to the cluster dropped by its EDS
    /// `drop_overloads` before any attempt (counter; Envoy's `upstream_rq_drop_overload`).
    /// Each is also a request failing with `error.type=drop_overload`.
    pub const DROP_OVERLOADS: ClusterCounter = ClusterCounter {
        name: "mesh.cluster.drop_overloads",
        description: "Requests dropped by the cluster's EDS drop_overloads.",
        unit: "{request}",
        reading: ClusterReading::Counter,
        read: |c| Some(c.drop_counts().dropped()),
    };

    /// The counters available today.
    pub const ALL: &'static [ClusterCounter] = &[
        ClusterCounter::ENDPOINTS,
        ClusterCounter::ACTIVE_REQUESTS,
        ClusterCounter::ACTIVE_RETRIES,
        ClusterCounter::OUTLIER_EJECTIONS,
        ClusterCounter::OUTLIER_EJECTED,
        ClusterCounter::PENDING_REQUESTS,
        ClusterCounter::PENDING_OVERFLOWS,
        ClusterCounter::FAULT_DELAYS,
        ClusterCounter::FAULT_ABORTS,
        ClusterCounter::DROP_OVERLOADS,
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
