//! A workspace's contact policy: how many messages a customer may get (frequency caps, over a
//! rolling window or per calendar day in her time zone), quiet hours for every journey, and how
//! long a message held back by a cap may wait before it is dropped.
//!
//! [`next_allowed`] answers, for one more message: now, or the first moment it fits.

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::{doc, local, MessageChannel, QuietHours};
use crate::time::{Millis, DAY};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<Cap>,
    /// Quiet hours of every journey that names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
    /// How long a message held back by a cap waits at most before it is dropped.
    #[serde(default = "default_expiry")]
    pub expire_after_ms: Millis,
    /// For this long after she converts (meets a journey's goal), no marketing message goes to
    /// her: the thank-you is not followed by a promotion for what she just bought.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_conversion_ms: Option<Millis>,
    /// The global control group, in basis points of the workspace's customers: they enter
    /// journeys but no journey sends them anything, so every journey (and all of them
    /// together) can be measured against customers nothing was done to.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub global_control_bp: u16,
}

fn is_zero(bp: &u16) -> bool {
    *bp == 0
}

/// The global control group is at most this share of the customers (half of them).
pub const MAX_GLOBAL_CONTROL_BP: u16 = 5_000;

impl Policy {
    /// Whether a customer is in the workspace's global control group (sticky: the same answer
    /// for every journey, every time, for as long as the share stays the same; a larger share
    /// keeps everyone who was in the smaller one).
    pub fn in_global_control(&self, profile: &str) -> bool {
        self.global_control_bp > 0
            && super::machine::draw(&["global_control", profile], 10_000)
                < u64::from(self.global_control_bp)
    }
}

/// Three days by default.
pub const DEFAULT_EXPIRY_MS: Millis = 3 * DAY;

fn default_expiry() -> Millis {
    DEFAULT_EXPIRY_MS
}

/// At most `max` messages (of one channel, or of every channel) per window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<MessageChannel>,
    pub max: u32,
    pub window: CapWindow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CapWindow {
    /// The last `ms` milliseconds.
    Rolling { ms: Millis },
    /// Her calendar day (midnight to midnight in her time zone).
    Day,
}

/// A message a customer was sent: what caps count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact {
    pub at: Millis,
    pub channel: MessageChannel,
}

/// When one more message on `channel` may go: `now` if every cap allows it, else the first
/// moment they all do (a rolling window's oldest message leaving it, her next midnight).
pub fn next_allowed(
    policy: &Policy,
    contacts: &[Contact],
    channel: MessageChannel,
    now: Millis,
    tz: Tz,
) -> Millis {
    let mut at = now;
    // Each cap can only move the moment later; a few rounds settle it (a later moment can
    // fall in another cap's next window).
    for _ in 0..8 {
        let mut moved = false;
        for cap in &policy.caps {
            if cap.channel.is_some_and(|c| c != channel) {
                continue;
            }
            let counted = |c: &&Contact| cap.channel.is_none_or(|ch| ch == c.channel);
            let max = cap.max as usize;
            if max == 0 {
                // A cap of 0 lets nothing through: no moment fits.
                return Millis::MAX;
            }
            let free = match cap.window {
                CapWindow::Rolling { ms } => {
                    let mut inside: Vec<Millis> = contacts
                        .iter()
                        .filter(counted)
                        .map(|c| c.at)
                        .filter(|t| *t > at - ms && *t <= at)
                        .collect();
                    if inside.len() < max {
                        continue;
                    }
                    inside.sort_unstable();
                    // The moment enough of them have left the window.
                    inside[inside.len() - max] + ms
                }
                CapWindow::Day => {
                    let day = local::local_date(tz, at);
                    let start = local::day_start(tz, day);
                    let today = contacts
                        .iter()
                        .filter(counted)
                        .filter(|c| c.at >= start && c.at <= at)
                        .count();
                    if today < max {
                        continue;
                    }
                    match day.succ_opt() {
                        Some(next) => local::day_start(tz, next),
                        None => continue,
                    }
                }
            };
            if free > at {
                at = free;
                moved = true;
            }
        }
        if !moved {
            return at;
        }
    }
    at
}

