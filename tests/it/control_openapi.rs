//! The OpenAPI document against the running daemon: schemathesis (PyPI; installed by scripts/test.sh) sends generated requests with a valid admin token and finds no 5xx and no response that breaks the document.

use std::process::Command;
use std::time::Duration;

use crate::support::control;
use crate::support::daemon;

use control::{all_healthy, json};
use daemon::{get, wait_until, Target};

#[test]
fn the_document_describes_every_control_endpoint_and_is_public() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (d, _, _) = control::start(dir.path(), &target, None);
    let r = get(&d.url("/api/v1/openapi.json")).expect("openapi.json");
    assert_eq!(r.status, 200);
    let doc = json(&r);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for (path, method) in [
        ("/api/v1/services", "get"),
        ("/api/v1/services/{id}", "get"),
        ("/api/v1/services/{id}/failover", "post"),
        ("/api/v1/services/{id}/failback", "post"),
        ("/api/v1/services/{id}/pin", "post"),
        ("/api/v1/services/{id}/unpin", "post"),
        ("/api/v1/services/{id}/maintenance", "post"),
        ("/api/v1/drills", "post"),
        ("/api/v1/drills", "get"),
        ("/api/v1/drills/{id}", "get"),
        ("/api/v1/drills/{id}/abort", "post"),
        ("/api/v1/audit", "get"),
        ("/api/v1/audit/{id}/review", "post"),
        ("/-/reload", "post"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} documented");
        assert!(
            op["responses"]["401"].is_object(),
            "{method} {path} documents 401"
        );
    }
    assert_eq!(
        doc["components"]["schemas"]["Error"]["required"],
        serde_json::json!(["error"])
    );
}

#[test]
fn schemathesis_finds_no_server_error_and_no_response_outside_the_document() {
    let ok = Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "schemathesis is not installed: run scripts/test.sh (it installs it from PyPI)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let target = Target::start();
    let (d, _, t) = control::start(dir.path(), &target, None);
    wait_until("checks healthy", Duration::from_secs(30), || {
        all_healthy(&d, &t.viewer, "ticket-submission")
    });
    let out = Command::new("schemathesis")
        .current_dir(dir.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .args([
            "run",
            &d.url("/api/v1/openapi.json"),
            "--header",
            &format!("Authorization: Bearer {}", t.admin),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection",
            "--max-examples",
            "20",
            "--phases",
            "examples,coverage,fuzzing",
            "--workers",
            "1",
            "--seed",
            "1",
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
            "--no-color",
        ])
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    // It really exercised the API (not an empty run).
    assert!(stdout.contains("passed"), "{stdout}");
    // And the daemon is still there.
    assert_eq!(get(&d.url("/healthz")).expect("healthz").status, 200);
}
