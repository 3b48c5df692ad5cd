//! Unit tests of loading: regions, line numbers, the cost of loading, and per-kind check diagnostics.

use super::regions::regions;
use super::*;

#[test]
fn regions_split_at_top_level_headers_only() {
    let text = "probes = \"p\"\n[server]\nlisten = \"x\"\n[[check]]\nname = \"a\"\n[check.headers]\nA = \"b\"\n[[check]]\nname = \"c\"\ninline = { a = 1 }\n";
    let got: Vec<&str> = regions(text)
        .expect("valid TOML")
        .into_iter()
        .map(|r| &text[r])
        .collect();
    assert_eq!(
        got,
        [
            "probes = \"p\"\n",
            "[server]\nlisten = \"x\"\n",
            "[[check]]\nname = \"a\"\n[check.headers]\nA = \"b\"\n",
            "[[check]]\nname = \"c\"\ninline = { a = 1 }\n",
        ]
    );
}

/// What the loader reported before `LineIndex`: the newlines before the offset, plus one.
fn counted_line(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[test]
fn line_index_gives_the_same_line_as_counting_newlines_at_every_offset() {
    let texts = [
        "",
        "\n",
        "a",
        "a = 1\n[x]\nb = 2\n",
        "\n\n[[check]]\nname = \"é\"\r\nurl = \"x\"",
    ];
    for text in texts {
        let index = LineIndex::new(text);
        // Past the end counts as the end.
        for offset in 0..text.len() + 3 {
            assert_eq!(
                index.line(offset),
                counted_line(text, offset),
                "{text:?} at {offset}"
            );
        }
    }
}

/// Every region is parsed as its own text, so the parser sees each byte of a file at most
/// three times (once whole, to find the regions; in a service file once for the kinds of its
/// checks and once in its kind's struct) however many checks it holds. Blanking the rest of the file for each region made it see the file once per
/// check: 10,000 checks in one file took minutes. Counted, not timed.
#[test]
fn loading_parses_each_byte_a_bounded_number_of_times_however_many_checks() {
    for n in [10usize, 1_000, 4_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("probes")).expect("mkdir");
        let main = "probes = \"probes\"\n[server]\nlisten = \"127.0.0.1:9898\"\n";
        std::fs::write(dir.path().join("switchboard.toml"), main).expect("write");
        let mut body = String::from("[service]\nid = \"big\"\n");
        for i in 0..n {
            body.push_str(&format!(
                "\n[[check]]\nname = \"c{i}\"\nurl = \"http://127.0.0.1/{i}\"\nconditions = [\"[STATUS] == 200\"]\n"
            ));
        }
        std::fs::write(dir.path().join("probes/big.toml"), &body).expect("write");
        let mut loader = Loader::default();
        let config = loader
            .load(&dir.path().join("switchboard.toml"))
            .expect("valid");
        assert_eq!(config.checks().count(), n);
        assert!(loader.diagnostics.is_empty(), "{:?}", loader.diagnostics);
        let size = main.len() + body.len();
        assert!(
            loader.parsed_bytes <= 3 * size,
            "{n} checks: {} bytes parsed for {size} bytes of configuration",
            loader.parsed_bytes
        );
    }
}

/// Loads a configuration of one service file holding `checks` and returns the diagnostics
/// as `file:line: message` with the file name only.
fn diagnostics(checks: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("probes")).expect("mkdir");
    std::fs::write(dir.path().join("switchboard.toml"), "probes = \"probes\"\n").expect("write");
    let body = format!("[service]\nid = \"s\"\n{checks}");
    std::fs::write(dir.path().join("probes/s.toml"), body).expect("write");
    let mut loader = Loader::default();
    loader.load(&dir.path().join("switchboard.toml"));
    loader
        .diagnostics
        .iter()
        .map(|d| {
            let file = d.file.file_name().unwrap_or_default().to_string_lossy();
            format!("{file}:{}: {}", d.line, d.message)
        })
        .collect()
}

#[test]
fn an_unknown_field_lists_only_the_fields_of_the_checks_kind() {
    let got = diagnostics("[[check]]\nname = \"n\"\nkind = \"dns\"\ntarget = \"127.0.0.1:53\"\nquery_name = \"x\"\nquery_nmae = \"y\"\n");
    assert_eq!(
        got,
        ["s.toml:8: unknown field `query_nmae`, expected one of `name`, `role`, `kind`, `target`, `query_name`, `query_type`, `expect_rcode`, `expect_answers`, `interval`, `timeout`, `retry_interval`, `failure_threshold`, `success_threshold`, `confirmation`, `conditions`"]
    );
}

#[test]
fn a_field_of_another_kind_is_named_as_such_at_its_own_line() {
    let got = diagnostics("[[check]]\nname = \"n\"\nurl = \"http://127.0.0.1/\"\nquery_name = \"x\"\nstarttls = false\n");
    assert_eq!(
        got,
        [
            "s.toml:6: `query_name` is not a field of an http check; only dns checks have it",
            "s.toml:7: `starttls` is not a field of an http check; only smtp checks have it",
        ]
    );
    // A step's field on a multi-step check points at the steps.
    let got = diagnostics("[[check]]\nname = \"n\"\nmethod = \"POST\"\n[[check.step]]\nname = \"a\"\nurl = \"http://127.0.0.1/\"\n");
    assert_eq!(
        got,
        ["s.toml:5: `method` is not a field of a steps check: it belongs on each [[check.step]]"]
    );
    // An unknown field of a step is the step's, listed with the step's fields.
    let got = diagnostics("[[check]]\nname = \"n\"\n[[check.step]]\nname = \"a\"\nurl = \"http://127.0.0.1/\"\ntarget = \"x:1\"\n");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with(
            "s.toml:8: unknown field `target`, expected one of `name`, `url`, `method`"
        ),
        "{got:?}"
    );
}

