//! `[cluster]` of the main file: this node's name, the etcd endpoints, the lease and how peers reach this node.
//!
//! Without `[cluster]` the daemon is one node with its SQLite file, exactly as before. With
//! it, nodes elect a leader through etcd and share their durable state through it
//! (`cluster/`). Secrets (the etcd password) come from the environment or a file, never
//! from this file.

use super::{Loader, Source};
use crate::config::ClusterConfig;
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;
use url::Url;

/// `[cluster]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// This node's name: unique in the cluster, recorded with every decision it makes.
    pub name: Option<Spanned<String>>,
    /// etcd client URLs, e.g. `["http://127.0.0.1:2379"]`.
    pub etcd: Option<Spanned<Vec<String>>>,
    /// Key prefix of this cluster in etcd. Default `/switchboard`.
    pub prefix: Option<Spanned<String>>,
    /// Lease of the leader key; a leader that cannot renew within it stops acting. Default `10s`.
    pub lease_ttl: Option<Spanned<String>>,
    /// How peers and the CLI reach this node, e.g. `http://10.0.0.2:9898`.
    pub advertise_url: Option<Spanned<String>>,
    /// etcd user name (when etcd has authentication enabled).
    pub user: Option<Spanned<String>>,
    /// Environment variable holding the etcd password. Default `SWITCHBOARD_ETCD_PASSWORD`.
    pub password_env: Option<Spanned<String>>,
    /// File holding the etcd password (instead of the environment variable).
    pub password_file: Option<Spanned<String>>,
    /// PEM file of the CA that signed etcd's certificates, for `https://` endpoints.
    pub ca_file: Option<Spanned<String>>,
}

/// The shortest lease: below it a renewal every third of the lease is a request every few
/// hundred milliseconds, and a garbage-collection pause in etcd would depose healthy leaders.
const MIN_LEASE: Duration = Duration::from_secs(3);

impl Loader {
    pub(super) fn validate_cluster(
        &mut self,
        source: &Source<'_>,
        table: Option<Spanned<RawCluster>>,
        base: &std::path::Path,
        listen_url: Option<&str>,
    ) -> Option<Option<ClusterConfig>> {
        let Some(table) = table else {
            return Some(None);
        };
        let (file, line) = source.at(&table);
        let raw = table.into_inner();
        let before = self.diagnostics.len();

        let name = match raw.name {
            Some(n) if is_node_name(n.get_ref()) => Some(n.into_inner()),
            Some(n) => {
                let why = format!(
                    "cluster.name: \"{}\" must be 1 to 63 letters, digits, '-', '_' or '.'",
                    n.get_ref()
                );
                self.report_at(source, &n, why);
                None
            }
            None => {
                self.report(
                    &file,
                    line,
                    "cluster: name is required (this node's unique name)",
                );
                None
            }
        };
        let mut etcd = Vec::new();
        match &raw.etcd {
            None => self.report(
                &file,
                line,
                "cluster: etcd is required, e.g. etcd = [\"http://127.0.0.1:2379\"]",
            ),
            Some(list) if list.get_ref().is_empty() => self.report_at(
                source,
                list,
                "cluster.etcd: name at least one etcd endpoint",
            ),
            Some(list) => {
                for e in list.get_ref() {
                    match Url::parse(e) {
                        Ok(u)
                            if matches!(u.scheme(), "http" | "https")
                                && u.has_host()
                                && u.password().is_none()
                                && u.username().is_empty() =>
                        {
                            etcd.push(e.trim_end_matches('/').to_string())
                        }
                        _ => {
                            // Never echo a password someone put in the URL.
                            let shown = match Url::parse(e) {
                                Ok(mut u) if u.password().is_some() => {
                                    let _ = u.set_password(Some("***"));
                                    u.to_string()
                                }
                                _ => e.clone(),
                            };
                            self.report_at(
                                source,
                                list,
                                format!("cluster.etcd: \"{shown}\" is not an http(s)://host:port URL (credentials go in user and password_env)"),
                            )
                        }
                    }
                }
            }
        }
        let prefix = match raw.prefix {
            None => "/switchboard".to_string(),
            Some(p)
                if p.get_ref().starts_with('/')
                    && !p.get_ref().ends_with('/')
                    && p.get_ref().len() > 1 =>
            {
                p.into_inner()
            }
            Some(p) => {
                let why = format!(
                    "cluster.prefix: \"{}\" must start with '/' and not end with one, e.g. \"/switchboard\"",
                    p.get_ref()
                );
                self.report_at(source, &p, why);
                "/switchboard".to_string()
            }
        };
        let lease_ttl =
            match self.duration(source, "cluster.lease_ttl", raw.lease_ttl.as_ref(), false) {
                Some(d) if d < MIN_LEASE => {
                    if let Some(at) = &raw.lease_ttl {
                        self.report_at(source, at, "cluster.lease_ttl must be at least 3s");
                    }
                    MIN_LEASE
                }
                Some(d) => d,
                None => Duration::from_secs(10),
            };
        let advertise_url = match raw.advertise_url {
            Some(u) => match Url::parse(u.get_ref()) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                    Some(u.get_ref().trim_end_matches('/').to_string())
                }
                _ => {
                    let why = format!(
                        "cluster.advertise_url: \"{}\" is not an absolute http(s) URL",
                        u.get_ref()
                    );
                    self.report_at(source, &u, why);
                    None
                }
            },
            None => listen_url.map(str::to_string),
        };
        let password_env = match raw.password_env {
            None => "SWITCHBOARD_ETCD_PASSWORD".to_string(),
            Some(e)
                if e.get_ref()
                    .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && e.get_ref()
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                e.into_inner()
            }
            Some(e) => {
                let why = format!(
                    "cluster.password_env: \"{}\" is not an environment variable name",
                    e.get_ref()
                );
                self.report_at(source, &e, why);
                String::new()
            }
        };
        let ca_file = raw.ca_file.map(|f| {
            let path = base.join(f.get_ref());
            if let Err(e) = std::fs::metadata(&path) {
                let why = format!("cluster.ca_file: cannot read {}: {e}", f.get_ref());
                self.report_at(source, &f, why);
            }
            path
        });
        if self.diagnostics.len() > before {
            return None;
        }
        Some(Some(ClusterConfig {
            name: name?,
            etcd,
            prefix,
            lease_ttl,
            advertise_url: advertise_url?,
            user: raw.user.map(Spanned::into_inner),
            password_env,
            password_file: raw.password_file.map(|f| base.join(f.into_inner())),
            ca_file,
        }))
    }
}

/// A node name fit for an etcd key and a metric label.
fn is_node_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
