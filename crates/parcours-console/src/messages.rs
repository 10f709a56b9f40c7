//! Messages journeys sent, as the customer sees them: emails rendered in a sandboxed frame
//! (no script, no request, no navigation: looking at an email never counts as opening it),
//! SMS and push as text, with their delivery state.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use parcours_api::AppState;
use parcours_core::journey::MessageChannel;
use parcours_service::messages;
use serde::Deserialize;

use crate::pages::{blocking, render, service_problem, Chrome, Session};

/// Messages per page.
const PAGE: usize = 50;

/// A path segment: everything but unreserved characters percent-encoded.
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) struct MessageRow {
    pub href: String,
    pub when: String,
    pub to: String,
    pub what: String,
    pub journey: String,
    pub state: String,
}

#[derive(Template)]
#[template(path = "messages.html")]
struct Messages {
    c: Chrome,
    channel: &'static str,
    channels: Vec<&'static str>,
    rows: Vec<MessageRow>,
    older: Option<i64>,
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    channel: Option<String>,
    before: Option<i64>,
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> Response {
    let channel = q
        .channel
        .as_deref()
        .and_then(MessageChannel::parse)
        .unwrap_or(MessageChannel::Email);
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let tr = session.tr();
    let before = q.before;
    match blocking(move || messages::sent(store.as_ref(), &actor, channel, before, PAGE)).await {
        Ok(rows) => {
            let older = (rows.len() == PAGE)
                .then(|| rows.last().map(|(r, _)| r.id))
                .flatten();
            render(Messages {
                c: session.chrome(),
                channel: channel.as_str(),
                channels: vec!["email", "sms", "push"],
                rows: rows
                    .iter()
                    .map(|(r, m)| MessageRow {
                        href: format!("/console/messages/{}", segment(&r.key)),
                        when: tr.date(r.created_at),
                        to: m.as_ref().map(|m| m.to.clone()).unwrap_or_default(),
                        what: m
                            .as_ref()
                            .and_then(|m| {
                                m.subject
                                    .clone()
                                    .or_else(|| m.title.clone())
                                    .or_else(|| m.text.clone())
                            })
                            .unwrap_or_default()
                            .chars()
                            .take(90)
                            .collect(),
                        journey: m.as_ref().map(|m| m.journey.clone()).unwrap_or_default(),
                        state: r.state.as_str().to_string(),
                    })
                    .collect(),
                older,
            })
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    c: Chrome,
    key: String,
    frame: String,
    channel: &'static str,
    to: String,
    subject: String,
    has_html: bool,
    text: String,
    journey: String,
    step: String,
    profile: String,
    state: String,
    attempts: u32,
    last_error: String,
    when: String,
    /// What became of it: (kind, when, what the provider said).
    receipts: Vec<(String, String, String)>,
}

pub(crate) async fn message(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(key): Path<String>,
) -> Response {
    let (store, actor) = (state.engine.store().clone(), session.actor());
    let tr = session.tr();
    let wanted = key.clone();
    let found = blocking(move || {
        let (row, m) = messages::sent_one(store.as_ref(), &actor, &wanted)?;
        let receipts = messages::receipts_of(store.as_ref(), &actor, &wanted)?;
        Ok((row, m, receipts))
    })
    .await;
    match found {
        Ok((row, m, receipts)) => render(MessagePage {
            receipts: receipts
                .iter()
                .map(|r| (r.kind.clone(), tr.date(r.at), r.detail.clone()))
                .collect(),
            c: session.chrome(),
            frame: format!("/console/messages/{}/html", segment(&key)),
            channel: m.channel.as_str(),
            to: m.to.clone(),
            subject: m
                .subject
                .clone()
                .or_else(|| m.title.clone())
                .unwrap_or_default(),
            has_html: m.html.is_some(),
            text: m.text.clone().unwrap_or_default(),
            journey: m.journey.clone(),
            step: m.step.clone(),
            profile: m.profile.clone(),
            state: row.state.as_str().to_string(),
            attempts: row.attempts,
            last_error: row.last_error.clone().unwrap_or_default(),
            when: tr.date(row.created_at),
            key,
        }),
        Err(e) => service_problem(session.chrome(), e),
    }
}

/// An email's HTML, for the frame of its page only: no script runs, nothing is fetched (its
/// open pixel included), no link leaves the frame.
pub(crate) async fn html(
    State(state): State<Arc<AppState>>,
    session: Session,
    Path(key): Path<String>,
) -> Response {
    let (store, actor) = (state.engine.store().clone(), session.actor());
    match blocking(move || messages::sent_one(store.as_ref(), &actor, &key)).await {
        Ok((_, m)) => {
            let mut r = Html(m.html.unwrap_or_default()).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                     frame-ancestors 'self'; sandbox",
                ),
            );
            h.insert(
                header::X_FRAME_OPTIONS,
                HeaderValue::from_static("SAMEORIGIN"),
            );
            r
        }
        Err(e) => service_problem(session.chrome(), e),
    }
}
