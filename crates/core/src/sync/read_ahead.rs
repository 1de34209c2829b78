//! Ranged read-ahead: an object read as a sequence of ranged GETs, a few in flight ahead of the parser.
//!
//! One GetObject stream is limited by one TCP connection; several ranged GETs in parallel are not. The
//! ranges are fetched in order with at most [`ReadAhead::in_flight`] outstanding, each collected whole
//! (`chunk_bytes`), so memory stays at `in_flight × chunk_bytes` whatever the object size. Every range is
//! pinned to the listed ETag (`IfMatch`, by [`ObjectSource::open`]): an object overwritten mid-read fails the
//! read instead of mixing two versions. Objects smaller than `min_object_bytes` use one stream.

use std::io::Cursor;
use std::sync::Arc;

use futures::stream::{self, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::io::StreamReader;

use super::model::Source;
use super::ports::{ByteRange, ObjectSource};

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

impl ReadAhead {
    /// True when `[start, size)` is read with ranged GETs.
    pub fn applies(&self, start: u64, size: u64) -> bool {
        self.in_flight > 1 && size.saturating_sub(start) >= self.min_object_bytes.max(1)
    }

    /// `[start, size)` of the object as ranged GETs, `in_flight` at a time, in order.
    pub fn reader(
        &self,
        source: Arc<dyn ObjectSource>,
        bucket: Source,
        key: String,
        etag: String,
        start: u64,
        size: u64,
    ) -> Box<dyn AsyncRead + Send + Unpin> {
        let chunk = self.chunk_bytes.max(1);
        let ranges: Vec<(u64, u64)> = (start..size)
            .step_by(usize::try_from(chunk).unwrap_or(usize::MAX))
            .map(|a| (a, (a + chunk).min(size)))
            .collect();
        let shared = Arc::new((source, bucket, key, etag));
        let chunks = stream::iter(ranges)
            .map(move |(a, b)| {
                let shared = shared.clone();
                async move {
                    let (source, bucket, key, etag) = &*shared;
                    let body = source
                        .open(
                            bucket,
                            key,
                            etag,
                            Some(ByteRange {
                                start: a,
                                end: Some(b),
                            }),
                        )
                        .await
                        .map_err(std::io::Error::other)?;
                    let mut data = Vec::with_capacity(usize::try_from(b - a).unwrap_or(0));
                    let mut reader = body.reader;
                    reader.read_to_end(&mut data).await?;
                    if data.len() as u64 != b - a {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!(
                                "range {a}-{b} of s3://{}/{key} returned {} bytes",
                                bucket.bucket,
                                data.len()
                            ),
                        ));
                    }
                    Ok::<_, std::io::Error>(Cursor::new(data))
                }
            })
            .buffered(self.in_flight.max(1));
        Box::new(StreamReader::new(chunks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::memory::MemoryObjectSource;
    use chrono::Utc;

    #[tokio::test]
    async fn ranged_reads_give_the_same_bytes_from_any_offset(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let s3 = Arc::new(MemoryObjectSource::new());
        s3.create_bucket("b", "111111111111");
        let data: Vec<u8> = (0..100_003u32).map(|i| (i % 251) as u8).collect();
        let etag = s3.put("b", "k", data.clone(), Utc::now());
        let bucket = Source {
            account_id: "111111111111".into(),
            bucket: "b".into(),
            region: "us-east-1".into(),
            prefix: None,
            role_arn: None,
            external_id: None,
        };
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
                start,
                data.len() as u64,
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
            0,
            data.len() as u64,
        );
        assert!(reader.read_to_end(&mut Vec::new()).await.is_err());
        assert!(!ReadAhead::default().applies(0, 1024));
        Ok(())
    }
}
