//! The demo is a product feature: `parcours demo` loads a brand's year of omnichannel life
//! through the real HTTP path. This crate owns that brand ([`brand`]: its catalogue, people,
//! sessions and each customer's life), the realistic Segment traffic benchmarks send
//! ([`load`]), and the small HTTP client both use ([`http`]). It depends on no Parcours crate:
//! it speaks to Parcours as clients do, over HTTP.

pub mod brand;
pub mod http;
pub mod load;
