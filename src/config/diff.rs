//! What a reload changes, as a pure plan: two validated configurations compared by fingerprints, service by service and check by check.
//!
//! `ReloadPlan::diff(old, new)` decides everything a reload does before anything is touched:
//! which services are added, kept or removed, for each kept service whether its own settings
//! (policy, routes, words, hooks) or its checks changed, which old check each new check keeps
//! the health of, which verdicts are forgotten, and which settings only a restart applies. It
//! is pure and runs off the core task; the shell applies it through the state machine's own
//! methods (`failover::Service::reconfigure`) without comparing anything itself.
//!
//! A check keeps its health only if its definition is exactly what it was, and a service
//! counts as changed if anything in it differs. **Why fingerprints of the `Debug` text** rather
//! than a derived `Hash` or a serialization of the fields: every validated config type derives
//! `Debug` (the two that hold secrets write it by hand, redacting only the secret), so the
//! text names every field, and a field added later is compared without anyone remembering to.
//! A derived `Hash` would have to be added to every config type, several of which hold values
//! with no `Hash` (durations in floating point, compiled regexes, parsed conditions and
//! templates) and would need hand-written impls, each one a place where a forgotten field
//! becomes a change a reload silently ignores; the validated types are not `Serialize`. The
//! text is deterministic because the validated configuration holds no hash maps (only `Vec`
//! and `BTreeMap`). Each spec's text is streamed once into SHA-256, never held whole, and the
//! comparisons are lookups in a map: formatting both sides of every pair made a reload of a
//! few thousand checks in one service take minutes. Small sections compared whole (`[chat]`,
//! `[statuspage_push]`, `[auth]`) use their `PartialEq`, which also sees the redacted secret.

use super::{Config, ServiceSpec};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
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

    /// The `[email]` settings the mailer is built from at start (sender, relays, TLS, timeouts,
    /// templates): everything but what a reload applies, because it is read again for each
    /// transition (`group_window`, `customer_delay`, `runbook_base_url`) or set in the store
    /// after the swap (`message_id_domain`).
    fn of_mailer(email: &super::EmailConfig) -> Fingerprint {
        Fingerprint::of(&super::EmailConfig {
            runbook_base_url: None,
            group_window: std::time::Duration::ZERO,
            customer_delay: std::time::Duration::ZERO,
            message_id_domain: None,
            ..email.clone()
        })
    }

    /// A service's own settings: everything but its checks.
    fn of_settings(spec: &ServiceSpec) -> Fingerprint {
        Fingerprint::of(&ServiceSpec {
            checks: Vec::new(),
            ..spec.clone()
        })
    }
}

/// Everything a reload of `old` into `new` does, worked out before anything is applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReloadPlan {
    /// Settings that differ but only take effect at the next start (the running ones stay).
    pub restart_needed: Vec<String>,
    /// One entry per service of the new configuration, in its order.
    pub services: Vec<ServicePlan>,
    /// Services of the old configuration that the new one does not have (old indices).
    pub removed: Vec<usize>,
}

/// What becomes of one service of the new configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServicePlan {
    /// Its index in the old configuration; `None` when it is new (added).
    pub old: Option<usize>,
    /// Anything in it differs: a setting or a check.
    pub changed: bool,
    /// Its own settings differ (policy, routes, names, hooks, windows): checks aside.
    pub settings_changed: bool,
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

impl ServicePlan {
    /// The names of the checks whose verdicts the service's machine must forget: the old
    /// checks that were changed or removed, and the new checks that start over. `old` and
    /// `new` are the specs the plan was made from.
    pub fn forgotten<'a>(
        &'a self,
        old: &'a ServiceSpec,
        new: &'a ServiceSpec,
    ) -> impl Iterator<Item = &'a str> + 'a {
        let fresh = new
            .checks
            .iter()
            .zip(&self.kept)
            .filter(|(_, k)| k.is_none())
            .map(|(c, _)| c.name.as_str());
        let dropped = self
            .dropped
            .iter()
            .filter_map(|d| old.checks.get(d.old))
            .map(|c| c.name.as_str());
        fresh.chain(dropped)
    }
}

fn check_fingerprints(spec: &ServiceSpec) -> Vec<Fingerprint> {
    spec.checks.iter().map(Fingerprint::of).collect()
}

