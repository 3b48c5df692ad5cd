//! Reading a response: its head into the progress, a redirect's `Location`, the body up to the cap.

use super::redirects::Next;
use super::{HttpError, Phase, Progress};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::{Response, StatusCode, Version};

/// Records the response head in `progress`; answers a redirect's `Location` without reading
/// its body, or reads the body up to `max_body` bytes (the rest is never read).
pub(super) async fn read_response(
    response: Response<Incoming>,
    max_body: usize,
    follow_redirects: bool,
    progress: &mut Progress,
) -> Result<Next, HttpError> {
    progress.begin(Phase::Transfer);
    // Taken apart rather than cloned: the headers move into the progress for conditions,
    // cookies and extraction, with no copy per probe.
    let (parts, body) = response.into_parts();
    let status = parts.status;
    progress.status = Some(status.as_u16());
    progress.http_version = Some(match parts.version {
        Version::HTTP_09 => 0.9,
        Version::HTTP_10 => 1.0,
        Version::HTTP_2 => 2.0,
        Version::HTTP_3 => 3.0,
        _ => 1.1,
    });
    progress.body.clear();
    progress.body_truncated = false;
    progress.headers = Some(parts.headers);
    if follow_redirects && is_redirect(status) {
        if let Some(location) = progress
            .headers
            .as_ref()
            .and_then(|h| h.get(hyper::header::LOCATION))
        {
            let location = location
                .to_str()
                .map_err(|_| {
                    HttpError::BadRedirect(
                        String::from_utf8_lossy(location.as_bytes()).into_owned(),
                    )
                })?
                .to_string();
            // A redirect's body is not read: its connection is dropped with it.
            progress.end();
            return Ok(Next::Redirect(location));
        }
    }
    let mut body = body;
    // Reserve for what the server announces, but never more than the cap: a lying or huge
    // Content-Length must not make us allocate.
    let hint = body.size_hint().exact().unwrap_or(0);
    progress
        .body
        .reserve(usize::try_from(hint).unwrap_or(usize::MAX).min(max_body));
    while !body.is_end_stream() {
        let Some(frame) = body.frame().await else {
            break;
        };
        let Ok(data) = frame?.into_data() else {
            continue; // trailers carry nothing conditions look at
        };
        let room = max_body - progress.body.len();
        if data.len() > room {
            progress.body.extend_from_slice(&data[..room]);
            progress.body_truncated = true;
            break;
        }
        progress.body.extend_from_slice(&data);
        if progress.body.len() == max_body && !body.is_end_stream() {
            // Exactly at the cap with more announced: stop without waiting for another frame.
            progress.body_truncated = true;
            break;
        }
    }
    progress.end();
    Ok(Next::Done)
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}
