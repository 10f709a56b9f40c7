//! IAB Transparency & Consent Framework v2.2: the TC string a consent management platform
//! (CMP) writes, decoded into the purposes, special features and vendors a visitor consented
//! to.
//!
//! A TC string is base64url segments joined by `.`; the first is the core segment, read bit by
//! bit (most significant first): version 6, created 36 and last updated 36 (deciseconds since
//! the Unix epoch), CMP id 12, CMP version 12, consent screen 6, consent language 2×6 (`A` =
//! 0), vendor list version 12, TCF policy version 6, service-specific 1, non-standard texts 1,
//! special feature opt-ins 12, purpose consents 24, purpose legitimate interests 24, purpose
//! one treatment 1, publisher country 2×6, then the vendor consents and the vendors'
//! legitimate interests (each a maximum vendor id 16, then a bit field or ranges), then the
//! publisher restrictions. Other segments (disclosed vendors, publisher purposes) are not
//! read.

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine;
use serde::Serialize;

use crate::time::Millis;

/// The longest TC string read (the core segment of a CMP listing every vendor as ranges is a
/// few kilobytes; anything longer is not a TC string).
pub const MAX_CHARS: usize = 16_384;

/// A decoded TC string's core segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcString {
    pub version: u8,
    pub created: Millis,
    pub last_updated: Millis,
    pub cmp_id: u16,
    pub cmp_version: u16,
    pub consent_screen: u8,
    /// Two letters (`EN`).
    pub consent_language: String,
    pub vendor_list_version: u16,
    pub policy_version: u8,
    pub service_specific: bool,
    pub use_non_standard_texts: bool,
    /// Special features opted in (1 and 2 in v2.2: precise geolocation, device scanning).
    pub special_features: BTreeSet<u8>,
    /// Purposes consented to (1–11 in v2.2).
    pub purposes_consent: BTreeSet<u8>,
    /// Purposes whose legitimate interest was disclosed and not objected to.
    pub purposes_legitimate_interest: BTreeSet<u8>,
    pub purpose_one_treatment: bool,
    /// Two letters (`FR`).
    pub publisher_country: String,
    pub max_vendor_id: u16,
    /// Vendors consented to.
    pub vendor_consents: BTreeSet<u16>,
    /// Vendors whose legitimate interest was disclosed and not objected to.
    pub vendor_legitimate_interests: BTreeSet<u16>,
}

/// Why a TC string could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcfError(pub String);

impl fmt::Display for TcfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a TC string: {}", self.0)
    }
}

impl std::error::Error for TcfError {}

fn err(message: impl Into<String>) -> TcfError {
    TcfError(message.into())
}

/// Reads bits, most significant first.
struct Bits<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<u64, TcfError> {
        if self.at + n > self.bytes.len() * 8 {
            return Err(err(format!("it ends before its {what}")));
        }
        let mut v = 0u64;
        for i in self.at..self.at + n {
            v = (v << 1) | u64::from((self.bytes[i / 8] >> (7 - i % 8)) & 1);
        }
        self.at += n;
        Ok(v)
    }

    fn flag(&mut self, what: &str) -> Result<bool, TcfError> {
        Ok(self.take(1, what)? == 1)
    }

    /// `n` bits, the numbers (1-based) of those set.
    fn set(&mut self, n: usize, what: &str) -> Result<BTreeSet<u8>, TcfError> {
        let v = self.take(n, what)?;
        Ok((1..=n as u8)
            .filter(|i| v >> (n - *i as usize) & 1 == 1)
            .collect())
    }

    /// Two letters, each 6 bits from `A`.
    fn letters(&mut self, what: &str) -> Result<String, TcfError> {
        let mut s = String::new();
        for _ in 0..2 {
            let c = self.take(6, what)?;
            if c > 25 {
                return Err(err(format!("its {what} is not two letters")));
            }
            s.push(char::from(b'A' + c as u8));
        }
        Ok(s)
    }

    /// A vendor section: its maximum vendor id, then a bit field or ranges.
    fn vendors(&mut self, what: &str) -> Result<(u16, BTreeSet<u16>), TcfError> {
        let max = self.take(16, what)? as u16;
        let mut set = BTreeSet::new();
        if self.flag(what)? {
            let entries = self.take(12, what)?;
            // Ranges may overlap (thousands of them over every vendor): merged first, so
            // each vendor is inserted once.
            let mut ranges = Vec::with_capacity(entries as usize);
            for _ in 0..entries {
                let range = self.flag(what)?;
                let start = self.take(16, what)? as u16;
                let end = if range {
                    self.take(16, what)? as u16
                } else {
                    start
                };
                if start == 0 || end < start || end > max {
                    return Err(err(format!(
                        "its {what} names vendors {start}–{end} beyond 1–{max}"
                    )));
                }
                ranges.push((start, end));
            }
            ranges.sort_unstable();
            let mut next = 1u32;
            for (start, end) in ranges {
                let from = u32::from(start).max(next);
                if from <= u32::from(end) {
                    set.extend(from as u16..=end);
                    next = u32::from(end) + 1;
                }
            }
        } else {
            for id in 1..=max {
                if self.flag(what)? {
                    set.insert(id);
                }
            }
        }
        Ok((max, set))
    }
}

