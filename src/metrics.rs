//! Prometheus registry and named telemetry events: call sites say what happened, never format metric names.

use prometheus::Registry;

pub struct Metrics {
    pub registry: Registry,
}
