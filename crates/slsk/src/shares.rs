//! Shared-file entries and directory lists, as carried by peer messages 5, 9 and 37.
//!
//! ```text
//! FILE      = u8 code(=1), str filename, u64 size, str extension, u32 nattrs, (u32 attr_code, u32 value)*nattrs
//! DIRECTORY = str path, u32 nfiles, FILE*nfiles
//! ```
//!
//! Virtual paths use `\` as separator (`@@lvhkp\Album\Kevin_MacLeod-Galway.mp3`); names are
//! kept exactly as sent. SoulseekQt and Nicotine+ send an empty extension, aioslsk fills it.

use crate::limits::{MAX_FILE_ATTRIBUTES, MAX_LIST_ITEMS};
use crate::wire::{Reader, Result, Writer};

/// File attribute codes (the `attr_code` of a [`FileAttribute`]).
pub mod attr {
    /// Bitrate in kbps.
    pub const BITRATE: u32 = 0;
    /// Duration in seconds.
    pub const DURATION: u32 = 1;
    /// Variable bitrate: 0 or 1.
    pub const VBR: u32 = 2;
    /// Encoder (unused).
    pub const ENCODER: u32 = 3;
    /// Sample rate in Hz.
    pub const SAMPLE_RATE: u32 = 4;
    /// Bit depth.
    pub const BIT_DEPTH: u32 = 5;
}

/// A file's audio attributes, each when given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AudioInfo {
    /// Bitrate in kbps.
    pub bitrate: Option<u32>,
    /// Duration in seconds.
    pub duration: Option<u32>,
    /// Variable bitrate.
    pub vbr: Option<bool>,
    /// Sample rate in Hz.
    pub sample_rate: Option<u32>,
    /// Bits per sample.
    pub bit_depth: Option<u32>,
}

/// One `(u32 code, u32 value)` attribute of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileAttribute {
    /// What the value means (see [`attr`]).
    pub code: u32,
    /// The value.
    pub value: u32,
}

/// One `FILE` entry.
///
/// The leading code byte is always written as 1 and not checked on reading (Nicotine+ skips
/// it). Attributes are kept in wire order, unknown codes included.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SharedFile {
    /// File name: a full virtual path in search results, a bare name in directory lists.
    pub filename: String,
    /// Size in bytes.
    pub size: u64,
    /// Extension without the dot, or empty.
    pub extension: String,
    /// Attributes in wire order.
    pub attributes: Vec<FileAttribute>,
}

impl SharedFile {
    /// A file with no extension field and no attributes.
    pub fn new(filename: impl Into<String>, size: u64) -> Self {
        SharedFile { filename: filename.into(), size, extension: String::new(), attributes: Vec::new() }
    }

    /// Its audio attributes (those the sharer gave).
    pub fn audio(&self) -> AudioInfo {
        AudioInfo {
            bitrate: self.attribute(attr::BITRATE),
            duration: self.attribute(attr::DURATION),
            vbr: self.attribute(attr::VBR).map(|v| v != 0),
            sample_rate: self.attribute(attr::SAMPLE_RATE),
            bit_depth: self.attribute(attr::BIT_DEPTH),
        }
    }

    /// The first attribute with this code.
    pub fn attribute(&self, code: u32) -> Option<u32> {
        self.attributes.iter().find(|a| a.code == code).map(|a| a.value)
    }

    /// Bitrate in kbps, if given.
    pub fn bitrate(&self) -> Option<u32> {
        self.attribute(attr::BITRATE)
    }

    /// Duration in seconds, if given.
    pub fn duration(&self) -> Option<u32> {
        self.attribute(attr::DURATION)
    }

    /// Smallest possible encoding: code, empty name, size, empty extension, no attributes.
    pub(crate) const MIN_WIRE_SIZE: usize = 1 + 4 + 8 + 4 + 4;

