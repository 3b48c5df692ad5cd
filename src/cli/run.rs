//! `switchboard run`, `check` and `probe`: the daemon, config validation and one probe, and the
//! runtime, signals and logging the daemon (and the demo) run under.

use super::{load_config, runtime};
use std::path::Path;
use std::process::ExitCode;
use switchboard::config::Config;
use tokio::sync::watch;

/// `switchboard run`: the daemon until SIGTERM or Ctrl-C; SIGHUP reloads the configuration.
pub fn run(config: &Path) -> ExitCode {
    init_logging(false);
    let config = match load_config(config, 1) {
        Ok(c) => c,
        Err(code) => return code,
    };
    daemon(|stop| async move {
        // Installed before the daemon starts, so a SIGHUP never kills it (the default).
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        switchboard::app::run_with(config, None, stop, move |handle| {
            if let Some(hangup) = hangup {
                tokio::spawn(reload_on_sighup(hangup, handle));
            }
        })
        .await
        .map_err(|e| e.to_string())
    })
}

/// `switchboard check`: the summary (and warnings) of a valid file, or every diagnostic.
pub fn check(config: &Path) -> ExitCode {
    match Config::load(config) {
        Ok(c) => {
            for w in c.warnings() {
                eprintln!("warning: {w}");
            }
            println!("{}", c.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{} problem(s) found", e.diagnostics.len());
            ExitCode::from(1)
        }
    }
}

/// `switchboard probe`: one check once, as a report or JSON; exit 0 success, 1 failure.
pub fn probe(config: &Path, name: &str, json: bool) -> ExitCode {
    let config = match load_config(config, 2) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(check) = config.check(name) else {
        let known: Vec<&str> = config.checks().map(|c| c.name.as_str()).collect();
        eprintln!(
            "no check named {name:?}; known checks: {}",
            known.join(", ")
        );
        return ExitCode::from(2);
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let outcome = rt.block_on(switchboard::probe::run(check));
    if json {
        match serde_json::to_value(&outcome)
            .map(|v| with_thresholds(v, check))
            .and_then(|v| serde_json::to_string_pretty(&v))
        {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("cannot encode outcome: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{}", switchboard::probe::report::human(&outcome));
    }
    if outcome.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Adds the check's thresholds to `probe --json`: one probe has no noise history, so its
/// effective failure threshold is the configured one; adaptive confirmation may raise it up
/// to `failure_threshold_max` in the running daemon (`switchboard status` shows it live).
fn with_thresholds(
    mut v: serde_json::Value,
    check: &switchboard::config::CheckSpec,
) -> serde_json::Value {
    let t = check.thresholds();
    if let Some(o) = v.as_object_mut() {
        o.insert("confirmation".into(), check.confirmation.as_str().into());
        o.insert("failure_threshold".into(), check.failure_threshold.into());
        o.insert(
            "effective_failure_threshold".into(),
            check.failure_threshold.max(1).into(),
        );
        o.insert("failure_threshold_max".into(), t.max_failures().into());
        o.insert("success_threshold".into(), check.success_threshold.into());
    }
    v
}

async fn reload_on_sighup(
    mut hangup: tokio::signal::unix::Signal,
    handle: switchboard::app::CoreHandle,
) {
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the configuration");
        // The core logs the outcome (and the diagnostics of an invalid file) itself.
        let _ = handle.reload("SIGHUP").await;
    }
}

/// Runs `body` on a runtime with a shutdown signal that turns true on Ctrl-C or SIGTERM.
pub(super) fn daemon<F, Fut>(body: F) -> ExitCode
where
    F: FnOnce(watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            let _ = tx.send(true);
        });
        // The daemon runs as a task on the runtime's workers, not on this thread inside
        // `block_on`: the core then shares the workers with the probe loops, so handing it an
        // outcome and answering it wake no other thread (two futex wake-ups per probe before).
        match tokio::spawn(body(rx)).await {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                eprintln!("switchboard: {e}");
                ExitCode::from(1)
            }
            // A panic in the daemon ends the process as it did when it ran on this thread.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Logs to stderr, filtered by `SWITCHBOARD_LOG`; the demo's lines carry seconds since start.
pub(super) fn init_logging(demo: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,hyper=warn,lettre=warn"));
    // Logs go to stderr, as a daemon's should; stdout stays for command output.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if demo {
        builder
            .with_timer(Elapsed(std::time::Instant::now()))
            .init();
    } else {
        builder.init();
    }
}

/// Demo log times: seconds since start, to a tenth, easy to follow against the narration.
struct Elapsed(std::time::Instant);

impl tracing_subscriber::fmt::time::FormatTime for Elapsed {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(w, "{:6.1}s", self.0.elapsed().as_secs_f64())
    }
}
