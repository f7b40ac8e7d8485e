//! Request framing checks before hyper parses anything (RFC 9112): an I/O adapter around each
//! accepted connection that follows the HTTP/1.1 request heads through a keep-alive or
//! pipelined stream and refuses the framing that request smuggling is made of: bare LF or CR,
//! Content-Length with Transfer-Encoding, differing Content-Lengths, a Transfer-Encoding other
//! than `chunked`, obs-fold, whitespace before a colon, NUL. hyper itself accepts bare LF and
//! forwards CL+TE requests as chunked, and has no switch to refuse either.
//!
//! The bytes are checked in place, in hyper's own read buffer, as they arrive: nothing is copied
//! except the start of a line split across two reads. An HTTP/2 connection (the prior-knowledge
//! preface) is passed through untouched after its first 24 bytes, and so is everything after
//! the head of an HTTP/1.1 upgrade request without a body (a WebSocket's frames are no request
//! heads); the server closes such a connection after any answer but 101 (`server::conn`).
//!
//! A refusal cuts the stream: the byte that completes the bad line is replaced by NUL, followed
//! by an empty line and then the end of the stream; nothing the client sent after the cut is
//! handed on. No HTTP/1 parser accepts NUL anywhere in a head, so hyper answers its own
//! `400 Bad Request` and closes the connection, after answering the requests before it; the bad
//! request never reaches the service. (The empty line is there because hyper re-parses a
//! partly read head only once it sees one end.) A bad chunk line or trailer cuts a body already
//! being forwarded: hyper then fails that body and closes.

mod scan;

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use scan::{Reason, Refusal, Scanner, H2_PREFACE};

/// Told about each refusal (metrics); never sees the request's bytes.
pub type OnRefusal = Arc<dyn Fn(Reason) + Send + Sync>;

/// An accepted connection whose request framing is checked before hyper reads it.
pub struct Framing<T> {
    io: T,
    scanner: Scanner,
    on_refusal: Option<OnRefusal>,
    /// After a refusal: what is still to be read before the end of the stream.
    after_cut: &'static [u8],
}

/// Follows the NUL at a cut, so hyper parses the head now instead of waiting for more.
const AFTER_CUT: &[u8] = b"\r\n\r\n";

impl<T> Framing<T> {
    /// `max_line` bounds the part of a line kept across reads (the head limit).
    pub fn new(io: T, max_line: usize, on_refusal: Option<OnRefusal>) -> Framing<T> {
        Framing { io, scanner: Scanner::new(max_line), on_refusal, after_cut: AFTER_CUT }
    }
}

/// Append as much of `bytes` as fits; returns the rest.
fn put<'a>(buf: &mut ReadBuf<'_>, bytes: &'a [u8]) -> &'a [u8] {
    let (now, later) = bytes.split_at(bytes.len().min(buf.remaining()));
    buf.put_slice(now);
    later
}

impl<T: AsyncRead + Unpin> AsyncRead for Framing<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.scanner.is_refused() {
            // Nothing the client sent past the cut: the rest of `AFTER_CUT`, then the end.
            this.after_cut = put(buf, this.after_cut);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if let Err(refusal) = this.scanner.scan(&buf.filled()[before..]) {
            let at = before + refusal.at;
            buf.filled_mut()[at] = 0;
            buf.set_filled(at + 1);
            this.after_cut = put(buf, this.after_cut);
            tracing::debug!(reason = refusal.reason.as_str(), "request refused: malformed framing");
            if let Some(on_refusal) = &this.on_refusal {
                on_refusal(refusal.reason);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Framing<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod adapter_tests {
    use std::collections::VecDeque;

    use tokio::io::AsyncReadExt;

    use super::*;

    /// Hands out its chunks one read at a time, as a socket might.
    struct Chunks(VecDeque<&'static [u8]>);

    impl AsyncRead for Chunks {
        fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            if let Some(chunk) = self.0.pop_front() {
                let rest = put(buf, chunk);
                if !rest.is_empty() {
                    self.0.push_front(rest);
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    async fn read_all(chunks: &[&'static [u8]], read_size: usize) -> (Vec<u8>, Vec<Reason>) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let on_refusal: OnRefusal = Arc::new(move |reason| record.lock().unwrap().push(reason));
        let mut framing = Framing::new(Chunks(chunks.iter().copied().collect()), 1024, Some(on_refusal));
        let mut out = Vec::new();
        let mut buf = vec![0u8; read_size];
        loop {
            let n = framing.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let reasons = seen.lock().unwrap().clone();
        (out, reasons)
    }

    /// A refused head reaches the reader cut at the bad byte, NUL in its place, then an empty
    /// line and the end: nothing the client sent after the cut.
    #[tokio::test]
    async fn cut_then_empty_line_then_end() {
        for read_size in [1, 2, 5, 64] {
            let (out, reasons) =
                read_all(&[b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nX: y\nGET /c HTTP/1.1\r\n\r\n"], read_size)
                    .await;
            assert_eq!(out, b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nX: y\0\r\n\r\n", "reads of {read_size}");
            assert_eq!(reasons, [Reason::BareLf]);
        }
    }

    /// Good streams pass unchanged, HTTP/2 included.
    #[tokio::test]
    async fn good_streams_unchanged() {
        let h1: &[&'static [u8]] = &[b"POST / HTTP/1.1\r\nContent-Le", b"ngth: 3\r\n\r\na\nbGET / HTTP/1.1\r\n\r\n"];
        assert_eq!(read_all(h1, 7).await, (h1.concat(), vec![]));
        let h2: &[&'static [u8]] = &[&H2_PREFACE[..10], &H2_PREFACE[10..], b"\0\0\0\x04\0\0\0\0\0\n\n"];
        assert_eq!(read_all(h2, 3).await, (h2.concat(), vec![]));
    }
}
