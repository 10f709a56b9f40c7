use std::collections::BTreeMap;

use parcours_core::commerce::catalogue::{Component, Item, Location, LocationKind, Pickup, Price};
use parcours_core::commerce::inventory::{Adjustment, Change, Key, StockState};

use super::*;

fn item(sku: &str) -> Item {
    Item {
        sku: sku.into(),
        name: format!("{sku} name"),
        product: Some("P".into()),
        components: vec![],
        prices: vec![Price {
            channel: "web".into(),
            currency: "EUR".into(),
            amount_minor: 1990,
        }],
        low_stock: None,
    }
}

fn location(id: &str) -> Location {
    Location {
        id: id.into(),
        name: format!("{id} shop"),
        kind: LocationKind::Shop,
        address: "1 place Bellecour, Lyon".into(),
        latitude: Some(45.757),
        longitude: Some(4.832),
        time_zone: "Europe/Paris".into(),
        opening_hours: [("sat".to_string(), vec!["10:00-19:00".to_string()])].into(),
        channels: vec!["web".into(), "pos".into()],
        pickup: Pickup::LocalStock,
        priority: 2,
    }
}

pub(super) fn receive(sku: &str, loc: &str, n: i64) -> Adjustment {
    Adjustment {
        sku: sku.into(),
        location: loc.into(),
        state: StockState::OnHand,
        change: Change::By(n),
        reason: "received".into(),
        reference: Some("delivery-1".into()),
    }
}

fn demand(lines: &[(&str, &str, i64)]) -> BTreeMap<Key, i64> {
    lines
        .iter()
        .map(|(s, l, n)| (((*s).into(), (*l).into()), *n))
        .collect()
}

fn request(
    ws: &str,
    reference: &str,
    lines: &[(&str, &str, i64)],
    expires_at: Option<i64>,
) -> ReserveRequest {
    ReserveRequest {
        workspace_id: ws.into(),
        reference: reference.into(),
        demand: demand(lines),
        expires_at,
        backorder: false,
    }
}

fn level(store: &dyn Store, ws: &str, sku: &str, loc: &str, now: i64) -> Option<StockLevel> {
    store
        .stock(ws, &[sku.to_string()], now)
        .unwrap()
        .into_iter()
        .find(|l| l.location == loc)
}

/// The units held by a key's live reservations, counted from their rows.
fn live_reserved(
    store: &dyn Store,
    ws: &str,
    references: &[String],
    sku: &str,
    loc: &str,
    now: i64,
) -> i64 {
    references
        .iter()
        .flat_map(|r| store.reservations(ws, r, now).unwrap())
        .filter(|r| r.sku == sku && r.location == loc && r.state == ReservationState::Active)
        .map(|r| r.quantity)
        .sum()
}

pub fn catalogue_and_locations_round_trip_per_workspace(store: &dyn Store) {
    setup(store, &["w1", "w2"]);
    let mut kit = item("KIT");
    kit.components = vec![Component {
        sku: "A".into(),
        quantity: 2,
    }];
    for i in [item("B"), item("A"), kit.clone()] {
        store.put_item("w1", &i, T0).unwrap();
    }
    store.put_item("w2", &item("Z"), T0).unwrap();
    assert_eq!(store.item("w1", "KIT").unwrap(), Some(kit.clone()));
    assert_eq!(store.item("w2", "KIT").unwrap(), None);
    let skus = |after: Option<&str>, limit| -> Vec<String> {
        store
            .items("w1", after, limit)
            .unwrap()
            .into_iter()
            .map(|i| i.sku)
            .collect()
    };
    assert_eq!(skus(None, 10), ["A", "B", "KIT"]);
    assert_eq!(skus(Some("A"), 1), ["B"]);
    let mut renamed = item("A");
    renamed.name = "Renamed".into();
    store.put_item("w1", &renamed, T0 + 1).unwrap();
    assert_eq!(store.item("w1", "A").unwrap().unwrap().name, "Renamed");

    store.put_location("w1", &location("lyon"), T0).unwrap();
    store.put_location("w1", &location("annecy"), T0).unwrap();
    let mut moved = location("lyon");
    moved.pickup = Pickup::AllLocations;
    store.put_location("w1", &moved, T0 + 1).unwrap();
    let locs = store.locations("w1").unwrap();
    assert_eq!(locs.len(), 2);
    assert_eq!(locs[0].id, "annecy");
    assert_eq!(locs[1], moved);
    assert!(store.locations("w2").unwrap().is_empty());
}

