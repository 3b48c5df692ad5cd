//! The HTTP server: metrics, status page, Statuspage v2 JSON, route redirects, control API.
