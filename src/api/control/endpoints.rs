//! The control endpoint table: method, path, role and summary of each, from which the router
//! is checked and the OpenAPI document built.

use crate::api::auth::Role;

/// One row of the route table the router and the OpenAPI document are both built from.
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    /// `None`: public.
    pub role: Option<Role>,
    pub summary: &'static str,
}

/// Every control endpoint, in the order the OpenAPI document lists them.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        method: "get",
        path: "/api/v1/cluster",
        role: Some(Role::Viewer),
        summary: "The cluster as this node sees it: leader, nodes, each node's sync state (404 on a single node)",
    },
    Endpoint {
        method: "get",
        path: "/api/v1/services",
        role: Some(Role::Viewer),
        summary: "Every service: state, since, cause, side, checks with health, holds",
    },
    Endpoint {
        method: "get",
        path: "/api/v1/services/{id}",
        role: Some(Role::Viewer),
        summary: "One service",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/services/{id}/failover",
        role: Some(Role::Operator),
        summary: "Switch to the backup now (force: admin only)",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/services/{id}/failback",
        role: Some(Role::Operator),
        summary: "Switch back to the primary now",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/services/{id}/pin",
        role: Some(Role::Operator),
        summary: "Hold the routes on one side, optionally until a time",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/services/{id}/unpin",
        role: Some(Role::Operator),
        summary: "Release a pin",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/services/{id}/maintenance",
        role: Some(Role::Operator),
        summary: "Start, stop or schedule maintenance",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/drills",
        role: Some(Role::Operator),
        summary: "Start a drill (live or dry run)",
    },
    Endpoint {
        method: "get",
        path: "/api/v1/drills",
        role: Some(Role::Operator),
        summary: "Drills, newest first, with their reports",
    },
    Endpoint {
        method: "get",
        path: "/api/v1/drills/{id}",
        role: Some(Role::Operator),
        summary: "One drill's report, steps as they happen",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/drills/{id}/abort",
        role: Some(Role::Operator),
        summary: "Abort a running drill",
    },
    Endpoint {
        method: "get",
        path: "/api/v1/audit",
        role: Some(Role::Viewer),
        summary: "Audit records as JSON lines",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/audit/{id}/review",
        role: Some(Role::Operator),
        summary: "Acknowledge an automatic transition with a note",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/incidents/{id}/updates",
        role: Some(Role::Operator),
        summary: "Add an update (status and words for customers) to an incident",
    },
    Endpoint {
        method: "post",
        path: "/api/v1/heartbeats/{check}",
        // Not a role: the check's own heartbeat token (see `heartbeats.rs`).
        role: None,
        summary: "A job reports that it ran (heartbeat check), with the check's own token",
    },
    Endpoint {
        method: "post",
        path: "/-/reload",
        role: Some(Role::Admin),
        summary: "Reload the configuration (keeps the running one if invalid)",
    },
    Endpoint {
        method: "get",
        path: "/api/v1/openapi.json",
        role: None,
        summary: "This document",
    },
];
