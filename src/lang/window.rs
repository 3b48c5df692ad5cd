//! Planned maintenance windows: one-off (start + duration) or recurring (a 5-field cron
//! expression in UTC + duration). Pure date arithmetic on `Timestamp`s; no clock reads.

use crate::clock::Timestamp;
use chrono::{TimeZone, Utc};
use std::fmt;
use std::time::Duration;

/// A planned maintenance window.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    pub schedule: Schedule,
    pub duration: Duration,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    Once(Timestamp),
    Cron(Cron),
}

impl Window {
    /// The end of the occurrence under way at `now`, if one is.
    pub fn active_until(&self, now: Timestamp) -> Option<Timestamp> {
        let dur = self.duration.as_millis() as i64;
        let start = match &self.schedule {
            Schedule::Once(start) => *start,
            // The latest start within `duration` before now, if any.
            Schedule::Cron(c) => c.next_after(Timestamp(now.as_millis() - dur))?,
        };
        let end = Timestamp(start.as_millis() + dur);
        (start <= now && now < end).then_some(end)
    }

    /// The first start strictly after `now`.
    pub fn next_start(&self, now: Timestamp) -> Option<Timestamp> {
        match &self.schedule {
            Schedule::Once(start) => (*start > now).then_some(*start),
            Schedule::Cron(c) => c.next_after(now),
        }
    }
}

/// A 5-field cron expression (minute hour day-of-month month day-of-week), evaluated in UTC.
/// Fields take `*`, numbers, ranges `a-b`, lists `a,b` and steps `*/n` or `a-b/n`; months and
/// days of the week also take names (`jan`, `sun`). As in cron, when both day fields are
/// restricted a day matches if either does.
///
/// The syntax is checked here, with a message per field, so a configuration accepts exactly
/// this documented subset (croner alone would also take `L`, `W`, `#`, `?` and seconds);
/// croner then finds the occurrences, which is the date arithmetic not worth keeping by hand.
#[derive(Clone)]
pub struct Cron {
    text: String,
    /// Boxed: croner's parsed form is some 250 bytes, and most windows are one-offs.
    schedule: Box<croner::Cron>,
}