    /// Read one `FILE`.
    ///
    /// A size whose top byte is `0xff` is read as its low 32 bits, as Nicotine+ does: Soulseek
    /// NS sends sizes above 2 GiB as a `u32` followed by `0xffffffff`. No real file is 2^56
    /// bytes, so nothing is lost.
    pub fn read(r: &mut Reader<'_>) -> Result<SharedFile> {
        let _code = r.u8()?;
        let filename = r.str()?;
        let raw = r.u64()?;
        let size = if raw >> 56 == 0xff { raw & 0xffff_ffff } else { raw };
        let extension = r.str()?;
        let attributes = r.list(MAX_FILE_ATTRIBUTES, 8, |r| Ok(FileAttribute { code: r.u32()?, value: r.u32()? }))?;
        Ok(SharedFile { filename, size, extension, attributes })
    }

    /// Write one `FILE`.
    pub fn write(&self, w: &mut Writer) {
        w.u8(1).str(&self.filename).u64(self.size).str(&self.extension);
        w.list(&self.attributes, |w, a| {
            w.u32(a.code).u32(a.value);
        });
    }
}

/// A directory and the files directly in it: `str path, u32 nfiles, FILE*nfiles`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SharedDirectory {
    /// Virtual directory path, `\`-separated.
    pub path: String,
    /// Files in it (names without the directory).
    pub files: Vec<SharedFile>,
}

impl SharedDirectory {
    /// Read one directory.
    pub fn read(r: &mut Reader<'_>) -> Result<SharedDirectory> {
        Ok(SharedDirectory { path: r.str()?, files: read_files(r)? })
    }

    /// Write one directory.
    pub fn write(&self, w: &mut Writer) {
        w.str(&self.path);
        write_files(w, &self.files);
    }
}

/// `u32 n, FILE*n`.
pub fn read_files(r: &mut Reader<'_>) -> Result<Vec<SharedFile>> {
    r.list(MAX_LIST_ITEMS, SharedFile::MIN_WIRE_SIZE, SharedFile::read)
}

/// `u32 n, FILE*n`.
pub fn write_files(w: &mut Writer, files: &[SharedFile]) {
    w.list(files, |w, f| f.write(w));
}

/// `u32 n, DIRECTORY*n`.
pub fn read_directories(r: &mut Reader<'_>) -> Result<Vec<SharedDirectory>> {
    r.list(MAX_LIST_ITEMS, 8, SharedDirectory::read)
}

/// `u32 n, DIRECTORY*n`.
pub fn write_directories(w: &mut Writer, dirs: &[SharedDirectory]) {
    w.list(dirs, |w, d| d.write(w));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_layout() {
        let f = SharedFile {
            filename: "a.mp3".into(),
            size: 254_415,
            extension: "mp3".into(),
            attributes: vec![FileAttribute { code: 0, value: 128 }, FileAttribute { code: 1, value: 15 }],
        };
        let mut w = Writer::new();
        f.write(&mut w);
        let b = w.into_inner();
        assert_eq!(
            b,
            [
                &[1u8][..],
                b"\x05\0\0\0a.mp3",
                &254_415u64.to_le_bytes(),
                b"\x03\0\0\0mp3",
                b"\x02\0\0\0\0\0\0\0\x80\0\0\0\x01\0\0\0\x0f\0\0\0"
            ]
            .concat()
        );
        let back = SharedFile::read(&mut Reader::new(&b)).unwrap();
        assert_eq!(back, f);
        assert_eq!(back.bitrate(), Some(128));
        assert_eq!(back.duration(), Some(15));
        assert_eq!(back.attribute(attr::SAMPLE_RATE), None);
    }

    #[test]
    fn soulseek_ns_large_size_quirk() {
        let mut w = Writer::new();
        SharedFile::new("big", 0xffff_ffff_8000_0000).write(&mut w);
        let b = w.into_inner();
        assert_eq!(SharedFile::read(&mut Reader::new(&b)).unwrap().size, 0x8000_0000);
    }

    #[test]
    fn any_code_byte_is_accepted() {
        let mut w = Writer::new();
        SharedFile::new("x", 1).write(&mut w);
        let mut b = w.into_inner();
        b[0] = 0;
        assert_eq!(SharedFile::read(&mut Reader::new(&b)).unwrap(), SharedFile::new("x", 1));
    }
}
