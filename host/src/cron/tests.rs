//! robfig/cron v3's own test cases (`spec_test.go`, `parser_test.go`,
//! `constantdelay_test.go`), for the standard five-field parser. Cases
//! written for robfig's seconds parser are included with their seconds
//! field dropped when it is `0` (what the standard parser fills in); those
//! with other seconds (`15/35 ...`) cannot be written in five fields.

use super::*;

/// A time as robfig's tests write them: `Mon Jul 9 14:45 2012`,
/// `Mon Jul 9 14:45:00.005 2012` or `2012-03-11T00:00:00-0500`, optionally
/// prefixed by `TZ=Zone ` (the location it is read in; UTC otherwise).
fn at(text: &str) -> Time {
    let (loc, value) = match text.strip_prefix("TZ=") {
        Some(rest) => {
            let (zone, value) = rest.split_once(' ').unwrap();
            (Location::named(zone).unwrap(), value)
        }
        None => (Location::Utc, text),
    };
    if let Ok(t) = chrono::DateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%z") {
        let offset = t.offset().local_minus_utc();
        let unix = t.timestamp();
        // Go's ParseInLocation keeps the location when the offset agrees.
        let loc = if loc.offset_at(unix) == offset {
            loc
        } else {
            Location::Fixed(offset)
        };
        return Time::new(unix, 0, loc);
    }
    // Go ignores the weekday name (one of robfig's cases has a wrong one:
    // "Tue Aug 1 2012" was a Wednesday), so it is dropped before parsing.
    let (_, without_weekday) = value.split_once(' ').unwrap();
    for layout in ["%b %e %H:%M %Y", "%b %e %H:%M:%S%.f %Y"] {
        if let Ok(wall) = chrono::NaiveDateTime::parse_from_str(without_weekday, layout) {
            use chrono::{Datelike, Timelike};
            let t = Time::date(
                wall.year(),
                wall.month().into(),
                wall.day().into(),
                wall.hour().into(),
                wall.minute().into(),
                wall.second().into(),
                loc,
            );
            return Time::new(t.unix(), wall.nanosecond(), loc);
        }
    }
    panic!("unreadable test time {text:?}");
}

fn parsed(spec: &str) -> Schedule {
    parse(spec).unwrap_or_else(|e| panic!("{spec:?} should parse: {e}"))
}

#[test]
fn activation() {
    let cases = [
        // Every fifteen minutes.
        ("Mon Jul 9 15:00 2012", "0/15 * * * *", true),
        ("Mon Jul 9 15:45 2012", "0/15 * * * *", true),
        ("Mon Jul 9 15:40 2012", "0/15 * * * *", false),
        // Every fifteen minutes, starting at 5 minutes.
        ("Mon Jul 9 15:05 2012", "5/15 * * * *", true),
        ("Mon Jul 9 15:20 2012", "5/15 * * * *", true),
        ("Mon Jul 9 15:50 2012", "5/15 * * * *", true),
        // Named months.
        ("Sun Jul 15 15:00 2012", "0/15 * * Jul *", true),
        ("Sun Jul 15 15:00 2012", "0/15 * * Jun *", false),
        // Everything set.
        ("Sun Jul 15 08:30 2012", "30 08 ? Jul Sun", true),
        ("Sun Jul 15 08:30 2012", "30 08 15 Jul ?", true),
        ("Mon Jul 16 08:30 2012", "30 08 ? Jul Sun", false),
        ("Mon Jul 16 08:30 2012", "30 08 15 Jul ?", false),
        // Predefined schedules.
        ("Mon Jul 9 15:00 2012", "@hourly", true),
        ("Mon Jul 9 15:04 2012", "@hourly", false),
        ("Mon Jul 9 15:00 2012", "@daily", false),
        ("Mon Jul 9 00:00 2012", "@daily", true),
        ("Mon Jul 9 00:00 2012", "@weekly", false),
        ("Sun Jul 8 00:00 2012", "@weekly", true),
        ("Sun Jul 8 01:00 2012", "@weekly", false),
        ("Sun Jul 8 00:00 2012", "@monthly", false),
        ("Sun Jul 1 00:00 2012", "@monthly", true),
        // Both day fields restricted: either may match.
        ("Sun Jul 15 00:00 2012", "* * 1,15 * Sun", true),
        ("Fri Jun 15 00:00 2012", "* * 1,15 * Sun", true),
        ("Wed Aug 1 00:00 2012", "* * 1,15 * Sun", true),
        ("Sun Jul 15 00:00 2012", "* * */10 * Sun", true),
        // One is a star: both must match.
        ("Sun Jul 15 00:00 2012", "* * * * Mon", false),
        ("Mon Jul 9 00:00 2012", "* * 1,15 * *", false),
        ("Sun Jul 15 00:00 2012", "* * 1,15 * *", true),
        ("Sun Jul 15 00:00 2012", "* * */2 * Sun", true),
    ];
    for (time, spec, expected) in cases {
        let when = at(time);
        let next = parsed(spec).next(when.add_seconds(-1));
        assert_eq!(next == Some(when), expected, "{spec:?} at {time}: {next:?}");
    }
}