/// Two expressions are the same when they were written the same: the schedule is a function
/// of the text (and croner's has no equality of its own).
impl PartialEq for Cron {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Cron {}

/// The text is the whole of it; croner's parsed form would only repeat it at length.
impl fmt::Debug for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cron").field(&self.text).finish()
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Checks one field of an expression; the values it matches, one bit per value.
fn field(text: &str, what: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            // Month names start at 1, weekday names at 0.
            return Ok(i as u32 + u32::from(what == "month"));
        }
        s.parse::<u32>()
            .map_err(|_| format!("{what}: \"{s}\" is not a number"))
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{what}: bad step \"{s}\""))?,
            ),
            None => (part, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if step > 1 { hi } else { v })
        };
        if a < lo || b > hi || a > b {
            return Err(format!("{what}: \"{part}\" is outside {lo}-{hi}"));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl Cron {
    pub fn parse(text: &str) -> Result<Cron, String> {
        let f: Vec<&str> = text.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!(
                "\"{text}\" needs 5 fields (minute hour day-of-month month day-of-week), has {}",
                f.len()
            ));
        }
        field(f[0], "minute", 0, 59, &[])?;
        field(f[1], "hour", 0, 23, &[])?;
        field(f[2], "day-of-month", 1, 31, &[])?;
        field(f[3], "month", 1, 12, &MONTHS)?;
        // 7 is Sunday too, as croner reads it.
        field(f[4], "day-of-week", 0, 7, &WEEKDAYS)?;
        let schedule = croner::Cron::new(&f.join(" "))
            .parse()
            .map_err(|e| format!("\"{text}\": {e}"))?;
        Ok(Cron {
            text: text.to_string(),
            schedule: Box::new(schedule),
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first matching minute strictly after `t`, within the next five years.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        const MIN: i64 = 60_000;
        const DAY: i64 = 86_400_000;
        // The search starts at the minute after `t`'s, like cron; croner looks from the second
        // after the one it is given, so give it `t`'s whole second.
        let first = (t.as_millis().div_euclid(MIN) + 1) * MIN;
        let horizon = first.div_euclid(DAY) * DAY + 5 * 366 * DAY;
        let from = Utc
            .timestamp_millis_opt(t.as_millis().div_euclid(1000) * 1000)
            .single()?;
        let next = self.schedule.find_next_occurrence(&from, false).ok()?;
        let at = next.timestamp_millis();
        (at < horizon).then_some(Timestamp(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> Timestamp {
        let t = humantime::parse_rfc3339(rfc3339).expect("timestamp");
        let ms = t
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after epoch")
            .as_millis();
        Timestamp(ms as i64)
    }

    fn next(expr: &str, after: &str) -> String {
        let c = Cron::parse(expr).expect(expr);
        c.next_after(at(after)).expect("a next time").rfc3339()
    }

    #[test]
    fn next_matching_minutes() {
        assert_eq!(
            next("0 3 * * sun", "2026-11-28T17:00:00Z"),
            "2026-11-29T03:00:00.000Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-11-28T17:01:30Z"),
            "2026-11-28T17:15:00.000Z"
        );
        assert_eq!(
            next("30 2 1 jan *", "2026-11-28T00:00:00Z"),
            "2027-01-01T02:30:00.000Z"
        );
        assert_eq!(
            next("0 0 29 feb *", "2026-03-01T00:00:00Z"),
            "2028-02-29T00:00:00.000Z"
        );
        assert_eq!(
            next("0 12 * * 1-5", "2026-11-28T13:00:00Z"),
            "2026-11-30T12:00:00.000Z"
        );
        assert_eq!(
            next("0 0 * * 7", "2026-11-28T13:00:00Z"),
            "2026-11-29T00:00:00.000Z"
        );
        // Strictly after: a matching instant is not its own next.
        assert_eq!(
            next("0 3 * * *", "2026-11-29T03:00:00Z"),
            "2026-11-30T03:00:00.000Z"
        );
    }

    /// A date that never comes (the 30th of February) has no next occurrence, found quickly:
    /// a window on it is simply never active.
    #[test]
    fn a_date_that_never_comes_has_no_next() {
        let never = Cron::parse("0 0 30 feb *").expect("valid syntax");
        let started = std::time::Instant::now();
        assert_eq!(never.next_after(at("2026-11-28T00:00:00Z")), None);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn both_day_fields_restricted_means_either() {
        // The 1st of the month or any Monday, whichever comes first.
        assert_eq!(
            next("0 0 1 * mon", "2026-11-28T00:00:00Z"),
            "2026-11-30T00:00:00.000Z"
        );
        assert_eq!(
            next("0 0 1 * mon", "2026-11-30T01:00:00Z"),
            "2026-12-01T00:00:00.000Z"
        );
    }

    /// Whether a minute (its start, in ms) matches `expr`, read straight from the documented
    /// rules: each field's set of values; either day field when both are restricted.
    fn rules(expr: &str) -> impl Fn(i64) -> bool {
        use chrono::{Datelike, Timelike};
        let f: Vec<&str> = expr.split_whitespace().collect();
        let bits =
            |i: usize, what, lo, hi, names: &[&str]| field(f[i], what, lo, hi, names).unwrap();
        let mut weekdays = bits(4, "day-of-week", 0, 7, &WEEKDAYS);
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        let (minutes, hours) = (bits(0, "minute", 0, 59, &[]), bits(1, "hour", 0, 23, &[]));
        let days = bits(2, "day-of-month", 1, 31, &[]);
        let months = bits(3, "month", 1, 12, &MONTHS);
        let (day_star, weekday_star) = (f[2] == "*", f[4] == "*");
        move |ms| {
            let t = Utc.timestamp_millis_opt(ms).single().unwrap();
            let has = |set: u64, v: u32| set & (1 << v) != 0;
            let day = has(days, t.day());
            let weekday = has(weekdays, t.weekday().num_days_from_sunday());
            let day_ok = match (day_star, weekday_star) {
                (true, true) => true,
                (true, false) => weekday,
                (false, true) => day,
                (false, false) => day || weekday,
            };
            day_ok && has(minutes, t.minute()) && has(hours, t.hour()) && has(months, t.month())
        }
    }

    /// croner finds what the rules say, minute by minute: the first matching minute strictly
    /// after the start, for every shape of field the syntax allows.
    #[test]
    fn croner_finds_the_minute_the_rules_name() {
        let exprs = [
            "0 3 * * sun",
            "*/15 * * * *",
            "5/20 1-3 * * *",
            "0 12 * * 1-5",
            "0 0 * * 7",
            "30 2 1,15 * *",
            "0 0 1 * mon",
            "0 6 13 * fri",
            "45 23 * mar,nov sat",
            "0 0 31 * *",
            "10-20/5 */6 2-9/3 * *",
            "0 9 * feb-apr 0,3",
        ];
        let starts = [
            "2026-11-28T17:01:30Z",
            "2026-12-31T23:59:59Z",
            "2027-02-27T06:00:00Z",
            "2028-02-28T12:34:56Z",
        ];
        const MIN: i64 = 60_000;
        for expr in exprs {
            let cron = Cron::parse(expr).expect(expr);
            let matches = rules(expr);
            for start in starts {
                let t = at(start);
                let first = (t.as_millis().div_euclid(MIN) + 1) * MIN;
                let expected = (0..120 * 1440)
                    .map(|i| first + i * MIN)
                    .find(|&m| matches(m));
                let expected = expected.expect("every expression here matches within 120 days");
                assert_eq!(
                    cron.next_after(t),
                    Some(Timestamp(expected)),
                    "{expr} after {start}"
                );
            }
        }
    }

    #[test]
    fn nonsense_is_rejected_with_the_reason() {
        let err = |e: &str| Cron::parse(e).expect_err(e);
        assert_eq!(
            err("0 3 * *"),
            "\"0 3 * *\" needs 5 fields (minute hour day-of-month month day-of-week), has 4"
        );
        assert_eq!(err("60 3 * * *"), "minute: \"60\" is outside 0-59");
        assert_eq!(
            err("0 3 * * funday"),
            "day-of-week: \"funday\" is not a number"
        );
        assert_eq!(err("*/0 * * * *"), "minute: bad step \"0\"");
        assert_eq!(err("0 5-2 * * *"), "hour: \"5-2\" is outside 0-23");
    }

    #[test]
    fn windows_are_active_for_their_duration() {
        let weekly = Window {
            schedule: Schedule::Cron(Cron::parse("0 3 * * sun").expect("cron")),
            duration: Duration::from_secs(1800),
            reason: "patching".into(),
        };
        assert_eq!(weekly.active_until(at("2026-11-29T02:59:59Z")), None);
        assert_eq!(
            weekly.active_until(at("2026-11-29T03:00:00Z")),
            Some(at("2026-11-29T03:30:00Z"))
        );
        assert_eq!(
            weekly.active_until(at("2026-11-29T03:29:59Z")),
            Some(at("2026-11-29T03:30:00Z"))
        );
        assert_eq!(weekly.active_until(at("2026-11-29T03:30:00Z")), None);
        assert_eq!(
            weekly.next_start(at("2026-11-29T03:10:00Z")),
            Some(at("2026-12-06T03:00:00Z"))
        );
        let once = Window {
            schedule: Schedule::Once(at("2026-12-05T02:00:00Z")),
            duration: Duration::from_secs(7200),
            reason: "upgrade".into(),
        };
        assert_eq!(
            once.active_until(at("2026-12-05T03:00:00Z")),
            Some(at("2026-12-05T04:00:00Z"))
        );
        assert_eq!(once.next_start(at("2026-12-05T03:00:00Z")), None);
    }
}
