#!/usr/bin/env bash
# CPU per HTTP probe, Switchboard against a real prometheus-blackbox-exporter, in one run.
# Installs the exporter from Debian when it is missing (idempotent, non-interactive), builds
# the bench in release mode and runs it. Extra arguments go to the bench binary, e.g.
#   scripts/bench.sh --probes 5000 --concurrency 1,16,64 --no-https
# `scripts/bench.sh public_load` runs the public-endpoint benchmark instead (wrk against the
# daemon and against nginx serving the same bytes); `scripts/bench.sh deployed_cpu` runs the
# as-deployed CPU benchmark (the real daemon next to the exporter driven by Debian's
# `prometheus`, which it installs when missing). See docs/benchmarks.md for what is
# measured and how.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

# Cluster mode: three nodes on Debian's etcd (benches/cluster.rs); needs nothing else below.
if [ "${1:-}" = "cluster" ]; then
    shift
    if [ ! -x /usr/bin/etcd ]; then
        log "installing etcd-server (Debian)"
        apt_install etcd-server
    fi
    log "cargo bench --bench cluster (release build)"
    exec cargo bench --locked --bench cluster -- "$@"
fi

# The real exporter, from Debian. Installing it may enable its systemd unit; the bench starts
# its own instance on a free loopback port with its own config, so a running service does not
# matter (its idle CPU is not counted: the bench reads its own child's /proc/<pid>/stat).
if [ -z "${BLACKBOX_EXPORTER:-}" ]; then
    if ! command -v prometheus-blackbox-exporter >/dev/null 2>&1 \
        && ! command -v blackbox_exporter >/dev/null 2>&1; then
        log "installing prometheus-blackbox-exporter (Debian)"
        apt_install prometheus-blackbox-exporter
    fi
    BLACKBOX_EXPORTER="$(command -v prometheus-blackbox-exporter || command -v blackbox_exporter)"
    export BLACKBOX_EXPORTER
fi

# wrk and nginx for the public-endpoint benchmark (benches/public_load.rs), from Debian.
if ! command -v wrk >/dev/null 2>&1 || ! command -v nginx >/dev/null 2>&1; then
    log "installing wrk and nginx-light (Debian)"
    apt_install wrk nginx-light
fi

if [ "${1:-}" = "public_load" ]; then
    shift
    log "cargo bench --bench public_load (release build)"
    exec cargo bench --locked --bench public_load -- "$@"
fi

if [ "${1:-}" = "deployed_cpu" ]; then
    shift
    if ! command -v prometheus >/dev/null 2>&1; then
        log "installing prometheus (Debian)"
        apt_install prometheus
    fi
    log "cargo bench --bench deployed_cpu (release build)"
    exec cargo bench --locked --bench deployed_cpu -- "$@"
fi

log "cargo bench --bench probe_cpu (release build)"
exec cargo bench --locked --bench probe_cpu -- "$@"
