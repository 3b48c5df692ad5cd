//! `kind = "vendor_status"`: fetch a vendor's public status feed with the HTTP probe and judge
//! it: the worst impact the vendor declares for the selected components, and the vendor's own
//! words (incident titles and links) kept on the outcome as evidence.
//!
//! Every format is mapped onto Statuspage's scale (`config::Impact`); the check fails when
//! the declared impact reaches its `impact` threshold. A feed that cannot be read (network,
//! status, a body over `max_body_bytes`) or judged (not JSON, not the format's shape, a
//! selected component missing) is a failed outcome *without* a verdict, so the core never
//! takes garbage for a vendor's declaration. Parsing is defensive: every field is looked up,
//! never assumed, and serde_json's recursion limit bounds a hostile nesting.
//!
//! A 429 or 5xx answer marks the outcome throttled, with the `Retry-After` the vendor asked
//! for; the probe loop backs off (`next_delay`), since probes hold no state of their own.

use super::{http, ErrorClass, Outcome, ProbeError};
use crate::config::{CheckSpec, HttpCheck, Impact, VendorFormat, VendorStatusCheck};
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// What a vendor check read: the verdict and the vendor's own words.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VendorReport {
    pub format: VendorFormat,
    /// The feed's URL: where the words come from.
    pub source: String,
    /// The worst impact declared for the selected components; `None` when the feed could
    /// not be read or judged.
    pub impact: Option<Impact>,
    /// `impact` reached the check's threshold: the vendor declares an outage.
    pub declared: bool,
    /// The vendor's own summary word or sentence (`status.description`, `status_overall.status`, ...).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub indicator: String,
    /// Incidents (and maintenance in progress) touching the selection, worst first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incidents: Vec<VendorIncident>,
    /// The selected components with the vendor's status word for each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<VendorComponent>,
    /// The feed answered 429 or 5xx: poll it less often.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub throttled: bool,
    /// The vendor's `Retry-After`, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_secs")]
    pub retry_after: Option<Duration>,
}

/// One incident as the vendor words it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VendorIncident {
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub impact: Impact,
}

/// One selected component and the vendor's word for its status.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VendorComponent {
    pub name: String,
    pub status: String,
    pub impact: Impact,
}

fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

impl VendorReport {
    fn unread(v: &VendorStatusCheck) -> VendorReport {
        VendorReport {
            format: v.format,
            source: v.url.to_string(),
            impact: None,
            declared: false,
            indicator: String::new(),
            incidents: Vec::new(),
            components: Vec::new(),
            throttled: false,
            retry_after: None,
        }
    }

    /// The vendor's words in one line, with their source: what on-call messages quote.
    /// `None` when the feed was not judged.
    pub fn quote(&self) -> Option<String> {
        let impact = self.impact?;
        let mut line = format!("{} status: {}", self.format.as_str(), impact.words());
        if let Some(i) = self.incidents.first() {
            line.push_str(&format!(": \"{}\"", i.title));
            if let Some(url) = &i.url {
                line.push_str(&format!(" <{url}>"));
            }
            if self.incidents.len() > 1 {
                line.push_str(&format!(" (+{} more)", self.incidents.len() - 1));
            }
        } else if !self.indicator.is_empty() {
            line.push_str(&format!(" (\"{}\")", self.indicator));
        }
        line.push_str(&format!(" — source {}", self.source));
        Some(line)
    }
}

