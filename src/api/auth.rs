//! Control-API authentication: the hashed token file, the `Caller` extractor, roles, and a per-client backoff for wrong tokens.
//!
//! Tokens are random 256-bit strings shown once by `switchboard token new`; the file keeps
//! only each token's name, role and SHA-256. A request's bearer token is hashed and compared
//! with every stored hash in constant time (no early exit, no length leak), so response
//! timing says nothing about how close a guess was. Repeated failures from one client IP
//! put that IP in an exponential backoff: while it lasts, a wrong or missing token is
//! answered 429 (`Retry-After` rounded up to whole seconds). The token is always verified
//! first, so a valid token is never refused by the backoff: someone guessing from behind the
//! same NAT or proxy cannot lock the on-call operator out during an incident. Behind a
//! reverse proxy listed in `[server] trusted_proxies`, the client is the address that proxy
//! reports in `client_ip_header` (the nearest untrusted hop), not the proxy itself.
//!
//! The file is re-read when it changes (size or mtime), so `token new` takes effect without
//! a restart; an unreadable or invalid file keeps the tokens loaded before and says why.

use super::error::ApiError;
use super::ApiState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tracing::{error, warn};

/// What a token may do. Ordered: each role may do everything the roles below it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read services, drills and the audit log.
    Viewer,
    /// Everything a viewer may, plus failover, failback, pins, maintenance, drills, reviews.
    Operator,
    /// Everything, plus forced failovers and configuration reloads.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is calling: the name and role of the token presented. Extracting it authenticates the
/// request (401 without a valid token); `require` authorises it (403 for a lesser role).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// 403 unless the caller's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "token {:?} has role {}; this needs {role}",
                self.name, self.role
            )))
        }
    }
}

/// One stored token: never the token itself, only its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    /// Lowercase hex SHA-256 of the token.
    pub sha256: String,
    /// RFC 3339, informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

/// Why the token file could not be read or changed. Never contains a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: a token named {name:?} already exists; pick another name")]
    Duplicate { path: PathBuf, name: String },
    #[error("token name {0:?} is invalid: use 1-64 letters, digits, '.', '_' or '-'")]
    BadName(String),
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

/// Lowercase hex SHA-256 of `token`.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares two byte strings in time that depends only on their lengths (which, for two
/// SHA-256 hex digests, are equal): no early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // `black_box` keeps the optimiser from turning the fold back into an early-exit compare.
    std::hint::black_box(diff) == 0
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Reads the token file; a missing file is an empty list.
pub fn read_tokens(path: &Path) -> Result<Vec<TokenEntry>, TokenError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(TokenError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let file: TokenFile = toml::from_str(&text).map_err(|e| TokenError::Invalid {
        path: path.to_path_buf(),
        message: toml_message(&text, &e),
    })?;
    for t in &file.token {
        if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Invalid {
                path: path.to_path_buf(),
                message: format!("token {:?}: sha256 must be 64 hex digits", t.name),
            });
        }
    }
    Ok(file.token)
}

/// `line N: message` from a TOML error, without echoing the file's content (it holds hashes).
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    match line {
        Some(l) => format!("line {l}: {}", e.message()),
        None => e.message().to_string(),
    }
}

/// Creates a new random token named `name` with `role`, stores its hash in `path` (creating
/// the file, readable by its owner only) and returns the token. The token is not kept
/// anywhere: the caller prints it once.
pub fn new_token(path: &Path, name: &str, role: Role) -> Result<String, TokenError> {
    if !valid_name(name) {
        return Err(TokenError::BadName(name.to_string()));
    }
    let mut tokens = read_tokens(path)?;
    if tokens.iter().any(|t| t.name == name) {
        return Err(TokenError::Duplicate {
            path: path.to_path_buf(),
            name: name.to_string(),
        });
    }
    let mut bytes = [0u8; 32];
    rand::RngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut bytes)
        .map_err(|e| TokenError::Random(e.to_string()))?;
    let token = format!("sbt_{}", hex::encode(bytes));
    tokens.push(TokenEntry {
        name: name.to_string(),
        role,
        sha256: hash_token(&token),
        created_at: Some(crate::clock::Timestamp::now().rfc3339()),
    });
    write_tokens(path, &tokens)?;
    Ok(token)
}

