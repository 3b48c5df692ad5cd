//! A real IMAP server for tests: Dovecot (Debian's `dovecot-imapd`) started on a free loopback
//! port with a throwaway configuration: passwd-file authentication, one user whose mail is a
//! Maildir in a temporary directory (the one aiosmtpd delivers into), no system service, no
//! TLS. The master process is stopped with SIGTERM on drop, which stops its children too.
//!
//! Like aiosmtpd, a missing Dovecot fails the tests that need it: passing without an IMAP
//! server would prove nothing about reading a mailbox.

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

const DOVECOT: &str = "/usr/sbin/dovecot";
const MISSING: &str = "Dovecot is not installed, and these tests need a real IMAP server. \
Run the project's test script (it installs what is missing), or `apt-get install dovecot-imapd`.";

/// The one mailbox user of every test server.
pub const USER: &str = "canary";
/// Its password.
pub const PASSWORD: &str = "s3cret-imap-pw";

/// A running Dovecot serving one user's Maildir over IMAP on 127.0.0.1 (plain, and with a
/// certificate also STARTTLS on `port` and implicit TLS on `imaps_port`).
pub struct Dovecot {
    child: Child,
    pub port: u16,
    /// IMAPS, when started with a certificate.
    pub imaps_port: Option<u16>,
    /// The user's Maildir (with `new/`, `cur/`, `tmp/`): point aiosmtpd at it.
    pub maildir: PathBuf,
    /// A file holding `PASSWORD`, for `password_file`.
    pub password_file: PathBuf,
    dir: PathBuf,
}

impl Dovecot {
    /// Starts Dovecot with its configuration, state and the Maildir under `dir`, and waits
    /// until it greets.
    pub fn start(dir: &Path) -> Dovecot {
        Dovecot::start_with(dir, None, None)
    }

    /// `start`, serving `maildir` (default `dir/Maildir`) and, given a certificate and key
    /// (PEM files), speaking TLS: STARTTLS on `port`, implicit TLS on `imaps_port`.
    pub fn start_with(dir: &Path, maildir: Option<&Path>, tls: Option<(&Path, &Path)>) -> Dovecot {
        assert!(Path::new(DOVECOT).exists(), "{MISSING}");
        let port = free_port();
        let imaps_port = tls.map(|_| free_port());
        let maildir = maildir.map_or_else(|| dir.join("Maildir"), Path::to_path_buf);
        for sub in ["", "new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).expect("create Maildir");
        }
        for sub in ["run", "state", "home"] {
            std::fs::create_dir_all(dir.join(sub)).expect("create dovecot dirs");
        }
        // Dovecot refuses to run its login and mail processes as root. Run as root (as in a
        // container), they run as `nobody`, which then needs to reach and change the Maildir
        // and its home; run as anyone else, they run as that user.
        let uid = unsafe { libc::getuid() };
        let (user, group, uid, gid) = if uid == 0 {
            use std::os::unix::fs::PermissionsExt;
            let open = std::fs::Permissions::from_mode(0o777);
            for p in [dir.to_path_buf(), dir.join("home"), maildir.clone()]
                .into_iter()
                .chain(["new", "cur", "tmp"].map(|s| maildir.join(s)))
            {
                std::fs::set_permissions(&p, open.clone()).expect("chmod");
            }
            ("nobody".to_string(), "nogroup".to_string(), 65534, 65534)
        } else {
            let gid = unsafe { libc::getgid() };
            (name_of("-un"), name_of("-gn"), uid, gid)
        };
        let d = dir.display();
        std::fs::write(
            dir.join("users"),
            format!(
                "{USER}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{d}/home::userdb_mail=maildir:{}\n",
                maildir.display()
            ),
        )
        .expect("write users");
        let password_file = dir.join("imap-password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("write password");
        let conf = format!(
            r#"base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
default_login_user = {user}
default_internal_user = {user}
default_internal_group = {group}
mail_location = maildir:{maildir}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
"#,
            maildir = maildir.display(),
            ssl = match tls {
                None => "ssl = no".to_string(),
                Some((cert, key)) => format!(
                    "ssl = yes\nssl_cert = <{}\nssl_key = <{}",
                    cert.display(),
                    key.display()
                ),
            },
            imaps = imaps_port.unwrap_or(0),
        );
        std::fs::write(dir.join("dovecot.conf"), conf).expect("write dovecot.conf");
        let out = File::create(dir.join("dovecot.out")).expect("create dovecot.out");
        let err = out.try_clone().expect("clone log handle");
        let child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(dir.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {DOVECOT}: {e}. {MISSING}"));
        let mut server = Dovecot {
            child,
            port,
            imaps_port,
            maildir,
            password_file,
            dir: dir.to_path_buf(),
        };
        server.wait_ready();
        server
    }

    /// Waits until a connection is greeted with `* OK` (the login process is started on
    /// demand, after the master listens).
    fn wait_ready(&mut self) {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("dovecot exited early ({status}):\n{}", self.log());
            }
            if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 64];
                if let Ok(n) = s.read(&mut buf) {
                    if buf[..n].starts_with(b"* OK") {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "dovecot did not greet on {addr} within 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Dovecot's own log and output, for failure messages.
    pub fn log(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}{}", read("dovecot.out"), read("dovecot.log"))
    }

    /// The messages in the Maildir, delivered (`new/`) or seen by an IMAP client (`cur/`).
    pub fn messages(&self) -> Vec<PathBuf> {
        let mut all = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(self.maildir.join(sub)) {
                all.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
            }
        }
        all.sort();
        all
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master then stops the login and mail processes it started.
        let pid = self.child.id() as libc::pid_t;
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `id -un` or `id -gn`: this user's or group's name.
fn name_of(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().expect("run id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