/// Runs a vendor check once: the feed fetched under the check's timeout, then judged.
pub async fn probe(check: &CheckSpec, v: &VendorStatusCheck) -> Outcome {
    let request = HttpCheck {
        url: v.url.clone(),
        method: "GET".to_string(),
        headers: vec![("Accept".to_string(), "application/json".to_string())],
        body: None,
        // Status pages move (Calendly's answers from another host); a few hops are plenty.
        max_redirects: 3,
        max_body_bytes: v.max_body_bytes,
        insecure: v.insecure,
        net: v.net.clone(),
    };
    let ex = http::exchange_step(&check.name, &[], check.timeout, &request, None).await;
    let mut outcome = ex.outcome;
    let mut report = VendorReport::unread(v);
    let status = outcome.status;
    // A network error, timeout or TLS failure stays what the HTTP probe said.
    if outcome
        .error
        .as_ref()
        .is_some_and(|e| e.class != ErrorClass::Conditions)
        || status.is_none()
    {
        outcome.vendor = Some(Box::new(report));
        return outcome;
    }
    let status = status.unwrap_or_default();
    let judged = if status == 429 || status >= 500 {
        report.throttled = true;
        report.retry_after = ex.headers.as_ref().and_then(retry_after);
        Err(format!(
            "the feed answered {status}{}; polling it less often",
            report
                .retry_after
                .map(|d| format!(" (Retry-After {})", humantime::format_duration(d)))
                .unwrap_or_default()
        ))
    } else if !(200..300).contains(&status) {
        Err(format!("the feed answered {status}, not 2xx"))
    } else if outcome.body_truncated {
        Err(format!(
            "the feed is longer than max_body_bytes ({} bytes); not judged on a part of it",
            v.max_body_bytes
        ))
    } else {
        judge(v, &ex.body)
    };
    match judged {
        Ok(verdict) => {
            let impact = verdict.impact;
            report.impact = Some(impact);
            report.declared = impact >= v.impact;
            report.indicator = verdict.indicator;
            report.incidents = verdict.incidents;
            report.components = verdict.components;
            outcome.error = report.declared.then(|| ProbeError {
                class: ErrorClass::Conditions,
                message: format!(
                    "the vendor declares {}",
                    report.quote().unwrap_or_else(|| impact.words().to_string())
                ),
            });
        }
        Err(message) => {
            outcome.error = Some(ProbeError {
                class: ErrorClass::Protocol,
                message,
            });
        }
    }
    outcome.success = outcome.error.is_none();
    outcome.vendor = Some(Box::new(report));
    outcome
}

/// `Retry-After` in seconds (the HTTP-date form is rare on status APIs and is ignored),
/// capped at a day so a hostile value cannot silence the check for ever.
fn retry_after(headers: &hyper::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(hyper::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(86_400)))
}

/// When a vendor check is probed next, given the delay the loop would use anyway (`normal`:
/// its interval, or `retry_interval` while confirming), the check's `interval`, the backoff
/// in force (`None` after a good answer) and the outcome's report. Returns the delay to wait
/// and the backoff to keep: after a 429 or 5xx the wait doubles from the interval up to 16
/// times it, and is never shorter than the vendor's `Retry-After`.
pub fn next_delay(
    normal: Duration,
    interval: Duration,
    backoff: Option<Duration>,
    report: Option<&VendorReport>,
) -> (Duration, Option<Duration>) {
    let Some(r) = report.filter(|r| r.throttled) else {
        return (normal, None);
    };
    let doubled = match backoff {
        None => interval,
        Some(b) => (b * 2).min(interval * 16),
    };
    let wait = doubled.max(r.retry_after.unwrap_or_default()).max(normal);
    (wait, Some(doubled))
}

/// What a feed says once judged.
struct Verdict {
    impact: Impact,
    indicator: String,
    incidents: Vec<VendorIncident>,
    components: Vec<VendorComponent>,
}