/// Reads a policy from its JSON form as the API takes it:
///
/// ```json
/// {"caps": [{"channel": "email", "max": 1, "per": "day"}, {"max": 3, "within": "7d"}],
///  "quiet_hours": {"from": "21:00", "to": "08:00"}, "expire_after": "3d"}
/// ```
pub fn read(v: &serde_json::Value) -> Result<Policy, String> {
    let obj = v
        .as_object()
        .ok_or("the policy is a JSON object: {\"caps\": [...], \"quiet_hours\": {...}, \"expire_after\": \"3d\"}")?;
    for k in obj.keys() {
        if ![
            "caps",
            "quiet_hours",
            "expire_after",
            "after_conversion",
            "global_control",
        ]
        .contains(&k.as_str())
        {
            return Err(format!(
                "unknown key `{k}`; expected caps, quiet_hours, expire_after, after_conversion, global_control"
            ));
        }
    }
    let mut policy = Policy {
        expire_after_ms: DEFAULT_EXPIRY_MS,
        ..Policy::default()
    };
    if let Some(caps) = obj.get("caps") {
        let caps = caps.as_array().ok_or("caps is a list")?;
        if caps.len() > 20 {
            return Err("at most 20 caps".into());
        }
        for (i, c) in caps.iter().enumerate() {
            let o = c.as_object().ok_or(format!("caps[{i}] is an object"))?;
            for k in o.keys() {
                if !["channel", "max", "per", "within"].contains(&k.as_str()) {
                    return Err(format!(
                        "caps[{i}]: unknown key `{k}`; expected channel, max, per, within"
                    ));
                }
            }
            let channel = match o.get("channel") {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(
                    v.as_str()
                        .and_then(MessageChannel::parse)
                        .ok_or(format!("caps[{i}].channel is email, sms or push"))?,
                ),
            };
            let max = o
                .get("max")
                .and_then(serde_json::Value::as_u64)
                .filter(|m| *m <= 10_000)
                .ok_or(format!("caps[{i}].max is a whole number from 0 to 10000"))?
                as u32;
            let window = match (o.get("per"), o.get("within")) {
                (Some(p), None) if p == "day" => CapWindow::Day,
                (None, Some(w)) => {
                    let ms = doc::duration(w.as_str().unwrap_or_default())
                        .map_err(|e| format!("caps[{i}].within: {e}"))?;
                    CapWindow::Rolling { ms }
                }
                _ => {
                    return Err(format!(
                        "caps[{i}] takes `\"per\": \"day\"` (her calendar day) or `\"within\": \"7d\"` (a rolling window), one of them"
                    ))
                }
            };
            policy.caps.push(Cap {
                channel,
                max,
                window,
            });
        }
    }
    if let Some(q) = obj.get("quiet_hours") {
        let q = q.as_object().ok_or("quiet_hours is an object")?;
        let time = |k: &str| -> Result<super::LocalTime, String> {
            doc::local_time(q.get(k).and_then(|v| v.as_str()).unwrap_or_default())
                .map_err(|e| format!("quiet_hours.{k}: {e}"))
        };
        let (from, to) = (time("from")?, time("to")?);
        if from == to {
            return Err("quiet hours must not start and end at the same time".into());
        }
        let drop = match q.get("then").and_then(|v| v.as_str()) {
            None | Some("defer") => false,
            Some("drop") => true,
            Some(_) => return Err("quiet_hours.then is defer or drop".into()),
        };
        policy.quiet_hours = Some(QuietHours { from, to, drop });
    }
    if let Some(e) = obj.get("expire_after") {
        policy.expire_after_ms = doc::duration(e.as_str().unwrap_or_default())
            .map_err(|e| format!("expire_after: {e}"))?;
    }
    if let Some(e) = obj.get("after_conversion") {
        policy.after_conversion_ms = Some(
            doc::duration(e.as_str().unwrap_or_default())
                .map_err(|e| format!("after_conversion: {e}"))?,
        );
    }
    if let Some(g) = obj.get("global_control") {
        let max = f64::from(MAX_GLOBAL_CONTROL_BP) / 100.0;
        let text = g.as_str().map(|s| s.trim().trim_end_matches('%').trim());
        let percent = match (g.as_f64(), text) {
            (Some(p), _) => Some(p),
            (None, Some(t)) => t.parse::<f64>().ok(),
            _ => None,
        };
        policy.global_control_bp = percent
            .filter(|p| (0.0..=max).contains(p))
            .map(|p| (p * 100.0).round() as u16)
            .ok_or(format!(
                "global_control is a percentage of customers from 0% to {max}% (\"5%\" or 5)"
            ))?;
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_timestamp;
    use serde_json::json;

    fn t(s: &str) -> Millis {
        parse_timestamp(s).unwrap()
    }

    fn email(at: &str) -> Contact {
        Contact {
            at: t(at),
            channel: MessageChannel::Email,
        }
    }

    #[test]
    fn a_global_control_group_reads_and_holds_its_share() {
        assert_eq!(
            read(&json!({"global_control": "5%"}))
                .unwrap()
                .global_control_bp,
            500
        );
        assert_eq!(
            read(&json!({"global_control": 2.5}))
                .unwrap()
                .global_control_bp,
            250
        );
        assert_eq!(read(&json!({})).unwrap().global_control_bp, 0);
        for bad in [json!("51%"), json!(-1), json!("some"), json!(true)] {
            let e = read(&json!({"global_control": bad})).unwrap_err();
            assert!(e.starts_with("global_control is a percentage"), "{e}");
        }
        let p = read(&json!({"global_control": "10%"})).unwrap();
        let held = (0..10_000)
            .filter(|i| p.in_global_control(&format!("p{i}")))
            .count();
        assert!((900..1100).contains(&held), "{held} of 10000 held for 10%");
        // A larger share keeps everyone the smaller one held.
        let wider = read(&json!({"global_control": "20%"})).unwrap();
        assert!((0..10_000)
            .map(|i| format!("p{i}"))
            .filter(|id| p.in_global_control(id))
            .all(|id| wider.in_global_control(&id)));
        assert!(!Policy::default().in_global_control("p1"));
    }

    #[test]
    fn a_quiet_period_after_a_conversion_reads() {
        let p = read(&json!({"after_conversion": "1d"})).unwrap();
        assert_eq!(p.after_conversion_ms, Some(DAY));
        assert_eq!(read(&json!({})).unwrap().after_conversion_ms, None);
        let e = read(&json!({"after_conversion": "soon"})).unwrap_err();
        assert!(e.starts_with("after_conversion:"), "{e}");
    }

    #[test]
    fn calendar_days_are_hers() {
        let p = read(&json!({"caps": [{"channel": "email", "max": 1, "per": "day"}]})).unwrap();
        let paris = local::zone(Some("Europe/Paris"));
        let sent = [email("2026-01-15T08:00:00Z")];
        // Later the same day in Paris: not before her next midnight (23:00 UTC).
        assert_eq!(
            next_allowed(
                &p,
                &sent,
                MessageChannel::Email,
                t("2026-01-15T20:00:00Z"),
                paris
            ),
            t("2026-01-15T23:00:00Z")
        );
        // SMS is not capped by an email cap.
        let now = t("2026-01-15T20:00:00Z");
        assert_eq!(
            next_allowed(&p, &sent, MessageChannel::Sms, now, paris),
            now
        );
        // 23:30 UTC is the next day in Paris: allowed.
        let now = t("2026-01-15T23:30:00Z");
        assert_eq!(
            next_allowed(&p, &sent, MessageChannel::Email, now, paris),
            now
        );
        // In Tokyo the same instants fall on other days.
        let tokyo = local::zone(Some("Asia/Tokyo"));
        let now = t("2026-01-15T16:00:00Z"); // 01:00 on the 16th in Tokyo
        assert_eq!(
            next_allowed(&p, &sent, MessageChannel::Email, now, tokyo),
            now
        );
        // The night the clocks go forward, her next midnight is still midnight (22:00 UTC
        // in summer time).
        let sent = [email("2026-03-29T10:00:00Z")];
        assert_eq!(
            next_allowed(
                &p,
                &sent,
                MessageChannel::Email,
                t("2026-03-29T12:00:00Z"),
                paris
            ),
            t("2026-03-29T22:00:00Z")
        );
    }

    #[test]
    fn rolling_windows_free_up_as_messages_age() {
        let p = read(&json!({"caps": [{"max": 2, "within": "7d"}]})).unwrap();
        let sent = [email("2026-01-01T10:00:00Z"), email("2026-01-03T10:00:00Z")];
        let tz = Tz::UTC;
        assert_eq!(
            next_allowed(
                &p,
                &sent,
                MessageChannel::Sms,
                t("2026-01-05T00:00:00Z"),
                tz
            ),
            t("2026-01-08T10:00:00Z")
        );
        let now = t("2026-01-08T10:00:01Z");
        assert_eq!(next_allowed(&p, &sent, MessageChannel::Push, now, tz), now);
        // Two caps: the later moment wins. The SMS of the 8th fills the day's SMS cap (free
        // at midnight) and the 7-day cap (three messages: free when the one of the 3rd leaves).
        let p = read(&json!({"caps": [{"max": 2, "within": "7d"}, {"channel": "sms", "max": 1, "per": "day"}]})).unwrap();
        let sms = [Contact {
            at: t("2026-01-08T09:00:00Z"),
            channel: MessageChannel::Sms,
        }];
        let all: Vec<Contact> = sent.iter().copied().chain(sms).collect();
        assert_eq!(
            next_allowed(&p, &all, MessageChannel::Sms, t("2026-01-08T09:30:00Z"), tz),
            t("2026-01-10T10:00:00Z")
        );
        let only_day =
            read(&json!({"caps": [{"channel": "sms", "max": 1, "per": "day"}]})).unwrap();
        assert_eq!(
            next_allowed(
                &only_day,
                &all,
                MessageChannel::Sms,
                t("2026-01-08T09:30:00Z"),
                tz
            ),
            t("2026-01-09T00:00:00Z")
        );
        let none = read(&json!({"caps": [{"max": 0, "per": "day"}]})).unwrap();
        assert_eq!(
            next_allowed(&none, &[], MessageChannel::Sms, 0, tz),
            Millis::MAX,
            "a cap of 0 lets nothing through"
        );
    }

    #[test]
    fn policies_are_checked() {
        for (bad, why) in [
            (json!([]), "object"),
            (json!({"cap": []}), "unknown key `cap`"),
            (json!({"caps": [{"max": 1}]}), "one of them"),
            (json!({"caps": [{"max": 1, "per": "week"}]}), "one of them"),
            (json!({"caps": [{"max": 1, "within": "1w"}]}), "within"),
            (json!({"caps": [{"max": -1, "per": "day"}]}), "whole number"),
            (
                json!({"caps": [{"channel": "fax", "max": 1, "per": "day"}]}),
                "channel",
            ),
            (
                json!({"quiet_hours": {"from": "21:00", "to": "21:00"}}),
                "same time",
            ),
            (json!({"expire_after": "soon"}), "expire_after"),
        ] {
            let e = read(&bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let p =
            read(&json!({"quiet_hours": {"from": "21:00", "to": "08:00"}, "expire_after": "1h"}))
                .unwrap();
        assert_eq!(p.expire_after_ms, 3_600_000);
        assert!(p.quiet_hours.is_some());
        let back: Policy = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
