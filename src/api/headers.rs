//! Security headers on every response of the listener: a strict Content-Security-Policy and the usual anti-sniffing, framing and referrer rules.
//!
//! The status page is one document with inline CSS and inline SVG and no script, so the
//! policy allows nothing but that one stylesheet (by its SHA-256, not `'unsafe-inline'`),
//! images from the page itself or `data:`, and links. A browser that is tricked into
//! rendering an incident text or a check name as markup still runs no script, and no other
//! site can frame the page to dress up a fake "we moved, submit your ticket here" notice.

use axum::http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::HeaderValue;
use axum::response::Response;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// The Content-Security-Policy value: computed once, from the page's stylesheet.
static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let digest = Sha256::digest(super::page::CSS.as_bytes());
    let hash = base64::engine::general_purpose::STANDARD.encode(digest);
    let policy = format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    // Base64 and ASCII punctuation only, so it is always a valid header value.
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
});

/// Adds the security headers to `response`, keeping any a handler set itself.
pub async fn add(mut response: Response) -> Response {
    apply(response.headers_mut());
    response
}

/// What `add` does, for a response built outside the router (`public::go_direct`).
pub fn apply(h: &mut axum::http::HeaderMap) {
    h.entry(CONTENT_SECURITY_POLICY)
        .or_insert_with(|| CSP.clone());
    h.entry(X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    h.entry(X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    h.entry(REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_the_stylesheet_hash_and_allows_no_script() {
        let csp = CSP.to_str().expect("ascii");
        assert!(
            csp.starts_with("default-src 'none'; style-src 'sha256-"),
            "{csp}"
        );
        assert!(!csp.contains("script-src"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }
}