/// Parses `body` as the check's format and judges the selection.
fn judge(v: &VendorStatusCheck, body: &[u8]) -> Result<Verdict, String> {
    let json: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the feed is not JSON ({e}); is the url a {} feed?",
            v.format.as_str()
        )
    })?;
    let shape = |what: &str| {
        format!(
            "the feed is JSON but not a {} feed: {what}",
            v.format.as_str()
        )
    };
    let mut verdict = match v.format {
        VendorFormat::Statuspage => statuspage(v, &json).map_err(|e| shape(&e))?,
        VendorFormat::Statusio => statusio(v, &json).map_err(|e| shape(&e))?,
        VendorFormat::Zendesk => zendesk(v, &json).map_err(|e| shape(&e))?,
        VendorFormat::Slack => slack(v, &json).map_err(|e| shape(&e))?,
        VendorFormat::GitlabJobs => gitlab_jobs(v, &json).map_err(|e| shape(&e))?,
    };
    verdict
        .incidents
        .sort_by_key(|i| std::cmp::Reverse(i.impact));
    // The vendor's words travel into logs, e-mails and the audit chain: a hostile or broken
    // feed must not make them long or multi-line.
    verdict.incidents.truncate(MAX_ITEMS);
    verdict.components.truncate(MAX_ITEMS);
    verdict.indicator = clean(&verdict.indicator);
    for i in &mut verdict.incidents {
        i.title = clean(&i.title);
        i.url = i.url.as_deref().map(clean);
    }
    for c in &mut verdict.components {
        c.name = clean(&c.name);
        c.status = clean(&c.status);
    }
    Ok(verdict)
}

/// Incidents and components kept at most, worst first.
const MAX_ITEMS: usize = 20;
/// Characters kept of any one of the vendor's words (a title, a link, a status).
const MAX_WORDS: usize = 300;

/// One line of at most `MAX_WORDS` characters: control characters (line breaks included)
/// become spaces.
fn clean(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_WORDS)
        .collect();
    if text.chars().count() > MAX_WORDS {
        out.push('…');
    }
    out.trim().to_string()
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Whether `selector` names this component: its id exactly, or its name ignoring case.
fn selects(selector: &str, id: Option<&str>, name: Option<&str>) -> bool {
    let s = selector.trim();
    id == Some(s) || name.is_some_and(|n| n.trim().eq_ignore_ascii_case(s))
}

/// A selector that names nothing on the page: configuration drift, said loudly.
fn missing(selector: &str, known: &[String]) -> String {
    let mut list = known.join(", ");
    if list.len() > 300 {
        list.truncate(300);
        list.push('…');
    }
    format!("component \"{selector}\" is not on the page (it has: {list})")
}

fn statuspage_word(status: &str) -> Option<Impact> {
    Some(match status {
        "operational" => Impact::None,
        "under_maintenance" => Impact::Maintenance,
        "degraded_performance" => Impact::Minor,
        "partial_outage" => Impact::Major,
        "major_outage" => Impact::Critical,
        _ => return None,
    })
}

fn indicator_word(indicator: &str) -> Option<Impact> {
    Some(match indicator {
        "none" => Impact::None,
        "maintenance" => Impact::Maintenance,
        "minor" => Impact::Minor,
        "major" => Impact::Major,
        "critical" => Impact::Critical,
        _ => return None,
    })
}

