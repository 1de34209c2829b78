//! Writing a large output file without the page cache (Linux `O_DIRECT`), for [`crate::JsonlFileSink`].
//!
//! An import of a gigabyte writes two gigabytes of JSON Lines that this process never reads back. Through the
//! page cache, each 4 KiB page of it is allocated, charged, copied into and later written back and reclaimed;
//! measured on a 2-core VM, that kernel work was about a third of the CPU time of a CSV import to a local file,
//! and the dirty pages pushed whatever else the machine had cached out of memory. With `O_DIRECT` the disk
//! reads the output straight from one aligned 1 MiB staging buffer, so the kernel's share becomes the I/O
//! submission alone. Databases do the same for large sequential writes (ClickHouse's
//! `min_bytes_to_use_direct_io`, PostgreSQL's `debug_io_direct`).
//!
//! Direct I/O needs the file offset, the length and the memory address of every write aligned to the
//! device's block size (4096 is a multiple of every common logical block size). Rows placed for the file
//! ([`RowsAtFileOffset`]: they start as far past a 4096-aligned address as the file's offset is past a block
//! boundary) are written from their own memory: their first bytes complete the block staged so far (the
//! file's unwritten bytes, less than a block), and that block and the rows' whole blocks after it go in one
//! vectored write; the bytes short of a block at the end are staged for the next batch. Any other bytes are
//! copied into the staging buffer (its start 4096-aligned) and written in whole buffers. Only the last, partial block of the file is written after
//! `O_DIRECT` is turned off again. Whenever the file system refuses (`EINVAL`: no direct I/O on
//! this file system, or a block size larger than 4096), the writer falls back to ordinary buffered writes and
//! stays there, without losing or repeating a byte: a refused write moves neither the file offset nor the
//! data. Direct I/O is only asked for on local disk file systems (ext2/3/4, XFS, Btrfs, F2FS): tmpfs, NFS
//! and FUSE accept the flag but gain nothing or lose by it (see [`DIRECT_IO_FILE_SYSTEMS`]). On systems other
//! than Linux, writes are always buffered.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::path::Path;

use s3_importer_core::sink::RowPlacement;

/// Alignment of offsets, lengths and addresses of direct writes.
const ALIGN: usize = 4096;
/// Size of the staging buffer: each direct write is this long (except the last).
const STAGING: usize = 1024 * 1024;

/// Places a batch's rows for a file written by [`OutputFile`]: `offset % 4096` bytes past a 4096-aligned
/// address, so that after the bytes completing the file's last block they start a block in memory as in the
/// file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowsAtFileOffset;

impl RowPlacement for RowsAtFileOffset {
    fn rows_start(&self, address: usize, offset: u64) -> usize {
        address.wrapping_neg() % ALIGN + (offset % ALIGN as u64) as usize
    }
}

/// A file being written, directly when the file system allows it. See the [module documentation](self).
#[derive(Debug)]
pub(crate) struct OutputFile<F = File> {
    file: F,
    /// `Some` while writes go around the page cache.
    staging: Option<Staging>,
    /// A write failed: what was staged may be lost, so every later write fails too (never a file with a hole).
    failed: bool,
}

/// What [`OutputFile`] needs of a file besides `Write` (a trait so that tests can check every direct write's
/// alignment and play a file system that refuses).
pub(crate) trait Target: Write {
    /// Turns direct I/O off for the writes that follow.
    fn clear_direct(&mut self) -> io::Result<()>;
    /// Syncs data and metadata to the disk.
    fn sync_all(&mut self) -> io::Result<()>;
}

impl Target for File {
    fn clear_direct(&mut self) -> io::Result<()> {
        clear_direct(self)
    }

    fn sync_all(&mut self) -> io::Result<()> {
        File::sync_all(self)
    }
}

/// An aligned window of a plain `Vec` (no allocator tricks: the window starts at the first aligned address).
#[derive(Debug)]
struct Staging {
    mem: Vec<u8>,
    /// Offset of the aligned window in `mem`.
    start: usize,
    /// Bytes of the window filled so far.
    len: usize,
}

impl Staging {
    fn new() -> Self {
        let mem = vec![0u8; STAGING + ALIGN];
        let start = mem.as_ptr().align_offset(ALIGN);
        Self { mem, start, len: 0 }
    }

