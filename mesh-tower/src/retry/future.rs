use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use mesh_core::snapshot::ActiveGuard;
use pin_project_lite::pin_project;
use tower::{Service, ServiceExt};

use super::{
    body::{buffer, Buffered, ReplayBody},
    policy::{backoff, grpc_backoff, pushback, retriable, retriable_error, Pushback},
    NotRetried,
};
use crate::{
    attempt::{AnsweredBy, AttemptCount, AvoidHosts},
    error::{BoxError, OverflowLimit},
    route::Routed,
    MeshError, MeshErrorKind,
};

/// gRPC's cap on attempts per call, original included (gRFC A6).
const GRPC_MAX_ATTEMPTS: u32 = 5;

type Retrying<RB> = Pin<Box<dyn Future<Output = Result<Response<RB>, MeshError>> + Send>>;

pin_project! {
    /// Response future of [`super::Retry`].
    #[project = Proj]
    #[allow(missing_docs)]
    pub enum ResponseFuture<F, RB> {
        /// No retry policy: the single attempt, counted as an active request.
        Passthrough { #[pin] fut: F, guard: Option<ActiveGuard> },
        /// The retry loop.
        Retrying { fut: Retrying<RB> },
        /// Refused before any attempt (the `max_requests` breaker).
        Failed { error: Option<MeshError> },
    }
}

impl<F, RB> ResponseFuture<F, RB> {
    pub(super) fn passthrough(fut: F, guard: Option<ActiveGuard>) -> Self {
        ResponseFuture::Passthrough { fut, guard }
    }

    pub(super) fn retrying(fut: Retrying<RB>) -> Self {
        ResponseFuture::Retrying { fut }
    }

    pub(super) fn failed(error: MeshError) -> Self {
        ResponseFuture::Failed { error: Some(error) }
    }
}

impl<F, RB> Future for ResponseFuture<F, RB>
where
    F: Future<Output = Result<Response<RB>, MeshError>>,
{
    type Output = Result<Response<RB>, MeshError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Proj::Passthrough { fut, .. } => fut.poll(cx),
            Proj::Retrying { fut } => fut.as_mut().poll(cx),
            Proj::Failed { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                MeshError::new(MeshErrorKind::Upstream).detail("polled after completion")
            }))),
        }
    }
}

fn clone_parts<B>(parts: &http::request::Parts, body: B) -> Request<B> {
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    *req.extensions_mut() = parts.extensions.clone();
    req
}

