//! Decompression and the decompressed-bytes cap.
//!
//! [`decoder`] turns the raw bytes of an object into the *decoded* stream the record readers consume: gzip is
//! inflated as a stream (several concatenated members are one file, as `gzip` itself treats them), and the
//! number of decoded bytes is capped at [`Limits::max_decompressed_bytes`] so a gzip bomb fails the file after
//! a bounded amount of work instead of running for hours. The cap also applies to uncompressed input (it costs
//! one addition per read).
//!
//! The errors the decoding layers produce travel inside [`std::io::Error`] (the readers only see a
//! [`BufRead`]); `classify_io` turns them back into the right [`ReadError`] variant.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use flate2::bufread::MultiGzDecoder;

use super::ReadError;
use crate::{Compression, Limits};

/// Capacity of the buffer between the decoder and the record readers.
pub const DECODED_BUFFER_BYTES: usize = 256 * 1024;

/// Capacity of the buffer between the raw (compressed) bytes and the gzip decoder.
const COMPRESSED_BUFFER_BYTES: usize = 64 * 1024;

/// Wraps `input` (raw object bytes) into the decoded byte stream for a reader.
///
/// * `Compression::Gzip`: inflated with [`MultiGzDecoder`] (streaming, bounded buffers).
/// * Decoded bytes past `limits.max_decompressed_bytes` make reads fail; readers report
///   [`ReadError::DecompressedTooLarge`].
/// * A corrupt or truncated gzip stream makes reads fail; readers report [`ReadError::Gzip`].
///
/// The result is buffered ([`DECODED_BUFFER_BYTES`]).
pub fn decoder(
    input: Box<dyn Read + Send>,
    compression: Compression,
    limits: &Limits,
) -> Box<dyn BufRead + Send> {
    let limit = limits.max_decompressed_bytes;
    match compression {
        Compression::None => Box::new(BufReader::with_capacity(
            DECODED_BUFFER_BYTES,
            Capped::new(input, limit, false),
        )),
        Compression::Gzip => {
            let compressed = BufReader::with_capacity(COMPRESSED_BUFFER_BYTES, SourceReader(input));
            Box::new(BufReader::with_capacity(
                DECODED_BUFFER_BYTES,
                Capped::new(MultiGzDecoder::new(compressed), limit, true),
            ))
        }
    }
}

/// Counts the raw bytes read through it into a shared counter, for progress reporting (place it under
/// [`decoder`] to count compressed bytes).
#[derive(Debug)]
pub struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R> CountingReader<R> {
    /// Wraps `inner`; the returned counter grows as bytes are read (relaxed ordering: it is a progress hint).
    pub fn new(inner: R) -> (Self, Arc<AtomicU64>) {
        let count = Arc::new(AtomicU64::new(0));
        (
            Self {
                inner,
                count: Arc::clone(&count),
            },
            count,
        )
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Marker carried inside an `io::Error`: the decoded stream passed the cap.
#[derive(Debug)]
struct TooLarge {
    limit: u64,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "file expands past the limit of {} decompressed bytes",
            self.limit
        )
    }
}

impl std::error::Error for TooLarge {}

/// Marker carried inside an `io::Error`: the gzip decoder rejected its input.
#[derive(Debug)]
struct GzipFailure {
    decoded_bytes: u64,
    source: io::Error,
}

impl std::fmt::Display for GzipFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid gzip data after {} decoded bytes: {}",
            self.decoded_bytes, self.source
        )
    }
}

impl std::error::Error for GzipFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Marker carried inside an `io::Error`: reading the raw bytes failed (so the gzip decoder is not to blame).
#[derive(Debug)]
struct SourceFailure(io::Error);

impl std::fmt::Display for SourceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SourceFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Tags the raw input's errors so that errors coming out of the gzip decoder can be told apart.
struct SourceReader(Box<dyn Read + Send>);

