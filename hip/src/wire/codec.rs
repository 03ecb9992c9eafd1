//! The byte codec both wire formats are written with, HIP's in this crate and RELOAD's in
//! the overlay crate: a bounds-checked [`Reader`] over input, a [`Sink`] that encoders
//! write through (a [`Counter`] to size the output, then a [`Writer`] to fill it), and
//! [`raw_conversions!`](crate::raw_conversions) for protocol numbers that keep unknown
//! values as `Unknown(raw)`.
//!
//! It knows no protocol and has no error type of its own: a reader returns the errors its
//! caller chose when making it, so each crate keeps its own (`hip::wire::WireError`,
//! `overlay::wire::WireError`). Big-endian throughout; lengths are the TLS presentation
//! language's (RFC 8446 §3), which RELOAD uses and HIP's fixed layouts do not need.

/// Both `From` conversions between a protocol-number enum with an `Unknown(raw)` variant
/// and its raw type, from one list of `Variant = value`. The enum-to-raw match is
/// exhaustive, so a variant missing from the list does not compile.
#[macro_export]
macro_rules! raw_conversions {
    ($enum:ident: $raw:ty { $($variant:ident = $value:literal),+ $(,)? }) => {
        impl From<$raw> for $enum {
            fn from(v: $raw) -> Self {
                match v {
                    $($value => $enum::$variant,)+
                    other => $enum::Unknown(other),
                }
            }
        }

        impl From<$enum> for $raw {
            fn from(t: $enum) -> $raw {
                match t {
                    $($enum::$variant => $value,)+
                    $enum::Unknown(v) => v,
                }
            }
        }
    };
}

/// A bounds-checked cursor over input bytes: every read either succeeds or returns the
/// caller's error, so parsing never indexes input directly. A failed read consumes
/// nothing, except that [`opaque`](Self::opaque) and [`sub`](Self::sub) keep the length
/// they read (parsers stop at the first error). Length-prefixed parts are read as
/// sub-readers with the same errors, which must be used up exactly
/// ([`finish`](Self::finish)).
#[derive(Debug)]
pub struct Reader<'a, E> {
    bytes: &'a [u8],
    /// What a read past the end returns.
    short: E,
    /// What [`finish`](Self::finish) returns when bytes are left.
    trailing: E,
}

impl<'a, E: Copy> Reader<'a, E> {
    /// A reader of `bytes` that answers a read past the end with `short` and bytes left
    /// over at [`finish`](Self::finish) with `trailing`.
    pub fn new(bytes: &'a [u8], short: E, trailing: E) -> Self {
        Reader {
            bytes,
            short,
            trailing,
        }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], E> {
        if n > self.bytes.len() {
            return Err(self.short);
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], E> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, E> {
        self.array().map(u8::from_be_bytes)
    }

    pub fn u16(&mut self) -> Result<u16, E> {
        self.array().map(u16::from_be_bytes)
    }

    pub fn u32(&mut self) -> Result<u32, E> {
        self.array().map(u32::from_be_bytes)
    }

    pub fn u64(&mut self) -> Result<u64, E> {
        self.array().map(u64::from_be_bytes)
    }

    /// A big-endian unsigned integer of `width` (1..=4) bytes: a length prefix.
    pub fn uint(&mut self, width: usize) -> Result<usize, E> {
        let bytes = self.take(width)?;
        Ok(bytes.iter().fold(0, |acc, &b| acc << 8 | usize::from(b)))
    }

    /// `opaque x<0..2^(8*width)-1>`: the bytes after a `width`-byte length.
    pub fn opaque(&mut self, width: usize) -> Result<&'a [u8], E> {
        let len = self.uint(width)?;
        self.take(len)
    }

    /// A length-prefixed part as its own reader, with the same errors.
    pub fn sub(&mut self, width: usize) -> Result<Self, E> {
        let bytes = self.opaque(width)?;
        Ok(Reader::new(bytes, self.short, self.trailing))
    }

    /// Reads items until the input is used up; a partial last item is an error.
    pub fn items<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, E>,
    ) -> Result<Vec<T>, E> {
        let mut out = Vec::new();
        while !self.is_empty() {
            out.push(item(self)?);
        }
        Ok(out)
    }

    /// `T list<..>` with a `width`-byte length in bytes: [`items`](Self::items) of that
    /// part.
    pub fn list_with<T>(
        &mut self,
        width: usize,
        item: impl FnMut(&mut Self) -> Result<T, E>,
    ) -> Result<Vec<T>, E> {
        self.sub(width)?.items(item)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.bytes)
    }

    /// A structure (or fixed-layout field) must use up its input exactly.
    pub fn finish(&self) -> Result<(), E> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.trailing)
        }
    }
}

/// Where an encoder puts bytes: a [`Counter`] for the length, a [`Writer`] for the bytes,
/// so that one layout function serves both and they cannot disagree. Object-safe, so that
/// nested length prefixes can take closures (`nested`, on `dyn Sink`).
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);

    /// Records that a value does not fit its field (see [`Counter::fits`]).
    fn overflow(&mut self);

    fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }

    fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }

    fn u64(&mut self, v: u64) {
        self.put(&v.to_be_bytes());
    }

    /// A `width`-byte (1..=4) big-endian length; saturates (and records the overflow) when
    /// `len` does not fit, so that emit never panics.
    fn uint(&mut self, width: usize, len: usize) {
        let max = (1u64 << (8 * width)) - 1;
        let v = match u64::try_from(len) {
            Ok(v) if v <= max => v,
            _ => {
                self.overflow();
                max
            }
        };
        self.put(&v.to_be_bytes()[8 - width..]);
    }

    /// `opaque x<..>` with a `width`-byte length.
    fn opaque(&mut self, width: usize, bytes: &[u8]) {
        self.uint(width, bytes.len());
        self.put(bytes);
    }
}

