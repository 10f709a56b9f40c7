//! Customer lists for ad platforms: each identifier normalised exactly as the platform says,
//! then SHA-256 (lowercase hex). A value that cannot be normalised is left out rather than
//! hashed wrong: a wrong hash never matches and only wastes the upload.
//!
//! - **Google Customer Match**: trim and lowercase; for `gmail.com` and `googlemail.com`
//!   addresses, dots are removed before the `@`; whitespace is removed from email addresses;
//!   phones in E.164 with the `+`. Country and postal code are sent in clear.
//! - **Meta Custom Audiences**: email trimmed and lowercased; phone as digits only, with the
//!   country code and without `+` or leading zeros (`447…`, not `+447…`); first and last names
//!   lowercased without punctuation (their letters kept: Meta takes UTF-8 in names); city as
//!   `a-z` only (accents taken off, no spaces); state as two letters; gender `m` / `f`;
//!   birthday as year, month and day; postal code without spaces; country as ISO 3166
//!   alpha-2, lowercased. Every key is hashed.

use sha2::{Digest, Sha256};

use crate::identifier::{normalize_email, normalize_phone_with, PhoneCheck};

/// SHA-256 of a normalised value, as lowercase hex.
pub fn sha256_hex(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// An email address as Google Customer Match wants it before hashing.
pub fn google_email(raw: &str) -> Option<String> {
    let cleaned: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    let email = normalize_email(&cleaned)?;
    let (local, domain) = email.split_once('@')?;
    if domain == "gmail.com" || domain == "googlemail.com" {
        let local: String = local.chars().filter(|c| *c != '.').collect();
        if local.is_empty() {
            return None;
        }
        return Some(format!("{local}@{domain}"));
    }
    Some(email)
}

/// A phone number in E.164 (`+33612345678`), as Google wants it before hashing. Possible
/// numbers are taken (the workspace's rules decided which numbers are identifiers; a number
/// the metadata does not know yet may still match).
pub fn google_phone(raw: &str, default_region: Option<&str>) -> Option<String> {
    normalize_phone_with(
        &without_bracketed_trunk(raw),
        default_region,
        PhoneCheck::Possible,
    )
}

/// `+44 (0)20 …` writes the national trunk `0` in brackets: it is not dialled from abroad.
fn without_bracketed_trunk(raw: &str) -> String {
    raw.replace("(0)", "")
}

/// A first or last name for Google: trimmed and lowercased.
pub fn google_name(raw: &str) -> Option<String> {
    let n = raw.trim().to_lowercase();
    (!n.is_empty()).then_some(n)
}

/// An email address as Meta wants it before hashing: trimmed and lowercased.
pub fn meta_email(raw: &str) -> Option<String> {
    normalize_email(raw)
}

/// A phone number for Meta: digits only, country code first, no `+`, no leading zeros.
pub fn meta_phone(raw: &str, default_region: Option<&str>) -> Option<String> {
    let e164 = google_phone(raw, default_region)?;
    let digits = e164.trim_start_matches('+').trim_start_matches('0');
    (!digits.is_empty()).then(|| digits.to_string())
}

/// A first or last name for Meta: lowercase letters only (accents kept), no punctuation or
/// spaces.
pub fn meta_name(raw: &str) -> Option<String> {
    let n: String = raw
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphabetic())
        .collect();
    (!n.is_empty()).then_some(n)
}

/// A city for Meta: `a-z` only, lowercase, no punctuation, no special characters, no spaces
/// (its documentation): accents are taken off (`Saint-Étienne` is `saintetienne`).
pub fn meta_city(raw: &str) -> Option<String> {
    let c: String = fold_accents(&raw.trim().to_lowercase())
        .chars()
        .filter(|c| c.is_ascii_lowercase())
        .collect();
    (!c.is_empty()).then_some(c)
}

/// A US state (or any region code) for Meta: two letters, lowercase.
pub fn meta_state(raw: &str) -> Option<String> {
    let s = raw.trim().to_lowercase();
    (s.len() == 2 && s.chars().all(|c| c.is_ascii_lowercase())).then_some(s)
}