pub fn stock_moves_all_or_nothing_into_the_ledger(store: &dyn Store) {
    setup(store, &["w1", "w2"]);
    let moved = store
        .move_stock(
            "w1",
            &[receive("A", "lyon", 5), receive("A", "paris", 2)],
            T0,
        )
        .unwrap()
        .unwrap();
    assert_eq!(moved.len(), 2);
    assert_eq!((moved[0].delta, moved[0].after), (5, 5));
    let damaged = Adjustment {
        state: StockState::Damaged,
        change: Change::By(2),
        reason: "damaged".into(),
        reference: None,
        ..receive("A", "lyon", 0)
    };
    store.move_stock("w1", &[damaged], T0 + 1).unwrap().unwrap();
    let l = level(store, "w1", "A", "lyon", T0 + 1).unwrap();
    assert_eq!(
        (
            l.quantities.on_hand,
            l.quantities.damaged,
            l.quantities.available()
        ),
        (5, 2, 3)
    );

    // A request whose second line does not fit changes nothing, not even its first line.
    let sale = Adjustment {
        change: Change::By(-4),
        reason: "sale".into(),
        ..receive("A", "lyon", 0)
    };
    let refused = store
        .move_stock("w1", &[receive("A", "paris", 10), sale], T0 + 2)
        .unwrap()
        .unwrap_err();
    assert_eq!((refused.requested, refused.available), (4, 3));
    assert_eq!(
        level(store, "w1", "A", "paris", T0 + 2)
            .unwrap()
            .quantities
            .on_hand,
        2
    );
    assert_eq!(store.movements("w1", "A", None, None, 10).unwrap().len(), 3);

    // A count is the truth and records the difference.
    let count = Adjustment {
        change: Change::To(4),
        reason: "count".into(),
        reference: Some("count-2026-11".into()),
        ..receive("A", "lyon", 0)
    };
    let counted = store.move_stock("w1", &[count], T0 + 3).unwrap().unwrap();
    assert_eq!((counted[0].delta, counted[0].after), (-1, 4));
    let history = store.movements("w1", "A", Some("lyon"), None, 10).unwrap();
    assert_eq!(
        history
            .iter()
            .map(|m| (m.reason.as_str(), m.state, m.delta))
            .collect::<Vec<_>>(),
        [
            ("count", StockState::OnHand, -1),
            ("damaged", StockState::Damaged, 2),
            ("received", StockState::OnHand, 5)
        ]
    );
    assert_eq!(history[0].reference.as_deref(), Some("count-2026-11"));
    let older = store
        .movements("w1", "A", Some("lyon"), Some(history[0].id), 1)
        .unwrap();
    assert_eq!(older, vec![history[1].clone()]);
    assert!(store
        .movements("w2", "A", None, None, 10)
        .unwrap()
        .is_empty());
    let at_lyon = store.stock_at("w1", "lyon", None, 10, T0 + 3).unwrap();
    assert_eq!(at_lyon.len(), 1);
    assert_eq!(at_lyon[0].quantities.on_hand, 4);
    assert!(store.stock("w2", &["A".into()], T0).unwrap().is_empty());
}

pub fn reservations_hold_expire_at_read_time_release_and_fulfil(store: &dyn Store) {
    setup(store, &["w1"]);
    store
        .move_stock(
            "w1",
            &[receive("A", "lyon", 3), receive("B", "lyon", 1)],
            T0,
        )
        .unwrap()
        .unwrap();
    // Medusa #16502: two lines of 2 on one item, summed to 4 against 3 on hand.
    let mut summed = request("w1", "cart-1", &[("A", "lyon", 4)], None);
    let Reserved::Short(short) = store.reserve(&summed, T0).unwrap() else {
        panic!("4 of 3 must be refused")
    };
    assert_eq!((short[0].requested, short[0].available), (4, 3));
    assert!(store.reservations("w1", "cart-1", T0).unwrap().is_empty());

    // A cart that holds for ten minutes.
    let cart = request(
        "w1",
        "cart-1",
        &[("A", "lyon", 2), ("B", "lyon", 1)],
        Some(T0 + 600_000),
    );
    let Reserved::Held(rows) = store.reserve(&cart, T0).unwrap() else {
        panic!("2 A and 1 B fit")
    };
    assert_eq!(rows.len(), 2);
    assert_eq!(
        level(store, "w1", "A", "lyon", T0)
            .unwrap()
            .quantities
            .available(),
        1
    );
    // The same request again (a retry) holds nothing more.
    assert!(matches!(
        store.reserve(&cart, T0 + 1).unwrap(),
        Reserved::AlreadyHeld(_)
    ));
    summed.demand = demand(&[("A", "lyon", 1)]);
    assert!(matches!(
        store.reserve(&summed, T0 + 1).unwrap(),
        Reserved::ReferenceTaken(_)
    ));
    let other = request("w1", "cart-2", &[("A", "lyon", 2)], None);
    assert!(matches!(
        store.reserve(&other, T0 + 2).unwrap(),
        Reserved::Short(_)
    ));

    // At its expiry instant it stops counting, before anything swept it.
    let expiry = T0 + 600_000;
    assert_eq!(
        level(store, "w1", "A", "lyon", expiry - 1)
            .unwrap()
            .quantities
            .reserved,
        2
    );
    let l = level(store, "w1", "A", "lyon", expiry).unwrap();
    assert_eq!((l.quantities.reserved, l.quantities.available()), (0, 3));
    assert!(store
        .reservations("w1", "cart-1", expiry)
        .unwrap()
        .iter()
        .all(|r| r.state == ReservationState::Expired));
    // So another cart takes the units, and the expired one cannot be fulfilled.
    let Reserved::Held(_) = store.reserve(&other, expiry).unwrap() else {
        panic!("the expired cart's units are free again")
    };
    assert!(matches!(
        store
            .fulfil_reservation("w1", "cart-1", "sale", expiry)
            .unwrap(),
        Fulfilled::NotHeld(_)
    ));
    let l = level(store, "w1", "A", "lyon", expiry).unwrap();
    assert_eq!((l.quantities.on_hand, l.quantities.reserved), (3, 2));
    let refs = [
        "cart-1".to_string(),
        "cart-2".to_string(),
        "cart-3".to_string(),
    ];
    assert_eq!(live_reserved(store, "w1", &refs, "A", "lyon", expiry), 2);

    // An expired reference can be reserved afresh.
    let again = request("w1", "cart-1", &[("B", "lyon", 1)], None);
    assert!(matches!(
        store.reserve(&again, expiry + 1).unwrap(),
        Reserved::Held(_)
    ));
    assert_eq!(
        level(store, "w1", "B", "lyon", expiry + 1)
            .unwrap()
            .quantities
            .available(),
        0
    );

    // Fulfilling takes the units out of on hand and reserved together, in the ledger.
    let Fulfilled::Done(moved) = store
        .fulfil_reservation("w1", "cart-2", "collected", expiry + 2)
        .unwrap()
    else {
        panic!("cart-2 holds 2 A")
    };
    assert_eq!(
        (moved[0].delta, moved[0].after, moved[0].reason.as_str()),
        (-2, 1, "collected")
    );
    assert_eq!(moved[0].reference.as_deref(), Some("cart-2"));
    let l = level(store, "w1", "A", "lyon", expiry + 2).unwrap();
    assert_eq!((l.quantities.on_hand, l.quantities.reserved), (1, 0));
    assert!(matches!(
        store
            .fulfil_reservation("w1", "cart-2", "collected", expiry + 3)
            .unwrap(),
        Fulfilled::NotHeld(_)
    ));
    assert!(matches!(
        store
            .reserve(
                &request("w1", "cart-2", &[("A", "lyon", 1)], None),
                expiry + 3
            )
            .unwrap(),
        Reserved::ReferenceTaken(_)
    ));

    // Releasing gives the units back, once.
    assert_eq!(
        store
            .release_reservation("w1", "cart-1", expiry + 4)
            .unwrap()[0]
            .state,
        ReservationState::Released
    );
    assert_eq!(
        level(store, "w1", "B", "lyon", expiry + 4)
            .unwrap()
            .quantities
            .available(),
        1
    );
    store
        .release_reservation("w1", "cart-1", expiry + 5)
        .unwrap();
    assert_eq!(
        level(store, "w1", "B", "lyon", expiry + 5)
            .unwrap()
            .quantities
            .reserved,
        0
    );

    // Backorder reserves past what is there, even where there is no stock record.
    let mut back = request(
        "w1",
        "pre-order",
        &[("A", "lyon", 3), ("C", "lyon", 1)],
        None,
    );
    back.backorder = true;
    assert!(matches!(
        store.reserve(&back, expiry + 6).unwrap(),
        Reserved::Held(_)
    ));
    assert_eq!(
        level(store, "w1", "A", "lyon", expiry + 6)
            .unwrap()
            .quantities
            .available(),
        -2
    );
    assert_eq!(
        level(store, "w1", "C", "lyon", expiry + 6)
            .unwrap()
            .quantities
            .reserved,
        1
    );
    // And then nothing but a delivery sells A there.
    let till = Adjustment {
        change: Change::By(-1),
        reason: "sale".into(),
        ..receive("A", "lyon", 0)
    };
    assert!(store
        .move_stock("w1", &[till], expiry + 7)
        .unwrap()
        .is_err());
}

