//! Switchboard: probes customer-facing support channels, fails over contact routes, announces and audits.
//!
//! See ARCHITECTURE.md for the code map and the invariants.

pub mod announce; // messages (pure rendering), outbox delivery, e-mail transport
pub mod api; // HTTP server: /metrics, /status, /api/v2 (Statuspage), /go, /api/v1
pub mod app; // the shell: schedules probes, feeds the core, executes actions, serves HTTP
pub mod audit; // tamper-evident audit log: record shape, hash chain, verify, export
pub mod client; // the HTTP client behind `status`, `drill`, `failover`, `failback`
pub mod clock; // Timestamp; the one wall-clock read
pub mod cluster; // the coordinator seam: single node always leads
pub mod config; // raw TOML -> validated Config with file:line diagnostics
pub mod demo; // `switchboard demo`: simulated support site + scripted outage
pub mod drill; // drills: the timed report of an operator-started exercise of the failover path
pub mod failover; // pure failover state machine per service
pub mod health; // pure: outcomes -> check health
pub mod history; // probe history for the status page: summed in memory, flushed in batches
pub mod html; // HTML escaping for the status page and e-mail
pub mod incident; // pure: what a transition does to a service's incident
pub mod lang; // layer 0 languages: conditions, step templates, DNS vocabulary, planned windows
pub mod metrics; // Prometheus registry and named telemetry events
pub mod pem; // PEM certificates (CA bundles) read with rustls-pki-types
pub mod probe; // run one check once -> Outcome (http, conditions)
pub mod sim; // `switchboard simulate`: the core over simulated months (from one or N voting vantages), against a plain policy
pub mod store; // SQLite: service state, transitions, outbox
pub mod template; // message and webhook-body templates (minijinja): load, validate, render
pub mod vantage; // pure: does this vantage suspect its own network (most hosts failing at once)
pub mod view; // read-only snapshot the HTTP side serves
