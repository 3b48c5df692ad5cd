-- 0006: the outbox learns to give up, names the kind of each message, and carries pushes.
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt with its rows.
--
-- given_up: a row older than `[email] give_up_after` that still failed is no longer retried;
--   it stays here (never deleted) and is counted in switchboard_outbox_given_up_total.
-- kind: what the message is about (failover, failback, flapping, ...), for metrics; '' on
--   rows written before this migration.
-- UNIQUE now includes kind, so a flapping notice can hang off the transition it follows.

CREATE TABLE outbox_v6 (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    transition_id      INTEGER NOT NULL REFERENCES transitions (id),
    audience           TEXT NOT NULL,
    channel            TEXT NOT NULL,
    kind               TEXT NOT NULL DEFAULT '',
    message_id         TEXT NOT NULL UNIQUE,
    recipients         TEXT NOT NULL, -- JSON array of strings
    subject            TEXT NOT NULL,
    body_text          TEXT NOT NULL,
    body_html          TEXT,
    status             TEXT NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'delivered', 'given_up')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    created_at_ms      INTEGER NOT NULL,
    next_attempt_at_ms INTEGER NOT NULL,
    last_attempt_at_ms INTEGER,
    last_error         TEXT,
    delivered_at_ms    INTEGER,
    detail             TEXT,
    given_up_at_ms     INTEGER,
    UNIQUE (transition_id, audience, channel, kind)
) STRICT;

INSERT INTO outbox_v6
    (id, transition_id, audience, channel, kind, message_id, recipients, subject, body_text,
     body_html, status, attempts, created_at_ms, next_attempt_at_ms, last_attempt_at_ms,
     last_error, delivered_at_ms, detail)
SELECT id, transition_id, audience, channel, '', message_id, recipients, subject, body_text,
       body_html, status, attempts, created_at_ms, next_attempt_at_ms, last_attempt_at_ms,
       last_error, delivered_at_ms, detail
FROM outbox;

DROP TABLE outbox;
ALTER TABLE outbox_v6 RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (status, next_attempt_at_ms);

-- The Statuspage incident opened for a service's current failover, so the recovery can
-- resolve that same incident (one PATCH) instead of opening another.
CREATE TABLE statuspage_incidents (
    service       TEXT PRIMARY KEY,
    incident_id   TEXT NOT NULL,
    opened_at_ms  INTEGER NOT NULL
) STRICT;
