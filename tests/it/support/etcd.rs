//! A real etcd cluster for the cluster tests: the library's `demo::etcd::LocalEtcd` (Debian's `etcd` server, members on loopback ports the kernel chose) with its data in a temporary directory, stopped when dropped.

use switchboard::demo::etcd::{etcd_binary, LocalEtcd};

/// An etcd cluster of `n` members on 127.0.0.1; the members are killed before the
/// directory is removed (fields drop in order).
pub struct EtcdCluster {
    etcd: LocalEtcd,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers writes.
    pub fn start(n: usize) -> EtcdCluster {
        let binary = etcd_binary()
            .expect("etcd is not installed: scripts/test.sh installs Debian's etcd-server");
        let dir = tempfile::tempdir().unwrap();
        let etcd = LocalEtcd::start(&binary, n, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        EtcdCluster { etcd, _dir: dir }
    }

    /// The client URLs, for `[cluster] etcd`.
    pub fn endpoints(&self) -> Vec<String> {
        self.etcd.endpoints()
    }

    /// The running members' process ids (for CPU accounting; `benches/cluster.rs`).
    #[allow(dead_code)]
    pub fn pids(&self) -> Vec<u32> {
        self.etcd.members.iter().filter_map(|m| m.pid()).collect()
    }

    /// Member `i`'s client port (for reading its `/metrics`; `benches/cluster.rs`).
    #[allow(dead_code)]
    pub fn client_port(&self, i: usize) -> u16 {
        self.etcd.members[i].client_port
    }

    /// Debian's etcd binary (for the bench's version line); `/usr/bin/etcd` when not found.
    #[allow(dead_code)]
    pub fn binary() -> std::path::PathBuf {
        etcd_binary().unwrap_or_else(|| std::path::PathBuf::from("/usr/bin/etcd"))
    }

    /// Starts member `i` (again, after `stop_member`), with its data kept.
    pub fn start_member(&mut self, i: usize) {
        self.etcd.start_member(i).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Kills member `i` (SIGKILL).
    pub fn stop_member(&mut self, i: usize) {
        self.etcd.stop_member(i);
    }
}
