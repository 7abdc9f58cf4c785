//! An adaptive read-ahead buffer under the TLS session.
//!
//! rustls asks its transport for at most 4 KiB per read (`DeframerVecBuffer::prepare_read`), so
//! a 64 KiB response costs the receiver about eight `recv` calls on loopback, each with its own readiness
//! bookkeeping in tokio. Plain hyper reads the same bytes in one or two calls. Wrapping the
//! socket in a fixed `BufReader` fixes the call count but pins a 64 KiB buffer to every
//! connection, idle or not, which breaks the mesh's memory budget (memory should grow with
//! traffic, not with open connections).
//!
//! [`ReadAhead`] does both. Small exchanges read straight into rustls's buffer and allocate
//! nothing. When one read fills the caller's buffer completely, more data is probably waiting,
//! so the next reads go through a [`READ_AHEAD`]-byte buffer. The buffer is released as soon as
//! the socket has nothing more to give, so an idle connection holds no read-ahead memory.
//!
//! Writes pass straight through.
//!
//! Measured with `MESH_TLS_BENCH=seq-tls-64k strace -f -c` on the `tls` bench
//! (`benches/benches/tls.rs`; 25,000 sequential 64 KiB responses, both ends in one process):
//! 225,041 `recvfrom` calls without read-ahead, 77,225 with it. Responses of 1 KiB allocate
//! nothing and make the same calls as before.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read per `recv` while a burst lasts.
pub const READ_AHEAD: usize = 64 * 1024;

/// A transport with an adaptive read-ahead buffer; see the module docs.
#[derive(Debug)]
pub struct ReadAhead<T> {
    io: T,
    /// Read but not yet handed out. No capacity outside a burst.
    buf: BytesMut,
    /// Whether a burst is under way: the last read filled all the room it was given.
    burst: bool,
}

impl<T> ReadAhead<T> {
    /// Wraps `io`. Nothing is allocated until a burst starts.
    pub fn new(io: T) -> Self {
        ReadAhead {
            io,
            buf: BytesMut::new(),
            burst: false,
        }
    }

    /// The wrapped transport.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Read-ahead memory held right now (0 outside a burst).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Ends a burst: drops the buffer so an idle connection holds none.
    fn release(&mut self) {
        self.burst = false;
        self.buf = BytesMut::new();
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buf.is_empty() {
            let wanted = out.remaining();
            if !this.burst || wanted >= READ_AHEAD {
                // Outside a burst, or the caller's buffer is as large as ours: read directly.
                let before = out.filled().len();
                let polled = Pin::new(&mut this.io).poll_read(cx, out);
                match &polled {
                    Poll::Ready(Ok(())) => {
                        let got = out.filled().len() - before;
                        // Filled to the brim: more is probably waiting.
                        this.burst = got > 0 && got == wanted && wanted < READ_AHEAD;
                    }
                    Poll::Ready(Err(_)) | Poll::Pending => this.release(),
                }
                return polled;
            }
            this.buf.reserve(READ_AHEAD);
            let room = this.buf.capacity();
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.io), cx, &mut this.buf) {
                Poll::Ready(Ok(0)) => {
                    this.release();
                    return Poll::Ready(Ok(()));
                }
                // A short read: the socket is drained, the burst ends once this is handed out.
                Poll::Ready(Ok(n)) => this.burst = n == room,
                Poll::Ready(Err(e)) => {
                    this.release();
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    this.release();
                    return Poll::Pending;
                }
            }
        }
        let n = this.buf.len().min(out.remaining());
        out.put_slice(&this.buf[..n]);
        this.buf.advance(n);
        if this.buf.is_empty() && !this.burst {
            this.release();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadAhead<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    /// Reads `len` bytes in rustls-sized (4 KiB) reads; returns them and the largest
    /// read-ahead capacity seen.
    async fn read_4k(r: &mut ReadAhead<TcpStream>, len: usize) -> (Vec<u8>, usize) {
        let mut got = Vec::with_capacity(len);
        let mut peak = 0;
        let mut chunk = [0u8; 4096];
        while got.len() < len {
            let n = r.read(&mut chunk).await.unwrap();
            assert!(n > 0, "early end of stream after {} bytes", got.len());
            got.extend_from_slice(&chunk[..n]);
            peak = peak.max(r.buffer_capacity());
        }
        (got, peak)
    }

    #[tokio::test]
    async fn a_bulk_transfer_arrives_intact_and_the_buffer_is_released_after() {
        let (mut tx, rx) = pair().await;
        let mut r = ReadAhead::new(rx);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            tx.write_all(&sent).await.unwrap();
            tx
        });
        let (got, peak) = read_4k(&mut r, data.len()).await;
        assert_eq!(got, data);
        assert!(
            peak >= READ_AHEAD / 2,
            "a 300 KB burst never used read-ahead (peak {peak})"
        );
        let mut tx = writer.await.unwrap();
        // The next small message is read while idle: no buffer is held afterwards.
        tx.write_all(b"ping").await.unwrap();
        let (got, _) = read_4k(&mut r, 4).await;
        assert_eq!(got, b"ping");
        assert_eq!(r.buffer_capacity(), 0);
    }

    #[tokio::test]
    async fn small_exchanges_never_allocate() {
        let (mut tx, rx) = pair().await;
        let mut r = ReadAhead::new(rx);
        for i in 0..50u8 {
            let msg = vec![i; 1100];
            tx.write_all(&msg).await.unwrap();
            let (got, peak) = read_4k(&mut r, msg.len()).await;
            assert_eq!(got, msg);
            assert_eq!(peak, 0, "message {i} allocated read-ahead");
        }
    }

    #[tokio::test]
    async fn end_of_stream_and_writes_pass_through() {
        let (tx, rx) = pair().await;
        let mut r = ReadAhead::new(rx);
        let mut tx = tx;
        tx.write_all(&[1u8; 10_000]).await.unwrap();
        drop(tx);
        let mut all = Vec::new();
        r.read_to_end(&mut all).await.unwrap();
        assert_eq!(all.len(), 10_000);
        assert_eq!(r.buffer_capacity(), 0);

        let (a, mut b) = pair().await;
        let mut w = ReadAhead::new(a);
        w.write_all(b"hello").await.unwrap();
        w.flush().await.unwrap();
        let mut got = [0u8; 5];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
    }
}
