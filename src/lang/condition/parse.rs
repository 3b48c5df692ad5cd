//! Parsing a condition: brackets, the operator, operands, placeholders and JSON paths, and the checks of meaning done at load time.

use super::*;

/// Rejects unbalanced `(`/`[` up front, so later steps can find operators and arguments by depth.
pub(super) fn check_brackets(text: &str) -> Result<(), ConditionError> {
    let mut open: Vec<(char, usize)> = Vec::new();
    for (column, c) in text.chars().enumerate().map(|(i, c)| (i + 1, c)) {
        match c {
            '(' | '[' => open.push((c, column)),
            ')' | ']' => {
                let wanted = if c == ')' { '(' } else { '[' };
                match open.pop() {
                    Some((o, _)) if o == wanted => {}
                    Some((o, at)) => {
                        return err(format!(
                            "unbalanced brackets: `{o}` at column {at} is closed by `{c}` at column {column}"
                        ))
                    }
                    None => {
                        return err(format!(
                            "unbalanced brackets: `{c}` at column {column} has no matching `{wanted}`"
                        ))
                    }
                }
            }
            _ => {}
        }
    }
    match open.first() {
        Some((o, at)) => err(format!(
            "unbalanced brackets: `{o}` at column {at} is never closed"
        )),
        None => Ok(()),
    }
}

/// Finds the one operator outside brackets that has a space on each side.
pub(super) fn find_operator(text: &str) -> Result<(usize, Op), ConditionError> {
    const OPS: [(&str, Option<Op>); 7] = [
        ("==", Some(Op::Eq)),
        ("!=", Some(Op::Ne)),
        ("<=", Some(Op::Le)),
        (">=", Some(Op::Ge)),
        ("<", Some(Op::Lt)),
        (">", Some(Op::Gt)),
        // A lone `=` is never an operator, but it is the likeliest typo, so it is found and named.
        ("=", None),
    ];
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut spaced: Vec<(usize, Op)> = Vec::new();
    let mut unspaced: Vec<(usize, &str)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => {
                if let Some((s, op)) = OPS
                    .iter()
                    .find(|(s, _)| bytes[i..].starts_with(s.as_bytes()))
                {
                    let end = i + s.len();
                    let before = i > 0 && bytes[i - 1] == b' ';
                    let after = end < bytes.len() && bytes[end] == b' ';
                    match op {
                        Some(op) if before && after => spaced.push((i, *op)),
                        _ => unspaced.push((i, s)),
                    }
                    i = end;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    match spaced.as_slice() {
        [one] => Ok(*one),
        [] => match unspaced.first() {
            Some((_, "=")) => err("`=` is not an operator; use `==`"),
            Some((at, s)) if *at == 0 => err(format!("operator `{s}` has nothing on its left")),
            Some((at, s)) if at + s.len() == text.len() => {
                err(format!("operator `{s}` has nothing on its right"))
            }
            Some((_, s)) => err(format!(
                "operator `{s}` must have a space on each side, as in `[STATUS] {s} 200`"
            )),
            None => err("no operator; expected one of == != < <= > >= between two operands"),
        },
        [(_, a), (_, b), ..] => err(format!(
            "more than one operator (`{}` and `{}`); a condition compares exactly two operands",
            a.as_str(),
            b.as_str()
        )),
    }
}

pub(super) const PLACEHOLDERS: &str = "[STATUS], [BODY], [HEADER], [RESPONSE_TIME], [CERTIFICATE_EXPIRATION], [CONNECTED], [DNS_RCODE], [IP]";

pub(super) fn parse_operand(text: &str) -> Result<Operand, ConditionError> {
    let kind = if text.is_empty() {
        return err("empty operand");
    } else if text.starts_with('[') {
        OperandKind::Placeholder(parse_placeholder(text)?)
    } else if let Some((name, args)) = split_call(text)? {
        parse_function(name, args)?
    } else {
        OperandKind::Literal
    };
    Ok(Operand {
        text: text.to_string(),
        kind,
    })
}

/// `name(args)` → `Some((name, args))`; anything not shaped like a call → `None`.
pub(super) fn split_call(text: &str) -> Result<Option<(&str, &str)>, ConditionError> {
    let name_len = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit())))
        .map_or(text.len(), |(i, _)| i);
    if name_len == 0 || !text[name_len..].starts_with('(') {
        return Ok(None);
    }
    let name = &text[..name_len];
    let close = matching_close(text, name_len);
    if close + 1 != text.len() {
        return err(format!(
            "unexpected `{}` after `{name}(...)`",
            &text[close + 1..]
        ));
    }
    Ok(Some((name, &text[name_len + 1..close])))
}