fn write_tokens(path: &Path, tokens: &[TokenEntry]) -> Result<(), TokenError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TokenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let body = toml::to_string(&TokenFile {
        token: tokens.to_vec(),
    })
    .map_err(|e| TokenError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let text = format!(
        "# Switchboard API tokens: name, role and the SHA-256 of each token (never the token).\n# Add one with `switchboard token new NAME --role viewer|operator|admin`.\n\n{body}"
    );
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    // Written beside and renamed over, so the daemon never reads half a file.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// Failures from one client before the backoff starts (room for a typo or two).
const FREE_FAILURES: u32 = 5;
/// First backoff after the free failures; it doubles with each further failure.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Clients remembered at most; beyond this, entries whose backoff ended are forgotten.
const MAX_CLIENTS: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    blocked_until: Instant,
}

/// The backoff before the next attempt after `count` consecutive failures.
fn backoff(count: u32) -> Duration {
    if count < FREE_FAILURES {
        return Duration::ZERO;
    }
    let exp = (count - FREE_FAILURES).min(16);
    BACKOFF_BASE.saturating_mul(1 << exp).min(BACKOFF_CAP)
}

struct Loaded {
    /// (mtime, length) of the file when read, to notice changes.
    stamp: Option<(SystemTime, u64)>,
    tokens: Vec<TokenEntry>,
}

/// Why a request was refused, for `switchboard_api_auth_failures_total{reason}`.
pub type FailureHook = Box<dyn Fn(&'static str) + Send + Sync>;

/// The authenticator the control API uses.
pub struct Auth {
    path: Option<PathBuf>,
    loaded: RwLock<Loaded>,
    clients: Mutex<HashMap<IpAddr, Failures>>,
    on_failure: FailureHook,
    /// `[server] trusted_proxies` and `client_ip_header`: who the client is behind a proxy.
    pub trusted_proxies: Vec<crate::config::IpRange>,
    pub client_ip_header: String,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth").field("path", &self.path).finish()
    }
}

impl Auth {
    /// Authenticates against the token file at `path` (`None`: no tokens, every call is 401).
    pub fn new(path: Option<PathBuf>, on_failure: FailureHook) -> Auth {
        let auth = Auth {
            path,
            loaded: RwLock::new(Loaded {
                stamp: None,
                tokens: Vec::new(),
            }),
            clients: Mutex::new(HashMap::new()),
            on_failure,
            trusted_proxies: Vec::new(),
            client_ip_header: "x-forwarded-for".to_string(),
        };
        match &auth.path {
            None => warn!("no [auth] tokens_file configured: the control API refuses every call"),
            Some(p) => {
                auth.refresh();
                if auth.token_count() == 0 {
                    warn!(
                        "no API tokens in {}: add one with `switchboard token new NAME --role operator`",
                        p.display()
                    );
                }
            }
        }
        auth
    }

    /// No token file: every control call is refused. For tests of the public endpoints.
    pub fn disabled() -> Auth {
        Auth {
            path: None,
            loaded: RwLock::new(Loaded {
                stamp: None,
                tokens: Vec::new(),
            }),
            clients: Mutex::new(HashMap::new()),
            on_failure: Box::new(|_| {}),
            trusted_proxies: Vec::new(),
            client_ip_header: "x-forwarded-for".to_string(),
        }
    }

    /// Believes `header` from the `trusted` proxies (see `client_ip`).
    pub fn behind_proxies(mut self, trusted: Vec<crate::config::IpRange>, header: String) -> Auth {
        self.trusted_proxies = trusted;
        self.client_ip_header = header;
        self
    }

    pub fn token_count(&self) -> usize {
        self.loaded.read().map(|l| l.tokens.len()).unwrap_or(0)
    }

