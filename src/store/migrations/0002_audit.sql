-- 0002: the tamper-evident audit log (see src/audit.rs for the record and the hash chain).
-- A general ledger: `kind` is 'transition' (one per transitions row, written in the same
-- transaction) or 'operator_action'; fields that do not apply to a kind are NULL or empty.
-- Rows from before this migration are backfilled by the Rust step of migration 2.

CREATE TABLE audit (
    id             INTEGER PRIMARY KEY AUTOINCREMENT, -- ids are never reused: a gap means a deletion
    kind           TEXT NOT NULL,
    at_ms          INTEGER NOT NULL,
    node           TEXT NOT NULL,
    actor          TEXT NOT NULL,
    service        TEXT,
    from_state     TEXT,
    to_state       TEXT,
    cause          TEXT,
    reason         TEXT NOT NULL,
    evidence       TEXT NOT NULL, -- JSON array of strings
    routes_before  TEXT NOT NULL, -- JSON object: route id -> target
    routes_after   TEXT NOT NULL, -- JSON object: route id -> target
    config_version TEXT NOT NULL,
    transition_id  INTEGER UNIQUE REFERENCES transitions (id),
    detail         TEXT NOT NULL, -- canonical JSON object, kind-specific
    prev_hash      TEXT NOT NULL,
    hash           TEXT NOT NULL
) STRICT;

CREATE INDEX audit_by_time ON audit (at_ms);

-- Append-only, enforced: the daemon never updates or deletes a record, and neither can a
-- careless tool. (A determined editor can drop these triggers; `audit verify` still sees it.)
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only');
END;
