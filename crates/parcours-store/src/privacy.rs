//! The privacy port: data subjects' requests with their legal deadlines, the erasure of a
//! person from every table, the hashed suppression list that keeps her out afterwards, and
//! the append-only audit log.

use std::collections::BTreeMap;

use parcours_core::time::Millis;
use serde::Serialize;

use crate::Result;

/// One person to erase from a workspace: her profiles and identifiers, resolved by the
/// caller from the identity graph.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Erasure {
    pub workspace_id: String,
    /// The profile that holds her and every profile merged into it.
    pub profiles: Vec<String>,
    /// Her identifier values as stored (emails, phones, user ids, anonymous ids, cards …):
    /// rows keyed by one of them are hers.
    pub identifiers: Vec<String>,
    /// Values unique enough to find her inside free text (emails, phones): a delivery log
    /// or an order note that contains one is about her.
    pub needles: Vec<String>,
    /// Values to take out of the documents kept without her (her identifiers and her
    /// names): an order keeps its lines and amounts, not who bought them.
    pub scrub: Vec<String>,
    /// The suppression entries to add ([`parcours_core::privacy::suppression_hash`]) with
    /// their identifier kind.
    pub suppress: Vec<(String, String)>,
    /// The member id her loyalty entries keep (random: nothing links it to her).
    pub pseudonym: String,
    pub at: Millis,
}

impl Erasure {
    /// The JSON-quoted form of each identifier: it finds an identifier as a whole string
    /// value in a JSON document (`"u-1"` does not match `"u-12"`).
    pub fn quoted(&self) -> Vec<String> {
        self.identifiers
            .iter()
            .chain(&self.profiles)
            .map(|v| serde_json::Value::String(v.clone()).to_string())
            .chain(self.needles.iter().cloned())
            .collect()
    }
}

/// What an erasure removed: rows per table (deleted, or kept without her where the law
/// requires the record: orders, loyalty entries). Counts only: no personal data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    pub deleted: BTreeMap<String, u64>,
    /// Rows kept with her data taken out.
    pub scrubbed: BTreeMap<String, u64>,
}

impl Erased {
    pub fn delete(&mut self, table: &str, rows: u64) {
        if rows > 0 {
            *self.deleted.entry(table.to_string()).or_default() += rows;
        }
    }
    pub fn scrub(&mut self, table: &str, rows: u64) {
        if rows > 0 {
            *self.scrubbed.entry(table.to_string()).or_default() += rows;
        }
    }
    pub fn merge(&mut self, other: Erased) {
        for (t, n) in other.deleted {
            self.delete(&t, n);
        }
        for (t, n) in other.scrubbed {
            self.scrub(&t, n);
        }
    }
    pub fn events(&self) -> u64 {
        self.deleted.get("events").copied().unwrap_or(0)
    }
}

/// A data subject's request (Art. 15, 17, 20 GDPR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrivacyRequest {
    pub id: String,
    pub workspace_id: String,
    /// `access` or `erasure`.
    pub kind: String,
    /// The identifier's kind (`email`, `user_id` …).
    pub identifier_type: String,
    /// The identifier's value: held while the request is open; an erasure forgets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// `received`, `in_progress`, `done` or `failed`.
    pub state: String,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub received_at: Millis,
    /// The day it must be answered by (`YYYY-MM-DD`), extensions included.
    pub deadline: String,
    /// Why the deadline was extended, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension_reason: Option<String>,
    #[serde(serialize_with = "parcours_core::time::serialize_iso_opt")]
    pub done_at: Option<Millis>,
    /// What was done (JSON, no personal data): rows erased, or what the archive holds.
    pub result: Option<String>,
    /// Who asked for it (the token's name).
    pub requested_by: String,
}

/// One line of the audit log: who did what, when, on what; never the personal data itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub workspace_id: String,
    #[serde(serialize_with = "parcours_core::time::serialize_iso")]
    pub at: Millis,
    /// The token (or `system`) that did it.
    pub actor: String,
    /// A stable name: `privacy.erasure.done`, `token.create` …
    pub action: String,
    /// What it was done to (an id, never an email).
    pub target: String,
    /// A JSON object with the details.
    pub detail: String,
}