#[test]
fn next() {
    let cases = [
        // Simple cases.
        (
            "Mon Jul 9 14:45 2012",
            "0/15 * * * *",
            "Mon Jul 9 15:00 2012",
        ),
        (
            "Mon Jul 9 14:59 2012",
            "0/15 * * * *",
            "Mon Jul 9 15:00 2012",
        ),
        (
            "Mon Jul 9 14:59:59 2012",
            "0/15 * * * *",
            "Mon Jul 9 15:00 2012",
        ),
        // Wrap around hours.
        (
            "Mon Jul 9 15:45 2012",
            "20-35/15 * * * *",
            "Mon Jul 9 16:20 2012",
        ),
        // Wrap around days.
        (
            "Mon Jul 9 23:46 2012",
            "*/15 * * * *",
            "Tue Jul 10 00:00 2012",
        ),
        (
            "Mon Jul 9 23:45 2012",
            "20-35/15 * * * *",
            "Tue Jul 10 00:20 2012",
        ),
        // Wrap around months.
        (
            "Mon Jul 9 23:35 2012",
            "0 0 9 Apr-Oct ?",
            "Thu Aug 9 00:00 2012",
        ),
        (
            "Mon Jul 9 23:35 2012",
            "0 0 */5 Apr,Aug,Oct Mon",
            "Tue Aug 1 00:00 2012",
        ),
        (
            "Mon Jul 9 23:35 2012",
            "0 0 */5 Oct Mon",
            "Mon Oct 1 00:00 2012",
        ),
        // Wrap around years.
        (
            "Mon Jul 9 23:35 2012",
            "0 0 * Feb Mon",
            "Mon Feb 4 00:00 2013",
        ),
        (
            "Mon Jul 9 23:35 2012",
            "0 0 * Feb Mon/2",
            "Fri Feb 1 00:00 2013",
        ),
        // Wrap around minute, hour, day, month, and year.
        (
            "Mon Dec 31 23:59:45 2012",
            "* * * * *",
            "Tue Jan 1 00:00:00 2013",
        ),
        // Leap year.
        (
            "Mon Jul 9 23:35 2012",
            "0 0 29 Feb ?",
            "Mon Feb 29 00:00 2016",
        ),
        // Daylight saving 2am EST (-5) -> 3am EDT (-4).
        (
            "2012-03-11T00:00:00-0500",
            "TZ=America/New_York 30 2 11 Mar ?",
            "2013-03-11T02:30:00-0400",
        ),
        // Hourly job.
        (
            "2012-03-11T00:00:00-0500",
            "TZ=America/New_York 0 * * * ?",
            "2012-03-11T01:00:00-0500",
        ),
        (
            "2012-03-11T01:00:00-0500",
            "TZ=America/New_York 0 * * * ?",
            "2012-03-11T03:00:00-0400",
        ),
        (
            "2012-03-11T03:00:00-0400",
            "TZ=America/New_York 0 * * * ?",
            "2012-03-11T04:00:00-0400",
        ),
        (
            "2012-03-11T04:00:00-0400",
            "TZ=America/New_York 0 * * * ?",
            "2012-03-11T05:00:00-0400",
        ),
        // Hourly job using CRON_TZ.
        (
            "2012-03-11T00:00:00-0500",
            "CRON_TZ=America/New_York 0 * * * ?",
            "2012-03-11T01:00:00-0500",
        ),
        (
            "2012-03-11T01:00:00-0500",
            "CRON_TZ=America/New_York 0 * * * ?",
            "2012-03-11T03:00:00-0400",
        ),
        (
            "2012-03-11T03:00:00-0400",
            "CRON_TZ=America/New_York 0 * * * ?",
            "2012-03-11T04:00:00-0400",
        ),
        (
            "2012-03-11T04:00:00-0400",
            "CRON_TZ=America/New_York 0 * * * ?",
            "2012-03-11T05:00:00-0400",
        ),
        // 1am nightly job.
        (
            "2012-03-11T00:00:00-0500",
            "TZ=America/New_York 0 1 * * ?",
            "2012-03-11T01:00:00-0500",
        ),
        (
            "2012-03-11T01:00:00-0500",
            "TZ=America/New_York 0 1 * * ?",
            "2012-03-12T01:00:00-0400",
        ),
        // 2am nightly job (skipped).
        (
            "2012-03-11T00:00:00-0500",
            "TZ=America/New_York 0 2 * * ?",
            "2012-03-12T02:00:00-0400",
        ),
        // Daylight saving 2am EDT (-4) -> 1am EST (-5).
        (
            "2012-11-04T00:00:00-0400",
            "TZ=America/New_York 30 2 04 Nov ?",
            "2012-11-04T02:30:00-0500",
        ),
        (
            "2012-11-04T01:45:00-0400",
            "TZ=America/New_York 30 1 04 Nov ?",
            "2012-11-04T01:30:00-0500",
        ),
        // Hourly job.
        (
            "2012-11-04T00:00:00-0400",
            "TZ=America/New_York 0 * * * ?",
            "2012-11-04T01:00:00-0400",
        ),
        (
            "2012-11-04T01:00:00-0400",
            "TZ=America/New_York 0 * * * ?",
            "2012-11-04T01:00:00-0500",
        ),
        (
            "2012-11-04T01:00:00-0500",
            "TZ=America/New_York 0 * * * ?",
            "2012-11-04T02:00:00-0500",
        ),
        // 1am nightly job (runs twice).
        (
            "2012-11-04T00:00:00-0400",
            "TZ=America/New_York 0 1 * * ?",
            "2012-11-04T01:00:00-0400",
        ),
        (
            "2012-11-04T01:00:00-0400",
            "TZ=America/New_York 0 1 * * ?",
            "2012-11-04T01:00:00-0500",
        ),
        (
            "2012-11-04T01:00:00-0500",
            "TZ=America/New_York 0 1 * * ?",
            "2012-11-05T01:00:00-0500",
        ),
        // 2am nightly job.
        (
            "2012-11-04T00:00:00-0400",
            "TZ=America/New_York 0 2 * * ?",
            "2012-11-04T02:00:00-0500",
        ),
        (
            "2012-11-04T02:00:00-0500",
            "TZ=America/New_York 0 2 * * ?",
            "2012-11-05T02:00:00-0500",
        ),
        // 3am nightly job.
        (
            "2012-11-04T00:00:00-0400",
            "TZ=America/New_York 0 3 * * ?",
            "2012-11-04T03:00:00-0500",
        ),
        (
            "2012-11-04T03:00:00-0500",
            "TZ=America/New_York 0 3 * * ?",
            "2012-11-05T03:00:00-0500",
        ),
        // The same, with the time (not the expression) in New York.
        (
            "TZ=America/New_York 2012-11-04T00:00:00-0400",
            "0 * * * ?",
            "2012-11-04T01:00:00-0400",
        ),
        (
            "TZ=America/New_York 2012-11-04T01:00:00-0400",
            "0 * * * ?",
            "2012-11-04T01:00:00-0500",
        ),
        (
            "TZ=America/New_York 2012-11-04T01:00:00-0500",
            "0 * * * ?",
            "2012-11-04T02:00:00-0500",
        ),
        (
            "TZ=America/New_York 2012-11-04T00:00:00-0400",
            "0 1 * * ?",
            "2012-11-04T01:00:00-0400",
        ),
        (
            "TZ=America/New_York 2012-11-04T01:00:00-0400",
            "0 1 * * ?",
            "2012-11-04T01:00:00-0500",
        ),
        (
            "TZ=America/New_York 2012-11-04T01:00:00-0500",
            "0 1 * * ?",
            "2012-11-05T01:00:00-0500",
        ),
        (
            "TZ=America/New_York 2012-11-04T00:00:00-0400",
            "0 2 * * ?",
            "2012-11-04T02:00:00-0500",
        ),
        (
            "TZ=America/New_York 2012-11-04T02:00:00-0500",
            "0 2 * * ?",
            "2012-11-05T02:00:00-0500",
        ),
        (
            "TZ=America/New_York 2012-11-04T00:00:00-0400",
            "0 3 * * ?",
            "2012-11-04T03:00:00-0500",
        ),
        (
            "TZ=America/New_York 2012-11-04T03:00:00-0500",
            "0 3 * * ?",
            "2012-11-05T03:00:00-0500",
        ),
        // Monthly job.
        (
            "TZ=America/New_York 2012-11-04T00:00:00-0400",
            "0 3 3 * ?",
            "2012-12-03T03:00:00-0500",
        ),
        // Midnight that does not exist (robfig issue 157).
        (
            "2018-10-17T05:00:00-0400",
            "TZ=America/Sao_Paulo 0 9 10 * ?",
            "2018-11-10T06:00:00-0500",
        ),
        (
            "2018-02-14T05:00:00-0500",
            "TZ=America/Sao_Paulo 0 9 22 * ?",
            "2018-02-22T07:00:00-0500",
        ),
    ];
    for (time, spec, expected) in cases {
        let next = parsed(spec).next(at(time));
        let expected = at(expected);
        assert_eq!(
            next.map(|t| (t.unix(), t.nanos())),
            Some((expected.unix(), 0)),
            "{spec:?} after {time}: got {}",
            next.map(|t| t.to_rfc3339()).unwrap_or_default()
        );
    }
}

