//! The files a configuration was loaded from, byte for byte, in load order: what the configuration history stores.
//!
//! `Config::version` is the SHA-256 of every file the loader read, concatenated in the order
//! it read them (the main file, the service files, each `ca_file` where a check names it).
//! Keeping the same files in the same order lets anyone recompute the version from what the
//! store kept, so the content of a version is as tamper-evident as the audit records that
//! name it. A file read more than once (one `ca_file` named by many checks) is kept once and
//! referred to by its SHA-256.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One read of a file: where, and the SHA-256 (hex) of the bytes read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRead {
    /// As the loader named it (relative to the main file's directory when it is under it).
    pub path: PathBuf,
    pub sha256: String,
}

/// Every read of a configuration, in order, and the distinct contents by SHA-256.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigFiles {
    pub reads: Vec<FileRead>,
    pub contents: BTreeMap<String, Arc<[u8]>>,
}

impl ConfigFiles {
    /// Records one read of `path` (shown relative to `base` when it lies under it).
    pub fn add(&mut self, base: &Path, path: &Path, bytes: &[u8]) {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let shown = path.strip_prefix(base).unwrap_or(path).to_path_buf();
        self.contents
            .entry(sha256.clone())
            .or_insert_with(|| Arc::from(bytes));
        self.reads.push(FileRead {
            path: shown,
            sha256,
        });
    }

    /// SHA-256 (hex) of every read's bytes in order: `Config::version` when nothing is
    /// missing. `None` when a read's content is not here.
    pub fn version(&self) -> Option<String> {
        let mut h = Sha256::new();
        for r in &self.reads {
            h.update(self.contents.get(&r.sha256)?);
        }
        Some(hex::encode(h.finalize()))
    }

    /// Each distinct path once, in the order first read, with its content's SHA-256.
    pub fn distinct(&self) -> Vec<&FileRead> {
        let mut seen = std::collections::HashSet::new();
        self.reads
            .iter()
            .filter(|r| seen.insert((&r.path, &r.sha256)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_hash_of_every_read_in_order_and_duplicates_are_kept_once() {
        let mut f = ConfigFiles::default();
        let base = Path::new("/etc/sb");
        f.add(base, Path::new("/etc/sb/switchboard.toml"), b"main");
        f.add(base, Path::new("/etc/sb/ca.pem"), b"ca");
        f.add(base, Path::new("/elsewhere/ca.pem"), b"ca");
        f.add(base, Path::new("/etc/sb/ca.pem"), b"ca");
        assert_eq!(f.contents.len(), 2);
        assert_eq!(f.reads[0].path, Path::new("switchboard.toml"));
        assert_eq!(f.reads[2].path, Path::new("/elsewhere/ca.pem"));
        assert_eq!(
            f.version().unwrap(),
            hex::encode(Sha256::digest(b"maincacaca"))
        );
        assert_eq!(f.distinct().len(), 3);
    }
}
