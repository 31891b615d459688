//! Plain-text tables for the terminal: a header row, columns padded to
//! their widest cell, the last column unpadded.

/// Renders `rows` under `header`.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.collect();
        let last = cells.len().saturating_sub(1);
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// An RFC 3339 time from the API as `2026-11-28 09:30:01`, or `-`.
pub fn when(value: &serde_json::Value) -> String {
    match value.as_str() {
        Some(text) if text.len() >= 19 => text[..19].replace('T', " "),
        Some(text) => text.to_owned(),
        None => "-".into(),
    }
}

/// A duration in microseconds as `840 µs`, `12.3 ms` or `4.56 s`.
pub fn duration_us(us: i64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 100_000 {
        format!("{:.1} ms", us as f64 / 1_000.0)
    } else if us < 1_000_000 {
        format!("{} ms", us / 1_000)
    } else {
        format!("{:.2} s", us as f64 / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_lines_end_without_spaces() {
        let rows = vec![
            vec!["hello".to_owned(), "manual".to_owned(), "".to_owned()],
            vec!["a".to_owned(), "scheduled".to_owned(), "x".to_owned()],
        ];
        assert_eq!(
            render(&["NAME", "TRIGGER", "WHEN"], &rows),
            "NAME   TRIGGER    WHEN\nhello  manual\na      scheduled  x\n"
        );
    }

    #[test]
    fn durations_keep_sub_millisecond_precision() {
        assert_eq!(duration_us(840), "840 µs");
        assert_eq!(duration_us(12_345), "12.3 ms");
        assert_eq!(duration_us(250_000), "250 ms");
        assert_eq!(duration_us(4_560_000), "4.56 s");
    }
}