/// One round of a workspace's retention: what is older than each cutoff goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionRun {
    pub workspace_id: String,
    /// Events with these names, received before their cutoff.
    pub events_by_name: Vec<(String, Millis)>,
    /// Events of these types (but a name with a rule of its own), before their cutoff.
    pub events_by_type: Vec<(String, Millis)>,
    /// Every other event (no rule by name or type) received before this.
    pub events_before: Option<Millis>,
    /// Messages sent before this: their outbox rows and receipts.
    pub messages_before: Option<Millis>,
    /// Contacts (what frequency caps count) before this: never inside a cap's window.
    pub contacts_before: Option<Millis>,
    /// What messages sent before this said (subject, bodies, title).
    pub bodies_before: Option<Millis>,
    pub quarantine_before: Option<Millis>,
    /// Destination deliveries and webhook calls settled before this.
    pub deliveries_before: Option<Millis>,
}

/// The outbox lanes of messages (email, SMS, push).
pub const MESSAGE_LANES: &str = "channel:%";
/// The fields of a message's outbox row that say what it said.
pub const BODY_FIELDS: &[&str] = &["subject", "html", "text", "title"];

/// A message's outbox payload without what it said ([`BODY_FIELDS`]), or `None` when it
/// has none of them (or is not a JSON object).
pub fn without_bodies(payload: &str) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(payload).ok()?;
    let map = v.as_object_mut()?;
    let mut changed = false;
    for f in BODY_FIELDS {
        changed |= map.remove(*f).is_some();
    }
    changed.then(|| v.to_string())
}

/// Where a secret Parcours keeps readable is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecretHolder {
    /// A destination's signing secret (its definition's `secret`).
    Destination,
    /// A webhook source's platform secret (`webhook.signature.secret`).
    Source,
    /// A workspace setting that is a secret (the preference links').
    Setting,
}

/// A stored secret as it is stored (sealed or not), and where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoredSecret {
    pub workspace_id: String,
    pub holder: SecretHolder,
    /// The destination's or the source's id, or the setting's name.
    pub id: String,
    pub value: String,
}

impl StoredSecret {
    /// A secret of `holder` from a row `(workspace, id, value)`.
    pub fn of(holder: SecretHolder) -> impl Fn((String, String, String)) -> StoredSecret {
        move |(workspace_id, id, value)| StoredSecret {
            workspace_id,
            holder,
            id,
            value,
        }
    }

    /// A source's secret from a row `(workspace, id, stored webhook document)`: none when
    /// the document holds none, an empty value when it does not read.
    pub fn of_source((workspace_id, id, webhook): (String, String, String)) -> Option<Self> {
        let value = match webhook_secret(&webhook) {
            Some(v) => v,
            None if serde_json::from_str::<serde_json::Value>(&webhook).is_err() => String::new(),
            None => return None,
        };
        Some(StoredSecret {
            workspace_id,
            holder: SecretHolder::Source,
            id,
            value,
        })
    }
}

/// A source's stored `webhook` document with its signing secret replaced, if it holds
/// `old` as that secret (a document that does not read holds none).
pub fn webhook_with_secret(stored: &str, old: &str, new: &str) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(stored).ok()?;
    let slot = v.get_mut("signature")?.get_mut("secret")?;
    if slot.as_str() != Some(old) {
        return None;
    }
    *slot = new.into();
    Some(v.to_string())
}

/// A source's stored `webhook` document's signing secret, as stored.
pub fn webhook_secret(stored: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(stored).ok()?;
    v.get("signature")?
        .get("secret")?
        .as_str()
        .map(str::to_string)
}

pub trait Privacy: Send + Sync {
    /// Deletes what a workspace keeps past its retention (in batches); returns rows per
    /// table (`message bodies` counts the messages emptied).
    fn apply_retention(&self, run: &RetentionRun) -> Result<Erased>;

