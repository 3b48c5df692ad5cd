//! What a reload changes: two validated configurations compared by fingerprints, service by service and check by check.
//!
//! A check keeps its health across a reload only if its definition is exactly what it was, and
//! a service counts as changed if anything in it differs. "Exactly" is the `Debug` text of the
//! spec, which names every field (so a field added later is compared without anyone
//! remembering to). Each spec's text is hashed once into a fingerprint and the comparisons
//! are lookups in a map: formatting both sides of every pair made a reload of a few thousand
//! checks in one service take minutes. The diff is pure and runs off the core task; the core
//! only applies it.

use super::{Config, ServiceSpec};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::{self, Write as _};

/// SHA-256 of a value's `Debug` text: equal fingerprints mean equal texts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

/// Feeds formatted text straight into the hash, so no spec's text is ever held whole.
struct HashWriter(Sha256);

impl fmt::Write for HashWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

impl Fingerprint {
    pub fn of(value: &impl fmt::Debug) -> Fingerprint {
        let mut w = HashWriter(Sha256::new());
        // Writing into a hasher cannot fail; a `Debug` impl that errs would only shorten the
        // text, which can only make two specs look different (their health starts over).
        let _ = write!(w, "{value:?}");
        Fingerprint(w.0.finalize().into())
    }

    /// A service's own settings (everything but its checks), followed by its checks'
    /// fingerprints in order: equal exactly when the whole spec's `Debug` texts are.
    fn of_service(spec: &ServiceSpec, checks: &[Fingerprint]) -> Fingerprint {
        let own = ServiceSpec {
            checks: Vec::new(),
            ..spec.clone()
        };
        let mut w = HashWriter(Sha256::new());
        let _ = write!(w, "{own:?}");
        for c in checks {
            w.0.update(c.0);
        }
        Fingerprint(w.0.finalize().into())
    }
}

/// What changed between the running configuration and a new one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigDiff {
    /// Settings that differ but only take effect at the next start.
    pub restart_needed: Vec<String>,
    /// One entry per service of the new configuration, in its order.
    pub services: Vec<ServiceDiff>,
    /// Services of the old configuration that the new one does not have (old indices).
    pub removed: Vec<usize>,
}

/// One service of the new configuration against the old one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServiceDiff {
    /// Its index in the old configuration; `None` when it is new.
    pub old: Option<usize>,
    /// Anything in it differs: a setting or a check.
    pub changed: bool,
    /// For each of its checks, the old check (index in the old service) with exactly the
    /// same definition, whose health it keeps; `None`: new or changed, its health starts over.
    pub kept: Vec<Option<usize>>,
    /// Old checks with no identical new check: their verdicts are forgotten.
    pub dropped: Vec<Dropped>,
}

/// An old check that has no identical check in the new configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// Its index in the old service.
    pub old: usize,
    /// No check of the new service has its name: it was removed (or renamed), not changed.
    pub gone: bool,
}

fn check_fingerprints(spec: &ServiceSpec) -> Vec<Fingerprint> {
    spec.checks.iter().map(Fingerprint::of).collect()
}

impl ConfigDiff {
    /// Compares `new` with `old`. Linear in the size of both.
    pub fn between(old: &Config, new: &Config) -> ConfigDiff {
        let old_index: HashMap<&str, usize> = old
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let mut present = vec![false; old.services.len()];
        let services = new
            .services
            .iter()
            .map(|spec| {
                let Some(&o) = old_index.get(spec.id.as_str()) else {
                    return ServiceDiff {
                        old: None,
                        changed: true,
                        kept: vec![None; spec.checks.len()],
                        dropped: Vec::new(),
                    };
                };
                present[o] = true;
                service_diff(o, &old.services[o], spec)
            })
            .collect();
        let removed = present
            .iter()
            .enumerate()
            .filter_map(|(i, p)| (!p).then_some(i))
            .collect();
        ConfigDiff {
            restart_needed: restart_needed(old, new),
            services,
            removed,
        }
    }
}

fn service_diff(o: usize, old: &ServiceSpec, new: &ServiceSpec) -> ServiceDiff {
    let old_fps = check_fingerprints(old);
    let new_fps = check_fingerprints(new);
    let changed = Fingerprint::of_service(old, &old_fps) != Fingerprint::of_service(new, &new_fps);
    let mut unclaimed: HashMap<Fingerprint, usize> = old_fps
        .iter()
        .enumerate()
        .rev() // So the first of two identical old checks is the one kept.
        .map(|(i, fp)| (*fp, i))
        .collect();
    let kept: Vec<Option<usize>> = new_fps.iter().map(|fp| unclaimed.remove(fp)).collect();
    let new_names: std::collections::HashSet<&str> =
        new.checks.iter().map(|c| c.name.as_str()).collect();
    let mut dropped: Vec<Dropped> = unclaimed
        .into_values()
        .map(|i| Dropped {
            old: i,
            gone: !new_names.contains(old.checks[i].name.as_str()),
        })
        .collect();
    dropped.sort_by_key(|d| d.old);
    ServiceDiff {
        old: Some(o),
        changed,
        kept,
        dropped,
    }
}