    /// Re-reads the file if it changed since it was last read.
    fn refresh(&self) {
        let Some(path) = &self.path else { return };
        let stamp = std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        let current = self.loaded.read().map(|l| l.stamp).unwrap_or(None);
        if stamp == current && current.is_some() {
            return;
        }
        let Ok(mut loaded) = self.loaded.write() else {
            return;
        };
        if loaded.stamp == stamp && stamp.is_some() {
            return;
        }
        match read_tokens(path) {
            Ok(tokens) => loaded.tokens = tokens,
            Err(e) => error!(
                "API tokens not reloaded, keeping the {} loaded before: {e}",
                loaded.tokens.len()
            ),
        }
        loaded.stamp = stamp;
    }

    /// The token presented in `header` (`Bearer <token>`) from client `ip`, checked. A valid
    /// token is accepted even while `ip` is in backoff; only failures are throttled.
    pub fn authenticate(&self, ip: IpAddr, header: Option<&str>) -> Result<Caller, ApiError> {
        let now = Instant::now();
        let found = header.and_then(bearer).and_then(|token| self.verify(token));
        if let Some(caller) = found {
            // A success forgives earlier typos, but not a backoff under way: the address may
            // be shared (NAT, proxy) with whoever earned it.
            if self.blocked(ip, now).is_none() {
                self.succeeded(ip);
            }
            return Ok(caller);
        }
        if let Some(wait) = self.blocked(ip, now) {
            (self.on_failure)("throttled");
            return Err(ApiError::TooManyRequests {
                retry_after_secs: whole_seconds_up(wait),
            });
        }
        (self.on_failure)(if header.and_then(bearer).is_some() {
            "invalid"
        } else {
            "missing"
        });
        self.failed(ip, now);
        Err(ApiError::Unauthorized)
    }

    /// The verdict on a token checked elsewhere (a heartbeat check's own token) from client
    /// `ip`, under the same backoff as the API tokens: a valid token is accepted even while
    /// `ip` is in backoff; a wrong or missing one is a failure, answered 429 during a backoff.
    pub fn judge_other(&self, ip: IpAddr, valid: bool) -> Result<(), ApiError> {
        let now = Instant::now();
        if valid {
            if self.blocked(ip, now).is_none() {
                self.succeeded(ip);
            }
            return Ok(());
        }
        if let Some(wait) = self.blocked(ip, now) {
            (self.on_failure)("throttled");
            return Err(ApiError::TooManyRequests {
                retry_after_secs: whole_seconds_up(wait),
            });
        }
        (self.on_failure)("invalid");
        self.failed(ip, now);
        Err(ApiError::Unauthorized)
    }

    /// The caller a token belongs to, compared with every stored hash in constant time.
    fn verify(&self, token: &str) -> Option<Caller> {
        self.refresh();
        let presented = hash_token(token);
        let found = {
            let loaded = self
                .loaded
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Every stored hash is compared, match or not, so the time taken does not say
            // which (or whether an early) entry matched.
            let mut found: Option<Caller> = None;
            for t in &loaded.tokens {
                if constant_time_eq(
                    presented.as_bytes(),
                    t.sha256.to_ascii_lowercase().as_bytes(),
                ) && found.is_none()
                {
                    found = Some(Caller {
                        name: t.name.clone(),
                        role: t.role,
                    });
                }
            }
            found
        };
        found
    }

    /// Counts a 403 in the metrics (the caller was authenticated but lacks the role).
    pub fn forbidden(&self) {
        (self.on_failure)("forbidden");
    }