    /// Adds the suppression entries, deletes her rows and takes her out of the rows that
    /// stay, everywhere but in the audit log. Repeatable: a second run finds what a
    /// processor wrote after the first.
    fn erase(&self, erasure: &Erasure) -> Result<Erased>;
    /// The orders that name her (by her identifiers, or her email or phone in the order):
    /// each one's document and the loyalty card it names, for her access archive.
    fn her_orders(&self, person: &Erasure) -> Result<Vec<(String, Option<String>)>>;
    /// Rewrites storage so that deleted bytes are gone from the files (SQLite `VACUUM` and
    /// a truncated write-ahead log; PostgreSQL `VACUUM`).
    fn compact(&self) -> Result<()>;
    /// The suppression list of a workspace: every hash.
    fn suppressed_hashes(&self, workspace: &str) -> Result<Vec<String>>;
    /// Counts events refused because they named a suppressed identifier.
    fn count_refused(&self, workspace: &str, hash: &str, events: u64) -> Result<()>;
    /// The suppression list's size and the events it refused, in all.
    fn suppression_counts(&self, workspace: &str) -> Result<(u64, u64)>;

    /// Creates or replaces a request (with its archive, for access).
    fn save_privacy_request(&self, request: &PrivacyRequest, archive: Option<&[u8]>) -> Result<()>;
    fn privacy_request(&self, workspace: &str, id: &str) -> Result<Option<PrivacyRequest>>;
    /// A workspace's requests, newest first.
    fn privacy_requests(&self, workspace: &str, limit: usize) -> Result<Vec<PrivacyRequest>>;
    /// Every open request of every workspace (a node resumes them when it starts).
    fn open_privacy_requests(&self) -> Result<Vec<PrivacyRequest>>;
    /// An access request's archive.
    fn privacy_archive(&self, workspace: &str, id: &str) -> Result<Option<Vec<u8>>>;

    /// A workspace setting (a JSON document) by name.
    fn workspace_setting(&self, workspace: &str, name: &str) -> Result<Option<String>>;
    /// Sets a workspace setting.
    fn put_workspace_setting(
        &self,
        workspace: &str,
        name: &str,
        value: &str,
        at: Millis,
    ) -> Result<()>;
    /// Sets a workspace setting unless it is set: the value that stands (a secret made by two
    /// nodes at once is the same secret for both).
    fn init_workspace_setting(
        &self,
        workspace: &str,
        name: &str,
        value: &str,
        at: Millis,
    ) -> Result<String>;

    /// Every stored secret of every workspace, as stored (sealed or not): destinations',
    /// webhook sources' (a source document that does not read is listed by its id with an
    /// empty value) and the workspace settings named in `settings`.
    fn stored_secrets(&self, settings: &[&str]) -> Result<Vec<StoredSecret>>;
    /// Replaces a stored secret, and nothing else of what holds it, if it is still
    /// `secret.value`: whether it was (a change made meanwhile is kept).
    fn replace_stored_secret(&self, secret: &StoredSecret, value: &str) -> Result<bool>;

    /// Appends to the audit log; returns the entry's id. Entries are never changed.
    fn append_audit(&self, entry: &AuditEntry) -> Result<i64>;
    /// A workspace's audit log from the entry after `after_id`, oldest first.
    fn audit_log(&self, workspace: &str, after_id: i64, limit: usize) -> Result<Vec<AuditEntry>>;
    /// The audit log, newest first, before `before_id` (none: from the newest).
    fn audit_log_newest(
        &self,
        workspace: &str,
        before_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>>;
}

/// Which file of the embedded store a statement of an erasure runs in (the server store
/// has one database).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Log,
    Projections,
}

/// One statement of an erasure, written once for both stores. Markers, rendered by each
/// adapter: `{ws}` the workspace; `{in:LIST}` "is one of LIST"; `{has:COLUMN:LIST}`
/// "COLUMN contains one of LIST". The lists are [`Erasure`]'s: `profiles`, `identifiers`,
/// `quoted` ([`Erasure::quoted`]), `needles` and `keyed` ([`Erasure::keyed`]).
#[derive(Debug, Clone, Copy)]
pub struct EraseStep {
    pub side: Side,
    pub table: &'static str,
    /// Deleted rows count as `deleted`, updated ones as `scrubbed`.
    pub scrubs: bool,
    pub sql: &'static str,
}

const fn step(side: Side, table: &'static str, sql: &'static str) -> EraseStep {
    EraseStep {
        side,
        table,
        scrubs: false,
        sql,
    }
}

/// Her events: those the identity graph gave her profiles, those that name her user or
/// anonymous id, and those whose body holds one of her identifiers as a value.
const HER_EVENTS: &str = "workspace_id = {ws} AND (seq {in:seqs} OR user_id {in:identifiers}
    OR anonymous_id {in:identifiers} OR {has:events.body:quoted})";

