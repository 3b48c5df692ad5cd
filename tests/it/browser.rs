//! `kind = "browser"` against real headless Chromium (Debian's `chromium`) and a page served on
//! loopback whose form appears only after a script runs: the steps succeed with their timings,
//! a missing text fails naming the step and leaves a screenshot, a page that never loads or a
//! script that never yields fails within the timeout with no Chromium left behind, and the cap
//! on concurrent browsers makes probes queue within their own timeouts.

use crate::support;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The help-centre form as a JavaScript app renders it: nothing but "Loading…" until a script
/// builds the form 400 ms later; sending it shows the subject back.
const FORM: &str = r#"<!doctype html><html><head><title>Submit a request</title></head><body>
<h1>Submit a request</h1><div id="app">Loading…</div>
<script>
setTimeout(function () {
  document.getElementById('app').innerHTML =
    '<form id="f"><label>Subject <input id="subject" name="subject"></label>' +
    '<button id="send" type="button">Send</button></form><p id="result"></p>';
  document.getElementById('send').addEventListener('click', function () {
    var s = document.getElementById('subject').value;
    document.getElementById('result').textContent =
      s ? 'Request received: ' + s : 'Subject is required';
  });
}, 400);
</script></body></html>"#;

/// A page whose script never yields: the renderer is stuck, so even the DevTools calls that
/// look at the page never answer; only the hard timeout ends the run.
const SPIN: &str =
    "<!doctype html><html><body><p>spinning</p><script>for (;;) {}</script></body></html>";

/// Serves `/form` and `/spin`; `/hang` reads the request and never answers.
fn site() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                let body = match path.as_str() {
                    "/form" => FORM,
                    "/spin" => SPIN,
                    "/hang" => {
                        // Held open, silent, then let go: the server stops by itself.
                        std::thread::sleep(Duration::from_secs(20));
                        return;
                    }
                    _ => {
                        let _ = write!(
                            s,
                            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                        return;
                    }
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    format!("http://{addr}")
}

/// A configuration whose service has one browser check per `(name, timeout, steps)`.
fn write_config(dir: &Path, max_concurrent: u32, checks: &[(&str, &str, String)]) -> String {
    std::fs::create_dir_all(dir.join("probes")).expect("mkdir");
    std::fs::write(
        dir.join("switchboard.toml"),
        format!(
            "probes = \"probes\"\n[email]\nfrom = \"Status <status@example.com>\"\ntransport = \"file\"\ndir = \"var/mail\"\n\
             [browser]\nscreenshot_dir = \"shots\"\nmax_concurrent = {max_concurrent}\n"
        ),
    )
    .expect("write");
    let mut svc = String::from("[service]\nid = \"help\"\nname = \"Help centre\"\n\n");
    for (name, timeout, steps) in checks {
        svc.push_str(&format!(
            "[[check]]\nname = \"{name}\"\nkind = \"browser\"\ninterval = \"1m\"\ntimeout = \"{timeout}\"\n{steps}\n"
        ));
    }
    svc.push_str(
        "[[route]]\nid = \"r\"\nprimary = \"https://support.example.com/\"\nbackup = \"https://forms.example.net/\"\n",
    );
    std::fs::write(dir.join("probes/help.toml"), svc).expect("write");
    dir.join("switchboard.toml").display().to_string()
}

/// The customer's journey through the form; `expect` is the text the last step waits for.
fn journey(base: &str, expect: &str) -> String {
    format!(
        r##"[[check.step]]
action = "open"
url = "{base}/form"

[[check.step]]
action = "wait_for"
selector = "#subject"

[[check.step]]
action = "fill"
selector = "#subject"
value = "Printer on fire"

[[check.step]]
name = "send"
action = "click"
selector = "#send"

[[check.step]]
action = "expect_text"
text = "{expect}"
timeout = "1500ms"
"##
    )
}

/// `switchboard probe --json CHECK` with the browser's temp files (its profile) under `tmp`.
fn probe(main: &str, check: &str, tmp: &Path) -> (Output, serde_json::Value, Duration) {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["probe", "--config", main, check, "--json"])
        .env("TMPDIR", tmp)
        .output()
        .expect("run switchboard");
    let took = start.elapsed();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, v, took)
}

