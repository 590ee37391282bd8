//! Writes values in the byte layout that `arbitrary`'s derived
//! implementations read back, so that seed files decode to the inputs they
//! were made from (`examples/gen_corpus.rs` checks every one).
//!
//! The layout (arbitrary 1.x): integers little-endian in their size; `bool`
//! one byte, odd is true; an enum variant `i` of `n` as a little-endian u32
//! `v` with `(v * n) >> 32 == i`; a `Vec` as a true byte before each
//! element and a false byte after the last (at the very end of the input
//! the false byte may be left out); a `&[u8]` that is the last field of the
//! input takes all the bytes left, as they are.

/// Builds a seed file.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn new() -> Writer {
        Writer(Vec::new())
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(v as u8)
    }

    /// Variant `index` of an enum with `count` variants.
    pub fn variant(&mut self, index: u32, count: u32) -> &mut Self {
        assert!(index < count);
        let v = ((u64::from(index) << 32).div_ceil(u64::from(count))) as u32;
        debug_assert_eq!((u64::from(v) * u64::from(count)) >> 32, u64::from(index));
        self.u32(v)
    }

    /// A `Vec<u8>` that is not the last field.
    pub fn bytes_vec(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            self.bool(true).u8(b);
        }
        self.bool(false)
    }

    /// A `Vec<T>` that is not the last field, each element written by `f`.
    pub fn vec<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) -> &mut Self {
        for item in items {
            self.bool(true);
            f(self, item);
        }
        self.bool(false)
    }

    /// A `Vec<T>` that is the last field: no closing false byte.
    pub fn vec_rest<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) -> &mut Self {
        for item in items {
            self.bool(true);
            f(self, item);
        }
        self
    }

    /// A `&[u8]` that is the last field.
    pub fn rest(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }
}

/// A list element of a fuzz input, written as `arbitrary` reads it back.
pub trait Item {
    fn write(&self, w: &mut Writer);
}

impl Item for u16 {
    fn write(&self, w: &mut Writer) {
        w.u16(*self);
    }
}
