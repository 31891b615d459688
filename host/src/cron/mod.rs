//! Cron expressions with the semantics of robfig/cron v3's `ParseStandard`
//! and `Schedule.Next`, which is the contract scripts are written against.
//!
//! The `cron` crate does not fit that contract (it wants a seconds field,
//! numbers Sunday 1 and ANDs the two day fields), so this module implements
//! robfig's parser and matcher directly:
//!
//! - five fields (minute, hour, day of month, month, day of week), each a
//!   comma list of `*`/`?`, `N`, `N-M`, optionally `/step`; names `JAN`-`DEC`
//!   and `SUN`-`SAT` in any case; Sunday is `0` only; ranges never wrap;
//! - if either day field starts with a star, both must match, otherwise
//!   either may;
//! - descriptors `@yearly @annually @monthly @weekly @daily @midnight
//!   @hourly` and `@every <Go duration>`;
//! - a `CRON_TZ=Zone ` or `TZ=Zone ` prefix; without one, times are read in
//!   the location of the time given to [`Schedule::next`].
//!
//! [`Schedule::next`] returns the first activation strictly after a time, in
//! that time's location, or `None` when there is none within five years.
//! Wall times skipped by daylight saving do not fire; repeated ones fire
//! twice.

mod duration;
mod time;

use std::fmt;

pub use duration::parse_go_duration;
pub use time::{Civil, Location, Time};

/// Why an expression was refused; the text matches robfig's errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError(String);

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CronError {}

fn error(message: impl Into<String>) -> CronError {
    CronError(message.into())
}

/// Set in a field parsed from `*` or `?` (without a step above 1); the
/// day-of-month / day-of-week rule looks at it.
const STAR: u64 = 1 << 63;

/// The bits a five-field expression matches, one per allowed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub second: u64,
    pub minute: u64,
    pub hour: u64,
    pub day_of_month: u64,
    pub month: u64,
    pub day_of_week: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fields(Fields),
    /// `@every`: a whole number of seconds, at least one.
    Every(i64),
}

/// A parsed expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub kind: Kind,
    /// The `CRON_TZ=`/`TZ=` zone, if given.
    pub location: Option<Location>,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const SECONDS: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DAYS_OF_MONTH: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DAYS_OF_WEEK: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

/// Every value of a field, as `*` gives it.
fn all(bounds: &Bounds) -> u64 {
    bits(bounds.min, bounds.max, 1) | STAR
}

fn bits(min: u32, max: u32, step: u32) -> u64 {
    if step == 1 {
        return !(u64::MAX << (max + 1)) & (u64::MAX << min);
    }
    (min..=max)
        .step_by(step as usize)
        .fold(0, |acc, i| acc | 1 << i)
}

/// Parses an expression as robfig/cron v3 `ParseStandard` does.
pub fn parse(spec: &str) -> Result<Schedule, CronError> {
    if spec.is_empty() {
        return Err(error("empty spec string"));
    }
    let mut spec = spec;
    let mut location = None;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let equals = spec.find('=').expect("the prefix has one");
        let Some(space) = spec.find(' ') else {
            return Err(error(format!(
                "provided bad location {}: a space must follow the zone",
                &spec[equals + 1..]
            )));
        };
        let name = &spec[equals + 1..space];
        location = match name {
            // Go's "Local": read times where they are given, as without a prefix.
            "Local" => None,
            _ => Some(
                Location::named(name)
                    .map_err(|why| error(format!("provided bad location {name}: {why}")))?,
            ),
        };
        spec = spec[space..].trim();
    }

    if spec.starts_with('@') {
        return parse_descriptor(spec).map(|kind| Schedule { kind, location });
    }

    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(error(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        )));
    }
    let parsed = Fields {
        second: field("0", &SECONDS)?,
        minute: field(fields[0], &MINUTES)?,
        hour: field(fields[1], &HOURS)?,
        day_of_month: field(fields[2], &DAYS_OF_MONTH)?,
        month: field(fields[3], &MONTHS)?,
        day_of_week: field(fields[4], &DAYS_OF_WEEK)?,
    };
    Ok(Schedule {
        kind: Kind::Fields(parsed),
        location,
    })
}

