-- 0001: current state per service, the append-only transition log, and the announcement outbox.
-- Timestamps are milliseconds since the Unix epoch (UTC), like `clock::Timestamp`.

CREATE TABLE services (
    id            TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    since_ms      INTEGER NOT NULL,
    cause         TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

-- Append-only: rows are never updated or deleted (the audit chain of issue 4 builds on this).
CREATE TABLE transitions (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    service        TEXT NOT NULL,
    from_state     TEXT NOT NULL,
    to_state       TEXT NOT NULL,
    cause          TEXT NOT NULL,
    actor          TEXT NOT NULL,
    reason         TEXT NOT NULL,
    at_ms          INTEGER NOT NULL,
    evidence       TEXT NOT NULL, -- JSON array of strings
    config_version TEXT NOT NULL
) STRICT;

CREATE INDEX transitions_by_service ON transitions (service, id);

-- One row per (transition, audience, channel), written in the same transaction as the
-- transition, so an announcement can never be lost between deciding and sending.
CREATE TABLE outbox (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    transition_id      INTEGER NOT NULL REFERENCES transitions (id),
    audience           TEXT NOT NULL,
    channel            TEXT NOT NULL,
    message_id         TEXT NOT NULL UNIQUE,
    recipients         TEXT NOT NULL, -- JSON array of strings
    subject            TEXT NOT NULL,
    body_text          TEXT NOT NULL,
    body_html          TEXT,
    status             TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered')),
    attempts           INTEGER NOT NULL DEFAULT 0,
    created_at_ms      INTEGER NOT NULL,
    next_attempt_at_ms INTEGER NOT NULL,
    last_attempt_at_ms INTEGER,
    last_error         TEXT,
    delivered_at_ms    INTEGER,
    detail             TEXT,
    UNIQUE (transition_id, audience, channel)
) STRICT;

CREATE INDEX outbox_due ON outbox (status, next_attempt_at_ms);