/// Chromium processes whose command line names a path under `tmp` (their profile directory).
fn browsers_under(tmp: &Path) -> String {
    let out = Command::new("pgrep")
        .args(["-a", "-f", &format!("user-data-dir={}", tmp.display())])
        .output()
        .expect("pgrep (procps) is required");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_form_rendered_by_a_script_is_filled_and_sent_with_each_step_timed() {
    let _heavy = support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let tmp = tempfile::tempdir().expect("tmp");
    let base = site();
    let main = write_config(
        dir.path(),
        1,
        &[(
            "form",
            "30s",
            journey(&base, "Request received: Printer on fire"),
        )],
    );
    let (out, v, _) = probe(&main, "form", tmp.path());
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["success"], true, "{v:#}");
    assert_eq!(v["status"], 200, "{v:#}");
    let steps = v["steps"].as_array().expect("steps");
    let names: Vec<&str> = steps
        .iter()
        .map(|s| s["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        ["1-open", "2-wait_for", "3-fill", "send", "5-expect_text"],
        "{v:#}"
    );
    for s in steps {
        assert_eq!(s["success"], true, "{s:#}");
        assert!(
            s["duration_seconds"].as_f64().expect("seconds") > 0.0,
            "{s:#}"
        );
    }
    // The form appears 400 ms after the page loads: waiting for it is what took the time.
    let waited = steps[1]["duration_seconds"].as_f64().unwrap_or(0.0);
    assert!(waited >= 0.2, "the wait for #subject took {waited}s: {v:#}");
    assert!(
        !dir.path().join("shots/form.png").exists(),
        "no failure, no screenshot"
    );
    assert_eq!(
        browsers_under(tmp.path()),
        "",
        "a browser outlived the probe"
    );
    // The profile directory was removed with the browser.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).expect("tmp").collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}

#[test]
fn a_missing_text_fails_naming_the_step_and_keeps_a_screenshot() {
    let _heavy = support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let tmp = tempfile::tempdir().expect("tmp");
    let base = site();
    let main = write_config(
        dir.path(),
        1,
        &[("form", "30s", journey(&base, "Ticket #4711 created"))],
    );
    let (out, v, _) = probe(&main, "form", tmp.path());
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    assert_eq!(v["error"]["class"], "conditions", "{v:#}");
    let message = v["error"]["message"].as_str().expect("message");
    let shot = dir.path().join("shots/form.png");
    assert!(
        message.starts_with("step \"5-expect_text\" (expect_text): text \"Ticket #4711 created\" did not appear on the page"),
        "{message}"
    );
    assert!(
        message.ends_with(&format!("; screenshot {}", shot.display())),
        "{message}"
    );
    let png = std::fs::read(&shot).expect("the screenshot is kept");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "not a PNG"
    );
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 5, "{v:#}");
    assert_eq!(steps[3]["success"], true, "{v:#}");
    assert_eq!(steps[4]["success"], false, "{v:#}");
    // The step waited its own 1.5 s for the text, not the check's 30 s.
    let waited = steps[4]["duration_seconds"].as_f64().unwrap_or(0.0);
    assert!((1.4..5.0).contains(&waited), "waited {waited}s: {v:#}");
    assert_eq!(
        browsers_under(tmp.path()),
        "",
        "a browser outlived the probe"
    );

    // The human output says the same, with the path.
    let human = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["probe", "--config", &main, "form"])
        .env("TMPDIR", tmp.path())
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains(&shot.display().to_string()), "{text}");
    assert!(text.contains("step ✗ 5-expect_text"), "{text}");
}

#[test]
fn a_page_that_never_loads_or_never_yields_fails_within_the_timeout_and_no_chromium_is_left() {
    let _heavy = support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let tmp = tempfile::tempdir().expect("tmp");
    let base = site();
    let open = |path: &str| format!("[[check.step]]\naction = \"open\"\nurl = \"{base}{path}\"\n");
    let main = write_config(
        dir.path(),
        1,
        &[
            ("hang", "6s", open("/hang")),
            (
                "spin",
                "6s",
                format!(
                    "{}\n[[check.step]]\naction = \"wait_for\"\nselector = \"#never\"\n",
                    open("/spin")
                ),
            ),
        ],
    );
    for check in ["hang", "spin"] {
        let (out, v, took) = probe(&main, check, tmp.path());
        assert_eq!(out.status.code(), Some(1), "{check}: {v:#}");
        assert_eq!(v["error"]["class"], "timeout", "{check}: {v:#}");
        // The timeout and the process's own start and exit, nothing more.
        assert!(
            took < Duration::from_secs(9),
            "{check} took {took:?}: {v:#}"
        );
        let duration = v["duration_seconds"].as_f64().unwrap_or(99.0);
        assert!(duration <= 6.5, "{check}: {duration}s: {v:#}");
        assert_eq!(
            browsers_under(tmp.path()),
            "",
            "{check}: a browser outlived the probe"
        );
        // The profile went with the browser, even though the process exited at once.
        let left: Vec<_> = std::fs::read_dir(tmp.path()).expect("tmp").collect();
        assert!(left.is_empty(), "{check}: left in TMPDIR: {left:?}");
    }
}

/// A page the server answers with an error is not what customers came for, however it renders.
#[test]
fn an_error_page_fails_the_open_step_with_its_status() {
    let _heavy = support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let tmp = tempfile::tempdir().expect("tmp");
    let base = site();
    let main = write_config(
        dir.path(),
        1,
        &[(
            "gone",
            "20s",
            format!("[[check.step]]\naction = \"open\"\nurl = \"{base}/moved\"\n"),
        )],
    );
    let (out, v, _) = probe(&main, "gone", tmp.path());
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    assert_eq!(v["status"], 404, "{v:#}");
    assert_eq!(v["error"]["class"], "conditions", "{v:#}");
    let message = v["error"]["message"].as_str().expect("message");
    assert!(
        message.starts_with(&format!(
            "step \"1-open\" (open): {base}/moved answered HTTP 404"
        )),
        "{message}"
    );
    assert!(dir.path().join("shots/gone.png").exists(), "{message}");
}

