-- 0009: a drill may end `interrupted` (a real outage ended it: a check of the service went
-- down during it). SQLite cannot change a CHECK constraint in place, so the table is rebuilt
-- with its rows.

CREATE TABLE drills_v9 (
    id             TEXT PRIMARY KEY,
    service        TEXT NOT NULL,
    mode           TEXT NOT NULL CHECK (mode IN ('live', 'dry_run')),
    actor          TEXT NOT NULL,
    reason         TEXT NOT NULL,
    ticket         TEXT,
    started_at_ms  INTEGER NOT NULL,
    deadline_ms    INTEGER NOT NULL,
    ended_at_ms    INTEGER,
    status         TEXT NOT NULL
                   CHECK (status IN ('running', 'pass', 'fail', 'aborted', 'interrupted')),
    report         TEXT NOT NULL
) STRICT;

INSERT INTO drills_v9
    (id, service, mode, actor, reason, ticket, started_at_ms, deadline_ms, ended_at_ms, status,
     report)
SELECT id, service, mode, actor, reason, ticket, started_at_ms, deadline_ms, ended_at_ms, status,
       report
FROM drills;

DROP TABLE drills;
ALTER TABLE drills_v9 RENAME TO drills;
CREATE INDEX drills_by_service ON drills (service, started_at_ms);
