//! Where a touchpoint happened. Every event gets exactly one channel.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Web,
    Ios,
    Android,
    Store,
    Email,
    Sms,
    CallCentre,
    Chatbot,
    Social,
    Ads,
    Server,
}

impl Channel {
    pub const ALL: [Channel; 11] = [
        Channel::Web,
        Channel::Ios,
        Channel::Android,
        Channel::Store,
        Channel::Email,
        Channel::Sms,
        Channel::CallCentre,
        Channel::Chatbot,
        Channel::Social,
        Channel::Ads,
        Channel::Server,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "web",
            Channel::Ios => "ios",
            Channel::Android => "android",
            Channel::Store => "store",
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::CallCentre => "call_centre",
            Channel::Chatbot => "chatbot",
            Channel::Social => "social",
            Channel::Ads => "ads",
            Channel::Server => "server",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        let s = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        Some(match s.as_str() {
            "web" | "website" | "browser" => Channel::Web,
            "ios" => Channel::Ios,
            "android" => Channel::Android,
            "store" | "pos" | "retail" => Channel::Store,
            "email" => Channel::Email,
            "sms" => Channel::Sms,
            "call_centre" | "call_center" | "callcentre" | "callcenter" | "phone" => {
                Channel::CallCentre
            }
            "chatbot" | "chat" => Channel::Chatbot,
            "social" => Channel::Social,
            "ads" | "ad" | "advertising" => Channel::Ads,
            "server" => Channel::Server,
            _ => return None,
        })
    }

    /// Derives the channel of an event. An explicit `context.channel` wins, then the channel
    /// configured on the source (a POS source is `store`), then what the context says about the
    /// library, OS or device; anything else came from a server.
    pub fn derive(source_channel: Option<Channel>, hints: &ChannelHints<'_>) -> Channel {
        if let Some(c) = hints.explicit.and_then(Channel::parse).or(source_channel) {
            return c;
        }
        let contains = |hay: Option<&str>, needles: &[&str]| {
            hay.map(str::to_ascii_lowercase)
                .is_some_and(|h| needles.iter().any(|n| h.contains(n)))
        };
        for hint in [hints.os, hints.device_type] {
            if contains(hint, &["ios", "iphone", "ipad"]) {
                return Channel::Ios;
            }
            if contains(hint, &["android"]) {
                return Channel::Android;
            }
        }
        if contains(hints.library, &["ios", "swift"]) {
            Channel::Ios
        } else if contains(hints.library, &["android", "kotlin"]) {
            Channel::Android
        } else if contains(
            hints.library,
            &["analytics.js", "analytics-next", "rudder-js"],
        ) || hints.has_page
            || hints.has_user_agent
        {
            Channel::Web
        } else {
            Channel::Server
        }
    }
}

/// What an event's `context` says about where it came from.
#[derive(Debug, Default, Clone, Copy)]
pub struct ChannelHints<'a> {
    pub explicit: Option<&'a str>,
    pub library: Option<&'a str>,
    pub os: Option<&'a str>,
    pub device_type: Option<&'a str>,
    pub has_page: bool,
    pub has_user_agent: bool,
}

impl<'a> ChannelHints<'a> {
    pub fn from_context(context: Option<&'a Value>) -> Self {
        let Some(ctx) = context.and_then(Value::as_object) else {
            return Self::default();
        };
        let nested = |outer: &str, inner: &str| {
            ctx.get(outer)
                .and_then(|o| o.get(inner))
                .and_then(Value::as_str)
        };
        Self {
            explicit: ctx.get("channel").and_then(Value::as_str),
            library: nested("library", "name"),
            os: nested("os", "name"),
            device_type: nested("device", "type"),
            has_page: ctx.contains_key("page"),
            has_user_agent: ctx.contains_key("userAgent"),
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn explicit_context_channel_wins_over_source() {
        let ctx = json!({"channel": "email"});
        assert_eq!(
            Channel::derive(
                Some(Channel::Store),
                &ChannelHints::from_context(Some(&ctx))
            ),
            Channel::Email
        );
    }

    #[test]
    fn source_channel_wins_over_inference() {
        let ctx = json!({"library": {"name": "analytics.js"}});
        assert_eq!(
            Channel::derive(
                Some(Channel::Store),
                &ChannelHints::from_context(Some(&ctx))
            ),
            Channel::Store
        );
    }

    #[test]
    fn infers_from_library_os_and_page() {
        let web = json!({"library": {"name": "analytics.js"}});
        let ios = json!({"os": {"name": "iOS"}, "library": {"name": "analytics-swift"}});
        let android = json!({"device": {"type": "android"}});
        let page = json!({"page": {"url": "https://shop.example/"}});
        let python = json!({"library": {"name": "analytics-python"}});
        assert_eq!(
            Channel::derive(None, &ChannelHints::from_context(Some(&web))),
            Channel::Web
        );
        assert_eq!(
            Channel::derive(None, &ChannelHints::from_context(Some(&ios))),
            Channel::Ios
        );
        assert_eq!(
            Channel::derive(None, &ChannelHints::from_context(Some(&android))),
            Channel::Android
        );
        assert_eq!(
            Channel::derive(None, &ChannelHints::from_context(Some(&page))),
            Channel::Web
        );
        assert_eq!(
            Channel::derive(None, &ChannelHints::from_context(Some(&python))),
            Channel::Server
        );
        assert_eq!(
            Channel::derive(None, &ChannelHints::default()),
            Channel::Server
        );
    }

    #[test]
    fn every_channel_round_trips_through_its_name() {
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
    }
}
