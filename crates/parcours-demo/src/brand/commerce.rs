//! The brand's shops, warehouse and catalogue as commerce knows them: locations with their
//! place and hours, every product with its price, stock in each location, and the loyalty
//! programme. Sent through the commerce API when the demo starts.

use serde_json::{json, Value};

use super::catalogue::{CATALOG, STORES};

/// The warehouse that serves the web shop and the apps.
const WAREHOUSE: &str = "entrepot_orleans";

/// Where each store is (latitude, longitude), by id.
const PLACES: [(&str, f64, f64, &str); 5] = [
    ("store_1", 48.8606, 2.3470, "75 rue de Rivoli, 75001 Paris"),
    (
        "store_2",
        45.7606,
        4.8566,
        "17 rue du Docteur Bouchut, 69003 Lyon",
    ),
    ("store_3", 50.6379, 3.0753, "Centre Euralille, 59777 Lille"),
    (
        "store_4",
        44.8404,
        -0.5737,
        "rue Sainte-Catherine, 33000 Bordeaux",
    ),
    (
        "store_5",
        43.2996,
        5.3650,
        "Les Terrasses du Port, 13002 Marseille",
    ),
];

/// What the demo asks the commerce API to hold, in order.
pub struct CommerceSetup {
    /// `(id, location document)`
    pub locations: Vec<(String, Value)>,
    /// `(sku, item document)`
    pub items: Vec<(String, Value)>,
    /// One `POST /api/v1/commerce/stock/movements` body per location.
    pub movements: Vec<Value>,
    pub program: Value,
    /// `(id, offer document)`
    pub offers: Vec<(String, Value)>,
}

/// The welcome code the demo's click & collect order uses.
pub const WELCOME_CODE: &str = "BIENVENUE10";

fn hours() -> Value {
    json!({"mon": ["10:00-19:30"], "tue": ["10:00-19:30"], "wed": ["10:00-19:30"],
           "thu": ["10:00-19:30"], "fri": ["10:00-20:00"], "sat": ["10:00-20:00"]})
}

/// Units of product `p` in store `s`: a few of each, none of some, a single one of others
/// (the last unit a click & collect order and the till can both want).
fn in_store(p: usize, s: usize) -> i64 {
    ((p * 7 + s * 11) % 9) as i64 - 1
}

pub fn commerce_setup() -> CommerceSetup {
    let mut locations = vec![(
        WAREHOUSE.to_string(),
        json!({"name": "Entrepôt Orléans", "kind": "warehouse", "latitude": 47.9030, "longitude": 1.9093,
               "address": "ZA des Aulnaies, 45000 Orléans", "time_zone": "Europe/Paris",
               "channels": ["web", "ios", "android", "call_centre"], "pickup": "disabled", "priority": 0}),
    )];
    for (i, store) in STORES.iter().enumerate() {
        let (lat, lon, address) = PLACES
            .iter()
            .find(|(id, ..)| *id == store.id)
            .map(|(_, lat, lon, a)| (*lat, *lon, *a))
            .unwrap_or((46.6, 2.4, ""));
        locations.push((
            store.id.to_string(),
            json!({"name": store.name, "kind": "shop", "latitude": lat, "longitude": lon,
                   "address": address, "time_zone": "Europe/Paris", "opening_hours": hours(),
                   "channels": ["web", "ios", "android", "pos"], "pickup": "local_stock",
                   "priority": i + 1}),
        ));
    }
    let items = CATALOG
        .iter()
        .map(|p| {
            (
                p.id.to_string(),
                json!({"name": p.name, "product": p.category.name,
                       "prices": [{"currency": "EUR", "amount_minor": p.price_cents}]}),
            )
        })
        .collect();
    let mut movements = vec![json!({"movements": CATALOG.iter().map(|p| json!({
        "sku": p.id, "location": WAREHOUSE, "delta": 120, "reason": "received", "reference": "BL-2026-11-01"}))
        .collect::<Vec<_>>()})];
    for (s, store) in STORES.iter().enumerate() {
        let lines: Vec<Value> = CATALOG
            .iter()
            .enumerate()
            .filter(|(p, _)| in_store(*p, s) > 0)
            .map(|(p, prod)| {
                json!({"sku": prod.id, "location": store.id, "delta": in_store(p, s),
                       "reason": "received", "reference": format!("BL-{}-1101", store.id)})
            })
            .collect();
        movements.push(json!({ "movements": lines }));
    }
    CommerceSetup {
        locations,
        items,
        movements,
        program: json!({"points_per_unit": 1, "pending_days": 14, "expiry": {"kind": "months", "value": 12},
                        "time_zone": "Europe/Paris",
                        "tiers": {"basis": "points", "period_days": 365, "downgrade": "one_down",
                                  "tiers": [{"name": "Silver", "threshold": 200}, {"name": "Gold", "threshold": 1000}]}}),
        offers: vec![
            (
                "bienvenue".into(),
                json!({"name": "Bienvenue : 10 % sur la première commande", "priority": 10,
                       "coupon": {"codes": [WELCOME_CODE], "limit_per_customer": 1},
                       "reward": {"kind": "percent_off", "percent": 10}}),
            ),
            (
                "vip-15".into(),
                json!({"name": "VIP : 15 € dès 100 €", "audience": "vip", "currency": "EUR",
                       "min_subtotal_minor": 10000,
                       "reward": {"kind": "amount_off", "amount_minor": 1500}}),
            ),
            (
                "app-5".into(),
                json!({"name": "5 € dans l'app dès 50 €", "channels": ["ios", "android"], "currency": "EUR",
                       "min_subtotal_minor": 5000,
                       "reward": {"kind": "amount_off", "amount_minor": 500}}),
            ),
            (
                "soldes-hiver".into(),
                json!({"name": "Soldes d'hiver : -30 %", "stacking": "exclusive", "priority": 20,
                       "starts_at": "2027-01-13T07:00:00Z", "ends_at": "2027-02-10T07:00:00Z",
                       "reward": {"kind": "percent_off", "percent": 30}}),
            ),
        ],
    }
}

/// A product the store has exactly one of, if any: `(sku, name, price in cents)`.
pub fn last_unit_in(store_id: &str) -> Option<(&'static str, &'static str, i64)> {
    let s = STORES.iter().position(|st| st.id == store_id)?;
    CATALOG
        .iter()
        .enumerate()
        .find(|(p, _)| in_store(*p, s) == 1)
        .map(|(_, p)| (p.id, p.name, p.price_cents))
}

/// A product the store has several of, if any.
pub fn plenty_in(store_id: &str) -> Option<&'static str> {
    let s = STORES.iter().position(|st| st.id == store_id)?;
    CATALOG
        .iter()
        .enumerate()
        .find(|(p, _)| in_store(*p, s) >= 3)
        .map(|(_, p)| p.id)
}
