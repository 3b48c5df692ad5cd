//! `kind = "browser"`: steps a headless Chromium takes on a page (open, wait for, fill, click,
//! expect text), and the main file's `[browser]` table shared by every browser check.

use super::{Kind, Loader, Source};
use crate::config::{BrowserAction, BrowserCheck, BrowserSettings, BrowserStep, CheckKind};
use crate::lang::condition::Condition;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;
use url::Url;

/// A browser check: the steps are `[[check.step]]`; the check's `timeout` bounds the whole
/// run, Chromium's start included, and the browser is killed when it passes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBrowserCheck {
    /// Unique across the whole configuration.
    pub name: Spanned<String>,
    /// `"primary"` (default) or `"backup"`.
    pub role: Option<Spanned<String>>,
    /// `"browser"`.
    pub kind: Option<Spanned<String>>,
    /// The actions (`[[check.step]]`), in order; the first one is `open`.
    #[serde(default)]
    pub step: Vec<Spanned<RawBrowserStep>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    /// Confirmation re-probes while the check is suspect.
    pub retry_interval: Option<Spanned<String>>,
    pub failure_threshold: Option<Spanned<i64>>,
    pub success_threshold: Option<Spanned<i64>>,
    /// `"adaptive"` or `"fixed"`; default from `[defaults]`.
    pub confirmation: Option<Spanned<String>>,
}

/// One action of a browser check. `action` says which, and which other fields it takes:
/// `open` a `url`; `wait_for` a `selector`; `fill` a `selector` with a `value`; `click` a
/// `selector`; `expect_text` a `text` on the page (or inside `selector`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBrowserStep {
    /// Unique within the check; named in the outcome and the step's metric. Default
    /// `{n}-{action}` (`1-open`, `2-wait_for`, ...).
    pub name: Option<Spanned<String>>,
    /// `"open"`, `"wait_for"`, `"fill"`, `"click"` or `"expect_text"`.
    pub action: Spanned<String>,
    /// `open`: the http(s) URL to load.
    pub url: Option<Spanned<String>>,
    /// `wait_for`, `fill`, `click` (and optionally `expect_text`): a CSS selector.
    pub selector: Option<Spanned<String>>,
    /// `fill`: the text typed into the element.
    pub value: Option<Spanned<String>>,
    /// `expect_text`: text that must appear in the page (or in `selector`).
    pub text: Option<Spanned<String>>,
    /// How long this step may wait (for the page, the element or the text), at most what is
    /// left of the check's timeout. Default: what is left.
    pub timeout: Option<Spanned<String>>,
}

/// `[browser]` in the main file: how browser checks run Chromium.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBrowser {
    /// The Chromium binary. Default `/usr/bin/chromium` (Debian's `chromium`).
    pub chromium: Option<Spanned<String>>,
    /// Browsers running at once, across all browser checks; a probe past the cap waits for a
    /// slot within its own timeout. Default 1.
    pub max_concurrent: Option<Spanned<i64>>,
    /// Where the screenshot of each check's last failure is kept (`{check}.png`), relative to
    /// this file. Default `var/screenshots`.
    pub screenshot_dir: Option<Spanned<String>>,
}

/// The actions a step can take, as `action` names them.
const ACTIONS: &[&str] = &["open", "wait_for", "fill", "click", "expect_text"];

impl Loader {
    /// `[browser]`: kept on the loader, so every browser check of the service files shares it.
    pub(in crate::config::raw) fn validate_browser(
        &mut self,
        source: &Source<'_>,
        base: &Path,
        raw: Option<RawBrowser>,
    ) {
        let raw = raw.unwrap_or_default();
        let builtin = BrowserSettings::with_base(base);
        let max_concurrent = match &raw.max_concurrent {
            None => builtin.max_concurrent,
            Some(m) => self
                .threshold(source, "browser.max_concurrent", Some(m))
                .unwrap_or(builtin.max_concurrent),
        };
        let chromium = match &raw.chromium {
            Some(c) if c.get_ref().trim().is_empty() => {
                self.report_at(source, c, "browser.chromium must name the Chromium binary");
                builtin.chromium
            }
            Some(c) => base.join(c.get_ref()),
            None => builtin.chromium,
        };
        let screenshot_dir = match &raw.screenshot_dir {
            Some(d) if d.get_ref().trim().is_empty() => {
                self.report_at(source, d, "browser.screenshot_dir must name a directory");
                builtin.screenshot_dir
            }
            Some(d) => base.join(d.get_ref()),
            None => builtin.screenshot_dir,
        };
        self.browser = Some(Arc::new(BrowserSettings {
            chromium,
            max_concurrent,
            screenshot_dir,
        }));
    }

