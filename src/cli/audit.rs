//! `switchboard audit verify|export|config|diff|bundle` read the database read-only, so they
//! can run beside the daemon and never change the evidence they examine; `audit keygen` makes
//! a key file; `audit list` asks the daemon.
//!
//! Auditor tooling needs no runtime secrets: with `--db` it reads nothing else, and with
//! `--config` the configuration is loaded as an auditor's copy (`Config::load_for_audit`):
//! environment variables and key files it names stay references, set or not.
//!
//! `audit verify` exit codes: 0 every check it could make passed (what it could not check is
//! said on standard error), 1 tampering found (the first bad record named), 2 the database,
//! a key file or an anchor file could not be read, or the arguments are wrong.

use super::client::{self, ApiArgs};
use clap::{Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use switchboard::audit::{self, Anchor, AuditRecord, Checks, Format, Verdict};
use switchboard::clock::Timestamp;
use switchboard::config::{AuditKey, Config};
use switchboard::store::{ConfigLookupError, Store, StoredConfig};

/// Where the database is: `--config` (its `[storage] path`) or `--db`.
#[derive(clap::Args, Clone)]
pub struct DbArgs {
    /// The configuration whose `[storage] path` names the database; loaded as an auditor's
    /// copy: secret references (environment variables, key files) need not resolve.
    #[arg(long, default_value = "switchboard.toml")]
    config: PathBuf,
    /// Read this database file instead of `[storage] path` (e.g. a copy handed to an auditor);
    /// the configuration is then not read at all.
    #[arg(long)]
    db: Option<PathBuf>,
}

/// What `verify` and `bundle` check the chain with besides its own hashes.
#[derive(clap::Args, Clone)]
pub struct CheckArgs {
    /// The audit key (`[audit] key_file`): every record's MAC is checked, so a chain
    /// rewritten and recomputed without the key is caught. Default: the configuration's
    /// key_file when it can be read.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Chain heads written down outside the database (`[audit] anchor_file`, JSON lines with
    /// `sequence` and `hash`): each must still be in the chain.
    #[arg(long)]
    anchor_file: Option<PathBuf>,
    /// A chain head from a log line, an e-mail footer or the metric, as SEQ:HASH
    /// (`42:3f2a9c1b04de`); repeatable.
    #[arg(long = "anchor", value_name = "SEQ:HASH")]
    anchors: Vec<String>,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain (and MACs with --key-file, anchors with --anchor-file/--anchor):
    /// exit 0 when every check it could make passed (what it could not check is said on
    /// standard error), 1 naming the first bad record, 2 when the database, key or anchors
    /// cannot be read.
    Verify {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        checks: CheckArgs,
    },
    /// Print every record, hash and prev_hash included, one per line (JSON Lines, described
    /// by docs/audit-record.schema.json) or row (CSV).
    Export {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Only records at or after this time: RFC 3339 (2026-11-28T17:00:00Z) or a duration ago (24h, "7d ago").
        #[arg(long)]
        since: Option<String>,
    },
    /// Print a stored configuration version (its files and loads), or list every version.
    Config {
        #[command(flatten)]
        db: DbArgs,
        /// The version (`config_version` of a record) or a unique prefix of it (4+ characters);
        /// without it, one line per stored version.
        version: Option<String>,
        /// One JSON object instead of the files as text.
        #[arg(long)]
        json: bool,
    },
    /// The difference between two stored configuration versions, as unified diffs per file.
    Diff {
        #[command(flatten)]
        db: DbArgs,
        /// The older version (or a unique prefix).
        a: String,
        /// The newer version (or a unique prefix).
        b: String,
    },
    /// One .tar.gz for an auditor: records (JSON Lines and CSV), the schema, configuration
    /// versions, drill reports, the verify result and a README; readable without Switchboard.
    Bundle {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        checks: CheckArgs,
        /// The period: RFC 3339 or a duration ago (90d).
        #[arg(long)]
        since: String,
        /// The archive to write (refused if it exists).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Write a new random audit key (32 bytes, hex) to FILE with mode 0600, for `[audit] key_file`.
    Keygen {
        /// The key file to create (refused if it exists).
        file: PathBuf,
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
    let result = match command {
        AuditCommand::Verify { db, checks } => open(&db).and_then(|o| verify(&o, &checks)),
        AuditCommand::Export { db, format, since } => {
            open(&db).and_then(|o| export(&o, format, since))
        }
        AuditCommand::Config { db, version, json } => {
            open(&db).and_then(|o| show_config(&o, version.as_deref(), json))
        }
        AuditCommand::Diff { db, a, b } => open(&db).and_then(|o| diff(&o, &a, &b)),
        AuditCommand::Bundle {
            db,
            checks,
            since,
            output,
        } => open(&db).and_then(|o| bundle(&o, &checks, &since, &output)),
        AuditCommand::Keygen { file } => keygen(&file),
        AuditCommand::List {
            pending_review,
            service,
            since,
            limit,
            json,
            api,
        } => return client::audit_list(&api, pending_review, service, since, limit, json),
    };
    result.unwrap_or_else(|code| code)
}

/// An opened database and, when it came from a configuration, that configuration.
struct Opened {
    store: Store,
    path: PathBuf,
    config: Option<Config>,
}

/// Prints `switchboard audit: {message}` and answers `code`.
fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("switchboard audit: {message}");
    ExitCode::from(code)
}

/// Opens `--db`, or the configuration's `[storage] path`, read-only; exit 2 when it cannot.
fn open(args: &DbArgs) -> Result<Opened, ExitCode> {
    let (path, config) = match &args.db {
        Some(p) => (p.clone(), None),
        None => {
            let c = Config::load_for_audit(&args.config).map_err(|e| {
                eprintln!("{e}");
                ExitCode::from(2)
            })?;
            (c.storage.path.clone(), Some(c))
        }
    };
    match Store::open_read_only(&path) {
        Ok(store) => Ok(Opened {
            store,
            path,
            config,
        }),
        Err(e) => Err(fail(2, e)),
    }
}

/// The key to check MACs with: `--key-file`, else the configuration's key file when it can
/// be read (a note says why not otherwise). Exit 2 for an unreadable `--key-file`.
fn key(
    o: &Opened,
    args: &CheckArgs,
    notes: &mut Vec<String>,
) -> Result<Option<AuditKey>, ExitCode> {
    if let Some(f) = &args.key_file {
        return AuditKey::read(f)
            .map(Some)
            .map_err(|e| fail(2, format!("--key-file: {e}")));
    }
    let Some(f) = o.config.as_ref().and_then(|c| c.audit.key_file.as_ref()) else {
        return Ok(None);
    };
    match AuditKey::read(f) {
        Ok(k) => Ok(Some(k)),
        Err(e) => {
            notes.push(format!(
                "the configuration's [audit] key_file could not be used ({e}); give --key-file to check the MACs"
            ));
            Ok(None)
        }
    }
}

/// `--anchor-file` lines and `--anchor` values; exit 2 naming a line that is not an anchor.
fn anchors(args: &CheckArgs) -> Result<Vec<Anchor>, ExitCode> {
    let mut out = Vec::new();
    if let Some(f) = &args.anchor_file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| fail(2, format!("--anchor-file {}: {e}", f.display())))?;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let at = format!("{}:{}", f.display(), n + 1);
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| fail(2, format!("{at}: not a JSON line: {e}")))?;
            match (v["sequence"].as_i64(), v["hash"].as_str()) {
                (Some(sequence), Some(hash)) => out.push(Anchor {
                    sequence,
                    hash: hash.to_ascii_lowercase(),
                    source: at,
                }),
                _ => return Err(fail(2, format!("{at}: needs \"sequence\" and \"hash\""))),
            }
        }
    }
    for a in &args.anchors {
        let parsed = a
            .split_once(':')
            .and_then(|(s, h)| Some((s.trim().parse::<i64>().ok()?, h.trim())))
            .filter(|(_, h)| h.len() >= 8 && h.chars().all(|c| c.is_ascii_hexdigit()));
        match parsed {
            Some((sequence, hash)) => out.push(Anchor {
                sequence,
                hash: hash.to_ascii_lowercase(),
                source: format!("--anchor {a}"),
            }),
            None => {
                return Err(fail(
                    2,
                    format!("--anchor {a:?} is not SEQ:HASH (a record id and 8+ hex characters of its hash)"),
                ))
            }
        }
    }
    Ok(out)
}

