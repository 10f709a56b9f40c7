//! Identity rules of a workspace: which values are never identifiers, how many values of a type
//! one profile may hold, and which identifiers matter most when a merge would break a limit.

use std::collections::BTreeMap;

use regex_lite::Regex;
use serde::{Deserialize, Serialize};

use crate::identifier::{Identifier, ANONYMOUS_ID, EMAIL, PHONE, USER_ID};

/// The rules as configured (and stored) per workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityRulesConfig {
    /// Exact values (compared case-insensitively) that are never promoted to identifiers.
    pub blocked_values: Vec<String>,
    /// Regular expressions; a value matching one is never promoted to an identifier.
    pub blocked_patterns: Vec<String>,
    /// Maximum number of values of a type on one profile. Types not listed get `default_limit`.
    pub limits: BTreeMap<String, u32>,
    pub default_limit: u32,
    /// Identifier types from most to least important; unlisted types come after, alphabetically.
    pub priority: Vec<String>,
    /// Traits (in `traits`, `context.traits` or `properties`) that are identifiers, e.g. `loyalty_card`.
    pub identifier_traits: Vec<String>,
    /// ISO region used to read national phone numbers, e.g. `FR`.
    pub default_region: Option<String>,
    /// What consent never asked for counts as when an audience asks `consent … granted`:
    /// `withdrawn` (the default: opt-in, as GDPR asks for marketing) or `granted` (opt-out).
    pub unknown_consent: UnknownConsent,
    /// What happens to a person who withdrew consent to `analytics`: `exclude` (the
    /// default: no audience, no computed trait, no score; identity, traits and consent are
    /// kept, to honour their rights) or `profile` (counted like everyone else).
    pub analytics_opt_out: AnalyticsOptOut,
    /// Which phone numbers become identifiers: `valid` (the default: in a range a region
    /// allocates) or `possible` (the right length for the region).
    pub phone_numbers: crate::identifier::PhoneCheck,
}

/// See [`IdentityRulesConfig::analytics_opt_out`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalyticsOptOut {
    #[default]
    Exclude,
    Profile,
}

/// See [`IdentityRulesConfig::unknown_consent`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownConsent {
    #[default]
    Withdrawn,
    Granted,
}

impl Default for IdentityRulesConfig {
    fn default() -> Self {
        Self {
            blocked_values: ["-1", "null", "anonymous", "undefined"]
                .map(String::from)
                .to_vec(),
            blocked_patterns: vec!["^[0-]*$".into()],
            limits: BTreeMap::from([(USER_ID.to_string(), 1)]),
            default_limit: 5,
            priority: [USER_ID, EMAIL, PHONE].map(String::from).to_vec(),
            identifier_traits: Vec::new(),
            default_region: None,
            unknown_consent: UnknownConsent::Withdrawn,
            analytics_opt_out: AnalyticsOptOut::Exclude,
            phone_numbers: crate::identifier::PhoneCheck::Valid,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RulesError {
    #[error("blocked pattern `{pattern}` is not a valid regular expression: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("limit for `{0}` must be at least 1")]
    ZeroLimit(String),
}

/// Compiled rules, ready to apply.
#[derive(Debug, Clone)]
pub struct IdentityRules {
    pub config: IdentityRulesConfig,
    patterns: Vec<Regex>,
}

impl Default for IdentityRules {
    fn default() -> Self {
        Self::new(IdentityRulesConfig::default()).expect("default rules are valid")
    }
}

impl IdentityRules {
    pub fn new(config: IdentityRulesConfig) -> Result<Self, RulesError> {
        let patterns = config
            .blocked_patterns
            .iter()
            .map(|p| {
                Regex::new(p).map_err(|e| RulesError::BadPattern {
                    pattern: p.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if config.default_limit == 0 {
            return Err(RulesError::ZeroLimit("default".into()));
        }
        if let Some((kind, _)) = config.limits.iter().find(|(_, l)| **l == 0) {
            return Err(RulesError::ZeroLimit(kind.clone()));
        }
        Ok(Self { config, patterns })
    }

    pub fn is_blocked(&self, value: &str) -> bool {
        value.trim().is_empty()
            || self
                .config
                .blocked_values
                .iter()
                .any(|b| b.eq_ignore_ascii_case(value))
            || self.patterns.iter().any(|p| p.is_match(value))
    }

    pub fn limit(&self, kind: &str) -> u32 {
        self.config
            .limits
            .get(kind)
            .copied()
            .unwrap_or(self.config.default_limit)
    }

    /// Lower is more important. Listed types first, in order; then the rest alphabetically,
    /// with `anonymous_id` last among equals because it is the weakest evidence of a person.
    pub fn rank(&self, id: &Identifier) -> (usize, bool, String, String) {
        let listed = self.config.priority.iter().position(|p| *p == id.kind);
        (
            listed.unwrap_or(usize::MAX),
            id.kind == ANONYMOUS_ID,
            id.kind.clone(),
            id.value.clone(),
        )
    }

    /// Sorts identifiers from most to least important.
    pub fn sort_by_priority(&self, ids: &mut [Identifier]) {
        ids.sort_by_cached_key(|id| self.rank(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_blocked_values_match_the_usual_junk() {
        let r = IdentityRules::default();
        for v in [
            "0",
            "000-000",
            "-1",
            "null",
            "NULL",
            "anonymous",
            "undefined",
            "",
            "  ",
        ] {
            assert!(r.is_blocked(v), "{v:?} should be blocked");
        }
        for v in ["cus_1", "a@b.c", "+33612345678", "0612"] {
            assert!(!r.is_blocked(v), "{v:?} should not be blocked");
        }
    }

    #[test]
    fn priority_puts_user_id_first_and_anonymous_id_last() {
        let r = IdentityRules::default();
        let mut ids = vec![
            Identifier::new("anonymous_id", "a"),
            Identifier::new("device_id", "d"),
            Identifier::new("phone", "+33612345678"),
            Identifier::new("email", "e@x.io"),
            Identifier::new("user_id", "u"),
        ];
        r.sort_by_priority(&mut ids);
        let kinds: Vec<_> = ids.iter().map(|i| i.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["user_id", "email", "phone", "device_id", "anonymous_id"]
        );
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        let bad = IdentityRulesConfig {
            blocked_patterns: vec!["(".into()],
            ..Default::default()
        };
        assert!(matches!(
            IdentityRules::new(bad),
            Err(RulesError::BadPattern { .. })
        ));
        let zero = IdentityRulesConfig {
            limits: [("email".to_string(), 0)].into(),
            ..Default::default()
        };
        assert_eq!(
            IdentityRules::new(zero).unwrap_err(),
            RulesError::ZeroLimit("email".into())
        );
    }
}
