//! Devices.

use rand::rngs::StdRng;
use serde_json::{json, Value};

use super::*;

pub(crate) struct Browser {
    pub(crate) anonymous_id: String,
    pub(crate) user_agent: &'static str,
    pub(crate) identified: bool,
    /// What the visitor answers when the cookie banner asks; `None` until it has been answered.
    pub(crate) consent: Option<Consent>,
}

impl Browser {
    pub(crate) fn new(rng: &mut StdRng) -> Self {
        Browser {
            anonymous_id: uuid(rng),
            user_agent: pick(rng, USER_AGENTS),
            identified: false,
            consent: None,
        }
    }
}

pub(crate) struct AppInstall {
    pub(crate) platform: Platform,
    pub(crate) anonymous_id: String,
    pub(crate) device_id: String,
    pub(crate) model: &'static str,
    pub(crate) installed: bool,
    pub(crate) identified: bool,
}

impl AppInstall {
    pub(crate) fn new(rng: &mut StdRng, platform: Platform) -> Self {
        let model = match platform {
            Platform::Ios => pick(rng, &["iPhone14,7", "iPhone15,2", "iPhone16,1"]),
            Platform::Android => pick(rng, &["SM-S921B", "Pixel 8", "2304FPN6DG"]),
        };
        AppInstall {
            platform,
            anonymous_id: uuid(rng),
            device_id: uuid(rng).to_uppercase(),
            model,
            installed: false,
            identified: false,
        }
    }

    pub(crate) fn context(&self) -> Value {
        let (library, os, os_version, manufacturer) = match self.platform {
            Platform::Ios => ("analytics-ios", "iOS", "17.5", "Apple"),
            Platform::Android => (
                "analytics-kotlin",
                "Android",
                "14",
                android_maker(self.model),
            ),
        };
        let device_type = if self.platform == Platform::Ios {
            "ios"
        } else {
            "android"
        };
        json!({
            "library": {"name": library, "version": "1.16.0"},
            "os": {"name": os, "version": os_version},
            "device": {"id": self.device_id, "type": device_type, "manufacturer": manufacturer, "model": self.model},
            "locale": "fr-FR",
            "timezone": "Europe/Paris",
        })
    }
}

pub(crate) fn android_maker(model: &str) -> &'static str {
    match model {
        "Pixel 8" => "Google",
        "SM-S921B" => "Samsung",
        _ => "Xiaomi",
    }
}

pub(crate) fn tablet_context(store: &Store) -> Value {
    // The app runs on a shop-floor iPad: the visit happens in the store.
    json!({
        "channel": "store",
        "library": {"name": "analytics-ios", "version": "1.16.0"},
        "os": {"name": "iOS", "version": "17.5"},
        "device": {
            "id": store.tablet_device,
            "type": "ios",
            "manufacturer": "Apple",
            "model": "iPad13,18",
            "name": format!("{} shop-floor iPad", store.name),
        },
        "locale": "fr-FR",
        "timezone": "Europe/Paris",
    })
}