/// Every statement of an erasure, in order (the documents kept without her, orders and
/// loyalty entries, are rewritten by the adapters with
/// [`parcours_core::privacy::scrub_json`]). A table that holds personal data and is not
/// here is a table an erasure misses: the erasure test scans every table.
pub const ERASE_STEPS: &[EraseStep] = &[
    // The log.
    step(
        Side::Log,
        "message_ids",
        "DELETE FROM message_ids WHERE workspace_id = {ws} AND seq IN (SELECT seq FROM events WHERE {her_events})",
    ),
    step(Side::Log, "events", "DELETE FROM events WHERE {her_events}"),
    step(
        Side::Log,
        "quarantine",
        "DELETE FROM quarantine WHERE workspace_id = {ws} AND {has:quarantine.body:quoted}",
    ),
    step(
        Side::Log,
        "plan_violations",
        "DELETE FROM plan_violations WHERE workspace_id = {ws} AND {has:plan_violations.example:needles}",
    ),
    step(
        Side::Log,
        "stock_alerts",
        "DELETE FROM stock_alerts WHERE workspace_id = {ws}
         AND (subscriber {in:keyed} OR {has:stock_alerts.customer:quoted})",
    ),
    EraseStep {
        side: Side::Log,
        table: "offer_redemptions",
        scrubs: true,
        sql: "UPDATE offer_redemptions SET customer = NULL WHERE workspace_id = {ws} AND customer {in:keyed}",
    },
    EraseStep {
        side: Side::Log,
        table: "privacy_requests",
        scrubs: true,
        sql: "UPDATE privacy_requests SET identifier = NULL, archive = NULL
              WHERE workspace_id = {ws} AND identifier {in:identifiers}",
    },
    // The projections.
    step(
        Side::Projections,
        "profile_events",
        "DELETE FROM profile_events WHERE workspace_id = {ws} AND profile_id {in:profiles}",
    ),
    step(
        Side::Projections,
        "profiles",
        "DELETE FROM profiles WHERE workspace_id = {ws}
         AND (id {in:profiles} OR merged_into {in:profiles})",
    ),
    step(
        Side::Projections,
        "identifiers",
        "DELETE FROM identifiers WHERE workspace_id = {ws}
         AND (profile_id {in:profiles} OR id_value {in:identifiers})",
    ),
    step(
        Side::Projections,
        "identifier_drops",
        "DELETE FROM identifier_drops WHERE workspace_id = {ws}
         AND (profile_id {in:profiles} OR id_value {in:identifiers})",
    ),
    step(
        Side::Projections,
        "merges",
        "DELETE FROM merges WHERE workspace_id = {ws}
         AND (winner {in:profiles} OR loser {in:profiles})",
    ),
    step(
        Side::Projections,
        "separations",
        "DELETE FROM separations WHERE workspace_id = {ws}
         AND (a_value {in:identifiers} OR b_value {in:identifiers})",
    ),
    step(
        Side::Projections,
        "memberships",
        "DELETE FROM memberships WHERE workspace_id = {ws} AND profile_id {in:profiles}",
    ),
    step(
        Side::Projections,
        "membership_changes",
        "DELETE FROM membership_changes WHERE workspace_id = {ws} AND profile_id {in:profiles}",
    ),
    step(
        Side::Projections,
        "computed_values",
        "DELETE FROM computed_values WHERE workspace_id = {ws} AND profile_id {in:profiles}",
    ),
    step(
        Side::Projections,
        "audience_work",
        "DELETE FROM audience_work WHERE workspace_id = {ws} AND profile_id {in:profiles}",
    ),
    step(
        Side::Projections,
        "journey_work",
        "DELETE FROM journey_work WHERE workspace_id = {ws} AND profile_id {in:profiles}",
    ),
    step(
        Side::Projections,
        "message_receipts",
        "DELETE FROM message_receipts WHERE workspace_id = {ws} AND (
            key IN (SELECT key FROM journey_contacts WHERE workspace_id = {ws} AND profile_id {in:profiles})
            OR key IN (SELECT key FROM outbox WHERE workspace_id = {ws} AND {has:outbox.payload:quoted})
            OR {has:message_receipts.detail:needles})",
    ),
    step(
        Side::Projections,
        "journey_contacts",
        "DELETE FROM journey_contacts WHERE workspace_id = {ws} AND profile_id {in:profiles}",
    ),
    step(
        Side::Projections,
        "journey_notes",
        "DELETE FROM journey_notes WHERE workspace_id = {ws}
         AND (profile_id {in:profiles} OR {has:journey_notes.detail:needles})",
    ),
    step(
        Side::Projections,
        "journey_runs",
        "DELETE FROM journey_runs WHERE workspace_id = {ws} AND profile_id {in:profiles}",
    ),
    step(
        Side::Projections,
        "timers",
        "DELETE FROM timers WHERE workspace_id = {ws}
         AND (key {in:profiles} OR {has:timers.key:profiles} OR {has:timers.payload:quoted})",
    ),
    step(
        Side::Projections,
        "outbox_attempts",
        "DELETE FROM outbox_attempts WHERE outbox_id IN (SELECT id FROM outbox WHERE workspace_id = {ws})
         AND {has:outbox_attempts.detail:needles}",
    ),
    // A message to her alone goes with her; a batch to a destination keeps the others
    // (its payload is scrubbed by the adapter).
    step(
        Side::Projections,
        "outbox",
        "DELETE FROM outbox WHERE workspace_id = {ws} AND items <= 1 AND {has:outbox.payload:quoted}",
    ),
    step(
        Side::Projections,
        "suppressions",
        "DELETE FROM suppressions WHERE workspace_id = {ws} AND address {in:identifiers}",
    ),
];

