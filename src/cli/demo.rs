//! `switchboard demo`: the daemon against a simulated support site with a scripted outage; with `--cluster`, three nodes on a local etcd.

use super::run::{daemon, init_logging};
use std::process::ExitCode;

/// Runs the demo (the cluster demo with `cluster`) until it ends or SIGTERM/Ctrl-C; its log
/// lines carry seconds since start.
pub fn run(cluster: Option<switchboard::demo::cluster::Options>) -> ExitCode {
    init_logging(true);
    daemon(|stop| async move {
        match cluster {
            Some(options) => switchboard::demo::cluster::run(options, stop).await,
            None => switchboard::demo::run(stop).await,
        }
        .map_err(|e| e.to_string())
    })
}