/// Decodes a TC string (version 2).
pub fn decode(tc: &str) -> Result<TcString, TcfError> {
    let tc = tc.trim();
    if tc.is_empty() {
        return Err(err("it is empty"));
    }
    if tc.len() > MAX_CHARS {
        return Err(err(format!("it is longer than {MAX_CHARS} characters")));
    }
    let core = tc.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(core.trim_end_matches('='))
        .map_err(|_| err("its core segment is not base64url"))?;
    let mut b = Bits {
        bytes: &bytes,
        at: 0,
    };
    let version = b.take(6, "version")? as u8;
    if version != 2 {
        return Err(err(format!("version {version}; only version 2 is read")));
    }
    let created = b.take(36, "creation time")? as Millis * 100;
    let last_updated = b.take(36, "update time")? as Millis * 100;
    let cmp_id = b.take(12, "CMP id")? as u16;
    let cmp_version = b.take(12, "CMP version")? as u16;
    let consent_screen = b.take(6, "consent screen")? as u8;
    let consent_language = b.letters("consent language")?;
    let vendor_list_version = b.take(12, "vendor list version")? as u16;
    let policy_version = b.take(6, "policy version")? as u8;
    let service_specific = b.flag("service-specific flag")?;
    let use_non_standard_texts = b.flag("non-standard texts flag")?;
    let special_features = b.set(12, "special feature opt-ins")?;
    let purposes_consent = b.set(24, "purpose consents")?;
    let purposes_legitimate_interest = b.set(24, "purpose legitimate interests")?;
    let purpose_one_treatment = b.flag("purpose one treatment")?;
    let publisher_country = b.letters("publisher country")?;
    let (max_vendor_id, vendor_consents) = b.vendors("vendor consents")?;
    let (_, vendor_legitimate_interests) = b.vendors("vendor legitimate interests")?;
    Ok(TcString {
        version,
        created,
        last_updated,
        cmp_id,
        cmp_version,
        consent_screen,
        consent_language,
        vendor_list_version,
        policy_version,
        service_specific,
        use_non_standard_texts,
        special_features,
        purposes_consent,
        purposes_legitimate_interest,
        purpose_one_treatment,
        publisher_country,
        max_vendor_id,
        vendor_consents,
        vendor_legitimate_interests,
    })
}

