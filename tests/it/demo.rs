//! The demo tells no lies: the drill command it prints works while its scripted outage has
//! the ticket form failed over (and its guidance about ticket-submission is accurate), and a
//! fresh daemon's status page says since when its uptime counts instead of claiming 90 days.
//! The cluster demo (`demo --cluster`) shows a takeover with a real etcd in one command and
//! leaves no process and no file behind.

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
    /// `switchboard demo ARGS` with its temporary files in `tmp`; its stdout lines, and its
    /// stderr lines behind `stderr: `, are what `line` and `finish` see.
    fn start(tmp: &Path, args: &[&str]) -> Demo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("demo")
            .args(args)
            .env("TMPDIR", tmp)
            .env("SWITCHBOARD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("switchboard demo");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        let tx_err = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                // The demo colours its own lines; the words are what matter here.
                let plain = line.replace("\x1b[1;36m[demo]\x1b[0m ", "");
                if tx.send(plain).is_err() {
                    return;
                }
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx_err.send(format!("stderr: {line}")).is_err() {
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

    /// Waits until the demo exits by itself (both its outputs closed), every line read; its
    /// exit code.
    fn finish(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    println!("{l}");
                    self.seen.push(l);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the demo did not end within {within:?}: {:#?}", self.seen)
                }
            }
        }
        let status = self.child.wait().expect("wait for the demo");
        status.code()
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
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
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
    let mut demo = Demo::start(tmp.path(), &[]);
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

/// The number in `line` between `before` and `after`.
fn number_in(line: &str, before: &str, after: &str) -> f64 {
    let from = line
        .find(before)
        .map(|i| i + before.len())
        .unwrap_or_else(|| panic!("{before:?} in {line:?}"));
    let rest = &line[from..];
    let to = rest
        .find(after)
        .unwrap_or_else(|| panic!("{after:?} in {line:?}"));
    rest[..to]
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

/// The word after `before` in `line`.
fn word_after<'a>(line: &'a str, before: &str) -> &'a str {
    let from = line
        .find(before)
        .map(|i| i + before.len())
        .unwrap_or_else(|| panic!("{before:?} in {line:?}"));
    line[from..].split_whitespace().next().unwrap_or("")
}

/// Whether process `pid` still runs (a zombie awaiting its reaper has ended).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

#[test]
fn the_cluster_demo_shows_a_takeover_in_one_command_and_leaves_nothing_running() {
    let _turn = crate::support::heavy();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut demo = Demo::start(tmp.path(), &["--cluster", "--cycles", "1"]);
    let code = demo.finish(Duration::from_secs(240));
    let seen = demo.seen.clone();
    let find = |needle: &str| -> String {
        seen.iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("the demo never printed {needle:?}: {seen:#?}"))
            .clone()
    };
    assert_eq!(code, Some(0), "{seen:#?}");

    let elected = word_after(&find("leads (elected"), "Node ").to_string();
    let failed_over = find(" failed over ");
    let kill = find("kill -9 node ");
    let killed = word_after(&kill, "kill -9 node ").to_string();
    assert_eq!(
        killed,
        word_after(&failed_over, "Leader "),
        "the leader that failed over is the one killed"
    );
    let took = find(" took over ");
    let new_leader = word_after(&took, "Node ").to_string();
    assert_ne!(new_leader, killed, "a follower took over");
    let takeover = number_in(&took, "took over ", " s after the kill");
    let lease = number_in(&took, "(lease ", " s)");
    println!("elected {elected}; killed {killed}; {new_leader} took over {takeover} s after the kill (lease {lease} s)");
    // The lease has to run out first (up to its length after the last renewal), then a
    // follower reads the vacated key within a second and applies the log.
    assert!(takeover <= lease * 2.0 + 2.0, "{took}");
    let failed_back = find(" failed back ");
    assert_eq!(
        word_after(&failed_back, "Leader "),
        new_leader,
        "the new leader failed back"
    );
    find(&format!("Node {killed} rejoined as a follower"));
    let tally = find("answered with a redirect");
    let answered = number_in(&tally, "100 ms: ", " answered");
    let refused = number_in(&tally, "redirect, ", " refused");
    println!("/go: {answered} answered, {refused} refused");
    assert_eq!(
        refused, 0.0,
        "every live node answered /go throughout: {tally}"
    );
    assert!(answered > 100.0, "the poller asked throughout: {tally}");
    find("Done after 1 cycle.");
    find("Stopped 3 Switchboard node(s) and 3 etcd member(s); removed");

    // Every process it started (3 etcd members, 3 nodes, the restarted node) is gone, and
    // so is its temporary directory.
    let mut pids: Vec<u32> = seen
        .iter()
        .flat_map(|l| l.match_indices("(pid ").map(move |(i, _)| &l[i + 5..]))
        .filter_map(|rest| rest.split(')').next()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 7, "{pids:?}");
    let survivors: Vec<u32> = pids.into_iter().filter(|p| running(*p)).collect();
    assert!(
        survivors.is_empty(),
        "still running after the demo: {survivors:?}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("read tmp")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn the_cluster_demo_without_etcd_says_how_to_install_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["demo", "--cluster", "--etcd"])
        .arg(tmp.path().join("no-such-etcd"))
        .env("TMPDIR", tmp.path())
        .output()
        .expect("switchboard demo --cluster");
    let err = String::from_utf8_lossy(&out.stderr);
    println!("{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no-such-etcd not found"), "{err}");
    assert!(err.contains("apt-get install etcd-server"), "{err}");
    assert_eq!(
        std::fs::read_dir(tmp.path()).expect("read tmp").count(),
        0,
        "nothing created"
    );
}
