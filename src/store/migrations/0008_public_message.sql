-- 0008: what customers may read about an operator's change, kept apart from the internal reason.
--
-- transitions.public_message: the `public_message` of the command that caused the transition
--   (NULL when none was given; public text then comes from templates only).
-- maintenance_schedule.public_message: the same for a window scheduled through the API; the
--   status page and feeds show it (or a template's words), never the window's `reason`.

ALTER TABLE transitions ADD COLUMN public_message TEXT;
ALTER TABLE maintenance_schedule ADD COLUMN public_message TEXT;
