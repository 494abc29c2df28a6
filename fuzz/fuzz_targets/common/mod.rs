//! Helpers shared by the fuzz targets.
#![allow(dead_code)]

/// Reads numbers and slices from the fuzzer's input; past the end everything reads as zero
/// (or empty), so every input is a valid program.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        (self.u32() as u64) | ((self.u32() as u64) << 32)
    }

    /// A number whose width the input picks: a tag byte, then 1, 2, 4 or 8 bytes. Small
    /// values are as easy to reach as huge ones.
    pub fn number(&mut self) -> u64 {
        match self.u8() % 4 {
            0 => self.u8() as u64,
            1 => self.u16() as u64,
            2 => self.u32() as u64,
            _ => self.u64(),
        }
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }

    /// A chunk whose length is given by one byte (0..=255).
    pub fn chunk(&mut self) -> &'a [u8] {
        let n = self.u8() as usize;
        self.take(n)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}

/// Cut points for `len` bytes taken from the input: `count` two-byte offsets, sorted.
pub fn cuts(input: &mut Input<'_>, count: usize, len: usize) -> Vec<usize> {
    let mut c: Vec<usize> = (0..count).map(|_| input.u16() as usize % (len + 1)).collect();
    c.sort_unstable();
    c
}

/// `data` split at `cuts` (which must be sorted and `<= data.len()`); may yield empty chunks.
pub fn split_at_cuts<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut prev = 0;
    for &c in cuts.iter().chain(std::iter::once(&data.len())) {
        out.push(&data[prev..c]);
        prev = c;
    }
    out
}
