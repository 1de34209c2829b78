//! Ranged read-ahead: an object read as a sequence of ranged GETs, a few in flight ahead of the parser.
//!
//! One GetObject stream is limited by one TCP connection; several ranged GETs in parallel are not. The
//! ranges are fetched in order with at most [`ReadAhead::in_flight`] outstanding, each collected whole
//! (`chunk_bytes`), so memory stays at `in_flight × chunk_bytes` whatever the object size. Every range is
//! pinned to the listed ETag (`IfMatch`, by [`ObjectSource::open`]): an object overwritten mid-read fails the
//! read instead of mixing two versions. Objects smaller than `min_object_bytes` use one stream. A range that
//! fails transiently is requested again ([`RANGE_ATTEMPTS`]).

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::io::StreamReader;

use super::model::Source;
use super::ports::{ByteRange, ObjectBody, ObjectSource, SourceError};

/// How objects are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadAhead {
    /// Bytes per ranged GET.
    pub chunk_bytes: u64,
    /// Ranged GETs outstanding ahead of the parser.
    pub in_flight: usize,
    /// Objects (from the start offset) smaller than this are read as one stream.
    pub min_object_bytes: u64,
}

impl Default for ReadAhead {
    /// 4 MiB ranges, 4 in flight (16 MiB of read-ahead), for objects of 16 MiB and more.
    fn default() -> Self {
        Self {
            chunk_bytes: 4 * 1024 * 1024,
            in_flight: 4,
            min_object_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Attempts per range: a transient failure (throttling or a 5xx the SDK's own retries did not absorb, a
/// connection dropped or cut short mid-body) is retried after [`RETRY_DELAYS`]; a permanent one (the object
/// changed, was deleted, access denied) fails at once.
pub const RANGE_ATTEMPTS: usize = 3;
/// The pause before the second and the third attempt of a range.
pub const RETRY_DELAYS: [Duration; RANGE_ATTEMPTS - 1] =
    [Duration::from_millis(200), Duration::from_millis(1000)];

impl ReadAhead {
    /// True when `[start, size)` is read with ranged GETs.
    pub fn applies(&self, start: u64, size: u64) -> bool {
        self.in_flight > 1 && size.saturating_sub(start) >= self.min_object_bytes.max(1)
    }

    /// The first range of a ranged read of `[start, size)`: open it to learn the object's encoding (and
    /// whether it is still there, unchanged), then hand the response to [`ReadAhead::reader`].
    pub fn first_range(&self, start: u64, size: u64) -> ByteRange {
        ByteRange {
            start,
            end: Some(start.saturating_add(self.chunk_bytes.max(1)).min(size)),
        }
    }

    /// `[start, size)` of the object as ranged GETs, `in_flight` at a time, in order. `first` is the response
    /// to [`ReadAhead::first_range`] when the caller already opened it (it is used, not requested again).
    ///
    /// A range whose request fails transiently, or whose body breaks off, is requested again (up to
    /// [`RANGE_ATTEMPTS`] times); the reader's error then wraps the [`SourceError`] (`Transient` when the
    /// attempts ran out), so callers can tell a missing or changed object from a flaky network.
    #[allow(clippy::too_many_arguments)]
    pub fn reader(
        &self,
        source: Arc<dyn ObjectSource>,
        bucket: Source,
        key: String,
        etag: String,
        version_id: Option<String>,
        start: u64,
        size: u64,
        first: Option<ObjectBody>,
    ) -> Box<dyn AsyncRead + Send + Unpin> {
        let chunk = self.chunk_bytes.max(1);
        let ranges: Vec<(u64, u64)> = (start..size)
            .step_by(usize::try_from(chunk).unwrap_or(usize::MAX))
            .map(|a| (a, (a + chunk).min(size)))
            .collect();
        let shared = Arc::new((source, bucket, key, etag, version_id));
        let mut first = first;
        let chunks = stream::iter(ranges)
            .map(move |(a, b)| {
                let shared = shared.clone();
                let opened = if a == start { first.take() } else { None };
                async move {
                    let (source, bucket, key, etag, version_id) = &*shared;
                    let object = (key.as_str(), etag.as_str(), version_id.as_deref());
                    fetch_range(source.as_ref(), bucket, object, a, b, opened)
                        .await
                        .map(Cursor::new)
                        .map_err(std::io::Error::other)
                }
            })
            .buffered(self.in_flight.max(1));
        Box::new(StreamReader::new(chunks))
    }
}

/// `[a, b)` of the object (key, ETag, VersionId), whole, retried as [`RANGE_ATTEMPTS`] says.
async fn fetch_range(
    source: &dyn ObjectSource,
    bucket: &Source,
    (key, etag, version_id): (&str, &str, Option<&str>),
    a: u64,
    b: u64,
    mut opened: Option<ObjectBody>,
) -> Result<Vec<u8>, SourceError> {
    let mut attempt = 0;
    loop {
        let body = match opened.take() {
            Some(body) => Ok(body),
            None => {
                let range = ByteRange {
                    start: a,
                    end: Some(b),
                };
                source
                    .open(bucket, key, etag, version_id, Some(range))
                    .await
            }
        };
        let error = match body {
            Ok(body) => match read_whole(body, a, b).await {
                Ok(data) => return Ok(data),
                Err(e) => SourceError::Transient {
                    context: format!("read bytes {a}-{b} of s3://{}/{key}", bucket.bucket),
                    source: Box::new(e),
                },
            },
            Err(e) => e,
        };
        if !error.is_transient() || attempt + 1 >= RANGE_ATTEMPTS {
            return Err(error);
        }
        tracing::warn!(
            bucket = %bucket.bucket,
            key,
            range_start = a,
            range_end = b,
            attempt = attempt + 1,
            error = %error,
            "ranged read failed, retrying"
        );
        tokio::time::sleep(RETRY_DELAYS[attempt]).await;
        attempt += 1;
    }
}

/// The body of a `[a, b)` response, checked for length.
async fn read_whole(body: ObjectBody, a: u64, b: u64) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(usize::try_from(b - a).unwrap_or(0));
    let mut reader = body.reader;
    reader.read_to_end(&mut data).await?;
    if data.len() as u64 != b - a {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the response has {} bytes, not {}", data.len(), b - a),
        ));
    }
    Ok(data)
}

/// One GetObject stream whose read failures (a connection reset or timed out mid-body) are reported as
/// [`SourceError::Transient`], as a ranged read's are once its attempts run out, so the worker can tell a flaky
/// network from a broken file ([`source_error`]).
pub fn single_stream(
    body: Box<dyn AsyncRead + Send + Unpin>,
    source: &Source,
    key: &str,
    start: u64,
) -> Box<dyn AsyncRead + Send + Unpin> {
    Box::new(SingleStream {
        inner: body,
        context: format!("read s3://{}/{key} from byte {start}", source.bucket),
    })
}

struct SingleStream {
    inner: Box<dyn AsyncRead + Send + Unpin>,
    context: String,
}

impl AsyncRead for SingleStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if source_error(&e).is_none() => {
                let kind = e.kind();
                std::task::Poll::Ready(Err(std::io::Error::new(
                    kind,
                    SourceError::Transient {
                        context: this.context.clone(),
                        source: Box::new(e),
                    },
                )))
            }
            other => other,
        }
    }
}