    fn window(&mut self) -> &mut [u8] {
        let start = self.start;
        &mut self.mem[start..start + STAGING]
    }

    /// The bytes staged.
    fn staged(&self) -> &[u8] {
        &self.mem[self.start..self.start + self.len]
    }
}

impl OutputFile<File> {
    /// Creates (or truncates) `path` for writing, asking for direct I/O when `direct` is set and the platform
    /// has it.
    pub(crate) fn create(path: &Path, direct: bool) -> io::Result<Self> {
        if direct {
            if let Some(file) = open_direct(path)? {
                return Ok(Self::new(file, true));
            }
        }
        // Truncates again what `open_direct` may have created: nothing was written to it.
        Ok(Self::new(File::create(path)?, false))
    }

    /// Opens an existing file (a FIFO, a device) for writing in place, always buffered.
    pub(crate) fn open_in_place(path: &Path) -> io::Result<Self> {
        Ok(Self::new(
            std::fs::OpenOptions::new().write(true).open(path)?,
            false,
        ))
    }
}

impl<F: Target> OutputFile<F> {
    /// Writes to `file`, which was opened with direct I/O when `direct` is set.
    fn new(file: F, direct: bool) -> Self {
        Self {
            file,
            staging: direct.then(Staging::new),
            failed: false,
        }
    }

    /// Runs one write step; after a failure, refuses every later one.
    fn step(&mut self, f: impl FnOnce(&mut Self) -> io::Result<()>) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(
                "an earlier write to this file failed; nothing more is written to it",
            ));
        }
        let result = f(self);
        self.failed = result.is_err();
        result
    }

    /// Whether writes currently go around the page cache.
    pub(crate) fn is_direct(&self) -> bool {
        self.staging.is_some()
    }

    /// Writes all of `data` (buffered in the staging buffer when direct).
    #[cfg(test)]
    pub(crate) fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.step(|out| out.stage_and_write(data))
    }

    fn stage_and_write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let Some(staging) = &mut self.staging else {
                return self.file.write_all(data);
            };
            let at = staging.len;
            let n = (STAGING - at).min(data.len());
            staging.window()[at..at + n].copy_from_slice(&data[..n]);
            staging.len += n;
            data = &data[n..];
            if staging.len == STAGING {
                self.drain_staging()?;
            }
        }
        Ok(())
    }

    /// Writes what is staged (the end of the file, when direct) and flushes.
    pub(crate) fn write_staged(&mut self) -> io::Result<()> {
        self.step(|out| {
            out.drain_staging()?;
            out.file.flush()
        })
    }

    /// Writes what is staged and, when `sync` is set, syncs the file's data and metadata to the disk. Nothing
    /// may be written after this.
    pub(crate) fn finish(&mut self, sync: bool) -> io::Result<()> {
        self.write_staged()?;
        if sync {
            self.step(|out| out.file.sync_all())?;
        }
        Ok(())
    }

    /// Writes rows (or any bytes). With direct I/O, when they were placed for this file
    /// ([`RowsAtFileOffset`]), straight from their memory: their first bytes complete the staged block, that
    /// block and their whole blocks go in one write, and the bytes short of a block after them are staged.
    /// Otherwise they go through the staging buffer like any other bytes.
    pub(crate) fn write_rows(&mut self, rows: &[u8]) -> io::Result<()> {
        self.step(|out| out.write_rows_step(rows))
    }

    fn write_rows_step(&mut self, rows: &[u8]) -> io::Result<()> {
        // What is left staged must be less than a block, to be completed by the rows' first bytes.
        self.write_staged_blocks()?;
        let Some(mut staging) = self.staging.take() else {
            return self.file.write_all(rows);
        };
        let staged = staging.len;
        let fill = (ALIGN - staged) % ALIGN;
        let placed = rows.len() >= fill + ALIGN && (rows.as_ptr() as usize + fill) % ALIGN == 0;
        if !placed {
            self.staging = Some(staging);
            return self.stage_and_write(rows);
        }
        let (head, rest) = rows.split_at(fill);
        staging.window()[staged..staged + fill].copy_from_slice(head);
        let whole = rest.len() - rest.len() % ALIGN;
        let (blocks, tail) = rest.split_at(whole);
        let block = &staging.mem[staging.start..staging.start + staged + fill];
        let written = self.write_direct_parts([block, blocks])?;
        if written < block.len() + blocks.len() {
            self.file.clear_direct()?;
            let (first, second) = if written < block.len() {
                (&block[written..], blocks)
            } else {
                (&[][..], &blocks[written - block.len()..])
            };
            self.file.write_all(first)?;
            self.file.write_all(second)?;
            return self.file.write_all(tail);
        }
        staging.window()[..tail.len()].copy_from_slice(tail);
        staging.len = tail.len();
        self.staging = Some(staging);
        Ok(())
    }

    /// Writes `parts` (each whole blocks at an aligned address, the file offset aligned) directly, with as
    /// few vectored writes as the system allows, and returns how many bytes were written: all of them, unless
    /// the file system refused a write or a short write left an unaligned remainder (as [`Self::write_direct`]).
    fn write_direct_parts(&mut self, parts: [&[u8]; 2]) -> io::Result<usize> {
        let total = parts[0].len() + parts[1].len();
        let mut written = 0;
        while written < total {
            let slices = if written < parts[0].len() {
                [IoSlice::new(&parts[0][written..]), IoSlice::new(parts[1])]
            } else {
                [
                    IoSlice::new(&parts[1][written - parts[0].len()..]),
                    IoSlice::new(&[]),
                ]
            };
            if !advance(self.file.write_vectored(&slices), &mut written)? {
                break;
            }
        }
        Ok(written)
    }

    /// Writes the whole blocks of what is staged, keeping the rest (less than a block) staged.
    fn write_staged_blocks(&mut self) -> io::Result<()> {
        let Some(mut staging) = self.staging.take() else {
            return Ok(());
        };
        let len = staging.len;
        let whole = len - len % ALIGN;
        let written = self.write_direct(&staging.window()[..whole])?;
        if written < whole {
            self.file.clear_direct()?;
            return self.file.write_all(&staging.window()[written..len]);
        }
        staging.window().copy_within(whole..len, 0);
        staging.len = len - whole;
        self.staging = Some(staging);
        Ok(())
    }

    /// Writes the staged bytes: the whole blocks directly, then (at the end of the file, or after the file
    /// system refused a direct write) the rest with direct I/O turned off, for good.
    fn drain_staging(&mut self) -> io::Result<()> {
        self.write_staged_blocks()?;
        match self.staging.take() {
            Some(staging) if staging.len > 0 => {
                self.file.clear_direct()?;
                self.file.write_all(staging.staged())
            }
            staging => {
                self.staging = staging;
                Ok(())
            }
        }
    }

    /// Writes `blocks` (whole blocks, at an aligned address and file offset) directly, and returns how many
    /// bytes were: all of them, unless the file system refused a write or a short write left an unaligned
    /// remainder (the refused write moved nothing; the caller writes the rest buffered).
    fn write_direct(&mut self, blocks: &[u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < blocks.len() {
            if !advance(self.file.write(&blocks[written..]), &mut written)? {
                break;
            }
        }
        Ok(written)
    }
}

