//! Email over SMTP with lettre: HTML and text parts, the key as `Message-ID`, and one-click
//! unsubscribe headers (RFC 8058).

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{Message, SmtpTransport, Transport};
use parcours_core::journey::MessageChannel;

use crate::{message_id, Outgoing, SendError, Sender};

/// An SMTP server (`smtp://host:port`, `smtps://…`, `?tls=required`, user and password in
/// the URL).
pub struct Smtp {
    transport: SmtpTransport,
    from: Mailbox,
    domain: String,
}

impl Smtp {
    pub fn new(url: &str, from: &str) -> Result<Self, String> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("the sender address `{from}` is not valid: {e}"))?;
        let domain = from.email.domain().to_string();
        let transport = SmtpTransport::from_url(url)
            .map_err(|e| format!("the SMTP URL is not valid: {e}"))?
            .timeout(Some(std::time::Duration::from_secs(30)))
            .build();
        Ok(Self {
            transport,
            from,
            domain,
        })
    }

    /// The message as it goes on the wire.
    pub fn build(&self, m: &Outgoing) -> Result<Message, SendError> {
        let to: Mailbox = m.to.parse().map_err(|e| {
            SendError::Permanent(format!("the address `{}` is not valid: {e}", m.to))
        })?;
        let mut b = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.subject.clone().unwrap_or_default())
            .message_id(Some(message_id(&m.key, &self.domain)));
        if let Some(url) = &m.unsubscribe {
            b = b
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe"),
                    format!("<{url}>"),
                ))
                .raw_header(HeaderValue::new(
                    HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                    "List-Unsubscribe=One-Click".into(),
                ));
        }
        let built = match (&m.html, &m.text) {
            (Some(html), Some(text)) => b.multipart(MultiPart::alternative_plain_html(
                text.clone(),
                html.clone(),
            )),
            (Some(html), None) => b.singlepart(SinglePart::html(html.clone())),
            (None, text) => b.singlepart(SinglePart::plain(text.clone().unwrap_or_default())),
        };
        built.map_err(|e| SendError::Permanent(format!("the message cannot be built: {e}")))
    }
}

impl Sender for Smtp {
    fn name(&self) -> &'static str {
        "smtp"
    }

    fn send(&self, m: &Outgoing) -> Result<(), SendError> {
        if m.channel != MessageChannel::Email {
            return Err(SendError::Permanent(format!(
                "SMTP sends email, not {}",
                m.channel.as_str()
            )));
        }
        let message = self.build(m)?;
        self.transport.send(&message).map(|_| ()).map_err(|e| {
            if e.is_permanent() {
                SendError::Permanent(format!("the SMTP server refused the message: {e}"))
            } else {
                SendError::Retry(format!("SMTP: {e}"))
            }
        })
    }
}
