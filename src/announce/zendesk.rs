//! Help Center notices (`[[on_switch]] kind = "zendesk_article"`): a prepared Zendesk article
//! carries a notice while a service's routes are on the backup and gets its own words back
//! when they return to the primary, through Zendesk's API from the outbox.
//!
//! Each route switch becomes ONE outbox row per article (channel `zendesk`), written with the
//! transition: `notice` with the rendered title and body (to the backup), or `restore` (to the
//! primary). At send time:
//!
//! - notice: the translation is read (`GET /api/v2/help_center/articles/{id}/translations/
//!   {locale}`) with the article's `promoted`, and saved in the store as the original BEFORE
//!   anything is written; then `PUT .../translations/{locale}` with the notice's title and
//!   body, then `PUT /api/v2/help_center/articles/{id}` with `promoted: true` (when `promote`
//!   and the article was not promoted already).
//! - restore: `PUT .../translations/{locale}` with the saved title and body, then the saved
//!   `promoted` back.
//!
//! Each step is recorded in the store (`store::ArticlePhase`) once Zendesk answered it 2xx,
//! so a delivery retried after a 500, a 429 or a crash resumes after the last step done: the
//! notice is never saved as the original (the original is saved once per notice, and a
//! translation that already shows the notice is never taken for one), and a retry repeats
//! no request that was answered. Only a crash between a 2xx and its record repeats that one
//! request, with the same content.
//!
//! Authentication is OAuth: API tokens are being retired by Zendesk. An access token is got
//! with the refresh-token grant (`POST /oauth/tokens`), kept in memory with its expiry and
//! refreshed a minute before it, or at once when Zendesk answers 401 (the request is then
//! sent once more). Zendesk deletes the previous refresh token at each refresh, so the one in
//! the configuration works once: the token it returns is kept in the store (`zendesk_tokens`,
//! keyed by the SHA-256 of the configured token it descends from, so configuring a newly
//! granted token starts a new chain) and replicated with the rest of the database in cluster
//! mode, where the next leader needs it. Secrets are read where they live at send time and
//! never appear in a row, a log line, an error or a receipt.

use super::http;
use super::transport::{Failure, Receipt};
use crate::clock::Timestamp;
use crate::config::{Side, ZendeskArticleSpec};
use crate::failover::Transition;
use crate::store::{ArticlePhase, NewAnnouncement, OutboxItem, SavedArticle, StoreHandle};
use crate::template::webhook::{render_as, Escape};
use crate::view::RouteView;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// An access token is refreshed this long before Zendesk says it expires.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// How long an access token is used when Zendesk gives no `expires_in` (a 401 refreshes it
/// sooner).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// What one row asks, stored as JSON in the row's text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Plan {
    /// Save the original, then write this notice (and promote the article).
    Notice { title: String, body: String },
    /// Write the saved original back (and its promotion).
    Restore,
}

/// The outbox rows for a route switch: one per article of the service, a notice when the
/// routes went to the backup and a restore when they came back.
pub fn plan(
    articles: &[ZendeskArticleSpec],
    t: &Transition,
    service_name: &str,
    routes: &[RouteView],
) -> Vec<NewAnnouncement> {
    let side = routes.first().map_or(t.to.routes_side(), |r| r.active);
    let values = super::webhook::values(t, service_name, routes);
    articles
        .iter()
        .map(|a| {
            let plan = match side {
                Side::Backup => Plan::Notice {
                    title: render_or_default(&a.title, &values, Escape::Plain, &a.id),
                    body: render_or_default(&a.body, &values, Escape::Html, &a.id),
                },
                Side::Primary => Plan::Restore,
            };
            NewAnnouncement {
                // One audience per article keeps each row's Message-ID unique and orders a
                // restore behind the notice it undoes.
                audience: format!("article-{}", a.id),
                channel: "zendesk".to_owned(),
                kind: super::Kind::of(t).as_str().to_owned(),
                recipients: vec![a.id.clone()],
                subject: match plan {
                    Plan::Notice { .. } => format!("notice on article {}", a.article_id),
                    Plan::Restore => format!("restore article {}", a.article_id),
                },
                // Serialising an enum of strings cannot fail.
                text: serde_json::to_string(&plan).unwrap_or_default(),
                html: None,
            }
        })
        .collect()
}

