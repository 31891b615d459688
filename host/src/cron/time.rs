//! Instants located in a time zone, with the calendar arithmetic that
//! robfig/cron's `Next` relies on (Go's `time.Date`, `AddDate`, `Add`,
//! `Truncate`), so fire times match robfig's exactly, including daylight
//! saving.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone, Timelike};

/// Where an instant is read as wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Utc,
    /// A fixed offset east of UTC, in seconds (an RFC 3339 `+05:30`).
    Fixed(i32),
    /// An IANA zone.
    Zone(chrono_tz::Tz),
}

impl Location {
    /// An IANA zone by name. `""` and `"UTC"` are UTC, as in Go's
    /// `time.LoadLocation`.
    pub fn named(name: &str) -> Result<Location, String> {
        match name {
            "" | "UTC" => Ok(Location::Utc),
            _ => name
                .parse::<chrono_tz::Tz>()
                .map(Location::Zone)
                .map_err(|_| format!("unknown time zone {name}")),
        }
    }

    /// The zone's offset from UTC, in seconds, at the Unix time `unix`.
    pub fn offset_at(&self, unix: i64) -> i32 {
        match self {
            Location::Utc => 0,
            Location::Fixed(offset) => *offset,
            Location::Zone(tz) => match DateTime::from_timestamp(unix, 0) {
                Some(utc) => tz
                    .offset_from_utc_datetime(&utc.naive_utc())
                    .fix()
                    .local_minus_utc(),
                None => 0,
            },
        }
    }

    /// The Unix time of a wall-clock time given as seconds since
    /// 1970-01-01T00:00:00 local. Like Go's `time.Date`: a wall time in a
    /// gap (spring forward) or an overlap (fall back) takes the offset in
    /// force at `local - offset_at(local)`.
    fn unix_of_local(&self, local: i64) -> i64 {
        let first = self.offset_at(local);
        if first == 0 {
            return local;
        }
        local - i64::from(self.offset_at(local - i64::from(first)))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Utc => f.write_str("UTC"),
            Location::Fixed(offset) => f.write_str(&format_offset(*offset, false)),
            Location::Zone(tz) => f.write_str(tz.name()),
        }
    }
}

/// Wall-clock fields of an instant in its location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i32,
    /// 1-12.
    pub month: u32,
    /// 1-31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 (Sunday) - 6.
    pub weekday: u32,
}

/// An instant (Unix seconds and nanoseconds) and the location it is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    unix: i64,
    nanos: u32,
    loc: Location,
}

impl Time {
    pub fn new(unix: i64, nanos: u32, loc: Location) -> Time {
        debug_assert!(nanos < 1_000_000_000);
        Time { unix, nanos, loc }
    }

    pub fn from_unix_ms(ms: i64, loc: Location) -> Time {
        Time::new(
            ms.div_euclid(1000),
            (ms.rem_euclid(1000) * 1_000_000) as u32,
            loc,
        )
    }

    /// Parses an RFC 3339 time; its offset becomes a fixed location.
    pub fn parse_rfc3339(text: &str) -> Result<Time, String> {
        let parsed = DateTime::parse_from_rfc3339(text)
            .map_err(|e| format!("invalid RFC 3339 time {text:?}: {e}"))?;
        let offset = parsed.offset().local_minus_utc();
        let loc = if offset == 0 && (text.ends_with('Z') || text.ends_with('z')) {
            Location::Utc
        } else {
            Location::Fixed(offset)
        };
        Ok(Time::new(
            parsed.timestamp(),
            parsed.timestamp_subsec_nanos(),
            loc,
        ))
    }

    pub fn unix(&self) -> i64 {
        self.unix
    }

    pub fn nanos(&self) -> u32 {
        self.nanos
    }

    pub fn unix_ms(&self) -> i64 {
        self.unix * 1000 + i64::from(self.nanos / 1_000_000)
    }

    pub fn location(&self) -> Location {
        self.loc
    }

    /// The same instant read in `loc`.
    pub fn in_location(&self, loc: Location) -> Time {
        Time { loc, ..*self }
    }

    pub fn offset(&self) -> i32 {
        self.loc.offset_at(self.unix)
    }

    pub fn civil(&self) -> Civil {
        let local = self.unix + i64::from(self.offset());
        let wall = DateTime::from_timestamp(local, 0)
            .unwrap_or_default()
            .naive_utc();
        Civil {
            year: wall.year(),
            month: wall.month(),
            day: wall.day(),
            hour: wall.hour(),
            minute: wall.minute(),
            second: wall.second(),
            weekday: wall.weekday().num_days_from_sunday(),
        }
    }

