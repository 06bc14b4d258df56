//! Bounds-checked big-endian reading, shared by the binary decoders.

use std::ops::Range;

/// The input ended before a field it announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UnexpectedEnd;

/// A cursor over a byte slice whose every read is checked against the end.
///
/// Reads hand out positions (`range`) as well as slices, so a caller holding the
/// `Bytes` the slice came from can cut zero-copy sub-slices from it.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes as a range of the underlying buffer.
    pub(crate) fn range(&mut self, n: usize) -> Result<Range<usize>, UnexpectedEnd> {
        if n > self.remaining() {
            return Err(UnexpectedEnd);
        }
        let start = self.pos;
        self.pos += n;
        Ok(start..self.pos)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], UnexpectedEnd> {
        let r = self.range(n)?;
        Ok(&self.buf[r])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], UnexpectedEnd> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, UnexpectedEnd> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn i16(&mut self) -> Result<i16, UnexpectedEnd> {
        self.array().map(i16::from_be_bytes)
    }

    pub(crate) fn i32(&mut self) -> Result<i32, UnexpectedEnd> {
        self.array().map(i32::from_be_bytes)
    }

    pub(crate) fn i64(&mut self) -> Result<i64, UnexpectedEnd> {
        self.array().map(i64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded() {
        let mut r = Reader::new(&[0, 1, 0, 0, 0, 2, 9]);
        assert_eq!(r.i16(), Ok(1));
        assert_eq!(r.i32(), Ok(2));
        assert_eq!(r.i16(), Err(UnexpectedEnd));
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.range(1), Ok(6..7));
        assert_eq!(r.u8(), Err(UnexpectedEnd));
        assert_eq!(r.bytes(usize::MAX), Err(UnexpectedEnd));
    }
}
