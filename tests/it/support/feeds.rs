//! A loopback HTTP server that plays vendors' status feeds and other recorded-shape pages:
//! each path answers what the test set (status, headers, body, often a fixture from
//! `testdata/vendor/`), changeable while the daemon polls it, and counts its requests.
//! It stops when dropped.

use super::http;
use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What one path answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Default)]
struct State {
    replies: HashMap<String, Reply>,
    hits: HashMap<String, usize>,
}

pub struct Feeds {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

/// A fixture of `testdata/vendor/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = super::repo("testdata/vendor").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl Feeds {
    pub fn start() -> Feeds {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || answer(&mut conn, &st));
            }
        });
        Feeds { addr, state, stop }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `path` answers `status` with a JSON `body`.
    pub fn set(&self, path: &str, status: u16, body: impl Into<Vec<u8>>) {
        self.set_reply(
            path,
            Reply {
                status,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: body.into(),
            },
        );
    }

    /// `path` answers 200 with the fixture `testdata/vendor/NAME`.
    pub fn set_fixture(&self, path: &str, name: &str) {
        self.set(path, 200, fixture(name));
    }

    pub fn set_reply(&self, path: &str, reply: Reply) {
        let mut s = self.state.lock().expect("feeds");
        s.replies.insert(path.to_string(), reply);
    }

    /// Requests `path` received so far.
    pub fn hits(&self, path: &str) -> usize {
        let s = self.state.lock().expect("feeds");
        s.hits.get(path).copied().unwrap_or(0)
    }
}

impl Drop for Feeds {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn answer(conn: &mut TcpStream, state: &Mutex<State>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(req) = http::read(conn) else { return };
    let path = req.path.split('?').next().unwrap_or("").to_string();
    let reply = {
        let mut s = state.lock().expect("feeds");
        *s.hits.entry(path.clone()).or_insert(0) += 1;
        s.replies.get(&path).cloned()
    };
    let reply = reply.unwrap_or(Reply {
        status: 404,
        headers: Vec::new(),
        body: b"not found".to_vec(),
    });
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&reply.body);
    let _ = conn.flush();
}