/// Index of the bracket closing the one at `open`; brackets are known to balance.
pub(super) fn matching_close(text: &str, open: usize) -> usize {
    let mut depth = 0usize;
    for (i, b) in text.bytes().enumerate().skip(open) {
        match b {
            b'(' | b'[' => depth += 1,
            b')' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    text.len() - 1
}

pub(super) fn parse_function(name: &str, args: &str) -> Result<OperandKind, ConditionError> {
    match name {
        "len" | "has" => {
            let arg = args.trim();
            let placeholder = if arg.starts_with('[') {
                parse_placeholder(arg)?
            } else {
                return err(format!(
                    "{name}() takes a [BODY] path or a [HEADER].Name, not `{arg}`"
                ));
            };
            if !matches!(placeholder.source, Source::Body(_) | Source::Header(_)) {
                return err(format!(
                    "{name}() takes a [BODY] path or a [HEADER].Name, not {}",
                    placeholder.text
                ));
            }
            Ok(if name == "len" {
                OperandKind::Len(placeholder)
            } else {
                OperandKind::Has(placeholder)
            })
        }
        "pat" => Ok(OperandKind::Matcher(Matcher::Pat(args.to_string()))),
        "any" => {
            let options: Vec<String> = args.split(',').map(|o| o.trim().to_string()).collect();
            if options.iter().all(|o| o.is_empty()) {
                return err("any() needs at least one value, as in any(200, 204)");
            }
            Ok(OperandKind::Matcher(Matcher::Any(options)))
        }
        "regex" => match Regex::new(args) {
            Ok(re) => Ok(OperandKind::Matcher(Matcher::Regex(re))),
            Err(e) => err(format!("bad regex `{args}`: {}", regex_reason(&e))),
        },
        _ => err(format!(
            "unknown function `{name}()`; known: len(), has(), pat(), any(), regex()"
        )),
    }
}

/// The regex crate explains syntax errors over several lines with a caret; a diagnostic is
/// one line, so keep only the closing `error: ...` sentence.
pub(super) fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(|| text.replace('\n', " "), str::to_string)
}

pub(super) fn parse_placeholder(text: &str) -> Result<Placeholder, ConditionError> {
    // Brackets balance, so the first `]` closes the placeholder name.
    let close = text.find(']').unwrap_or(text.len() - 1);
    let name = &text[1..close];
    let rest = &text[close + 1..];
    let simple = |source: Source| {
        if rest.is_empty() {
            Ok(source)
        } else {
            err(format!("[{name}] takes no path, but `{rest}` follows it"))
        }
    };
    let source = match name {
        "STATUS" => simple(Source::Status)?,
        "RESPONSE_TIME" => simple(Source::ResponseTime)?,
        "CERTIFICATE_EXPIRATION" => simple(Source::CertificateExpiration)?,
        "CONNECTED" => simple(Source::Connected)?,
        "DNS_RCODE" => simple(Source::DnsRcode)?,
        "IP" => simple(Source::Ip)?,
        "BODY" => Source::Body(parse_json_path(rest)?),
        "HEADER" => {
            let header = rest.strip_prefix('.').unwrap_or("");
            if hyper::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return err(format!(
                    "[HEADER] needs a header name, as in [HEADER].Content-Type, not `[HEADER]{rest}`"
                ));
            }
            Source::Header(header.to_string())
        }
        _ => {
            let upper = format!("[{}]", name.to_ascii_uppercase());
            return if PLACEHOLDERS.split(", ").any(|p| p == upper) {
                err(format!(
                    "unknown placeholder `[{name}]`; placeholders are upper case: {upper}"
                ))
            } else {
                err(format!(
                    "unknown placeholder `[{name}]`; known: {PLACEHOLDERS}"
                ))
            };
        }
    };
    Ok(Placeholder {
        text: text.to_string(),
        source,
    })
}

/// A JSON path as written after `[BODY]` (`.form.id`, `.items[0]`), for other parts of the
/// probe that read JSON the way conditions do (multi-step extraction).
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPath(Vec<PathStep>);