impl Read for SourceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| match e.kind() {
            // Retried by the callers; must keep its kind.
            io::ErrorKind::Interrupted => e,
            kind => io::Error::new(kind, SourceFailure(e)),
        })
    }
}

/// Enforces the decompressed-bytes cap, and tags decoder errors as gzip errors.
struct Capped<R> {
    inner: R,
    limit: u64,
    decoded: u64,
    gzip: bool,
}

impl<R> Capped<R> {
    fn new(inner: R, limit: u64, gzip: bool) -> Self {
        Self {
            inner,
            limit,
            decoded: 0,
            gzip,
        }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.decoded > self.limit {
            return Err(io::Error::other(TooLarge { limit: self.limit }));
        }
        match self.inner.read(buf) {
            Ok(n) => {
                self.decoded += n as u64;
                if self.decoded > self.limit {
                    // Refuse the whole read: the readers never see a byte past the cap.
                    return Err(io::Error::other(TooLarge { limit: self.limit }));
                }
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) if self.gzip && !is_marker::<SourceFailure>(&e) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                GzipFailure {
                    decoded_bytes: self.decoded,
                    source: e,
                },
            )),
            Err(e) => Err(e),
        }
    }
}

fn is_marker<T: std::error::Error + 'static>(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<T>())
}

/// Turns an I/O error from a [`decoder`] stream into the matching [`ReadError`]; `byte` is the decoded offset
/// the reader had reached.
pub(crate) fn classify_io(err: io::Error, byte: u64) -> ReadError {
    if let Some(too_large) = err.get_ref().and_then(|e| e.downcast_ref::<TooLarge>()) {
        return ReadError::DecompressedTooLarge {
            limit: too_large.limit,
        };
    }
    let kind = err.kind();
    if is_marker::<GzipFailure>(&err) {
        if let Some(Ok(gz)) = err.into_inner().map(|e| e.downcast::<GzipFailure>()) {
            return ReadError::Gzip {
                decoded_bytes: gz.decoded_bytes,
                source: gz.source,
            };
        }
        return ReadError::Io {
            byte,
            source: io::Error::new(kind, "gzip error"),
        };
    }
    if is_marker::<SourceFailure>(&err) {
        if let Some(Ok(src)) = err.into_inner().map(|e| e.downcast::<SourceFailure>()) {
            return ReadError::Io {
                byte,
                source: src.0,
            };
        }
        return ReadError::Io {
            byte,
            source: io::Error::new(kind, "read error"),
        };
    }
    ReadError::Io { byte, source: err }
}

/// Size of the readers' own input window.
///
/// At least the [`decoder`]'s buffer, so reads from it bypass its buffer instead of copying through it.
pub(crate) const INPUT_CHUNK_BYTES: usize = DECODED_BUFFER_BYTES;

/// The readers' view of their input: a window of decoded bytes and the stream offset of its first byte.
///
/// The readers keep their own chunk (rather than calling `fill_buf`/`consume` on the boxed `BufRead`) so the
/// per-record hot path makes no dynamic calls; a chunk is refilled only when it is used up.
pub(crate) struct Input {
    inner: Box<dyn BufRead + Send>,
    buf: Box<[u8]>,
    lo: usize,
    hi: usize,
    offset: u64,
    eof: bool,
}

impl Input {
    /// Reads `inner`, whose first byte is at `offset` in the decoded stream.
    pub(crate) fn new(inner: Box<dyn BufRead + Send>, offset: u64) -> Self {
        Self::with_capacity(inner, offset, INPUT_CHUNK_BYTES)
    }

    pub(crate) fn with_capacity(
        inner: Box<dyn BufRead + Send>,
        offset: u64,
        capacity: usize,
    ) -> Self {
        Self {
            inner,
            buf: vec![0; capacity.max(16)].into_boxed_slice(),
            lo: 0,
            hi: 0,
            offset,
            eof: false,
        }
    }

    /// The buffered bytes not consumed yet.
    #[inline]
    pub(crate) fn available(&self) -> &[u8] {
        &self.buf[self.lo..self.hi]
    }