#[test]
fn unsatisfiable_within_five_years() {
    for spec in ["0 0 30 Feb ?", "0 0 31 Apr ?", ", * * * *"] {
        assert_eq!(
            parsed(spec).next(at("Mon Jul 9 23:35 2012")),
            None,
            "{spec}"
        );
    }
}

#[test]
fn next_in_a_fixed_offset() {
    let cases = [
        (
            "2016-01-03T13:09:03+0530",
            "14 14 * * *",
            "2016-01-03T14:14:00+05:30",
        ),
        (
            "2016-01-03T04:09:03+0530",
            "14 14 * * ?",
            "2016-01-03T14:14:00+05:30",
        ),
        (
            "2016-01-03T14:09:03+0530",
            "14 14 * * *",
            "2016-01-03T14:14:00+05:30",
        ),
        (
            "2016-01-03T14:00:00+0530",
            "14 14 * * ?",
            "2016-01-03T14:14:00+05:30",
        ),
    ];
    for (time, spec, expected) in cases {
        let next = parsed(spec).next(at(time)).unwrap();
        assert_eq!(next.to_rfc3339(), expected, "{spec:?} after {time}");
    }
}

#[test]
fn errors() {
    for spec in ["xyz", "60 0 * * *", "0 60 * * *", "0 0 * * XYZ"] {
        assert!(parse(spec).is_err(), "{spec:?} should be refused");
    }
    // robfig issue 144: a zero step must not hang.
    assert!(parse("TZ=America/New_York 15/0 * * * *").is_err());
    let cases = [
        ("5 j * * *", "failed to parse int from"),
        ("@every Xm", "failed to parse duration"),
        ("@unrecognized", "unrecognized descriptor"),
        ("* * * *", "expected exactly 5 fields"),
        ("0 5 * * * *", "expected exactly 5 fields"),
        ("", "empty spec string"),
        (
            "TZ=Nowhere/Else 0 0 * * *",
            "provided bad location Nowhere/Else",
        ),
    ];
    for (spec, message) in cases {
        let why = parse(spec).unwrap_err().to_string();
        assert!(why.contains(message), "{spec:?}: {why}");
    }
}