/// A gender for Meta: `m` or `f`.
pub fn meta_gender(raw: &str) -> Option<String> {
    match raw.trim().to_lowercase().as_str() {
        "m" | "male" | "man" | "h" | "homme" | "masculin" => Some("m".into()),
        "f" | "female" | "woman" | "femme" | "féminin" | "feminin" => Some("f".into()),
        _ => None,
    }
}

/// A birthday for Meta, from an ISO 8601 date (`1990-05-17`, or a timestamp whose date part
/// is that): year `YYYY`, month `MM`, day `DD`.
pub fn meta_birthday(raw: &str) -> Option<(String, String, String)> {
    let date = raw.trim().get(..10)?;
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some((
        d.format("%Y").to_string(),
        d.format("%m").to_string(),
        d.format("%d").to_string(),
    ))
}

/// Latin letters without their accents (`é` → `e`, `ß` → `ss`, `œ` → `oe`); other
/// characters as they are.
pub fn fold_accents(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let folded = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
            'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
            'ď' | 'đ' => "d",
            'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
            'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
            'ĥ' | 'ħ' => "h",
            'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
            'ĵ' => "j",
            'ķ' => "k",
            'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
            'ñ' | 'ń' | 'ņ' | 'ň' => "n",
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
            'ŕ' | 'ŗ' | 'ř' => "r",
            'ś' | 'ŝ' | 'ş' | 'š' | 'ș' => "s",
            'ţ' | 'ť' | 'ŧ' | 'ț' => "t",
            'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
            'ŵ' => "w",
            'ý' | 'ÿ' | 'ŷ' => "y",
            'ź' | 'ż' | 'ž' => "z",
            'ß' => "ss",
            'æ' => "ae",
            'œ' => "oe",
            'þ' => "th",
            'ð' => "d",
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push_str(folded);
    }
    out
}

/// A postal code for Meta: lowercase, no spaces.
pub fn meta_zip(raw: &str) -> Option<String> {
    let z: String = raw
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    (!z.is_empty()).then_some(z)
}

