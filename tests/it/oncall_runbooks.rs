//! The runbooks tell on-call only what exists: every `switchboard` command and flag in a
//! ```sh block is a real CLI command of the built binary, every API call's path and method is
//! in the OpenAPI document the running daemon serves (or its public HTTP table), and every
//! runbook link (alert rules, service files, dashboards, runbooks themselves) names a file.

use crate::support::daemon;
use crate::support::oncall;

use daemon::{get, write_config, Daemon, Target, FILE_MAIL};
use oncall::{dashboards, panels, repo, runbook_file, yaml, RUNBOOK_BASE};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Public paths of design.md's HTTP table (and the contract's reload endpoint), which need no
/// OpenAPI entry: (method, path template).
const PUBLIC: &[(&str, &str)] = &[
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/status"),
    ("GET", "/api/v2/summary.json"),
    ("GET", "/api/v2/status.json"),
    ("GET", "/api/v2/components.json"),
    ("GET", "/api/v2/incidents.json"),
    ("GET", "/api/v2/incidents/unresolved.json"),
    ("GET", "/api/v2/scheduled-maintenances.json"),
    ("GET", "/history.atom"),
    ("GET", "/go/{route}"),
    ("GET", "/api/v1/routes"),
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/-/reload"),
];

/// Runbooks for the failure scenarios on-call must find (besides one per alert and service).
const SCENARIOS: &[&str] = &[
    "service-failed-over.md",
    "outage-no-healthy-backup.md",
    "flapping.md",
    "email-not-going-out.md",
    "status-page-wrong.md",
    "running-a-drill.md",
    "audit-export.md",
    "restore-database.md",
];

fn runbooks() -> Vec<(String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("runbooks"))
        .expect("runbooks/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).expect("read runbook"),
            )
        })
        .collect()
}

/// Every shell command line of the runbooks' ```sh blocks: (runbook, line), continuation
/// lines joined, each part of a pipeline or `&&` chain separately.
fn commands() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, text) in runbooks() {
        let mut in_sh = false;
        let mut pending = String::new();
        for line in text.lines() {
            let t = line.trim();
            if !in_sh {
                in_sh = t == "```sh";
                continue;
            }
            if t == "```" {
                in_sh = false;
                continue;
            }
            if let Some(head) = t.strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            pending.push_str(t);
            let full = std::mem::take(&mut pending);
            if full.is_empty() || full.starts_with('#') {
                continue;
            }
            for part in full.split(" | ").flat_map(|p| p.split(" && ")) {
                out.push((name.clone(), part.trim().to_string()));
            }
        }
    }
    assert!(out.len() > 40, "runbooks have their commands");
    out
}

/// Splits a command line into words as sh would for plain quoting (no expansion).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut started = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if started || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `switchboard PATH --help`, cached: (exit 0, help text).
struct Cli {
    cache: HashMap<Vec<String>, (bool, String)>,
}

impl Cli {
    fn help(&mut self, path: &[String]) -> (bool, String) {
        self.cache
            .entry(path.to_vec())
            .or_insert_with(|| {
                let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
                    .args(path)
                    .arg("--help")
                    .output()
                    .expect("run switchboard --help");
                (
                    out.status.success(),
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ),
                )
            })
            .clone()
    }

    /// The subcommand names clap lists under "Commands:".
    fn subcommands(&mut self, path: &[String]) -> Vec<String> {
        let (_, help) = self.help(path);
        help.lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| *n != "help")
            .map(str::to_string)
            .collect()
    }

    /// Checks one `switchboard …` line; returns what is wrong with it.
    fn check(&mut self, line: &str) -> Option<String> {
        let w = words(line);
        let mut path: Vec<String> = Vec::new();
        let mut flags = Vec::new();
        let mut positional = false;
        for word in w.iter().skip(1) {
            if word.starts_with('>') || word.starts_with('<') {
                break;
            }
            if word.starts_with('-') {
                flags.push(word.split('=').next().unwrap_or(word).to_string());
                continue;
            }
            if positional {
                continue;
            }
            let subs = self.subcommands(&path);
            if subs.is_empty() {
                positional = true;
            } else if subs.contains(word) {
                path.push(word.clone());
            } else {
                return Some(format!(
                    "`switchboard {}` has no subcommand {word:?} (it has {subs:?})",
                    path.join(" ")
                ));
            }
        }
        if path.is_empty() {
            return Some("no subcommand".into());
        }
        let (ok, help) = self.help(&path);
        if !ok {
            return Some(format!(
                "`switchboard {} --help` failed:\n{help}",
                path.join(" ")
            ));
        }
        if !self.subcommands(&path).is_empty() {
            return Some(format!(
                "`switchboard {}` needs a subcommand",
                path.join(" ")
            ));
        }
        for flag in flags {
            let re =
                regex::Regex::new(&format!(r"(^|[\s,]){}\b", regex::escape(&flag))).expect("regex");
            if !re.is_match(&help) {
                return Some(format!(
                    "`switchboard {}` has no flag {flag}",
                    path.join(" ")
                ));
            }
        }
        None
    }
}

