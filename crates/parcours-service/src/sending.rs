//! The channels messages leave through (SMTP, an SMS or push provider, or the capture channel
//! when none is configured), as operators see them, and a test message sent through one of
//! them to an address, at once, to check the configuration before a journey relies on it.
//!
//! A test message goes straight to the channel's sender, not through the outbox: its answer
//! (accepted, or the provider's refusal) is what the operator is waiting for. It reaches no
//! customer's history, frequency cap or report.

use parcours_channels::{Outgoing, SendError};
use parcours_core::identifier::{normalize_email, normalize_phone};
use parcours_core::journey::MessageChannel;
use parcours_core::time::{format_timestamp, Millis};
use parcours_engine::channels::Senders;
use serde::Serialize;

use crate::{Actor, ServiceError};

/// The longest push token taken.
const MAX_PUSH_TOKEN: usize = 4_096;

/// A channel as configured on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelView {
    pub channel: &'static str,
    /// `smtp`, `http` or `capture` (kept, not sent).
    pub sender: &'static str,
    /// Where it sends, without credentials (empty for the capture channel).
    pub about: String,
    /// Messages per second at most (0: no limit).
    pub rate_per_second: u32,
}

/// The message channels of this node (every role may read them: they hold no secret).
pub fn channels(senders: &Senders, _actor: &Actor) -> Vec<ChannelView> {
    [
        MessageChannel::Email,
        MessageChannel::Sms,
        MessageChannel::Push,
    ]
    .into_iter()
    .map(|c| ChannelView {
        channel: c.as_str(),
        sender: senders.of(c).name(),
        about: senders.about.get(&c).cloned().unwrap_or_default(),
        rate_per_second: senders.rate_per_second.get(&c).copied().unwrap_or(0),
    })
    .collect()
}

/// Whether journeys' webhook steps can call out: a signing secret is configured.
pub fn webhooks_signed(senders: &Senders) -> bool {
    senders.webhook.is_some()
}

/// What became of a test message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestSent {
    pub channel: &'static str,
    /// The address as it was sent to (normalised).
    pub to: String,
    /// Who took it: `smtp`, `http`, or `capture` (nothing left this node).
    pub sender: &'static str,
    pub key: String,
}

/// Sends a test message on `channel` to `address` now (admins: it sends from the brand's
/// address). `invalid_channel`, `invalid_address`; `test_send_failed` with the provider's
/// answer when it refuses or cannot be reached.
pub fn send_test(
    senders: &Senders,
    actor: &Actor,
    channel: &str,
    address: &str,
    now: Millis,
) -> Result<TestSent, ServiceError> {
    actor.require_admin()?;
    let channel = MessageChannel::parse(channel.trim()).ok_or_else(|| {
        ServiceError::invalid(
            "invalid_channel",
            format!("`{channel}` is not a message channel: email, sms or push"),
        )
    })?;
    let to = match channel {
        MessageChannel::Email => normalize_email(address).ok_or_else(|| {
            ServiceError::invalid(
                "invalid_address",
                format!("`{}` is not an email address", address.trim()),
            )
        })?,
        MessageChannel::Sms => normalize_phone(address, None).ok_or_else(|| {
            ServiceError::invalid(
                "invalid_address",
                format!(
                    "`{}` is not a phone number: write it with its country code (+33 6 12 34 56 78)",
                    address.trim()
                ),
            )
        })?,
        MessageChannel::Push => {
            let token = address.trim();
            if token.is_empty() || token.len() > MAX_PUSH_TOKEN || token.contains(char::is_control)
            {
                return Err(ServiceError::invalid(
                    "invalid_address",
                    "a push token is one line of at most 4,096 characters",
                ));
            }
            token.to_string()
        }
    };
    let key = format!(
        "test:{}:{now}:{:08x}",
        actor.workspace,
        rand::random::<u32>()
    );
    let when = format_timestamp(now);
    let text = format!(
        "This is a test message from Parcours (workspace {}), sent at {when}. If it reached you, the {} channel works.",
        actor.workspace,
        channel.as_str()
    );
    let message = Outgoing {
        channel,
        to: to.clone(),
        subject: (channel == MessageChannel::Email).then(|| "Parcours: test message".to_string()),
        html: (channel == MessageChannel::Email).then(|| {
            format!(
                "<!doctype html><html><body><p>{}</p></body></html>",
                text.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
            )
        }),
        text: Some(text),
        title: (channel == MessageChannel::Push).then(|| "Parcours".to_string()),
        key: key.clone(),
        unsubscribe: None,
        links: Vec::new(),
        status_callback: None,
        secret: None,
        journey: "test".into(),
        step: "test".into(),
        run: key.clone(),
        profile: String::new(),
    };
    let sender = senders.of(channel);
    sender.send(&message).map_err(|e| {
        let (kind, detail) = match &e {
            SendError::Retry(d) => ("could not be reached or refused for now", d),
            SendError::Permanent(d) => ("refused it", d),
        };
        ServiceError::Unprocessable {
            code: "test_send_failed",
            message: format!("{} {kind}: {detail}", sender.name()),
        }
    })?;
    Ok(TestSent {
        channel: channel.as_str(),
        to,
        sender: sender.name(),
        key,
    })
}