/// The [`SourceError`] behind a read failure of a [`ReadAhead::reader`], if that is what failed.
pub fn source_error(error: &std::io::Error) -> Option<&SourceError> {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<SourceError>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::memory::MemoryObjectSource;
    use chrono::Utc;

    /// A source holding object `k` of `len` bytes (`i % modulo`) in bucket `b`: the source, the bytes, the
    /// ETag and the bucket's [`Source`].
    fn object_k(len: u32, modulo: u32) -> (MemoryObjectSource, Vec<u8>, String, Source) {
        let s3 = MemoryObjectSource::new();
        s3.create_bucket("b", "111111111111");
        let data: Vec<u8> = (0..len).map(|i| (i % modulo) as u8).collect();
        let etag = s3.put("b", "k", data.clone(), Utc::now());
        let bucket = Source {
            account_id: "111111111111".into(),
            bucket: "b".into(),
            region: "us-east-1".into(),
            prefix: None,
            role_arn: None,
            external_id: None,
            versions: false,
        };
        (s3, data, etag, bucket)
    }

    #[tokio::test]
    async fn ranged_reads_give_the_same_bytes_from_any_offset(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (s3, data, etag, bucket) = object_k(100_003, 251);
        let s3 = Arc::new(s3);
        let ahead = ReadAhead {
            chunk_bytes: 4096,
            in_flight: 3,
            min_object_bytes: 1,
        };
        for start in [0u64, 1, 4095, 4096, 99_999, 100_003] {
            assert!(ahead.applies(start, data.len() as u64) || start == 100_003);
            let mut reader = ahead.reader(
                s3.clone(),
                bucket.clone(),
                "k".into(),
                etag.clone(),
                None,
                start,
                data.len() as u64,
                None,
            );
            let mut got = Vec::new();
            reader.read_to_end(&mut got).await?;
            assert_eq!(got, &data[start as usize..], "from {start}");
        }
        // A wrong ETag fails the read.
        let mut reader = ahead.reader(
            s3.clone(),
            bucket,
            "k".into(),
            "\"other\"".into(),
            None,
            0,
            data.len() as u64,
            None,
        );
        assert!(reader.read_to_end(&mut Vec::new()).await.is_err());
        assert!(!ReadAhead::default().applies(0, 1024));
        Ok(())
    }

    /// A source whose ranged reads fail as scripted: each open of a range takes the next fault of that
    /// range's script (none left: a good read).
    struct Flaky {
        inner: MemoryObjectSource,
        faults: std::sync::Mutex<std::collections::HashMap<u64, Vec<Fault>>>,
        opens: std::sync::Mutex<Vec<u64>>,
    }

    #[derive(Debug, Clone, Copy)]
    enum Fault {
        /// Throttled (after the SDK's own retries).
        Throttled,
        /// The response's body breaks off half-way.
        BodyCut,
        /// The object was overwritten (412).
        Changed,
    }

    struct Broken(Cursor<Vec<u8>>);

    impl AsyncRead for Broken {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if self.0.position() as usize >= self.0.get_ref().len() {
                return std::task::Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset by peer",
                )));
            }
            std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    #[async_trait::async_trait]
    impl ObjectSource for Flaky {
        async fn list_page(
            &self,
            source: &Source,
            continuation: Option<String>,
        ) -> Result<crate::sync::ports::ListPage, SourceError> {
            self.inner.list_page(source, continuation).await
        }

        async fn list_page_after(
            &self,
            source: &Source,
            start_after: &str,
        ) -> Result<crate::sync::ports::ListPage, SourceError> {
            self.inner.list_page_after(source, start_after).await
        }

        async fn head(
            &self,
            source: &Source,
            key: &str,
            version_id: Option<&str>,
        ) -> Result<Option<crate::sync::model::ObjectMeta>, SourceError> {
            self.inner.head(source, key, version_id).await
        }

        async fn older_versions(
            &self,
            source: &Source,
            key: &str,
            version_id: &str,
            max: usize,
        ) -> Result<Vec<crate::sync::model::ObjectMeta>, SourceError> {
            self.inner
                .older_versions(source, key, version_id, max)
                .await
        }

        async fn open(
            &self,
            source: &Source,
            key: &str,
            etag: &str,
            version_id: Option<&str>,
            range: Option<ByteRange>,
        ) -> Result<ObjectBody, SourceError> {
            let start = range.map_or(0, |r| r.start);
            self.opens
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(start);
            let fault = {
                let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
                faults
                    .get_mut(&start)
                    .and_then(|f| (!f.is_empty()).then(|| f.remove(0)))
            };
            match fault {
                None => self.inner.open(source, key, etag, version_id, range).await,
                Some(Fault::Throttled) => Err(SourceError::Transient {
                    context: format!("read s3://{}/{key}", source.bucket),
                    source: "SlowDown: please reduce your request rate".into(),
                }),
                Some(Fault::Changed) => Err(SourceError::Changed {
                    bucket: source.bucket.clone(),
                    key: key.to_owned(),
                    etag: etag.to_owned(),
                }),
                Some(Fault::BodyCut) => {
                    let mut body = self
                        .inner
                        .open(source, key, etag, version_id, range)
                        .await?;
                    let mut data = Vec::new();
                    body.reader
                        .read_to_end(&mut data)
                        .await
                        .map_err(|e| SourceError::Other {
                            context: "read".into(),
                            source: Box::new(e),
                        })?;
                    data.truncate(data.len() / 2);
                    Ok(ObjectBody {
                        reader: Box::new(Broken(Cursor::new(data))),
                        ..body
                    })
                }
            }
        }
    }

    fn flaky(faults: &[(u64, &[Fault])]) -> (Arc<Flaky>, Vec<u8>, String, Source) {
        let (inner, data, etag, bucket) = object_k(10_000, 241);
        let source = Arc::new(Flaky {
            inner,
            faults: std::sync::Mutex::new(faults.iter().map(|(a, f)| (*a, f.to_vec())).collect()),
            opens: std::sync::Mutex::new(Vec::new()),
        });
        (source, data, etag, bucket)
    }

    const SMALL: ReadAhead = ReadAhead {
        chunk_bytes: 1000,
        in_flight: 3,
        min_object_bytes: 1,
    };

    async fn read_all(
        source: &Arc<Flaky>,
        etag: &str,
        bucket: &Source,
        size: u64,
    ) -> std::io::Result<Vec<u8>> {
        let mut reader = SMALL.reader(
            source.clone(),
            bucket.clone(),
            "k".into(),
            etag.to_owned(),
            None,
            0,
            size,
            None,
        );
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await?;
        Ok(got)
    }

    fn opens_of(source: &Flaky, start: u64) -> usize {
        source
            .opens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|&&a| a == start)
            .count()
    }

    #[tokio::test(start_paused = true)]
    async fn transient_range_failures_are_retried() -> Result<(), Box<dyn std::error::Error>> {
        let (source, data, etag, bucket) = flaky(&[
            (2000, &[Fault::Throttled, Fault::Throttled]),
            (5000, &[Fault::BodyCut]),
        ]);
        let got = read_all(&source, &etag, &bucket, data.len() as u64).await?;
        assert_eq!(got, data);
        assert_eq!(
            opens_of(&source, 2000),
            3,
            "two throttled attempts, then a good one"
        );
        assert_eq!(
            opens_of(&source, 5000),
            2,
            "a body cut short is requested again"
        );
        assert_eq!(opens_of(&source, 0), 1);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_range_failing_every_attempt_fails_the_read_as_transient() {
        let throttled = [Fault::Throttled; RANGE_ATTEMPTS + 1];
        let (source, data, etag, bucket) = flaky(&[(3000, &throttled)]);
        let err = read_all(&source, &etag, &bucket, data.len() as u64)
            .await
            .err()
            .map(|e| source_error(&e).map(SourceError::is_transient));
        assert_eq!(
            err,
            Some(Some(true)),
            "a transient SourceError inside the I/O error"
        );
        assert_eq!(opens_of(&source, 3000), RANGE_ATTEMPTS);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried() {
        let (source, data, etag, bucket) = flaky(&[(4000, &[Fault::Changed])]);
        let err = read_all(&source, &etag, &bucket, data.len() as u64)
            .await
            .err()
            .map(|e| matches!(source_error(&e), Some(SourceError::Changed { .. })));
        assert_eq!(err, Some(true));
        assert_eq!(opens_of(&source, 4000), 1, "412 is final");
        // A wrong ETag (the memory source's own 412) is not retried either.
        let (source, data, _, bucket) = flaky(&[]);
        assert!(read_all(&source, "\"other\"", &bucket, data.len() as u64)
            .await
            .is_err());
        assert_eq!(opens_of(&source, 0), 1);
    }

    #[tokio::test]
    async fn an_opened_first_range_is_used_not_requested_again(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (source, data, etag, bucket) = flaky(&[]);
        let size = data.len() as u64;
        for start in [0u64, 1500] {
            let first_range = SMALL.first_range(start, size);
            assert_eq!(first_range.end, Some(start + 1000));
            let first = source
                .open(&bucket, "k", &etag, None, Some(first_range))
                .await?;
            let mut reader = SMALL.reader(
                source.clone(),
                bucket.clone(),
                "k".into(),
                etag.clone(),
                None,
                start,
                size,
                Some(first),
            );
            let mut got = Vec::new();
            reader.read_to_end(&mut got).await?;
            assert_eq!(got, &data[start as usize..]);
        }
        let opens = source
            .opens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // One request per range: 10 from 0, 9 from 1500 (the last one short).
        assert_eq!(opens.len(), 10 + 9, "{opens:?}");
        assert_eq!(SMALL.first_range(9_500, size).end, Some(size));
        Ok(())
    }
}
