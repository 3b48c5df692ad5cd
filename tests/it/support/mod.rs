//! What the integration tests share, each helper once: `check` builds probe checks (one
//! constructor per kind), `daemon` runs the real binary against a breakable target, `control`
//! speaks to its API, `smtp` runs real SMTP servers, `oncall` reads the on-call files, `http`
//! is a bare HTTP peer, `tls` makes certificates and server configs; here: repository paths,
//! the environment set before the tests start, the proptest config, and the turn-taking of
//! the heavy tests.
//!
//! The tests run as threads of one process. So no test changes the process's environment
//! (pass it to a child with `Command::env`; what the library itself must read is in
//! `TEST_ENV`), its working directory (`Command::current_dir`) or its limits (`pre_exec` in
//! the child), and every port is chosen by the kernel (`free_port`, or a listener on port 0).

pub mod check;
pub mod control;
pub mod daemon;
pub mod etcd;
pub mod feeds;
pub mod http;
pub mod imap;
pub mod oncall;
pub mod prometheus;
pub mod smtp;
pub mod tls;
pub mod zendesk;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

pub use daemon::free_port;

/// A path inside the repository.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// One of the helper scripts beside this file (`tests/it/support/NAME`).
pub fn script(name: &str) -> PathBuf {
    repo("tests/it/support").join(name)
}

/// Environment variables that code running inside the test process reads (the Statuspage
/// push reads its key from `api_key_env` when it sends), as (name, value).
pub const TEST_ENV: &[(&str, &str)] = &[
    ("SWITCHBOARD_TEST_STATUSPAGE_KEY_A", "key-abc123"),
    ("SWITCHBOARD_TEST_STATUSPAGE_KEY_B", "key-maint"),
];

/// Sets `TEST_ENV` before `main`, while the process has one thread. Setting a variable while
/// other threads run races with every `getenv` they make (SQLite and the resolver call it
/// outside Rust's lock), and once the harness starts, test threads always run.
#[used]
#[link_section = ".init_array"]
static SET_TEST_ENV: extern "C" fn() = set_test_env;

extern "C" fn set_test_env() {
    for (name, value) in TEST_ENV {
        std::env::set_var(name, value);
    }
}

/// A proptest config running `cases` cases, whose failures are kept beside the test module
/// (`tests/it/NAME.proptest-regressions`) and replayed first on every run. Proptest's default
/// looks for a `lib.rs` or `main.rs` above the module and, finding `tests/it/main.rs`, would
/// keep them in `tests/proptest-regressions/NAME.txt` instead.
pub fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..Default::default()
    }
}

/// Held for the whole of each heavy test, so that no two run at once: those that load the
/// machine or measure it (thousands of connections, 40 services under 50 clients, a reload of
/// 3,000 checks, a headless browser, a real Prometheus). Two together would disturb each
/// other's figures and deadlines. Lighter tests still run beside one, as they did when each
/// file was a binary running its own tests two at a time.
pub fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    // A heavy test that failed must not fail the ones after it.
    HEAVY.lock().unwrap_or_else(PoisonError::into_inner)
}
