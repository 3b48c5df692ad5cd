//! Durable state: current state per service, every transition, and the announcement outbox (SQLite).
