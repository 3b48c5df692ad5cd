//! `switchboard token new`: the token goes to stdout once; only its hash is stored, and its
//! creation is audited.

use super::load_config;
use clap::{Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use switchboard::api::auth::{new_token, Role, TokenError};
use switchboard::config::Config;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token, print it once, store only its SHA-256 in `[auth] tokens_file`.
    New {
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        #[arg(long, default_value = "switchboard.toml")]
        config: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Viewer,
    Operator,
    Admin,
}

pub fn run(command: TokenCommand) -> ExitCode {
    match command {
        TokenCommand::New { name, role, config } => new(&config, &name, role),
    }
}

/// Creates the token: exit 0, 1 when the name is taken, 2 on any other problem.
fn new(config: &Path, name: &str, role: RoleArg) -> ExitCode {
    let config = match load_config(config, 2) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(path) = config.auth.tokens_file.clone() else {
        eprintln!(
            "{}: no [auth] tokens_file; add one (e.g. tokens_file = \"tokens.toml\") first",
            config.source.display()
        );
        return ExitCode::from(2);
    };
    let role = match role {
        RoleArg::Viewer => Role::Viewer,
        RoleArg::Operator => Role::Operator,
        RoleArg::Admin => Role::Admin,
    };
    match new_token(&path, name, role) {
        Ok(token) => {
            println!("{token}");
            eprintln!(
                "token {name:?} ({role}) added to {}; it is shown only this once, only its SHA-256 is stored",
                path.display()
            );
            audit_token_created(&config, name, role);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchboard token new: {e}");
            ExitCode::from(if matches!(e, TokenError::Duplicate { .. }) {
                1
            } else {
                2
            })
        }
    }
}

/// Records the new token (its name and role, never the token) in the audit chain, with the
/// local user as the actor. The token is already usable; a failure here is reported, not fatal.
fn audit_token_created(config: &Config, name: &str, role: Role) {
    use switchboard::cluster::Coordinator;
    let store = match switchboard::store::Store::open(&config.storage.path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("warning: the token was created but not audited: {e}");
            return;
        }
    };
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let rec = switchboard::audit::NewAuditRecord {
        kind: switchboard::audit::KIND_OPERATOR_ACTION.to_string(),
        at: switchboard::clock::Timestamp::now(),
        actor: format!("cli:{user}"),
        service: None,
        reason: format!("API token {name:?} created"),
        config_version: config.version.clone(),
        node: switchboard::cluster::SingleNode::from_host()
            .node()
            .to_string(),
        detail: serde_json::json!({ "command": "token_new", "token": name, "role": role.as_str() }),
    };
    // A keyed chain is extended only with its key (the daemon's rule too): the key is bound
    // first, or the record is not written.
    let note = switchboard::audit::NewAuditRecord {
        kind: switchboard::audit::KIND_AUDIT_KEY.to_string(),
        reason: "audit records are authenticated with [audit] key_file from this record on"
            .to_string(),
        detail: serde_json::json!({}),
        ..rec.clone()
    };
    if let Err(e) = store.start_audit_key(config.audit.key.as_ref(), &note) {
        eprintln!("warning: the token was created but not audited: {e}");
        return;
    }
    if let Err(e) = store.append_audit(&rec) {
        eprintln!("warning: the token was created but not audited: {e}");
    }
}