/// Atlassian Statuspage v2 `summary.json`.
fn statuspage(v: &VendorStatusCheck, json: &Value) -> Result<Verdict, String> {
    let status = json.get("status").ok_or("no `status` object")?;
    let indicator = str_at(status, "indicator").ok_or("no `status.indicator`")?;
    let page_impact = indicator_word(indicator)
        .ok_or_else(|| format!("unknown status.indicator \"{indicator}\""))?;
    let description = str_at(status, "description")
        .unwrap_or(indicator)
        .to_string();
    let page_url = json
        .get("page")
        .and_then(|p| str_at(p, "url"))
        .map(|u| u.trim_end_matches('/').to_string());
    let all = json
        .get("components")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut components = Vec::new();
    let mut selected_ids = Vec::new();
    for sel in &v.components {
        let found = all
            .iter()
            .find(|c| selects(sel, str_at(c, "id"), str_at(c, "name")))
            .ok_or_else(|| {
                let known: Vec<String> = all
                    .iter()
                    .filter_map(|c| str_at(c, "name").map(str::to_string))
                    .collect();
                missing(sel, &known)
            })?;
        let word = str_at(found, "status").unwrap_or("");
        let impact = statuspage_word(word)
            .ok_or_else(|| format!("component \"{sel}\" has an unknown status \"{word}\""))?;
        if let Some(id) = str_at(found, "id") {
            selected_ids.push(id.to_string());
        }
        // A group's members are its incidents' components too.
        if let Some(members) = found.get("components").and_then(Value::as_array) {
            selected_ids.extend(members.iter().filter_map(Value::as_str).map(str::to_string));
        }
        components.push(VendorComponent {
            name: str_at(found, "name").unwrap_or(sel).to_string(),
            status: word.to_string(),
            impact,
        });
    }
    let impact = if v.components.is_empty() {
        page_impact
    } else {
        components
            .iter()
            .map(|c| c.impact)
            .max()
            .unwrap_or(Impact::None)
    };
    let touches = |i: &Value| {
        if v.components.is_empty() {
            return true;
        }
        let ids: Vec<&str> = i
            .get("components")
            .and_then(Value::as_array)
            .map(|cs| cs.iter().filter_map(|c| str_at(c, "id")).collect())
            .unwrap_or_default();
        ids.is_empty() || ids.iter().any(|id| selected_ids.iter().any(|s| s == id))
    };
    let mut incidents = Vec::new();
    for (key, default) in [
        ("incidents", Impact::Minor),
        ("scheduled_maintenances", Impact::Maintenance),
    ] {
        for i in json
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let state = str_at(i, "status").unwrap_or("");
            if matches!(state, "resolved" | "postmortem" | "completed" | "scheduled") {
                continue;
            }
            if !touches(i) {
                continue;
            }
            let url = str_at(i, "shortlink").map(str::to_string).or_else(|| {
                Some(format!(
                    "{}/incidents/{}",
                    page_url.as_ref()?,
                    str_at(i, "id")?
                ))
            });
            incidents.push(VendorIncident {
                title: str_at(i, "name").unwrap_or("(untitled)").to_string(),
                url,
                impact: str_at(i, "impact")
                    .and_then(indicator_word)
                    .filter(|_| key == "incidents")
                    .unwrap_or(default),
            });
        }
    }
    Ok(Verdict {
        impact,
        indicator: description,
        incidents,
        components,
    })
}

fn statusio_code(code: i64) -> Option<Impact> {
    Some(match code {
        100 => Impact::None,
        200 => Impact::Maintenance,
        300 => Impact::Minor,
        400 => Impact::Major,
        500 | 600 => Impact::Critical,
        _ => return None,
    })
}