/// A list an erasure's statements read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum List {
    Texts(Vec<String>),
    Numbers(Vec<i64>),
}

impl Erasure {
    /// `card:`, `user:`, `email:` and `anon:` keys of her identifiers (how stock alerts and
    /// offer limits name a customer).
    pub fn keyed(&self) -> Vec<String> {
        self.identifiers
            .iter()
            .flat_map(|v| ["card", "user", "email", "anon"].map(|p| format!("{p}:{v}")))
            .collect()
    }

    /// Every list the statements read, by name, empty values left out (an empty needle
    /// would be in everything); `seqs` are her events by the identity graph.
    pub fn lists(&self, seqs: Vec<i64>) -> Vec<(&'static str, List)> {
        let clean = |v: Vec<String>| List::Texts(v.into_iter().filter(|s| !s.is_empty()).collect());
        vec![
            ("profiles", clean(self.profiles.clone())),
            ("identifiers", clean(self.identifiers.clone())),
            ("quoted", clean(self.quoted())),
            ("needles", clean(self.needles.clone())),
            ("keyed", clean(self.keyed())),
            ("seqs", List::Numbers(seqs)),
            ("members", clean(self.identifiers.clone())),
        ]
    }
}

/// `lists` with `members` (her identifiers and the cards her orders name) and their `keyed`
/// forms replaced.
pub fn with_members(
    lists: &[(&'static str, List)],
    members: Vec<String>,
) -> Vec<(&'static str, List)> {
    let members: Vec<String> = members.into_iter().filter(|m| !m.is_empty()).collect();
    let keyed = Erasure {
        identifiers: members.clone(),
        ..Erasure::default()
    }
    .keyed();
    let mut out: Vec<_> = lists
        .iter()
        .filter(|(n, _)| *n != "members" && *n != "keyed")
        .cloned()
        .collect();
    out.push(("members", List::Texts(members)));
    out.push(("keyed", List::Texts(keyed)));
    out
}

/// The SQL dialect a statement is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Lists bound as JSON arrays, named parameters (`:ws`, `:profiles` …).
    Sqlite,
    /// Lists bound as arrays, positional parameters in the order of [`Rendered::params`].
    Postgres,
}

/// A statement ready for an adapter: its SQL and the names of the parameters it binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub sql: String,
    /// Distinct, in order of first use (`$1` is the first for PostgreSQL).
    pub params: Vec<String>,
}

