-- 0013: Help Center notices (`[[on_switch]] kind = "zendesk_article"`).
--
-- `zendesk_articles`: per on_switch entry, the article's translation as it was before the
-- notice (title, body) and whether it was promoted, saved BEFORE the notice is written, so
-- a failback after a restart restores the real original; and how far the current change
-- has got (`phase`), so a delivery retried after a failure or a crash resumes where it
-- stopped instead of repeating a request or saving the notice as the original.
--
-- `zendesk_tokens`: the refresh token Zendesk returned at the last refresh. Zendesk deletes
-- the previous refresh token at each refresh, so the one in the configuration works once;
-- the replacement must outlive the process (and, in cluster mode, reach the next leader
-- through the replicated log). `origin` is the SHA-256 of the configured token it descends
-- from: when an operator configures a newly granted token, the stored chain is not used.

CREATE TABLE zendesk_articles (
    hook               TEXT PRIMARY KEY,
    article_id         INTEGER NOT NULL,
    locale             TEXT NOT NULL,
    original_title     TEXT NOT NULL,
    original_body      TEXT NOT NULL,
    original_promoted  INTEGER NOT NULL,
    phase              TEXT NOT NULL,
    updated_at_ms      INTEGER NOT NULL
) STRICT;

CREATE TABLE zendesk_tokens (
    origin         TEXT PRIMARY KEY,
    refresh_token  TEXT NOT NULL,
    rotated_at_ms  INTEGER NOT NULL
) STRICT;
