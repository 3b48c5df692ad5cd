//! The template engine of every message and webhook body: minijinja environments, loading
//! `[email] templates` overrides, and validating them, with HTML templates autoescaped.
//!
//! A language of its own (layer L0): it knows the placeholder names and the files, not the
//! transitions that fill them, so `config` validates a template directory without importing
//! `announce`, and `announce::render` fills the placeholders.
//!
//! Templates are Jinja (`{{ name }}`, `{% if %}`, `{% for %}`, filters), and the plain
//! `{{name}}` files written for the first engine keep their meaning through two rules that
//! engine had (see `templates/README.md`):
//!
//! - a line holding nothing but one placeholder whose value is empty is left out, and the
//!   blank line after it too, so optional blocks leave no gap (the line is wrapped in
//!   `{% if name %}...{% endif %}` before compiling);
//! - in the subject, a ` — ` part whose placeholders are all empty is left out (each part is
//!   its own template, kept when it names no placeholder or any of them has a value).
//!
//! In `.html` files every value is escaped with `crate::html::escape` (the status page's
//! escaping, so the snapshots stay what they were), except the blocks built as HTML, which
//! arrive marked safe. Webhook bodies are in [`webhook`].

pub mod webhook;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, ErrorKind};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Placeholders whose values are inserted as they are in text and escaped in HTML.
pub const SCALARS: [&str; 6] = [
    "service_name",
    "service_id",
    "target",
    "state",
    "status_url",
    "audience",
];
/// Placeholders built by the renderer: in HTML they are markup already.
pub const BLOCKS: [&str; 4] = ["routes", "oncall", "status_link", "public_message"];
/// The placeholders of the grouped message (`group.txt|html`): how many changes, the
/// services' names, and the block of every change's own message.
pub const GROUP_PLACEHOLDERS: [&str; 4] = ["count", "services", "audience", "changes"];
/// The template of a message carrying several changes (not a transition kind).
pub const GROUP: &str = "group";
/// What separates the parts of a subject that are left out when their placeholders are empty.
const SUBJECT_SEPARATOR: &str = " — ";

macro_rules! embedded {
    ($($kind:literal),*) => {
        &[$(($kind,
            include_str!(concat!("../../templates/", $kind, ".txt")),
            include_str!(concat!("../../templates/", $kind, ".html")))),*]
    };
}

/// The default templates, compiled in from `templates/` so the binary needs no files:
/// (kind, `KIND.txt`, `KIND.html`).
pub const EMBEDDED: &[(&str, &str, &str)] = embedded!(
    "failover",
    "failback",
    "outage",
    "outage_resolved",
    "recovering",
    "maintenance_start",
    "maintenance_end",
    "drill_start",
    "drill_end",
    "flapping",
    "vendor_notice",
    "vantage_suspect",
    "vantage_clear",
    "update",
    "group"
);

/// Why a template directory or file cannot be used. Each names the file, and the line
/// where the template language can tell it.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: unknown placeholder {{{{{name}}}}} (known: {known})")]
    Unknown {
        path: PathBuf,
        line: usize,
        name: String,
        known: String,
    },
    #[error("{path}: the first line must be \"Subject: ...\"")]
    NoSubject { path: PathBuf },
    #[error("{path}:{line}: {detail}")]
    Invalid {
        path: PathBuf,
        line: usize,
        detail: String,
    },
}

/// The values of one message: each placeholder's text for the `.txt` template and the
/// subject, and for the `.html` template the same text (escaped there) or, for a block,
/// HTML built by the caller.
#[derive(Clone, Debug, Default)]
pub struct Fill {
    text: BTreeMap<&'static str, Value>,
    html: BTreeMap<&'static str, Value>,
}

impl Fill {
    pub fn new() -> Fill {
        Fill::default()
    }

    /// A value inserted as it is in text and escaped in HTML.
    pub fn scalar(&mut self, name: &'static str, value: impl Into<String>) -> &mut Fill {
        let v = Value::from(value.into());
        self.text.insert(name, v.clone());
        self.html.insert(name, v);
        self
    }