impl ReloadPlan {
    /// The plan for replacing `old` with `new`. Pure, and linear in the size of both.
    pub fn diff(old: &Config, new: &Config) -> ReloadPlan {
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
                    return ServicePlan {
                        old: None,
                        changed: true,
                        settings_changed: true,
                        kept: vec![None; spec.checks.len()],
                        dropped: Vec::new(),
                    };
                };
                present[o] = true;
                service_plan(o, &old.services[o], spec)
            })
            .collect();
        let removed = present
            .iter()
            .enumerate()
            .filter_map(|(i, p)| (!p).then_some(i))
            .collect();
        ReloadPlan {
            restart_needed: restart_needed(old, new),
            services,
            removed,
        }
    }

    /// Nothing in the services changes: none added, removed or changed.
    pub fn services_unchanged(&self) -> bool {
        self.removed.is_empty() && self.services.iter().all(|s| !s.changed)
    }
}

fn service_plan(o: usize, old: &ServiceSpec, new: &ServiceSpec) -> ServicePlan {
    let old_fps = check_fingerprints(old);
    let new_fps = check_fingerprints(new);
    let settings_changed = Fingerprint::of_settings(old) != Fingerprint::of_settings(new);
    let mut unclaimed: HashMap<Fingerprint, usize> = old_fps
        .iter()
        .enumerate()
        .rev() // So the first of two identical old checks is the one kept.
        .map(|(i, fp)| (*fp, i))
        .collect();
    let kept: Vec<Option<usize>> = new_fps.iter().map(|fp| unclaimed.remove(fp)).collect();
    // Checks compare equal in order too: a reordering changes the service (its status page
    // and evidence list the checks in order), though every check keeps its health.
    let changed = settings_changed || old_fps != new_fps;
    let new_names: HashSet<&str> = new.checks.iter().map(|c| c.name.as_str()).collect();
    let mut dropped: Vec<Dropped> = unclaimed
        .into_values()
        .map(|i| Dropped {
            old: i,
            gone: !new_names.contains(old.checks[i].name.as_str()),
        })
        .collect();
    dropped.sort_by_key(|d| d.old);
    ServicePlan {
        old: Some(o),
        changed,
        settings_changed,
        kept,
        dropped,
    }
}