    pub(super) fn browser_check(
        &mut self,
        source: &Source<'_>,
        raw: RawBrowserCheck,
        timeout: Duration,
    ) -> Option<(CheckKind, Vec<Condition>)> {
        let mut ok = true;
        if raw.step.is_empty() {
            let message = format!(
                "check \"{}\" of kind \"{}\" needs at least one [[check.step]], the first with action = \"open\"",
                raw.name.get_ref(),
                Kind::Browser.name()
            );
            self.report_at(source, &raw.name, message);
            ok = false;
        }
        let mut steps = Vec::with_capacity(raw.step.len());
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, step) in raw.step.iter().enumerate() {
            let raw_step = step.get_ref();
            let line = source.line(raw_step.action.span());
            // Named as the step will be, so a duplicate is found even when the step has other faults.
            let name = raw_step.name.as_ref().map_or_else(
                || format!("{}-{}", i + 1, raw_step.action.get_ref()),
                |n| n.get_ref().clone(),
            );
            if let Some(first) = names.insert(name.clone(), line) {
                let message = format!(
                    "duplicate step name \"{name}\" (first defined at {}:{first})",
                    source.path.display()
                );
                self.report(source.path, line, message);
                ok = false;
            }
            match self.browser_step(source, i, raw_step, timeout) {
                Some(s) => {
                    if i == 0 && !matches!(s.action, BrowserAction::Open(_)) {
                        let message = format!(
                            "step \"{}\": the first step of a browser check must be action = \"open\"",
                            s.name
                        );
                        self.report(source.path, line, message);
                        ok = false;
                    }
                    steps.push(s);
                }
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        let settings = self
            .browser
            .clone()
            .unwrap_or_else(|| Arc::new(BrowserSettings::with_base(Path::new(""))));
        // A browser check has no conditions of its own: each step is its own assertion.
        Some((
            CheckKind::Browser(BrowserCheck { steps, settings }),
            Vec::new(),
        ))
    }

    /// One step: the action and exactly the fields it takes. `None` after reporting.
    fn browser_step(
        &mut self,
        source: &Source<'_>,
        index: usize,
        raw: &RawBrowserStep,
        check_timeout: Duration,
    ) -> Option<BrowserStep> {
        let action = raw.action.get_ref().as_str();
        if !ACTIONS.contains(&action) {
            let known: Vec<String> = ACTIONS.iter().map(|a| format!("\"{a}\"")).collect();
            let message = format!(
                "step {}: action \"{action}\" is not one of {}",
                index + 1,
                known.join(", ")
            );
            self.report_at(source, &raw.action, message);
            return None;
        }
        let name = match &raw.name {
            Some(n) => {
                if !self.identifier(source, "step name", n) {
                    return None;
                }
                n.get_ref().clone()
            }
            None => format!("{}-{action}", index + 1),
        };
        let prefix = format!("step \"{name}\"");
        let mut ok = true;
        // Which fields each action takes; any other is a mistake worth naming.
        let takes: &[&str] = match action {
            "open" => &["url"],
            "wait_for" | "click" => &["selector"],
            "fill" => &["selector", "value"],
            _ => &["text", "selector"],
        };
        let given = [
            ("url", raw.url.as_ref()),
            ("selector", raw.selector.as_ref()),
            ("value", raw.value.as_ref()),
            ("text", raw.text.as_ref()),
        ];
        for (field, value) in given {
            if let Some(v) = value {
                if !takes.contains(&field) {
                    let message = format!("{prefix}: `{field}` is not used by action \"{action}\"");
                    self.report_at(source, v, message);
                    ok = false;
                }
            }
        }
        let required = |this: &mut Self, field: &str, v: Option<&Spanned<String>>| match v {
            None => {
                let message = format!("{prefix}: action \"{action}\" needs `{field}`");
                this.report_at(source, &raw.action, message);
                None
            }
            Some(v) if v.get_ref().trim().is_empty() && field != "value" => {
                let message = format!("{prefix}: `{field}` must not be empty");
                this.report_at(source, v, message);
                None
            }
            Some(v) => Some(v.get_ref().clone()),
        };
        let built = match action {
            "open" => {
                let url = required(self, "url", raw.url.as_ref());
                url.and_then(|u| match Url::parse(&u) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                        Some(BrowserAction::Open(url))
                    }
                    _ => {
                        if let Some(at) = &raw.url {
                            let message =
                                format!("{prefix}: url \"{u}\" is not an absolute http(s) URL");
                            self.report_at(source, at, message);
                        }
                        None
                    }
                })
            }
            "wait_for" => {
                required(self, "selector", raw.selector.as_ref()).map(BrowserAction::WaitFor)
            }
            "click" => required(self, "selector", raw.selector.as_ref()).map(BrowserAction::Click),
            "fill" => {
                let selector = required(self, "selector", raw.selector.as_ref());
                let value = required(self, "value", raw.value.as_ref());
                selector
                    .zip(value)
                    .map(|(selector, value)| BrowserAction::Fill { selector, value })
            }
            _ => {
                let text = required(self, "text", raw.text.as_ref());
                let selector = match &raw.selector {
                    Some(_) => Some(required(self, "selector", raw.selector.as_ref())?),
                    None => None,
                };
                text.map(|text| BrowserAction::ExpectText { text, selector })
            }
        };
        let field = format!("{prefix}: timeout");
        let timeout = self.duration(source, &field, raw.timeout.as_ref(), false);
        if let (Some(t), Some(at)) = (timeout, &raw.timeout) {
            if t > check_timeout {
                let message = format!(
                    "{prefix}: timeout ({}) is longer than the check's timeout ({})",
                    humantime::format_duration(t),
                    humantime::format_duration(check_timeout)
                );
                self.report_at(source, at, message);
                ok = false;
            }
        }
        ok &= raw.timeout.is_none() || timeout.is_some();
        let action = built?;
        ok.then_some(BrowserStep {
            name,
            action,
            timeout,
        })
    }
}