    /// Decoded-stream offset of the first available byte.
    #[inline]
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Index in the window's buffer of the first available byte (for [`Input::buffer`]).
    #[inline]
    pub(crate) fn buffer_pos(&self) -> usize {
        self.lo
    }

    /// Bytes of the buffer by index: valid for bytes consumed since the last refill.
    #[inline]
    pub(crate) fn buffer(&self, start: usize, end: usize) -> &[u8] {
        &self.buf[start..end]
    }

    /// Bytes of the buffer from index `start` to its end: those consumed since the last refill, those
    /// available, and stale bytes of earlier chunks past them (initialised, meaningless).
    #[inline]
    pub(crate) fn buffer_from(&self, start: usize) -> &[u8] {
        self.buf.get(start..).unwrap_or_default()
    }

    /// Marks `n` available bytes as used.
    #[inline]
    pub(crate) fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.hi - self.lo);
        self.lo += n;
        self.offset += n as u64;
    }

    /// Makes sure some bytes are available; `Ok(false)` at the end of the input.
    #[inline]
    pub(crate) fn fill(&mut self) -> Result<bool, ReadError> {
        if self.lo < self.hi {
            return Ok(true);
        }
        self.refill()
    }

    #[cold]
    fn refill(&mut self) -> Result<bool, ReadError> {
        self.lo = 0;
        self.hi = 0;
        while !self.eof {
            match self.inner.read(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.hi = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(classify_io(e, self.offset)),
            }
        }
        Ok(false)
    }

    /// Consumes a UTF-8 byte order mark at the current position, if there is one (even when the input arrives
    /// one byte at a time). Returns its length (0 or 3).
    pub(crate) fn strip_bom(&mut self) -> Result<u64, ReadError> {
        const BOM: &[u8] = b"\xEF\xBB\xBF";
        // Gather up to 3 bytes at the front of the window.
        while self.hi - self.lo < BOM.len() && !self.eof {
            if self.lo > 0 {
                self.buf.copy_within(self.lo..self.hi, 0);
                self.hi -= self.lo;
                self.lo = 0;
            }
            match self.inner.read(&mut self.buf[self.hi..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.hi += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(classify_io(e, self.offset)),
            }
        }
        if self.available().starts_with(BOM) {
            self.consume(BOM.len());
            Ok(BOM.len() as u64)
        } else {
            Ok(0)
        }
    }

    /// Capacity of the window (for tests that check memory stays bounded).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.len()
    }
}

/// Whitespace as JSON defines it.
#[inline]
pub(crate) fn is_json_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Counts `\n` bytes.
#[inline]
pub(crate) fn count_newlines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

