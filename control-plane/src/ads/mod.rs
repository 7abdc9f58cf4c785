//! The ADS server (`envoy.service.discovery.v3.AggregatedDiscoveryService`), state of the world.
//!
//! One task per stream runs the `stream` state machine against two inputs: the client's
//! requests and the published [`Snapshot`] (a `watch` channel, so every stream sees every config
//! change and pushes what changed). Delta xDS answers `UNIMPLEMENTED` for now (gRPC clients never
//! use it — gRFC A27). On shutdown every stream ends with `UNAVAILABLE`, so clients see the stream
//! end and reconnect elsewhere (gRFC A57: a stream closed after a response is not an error).

pub mod status;
mod stream;

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    aggregated_discovery_service_server::AggregatedDiscoveryService, DeltaDiscoveryRequest,
    DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::cache::Snapshot;
use status::ClientRegistry;
use stream::StreamState;

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The ADS service implementation.
#[derive(Debug, Clone)]
pub(crate) struct AdsService {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    clients: ClientRegistry,
    shutdown: watch::Receiver<bool>,
    next_stream: Arc<AtomicU64>,
}

impl AdsService {
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        clients: ClientRegistry,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        AdsService {
            snapshots,
            clients,
            shutdown,
            next_stream: Arc::new(AtomicU64::new(1)),
        }
    }
}

async fn run_stream(
    stream_id: u64,
    mut inbound: Streaming<DiscoveryRequest>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    mut shutdown: watch::Receiver<bool>,
    clients: ClientRegistry,
) {
    let client = clients.open(stream_id);
    let mut state = StreamState::new(stream_id);
    snapshots.mark_unchanged();
    loop {
        let responses = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => {
                let _ = tx.try_send(Err(Status::unavailable("control plane shutting down")));
                break;
            }
            msg = inbound.message() => match msg {
                Ok(Some(req)) => {
                    let snap = snapshots.borrow().clone();
                    state.on_request(&req, &snap, &client).into_iter().collect::<Vec<_>>()
                }
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(stream = stream_id, %status, "ads stream error");
                    break;
                }
            },
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                let snap = snapshots.borrow_and_update().clone();
                state.on_snapshot(&snap, &client)
            }
        };
        for resp in responses {
            if tx.send(Ok(resp)).await.is_err() {
                return;
            }
        }
    }
    tracing::info!(stream = stream_id, "ads stream closed");
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsService {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        if *self.shutdown.borrow() {
            return Err(Status::unavailable("control plane shutting down"));
        }
        let stream_id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(run_stream(
            stream_id,
            request.into_inner(),
            tx,
            self.snapshots.clone(),
            self.shutdown.clone(),
            self.clients.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "delta xDS is not implemented yet; use StreamAggregatedResources",
        ))
    }
}
