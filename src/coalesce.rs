//! Small vectored writes as one plain `write`.
//!
//! hyper queues a message's head and body as separate buffers and flushes them with `writev`,
//! which sends a large body without copying it. For the small messages that make up most
//! traffic (a head, or a head and a short body), copying them into one reused buffer and calling
//! `write` costs less than `writev` does. Large writes stay vectored.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Vectored writes up to this many bytes in total are coalesced.
const COALESCE_BYTES: usize = 4096;

thread_local! {
    /// Reused by every write on the thread: a write never yields while it holds the buffer.
    static JOINED: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(COALESCE_BYTES));
}

/// An I/O stream whose small vectored writes are coalesced into one buffer.
#[derive(Debug)]
pub struct Coalesce<T>(pub T);

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match bufs {
            [] => Poll::Ready(Ok(0)),
            [one] => Pin::new(&mut self.0).poll_write(cx, one),
            _ => {
                let total: usize = bufs.iter().map(|b| b.len()).sum();
                if total > COALESCE_BYTES {
                    return Pin::new(&mut self.0).poll_write_vectored(cx, bufs);
                }
                JOINED.with(|cell| match cell.try_borrow_mut() {
                    Ok(mut joined) => {
                        joined.clear();
                        for b in bufs {
                            joined.extend_from_slice(b);
                        }
                        // A partial write reports the bytes written, as writev would.
                        Pin::new(&mut self.0).poll_write(cx, &joined)
                    }
                    // Only when a Coalesce sits inside another's write: no copy then.
                    Err(_) => Pin::new(&mut self.0).poll_write_vectored(cx, bufs),
                })
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Records each call; accepts at most `limit` bytes per call.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        vectored_calls: usize,
        limit: usize,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.limit);
            self.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.vectored_calls += 1;
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let n = all.len().min(self.limit);
            self.writes.push(all[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn recorder(limit: usize) -> Coalesce<Recorder> {
        Coalesce(Recorder { limit, ..Recorder::default() })
    }

    /// A head and a short body leave as one plain write, in order.
    #[tokio::test]
    async fn small_writes_are_joined() {
        let mut io = recorder(usize::MAX);
        let n = io.write_vectored(&[IoSlice::new(b"HTTP/1.1 200 OK\r\n\r\n"), IoSlice::new(b"ok")]).await.unwrap();
        assert_eq!(n, 21);
        assert_eq!(io.0.writes, [b"HTTP/1.1 200 OK\r\n\r\nok".to_vec()]);
        assert_eq!(io.0.vectored_calls, 0);
    }

    /// Large writes stay vectored: the body is not copied.
    #[tokio::test]
    async fn large_writes_stay_vectored() {
        let mut io = recorder(usize::MAX);
        let body = vec![7u8; COALESCE_BYTES];
        let n = io.write_vectored(&[IoSlice::new(b"head"), IoSlice::new(&body)]).await.unwrap();
        assert_eq!(n, COALESCE_BYTES + 4);
        assert_eq!(io.0.vectored_calls, 1);
    }

    /// Splits every plain write into a two-buffer vectored write, as a TLS layer may.
    struct Vectorize<T>(T);

    impl<T: AsyncWrite + Unpin> AsyncWrite for Vectorize<T> {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            let (a, b) = buf.split_at(1);
            Pin::new(&mut self.0).poll_write_vectored(cx, &[IoSlice::new(a), IoSlice::new(b)])
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    /// A Coalesce inside another's write finds the shared buffer taken and writes vectored
    /// instead of panicking on the second borrow.
    #[tokio::test]
    async fn nested_coalesce_writes_vectored() {
        let mut io = Coalesce(Vectorize(recorder(usize::MAX)));
        let n = io.write_vectored(&[IoSlice::new(b"ab"), IoSlice::new(b"cd")]).await.unwrap();
        assert_eq!(n, 4);
        let inner = &io.0 .0 .0;
        assert_eq!((inner.writes.as_slice(), inner.vectored_calls), ([b"abcd".to_vec()].as_slice(), 1));
    }

    /// A short write reports what was written, so the caller resends the rest.
    #[tokio::test]
    async fn partial_write_reports_what_was_written() {
        let mut io = recorder(3);
        let n = io.write_vectored(&[IoSlice::new(b"ab"), IoSlice::new(b"cd")]).await.unwrap();
        assert_eq!(n, 3);
        assert_eq!(io.0.writes, [b"abc".to_vec()]);
    }
}