    /// A block: its text form, and its HTML form inserted as it is (the caller escaped
    /// every value in it).
    pub fn block(
        &mut self,
        name: &'static str,
        text: impl Into<String>,
        html: impl Into<String>,
    ) -> &mut Fill {
        self.text.insert(name, Value::from(text.into()));
        self.html.insert(name, Value::from_safe_string(html.into()));
        self
    }
}

/// A rendered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// One part of a subject (between ` — `), compiled as its own template.
#[derive(Clone, Debug)]
struct SubjectPart {
    name: String,
    placeholders: BTreeSet<String>,
}

/// Every kind's templates: the built-in ones, or a directory's overriding some of them.
#[derive(Clone, Debug)]
pub struct Templates {
    env: Environment<'static>,
    subjects: BTreeMap<String, Vec<SubjectPart>>,
    /// The files' texts by kind, `KIND.txt` and `KIND.html`: what two sets are compared by.
    sources: BTreeMap<String, (String, String)>,
    /// The file each compiled template came from, for errors at render time.
    paths: BTreeMap<String, PathBuf>,
}

impl PartialEq for Templates {
    fn eq(&self, other: &Templates) -> bool {
        self.sources == other.sources
    }
}

impl Eq for Templates {}

impl Default for Templates {
    fn default() -> Self {
        Templates::embedded()
    }
}

impl Templates {
    /// The built-in templates, compiled once per process (a clone shares the compiled
    /// templates).
    pub fn embedded() -> Templates {
        static EMBEDDED_TEMPLATES: std::sync::OnceLock<Templates> = std::sync::OnceLock::new();
        EMBEDDED_TEMPLATES
            .get_or_init(Templates::compile_embedded)
            .clone()
    }

    fn compile_embedded() -> Templates {
        let files = EMBEDDED.iter().map(|&(kind, text, html)| {
            (
                kind,
                (PathBuf::from(format!("{kind}.txt")), text.to_owned()),
                (PathBuf::from(format!("{kind}.html")), html.to_owned()),
            )
        });
        // Invariant: the built-in templates are valid; a unit test loads every one.
        Templates::build(files.collect()).unwrap_or_else(|e| panic!("built-in template: {e}"))
    }

    /// The built-in templates, each replaced by `DIR/KIND.txt` / `DIR/KIND.html` where such
    /// a file exists. Every file is checked: a subject line, valid syntax, known
    /// placeholders only, and a trial render.
    pub fn load(dir: &Path) -> Result<Templates, TemplateError> {
        if let Err(source) = std::fs::read_dir(dir) {
            return Err(TemplateError::Read {
                path: dir.to_path_buf(),
                source,
            });
        }
        let mut files = Vec::new();
        for &(kind, text, html) in EMBEDDED {
            let read = |ext: &str, fallback: &str| -> Result<(PathBuf, String), TemplateError> {
                let path = dir.join(format!("{kind}.{ext}"));
                match std::fs::read_to_string(&path) {
                    Ok(s) => Ok((path, s)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Ok((path, fallback.to_owned()))
                    }
                    Err(source) => Err(TemplateError::Read { path, source }),
                }
            };
            files.push((kind, read("txt", text)?, read("html", html)?));
        }
        Templates::build(files)
    }