/// Counts one direct write's result into `written`; `Ok(false)` when the file system refused the write (the
/// caller stops and writes the rest buffered), `Ok(true)` to go on (an interrupted write is tried again).
fn advance(result: io::Result<usize>, written: &mut usize) -> io::Result<bool> {
    match result {
        Ok(0) => Err(io::ErrorKind::WriteZero.into()),
        Ok(n) => {
            *written += n;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
        Err(e) if refused(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether a direct write failed because the file system will not do it (`EINVAL`).
fn refused(e: &io::Error) -> bool {
    #[cfg(target_os = "linux")]
    return e.raw_os_error() == Some(libc::EINVAL);
    #[cfg(not(target_os = "linux"))]
    return false;
}

/// Local disk file systems on which `O_DIRECT` means the device reads the caller's memory (`statfs` magic
/// numbers: ext2/3/4, XFS, Btrfs, F2FS). Others may accept the flag and do something else: tmpfs copies into
/// its page cache anyway and then does extra work per write (measured: a 1 GB CSV import took a third more
/// CPU than with buffered writes), NFS turns every write into a synchronous round trip, FUSE file systems
/// vary. On those, buffered writes are the better choice.
const DIRECT_IO_FILE_SYSTEMS: &[u32] = &[0xEF53, 0x5846_5342, 0x9123_683E, 0xF2F5_2010];

/// Opens `path` with `O_DIRECT`; `None` when the file system does not support it or is not one of
/// [`DIRECT_IO_FILE_SYSTEMS`] (the file is then created without it).
#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> io::Result<Option<File>> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(None),
        Err(e) => return Err(e),
    };
    // SAFETY: `statfs` is plain data, for which all zeroes is a valid value; fstatfs writes into it through
    // a pointer valid for the call, on a descriptor owned by `file`.
    let magic = unsafe {
        let mut stat: libc::statfs = std::mem::zeroed();
        if libc::fstatfs(file.as_raw_fd(), &mut stat) != 0 {
            return Err(io::Error::last_os_error());
        }
        // `f_type`'s width differs between C libraries; the magic numbers are 32 bits.
        stat.f_type as u32
    };
    Ok(DIRECT_IO_FILE_SYSTEMS.contains(&magic).then_some(file))
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> io::Result<Option<File>> {
    Ok(None)
}

/// Turns `O_DIRECT` off on an open file.
#[cfg(target_os = "linux")]
fn clear_direct(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl with F_GETFL/F_SETFL on a descriptor owned by `file`, which outlives both calls; no
    // pointers are passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_DIRECT != 0 {
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn clear_direct(_file: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3_importer_core::sink::RowBatch;
    use s3_importer_core::Position;

    /// A disk that holds a direct write to the kernel's rules: offset, length and address aligned, else
    /// `EINVAL` (or always `EINVAL` from the `refuse_from`th direct write on); a short write once when asked.
    #[derive(Default)]
    struct Disk {
        data: Vec<u8>,
        direct: bool,
        refuse_from: Option<usize>,
        short_write_at: Option<usize>,
        direct_writes: usize,
        direct_bytes: usize,
        /// Address of the memory of each direct write.
        direct_from: Vec<usize>,
        synced: bool,
    }

    fn einval() -> io::Error {
        io::Error::from_raw_os_error(22)
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        /// As `writev`: with direct I/O every part's address and length must be aligned.
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let bufs: Vec<&[u8]> = bufs
                .iter()
                .map(|b| &**b)
                .filter(|b| !b.is_empty())
                .collect();
            let mut n: usize = bufs.iter().map(|b| b.len()).sum();
            if self.direct {
                let aligned = self.data.len() % ALIGN == 0
                    && bufs
                        .iter()
                        .all(|b| b.len() % ALIGN == 0 && (b.as_ptr() as usize) % ALIGN == 0);
                if !aligned || self.refuse_from.is_some_and(|k| self.direct_writes >= k) {
                    return Err(einval());
                }
                if self.short_write_at == Some(self.direct_writes) {
                    n = n.min(1000);
                }
                self.direct_writes += 1;
                self.direct_bytes += n;
                self.direct_from
                    .extend(bufs.iter().map(|b| b.as_ptr() as usize));
            }
            let mut left = n;
            for b in bufs {
                let take = left.min(b.len());
                self.data.extend_from_slice(&b[..take]);
                left -= take;
            }
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Target for Disk {
        fn clear_direct(&mut self) -> io::Result<()> {
            self.direct = false;
            Ok(())
        }

        fn sync_all(&mut self) -> io::Result<()> {
            self.synced = true;
            Ok(())
        }
    }

    /// Deterministic bytes and chunk sizes (1 byte to 300 KiB).
    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4099) as u8).collect()
    }

    fn write_in_chunks<F: Target>(out: &mut OutputFile<F>, data: &[u8]) {
        let mut at = 0;
        let mut step = 1usize;
        while at < data.len() {
            let n = step.min(data.len() - at);
            out.write_all(&data[at..at + n]).unwrap();
            at += n;
            step = (step * 37 + 11) % (300 * 1024) + 1;
        }
    }

    const SIZES: &[usize] = &[
        0,
        1,
        ALIGN - 1,
        ALIGN,
        ALIGN + 1,
        STAGING - 1,
        STAGING,
        STAGING + 1,
        3 * STAGING + ALIGN,
        3 * STAGING + STAGING / 2 + 17,
    ];

    /// A deterministic sequence below `n` (a linear congruential step).
    struct Steps(u64);

    impl Steps {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    /// Batches of rows of many sizes, most placed for the file (`RowsAtFileOffset`), some not (a plain
    /// batch, a clone, a batch placed for the wrong byte count): every direct write aligned, the file exactly
    /// the rows, and the placed batches written from their own memory, not copied into the staging buffer.
    /// Also with a file system that refuses, or writes short, partway.
    #[test]
    fn batches_placed_for_the_file_are_written_from_their_own_memory() {
        let position = Position::default();
        for (refuse_from, short_write_at) in [(None, None), (Some(7), None), (None, Some(5))] {
            let mut out = OutputFile::new(
                Disk {
                    direct: true,
                    refuse_from,
                    short_write_at,
                    ..Disk::default()
                },
                true,
            );
            let (mut expected, mut sent) = (Vec::new(), 0u64);
            let mut steps = Steps(0x2545_F491_4F6C_DD1D);
            let mut next = |n: u64| steps.below(n);
            for k in 0..60 {
                let mut batch = RowBatch::with_capacity(64 * 1024, 16);
                match k % 6 {
                    // Not placed at all.
                    4 => {}
                    // Placed for another file.
                    5 => batch.place(&RowsAtFileOffset, sent + 1),
                    _ => batch.place(&RowsAtFileOffset, sent),
                }
                let rows = next(40);
                for r in 0..rows {
                    let len = next(if k % 10 == 0 { 20_000 } else { 3_000 }) as usize;
                    let row: Vec<u8> = (0..len)
                        .map(|i| b'a' + ((i + r as usize) % 26) as u8)
                        .collect();
                    batch.push_row(position, &row);
                }
                expected.extend_from_slice(batch.as_jsonl());
                sent += batch.byte_len() as u64;
                if k % 6 == 3 {
                    // A copy of a placed batch: its memory is elsewhere.
                    out.write_rows(batch.clone().as_jsonl()).unwrap();
                } else {
                    out.write_rows(batch.as_jsonl()).unwrap();
                }
            }
            let staging = out.staging.as_ref().map(|s| s.mem.as_ptr_range());
            let direct_before_finish = out.is_direct();
            out.finish(true).unwrap();
            assert!(
                out.file.data == expected,
                "{refuse_from:?} {short_write_at:?}"
            );
            if refuse_from.is_none() && short_write_at.is_none() {
                // The disk refuses unaligned direct writes: still direct means none was.
                assert!(direct_before_finish);
                let staging = staging.expect("still direct");
                let from_batches = out
                    .file
                    .direct_from
                    .iter()
                    .filter(|&&a| !(staging.start as usize..staging.end as usize).contains(&a))
                    .count();
                assert!(
                    from_batches > 20,
                    "{from_batches} of {} direct writes from the batches",
                    out.file.direct_writes
                );
            } else {
                assert!(!direct_before_finish, "buffered after the refusal");
            }
        }
    }

    /// The placement asks for rows `offset % 4096` bytes past an aligned address, whatever the memory's own
    /// address.
    #[test]
    fn rows_are_placed_at_the_file_offset_past_an_aligned_address() {
        for address in [0usize, 1, 4095, 4096, 12_345] {
            for offset in [0u64, 1, 4095, 4096, 1 << 40] {
                let start = RowsAtFileOffset.rows_start(address, offset);
                assert_eq!((address + start) % ALIGN, (offset % 4096) as usize);
                assert!(start < 2 * ALIGN, "{address} {offset}");
            }
        }
    }

    #[test]
    fn every_direct_write_is_aligned_and_the_file_is_the_bytes_written() {
        for &len in SIZES {
            let data = content(len);
            let mut out = OutputFile::new(
                Disk {
                    direct: true,
                    ..Disk::default()
                },
                true,
            );
            write_in_chunks(&mut out, &data);
            // The disk refuses unaligned direct writes: still direct means none was.
            assert!(out.is_direct(), "len {len}");
            out.finish(true).unwrap();
            assert!(out.file.data == data, "len {len}");
            assert!(out.file.synced);
            assert_eq!(out.file.direct_bytes, len - len % ALIGN, "len {len}");
            assert_eq!(
                out.file.direct,
                len % ALIGN == 0,
                "len {len}: only the tail is buffered"
            );
        }
    }

    #[test]
    fn a_file_system_refusing_direct_writes_midway_gets_the_rest_buffered() {
        for refuse_from in [0, 1, 2] {
            let len = 3 * STAGING + 12345;
            let data = content(len);
            let mut out = OutputFile::new(
                Disk {
                    direct: true,
                    refuse_from: Some(refuse_from),
                    ..Disk::default()
                },
                true,
            );
            write_in_chunks(&mut out, &data);
            out.finish(true).unwrap();
            assert!(!out.is_direct());
            assert!(out.file.data == data, "refused from write {refuse_from}");
            assert_eq!(out.file.direct_writes, refuse_from);
        }
    }

    #[test]
    fn a_short_direct_write_leaving_an_unaligned_rest_is_finished_buffered() {
        let data = content(2 * STAGING + 5000);
        let mut out = OutputFile::new(
            Disk {
                direct: true,
                short_write_at: Some(1),
                ..Disk::default()
            },
            true,
        );
        write_in_chunks(&mut out, &data);
        assert!(!out.is_direct());
        out.finish(true).unwrap();
        assert!(out.file.data == data);
    }

    #[test]
    fn buffered_output_writes_through() {
        let data = content(STAGING + 3);
        let mut out = OutputFile::new(Disk::default(), false);
        write_in_chunks(&mut out, &data);
        out.finish(false).unwrap();
        assert!(out.file.data == data);
        assert!(!out.file.synced);
    }

    /// On the machine's own file system: the kernel's checks, not the test double's. When the file system
    /// takes `O_DIRECT`, the writer must still be direct after megabytes (no write was refused).
    #[test]
    fn a_real_file_holds_exactly_the_bytes_written() {
        let dir = tempfile::tempdir().unwrap();
        for &len in SIZES {
            let path = dir.path().join(format!("out-{len}"));
            let data = content(len);
            let mut out = OutputFile::create(&path, true).unwrap();
            let direct = cfg!(target_os = "linux")
                && open_direct(&dir.path().join("probe")).unwrap().is_some();
            assert_eq!(out.is_direct(), direct);
            write_in_chunks(&mut out, &data);
            assert_eq!(out.is_direct(), direct, "len {len}");
            out.finish(true).unwrap();
            drop(out);
            assert!(std::fs::read(&path).unwrap() == data, "len {len}");
        }
    }

    /// tmpfs takes `O_DIRECT` and then copies into its page cache anyway, with extra work per write.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_on_tmpfs_is_written_buffered() {
        const TMPFS_MAGIC: u32 = 0x0102_1994;
        let shm = Path::new("/dev/shm");
        let Ok(dir) = tempfile::tempdir_in(shm) else {
            eprintln!("no writable /dev/shm here");
            return;
        };
        use std::os::fd::AsRawFd;
        let probe = File::open(dir.path()).unwrap();
        // SAFETY: as in `open_direct`.
        let magic = unsafe {
            let mut stat: libc::statfs = std::mem::zeroed();
            assert_eq!(libc::fstatfs(probe.as_raw_fd(), &mut stat), 0);
            stat.f_type as u32
        };
        if magic != TMPFS_MAGIC {
            eprintln!("/dev/shm is not a tmpfs here");
            return;
        }
        let path = dir.path().join("out");
        let mut out = OutputFile::create(&path, true).unwrap();
        assert!(!out.is_direct());
        out.write_all(b"{}\n").unwrap();
        out.finish(true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}\n");
    }

    /// A disk that fails the `fail_at`th direct write with ENOSPC.
    struct FullDisk {
        inner: Disk,
        fail_at: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.inner.direct && self.inner.direct_writes == self.fail_at {
                return Err(io::Error::from_raw_os_error(28));
            }
            self.inner.write_vectored(bufs)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Target for FullDisk {
        fn clear_direct(&mut self) -> io::Result<()> {
            self.inner.clear_direct()
        }

        fn sync_all(&mut self) -> io::Result<()> {
            self.inner.sync_all()
        }
    }

    #[test]
    fn after_a_failed_write_every_later_write_and_the_finish_fail() {
        let mut out = OutputFile::new(
            FullDisk {
                inner: Disk {
                    direct: true,
                    ..Disk::default()
                },
                fail_at: 1,
            },
            true,
        );
        let data = content(STAGING);
        out.write_all(&data).unwrap();
        // The second buffer's write fails: its staged bytes are gone.
        assert!(out.write_all(&data).is_err());
        assert!(out.write_all(b"more").is_err());
        assert!(out.finish(true).is_err());
        assert!(!out.file.inner.synced);
        assert_eq!(out.file.inner.data.len(), STAGING);
    }
}
