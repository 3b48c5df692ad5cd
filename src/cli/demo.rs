//! `switchboard demo`: the daemon against a simulated support site with a scripted outage.

use super::run::{daemon, init_logging};
use std::process::ExitCode;

/// Runs the demo until it ends or SIGTERM/Ctrl-C; its log lines carry seconds since start.
pub fn run() -> ExitCode {
    init_logging(true);
    daemon(|stop| async move {
        switchboard::demo::run(stop)
            .await
            .map_err(|e| e.to_string())
    })
}
