//! Unit tests of the condition language: parse errors and evaluation, case by case.

use super::*;

/// Parses `text` and expects the error `expected`, or success when `expected` is empty.
fn check_parse(text: &str, expected: &str) {
    let got = match Condition::parse(text) {
        Ok(_) => String::new(),
        Err(e) => e.0,
    };
    assert_eq!(got, expected, "condition {text:?}");
}

#[test]
fn parse_accepts_and_rejects() {
    let table: &[(&str, &str)] = &[
        ("[STATUS] == 200", ""),
        ("[BODY] == pat(*request_subject*)", ""),
        ("[RESPONSE_TIME] < 3000", ""),
        ("[CERTIFICATE_EXPIRATION] > 168h", ""),
        ("[BODY].data.items[0].id == 5", ""),
        ("[BODY][0].name == alice", ""),
        ("len([BODY].items) >= 0x10", ""),
        ("has([BODY].errors) == false", ""),
        ("[STATUS] == any(200, 204, 302)", ""),
        ("[CONNECTED] == true", ""),
        ("[DNS_RCODE] == NOERROR", ""),
        ("[IP] == pat(10.0.*)", ""),
        ("[HEADER].Content-Type == pat(text/html*)", ""),
        ("[BODY].version == regex(^2\\.[0-9]+$)", ""),
        ("[BODY] == pat(*<h1>Example</h1>*)", ""),
        ("200 == [STATUS]", ""),
        ("[STATUS]==200", "operator `==` must have a space on each side, as in `[STATUS] == 200`"),
        ("[RESPONSE_TIME] <3000", "operator `<` must have a space on each side, as in `[STATUS] < 200`"),
        ("[STATUS] = 200", "`=` is not an operator; use `==`"),
        ("[STATUS] ==", "operator `==` has nothing on its right"),
        ("[STATUS] 200", "no operator; expected one of == != < <= > >= between two operands"),
        ("", "empty condition"),
        ("[STATUS] == 200 == 201", "more than one operator (`==` and `==`); a condition compares exactly two operands"),
        ("[STATSU] == 200", "unknown placeholder `[STATSU]`; known: [STATUS], [BODY], [HEADER], [RESPONSE_TIME], [CERTIFICATE_EXPIRATION], [CONNECTED], [DNS_RCODE], [IP]"),
        ("[status] == 200", "unknown placeholder `[status]`; placeholders are upper case: [STATUS]"),
        ("[STATUS].code == 200", "[STATUS] takes no path, but `.code` follows it"),
        ("[HEADER] == x", "[HEADER] needs a header name, as in [HEADER].Content-Type, not `[HEADER]`"),
        ("[BODY]..a == 1", "empty key in JSON path after [BODY]"),
        ("[BODY].a[x] == 1", "JSON path index must be a number, not `[x]`"),
        ("[BODY]a == 1", "unexpected `a` in JSON path; use .key or [index] after [BODY]"),
        ("[RESPONSE_TIME] < fast", "`<` compares numbers, and `fast` is not a number or a duration"),
        ("[CONNECTED] > 1", "`>` compares numbers, and [CONNECTED] is not a number"),
        ("has([BODY].a) >= 1", "`>=` compares numbers, and `has([BODY].a)` is true or false"),
        ("[STATUS] < pat(2*)", "`pat(2*)` can only be used with == or !=, not `<`"),
        ("[STATUS] == OK", "[STATUS] is a number, so comparing it with `OK` never holds"),
        ("[STATUS] == any(200, ok)", "[STATUS] is a number, so comparing it with `any(200, ok)` never holds"),
        ("[CONNECTED] == yes", "[CONNECTED] is true or false, so comparing it with `yes` never holds"),
        ("len([BODY]) == many", "len([BODY]) is a number, so comparing it with `many` never holds"),
        ("len([BODY] == 1", "unbalanced brackets: `(` at column 4 is never closed"),
        ("[BODY == 1", "unbalanced brackets: `[` at column 1 is never closed"),
        ("[STATUS]) == 1", "unbalanced brackets: `)` at column 9 has no matching `(`"),
        ("len([BODY)] == 1", "unbalanced brackets: `[` at column 5 is closed by `)` at column 10"),
        ("[BODY] == regex(a[)", "unbalanced brackets: `[` at column 18 is closed by `)` at column 19"),
        ("[BODY] == regex(a{2)", "bad regex `a{2`: unclosed counted repetition"),
        ("[BODY] == contains(x)", "unknown function `contains()`; known: len(), has(), pat(), any(), regex()"),
        ("len(x) == 1", "len() takes a [BODY] path or a [HEADER].Name, not `x`"),
        ("has([STATUS]) == true", "has() takes a [BODY] path or a [HEADER].Name, not [STATUS]"),
        ("len([BODY]) x == 1", "unexpected ` x` after `len(...)`"),
        ("pat(a*) == pat(b*)", "neither side is a placeholder such as [STATUS] or [BODY], so the result never changes"),
        ("[BODY] == any()", "any() needs at least one value, as in any(200, 204)"),
        ("200 == 200", "neither side is a placeholder such as [STATUS] or [BODY], so the result never changes"),
    ];
    for (text, expected) in table {
        check_parse(text, expected);
    }
}

