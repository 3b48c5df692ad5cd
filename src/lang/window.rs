//! Planned maintenance windows: one-off (start + duration) or recurring (a 5-field cron
//! expression in UTC + duration). Pure date arithmetic on `Timestamp`s; no clock reads.

use crate::clock::Timestamp;
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    text: String,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    day_star: bool,
    weekday_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

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
        let mut weekdays = field(f[4], "day-of-week", 0, 7, &WEEKDAYS)?;
        // 7 is Sunday too.
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Cron {
            text: text.to_string(),
            minutes: field(f[0], "minute", 0, 59, &[])?,
            hours: field(f[1], "hour", 0, 23, &[])?,
            days: field(f[2], "day-of-month", 1, 31, &[])?,
            months: field(f[3], "month", 1, 12, &MONTHS)?,
            weekdays,
            day_star: f[2] == "*",
            weekday_star: f[4] == "*",
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let d = self.days & (1 << day) != 0;
        let w = self.weekdays & (1 << weekday) != 0;
        match (self.day_star, self.weekday_star) {
            (true, true) => true,
            (true, false) => w,
            (false, true) => d,
            (false, false) => d || w,
        }
    }

    /// The first matching minute strictly after `t`, within the next five years.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        const MIN: i64 = 60_000;
        const DAY: i64 = 86_400_000;
        let first = (t.as_millis().div_euclid(MIN) + 1) * MIN;
        let mut day_start = first.div_euclid(DAY) * DAY;
        for _ in 0..(5 * 366) {
            let days = day_start / DAY;
            let (_, month, day) = civil_from_days(days);
            let weekday = (days + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday.
            if self.months & (1 << month) != 0 && self.day_matches(day, weekday) {
                for hour in 0..24 {
                    if self.hours & (1 << hour) == 0 {
                        continue;
                    }
                    for minute in 0..60 {
                        let at = day_start + (hour * 60 + minute) * MIN;
                        if at >= first && self.minutes & (1 << minute) != 0 {
                            return Some(Timestamp(at));
                        }
                    }
                }
            }
            day_start += DAY;
        }
        None
    }
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