/// The verdict with every check the arguments allow, and the notes on what could not be
/// checked; exit 2 when something cannot be read.
fn run_checks(o: &Opened, args: &CheckArgs) -> Result<(Verdict, Vec<String>), ExitCode> {
    let mut notes = Vec::new();
    let key = key(o, args, &mut notes)?;
    let anchors = anchors(args)?;
    let verdict = o
        .store
        .verify_audit_with(Checks {
            key: key.as_ref().map(AuditKey::bytes),
            anchors: &anchors,
        })
        .map_err(|e| fail(2, format!("{}: {e}", o.path.display())))?;
    if let Verdict::Intact { scope, .. } = &verdict {
        notes.extend(scope.explain());
    }
    Ok((verdict, notes))
}

fn verify(o: &Opened, args: &CheckArgs) -> Result<ExitCode, ExitCode> {
    let (verdict, notes) = run_checks(o, args)?;
    match verdict {
        v @ Verdict::Intact { .. } => {
            println!("{v}");
            for n in notes {
                eprintln!("audit: {n}");
            }
            Ok(ExitCode::SUCCESS)
        }
        v @ Verdict::Broken(_) => {
            eprintln!("{v}");
            Ok(ExitCode::from(1))
        }
    }
}

fn parse_since(since: &str) -> Result<Timestamp, ExitCode> {
    audit::parse_since(since, Timestamp::now()).map_err(|e| fail(2, e))
}