struct Case {
    condition: &'static str,
    observed: Observed<'static>,
    success: bool,
    resolved: &'static str,
}

fn case(
    condition: &'static str,
    observed: Observed<'static>,
    success: bool,
    resolved: &'static str,
) -> Case {
    Case {
        condition,
        observed,
        success,
        resolved,
    }
}

fn status(s: u16) -> Observed<'static> {
    Observed {
        status: Some(s),
        ..Default::default()
    }
}

fn body(b: &'static str) -> Observed<'static> {
    Observed {
        status: Some(200),
        body: Some(b.as_bytes()),
        ..Default::default()
    }
}

#[test]
fn evaluate_resolves_like_gatus() {
    const JSON: &str = r#"{"status":"DOWN","count":3,"items":[{"id":5},{"id":7}],"ratio":0.5,"hex":"0x1f","big":"1m"}"#;
    let cert = |ms: i64| Observed {
        certificate_expiration_ms: Some(ms),
        ..Default::default()
    };
    let table = vec![
        case(
            "[STATUS] == 200",
            status(200),
            true,
            "[STATUS] (200) == 200",
        ),
        case(
            "[STATUS] == 200",
            status(500),
            false,
            "[STATUS] (500) == 200",
        ),
        case(
            "[STATUS] != 200",
            status(500),
            true,
            "[STATUS] (500) != 200",
        ),
        case("[STATUS] < 300", status(204), true, "[STATUS] (204) < 300"),
        case(
            "[STATUS] >= 0x1F4",
            status(500),
            true,
            "[STATUS] (500) >= 0x1F4",
        ),
        case(
            "[STATUS] == any(200, 429)",
            status(429),
            true,
            "[STATUS] (429) == any(200, 429)",
        ),
        case(
            "[STATUS] == any(200, 429)",
            status(500),
            false,
            "[STATUS] (500) == any(200, 429)",
        ),
        case(
            "200 == [STATUS]",
            status(200),
            true,
            "200 == [STATUS] (200)",
        ),
        case(
            "[STATUS] == 200",
            Observed::default(),
            false,
            "[STATUS] (no response) == 200",
        ),
        // `!=` must not pass on a value that was never observed.
        case(
            "[STATUS] != 200",
            Observed::default(),
            false,
            "[STATUS] (no response) != 200",
        ),
        case(
            "[BODY].status == UP",
            body(JSON),
            false,
            "[BODY].status (DOWN) == UP",
        ),
        case(
            "[BODY].status == DOWN",
            body(JSON),
            true,
            "[BODY].status (DOWN) == DOWN",
        ),
        case(
            "[BODY].items[1].id == 7",
            body(JSON),
            true,
            "[BODY].items[1].id (7) == 7",
        ),
        case(
            "[BODY].items[2].id == 7",
            body(JSON),
            false,
            "[BODY].items[2].id (missing) == 7",
        ),
        case(
            "[BODY].nothing != x",
            body(JSON),
            false,
            "[BODY].nothing (missing) != x",
        ),
        case(
            "[BODY].status == UP",
            body("<html>"),
            false,
            "[BODY].status (body is not JSON) == UP",
        ),
        case(
            "[BODY].status == UP",
            Observed::default(),
            false,
            "[BODY].status (no body) == UP",
        ),
        case(
            "[BODY].count == 3.0",
            body(JSON),
            true,
            "[BODY].count (3) == 3.0",
        ),
        case(
            "[BODY].ratio < 1",
            body(JSON),
            true,
            "[BODY].ratio (0.5) < 1",
        ),
        case(
            "[BODY].hex == 31",
            body(JSON),
            true,
            "[BODY].hex (0x1f) == 31",
        ),
        // Durations are read from what the condition says, not from what the target sends.
        case(
            "[BODY].big == 60000",
            body(JSON),
            false,
            "[BODY].big (1m) == 60000",
        ),
        case(
            "[BODY].status < 5",
            body(JSON),
            false,
            "[BODY].status (DOWN, not a number) < 5",
        ),
        case(
            "[BODY].items == pat(*\"id\":7*)",
            body(JSON),
            true,
            "[BODY].items ([{\"id\":5},{\"id\":7}]) == pat(*\"id\":7*)",
        ),
        case(
            "len([BODY].items) == 2",
            body(JSON),
            true,
            "len([BODY].items) (2) == 2",
        ),
        case(
            "len([BODY].status) > 3",
            body(JSON),
            true,
            "len([BODY].status) (4) > 3",
        ),
        case(
            "len([BODY]) == 3",
            body("[1,2,3]"),
            true,
            "len([BODY]) (3) == 3",
        ),
        case(
            "len([BODY]) == 5",
            body(" hello\n"),
            true,
            "len([BODY]) (5) == 5",
        ),
        case(
            "has([BODY].items) == true",
            body(JSON),
            true,
            "has([BODY].items) (true) == true",
        ),
        case(
            "has([BODY].errors) == false",
            body(JSON),
            true,
            "has([BODY].errors) (false) == false",
        ),
        case(
            "has([BODY].errors) == false",
            body("oops"),
            true,
            "has([BODY].errors) (false) == false",
        ),
        case(
            "[BODY] == pat(*request_subject*)",
            body("<form><input name=\"request_subject\"></form>"),
            true,
            "[BODY] (<form><input name=\"reques...(truncated)) == pat(*request_subject*)",
        ),
        case(
            "[BODY] == pat(*request_subject*)",
            body("<h1>Maintenance</h1>\n"),
            false,
            "[BODY] (<h1>Maintenance</h1>) == pat(*request_subject*)",
        ),
        case(
            "[BODY] == pat(ok)",
            body("ok\n"),
            true,
            "[BODY] (ok) == pat(ok)",
        ),
        case(
            "[BODY] == pat(o*k*)",
            body("ok"),
            true,
            "[BODY] (ok) == pat(o*k*)",
        ),
        case(
            "[BODY] != pat(*error*)",
            body("fine"),
            true,
            "[BODY] (fine) != pat(*error*)",
        ),
        case(
            "[BODY].status == regex(^(UP|DOWN)$)",
            body(JSON),
            true,
            "[BODY].status (DOWN) == regex(^(UP|DOWN)$)",
        ),
        case(
            "[BODY] == regex(\\d{3})",
            body("abc"),
            false,
            "[BODY] (abc) == regex(\\d{3})",
        ),
        case(
            "[RESPONSE_TIME] < 3000",
            Observed {
                response_time_ms: Some(120),
                ..Default::default()
            },
            true,
            "[RESPONSE_TIME] (120) < 3000",
        ),
        case(
            "[RESPONSE_TIME] < 1s",
            Observed {
                response_time_ms: Some(1500),
                ..Default::default()
            },
            false,
            "[RESPONSE_TIME] (1500) < 1s (1000)",
        ),
        case(
            "[RESPONSE_TIME] < 3000",
            Observed::default(),
            false,
            "[RESPONSE_TIME] (not measured) < 3000",
        ),
        case(
            "[CERTIFICATE_EXPIRATION] > 48h",
            cert(200_000_000),
            true,
            "[CERTIFICATE_EXPIRATION] (200000000) > 48h (172800000)",
        ),
        case(
            "[CERTIFICATE_EXPIRATION] > 48h",
            cert(-5),
            false,
            "[CERTIFICATE_EXPIRATION] (-5) > 48h (172800000)",
        ),
        case(
            "[CERTIFICATE_EXPIRATION] > 168h",
            Observed::default(),
            false,
            "[CERTIFICATE_EXPIRATION] (no certificate) > 168h (604800000)",
        ),
        case(
            "[CONNECTED] == true",
            Observed {
                connected: Some(false),
                ..Default::default()
            },
            false,
            "[CONNECTED] (false) == true",
        ),
        case(
            "[DNS_RCODE] == NOERROR",
            Observed {
                dns_rcode: Some("NXDOMAIN"),
                ..Default::default()
            },
            false,
            "[DNS_RCODE] (NXDOMAIN) == NOERROR",
        ),
        case(
            "[IP] == pat(127.0.0.*)",
            Observed {
                ip: Some("127.0.0.1"),
                ..Default::default()
            },
            true,
            "[IP] (127.0.0.1) == pat(127.0.0.*)",
        ),
    ];
    for c in table {
        let condition = Condition::parse(c.condition).expect(c.condition);
        let got = condition.evaluate(&c.observed);
        assert_eq!(
            (got.success, got.resolved.as_str()),
            (c.success, c.resolved),
            "condition {:?}",
            c.condition
        );
        assert_eq!(got.condition, c.condition);
    }
}

#[test]
fn header_placeholder_reads_final_response_headers() {
    let mut headers = hyper::HeaderMap::new();
    headers.insert(
        "content-type",
        "text/html; charset=utf-8".parse().expect("valid"),
    );
    let observed = Observed {
        headers: Some(&headers),
        ..Default::default()
    };
    let table = [
        (
            "[HEADER].Content-Type == pat(text/html*)",
            true,
            "[HEADER].Content-Type (text/html; charset=utf-8) == pat(text/html*)",
        ),
        (
            "has([HEADER].X-Request-Id) == false",
            true,
            "has([HEADER].X-Request-Id) (false) == false",
        ),
        (
            "[HEADER].Location == /",
            false,
            "[HEADER].Location (missing) == /",
        ),
    ];
    for (text, success, resolved) in table {
        let got = Condition::parse(text).expect(text).evaluate(&observed);
        assert_eq!(
            (got.success, got.resolved.as_str()),
            (success, resolved),
            "{text}"
        );
    }
    let got = Condition::parse("[HEADER].Location == /")
        .expect("valid")
        .evaluate(&Observed::default());
    assert_eq!(got.resolved, "[HEADER].Location (no response) == /");
}

#[test]
fn evaluate_all_matches_evaluate_one_by_one() {
    let conditions: Vec<Condition> = ["[STATUS] == 200", "[BODY].a == 1", "[BODY].b == 2"]
        .iter()
        .map(|t| Condition::parse(t).expect(t))
        .collect();
    let observed = body(r#"{"a":1,"b":3}"#);
    let all = Condition::evaluate_all(&conditions, &observed);
    let one_by_one: Vec<_> = conditions.iter().map(|c| c.evaluate(&observed)).collect();
    assert_eq!(all, one_by_one);
    assert_eq!(
        all.iter().map(|r| r.success).collect::<Vec<_>>(),
        [true, true, false]
    );
}

#[test]
fn uses_body_only_when_a_body_placeholder_appears() {
    let uses = |t: &str| Condition::parse(t).expect(t).uses_body();
    assert!(uses("[BODY] == pat(*x*)"));
    assert!(uses("len([BODY].items) > 0"));
    assert!(!uses("[STATUS] == 200"));
}

#[test]
fn wildcards() {
    let table = [
        ("*", "", true),
        ("a*c", "abc", true),
        ("a*c", "ab", false),
        ("*b*", "abc", true),
        ("a*a", "a", false),
        ("abc", "abc", true),
        ("ab", "abc", false),
    ];
    for (pattern, value, expected) in table {
        assert_eq!(
            wildcard_match(pattern, value),
            expected,
            "{pattern} vs {value}"
        );
    }
}
