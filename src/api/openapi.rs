//! `GET /api/v1/openapi.json`: the OpenAPI 3.0 document of the control API, built from the same endpoint table as the router.
//!
//! Paths, methods, roles and summaries come from `control::ENDPOINTS`, which a test holds
//! equal to the routes the router answers; bodies and responses are described next to each
//! other here and checked against the running daemon by schemathesis (`tests/it/control_openapi.rs`).
//! Written by hand rather than derived (utoipa) to keep the dependency tree as it is: the
//! document is small and the schemathesis run is what keeps it true.

use super::auth::Role;
use super::control::{Endpoint, BODY_LIMIT, ENDPOINTS, PUBLIC_LIMIT, TEXT_LIMIT};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// `GET /api/v1/openapi.json`.
pub async fn handler() -> Response {
    let mut r = axum::Json(document()).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn text(description: &str) -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": TEXT_LIMIT, "description": description })
}

fn nullable_text(description: &str) -> Value {
    let mut t = text(description);
    t["nullable"] = json!(true);
    t
}

/// `public_message`: optional words for customers, beside the internal `reason`.
fn public_message() -> Value {
    json!({ "type": "string", "nullable": true, "minLength": 1, "maxLength": PUBLIC_LIMIT,
        "description": "What customers may read (status page, feeds, Statuspage, customer e-mail); not blank when given. Without it they get the templates' words. The reason is never shown to them." })
}

fn nullable_string() -> Value {
    json!({ "type": "string", "nullable": true })
}

/// The request body schema of an endpoint, if it takes one.
fn request(e: &Endpoint) -> Option<(Value, bool)> {
    let reason = text("Why (required, not blank); kept in the audit log.");
    let body = match (e.method, e.path) {
        ("post", "/api/v1/services/{id}/failover") => json!({
            "type": "object", "additionalProperties": false, "required": ["reason"],
            "properties": { "reason": reason, "public_message": public_message(),
                "force": { "type": "boolean", "description": "Admin only: switch even to a backup whose checks are down." } }
        }),
        ("post", "/api/v1/services/{id}/failback") | ("post", "/api/v1/services/{id}/unpin") => {
            json!({
                "type": "object", "additionalProperties": false, "required": ["reason"],
                "properties": { "reason": reason, "public_message": public_message() }
            })
        }
        ("post", "/api/v1/services/{id}/pin") => json!({
            "type": "object", "additionalProperties": false, "required": ["reason", "side"],
            "properties": { "reason": reason, "public_message": public_message(), "side": reference("Side"),
                "until": { "type": "string", "nullable": true, "description": "RFC 3339 time or a duration from now such as \"30m\"." },
                "force": { "type": "boolean", "description": "Admin only: pin a backup whose checks are down." } }
        }),
        ("post", "/api/v1/services/{id}/maintenance") => json!({
            "type": "object", "additionalProperties": false, "required": ["reason", "action"],
            "properties": { "reason": reason, "public_message": public_message(),
                "action": { "type": "string", "enum": ["start", "stop", "schedule"] },
                "duration": { "type": "string", "nullable": true, "description": "How long (start: optional; schedule: required), e.g. \"2h\"." },
                "starts_at": { "type": "string", "nullable": true, "description": "schedule only: RFC 3339 time or a duration from now." } }
        }),
        ("post", "/api/v1/drills") => json!({
            "type": "object", "additionalProperties": false,
            "required": ["service", "mode", "duration", "reason"],
            "properties": {
                "service": { "type": "string" },
                "mode": { "type": "string", "enum": ["live", "dry_run"] },
                "duration": { "type": "string", "description": "1s to 24h, e.g. \"10m\"." },
                "reason": reason,
                "ticket": nullable_text("Change or ticket reference."),
                "public_message": public_message() }
        }),
        ("post", "/api/v1/drills/{id}/abort") => {
            return Some((
                json!({
                    "type": "object", "additionalProperties": false,
                    "properties": { "reason": nullable_text("Why (optional); kept in the audit log."),
                        "public_message": public_message() }
                }),
                false,
            ))
        }
        ("post", "/api/v1/heartbeats/{check}") => {
            return Some((
                json!({
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "status": { "type": "string", "enum": ["up", "down"],
                            "description": "How the job's run went (default up); down fails the check." },
                        "message": { "type": "string",
                            "maxLength": crate::probe::heartbeat::MESSAGE_LIMIT,
                            "description": "The job's words, shown with the check's outcome." } }
                }),
                false,
            ))
        }
        ("post", "/api/v1/audit/{id}/review") => json!({
            "type": "object", "additionalProperties": false, "required": ["note"],
            "properties": { "note": text("What the reviewer found.") }
        }),
        ("post", "/api/v1/incidents/{id}/updates") => json!({
            "type": "object", "additionalProperties": false, "required": ["status", "body"],
            "properties": {
                "status": { "type": "string", "enum": crate::incident::IncidentStatus::ALL
                    .iter().map(|s| s.as_str()).collect::<Vec<_>>() },
                "body": { "type": "string", "minLength": 1,
                    "maxLength": super::incidents::MAX_BODY_CHARS,
                    "description": "What customers read (not blank)." } }
        }),
        _ => return None,
    };
    Some((body, true))
}

