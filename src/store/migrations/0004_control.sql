-- 0004: operator control. Drills with their timed reports, post-hoc reviews of automatic
-- transitions, and maintenance windows scheduled through the API.

-- One row per drill; `report` is the JSON of drill::Report, rewritten as steps finish.
CREATE TABLE drills (
    id             TEXT PRIMARY KEY,
    service        TEXT NOT NULL,
    mode           TEXT NOT NULL CHECK (mode IN ('live', 'dry_run')),
    actor          TEXT NOT NULL,
    reason         TEXT NOT NULL,
    ticket         TEXT,
    started_at_ms  INTEGER NOT NULL,
    deadline_ms    INTEGER NOT NULL,
    ended_at_ms    INTEGER,
    status         TEXT NOT NULL CHECK (status IN ('running', 'pass', 'fail', 'aborted')),
    report         TEXT NOT NULL
) STRICT;

CREATE INDEX drills_by_service ON drills (service, started_at_ms);

-- An operator's acknowledgement of one automatic transition's audit record. The review itself
-- is an audit record too (`review_audit_id`); this table only makes "pending" cheap to ask.
CREATE TABLE reviews (
    audit_id        INTEGER PRIMARY KEY REFERENCES audit (id),
    reviewer        TEXT NOT NULL,
    note            TEXT NOT NULL,
    at_ms           INTEGER NOT NULL,
    review_audit_id INTEGER NOT NULL REFERENCES audit (id)
) STRICT;

-- One-off maintenance windows scheduled through the API, added to the service's configured ones.
CREATE TABLE maintenance_schedule (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    service       TEXT NOT NULL,
    starts_at_ms  INTEGER NOT NULL,
    ends_at_ms    INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    actor         TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;
