-- What a service holds beyond its state (pins, maintenance end, a drill's deadline, flap
-- history), as the JSON of failover::Holds: kept so a restart does not drop them.
CREATE TABLE service_holds (
    service       TEXT PRIMARY KEY,
    holds         TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;
