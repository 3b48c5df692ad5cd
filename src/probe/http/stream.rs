//! The probe's stream wrappers: `Coalesce` sends the TLS handshake's last flight with the
//! request, `NoShutdown` spares the close_notify and shutdown(2) after a complete response.

use tokio::io::{AsyncRead, AsyncWrite};

/// A TCP stream that sends the client's last handshake flight together with the first request.
///
/// tokio-rustls writes and flushes the client's `Finished` before handing over the stream, and
/// hyper then writes the request: two writes and two loopback segments where one would do.
///
/// During the handshake, writes that follow a read (the client's answer to the server's flight)
/// are held and flushes skipped, but everything held leaves before the next read, so the peer
/// is never left waiting for us (TLS 1.2 reads again after its Finished). Once `arm`ed (the
/// handshake is done and a request is about to be written), held bytes stay until the first
/// write of the request and leave with it at its flush. Bytes always leave in the order written.
pub(super) struct Coalesce<S> {
    inner: S,
    pending: Vec<u8>,
    /// Data was read since the last write went out: hold writes.
    hold: bool,
    /// The handshake is complete; the request comes next.
    armed: bool,
    /// Something was written since `arm`: the next flush (or read) sends everything.
    written: bool,
}

impl<S> Coalesce<S> {
    pub(super) fn new(inner: S) -> Self {
        Coalesce {
            inner,
            pending: Vec::new(),
            hold: false,
            armed: false,
            written: false,
        }
    }

    pub(super) fn arm(&mut self) {
        self.armed = true;
    }

    /// Whether held bytes must leave now: always during the handshake, and after it once the
    /// request has started.
    fn must_send(&self) -> bool {
        !self.armed || self.written
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes out everything held, in order.
    fn poll_drain(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.pending.is_empty() {
            return std::task::Poll::Ready(Ok(()));
        }
        while !self.pending.is_empty() {
            let n = std::task::ready!(
                std::pin::Pin::new(&mut self.inner).poll_write(cx, &self.pending)
            )?;
            if n == 0 {
                return std::task::Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        self.hold = false;
        std::task::Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.must_send() {
            // The peer may be waiting for what we hold: send it before waiting for the peer.
            std::task::ready!(self.poll_drain(cx))?;
        }
        let before = buf.filled().len();
        std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.hold = true;
        }
        std::task::Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.armed {
            self.written = true;
        }
        if self.hold || !self.pending.is_empty() {
            self.pending.extend_from_slice(buf);
            return std::task::Poll::Ready(Ok(buf.len()));
        }
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.armed {
            self.written = true;
        }
        if self.hold || !self.pending.is_empty() {
            let mut n = 0;
            for b in bufs {
                self.pending.extend_from_slice(b);
                n += b.len();
            }
            return std::task::Poll::Ready(Ok(n));
        }
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.pending.is_empty() && (!self.armed || !self.written) {
            // The handshake's own flush (or one before the request): what it would send
            // leaves with the request, or before the next read, instead.
            return std::task::Poll::Ready(Ok(()));
        }
        std::task::ready!(self.poll_drain(cx))?;
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The probe's stream as hyper sees it, minus `shutdown`. Hyper shuts the write side down when
/// it closes a `Connection: close` exchange: over TLS that is a close_notify alert to encrypt
/// and write, then a shutdown(2), per probe. By then the response has been read, and the socket
/// is dropped (closed) right after, so the shutdown is skipped: it would only cost CPU.
pub(super) struct NoShutdown<S>(pub(super) S);

impl<S: AsyncRead + Unpin> AsyncRead for NoShutdown<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NoShutdown<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
