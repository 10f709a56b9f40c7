//! People who are not (yet) customers.

use rand::Rng;

use super::*;

/// Visitors who browse the web shop and never sign in: traffic a CDP must keep but not merge.
pub(crate) fn browse_anonymously(seed: u64, visitor: usize, window: Window, out: &mut Output) {
    let rng = &mut rng_for(seed, Stream::Visitors, visitor);
    let mut browser = Browser::new(rng);
    let consent = Consent::choose(rng);
    let mut visits: Vec<i64> = (0..rng.random_range(1..=3))
        .map(|_| moment(rng, window.start, window.end, Hours::Online))
        .collect();
    visits.sort_unstable();
    out.tell_story_until(window.end);
    for at in visits {
        Session::new(out, rng, Surface::Web(&mut browser), None, consent, at).visit_web_shop(
            Intent {
                buys: false,
                cart_to_leave: None,
            },
        );
    }
}

/// Passing shoppers with no loyalty card: anonymous sales under their receipt number.
pub(crate) fn walk_in_sales(cfg: &DemoConfig, window: Window, out: &mut Output) {
    let rng = &mut rng_for(cfg.seed, Stream::WalkIns, 0);
    let per_store_per_day = cfg.customers as f64 / 500.0;
    out.tell_story_until(window.end);
    for store in 0..STORES.len() {
        for _ in 0..occurrences(rng, per_store_per_day, window.end - window.start) {
            let at = moment(rng, window.start, window.end, Hours::StoreOpening);
            let items: Vec<LineItem> = (0..rng.random_range(1..=2))
                .map(|_| {
                    let product = pick_product(rng, None, false);
                    LineItem::of(rng, product)
                })
                .collect();
            record_store_sale(out, rng, at, store, None, &items);
        }
    }
}