/// 50 clients at once reserve one unit each of the last 7, while the shop sells at the till
/// and other carts take two items in opposite orders: never more than what is there, and
/// `reserved` is the sum of the live reservations.
pub fn concurrent_reservations_never_oversell(store: &dyn Store) {
    setup(store, &["w1"]);
    store
        .move_stock(
            "w1",
            &[
                receive("LAST", "lyon", 7),
                receive("X", "lyon", 20),
                receive("Y", "lyon", 20),
            ],
            T0,
        )
        .unwrap()
        .unwrap();
    let clients = 50;
    let (held, sold) = std::thread::scope(|s| {
        let carts: Vec<_> = (0..clients)
            .map(|i| {
                s.spawn(move || {
                    let r = request(
                        "w1",
                        &format!("cart-{i}"),
                        &[("LAST", "lyon", 1)],
                        Some(T0 + 60_000),
                    );
                    matches!(store.reserve(&r, T0 + 1).unwrap(), Reserved::Held(_))
                })
            })
            .collect();
        let tills: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(move || {
                    let sale = Adjustment {
                        change: Change::By(-1),
                        reason: "sale".into(),
                        ..receive("LAST", "lyon", 0)
                    };
                    store.move_stock("w1", &[sale], T0 + 1).unwrap().is_ok()
                })
            })
            .collect();
        let crossed: Vec<_> = (0..10)
            .map(|i| {
                s.spawn(move || {
                    // Lines given in either order: the store locks them in one order.
                    let lines: &[(&str, &str, i64)] = if i % 2 == 0 {
                        &[("X", "lyon", 1), ("Y", "lyon", 1)]
                    } else {
                        &[("Y", "lyon", 1), ("X", "lyon", 1)]
                    };
                    let r = request("w1", &format!("pair-{i}"), lines, None);
                    assert!(matches!(
                        store.reserve(&r, T0 + 1).unwrap(),
                        Reserved::Held(_)
                    ));
                })
            })
            .collect();
        for c in crossed {
            c.join().unwrap();
        }
        let held = carts
            .into_iter()
            .map(|c| c.join().unwrap())
            .filter(|h| *h)
            .count() as i64;
        let sold = tills
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|s| *s)
            .count() as i64;
        (held, sold)
    });
    assert_eq!(held + sold, 7, "{held} reserved and {sold} sold of 7");
    let refs: Vec<String> = (0..clients).map(|i| format!("cart-{i}")).collect();
    let l = level(store, "w1", "LAST", "lyon", T0 + 1).unwrap();
    assert_eq!(l.quantities.reserved, held);
    assert_eq!(
        live_reserved(store, "w1", &refs, "LAST", "lyon", T0 + 1),
        held
    );
    assert_eq!(
        (l.quantities.on_hand, l.quantities.available()),
        (7 - sold, 0)
    );
    assert_eq!(
        level(store, "w1", "X", "lyon", T0 + 1)
            .unwrap()
            .quantities
            .reserved,
        10
    );
    // Releasing them all at once never takes reserved below zero.
    std::thread::scope(|s| {
        for r in &refs {
            s.spawn(move || {
                store.release_reservation("w1", r, T0 + 2).unwrap();
                store.release_reservation("w1", r, T0 + 2).unwrap();
            });
        }
    });
    let l = level(store, "w1", "LAST", "lyon", T0 + 2).unwrap();
    assert_eq!(
        (l.quantities.reserved, l.quantities.available()),
        (0, 7 - sold)
    );
    assert_eq!(
        store
            .movements("w1", "LAST", Some("lyon"), None, 100)
            .unwrap()
            .len() as i64,
        1 + sold
    );
}

