//! The demo is a product feature: `parcours demo` loads a brand's year of omnichannel life
//! through the real HTTP path. This crate owns that brand ([`brand`]: its catalogue, people,
//! sessions and each customer's life), the realistic Segment traffic benchmarks send
//! ([`load`]), and the small HTTP client both use ([`http`]). It depends on no Parcours crate:
//! it speaks to Parcours as clients do, over HTTP.

pub mod brand;
pub mod http;
pub mod load;

/// The brand's journeys, as documents: `parcours demo` saves them before the history loads.
/// Messages go to the capture channel unless an SMTP server is configured.
pub const JOURNEYS: [(&str, &str); 5] = [
    (
        "abandoned-cart",
        include_str!("journeys/abandoned-cart.yaml"),
    ),
    (
        "click-and-collect",
        include_str!("journeys/click-and-collect.yaml"),
    ),
    ("welcome", include_str!("journeys/welcome.yaml")),
    (
        "post-purchase-nps",
        include_str!("journeys/post-purchase-nps.yaml"),
    ),
    ("win-back", include_str!("journeys/win-back.yaml")),
];