/// status.io `/1.0/status/{page_id}`.
fn statusio(v: &VendorStatusCheck, json: &Value) -> Result<Verdict, String> {
    let result = json.get("result").ok_or("no `result` object")?;
    let overall = result
        .get("status_overall")
        .ok_or("no `result.status_overall`")?;
    let code = overall
        .get("status_code")
        .and_then(Value::as_i64)
        .ok_or("no numeric `result.status_overall.status_code`")?;
    let page_impact = statusio_code(code).ok_or_else(|| format!("unknown status_code {code}"))?;
    let indicator = str_at(overall, "status").unwrap_or("").to_string();
    let all = result
        .get("status")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    // Components and their containers, each selectable by id or name.
    let mut entries: Vec<(&Value, String)> = Vec::new();
    for c in all {
        let name = str_at(c, "name").unwrap_or("").to_string();
        entries.push((c, name.clone()));
        for k in c
            .get("containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            entries.push((k, format!("{name} / {}", str_at(k, "name").unwrap_or(""))));
        }
    }
    let mut components = Vec::new();
    let mut selected_ids: Vec<String> = Vec::new();
    for sel in &v.components {
        let (found, label) = entries
            .iter()
            .find(|(c, _)| selects(sel, str_at(c, "id"), str_at(c, "name")))
            .ok_or_else(|| {
                let known: Vec<String> = entries.iter().map(|(_, l)| l.clone()).collect();
                missing(sel, &known)
            })?;
        let code = found
            .get("status_code")
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("component \"{sel}\" has no numeric status_code"))?;
        let impact = statusio_code(code)
            .ok_or_else(|| format!("component \"{sel}\" has an unknown status_code {code}"))?;
        selected_ids.extend(str_at(found, "id").map(str::to_string));
        components.push(VendorComponent {
            name: label.clone(),
            status: str_at(found, "status").unwrap_or("").to_string(),
            impact,
        });
    }
    let impact = if v.components.is_empty() {
        page_impact
    } else {
        components
            .iter()
            .map(|c| c.impact)
            .max()
            .unwrap_or(Impact::None)
    };
    // status.io's public incident page: /pages/incident/{page_id}/{incident_id}.
    let page_id = v
        .url
        .path_segments()
        .and_then(|mut s| s.rfind(|p| !p.is_empty()))
        .unwrap_or("")
        .to_string();
    let touches = |i: &Value| {
        if v.components.is_empty() {
            return true;
        }
        let ids: Vec<&str> = ["components_affected", "containers_affected"]
            .iter()
            .flat_map(|k| i.get(*k).and_then(Value::as_array).into_iter().flatten())
            .filter_map(|c| str_at(c, "_id").or_else(|| str_at(c, "id")))
            .collect();
        ids.is_empty() || ids.iter().any(|id| selected_ids.iter().any(|s| s == id))
    };
    let mut incidents = Vec::new();
    let active_maintenance = result
        .get("maintenance")
        .and_then(|m| m.get("active"))
        .and_then(Value::as_array);
    for (list, default) in [
        (result.get("incidents").and_then(Value::as_array), impact),
        (active_maintenance, Impact::Maintenance),
    ] {
        for i in list.into_iter().flatten().filter(|i| touches(i)) {
            let id = str_at(i, "_id").or_else(|| str_at(i, "id"));
            incidents.push(VendorIncident {
                title: str_at(i, "name").unwrap_or("(untitled)").to_string(),
                url: id.map(|id| format!("https://status.io/pages/incident/{page_id}/{id}")),
                impact: default.max(Impact::Maintenance),
            });
        }
    }
    Ok(Verdict {
        impact,
        indicator,
        incidents,
        components,
    })
}