/// The success response of an endpoint: status and content.
fn success(e: &Endpoint) -> (&'static str, Value) {
    let json_of = |schema: Value| json!({ "application/json": { "schema": schema } });
    match (e.method, e.path) {
        ("get", "/api/v1/services") => (
            "200",
            json_of(json!({
                "type": "object", "required": ["services"],
                "properties": { "services": { "type": "array", "items": reference("Service") } }
            })),
        ),
        ("get", "/api/v1/services/{id}") => ("200", json_of(reference("Service"))),
        ("get", "/api/v1/cluster") => (
            "200",
            json_of(json!({
                "type": "object", "required": ["node", "leader", "nodes"],
                "properties": {
                    "node": { "type": "string", "description": "The node that answered" },
                    "leader": { "type": ["string", "null"] },
                    "etcd_up": { "type": "boolean" },
                    "lease_age_seconds": { "type": ["number", "null"] },
                    "nodes": { "type": "array", "items": { "type": "object",
                        "required": ["name", "url", "role", "applied", "in_sync"],
                        "properties": {
                            "name": { "type": "string" }, "url": { "type": "string" },
                            "role": { "type": "string" }, "applied": { "type": "integer" },
                            "in_sync": { "type": "boolean" } } } }
                }
            })),
        ),
        ("post", "/api/v1/services/{id}/maintenance") => (
            "200",
            json!({ "application/json": { "schema": { "oneOf": [
                reference("Applied"), reference("ScheduledWindow") ] } } }),
        ),
        ("post", "/api/v1/drills") => ("201", json_of(reference("DrillReport"))),
        ("get", "/api/v1/drills") => (
            "200",
            json_of(json!({
                "type": "object", "required": ["drills"],
                "properties": { "drills": { "type": "array", "items": reference("DrillReport") } }
            })),
        ),
        ("get", "/api/v1/drills/{id}") => ("200", json_of(reference("DrillReport"))),
        ("get", "/api/v1/audit") => (
            "200",
            json!({ "application/x-ndjson": { "schema": { "type": "string",
                "description": "One audit record per line (as `switchboard audit export --format jsonl`), with `pending_review` and `review`." } } }),
        ),
        ("post", "/api/v1/audit/{id}/review") => ("201", json_of(reference("AuditRecord"))),
        ("post", "/-/reload") => ("200", json_of(reference("ReloadResult"))),
        ("post", "/api/v1/heartbeats/{check}") => (
            "200",
            json_of(json!({
                "type": "object", "required": ["check", "status", "received_at"],
                "properties": { "check": { "type": "string" },
                    "status": { "type": "string", "enum": ["up", "down"] },
                    "received_at": { "type": "string", "description": "RFC 3339, UTC" } }
            })),
        ),
        ("post", "/api/v1/incidents/{id}/updates") => (
            "201",
            json_of(json!({
                "type": "object", "required": ["incident"],
                "properties": { "incident": { "type": "object",
                    "description": "The incident in Statuspage's shape, with its updates (newest first)." } }
            })),
        ),
        ("get", "/api/v1/openapi.json") => ("200", json_of(json!({ "type": "object" }))),
        _ => ("200", json_of(reference("Applied"))),
    }
}