impl dyn Sink + '_ {
    /// A part preceded by its `width`-byte length, written by `body` — which runs twice,
    /// once to count. Nesting is at most a handful deep, so the repeated counting is cheap.
    pub fn nested(&mut self, width: usize, body: &dyn Fn(&mut dyn Sink)) {
        let mut c = Counter::default();
        body(&mut c);
        if !c.fits {
            self.overflow();
        }
        self.uint(width, c.len);
        body(self);
    }
}

/// Counts bytes and remembers overflows.
#[derive(Debug)]
pub struct Counter {
    /// Bytes put so far.
    pub len: usize,
    /// False once a value did not fit its field: the bytes would not parse back.
    pub fits: bool,
}

impl Default for Counter {
    fn default() -> Self {
        Counter { len: 0, fits: true }
    }
}

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.len += bytes.len();
    }

    fn overflow(&mut self) {
        self.fits = false;
    }
}

/// Writes into a buffer sized by a [`Counter`] first; putting more than the buffer holds
/// panics, which the counting rules out.
#[derive(Debug)]
pub struct Writer<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl<'b> Writer<'b> {
    pub fn new(buf: &'b mut [u8]) -> Self {
        Writer { buf, at: 0 }
    }

    /// The part of the buffer not written yet (padding, for instance).
    pub fn into_rest(self) -> &'b mut [u8] {
        &mut self.buf[self.at..]
    }
}

impl Sink for Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.at + bytes.len();
        self.buf[self.at..end].copy_from_slice(bytes);
        self.at = end;
    }

    fn overflow(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::super::WireError;
    use super::*;

    const ERR: WireError = WireError::BadParam(7);

    #[test]
    fn reader_reads_big_endian_and_reports_the_chosen_error() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5, 6], ERR, ERR);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(0x0203));
        assert_eq!(r.u32(), Err(ERR));
        // A failed read consumes nothing.
        assert_eq!(r.remaining(), 3);
        assert_eq!(r.finish(), Err(ERR));
        assert_eq!(r.rest(), &[4, 5, 6]);
        assert_eq!(r.finish(), Ok(()));
        assert_eq!(r.u8(), Err(ERR));
    }

    #[test]
    fn reader_reports_short_and_trailing_apart() {
        let (short, trailing) = (WireError::Truncated, WireError::BadOrder);
        let mut r = Reader::new(&[0, 2, 3, 4, 0, 0, 1, 9, 2], short, trailing);
        assert_eq!(r.opaque(2), Ok(&[3, 4][..]));
        assert_eq!(r.uint(3), Ok(1));
        assert_eq!(r.finish(), Err(trailing));
        assert_eq!(r.u16(), Ok(0x0902));
        assert_eq!(r.u8(), Err(short));
        assert_eq!(r.finish(), Ok(()));
        // A length running past the input.
        let mut r = Reader::new(&[0, 5, 1], short, trailing);
        assert_eq!(r.opaque(2), Err(short));
        // A sub-reader keeps both errors.
        let mut r = Reader::new(&[2, 7, 8, 9], short, trailing);
        let mut sub = r.sub(1).unwrap();
        assert_eq!(sub.u8(), Ok(7));
        assert_eq!(sub.finish(), Err(trailing));
        assert_eq!(sub.u16(), Err(short));
        assert_eq!(r.rest(), &[9]);
    }

    #[test]
    fn reader_lists_reject_a_partial_item() {
        let items = |b: &[u8]| Reader::new(b, ERR, ERR).items(Reader::u16);
        assert_eq!(items(&[0, 1, 0, 2]), Ok(vec![1, 2]));
        assert_eq!(items(&[0, 1, 0]), Err(ERR));
        assert_eq!(Reader::new(&[], ERR, ERR).items(Reader::u32), Ok(vec![]));
        let list = |b: &[u8]| Reader::new(b, ERR, ERR).list_with(1, Reader::u16);
        assert_eq!(list(&[4, 0, 1, 0, 2, 0xff]), Ok(vec![1, 2]));
        assert_eq!(list(&[3, 0, 1, 0, 2]), Err(ERR));
        assert_eq!(list(&[5, 0, 1, 0, 2]), Err(ERR));
    }

    #[test]
    fn sinks_count_what_they_write() {
        let body = |w: &mut dyn Sink| {
            w.u8(1);
            w.u16(0x0203);
            w.opaque(1, &[4, 5]);
            w.nested(2, &|w| {
                w.u32(0x0607_0809);
                w.u64(10);
            });
        };
        let mut c = Counter::default();
        body(&mut c);
        assert_eq!((c.len, c.fits), (20, true));
        let mut buf = [0xee; 22];
        let mut w = Writer::new(&mut buf);
        body(&mut w);
        assert_eq!(w.into_rest(), &[0xee; 2]);
        assert_eq!(
            buf[..20],
            [1, 2, 3, 2, 4, 5, 0, 12, 6, 7, 8, 9, 0, 0, 0, 0, 0, 0, 0, 10]
        );
    }

    #[test]
    fn lengths_that_do_not_fit_saturate_and_are_recorded() {
        let mut c = Counter::default();
        c.uint(1, 255);
        assert!(c.fits);
        let long = [0; 256];
        let nest = |w: &mut dyn Sink| w.nested(2, &|w| w.opaque(1, &long));
        nest(&mut c);
        assert!(!c.fits, "an overflow inside a nested part counts");
        assert_eq!(c.len, 1 + 2 + 1 + 256);
        let mut buf = [0; 3];
        let mut w = Writer::new(&mut buf);
        w.uint(1, 256);
        w.uint(2, usize::MAX);
        assert_eq!(buf, [0xff, 0xff, 0xff]);
    }
}
