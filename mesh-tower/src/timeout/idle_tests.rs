use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use mesh_core::model::{RetryLimits, RoutePolicy};
use tokio::{sync::mpsc, time::Instant};
use tower::ServiceExt;

use super::*;
use crate::test_support::*;

/// A response body fed by the test, one frame per message; ends when the sender drops.
struct Fed(mpsc::Receiver<Bytes>);

impl Body for Fed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}

fn names(after: Duration) -> Names {
    Names {
        route: "r".into(),
        cluster: "c".into(),
        authority: Authority::from_static("svc:80"),
        after,
    }
}

#[tokio::test(start_paused = true)]
async fn no_response_head_within_the_idle_timeout_fails_as_idle_timeout() {
    let policy = RoutePolicy {
        timeout: None,
        idle_timeout: Some(Duration::from_secs(2)),
        ..Default::default()
    };
    let mesh = mesh(policy, RetryLimits::default(), &endpoints(1));
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let start = Instant::now();
    let call = tokio::spawn(svc.oneshot(get("/x")));
    let (_req, _hold) = handle.next_request().await.expect("sent");
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "fires when idle 2 s"
    );
    assert_eq!(err.kind(), MeshErrorKind::IdleTimeout);
    assert_eq!(
        (err.route_name(), err.cluster_name()),
        (Some("r"), Some("c"))
    );
    assert_eq!(
        crate::error_response::status_for(err.kind()),
        http::StatusCode::REQUEST_TIMEOUT,
        "Envoy's 408 before response headers"
    );
}

#[tokio::test(start_paused = true)]
async fn a_route_without_idle_timeout_waits_for_the_head() {
    let policy = RoutePolicy {
        timeout: None,
        ..Default::default()
    };
    let mesh = mesh(policy, RetryLimits::default(), &endpoints(1));
    let (svc, mut handle) = stack(&mesh, 1024).await;
    let call = tokio::spawn(svc.oneshot(get("/x")));
    let (_req, send) = handle.next_request().await.expect("sent");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!call.is_finished(), "no idle timer");
    send.send_response(status(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn grpc_mode_has_no_idle_timeout() {
    let policy = RoutePolicy {
        idle_timeout: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let mesh = mesh(policy, RetryLimits::default(), &endpoints(1));
    let (svc, mut handle) = grpc_stack(&mesh).await;
    let call = tokio::spawn(svc.oneshot(get("/x")));
    let (_req, send) = handle.next_request().await.expect("sent");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!call.is_finished(), "gRPC ignores idle_timeout (gRFC A31)");
    send.send_response(status(200));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn each_frame_rearms_the_body_timer_and_silence_ends_it_with_an_error() {
    let (tx, rx) = mpsc::channel(1);
    let mut body = std::pin::pin!(IdleBody::new(Fed(rx), Some(names(Duration::from_secs(2)))));
    // Five frames 1.5 s apart: 7.5 s in all, far past one 2 s period, none idle for 2 s.
    for i in 0..5u8 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tx.send(Bytes::from(vec![i])).await.unwrap();
        let frame = body.frame().await.expect("a frame").expect("not idle");
        assert_eq!(frame.into_data().unwrap(), Bytes::from(vec![i]));
    }
    let silent_from = Instant::now();
    let err = body.frame().await.expect("an error").unwrap_err();
    assert_eq!(silent_from.elapsed(), Duration::from_secs(2));
    assert_eq!(err.kind(), MeshErrorKind::IdleTimeout);
    assert_eq!(err.route_name(), Some("r"));
    assert!(err.to_string().contains("idle timeout of 2s"), "{err}");
    assert!(body.frame().await.is_none(), "ends after the error");
    assert!(body.is_end_stream());
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn a_finished_body_disarms_and_an_untimed_body_never_fires() {
    let (tx, rx) = mpsc::channel(1);
    let mut body = std::pin::pin!(IdleBody::new(Fed(rx), Some(names(Duration::from_secs(1)))));
    tx.send(Bytes::from_static(b"a")).await.unwrap();
    drop(tx);
    assert!(body.frame().await.unwrap().is_ok());
    assert!(body.frame().await.is_none(), "end of stream, no error");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(body.frame().await.is_none());

    let (tx, rx) = mpsc::channel(1);
    let next = tokio::spawn(async move {
        let mut body = std::pin::pin!(IdleBody::untimed(Fed(rx)));
        body.frame().await.map(|f| f.is_ok())
    });
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!next.is_finished(), "no timer");
    tx.send(Bytes::from_static(b"late")).await.unwrap();
    assert_eq!(next.await.unwrap(), Some(true));
}
