//! One Chromium per probe: started headless in a process group of its own with a fresh profile
//! directory and the DevTools protocol on a pipe, and killed as a group (then its profile
//! removed) when the probe ends, however it ends.
//!
//! The protocol runs over `--remote-debugging-pipe` (Chromium reads commands on fd 3 and writes
//! replies on fd 4, each message ended by a NUL byte) rather than a debugging port: no port to
//! discover, and no other local user can connect to a port and drive the browser.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use tokio::net::unix::pipe;

/// The flags every probe's Chromium gets: headless, no first-run or background traffic (which
/// would make timings noisy and reach the Internet), no QUIC (tests and most probes are plain
/// TCP), no sandbox (the daemon usually runs as a service user without user namespaces).
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--window-size=1280,800",
    "--remote-debugging-pipe",
];

/// A running Chromium. Dropping it kills the whole process group and removes the profile.
pub struct Browser {
    /// Also the process group's id: the browser leads its group.
    pid: i32,
    child: Option<tokio::process::Child>,
    profile: Option<PathBuf>,
    pub(super) to_browser: pipe::Sender,
    pub(super) from_browser: pipe::Receiver,
}

/// Why Chromium could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot create the browser profile directory: {0}")]
    Profile(std::io::Error),
    #[error("cannot create the DevTools pipes: {0}")]
    Pipe(std::io::Error),
    #[error("cannot start {path}: {source}")]
    Spawn {
        path: String,
        source: std::io::Error,
    },
}

/// A pipe whose both ends close on exec: only the two ends made fd 3 and 4 in the child are
/// inherited, and the browser never holds our side of either.
fn cloexec_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints, as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Browser {
    /// Starts `chromium` with a fresh profile directory under the system temp directory.
    pub fn launch(chromium: &Path) -> Result<Browser, LaunchError> {
        let profile = tempdir().map_err(LaunchError::Profile)?;
        match Self::spawn(chromium, &profile) {
            Ok(mut b) => {
                b.profile = Some(profile);
                Ok(b)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&profile);
                Err(e)
            }
        }
    }

    fn spawn(chromium: &Path, profile: &Path) -> Result<Browser, LaunchError> {
        // Commands go down `cmd`; replies come up `reply`.
        let (cmd_read, cmd_write) = cloexec_pipe().map_err(LaunchError::Pipe)?;
        let (reply_read, reply_write) = cloexec_pipe().map_err(LaunchError::Pipe)?;
        let (child_in, child_out) = (cmd_read.as_raw_fd(), reply_write.as_raw_fd());
        let mut command = tokio::process::Command::new(chromium);
        command
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            // Chromium's own temporary files (shared memory, crash dumps) go into the profile,
            // so removing the profile removes everything the browser left.
            .env("TMPDIR", profile)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // A group of its own, so the renderers, GPU and utility processes it forks can be
            // killed with it: killing only the browser's pid leaves them running.
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec. The ends
        // are first copied above fd 10 so that neither can be overwritten by the other's dup2
        // (a pipe end may itself be fd 3 or 4); dup2 clears close-on-exec on 3 and 4 only.
        unsafe {
            command.pre_exec(move || {
                let a = libc::fcntl(child_in, libc::F_DUPFD_CLOEXEC, 10);
                let b = libc::fcntl(child_out, libc::F_DUPFD_CLOEXEC, 10);
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|source| LaunchError::Spawn {
            path: chromium.display().to_string(),
            source,
        })?;
        // The child holds its copies now; ours of its ends must close, so that its exit shows
        // as end-of-file on the reply pipe.
        drop((cmd_read, reply_write));
        let pid = child.id().map_or(0, |p| p as i32);
        let to_browser = pipe::Sender::from_owned_fd(cmd_write).map_err(LaunchError::Pipe)?;
        let from_browser = pipe::Receiver::from_owned_fd(reply_read).map_err(LaunchError::Pipe)?;
        Ok(Browser {
            pid,
            child: Some(child),
            profile: None,
            to_browser,
            from_browser,
        })
    }

    /// The profile directory, unique to this browser (tests find its processes by it).
    pub fn profile(&self) -> Option<&Path> {
        self.profile.as_deref()
    }

    /// Kills the process group and waits (briefly) for the browser itself, then removes the
    /// profile: the clean end after a probe. `Drop` does the same without waiting.
    pub async fn close(mut self) {
        self.kill_group();
        if let Some(mut child) = self.child.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), child.wait()).await;
        }
        if let Some(profile) = self.profile.take() {
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(profile)).await;
        }
    }

    fn kill_group(&self) {
        if self.pid > 0 {
            // SAFETY: a plain syscall; the group is ours (its leader is our unreaped child, so
            // its id cannot have been reused).
            unsafe {
                libc::kill(-self.pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The probe was cut short (its timeout, or the loop stopped): nothing may outlive it.
        self.kill_group();
        // tokio reaps the dropped child in the background.
        drop(self.child.take());
        if let Some(profile) = self.profile.take() {
            // Removed here and now, though it blocks briefly: this is the rare path (a timeout),
            // and a removal left to another thread is lost when the process exits right after
            // (`switchboard probe`). A process of the group still being killed on another CPU
            // may add a file meanwhile; the second attempt, a moment later, takes that too.
            if std::fs::remove_dir_all(&profile).is_err() {
                std::thread::sleep(std::time::Duration::from_millis(100));
                let _ = std::fs::remove_dir_all(&profile);
            }
        }
    }
}

/// A new, private directory `switchboard-browser-XXXXXX` under the system temp directory.
fn tempdir() -> std::io::Result<PathBuf> {
    let mut template = std::env::temp_dir()
        .join("switchboard-browser-XXXXXX")
        .into_os_string()
        .into_encoded_bytes();
    template.push(0);
    // SAFETY: `template` is a NUL-terminated, writable buffer ending in six X's, as mkdtemp asks.
    let made = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
    if made.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    template.pop();
    // SAFETY: the bytes came from an OsString and mkdtemp only replaced X's with ASCII.
    let os = unsafe { std::ffi::OsString::from_encoded_bytes_unchecked(template) };
    Ok(PathBuf::from(os))
}
