//! Help Center notices (migration 0013): each article's original as saved before its notice,
//! how far the current change has got, and the refresh token Zendesk rotated last.

use super::{Store, StoreError};
use crate::clock::Timestamp;
use rusqlite::{params, OptionalExtension};

/// How far an article's current change has got. Each step is recorded once its request was
/// answered 2xx, so a retried delivery resumes after the last step done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArticlePhase {
    /// The original is saved; the notice is not known to be written yet.
    NoticeSaved,
    /// The notice's translation is written; promotion is not done yet.
    NoticeWritten,
    /// The notice is in place.
    Notice,
    /// The original translation is back; its promotion is not restored yet.
    RestoreWritten,
    /// The original is back in full.
    Restored,
}

impl ArticlePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            ArticlePhase::NoticeSaved => "notice_saved",
            ArticlePhase::NoticeWritten => "notice_written",
            ArticlePhase::Notice => "notice",
            ArticlePhase::RestoreWritten => "restore_written",
            ArticlePhase::Restored => "restored",
        }
    }

    fn parse(s: &str) -> ArticlePhase {
        match s {
            "notice_saved" => ArticlePhase::NoticeSaved,
            "notice_written" => ArticlePhase::NoticeWritten,
            "notice" => ArticlePhase::Notice,
            "restore_written" => ArticlePhase::RestoreWritten,
            // Only this module writes the column.
            _ => ArticlePhase::Restored,
        }
    }
}

/// An article's original translation and promotion, and the phase of its current change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedArticle {
    /// The `[[on_switch]]` entry's id.
    pub hook: String,
    pub article_id: u64,
    pub locale: String,
    pub title: String,
    pub body: String,
    pub promoted: bool,
    pub phase: ArticlePhase,
}

impl Store {
    /// What is saved for the entry `hook`, if anything.
    pub fn zendesk_article(&self, hook: &str) -> Result<Option<SavedArticle>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT article_id, locale, original_title, original_body, original_promoted, phase
                 FROM zendesk_articles WHERE hook = ?1",
                [hook],
                |r| {
                    Ok(SavedArticle {
                        hook: hook.to_owned(),
                        article_id: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                        locale: r.get(1)?,
                        title: r.get(2)?,
                        body: r.get(3)?,
                        promoted: r.get::<_, i64>(4)? != 0,
                        phase: ArticlePhase::parse(&r.get::<_, String>(5)?),
                    })
                },
            )
            .optional()?)
    }

    /// Saves `saved` whole (the original and the phase), replacing what was there.
    pub fn set_zendesk_article(
        &self,
        saved: &SavedArticle,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO zendesk_articles (hook, article_id, locale, original_title, original_body,
                                           original_promoted, phase, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (hook) DO UPDATE SET article_id = ?2, locale = ?3, original_title = ?4,
                 original_body = ?5, original_promoted = ?6, phase = ?7, updated_at_ms = ?8",
            params![
                saved.hook,
                i64::try_from(saved.article_id).unwrap_or(i64::MAX),
                saved.locale,
                saved.title,
                saved.body,
                i64::from(saved.promoted),
                saved.phase.as_str(),
                at.as_millis()
            ],
        )?;
        Ok(())
    }

    /// The refresh token last returned by Zendesk in the chain that started with the configured
    /// token whose SHA-256 is `origin`.
    pub fn zendesk_refresh_token(&self, origin: &str) -> Result<Option<String>, StoreError> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT refresh_token FROM zendesk_tokens WHERE origin = ?1",
                [origin],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Keeps the refresh token Zendesk just returned (the previous one no longer works).
    pub fn set_zendesk_refresh_token(
        &self,
        origin: &str,
        token: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO zendesk_tokens (origin, refresh_token, rotated_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (origin) DO UPDATE SET refresh_token = ?2, rotated_at_ms = ?3",
            params![origin, token, at.as_millis()],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_article_and_a_rotated_token_are_kept_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        assert_eq!(store.zendesk_article("hc").unwrap(), None);
        let mut saved = SavedArticle {
            hook: "hc".into(),
            article_id: 360_001,
            locale: "en-us".into(),
            title: "Contact us".into(),
            body: "<p>Write to us</p>".into(),
            promoted: false,
            phase: ArticlePhase::NoticeSaved,
        };
        store.set_zendesk_article(&saved, Timestamp(1)).unwrap();
        assert_eq!(store.zendesk_article("hc").unwrap().as_ref(), Some(&saved));
        saved.phase = ArticlePhase::Notice;
        store.set_zendesk_article(&saved, Timestamp(2)).unwrap();
        assert_eq!(
            store.zendesk_article("hc").unwrap().map(|s| s.phase),
            Some(ArticlePhase::Notice)
        );
        assert_eq!(store.zendesk_refresh_token("abc").unwrap(), None);
        store
            .set_zendesk_refresh_token("abc", "r1", Timestamp(3))
            .unwrap();
        store
            .set_zendesk_refresh_token("abc", "r2", Timestamp(4))
            .unwrap();
        assert_eq!(
            store.zendesk_refresh_token("abc").unwrap().as_deref(),
            Some("r2")
        );
    }
}
