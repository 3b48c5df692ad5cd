//! Following a check's URL through its redirects: what each hop sends, and what changes
//! between hops (method, body, credentials, cookies).

use super::connection::exchange_once;
use super::request::{cookie_header, keep_cookies};
use super::{HttpError, Progress};
use crate::config::HttpCheck;
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper::Method;
use url::Url;

/// One request to send: it changes across redirects (303 turns a POST into a GET).
pub(super) struct Hop {
    pub(super) url: Url,
    pub(super) method: Method,
    pub(super) body: Option<Bytes>,
    /// Configured headers still sent on this hop (credentials are dropped on cross-origin redirects).
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
}

/// What a hop ended with.
pub(super) enum Next {
    Done,
    Redirect(String),
}

/// Follows the check's URL through its redirects, recording into `progress`.
pub(super) async fn run(http: &HttpCheck, progress: &mut Progress) -> Result<(), HttpError> {
    let method = Method::from_bytes(http.method.as_bytes())
        .map_err(|_| HttpError::Request(format!("invalid method {:?}", http.method)))?;
    let headers = http
        .headers
        .iter()
        .map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| HttpError::Request(format!("invalid header name {name:?}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| HttpError::Request(format!("invalid value for header {name}")))?;
            Ok((name, value))
        })
        .collect::<Result<Vec<_>, HttpError>>()?;
    let mut hop = Hop {
        url: http.url.clone(),
        method,
        body: http.body.clone().map(Bytes::from),
        headers,
    };
    loop {
        let follow = http.max_redirects > 0;
        let cookie = progress
            .jar
            .as_ref()
            .and_then(|jar| cookie_header(jar, &hop));
        let next = exchange_once(&hop, cookie, http, follow, progress).await?;
        if let (Some(jar), Some(headers)) = (progress.jar.as_mut(), progress.headers.as_ref()) {
            // Cookies set on a redirect count, as in a browser: a login answered with a 302 and
            // a session cookie is the usual shape of a form flow.
            keep_cookies(jar, headers, &hop.url);
        }
        match next {
            Next::Done => return Ok(()),
            Next::Redirect(location) => {
                if progress.redirects >= http.max_redirects {
                    return Err(HttpError::TooManyRedirects(progress.redirects));
                }
                let next = hop
                    .url
                    .join(&location)
                    .map_err(|_| HttpError::BadRedirect(location.clone()))?;
                if !matches!(next.scheme(), "http" | "https") {
                    return Err(HttpError::BadRedirect(location));
                }
                progress.redirects += 1;
                // Browsers and Go's client turn 301/302/303 into a body-less GET; 307/308 repeat
                // the request as it was.
                let status = progress.status.unwrap_or_default();
                if matches!(status, 301..=303) && hop.method != Method::HEAD {
                    hop.method = Method::GET;
                    hop.body = None;
                }
                if next.origin() != hop.url.origin() {
                    // Credentials and a Host override belong to the origin they were written for.
                    hop.headers.retain(|(name, _)| {
                        !matches!(name.as_str(), "authorization" | "cookie" | "host")
                    });
                }
                hop.url = next;
            }
        }
    }
}
