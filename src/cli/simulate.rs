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
}

/// Prints the comparison report; exit 2 on a noise out of range or an invalid `--config`.
pub fn run(o: Options) -> ExitCode {
    let noise = o.noise.unwrap_or(o.noise_percent / 100.0);
    if !(0.0..=1.0).contains(&noise) {
        eprintln!("--noise is a fraction from 0 to 1 (0.03 = 3 %), not {noise}");
        return ExitCode::from(2);
    }
    let p = switchboard::sim::Params {
        days: o.months.map_or(o.days, |m| m.saturating_mul(30)),
        services: o.services,
        seed: o.seed,
        noise,
        outages: o.outages,
        bursts: o.bursts,
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
    ExitCode::SUCCESS
}