/// Renders an [`EraseStep`]'s markers in `dialect`.
pub fn render(sql: &str, dialect: Dialect) -> Rendered {
    let sql = sql.replace("{her_events}", HER_EVENTS);
    let mut params: Vec<String> = Vec::new();
    let mut place = |name: &str| -> String {
        let i = match params.iter().position(|p| p == name) {
            Some(i) => i,
            None => {
                params.push(name.to_string());
                params.len() - 1
            }
        };
        match dialect {
            Dialect::Sqlite => format!(":{name}"),
            Dialect::Postgres => format!("${}", i + 1),
        }
    };
    let mut out = String::with_capacity(sql.len() * 2);
    let mut rest = sql.as_str();
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find('}').expect("a marker ends with }");
        let marker = &rest[start + 1..end];
        let parts: Vec<&str> = marker.split(':').collect();
        let text = match (parts.as_slice(), dialect) {
            (["ws"], _) => place("ws"),
            (["in", list], Dialect::Sqlite) => {
                format!("IN (SELECT value FROM json_each({}))", place(list))
            }
            (["in", list], Dialect::Postgres) => format!("= ANY({})", place(list)),
            (["has", column, list], Dialect::Sqlite) => format!(
                "EXISTS (SELECT 1 FROM json_each({}) AS n WHERE instr({column}, n.value) > 0)",
                place(list)
            ),
            (["has", column, list], Dialect::Postgres) => format!(
                "EXISTS (SELECT 1 FROM unnest({}::text[]) AS n(v) WHERE strpos({column}, n.v) > 0)",
                place(list)
            ),
            _ => panic!("unknown marker {{{marker}}} in an erasure statement"),
        };
        out.push_str(&text);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Rendered { sql: out, params }
}

/// Her events by the identity graph, read before the statements run.
pub const HER_PROFILE_EVENTS: &str =
    "SELECT seq FROM profile_events WHERE workspace_id = {ws} AND profile_id {in:profiles}";
/// The orders that name her: kept, without her ([`ORDER_DROP_KEYS`]).
pub const HER_ORDERS: &str =
    "SELECT id, body, member FROM commerce_orders WHERE workspace_id = {ws}
    AND (member {in:identifiers} OR {has:commerce_orders.body:quoted})";
/// What an order keeps of its customer: nothing.
pub const ORDER_DROP_KEYS: &[&str] = &["customer", "member"];
/// Her loyalty entries: kept (the points are a liability), under a new member id. `members`
/// are her identifiers and the loyalty cards of her orders.
pub const HER_LOYALTY: &str =
    "SELECT seq, member, body FROM loyalty_entries WHERE workspace_id = {ws}
    AND (member {in:members} OR {has:loyalty_entries.body:quoted})";
/// Batches to destinations that hold her among others: kept, without her.
pub const HER_BATCHES: &str = "SELECT id, payload FROM outbox WHERE workspace_id = {ws}
    AND items > 1 AND {has:outbox.payload:quoted}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_render_in_both_dialects() {
        let sql = "DELETE FROM t WHERE workspace_id = {ws} AND (a {in:profiles} OR {has:t.b:quoted} OR c {in:profiles})";
        let s = render(sql, Dialect::Sqlite);
        assert_eq!(s.params, ["ws", "profiles", "quoted"]);
        assert!(s
            .sql
            .contains("a IN (SELECT value FROM json_each(:profiles))"));
        assert!(s.sql.contains("instr(t.b, n.value)"));
        let p = render(sql, Dialect::Postgres);
        assert!(p.sql.contains("workspace_id = $1"));
        assert!(p.sql.contains("a = ANY($2)"));
        assert!(p.sql.contains("c = ANY($2)"));
        assert!(p.sql.contains("unnest($3::text[])"));
        for step in ERASE_STEPS {
            for d in [Dialect::Sqlite, Dialect::Postgres] {
                let r = render(step.sql, d);
                assert!(!r.sql.contains('{'), "{}", r.sql);
                assert_eq!(r.params[0], "ws", "{}", step.table);
            }
        }
    }

    #[test]
    fn empty_values_are_never_needles() {
        let e = Erasure {
            identifiers: vec!["u-1".into(), String::new()],
            needles: vec![String::new()],
            ..Erasure::default()
        };
        for (name, list) in e.lists(vec![]) {
            if let List::Texts(v) = list {
                assert!(v.iter().all(|s| !s.is_empty()), "{name}");
            }
        }
        assert!(e.quoted().contains(&"\"u-1\"".to_string()));
    }
}