/// Zendesk's status API: JSON:API `data[]` of active incidents, services in `included`.
fn zendesk(v: &VendorStatusCheck, json: &Value) -> Result<Verdict, String> {
    let data = json
        .get("data")
        .and_then(Value::as_array)
        .ok_or("no `data` array")?;
    let included = json
        .get("included")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let service = |id: &str| {
        included
            .iter()
            .find(|x| str_at(x, "type") == Some("service") && str_at(x, "id") == Some(id))
    };
    let origin = v.url.origin().ascii_serialization();
    let mut incidents = Vec::new();
    let mut components: Vec<VendorComponent> = Vec::new();
    for i in data {
        let attrs = i
            .get("attributes")
            .ok_or("an incident without `attributes`")?;
        let named = str_at(attrs, "impact").and_then(|w| match w {
            "minor" | "low" => Some(Impact::Minor),
            "major" | "medium" | "high" => Some(Impact::Major),
            "critical" => Some(Impact::Critical),
            _ => None,
        });
        // An active incident is at least a degradation; `outage` makes it a major outage.
        let flagged = if attrs.get("outage").and_then(Value::as_bool) == Some(true) {
            Impact::Critical
        } else {
            Impact::Minor
        };
        let impact = named.map_or(flagged, |n| n.max(flagged));
        // The services it affects: `relationships.services`, named from `included`.
        let ids: Vec<&str> = i
            .get("relationships")
            .and_then(|r| r.get("services"))
            .and_then(|s| s.get("data"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| str_at(s, "id"))
            .collect();
        let names: Vec<(Option<&str>, Option<&str>)> = ids
            .iter()
            .map(|id| {
                let s = service(id);
                let attrs = s.and_then(|s| s.get("attributes"));
                (
                    Some(*id),
                    attrs.and_then(|a| str_at(a, "name").or_else(|| str_at(a, "slug"))),
                )
            })
            .collect();
        let hit: Vec<&(Option<&str>, Option<&str>)> = names
            .iter()
            .filter(|(id, name)| v.components.iter().any(|sel| selects(sel, *id, *name)))
            .collect();
        // An incident naming no service concerns the whole subdomain.
        if !v.components.is_empty() && !names.is_empty() && hit.is_empty() {
            continue;
        }
        for (id, name) in hit {
            let label = name.or(*id).unwrap_or("").to_string();
            match components.iter_mut().find(|c| c.name == label) {
                Some(c) => c.impact = c.impact.max(impact),
                None => components.push(VendorComponent {
                    name: label,
                    status: str_at(attrs, "status").unwrap_or("").to_string(),
                    impact,
                }),
            }
        }
        incidents.push(VendorIncident {
            title: str_at(attrs, "title").unwrap_or("(untitled)").to_string(),
            url: str_at(i, "id").map(|id| format!("{origin}/incidents/{id}")),
            impact,
        });
    }
    let impact = incidents
        .iter()
        .map(|i| i.impact)
        .max()
        .unwrap_or(Impact::None);
    let indicator = if incidents.is_empty() {
        "no active incident".to_string()
    } else {
        format!("{} active incident(s)", incidents.len())
    };
    Ok(Verdict {
        impact,
        indicator,
        incidents,
        components,
    })
}

/// Slack's status API `/api/v2.0.0/current`.
fn slack(v: &VendorStatusCheck, json: &Value) -> Result<Verdict, String> {
    let status = str_at(json, "status").ok_or("no `status`")?;
    let active = json
        .get("active_incidents")
        .and_then(Value::as_array)
        .ok_or("no `active_incidents` array")?;
    let mut incidents = Vec::new();
    let mut components: Vec<VendorComponent> = Vec::new();
    for i in active {
        if matches!(str_at(i, "status"), Some("resolved" | "completed")) {
            continue;
        }
        let impact = match str_at(i, "type") {
            Some("outage") => Impact::Critical,
            Some("incident") => Impact::Minor,
            Some("notice") => Impact::Maintenance,
            _ => Impact::Minor,
        };
        let services: Vec<&str> = i
            .get("services")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let hit: Vec<&&str> = services
            .iter()
            .filter(|s| v.components.iter().any(|sel| selects(sel, None, Some(s))))
            .collect();
        if !v.components.is_empty() && !services.is_empty() && hit.is_empty() {
            continue;
        }
        for s in hit {
            match components.iter_mut().find(|c| c.name == **s) {
                Some(c) => c.impact = c.impact.max(impact),
                None => components.push(VendorComponent {
                    name: s.to_string(),
                    status: str_at(i, "type").unwrap_or("").to_string(),
                    impact,
                }),
            }
        }
        incidents.push(VendorIncident {
            title: str_at(i, "title").unwrap_or("(untitled)").to_string(),
            url: str_at(i, "url").map(str::to_string),
            impact,
        });
    }
    let mut impact = incidents
        .iter()
        .map(|i| i.impact)
        .max()
        .unwrap_or(Impact::None);
    // A page that is not "ok" with no incident listed still says something is wrong.
    if status != "ok" && incidents.is_empty() && v.components.is_empty() {
        impact = Impact::Minor;
    }
    Ok(Verdict {
        impact,
        indicator: status.to_string(),
        incidents,
        components,
    })
}

/// A GitLab project's jobs list: pending jobs counted, running jobs timed.
fn gitlab_jobs(v: &VendorStatusCheck, json: &Value) -> Result<Verdict, String> {
    let jobs = json.as_array().ok_or("not an array of jobs")?;
    let pending: Vec<&Value> = jobs
        .iter()
        .filter(|j| str_at(j, "status") == Some("pending"))
        .collect();
    let mut incidents = Vec::new();
    if let Some(max) = v.max_pending {
        if pending.len() >= max as usize {
            incidents.push(VendorIncident {
                title: format!("{} jobs pending (max_pending {max})", pending.len()),
                url: pending
                    .first()
                    .and_then(|j| str_at(j, "web_url"))
                    .map(str::to_string),
                impact: Impact::Major,
            });
        }
    }
    if let Some(max) = v.max_running {
        let mut long: Vec<(f64, &Value)> = jobs
            .iter()
            .filter(|j| str_at(j, "status") == Some("running"))
            .filter_map(|j| Some((j.get("duration")?.as_f64()?, j)))
            .filter(|(d, _)| d.is_finite() && *d >= max.as_secs_f64())
            .collect();
        long.sort_by(|a, b| b.0.total_cmp(&a.0));
        if let Some((secs, job)) = long.first() {
            let took = humantime::format_duration(Duration::from_secs(*secs as u64));
            incidents.push(VendorIncident {
                title: format!(
                    "job {} \"{}\" running for {took} (max_running {}){}",
                    job.get("id").map(Value::to_string).unwrap_or_default(),
                    str_at(job, "name").unwrap_or(""),
                    humantime::format_duration(max),
                    if long.len() > 1 {
                        format!(", {} jobs over it", long.len())
                    } else {
                        String::new()
                    }
                ),
                url: str_at(job, "web_url").map(str::to_string),
                impact: Impact::Major,
            });
        }
    }
    let running = jobs
        .iter()
        .filter(|j| str_at(j, "status") == Some("running"))
        .count();
    let impact = if incidents.is_empty() {
        Impact::None
    } else {
        Impact::Major
    };
    Ok(Verdict {
        impact,
        indicator: format!("{} pending, {running} running", pending.len()),
        incidents,
        components: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(throttled: bool, retry_after: Option<u64>) -> VendorReport {
        VendorReport {
            format: VendorFormat::Zendesk,
            source: "http://127.0.0.1/".into(),
            impact: None,
            declared: false,
            indicator: String::new(),
            incidents: Vec::new(),
            components: Vec::new(),
            throttled,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_vendors_words_are_one_bounded_line() {
        assert_eq!(
            clean("Delays\r\nX-Injected: yes"),
            "Delays  X-Injected: yes"
        );
        let long = "a".repeat(10_000);
        assert_eq!(clean(&long).chars().count(), MAX_WORDS + 1);
    }

    #[test]
    fn a_good_answer_keeps_the_normal_cadence_and_clears_the_backoff() {
        let ok = report(false, None);
        assert_eq!(
            next_delay(S(60), S(60), Some(S(240)), Some(&ok)),
            (S(60), None)
        );
        assert_eq!(next_delay(S(60), S(60), None, None), (S(60), None));
    }

    #[test]
    fn throttling_doubles_the_wait_up_to_sixteen_intervals() {
        let t = report(true, None);
        let mut backoff = None;
        let mut waits = Vec::new();
        for _ in 0..7 {
            let (wait, b) = next_delay(S(10), S(10), backoff, Some(&t));
            waits.push(wait.as_secs());
            backoff = b;
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 160, 160]);
    }

    #[test]
    fn retry_after_is_honoured_when_longer_than_the_backoff() {
        let t = report(true, Some(300));
        assert_eq!(next_delay(S(10), S(10), None, Some(&t)).0, S(300));
        let short = report(true, Some(1));
        assert_eq!(next_delay(S(10), S(10), Some(S(40)), Some(&short)).0, S(80));
    }
}
