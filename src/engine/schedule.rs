//! `spec.schedules` of Access Monitoring Rules: a rule with schedules applies
//! only to requests created inside one of their shifts.
//!
//! Teleport's rules, kept here: a shift is a weekday (English name, exact
//! case, as Go prints it), a start and an end (`HH:MM`, Go's `15:04` layout:
//! one- or two-digit hour 0–23, two-digit minute), both ends included, read in
//! the schedule's IANA time zone (empty: UTC) on the day of the timestamp; a
//! shift never spans midnight. A schedule without shifts never matches. An
//! invalid zone or time is an error, and the rule is then skipped; upstream
//! surfaces such an error or not depending on map order, this module always
//! does, so a broken rule is reported rather than matching by chance.

use std::collections::BTreeMap;
use std::time::SystemTime;

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;

use crate::model::Schedule;

/// Whether `at` falls inside any of `schedules` (false when there are none).
pub fn in_schedules(schedules: &BTreeMap<String, Schedule>, at: SystemTime) -> Result<bool, String> {
    let ts = Timestamp::try_from(at).map_err(|e| format!("creation time out of range: {e}"))?;
    let mut any = false;
    for (name, s) in schedules {
        any |= in_schedule(s, ts).map_err(|e| format!("schedule {name:?}: {e}"))?;
    }
    Ok(any)
}

fn in_schedule(s: &Schedule, ts: Timestamp) -> Result<bool, String> {
    let Some(tz_name) = &s.timezone else { return Ok(false) };
    if s.shifts.is_empty() {
        return Ok(false);
    }
    let tz = zone(tz_name)?;
    let local = ts.to_zoned(tz.clone());
    let weekday = weekday_name(local.weekday());
    for shift in s.shifts.iter().filter(|x| x.weekday == weekday) {
        let (sh, sm) = clock(&shift.start).map_err(|e| format!("invalid start time {:?}: {e}", shift.start))?;
        let (eh, em) = clock(&shift.end).map_err(|e| format!("invalid end time {:?}: {e}", shift.end))?;
        let at = |h: i8, m: i8| {
            local.date().at(h, m, 0, 0).to_zoned(tz.clone()).map(|z| z.timestamp()).map_err(|e| e.to_string())
        };
        if at(sh, sm)? <= ts && ts <= at(eh, em)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The IANA zone `name`, from the tz database compiled into the binary; ""
/// and "UTC" are UTC, as with Go's `time.LoadLocation`.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    if name.is_empty() || name == "UTC" {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| format!("unknown time zone {name:?}"))
}

/// Go's `time.Weekday.String()`.
pub fn weekday_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Monday => "Monday",
        Weekday::Tuesday => "Tuesday",
        Weekday::Wednesday => "Wednesday",
        Weekday::Thursday => "Thursday",
        Weekday::Friday => "Friday",
        Weekday::Saturday => "Saturday",
        Weekday::Sunday => "Sunday",
    }
}

/// `HH:MM` as Go's `15:04` layout reads it.
pub fn clock(s: &str) -> Result<(i8, i8), String> {
    let (h, m) = s.split_once(':').ok_or("expected HH:MM")?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || h.len() > 2 {
        return Err("expected HH:MM".into());
    }
    if m.len() < 2 || !digits(&m[..2]) {
        return Err("expected HH:MM".into());
    }
    if m.len() > 2 {
        return Err(format!("extra text {:?}", &m[2..]));
    }
    let (h, m): (i8, i8) = (h.parse().map_err(|_| "expected HH:MM")?, m.parse().map_err(|_| "expected HH:MM")?);
    if h > 23 {
        return Err("hour out of range".into());
    }
    if m > 59 {
        return Err("minute out of range".into());
    }
    Ok((h, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Shift;
    use std::time::{Duration, UNIX_EPOCH};

    /// 2025-08-11T14:30:00Z, a Monday.
    const MONDAY_1430: u64 = 1_754_922_600;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn one(tz: &str, shifts: &[(&str, &str, &str)]) -> BTreeMap<String, Schedule> {
        let shifts = shifts
            .iter()
            .map(|(w, s, e)| Shift { weekday: w.to_string(), start: s.to_string(), end: e.to_string() })
            .collect();
        [("default".to_string(), Schedule { timezone: Some(tz.into()), shifts })].into()
    }

    #[test]
    fn shifts_match_inclusively_in_their_time_zone() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str, &'a str)], u64, bool);
        let cases: &[Case] = &[
            ("", &[("Monday", "14:00", "15:00")], MONDAY_1430, true),
            ("UTC", &[("Monday", "14:30", "14:30")], MONDAY_1430, true),
            ("", &[("Monday", "14:00", "14:29")], MONDAY_1430, false),
            // The end is HH:MM:00: half a minute later is outside.
            ("", &[("Monday", "14:00", "14:30")], MONDAY_1430 + 30, false),
            ("", &[("Tuesday", "00:00", "23:59")], MONDAY_1430, false),
            ("", &[("monday", "00:00", "23:59")], MONDAY_1430, false),
            ("", &[("Monday", "9:00", "23:59")], MONDAY_1430, true),
            // 14:30Z is 07:30 in Los Angeles (PDT).
            ("America/Los_Angeles", &[("Monday", "07:00", "08:00")], MONDAY_1430, true),
            ("America/Los_Angeles", &[("Monday", "14:00", "15:00")], MONDAY_1430, false),
            // 14:30Z is 00:30 Tuesday in Sydney (AEST).
            ("Australia/Sydney", &[("Tuesday", "00:00", "01:00")], MONDAY_1430, true),
            // Start after end matches nothing.
            ("", &[("Monday", "15:00", "14:00")], MONDAY_1430, false),
            ("", &[], MONDAY_1430, false),
        ];
        for (tz, shifts, t, want) in cases {
            assert_eq!(in_schedules(&one(tz, shifts), at(*t)), Ok(*want), "{tz} {shifts:?}");
        }
        assert_eq!(in_schedules(&BTreeMap::new(), at(MONDAY_1430)), Ok(false));
        let no_time: BTreeMap<String, Schedule> = [("x".to_string(), Schedule::default())].into();
        assert_eq!(in_schedules(&no_time, at(MONDAY_1430)), Ok(false));
    }

    #[test]
    fn any_schedule_may_match() {
        let mut s = one("", &[("Tuesday", "00:00", "23:59")]);
        s.extend(one("Europe/Lisbon", &[("Monday", "15:00", "16:00")]).into_values().map(|v| ("lisbon".to_string(), v)));
        assert_eq!(in_schedules(&s, at(MONDAY_1430)), Ok(true), "15:30 in Lisbon (WEST)");
    }

    #[test]
    fn bad_zones_and_times_are_errors() {
        for (tz, start, end, want) in [
            ("Mars/Olympus", "14:00", "15:00", "unknown time zone"),
            ("", "24:00", "23:59", "hour out of range"),
            ("", "14:60", "23:59", "minute out of range"),
            ("", "14:00", "15:00:00", "extra text"),
            ("", "1400", "15:00", "expected HH:MM"),
            ("", "14:0", "15:00", "expected HH:MM"),
        ] {
            let err = in_schedules(&one(tz, &[("Monday", start, end)]), at(MONDAY_1430)).unwrap_err();
            assert!(err.contains(want), "{tz} {start}-{end}: {err}");
        }
        // Times are only read on the matching weekday, as upstream.
        assert_eq!(in_schedules(&one("", &[("Friday", "99:99", "x")]), at(MONDAY_1430)), Ok(false));
    }
}
