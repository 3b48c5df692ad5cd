//! Announcements: render messages for a transition (pure), deliver them from the durable outbox.
