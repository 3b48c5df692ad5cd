-- 0011: records authenticated with a key kept outside the database, and the configuration
-- history (see src/audit.rs and src/store/config_versions.rs).

-- The key's public id and the HMAC-SHA-256 of the record's hash; both NULL on a record
-- written without a key (every record before this migration).
ALTER TABLE audit ADD COLUMN key_id TEXT;
ALTER TABLE audit ADD COLUMN mac TEXT;

-- Every configuration version that was loaded (in force or rejected), with its files byte
-- for byte. `files` is the JSON list of reads in load order ({path, sha256}); `contents`
-- maps each sha256 to the file's text (or {"base64": ...} for bytes that are not UTF-8), so
-- the SHA-256 of the reads' bytes in order is `version` again unless `redacted` names a
-- secret that was blanked out before storing.
CREATE TABLE config_versions (
    version          TEXT PRIMARY KEY,
    first_seen_at_ms INTEGER NOT NULL,
    files            TEXT NOT NULL,
    contents         TEXT NOT NULL,
    redacted         TEXT NOT NULL -- JSON array of what was blanked out, usually []
) STRICT;

-- Each load of a configuration and its result: applied at start or by a reload, or rejected
-- with the loader's diagnostics. A reload's row points at its audit record.
CREATE TABLE config_loads (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    version     TEXT NOT NULL REFERENCES config_versions (version),
    at_ms       INTEGER NOT NULL,
    trigger     TEXT NOT NULL, -- 'start' | 'reload'
    actor       TEXT NOT NULL,
    result      TEXT NOT NULL CHECK (result IN ('applied', 'rejected')),
    diagnostics TEXT NOT NULL, -- JSON array of strings (warnings when applied)
    audit_id    INTEGER
) STRICT;

CREATE INDEX config_loads_by_version ON config_loads (version, at_ms);