fn parse_descriptor(descriptor: &str) -> Result<Kind, CronError> {
    let midnight = |day_of_month: u64, month: u64, day_of_week: u64| Fields {
        second: 1,
        minute: 1,
        hour: 1,
        day_of_month,
        month,
        day_of_week,
    };
    let fields = match descriptor {
        "@yearly" | "@annually" => midnight(1 << 1, 1 << 1, all(&DAYS_OF_WEEK)),
        "@monthly" => midnight(1 << 1, all(&MONTHS), all(&DAYS_OF_WEEK)),
        "@weekly" => midnight(all(&DAYS_OF_MONTH), all(&MONTHS), 1),
        "@daily" | "@midnight" => midnight(all(&DAYS_OF_MONTH), all(&MONTHS), all(&DAYS_OF_WEEK)),
        "@hourly" => Fields {
            hour: all(&HOURS),
            ..midnight(all(&DAYS_OF_MONTH), all(&MONTHS), all(&DAYS_OF_WEEK))
        },
        _ => {
            if let Some(text) = descriptor.strip_prefix("@every ") {
                let nanos = parse_go_duration(text).map_err(|why| {
                    error(format!("failed to parse duration {descriptor}: {why}"))
                })?;
                // Rounded down to whole seconds, and at least one.
                let seconds = (nanos / 1_000_000_000).max(1);
                return Ok(Kind::Every(seconds));
            }
            return Err(error(format!("unrecognized descriptor: {descriptor}")));
        }
    };
    Ok(Kind::Fields(fields))
}

/// A comma list of ranges; empty items are ignored (so `,` matches nothing).
fn field(text: &str, bounds: &Bounds) -> Result<u64, CronError> {
    text.split(',')
        .filter(|item| !item.is_empty())
        .try_fold(0, |acc, item| Ok(acc | range(item, bounds)?))
}

/// `*`, `?`, `N` or `N-M`, optionally followed by `/step`.
fn range(expr: &str, bounds: &Bounds) -> Result<u64, CronError> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;

    let (start, mut end, mut extra): (u64, u64, u64);
    if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (start, end, extra) = (bounds.min.into(), bounds.max.into(), STAR);
    } else {
        start = number_or_name(low_and_high[0], bounds)?;
        end = match low_and_high.len() {
            1 => start,
            2 => number_or_name(low_and_high[1], bounds)?,
            _ => return Err(error(format!("too many hyphens: {expr}"))),
        };
        extra = 0;
    }

    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = number(range_and_step[1])?;
            // `N/step` means `N-max/step`.
            if single {
                end = bounds.max.into();
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(error(format!("too many slashes: {expr}"))),
    };

    if start < u64::from(bounds.min) {
        return Err(error(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            bounds.min
        )));
    }
    if end > u64::from(bounds.max) {
        return Err(error(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            bounds.max
        )));
    }
    if start > end {
        return Err(error(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        )));
    }
    if step == 0 {
        return Err(error(format!(
            "step of range should be a positive number: {expr}"
        )));
    }
    let step = u32::try_from(step).unwrap_or(u32::MAX);
    Ok(bits(start as u32, end as u32, step) | extra)
}

fn number_or_name(text: &str, bounds: &Bounds) -> Result<u64, CronError> {
    let lower = text.to_ascii_lowercase();
    if let Some((_, value)) = bounds.names.iter().find(|(name, _)| *name == lower) {
        return Ok((*value).into());
    }
    number(text)
}

/// A decimal integer as Go's `strconv.Atoi` reads it (an optional sign),
/// refused when negative.
fn number(text: &str) -> Result<u64, CronError> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    let valid = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    let parsed = if valid {
        text.parse::<i64>().ok()
    } else {
        None
    };
    match parsed {
        Some(n) if n < 0 => Err(error(format!("negative number ({n}) not allowed: {text}"))),
        Some(n) => Ok(n as u64),
        None => {
            let why = if valid {
                "value out of range"
            } else {
                "invalid syntax"
            };
            Err(error(format!(
                "failed to parse int from {text}: strconv.Atoi: parsing {text:?}: {why}"
            )))
        }
    }
}

impl Schedule {
    /// The zone a script's schedule runs in: the expression's own prefix,
    /// else `default`.
    pub fn zone_or(&self, default: Location) -> Location {
        self.location.unwrap_or(default)
    }

