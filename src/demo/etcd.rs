//! A local etcd cluster on loopback: Debian's `etcd` members on ports the kernel chose, data under a given directory; `switchboard demo --cluster` and the cluster tests start it.
//!
//! The demo's members run in process groups of their own (`spawn_isolated`), so a Ctrl-C in
//! the terminal reaches the demo alone, which stops its children in order (the Switchboard
//! nodes first, while etcd still answers their last writes). The tests' members stay in the
//! test's group (`start`), so an interrupted test run takes them along. Members are killed
//! (SIGKILL) when the cluster is dropped: their data is scratch.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Why the local cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LocalEtcdError {
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("etcd set-up in {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
    #[error("etcd did not accept a write within {within:?}; its logs are in {dir}")]
    NotReady { within: Duration, dir: String },
}

/// One member: its name, ports and process (while running).
pub struct Member {
    pub name: String,
    pub client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl Member {
    /// The member's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// An etcd cluster of a few members on 127.0.0.1.
pub struct LocalEtcd {
    pub members: Vec<Member>,
    binary: PathBuf,
    dir: PathBuf,
    initial: String,
    /// Each member in a process group of its own.
    isolated: bool,
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The etcd server binary: `etcd` on the `PATH`, else Debian's `/usr/bin/etcd`; `None` when
/// neither exists (`apt-get install etcd-server`).
pub fn etcd_binary() -> Option<PathBuf> {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("etcd")).collect())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(std::iter::once(PathBuf::from("/usr/bin/etcd")))
        .find(|p| p.is_file())
}

impl LocalEtcd {
    /// Starts `n` members of `binary`, each in a process group of its own, with their data
    /// and logs under `dir` (created); does not wait for them: see `ready` and `wait_ready`.
    pub fn spawn_isolated(
        binary: &Path,
        n: usize,
        dir: &Path,
    ) -> Result<LocalEtcd, LocalEtcdError> {
        LocalEtcd::spawn(binary, n, dir, true)
    }

    /// Starts `n` members in the caller's process group and waits (up to 30 s) until the
    /// cluster answers writes.
    pub fn start(binary: &Path, n: usize, dir: &Path) -> Result<LocalEtcd, LocalEtcdError> {
        let cluster = LocalEtcd::spawn(binary, n, dir, false)?;
        cluster.wait_ready(Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn spawn(
        binary: &Path,
        n: usize,
        dir: &Path,
        isolated: bool,
    ) -> Result<LocalEtcd, LocalEtcdError> {
        let io = |source| LocalEtcdError::Io {
            dir: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let members = (0..n)
            .map(|i| {
                Ok(Member {
                    name: format!("m{i}"),
                    client_port: free_port()?,
                    peer_port: free_port()?,
                    child: None,
                })
            })
            .collect::<std::io::Result<Vec<Member>>>()
            .map_err(io)?;
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = LocalEtcd {
            members,
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            initial,
            isolated,
        };
        for i in 0..n {
            cluster.start_member(i)?;
        }
        Ok(cluster)
    }

    /// The client URLs, for `[cluster] etcd`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// Where the members keep their data and logs (`NAME/`, `NAME.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts member `i` (again, after `stop_member`), with its data kept.
    pub fn start_member(&mut self, i: usize) -> Result<(), LocalEtcdError> {
        let data = self.dir.join(&self.members[i].name);
        let fresh = !data.exists();
        let m = &mut self.members[i];
        let log =
            std::fs::File::create(self.dir.join(format!("{}.log", m.name))).map_err(|source| {
                LocalEtcdError::Io {
                    dir: self.dir.display().to_string(),
                    source,
                }
            })?;
        let mut command = Command::new(&self.binary);
        if self.isolated {
            command.process_group(0);
        }
        let child = command
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
            .arg(format!("switchboard-local-{}", std::process::id()))
            // Short elections: loopback has no latency to allow for.
            .arg("--heartbeat-interval")
            .arg("50")
            .arg("--election-timeout")
            .arg("500")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| LocalEtcdError::Spawn {
                binary: self.binary.display().to_string(),
                source,
            })?;
        m.child = Some(child);
        Ok(())
    }

    /// Kills member `i` (SIGKILL) and reaps it.
    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A member that exited by itself since it was started: its name, pid and status (the
    /// member is forgotten, so each exit is reported once).
    pub fn exited(&mut self) -> Option<(String, u32, ExitStatus)> {
        self.members.iter_mut().find_map(|m| {
            let child = m.child.as_mut()?;
            let status = child.try_wait().ok()??;
            let pid = child.id();
            m.child = None;
            Some((m.name.clone(), pid, status))
        })
    }

    /// True when a write through some member succeeds now.
    pub fn ready(&self) -> bool {
        self.members.iter().any(|m| put_ready(m.client_port))
    }

    /// Waits until a write through any member succeeds.
    pub fn wait_ready(&self, within: Duration) -> Result<(), LocalEtcdError> {
        let start = Instant::now();
        loop {
            if self.ready() {
                return Ok(());
            }
            if start.elapsed() >= within {
                return Err(LocalEtcdError::NotReady {
                    within,
                    dir: self.dir.display().to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// One write through the JSON gateway, by hand (no runtime needed): true when etcd
/// committed it.
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

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }
}