fn error_response(description: &str) -> Value {
    json!({ "description": description,
        "content": { "application/json": { "schema": reference("Error") } } })
}

fn operation(e: &Endpoint) -> Value {
    let mut op = Map::new();
    op.insert("summary".into(), json!(e.summary));
    op.insert(
        "operationId".into(),
        json!(format!(
            "{}{}",
            e.method,
            e.path
                .replace(['/', '{', '}', '-', '.'], "_")
                .trim_end_matches('_')
        )),
    );
    let mut params = Vec::new();
    if e.path.contains("{id}") {
        let schema = if e.path.starts_with("/api/v1/audit/") {
            json!({ "type": "integer", "format": "int64" })
        } else {
            json!({ "type": "string" })
        };
        params.push(json!({ "name": "id", "in": "path", "required": true, "schema": schema }));
    }
    if e.path.contains("{check}") {
        params.push(json!({ "name": "check", "in": "path", "required": true,
            "schema": { "type": "string" }, "description": "A check of kind heartbeat." }));
    }
    match (e.method, e.path) {
        ("get", "/api/v1/audit") => {
            params.push(
                json!({ "name": "since", "in": "query", "schema": { "type": "string" },
                "description": "RFC 3339 time or a duration ago (\"24h\")." }),
            );
            params
                .push(json!({ "name": "service", "in": "query", "schema": { "type": "string" } }));
            params.push(json!({ "name": "limit", "in": "query",
                "schema": { "type": "integer", "minimum": 1, "maximum": 10000 } }));
            params.push(
                json!({ "name": "pending_review", "in": "query", "schema": { "type": "boolean" } }),
            );
        }
        ("get", "/api/v1/drills") => {
            params
                .push(json!({ "name": "service", "in": "query", "schema": { "type": "string" } }));
            params.push(json!({ "name": "limit", "in": "query",
                "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }));
        }
        _ => {}
    }
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some((schema, required)) = request(e) {
        op.insert(
            "requestBody".into(),
            json!({ "required": required,
                "content": { "application/json": { "schema": schema } } }),
        );
    }
    let (status, content) = success(e);
    let mut responses = Map::new();
    responses.insert(
        status.into(),
        json!({ "description": "OK", "content": content }),
    );
    if e.path == "/api/v1/services/{id}/maintenance" {
        responses.insert(
            "201".into(),
            json!({ "description": "Window scheduled",
                "content": { "application/json": { "schema": reference("ScheduledWindow") } } }),
        );
    }
    match e.role {
        // Authenticated by the check's own heartbeat token, not by a role.
        None if e.path.contains("{check}") => {
            op.insert(
                "description".into(),
                json!("Needs the check's heartbeat token (token_env, token_file or token_sha256 of the check) as a bearer token."),
            );
            responses.insert(
                "401".into(),
                error_response("No bearer token, or not this check's token"),
            );
            responses.insert(
                "429".into(),
                error_response("Too many wrong or missing tokens from this client"),
            );
            responses.insert("400".into(), error_response("Malformed JSON or path"));
            responses.insert("404".into(), error_response("No such check"));
            responses.insert("405".into(), error_response("Wrong method"));
            responses.insert(
                "409".into(),
                error_response("The check is not a heartbeat check"),
            );
            responses.insert(
                "413".into(),
                error_response(&format!("Body larger than {BODY_LIMIT} bytes")),
            );
            responses.insert("415".into(), error_response("Body is not application/json"));
            responses.insert(
                "422".into(),
                error_response("Unknown fields or invalid values (the message names the field)"),
            );
        }
        None => {
            op.insert("security".into(), json!([]));
        }
        Some(role) => {
            op.insert(
                "description".into(),
                json!(format!(
                    "Needs a bearer token with role {role} or above.{}",
                    if role == Role::Operator && e.summary.contains("force") {
                        " `force` needs admin."
                    } else {
                        ""
                    }
                )),
            );
            responses.insert("401".into(), error_response("No valid bearer token"));
            responses.insert(
                "403".into(),
                error_response("The token's role may not do this"),
            );
            responses.insert(
                "429".into(),
                error_response("Too many failed authentications from this client"),
            );
            responses.insert(
                "400".into(),
                error_response("Malformed JSON, path or query"),
            );
            responses.insert(
                "404".into(),
                error_response("No such service, drill or record"),
            );
            responses.insert("405".into(), error_response("Wrong method"));
        }
    }
    if e.method == "post" && e.role.is_some() {
        responses.insert(
            "409".into(),
            error_response("Does not fit the current state"),
        );
        responses.insert(
            "413".into(),
            error_response(&format!("Body larger than {BODY_LIMIT} bytes")),
        );
        responses.insert("415".into(), error_response("Body is not application/json"));
        responses.insert(
            "422".into(),
            error_response("Wrong types, unknown or missing fields, invalid values (the message names the field); for reload: the invalid configuration's diagnostics"),
        );
    }
    op.insert("responses".into(), Value::Object(responses));
    Value::Object(op)
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for e in ENDPOINTS {
        let entry = paths
            .entry(e.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = entry {
            m.insert(e.method.to_string(), operation(e));
        }
    }
    let ts = json!({ "type": "string", "description": "RFC 3339, UTC" });
    let state = json!({ "type": "string", "enum": crate::failover::State::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>() });
    let step = json!({
        "type": "object", "required": ["name", "status", "detail"],
        "properties": {
            "name": { "type": "string", "enum": crate::drill::STEPS },
            "status": { "type": "string", "enum": ["pending", "pass", "fail", "skipped"] },
            "at": nullable_string(),
            "duration_seconds": { "type": "number", "nullable": true },
            "target_seconds": { "type": "number", "nullable": true },
            "target": { "type": "string", "enum": ["drill_targets.switch", "drill_targets.notify"] },
            "within_target": { "type": "boolean" },
            "detail": { "type": "string" } }
    });
    let schema_error = json!({
        "type": "object", "required": ["error"],
        "properties": { "error": { "type": "object", "required": ["code", "message"],
            "properties": { "code": { "type": "string" }, "message": { "type": "string" } } },
            "diagnostics": { "type": "array", "items": { "type": "string" } } }
    });
    let schema_side = json!({ "type": "string", "enum": ["primary", "backup"] });
    let schema_state = state;
    let hold_until = json!({ "type": "object", "nullable": true, "required": ["detail"],
        "properties": { "until": nullable_string(), "detail": { "type": "string" } } });
    let schema_service = json!({
        "type": "object",
        "required": ["id", "name", "state", "since", "cause", "side", "failback", "flapping", "checks", "routes", "holds"],
        "properties": {
            "id": { "type": "string" }, "name": { "type": "string" },
            "state": reference("State"), "since": ts, "cause": { "type": "string" },
            "side": reference("Side"),
            "failback": { "type": "string", "enum": ["auto", "manual"] },
            "flapping": { "type": "boolean" }, "runbook": nullable_string(),
            "checks": { "type": "array", "items": {
                "type": "object", "required": ["name", "role", "target", "health"],
                "properties": { "name": { "type": "string" },
                    "role": { "type": "string", "enum": ["primary", "backup", "vendor"] },
                    "target": { "type": "string" },
                    "health": { "type": "string", "enum": ["unknown", "healthy", "suspect", "down"] },
                    "last_outcome": nullable_string(), "last_probe_at": nullable_string(),
                    "failure_threshold": { "type": "integer", "minimum": 1 },
                    "effective_failure_threshold": { "type": "integer", "minimum": 1,
                        "description": "Consecutive failed probes the check needs to be down now: failure_threshold, raised by at most 3 on a noisy target when confirmation is adaptive." },
                    "confirmation": { "type": "string", "enum": ["adaptive", "fixed"] } } } },
            "routes": { "type": "array", "items": {
                "type": "object", "required": ["id", "primary", "backup", "active", "active_target"],
                "properties": { "id": { "type": "string" }, "primary": { "type": "string" },
                    "backup": { "type": "string" }, "active": reference("Side"),
                    "active_target": { "type": "string" } } } },
            "holds": { "type": "object", "required": ["pin", "maintenance", "drill"],
                "properties": {
                    "pin": { "type": "object", "nullable": true, "required": ["side", "actor", "reason"],
                        "properties": { "side": reference("Side"), "until": nullable_string(),
                            "actor": { "type": "string" }, "reason": { "type": "string" } } },
                    "maintenance": { "type": "object", "nullable": true,
                        "properties": { "until": nullable_string() } },
                    "drill": { "type": "object", "nullable": true, "required": ["id", "mode", "until"],
                        "properties": { "id": { "type": "string" },
                            "mode": { "type": "string", "enum": ["live", "dry_run"] },
                            "until": { "type": "string" } } },
                    "flapping": hold_until.clone(), "recovery_hold": hold_until,
                    "in_force": { "type": "array", "items": {
                        "type": "object", "required": ["hold", "detail"],
                        "properties": {
                            "hold": { "type": "string", "enum": ["flapping", "pin", "maintenance", "recovery_hold"] },
                            "until": nullable_string(), "detail": { "type": "string" } } } } } }
        }
    });
    let schema_applied = json!({
        "type": "object", "required": ["service", "state", "side", "transitions"],
        "properties": {
            "service": { "type": "string" }, "state": reference("State"), "side": reference("Side"),
            "audit_id": { "type": "integer", "nullable": true },
            "transitions": { "type": "array", "items": {
                "type": "object", "required": ["from", "to", "cause", "at"],
                "properties": { "transition_id": { "type": "integer", "nullable": true },
                    "from": reference("State"), "to": reference("State"),
                    "cause": { "type": "string" }, "at": { "type": "string" } } } } }
    });
    let schema_scheduledwindow = json!({
        "type": "object", "required": ["service", "window_id", "starts_at", "ends_at"],
        "properties": { "service": { "type": "string" }, "window_id": { "type": "integer" },
            "starts_at": { "type": "string" }, "ends_at": { "type": "string" } }
    });
    let schema_drillreport = json!({
        "type": "object",
        "required": ["id", "service", "mode", "actor", "reason", "started_at", "deadline", "status", "targets", "steps"],
        "properties": {
            "id": { "type": "string" }, "service": { "type": "string" },
            "mode": { "type": "string", "enum": ["live", "dry_run"] },
            "actor": { "type": "string" }, "reason": { "type": "string" },
            "ticket": nullable_string(), "started_at": { "type": "string" },
            "deadline": { "type": "string" }, "ended_at": nullable_string(),
            "status": { "type": "string", "enum": ["running", "pass", "fail", "aborted", "interrupted"] },
            "interruption": { "type": "string" },
            "targets": { "type": "object", "required": ["switch_seconds", "notify_seconds"],
                "properties": { "switch_seconds": { "type": "number" }, "notify_seconds": { "type": "number" } } },
            "steps": { "type": "array", "items": step } }
    });
    let schema_auditrecord = json!({
        "type": "object", "required": ["id", "kind", "at", "node", "actor", "reason", "prev_hash", "hash"],
        "properties": {
            "id": { "type": "integer" }, "kind": { "type": "string" }, "at": { "type": "string" },
            "node": { "type": "string" }, "actor": { "type": "string" },
            "service": nullable_string(), "from": nullable_string(), "to": nullable_string(),
            "cause": nullable_string(), "reason": { "type": "string" },
            "evidence": { "type": "array", "items": { "type": "string" } },
            "routes_before": { "type": "object", "additionalProperties": { "type": "string" } },
            "routes_after": { "type": "object", "additionalProperties": { "type": "string" } },
            "config_version": { "type": "string" },
            "transition_id": { "type": "integer", "nullable": true },
            "detail": { "type": "object" },
            "prev_hash": { "type": "string" }, "hash": { "type": "string" } }
    });
    let schema_reloadresult = json!({
        "type": "object", "required": ["result", "config_version"],
        "properties": { "result": { "type": "string", "enum": ["success"] },
            "config_version": { "type": "string" },
            "services_added": { "type": "array", "items": { "type": "string" } },
            "services_removed": { "type": "array", "items": { "type": "string" } },
            "services_changed": { "type": "array", "items": { "type": "string" } },
            "checks_changed": { "type": "array", "items": { "type": "string" } },
            "restart_needed": { "type": "array", "items": { "type": "string" } } }
    });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Switchboard control API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Operators in control: services, failover and failback, pins, maintenance, drills with timed reports, the audit log and post-hoc reviews, configuration reload. Every error answers {\"error\": {\"code\", \"message\"}}."
        },
        "servers": [ { "url": "/" } ],
        "security": [ { "bearer": [] } ],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer",
                "description": "A token from `switchboard token new NAME --role viewer|operator|admin`." } },
            "schemas": {
                "Error": schema_error,
                "Side": schema_side,
                "State": schema_state,
                "Service": schema_service,
                "Applied": schema_applied,
                "ScheduledWindow": schema_scheduledwindow,
                "DrillReport": schema_drillreport,
                "AuditRecord": schema_auditrecord,
                "ReloadResult": schema_reloadresult,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{router, ApiState};
    use axum::body::Body;
    use axum::http::{Method, Request};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use tower::ServiceExt;

    #[test]
    fn every_endpoint_of_the_table_is_documented_once() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(documented, ENDPOINTS.len());
        for e in ENDPOINTS {
            assert!(
                doc["paths"][e.path][e.method].is_object(),
                "{} {}",
                e.method,
                e.path
            );
        }
    }

    /// The router answers every documented path and method (401 for control calls without a
    /// token, 200 for the document): never "no such path" (404) or "wrong method" (405).
    #[tokio::test]
    async fn the_router_serves_exactly_the_documented_endpoints() {
        let (_tx, rx) = tokio::sync::watch::channel(Arc::new(crate::view::Snapshot {
            title: "t".into(),
            public_url: "http://127.0.0.1".into(),
            updated_at: crate::clock::Timestamp(0),
            services: vec![],
        }));
        let app = router(ApiState::new(
            rx,
            String::new,
            Arc::new(AtomicBool::new(true)),
        ));
        for (i, e) in ENDPOINTS.iter().enumerate() {
            let path = e.path.replace("{id}", "1");
            let method = Method::from_bytes(e.method.to_uppercase().as_bytes()).unwrap();
            // A client each, so the backoff for repeated failures does not answer 429.
            let peer = std::net::SocketAddr::from(([127, 0, 1, i as u8], 1000));
            let res = app
                .clone()
                .oneshot(
                    Request::builder()
                        .method(method)
                        .uri(&path)
                        .extension(axum::extract::ConnectInfo(peer))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            // A heartbeat needs its check's token: without one it is 401 too.
            let expect = if e.role.is_some() || e.path.contains("{check}") {
                401
            } else {
                200
            };
            assert_eq!(res.status().as_u16(), expect, "{} {path}", e.method);
        }
        // And a method the table does not list is 405.
        let res = app
            .oneshot(
                Request::builder()
                    .method(Method::DELETE)
                    .uri("/api/v1/drills")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 405);
    }
}
