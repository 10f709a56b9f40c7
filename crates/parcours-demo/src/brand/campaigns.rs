//! Campaigns.

use chrono::{DateTime, Utc};

use super::*;

pub(crate) struct Campaign {
    pub(crate) id: String,
    pub(crate) name: &'static str,
    pub(crate) subject: &'static str,
    pub(crate) sent_at: i64,
}

pub(crate) struct Calendar {
    pub(crate) newsletters: Vec<Campaign>,
    pub(crate) text_messages: Vec<Campaign>,
}

impl Calendar {
    /// A newsletter every week and a text message every other week, at fixed hours.
    pub(crate) fn of(window: Window) -> Self {
        let first_day = window.start.div_euclid(DAY) * DAY;
        let sends = |first: i64, every: i64| {
            (0_i64..)
                .map(move |n| first + n * every)
                .take_while(move |&at| at <= window.end)
                .filter(move |&at| at >= window.start)
        };
        let newsletters = sends(first_day + DAY + 8 * HOUR, 7 * DAY)
            .enumerate()
            .map(|(n, sent_at)| {
                let (name, subject) = NEWSLETTERS[n % NEWSLETTERS.len()];
                let week = DateTime::<Utc>::from_timestamp_millis(sent_at)
                    .map(|d| d.format("%G-w%V").to_string());
                Campaign {
                    id: format!("nl-{}", week.unwrap_or_default()),
                    name,
                    subject,
                    sent_at,
                }
            })
            .collect();
        let text_messages = sends(first_day + 3 * DAY + 16 * HOUR, 14 * DAY)
            .enumerate()
            .map(|(n, sent_at)| {
                let name = TEXT_MESSAGES[n % TEXT_MESSAGES.len()];
                Campaign {
                    id: format!("sms-{}", day_of(sent_at)),
                    name,
                    subject: name,
                    sent_at,
                }
            })
            .collect();
        Calendar {
            newsletters,
            text_messages,
        }
    }
}
