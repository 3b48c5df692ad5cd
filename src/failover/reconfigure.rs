//! What a reload changes in a service's decision state: the verdicts of the checks it
//! redefined are forgotten; state, holds and flap history stay.

use super::machine::Service;

impl Service {
    /// A reload gave the service a new configuration (its new `Policy` is passed to `step`
    /// from now on). The verdicts of the checks named in `forget` (changed, added or removed)
    /// no longer describe anything probed: they are dropped, so each such check counts as
    /// never reported until its first outcome under the new definition. State, holds and flap
    /// history stay. The next planned window's wake-up is asked for again, since the new
    /// policy may plan other windows.
    pub fn reconfigure<'a>(&mut self, forget: impl IntoIterator<Item = &'a str>) {
        for check in forget {
            self.forget_check(check);
        }
        self.next_window_wake = None;
    }

    /// Drops what the machine knows of one check: its health, its failing streak and its
    /// last outcome's detail.
    pub fn forget_check(&mut self, check: &str) {
        self.health.remove(check);
        self.failing_since.remove(check);
        self.observed.remove(check);
    }
}

#[cfg(test)]
mod tests {
    use crate::clock::Timestamp;
    use crate::config::{Failback, FailoverWhen};
    use crate::failover::{step, Event, Policy, Service, Side, State};
    use crate::health::Health;
    use std::time::Duration;

    fn policy() -> Policy {
        Policy {
            failover_when: FailoverWhen::Any,
            failback: Failback::Auto,
            recovery_hold: Duration::from_secs(60),
            primary: vec!["page".into(), "api".into()],
            backup: vec!["backup".into()],
            max_failovers: 0,
            flap_window: Duration::from_secs(3600),
            maintenance_side: Side::Backup,
            windows: Vec::new(),
        }
    }

    fn down(check: &str) -> Event {
        Event::Health {
            check: check.into(),
            health: Health::Down,
            detail: "HTTP 500".into(),
            seen: Default::default(),
        }
    }

    #[test]
    fn reconfigure_forgets_only_the_named_verdicts_and_keeps_the_state() {
        let p = policy();
        let t0 = Timestamp::from_millis(1_000_000);
        let mut s = Service::new("svc", State::Operational, t0);
        step(&mut s, &p, &down("page"), t0);
        step(&mut s, &p, &down("api"), t0);
        let state = s.state;
        s.next_window_wake = Some(t0);
        s.reconfigure(["page"]);
        assert_eq!(s.health_of("page"), Health::Unknown, "forgotten");
        assert!(!s.failing_since.contains_key("page") && !s.observed.contains_key("page"));
        assert_eq!(s.health_of("api"), Health::Down, "kept");
        assert!(s.failing_since.contains_key("api"));
        assert_eq!(
            s.state, state,
            "the state is not the configuration's to change"
        );
        assert_eq!(
            s.next_window_wake, None,
            "the window wake is asked for again"
        );
    }
}
