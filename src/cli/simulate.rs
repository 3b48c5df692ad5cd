//! `switchboard simulate`: the real decision core over simulated months, against a plain policy.

use super::load_config;
use std::path::PathBuf;
use std::process::ExitCode;

// The command's flags (no doc comment here: clap would take it for the command's about,
// which is the doc comment of `Command::Simulate`).
#[derive(clap::Args)]
pub struct Options {
    #[arg(long, default_value_t = 30)]
    days: u32,
    #[arg(long, default_value_t = 4)]
    services: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of probes failing at random, in percent.
    #[arg(long, default_value_t = 3.0)]
    noise_percent: f64,
    /// Simulate the services, checks and thresholds of this configuration instead of the
    /// built-in set (`--services` is then unused).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Share of probes failing at random as a fraction (0.03 = 3 %); wins over --noise-percent.
    #[arg(long)]
    noise: Option<f64>,
    /// Months of 30 days; wins over --days.
    #[arg(long)]
    months: Option<u32>,
    /// True outages (1 minute to 4 hours) per service-month.
    #[arg(long, default_value_t = 8)]
    outages: u32,
    /// Bursts of 1-8 s where every primary probe fails, per service-month.
    #[arg(long, default_value_t = 30)]
    bursts: u32,
    /// Probe from N vantages (the cluster's nodes, voting), each with its own uplink
    /// outages, and set them beside one vantage alone (2 to 9).
    #[arg(long, value_name = "N")]
    vantages: Option<u32>,
    /// Vantages that must agree on a verdict (default: a majority).
    #[arg(long, value_name = "K", requires = "vantages")]
    quorum: Option<u32>,
    /// Each vantage's own uplink outages (1 to 20 minutes) per week.
    #[arg(long, default_value_t = 1, value_name = "N")]
    uplink_outages: u32,
    /// Failures in a row that make a vantage's verdict down when vantages vote.
    #[arg(long, default_value_t = 4, value_name = "N")]
    vantage_failure_threshold: u32,
    /// Re-probe interval of a failing check on each vantage when vantages vote.
    #[arg(long, default_value = "1.5s", value_parser = humantime::parse_duration)]
    vantage_retry_interval: std::time::Duration,
}

/// Prints the comparison report; exit 2 on a noise out of range or an invalid `--config`.
pub fn run(o: Options) -> ExitCode {
    let noise = o.noise.unwrap_or(o.noise_percent / 100.0);
    if !(0.0..=1.0).contains(&noise) {
        eprintln!("--noise is a fraction from 0 to 1 (0.03 = 3 %), not {noise}");
        return ExitCode::from(2);
    }
    if let Some(n) = o.vantages {
        if !(2..=9).contains(&n) {
            eprintln!("--vantages is from 2 to 9 (one vantage is the table without it), not {n}");
            return ExitCode::from(2);
        }
        if let Some(k) = o.quorum.filter(|k| !(1..=n).contains(k)) {
            eprintln!("--quorum is from 1 to the number of vantages ({n}), not {k}");
            return ExitCode::from(2);
        }
    }
    let retry = o.vantage_retry_interval;
    if o.vantage_failure_threshold == 0
        || retry.is_zero()
        || retry > std::time::Duration::from_secs(3600)
    {
        eprintln!(
            "--vantage-failure-threshold is at least 1 and --vantage-retry-interval from 1ms to 1h"
        );
        return ExitCode::from(2);
    }
    let started = std::time::Instant::now();
    let p = switchboard::sim::Params {
        days: o.months.map_or(o.days, |m| m.saturating_mul(30)),
        services: o.services,
        seed: o.seed,
        noise,
        outages: o.outages,
        bursts: o.bursts,
        vantages: o.vantages,
        quorum: o.quorum,
        uplink_outages: o.uplink_outages,
        vantage_failure_threshold: o.vantage_failure_threshold,
        vantage_retry_interval: retry,
        ..Default::default()
    };
    match o.config {
        None => {
            let rows = switchboard::sim::simulate(&p);
            print!("{}", switchboard::sim::report(&p, &rows));
        }
        Some(path) => {
            let config = match load_config(&path, 2) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let runs = switchboard::sim::simulate_config(&p, &config);
            let source = path.display().to_string();
            print!("{}", switchboard::sim::report_config(&p, &source, &runs));
        }
    }
    // On stderr: the report on stdout is the same for the same seed.
    eprintln!("simulated in {:.1} s", started.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}
