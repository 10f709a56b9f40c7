//! Randomness.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Independent random streams, so that adding visitors or walk-ins never reshuffles customers.
#[derive(Clone, Copy)]
pub(crate) enum Stream {
    Customers = 1,
    Lives = 2,
    Visitors = 3,
    WalkIns = 4,
    Surveys = 5,
}

pub(crate) fn rng_for(seed: u64, stream: Stream, index: usize) -> StdRng {
    StdRng::seed_from_u64(mix(seed ^ mix(stream as u64 ^ mix(index as u64))))
}

/// SplitMix64's finaliser: nearby inputs give unrelated seeds.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub(crate) fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

pub(crate) fn pick_weighted<T: Copy>(rng: &mut StdRng, items: &[(T, u32)]) -> T {
    let mut ticket = rng.random_range(0..items.iter().map(|(_, w)| w).sum::<u32>());
    for &(item, weight) in items {
        if ticket < weight {
            return item;
        }
        ticket -= weight;
    }
    unreachable!("the ticket is below the sum of the weights")
}

/// A random UUID v4, the shape SDKs give anonymous ids and device ids.
pub(crate) fn uuid(rng: &mut StdRng) -> String {
    let bits: u128 = rng.random();
    let bits = (bits & !(0xF << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}