/// Every record at or after `since`; exit 1, naming it, if one cannot be read (exporting
/// around a damaged record would hand the auditor a log with a silent hole).
fn records(o: &Opened, since: Option<Timestamp>) -> Result<Vec<AuditRecord>, ExitCode> {
    let rows = o
        .store
        .audit_rows(since)
        .map_err(|e| fail(2, format!("{}: {e}", o.path.display())))?;
    rows.into_iter()
        .map(|row| {
            row.map_err(|u| {
                fail(
                    1,
                    format!(
                        "record {} cannot be read: {}; run `switchboard audit verify`",
                        u.id, u.problem
                    ),
                )
            })
        })
        .collect()
}

fn export(o: &Opened, format: ExportFormat, since: Option<String>) -> Result<ExitCode, ExitCode> {
    let since = since.as_deref().map(parse_since).transpose()?;
    let records = records(o, since)?;
    let format = match format {
        ExportFormat::Jsonl => Format::Jsonl,
        ExportFormat::Csv => Format::Csv,
    };
    print!("{}", audit::export(&records, format));
    Ok(ExitCode::SUCCESS)
}

/// A stored version by name; exit 1 when it is not stored, 2 when the database cannot say.
fn version(o: &Opened, name: &str) -> Result<StoredConfig, ExitCode> {
    o.store.config_version(name).map_err(|e| match e {
        ConfigLookupError::NotFound(_) | ConfigLookupError::Ambiguous { .. } => fail(1, e),
        other => fail(2, other),
    })
}

