//! Building a hop's request (origin-form or absolute target, Host, User-Agent, configured
//! headers) and the cookie jar's part in it.

use super::redirects::Hop;
use super::{HttpError, USER_AGENT_VALUE};
use cookie_store::CookieStore;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue, CONNECTION, COOKIE, HOST, SET_COOKIE, USER_AGENT};
use hyper::{Request, Uri, Version};
use url::{Position, Url};

/// The `Cookie` header for `hop` from `jar`, merged with a configured `Cookie` header (one
/// header, as RFC 6265 asks), or `None` when there is nothing to add.
pub(super) fn cookie_header(jar: &CookieStore, hop: &Hop) -> Option<HeaderValue> {
    let mut pairs: Vec<String> = hop
        .headers
        .iter()
        .filter(|(name, _)| *name == COOKIE)
        .filter_map(|(_, v)| v.to_str().ok().map(str::to_string))
        .collect();
    let from_jar = pairs.len();
    pairs.extend(
        jar.get_request_values(&hop.url)
            .map(|(name, value)| format!("{name}={value}")),
    );
    if pairs.len() == from_jar {
        return None;
    }
    HeaderValue::from_str(&pairs.join("; ")).ok()
}

/// Stores every `Set-Cookie` of a response to `url` in `jar`; malformed ones are ignored, as
/// browsers ignore them.
pub(super) fn keep_cookies(jar: &mut CookieStore, headers: &hyper::HeaderMap, url: &Url) {
    for value in headers.get_all(SET_COOKIE) {
        if let Ok(text) = value.to_str() {
            let _ = jar.parse(text, url);
        }
    }
}

/// The request for one hop over HTTP/1.1 (`h2` false) or HTTP/2, with the probe's default
/// headers, the configured ones, and `cookie` from the jar.
pub(super) fn build_request(
    hop: &Hop,
    cookie: Option<HeaderValue>,
    h2: bool,
) -> Result<Request<Full<Bytes>>, HttpError> {
    let url = &hop.url;
    // HTTP/1 sends origin-form (`/path?query`) with a Host header; HTTP/2 needs the absolute
    // URI because hyper derives `:scheme` and `:authority` from it. Fragments are never sent.
    let target = if h2 {
        &url[..Position::AfterQuery]
    } else {
        &url[Position::BeforePath..Position::AfterQuery]
    };
    let uri: Uri = target
        .parse()
        .map_err(|_| HttpError::Request(format!("invalid request target {target:?}")))?;
    let body = hop.body.clone().unwrap_or_default();
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = hop.method.clone();
    *request.uri_mut() = uri;
    *request.version_mut() = if h2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    let headers = request.headers_mut();
    if !h2 {
        let authority = &url[Position::BeforeHost..Position::BeforePath];
        let host = HeaderValue::from_str(authority)
            .map_err(|_| HttpError::Request(format!("invalid host {authority:?}")))?;
        headers.insert(HOST, host);
        // Each probe uses its connection once; saying so lets the server free it at once.
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    let mut overridden: Vec<&HeaderName> = Vec::new();
    for (name, value) in &hop.headers {
        if h2 && *name == HOST {
            // HTTP/2 carries the authority in the URI; a Host header there is malformed.
            continue;
        }
        // The first configured value of a name replaces the default; later ones add to it.
        if overridden.contains(&name) {
            headers.append(name.clone(), value.clone());
        } else {
            headers.insert(name.clone(), value.clone());
            overridden.push(name);
        }
    }
    if let Some(cookie) = cookie {
        // Already merged with any configured Cookie header, which it replaces.
        headers.insert(COOKIE, cookie);
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Method;

    fn hop(url: &str, headers: &[(&str, &str)]) -> Hop {
        Hop {
            url: Url::parse(url).unwrap(),
            method: Method::GET,
            body: None,
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        HeaderName::from_bytes(n.as_bytes()).unwrap(),
                        HeaderValue::from_str(v).unwrap(),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn http1_request_uses_origin_form_and_host_with_port() {
        let r =
            build_request(&hop("http://127.0.0.1:8080/a/b?c=d#frag", &[]), None, false).unwrap();
        assert_eq!(r.uri().to_string(), "/a/b?c=d");
        assert_eq!(r.headers()[HOST], "127.0.0.1:8080");
        assert_eq!(r.headers()[USER_AGENT], USER_AGENT_VALUE);
    }

    #[test]
    fn h2_request_uses_absolute_uri_without_host_header() {
        let r = build_request(
            &hop("https://example.com/x?y#z", &[("Host", "other")]),
            None,
            true,
        )
        .unwrap();
        assert_eq!(r.uri().to_string(), "https://example.com/x?y");
        assert!(r.headers().get(HOST).is_none());
    }

    #[test]
    fn configured_headers_replace_defaults_and_repeat() {
        let r = build_request(
            &hop(
                "http://example.com/",
                &[("User-Agent", "custom"), ("X-A", "1"), ("X-A", "2")],
            ),
            None,
            false,
        )
        .unwrap();
        assert_eq!(r.headers()[USER_AGENT], "custom");
        let values: Vec<_> = r.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
    }
}