    /// The first activation strictly after `after`, in `after`'s location;
    /// `None` if there is none within five years.
    pub fn next(&self, after: Time) -> Option<Time> {
        match self.kind {
            Kind::Every(seconds) => {
                // Counted from `after` truncated to the second.
                Some(Time::new(after.unix() + seconds, 0, after.location()))
            }
            Kind::Fields(fields) => next_matching(&fields, self.location, after),
        }
    }

    /// Whether `t` is an activation time, to the second, read in the
    /// schedule's own zone if it names one. Any time matches `@every`.
    pub fn matches(&self, t: Time) -> bool {
        match self.kind {
            Kind::Every(_) => true,
            Kind::Fields(fields) => {
                let t = self.location.map_or(t, |loc| t.in_location(loc));
                let c = t.civil();
                t.nanos() == 0
                    && has(fields.second, c.second)
                    && has(fields.minute, c.minute)
                    && has(fields.hour, c.hour)
                    && has(fields.month, c.month)
                    && day_matches(&fields, &c)
            }
        }
    }

    /// The next `count` activations after `after`.
    pub fn upcoming(&self, after: Time, count: usize) -> Vec<Time> {
        let mut times = Vec::with_capacity(count);
        let mut from = after;
        while times.len() < count {
            match self.next(from) {
                Some(t) => {
                    times.push(t);
                    from = t;
                }
                None => break,
            }
        }
        times
    }
}

fn has(bits: u64, value: u32) -> bool {
    bits & (1 << value) != 0
}

fn day_matches(fields: &Fields, civil: &Civil) -> bool {
    let dom = has(fields.day_of_month, civil.day);
    let dow = has(fields.day_of_week, civil.weekday);
    if fields.day_of_month & STAR != 0 || fields.day_of_week & STAR != 0 {
        dom && dow
    } else {
        dom || dow
    }
}

/// robfig's `SpecSchedule.Next`: advance field by field, from month down to
/// second, starting over at the month whenever a field wraps.
fn next_matching(fields: &Fields, zone: Option<Location>, after: Time) -> Option<Time> {
    let original = after.location();
    let loc = zone.unwrap_or(original);
    // The upcoming whole second.
    let mut t = Time::new(after.unix() + 1, 0, loc);
    let mut added = false;
    let year_limit = t.civil().year + 5;

    'wrap: loop {
        if t.civil().year > year_limit {
            return None;
        }

        while !has(fields.month, t.civil().month) {
            if !added {
                added = true;
                let c = t.civil();
                t = Time::date(c.year, c.month.into(), 1, 0, 0, 0, loc);
            }
            t = t.add_date(1, 0);
            if t.civil().month == 1 {
                continue 'wrap;
            }
        }

        while !day_matches(fields, &t.civil()) {
            if !added {
                added = true;
                let c = t.civil();
                t = Time::date(c.year, c.month.into(), c.day.into(), 0, 0, 0, loc);
            }
            t = t.add_date(0, 1);
            // Where daylight saving moves midnight, get back to it.
            let hour = i64::from(t.civil().hour);
            if hour != 0 {
                t = if hour > 12 {
                    t.add_seconds((24 - hour) * 3_600)
                } else {
                    t.add_seconds(-hour * 3_600)
                };
            }
            if t.civil().day == 1 {
                continue 'wrap;
            }
        }

        while !has(fields.hour, t.civil().hour) {
            if !added {
                added = true;
                let c = t.civil();
                t = Time::date(
                    c.year,
                    c.month.into(),
                    c.day.into(),
                    c.hour.into(),
                    0,
                    0,
                    loc,
                );
            }
            t = t.add_seconds(3_600);
            if t.civil().hour == 0 {
                continue 'wrap;
            }
        }

        while !has(fields.minute, t.civil().minute) {
            if !added {
                added = true;
                t = t.truncate(60);
            }
            t = t.add_seconds(60);
            if t.civil().minute == 0 {
                continue 'wrap;
            }
        }

        while !has(fields.second, t.civil().second) {
            if !added {
                added = true;
                t = t.truncate(1);
            }
            t = t.add_seconds(1);
            if t.civil().second == 0 {
                continue 'wrap;
            }
        }

        return Some(t.in_location(original));
    }
}

#[cfg(test)]
mod tests;