fn show_config(o: &Opened, name: Option<&str>, json: bool) -> Result<ExitCode, ExitCode> {
    let Some(name) = name else {
        let versions = o.store.config_versions().map_err(|e| fail(2, e))?;
        if json {
            for v in &versions {
                println!("{}", serde_json::to_string(v).unwrap_or_default());
            }
        } else {
            for v in &versions {
                println!("{}", version_line(v));
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    let v = version(o, name)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", config_text(&v));
    }
    Ok(ExitCode::SUCCESS)
}

/// `3f2a9c1b04de  first seen 2026-...  3 files  applied at start by system, applied by reload by alice`
fn version_line(v: &StoredConfig) -> String {
    let loads: Vec<String> = v
        .loads
        .iter()
        .map(|l| {
            format!(
                "{} {} by {} at {}",
                l.result,
                l.trigger,
                l.actor,
                l.at.rfc3339()
            )
        })
        .collect();
    format!(
        "{}  first seen {}  {} file(s)  {}",
        v.version,
        v.first_seen_at.rfc3339(),
        v.files.len(),
        loads.join("; ")
    )
}

/// A version as text: a commented header (loads, diagnostics, redactions), then each file.
fn config_text(v: &StoredConfig) -> String {
    let mut out = format!(
        "# configuration version {}\n# first seen {}\n",
        v.version,
        v.first_seen_at.rfc3339()
    );
    for l in &v.loads {
        out.push_str(&format!(
            "# {} {} at {} by {}{}\n",
            l.result,
            l.trigger,
            l.at.rfc3339(),
            l.actor,
            l.audit_id
                .map(|id| format!(" (audit record {id})"))
                .unwrap_or_default()
        ));
        for d in &l.diagnostics {
            out.push_str(&format!("#   {d}\n"));
        }
    }
    for r in &v.redacted {
        out.push_str(&format!("# redacted: {r}\n"));
    }
    for f in &v.files {
        out.push_str(&format!(
            "\n==> {} (sha256 {}) <==\n{}",
            f.path.display(),
            f.sha256,
            f.text
        ));
        if !f.text.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

fn files_of(v: &StoredConfig) -> Vec<(PathBuf, String)> {
    v.files
        .iter()
        .map(|f| (f.path.clone(), f.text.clone()))
        .collect()
}

fn diff(o: &Opened, a: &str, b: &str) -> Result<ExitCode, ExitCode> {
    let (va, vb) = (version(o, a)?, version(o, b)?);
    let (fa, fb) = (files_of(&va), files_of(&vb));
    print!(
        "{}",
        audit::diff::unified(
            audit::short_hash(&va.version),
            audit::short_hash(&vb.version),
            &audit::diff::borrow(&fa),
            &audit::diff::borrow(&fb)
        )
    );
    Ok(ExitCode::SUCCESS)
}

fn bundle(o: &Opened, args: &CheckArgs, since: &str, output: &Path) -> Result<ExitCode, ExitCode> {
    let now = Timestamp::now();
    let since_at = parse_since(since)?;
    let records = records(o, Some(since_at))?;
    let (verdict, notes) = run_checks(o, args)?;
    let mut verify_text = format!("{verdict}\n");
    for n in &notes {
        verify_text.push_str(&format!("{n}\n"));
    }
    // The versions in force during the period: named by a record in it, or loaded in it.
    let all = o.store.config_versions().unwrap_or_default();
    let configs: Vec<audit::BundleConfig> = all
        .iter()
        .filter(|v| {
            records.iter().any(|r| r.config_version == v.version)
                || v.loads.iter().any(|l| l.at >= since_at)
        })
        .map(|v| audit::BundleConfig {
            version: v.version.clone(),
            text: config_text(v),
            files: files_of(v),
            meta: serde_json::to_value(v).unwrap_or_default(),
        })
        .collect();
    let drills = o
        .store
        .drills(None, usize::MAX >> 1)
        .map_err(|e| fail(2, format!("{}: {e}", o.path.display())))?
        .into_iter()
        .filter(|d| d.started_at >= since_at)
        .map(|d| {
            let report: serde_json::Value = serde_json::from_str(&d.report)
                .unwrap_or(serde_json::Value::String(d.report.clone()));
            (
                d.id.clone(),
                serde_json::json!({
                    "id": d.id, "service": d.service, "mode": d.mode, "actor": d.actor,
                    "reason": d.reason, "ticket": d.ticket,
                    "started_at": d.started_at.rfc3339(), "deadline": d.deadline.rfc3339(),
                    "ended_at": d.ended_at.map(Timestamp::rfc3339), "status": d.status,
                    "report": report,
                }),
            )
        })
        .collect();
    let bytes = audit::bundle(&audit::Bundle {
        generated_at: now,
        since: since_at,
        source: o.path.display().to_string(),
        records,
        verify: verify_text,
        intact: matches!(verdict, Verdict::Intact { .. }),
        configs,
        drills,
    })
    .map_err(|e| fail(2, e))?;
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(output)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes));
    written.map_err(|e| fail(2, format!("{}: {e}", output.display())))?;
    eprintln!(
        "audit: wrote {} ({} bytes); chain {}",
        output.display(),
        bytes.len(),
        if matches!(verdict, Verdict::Intact { .. }) {
            "intact"
        } else {
            "BROKEN (see verify.txt)"
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn keygen(file: &Path) -> Result<ExitCode, ExitCode> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut key = [0u8; 32];
    rand::RngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut key)
        .map_err(|e| fail(2, format!("no randomness from the operating system: {e}")))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(|e| fail(2, format!("{}: {e}", file.display())))?;
    f.write_all(format!("{}\n", hex::encode(key)).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| fail(2, format!("{}: {e}", file.display())))?;
    println!(
        "wrote a new audit key to {} (mode 0600, key id {}); set [audit] key_file to it, keep a copy outside this machine, and never put it in the database's backups",
        file.display(),
        audit::key_id(&key)
    );
    Ok(ExitCode::SUCCESS)
}
