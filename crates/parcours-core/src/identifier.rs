//! Identifiers: the keys that say "this is the same person" (user id, anonymous id, email,
//! phone, device ids, external ids, identifier traits such as a loyalty card).

use serde::{Deserialize, Serialize};

/// One identifier value of one type, already normalised.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

impl Identifier {
    pub fn new(kind: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            value: value.into(),
        }
    }
}

impl std::fmt::Display for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

pub const USER_ID: &str = "user_id";
pub const ANONYMOUS_ID: &str = "anonymous_id";
pub const EMAIL: &str = "email";
pub const PHONE: &str = "phone";
pub const DEVICE_ID: &str = "device_id";

/// Emails are compared trimmed and lowercased.
pub fn normalize_email(raw: &str) -> Option<String> {
    let e = raw.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || e.contains(char::is_whitespace)
    {
        return None;
    }
    Some(e)
}

/// Country calling codes and trunk prefixes for the regions a default region can name.
const REGIONS: &[(&str, &str)] = &[
    ("FR", "33"),
    ("BE", "32"),
    ("CH", "41"),
    ("DE", "49"),
    ("ES", "34"),
    ("IT", "39"),
    ("NL", "31"),
    ("PT", "351"),
    ("GB", "44"),
    ("IE", "353"),
    ("AT", "43"),
    ("LU", "352"),
    ("SE", "46"),
    ("DK", "45"),
    ("NO", "47"),
    ("FI", "358"),
    ("PL", "48"),
    ("US", "1"),
    ("CA", "1"),
    ("AU", "61"),
    ("JP", "81"),
    ("BR", "55"),
    ("MX", "52"),
    ("IN", "91"),
];

/// The calling code of an ISO 3166 region, if Parcours knows it.
pub fn calling_code(region: &str) -> Option<&'static str> {
    REGIONS
        .iter()
        .find(|(r, _)| r.eq_ignore_ascii_case(region))
        .map(|(_, c)| *c)
}

/// Normalises a phone number to E.164 (`+33612345678`). International forms (`+…`, `00…`) are
/// kept; a national number takes the default region's calling code and loses its trunk `0`
/// (`06 12 34 56 78` in FR). Numbers that cannot be made E.164 are not identifiers.
pub fn normalize_phone(raw: &str, default_region: Option<&str>) -> Option<String> {
    let trimmed = raw.trim();
    let mut digits = String::with_capacity(trimmed.len());
    for (i, ch) in trimmed.chars().enumerate() {
        match ch {
            '0'..='9' => digits.push(ch),
            '+' if i == 0 => {}
            ' ' | '-' | '.' | '(' | ')' | '/' => {}
            _ => return None,
        }
    }
    let international = if trimmed.starts_with('+') {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_string()
    } else {
        let code = calling_code(default_region?)?;
        let national = if code == "1" {
            digits.as_str()
        } else {
            digits.trim_start_matches('0')
        };
        if code == "1" && national.len() == 11 && national.starts_with('1') {
            national.to_string()
        } else {
            format!("{code}{national}")
        }
    };
    if !(8..=15).contains(&international.len()) || international.starts_with('0') {
        return None;
    }
    Some(format!("+{international}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(
            normalize_email("  Alice.Martin@Example.COM ").as_deref(),
            Some("alice.martin@example.com")
        );
        assert_eq!(normalize_email("not an email"), None);
        assert_eq!(normalize_email("@example.com"), None);
    }

    #[test]
    fn phones_become_e164() {
        assert_eq!(
            normalize_phone("06 12 34 56 78", Some("FR")).as_deref(),
            Some("+33612345678")
        );
        assert_eq!(
            normalize_phone("+33 6 12 34 56 78", Some("US")).as_deref(),
            Some("+33612345678")
        );
        assert_eq!(
            normalize_phone("0033612345678", None).as_deref(),
            Some("+33612345678")
        );
        assert_eq!(
            normalize_phone("(415) 555-2671", Some("US")).as_deref(),
            Some("+14155552671")
        );
        assert_eq!(
            normalize_phone("06 12 34 56 78", None),
            None,
            "a national number needs a region"
        );
        assert_eq!(normalize_phone("12", Some("FR")), None);
        assert_eq!(normalize_phone("call me", Some("FR")), None);
    }
}
