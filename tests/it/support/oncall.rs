//! Shared by the on-call tests (`oncall_*`): repository paths, YAML read through
//! python3's PyYAML (no YAML crate in the build), promtool, and the Grafana dashboards' queries.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use super::repo;

/// Parses a YAML file into JSON with python3 and PyYAML (installed by scripts/test.sh).
pub fn yaml(path: &Path) -> serde_json::Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml\n\
             with open(sys.argv[1]) as f:\n    json.dump(yaml.safe_load(f), sys.stdout)",
        ])
        .arg(path)
        .output()
        .expect("python3 is required: run ./scripts/test.sh");
    assert!(
        out.status.success(),
        "{} is not valid YAML (or PyYAML is missing: run ./scripts/test.sh):\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python3 printed JSON")
}

/// Runs promtool with `stdin`; returns (success, stdout + stderr).
pub fn promtool(args: &[&str], dir: &Path, stdin: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "promtool is required: run ./scripts/test.sh to install Debian's prometheus package",
        );
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The shipped dashboards: (file name, parsed JSON), sorted by name.
pub fn dashboards() -> Vec<(String, serde_json::Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("grafana/dashboards"))
        .expect("grafana/dashboards")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read dashboard");
            let v = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (
                p.file_name()
                    .expect("file name")
                    .to_string_lossy()
                    .into_owned(),
                v,
            )
        })
        .collect()
}

/// Every panel of a dashboard, rows' nested panels included.
pub fn panels(dashboard: &serde_json::Value) -> Vec<&serde_json::Value> {
    fn walk<'a>(list: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// One query of one panel.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    pub dashboard: String,
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
    /// Grafana runs it as an instant query (tables, stats) rather than over a range.
    pub instant: bool,
}

/// Every Prometheus query of every panel of every shipped dashboard.
pub fn panel_queries() -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for (file, d) in dashboards() {
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push(PanelQuery {
                    dashboard: file.clone(),
                    panel: p["title"].as_str().unwrap_or("").to_string(),
                    ref_id: t["refId"].as_str().unwrap_or("").to_string(),
                    expr: t["expr"].as_str().unwrap_or("").to_string(),
                    instant: t["instant"].as_bool().unwrap_or(false),
                });
            }
        }
    }
    out
}

/// The `switchboard_*` and `probe_*` metric names an expression mentions.
pub fn metric_names(expr: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\b(?:switchboard|probe)_[a-z0-9_]+").expect("regex");
    let mut names: Vec<String> = re.find_iter(expr).map(|m| m.as_str().to_string()).collect();
    names.sort();
    names.dedup();
    names
}

/// The runbook file a runbook URL names (`…/runbooks/x.md#anchor` -> `runbooks/x.md`).
pub fn runbook_file(url: &str) -> Option<String> {
    let at = url.find("/runbooks/")?;
    let rest = &url[at + 1..];
    let end = rest.find(['#', '?']).unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

/// The base URL every runbook link starts with (alerts and dashboards).
pub const RUNBOOK_BASE: &str =
    "https://git.example.com/support/switchboard/src/branch/main/runbooks/";
