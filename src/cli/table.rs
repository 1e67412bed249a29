//! Plain-text tables and ages, as kubectl prints them.

use jiff::{SignedDuration, Timestamp};

/// Columns left-aligned to their widest cell, three spaces apart, headers
/// upper-case; no trailing spaces.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let header: Vec<String> = headers.iter().map(|h| h.to_uppercase()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("   ");
            }
            line.push_str(cell);
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// How long ago `then` was, as kubectl's AGE column says it: precise when
/// recent, coarser as it grows (`45s`, `3m20s`, `5h12m`, `3d4h`, `400d`).
pub fn age(then: Option<Timestamp>, now: Timestamp) -> String {
    match then {
        Some(then) => duration(now.duration_since(then)),
        None => "<unknown>".to_string(),
    }
}

/// A duration as kubectl's ages write it; negative (clock skew) reads as 0s.
pub fn duration(d: SignedDuration) -> String {
    let secs = d.as_secs().max(0);
    let (minutes, hours, days) = (secs / 60, secs / 3600, secs / 86_400);
    let years = days / 365;
    match () {
        _ if secs < 120 => format!("{secs}s"),
        _ if minutes < 10 => match secs % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        },
        _ if hours < 3 => format!("{minutes}m"),
        _ if hours < 8 => match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        },
        _ if hours < 48 => format!("{hours}h"),
        _ if days < 8 => match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        },
        _ if years < 2 => format!("{days}d"),
        _ if years < 8 => match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        },
        _ => format!("{years}y"),
    }
}

/// The first seven characters of an ID (a commit or Freight name), as Git
/// abbreviates them.
pub fn short(id: &str) -> &str {
    id.char_indices().nth(7).map_or(id, |(i, _)| &id[..i])
}

/// A list for one cell: comma-separated, `<none>` when empty.
pub fn list_cell<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return "<none>".to_string();
    }
    items
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(",")
}

/// A cell that may be empty: `<none>` then.
pub fn cell(text: &str) -> String {
    if text.is_empty() {
        "<none>".to_string()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell_and_lines_have_no_trailing_spaces() {
        let rows = vec![
            vec!["dev".to_string(), "f1".to_string(), "Healthy".to_string()],
            vec!["production".to_string(), "".to_string(), "".to_string()],
        ];
        assert_eq!(
            render(&["name", "freight", "health"], &rows),
            "NAME         FREIGHT   HEALTH\n\
             dev          f1        Healthy\n\
             production\n"
        );
    }

    #[test]
    fn ages_read_like_kubectls() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (300, "5m"),
            (3000, "50m"),
            (4 * 3600 + 120, "4h2m"),
            (30 * 3600, "30h"),
            (3 * 86_400 + 4 * 3600, "3d4h"),
            (400 * 86_400, "400d"),
            (3 * 365 * 86_400 + 86_400, "3y1d"),
            (10 * 365 * 86_400, "10y"),
        ];
        for (secs, want) in cases {
            assert_eq!(duration(SignedDuration::from_secs(secs)), want, "{secs}s");
        }
        assert_eq!(duration(SignedDuration::from_secs(-3)), "0s");
        assert_eq!(age(None, Timestamp::UNIX_EPOCH), "<unknown>");
    }

    #[test]
    fn ids_are_shortened_to_seven_characters() {
        assert_eq!(short("8f3c2a9bd41e6c07"), "8f3c2a9");
        assert_eq!(short("abc"), "abc");
    }
}
