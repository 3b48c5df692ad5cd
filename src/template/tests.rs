//! The engine's rules, each on a small template: the rules the first `{{name}}` engine had
//! (lone empty blocks, subject parts), escaping, and errors with file and line.

use super::*;

/// Templates built from the embedded ones with `kind`'s files replaced.
fn with(kind: &'static str, text: &str, html: &str) -> Result<Templates, TemplateError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(format!("{kind}.txt")), text).unwrap();
    std::fs::write(dir.path().join(format!("{kind}.html")), html).unwrap();
    Templates::load(dir.path())
}

fn fill(oncall: &str) -> Fill {
    let mut f = Fill::new();
    f.scalar("service_name", "Tickets <&> 'x'")
        .scalar("target", "")
        .scalar("state", "failed over")
        .block(
            "oncall",
            oncall,
            if oncall.is_empty() {
                String::new()
            } else {
                format!("<b>{oncall}</b>")
            },
        );
    f
}

#[test]
fn a_lone_empty_block_leaves_no_line_and_no_blank_line_after_it() {
    let t = with(
        "update",
        "Subject: s\n\nA\n\n{{ oncall }}\n\nB\n  {{oncall}}\nC\n",
        "<p>{{service_name}}</p>\n{{oncall}}\n<p>end</p>\n",
    )
    .unwrap();
    let empty = t.render("update", &fill(""));
    assert_eq!(empty.text, "A\n\nB\nC\n");
    assert_eq!(
        empty.html,
        "<p>Tickets &lt;&amp;&gt; &#39;x&#39;</p>\n<p>end</p>\n"
    );
    let full = t.render("update", &fill("E"));
    assert_eq!(full.text, "A\n\nE\n\nB\n  E\nC\n");
    assert_eq!(
        full.html,
        "<p>Tickets &lt;&amp;&gt; &#39;x&#39;</p>\n<b>E</b>\n<p>end</p>\n"
    );
}

#[test]
fn subject_parts_whose_placeholders_are_all_empty_are_left_out() {
    let t = with(
        "update",
        "Subject: [SB] {{service_name}} — use {{target}} — {{state}} or {{target}} — fixed\n\nx\n",
        "x",
    )
    .unwrap();
    assert_eq!(
        t.render("update", &fill("")).subject,
        "[SB] Tickets <&> 'x' — failed over or  — fixed"
    );
}

#[test]
fn jinja_works_in_overrides_and_values_are_escaped_in_html_only() {
    let t = with(
        "update",
        "Subject: {{ service_name|upper }}\n\n{% if state %}{{ state }}{% endif %} {{ service_name }}\n",
        "{% for c in service_name|list %}{{ c }}{% endfor %}",
    )
    .unwrap();
    let r = t.render("update", &fill(""));
    assert_eq!(r.subject, "TICKETS <&> 'X'");
    assert_eq!(r.text, "failed over Tickets <&> 'x'\n");
    assert_eq!(r.html, "Tickets &lt;&amp;&gt; &#39;x&#39;");
}

#[test]
fn errors_name_the_file_and_the_line() {
    let err = |text: &str, html: &str| with("failover", text, html).unwrap_err().to_string();
    let e = err("Subject: s\n\nfine\n{{ nope }}\n", "x");
    assert!(
        e.ends_with("failover.txt:4: unknown placeholder {{nope}} (known: service_name, service_id, target, state, status_url, audience, routes, oncall, status_link, public_message)"),
        "{e}"
    );
    let e = err("Subject: s\n\nline 3\n{{ unclosed\n", "x");
    assert!(
        e.ends_with(
            "failover.txt:4: syntax error: unexpected end of input, expected end of variable block"
        ),
        "{e}"
    );
    let e = err("Subject: s\n\nx\n", "<p>\n{% if x %}\n");
    assert!(e.contains("failover.html:"), "{e}");
    assert!(e.contains("syntax error"), "{e}");
    let e = err("Subject: {{ services }}\n\nx\n", "x");
    assert!(
        e.ends_with("failover.txt:1: unknown placeholder {{services}} (known: service_name, service_id, target, state, status_url, audience, routes, oncall, status_link, public_message)"),
        "{e}"
    );
    let e = err("Subject: s\n\n{{ state|no_such_filter }}\n", "x");
    assert!(
        e.contains("/failover.txt:3: "),
        "the override's own path: {e}"
    );
    assert!(e.contains("no_such_filter"), "{e}");
    // The group template has placeholders of its own.
    let e = with("group", "Subject: {{count}}\n\n{{ service_name }}\n", "x")
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("group.txt:3: unknown placeholder {{service_name}} (known: count, services, audience, changes)"),
        "{e}"
    );
}

#[test]
fn every_built_in_template_loads_and_the_files_are_the_embedded_ones() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let t = Templates::load(&dir).unwrap();
    assert_eq!(t, Templates::embedded());
    for &(kind, _, _) in EMBEDDED {
        assert!(t.has(kind), "{kind}");
    }
}