    fn blocked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .get(&ip)
            .filter(|f| f.blocked_until > now)
            .map(|f| f.blocked_until - now)
    }

    fn failed(&self, ip: IpAddr, now: Instant) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&ip) {
            clients.retain(|_, f| f.blocked_until > now);
            if clients.len() >= MAX_CLIENTS {
                // Still full of clients in backoff: forget the one whose backoff ends first.
                if let Some(k) = clients
                    .iter()
                    .min_by_key(|(_, f)| f.blocked_until)
                    .map(|(k, _)| *k)
                {
                    clients.remove(&k);
                }
            }
        }
        let f = clients.entry(ip).or_insert(Failures {
            count: 0,
            blocked_until: now,
        });
        f.count = f.count.saturating_add(1);
        f.blocked_until = now + backoff(f.count);
        if f.count == FREE_FAILURES {
            warn!("{FREE_FAILURES} failed API authentications from {ip}; slowing it down");
        }
    }

    fn succeeded(&self, ip: IpAddr) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.remove(&ip);
    }
}

/// A wait in whole seconds, rounded up: a client that retries after `Retry-After` seconds
/// must find the backoff over, not 0.4 s short of it.
fn whole_seconds_up(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// The client a request comes from: the peer, or, when the peer is a trusted proxy, the
/// nearest address in its client-address header that is not itself a trusted proxy (the
/// leftmost entries are whatever the client claimed and cannot be believed).
pub fn client_ip(
    peer: IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[crate::config::IpRange],
    header: &str,
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all(header)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .copied()
        .find(|ip| !is_trusted(*ip))
        .or_else(|| hops.first().copied())
        .unwrap_or(peer)
}

/// The token of an `Authorization: Bearer <token>` header value.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let ip = client_ip(
            peer,
            &parts.headers,
            &state.auth.trusted_proxies,
            &state.auth.client_ip_header,
        );
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        state.auth.authenticate(ip, header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[test]
    fn roles_are_ordered_and_require_answers_403_below() {
        let op = Caller {
            name: "ops".into(),
            role: Role::Operator,
        };
        assert!(op.require(Role::Viewer).is_ok());
        assert!(op.require(Role::Operator).is_ok());
        let err = op.require(Role::Admin).unwrap_err();
        assert_eq!(err.status().as_u16(), 403);
        assert!(err.to_string().contains("admin"), "{err}");
    }

    #[test]
    fn constant_time_eq_is_plain_equality_in_result() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn new_token_stores_only_the_hash_refuses_duplicates_and_authenticates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let token = new_token(&path, "alice", Role::Operator).unwrap();
        assert!(
            token.starts_with("sbt_") && token.len() == 4 + 64,
            "{token}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&token[4..]),
            "the token itself is not stored"
        );
        assert!(text.contains(&hash_token(&token)));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "owner-only file, got {mode:o}");
        let dup = new_token(&path, "alice", Role::Admin).unwrap_err();
        assert!(matches!(dup, TokenError::Duplicate { .. }), "{dup}");
        assert!(matches!(
            new_token(&path, "no spaces", Role::Admin),
            Err(TokenError::BadName(_))
        ));
        let other = new_token(&path, "bob", Role::Viewer).unwrap();
        assert_ne!(token, other);

        let auth = Auth::new(Some(path), Box::new(|_| {}));
        let caller = auth
            .authenticate(ip(1), Some(&format!("Bearer {token}")))
            .unwrap();
        assert_eq!(
            caller,
            Caller {
                name: "alice".into(),
                role: Role::Operator
            }
        );
        let bob = auth
            .authenticate(ip(1), Some(&format!("bearer  {other}")))
            .unwrap();
        assert_eq!(bob.role, Role::Viewer);
    }

    #[test]
    fn a_token_added_while_running_is_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let auth = Auth::new(Some(path.clone()), Box::new(|_| {}));
        assert_eq!(auth.token_count(), 0);
        let token = new_token(&path, "late", Role::Admin).unwrap();
        assert!(auth
            .authenticate(ip(2), Some(&format!("Bearer {token}")))
            .is_ok());
    }

    #[test]
    fn repeated_failures_back_off_one_client_but_not_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let token = new_token(&path, "alice", Role::Operator).unwrap();
        let reasons = Arc::new(Mutex::new(Vec::new()));
        let r = reasons.clone();
        let auth = Auth::new(Some(path), Box::new(move |why| r.lock().unwrap().push(why)));
        let attacker = ip(66);
        for _ in 0..FREE_FAILURES {
            let e = auth
                .authenticate(attacker, Some("Bearer sbt_guess"))
                .unwrap_err();
            assert_eq!(e.status().as_u16(), 401);
        }
        // Now in backoff: wrong and missing tokens are answered 429 with a whole-second wait.
        let e = auth
            .authenticate(attacker, Some("Bearer sbt_guess"))
            .unwrap_err();
        assert_eq!(e.status().as_u16(), 429, "{e:?}");
        assert!(
            matches!(e, ApiError::TooManyRequests { retry_after_secs } if retry_after_secs >= 1)
        );
        assert_eq!(
            auth.authenticate(attacker, None)
                .unwrap_err()
                .status()
                .as_u16(),
            429
        );
        // A valid token from the same address (an operator behind the same NAT) still works,
        // and does not lift the backoff for the guesser.
        let op = auth
            .authenticate(attacker, Some(&format!("Bearer {token}")))
            .expect("a valid token is never locked out");
        assert_eq!(op.name, "alice");
        let e = auth
            .authenticate(attacker, Some("Bearer sbt_guess2"))
            .unwrap_err();
        assert_eq!(e.status().as_u16(), 429, "{e:?}");
        // Another client with the valid token is not affected.
        assert!(auth
            .authenticate(ip(7), Some(&format!("Bearer {token}")))
            .is_ok());
        let seen = reasons.lock().unwrap().clone();
        assert_eq!(seen.iter().filter(|r| **r == "invalid").count(), 5);
        assert_eq!(seen.last(), Some(&"throttled"));
        assert!(auth.authenticate(ip(8), None).is_err());
        assert_eq!(reasons.lock().unwrap().last(), Some(&"missing"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::ZERO);
        assert_eq!(backoff(FREE_FAILURES), BACKOFF_BASE);
        assert_eq!(backoff(FREE_FAILURES + 1), BACKOFF_BASE * 2);
        assert_eq!(backoff(1000), BACKOFF_CAP);
    }

    #[test]
    fn an_invalid_file_keeps_the_tokens_loaded_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let token = new_token(&path, "alice", Role::Operator).unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        let auth = Auth::new(
            Some(path.clone()),
            Box::new(move |_| {
                c.fetch_add(1, Ordering::SeqCst);
            }),
        );
        std::fs::write(
            &path,
            "[[token]]\nname = 3\n# longer than before so the stamp changes\n",
        )
        .unwrap();
        assert!(auth
            .authenticate(ip(3), Some(&format!("Bearer {token}")))
            .is_ok());
        assert!(matches!(
            read_tokens(&path),
            Err(TokenError::Invalid { .. })
        ));
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn behind_a_trusted_proxy_the_client_is_the_nearest_untrusted_hop() {
        use axum::http::HeaderMap;
        let trusted: Vec<crate::config::IpRange> =
            vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1".parse().unwrap()];
        let mut h = HeaderMap::new();
        // The client claims 1.1.1.1; the outer proxy saw 203.0.113.7; an inner proxy 10.0.0.2.
        h.append("x-forwarded-for", "1.1.1.1, 203.0.113.7".parse().unwrap());
        h.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        let xff = "x-forwarded-for";
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(peer, &h, &trusted, xff),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // An untrusted peer's header is ignored: anyone can send one.
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_ip(stranger, &h, &trusted, xff), stranger);
        // No header from a trusted proxy: the proxy itself.
        assert_eq!(client_ip(peer, &HeaderMap::new(), &trusted, xff), peer);
        // Nothing trusted configured: always the peer.
        assert_eq!(client_ip(peer, &h, &[], xff), peer);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(whole_seconds_up(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds_up(Duration::from_millis(1000)), 1);
        assert_eq!(whole_seconds_up(Duration::from_millis(1001)), 2);
        assert_eq!(whole_seconds_up(Duration::from_millis(59_400)), 60);
    }
}