    #[allow(clippy::type_complexity)]
    fn build(
        files: Vec<(&'static str, (PathBuf, String), (PathBuf, String))>,
    ) -> Result<Templates, TemplateError> {
        let mut env = environment();
        let mut subjects = BTreeMap::new();
        let mut sources = BTreeMap::new();
        let mut paths = BTreeMap::new();
        for (kind, (text_path, text), (html_path, html)) in files {
            let known = known_for(kind);
            let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
            let subject = first
                .strip_prefix("Subject:")
                .ok_or_else(|| TemplateError::NoSubject {
                    path: text_path.clone(),
                })?
                .trim();
            // The blank line after the subject separates it from the body, as in a mail
            // header. A comment holding as many newlines as were cut keeps the body's line
            // numbers those of the file in every error.
            let (body, cut) = match rest.strip_prefix('\n') {
                Some(body) => (body, 2),
                None => (rest, 1),
            };
            let body = format!("{{#{}#}}{}", "\n".repeat(cut), lone_blocks(body));
            let mut parts = Vec::new();
            for (i, part) in subject.split(SUBJECT_SEPARATOR).enumerate() {
                let name = format!("{kind}.subject.{i}");
                let placeholders = add(&mut env, &name, part.to_owned(), &text_path, 1, &known)?;
                paths.insert(name.clone(), text_path.clone());
                parts.push(SubjectPart { name, placeholders });
            }
            add(
                &mut env,
                &format!("{kind}.txt"),
                body,
                &text_path,
                0,
                &known,
            )?;
            let html_source = lone_blocks(&html);
            add(
                &mut env,
                &format!("{kind}.html"),
                html_source,
                &html_path,
                0,
                &known,
            )?;
            paths.insert(format!("{kind}.txt"), text_path);
            paths.insert(format!("{kind}.html"), html_path);
            subjects.insert(kind.to_owned(), parts);
            sources.insert(kind.to_owned(), (text, html));
        }
        let templates = Templates {
            env,
            subjects,
            sources,
            paths,
        };
        // A trial render with every placeholder set finds what only shows when a template
        // runs (an unknown filter, a loop over a number), with its file and line.
        for &(kind, _, _) in EMBEDDED {
            let mut fill = Fill::new();
            for name in known_for(kind) {
                fill.scalar(name, "x");
            }
            templates.try_render(kind, &fill)?;
        }
        Ok(templates)
    }

    /// Whether `kind` has templates (every built-in kind and `group` do).
    pub fn has(&self, kind: &str) -> bool {
        self.subjects.contains_key(kind)
    }

    /// Renders the `kind` message with `fill`. A template that fails at run time (it passed
    /// the trial render, so this takes a value it did not expect) is logged and the built-in
    /// one is used, so the news still goes out.
    pub fn render(&self, kind: &str, fill: &Fill) -> Rendered {
        match self.try_render(kind, fill) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, kind, "template failed; using the built-in one");
                Templates::embedded()
                    .try_render(kind, fill)
                    .unwrap_or_else(|_| Rendered {
                        subject: kind.to_owned(),
                        text: String::new(),
                        html: String::new(),
                    })
            }
        }
    }

    fn try_render(&self, kind: &str, fill: &Fill) -> Result<Rendered, TemplateError> {
        let run = |name: &str, values: &BTreeMap<&'static str, Value>| {
            self.env
                .get_template(name)
                .and_then(|t| t.render(Value::from(values.clone())))
                .map_err(|e| {
                    let path = self
                        .paths
                        .get(name)
                        .map_or(Path::new(name), PathBuf::as_path);
                    invalid(path, 0, &e)
                })
        };
        let parts = self
            .subjects
            .get(kind)
            .ok_or_else(|| TemplateError::Invalid {
                path: PathBuf::from(kind),
                line: 0,
                detail: "no such template".to_owned(),
            })?;
        let mut kept = Vec::new();
        for part in parts {
            let any = part.placeholders.is_empty()
                || part.placeholders.iter().any(|p| {
                    fill.text
                        .get(p.as_str())
                        .is_some_and(|v| !v.as_str().unwrap_or("").is_empty())
                });
            if any {
                kept.push(run(&part.name, &fill.text)?);
            }
        }
        Ok(Rendered {
            subject: kept.join(SUBJECT_SEPARATOR),
            text: run(&format!("{kind}.txt"), &fill.text)?,
            html: run(&format!("{kind}.html"), &fill.html)?,
        })
    }
}

/// The placeholders the templates of `kind` may use.
pub fn known_for(kind: &str) -> Vec<&'static str> {
    if kind == GROUP {
        GROUP_PLACEHOLDERS.to_vec()
    } else {
        SCALARS.iter().chain(BLOCKS.iter()).copied().collect()
    }
}

