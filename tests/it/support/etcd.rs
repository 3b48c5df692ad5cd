//! A real etcd cluster for the cluster tests: Debian's `etcd` server, members on loopback ports the kernel chose, data in a temporary directory, stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// One member: its process (while running), ports and data directory.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// An etcd cluster of `n` members on 127.0.0.1.
pub struct EtcdCluster {
    pub members: Vec<Member>,
    dir: tempfile::TempDir,
    initial: String,
}

/// The etcd binary (Debian's `etcd-server` installs `/usr/bin/etcd`).
pub fn etcd_binary() -> PathBuf {
    PathBuf::from("/usr/bin/etcd")
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers writes.
    pub fn start(n: usize) -> EtcdCluster {
        assert!(
            etcd_binary().exists(),
            "etcd is not installed: scripts/test.sh installs Debian's etcd-server"
        );
        let dir = tempfile::tempdir().unwrap();
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members,
            dir,
            initial,
        };
        for i in 0..n {
            cluster.start_member(i);
        }
        cluster.wait_ready(Duration::from_secs(30));
        cluster
    }

    /// The client URLs, for `[cluster] etcd`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// The running members' process ids (for CPU accounting; `benches/cluster.rs`).
    #[allow(dead_code)]
    pub fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|m| m.child.as_ref().map(Child::id))
            .collect()
    }

    /// Starts member `i` (again, after `stop_member`), with its data kept.
    pub fn start_member(&mut self, i: usize) {
        let data = self.dir.path().join(&self.members[i].name);
        let fresh = !data.exists();
        let m = &mut self.members[i];
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name))).unwrap();
        let child = Command::new(etcd_binary())
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen-client-urls")
            .arg(format!("http://127.0.0.1:{}", m.client_port))
            .arg("--advertise-client-urls")
            .arg(format!("http://127.0.0.1:{}", m.client_port))
            .arg("--listen-peer-urls")
            .arg(format!("http://127.0.0.1:{}", m.peer_port))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://127.0.0.1:{}", m.peer_port))
            .arg("--initial-cluster")
            .arg(&self.initial)
            .arg("--initial-cluster-state")
            .arg(if fresh { "new" } else { "existing" })
            .arg("--initial-cluster-token")
            .arg(format!("switchboard-test-{}", std::process::id()))
            // Short elections keep the tests short; loopback has no latency to allow for.
            .arg("--heartbeat-interval")
            .arg("50")
            .arg("--election-timeout")
            .arg("500")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        m.child = Some(child);
    }

    /// Kills member `i` (SIGKILL).
    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until a write through any member succeeds.
    pub fn wait_ready(&self, within: Duration) {
        let start = Instant::now();
        loop {
            if self.members.iter().any(|m| put_ready(m.client_port)) {
                return;
            }
            assert!(
                start.elapsed() < within,
                "etcd did not become ready within {within:?}; logs in {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// One write through the JSON gateway, by hand: true when etcd committed it.
fn put_ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_secs(1),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let body = r#"{"key":"cmVhZHk=","value":"MQ=="}"#;
    let req = format!(
        "POST /v3/kv/put HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200") && out.contains("revision")
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }
}
