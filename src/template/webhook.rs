//! `on_switch` webhook bodies: JSON templates whose values are always valid JSON.
//!
//! A body is a minijinja template with JSON escaping: a string value comes out escaped for
//! the inside of a JSON string (the templates write string placeholders inside quotes, as
//! `"{{service_name}}"`), a map or list comes out as a JSON value (`{{routes}}`), and
//! `{{ value|tojson }}` gives any value as a whole JSON value with its quotes. Whatever a
//! service name or an operator's message holds, the body stays valid JSON.
//!
//! Header values may name environment variables as `${NAME}` ([`env_refs`]); they are
//! resolved when the request is sent and never stored, logged or shown in errors.

use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind};
use std::collections::BTreeMap;

/// The placeholders a body template may use.
pub const PLACEHOLDERS: [&str; 10] = [
    "service",
    "service_name",
    "from",
    "to",
    "side",
    "cause",
    "reason",
    "at",
    "routes",
    "public_message",
];

/// The placeholders of a Help Center notice (`kind = "zendesk_article"`): what customers may
/// read. `target` is the contact route in use now (the backup's address during a failover);
/// the operator's `reason` is internal and is not one of them.
pub const ARTICLE_PLACEHOLDERS: [&str; 10] = [
    "service",
    "service_name",
    "from",
    "to",
    "side",
    "cause",
    "at",
    "routes",
    "target",
    "public_message",
];

/// How a template's values are escaped: for the inside of a JSON string (webhook bodies),
/// for HTML (an article's body), or not at all (an article's title, plain text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    Json,
    Html,
    Plain,
}

/// The body sent when a webhook has no template: every placeholder, as JSON.
pub const DEFAULT_BODY: &str = r#"{"service":"{{service}}","service_name":"{{service_name}}","from":"{{from}}","to":"{{to}}","side":"{{side}}","cause":"{{cause}}","reason":"{{reason}}","at":"{{at}}","routes":{{routes}}}"#;

/// The name of the auto-escape mode of bodies: values escaped for JSON (module header).
const JSON: &str = "json";

fn is_json(mode: &AutoEscape) -> bool {
    matches!(mode, AutoEscape::Custom(name) if name == JSON)
}

/// The environment bodies are compiled in.
fn environment(escape: Escape) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            // Invariant: the default delimiters are a valid syntax.
            .expect("default syntax"),
    );
    env.set_auto_escape_callback(move |_| match escape {
        Escape::Json => AutoEscape::Custom(JSON.into()),
        Escape::Html => AutoEscape::Html,
        Escape::Plain => AutoEscape::None,
    });
    env.set_formatter(|out, state, value| {
        if !is_json(state.auto_escape()) || value.is_safe() {
            return minijinja::escape_formatter(out, state, value);
        }
        let text = match value.kind() {
            ValueKind::Undefined => String::new(),
            ValueKind::String => json_inner(value.as_str().unwrap_or("")),
            ValueKind::Map | ValueKind::Seq | ValueKind::Iterable => to_json(value).to_string(),
            _ => to_json(value).to_string(),
        };
        out.write_str(&text)
            .map_err(|_| Error::new(ErrorKind::WriteFailure, "cannot write"))
    });
    env
}

/// Text for a JSON string's inside: quotes, backslashes and control characters escaped.
fn json_inner(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// A template value as JSON (maps keep the template's key order, which is sorted).
fn to_json(value: &Value) -> serde_json::Value {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => serde_json::Value::Null,
        ValueKind::Bool => serde_json::Value::Bool(value.is_true()),
        ValueKind::Number => serde_json::from_str(&value.to_string())
            .unwrap_or_else(|_| serde_json::Value::String(value.to_string())),
        ValueKind::String => serde_json::Value::String(value.as_str().unwrap_or("").to_owned()),
        ValueKind::Map => {
            let mut map = serde_json::Map::new();
            for key in value.try_iter().into_iter().flatten() {
                let item = value.get_item(&key).unwrap_or(Value::UNDEFINED);
                map.insert(key.to_string(), to_json(&item));
            }
            serde_json::Value::Object(map)
        }
        ValueKind::Seq | ValueKind::Iterable => serde_json::Value::Array(
            value
                .try_iter()
                .into_iter()
                .flatten()
                .map(|v| to_json(&v))
                .collect(),
        ),
        _ => serde_json::Value::String(value.to_string()),
    }
}

/// What is wrong with `template`, for load-time validation: the unknown placeholders it
/// uses, or its one syntax error with its line.
pub fn unknown_placeholders(template: &str) -> Vec<String> {
    unknown_placeholders_of(template, &PLACEHOLDERS)
}

/// [`unknown_placeholders`] against the placeholders `known` (e.g. [`ARTICLE_PLACEHOLDERS`]).
pub fn unknown_placeholders_of(template: &str, known: &[&str]) -> Vec<String> {
    let env = environment(Escape::Json);
    let compiled = match env.template_from_str(template) {
        Ok(t) => t,
        Err(e) => return vec![syntax(&e)],
    };
    let mut unknown: Vec<String> = compiled
        .undeclared_variables(false)
        .into_iter()
        .filter(|n| !known.contains(&n.as_str()))
        .filter(|n| env.globals().all(|(g, _)| g != n))
        .collect();
    unknown.sort();
    if unknown.is_empty() {
        // What only shows when the template runs (an unknown filter) is found by a trial
        // render with every placeholder set.
        let sample: BTreeMap<&str, Value> = known.iter().map(|&p| (p, Value::from("x"))).collect();
        if let Err(e) = compiled.render(Value::from(sample)) {
            return vec![syntax(&e)];
        }
    }
    unknown
}

