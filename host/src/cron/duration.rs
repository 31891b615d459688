//! Go's `time.ParseDuration`, for `@every <duration>`: a signed sequence of
//! decimal numbers with units (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`),
//! such as `1h30m10s` or `1.5h`; `0` needs no unit.

const MAX: u64 = 1 << 63;

/// Parses `text` into nanoseconds, with Go's error messages.
pub fn parse_go_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", quote(text));
    let mut s = text.as_bytes();
    let mut negative = false;
    if let Some((&sign, rest)) = s.split_first()
        && (sign == b'-' || sign == b'+')
    {
        negative = sign == b'-';
        s = rest;
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // The integer part.
        let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut whole: u64 = 0;
        for &c in &s[..digits] {
            if whole > MAX / 10 {
                return Err(invalid());
            }
            whole = whole * 10 + u64::from(c - b'0');
            if whole > MAX {
                return Err(invalid());
            }
        }
        s = &s[digits..];
        // The fraction, kept to the precision that fits.
        let mut fraction: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut fraction_digits = 0;
        if s.first() == Some(&b'.') {
            s = &s[1..];
            fraction_digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
            let mut overflow = false;
            for &c in &s[..fraction_digits] {
                if overflow {
                    continue;
                }
                if fraction > (MAX - 1) / 10 {
                    overflow = true;
                    continue;
                }
                let next = fraction * 10 + u64::from(c - b'0');
                if next > MAX {
                    overflow = true;
                    continue;
                }
                fraction = next;
                scale *= 10.0;
            }
            s = &s[fraction_digits..];
        }
        if digits == 0 && fraction_digits == 0 {
            return Err(invalid());
        }
        // The unit: everything up to the next digit or point.
        let unit_len = s
            .iter()
            .take_while(|c| !(**c == b'.' || c.is_ascii_digit()))
            .count();
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", quote(text)));
        }
        let unit_text = &s[..unit_len];
        s = &s[unit_len..];
        let unit: u64 = match unit_text {
            b"ns" => 1,
            // "us", "µs" (U+00B5 micro sign), "μs" (U+03BC Greek mu)
            b"us" | [0xC2, 0xB5, b's'] | [0xCE, 0xBC, b's'] => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    quote(&String::from_utf8_lossy(unit_text)),
                    quote(text)
                ));
            }
        };
        if whole > MAX / unit {
            return Err(invalid());
        }
        let mut value = whole * unit;
        if fraction > 0 {
            value += (fraction as f64 * (unit as f64 / scale)) as u64;
            if value > MAX {
                return Err(invalid());
            }
        }
        total += value;
        if total > MAX {
            return Err(invalid());
        }
    }
    if negative {
        return Ok((total as i64).wrapping_neg());
    }
    if total > MAX - 1 {
        return Err(invalid());
    }
    Ok(total as i64)
}

fn quote(text: &str) -> String {
    format!("{text:?}")
}

#[cfg(test)]
mod tests {
    use super::parse_go_duration as parse;

    const S: i64 = 1_000_000_000;

    #[test]
    fn accepts_what_go_accepts() {
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("-0"), Ok(0));
        assert_eq!(parse("5m"), Ok(300 * S));
        assert_eq!(parse("1h30m10s"), Ok(5_410 * S));
        assert_eq!(parse("25h44m24s"), Ok((25 * 3600 + 44 * 60 + 24) * S));
        assert_eq!(parse("1.5h"), Ok(5_400 * S));
        assert_eq!(parse(".5s"), Ok(S / 2));
        assert_eq!(parse("1.s"), Ok(S));
        assert_eq!(parse("+2s"), Ok(2 * S));
        assert_eq!(parse("-1.5s"), Ok(-3 * S / 2));
        assert_eq!(parse("15ms"), Ok(15_000_000));
        assert_eq!(parse("1µs1μs1us1ns"), Ok(3_001));
        assert_eq!(parse("2562047h47m16.854775807s"), Ok(i64::MAX));
        assert_eq!(parse("-2562047h47m16.854775808s"), Ok(i64::MIN));
    }

    #[test]
    fn refuses_what_go_refuses() {
        assert_eq!(
            parse("1").unwrap_err(),
            r#"time: missing unit in duration "1""#
        );
        assert_eq!(parse("").unwrap_err(), r#"time: invalid duration """#);
        assert_eq!(parse("Xm").unwrap_err(), r#"time: invalid duration "Xm""#);
        assert_eq!(parse(".s").unwrap_err(), r#"time: invalid duration ".s""#);
        assert_eq!(parse("-").unwrap_err(), r#"time: invalid duration "-""#);
        assert_eq!(
            parse("3d").unwrap_err(),
            r#"time: unknown unit "d" in duration "3d""#
        );
        assert_eq!(
            parse("5m ").unwrap_err(),
            r#"time: unknown unit "m " in duration "5m ""#
        );
        assert!(parse("9223372036854775808ns").is_err());
        assert!(parse("2562047h47m16.854775808s").is_err());
    }
}
