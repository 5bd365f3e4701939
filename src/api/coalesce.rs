//! Writes coalesced across the responses of one HTTP/2 connection: flush
//! once per turn of the scheduler, not once per message.
//!
//! h2 writes the frames it has and flushes every time its connection task
//! runs. On a busy server that task runs right after each stream's task
//! hands it a response (tokio runs a task its waker just woke next), so
//! every response costs its own `writev` (and, under TLS, its own records).
//! [`CoalescedWrites`] sits between h2 and the socket: it keeps what h2
//! writes, and the first flush of a batch yields instead (the task wakes
//! itself and goes to the back of the run queue). The other tasks that are
//! ready run meanwhile and queue their responses on the same connection;
//! the second flush writes them all at once. When nothing else is ready
//! the yield costs one more poll of the connection task.
//!
//! It pays where a write is dear: under TLS each flush is its own records,
//! sealed, then a `writev`. The broker's TLS connections use it (about 0.6
//! `writev` per mint instead of 1.85). On the agent's Unix socket, without
//! TLS, the batches made a closed-loop exchange lock-step and cost 8-10 %
//! of its rate, so the agent does without (BENCHMARKS.md).
//!
//! Bounded: at most [`MAX_BUFFERED`] bytes are held; a write beyond that
//! first drains what is held, and a write as large as the bound goes
//! through unbuffered. Every flush is eventually real: a yielded flush has
//! woken its task, and the next one writes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes held between flushes.
pub const MAX_BUFFERED: usize = 64 * 1024;

/// The most buffer an idle connection keeps: a larger one, grown by a big
/// batch, is freed once written (10,000 connections keep at most 160 MiB).
const RETAINED: usize = 16 * 1024;

/// A stream whose writes are held until a flush, and whose flushes wait
/// one turn of the scheduler (see the [module](self)).
#[derive(Debug)]
pub struct CoalescedWrites<S> {
    inner: S,
    held: Vec<u8>,
    /// How much of `held` the inner stream has taken.
    written: usize,
    /// A flush yielded once already: the next one writes.
    yielded: bool,
}

