//! Cron behaviour against the examples in `tests/data`: expected next fire
//! times (with their offsets) and expressions robfig/cron v3 refuses. The
//! same examples go through `scriptbox cron next` in `host/tests/cli.rs`.

use scriptbox::cron::{Location, Time, parse};

fn data(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn next_fire_times_match_the_examples() {
    let mut checked = 0;
    for line in data("cron-examples.tsv").lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let columns: Vec<&str> = line.split('\t').collect();
        let (expr, after, expected) = (columns[0], columns[1], columns[2]);
        let mut start = Time::parse_rfc3339(after).unwrap();
        if let Some(zone) = columns.get(3) {
            start = start.in_location(Location::named(zone).unwrap());
        }
        let schedule = parse(expr).unwrap_or_else(|e| panic!("{expr:?}: {e}"));
        let next = schedule.next(start).map(|t| t.to_rfc3339());
        let expected = (expected != "0001-01-01T00:00:00Z").then(|| expected.to_owned());
        assert_eq!(next, expected, "{expr:?} after {after}");
        checked += 1;
    }
    assert!(checked >= 19, "only {checked} examples read");
}

#[test]
fn invalid_expressions_are_refused() {
    let mut checked = 0;
    for expr in data("cron-invalid-examples.txt").lines() {
        if expr.starts_with('#') || expr.is_empty() {
            continue;
        }
        let error = parse(expr).expect_err(expr);
        assert!(!error.to_string().is_empty());
        checked += 1;
    }
    assert!(checked >= 13, "only {checked} examples read");
}

#[test]
fn error_messages_say_what_is_wrong() {
    let cases = [
        ("xyz", "expected exactly 5 fields, found 1: [xyz]"),
        ("0 0 * 13 *", "end of range (13) above maximum (12): 13"),
        ("0 0 * * sun-7", "end of range (7) above maximum (6): sun-7"),
        (
            "0 0 * Dec-Jan *",
            "beginning of range (12) beyond end of range (1): Dec-Jan",
        ),
        (
            "0 0 * * ?/0",
            "step of range should be a positive number: ?/0",
        ),
        (
            "@every 1",
            "failed to parse duration @every 1: time: missing unit in duration \"1\"",
        ),
        ("@ every 1h", "unrecognized descriptor: @ every 1h"),
    ];
    for (expr, message) in cases {
        assert_eq!(parse(expr).unwrap_err().to_string(), message, "{expr:?}");
    }
}

#[test]
fn sunday_is_zero_and_names_are_case_insensitive() {
    let start = Time::parse_rfc3339("2012-07-09T00:00:00Z").unwrap(); // a Monday
    for expr in ["0 0 * * 0", "0 0 * * SUN", "0 0 * * sun", "0 0 * * Sun"] {
        let next = parse(expr).unwrap().next(start).unwrap();
        assert_eq!(next.to_rfc3339(), "2012-07-15T00:00:00Z", "{expr}");
    }
    assert!(parse("0 0 * * 7").is_err());
}

#[test]
fn repeated_local_hours_fire_twice_and_skipped_ones_never() {
    let schedule = parse("CRON_TZ=Europe/Berlin 30 2 * * *").unwrap();
    // 2012-03-25: 02:00-03:00 does not exist in Berlin; 2012-10-28: it happens twice.
    let spring = Time::parse_rfc3339("2012-03-24T12:00:00Z").unwrap();
    let berlin = Location::named("Europe/Berlin").unwrap();
    let in_berlin = |after: Time, count: usize| -> Vec<String> {
        schedule
            .upcoming(after.in_location(berlin), count)
            .iter()
            .map(Time::to_rfc3339)
            .collect()
    };
    let times = in_berlin(spring, 2);
    assert_eq!(
        times,
        ["2012-03-26T02:30:00+02:00", "2012-03-27T02:30:00+02:00"]
    );
    let autumn = Time::parse_rfc3339("2012-10-27T12:00:00Z").unwrap();
    let times = in_berlin(autumn, 3);
    assert_eq!(
        times,
        [
            "2012-10-28T02:30:00+02:00",
            "2012-10-28T02:30:00+01:00",
            "2012-10-29T02:30:00+01:00"
        ]
    );
}
