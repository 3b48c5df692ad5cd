-- 0012: the Slack thread of each service's open incident. A bot's first message about an
-- incident opens a thread; its `ts` is kept here so every later message about the same
-- incident (after a restart too) is posted as a reply with `thread_ts`, and the row is
-- deleted when the incident ends, so the next incident opens a thread of its own.
-- The channel is kept with it: a thread belongs to one channel, and after the channel is
-- changed the old thread is not replied to.

CREATE TABLE chat_threads (
    service       TEXT PRIMARY KEY,
    channel       TEXT NOT NULL,
    ts            TEXT NOT NULL,
    opened_at_ms  INTEGER NOT NULL
) STRICT;
