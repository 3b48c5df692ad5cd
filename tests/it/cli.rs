//! The command line as users run it: `check` and `probe` exit codes and output, on real files
//! and a real loopback target.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::thread;

fn switchboard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .output()
        .expect("run switchboard")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Serves 200 on `/ok` and 500 elsewhere, forever, on a loopback port.
fn target() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 2048];
            let n = s.read(&mut buf).unwrap_or(0);
            let ok = String::from_utf8_lossy(&buf[..n]).starts_with("GET /ok ");
            let (status, body) = if ok {
                ("200 OK", "hello request_subject")
            } else {
                ("500 Internal Server Error", "boom")
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

fn write_config(dir: &Path, base: &str) -> String {
    std::fs::create_dir_all(dir.join("probes")).expect("mkdir");
    std::fs::write(
        dir.join("switchboard.toml"),
        "probes = \"probes\"\n[email]\nfrom = \"Status <status@example.com>\"\ntransport = \"file\"\ndir = \"var/mail\"\n[status_page]\ntitle = \"T\"\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("probes/svc.toml"),
        format!(
            r#"[service]
id = "svc"
name = "Service"

[[check]]
name = "good"
url = "{base}/ok"
timeout = "2s"
conditions = ["[STATUS] == 200", "[BODY] == pat(*request_subject*)"]

[[check]]
name = "bad"
url = "{base}/broken"
timeout = "2s"
conditions = ["[STATUS] == 200"]

[[route]]
id = "r"
primary = "{base}/ok"
backup = "https://forms.example.net/support"
"#
        ),
    )
    .expect("write");
    dir.join("switchboard.toml").display().to_string()
}

#[test]
fn check_accepts_the_shipped_configuration_with_a_summary() {
    let out = switchboard(&[
        "check",
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/switchboard.toml"),
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "one-line summary: {stdout}");
    assert!(stdout.contains("ok: 6 services"), "{stdout}");
}

#[test]
fn check_reports_every_problem_with_file_and_line_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = write_config(dir.path(), "http://127.0.0.1:9");
    let svc = dir.path().join("probes/svc.toml");
    let broken = std::fs::read_to_string(&svc)
        .expect("read")
        .replace(
            "timeout = \"2s\"\nconditions = [\"[STATUS] == 200\"]",
            "timeout = \"2 parsecs\"\nconditions = [\"[STATUS]==200\"]",
        )
        .replace("[[route]]", "colour = \"blue\"\n\n[[route]]");
    std::fs::write(&svc, broken).expect("write");
    let out = switchboard(&["check", "--config", &main]);
    assert_eq!(out.status.code(), Some(1), "stdout: {}", text(&out.stdout));
    let stderr = text(&out.stderr);
    let file = svc.display().to_string();
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&file)).collect();
    assert!(
        lines.len() >= 3,
        "three problems, each with file:line:\n{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{file}:14:")) && l.contains("2 parsecs")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{file}:15:")) && l.contains("[STATUS]==200")),
        "{stderr}"
    );
    assert!(lines.iter().any(|l| l.contains("colour")), "{stderr}");
}

#[test]
fn probe_exits_0_on_success_and_prints_conditions_and_phases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = write_config(dir.path(), &target());
    let out = switchboard(&["probe", "--config", &main, "good"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("[STATUS] (200) == 200"), "{stdout}");
    for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
        assert!(stdout.contains(phase), "phase {phase} shown:\n{stdout}");
    }
}

#[test]
fn probe_json_has_the_documented_fields_and_exits_1_on_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = write_config(dir.path(), &target());
    let out = switchboard(&["probe", "--config", &main, "bad", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["check"], "bad");
    assert_eq!(v["success"], false);
    assert_eq!(v["status"], 500);
    assert_eq!(v["conditions"][0]["condition"], "[STATUS] == 200");
    assert_eq!(v["conditions"][0]["success"], false);
    assert_eq!(v["conditions"][0]["resolved"], "[STATUS] (500) == 200");
    assert!(v["duration_seconds"].as_f64().is_some());
    for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
        assert!(v["phases"][phase].as_f64().is_some(), "phase {phase}: {v}");
    }
    assert_eq!(v["error"]["class"], "conditions");
}

#[test]
fn probe_exits_2_for_an_unknown_check_or_a_bad_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = write_config(dir.path(), "http://127.0.0.1:9");
    let out = switchboard(&["probe", "--config", &main, "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("good"),
        "lists known checks: {}",
        text(&out.stderr)
    );
    let out = switchboard(&["probe", "--config", "/nonexistent/switchboard.toml", "good"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A service file with a two-step check whose second step goes to `second`.
fn write_steps_config(dir: &Path, base: &str, second: &str) -> String {
    let main = write_config(dir, base);
    let svc = dir.join("probes/svc.toml");
    let text = std::fs::read_to_string(&svc).expect("read").replace(
        "[[route]]",
        &format!(
            r#"[[check]]
name = "flow"
timeout = "3s"

[[check.step]]
name = "first"
url = "{base}/ok"
conditions = ["[STATUS] == 200"]
extract = {{ field = 'regex:(request_\w+)' }}

[[check.step]]
name = "second"
url = "{base}{second}"
headers = {{ X-Field = "${{field}}" }}
conditions = ["[STATUS] == 200"]

[[route]]"#
        ),
    );
    std::fs::write(&svc, text).expect("write");
    main
}

#[test]
fn probe_shows_each_step_of_a_multi_step_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = write_steps_config(dir.path(), &target(), "/ok");
    let out = switchboard(&["probe", "--config", &main, "flow"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("✓ flow  success  status 200"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  step ✓ first  status 200") && stdout.contains("extracted field"),
        "{stdout}"
    );
    assert!(stdout.contains("  step ✓ second  status 200"), "{stdout}");
    assert!(stdout.contains("    ✓ [STATUS] (200) == 200"), "{stdout}");
}

#[test]
fn probe_json_of_a_failing_step_names_it_and_lists_the_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = write_steps_config(dir.path(), &target(), "/broken/${field}");
    let out = switchboard(&["probe", "--config", &main, "flow", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["check"], "flow");
    assert_eq!(v["success"], false);
    assert_eq!(v["status"], 500);
    assert_eq!(v["error"]["class"], "conditions");
    let message = v["error"]["message"].as_str().expect("message");
    assert!(message.starts_with("step \"second\": "), "{message}");
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["name"], "first");
    assert_eq!(steps[0]["success"], true);
    assert_eq!(steps[1]["name"], "second");
    assert_eq!(steps[1]["success"], false);
    assert_eq!(
        steps[1]["conditions"][0]["resolved"],
        "[STATUS] (500) == 200"
    );
    for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
        assert!(steps[1]["phases"][phase].as_f64().is_some(), "{v}");
        assert!(v["phases"][phase].as_f64().is_some(), "{v}");
    }
}