/// Settings a running daemon does not change: they are reported, and the old ones stay.
/// The announcement transports (`[email]`, `[chat]`, `[statuspage_push]`, the `on_switch`
/// webhooks and Help Center articles) are built once at start; the shell keeps announcing through those until a
/// restart, so a row is never planned for a transport that is not there.
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
    if Fingerprint::of_mailer(&new.email) != Fingerprint::of_mailer(&old.email) {
        restart_needed.push("[email]".to_string());
    }
    if new.chat != old.chat {
        restart_needed.push("[chat]".to_string());
    }
    if new.cluster != old.cluster {
        restart_needed.push("[cluster]".to_string());
    }
    if new.statuspage_push != old.statuspage_push {
        restart_needed.push("[statuspage_push]".to_string());
    }
    if new.auth != old.auth {
        restart_needed.push("[auth] tokens_file".to_string());
    }
    // The chain's key and the anchor task are set up at start.
    if new.audit != old.audit {
        restart_needed.push("[audit]".to_string());
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
    let articles = |c: &Config| -> Vec<Fingerprint> {
        c.services
            .iter()
            .flat_map(|s| s.zendesk_articles.iter().map(Fingerprint::of))
            .collect()
    };
    if articles(new) != articles(old) {
        restart_needed.push("[[on_switch]] zendesk_article entries".to_string());
    }
    restart_needed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;

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

    fn summary(d: &ReloadPlan) -> Vec<(bool, Vec<Option<usize>>)> {
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
            let diff = ReloadPlan::diff(&old, &new);
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
        let diff = ReloadPlan::diff(&old, &new);
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
        let diff = ReloadPlan::diff(&old, &new);
        assert_eq!(diff.removed, [0]);
        assert_eq!(diff.services[0].old, Some(1));
        assert!(!diff.services[0].changed);
        assert_eq!(diff.restart_needed, ["[server] listen"]);
    }

    /// The plan from a configuration of services `a` and `b` to `files`, with the main file's
    /// extra text `main` (none: the same as before).
    fn plan_to(files: &[(&str, &str)], main: &str) -> (Config, Config, ReloadPlan) {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = load(
            dir.path(),
            &[
                ("a.toml", &service("a", &[("a1", "1"), ("a2", "2")])),
                ("b.toml", &service("b", &[("b1", "1")])),
            ],
        );
        let new = load(dir.path(), files);
        let new = if main.is_empty() {
            new
        } else {
            std::fs::write(
                dir.path().join("switchboard.toml"),
                format!("probes = \"probes\"\n{main}"),
            )
            .expect("write");
            Config::load(&dir.path().join("switchboard.toml")).expect("valid")
        };
        let plan = ReloadPlan::diff(&old, &new);
        (old, new, plan)
    }

    fn names<'a>(it: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        it.collect()
    }

    #[test]
    fn plan_of_an_unchanged_configuration_changes_nothing() {
        let a = service("a", &[("a1", "1"), ("a2", "2")]);
        let b = service("b", &[("b1", "1")]);
        let (old, new, plan) = plan_to(&[("a.toml", &a), ("b.toml", &b)], "");
        assert!(plan.services_unchanged());
        assert!(plan.restart_needed.is_empty());
        assert_eq!(plan.services[0].kept, [Some(0), Some(1)]);
        assert!(!plan.services[0].settings_changed);
        assert_eq!(
            names(plan.services[0].forgotten(&old.services[0], &new.services[0])),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn plan_adds_and_removes_services() {
        let a = service("a", &[("a1", "1"), ("a2", "2")]);
        let c = service("c", &[("c1", "1")]);
        let (_, _, plan) = plan_to(&[("a.toml", &a), ("c.toml", &c)], "");
        assert_eq!(plan.removed, [1], "b is removed");
        let added = &plan.services[1];
        assert_eq!(added.old, None);
        assert!(added.changed && added.settings_changed);
        assert_eq!(added.kept, [None]);
        assert!(!plan.services[0].changed, "a is kept as it was");
        assert!(!plan.services_unchanged());
    }

    #[test]
    fn plan_of_a_changed_check_forgets_its_verdict_only() {
        let a = service("a", &[("a1", "1"), ("a2", "changed")]);
        let b = service("b", &[("b1", "1")]);
        let (old, new, plan) = plan_to(&[("a.toml", &a), ("b.toml", &b)], "");
        let s = &plan.services[0];
        assert!(s.changed);
        assert!(!s.settings_changed, "only a check changed");
        assert_eq!(s.kept, [Some(0), None]);
        assert_eq!(
            s.dropped,
            [Dropped {
                old: 1,
                gone: false
            }]
        );
        assert_eq!(
            names(s.forgotten(&old.services[0], &new.services[0])),
            ["a2", "a2"],
            "the new definition starts over and the old verdict is dropped"
        );
        assert!(!plan.services[1].changed);
    }

    #[test]
    fn plan_of_a_changed_policy_keeps_every_check() {
        let a = service("a", &[("a1", "1"), ("a2", "2")])
            .replace("id = \"a\"", "id = \"a\"\nfailback = \"manual\"");
        let b = service("b", &[("b1", "1")]);
        let (old, new, plan) = plan_to(&[("a.toml", &a), ("b.toml", &b)], "");
        let s = &plan.services[0];
        assert!(s.changed && s.settings_changed);
        assert_eq!(s.kept, [Some(0), Some(1)], "every check keeps its health");
        assert!(s.dropped.is_empty());
        assert_eq!(
            names(s.forgotten(&old.services[0], &new.services[0])),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn plan_reports_new_announcement_transports_as_needing_a_restart() {
        let a = service("a", &[("a1", "1"), ("a2", "2")]);
        let b = service("b", &[("b1", "1")]);
        let (_, _, plan) = plan_to(
            &[("a.toml", &a), ("b.toml", &b)],
            "[chat]\nwebhook_url = \"http://127.0.0.1:9/hook\"\n\
             [statuspage_push]\npage_id = \"p\"\napi_key_env = \"SP_KEY\"\n",
        );
        assert_eq!(plan.restart_needed, ["[chat]", "[statuspage_push]"]);
        assert!(plan.services_unchanged());
    }
    #[test]
    fn email_settings_read_per_transition_need_no_restart_but_the_mailer_does() {
        let a = service("a", &[("a1", "1"), ("a2", "2")]);
        let b = service("b", &[("b1", "1")]);
        let (old, _, _) = plan_to(&[("a.toml", &a), ("b.toml", &b)], "");
        let mut new = old.clone();
        new.email.group_window = Duration::from_secs(60);
        new.email.customer_delay = Duration::from_secs(300);
        new.email.runbook_base_url = Some("https://runbooks.example.com/".to_string());
        new.email.message_id_domain = Some("status.example.com".to_string());
        let plan = ReloadPlan::diff(&old, &new);
        assert!(
            plan.restart_needed.is_empty(),
            "applied by the reload itself: {:?}",
            plan.restart_needed
        );
        new.email.from = "Other <other@example.com>".to_string();
        assert_eq!(ReloadPlan::diff(&old, &new).restart_needed, ["[email]"]);
    }
}
