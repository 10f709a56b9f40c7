//! Delimited text as analysts hand it over (the files `parcours report` reads): one record a
//! line, fields separated by `;`, `,`, a tab or runs of spaces (whichever the first line
//! uses), a field optionally in double quotes. No field here holds a separator, so quotes are
//! only stripped.

use std::fmt;

/// Why a line could not be read, with its 1-based number.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// A separator between fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Separator {
    Char(char),
    Spaces,
}

impl Separator {
    /// The separator the line uses: the first of `;`, tab and `,` it holds, else runs of
    /// spaces.
    pub fn of(line: &str) -> Separator {
        [';', '\t', ',']
            .into_iter()
            .find(|c| line.contains(*c))
            .map_or(Separator::Spaces, Separator::Char)
    }

    /// The line's fields, trimmed and unquoted.
    pub fn split<'a>(&self, line: &'a str) -> Vec<&'a str> {
        let unquote = |f: &'a str| {
            let f = f.trim();
            f.strip_prefix('"')
                .and_then(|f| f.strip_suffix('"'))
                .unwrap_or(f)
        };
        match self {
            Separator::Char(c) => line.split(*c).map(unquote).collect(),
            Separator::Spaces => line.split_whitespace().map(unquote).collect(),
        }
    }
}

/// The lines that hold something, numbered from 1, without a byte-order mark or `\r`.
pub fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.trim_start_matches('\u{feff}')
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty())
}

/// A finite number not below zero.
pub fn amount(field: &str, what: &str, line: usize) -> Result<f64, ParseError> {
    match field.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(ParseError {
            line,
            message: format!("{what} must be a number not below zero, not {field:?}"),
        }),
    }
}

/// Days since 1970-01-01 of `2026-12-01`, `20261201` or a timestamp (its UTC day).
pub fn day(field: &str, line: usize) -> Result<i64, ParseError> {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
    let date = chrono::NaiveDate::parse_from_str(field, "%Y-%m-%d")
        .or_else(|_| chrono::NaiveDate::parse_from_str(field, "%Y%m%d"))
        .ok()
        .or_else(|| {
            crate::time::parse_timestamp(field)
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(|t| t.date_naive())
        });
    date.map(|d| (d - epoch).num_days()).ok_or(ParseError {
        line,
        message: format!("{field:?} is not a date (2026-12-01, 20261201 or a timestamp)"),
    })
}

/// `2026-12-01` for its day number.
pub fn format_day(day: i64) -> String {
    chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|e| e.checked_add_signed(chrono::Duration::days(day)))
        .map_or_else(|| day.to_string(), |d| d.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_quotes_and_dates() {
        assert_eq!(Separator::of("a;b,c"), Separator::Char(';'));
        assert_eq!(Separator::of("a,b"), Separator::Char(','));
        assert_eq!(Separator::of(" 00001 19970101  1"), Separator::Spaces);
        assert_eq!(
            Separator::Char(',').split(r#""x", y ,"#),
            vec!["x", "y", ""]
        );
        assert_eq!(
            Separator::Spaces.split(" 00001 19970101  1   11.77"),
            vec!["00001", "19970101", "1", "11.77"]
        );
        assert_eq!(day("1970-01-02", 1), Ok(1));
        assert_eq!(format_day(day("1997-09-30", 1).unwrap()), "1997-09-30");
        assert_eq!(day("19970101", 1), day("1997-01-01", 1));
        assert_eq!(day("1997-01-01T23:59:00Z", 1), day("1997-01-01", 1));
        assert!(day("1997-13-01", 4)
            .unwrap_err()
            .to_string()
            .starts_with("line 4:"));
        assert!(amount("-1", "an amount", 2).is_err());
        assert!(amount("NaN", "an amount", 2).is_err());
        let got: Vec<_> = lines("\u{feff}a\r\n\n b\n").collect();
        assert_eq!(got, vec![(1, "a"), (3, " b")]);
    }
}