fn test_bounds(min: u32, max: u32) -> Bounds {
    Bounds {
        min,
        max,
        names: &[],
    }
}

#[test]
fn ranges() {
    let cases: [(&str, u32, u32, u64); 11] = [
        ("5", 0, 7, 1 << 5),
        ("0", 0, 7, 1 << 0),
        ("7", 0, 7, 1 << 7),
        ("5-5", 0, 7, 1 << 5),
        ("5-6", 0, 7, 1 << 5 | 1 << 6),
        ("5-7", 0, 7, 1 << 5 | 1 << 6 | 1 << 7),
        ("5-6/2", 0, 7, 1 << 5),
        ("5-7/2", 0, 7, 1 << 5 | 1 << 7),
        ("5-7/1", 0, 7, 1 << 5 | 1 << 6 | 1 << 7),
        ("*", 1, 3, 1 << 1 | 1 << 2 | 1 << 3 | STAR),
        ("*/2", 1, 3, 1 << 1 | 1 << 3),
    ];
    for (expr, min, max, expected) in cases {
        assert_eq!(range(expr, &test_bounds(min, max)), Ok(expected), "{expr}");
    }
    let errors = [
        ("5--5", 0, 0, "too many hyphens"),
        ("jan-x", 0, 0, "failed to parse int from"),
        ("2-x", 1, 5, "failed to parse int from"),
        ("*/-12", 0, 0, "negative number"),
        ("*//2", 0, 0, "too many slashes"),
        ("1", 3, 5, "below minimum"),
        ("6", 3, 5, "above maximum"),
        ("5-3", 3, 5, "beyond end of range"),
        ("*/0", 0, 0, "should be a positive number"),
    ];
    for (expr, min, max, message) in errors {
        let why = range(expr, &test_bounds(min, max)).unwrap_err().to_string();
        assert!(why.contains(message), "{expr}: {why}");
    }
}

