//! The public documents rendered once per change and served from memory: a strong `ETag`, `If-None-Match` answered with 304, gzip compressed once per render, and a short `Cache-Control`.
//!
//! Rendering the status page on every request made public traffic a CPU load that grew with
//! the number of visitors: under a few hundred requests a second the probes started late and
//! the daemon saw outages that were its own. Now each document is rendered when what it shows
//! changes (the public part of the snapshot, the incidents, the probe history or the planned
//! windows) or when its own words about time go stale (the page's "5 minutes ago", a
//! maintenance window starting), and every request in between is answered with the same bytes.
//! A burst of requests after a change costs one render: the first request renders while the
//! others wait for it on the document's lock.

use super::ApiState;
use crate::clock::Timestamp;
use crate::history::HistoryView;
use crate::store::IncidentRecord;
use crate::view::{Extras, Snapshot};
use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::sync::{Arc, Mutex};

/// Browsers and proxies may reuse a document this long: short enough that a failover shows
/// within seconds, long enough that a crowd refreshing the page costs one answer each.
pub const MAX_AGE: HeaderValue = HeaderValue::from_static("public, max-age=5");

/// One rendered document, in both encodings.
pub struct Rendered {
    body: Bytes,
    /// The gzip encoding, when it is smaller than the body.
    gzip: Option<Bytes>,
    etag: HeaderValue,
    gzip_etag: HeaderValue,
    content_type: &'static str,
    /// Extra headers the document always carries (CORS for the JSON widgets read).
    cors: bool,
}

impl Rendered {
    /// Hashes and compresses `body` once.
    pub fn new(body: Vec<u8>, content_type: &'static str, cors: bool) -> Rendered {
        let digest = Sha256::digest(&body);
        let tag = hex::encode(&digest[..12]);
        let gzip = gzip(&body)
            .filter(|z| z.len() < body.len())
            .map(Bytes::from);
        // A strong validator names one representation, so the gzip encoding has its own.
        let etag = HeaderValue::from_str(&format!("\"{tag}\""))
            .unwrap_or(HeaderValue::from_static("\"0\""));
        let gzip_etag = HeaderValue::from_str(&format!("\"{tag}-gzip\""))
            .unwrap_or(HeaderValue::from_static("\"0-gzip\""));
        Rendered {
            body: Bytes::from(body),
            gzip,
            etag,
            gzip_etag,
            content_type,
            cors,
        }
    }

    /// The uncompressed body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The answer to a request with `headers`: 304 when its `If-None-Match` names this
    /// version, else the body, gzip-encoded when the client accepts it.
    pub fn respond(&self, headers: &HeaderMap) -> Response {
        let gzip = match &self.gzip {
            Some(z) if accepts_gzip(headers) => Some(z.clone()),
            _ => None,
        };
        let etag = if gzip.is_some() {
            &self.gzip_etag
        } else {
            &self.etag
        };
        let not_modified = headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag || t == self.etag || t == self.gzip_etag);
        let mut response = if not_modified {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            match gzip {
                Some(z) => {
                    let mut r = z.into_response();
                    r.headers_mut()
                        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                    r
                }
                None => self.body.clone().into_response(),
            }
        };
        let h = response.headers_mut();
        if !not_modified {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            );
        }
        h.insert(header::ETAG, etag.clone());
        h.insert(header::CACHE_CONTROL, MAX_AGE);
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        if self.cors {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        response
    }
}

/// `body` gzip-compressed; `None` only if the encoder fails, which writing to memory does not.
fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    enc.write_all(body).ok()?;
    enc.finish().ok()
}

/// Whether `Accept-Encoding` allows gzip (`gzip` or `*`, with a quality above zero).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (coding == "gzip" || coding == "x-gzip" || coding == "*") && q > 0.0
        })
}

/// What a document is rendered from; a cached render is reused while these are the same.
struct Inputs {
    /// The snapshot last seen; a newer one is compared by `public` before rendering again.
    snapshot: Arc<Snapshot>,
    /// `public_fingerprint` of that snapshot.
    public: u64,
    incidents: Arc<Vec<IncidentRecord>>,
    /// `None` for documents that do not show the probe history.
    history: Option<Arc<HistoryView>>,
    windows: u64,
    /// When the render's words about time go stale.
    valid_until: Timestamp,
}

/// A document that shows the probe history, or not (the history changes every flush).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum UsesHistory {
    Yes,
    No,
}

/// One cached document.
#[derive(Default)]
pub struct Cached {
    slot: Mutex<Option<(Inputs, Arc<Rendered>)>>,
}