/// The environment of the message templates: `.html` autoescaped with the status page's
/// escaping, the file's last newline kept, `{{name}}` of an unset value empty.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            // Invariant: the default delimiters are a valid syntax.
            .expect("default syntax"),
    );
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.set_formatter(|out, state, value| {
        let plain = !value.is_safe() && !value.is_undefined() && !value.is_none();
        if matches!(state.auto_escape(), AutoEscape::Html) && plain {
            let text = match value.as_str() {
                Some(s) => crate::html::escape(s),
                None => crate::html::escape(&value.to_string()),
            };
            out.write_str(&text)
                .map_err(|_| Error::new(ErrorKind::WriteFailure, "cannot write"))
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env
}

/// Compiles `source` as `name` and checks that it uses only `known` placeholders; returns
/// the ones it uses. `line` is the line of the file the source starts on for errors that
/// cannot tell (the subject: 1), or 0 when the compiler counts the file's own lines.
fn add(
    env: &mut Environment<'static>,
    name: &str,
    source: String,
    path: &Path,
    line: usize,
    known: &[&str],
) -> Result<BTreeSet<String>, TemplateError> {
    let at = |e: &Error| invalid(path, line, e);
    env.add_template_owned(name.to_owned(), source.clone())
        .map_err(|e| at(&e))?;
    let template = env.get_template(name).map_err(|e| at(&e))?;
    let used: BTreeSet<String> = template.undeclared_variables(false).into_iter().collect();
    let globals: BTreeSet<&str> = env.globals().map(|(n, _)| n).collect();
    for name in &used {
        if !known.contains(&name.as_str()) && !globals.contains(name.as_str()) {
            return Err(TemplateError::Unknown {
                path: path.to_path_buf(),
                line: if line > 0 {
                    line
                } else {
                    line_of(&source, name)
                },
                name: name.clone(),
                known: known.join(", "),
            });
        }
    }
    Ok(used
        .into_iter()
        .filter(|n| known.contains(&n.as_str()))
        .collect())
}

/// A template error as the user reads it: the file, the line, what is wrong.
fn invalid(path: &Path, line: usize, e: &Error) -> TemplateError {
    let detail = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    TemplateError::Invalid {
        path: path.to_path_buf(),
        line: e.line().filter(|_| line == 0).unwrap_or(line.max(1)),
        detail,
    }
}

/// The first line (from 1) where `name` appears inside `{{ }}` or `{% %}`; 1 when none does.
fn line_of(source: &str, name: &str) -> usize {
    let mut line = 1;
    let mut rest = source;
    while let Some(start) = rest.find(['{']) {
        line += rest[..start].matches('\n').count();
        let tail = &rest[start..];
        let close = if tail.starts_with("{{") {
            "}}"
        } else if tail.starts_with("{%") {
            "%}"
        } else {
            rest = &tail[1..];
            continue;
        };
        let end = tail.find(close).map_or(tail.len(), |e| e + 2);
        let code = &tail[..end];
        let word = code
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|w| w == name);
        if word {
            return line;
        }
        line += code.matches('\n').count();
        rest = &tail[end..];
    }
    1
}

/// Wraps every line that holds nothing but one `{{ name }}` in `{% if name %}...{% endif %}`,
/// together with the blank line after it, so that an empty value leaves no gap (the rule of
/// the first engine, which users' template files rely on).
fn lone_blocks(source: &str) -> String {
    let lines: Vec<&str> = source.split_inclusive('\n').collect();
    let mut out = String::with_capacity(source.len() + 64);
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let name = line
            .trim()
            .strip_prefix("{{")
            .and_then(|t| t.strip_suffix("}}"))
            .map(str::trim)
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_alphanumeric() || c == '_'));
        match name {
            Some(name) => {
                out.push_str(&format!("{{% if {name} %}}{line}"));
                if let Some(next) = lines.get(i + 1).filter(|l| l.trim().is_empty()) {
                    out.push_str(next);
                    i += 1;
                }
                out.push_str("{% endif %}");
            }
            None => out.push_str(line),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests;