impl JsonPath {
    /// Parses the part after `[BODY]`; empty means the whole document.
    pub fn parse(path: &str) -> Result<JsonPath, ConditionError> {
        parse_json_path(path).map(JsonPath)
    }

    /// The value at this path, if every key and index exists.
    pub fn get<'v>(&self, value: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        self.0.iter().try_fold(value, |v, step| match step {
            PathStep::Key(k) => v.get(k.as_str()),
            PathStep::Index(i) => v.get(*i),
        })
    }
}

/// `.data.items[0].id` → steps. Keys run to the next `.` or `[`.
pub(super) fn parse_json_path(mut rest: &str) -> Result<Vec<PathStep>, ConditionError> {
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end == 0 {
                return err("empty key in JSON path after [BODY]");
            }
            steps.push(PathStep::Key(after[..end].to_string()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').unwrap_or(after.len());
            let index = &after[..end];
            match index.parse::<usize>() {
                Ok(i) => steps.push(PathStep::Index(i)),
                Err(_) => return err(format!("JSON path index must be a number, not `[{index}]`")),
            }
            rest = after.get(end + 1..).unwrap_or("");
        } else {
            return err(format!(
                "unexpected `{rest}` in JSON path; use .key or [index] after [BODY]"
            ));
        }
    }
    Ok(steps)
}

/// The checks that need both operands and the operator: what the text alone shows to be nonsense.
pub(super) fn check_meaning(left: &Operand, op: Op, right: &Operand) -> Result<(), ConditionError> {
    if !left.is_observed() && !right.is_observed() {
        return err(
            "neither side is a placeholder such as [STATUS] or [BODY], so the result never changes",
        );
    }
    if left.is_matcher() && right.is_matcher() {
        return err("both sides are patterns; compare a placeholder with a pattern");
    }
    let op_str = op.as_str();
    // Operator misuse first: it is the more basic mistake and the more useful message.
    if op.is_ordering() {
        for this in [left, right] {
            match &this.kind {
                OperandKind::Matcher(_) => {
                    return err(format!(
                        "`{}` can only be used with == or !=, not `{op_str}`",
                        this.text
                    ))
                }
                OperandKind::Literal if literal_number(&this.text).is_none() => {
                    return err(format!(
                        "`{op_str}` compares numbers, and `{}` is not a number or a duration",
                        this.text
                    ))
                }
                OperandKind::Placeholder(p)
                    if matches!(p.source, Source::Connected | Source::DnsRcode | Source::Ip) =>
                {
                    return err(format!(
                        "`{op_str}` compares numbers, and {} is not a number",
                        p.text
                    ))
                }
                OperandKind::Has(_) => {
                    return err(format!(
                        "`{op_str}` compares numbers, and `{}` is true or false",
                        this.text
                    ))
                }
                _ => {}
            }
        }
    }
    for (this, other) in [(left, right), (right, left)] {
        match &this.kind {
            OperandKind::Placeholder(p) if p.source == Source::Connected => {
                check_boolean(&this.text, other)?
            }
            OperandKind::Has(_) => check_boolean(&this.text, other)?,
            OperandKind::Placeholder(p) if p.source.is_numeric() => check_number(&p.text, other)?,
            OperandKind::Len(_) => check_number(&this.text, other)?,
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn check_boolean(this: &str, other: &Operand) -> Result<(), ConditionError> {
    let bad = match &other.kind {
        OperandKind::Literal => !matches!(other.text.as_str(), "true" | "false"),
        OperandKind::Matcher(Matcher::Any(options)) => options
            .iter()
            .any(|o| !matches!(o.as_str(), "true" | "false")),
        _ => false,
    };
    if bad {
        return err(format!(
            "{this} is true or false, so comparing it with `{}` never holds",
            other.text
        ));
    }
    Ok(())
}

pub(super) fn check_number(this: &str, other: &Operand) -> Result<(), ConditionError> {
    let bad = match &other.kind {
        OperandKind::Literal => literal_number(&other.text).is_none(),
        OperandKind::Matcher(Matcher::Any(options)) => {
            options.iter().any(|o| literal_number(o).is_none())
        }
        _ => false,
    };
    if bad {
        return err(format!(
            "{this} is a number, so comparing it with `{}` never holds",
            other.text
        ));
    }
    Ok(())
}
