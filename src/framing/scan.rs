//! The request-framing scanner: follows an HTTP/1.1 byte stream from one request head to the
//! next (RFC 9112), in the same pieces hyper reads it, and says where it must be cut.
//!
//! It keeps O(1) state plus at most one partial line (bounded by `max_line`): a line that spans
//! two reads is the only thing it ever copies. Bodies are skipped by length: Content-Length, or
//! the chunked framing (chunk-size lines, CRLF after each chunk, trailer lines). It must agree
//! with hyper on where every head starts for any stream hyper accepts, so its body rules mirror
//! hyper's own (`proto::h1::role` and `decode`); where hyper would refuse, refusing first is fine.
//! It never panics on any input.

/// RFC 9113 §3.4: the HTTP/2 connection preface, which hyper-util's auto builder looks for.
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Why a request was refused. Labels of `tokengate_framing_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A LF not preceded by CR (RFC 9112 §2.2).
    BareLf,
    /// A CR not followed by LF (RFC 9112 §2.2).
    BareCr,
    /// A NUL byte in the head (RFC 9110 §5.5).
    Nul,
    /// A field line starting with whitespace (RFC 9112 §5.2).
    ObsFold,
    /// Whitespace between a field name and its colon (RFC 9112 §5.1).
    SpaceBeforeColon,
    /// A field line with no name or no colon.
    MalformedField,
    /// A Content-Length that is not one decimal number (RFC 9112 §6.3).
    InvalidContentLength,
    /// Several Content-Length values that differ (RFC 9112 §6.3).
    DifferingContentLengths,
    /// Content-Length and Transfer-Encoding together (RFC 9112 §6.1, §6.3).
    ContentLengthAndTransferEncoding,
    /// A Transfer-Encoding whose final coding is not chunked (RFC 9112 §6.3).
    TransferEncodingNotChunked,
    /// A transfer coding other than a single `chunked` (RFC 9112 §6.1).
    UnsupportedTransferCoding,
    /// Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1).
    TransferEncodingInHttp10,
    /// Chunked framing hyper would refuse too (RFC 9112 §7.1).
    InvalidChunk,
    /// A line longer than the head limit.
    LineTooLong,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BareLf => "bare_lf",
            Reason::BareCr => "bare_cr",
            Reason::Nul => "nul",
            Reason::ObsFold => "obs_fold",
            Reason::SpaceBeforeColon => "space_before_colon",
            Reason::MalformedField => "malformed_field",
            Reason::InvalidContentLength => "invalid_content_length",
            Reason::DifferingContentLengths => "differing_content_lengths",
            Reason::ContentLengthAndTransferEncoding => "content_length_and_transfer_encoding",
            Reason::TransferEncodingNotChunked => "transfer_encoding_not_chunked",
            Reason::UnsupportedTransferCoding => "unsupported_transfer_coding",
            Reason::TransferEncodingInHttp10 => "transfer_encoding_in_http10",
            Reason::InvalidChunk => "invalid_chunk",
            Reason::LineTooLong => "line_too_long",
        }
    }
}

/// Cut the stream at `at` (an index into the slice just scanned): the bytes before it are
/// fine, the byte at `at` completes or contains the refused line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub at: usize,
    pub reason: Reason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Connection start: this many bytes of the HTTP/2 preface matched so far.
    Preface(usize),
    /// HTTP/2 (prior knowledge): not HTTP/1 framing, passed through.
    Http2,
    /// Waiting for a request line (empty lines before it are allowed, RFC 9112 §2.2).
    RequestLine,
    /// Field lines up to the empty line.
    Fields,
    /// Content-Length bytes still to come.
    Body(u64),
    ChunkSize,
    /// Chunk data bytes still to come, then CR, then LF.
    ChunkData(u64),
    ChunkDataCr,
    ChunkDataLf,
    /// Trailer field lines up to the empty line.
    Trailers,
    /// After the head of an HTTP/1.1 upgrade request without a body (`Connection: upgrade` and
    /// `Upgrade`, RFC 9110 §7.8): what follows is the new protocol's once the server answers
    /// 101, so it is passed through. Any other answer closes the connection (the server adds
    /// `Connection: close`, `server::conn`), so no later request goes unchecked.
    Upgrade,
    /// Refused: nothing after the cut is ever looked at.
    Refused(Reason),
}

/// What the current head says about its body.
#[derive(Debug, Default, Clone, Copy)]
struct Head {
    http10: bool,
    http11: bool,
    /// An `Upgrade` field line.
    upgrade: bool,
    /// A `Connection` field listing `upgrade`.
    connection_upgrade: bool,
    content_length: Option<u64>,
    /// Transfer-Encoding field lines.
    te_lines: u32,
    /// The last Transfer-Encoding line's final coding is `chunked`.
    te_final_chunked: bool,
    /// The last Transfer-Encoding line is exactly `chunked`.
    te_only_chunked: bool,
}

#[derive(Debug)]
pub struct Scanner {
    state: State,
    head: Head,
    /// The start of a line the previous read ended in (no LF, NUL or inner CR in it).
    carry: Vec<u8>,
    max_line: usize,
}

/// A carry that grew past this is freed once its line is done.
const KEEP_CARRY: usize = 4096;

impl Scanner {
    /// A scanner for a new connection; lines longer than `max_line` are refused.
    pub fn new(max_line: usize) -> Scanner {
        Scanner { state: State::Preface(0), head: Head::default(), carry: Vec::new(), max_line }
    }

    /// The connection turned out to be HTTP/2: nothing more to inspect.
    pub fn is_http2(&self) -> bool {
        self.state == State::Http2
    }

    /// The last head asked for an upgrade: nothing more to inspect.
    pub fn is_upgrade(&self) -> bool {
        self.state == State::Upgrade
    }

    pub fn is_refused(&self) -> bool {
        matches!(self.state, State::Refused(_))
    }

    /// Scan the next bytes of the stream. After a refusal every later call refuses at 0.
    pub fn scan(&mut self, buf: &[u8]) -> Result<(), Refusal> {
        let mut i = 0;
        while i < buf.len() {
            i = match self.state {
                State::Http2 | State::Upgrade => return Ok(()),
                State::Refused(reason) => return Err(Refusal { at: i, reason }),
                State::Preface(matched) => self.preface(buf, i, matched)?,
                State::Body(left) => {
                    let (skipped, left) = skip(left, buf.len() - i);
                    self.state = if left == 0 { State::RequestLine } else { State::Body(left) };
                    i + skipped
                }
                State::ChunkData(left) => {
                    let (skipped, left) = skip(left, buf.len() - i);
                    self.state = if left == 0 { State::ChunkDataCr } else { State::ChunkData(left) };
                    i + skipped
                }
                // RFC 9112 §7.1: chunk-data is followed by CRLF.
                State::ChunkDataCr if buf[i] == b'\r' => {
                    self.state = State::ChunkDataLf;
                    i + 1
                }
                State::ChunkDataLf if buf[i] == b'\n' => {
                    self.state = State::ChunkSize;
                    i + 1
                }
                State::ChunkDataCr | State::ChunkDataLf => return Err(self.refuse(i, Reason::InvalidChunk)),
                State::RequestLine | State::Fields if self.carry.is_empty() => self.head(buf, i)?,
                State::RequestLine | State::Fields | State::ChunkSize | State::Trailers => self.line(buf, i)?,
            };
        }
        Ok(())
    }

    fn refuse(&mut self, at: usize, reason: Reason) -> Refusal {
        self.state = State::Refused(reason);
        self.carry = Vec::new();
        Refusal { at, reason }
    }

    /// Match the HTTP/2 preface at connection start, exactly as hyper-util's auto builder does:
    /// all 24 bytes → HTTP/2; the first byte that differs → HTTP/1 from the first byte on.
    fn preface(&mut self, buf: &[u8], i: usize, matched: usize) -> Result<usize, Refusal> {
        let want = &H2_PREFACE[matched..];
        let same = want.iter().zip(&buf[i..]).take_while(|(a, b)| a == b).count();
        if same == want.len() {
            self.state = State::Http2;
            return Ok(buf.len());
        }
        if i + same == buf.len() {
            self.state = State::Preface(matched + same);
            return Ok(buf.len());
        }
        self.state = State::RequestLine;
        // Preface bytes matched in earlier reads are HTTP/1 bytes after all: replay them (they
        // are plain CRLF lines, never refused; a refusal would still cut this read at `i`).
        if matched > 0 {
            self.scan(&H2_PREFACE[..matched]).map_err(|r| Refusal { at: i, reason: r.reason })?;
        }
        Ok(i)
    }

    /// The common case, kept tight: a head whose lines arrive whole, CRLF-terminated. Anything
    /// else (a line split across reads, a stray CR or LF) goes to `line`.
    fn head(&mut self, buf: &[u8], mut start: usize) -> Result<usize, Refusal> {
        let mut fields = self.state == State::Fields;
        loop {
            let rest = &buf[start..];
            let Some(q) = line_end(rest) else { return self.line(buf, start) };
            if rest[q] != b'\r' || rest.get(q + 1) != Some(&b'\n') {
                return self.line(buf, start);
            }
            let lf = start + q + 1;
            let line = &rest[..q];
            start = lf + 1;
            let done = if line.len() > self.max_line {
                Err(Reason::LineTooLong)
            } else if !fields {
                self.request_line(line);
                fields = !line.is_empty();
                Ok(())
            } else if line.is_empty() {
                match self.end_of_head() {
                    Ok(()) => return Ok(start),
                    Err(reason) => Err(reason),
                }
            } else {
                self.field(line, true)
            };
            if let Err(reason) = done {
                return Err(self.refuse(lf, reason));
            }
        }
    }

    /// Scan up to the end of the line that starts at `start` (or keep its start for the next
    /// read). Returns where scanning continues.
    fn line(&mut self, buf: &[u8], start: usize) -> Result<usize, Refusal> {
        let rest = &buf[start..];
        if self.carry.last() == Some(&b'\r') {
            // The previous read ended between CR and LF.
            if rest[0] != b'\n' {
                return Err(self.refuse(start, Reason::BareCr));
            }
            let mut line = std::mem::take(&mut self.carry);
            line.pop();
            let done = self.complete(&line, start);
            self.reuse_carry(line);
            return done.map(|()| start + 1);
        }
        let Some(q) = line_end(rest) else {
            return self.stash(rest, buf.len() - 1).map(|()| buf.len());
        };
        let at = start + q;
        match rest[q] {
            0 => Err(self.refuse(at, Reason::Nul)),
            // RFC 9112 §2.2: a server MUST NOT accept a bare LF as a line terminator here; a
            // sender MUST NOT send a bare CR. Both ends of a line are where parsers disagree.
            b'\n' => Err(self.refuse(at, Reason::BareLf)),
            _ if q + 1 == rest.len() => self.stash(rest, at).map(|()| buf.len()),
            // Cut at the byte after the CR, wherever the read boundary fell.
            _ if rest[q + 1] != b'\n' => Err(self.refuse(at + 1, Reason::BareCr)),
            _ if self.carry.is_empty() => self.complete(&rest[..q], at + 1).map(|()| at + 2),
            _ => {
                let mut line = std::mem::take(&mut self.carry);
                line.extend_from_slice(&rest[..q]);
                let done = self.complete(&line, at + 1);
                self.reuse_carry(line);
                done.map(|()| at + 2)
            }
        }
    }

    /// Keep the start of a line for the next read; `last` is where to cut if it is too long.
    fn stash(&mut self, part: &[u8], last: usize) -> Result<(), Refusal> {
        if self.carry.len() + part.len() > self.max_line {
            return Err(self.refuse(last, Reason::LineTooLong));
        }
        self.carry.extend_from_slice(part);
        Ok(())
    }

    fn reuse_carry(&mut self, mut line: Vec<u8>) {
        if !self.is_refused() && line.capacity() <= KEEP_CARRY {
            line.clear();
            self.carry = line;
        }
    }

    /// A whole line (without its CRLF) whose LF is at `lf`.
    fn complete(&mut self, line: &[u8], lf: usize) -> Result<(), Refusal> {
        if line.len() > self.max_line {
            return Err(self.refuse(lf, Reason::LineTooLong));
        }
        let refused = match self.state {
            State::RequestLine => {
                self.request_line(line);
                None
            }
            State::Fields if line.is_empty() => self.end_of_head().err(),
            State::Fields => self.field(line, true).err(),
            State::ChunkSize => match chunk_size(line) {
                Some(0) => {
                    self.state = State::Trailers;
                    None
                }
                Some(size) => {
                    self.state = State::ChunkData(size);
                    None
                }
                None => Some(Reason::InvalidChunk),
            },
            State::Trailers if line.is_empty() => {
                self.state = State::RequestLine;
                None
            }
            State::Trailers => self.field(line, false).err(),
            _ => None,
        };
        match refused {
            Some(reason) => Err(self.refuse(lf, reason)),
            None => Ok(()),
        }
    }

    /// RFC 9112 §2.2: empty lines before a request line are ignored.
    fn request_line(&mut self, line: &[u8]) {
        if !line.is_empty() {
            let http10 = line.ends_with(b" HTTP/1.0");
            self.head = Head { http10, http11: !http10 && line.ends_with(b" HTTP/1.1"), ..Head::default() };
            self.state = State::Fields;
        }
    }

    /// One field line of a head (`framing`) or of a chunked body's trailer section.
    #[inline(always)]
    fn field(&mut self, line: &[u8], framing: bool) -> Result<(), Reason> {
        // RFC 9112 §5.2: a server MUST reject obs-fold (or replace it; we reject).
        if matches!(line[0], b' ' | b'\t') {
            return Err(Reason::ObsFold);
        }
        let colon = find_colon(line).filter(|&c| c > 0).ok_or(Reason::MalformedField)?;
        // RFC 9112 §5.1: a server MUST reject whitespace between field name and colon with 400.
        if matches!(line[colon - 1], b' ' | b'\t') {
            return Err(Reason::SpaceBeforeColon);
        }
        if framing && matches!(colon, 7 | 10 | 14 | 17) {
            self.framing_field(&line[..colon], line[colon + 1..].trim_ascii())?;
        }
        Ok(())
    }

    /// Content-Length and Transfer-Encoding: what the body's length depends on.
    fn framing_field(&mut self, name: &[u8], value: &[u8]) -> Result<(), Reason> {
        if name.len() == 14 && name.eq_ignore_ascii_case(b"content-length") {
            let length = decimal(value).ok_or(Reason::InvalidContentLength)?;
            // RFC 9112 §6.3 ¶5: differing values are unrecoverable framing. hyper takes no
            // comma list either, so "5, 5" is refused as invalid.
            if self.head.content_length.is_some_and(|previous| previous != length) {
                return Err(Reason::DifferingContentLengths);
            }
            self.head.content_length = Some(length);
        } else if name.len() == 17 && name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value.rsplit(|&b| b == b',').next().unwrap_or_default().trim_ascii();
            self.head.te_lines = self.head.te_lines.saturating_add(1);
            self.head.te_final_chunked = last.eq_ignore_ascii_case(b"chunked");
            self.head.te_only_chunked = value.eq_ignore_ascii_case(b"chunked");
        } else if name.len() == 7 && name.eq_ignore_ascii_case(b"upgrade") {
            self.head.upgrade = true;
        } else if name.len() == 10 && name.eq_ignore_ascii_case(b"connection") {
            let upgrade = |option: &[u8]| option.trim_ascii().eq_ignore_ascii_case(b"upgrade");
            self.head.connection_upgrade |= value.split(|&b| b == b',').any(upgrade);
        }
        Ok(())
    }

    /// The empty line: decide how long the body is, or refuse the request.
    fn end_of_head(&mut self) -> Result<(), Reason> {
        let head = self.head;
        if head.te_lines > 0 {
            // RFC 9112 §6.1: CL with TE "ought to be handled as an error"; it is what request
            // smuggling is made of, so the gateway refuses it rather than guess.
            if head.content_length.is_some() {
                return Err(Reason::ContentLengthAndTransferEncoding);
            }
            // RFC 9112 §6.1: TE in HTTP/1.0 MUST be treated as faulty framing.
            if head.http10 {
                return Err(Reason::TransferEncodingInHttp10);
            }
            // RFC 9112 §6.3 ¶4: final coding not chunked → 400 and close (MUST).
            if !head.te_final_chunked {
                return Err(Reason::TransferEncodingNotChunked);
            }
            // RFC 9112 §6.1: a coding the gateway does not implement (it would forward the
            // coded bytes as if they were plain) and chunked applied twice (§7) are refused.
            if head.te_lines > 1 || !head.te_only_chunked {
                return Err(Reason::UnsupportedTransferCoding);
            }
            self.state = State::ChunkSize;
        } else {
            self.state = match head.content_length {
                Some(length) if length > 0 => State::Body(length),
                _ if head.http11 && head.upgrade && head.connection_upgrade => State::Upgrade,
                _ => State::RequestLine,
            };
        }
        Ok(())
    }
}

/// The first LF, CR or NUL: where the line ends, or what is wrong with it. memchr's free
/// function finds its CPU's searcher and builds its needles on every call, a fifth of the
/// scan's cost on short header lines; here the searcher is built once.
#[cfg(target_arch = "x86_64")]
fn line_end(haystack: &[u8]) -> Option<usize> {
    use memchr::arch::x86_64::avx2::memchr::Three;
    static AVX2: std::sync::OnceLock<Option<Three>> = std::sync::OnceLock::new();
    match AVX2.get_or_init(|| Three::new(b'\n', b'\r', 0)) {
        Some(avx2) => avx2.find(haystack),
        None => memchr::memchr3(b'\n', b'\r', 0, haystack),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn line_end(haystack: &[u8]) -> Option<usize> {
    memchr::memchr3(b'\n', b'\r', 0, haystack)
}

/// The first `:` in `line`, eight bytes at a time: the colon ends a name that is usually under
/// 16 bytes, too short for a vector search to pay off, long enough for a byte loop to cost.
fn find_colon(line: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut words = line.chunks_exact(8);
    for (k, word) in (&mut words).enumerate() {
        let word: [u8; 8] = word.try_into().unwrap_or_default();
        let x = u64::from_le_bytes(word) ^ (ONES * u64::from(b':'));
        // The lowest high bit set marks the first zero byte exactly (borrows only run upwards).
        let zero = x.wrapping_sub(ONES) & !x & HIGHS;
        if zero != 0 {
            return Some(k * 8 + zero.trailing_zeros() as usize / 8);
        }
    }
    let tail = words.remainder();
    tail.iter().position(|&b| b == b':').map(|p| line.len() - tail.len() + p)
}

/// Skip up to `left` of the `available` bytes: (skipped, still left).
fn skip(left: u64, available: usize) -> (usize, u64) {
    let skipped = usize::try_from(left).map_or(available, |left| left.min(available));
    (skipped, left - skipped as u64)
}

/// 1*DIGIT as hyper reads it: no sign, no comma list, no overflow.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| match b {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

/// RFC 9112 §7.1 chunk-size line as hyper reads it: 1*HEXDIG, optional SP/HTAB, optional
/// `;` chunk extensions (anything but CR/LF, which the caller already excluded).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return None;
    }
    let size = line[..digits].iter().try_fold(0u64, |n, &b| {
        let digit = (b as char).to_digit(16)?;
        n.checked_mul(16)?.checked_add(u64::from(digit))
    })?;
    let rest = &line[digits..];
    let ext = rest.iter().position(|&b| b != b' ' && b != b'\t').map_or(&[][..], |p| &rest[p..]);
    (ext.is_empty() || ext[0] == b';').then_some(size)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