/// The retry loop for one request whose route has a retry policy.
pub(super) async fn run<S, B, RB>(
    mut svc: S,
    req: Request<B>,
    routed: Routed,
    replay_cap: usize,
    grpc: bool,
    _active: ActiveGuard,
) -> Result<Response<RB>, MeshError>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<RB>, Error = MeshError>,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let Some(retry) = routed.policy.retry.as_ref() else {
        return svc.call(req.map(ReplayBody::stream)).await;
    };
    let policy = &retry.policy;
    let (parts, body) = req.into_parts();
    let body = buffer(body, replay_cap).await.map_err(|e| {
        MeshError::new(MeshErrorKind::Upstream)
            .at(routed.authority.as_str(), parts.uri.path())
            .route(&routed.route)
            .cluster(&routed.cluster.cluster.name)
            .detail(format!("reading request body: {e}"))
    })?;
    let body = match body {
        Buffered::Partial(prefix, rest) => {
            // Cannot be replayed: one attempt, and say so if it would have been retried.
            let req = clone_parts(
                &parts,
                ReplayBody::Partial {
                    prefix: Some(prefix),
                    rest,
                },
            );
            let outcome = svc.call(req).await;
            return match outcome {
                Err(e) if retriable_error(policy.retry_on, &e) => {
                    Err(e.not_retried(NotRetried::BodyOverReplayCap.as_str()))
                }
                other => other,
            };
        }
        full => full,
    };
    let priority = super::breaker_priority(&routed, grpc);
    let limits = *routed.cluster.cluster.retry_limits_for(priority);
    let counters = routed.cluster.retry_counters_for(priority).clone();
    let mut tried: Vec<std::net::SocketAddr> = Vec::new();
    let mut retry_guard: Option<ActiveGuard> = None;
    let mut attempt: u32 = 0;
    // gRPC: at most 5 attempts (gRFC A6 `maxAttempts` cap; XDS-SEMANTICS row 12).
    let num_retries = if grpc {
        policy.num_retries.min(GRPC_MAX_ATTEMPTS - 1)
    } else {
        policy.num_retries
    };
    // gRPC's backoff exponent, restarted by server pushback (A6).
    let mut backoff_n: u32 = 0;
    loop {
        attempt += 1;
        // A partial body returned above, so this is always a complete copy.
        let Some(replay) = body.replay() else {
            return Err(MeshError::new(MeshErrorKind::Upstream).detail("body not replayable"));
        };
        let mut req = clone_parts(&parts, replay);
        if policy.previous_hosts {
            req.extensions_mut().insert(AvoidHosts {
                hosts: Arc::from(&tried[..]),
                tries: policy.host_selection_max_attempts,
            });
        }
        let outcome = if attempt == 1 {
            svc.call(req).await
        } else {
            match svc.ready().await {
                Ok(s) => s.call(req).await,
                Err(e) => Err(e),
            }
        };
        drop(retry_guard.take());
        let push = if grpc {
            pushback(&outcome)
        } else {
            Pushback::None
        };
        let retry_due =
            attempt <= num_retries && retriable(retry, &outcome) && push != Pushback::Stop;
        if !retry_due {
            return match outcome {
                Ok(resp) => Ok(counted(resp, attempt, None)),
                Err(mut e) => {
                    e.set_attempts(attempt);
                    Err(e)
                }
            };
        }
        let Some(g) = counters.try_retry(&limits) else {
            let limit = match limits.budget {
                Some(_) => "retry_budget",
                None => OverflowLimit::MaxRetries.as_str(),
            };
            return match outcome {
                Ok(resp) => Ok(counted(resp, attempt, Some(limit))),
                Err(e) => {
                    let kind = if limits.budget.is_some() {
                        MeshErrorKind::RetryBudgetExhausted
                    } else {
                        MeshErrorKind::Overflow(OverflowLimit::MaxRetries)
                    };
                    let mut out = MeshError::new(kind)
                        .at(routed.authority.as_str(), parts.uri.path())
                        .route(&routed.route)
                        .cluster(&routed.cluster.cluster.name)
                        .endpoint_opt(e.endpoint_addr())
                        .attempts(attempt);
                    out = out.detail(e);
                    Err(out)
                }
            };
        };
        retry_guard = Some(g);
        let endpoint = match &outcome {
            Ok(resp) => resp.extensions().get::<AnsweredBy>().map(|a| a.0),
            Err(e) => e.endpoint_addr(),
        };
        if let Some(ep) = endpoint {
            tried.push(ep);
        }
        drop(outcome);
        let delay = match push {
            Pushback::After(d) => {
                backoff_n = 0;
                d
            }
            _ if grpc => {
                backoff_n += 1;
                grpc_backoff(backoff_n, policy.backoff, rand::random::<f64>())
            }
            _ => backoff(attempt, policy.backoff, rand::random::<f64>()),
        };
        tokio::time::sleep(delay).await;
    }
}

/// Tells outer layers (metrics) how many attempts the response took, and which limit refused
/// a due retry.
fn counted<RB>(
    mut resp: Response<RB>,
    attempts: u32,
    retry_refused: Option<&'static str>,
) -> Response<RB> {
    if attempts > 1 || retry_refused.is_some() {
        resp.extensions_mut().insert(AttemptCount {
            attempts,
            retry_refused,
        });
    }
    resp
}
