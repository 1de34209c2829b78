//! [`Out`]: where the validator writes a row's JSON — a fixed region of an already initialised buffer, with
//! the write position held in a local variable.
//!
//! Appending to a `Vec<u8>` stores the vector's length back to memory after every write and loads it again
//! before the next one: a row of ten fields made some forty such round trips, each on the path to the next
//! write. Here the position lives in a register and every write is one bounds check against the region's end.
//! A write that does not fit is not made and marks the region [`Out::is_full`]; the caller then gives the
//! row a larger region and writes it again (see `Validator::validate_into`), so no row is ever cut.

/// A region being filled with one row's JSON. See the [module documentation](self).
pub(crate) struct Out<'a> {
    buf: &'a mut [u8],
    pos: usize,
    full: bool,
}

impl<'a> Out<'a> {
    /// An empty row at the start of `buf`.
    #[inline(always)]
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            full: false,
        }
    }

    /// Bytes written.
    #[inline(always)]
    pub(crate) fn len(&self) -> usize {
        self.pos
    }

    /// True when a write did not fit: what was written is incomplete and the row must be written again in a
    /// larger region.
    #[inline(always)]
    pub(crate) fn is_full(&self) -> bool {
        self.full
    }

    /// The bytes written.
    #[cfg(test)]
    pub(crate) fn written(&self) -> &[u8] {
        self.buf.get(..self.pos).unwrap_or_default()
    }

    /// Appends one byte.
    #[inline(always)]
    pub(crate) fn push(&mut self, b: u8) {
        match self.buf.get_mut(self.pos) {
            Some(slot) => {
                *slot = b;
                self.pos += 1;
            }
            None => self.full = true,
        }
    }

    /// Appends `s`.
    #[inline(always)]
    pub(crate) fn extend_from_slice(&mut self, s: &[u8]) {
        match self.buf.get_mut(self.pos..self.pos + s.len()) {
            Some(dst) => {
                dst.copy_from_slice(s);
                self.pos += s.len();
            }
            None => self.full = true,
        }
    }

    /// Appends `n` copies of `b`.
    #[inline]
    pub(crate) fn fill(&mut self, b: u8, n: usize) {
        match self.buf.get_mut(self.pos..self.pos + n) {
            Some(dst) => {
                dst.fill(b);
                self.pos += n;
            }
            None => self.full = true,
        }
    }

    /// Drops what was written after the first `len` bytes.
    #[cfg(test)]
    pub(crate) fn truncate(&mut self, len: usize) {
        self.pos = self.pos.min(len);
    }

    /// Lets `write` fill the next `N` bytes in place and keeps the first `n` (at most `N`) it returns. The
    /// window being a fixed-size array lets the compiler drop the bounds checks of constant offsets; the bytes
    /// past `n` are left for the next write. Needs `N` bytes of room even when fewer are kept.
    #[inline(always)]
    pub(crate) fn stage<const N: usize>(&mut self, write: impl FnOnce(&mut [u8; N]) -> usize) {
        let window = self
            .buf
            .get_mut(self.pos..)
            .and_then(|rest| rest.first_chunk_mut::<N>());
        match window {
            Some(w) => self.pos += write(w).min(N),
            None => self.full = true,
        }
    }
}

/// Runs `write` on a region of `room` bytes, doubling the region until the output fits, and returns it.
/// For what is written once per file (keys, enum spellings) and for tests.
pub(crate) fn to_vec<R>(room: usize, mut write: impl FnMut(&mut Out<'_>) -> R) -> (Vec<u8>, R) {
    let mut buf = vec![0u8; room.max(64)];
    loop {
        let mut out = Out::new(&mut buf);
        let result = write(&mut out);
        if !out.is_full() {
            let n = out.len();
            buf.truncate(n);
            return (buf, result);
        }
        let larger = buf.len() * 2;
        buf.resize(larger, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_that_do_not_fit_mark_the_region_full_and_write_nothing() {
        let mut buf = [0u8; 8];
        let mut out = Out::new(&mut buf);
        out.extend_from_slice(b"abcde");
        out.push(b'f');
        assert_eq!(out.written(), b"abcdef");
        assert!(!out.is_full());
        out.extend_from_slice(b"ghi");
        assert!(out.is_full());
        assert_eq!(
            out.written(),
            b"abcdef",
            "the write that did not fit left nothing"
        );
        out.stage::<4>(|w| {
            w[0] = b'x';
            1
        });
        assert_eq!(out.written(), b"abcdef", "a window needs all its bytes");
        out.truncate(2);
        out.stage::<4>(|w| {
            w.copy_from_slice(b"wxyz");
            2
        });
        assert_eq!(out.written(), b"abwx");
        out.fill(b'0', 4);
        assert_eq!(out.written(), b"abwx0000");
        out.push(b'!');
        assert_eq!(out.written(), b"abwx0000");
        assert!(out.is_full());
    }

    #[test]
    fn to_vec_grows_the_region_until_the_output_fits() {
        let text = vec![b'a'; 1000];
        let (bytes, ()) = to_vec(1, |out| {
            out.extend_from_slice(&text);
            out.push(b'!');
        });
        assert_eq!(bytes.len(), 1001);
        assert_eq!(bytes.last(), Some(&b'!'));
    }
}
