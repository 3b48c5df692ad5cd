//! Request bodies and parameters: their limits, and the checks that turn what a client sent
//! into values the core takes (texts, durations, instants, limits), each error naming its field.

use crate::api::error::ApiError;
use crate::clock::Timestamp;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::header;
use std::time::Duration;

/// Request bodies larger than this are refused with 413: every control body is a few short
/// fields, and a small limit keeps a misbehaving client from making the daemon buffer much.
/// Large enough for the longest valid body (two texts of `TEXT_LIMIT` characters and a
/// `public_message` of `PUBLIC_LIMIT`, each character up to 12 bytes when JSON-escaped), so a
/// valid request is never refused for its size.
pub const BODY_LIMIT: usize = 64 * 1024;
/// Longest `reason`, `note` or `ticket` accepted.
pub const TEXT_LIMIT: usize = 2000;
/// Longest `public_message` accepted: a few sentences for a status page, not a report.
pub const PUBLIC_LIMIT: usize = 1000;
/// The longest drill (a drill can never be left running forever).
pub const MAX_DRILL: Duration = Duration::from_secs(24 * 3600);
/// The longest pin or maintenance an operator may set through the API.
pub const MAX_HOLD: Duration = Duration::from_secs(366 * 24 * 3600);

/// A `reason` or `note`: required, not blank, bounded.
pub(super) fn text(field: &str, value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "{field}: must not be empty"
        )));
    }
    // The limit counts what was sent (as JSON Schema's maxLength does), before trimming.
    if value.chars().count() > TEXT_LIMIT {
        return Err(ApiError::Unprocessable(format!(
            "{field}: longer than {TEXT_LIMIT} characters"
        )));
    }
    Ok(v.to_string())
}

/// An optional `public_message`: what customers may read (status page, feeds, Statuspage,
/// customer e-mail). When given it must say something, within `PUBLIC_LIMIT` characters.
pub(super) fn public_text(value: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(value) = value else {
        return Ok(None);
    };
    if value.trim().is_empty() {
        return Err(ApiError::Unprocessable(
            "public_message: must not be empty (leave it out to use the templates' words)".into(),
        ));
    }
    if value.chars().count() > PUBLIC_LIMIT {
        return Err(ApiError::Unprocessable(format!(
            "public_message: longer than {PUBLIC_LIMIT} characters"
        )));
    }
    Ok(Some(value.trim().to_string()))
}

pub(super) fn duration(field: &str, value: &str, max: Duration) -> Result<Duration, ApiError> {
    let d = humantime::parse_duration(value.trim()).map_err(|e| {
        ApiError::Unprocessable(format!(
            "{field}: invalid duration {value:?} ({e}); write e.g. \"30s\", \"10m\", \"2h\""
        ))
    })?;
    if d < Duration::from_secs(1) {
        return Err(ApiError::Unprocessable(format!(
            "{field}: must be at least 1s"
        )));
    }
    if d > max {
        return Err(ApiError::Unprocessable(format!(
            "{field}: must be at most {}",
            humantime::format_duration(max)
        )));
    }
    Ok(d)
}

/// An instant given as RFC 3339 (`2026-11-29T10:00:00Z`) or as a duration from now (`30m`);
/// it must lie in the future, within `MAX_HOLD`.
pub(super) fn instant(field: &str, value: &str, now: Timestamp) -> Result<Timestamp, ApiError> {
    let v = value.trim();
    let at = match humantime::parse_rfc3339_weak(v) {
        Ok(t) => {
            let ms = t
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            Timestamp(ms)
        }
        Err(_) => match humantime::parse_duration(v) {
            Ok(d) if d <= MAX_HOLD => now.plus(d),
            _ => {
                return Err(ApiError::Unprocessable(format!(
                    "{field}: {value:?} is neither an RFC 3339 time nor a duration such as \"30m\""
                )))
            }
        },
    };
    if at <= now {
        return Err(ApiError::Unprocessable(format!(
            "{field}: {value:?} is not in the future"
        )));
    }
    if at > now.plus(MAX_HOLD) {
        return Err(ApiError::Unprocessable(format!(
            "{field}: more than {} ahead",
            humantime::format_duration(MAX_HOLD)
        )));
    }
    Ok(at)
}

/// A `limit` query parameter: `default` when absent, else 1 to `max` (400 outside).
pub(super) fn limit(given: Option<u32>, default: u32, max: u32) -> Result<usize, ApiError> {
    match given {
        None => Ok(default as usize),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::BadRequest(format!(
            "limit: {n} is outside 1 to {max}"
        ))),
    }
}

pub(super) fn service_id(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    Ok(p?.0)
}

/// Parses an optional JSON body the way `Json` does (415, 400, 422 naming the field).
pub(super) fn optional_json<T: serde::de::DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    bytes: &Bytes,
) -> Result<Option<T>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.split(';').next().unwrap_or("").trim();
            ct.eq_ignore_ascii_case("application/json")
                || (ct.starts_with("application/") && ct.ends_with("+json"))
        });
    if !json {
        return Err(ApiError::UnsupportedMediaType(
            "Expected request with `Content-Type: application/json`".into(),
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = if path == "." {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            };
            match inner.classify() {
                serde_json::error::Category::Data => Err(ApiError::Unprocessable(msg)),
                _ => Err(ApiError::BadRequest(msg)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_rfc3339_or_durations_in_the_future() {
        let now = Timestamp(1_800_000_000_000);
        assert_eq!(
            instant("until", "30m", now).unwrap(),
            now.plus(Duration::from_secs(1800))
        );
        assert_eq!(
            instant("until", "2027-01-15T10:00:00Z", now)
                .unwrap()
                .rfc3339(),
            "2027-01-15T10:00:00.000Z"
        );
        let past = instant("until", "2020-01-01T00:00:00Z", now).unwrap_err();
        assert!(past.to_string().starts_with("until:"), "{past}");
        assert!(instant("until", "soon", now).is_err());
    }

    #[test]
    fn texts_must_not_be_blank() {
        assert!(text("reason", "  ")
            .unwrap_err()
            .to_string()
            .contains("reason"));
        assert_eq!(text("reason", " ok ").unwrap(), "ok");
    }
}