#[test]
fn runbook_switchboard_commands_are_real_subcommands_and_flags() {
    let mut cli = Cli {
        cache: HashMap::new(),
    };
    let mut problems = Vec::new();
    let mut checked = 0;
    for (runbook, line) in commands() {
        if words(&line).first().map(String::as_str) != Some("switchboard") {
            continue;
        }
        checked += 1;
        if let Some(p) = cli.check(&line) {
            problems.push(format!("{runbook}: {line}\n    {p}"));
        }
    }
    assert!(checked > 20, "runbooks use the CLI");
    assert!(
        problems.is_empty(),
        "{} runbook commands do not exist:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// (method, path) of a curl command to the daemon, if it is one.
fn curl_call(line: &str) -> Option<(String, String)> {
    let w = words(line);
    if w.first().map(String::as_str) != Some("curl") {
        return None;
    }
    let url_re = regex::Regex::new(r"^\$\{?SWITCHBOARD_URL\}?(/[^?#]*)").expect("regex");
    let path = w
        .iter()
        .find_map(|x| url_re.captures(x).map(|c| c[1].to_string()))?;
    let explicit = w
        .iter()
        .position(|x| x == "-X" || x == "--request")
        .and_then(|i| w.get(i + 1))
        .cloned();
    let data = w
        .iter()
        .any(|x| x == "-d" || x.starts_with("--data") || x == "--json");
    let method = explicit.unwrap_or_else(|| if data { "POST" } else { "GET" }.into());
    Some((method.to_uppercase(), path))
}

/// Whether a concrete runbook path (`$VAR` segments allowed) fits a path template.
fn fits(path: &str, template: &str) -> bool {
    let p: Vec<&str> = path.split('/').collect();
    let t: Vec<&str> = template.split('/').collect();
    p.len() == t.len()
        && p.iter().zip(&t).all(|(p, t)| {
            if t.starts_with('{') && t.ends_with('}') {
                !p.is_empty()
            } else {
                p == t && !p.starts_with('$')
            }
        })
}

/// Sends `method path` without a token or body; returns the status.
fn request(base: &str, method: &str, path: &str) -> u16 {
    let host = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).expect("connect to the daemon");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write request");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn runbook_api_calls_are_in_the_served_openapi_document_or_the_public_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (config, port) = write_config(dir.path(), &target, FILE_MAIL);
    let d = Daemon::start(&config, port);
    let doc = get(&d.url("/api/v1/openapi.json")).expect("GET /api/v1/openapi.json");
    assert_eq!(
        doc.status, 200,
        "the daemon serves its OpenAPI document at /api/v1/openapi.json (control API contract)"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&doc.body).expect("/api/v1/openapi.json is JSON");
    let documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .expect("OpenAPI paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flatten()
                .map(move |(method, _)| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (runbook, line) in commands() {
        let Some((method, path)) = curl_call(&line) else {
            continue;
        };
        checked += 1;
        let template = documented
            .iter()
            .map(|(m, t)| (m.as_str(), t.as_str()))
            .chain(PUBLIC.iter().copied())
            .find(|(m, t)| *m == method && fits(&path, t))
            .map(|(_, t)| t.to_string());
        let Some(template) = template else {
            problems.push(format!(
                "{runbook}: {method} {path} is neither in /api/v1/openapi.json nor a public path\n    {line}"
            ));
            continue;
        };
        // The daemon really routes it: without a token the answer is 401/403 or the page,
        // never "no such route" or "wrong method".
        let concrete: Vec<String> = path
            .split('/')
            .zip(template.split('/'))
            .map(|(p, t)| match (p.starts_with('$'), t) {
                (_, "{route}") => "submit-ticket".to_string(),
                (true, _) => "1".to_string(),
                _ => p.to_string(),
            })
            .collect();
        let concrete = concrete.join("/");
        let status = request(&d.base, &method, &concrete);
        if status == 404 || status == 405 || status == 0 {
            problems.push(format!(
                "{runbook}: {method} {concrete} answers {status} on the running daemon\n    {line}"
            ));
        }
    }
    assert!(checked > 15, "runbooks use the API");
    assert!(
        problems.is_empty(),
        "{} runbook API calls do not exist:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_runbook_link_names_an_existing_runbook() {
    let mut problems = Vec::new();
    let check = |problems: &mut Vec<String>, from: &str, url: &str| match runbook_file(url) {
        Some(f) if repo(&f).is_file() => {}
        _ => problems.push(format!("{from}: {url} names no runbook file")),
    };
    // Alert rules.
    let rules = yaml(&repo("alerts/switchboard.rules.yml"));
    for g in rules["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().into_iter().flatten() {
            if let Some(url) = r["annotations"]["runbook_url"].as_str() {
                check(&mut problems, r["alert"].as_str().unwrap_or("?"), url);
            }
        }
    }
    // Service files: `runbook = "runbooks/…"`, relative to the repository root.
    let mut services = Vec::new();
    for entry in std::fs::read_dir(repo("probes")).expect("probes/") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read service file");
        let v: toml::Value = toml::from_str(&text).expect("service file is TOML");
        let id = v["service"]["id"].as_str().expect("service id").to_string();
        match v["service"].get("runbook").and_then(|r| r.as_str()) {
            Some(rb) if repo(rb).is_file() => {}
            other => problems.push(format!("{}: runbook {other:?} missing", path.display())),
        }
        services.push(id);
    }
    assert!(services.len() >= 4, "the shipped services");
    // Dashboards: dashboard links, panel links, data links and text panels.
    let link_re = regex::Regex::new(r#"https?://[^\s"')\]]+"#).expect("regex");
    for (file, d) in dashboards() {
        let text = d.to_string();
        let mut found = 0;
        for m in link_re.find_iter(&text) {
            let url = m.as_str();
            if !url.starts_with(RUNBOOK_BASE) {
                continue;
            }
            found += 1;
            if url.contains("${__field.labels.service}") {
                for id in &services {
                    check(
                        &mut problems,
                        &file,
                        &url.replace("${__field.labels.service}", id),
                    );
                }
            } else {
                check(&mut problems, &file, url);
            }
        }
        assert!(found > 0, "{file} links to the runbooks");
        assert!(!panels(&d).is_empty());
    }
    // Links between runbooks.
    let md_re = regex::Regex::new(r"\]\(([a-z0-9-]+\.md)(#[^)]*)?\)").expect("regex");
    for (name, text) in runbooks() {
        for c in md_re.captures_iter(&text) {
            if !repo(&format!("runbooks/{}", &c[1])).is_file() {
                problems.push(format!("runbooks/{name}: link to missing {}", &c[1]));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_runbook_has_symptoms_checks_commands_and_escalation() {
    let all = runbooks();
    let mut problems = Vec::new();
    for scenario in SCENARIOS {
        if !all.iter().any(|(n, _)| n == scenario) {
            problems.push(format!("no runbook {scenario}"));
        }
    }
    for (name, text) in &all {
        if name == "README.md" {
            continue;
        }
        if !text.starts_with("<!--") {
            problems.push(format!(
                "{name}: does not open with a comment saying what it is"
            ));
        }
        for heading in [
            "## Symptoms",
            "## What to check",
            "## Commands",
            "## Escalate",
        ] {
            if !text.contains(heading) {
                problems.push(format!("{name}: no {heading:?} section"));
            }
        }
        if !text.contains("```sh") {
            problems.push(format!("{name}: no commands"));
        }
    }
    // Each alert's runbook names the alert, so a search for the alert name finds it, and the
    // index lists it.
    let rules = yaml(&repo("alerts/switchboard.rules.yml"));
    let index = &all
        .iter()
        .find(|(n, _)| n == "README.md")
        .expect("README")
        .1;
    for g in rules["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().into_iter().flatten() {
            let (Some(alert), Some(url)) = (
                r["alert"].as_str(),
                r["annotations"]["runbook_url"].as_str(),
            ) else {
                continue;
            };
            let file = runbook_file(url).unwrap_or_default();
            let text = std::fs::read_to_string(repo(&file)).unwrap_or_default();
            if !text.contains(alert) {
                problems.push(format!("{file}: does not mention {alert}"));
            }
            if !index.contains(alert) {
                problems.push(format!("runbooks/README.md: does not list {alert}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checkers_reject_made_up_commands_and_paths() {
    let mut cli = Cli {
        cache: HashMap::new(),
    };
    assert!(cli
        .check("switchboard audit verify --config x.toml")
        .is_none());
    for bad in [
        "switchboard frobnicate",
        "switchboard audit frobnicate",
        "switchboard audit",
        "switchboard audit verify --frobnicate",
        "switchboard probe --config x.toml portal-form --jsonl",
    ] {
        assert!(cli.check(bad).is_some(), "{bad} must be rejected");
    }
    assert_eq!(
        curl_call(r#"curl -fsS -X POST -d '{}' "$SWITCHBOARD_URL/api/v1/drills/$DRILL_ID/abort""#),
        Some(("POST".into(), "/api/v1/drills/$DRILL_ID/abort".into()))
    );
    assert_eq!(
        curl_call(r#"curl -fsS "$SWITCHBOARD_URL/api/v1/audit?pending_review=true""#),
        Some(("GET".into(), "/api/v1/audit".into()))
    );
    assert!(fits("/api/v1/drills/$DRILL_ID", "/api/v1/drills/{id}"));
    assert!(!fits("/api/v1/drills/$DRILL_ID", "/api/v1/drills"));
    assert!(!fits("/api/v1/$X", "/api/v1/drills"));
}
