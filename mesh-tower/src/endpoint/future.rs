use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use http::{uri::Authority, Response};
use mesh_core::snapshot::{ClusterHandle, Outcome, PickedEndpoint, PoolSlot};
use pin_project_lite::pin_project;

use crate::{
    attempt::{AnsweredBy, Attempts},
    error::BoxError,
    route::{upstream_error, RouteInfo},
    MeshError, MeshErrorKind,
};

/// What an attempt in flight holds until its response head (or failure) arrives.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) picked: PickedEndpoint,
    pub(super) info: RouteInfo,
    pub(super) authority: Authority,
    /// Mark the response with the endpoint that answered (for the retry layer).
    pub(super) report: bool,
    /// Attach the attempt's `RouteInfo` to the response (for the metrics layer).
    pub(super) report_route: bool,
    /// Set when the cluster has outlier detection: the attempt's outcome is reported.
    pub(super) outlier: Option<Arc<ClusterHandle>>,
    /// The cluster connection slot ([`mesh_core::snapshot::pool`]).
    pub(super) _slot: PoolSlot,
    /// With outlier detection: the request's attempt record and its timeout count at send, to
    /// tell an attempt cut short by a timeout from one the caller abandoned.
    pub(super) timeouts: Option<(Attempts, u32)>,
    pub(super) finished: bool,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Dropped in flight. A timeout (route or per-try) is a local-origin failure for
        // outlier detection (Envoy's `LocalOriginTimeout`); a caller giving up is not.
        let Some((attempts, at_send)) = &self.timeouts else {
            return;
        };
        if attempts.timeouts() > *at_send {
            if let Some(detector) = self.outlier.as_ref().and_then(|c| c.outlier()) {
                detector.report(self.picked.outlier(), Outcome::LocalOriginFailure);
            }
        }
    }
}

/// The wait for a connection slot, resolving to the attempt sent (or failed).
pub(super) type Queued<F> = Pin<Box<dyn Future<Output = PickFuture<F>> + Send>>;

pin_project! {
    /// Response future of [`super::PickService`].
    #[project = Proj]
    #[allow(missing_docs)]
    pub enum PickFuture<F> {
        /// Sent: the inner future, and what the attempt holds until it completes.
        Sent {
            #[pin]
            fut: F,
            held: Option<Held>,
        },
        /// Waiting as a pending request for one of the cluster's connection slots.
        Queued { wait: Queued<F> },
        /// Failed before anything was sent.
        Failed { error: Option<MeshError> },
    }
}

impl<F> PickFuture<F> {
    pub(super) fn sent(fut: F, held: Held) -> Self {
        PickFuture::Sent {
            fut,
            held: Some(held),
        }
    }

    pub(super) fn queued(wait: Queued<F>) -> Self {
        PickFuture::Queued { wait }
    }

    pub(super) fn failed(error: MeshError) -> Self {
        PickFuture::Failed { error: Some(error) }
    }
}

impl<F, RB, E> Future for PickFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<RB>, MeshError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                Proj::Sent { fut, held } => {
                    let result = ready!(fut.poll(cx));
                    let Some(held) = held.take() else {
                        return Poll::Ready(Err(MeshError::new(MeshErrorKind::Upstream)
                            .detail("polled after completion")));
                    };
                    return Poll::Ready(finish(result, held));
                }
                Proj::Queued { wait } => {
                    let next = ready!(wait.as_mut().poll(cx));
                    self.set(next);
                }
                Proj::Failed { error } => {
                    return Poll::Ready(Err(error.take().unwrap_or_else(|| {
                        MeshError::new(MeshErrorKind::Upstream).detail("polled after completion")
                    })))
                }
            }
        }
    }
}

fn finish<RB, E: Into<BoxError>>(
    result: Result<Response<RB>, E>,
    mut held: Held,
) -> Result<Response<RB>, MeshError> {
    held.finished = true;
    if let Some(detector) = held.outlier.as_ref().and_then(|c| c.outlier()) {
        // Envoy's outlier classes: any response is an external outcome (5xx counts), no
        // response (connect failure, reset) is a local-origin failure.
        let outcome = match &result {
            Ok(resp) => Outcome::Status(outlier_status(resp)),
            Err(_) => Outcome::LocalOriginFailure,
        };
        detector.report(held.picked.outlier(), outcome);
    }
    let endpoint = held.picked.address();
    // The endpoint's outstanding count and the connection slot are released here.
    match result {
        Ok(mut resp) => {
            if held.report {
                resp.extensions_mut().insert(AnsweredBy(endpoint));
            }
            if held.report_route {
                resp.extensions_mut().insert(held.info.clone());
            }
            Ok(resp)
        }
        Err(e) => Err(upstream_error(
            e.into(),
            &held.info,
            endpoint,
            &held.authority,
        )),
    }
}

/// The status outlier detection sees: the HTTP status, or — for a trailers-only gRPC response,
/// whose `grpc-status` is in the head — that status mapped to HTTP as Envoy does
/// (`Grpc::Utility::grpcToHttpStatus`), so UNAVAILABLE counts as a 503. A `grpc-status` in
/// trailers is not seen here (the response head is all the pick layer waits for).
fn outlier_status<RB>(resp: &Response<RB>) -> u16 {
    let Some(code) = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
    else {
        return resp.status().as_u16();
    };
    match code {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        // UNKNOWN, INTERNAL, DATA_LOSS and anything else.
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_only_grpc_status_maps_like_envoy() {
        let resp = |grpc: Option<&str>| {
            let mut b = Response::builder().status(200);
            if let Some(g) = grpc {
                b = b.header("grpc-status", g);
            }
            b.body(()).unwrap()
        };
        assert_eq!(outlier_status(&resp(None)), 200);
        assert_eq!(outlier_status(&resp(Some("0"))), 200);
        assert_eq!(outlier_status(&resp(Some("14"))), 503);
        assert_eq!(outlier_status(&resp(Some("4"))), 504);
        assert_eq!(outlier_status(&resp(Some("13"))), 500);
        assert_eq!(outlier_status(&resp(Some("5"))), 404);
        assert_eq!(
            outlier_status(&resp(Some("junk"))),
            200,
            "unparsable: HTTP status"
        );
    }
}