impl<S> CoalescedWrites<S> {
    /// Coalesces the writes to `inner`.
    pub fn new(inner: S) -> Self {
        CoalescedWrites {
            inner,
            held: Vec::new(),
            written: 0,
            yielded: false,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Bytes written and not yet handed to the wrapped stream.
    pub fn held(&self) -> usize {
        self.held.len() - self.written
    }
}

impl<S: AsyncWrite + Unpin> CoalescedWrites<S> {
    /// Hands everything held to the inner stream (without flushing it).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.held.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        if self.held.capacity() > RETAINED {
            self.held = Vec::new();
        } else {
            self.held.clear();
        }
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Makes room for `len` more bytes: drains when they would not fit.
    /// `Ready(false)`: they are too many to hold at all.
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<bool>> {
        if self.held.len() + len > MAX_BUFFERED {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(len < MAX_BUFFERED))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CoalescedWrites<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CoalescedWrites<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !ready!(this.poll_room(cx, buf.len()))? {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        this.held.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len = bufs.iter().map(|b| b.len()).sum();
        if !ready!(this.poll_room(cx, len))? {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        for buf in bufs {
            this.held.extend_from_slice(buf);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        // Every slice is taken in one call.
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held() > 0 {
            if !this.yielded {
                // Let the other ready tasks add to this batch first.
                this.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(this.poll_drain(cx))?;
        }
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use super::*;

    /// Records each write it takes; takes at most `limit` bytes a call and
    /// is not ready while `blocked`.
    #[derive(Debug, Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        shut: bool,
        blocked: bool,
        limit: Option<usize>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.blocked {
                return Poll::Pending;
            }
            let n = self.limit.map_or(buf.len(), |limit| limit.min(buf.len()));
            self.get_mut().writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().shut = true;
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn write(io: &mut CoalescedWrites<Recorder>, cx: &mut Context<'_>, bytes: &[u8]) -> usize {
        match Pin::new(io).poll_write(cx, bytes) {
            Poll::Ready(Ok(n)) => n,
            other => panic!("write: {other:?}"),
        }
    }

    fn flush(io: &mut CoalescedWrites<Recorder>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(io).poll_flush(cx)
    }

    #[test]
    fn the_responses_of_one_turn_leave_in_one_write() {
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut io = CoalescedWrites::new(Recorder::default());
        assert_eq!(write(&mut io, &mut cx, b"first "), 6);
        // The first flush yields, and wakes its task so that it runs again.
        assert!(flush(&mut io, &mut cx).is_pending());
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
        assert!(io.get_ref().writes.is_empty());
        // Meanwhile another response is written; the second flush writes both.
        let slices = [io::IoSlice::new(b"second "), io::IoSlice::new(b"third")];
        assert!(matches!(
            Pin::new(&mut io).poll_write_vectored(&mut cx, &slices),
            Poll::Ready(Ok(12))
        ));
        assert!(matches!(flush(&mut io, &mut cx), Poll::Ready(Ok(()))));
        assert_eq!(io.get_ref().writes, vec![b"first second third".to_vec()]);
        assert_eq!(io.get_ref().flushes, 1);
        assert_eq!(io.held(), 0);
        // A small one is, for the next batch.
        assert!(io.held.capacity() > 0);
        // Nothing held: a flush goes straight through, without a yield.
        assert!(matches!(flush(&mut io, &mut cx), Poll::Ready(Ok(()))));
        assert_eq!(io.get_ref().flushes, 2);
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
        // The next batch yields again.
        write(&mut io, &mut cx, b"fourth");
        assert!(flush(&mut io, &mut cx).is_pending());
        assert!(matches!(flush(&mut io, &mut cx), Poll::Ready(Ok(()))));
        assert_eq!(io.get_ref().writes.len(), 2);
    }

    #[test]
    fn without_it_every_response_is_its_own_write() {
        // The control: the same writes straight to the stream.
        let mut cx = Context::from_waker(Waker::noop());
        let mut io = Recorder::default();
        for bytes in [&b"first "[..], b"second ", b"third"] {
            assert!(matches!(
                Pin::new(&mut io).poll_write(&mut cx, bytes),
                Poll::Ready(Ok(_))
            ));
            assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        }
        assert_eq!(io.writes.len(), 3);
    }

    #[test]
    fn what_is_held_stays_bounded() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut io = CoalescedWrites::new(Recorder::default());
        let chunk = vec![7u8; MAX_BUFFERED / 2];
        write(&mut io, &mut cx, &chunk);
        write(&mut io, &mut cx, &chunk);
        assert!(io.get_ref().writes.is_empty());
        assert_eq!(io.held(), MAX_BUFFERED);
        // One more byte would pass the bound: what is held goes first.
        write(&mut io, &mut cx, b"x");
        assert_eq!(io.get_ref().writes.len(), 1);
        assert_eq!(io.get_ref().writes[0].len(), MAX_BUFFERED);
        assert_eq!(io.held(), 1);
        // The buffer that big a batch grew is not kept.
        assert!(io.held.capacity() <= RETAINED, "{}", io.held.capacity());
        // A write as large as the bound is not held: it follows what was.
        let large = vec![9u8; MAX_BUFFERED];
        assert_eq!(write(&mut io, &mut cx, &large), MAX_BUFFERED);
        let sizes: Vec<usize> = io.get_ref().writes.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![MAX_BUFFERED, 1, MAX_BUFFERED]);
        assert_eq!(io.held(), 0);
    }

    #[test]
    fn a_slow_stream_takes_it_in_parts_and_a_blocked_one_is_waited_for() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut io = CoalescedWrites::new(Recorder {
            limit: Some(4),
            blocked: true,
            ..Recorder::default()
        });
        write(&mut io, &mut cx, b"0123456789");
        assert!(flush(&mut io, &mut cx).is_pending());
        // Blocked: the real flush waits too, holding everything.
        assert!(flush(&mut io, &mut cx).is_pending());
        assert_eq!(io.held(), 10);
        io.inner.blocked = false;
        assert!(matches!(flush(&mut io, &mut cx), Poll::Ready(Ok(()))));
        assert_eq!(io.get_ref().writes.concat(), b"0123456789");
        assert_eq!(io.get_ref().writes.len(), 3);
    }

    #[test]
    fn shutdown_writes_what_is_held_first() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut io = CoalescedWrites::new(Recorder::default());
        write(&mut io, &mut cx, b"goaway");
        assert!(matches!(
            Pin::new(&mut io).poll_shutdown(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(io.get_ref().writes, vec![b"goaway".to_vec()]);
        assert!(io.get_ref().shut);
    }
}
