//! Request-body replay: the body is buffered up to a cap so each retry can resend it (Envoy
//! buffers the request for retries up to the connection buffer limit and stops retrying past
//! it). Over the cap, the buffered prefix and the rest of the stream go out once, unretried.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;

use crate::error::BoxError;

pin_project! {
    /// The body type the retry layer sends downstream: a replayable copy, a buffered prefix
    /// followed by the unbuffered rest, or the caller's body untouched (routes without retries).
    #[project = Proj]
    #[allow(missing_docs)]
    pub enum ReplayBody<B> {
        /// A complete copy (cheap to clone: `Bytes`).
        Full { data: Option<Bytes>, trailers: Option<HeaderMap> },
        /// Over the cap: what was read, then the rest.
        Partial { prefix: Option<Bytes>, #[pin] rest: B },
        /// The caller's body as is.
        Stream { #[pin] body: B },
    }
}

impl<B> ReplayBody<B> {
    /// Wraps a body that will not be replayed.
    pub fn stream(body: B) -> Self {
        ReplayBody::Stream { body }
    }
}

/// A buffered request body.
pub(crate) enum Buffered<B> {
    /// Whole body within the cap.
    Full(Bytes, Option<HeaderMap>),
    /// Over the cap.
    Partial(Bytes, B),
}

impl<B> Buffered<B> {
    /// A body for one more attempt, if the buffer is complete.
    pub(crate) fn replay(&self) -> Option<ReplayBody<B>> {
        match self {
            Buffered::Full(data, trailers) => Some(ReplayBody::Full {
                data: (!data.is_empty()).then(|| data.clone()),
                trailers: trailers.clone(),
            }),
            Buffered::Partial(..) => None,
        }
    }
}

/// Reads `body` until it ends or more than `cap` bytes have arrived.
pub(crate) async fn buffer<B>(mut body: B, cap: usize) -> Result<Buffered<B>, BoxError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut buf = BytesMut::new();
    let mut trailers = None;
    if body.is_end_stream() {
        return Ok(Buffered::Full(Bytes::new(), None));
    }
    if body.size_hint().lower() > cap as u64 {
        return Ok(Buffered::Partial(Bytes::new(), body));
    }
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Into::into)?;
        match frame.into_data() {
            Ok(data) => {
                buf.extend_from_slice(&data);
                if buf.len() > cap {
                    return Ok(Buffered::Partial(buf.freeze(), body));
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    Ok(Buffered::Full(buf.freeze(), trailers))
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            Proj::Full { data, trailers } => {
                if let Some(d) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
            Proj::Partial { prefix, rest } => {
                if let Some(d) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                rest.poll_frame(cx).map_err(Into::into)
            }
            Proj::Stream { body } => body.poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReplayBody::Full { data, trailers } => data.is_none() && trailers.is_none(),
            ReplayBody::Partial { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
            ReplayBody::Stream { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReplayBody::Full { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ReplayBody::Partial { prefix, rest } => {
                let p = prefix.as_ref().map_or(0, |d| d.len() as u64);
                let r = rest.size_hint();
                let mut h = SizeHint::new();
                h.set_lower(r.lower() + p);
                if let Some(u) = r.upper() {
                    h.set_upper(u + p);
                }
                h
            }
            ReplayBody::Stream { body } => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    #[tokio::test]
    async fn small_bodies_replay_and_big_ones_stream_once() {
        let b = buffer(Full::new(Bytes::from_static(b"hello")), 16)
            .await
            .unwrap();
        for _ in 0..2 {
            let body = b.replay().expect("replayable");
            assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"hello");
        }
        let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = (0..4)
            .map(|_| Ok(Frame::data(Bytes::from_static(b"0123456789"))))
            .collect();
        let stream = StreamBody::new(futures::stream::iter(chunks));
        let b = buffer(stream, 16).await.unwrap();
        assert!(b.replay().is_none());
        let Buffered::Partial(prefix, rest) = b else {
            panic!("over the cap")
        };
        assert_eq!(prefix.len(), 20, "read until past the cap");
        let all = ReplayBody::Partial {
            prefix: Some(prefix),
            rest,
        }
        .collect()
        .await
        .unwrap()
        .to_bytes();
        assert_eq!(all.len(), 40, "nothing lost");
    }
}