impl Cached {
    /// The current render of this document: the cached one while its inputs are unchanged
    /// and it is not stale, else a new one from `render`, which returns the body and when its
    /// words about time go stale.
    pub fn get(
        &self,
        state: &ApiState,
        uses_history: UsesHistory,
        render: impl FnOnce(&Snapshot, &Extras) -> (Vec<u8>, Timestamp),
        content_type: &'static str,
        cors: bool,
    ) -> Arc<Rendered> {
        let snapshot = state.snapshot();
        let board = state.board();
        let now = Timestamp::now();
        let incidents = board.incidents();
        let history = (uses_history == UsesHistory::Yes).then(|| board.history());
        let windows = board.windows_version();
        // Held while rendering, so concurrent requests after a change wait for one render
        // instead of each making their own.
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((inputs, rendered)) = slot.as_mut() {
            let same_history = match (&inputs.history, &history) {
                // Boards without a history hand out a new empty view each time.
                (Some(a), Some(b)) => {
                    Arc::ptr_eq(a, b) || (a.services.is_empty() && b.services.is_empty())
                }
                (None, None) => true,
                _ => false,
            };
            if now < inputs.valid_until
                && Arc::ptr_eq(&inputs.incidents, &incidents)
                && same_history
                && inputs.windows == windows
            {
                if Arc::ptr_eq(&inputs.snapshot, &snapshot) {
                    return rendered.clone();
                }
                // A new snapshot (probes publish one every few hundred milliseconds) that
                // shows the public nothing new: keep the render, remember the snapshot.
                let public = public_fingerprint(&snapshot);
                if public == inputs.public {
                    inputs.snapshot = snapshot;
                    return rendered.clone();
                }
            }
        }
        let extras = board.extras(&snapshot, now);
        let (body, valid_until) = render(&snapshot, &extras);
        let rendered = Arc::new(Rendered::new(body, content_type, cors));
        *slot = Some((
            Inputs {
                public: public_fingerprint(&snapshot),
                snapshot,
                incidents,
                history,
                windows,
                valid_until,
            },
            rendered.clone(),
        ));
        rendered
    }
}

/// A hash of what the public documents show of `snapshot`: everything but the checks' last
/// outcomes and the publication time, which change with every probe.
fn public_fingerprint(snapshot: &Snapshot) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    snapshot.title.hash(&mut h);
    snapshot.public_url.hash(&mut h);
    for s in &snapshot.services {
        s.id.hash(&mut h);
        s.name.hash(&mut h);
        s.state.hash(&mut h);
        s.since.0.hash(&mut h);
        s.cause.hash(&mut h);
        s.created_at.0.hash(&mut h);
        s.maintenance_until.map(|t| t.0).hash(&mut h);
        for r in &s.routes {
            r.id.hash(&mut h);
            r.primary.hash(&mut h);
            r.backup.hash(&mut h);
            r.active.hash(&mut h);
        }
    }
    h.finish()
}

/// The first moment after `now` at which a maintenance in `extras` starts or ends, which
/// changes what every document says about it; `far` when none does sooner.
pub fn next_maintenance_change(extras: &Extras, far: Timestamp) -> Timestamp {
    extras
        .maintenances
        .iter()
        .flat_map(|m| [Some(m.starts_at), m.ends_at])
        .flatten()
        .filter(|t| *t > extras.now)
        .fold(far, Timestamp::min)
}

/// Every cached public document.
#[derive(Default)]
pub struct Documents {
    pub status_page: Cached,
    pub summary: Cached,
    pub status_json: Cached,
    pub components: Cached,
    pub incidents: Cached,
    pub unresolved: Cached,
    pub maintenances: Cached,
    pub upcoming_maintenances: Cached,
    pub active_maintenances: Cached,
    pub atom: Cached,
    pub rss: Cached,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn gzip_only_when_accepted_with_a_quality_above_zero() {
        assert!(accepts_gzip(&headers(&[(
            "accept-encoding",
            "gzip, deflate, br"
        )])));
        assert!(accepts_gzip(&headers(&[(
            "accept-encoding",
            "br;q=1.0, gzip;q=0.5"
        )])));
        assert!(accepts_gzip(&headers(&[("accept-encoding", "*")])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "gzip;q=0")])));
        assert!(!accepts_gzip(&headers(&[("accept-encoding", "identity")])));
        assert!(!accepts_gzip(&headers(&[])));
    }

    #[test]
    fn a_known_version_is_not_sent_again_and_each_encoding_has_its_own_tag() {
        let r = Rendered::new("hello ".repeat(200).into_bytes(), "text/plain", false);
        let plain = r.respond(&headers(&[]));
        let zipped = r.respond(&headers(&[("accept-encoding", "gzip")]));
        assert_eq!(plain.status(), 200);
        assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
        let (a, b) = (
            plain.headers()[header::ETAG].clone(),
            zipped.headers()[header::ETAG].clone(),
        );
        assert_ne!(a, b);
        for tag in [a.to_str().unwrap(), b.to_str().unwrap()] {
            let again = r.respond(&headers(&[
                ("if-none-match", tag),
                ("accept-encoding", "gzip"),
            ]));
            assert_eq!(again.status(), 304, "{tag}");
        }
        let other = r.respond(&headers(&[("if-none-match", "\"nope\"")]));
        assert_eq!(other.status(), 200);
        assert_eq!(other.headers()[header::CACHE_CONTROL], "public, max-age=5");
    }
}