/// A country for Meta: ISO 3166 alpha-2, lowercased.
pub fn meta_country(raw: &str) -> Option<String> {
    let c = raw.trim().to_lowercase();
    (c.len() == 2 && c.chars().all(|ch| ch.is_ascii_lowercase())).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_lowercase_hex_of_the_normalised_value() {
        // Known answers, computed independently.
        assert_eq!(
            sha256_hex("test@example.com"),
            "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
        );
        assert_eq!(
            sha256_hex("447700900123"),
            "033134b911b137918338415ee3d20a064b24773d36a3b02e8b99fdd3fcd6b4cd"
        );
    }

    #[test]
    fn google_trims_lowercases_and_drops_gmail_dots() {
        assert_eq!(
            google_email("  Test@Example.com ").as_deref(),
            Some("test@example.com")
        );
        // CM360: dots before the domain are removed for gmail.com and googlemail.com only.
        assert_eq!(
            google_email("John.Doe@gmail.com").as_deref(),
            Some("johndoe@gmail.com")
        );
        assert_eq!(
            google_email("j.o.h.n.doe@googlemail.com").as_deref(),
            Some("johndoe@googlemail.com")
        );
        assert_eq!(
            google_email("john.doe@example.com").as_deref(),
            Some("john.doe@example.com")
        );
        // DV360: whitespace removed from email.
        assert_eq!(
            google_email("john doe@gmail.com").as_deref(),
            Some("johndoe@gmail.com")
        );
        assert_eq!(google_email("not an email"), None);
        assert_eq!(
            sha256_hex(&google_email("John.Doe@Gmail.com").unwrap()),
            "06a240d11cc201676da976f7b49341181fd180da37cbe40a77432c0a366c80c3"
        );
        // Phones in E.164, with the plus.
        assert_eq!(
            google_phone("+44 7400 123456", None).as_deref(),
            Some("+447400123456")
        );
        assert_eq!(
            google_phone("+44 7700 9", None),
            None,
            "too short for the UK"
        );
        assert_eq!(
            google_phone("06 12 34 56 78", Some("FR")).as_deref(),
            Some("+33612345678")
        );
        assert_eq!(google_phone("06 12 34 56 78", None), None);
        assert_eq!(google_name("  John ").as_deref(), Some("john"));
    }

    #[test]
    fn meta_phones_have_the_country_code_without_plus_or_leading_zeros() {
        // `+447…` fails at Meta; `447…` is the form it matches.
        assert_eq!(
            meta_phone("+447400123456", None).as_deref(),
            Some("447400123456")
        );
        assert_eq!(
            meta_phone("+44 (0) 7400-123456", None).as_deref(),
            Some("447400123456")
        );
        assert_eq!(
            meta_phone("0044 7400 123456", None).as_deref(),
            Some("447400123456")
        );
        assert_eq!(
            meta_phone("06.12.34.56.78", Some("FR")).as_deref(),
            Some("33612345678")
        );
        assert_eq!(meta_phone("call me", Some("FR")), None);
        assert_eq!(
            sha256_hex(&meta_phone("+33 6 12 34 56 78", None).unwrap()),
            "8a3e7886c9335e82e02299fa3e87b46e2de3b0c63d56003e30a5029394a47661"
        );
    }

    #[test]
    fn meta_city_state_gender_and_birthday() {
        // a-z only: accents off, no spaces or punctuation.
        assert_eq!(meta_city("Saint-Étienne").as_deref(), Some("saintetienne"));
        assert_eq!(meta_city(" Besançon ").as_deref(), Some("besancon"));
        assert_eq!(meta_city("Köln").as_deref(), Some("koln"));
        assert_eq!(meta_city("Łódź").as_deref(), Some("lodz"));
        assert_eq!(
            meta_city("L'Haÿ-les-Roses").as_deref(),
            Some("lhaylesroses")
        );
        assert_eq!(meta_city("東京"), None);
        // Names keep their letters (Meta takes UTF-8 special characters in names).
        assert_eq!(meta_name("Chloé").as_deref(), Some("chloé"));
        assert_eq!(meta_state(" CA ").as_deref(), Some("ca"));
        assert_eq!(meta_state("California"), None);
        assert_eq!(meta_gender("Female").as_deref(), Some("f"));
        assert_eq!(meta_gender("M").as_deref(), Some("m"));
        assert_eq!(meta_gender("other"), None);
        assert_eq!(
            meta_birthday("1990-05-17"),
            Some(("1990".into(), "05".into(), "17".into()))
        );
        assert_eq!(
            meta_birthday("1990-05-17T00:00:00Z"),
            Some(("1990".into(), "05".into(), "17".into()))
        );
        assert_eq!(meta_birthday("17/05/1990"), None);
        assert_eq!(meta_birthday("1990-02-30"), None);
    }

    #[test]
    fn meta_other_keys() {
        assert_eq!(
            meta_email(" Jane@Example.COM").as_deref(),
            Some("jane@example.com")
        );
        assert_eq!(meta_name("Mary-Jane").as_deref(), Some("maryjane"));
        assert_eq!(meta_name("O'Brien").as_deref(), Some("obrien"));
        assert_eq!(meta_name("Élodie").as_deref(), Some("élodie"));
        assert_eq!(meta_city("Saint Étienne").as_deref(), Some("saintetienne"));
        assert_eq!(meta_city("New York").as_deref(), Some("newyork"));
        assert_eq!(meta_zip("SW1A 1AA").as_deref(), Some("sw1a1aa"));
        assert_eq!(meta_country("FR").as_deref(), Some("fr"));
        assert_eq!(meta_country("France"), None);
        assert_eq!(
            sha256_hex(&meta_name(" John ").unwrap()),
            "96d9632f363564cc3032521409cf22a852f2032eec099ed5967c0d000cec607a"
        );
    }
}
