//! Vendor corroboration's one decision outside `health`: when a vendor's declaration becomes
//! an on-call note. Pure, like the rest of the machine.
//!
//! A vendor never fails a service over: its checks are neither primary nor backup, so no
//! rule of the machine counts them (`Policy::from_spec` leaves them out). What it can do is
//! shorten our own confirmation (`health::corroborated`) and speak: when a vendor starts
//! declaring an outage while the service's own checks pass (`Operational`), on-call gets one
//! note quoting the vendor, and customers nothing, since nothing changed for them. When our
//! checks already fail, the vendor's words travel as evidence of the transitions instead.

use super::State;

/// Whether a vendor's verdict moving from `was_declared` to `declared` (an outage at or above
/// its check's `impact`) notes on-call about a service in `state`: once, when the declaration
/// starts, and only while the service's own checks pass.
pub fn notes_oncall(state: State, was_declared: bool, declared: bool) -> bool {
    declared && !was_declared && state == State::Operational
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_note_when_the_declaration_starts_while_our_checks_pass() {
        assert!(notes_oncall(State::Operational, false, true));
        assert!(
            !notes_oncall(State::Operational, true, true),
            "not again while it lasts"
        );
        assert!(
            !notes_oncall(State::Operational, true, false),
            "nor on its end"
        );
        for state in [State::Degraded, State::FailedOver, State::Outage] {
            assert!(
                !notes_oncall(state, false, true),
                "{state:?}: our checks fail too, the transition carries the words"
            );
        }
    }
}
