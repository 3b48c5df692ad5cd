//! A minimal ustar writer, gzip-compressed: the evidence bundle is one `.tar.gz` that `tar`, Python's `tarfile` or any archive tool opens.
//!
//! Only what the bundle needs: regular files with a mode and a modification time, under
//! paths of at most 100 bytes (checked, so a long name is an error, never a silently cut
//! one). Written by hand rather than with the `tar` crate because the format for that subset
//! is a 512-byte header with a checksum per file and two zero blocks at the end; the crate
//! would bring file-system metadata handling (xattrs, ownership lookups) the bundle does not
//! use. Compression is `flate2`, already in the tree.

use std::io::Write;

/// One file of the archive.
pub struct Entry {
    /// Relative path inside the archive, `/`-separated, at most 100 bytes.
    pub path: String,
    pub bytes: Vec<u8>,
    /// Seconds since the epoch.
    pub mtime: u64,
}

/// Why an archive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("archive path {0:?} is longer than 100 bytes")]
    PathTooLong(String),
    #[error("archive path {0:?} must be relative, without `..`")]
    BadPath(String),
    #[error("compressing the archive: {0}")]
    Io(#[from] std::io::Error),
}

const BLOCK: usize = 512;

/// An octal field of `len` bytes: digits, NUL-terminated.
fn octal(field: &mut [u8], value: u64) {
    let digits = format!("{value:0width$o}", width = field.len() - 1);
    field[..digits.len()].copy_from_slice(digits.as_bytes());
    field[field.len() - 1] = 0;
}

fn header(e: &Entry) -> Result<[u8; BLOCK], TarError> {
    let path = e.path.as_bytes();
    if path.len() > 100 {
        return Err(TarError::PathTooLong(e.path.clone()));
    }
    if e.path.starts_with('/') || e.path.split('/').any(|p| p == ".." || p.is_empty()) {
        return Err(TarError::BadPath(e.path.clone()));
    }
    let mut h = [0u8; BLOCK];
    h[..path.len()].copy_from_slice(path);
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], e.bytes.len() as u64);
    octal(&mut h[136..148], e.mtime);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces, then written as six octal
    // digits, a NUL and a space.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let digits = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(digits.as_bytes());
    Ok(h)
}

/// The archive of `entries`, in order, gzip-compressed.
pub fn tar_gz(entries: &[Entry]) -> Result<Vec<u8>, TarError> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for e in entries {
        gz.write_all(&header(e)?)?;
        gz.write_all(&e.bytes)?;
        let pad = (BLOCK - e.bytes.len() % BLOCK) % BLOCK;
        gz.write_all(&vec![0u8; pad])?;
    }
    gz.write_all(&[0u8; 2 * BLOCK])?;
    Ok(gz.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_name_size_and_a_valid_checksum() {
        let e = Entry {
            path: "bundle/README.txt".into(),
            bytes: b"hello".to_vec(),
            mtime: 1_700_000_000,
        };
        let h = header(&e).unwrap();
        assert_eq!(&h[..17], b"bundle/README.txt");
        assert_eq!(&h[124..136], b"00000000005\0");
        let mut copy = h;
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(
            std::str::from_utf8(&h[148..154]).unwrap(),
            format!("{sum:06o}")
        );
        assert!(matches!(
            header(&Entry {
                path: "a/".repeat(60),
                bytes: vec![],
                mtime: 0
            }),
            Err(TarError::PathTooLong(_))
        ));
        assert!(matches!(
            header(&Entry {
                path: "../x".into(),
                bytes: vec![],
                mtime: 0
            }),
            Err(TarError::BadPath(_))
        ));
    }
}