/// Settings a running daemon cannot change: they are reported, and the old ones stay.
fn restart_needed(old: &Config, new: &Config) -> Vec<String> {
    let mut restart_needed = Vec::new();
    if new.server.listen != old.server.listen {
        restart_needed.push("[server] listen".to_string());
    }
    if new.server.max_concurrent_probes != old.server.max_concurrent_probes {
        restart_needed.push("[server] max_concurrent_probes".to_string());
    }
    if new.storage.path != old.storage.path {
        restart_needed.push("[storage] path".to_string());
    }
    if Fingerprint::of(&new.email) != Fingerprint::of(&old.email) {
        restart_needed.push("[email]".to_string());
    }
    if new.auth != old.auth {
        restart_needed.push("[auth] tokens_file".to_string());
    }
    let hooks = |c: &Config| -> Vec<Fingerprint> {
        c.services
            .iter()
            .flat_map(|s| s.on_switch.iter().map(Fingerprint::of))
            .collect()
    };
    if hooks(new) != hooks(old) {
        restart_needed.push("[[on_switch]] webhooks".to_string());
    }
    restart_needed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A configuration of `files` (name, text) under a temporary directory.
    fn load(dir: &Path, files: &[(&str, &str)]) -> Config {
        let _ = std::fs::remove_dir_all(dir.join("probes"));
        std::fs::create_dir_all(dir.join("probes")).expect("mkdir");
        std::fs::write(dir.join("switchboard.toml"), "probes = \"probes\"\n").expect("write");
        for (name, text) in files {
            std::fs::write(dir.join("probes").join(name), text).expect("write");
        }
        Config::load(&dir.join("switchboard.toml")).expect("valid")
    }

    fn service(id: &str, checks: &[(&str, &str)]) -> String {
        let mut s = format!("[service]\nid = \"{id}\"\n");
        for (name, path) in checks {
            s.push_str(&format!(
                "[[check]]\nname = \"{name}\"\nurl = \"http://127.0.0.1/{path}\"\n"
            ));
        }
        s
    }

    /// What the reload compared before fingerprints: `Debug` texts, pair by pair.
    fn by_text(old: &Config, new: &Config) -> Vec<(bool, Vec<Option<usize>>)> {
        new.services
            .iter()
            .map(|s| match old.services.iter().find(|o| o.id == s.id) {
                None => (true, vec![None; s.checks.len()]),
                Some(o) => (
                    format!("{o:?}") != format!("{s:?}"),
                    s.checks
                        .iter()
                        .map(|c| {
                            o.checks
                                .iter()
                                .position(|x| format!("{x:?}") == format!("{c:?}"))
                        })
                        .collect(),
                ),
            })
            .collect()
    }

    fn summary(d: &ConfigDiff) -> Vec<(bool, Vec<Option<usize>>)> {
        d.services
            .iter()
            .map(|s| (s.changed, s.kept.clone()))
            .collect()
    }

    #[test]
    fn fingerprints_decide_as_the_debug_texts_did() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = service("a", &[("a1", "1"), ("a2", "2"), ("a3", "3")]);
        let b = service("b", &[("b1", "1")]);
        let old = load(dir.path(), &[("a.toml", &a), ("b.toml", &b)]);
        let cases: Vec<Vec<(&str, String)>> = vec![
            // Nothing changed.
            vec![("a.toml", a.clone()), ("b.toml", b.clone())],
            // One check's target changed.
            vec![
                (
                    "a.toml",
                    service("a", &[("a1", "1"), ("a2", "changed"), ("a3", "3")]),
                ),
                ("b.toml", b.clone()),
            ],
            // Checks reordered: each keeps its health, the service counts as changed.
            vec![
                (
                    "a.toml",
                    service("a", &[("a3", "3"), ("a1", "1"), ("a2", "2")]),
                ),
                ("b.toml", b.clone()),
            ],
            // A check removed, one added, a service setting changed.
            vec![
                ("a.toml", service("a", &[("a1", "1"), ("a4", "4")])),
                (
                    "b.toml",
                    b.replace("id = \"b\"", "id = \"b\"\nrecovery_hold = \"1m\""),
                ),
            ],
            // A service removed, another added.
            vec![
                ("a.toml", a.clone()),
                ("c.toml", service("c", &[("c1", "1")])),
            ],
        ];
        for files in cases {
            let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
            let new = load(dir.path(), &files);
            let diff = ConfigDiff::between(&old, &new);
            assert_eq!(summary(&diff), by_text(&old, &new), "{files:?}");
        }
    }

    #[test]
    fn a_removed_check_is_gone_and_a_changed_one_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = load(
            dir.path(),
            &[(
                "a.toml",
                &service("a", &[("a1", "1"), ("a2", "2"), ("a3", "3")]),
            )],
        );
        let new = load(
            dir.path(),
            &[("a.toml", &service("a", &[("a1", "1"), ("a2", "changed")]))],
        );
        let diff = ConfigDiff::between(&old, &new);
        assert_eq!(diff.removed, Vec::<usize>::new());
        assert_eq!(diff.services[0].kept, [Some(0), None]);
        assert_eq!(
            diff.services[0].dropped,
            [
                Dropped {
                    old: 1,
                    gone: false
                },
                Dropped { old: 2, gone: true }
            ]
        );
    }

    #[test]
    fn removed_services_and_restart_settings_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = load(
            dir.path(),
            &[
                ("a.toml", &service("a", &[("a1", "1")])),
                ("b.toml", &service("b", &[("b1", "1")])),
            ],
        );
        std::fs::write(
            dir.path().join("switchboard.toml"),
            "probes = \"probes\"\n[server]\nlisten = \"127.0.0.1:9999\"\n",
        )
        .expect("write");
        std::fs::remove_file(dir.path().join("probes/a.toml")).expect("rm");
        let new = Config::load(&dir.path().join("switchboard.toml")).expect("valid");
        let diff = ConfigDiff::between(&old, &new);
        assert_eq!(diff.removed, [0]);
        assert_eq!(diff.services[0].old, Some(1));
        assert!(!diff.services[0].changed);
        assert_eq!(diff.restart_needed, ["[server] listen"]);
    }
}
