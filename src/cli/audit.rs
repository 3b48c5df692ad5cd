//! `switchboard audit verify|export` read the database read-only, so they can run beside the
//! daemon and never change the evidence they examine; `audit list` asks the daemon.

use super::client::{self, ApiArgs};
use super::load_config;
use clap::{Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use switchboard::audit::{self, Format, Verdict};
use switchboard::store::Store;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain: exit 0 when intact, 1 naming the first bad record, 2 when the
    /// database cannot be read.
    Verify {
        #[arg(long, default_value = "switchboard.toml")]
        config: PathBuf,
        /// Read this database file instead of `[storage] path` (e.g. a copy handed to an auditor).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Print every record, hash and prev_hash included, one per line (JSON Lines) or row (CSV).
    Export {
        #[arg(long, default_value = "switchboard.toml")]
        config: PathBuf,
        /// Read this database file instead of `[storage] path` (e.g. a copy handed to an auditor).
        #[arg(long)]
        db: Option<PathBuf>,
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Only records at or after this time: RFC 3339 (2026-11-28T17:00:00Z) or a duration ago (24h, "7d ago").
        #[arg(long)]
        since: Option<String>,
    },
    /// Audit records from the daemon, oldest first (client of the HTTP API).
    List {
        /// Only automatic transitions nobody has reviewed yet.
        #[arg(long)]
        pending_review: bool,
        #[arg(long)]
        service: Option<String>,
        /// RFC 3339 or a duration ago (24h).
        #[arg(long)]
        since: Option<String>,
        /// At most this many records (1 to 10000; default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Print the API's JSON lines instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

pub fn run(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify { config, db } => match open(config, db) {
            Ok((store, path)) => verify(&store, &path),
            Err(code) => code,
        },
        AuditCommand::Export {
            config,
            db,
            format,
            since,
        } => match open(config, db) {
            Ok((store, path)) => export(&store, &path, format, since),
            Err(code) => code,
        },
        AuditCommand::List {
            pending_review,
            service,
            since,
            limit,
            json,
            api,
        } => client::audit_list(&api, pending_review, service, since, limit, json),
    }
}

/// Opens `--db`, or the configuration's `[storage] path`, read-only; exit 2 when it cannot.
fn open(config: PathBuf, db: Option<PathBuf>) -> Result<(Store, PathBuf), ExitCode> {
    let path = match db {
        Some(p) => p,
        None => load_config(&config, 2)?.storage.path.clone(),
    };
    match Store::open_read_only(&path) {
        Ok(s) => Ok((s, path)),
        Err(e) => {
            eprintln!("switchboard audit: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// Exit 0 intact, 1 naming the first bad record, 2 when the database cannot be read.
fn verify(store: &Store, path: &std::path::Path) -> ExitCode {
    match store.verify_audit() {
        Ok(v @ Verdict::Intact { .. }) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Ok(v @ Verdict::Broken(_)) => {
            eprintln!("{v}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("switchboard audit: {}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

/// Prints every record (at or after `since`); exit 1, printing nothing, if one cannot be read.
fn export(
    store: &Store,
    path: &std::path::Path,
    format: ExportFormat,
    since: Option<String>,
) -> ExitCode {
    let since = match since
        .map(|s| audit::parse_since(&s, switchboard::clock::Timestamp::now()))
        .transpose()
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("switchboard audit export: {e}");
            return ExitCode::from(2);
        }
    };
    let rows = match store.audit_rows(since) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchboard audit: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
        match row {
            Ok(r) => records.push(r),
            // Exporting around a damaged record would hand the auditor a log with a
            // silent hole; refuse and point at `verify`.
            Err(u) => {
                eprintln!(
                    "switchboard audit export: record {} cannot be read: {}; run `switchboard audit verify`",
                    u.id, u.problem
                );
                return ExitCode::from(1);
            }
        }
    }
    let format = match format {
        ExportFormat::Jsonl => Format::Jsonl,
        ExportFormat::Csv => Format::Csv,
    };
    print!("{}", audit::export(&records, format));
    ExitCode::SUCCESS
}