    /// Go's `time.Date(year, month, day, hour, min, sec, 0, loc)`: fields
    /// out of range carry over (month 13 is January of the next year, day
    /// 32 of July is the 1st of August).
    pub fn date(
        year: i32,
        month: i64,
        day: i64,
        hour: i64,
        minute: i64,
        second: i64,
        loc: Location,
    ) -> Time {
        let months = i64::from(year) * 12 + (month - 1);
        let (year, month0) = (months.div_euclid(12), months.rem_euclid(12));
        let first = NaiveDate::from_ymd_opt(year as i32, month0 as u32 + 1, 1)
            .unwrap_or_default()
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp();
        let local = first + (day - 1) * 86_400 + hour * 3_600 + minute * 60 + second;
        Time::new(loc.unix_of_local(local), 0, loc)
    }

    /// Go's `t.Add(d)` for whole seconds `d`.
    pub fn add_seconds(&self, seconds: i64) -> Time {
        Time {
            unix: self.unix + seconds,
            ..*self
        }
    }

    /// Go's `t.AddDate(0, months, days)`: the wall-clock fields moved and
    /// read again in the location.
    pub fn add_date(&self, months: i64, days: i64) -> Time {
        let c = self.civil();
        let t = Time::date(
            c.year,
            i64::from(c.month) + months,
            i64::from(c.day) + days,
            i64::from(c.hour),
            i64::from(c.minute),
            i64::from(c.second),
            self.loc,
        );
        Time {
            nanos: self.nanos,
            ..t
        }
    }

    /// Go's `t.Truncate(d)` for whole seconds `d` dividing an hour: rounds
    /// the instant (not the wall clock) down.
    pub fn truncate(&self, seconds: i64) -> Time {
        Time {
            unix: self.unix - self.unix.rem_euclid(seconds),
            nanos: 0,
            loc: self.loc,
        }
    }

    /// RFC 3339 with the location's offset (`Z` when it is zero, as Go
    /// prints), and fractional seconds only when there are any.
    pub fn to_rfc3339(&self) -> String {
        let c = self.civil();
        let mut text = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            c.year, c.month, c.day, c.hour, c.minute, c.second
        );
        if self.nanos != 0 {
            let fraction = format!("{:09}", self.nanos);
            text.push('.');
            text.push_str(fraction.trim_end_matches('0'));
        }
        text.push_str(&format_offset(self.offset(), true));
        text
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

fn format_offset(offset: i32, zulu: bool) -> String {
    if offset == 0 && zulu {
        return "Z".into();
    }
    let sign = if offset < 0 { '-' } else { '+' };
    let abs = offset.unsigned_abs();
    format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_york() -> Location {
        Location::named("America/New_York").unwrap()
    }

    #[test]
    fn date_carries_overflowing_fields() {
        let t = Time::date(2012, 13, 32, 0, 0, 0, Location::Utc);
        assert_eq!(t.to_rfc3339(), "2013-02-01T00:00:00Z");
        let t = Time::date(2013, 2, 29, 25, 0, 0, Location::Utc);
        assert_eq!(t.to_rfc3339(), "2013-03-02T01:00:00Z");
    }

    #[test]
    fn wall_times_in_a_gap_or_overlap_resolve_like_go() {
        // 02:30 does not exist on 2012-03-11 in New York; Go gives 01:30 EST.
        let gap = Time::date(2012, 3, 11, 2, 30, 0, new_york());
        assert_eq!(gap.to_rfc3339(), "2012-03-11T01:30:00-05:00");
        // 01:30 happens twice on 2012-11-04; Go takes the first (EDT).
        let overlap = Time::date(2012, 11, 4, 1, 30, 0, new_york());
        assert_eq!(overlap.to_rfc3339(), "2012-11-04T01:30:00-04:00");
    }

    #[test]
    fn rfc3339_keeps_the_offset() {
        let t = Time::parse_rfc3339("2016-01-03T14:09:03+05:30").unwrap();
        assert_eq!(t.location(), Location::Fixed(19_800));
        assert_eq!(t.civil().hour, 14);
        assert_eq!(t.to_rfc3339(), "2016-01-03T14:09:03+05:30");
        let t = Time::parse_rfc3339("2012-07-09T15:05:00.5Z").unwrap();
        assert_eq!(t.nanos(), 500_000_000);
        assert_eq!(t.to_rfc3339(), "2012-07-09T15:05:00.5Z");
    }

    #[test]
    fn unknown_zones_are_named() {
        assert_eq!(
            Location::named("Mars/Olympus").unwrap_err(),
            "unknown time zone Mars/Olympus"
        );
        assert_eq!(Location::named("").unwrap(), Location::Utc);
    }
}
