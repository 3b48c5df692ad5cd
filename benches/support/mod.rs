//! Shared by the benchmarks: their `main`, CPU accounting from `/proc/<pid>/stat` and the revision a run measured.
//!
//! Each bench includes it with `mod support;`; not every bench uses every item.

#![allow(dead_code)]

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Runs a bench's `run` on its arguments; on an error, prints it under the bench's `name` and
/// exits with 1.
pub fn main(name: &str, run: impl FnOnce(&[String]) -> Result<()>) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("{name}: error: {e:#}");
        std::process::exit(1);
    }
}

/// Clock ticks per second for `/proc/*/stat` times. Linux has reported USER_HZ = 100 to user
/// space on every architecture for decades; `getconf CLK_TCK` confirms it when available.
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// One clock tick of `/proc/*/stat` times.
pub fn tick() -> Duration {
    Duration::from_nanos(1_000_000_000 / clock_ticks())
}

/// The stat file of process `pid`.
pub fn stat_path(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/stat"))
}

/// utime + stime of a whole process (all its threads), in clock ticks, from its stat file.
pub fn cpu_ticks(stat_path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(stat_path)
        .with_context(|| format!("reading {}", stat_path.display()))?;
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    let rest = &text[text.rfind(')').context("malformed stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// The commit the bench was built from (short), for the report's header.
pub fn git_rev() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
