//! Items (SKUs and kits) and locations (shops, warehouses, web fulfilment).

use parcours_core::commerce::catalogue::{Item, Location};
use parcours_core::time::Millis;
use parcours_store::Store;
use serde_json::Value;

use super::read;
use crate::{Actor, ServiceError};

/// Items per page at most.
pub const MAX_PAGE: usize = 1_000;

/// Creates or replaces the item `sku` from its JSON document (the `sku` field may be left
/// out; if given it must be the path's). A kit's components must be items already, and
/// cannot be kits themselves.
pub fn put_item(
    store: &dyn Store,
    actor: &Actor,
    sku: &str,
    mut body: Value,
    now: Millis,
) -> Result<Item, ServiceError> {
    actor.require_admin()?;
    if let Value::Object(o) = &mut body {
        match o.get("sku") {
            None => {
                o.insert("sku".into(), Value::String(sku.into()));
            }
            Some(Value::String(s)) if s == sku => {}
            Some(other) => {
                return Err(ServiceError::invalid(
                    "invalid_sku",
                    format!("the body's sku {other} is not the path's {sku:?}"),
                ))
            }
        }
    }
    let item: Item = read("invalid_item", "the item", body)?;
    item.check()?;
    for c in &item.components {
        match store.item(&actor.workspace, &c.sku)? {
            None => {
                return Err(ServiceError::invalid(
                    "unknown_item",
                    format!("component {} is not in the catalogue; add it first", c.sku),
                ))
            }
            Some(i) if i.is_kit() => {
                return Err(ServiceError::invalid(
                    "invalid_item",
                    format!(
                        "component {} is a kit itself: list its components instead",
                        c.sku
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    if item.is_kit()
        && !store
            .stock(&actor.workspace, std::slice::from_ref(&item.sku), now)?
            .is_empty()
    {
        return Err(ServiceError::invalid(
            "invalid_item",
            format!(
                "{} has stock of its own: a kit's stock is its components'",
                item.sku
            ),
        ));
    }
    store.put_item(&actor.workspace, &item, now)?;
    Ok(item)
}

pub fn item(store: &dyn Store, actor: &Actor, sku: &str) -> Result<Item, ServiceError> {
    store
        .item(&actor.workspace, sku)?
        .ok_or_else(|| ServiceError::NotFound(format!("item {sku}")))
}

/// A page of items in SKU order after `after`.
pub fn items(
    store: &dyn Store,
    actor: &Actor,
    after: Option<&str>,
    limit: Option<usize>,
) -> Result<Vec<Item>, ServiceError> {
    let limit = crate::commerce::stock::page_limit(limit, MAX_PAGE)?;
    Ok(store.items(&actor.workspace, after, limit)?)
}

/// Creates or replaces the location `id` from its JSON document.
pub fn put_location(
    store: &dyn Store,
    actor: &Actor,
    id: &str,
    mut body: Value,
    now: Millis,
) -> Result<Location, ServiceError> {
    actor.require_admin()?;
    if let Value::Object(o) = &mut body {
        match o.get("id") {
            None => {
                o.insert("id".into(), Value::String(id.into()));
            }
            Some(Value::String(s)) if s == id => {}
            Some(other) => {
                return Err(ServiceError::invalid(
                    "invalid_location",
                    format!("the body's id {other} is not the path's {id:?}"),
                ))
            }
        }
    }
    let location: Location = read("invalid_location", "the location", body)?;
    location.check()?;
    store.put_location(&actor.workspace, &location, now)?;
    Ok(location)
}

pub fn locations(store: &dyn Store, actor: &Actor) -> Result<Vec<Location>, ServiceError> {
    Ok(store.locations(&actor.workspace)?)
}

pub fn location(store: &dyn Store, actor: &Actor, id: &str) -> Result<Location, ServiceError> {
    locations(store, actor)?
        .into_iter()
        .find(|l| l.id == id)
        .ok_or_else(|| ServiceError::NotFound(format!("location {id}")))
}
