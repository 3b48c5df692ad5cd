//! The demo tells no lies: the drill command it prints works while its scripted outage has
//! the ticket form failed over (and its guidance about ticket-submission is accurate), and a
//! fresh daemon's status page says since when its uptime counts instead of claiming 90 days.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::daemon;

use daemon::{get, wait_until, write_config, Daemon, Target, FILE_MAIL};

/// `switchboard demo`, stopped with SIGTERM (then SIGKILL) on drop.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn start(tmp: &Path) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("demo")
            .env("TMPDIR", tmp)
            .env("SWITCHBOARD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("switchboard demo");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                // The demo colours its own lines; the words are what matter here.
                let plain = line.replace("\x1b[1;36m[demo]\x1b[0m ", "");
                if tx.send(plain).is_err() {
                    return;
                }
            }
        });
        Demo {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first printed line containing `needle`, waiting for it.
    fn line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("the demo never printed {needle:?}: {:#?}", self.seen),
            }
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a printed command line with this build's `switchboard` first on the PATH.
fn run_printed(command: &str) -> (Option<i32>, String) {
    let bin = Path::new(env!("CARGO_BIN_EXE_switchboard"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .args(["-c", command])
        .env("PATH", path)
        .output()
        .expect("sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn the_demos_drill_command_works_while_its_outage_has_the_ticket_form_failed_over() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut demo = Demo::start(tmp.path());
    let status = demo.line("Status page:");
    let base = status
        .split_whitespace()
        .last()
        .and_then(|u| u.strip_suffix("/status"))
        .expect("status URL")
        .to_string();
    let printed = demo.line("Try a drill");
    let command = printed
        .split_once(":  ")
        .map(|(_, c)| c.trim().to_string())
        .expect("a command after the colon");
    println!("printed: {command}");
    let guidance = demo.line("A drill of ticket-submission");

    // The scripted outage: wait until customers are on the backup form.
    demo.line("The ticket form now answers 503");
    wait_until("ticket form failed over", Duration::from_secs(60), || {
        get(&format!("{base}/go/submit-ticket"))
            .ok()
            .and_then(|r| r.header("location"))
            .is_some_and(|l| l.ends_with("/forms/support"))
    });

    let (code, out) = run_printed(&command);
    println!("{out}");
    assert_eq!(code, Some(0), "the printed drill command works now: {out}");
    assert!(out.contains("pass"), "{out}");

    // What the demo says about ticket-submission is true: refused while failed over.
    assert!(guidance.contains("refused while the scripted outage has it failed over"));
    let on_ticket_form = command.replace("drill start scheduling", "drill start ticket-submission");
    let still_failed_over = get(&format!("{base}/go/submit-ticket"))
        .ok()
        .and_then(|r| r.header("location"))
        .is_some_and(|l| l.ends_with("/forms/support"));
    if still_failed_over {
        let (code, out) = run_printed(&on_ticket_form);
        println!("{out}");
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains("no drill now"), "{out}");
    }
}

#[test]
fn a_fresh_daemons_status_page_says_since_when_its_uptime_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (config, port) = write_config(dir.path(), &target, FILE_MAIL);
    let d = Daemon::start(&config, port);
    let mut html = String::new();
    wait_until("probe history on the page", Duration::from_secs(30), || {
        html = get(&d.url("/status")).map(|r| r.body).unwrap_or_default();
        html.contains("uptime of the primary route")
    });
    let line = html
        .lines()
        .find(|l| l.contains("<figcaption>"))
        .expect("the uptime caption");
    println!("{line}");
    let today = {
        let r = get(&d.url("/api/v2/status.json")).expect("status.json");
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
        v["page"]["updated_at"].as_str().expect("updated_at")[..10].to_string()
    };
    assert!(
        line.contains(&format!("100% uptime of the primary route since {today} ")),
        "{line}"
    );
    assert!(
        !html.contains("over the last 90 days"),
        "a fresh database has no 90 days"
    );
}
