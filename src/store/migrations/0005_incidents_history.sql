-- 0005: incidents for the status page and the downsampled probe history behind its uptime bars.
-- Incidents are opened and moved on by transitions, in the transition's own transaction
-- (Store::commit_transition), so a crash can never keep a transition and lose its incident;
-- operators add updates through the API. Timestamps are milliseconds since the epoch (UTC).

CREATE TABLE incidents (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    public_id        TEXT NOT NULL UNIQUE, -- the 12-character id the JSON and the API use
    service          TEXT NOT NULL,
    name             TEXT NOT NULL,
    status           TEXT NOT NULL
        CHECK (status IN ('investigating', 'identified', 'monitoring', 'resolved', 'postmortem')),
    impact           TEXT NOT NULL
        CHECK (impact IN ('none', 'minor', 'major', 'critical', 'maintenance')),
    transition_id    INTEGER REFERENCES transitions (id), -- the transition that opened it
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL,
    started_at_ms    INTEGER NOT NULL,
    monitoring_at_ms INTEGER,
    resolved_at_ms   INTEGER -- NULL while the incident is open
) STRICT;

CREATE INDEX incidents_open_by_service ON incidents (service, resolved_at_ms, id);

CREATE TABLE incident_updates (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id          INTEGER NOT NULL REFERENCES incidents (id),
    status               TEXT NOT NULL,
    body                 TEXT NOT NULL,
    actor                TEXT NOT NULL, -- 'system' or the operator's token name
    transition_id        INTEGER REFERENCES transitions (id), -- NULL for operator updates
    old_component_status TEXT NOT NULL,
    new_component_status TEXT NOT NULL,
    created_at_ms        INTEGER NOT NULL
) STRICT;

CREATE INDEX incident_updates_by_incident ON incident_updates (incident_id, id);

-- Probe outcomes of a service's primary checks, aggregated per time bucket: 5-minute buckets
-- (resolution_s = 300, kept two days, for the response-time sparkline) and days
-- (resolution_s = 86400, kept 90 days, for the uptime bars). Written in batches by
-- history::run, never once per probe.
CREATE TABLE probe_history (
    service        TEXT NOT NULL,
    resolution_s   INTEGER NOT NULL CHECK (resolution_s IN (300, 86400)),
    start_ms       INTEGER NOT NULL,
    ok             INTEGER NOT NULL,
    total          INTEGER NOT NULL,
    latency_sum_ms INTEGER NOT NULL,
    latency_max_ms INTEGER NOT NULL,
    PRIMARY KEY (service, resolution_s, start_ms)
) STRICT, WITHOUT ROWID;
