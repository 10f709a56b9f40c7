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

/// The region a default region names (`FR`, `it`), if libphonenumber knows it.
pub fn region(name: &str) -> Option<phonenumber::country::Id> {
    name.trim().to_ascii_uppercase().parse().ok()
}

/// How strictly a phone number is checked before it becomes an identifier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhoneCheck {
    /// In a range some region allocates (libphonenumber's metadata): the default.
    #[default]
    Valid,
    /// Of a length the region's numbers have: also keeps ranges newer than the metadata, and
    /// the ranges regulators keep for fiction and tests (`06 39 98 …` in France).
    Possible,
}

/// [`normalize_phone_with`] with [`PhoneCheck::Valid`].
pub fn normalize_phone(raw: &str, default_region: Option<&str>) -> Option<String> {
    normalize_phone_with(raw, default_region, PhoneCheck::Valid)
}

/// Normalises a phone number to E.164 (`+33612345678`) by libphonenumber's rules: an
/// international form (`+…`, `00…`) or a national one read in the default region (its trunk
/// prefix goes only where the region drops it: `06 12 34 56 78` in FR is `+33612345678`,
/// `06 1234 5678` in IT is `+390612345678`). A number no region allocates, or one written
/// with letters, is not an identifier.
pub fn normalize_phone_with(
    raw: &str,
    default_region: Option<&str>,
    check: PhoneCheck,
) -> Option<String> {
    let trimmed = raw.trim();
    for (i, ch) in trimmed.chars().enumerate() {
        match ch {
            '0'..='9' | ' ' | '-' | '.' | '(' | ')' | '/' => {}
            '+' if i == 0 => {}
            _ => return None,
        }
    }
    let region = default_region.and_then(region);
    let nanp = default_region
        .is_some_and(|r| matches!(r.trim().to_ascii_uppercase().as_str(), "US" | "CA"));
    // `00` is the international prefix everywhere but North America (`011`, which the
    // library reads in its region).
    let international = match trimmed.strip_prefix("00") {
        Some(rest) if !nanp => Some(format!("+{rest}")),
        _ => trimmed.starts_with('+').then(|| trimmed.to_string()),
    };
    // An international number is read without the default region: the library would take
    // the region's trunk prefix off another country's number (`+39 06…` read in FR).
    let number = match international {
        Some(text) => phonenumber::parse(None, &text).ok()?,
        None => phonenumber::parse(region, trimmed).ok()?,
    };
    let accepted = match check {
        PhoneCheck::Valid => phonenumber::is_valid(&number),
        PhoneCheck::Possible => {
            let length = number.national().to_string().len() as u16;
            phonenumber::metadata::DATABASE
                .by_code(&number.code().value())
                .is_some_and(|regions| {
                    regions.iter().any(|m| {
                        let d = m.descriptors();
                        // The lengths of the numbers people have: fixed lines and mobiles.
                        [d.fixed_line(), d.mobile()]
                            .into_iter()
                            .flatten()
                            .any(|k| k.possible_length().contains(&length))
                    })
                })
        }
    };
    accepted.then(|| number.format().mode(phonenumber::Mode::E164).to_string())
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

    /// Each region the demo and the docs use, by libphonenumber's rules.
    #[test]
    fn national_numbers_follow_their_region() {
        for (raw, region, want) in [
            // Italy keeps the leading 0 of a geographic number after the country code.
            ("06 1234 5678", "IT", Some("+390612345678")),
            ("+39 06 1234 5678", "FR", Some("+390612345678")),
            ("347 123 4567", "IT", Some("+393471234567")),
            ("06 12 34 56 78", "FR", Some("+33612345678")),
            ("01 42 68 53 00", "FR", Some("+33142685300")),
            ("030 123456", "DE", Some("+4930123456")),
            ("0151 23456789", "DE", Some("+4915123456789")),
            ("612 34 56 78", "ES", Some("+34612345678")),
            ("020 7946 0958", "GB", Some("+442079460958")),
            ("+44 (0)20 7946 0958", "FR", Some("+442079460958")),
            ("0470 12 34 56", "BE", Some("+32470123456")),
            ("079 123 45 67", "CH", Some("+41791234567")),
            ("06 12345678", "NL", Some("+31612345678")),
            ("(415) 555-2671", "us", Some("+14155552671")),
            // Numbers no region allocates.
            ("+33 0 12 34 56 78", "FR", None),
            ("+1 000 555 0100", "US", None),
            ("99 99 99 99 99", "FR", None),
        ] {
            assert_eq!(
                normalize_phone(raw, Some(region)).as_deref(),
                want,
                "{raw} in {region}"
            );
        }
        assert!(region("FR").is_some() && region("XX").is_none());
    }

    #[test]
    fn possible_numbers_keep_the_ranges_kept_for_fiction() {
        // ARCEP keeps 06 39 98 for fiction: no operator has it, so it is not valid…
        assert_eq!(normalize_phone("06 39 98 01 23", Some("FR")), None);
        // …but it is a possible French mobile number.
        assert_eq!(
            normalize_phone_with("06 39 98 01 23", Some("FR"), PhoneCheck::Possible).as_deref(),
            Some("+33639980123")
        );
        assert_eq!(
            normalize_phone_with("06 39 98 01", Some("FR"), PhoneCheck::Possible),
            None,
            "too short"
        );
        assert_eq!(
            normalize_phone_with("+44 7700 900123", None, PhoneCheck::Possible).as_deref(),
            Some("+447700900123")
        );
    }
}