/// A template that passed validation and still failed is logged and replaced by the built-in
/// one, so customers still read a notice.
fn render_or_default(
    template: &str,
    values: &crate::template::webhook::BodyValues,
    escape: Escape,
    id: &str,
) -> String {
    render_as(template, values, escape).unwrap_or_else(|e| {
        tracing::warn!(error = %e, article = id, "article notice template failed; using the built-in one");
        let fallback = match escape {
            Escape::Plain => crate::config::ZENDESK_DEFAULT_TITLE,
            _ => crate::config::ZENDESK_DEFAULT_BODY,
        };
        render_as(fallback, values, escape).unwrap_or_default()
    })
}

/// An access token in memory.
#[derive(Clone)]
struct Access {
    token: String,
    expires: Instant,
}

/// Sends `zendesk` rows. Shared by the outbox loop.
pub struct ZendeskArticles {
    articles: HashMap<String, ZendeskArticleSpec>,
    store: StoreHandle,
    /// Access tokens by OAuth chain (the configured refresh token's SHA-256): entries that
    /// share a grant share its access token.
    access: Mutex<HashMap<String, Access>>,
    /// The refresh tokens Zendesk returned, by chain, in case the store could not keep one.
    rotated: Mutex<HashMap<String, String>>,
    /// One refresh at a time: a refresh invalidates the refresh token another would send.
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ZendeskArticles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZendeskArticles")
            .field("articles", &self.articles.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What one delivery did, for its receipt.
#[derive(Default)]
struct Steps {
    done: Vec<String>,
    last_status: Option<u16>,
}

impl Steps {
    fn note(&mut self, status: u16, what: String) {
        self.done.push(format!("{status} {what}"));
        self.last_status = Some(status);
    }

    fn receipt(self, idle: &str) -> Receipt {
        match self.last_status {
            Some(status) => Receipt::http(status, self.done.join("; ")),
            None => Receipt::from(idle.to_owned()),
        }
    }
}

impl ZendeskArticles {
    pub fn new<'a>(
        articles: impl IntoIterator<Item = &'a ZendeskArticleSpec>,
        store: StoreHandle,
    ) -> ZendeskArticles {
        ZendeskArticles {
            articles: articles
                .into_iter()
                .map(|a| (a.id.clone(), a.clone()))
                .collect(),
            store,
            access: Mutex::new(HashMap::new()),
            rotated: Mutex::new(HashMap::new()),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// Sends one row: every step of its plan not done yet.
    pub async fn send(&self, item: &OutboxItem) -> Result<Receipt, Failure> {
        let id = item.recipients.first().cloned().unwrap_or_default();
        let spec = self.articles.get(&id).ok_or_else(|| {
            Failure::from(format!("zendesk_article {id:?} is no longer configured"))
        })?;
        let plan: Plan = serde_json::from_str(&item.text)
            .map_err(|e| Failure::from(format!("unreadable zendesk row: {e}")))?;
        let saved = {
            let hook = spec.id.clone();
            self.store
                .read(move |s| s.zendesk_article(&hook))
                .await
                .map_err(|e| Failure::from(e.to_string()))?
        };
        // What is saved for another article or locale (the configuration changed) is not this
        // article's original.
        let saved = saved.filter(|s| s.article_id == spec.article_id && s.locale == spec.locale);
        match plan {
            Plan::Notice { title, body } => self.notice(spec, saved, &title, &body).await,
            Plan::Restore => self.restore(spec, saved).await,
        }
    }

    async fn notice(
        &self,
        spec: &ZendeskArticleSpec,
        saved: Option<SavedArticle>,
        title: &str,
        body: &str,
    ) -> Result<Receipt, Failure> {
        let mut steps = Steps::default();
        let mut saved = match saved {
            // A retry: the original is saved already.
            Some(s)
                if matches!(
                    s.phase,
                    ArticlePhase::NoticeSaved | ArticlePhase::NoticeWritten | ArticlePhase::Notice
                ) =>
            {
                s
            }
            // The restore wrote the original translation back but not its promotion: the
            // saved original is still the article's own.
            Some(s) if s.phase == ArticlePhase::RestoreWritten => {
                let s = SavedArticle {
                    phase: ArticlePhase::NoticeSaved,
                    ..s
                };
                self.save(&s).await?;
                s
            }
            earlier => {
                let (status, translation) = self
                    .call(spec, Method::GET, &translation_path(spec), None)
                    .await?;
                let translation: TranslationReply = parse(&translation, "translation")?;
                steps.note(status, format!("GET translation {}", spec.locale));
                let (status, article) = self
                    .call(spec, Method::GET, &article_path(spec), None)
                    .await?;
                let article: ArticleReply = parse(&article, "article")?;
                steps.note(status, format!("GET article {}", spec.article_id));
                let t = translation.translation;
                let shows_notice = t.title == title && t.body == body;
                let s = match earlier {
                    // The notice is up already and its original was kept before: keep that.
                    Some(e) if shows_notice => SavedArticle {
                        phase: ArticlePhase::NoticeSaved,
                        ..e
                    },
                    _ if shows_notice => {
                        return Err(Failure::from(format!(
                            "article {} ({}) already shows this notice and no original is saved; not saving the notice as the original: restore the article by hand",
                            spec.article_id, spec.locale
                        )))
                    }
                    _ => SavedArticle {
                        hook: spec.id.clone(),
                        article_id: spec.article_id,
                        locale: spec.locale.clone(),
                        title: t.title,
                        body: t.body,
                        promoted: article.article.promoted,
                        phase: ArticlePhase::NoticeSaved,
                    },
                };
                // Saved before anything is written: a crash after this point finds it.
                self.save(&s).await?;
                s
            }
        };
        if saved.phase == ArticlePhase::NoticeSaved {
            let status = self.write_translation(spec, title, body).await?;
            steps.note(status, format!("PUT translation {}", spec.locale));
            saved.phase = ArticlePhase::NoticeWritten;
            self.save(&saved).await?;
        }
        if saved.phase == ArticlePhase::NoticeWritten {
            if spec.promote && !saved.promoted {
                let status = self.write_promoted(spec, true).await?;
                steps.note(status, format!("PUT article {} promoted", spec.article_id));
            }
            saved.phase = ArticlePhase::Notice;
            self.save(&saved).await?;
        }
        Ok(steps.receipt("the notice was already in place"))
    }

    async fn restore(
        &self,
        spec: &ZendeskArticleSpec,
        saved: Option<SavedArticle>,
    ) -> Result<Receipt, Failure> {
        let mut steps = Steps::default();
        let Some(mut saved) = saved else {
            return Ok(Receipt::from(format!(
                "nothing to restore: no notice was written to article {}",
                spec.article_id
            )));
        };
        if matches!(
            saved.phase,
            ArticlePhase::NoticeSaved | ArticlePhase::NoticeWritten | ArticlePhase::Notice
        ) {
            let status = self
                .write_translation(spec, &saved.title, &saved.body)
                .await?;
            steps.note(status, format!("PUT translation {}", spec.locale));
            saved.phase = ArticlePhase::RestoreWritten;
            self.save(&saved).await?;
        }
        if saved.phase == ArticlePhase::RestoreWritten {
            if spec.promote && !saved.promoted {
                let status = self.write_promoted(spec, false).await?;
                steps.note(
                    status,
                    format!("PUT article {} unpromoted", spec.article_id),
                );
            }
            saved.phase = ArticlePhase::Restored;
            self.save(&saved).await?;
        }
        Ok(steps.receipt("the original was already restored"))
    }

    async fn write_translation(
        &self,
        spec: &ZendeskArticleSpec,
        title: &str,
        body: &str,
    ) -> Result<u16, Failure> {
        let json = serde_json::json!({"translation": {"title": title, "body": body}});
        self.put(spec, &translation_path(spec), json).await
    }

    async fn write_promoted(
        &self,
        spec: &ZendeskArticleSpec,
        promoted: bool,
    ) -> Result<u16, Failure> {
        let json = serde_json::json!({"article": {"promoted": promoted}});
        self.put(spec, &article_path(spec), json).await
    }

    /// A `PUT` answered 2xx: its status.
    async fn put(
        &self,
        spec: &ZendeskArticleSpec,
        path: &str,
        json: serde_json::Value,
    ) -> Result<u16, Failure> {
        Ok(self.call(spec, Method::PUT, path, Some(json)).await?.0)
    }

    async fn save(&self, saved: &SavedArticle) -> Result<(), Failure> {
        let saved = saved.clone();
        self.store
            .write(move |s| s.set_zendesk_article(&saved, Timestamp::now()))
            .await
            .map_err(|e| Failure::from(format!("could not record the article's state: {e}")))
    }

    /// One API request with a current access token; a 401 refreshes the token and sends the
    /// request once more. `Ok` is a 2xx answer (status, body).
    async fn call(
        &self,
        spec: &ZendeskArticleSpec,
        method: Method,
        path: &str,
        json: Option<serde_json::Value>,
    ) -> Result<(u16, String), Failure> {
        let url = format!("{}{path}", spec.base_url);
        let mut refreshed = false;
        loop {
            let (chain, token) = self.access_token(spec).await?;
            let r = http::request(
                method.clone(),
                &url,
                &[("Authorization", format!("Bearer {token}"))],
                json.as_ref().map(ToString::to_string),
                spec.timeout,
            )
            .await
            .map_err(|e| Failure::from(format!("{method} {path}: {e}")))?;
            match r.status {
                200..=299 => return Ok((r.status, r.body)),
                401 if !refreshed => {
                    // Revoked or expired early: forget it, refresh, and try once more.
                    self.forget(&chain, &token);
                    refreshed = true;
                }
                429 => {
                    let wait = r.retry_after.unwrap_or(Duration::from_secs(60));
                    return Err(Failure {
                        message: format!(
                            "429 rate limited on {method} {path}; retrying after {}s",
                            wait.as_secs()
                        ),
                        retry_after: Some(wait),
                    });
                }
                status => {
                    return Err(Failure {
                        message: format!(
                            "{status} on {method} {path}: {}",
                            r.body.chars().take(200).collect::<String>()
                        ),
                        retry_after: r.retry_after,
                    })
                }
            }
        }
    }

    fn forget(&self, chain: &str, token: &str) {
        let mut access = self.access.lock().unwrap_or_else(|e| e.into_inner());
        if access.get(chain).is_some_and(|a| a.token == token) {
            access.remove(chain);
        }
    }

    /// (chain, access token): the one in memory while it is fresh, else a refreshed one.
    async fn access_token(&self, spec: &ZendeskArticleSpec) -> Result<(String, String), Failure> {
        let configured = spec.oauth.refresh_token.read().map_err(|e| {
            Failure::from(format!("zendesk_article {}: refresh token: {e}", spec.id))
        })?;
        let chain = hex::encode(Sha256::digest(configured.as_bytes()));
        let fresh = |access: &HashMap<String, Access>| {
            access
                .get(&chain)
                .filter(|a| a.expires > Instant::now() + EXPIRY_MARGIN)
                .map(|a| a.token.clone())
        };
        if let Some(token) = fresh(&self.access.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok((chain, token));
        }
        let _one = self.refreshing.lock().await;
        // Another delivery may have refreshed while this one waited.
        if let Some(token) = fresh(&self.access.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok((chain, token));
        }
        let remembered = self
            .rotated
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&chain)
            .cloned();
        let refresh = match remembered {
            Some(r) => r,
            None => {
                let c = chain.clone();
                self.store
                    .read(move |s| s.zendesk_refresh_token(&c))
                    .await
                    .map_err(|e| Failure::from(e.to_string()))?
                    .unwrap_or(configured)
            }
        };
        let secret = spec.oauth.client_secret.read().map_err(|e| {
            Failure::from(format!("zendesk_article {}: client secret: {e}", spec.id))
        })?;
        let body = serde_json::json!({
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": spec.oauth.client_id,
            "client_secret": secret,
        });
        let url = format!("{}/oauth/tokens", spec.base_url);
        let r = http::request(
            Method::POST,
            &url,
            &[],
            Some(body.to_string()),
            spec.timeout,
        )
        .await
        .map_err(|e| Failure::from(format!("POST /oauth/tokens: {e}")))?;
        match r.status {
            200..=299 => {}
            429 => {
                return Err(Failure {
                    message: "429 rate limited on POST /oauth/tokens".to_owned(),
                    retry_after: Some(r.retry_after.unwrap_or(Duration::from_secs(60))),
                })
            }
            // The answer may quote what was sent: it is not repeated.
            status => {
                return Err(Failure::from(format!(
                    "{status} on POST /oauth/tokens: Zendesk refused the refresh token of zendesk_article {}; grant a new one and configure it",
                    spec.id
                )))
            }
        }
        let granted: Granted = serde_json::from_str(&r.body).map_err(|_| {
            Failure::from("POST /oauth/tokens: the answer holds no access_token".to_owned())
        })?;
        if let Some(next) = granted.refresh_token.filter(|n| *n != refresh) {
            self.rotated
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(chain.clone(), next.clone());
            let c = chain.clone();
            let stored = self
                .store
                .write(move |s| s.set_zendesk_refresh_token(&c, &next, Timestamp::now()))
                .await;
            if let Err(e) = stored {
                // Kept in memory meanwhile; after a restart the configured token is refused
                // and the error says to grant a new one.
                tracing::error!(article = %spec.id, error = %e, "zendesk: could not keep the rotated refresh token in the store");
            }
        }
        let lifetime = granted
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        self.access
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                chain.clone(),
                Access {
                    token: granted.access_token.clone(),
                    expires: Instant::now() + lifetime,
                },
            );
        Ok((chain, granted.access_token))
    }
}

impl super::transport::Deliver for ZendeskArticles {
    async fn deliver(&self, item: &OutboxItem) -> Result<Receipt, Failure> {
        self.send(item).await
    }
}

/// `POST /oauth/tokens`'s answer.
#[derive(Deserialize)]
struct Granted {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TranslationReply {
    translation: Translation,
}

#[derive(Deserialize)]
struct Translation {
    title: String,
    #[serde(default)]
    body: String,
}

#[derive(Deserialize)]
struct ArticleReply {
    article: Article,
}

#[derive(Deserialize)]
struct Article {
    #[serde(default)]
    promoted: bool,
}

fn parse<T: serde::de::DeserializeOwned>(body: &str, what: &str) -> Result<T, Failure> {
    serde_json::from_str(body)
        .map_err(|e| Failure::from(format!("Zendesk's {what} could not be read: {e}")))
}

fn translation_path(spec: &ZendeskArticleSpec) -> String {
    format!(
        "/api/v2/help_center/articles/{}/translations/{}",
        spec.article_id, spec.locale
    )
}

fn article_path(spec: &ZendeskArticleSpec) -> String {
    format!("/api/v2/help_center/articles/{}", spec.article_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, ZendeskOAuth};
    use crate::failover::{Cause, State};

    fn spec() -> ZendeskArticleSpec {
        ZendeskArticleSpec {
            id: "hc-notice".into(),
            base_url: "http://127.0.0.1:1".into(),
            article_id: 360_001,
            locale: "en-us".into(),
            title: crate::config::ZENDESK_DEFAULT_TITLE.into(),
            body: crate::config::ZENDESK_DEFAULT_BODY.into(),
            promote: true,
            oauth: ZendeskOAuth {
                client_id: "switchboard".into(),
                client_secret: Secret::Env("X".into()),
                refresh_token: Secret::Env("Y".into()),
            },
            timeout: Duration::from_secs(5),
        }
    }

    fn routes(active: Side) -> Vec<RouteView> {
        vec![RouteView {
            id: "submit-ticket".into(),
            service: "ticket-submission".into(),
            primary: "https://support.example.com/new".into(),
            backup: "https://forms.example.net/support?a=1&b=2".into(),
            active,
        }]
    }

    fn transition(to: State, public_message: Option<&str>) -> Transition {
        Transition {
            service: "ticket-submission".into(),
            from: State::Operational,
            to,
            cause: Cause::PrimaryDown,
            at: Timestamp(1_700_000_000_000),
            actor: "system".into(),
            reason: "internal: db <primary> down".into(),
            evidence: vec![],
            public_message: public_message.map(str::to_owned),
        }
    }

    #[test]
    fn a_switch_to_the_backup_is_a_notice_in_customers_words_and_back_a_restore() {
        let rows = plan(
            &[spec()],
            &transition(State::FailedOver, Some("Replies may be slow <today>.")),
            "Tickets & forms",
            &routes(Side::Backup),
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].channel, "zendesk");
        assert_eq!(rows[0].audience, "article-hc-notice");
        assert_eq!(rows[0].recipients, ["hc-notice"]);
        let Plan::Notice { title, body } = serde_json::from_str(&rows[0].text).unwrap() else {
            panic!("a notice: {}", rows[0].text)
        };
        assert_eq!(title, "Tickets & forms: please use our backup");
        assert_eq!(
            body,
            "<p>Tickets &amp; forms is not working as it should. Until it is fixed, please use <a href=\"https:&#x2f;&#x2f;forms.example.net&#x2f;support?a=1&amp;b=2\">https:&#x2f;&#x2f;forms.example.net&#x2f;support?a=1&amp;b=2</a>.</p>\n<p>Replies may be slow &lt;today&gt;.</p>"
        );
        assert!(!body.contains("internal"), "the reason stays internal");
        let rows = plan(
            &[spec()],
            &transition(State::Operational, None),
            "Tickets",
            &routes(Side::Primary),
        );
        assert_eq!(
            serde_json::from_str::<Plan>(&rows[0].text).unwrap(),
            Plan::Restore
        );
        assert_eq!(rows[0].subject, "restore article 360001");
    }
}