/// The purposes of TCF v2.2 (1–11) and its special features (1–2), as the consent keys a
/// profile records: `tcf_purpose_1` … `tcf_purpose_11`, `tcf_special_feature_1` and `_2`,
/// each granted or withdrawn by the string.
pub fn consent_keys(tc: &TcString) -> Vec<(String, bool)> {
    let purposes =
        (1..=11u8).map(|p| (format!("tcf_purpose_{p}"), tc.purposes_consent.contains(&p)));
    let features = (1..=2u8).map(|f| {
        (
            format!("tcf_special_feature_{f}"),
            tc.special_features.contains(&f),
        )
    });
    purposes.chain(features).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's test vector.
    const VECTOR: &str = "CLcVDxRMWfGmWAVAHCENAXCkAKDAADnAABRgA5mdfCKZuYJez-NQm0TBMYA4oCAAGQYIAAAAAAEAIAEgAA.argAC0gAAAAAAAAAAAA";

    #[test]
    fn the_reference_vector_decodes() {
        let tc = decode(VECTOR).unwrap();
        assert_eq!(tc.version, 2);
        assert_eq!(tc.created / 1000, 1_228_644_257);
        assert_eq!(tc.last_updated / 1000, 1_326_215_413);
        assert_eq!((tc.cmp_id, tc.cmp_version, tc.consent_screen), (21, 7, 2));
        assert_eq!(tc.consent_language, "EN");
        assert_eq!(tc.vendor_list_version, 23);
        assert_eq!(tc.purposes_consent, BTreeSet::from([1, 3, 9, 10]));
        assert_eq!(tc.policy_version, 2);
        assert!(tc.service_specific);
        assert_eq!(tc.special_features, BTreeSet::from([2]));
        assert_eq!(
            tc.purposes_legitimate_interest,
            BTreeSet::from([3, 4, 5, 8, 9, 10])
        );
        assert_eq!(tc.publisher_country, "KM");
        assert_eq!(tc.max_vendor_id, 115);
        assert_eq!(tc.vendor_consents.len(), 56);
        let keys = consent_keys(&tc);
        assert_eq!(keys.len(), 13);
        assert!(keys.contains(&("tcf_purpose_1".into(), true)));
        assert!(keys.contains(&("tcf_purpose_2".into(), false)));
        assert!(keys.contains(&("tcf_special_feature_2".into(), true)));
        assert!(keys.contains(&("tcf_special_feature_1".into(), false)));
    }

    /// `v` as `n` bits, most significant first.
    fn push(bits: &mut String, v: u64, n: usize) {
        for i in (0..n).rev() {
            bits.push(if v >> i & 1 == 1 { '1' } else { '0' });
        }
    }

    /// The bits as bytes, the last one padded with zeros.
    fn pack(bits: &str) -> Vec<u8> {
        let mut bits = bits.to_string();
        while !bits.len().is_multiple_of(8) {
            bits.push('0');
        }
        bits.as_bytes()
            .chunks(8)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap())
            .collect()
    }

    /// Built bit by bit: ranges of vendors, and every refusal a bad string gets.
    #[test]
    fn ranges_and_refusals() {
        let mut bits = String::new();
        let mut put = |v: u64, n: usize| push(&mut bits, v, n);
        put(2, 6);
        put(16_000_000_000, 36);
        put(16_000_000_000, 36);
        put(300, 12);
        put(1, 12);
        put(0, 6);
        put(5, 6); // F
        put(17, 6); // R
        put(150, 12);
        put(4, 6);
        put(0, 1);
        put(0, 1);
        put(0b1, 12); // special feature 12
        put(0b11 << 22, 24); // purposes 1 and 2
        put(0, 24);
        put(0, 1);
        put(5, 6); // F
        put(17, 6); // R
                    // Vendor consents as ranges: 3–5 and 9, of at most 10.
        put(10, 16);
        put(1, 1);
        put(2, 12);
        put(1, 1);
        put(3, 16);
        put(5, 16);
        put(0, 1);
        put(9, 16);
        // Vendor legitimate interests as a bit field of 2: vendor 2.
        put(2, 16);
        put(0, 1);
        put(0b01, 2);
        let bytes = pack(&bits);
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        let tc = decode(&text).unwrap();
        assert_eq!(tc.created, 1_600_000_000_000);
        assert_eq!(
            (tc.consent_language.as_str(), tc.publisher_country.as_str()),
            ("FR", "FR")
        );
        assert_eq!(tc.special_features, BTreeSet::from([12]));
        assert_eq!(tc.purposes_consent, BTreeSet::from([1, 2]));
        assert_eq!(tc.vendor_consents, BTreeSet::from([3, 4, 5, 9]));
        assert_eq!(tc.vendor_legitimate_interests, BTreeSet::from([2]));
        // Thousands of overlapping ranges over every vendor read at once.
        // Everything before the publisher country (201 bits), as above.
        let mut many = String::from(&bits[..201]);
        let mut put = |v: u64, n: usize| push(&mut many, v, n);
        put(5, 6); // F
        put(17, 6); // R
        put(65_535, 16);
        put(1, 1);
        put(2_900, 12);
        for _ in 0..2_900 {
            put(1, 1);
            put(1, 16);
            put(65_535, 16);
        }
        put(0, 16);
        put(0, 1);
        let packed = pack(&many);
        let tc = decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&packed)).unwrap();
        assert_eq!(tc.vendor_consents.len(), 65_535);
        // Cut short anywhere: refused, never a panic.
        for cut in 0..text.len() {
            if let Ok(tc) = decode(&text[..cut]) {
                panic!("{cut}: {tc:?}");
            }
        }
        for (bad, says) in [
            ("", "empty"),
            ("!!!!", "base64url"),
            ("BAAAAAAA", "version 1"),
            (&"A".repeat(MAX_CHARS + 1), "longer than"),
        ] {
            let e = decode(bad).unwrap_err();
            assert!(e.to_string().contains(says), "{bad:.20}: {e}");
        }
        // A range beyond the maximum vendor id is refused.
        let mut wrong = bytes.clone();
        // The first range starts at bit 242 (byte 30 holds bits 240–247).
        wrong[30..].iter_mut().for_each(|b| *b = 0xff);
        let e =
            decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&wrong)).unwrap_err();
        assert!(e.to_string().contains("beyond 1–10"), "{e}");
    }
}
