-- 0007: grouped and delayed announcements, and a random id for this database.
--
-- instance: one row, created here once with the database (or when an older file migrates).
--   Its random id goes into every Message-ID, so two databases (a fresh one, a restored
--   copy's successor, another installation) never reuse `t1.oncall...` for different mail.
--   randomblob() draws on the operating system's randomness through SQLite's VFS.
CREATE TABLE instance (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    instance_id   TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

INSERT INTO instance (id, instance_id, created_at_ms)
VALUES (1, lower(hex(randomblob(8))), CAST(strftime('%s', 'now') AS INTEGER) * 1000);

-- The outbox learns which group a row carries: first_part_id is the first part the row was
-- composed from (0 for rows written directly, as every row was before). It joins the UNIQUE
-- key, so two groups can never collide on the transition they are filed under, while rows
-- written directly keep the old rule (one per transition, audience, channel and kind).
-- SQLite cannot change a UNIQUE constraint in place, so the table is rebuilt with its rows.
CREATE TABLE outbox_v7 (
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
    first_part_id      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (transition_id, audience, channel, kind, first_part_id)
) STRICT;

INSERT INTO outbox_v7
    (id, transition_id, audience, channel, kind, message_id, recipients, subject, body_text,
     body_html, status, attempts, created_at_ms, next_attempt_at_ms, last_attempt_at_ms,
     last_error, delivered_at_ms, detail, given_up_at_ms)
SELECT id, transition_id, audience, channel, kind, message_id, recipients, subject, body_text,
       body_html, status, attempts, created_at_ms, next_attempt_at_ms, last_attempt_at_ms,
       last_error, delivered_at_ms, detail, given_up_at_ms
FROM outbox;

DROP TABLE outbox;
ALTER TABLE outbox_v7 RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (status, next_attempt_at_ms);

-- announcement_parts: one e-mail's worth of news about one transition for one audience,
-- waiting for its group. Written in the transition's own transaction (so nothing is lost
-- between deciding and grouping); turned into ONE outbox row per group, in one transaction
-- that also marks every part it took `sent` (so a crash composes a group once or not at
-- all). A customer part about a change that undid itself within its customer_delay is
-- marked `suppressed` with the reason instead, and kept for the record.
--
-- ready_at_ms: when the part may join a group (the transition's time, plus customer_delay
--   for customers). window_ms: the group_window in force when it was written (0: alone, at
--   once). service_name: for the grouped message's subject.
CREATE TABLE announcement_parts (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    transition_id     INTEGER NOT NULL REFERENCES transitions (id),
    audience          TEXT NOT NULL,
    kind              TEXT NOT NULL,
    service_name      TEXT NOT NULL,
    recipients        TEXT NOT NULL, -- JSON array of strings
    subject           TEXT NOT NULL,
    body_text         TEXT NOT NULL,
    body_html         TEXT,
    created_at_ms     INTEGER NOT NULL,
    ready_at_ms       INTEGER NOT NULL,
    window_ms         INTEGER NOT NULL,
    status            TEXT NOT NULL DEFAULT 'waiting'
                      CHECK (status IN ('waiting', 'sent', 'suppressed')),
    outbox_id         INTEGER REFERENCES outbox (id),
    suppressed_reason TEXT,
    decided_at_ms     INTEGER,
    UNIQUE (transition_id, audience, kind)
) STRICT;

CREATE INDEX announcement_parts_waiting ON announcement_parts (status, audience);