#[test]
fn fields_and_bits() {
    let cases: [(&str, u64); 4] = [
        ("5", 1 << 5),
        ("5,6", 1 << 5 | 1 << 6),
        ("5,6,7", 1 << 5 | 1 << 6 | 1 << 7),
        ("1,5-7/2,3", 1 << 1 | 1 << 5 | 1 << 7 | 1 << 3),
    ];
    for (expr, expected) in cases {
        assert_eq!(field(expr, &test_bounds(1, 7)), Ok(expected), "{expr}");
    }
    assert_eq!(all(&MINUTES), 0xfff_ffff_ffff_ffff | STAR);
    assert_eq!(all(&HOURS), 0xff_ffff | STAR);
    assert_eq!(all(&DAYS_OF_MONTH), 0xffff_fffe | STAR);
    assert_eq!(all(&MONTHS), 0x1ffe | STAR);
    assert_eq!(all(&DAYS_OF_WEEK), 0x7f | STAR);
    assert_eq!(bits(0, 0, 1), 0x1);
    assert_eq!(bits(1, 1, 1), 0x2);
    assert_eq!(bits(1, 5, 2), 0x2a);
    assert_eq!(bits(1, 4, 2), 0xa);
}

fn every_fifth_minute(location: Option<Location>) -> Schedule {
    Schedule {
        kind: Kind::Fields(Fields {
            second: 1,
            minute: 1 << 5,
            hour: all(&HOURS),
            day_of_month: all(&DAYS_OF_MONTH),
            month: all(&MONTHS),
            day_of_week: all(&DAYS_OF_WEEK),
        }),
        location,
    }
}

fn midnight(location: Option<Location>) -> Schedule {
    Schedule {
        kind: Kind::Fields(Fields {
            second: 1,
            minute: 1,
            hour: 1,
            day_of_month: all(&DAYS_OF_MONTH),
            month: all(&MONTHS),
            day_of_week: all(&DAYS_OF_WEEK),
        }),
        location,
    }
}

