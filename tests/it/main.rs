//! The integration tests as one binary: a module per area of the daemon, and `support`, the
//! helpers they share. One binary links the crate once, where a binary per file linked it
//! forty times; the tests run as threads of one process, so no test may change the process's
//! environment, working directory or limits (see `support`).

mod support;

mod announce_daemon;
mod announce_groups;
mod announce_properties;
mod announce_smtp;
mod api;
mod audit;
mod audit_checklist;
mod audit_keyed;
mod browser;
mod cli;
mod clock;
mod cluster;
mod cluster_daemon;
mod config;
mod confirmation;
mod control_api;
mod control_cli;
mod control_openapi;
mod control_reload;
mod crash;
mod demo;
mod drill;
mod e2e;
mod failover_properties;
mod failover_scenarios;
mod hardening;
mod heartbeat;
mod holds;
mod incidents;
mod layers;
mod mail_roundtrip;
mod oncall_alerts;
mod oncall_dashboards;
mod oncall_deploy;
mod oncall_prometheus_e2e;
mod oncall_runbooks;
mod operator_messages;
mod packs;
mod probe_http;
mod probe_kinds;
mod probe_net;
mod probe_steps;
mod promtool;
mod public_load;
mod push;
mod restart_metrics;
mod simulate_config;
mod simulation;
mod slack;
mod spill;
mod status_page_browser;
mod vendor;
mod webhook;
mod zendesk;