pub(super) fn sale(
    ws: &str,
    id: &str,
    member: Option<&str>,
    sku_delta: i64,
    at: i64,
) -> CommerceWrite {
    use parcours_core::commerce::loyalty::Entry;
    let mut event = accepted(&format!("order-{id}"), "u1", at);
    event.kind = parcours_core::spec::EventType::Track;
    event.event = Some("Order Completed".into());
    CommerceWrite {
        workspace_id: ws.into(),
        order: Some(OrderRecord {
            id: id.into(),
            channel: "pos".into(),
            status: "completed".into(),
            member: member.map(str::to_string),
            body: format!(r#"{{"id":"{id}"}}"#),
            created_at: at,
            updated_at: at,
            due_at: None,
        }),
        expect_body: None,
        reserve: None,
        settle: None,
        hold_until: None,
        movements: vec![Adjustment {
            change: Change::By(sku_delta),
            reason: "sale".into(),
            reference: Some(id.into()),
            ..receive("A", "lyon", 0)
        }],
        loyalty: member
            .map(|m| {
                vec![(
                    m.to_string(),
                    Entry::Earn {
                        order: id.into(),
                        points: 50,
                        spend_minor: 5000,
                        at,
                        pending_until: None,
                        expires_at: None,
                        channel: "pos".into(),
                    },
                )]
            })
            .unwrap_or_default(),
        events: Some(batch(ws, vec![event])),
        redemptions: Vec::new(),
        release_redemptions: false,
        alerts: Vec::new(),
        low_told: Vec::new(),
        dedup_since: 0,
    }
}

pub fn commerce_writes_commit_whole_and_once(store: &dyn Store) {
    use parcours_core::commerce::loyalty::{Entry, Outcome};
    setup(store, &["w1"]);
    store
        .move_stock("w1", &[receive("A", "lyon", 2)], T0)
        .unwrap()
        .unwrap();
    let first = sale("w1", "R1", Some("CARD-1"), -1, T0 + 1);
    let Committed::Done {
        movements, loyalty, ..
    } = store.commit_commerce(&first, T0 + 1).unwrap()
    else {
        panic!("the first sale commits")
    };
    assert_eq!((movements.len(), movements[0].after), (1, 1));
    assert!(matches!(loyalty[..], [Outcome::Applied { .. }]));
    assert_eq!(store.event_count("w1").unwrap(), 1);
    assert_eq!(
        store.order("w1", "R1").unwrap().unwrap().member.as_deref(),
        Some("CARD-1")
    );

    // The same sale again (replayed from another channel): nothing twice.
    let Committed::OrderState(o) = store.commit_commerce(&first, T0 + 2).unwrap() else {
        panic!("a sale is recorded once")
    };
    assert_eq!(o.status, "completed");
    assert_eq!(
        level(store, "w1", "A", "lyon", T0 + 2)
            .unwrap()
            .quantities
            .on_hand,
        1
    );
    assert_eq!(store.loyalty_entries("w1", "CARD-1").unwrap().len(), 1);
    assert_eq!(store.event_count("w1").unwrap(), 1);

    // A sale that does not fit, or a burn beyond the balance, changes nothing at all.
    let Committed::Short(mut short) = store
        .commit_commerce(&sale("w1", "R2", Some("CARD-1"), -2, T0 + 3), T0 + 3)
        .unwrap()
    else {
        panic!("2 of 1 is refused")
    };
    assert_eq!(short.pop().unwrap().requested, 2);
    let mut greedy = sale("w1", "R3", None, -1, T0 + 4);
    greedy.loyalty = vec![(
        "CARD-1".into(),
        Entry::Burn {
            redemption: "X".into(),
            points: 51,
            at: T0 + 4,
            channel: "web".into(),
        },
    )];
    let Committed::Refused(r) = store.commit_commerce(&greedy, T0 + 4).unwrap() else {
        panic!("51 of 50 points is refused")
    };
    assert_eq!(r.code, "insufficient_points");
    for id in ["R2", "R3"] {
        assert_eq!(store.order("w1", id).unwrap(), None);
    }
    assert_eq!(
        level(store, "w1", "A", "lyon", T0 + 4)
            .unwrap()
            .quantities
            .on_hand,
        1
    );
    assert_eq!(store.loyalty_entries("w1", "CARD-1").unwrap().len(), 1);
    assert_eq!(store.event_count("w1").unwrap(), 1);

    // An order's points are earned once in the workspace, whichever card asks again.
    let mut other_card = sale("w1", "R4", Some("CARD-2"), -1, T0 + 5);
    other_card.loyalty[0].1 = first.loyalty[0].1.clone();
    let Committed::Done { loyalty, .. } = store.commit_commerce(&other_card, T0 + 5).unwrap()
    else {
        panic!("R4 commits")
    };
    assert_eq!(loyalty, vec![Outcome::Duplicate]);
    assert!(store.loyalty_entries("w1", "CARD-2").unwrap().is_empty());

    // A change applies only to the state it was decided on.
    let mut collected = sale("w1", "R1", None, 1, T0 + 6);
    collected.order.as_mut().unwrap().status = "returned".into();
    collected.expect_body = Some(r#"{"id":"R1","status":"shipped"}"#.into());
    collected.events = None;
    assert!(matches!(
        store.commit_commerce(&collected, T0 + 6).unwrap(),
        Committed::OrderState(_)
    ));
    collected.expect_body = Some(r#"{"id":"R1"}"#.into());
    assert!(matches!(
        store.commit_commerce(&collected, T0 + 6).unwrap(),
        Committed::Done { .. }
    ));
    let o = store.order("w1", "R1").unwrap().unwrap();
    assert_eq!(
        (o.status.as_str(), o.created_at, o.updated_at),
        ("returned", T0 + 1, T0 + 6)
    );
    collected.order.as_mut().unwrap().id = "NONE".into();
    assert!(matches!(
        store.commit_commerce(&collected, T0 + 7),
        Err(StoreError::NotFound(_))
    ));

    // Loyalty entries alone (a redemption), with no order.
    let burn = CommerceWrite {
        workspace_id: "w1".into(),
        order: None,
        expect_body: None,
        reserve: None,
        settle: None,
        hold_until: None,
        movements: vec![],
        loyalty: vec![(
            "CARD-1".into(),
            Entry::Burn {
                redemption: "gift".into(),
                points: 20,
                at: T0 + 8,
                channel: "web".into(),
            },
        )],
        events: None,
        redemptions: Vec::new(),
        release_redemptions: false,
        alerts: Vec::new(),
        low_told: Vec::new(),
        dedup_since: 0,
    };
    assert!(matches!(
        store.commit_commerce(&burn, T0 + 8).unwrap(),
        Committed::Done { .. }
    ));
    assert_eq!(store.loyalty_entries("w1", "CARD-1").unwrap().len(), 2);
    assert_eq!(store.loyalty_program("w1").unwrap(), None);
    store
        .put_loyalty_program("w1", r#"{"points_per_unit":1}"#, T0)
        .unwrap();
    store
        .put_loyalty_program("w1", r#"{"points_per_unit":2}"#, T0 + 1)
        .unwrap();
    assert_eq!(
        store.loyalty_program("w1").unwrap().as_deref(),
        Some(r#"{"points_per_unit":2}"#)
    );
}

/// A write set that holds, then changes the hold's expiry, then fulfils or releases: the
/// order, its stock and its events together, or nothing.
pub fn order_write_sets_hold_expire_and_settle(store: &dyn Store) {
    setup(store, &["w1"]);
    store
        .move_stock("w1", &[receive("A", "lyon", 2)], T0)
        .unwrap()
        .unwrap();
    let order = |id: &str, body: &str, at: i64| OrderRecord {
        id: id.into(),
        channel: "web".into(),
        status: "placed".into(),
        member: None,
        body: body.into(),
        created_at: at,
        updated_at: at,
        due_at: None,
    };
    let write = |id: &str, at: i64| {
        let mut w = sale("w1", id, None, -1, at);
        w.movements.clear();
        w.order = Some(order(id, &format!(r#"{{"id":"{id}"}}"#), at));
        w
    };
    let mut place = write("W1", T0 + 1);
    place.reserve = Some(request("w1", "W1", &[("A", "lyon", 2)], None));
    let Committed::Done { reserved, .. } = store.commit_commerce(&place, T0 + 1).unwrap() else {
        panic!("2 of 2 are held")
    };
    assert_eq!(reserved.len(), 1);
    assert_eq!(
        level(store, "w1", "A", "lyon", T0 + 1)
            .unwrap()
            .quantities
            .reserved,
        2
    );
    // What does not fit leaves no order and tells no event.
    let mut second = write("W2", T0 + 2);
    second.reserve = Some(request("w1", "W2", &[("A", "lyon", 1)], None));
    assert!(matches!(
        store.commit_commerce(&second, T0 + 2).unwrap(),
        Committed::Short(_)
    ));
    assert_eq!(store.order("w1", "W2").unwrap(), None);
    assert_eq!(store.event_count("w1").unwrap(), 1);

    // Ready: the hold gets a deadline; past it the units are free and cannot be fulfilled.
    let mut ready = write("W1", T0 + 3);
    ready.events = None;
    ready.expect_body = Some(r#"{"id":"W1"}"#.into());
    ready.order = Some(order("W1", r#"{"id":"W1","ready":true}"#, T0 + 1));
    ready.hold_until = Some(("W1".into(), T0 + 100));
    assert!(matches!(
        store.commit_commerce(&ready, T0 + 3).unwrap(),
        Committed::Done { .. }
    ));
    assert!(store
        .reservations("w1", "W1", T0 + 3)
        .unwrap()
        .iter()
        .all(|r| r.expires_at == Some(T0 + 100)));
    assert_eq!(
        level(store, "w1", "A", "lyon", T0 + 100)
            .unwrap()
            .quantities
            .available(),
        2
    );
    let mut collect = write("W1", T0 + 100);
    collect.events = None;
    collect.expect_body = Some(r#"{"id":"W1","ready":true}"#.into());
    collect.settle = Some(Settle {
        reference: "W1".into(),
        fulfil: Some("collected".into()),
    });
    assert!(matches!(
        store.commit_commerce(&collect, T0 + 100).unwrap(),
        Committed::NotHeld(_)
    ));
    let mut late = write("W1", T0 + 101);
    late.events = None;
    late.expect_body = Some(r#"{"id":"W1","ready":true}"#.into());
    late.hold_until = Some(("W1".into(), T0 + 500));
    assert!(matches!(
        store.commit_commerce(&late, T0 + 101).unwrap(),
        Committed::NotHeld(_)
    ));

    // Another order takes one, and is collected: on hand and reserved go down together.
    let mut third = write("W3", T0 + 102);
    third.reserve = Some(request("w1", "W3", &[("A", "lyon", 1)], None));
    assert!(matches!(
        store.commit_commerce(&third, T0 + 102).unwrap(),
        Committed::Done { .. }
    ));
    let mut fulfil = write("W3", T0 + 103);
    fulfil.events = None;
    fulfil.expect_body = Some(r#"{"id":"W3"}"#.into());
    fulfil.settle = Some(Settle {
        reference: "W3".into(),
        fulfil: Some("collected".into()),
    });
    let Committed::Done { movements, .. } = store.commit_commerce(&fulfil, T0 + 103).unwrap()
    else {
        panic!("W3 holds 1")
    };
    assert_eq!(
        (movements[0].delta, movements[0].reason.as_str()),
        (-1, "collected")
    );
    let l = level(store, "w1", "A", "lyon", T0 + 103).unwrap();
    assert_eq!((l.quantities.on_hand, l.quantities.reserved), (1, 0));
    // Released after it left: nothing is held, nothing changes.
    let mut release = write("W3", T0 + 104);
    release.events = None;
    release.expect_body = Some(r#"{"id":"W3"}"#.into());
    release.settle = Some(Settle {
        reference: "W3".into(),
        fulfil: None,
    });
    assert!(matches!(
        store.commit_commerce(&release, T0 + 104).unwrap(),
        Committed::NotHeld(_)
    ));
    assert_eq!(
        level(store, "w1", "A", "lyon", T0 + 104)
            .unwrap()
            .quantities
            .on_hand,
        1
    );
}

/// 50 tills at once take a code that may be used 10 times, and 20 orders of one customer take
/// an offer she may use once: exactly 10 and exactly 1 commit, the others change nothing (no
/// stock moves, no event). A cancelled order gives its use back.
pub fn offer_limits_hold_under_concurrency(store: &dyn Store) {
    use parcours_core::commerce::offers::Redemption;
    setup(store, &["w1"]);
    let mut stock: Vec<Adjustment> = (0..50)
        .map(|i| receive(&format!("code-{i}"), "lyon", 1))
        .chain((0..20).map(|i| receive(&format!("cust-{i}"), "lyon", 1)))
        .collect();
    stock.push(receive("cust-again", "lyon", 1));
    store.move_stock("w1", &stock, T0).unwrap().unwrap();
    store.put_offer("w1", "TEN", r#"{"id":"TEN"}"#, T0).unwrap();
    assert_eq!(store.offers("w1").unwrap(), vec![r#"{"id":"TEN"}"#]);
    let redeem = |offer: &str, code: Option<&str>, customer: Option<&str>| Redemption {
        offer: offer.into(),
        code: code.map(str::to_string),
        customer: customer.map(str::to_string),
        limit_per_code: Some(10),
        limit_per_customer: Some(1),
    };
    let run = |prefix: &'static str, clients: usize, customer: fn(usize) -> Option<String>| {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..clients)
                .map(|i| {
                    s.spawn(move || {
                        let who = customer(i);
                        let mut w = sale("w1", &format!("{prefix}-{i}"), None, -1, T0 + 1);
                        // Each on its own item: nothing but the offer's lock serialises them.
                        w.movements[0].sku = format!("{prefix}-{i}");
                        w.redemptions = vec![redeem(
                            if prefix == "code" { "TEN" } else { "ONCE" },
                            Some("SPRING"),
                            who.as_deref(),
                        )];
                        store.commit_commerce(&w, T0 + 1).unwrap()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        })
    };
    let by_code = run("code", 50, |i| Some(format!("c{i}")));
    let done = by_code
        .iter()
        .filter(|c| matches!(c, Committed::Done { .. }))
        .count();
    assert_eq!(done, 10, "a code used 10 times at most");
    assert!(by_code.iter().all(|c| matches!(
        c,
        Committed::Done { .. }
            | Committed::OfferUsedUp {
                per_customer: false,
                ..
            }
    )));
    let by_customer = run("cust", 20, |_| Some("ada".into()));
    let done = by_customer
        .iter()
        .filter(|c| matches!(c, Committed::Done { .. }))
        .count();
    assert_eq!(done, 1, "once per customer");
    assert!(by_customer.iter().all(|c| matches!(
        c,
        Committed::Done { .. }
            | Committed::OfferUsedUp {
                per_customer: true,
                ..
            }
    )));
    // Only the committed orders moved stock and told their event.
    assert_eq!(store.event_count("w1").unwrap(), 11);
    for (prefix, results) in [("code", &by_code), ("cust", &by_customer)] {
        for (i, c) in results.iter().enumerate() {
            let on_hand = level(store, "w1", &format!("{prefix}-{i}"), "lyon", T0 + 2)
                .unwrap()
                .quantities
                .on_hand;
            let done = matches!(c, Committed::Done { .. });
            assert_eq!(on_hand, if done { 0 } else { 1 });
        }
    }
    let uses = store
        .offer_uses("w1", "TEN", Some("SPRING"), Some("c0"))
        .unwrap();
    assert_eq!((uses.total, uses.code), (10, 10));
    assert!(uses.customer <= 1);
    assert_eq!(
        store.offer_uses("w1", "ONCE", None, Some("ada")).unwrap(),
        OfferUses {
            total: 1,
            code: 0,
            customer: 1
        }
    );
    // The customer's order is cancelled: its use comes back, and she may use the offer again.
    let ordered = by_customer
        .iter()
        .position(|c| matches!(c, Committed::Done { .. }))
        .unwrap();
    let id = format!("cust-{ordered}");
    let stored = store.order("w1", &id).unwrap().unwrap();
    let mut cancel = sale("w1", &id, None, 0, T0 + 3);
    cancel.movements.clear();
    cancel.events = None;
    cancel.expect_body = Some(stored.body.clone());
    cancel.release_redemptions = true;
    assert!(matches!(
        store.commit_commerce(&cancel, T0 + 3).unwrap(),
        Committed::Done { .. }
    ));
    assert_eq!(
        store
            .offer_uses("w1", "ONCE", None, Some("ada"))
            .unwrap()
            .customer,
        0
    );
    let mut again = sale("w1", "cust-again", None, -1, T0 + 4);
    again.movements[0].sku = "cust-again".into();
    again.redemptions = vec![redeem("ONCE", Some("SPRING"), Some("ada"))];
    assert!(matches!(
        store.commit_commerce(&again, T0 + 4).unwrap(),
        Committed::Done { .. }
    ));
    // Offers are per workspace, and deleting one keeps its history.
    assert!(store.offers("w2").unwrap_or_default().is_empty());
    assert!(store.delete_offer("w1", "TEN").unwrap());
    assert!(!store.delete_offer("w1", "TEN").unwrap());
    assert!(store.offers("w1").unwrap().is_empty());
    assert_eq!(store.offer_uses("w1", "TEN", None, None).unwrap().total, 10);
}

/// An order with a due time is found once that time has come, across workspaces, earliest
/// first, and no more once a change clears it.
pub fn due_orders_are_found_once_due_and_cleared_by_their_next_change(store: &dyn Store) {
    setup(store, &["w1", "w2"]);
    let place = |ws: &str, id: &str, due: Option<i64>| {
        let mut w = sale(ws, id, None, 0, T0);
        w.movements.clear();
        w.events = None;
        if let Some(o) = w.order.as_mut() {
            o.due_at = due;
        }
        assert!(matches!(
            store.commit_commerce(&w, T0).unwrap(),
            Committed::Done { .. }
        ));
        w
    };
    place("w1", "LATE", Some(T0 + 2_000));
    place("w2", "SOON", Some(T0 + 1_000));
    place("w1", "NEVER", None);
    assert!(store.due_orders(T0 + 999, 10).unwrap().is_empty());
    assert_eq!(
        store.due_orders(T0 + 5_000, 10).unwrap(),
        vec![
            ("w2".to_string(), "SOON".to_string()),
            ("w1".to_string(), "LATE".to_string())
        ]
    );
    assert_eq!(store.due_orders(T0 + 5_000, 1).unwrap().len(), 1);
    assert_eq!(
        store.order("w2", "SOON").unwrap().unwrap().due_at,
        Some(T0 + 1_000)
    );
    // Its next change clears it.
    let stored = store.order("w2", "SOON").unwrap().unwrap();
    let mut done = sale("w2", "SOON", None, 0, T0 + 1_500);
    done.movements.clear();
    done.events = None;
    done.expect_body = Some(stored.body.clone());
    if let Some(o) = done.order.as_mut() {
        o.status = "not_collected".into();
        o.body = r#"{"id":"SOON","status":"not_collected"}"#.into();
    }
    assert!(matches!(
        store.commit_commerce(&done, T0 + 1_500).unwrap(),
        Committed::Done { .. }
    ));
    assert_eq!(
        store.due_orders(T0 + 5_000, 10).unwrap(),
        vec![("w1".to_string(), "LATE".to_string())]
    );
}

/// A stock alert is due once its item is available at its location (a reservation past its
/// expiry not counted), told once, and due again when the customer asks again. A low level is
/// found once per fall to its item's threshold, and again after it rose above it.
pub fn stock_alerts_and_low_levels_are_told_once_per_change(store: &dyn Store) {
    setup(store, &["w1"]);
    let mut low = item("A");
    low.low_stock = Some(2);
    store.put_item("w1", &low, T0).unwrap();
    store.put_item("w1", &item("B"), T0).unwrap();
    let alert = StockAlert {
        workspace_id: "w1".into(),
        sku: "B".into(),
        location: "lyon".into(),
        subscriber: "user:ada".into(),
        customer: r#"{"user_id":"ada"}"#.into(),
        reason: "asked".into(),
        quantity: 1,
        created_at: T0,
        notified_at: None,
    };
    store.put_stock_alert(&alert).unwrap();
    // Another customer waits for two.
    store
        .put_stock_alert(&StockAlert {
            subscriber: "user:bob".into(),
            quantity: 2,
            ..alert.clone()
        })
        .unwrap();
    assert!(
        store.due_stock_alerts(T0 + 1, 10).unwrap().is_empty(),
        "no level yet"
    );
    store
        .move_stock(
            "w1",
            &[receive("B", "lyon", 1), receive("A", "lyon", 5)],
            T0 + 1,
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        store.due_stock_alerts(T0 + 2, 10).unwrap(),
        vec![alert.clone()]
    );
    // Its one unit is in a cart until T0 + 10: not there to buy, then there again.
    assert!(matches!(
        store
            .reserve(
                &request("w1", "cart", &[("B", "lyon", 1)], Some(T0 + 10)),
                T0 + 2
            )
            .unwrap(),
        Reserved::Held(_)
    ));
    assert!(store.due_stock_alerts(T0 + 5, 10).unwrap().is_empty());
    assert_eq!(store.due_stock_alerts(T0 + 10, 10).unwrap().len(), 1);
    let tell = |alerts: Vec<(String, String, String)>, low_told: Vec<Key>, at: i64| {
        let mut w = sale("w1", "unused", None, 0, at);
        w.order = None;
        w.movements.clear();
        w.events = Some(batch(
            "w1",
            vec![accepted(&format!("told-{at}"), "ada", at)],
        ));
        w.alerts = alerts;
        w.low_told = low_told;
        store.commit_commerce(&w, at).unwrap()
    };
    let key = ("B".to_string(), "lyon".to_string(), "user:ada".to_string());
    assert!(matches!(
        tell(vec![key.clone()], vec![], T0 + 11),
        Committed::Done { .. }
    ));
    let events = store.event_count("w1").unwrap();
    assert_eq!(tell(vec![key.clone()], vec![], T0 + 12), Committed::Told);
    assert_eq!(store.event_count("w1").unwrap(), events, "told once");
    assert!(store.due_stock_alerts(T0 + 13, 10).unwrap().is_empty());
    assert_eq!(
        store.stock_alerts("w1", "B").unwrap()[0].notified_at,
        Some(T0 + 11)
    );
    store.put_stock_alert(&alert).unwrap();
    assert_eq!(
        store.due_stock_alerts(T0 + 14, 10).unwrap().len(),
        1,
        "asked again"
    );

    // A: 5 on hand, low at 2.
    assert!(store.watch_low_stock(T0, T0 + 20, 10).unwrap().is_empty());
    let sell = |n: i64, at: i64| {
        let sale = Adjustment {
            change: Change::By(-n),
            reason: "sale".into(),
            ..receive("A", "lyon", 0)
        };
        store.move_stock("w1", &[sale], at).unwrap().unwrap();
    };
    sell(3, T0 + 21);
    let found = store.watch_low_stock(T0, T0 + 22, 10).unwrap();
    assert_eq!(
        found
            .iter()
            .map(|l| (l.sku.as_str(), l.available, l.threshold))
            .collect::<Vec<_>>(),
        vec![("A", 2, 2)]
    );
    let a = ("A".to_string(), "lyon".to_string());
    assert!(matches!(
        tell(vec![], vec![a.clone()], T0 + 23),
        Committed::Done { .. }
    ));
    assert_eq!(tell(vec![], vec![a.clone()], T0 + 24), Committed::Told);
    sell(1, T0 + 25);
    assert!(
        store.watch_low_stock(T0, T0 + 26, 10).unwrap().is_empty(),
        "still low: told already"
    );
    store
        .move_stock("w1", &[receive("A", "lyon", 10)], T0 + 27)
        .unwrap()
        .unwrap();
    assert!(store.watch_low_stock(T0, T0 + 28, 10).unwrap().is_empty());
    sell(9, T0 + 29);
    assert_eq!(
        store.watch_low_stock(T0 + 29, T0 + 30, 10).unwrap().len(),
        1,
        "low again after rising above the threshold"
    );
}

/// Spend rows replace the row of their day, channel and campaign, per workspace, and read back
/// by day range in order.
pub fn ad_spend_is_kept_per_day_channel_and_campaign(store: &dyn Store) {
    let row = |day: i64, channel: &str, campaign: &str, amount: f64| SpendRow {
        day,
        channel: channel.into(),
        campaign: campaign.into(),
        amount,
    };
    store
        .put_ad_spend(
            "ws_a",
            &[
                row(20_000, "ads", "", 10.0),
                row(20_000, "ads", "summer", 12.5),
                row(20_001, "email", "nl-48", 1.25),
                row(20_005, "ads", "summer", 3.0),
            ],
            1,
        )
        .unwrap();
    store
        .put_ad_spend("ws_b", &[row(20_000, "ads", "", 99.0)], 1)
        .unwrap();
    // A second import replaces the same day, channel and campaign.
    store
        .put_ad_spend("ws_a", &[row(20_000, "ads", "summer", 20.0)], 2)
        .unwrap();
    assert_eq!(
        store.ad_spend("ws_a", 20_000, 20_001).unwrap(),
        vec![
            row(20_000, "ads", "", 10.0),
            row(20_000, "ads", "summer", 20.0),
            row(20_001, "email", "nl-48", 1.25),
        ]
    );
    assert_eq!(
        store.ad_spend("ws_a", 20_002, 20_010).unwrap(),
        vec![row(20_005, "ads", "summer", 3.0)]
    );
    assert_eq!(
        store.ad_spend("ws_b", 0, 30_000).unwrap(),
        vec![row(20_000, "ads", "", 99.0)]
    );
    assert!(store.ad_spend("ws_c", 0, 30_000).unwrap().is_empty());
    store.put_ad_spend("ws_a", &[], 3).unwrap();
}
