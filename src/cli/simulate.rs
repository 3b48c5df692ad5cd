//! `switchboard simulate`: the real decision core over simulated months, against a plain policy.

use super::load_config;
use std::path::PathBuf;
use std::process::ExitCode;

/// The command's flags as clap parsed them (see `Command::Simulate` for their meaning).
pub struct Options {
    pub days: u32,
    pub services: u32,
    pub seed: u64,
    pub noise_percent: f64,
    pub config: Option<PathBuf>,
    pub noise: Option<f64>,
    pub months: Option<u32>,
    pub outages: u32,
    pub bursts: u32,
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