fn syntax(e: &Error) -> String {
    let what = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    format!("({what}, line {})", e.line().unwrap_or(1))
}

/// The environment variables named as `${NAME}` in `value`.
pub fn env_refs(value: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        match rest[start + 2..].find('}') {
            Some(len) => {
                names.push(&rest[start + 2..start + 2 + len]);
                rest = &rest[start + 3 + len..];
            }
            None => break,
        }
    }
    names
}

/// The values of one body: strings, and `routes` as a map of route id to target.
#[derive(Clone, Debug, Default)]
pub struct BodyValues {
    values: BTreeMap<&'static str, Value>,
}

impl BodyValues {
    pub fn new() -> BodyValues {
        BodyValues::default()
    }

    pub fn string(&mut self, name: &'static str, value: impl Into<String>) -> &mut BodyValues {
        self.values.insert(name, Value::from(value.into()));
        self
    }

    pub fn map(
        &mut self,
        name: &'static str,
        entries: impl IntoIterator<Item = (String, String)>,
    ) -> &mut BodyValues {
        let map: BTreeMap<String, Value> = entries
            .into_iter()
            .map(|(k, v)| (k, Value::from(v)))
            .collect();
        self.values.insert(name, Value::from(map));
        self
    }
}

/// Renders `template` with `values`. An error here means the template passed validation
/// and still failed (a value it did not expect): the caller decides what to send instead.
pub fn render(template: &str, values: &BodyValues) -> Result<String, String> {
    render_as(template, values, Escape::Json)
}

/// [`render`] with the values escaped as `escape` says.
pub fn render_as(template: &str, values: &BodyValues, escape: Escape) -> Result<String, String> {
    environment(escape)
        .render_str(template, Value::from(values.values.clone()))
        .map_err(|e| syntax(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BodyValues {
        let mut v = BodyValues::new();
        v.string("service", "ticket-submission")
            .string("service_name", "Ticket \"submission\" <&>\n")
            .string("from", "operational")
            .string("to", "failed_over")
            .string("side", "backup")
            .string("cause", "primary_down")
            .string("reason", "r\\")
            .string("at", "2023-11-14T22:13:20.000Z")
            .string("public_message", "")
            .map(
                "routes",
                [
                    ("b".to_owned(), "https://b.example/\"x\"".to_owned()),
                    ("a".to_owned(), "https://a.example/".to_owned()),
                ],
            );
        v
    }

    #[test]
    fn the_default_body_escapes_every_string_and_gives_routes_as_an_object() {
        let body = render(DEFAULT_BODY, &values()).unwrap();
        assert_eq!(
            body,
            r#"{"service":"ticket-submission","service_name":"Ticket \"submission\" <&>\n","from":"operational","to":"failed_over","side":"backup","cause":"primary_down","reason":"r\\","at":"2023-11-14T22:13:20.000Z","routes":{"a":"https://a.example/","b":"https://b.example/\"x\""}}"#
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["service_name"], "Ticket \"submission\" <&>\n");
    }

    #[test]
    fn tojson_gives_whole_json_values_and_jinja_works() {
        let body = render(
            "{\"name\": {{ service_name|tojson }}, \"n\": {{ routes|length }}{% if public_message %}, \"m\": 1{% endif %}}\n",
            &values(),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["name"], "Ticket \"submission\" <&>\n");
        assert_eq!(v["n"], 2);
        assert!(v.get("m").is_none());
        assert!(body.ends_with("}\n"), "the last newline is kept: {body:?}");
    }

    #[test]
    fn validation_names_unknown_placeholders_and_syntax_errors_with_their_line() {
        assert!(unknown_placeholders(DEFAULT_BODY).is_empty());
        assert!(unknown_placeholders(r#"{"a": "{{ service_name }} {{side}}"}"#).is_empty());
        assert_eq!(
            unknown_placeholders("{{state}} {{service}} {{nope}}"),
            ["nope", "state"]
        );
        assert_eq!(
            unknown_placeholders("{\n\"a\": \"{{oops\"\n}"),
            ["(syntax error: unexpected end of string, line 3)"]
        );
        let err = unknown_placeholders("{{ service|no_such_filter }}");
        assert_eq!(err.len(), 1);
        assert!(err[0].contains("no_such_filter"), "{err:?}");
    }

    #[test]
    fn an_article_body_escapes_for_html_and_its_title_not_at_all() {
        let t = "<p>{{ service_name }} uses {{ routes['a'] }}</p>";
        assert_eq!(
            render_as(t, &values(), Escape::Html).unwrap(),
            "<p>Ticket &quot;submission&quot; &lt;&amp;&gt;\n uses https:&#x2f;&#x2f;a.example&#x2f;</p>"
        );
        assert_eq!(
            render_as("{{ service_name }} is down", &values(), Escape::Plain).unwrap(),
            "Ticket \"submission\" <&>\n is down"
        );
        assert_eq!(
            unknown_placeholders_of("{{ target }} {{ reason }}", &ARTICLE_PLACEHOLDERS),
            ["reason"]
        );
    }

    #[test]
    fn env_references_are_found() {
        assert_eq!(env_refs("Bearer ${CDN_TOKEN}"), ["CDN_TOKEN"]);
        assert_eq!(env_refs("${A}:${B}"), ["A", "B"]);
        assert!(env_refs("plain").is_empty());
    }
}