#[test]
fn a_kind_that_names_no_kind_is_reported_at_the_kind() {
    let got = diagnostics("[[check]]\nname = \"n\"\nkind = \"ftp\"\nurl = \"ftp://x/\"\n");
    assert_eq!(
        got,
        [
            r#"s.toml:5: kind "ftp" is not one of "http", "steps", "tcp", "tls", "smtp", "dns", "vendor_status", "browser", "mail_roundtrip", "heartbeat""#
        ]
    );
}

#[test]
fn every_kinds_field_list_comes_from_its_struct() {
    for kind in Kind::ALL {
        let fields = kind.fields();
        if *kind == Kind::VendorStatus {
            // A vendor check corroborates; it is neither primary nor backup.
            assert_eq!(&fields[..2], ["name", "kind"]);
            assert!(!fields.contains(&"role"));
            continue;
        }
        assert_eq!(&fields[..3], ["name", "role", "kind"], "{kind:?}");
        // A heartbeat is judged, not fetched: it has no timeout.
        assert_eq!(
            fields.contains(&"timeout"),
            *kind != Kind::Heartbeat,
            "{kind:?}"
        );
    }
    assert!(Kind::Dns.fields().contains(&"query_name"));
    assert!(!Kind::Http.fields().contains(&"query_name"));
}

/// Loads a configuration whose one service file is `body`, as written.
fn load_service(body: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("probes")).expect("mkdir");
    std::fs::write(dir.path().join("switchboard.toml"), "probes = \"probes\"\n").expect("write");
    std::fs::write(dir.path().join("probes/s.toml"), body).expect("write");
    super::load(&dir.path().join("switchboard.toml"))
}

/// Checks of one kind may share an inline array; checks of several kinds cannot, since the
/// array is read with one kind's struct, and the message says what to write instead.
#[test]
fn an_inline_array_of_checks_is_read_with_one_kind() {
    let same = "check = [{ name = \"a\", url = \"http://127.0.0.1/a\" }, { name = \"b\", url = \"http://127.0.0.1/b\" }]\n[service]\nid = \"s\"\n";
    assert_eq!(load_service(same).expect("loads").checks().count(), 2);

    let mixed = "check = [{ name = \"a\", url = \"http://127.0.0.1/a\" }, { name = \"b\", kind = \"tcp\", target = \"127.0.0.1:1\" }]\n[service]\nid = \"s\"\n";
    let e = load_service(mixed).expect_err("refused");
    let messages: Vec<String> = e
        .diagnostics
        .iter()
        .map(|d| format!("{}: {}", d.line, d.message))
        .collect();
    assert_eq!(
        messages,
        ["1: checks of different kinds in one array: write each as its own [[check]] table"]
    );
}

/// A Help Center article entry: the subdomain becomes Zendesk's https origin, the defaults
/// fill the title, body, promotion and timeout, the secrets stay where they are, and the
/// service's webhooks are not mixed with it.
#[test]
fn a_zendesk_article_entry_loads_with_its_defaults_beside_a_webhook() {
    use crate::config::{Secret, ZENDESK_DEFAULT_BODY, ZENDESK_DEFAULT_TITLE};
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("probes")).expect("mkdir");
    std::fs::write(dir.path().join("switchboard.toml"), "probes = \"probes\"\n").expect("write");
    std::fs::write(dir.path().join("probes/client.secret"), "cs\n").expect("write");
    std::fs::write(dir.path().join("probes/refresh.token"), "rt\n").expect("write");
    let body = r#"[service]
id = "help-center"
[[check]]
name = "home"
url = "http://127.0.0.1/hc"
[[on_switch]]
url = "https://hooks.example.com/banner"
[[on_switch]]
kind = "zendesk_article"
subdomain = "acme"
article_id = 360001
locale = "en-US"
client_id = "switchboard"
client_secret_file = "client.secret"
refresh_token_file = "refresh.token"
"#;
    std::fs::write(dir.path().join("probes/s.toml"), body).expect("write");
    let config = super::load(&dir.path().join("switchboard.toml")).expect("loads");
    let s = &config.services[0];
    assert_eq!(s.on_switch.len(), 1);
    assert_eq!(s.on_switch[0].id, "help-center-1");
    let a = &s.zendesk_articles[0];
    assert_eq!(a.id, "help-center-2");
    assert_eq!(a.base_url, "https://acme.zendesk.com");
    assert_eq!((a.article_id, a.locale.as_str()), (360_001, "en-us"));
    assert_eq!(
        (a.title.as_str(), a.body.as_str()),
        (ZENDESK_DEFAULT_TITLE, ZENDESK_DEFAULT_BODY)
    );
    assert!(a.promote);
    assert_eq!(a.timeout, std::time::Duration::from_secs(10));
    let probes = dir.path().join("probes");
    assert_eq!(
        a.oauth.client_secret,
        Secret::File(probes.join("client.secret"))
    );
    assert_eq!(
        a.oauth.refresh_token,
        Secret::File(probes.join("refresh.token"))
    );
    // Its Debug (configuration fingerprints) names where secrets live, never their values.
    let debug = format!("{a:?}");
    assert!(
        !debug.contains("\"cs\"") && !debug.contains("\"rt\""),
        "{debug}"
    );
}