/// Helpers for the readers' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::io::{self, BufRead, BufReader, Cursor, Read};

    /// `prefix`, then `len` copies of `byte`, then `suffix`, produced without allocating them.
    pub(crate) fn synthetic(
        prefix: &[u8],
        byte: u8,
        len: u64,
        suffix: &[u8],
    ) -> Box<dyn BufRead + Send> {
        let body = Repeat {
            block: vec![byte; 64 * 1024],
            remaining: len,
        };
        let chained = Cursor::new(prefix.to_vec())
            .chain(body)
            .chain(Cursor::new(suffix.to_vec()));
        Box::new(BufReader::with_capacity(
            super::DECODED_BUFFER_BYTES,
            chained,
        ))
    }

    struct Repeat {
        block: Vec<u8>,
        remaining: u64,
    }

    impl Read for Repeat {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf
                .len()
                .min(self.block.len())
                .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
            // `copy_from_slice` is a memcpy even in debug builds.
            buf[..n].copy_from_slice(&self.block[..n]);
            self.remaining -= n as u64;
            Ok(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use flate2::write::GzEncoder;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).expect("in-memory write");
        enc.finish().expect("in-memory write")
    }

    fn read_all(mut r: Box<dyn BufRead + Send>) -> Result<Vec<u8>, ReadError> {
        let mut out = Vec::new();
        r.read_to_end(&mut out).map_err(|e| classify_io(e, 0))?;
        Ok(out)
    }

    #[test]
    fn plain_input_passes_through_under_the_cap() -> Result<(), ReadError> {
        let limits = Limits {
            max_decompressed_bytes: 5,
            ..Limits::default()
        };
        let out = read_all(decoder(
            Box::new(Cursor::new(b"hello".to_vec())),
            Compression::None,
            &limits,
        ))?;
        assert_eq!(out, b"hello");
        Ok(())
    }

    #[test]
    fn plain_input_past_the_cap_is_decompressed_too_large() {
        let limits = Limits {
            max_decompressed_bytes: 4,
            ..Limits::default()
        };
        let got = read_all(decoder(
            Box::new(Cursor::new(b"hello".to_vec())),
            Compression::None,
            &limits,
        ));
        assert!(
            matches!(got, Err(ReadError::DecompressedTooLarge { limit: 4 })),
            "{got:?}"
        );
    }

    #[test]
    fn concatenated_gzip_members_decode_fully() -> Result<(), ReadError> {
        let mut data = gzip(b"a,b\n1,2\n");
        data.extend(gzip(b"3,4\n"));
        let out = read_all(decoder(
            Box::new(Cursor::new(data)),
            Compression::Gzip,
            &Limits::default(),
        ))?;
        assert_eq!(out, b"a,b\n1,2\n3,4\n");
        Ok(())
    }

    #[test]
    fn corrupt_gzip_is_gzip_error() {
        let mut data = gzip(&b"some text that compresses ".repeat(100));
        let mid = data.len() / 2;
        data[mid] ^= 0xFF;
        data[mid + 1] ^= 0x55;
        let got = read_all(decoder(
            Box::new(Cursor::new(data)),
            Compression::Gzip,
            &Limits::default(),
        ));
        assert!(matches!(got, Err(ReadError::Gzip { .. })), "{got:?}");
    }

    #[test]
    fn source_errors_under_gzip_stay_io_errors() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "reset by peer",
                ))
            }
        }
        let got = read_all(decoder(
            Box::new(Failing),
            Compression::Gzip,
            &Limits::default(),
        ));
        match got {
            Err(ReadError::Io { source, .. }) => {
                assert_eq!(source.kind(), io::ErrorKind::ConnectionReset)
            }
            other => panic!("expected an Io error, got {other:?}"),
        }
    }

    #[test]
    fn counting_reader_counts_raw_bytes() -> io::Result<()> {
        let (mut r, count) = CountingReader::new(Cursor::new(vec![7u8; 1000]));
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        assert_eq!(count.load(Ordering::Relaxed), 1000);
        assert_eq!(r.count(), 1000);
        Ok(())
    }

    #[test]
    fn bom_split_across_reads_is_stripped() -> Result<(), ReadError> {
        struct OneByte(Cursor<Vec<u8>>);
        impl Read for OneByte {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(1);
                self.0.read(&mut buf[..n])
            }
        }
        let inner = BufReader::with_capacity(1, OneByte(Cursor::new(b"\xEF\xBB\xBFab".to_vec())));
        let mut input = Input::new(Box::new(inner), 0);
        assert_eq!(input.strip_bom()?, 3);
        assert_eq!(input.offset(), 3);
        assert_eq!(input.available(), b"");
        assert!(input.fill()?);
        assert_eq!(input.available(), b"a");
        Ok(())
    }

    #[test]
    fn partial_bom_is_kept() -> Result<(), ReadError> {
        let mut input = Input::new(Box::new(Cursor::new(b"\xEF\xBBx".to_vec())), 0);
        assert_eq!(input.strip_bom()?, 0);
        assert_eq!(input.available(), b"\xEF\xBBx");
        Ok(())
    }
}
