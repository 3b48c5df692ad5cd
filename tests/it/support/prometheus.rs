//! A real Prometheus for the tests: scraping daemons every second with the shipped alert rules, every `for:` shortened to 2s so a test waits seconds, not minutes.

use super::daemon::{free_port, wait_until};
use super::repo;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Real Prometheus with its storage in a temp dir; killed on drop.
pub struct Prometheus {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping the daemons on `switchboard_ports` every second.
    pub fn start(dir: &Path, switchboard_ports: &[u16]) -> Prometheus {
        // The shipped rules with every `for:` shortened to 2s.
        let shipped = std::fs::read_to_string(repo("alerts/switchboard.rules.yml"))
            .expect("alerts/switchboard.rules.yml");
        let for_re = regex::Regex::new(r"(?m)^(\s+)for: \S+$").expect("regex");
        assert!(for_re.is_match(&shipped), "the shipped rules use `for:`");
        let rules = for_re.replace_all(&shipped, "${1}for: 2s");
        std::fs::write(dir.join("rules.yml"), rules.as_bytes()).expect("write rules");
        let targets = switchboard_ports
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - rules.yml\n\
                 scrape_configs:\n  - job_name: switchboard\n    honor_labels: true\n    \
                 static_configs:\n      - targets: [{targets}]\n"
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(&log).expect("prometheus log"),
            ))
            .spawn()
            .expect("prometheus is required: run ./scripts/test.sh (Debian's prometheus package)");
        let p = Prometheus {
            child,
            base: format!("127.0.0.1:{port}"),
            log,
        };
        wait_until("prometheus ready", Duration::from_secs(60), || {
            p.get("/-/ready").map(|(s, _)| s == 200).unwrap_or(false)
        });
        p
    }

    /// HTTP/1.0 GET (no chunked encoding to undo); returns (status, body).
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(&self.base)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.base)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok((status, body.to_string()))
    }

    /// A Prometheus HTTP API call; panics with the error Prometheus gave.
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        let url = format!("{path}?{}", query.join("&"));
        let (status, body) = self.get(&url).expect("prometheus API");
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{url}: {status} not JSON ({e}): {body}"));
        assert_eq!(v["status"], "success", "{url}: {body}");
        v
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter value.
fn encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Prometheus {
    /// The alerts firing now, as (alertname, labels).
    pub fn firing(&self) -> Vec<(String, serde_json::Value)> {
        let v = self.api("/api/v1/alerts", &[]);
        v["data"]["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|a| a["state"] == "firing")
                    .map(|a| {
                        (
                            a["labels"]["alertname"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                            a["labels"].clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