#[test]
fn parsed_schedules() {
    let tokyo = Some(Location::named("Asia/Tokyo").unwrap());
    let utc = Some(Location::Utc);
    let annual = Schedule {
        kind: Kind::Fields(Fields {
            second: 1,
            minute: 1,
            hour: 1,
            day_of_month: 1 << 1,
            month: 1 << 1,
            day_of_week: all(&DAYS_OF_WEEK),
        }),
        location: None,
    };
    let cases = [
        ("5 * * * *", every_fifth_minute(None)),
        ("CRON_TZ=UTC  5 * * * *", every_fifth_minute(utc)),
        ("TZ=UTC  5 * * * *", every_fifth_minute(utc)),
        ("CRON_TZ=Asia/Tokyo 5 * * * *", every_fifth_minute(tokyo)),
        (
            "@every 5m",
            Schedule {
                kind: Kind::Every(300),
                location: None,
            },
        ),
        ("@midnight", midnight(None)),
        ("TZ=UTC  @midnight", midnight(utc)),
        ("TZ=Asia/Tokyo @midnight", midnight(tokyo)),
        ("@yearly", annual),
        ("@annually", annual),
    ];
    for (spec, expected) in cases {
        assert_eq!(parse(spec), Ok(expected), "{spec}");
    }
}

#[test]
fn constant_delay() {
    const MS: i64 = 1_000_000;
    const S: i64 = 1_000 * MS;
    const M: i64 = 60 * S;
    const H: i64 = 60 * M;
    let cases = [
        ("Mon Jul 9 14:45 2012", 15 * M + 50, "Mon Jul 9 15:00 2012"),
        ("Mon Jul 9 14:59 2012", 15 * M, "Mon Jul 9 15:14 2012"),
        ("Mon Jul 9 14:59:59 2012", 15 * M, "Mon Jul 9 15:14:59 2012"),
        ("Mon Jul 9 15:45 2012", 35 * M, "Mon Jul 9 16:20 2012"),
        ("Mon Jul 9 23:46 2012", 14 * M, "Tue Jul 10 00:00 2012"),
        ("Mon Jul 9 23:45 2012", 35 * M, "Tue Jul 10 00:20 2012"),
        (
            "Mon Jul 9 23:35:51 2012",
            44 * M + 24 * S,
            "Tue Jul 10 00:20:15 2012",
        ),
        (
            "Mon Jul 9 23:35:51 2012",
            25 * H + 44 * M + 24 * S,
            "Thu Jul 11 01:20:15 2012",
        ),
        (
            "Mon Jul 9 23:35 2012",
            91 * 24 * H + 25 * M,
            "Thu Oct 9 00:00 2012",
        ),
        (
            "Mon Dec 31 23:59:45 2012",
            15 * S,
            "Tue Jan 1 00:00:00 2013",
        ),
        ("Mon Jul 9 14:45 2012", 15 * M + 50, "Mon Jul 9 15:00 2012"),
        (
            "Mon Jul 9 14:45:00 2012",
            15 * MS,
            "Mon Jul 9 14:45:01 2012",
        ),
        (
            "Mon Jul 9 14:45:00.005 2012",
            15 * M,
            "Mon Jul 9 15:00 2012",
        ),
        (
            "Mon Jul 9 14:45:00.005 2012",
            15 * M + 50,
            "Mon Jul 9 15:00 2012",
        ),
    ];
    for (time, delay_ns, expected) in cases {
        // What `@every` builds from a duration.
        let schedule = Schedule {
            kind: Kind::Every((delay_ns / S).max(1)),
            location: None,
        };
        assert_eq!(
            schedule.next(at(time)),
            Some(at(expected)),
            "{time} + {delay_ns}ns"
        );
    }
    // And through the parser, sub-second durations round up to a second.
    assert_eq!(parsed("@every 15ms").kind, Kind::Every(1));
    assert_eq!(parsed("@every 1h30m10.9s").kind, Kind::Every(5_410));
}
