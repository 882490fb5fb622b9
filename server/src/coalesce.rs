//! [`CoalescingStream`]: a connection that gathers what several responses write
//! into one socket write.
//!
//! hyper's HTTP/2 connection flushes after every round of frames it writes. Watch
//! events for many streams of one connection, and the responses of one batch of
//! writes, become ready within microseconds of each other, but each round would
//! cost its own `writev` (and a TCP segment for the client to receive). Here writes
//! go to a buffer; a flush first yields to the runtime, so every task that is ready
//! to add frames does so, and yields again while the buffer keeps growing (up to
//! [`MAX_FLUSH_YIELDS`] times): then it writes the whole buffer at once.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most times one flush yields while other tasks keep adding to the buffer.
const MAX_FLUSH_YIELDS: u32 = 16;

/// Bytes buffered before a write goes to the socket without waiting for a flush.
const BUFFER_LIMIT: usize = 256 << 10;

/// A byte stream whose writes are gathered until a flush; a flush yields until
/// the buffer stops growing before it writes. Invariant: `buf[written..]` is not
/// yet on the socket; reads go straight through.
pub struct CoalescingStream<S> {
    inner: S,
    buf: Vec<u8>,
    written: usize,
    /// Yields of the flush in progress, and the buffer's length at the last one.
    yields: u32,
    len_at_yield: usize,
}

impl<S> CoalescingStream<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> CoalescingStream<S> {
        CoalescingStream { inner, buf: Vec::new(), written: 0, yields: 0, len_at_yield: 0 }
    }
}

impl<S: AsyncWrite + Unpin> CoalescingStream<S> {
    /// Writes the buffer to the socket; `Ready(Ok)` once all of it is written.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Makes room for more: drains first when the buffer is at its limit.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buf.len() >= BUFFER_LIMIT {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CoalescingStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CoalescingStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_room(cx))?;
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_room(cx))?;
        let mut n = 0;
        for b in bufs {
            self.buf.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let growing = self.yields == 0 || self.buf.len() > self.len_at_yield;
        if self.buf.len() > self.written && growing && self.yields < MAX_FLUSH_YIELDS && self.buf.len() < BUFFER_LIMIT {
            // Let the tasks that are ready run first: they may add more frames.
            self.yields += 1;
            self.len_at_yield = self.buf.len();
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(self.poll_drain(cx))?;
        self.yields = 0;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writes_arrive_in_order_after_a_flush_and_not_before() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut s = CoalescingStream::new(a);
        s.write_all(b"hello ").await.unwrap();
        s.write_all(b"world").await.unwrap();
        let mut got = [0u8; 11];
        let early = tokio::time::timeout(std::time::Duration::from_millis(50), b.read(&mut got)).await;
        assert!(early.is_err(), "nothing reaches the peer before a flush");
        s.flush().await.unwrap();
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello world");
    }

    #[tokio::test]
    async fn a_full_buffer_goes_out_without_a_flush() {
        let (a, mut b) = tokio::io::duplex(4 * BUFFER_LIMIT);
        let mut s = CoalescingStream::new(a);
        let chunk = vec![7u8; BUFFER_LIMIT];
        s.write_all(&chunk).await.unwrap();
        s.write_all(b"x").await.unwrap();
        let mut got = vec![0u8; BUFFER_LIMIT];
        b.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|&x| x == 7));
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"x");
    }
}