#[test]
fn browsers_past_the_cap_wait_for_a_slot_within_their_timeout() {
    let _heavy = support::heavy();
    // The daemon's shape: probes on the workers of a multi-threaded runtime.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(three_probes_for_one_slot());
}

async fn three_probes_for_one_slot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = site();
    let slow = format!(
        "[[check.step]]\naction = \"open\"\nurl = \"{base}/form\"\n\n[[check.step]]\naction = \"expect_text\"\ntext = \"never shown\"\ntimeout = \"3s\"\n"
    );
    let quick = format!("[[check.step]]\naction = \"open\"\nurl = \"{base}/form\"\n");
    let main = write_config(
        dir.path(),
        1,
        &[
            ("holder", "20s", slow),
            ("impatient", "1s", quick.clone()),
            ("patient", "30s", quick),
        ],
    );
    let config = switchboard::config::Config::load(Path::new(&main)).expect("valid config");
    let spec = |name: &str| {
        config
            .checks()
            .find(|c| c.name == name)
            .cloned()
            .expect("check")
    };
    let (holder, impatient, patient) = (spec("holder"), spec("impatient"), spec("patient"));
    let first = tokio::spawn(async move { switchboard::probe::run(&holder).await });
    // The holder takes the one slot first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = tokio::spawn(async move { switchboard::probe::run(&impatient).await });
    let third = tokio::spawn(async move { switchboard::probe::run(&patient).await });
    let (first, second, third) = (
        first.await.expect("join"),
        second.await.expect("join"),
        third.await.expect("join"),
    );
    assert!(!first.success, "the holder waits for text that never comes");
    let e = second.error.expect("no slot within 1 s");
    assert_eq!(e.class, switchboard::probe::ErrorClass::Local, "{e:?}");
    assert!(
        e.message
            .starts_with("no browser slot within the timeout (1s)"),
        "{e:?}"
    );
    assert!(
        third.success,
        "the patient probe ran once the slot was free: {:?}",
        third.error
    );
    // It could only start after the holder's 3 s wait ended.
    assert!(
        third.duration >= Duration::from_secs(3),
        "{:?}",
        third.duration
    );
}

/// In the daemon, each step's time of the last run is a series beside blackbox's
/// `probe_success`, and the check's health follows the browser's verdict.
#[test]
fn the_daemon_exports_each_step_s_time() {
    use crate::support::daemon;
    let _heavy = support::heavy();
    let dir = tempfile::tempdir().expect("tempdir");
    let base = site();
    let (main, port) = daemon::write_main_config(
        dir.path(),
        "var/switchboard.db",
        "transport = \"file\"\ndir = \"var/mail\"\n[browser]\nscreenshot_dir = \"shots\"\n",
    );
    std::fs::write(
        dir.path().join("probes/help.toml"),
        format!(
            "[service]\nid = \"help\"\nname = \"Help centre\"\n\n[[check]]\nname = \"form\"\nkind = \"browser\"\ninterval = \"20s\"\ntimeout = \"20s\"\n{}\n\
             [[route]]\nid = \"r\"\nprimary = \"https://support.example.com/\"\nbackup = \"https://forms.example.net/\"\n",
            journey(&base, "Request received: Printer on fire")
        ),
    )
    .expect("write");
    let d = daemon::Daemon::start(&main, port);
    let want = format!(
        r#"probe_browser_step_duration_seconds{{check="form",instance="{base}/form",service="help",step="send"}}"#
    );
    // The first probe starts within one interval.
    daemon::wait_until("the steps exported", Duration::from_secs(60), || {
        d.metrics().contains(&want)
    });
    let m = d.metrics();
    for step in ["1-open", "2-wait_for", "3-fill", "send", "5-expect_text"] {
        let prefix = format!(
            r#"probe_browser_step_duration_seconds{{check="form",instance="{base}/form",service="help",step="{step}"}} "#
        );
        let value: f64 = m
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{m}"))
            .parse()
            .expect("a number");
        assert!(value > 0.0, "{step}: {value}");
    }
    assert!(
        m.lines().any(|l| l.starts_with("probe_success{")
            && l.contains(r#"check="form""#)
            && l.ends_with(" 1")),
        "{m}"
    );
    // Prometheus's own linter accepts the new family as exported.
    let (ok, said) = crate::support::oncall::promtool(
        &["check", "metrics"],
        &crate::support::oncall::repo(""),
        &m,
    );
    assert!(ok && said.trim().is_empty(), "promtool: {said}");
}
