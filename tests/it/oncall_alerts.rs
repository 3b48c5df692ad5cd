//! The shipped alert rules: `promtool check rules` is clean, `promtool test rules` passes,
//! every alert is tested both firing and not firing, and every alert carries the labels and
//! annotations on-call relies on, with a runbook_url naming a runbook that exists.

use crate::support::oncall;

use oncall::{promtool, repo, runbook_file, yaml, RUNBOOK_BASE};
use std::collections::BTreeMap;
use std::path::PathBuf;

const RULES: &str = "alerts/switchboard.rules.yml";

fn test_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("alerts"))
        .expect("alerts/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(".test.yml"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "alerts/*.test.yml exist");
    files
}

/// Every alerting rule of the shipped file.
fn alerts() -> Vec<serde_json::Value> {
    let rules = yaml(&repo(RULES));
    let alerts: Vec<serde_json::Value> = rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter(|r| r.get("alert").is_some())
        .collect();
    assert!(alerts.len() >= 10, "the rules file has its alerts");
    alerts
}

#[test]
fn promtool_checks_the_rules_and_their_unit_tests_pass() {
    let (ok, said) = promtool(&["check", "rules", RULES], &repo("."), "");
    assert!(ok, "promtool check rules:\n{said}");
    assert!(
        !said.contains("WARNING") && !said.contains("FAILED"),
        "promtool check rules warns:\n{said}"
    );
    for file in test_files() {
        let path = file.to_string_lossy().into_owned();
        let (ok, said) = promtool(&["test", "rules", &path], &repo("."), "");
        assert!(
            ok && said.contains("SUCCESS"),
            "promtool test rules {path}:\n{said}"
        );
    }
}

#[test]
fn every_alert_is_tested_firing_and_not_firing() {
    // alert -> (seen firing, seen not firing)
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for file in test_files() {
        let t = yaml(&file);
        assert!(
            t["rule_files"]
                .as_array()
                .is_some_and(|f| f.iter().any(|r| r == "switchboard.rules.yml")),
            "{} tests the shipped rules file",
            file.display()
        );
        for case in t["tests"].as_array().into_iter().flatten() {
            for check in case["alert_rule_test"].as_array().into_iter().flatten() {
                let name = check["alertname"].as_str().expect("alertname").to_string();
                let fires = check["exp_alerts"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty());
                let e = seen.entry(name).or_default();
                if fires {
                    e.0 = true;
                } else {
                    e.1 = true;
                }
            }
        }
    }
    let names: Vec<String> = alerts()
        .iter()
        .map(|a| a["alert"].as_str().expect("alert name").to_string())
        .collect();
    let mut missing = Vec::new();
    for name in &names {
        match seen.get(name) {
            Some((true, true)) => {}
            Some((fired, _)) => missing.push(format!(
                "{name}: no test where it {}",
                if *fired { "stays quiet" } else { "fires" }
            )),
            None => missing.push(format!("{name}: no test at all")),
        }
    }
    for name in seen.keys() {
        if !names.contains(name) {
            missing.push(format!("{name}: tested but not in {RULES}"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn every_alert_has_severity_summary_description_and_an_existing_runbook() {
    let mut problems = Vec::new();
    for a in alerts() {
        let name = a["alert"].as_str().unwrap_or("?");
        let severity = a["labels"]["severity"].as_str().unwrap_or("");
        if !["page", "ticket"].contains(&severity) {
            problems.push(format!(
                "{name}: severity {severity:?} is not page or ticket"
            ));
        }
        for key in ["summary", "description", "runbook_url"] {
            if a["annotations"][key]
                .as_str()
                .is_none_or(|s| s.trim().is_empty())
            {
                problems.push(format!("{name}: no {key} annotation"));
            }
        }
        let url = a["annotations"]["runbook_url"].as_str().unwrap_or("");
        if !url.starts_with(RUNBOOK_BASE) {
            problems.push(format!(
                "{name}: runbook_url {url} is not under {RUNBOOK_BASE}"
            ));
        }
        match runbook_file(url) {
            Some(file) if repo(&file).is_file() => {}
            other => problems.push(format!(
                "{name}: runbook_url {url} names no runbook ({other:?})"
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// An alert and an on-call e-mail about the same thing link the same runbook page: the shipped
/// `[email] runbook_base_url` resolves a service's `runbook = "runbooks/x.md"` to exactly the
/// URL the alert rules use.
#[test]
fn alert_runbook_urls_share_the_base_of_on_call_emails() {
    let config =
        switchboard::config::Config::load(&repo("switchboard.toml")).expect("shipped config");
    let mut checked = 0;
    for a in alerts() {
        let url = a["annotations"]["runbook_url"].as_str().unwrap_or("");
        let file = runbook_file(url).expect("runbook file in the URL");
        let path = url.split(['#', '?']).next().unwrap_or(url);
        assert_eq!(
            config.email.runbook_url(&file).as_deref(),
            Some(path),
            "{}: runbook_url and [email] runbook_base_url disagree",
            a["alert"].as_str().unwrap_or("?")
        );
        checked += 1;
    }
    assert!(checked > 10, "alerts have runbooks");
    for s in &config.services {
        let rb = s
            .runbook
            .as_deref()
            .expect("shipped services name a runbook");
        let link = config.email.runbook_url(rb).expect("absolute runbook link");
        assert!(link.starts_with(RUNBOOK_BASE), "{}: {link}", s.id);
    }
}
