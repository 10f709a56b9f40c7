//! Channels: how a journey's message becomes text (Liquid templates over the customer's
//! traits, the event that brought her in and the journey), and how it leaves (SMTP, or the
//! capture channel that keeps it for development and the demo).
//!
//! A message travels as an [`Outgoing`]: the outbox row's payload, with the row's key as its
//! idempotency key. Senders put that key where the provider can see it (the email's
//! `Message-ID`), so a message that must be sent again after a crash carries the same key.

mod render;
mod smtp;
pub mod tracking;

pub use render::{RenderError, Rendered, Renderer};
pub use smtp::Smtp;

use parcours_core::journey::MessageChannel;
use serde::{Deserialize, Serialize};

/// A message ready to send: what its outbox row holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    pub channel: MessageChannel,
    /// The address: an email address, a phone number in E.164, a push token.
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The idempotency key (the outbox key, `RUN:STEP:EPOCH`).
    pub key: String,
    /// The one-click unsubscribe address (email), served by Parcours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsubscribe: Option<String>,
    /// The addresses of the email's tracked links, in order: where each click redirect leads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// Where the provider reports delivery (SMS, push): Parcours' signed status callback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_callback: Option<String>,
    /// The message's own secret, which signs its tracking links (never shown or sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub journey: String,
    pub step: String,
    pub run: String,
    pub profile: String,
}

/// An address as suppressions keep it: an email address trimmed and in lower case (the
/// same mailbox however it was typed), a phone number or push token trimmed.
pub fn suppression_address(channel: MessageChannel, address: &str) -> String {
    match channel {
        MessageChannel::Email => address.trim().to_lowercase(),
        _ => address.trim().to_string(),
    }
}

/// Why a send failed: worth trying again later, or never.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Retry(String),
    #[error("{0}")]
    Permanent(String),
}

/// Something that sends messages of one or more channels.
pub trait Sender: Send + Sync {
    /// Its name in the delivery log (`smtp`, `capture`).
    fn name(&self) -> &'static str;
    fn send(&self, message: &Outgoing) -> Result<(), SendError>;
}

/// Keeps messages instead of sending them: the outbox row, marked delivered, is the message
/// as the customer would have received it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Capture;

impl Sender for Capture {
    fn name(&self) -> &'static str {
        "capture"
    }

    fn send(&self, _message: &Outgoing) -> Result<(), SendError> {
        Ok(())
    }
}

/// The `Message-ID` of a key: `<KEY@DOMAIN>`, the key's characters that a message id cannot
/// hold replaced by `.` (the same key always gives the same id).
pub fn message_id(key: &str, domain: &str) -> String {
    let left: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect();
    let mut left = left.trim_matches('.').to_string();
    while left.contains("..") {
        left = left.replace("..", ".");
    }
    format!("<{left}@{domain}>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_stable_and_valid() {
        assert_eq!(
            message_id("r1:reminder:2", "shop.example"),
            "<r1.reminder.2@shop.example>"
        );
        assert_eq!(
            message_id("r1:reminder:2", "shop.example"),
            message_id("r1:reminder:2", "shop.example")
        );
        assert_eq!(message_id("a b<c>", "x"), "<a.b.c@x>");
    }
}
