//! The console through HTTP, as a browser would use it without JavaScript: signing in and
//! out, the session cookie, the CSRF token every form carries, roles, the customer search,
//! the customer page with her merged history, an unmerge, and French.

#[macro_use]
mod common;

use common::{start_on, Backend, TestNode, ADMIN};
use parcours_testkit::http::Response;
use serde_json::json;

async fn get(t: &TestNode, path: &str, cookie: &str) -> Response {
    t.client
        .request("GET".parse().unwrap(), path, &[("cookie", cookie)], "")
        .await
        .unwrap()
}

async fn post(t: &TestNode, path: &str, headers: &[(&str, &str)], form: &str) -> Response {
    let mut h = vec![("content-type", "application/x-www-form-urlencoded")];
    h.extend_from_slice(headers);
    t.client
        .request("POST".parse().unwrap(), path, &h, form.to_string())
        .await
        .unwrap()
}

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).to_string()
}

fn header<'a>(r: &'a Response, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Signs in with `token`: the session cookie to send back.
async fn sign_in(t: &TestNode, token: &str) -> String {
    let r = post(
        t,
        "/console/sign-in",
        &[],
        &format!("token={token}&next=/console/customers"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(header(&r, "location"), "/console/customers");
    let cookie = header(&r, "set-cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    cookie.split(';').next().unwrap().to_string()
}

/// The value of the form field `name` on a page.
fn field(page: &str, name: &str) -> String {
    let at = page
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} field in {page}"));
    let rest = &page[at + name.len() + 15..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// Ann's web cart as an anonymous visitor, her purchase in a shop under her account, then
/// her sign-in on the web, which merges the two.
async fn ann_across_channels(t: &TestNode) {
    t.send(json!({"batch": [
        {"type": "track", "anonymousId": "visitor-1", "event": "Product Added", "messageId": "cart-1",
         "properties": {"name": "Red shoes", "cart_id": "c1"}, "context": {"channel": "web"}},
        {"type": "identify", "userId": "ann", "messageId": "id-1",
         "traits": {"email": "Ann@Example.com", "first_name": "Ann", "last_name": "Lee"},
         "context": {"channel": "store"}},
        {"type": "track", "userId": "ann", "event": "Order Completed", "messageId": "pos-1",
         "properties": {"order_id": "o1", "total": 120, "store": "Lyon Part-Dieu"},
         "context": {"channel": "store"}},
    ]}))
    .await;
    t.unified().await;
    t.send(json!({"batch": [
        {"type": "identify", "userId": "ann", "anonymousId": "visitor-1", "messageId": "login-1",
         "context": {"channel": "web"}},
    ]}))
    .await;
    t.unified().await;
}

async fn a_customer_is_found_seen_across_channels_unmerged_and_read_in_french(backend: Backend) {
    let t = start_on("console", backend, |_| {}).await;
    ann_across_channels(&t).await;

    // Not signed in: every page sends to the sign-in page, which says where to come back.
    let r = get(&t, "/console/customers", "").await;
    assert_eq!(r.status, 303);
    assert_eq!(
        header(&r, "location"),
        "/console/sign-in?next=/console/customers"
    );
    // A wrong token is refused with a clear message, and no cookie.
    let r = post(
        &t,
        "/console/sign-in",
        &[],
        "token=pat_nope_0123456789abcdef",
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(text(&r).contains("This token is not valid"), "{}", text(&r));
    assert!(header(&r, "set-cookie").is_empty());
    let cookie = sign_in(&t, ADMIN).await;

    // Found by her email as she typed it (normalised as ingest normalises it): one customer,
    // so straight to her page.
    let r = get(&t, "/console/customers?q=ANN%40example.com", &cookie).await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let page_path = header(&r, "location").to_string();
    assert!(
        page_path.starts_with("/console/customers/p_"),
        "{page_path}"
    );
    let r = get(&t, "/console/customers?q=nobody%40example.com", &cookie).await;
    assert_eq!(r.status, 200);
    assert!(text(&r).contains("No customer has this identifier."));

    // Her consent with its proof: when, where, how, from which source, which text, which event.
    t.send(json!({"batch": [
        {"type": "identify", "userId": "ann", "messageId": "consent-1",
         "context": {"channel": "web",
                     "consent": {"categoryPreferences": {"marketing": true}, "version": "cmp-7"}}},
    ]}))
    .await;
    t.unified().await;

    // One timeline: the shop's purchase and the web cart, each with its channel.
    let r = get(&t, &page_path, &cookie).await;
    assert_eq!(r.status, 200);
    let page = text(&r);
    assert!(page.contains("<h1>Ann Lee</h1>"), "{page}");
    for needle in [
        "text version cmp-7 · consent-1",
        "data-channel=\"store\"",
        "data-channel=\"web\"",
        "Order Completed",
        "Product Added",
        "store: Lyon Part-Dieu",
        "visitor-1",
    ] {
        assert!(page.contains(needle), "{needle} in {page}");
    }
    let csp = header(&r, "content-security-policy");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    // Filtered to the shop: the web cart is not on it.
    let r = get(&t, &format!("{page_path}?channel=store"), &cookie).await;
    assert_eq!(r.status, 200);
    let store_only = text(&r);
    assert!(store_only.contains("Order Completed"));
    assert!(!store_only.contains("data-channel=\"web\""), "{store_only}");

    // The merge, with an unmerge that says what it will do before doing it.
    let unmerge = page
        .split("href=\"")
        .find(|s| s.contains("/unmerge/"))
        .map(|s| s[..s.find('"').unwrap()].to_string())
        .expect("an unmerge link for an admin");
    let r = get(&t, &unmerge, &cookie).await;
    assert_eq!(r.status, 200);
    let confirm = text(&r);
    for needle in ["login-1", "anonymous_id:visitor-1", "user_id:ann"] {
        assert!(confirm.contains(needle), "{needle} in {confirm}");
    }
    let csrf = field(&confirm, "csrf");
    // A post without the CSRF token, with another's, or from another site: refused.
    for (headers, form) in [
        (vec![], String::new()),
        (vec![], "csrf=0123456789abcdef0123456789abcdef".to_string()),
        (
            vec![("origin", "https://evil.example")],
            format!("csrf={csrf}"),
        ),
    ] {
        let mut h = vec![("cookie", cookie.as_str())];
        h.extend(headers);
        let r = post(&t, &unmerge, &h, &form).await;
        assert_eq!(r.status, 403, "{form}: {}", text(&r));
    }
    assert_eq!(
        t.store
            .merges_of(&t.workspace, page_path.rsplit('/').next().unwrap())
            .unwrap()
            .iter()
            .filter(|m| m.undone_at.is_none())
            .count(),
        1,
        "still merged"
    );
    // Posted through a proxy that rewrites `Host`: the site it forwarded is the page's own.
    let r = post(
        &t,
        &unmerge,
        &[
            ("cookie", cookie.as_str()),
            ("origin", "https://crm.shop.example"),
            ("x-forwarded-host", "crm.shop.example"),
        ],
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let after = header(&r, "location").to_string();
    assert!(after.contains("?unmerged=p_"), "{after}");
    let r = get(&t, &after, &cookie).await;
    let both = text(&r);
    assert!(
        both.contains("Unmerged: the two profiles are below."),
        "{both}"
    );
    // One profile keeps the web visitor's cart, the other has Ann's purchase in the shop.
    let other = after.split("unmerged=").nth(1).unwrap();
    let first = after.split('?').next().unwrap().rsplit('/').next().unwrap();
    assert_ne!(first, other, "two profiles");
    let r = get(&t, &format!("/console/customers/{other}"), &cookie).await;
    assert_eq!(r.status, 200);
    let second = text(&r);
    let (visitor, ann) = if both.contains("Order Completed") {
        (second, both)
    } else {
        (both, second)
    };
    assert!(visitor.contains("Product Added"), "{visitor}");
    assert!(!visitor.contains("Order Completed"), "{visitor}");
    assert!(ann.contains("Order Completed"), "{ann}");
    assert!(!ann.contains("Product Added"), "{ann}");

    // French: the switch remembers it, and the same page is translated.
    let r = get(
        &t,
        &format!("/console/lang?to=fr&back={}", page_path),
        &cookie,
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(header(&r, "location"), page_path);
    let lang = header(&r, "set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(lang, "parcours_lang=fr");
    let r = get(&t, &page_path, &format!("{cookie}; {lang}")).await;
    let fr = text(&r);
    for needle in [
        "<html lang=\"fr\"",
        "Chronologie",
        "Magasin",
        "Identifiants",
    ] {
        assert!(fr.contains(needle), "{needle} in {fr}");
    }
    assert!(!fr.contains("??missing??"), "{fr}");
    // The switch never sends anywhere but the console.
    let r = get(&t, "/console/lang?to=en&back=//evil.example/x", &cookie).await;
    assert_eq!(header(&r, "location"), "/console/dashboard");

    // Signing out needs the form's token, and ends the session in this browser.
    let r = post(&t, "/console/sign-out", &[("cookie", cookie.as_str())], "").await;
    assert_eq!(r.status, 403);
    let csrf = field(&fr, "csrf");
    let r = post(
        &t,
        "/console/sign-out",
        &[("cookie", cookie.as_str())],
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(r.status, 303);
    assert!(header(&r, "set-cookie").contains("Max-Age=0"));
    t.stop().await;
}

/// A read-only token sees her page without any edit control, and the service refuses the
/// action anyway when its form is posted by hand; a revoked token's session ends.
async fn a_read_only_session_sees_no_edit_control_and_cannot_act(backend: Backend) {
    let t = start_on("console-ro", backend, |_| {}).await;
    ann_across_channels(&t).await;
    let r = t
        .client
        .post(
            "/api/v1/tokens",
            ADMIN,
            json!({"name": "viewer", "role": "read_only"}).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let v = r.json();
    let (secret, id) = (
        v["secret"].as_str().unwrap().to_string(),
        v["token"]["id"].as_str().unwrap().to_string(),
    );
    let cookie = sign_in(&t, &secret).await;
    // Customers are personal data: not for a read-only token, found or opened.
    let admin = sign_in(&t, ADMIN).await;
    let r = get(&t, "/console/customers?q=ann", &admin).await;
    let path = header(&r, "location").to_string();
    let r = get(&t, "/console/customers?q=ann", &cookie).await;
    assert_eq!(r.status, 403, "{}", text(&r));
    assert!(text(&r).contains("personal data"), "{}", text(&r));
    let r = get(&t, &path, &cookie).await;
    assert_eq!(r.status, 403);
    let page = text(&get(&t, "/console/audiences", &cookie).await);
    assert!(page.contains("read-only"), "{page}");
    let pid = path.rsplit('/').next().unwrap();
    let merge = t.store.merges_of(&t.workspace, pid).unwrap()[0].id;
    let csrf = field(&page, "csrf");
    let r = post(
        &t,
        &format!("{path}/unmerge/{merge}"),
        &[("cookie", cookie.as_str())],
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(r.status, 403, "{}", text(&r));
    assert!(text(&r).contains("admin role"), "{}", text(&r));
    assert!(t.store.merges_of(&t.workspace, pid).unwrap()[0]
        .undone_at
        .is_none());
    // Revoked: the next pages (after the few seconds a node trusts a checked token) send
    // to the sign-in page.
    let r = t
        .client
        .request(
            "DELETE".parse().unwrap(),
            &format!("/api/v1/tokens/{id}"),
            &[("authorization", &format!("Bearer {ADMIN}"))],
            "",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    common::eventually(
        std::time::Duration::from_secs(15),
        "the revoked session ends",
        || async {
            let r = get(&t, &path, &cookie).await;
            (r.status == 303).then_some(())
        },
    )
    .await;
    t.stop().await;
}

/// Crafted addresses, markup in a customer's traits and in a search, a path out of the
/// assets, an unknown customer: each gets a clear answer, and nothing runs or breaks.
async fn hostile_input_gets_plain_answers(backend: Backend) {
    let t = start_on("console-hostile", backend, |_| {}).await;
    t.send(json!({"batch": [
        {"type": "identify", "userId": "mal", "traits": {
            "email": "mal@example.com", "first_name": "<img src=x onerror=alert(1)>",
            "bio": "</td><script>alert(2)</script>"}},
    ]}))
    .await;
    t.unified().await;
    let cookie = sign_in(&t, ADMIN).await;
    // A header cannot carry a line break or a non-ASCII character: percent-encoded, never a
    // failed answer, never a second header.
    for back in [
        "/console/%0D%0Aset-cookie:%20x=1",
        "/console/customers/%C3%A9t%C3%A9",
        "https://evil.example/",
        "/%2F%2Fevil.example",
    ] {
        let r = get(&t, &format!("/console/lang?to=fr&back={back}"), &cookie).await;
        assert_eq!(r.status, 303, "{back}");
        let location = header(&r, "location");
        assert!(location.starts_with("/console"), "{back} → {location}");
        assert!(!location.contains(['\r', '\n']), "{back} → {location:?}");
        assert_eq!(r.headers.get_all("set-cookie").iter().count(), 1, "{back}");
    }
    let r = post(
        &t,
        "/console/sign-in",
        &[],
        &format!("token={ADMIN}&next=/console/%0Ax%E2%9C%93"),
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(header(&r, "location"), "/console/%0Ax%E2%9C%93");
    // Markup is shown as text.
    let r = get(&t, "/console/customers?q=mal%40example.com", &cookie).await;
    let page = text(&get(&t, header(&r, "location"), &cookie).await);
    assert!(
        page.contains("&#60;img src=x onerror=alert(1)&#62;"),
        "{page}"
    );
    assert!(!page.contains("<img src=x"), "{page}");
    assert!(!page.contains("<script>alert(2)"), "{page}");
    let r = get(
        &t,
        "/console/customers?q=%3Cscript%3Ealert(3)%3C%2Fscript%3E",
        &cookie,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(!text(&r).contains("<script>alert(3)"), "{}", text(&r));
    // A long search is a search that finds no one.
    let long = "x".repeat(20_000);
    let r = get(&t, &format!("/console/customers?q={long}"), &cookie).await;
    assert_eq!(r.status, 200);
    assert!(text(&r).contains("No customer has this identifier."));
    // No way out of the assets; an unknown customer or audience is a page that says so.
    for path in [
        "/console/assets/../../Cargo.toml",
        "/console/assets/%2E%2E/%2E%2E/Cargo.toml",
        "/console/assets/vendor/../../src/lib.rs",
    ] {
        let r = get(&t, path, &cookie).await;
        assert_eq!(r.status, 404, "{path}: {}", text(&r));
    }
    let r = get(&t, "/console/assets/vendor/htmx.min.js", &cookie).await;
    assert_eq!(r.status, 200);
    assert!(header(&r, "content-type").starts_with("text/javascript"));
    let r = get(&t, "/console/customers/p_nobody", &cookie).await;
    assert_eq!(r.status, 404);
    assert!(
        text(&r).contains("profile p_nobody not found"),
        "{}",
        text(&r)
    );
    let r = get(&t, "/console/audiences/nothing", &cookie).await;
    assert_eq!(r.status, 404);
    let r = get(&t, "/console/messages/no%3Asuch%3Akey", &cookie).await;
    assert_eq!(r.status, 404);
    // A customer's page with a timeline cursor that is not a number: refused, plainly.
    let r = get(&t, "/console/customers/p_nobody?before=abc", &cookie).await;
    assert_eq!(r.status, 400);
    t.stop().await;
}

/// The quarantine: an event set aside is listed with its reason; a correction that still
/// breaks the spec is refused with the reason and kept in the editor; a good one is replayed
/// and lands on the customer.
async fn a_quarantined_event_is_fixed_and_replayed(backend: Backend) {
    let t = start_on("console-quarantine", backend, |_| {}).await;
    t.send(json!({"batch": [
        {"type": "track", "userId": "zoe", "messageId": "bad-1", "properties": {"total": 12}},
    ]}))
    .await;
    let cookie = sign_in(&t, ADMIN).await;
    let page = text(&get(&t, "/console/quality", &cookie).await);
    let at = page.find("href=\"/console/quality/").expect(&page);
    let rest = &page[at + 6..];
    let entry = rest[..rest.find('"').unwrap()].to_string();
    let r = get(&t, &entry, &cookie).await;
    assert_eq!(r.status, 200);
    let form = text(&r);
    assert!(form.contains("bad-1"), "{form}");
    let csrf = field(&form, "csrf");
    let enc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
    let still_bad = r#"{"type": "track", "userId": "zoe", "messageId": "bad-1"}"#;
    let r = post(
        &t,
        &entry,
        &[("cookie", cookie.as_str())],
        &format!("csrf={csrf}&action=replay&body={}", enc(still_bad)),
    )
    .await;
    assert_eq!(r.status, 422, "{}", text(&r));
    assert!(text(&r).contains("still breaks the spec"), "{}", text(&r));
    assert!(
        text(&r).contains("&#34;messageId&#34;: &#34;bad-1&#34;}"),
        "{}",
        text(&r)
    );
    let fixed = r#"{"type": "track", "userId": "zoe", "messageId": "bad-1", "event": "Order Completed", "properties": {"total": 12}}"#;
    let r = post(
        &t,
        &entry,
        &[("cookie", cookie.as_str())],
        &format!("csrf={csrf}&action=replay&body={}", enc(fixed)),
    )
    .await;
    assert_eq!(r.status, 303, "{}", text(&r));
    assert!(header(&r, parcours_api::AUDIT_TARGET).is_empty());
    t.unified().await;
    let r = get(&t, "/console/customers?q=zoe", &cookie).await;
    let page = text(&get(&t, header(&r, "location"), &cookie).await);
    assert!(page.contains("Order Completed"), "{page}");
    let r = get(&t, "/console/quality?status=replayed", &cookie).await;
    assert!(text(&r).contains(&entry), "{}", text(&r));
    // The audit log says what was done with it (the refused correction is not there), and
    // the header that told it does not reach the browser.
    let (_, audit) = t.get("/api/v1/audit?limit=1000").await;
    let targets: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "console.post")
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["quarantine/{id}/replay"], "{audit}");
    t.stop().await;
}

/// The value shown in the element with this id.
fn shown(page: &str, id: &str) -> String {
    let at = page
        .find(&format!("id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no #{id} in {page}"));
    let rest = &page[at + id.len() + 6..];
    rest[..rest.find('<').unwrap()].to_string()
}

/// Settings: an admin creates a source (its key shown once, with what to paste, and it
/// sends) and a token (its secret shown once, it signs in), then revokes the token and its
/// session ends; a read-only user sees neither tokens nor forms and cannot post them.
async fn sources_and_tokens_are_made_and_revoked(backend: Backend) {
    let t = start_on("console-settings", backend, |_| {}).await;
    let admin = sign_in(&t, ADMIN).await;
    let page = text(&get(&t, "/console/settings", &admin).await);
    let csrf = field(&page, "csrf");
    let h = [("cookie", admin.as_str())];
    let r = post(
        &t,
        "/console/settings/sources",
        &h,
        &format!("csrf={csrf}&name=POS+Lyon&channel=store"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let made = text(&r);
    let key = shown(&made, "made-secret");
    assert!(key.starts_with("wk_"), "{key}");
    assert!(
        made.contains(&format!("curl -u &#39;{key}:&#39;")),
        "{made}"
    );
    let auth = format!("Basic {}", parcours_testkit::http::basic(&key));
    let sent = t
        .client
        .request(
            "POST".parse().unwrap(),
            "/v1/track",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            r#"{"userId": "u1", "event": "Order Completed"}"#,
        )
        .await
        .unwrap();
    assert_eq!(sent.status, 200, "{}", String::from_utf8_lossy(&sent.body));
    // Shown once: the settings page lists the source, never its key.
    let page = text(&get(&t, "/console/settings", &admin).await);
    assert!(page.contains("POS Lyon") && !page.contains(&key), "{page}");
    // A token, signed in with, then revoked.
    let r = post(
        &t,
        "/console/settings/tokens",
        &h,
        &format!("csrf={csrf}&name=Shop+tablet&role=read_only&expires_in_days=30"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(text(&r).contains("New token: Shop tablet"), "{}", text(&r));
    let secret = shown(&text(&r), "made-secret");
    let viewer = sign_in(&t, &secret).await;
    let page = text(&get(&t, "/console/settings", &viewer).await);
    assert!(!page.contains("h-tokens"), "{page}");
    assert!(
        !page.contains("action=\"/console/settings/sources\""),
        "{page}"
    );
    let viewer_csrf = field(&page, "csrf");
    let r = post(
        &t,
        "/console/settings/tokens",
        &[("cookie", viewer.as_str())],
        &format!("csrf={viewer_csrf}&name=mine&role=admin"),
    )
    .await;
    assert_eq!(r.status, 403, "{}", text(&r));
    let r = post(
        &t,
        "/console/settings/tokens",
        &h,
        &format!("csrf={csrf}&name=x&role=admin&expires_in_days=soon"),
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(text(&r).contains("The expiry is a number of days."));
    // A token limited to measurement and audiences; an unknown scope is refused with the list.
    let r = post(
        &t,
        "/console/settings/tokens",
        &h,
        &format!("csrf={csrf}&name=Dashboards&role=analyst&scopes=measure%2C+Audiences"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let scoped = shown(&text(&r), "made-secret");
    let page = text(&get(&t, "/console/settings", &admin).await);
    assert!(page.contains("<td>measure, audiences</td>"), "{page}");
    let out = t.client.get("/api/v1/sources", &scoped).await.unwrap();
    assert_eq!(out.status, 403, "{}", out.json());
    assert_eq!(out.json()["code"], "out_of_scope");
    let r = post(
        &t,
        "/console/settings/tokens",
        &h,
        &format!("csrf={csrf}&name=x&role=analyst&scopes=everything"),
    )
    .await;
    assert_eq!(r.status, 422, "{}", text(&r));
    assert!(text(&r).contains("is not a scope"), "{}", text(&r));
    let page = text(&get(&t, "/console/settings", &admin).await);
    let id = page
        .split("action=\"/console/settings/tokens/")
        .skip(1)
        .map(|s| s[..s.find('/').unwrap()].to_string())
        .find(|id| page.contains(&format!("Shop tablet <code class=\"muted\">{id}")))
        .expect("a revoke form for the tablet's token");
    let r = post(
        &t,
        &format!("/console/settings/tokens/{id}/revoke"),
        &h,
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let r = get(&t, "/console/customers", &viewer).await;
    assert_eq!(
        r.status, 303,
        "the revoked token's session ended at once on this node"
    );
    // The audit log has each change made through the console, as the API names it, under the
    // signed-in token; the refused ones (the read-only's, a bad expiry, an unknown scope) are
    // not there.
    let (_, audit) = t.get("/api/v1/audit?limit=1000").await;
    let console: Vec<(String, String)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "console.post")
        .map(|e| {
            assert!(!e["actor"].as_str().unwrap().is_empty(), "{e}");
            (
                e["target"].as_str().unwrap().to_string(),
                serde_json::from_str::<serde_json::Value>(e["detail"].as_str().unwrap()).unwrap()
                    ["status"]
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        console,
        [
            ("sources".to_string(), "200".to_string()),
            ("tokens".into(), "200".into()),
            ("tokens".into(), "200".into()),
            (format!("tokens/{id}/revoke"), "303".into()),
        ],
        "{audit}"
    );
    // Identity rules: refused with the reason (the text kept) when they do not read or do not
    // hold together; saved otherwise.
    let enc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
    let r = post(
        &t,
        "/console/settings/identity-rules",
        &h,
        &format!("csrf={csrf}&rules={}", enc("{\"default_limit\": ")),
    )
    .await;
    assert_eq!(r.status, 422, "{}", text(&r));
    assert!(text(&r).contains("not valid JSON rules"), "{}", text(&r));
    assert!(
        text(&r).contains("{&#34;default_limit&#34;: </textarea>"),
        "{}",
        text(&r)
    );
    let mut rules = serde_json::to_value(
        t.store
            .workspace(&t.workspace)
            .unwrap()
            .unwrap()
            .identity_rules,
    )
    .unwrap();
    rules["blocked_patterns"] = json!(["(unclosed"]);
    let r = post(
        &t,
        "/console/settings/identity-rules",
        &h,
        &format!("csrf={csrf}&rules={}", enc(&rules.to_string())),
    )
    .await;
    assert_eq!(r.status, 422, "{}", text(&r));
    rules["blocked_patterns"] = json!([]);
    rules["blocked_values"] = json!(["guest@shop.example"]);
    let r = post(
        &t,
        "/console/settings/identity-rules",
        &h,
        &format!("csrf={csrf}&rules={}", enc(&rules.to_string())),
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(text(&r).contains("id=\"rules-saved\""), "{}", text(&r));
    assert_eq!(
        t.store
            .workspace(&t.workspace)
            .unwrap()
            .unwrap()
            .identity_rules
            .blocked_values,
        ["guest@shop.example"]
    );
    t.stop().await;
}

/// The journey editor: a mistake is pointed at (line and column) as the document is checked
/// and when it is saved, the text kept; a good document shows what saving it changes, then
/// becomes the next version; a read-only user cannot open the editor.
async fn a_journey_document_is_checked_and_saved(backend: Backend) {
    let t = start_on("console-journey", backend, |_| {}).await;
    let cookie = sign_in(&t, ADMIN).await;
    let r = get(&t, "/console/journeys/new?id=spring-sale", &cookie).await;
    assert_eq!(header(&r, "location"), "/console/journeys/spring-sale/edit");
    let page = text(&get(&t, "/console/journeys/spring-sale/edit", &cookie).await);
    assert!(page.contains("id: spring-sale"), "{page}");
    let csrf = field(&page, "csrf");
    let enc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
    let h = [("cookie", cookie.as_str())];
    let broken = "id: spring-sale\nstatus: live\nentry:\n  event: Signed Up\nsteps:\n  - id: wait\n    wait: 3 fortnights\n";
    let r = post(
        &t,
        "/console/journeys/spring-sale/check",
        &h,
        &format!("csrf={csrf}&document={}", enc(broken)),
    )
    .await;
    assert_eq!(r.status, 200);
    let found = text(&r);
    assert!(found.contains("Line 7, column"), "{found}");
    let r = post(
        &t,
        "/console/journeys/spring-sale/edit",
        &h,
        &format!("csrf={csrf}&document={}", enc(broken)),
    )
    .await;
    assert_eq!(r.status, 422, "{}", text(&r));
    assert!(text(&r).contains("Line 7, column"), "{}", text(&r));
    assert!(text(&r).contains("wait: 3 fortnights"), "the text is kept");
    assert!(t.store.journeys(Some(&t.workspace)).unwrap().is_empty());
    let good = broken
        .replace("3 fortnights", "42d")
        .replace("status: live", "status: draft");
    let r = post(
        &t,
        "/console/journeys/spring-sale/check",
        &h,
        &format!("csrf={csrf}&document={}", enc(&good)),
    )
    .await;
    assert!(text(&r).contains("It reads."), "{}", text(&r));
    assert!(text(&r).contains("class=\"add\""), "{}", text(&r));
    let r = post(
        &t,
        "/console/journeys/spring-sale/edit",
        &h,
        &format!("csrf={csrf}&document={}", enc(&good)),
    )
    .await;
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_eq!(header(&r, "location"), "/console/journeys/spring-sale");
    let saved = t
        .store
        .journey_versions(&t.workspace, "spring-sale")
        .unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].source, good);
    let page = text(&get(&t, "/console/journeys/spring-sale", &cookie).await);
    assert!(page.contains("data-step=\"wait\""), "{page}");
    // Simulated over a window: its figures; a window that does not read is refused.
    let r = get(
        &t,
        "/console/journeys/spring-sale/simulate?from=2026-01-01&to=2026-02-01",
        &cookie,
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(text(&r).contains("id=\"simulation\""), "{}", text(&r));
    let r = get(
        &t,
        "/console/journeys/spring-sale/simulate?from=soon&to=2026-02-01",
        &cookie,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(text(&r).contains("two dates"), "{}", text(&r));
    let r = get(
        &t,
        "/console/journeys/spring-sale/simulate?from=2026-02-01&to=2026-01-01",
        &cookie,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        text(&r).contains("must end after it starts"),
        "{}",
        text(&r)
    );
    // A live journey with a holdout: each group's conversion, and the treated against the
    // holdout, with the warning that so few customers cannot tell.
    let split = "id: split\nstatus: live\nholdout: 50%\nentry:\n  event: Signed Up\ngoal:\n  event: Order Completed\nsteps:\n  - id: wait\n    wait: 1d\n";
    let r = post(
        &t,
        "/console/journeys/split/edit",
        &h,
        &format!("csrf={csrf}&document={}", enc(split)),
    )
    .await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let mut batch = Vec::new();
    for i in 0..40 {
        batch.push(json!({"type": "track", "userId": format!("s{i}"), "event": "Signed Up"}));
    }
    t.send(json!({ "batch": batch })).await;
    t.unified().await;
    common::eventually(std::time::Duration::from_secs(20), "40 runs", || async {
        (t.store.journey_entries(&t.workspace, "split").unwrap() == 40).then_some(())
    })
    .await;
    let mut orders = Vec::new();
    for i in 0..10 {
        orders
            .push(json!({"type": "track", "userId": format!("s{i}"), "event": "Order Completed"}));
    }
    t.send(json!({ "batch": orders })).await;
    t.unified().await;
    common::eventually(
        std::time::Duration::from_secs(20),
        "10 conversions",
        || async {
            let stats = t.store.journey_stats(&t.workspace, "split").unwrap();
            (stats.groups.iter().map(|g| g.converted).sum::<u64>() == 10).then_some(())
        },
    )
    .await;
    let page = text(&get(&t, "/console/journeys/split", &cookie).await);
    let stats = t.store.journey_stats(&t.workspace, "split").unwrap();
    assert_eq!(stats.groups.len(), 2, "{stats:?}");
    assert!(page.contains("id=\"groups\""), "{page}");
    assert!(page.contains("Uplift against the holdout:"), "{page}");
    assert!(page.contains("Too few customers in a group"), "{page}");
    // Why did she get it (or not): her run with each decision and its reason.
    let s0 = t
        .store
        .lookup(
            &t.workspace,
            &parcours_core::Identifier::new("user_id", "s0".to_string()),
        )
        .unwrap()
        .unwrap();
    let why = text(
        &get(
            &t,
            &format!("/console/customers/{s0}/journeys?journey=split"),
            &cookie,
        )
        .await,
    );
    assert!(why.contains("<h2>split · "), "{why}");
    assert!(why.contains("<code>entered</code>"), "{why}");
    assert!(why.contains("<code>goal</code>"), "{why}");
    // A read-only user: no editor, and a save posted by hand is refused.
    let r = t
        .client
        .post(
            "/api/v1/tokens",
            ADMIN,
            json!({"name": "viewer", "role": "read_only"}).to_string(),
        )
        .await
        .unwrap();
    let viewer = sign_in(&t, r.json()["secret"].as_str().unwrap()).await;
    let page = text(&get(&t, "/console/journeys/spring-sale", &viewer).await);
    assert!(!page.contains("/edit\""), "{page}");
    assert_eq!(
        get(&t, "/console/journeys/spring-sale/edit", &viewer)
            .await
            .status,
        403
    );
    let viewer_csrf = field(&page, "csrf");
    let r = post(
        &t,
        "/console/journeys/spring-sale/edit",
        &[("cookie", viewer.as_str())],
        &format!(
            "csrf={viewer_csrf}&document={}",
            enc(&good.replace("42d", "49d"))
        ),
    )
    .await;
    assert_eq!(r.status, 403, "{}", text(&r));
    t.stop().await;
}

/// The dashboard counts each day: events per channel on the day they happened, profiles
/// made and merged; the API gives the same figures; a range written backwards or not as a
/// date is refused with its reason, on the page.
async fn the_dashboard_counts_each_day(backend: Backend) {
    use parcours_service::dashboard::date;
    use parcours_store::tallies::day_of;
    let t = start_on("console-dashboard", backend, |_| {}).await;
    let now = parcours_core::time::Clock::now(&parcours_engine::SystemClock);
    let today = day_of(now);
    // Bob's shop visit three days ago (at noon), then Ann across channels today.
    let noon = (today - 3) * 86_400_000 + 43_200_000;
    t.send(json!({"batch": [
        {"type": "track", "userId": "bob", "event": "Store Visit", "messageId": "visit-1",
         "timestamp": parcours_core::time::format_timestamp(noon), "context": {"channel": "store"}},
    ]}))
    .await;
    ann_across_channels(&t).await;
    let range = format!("from={}&to={}", date(today - 3), date(today));
    let (status, d) = t.get(&format!("/api/v1/dashboard?{range}")).await;
    assert_eq!(status, 200, "{d}");
    let series = |list: &serde_json::Value, key: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .map(|s| s["values"].clone())
            .unwrap_or_else(|| panic!("no {key} in {list}"))
    };
    assert_eq!(series(&d["events"], "store"), json!([1, 0, 0, 2]), "{d}");
    assert_eq!(series(&d["events"], "web"), json!([0, 0, 0, 2]), "{d}");
    assert_eq!(d["new_profiles"]["values"], json!([1, 0, 0, 2]), "{d}");
    assert_eq!(d["merges"]["values"], json!([0, 0, 0, 1]), "{d}");
    assert_eq!(d["days"][0], json!(date(today - 3)));

    let cookie = sign_in(&t, ADMIN).await;
    let page = text(&get(&t, &format!("/console/dashboard?{range}"), &cookie).await);
    assert_eq!(shown(&page, "total-events"), "5");
    assert_eq!(shown(&page, "total-profiles"), "3");
    assert_eq!(shown(&page, "total-merges"), "1");
    assert!(page.contains("id=\"table-events\""), "{page}");
    assert!(
        page.contains("data-chart=\""),
        "the charts' figures are on the page"
    );
    // The console opens on it.
    let r = get(&t, "/console", &cookie).await;
    assert_eq!(header(&r, "location"), "/console/dashboard");
    // Refused with the reason, on the page, with the last 30 days shown instead.
    let page = text(
        &get(
            &t,
            "/console/dashboard?from=2026-11-20&to=2026-11-10",
            &cookie,
        )
        .await,
    );
    assert!(page.contains("role=\"alert\""), "{page}");
    assert!(page.contains("after it ends"), "{page}");
    let page = text(
        &get(
            &t,
            "/console/dashboard?from=%3Cscript%3Ealert(1)%3C/script%3E",
            &cookie,
        )
        .await,
    );
    assert!(page.contains("is not a date"), "{page}");
    assert!(!page.contains("<script>alert"), "what was typed is escaped");
    let (status, body) = t
        .get("/api/v1/dashboard?from=2026-01-01&to=2027-06-01")
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_range"))
    );

    // Data quality: what arrived today per source and per channel (Bob's visit of three days
    // ago arrived today too).
    let page = text(&get(&t, "/console/quality", &cookie).await);
    assert!(
        page.contains("<th scope=\"row\">Store</th><td class=\"num\">3</td>"),
        "{page}"
    );
    assert!(
        page.contains("<th scope=\"row\">Web</th><td class=\"num\">2</td>"),
        "{page}"
    );
    let sources = &page
        [page.find("id=\"table-sources\"").unwrap()..page.find("id=\"table-channels\"").unwrap()];
    assert!(sources.contains("<td class=\"num\">5</td>"), "{sources}");
    // An audience computed today: its line on the list goes from nobody to its member.
    let (status, body) = common::call(
        &t,
        "POST",
        "/api/v1/audiences",
        json!({"id": "shoppers", "name": "Shoppers", "definition": "did \"Order Completed\""}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    common::eventually(
        std::time::Duration::from_secs(20),
        "the audience's trend",
        || async {
            let page = text(&get(&t, "/console/audiences", &cookie).await);
            page.contains("aria-label=\"Last 30 days: 0 → 1\"")
                .then_some(())
        },
    )
    .await;
    t.stop().await;
}

/// Settings show what each message channel sends through (no credential), and a test
/// message goes to a real SMTP server at once; a wrong address is refused with its reason, a
/// channel with no provider says so, and only an admin may send.
async fn a_test_message_checks_a_channel(backend: Backend) {
    let sink = common::smtp::Sink::start(common::temp_dir("console-smtp"), 0);
    let port = sink.port;
    // With credentials the server does not take: the page shows where without them, and the
    // test says what the server answered.
    let t = start_on("console-channels-auth", backend, |c| {
        c.channels.email.smtp_url = Some(format!("smtp://ops:s3cret@127.0.0.1:{port}"));
        c.channels.email.from = Some("Shop <news@shop.example>".into());
        c.channels.email.rate_per_second = 50;
    })
    .await;
    let admin = sign_in(&t, ADMIN).await;
    let page = text(&get(&t, "/console/settings", &admin).await);
    assert!(
        page.contains(&format!(
            "SMTP 127.0.0.1:{port}, from Shop &#60;news@shop.example&#62;"
        )),
        "{page}"
    );
    assert!(page.contains("50/s"), "{page}");
    assert!(!page.contains("s3cret"), "no credential on the page");
    let csrf = field(&page, "csrf");
    let r = post(
        &t,
        "/console/settings/channels/test",
        &[("cookie", admin.as_str())],
        &format!("csrf={csrf}&channel=email&address=ops%40shop.example"),
    )
    .await;
    assert_eq!(r.status, 422, "{}", text(&r));
    assert!(
        shown(&text(&r), "test-error").contains("authentication"),
        "{}",
        text(&r)
    );
    t.stop().await;

    let t = start_on("console-channels", backend, |c| {
        c.channels.email.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        c.channels.email.from = Some("Shop <news@shop.example>".into());
    })
    .await;
    let admin = sign_in(&t, ADMIN).await;
    let page = text(&get(&t, "/console/settings", &admin).await);
    assert!(
        page.contains("<code>capture</code>"),
        "SMS has no provider: {page}"
    );
    assert!(
        shown(&page, "webhook-steps").contains("cannot call out"),
        "no signing secret configured: {page}"
    );
    let csrf = field(&page, "csrf");
    let h = [("cookie", admin.as_str())];
    let send =
        |channel: &str, address: &str| format!("csrf={csrf}&channel={channel}&address={address}");
    let r = post(
        &t,
        "/console/settings/channels/test",
        &h,
        &send("email", "Ops%40Shop.example"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(
        shown(&text(&r), "test-result").contains("ops@shop.example (smtp)"),
        "{}",
        text(&r)
    );
    let message = common::eventually(
        std::time::Duration::from_secs(10),
        "the test message at the SMTP server",
        || async { sink.messages().into_iter().next() },
    )
    .await;
    assert_eq!(
        common::smtp::header(&message, "Subject").as_deref(),
        Some("Parcours: test message")
    );
    assert_eq!(
        common::smtp::header(&message, "To").as_deref(),
        Some("ops@shop.example")
    );
    // Not an address: refused with the reason, what was typed kept.
    let r = post(
        &t,
        "/console/settings/channels/test",
        &h,
        &send("email", "not-an-address"),
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(shown(&text(&r), "test-error").contains("is not an email address"));
    assert!(text(&r).contains("value=\"not-an-address\""));
    // SMS: no provider, so the capture channel keeps it and the page says nothing left.
    let r = post(
        &t,
        "/console/settings/channels/test",
        &h,
        &send("sms", "%2B33612345678"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(shown(&text(&r), "test-result").contains("nothing left Parcours"));
    // A marketer may not send from the brand's address.
    let (status, made) = common::call(
        &t,
        "POST",
        "/api/v1/tokens",
        json!({"name": "marketing", "role": "marketer"}),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let marketer = sign_in(&t, made["secret"].as_str().unwrap()).await;
    let page = text(&get(&t, "/console/settings", &marketer).await);
    assert!(
        !page.contains("/console/settings/channels/test"),
        "no test form for a marketer"
    );
    let csrf = field(&page, "csrf");
    let r = post(
        &t,
        "/console/settings/channels/test",
        &[("cookie", marketer.as_str())],
        &format!("csrf={csrf}&channel=email&address=ops%40shop.example"),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(sink.messages().len(), 1, "only the admin's test was sent");
    // The same through the API.
    let (status, channels) = t.get("/api/v1/channels").await;
    assert_eq!(status, 200, "{channels}");
    assert_eq!(channels["channels"][0]["sender"], "smtp", "{channels}");
    let (status, sent) = common::call(
        &t,
        "POST",
        "/api/v1/channels/test",
        json!({"channel": "email", "to": "Second@Shop.example"}),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["to"], "second@shop.example");
    let (status, err) = common::call(
        &t,
        "POST",
        "/api/v1/channels/test",
        json!({"channel": "fax", "to": "x"}),
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("invalid_channel"))
    );
    common::eventually(
        std::time::Duration::from_secs(10),
        "the API's test message",
        || async { (sink.messages().len() == 2).then_some(()) },
    )
    .await;
    t.stop().await;
}

/// The language she picks is remembered for her token: signing in from another browser (no
/// language cookie, an English `Accept-Language`) gives her French back.
async fn the_language_follows_the_user(backend: Backend) {
    let t = start_on("console-language", backend, |_| {}).await;
    let first = sign_in(&t, ADMIN).await;
    let r = get(&t, "/console/lang?to=fr&back=/console/dashboard", &first).await;
    assert_eq!(r.status, 303);
    assert!(header(&r, "set-cookie").starts_with("parcours_lang=fr"));
    // Another browser.
    let r = post(
        &t,
        "/console/sign-in",
        &[("accept-language", "en-GB,en;q=0.9")],
        &format!("token={ADMIN}&next=/console/dashboard"),
    )
    .await;
    assert_eq!(r.status, 303);
    let cookies: Vec<String> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap().to_string())
        .collect();
    assert!(
        cookies.contains(&"parcours_lang=fr".to_string()),
        "{cookies:?}"
    );
    let page = text(&get(&t, "/console/dashboard", &cookies.join("; ")).await);
    assert!(page.contains("<html lang=\"fr\""), "{page}");
    assert!(page.contains("Tableau de bord"));
    // Back to English, remembered the same way.
    get(&t, "/console/lang?to=en&back=/console/dashboard", &first).await;
    let second = post(
        &t,
        "/console/sign-in",
        &[],
        &format!("token={ADMIN}&next=/console/dashboard"),
    )
    .await;
    assert!(
        second
            .headers
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().unwrap_or("").starts_with("parcours_lang=en")),
        "{:?}",
        second.headers
    );
    t.stop().await;
}

/// An admin previews identity rules before saving them: the loyalty card as an identifier
/// would join a shop's anonymous sale to Léa's account. Nothing is saved; bad rules are
/// refused with their reason.
async fn identity_rules_are_previewed_before_they_are_saved(backend: Backend) {
    let t = start_on("console-rules-preview", backend, |_| {}).await;
    t.send(json!({"batch": [
        {"type": "identify", "userId": "lea", "messageId": "lea-1",
         "traits": {"email": "lea@example.com", "loyalty_card": "LC-9"}, "context": {"channel": "web"}},
        {"type": "identify", "anonymousId": "pos-receipt-77", "messageId": "pos-1",
         "traits": {"loyalty_card": "LC-9"}, "context": {"channel": "store"}},
    ]}))
    .await;
    t.unified().await;
    let enc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
    let admin = sign_in(&t, ADMIN).await;
    let page = text(&get(&t, "/console/settings", &admin).await);
    let csrf = field(&page, "csrf");
    let rules = r#"{"identifier_traits": ["loyalty_card"]}"#;
    let r = post(
        &t,
        "/console/settings/identity-rules/preview",
        &[("cookie", admin.as_str())],
        &format!("csrf={csrf}&rules={}", enc(rules)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let page = text(&r);
    assert_eq!(shown(&page, "preview-profiles-now"), "2");
    assert_eq!(shown(&page, "preview-profiles-with"), "1");
    assert!(page.contains("loyalty_card:LC-9"), "{page}");
    assert!(
        page.contains("identifier_traits"),
        "the typed rules stay in the editor"
    );
    let (status, ws) = t.get("/api/v1/workspace").await;
    assert_eq!(status, 200, "{ws}");
    assert!(ws["identity_rules"].is_object(), "{ws}");
    assert!(
        !ws.to_string().contains("loyalty_card"),
        "nothing was saved: {ws}"
    );
    let r = post(
        &t,
        "/console/settings/identity-rules/preview",
        &[("cookie", admin.as_str())],
        &format!(
            "csrf={csrf}&rules={}",
            enc(r#"{"blocked_patterns": ["("]}"#)
        ),
    )
    .await;
    assert_eq!(r.status, 422, "{}", text(&r));
    // The same through the API.
    let (status, preview) = common::call(
        &t,
        "POST",
        "/api/v1/workspace/identity-rules/preview",
        json!({"identifier_traits": ["loyalty_card"]}),
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(
        (
            preview["now"]["profiles"].as_u64(),
            preview["with"]["profiles"].as_u64()
        ),
        (Some(2), Some(1)),
        "{preview}"
    );
    assert_eq!(preview["changed"], 1, "{preview}");
    t.stop().await;
}

/// The cookies a response sets, as a browser would send them back (`name=value`).
fn set_cookies(r: &Response) -> Vec<(String, String)> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The instance admin creates a workspace from the console: its token is shown once and the
/// browser is signed in to both; the header switches between them; signing in to another
/// workspace keeps this one; one not signed in to cannot be switched to; signing out forgets
/// them all.
async fn workspaces_are_created_and_switched(backend: Backend) {
    let t = start_on("console-workspaces", backend, |_| {}).await;
    let first = sign_in(&t, ADMIN).await;
    let page = text(&get(&t, "/console/settings", &first).await);
    assert!(
        !page.contains("action=\"/console/workspace\""),
        "no switcher with one workspace"
    );
    let csrf = field(&page, "csrf");
    let r = post(
        &t,
        "/console/settings/workspaces",
        &[("cookie", first.as_str())],
        &format!("csrf={csrf}&name=Outlet+stores"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let secret = shown(&text(&r), "made-secret");
    assert!(secret.starts_with("pat_"), "{secret}");
    let joined = set_cookies(&r);
    assert_eq!(
        joined,
        vec![("parcours_workspaces".to_string(), secret.clone())]
    );
    let both = format!("{first}; parcours_workspaces={secret}");
    let page = text(&get(&t, "/console/dashboard", &both).await);
    assert!(page.contains("action=\"/console/workspace\""), "{page}");
    let outlet = {
        let at = page
            .find("Outlet stores (")
            .expect("the new workspace in the switcher");
        let rest = &page[at + "Outlet stores (".len()..];
        rest[..rest.find(')').unwrap()].to_string()
    };
    // Switch to it: its token becomes the session's, the first one waits in the switcher.
    let csrf = field(&page, "csrf");
    let r = post(
        &t,
        "/console/workspace",
        &[("cookie", both.as_str())],
        &format!("csrf={csrf}&to={outlet}"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let swapped = set_cookies(&r);
    assert!(swapped.contains(&("parcours_session".to_string(), secret.clone())));
    assert!(swapped.contains(&("parcours_workspaces".to_string(), ADMIN.to_string())));
    let now = format!("parcours_session={secret}; parcours_workspaces={ADMIN}");
    let page = text(&get(&t, "/console/settings", &now).await);
    assert!(page.contains(&format!("<code>{outlet}</code>")), "{page}");
    assert!(
        page.contains(&format!("({})", t.workspace)),
        "the first workspace to switch back to"
    );
    // Not one this browser holds: refused.
    let csrf = field(&page, "csrf");
    let r = post(
        &t,
        "/console/workspace",
        &[("cookie", now.as_str())],
        &format!("csrf={csrf}&to=ws_somebody_else"),
    )
    .await;
    assert_eq!(r.status, 404);
    // Another browser signed in to the outlet adds the first workspace by signing in to it.
    let outlet_only = format!("parcours_session={secret}");
    let r = post(
        &t,
        "/console/sign-in",
        &[("cookie", outlet_only.as_str())],
        &format!("token={ADMIN}&next=/console/dashboard&add=true"),
    )
    .await;
    assert_eq!(r.status, 303);
    let added = set_cookies(&r);
    assert!(added.contains(&("parcours_session".to_string(), ADMIN.to_string())));
    assert!(added.contains(&("parcours_workspaces".to_string(), secret.clone())));
    // Signing out forgets every workspace of this browser.
    let r = post(
        &t,
        "/console/sign-out",
        &[("cookie", now.as_str())],
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(r.status, 303);
    assert!(set_cookies(&r).contains(&("parcours_workspaces".to_string(), String::new())));
    t.stop().await;
}

/// An audience's members are downloaded as a file, and the destination that sends it is on
/// its page, with a delivery log that says why its receiver refuses.
async fn an_audience_is_exported_and_its_destination_followed(backend: Backend) {
    let t = start_on("console-destinations", backend, |c| {
        c.destinations.allow_private_addresses = true;
    })
    .await;
    ann_across_channels(&t).await;
    let (status, body) = common::call(
        &t,
        "POST",
        "/api/v1/audiences",
        json!({"id": "buyers", "name": "Buyers", "definition": "did \"Order Completed\""}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    common::eventually(
        std::time::Duration::from_secs(20),
        "buyers computed",
        || async {
            let (_, a) = t.get("/api/v1/audiences/buyers").await;
            (a["size"] == 1 && a["computation"]["status"] == "ready").then_some(())
        },
    )
    .await;
    // A receiver down for maintenance.
    #[allow(clippy::disallowed_methods)]
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async {
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "down for maintenance",
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (status, body) = common::call(
        &t,
        "POST",
        "/api/v1/destinations",
        json!({"id": "crm", "name": "CRM", "url": url, "purpose": "none", "audiences": ["buyers"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let cookie = sign_in(&t, ADMIN).await;
    // A draft's size before saving: every profile read here, so exact.
    let page = text(
        &get(
            &t,
            "/console/audiences/estimate?definition=did+%22Order+Completed%22",
            &cookie,
        )
        .await,
    );
    assert!(page.contains("It would hold, now: 1<"), "{page}");
    let page = text(
        &get(
            &t,
            "/console/audiences/estimate?definition=did+%22Order",
            &cookie,
        )
        .await,
    );
    assert!(page.contains("class=\"error\""), "{page}");
    let r = get(&t, "/console/audiences/buyers/export?format=csv", &cookie).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(header(&r, "content-type").starts_with("text/csv"));
    assert_eq!(
        header(&r, "content-disposition"),
        "attachment; filename=\"buyers-csv.csv\""
    );
    let csv = text(&r);
    assert!(
        csv.starts_with("profile_id,user_id,email,phone,since\n"),
        "{csv}"
    );
    assert!(csv.contains(",ann,ann@example.com,"), "{csv}");
    let r = get(&t, "/console/audiences/buyers/export?format=xml", &cookie).await;
    assert_eq!(r.status, 400);
    let page = text(&get(&t, "/console/audiences/buyers", &cookie).await);
    assert!(
        page.contains("href=\"/console/destinations/crm\""),
        "{page}"
    );
    assert!(page.contains("/console/audiences/buyers/export?format=ndjson"));
    common::eventually(
        std::time::Duration::from_secs(30),
        "the refusal in the delivery log",
        || async {
            let page = text(&get(&t, "/console/destinations/crm", &cookie).await);
            (page.contains("id=\"table-log\"") && page.contains("503")).then_some(())
        },
    )
    .await;
    let r = get(&t, "/console/destinations/nope", &cookie).await;
    assert_eq!(r.status, 404);
    t.stop().await;
}

/// Stock by location, an order and a member's ledger, as a store manager reads them.
async fn commerce_pages_show_stock_an_order_and_a_ledger(backend: Backend) {
    let t = start_on("console-commerce", backend, |_| {}).await;
    let api = |method: &'static str, path: &'static str, body: serde_json::Value| {
        let t = &t;
        async move {
            let (status, v) = common::call(t, method, path, body).await;
            assert!(status == 200 || status == 201, "{path}: {v}");
        }
    };
    api("PUT", "/api/v1/commerce/locations/lyon-bellecour", json!({"name": "Lyon Bellecour", "kind": "shop", "time_zone": "Europe/Paris", "channels": ["web", "pos"], "pickup": "local_stock"})).await;
    api("PUT", "/api/v1/commerce/locations/depot", json!({"name": "Dépôt Vénissieux", "kind": "warehouse", "time_zone": "Europe/Paris", "channels": ["web"]})).await;
    api(
        "PUT",
        "/api/v1/commerce/items/SHOE-42",
        json!({"name": "Trail shoe", "prices": [{"currency": "EUR", "amount_minor": 8990}]}),
    )
    .await;
    api("POST", "/api/v1/commerce/stock/movements", json!({"movements": [
        {"sku": "SHOE-42", "location": "lyon-bellecour", "delta": 5, "reason": "received"},
        {"sku": "SHOE-42", "location": "lyon-bellecour", "state": "damaged", "delta": 1, "reason": "damaged"},
        {"sku": "SHOE-42", "location": "depot", "delta": 40, "reason": "received"}]})).await;
    api(
        "PUT",
        "/api/v1/commerce/loyalty/program",
        json!({"pending_days": 0}),
    )
    .await;
    api("POST", "/api/v1/commerce/orders", json!({"order_id": "W 7#1", "customer": {"user_id": "u-ann", "loyalty_card": "CARD ANN"},
        "lines": [{"sku": "SHOE-42", "quantity": 2}], "fulfilment": {"kind": "pickup", "location": "lyon-bellecour"}})).await;
    let cookie = sign_in(&t, ADMIN).await;

    let r = get(&t, "/console/commerce", &cookie).await;
    assert_eq!(r.status, 200);
    let page = text(&r);
    // The first location by id is the depot; Bellecour is a tab away.
    assert!(
        page.contains("Dépôt Vénissieux") && page.contains("Lyon Bellecour"),
        "{page}"
    );
    let r = get(&t, "/console/commerce?location=lyon-bellecour", &cookie).await;
    let page = text(&r);
    let row = page
        .split("<code>SHOE-42</code>")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap()
        .to_string();
    let cells: Vec<&str> = row
        .split("<td class=\"num\">")
        .skip(1)
        .map(|c| c.split('<').next().unwrap().trim())
        .collect();
    // on hand 5, reserved 2, safety 0, damaged 1, QC 0, available 2
    assert_eq!(cells, ["5", "2", "0", "1", "0", "2"], "{row}");

    // An order found by its number, however odd the number.
    let r = get(&t, "/console/commerce?order=W+7%231", &cookie).await;
    assert_eq!(r.status, 303);
    let path = header(&r, "location").to_string();
    assert_eq!(path, "/console/commerce/orders/W%207%231");
    let r = get(&t, &path, &cookie).await;
    assert_eq!(r.status, 200);
    let page = text(&r);
    assert!(
        page.contains("<code>placed</code>") && page.contains("179.80 EUR"),
        "{page}"
    );
    api(
        "PUT",
        "/api/v1/commerce/offers/ann5",
        json!({"name": "Five <off>", "currency": "EUR",
        "coupon": {"codes": ["ANN5"], "limit_per_customer": 1},
        "reward": {"kind": "amount_off", "amount_minor": 500}}),
    )
    .await;
    api(
        "PUT",
        "/api/v1/commerce/offers/later",
        json!({"name": "Later", "starts_at": "2999-01-01T00:00:00Z",
        "reward": {"kind": "free_item", "sku": "SHOE-42", "quantity": 1}}),
    )
    .await;
    api("POST", "/api/v1/commerce/orders", json!({"order_id": "W-7", "customer": {"user_id": "u-ann", "loyalty_card": "CARD ANN"},
        "coupons": ["ann5"],
        "lines": [{"sku": "SHOE-42", "quantity": 1}], "fulfilment": {"kind": "pickup", "location": "lyon-bellecour"}})).await;
    api(
        "POST",
        "/api/v1/commerce/orders/W-7/status",
        json!({"status": "ready_for_pickup"}),
    )
    .await;
    api(
        "POST",
        "/api/v1/commerce/orders/W-7/status",
        json!({"status": "collected"}),
    )
    .await;
    let r = get(&t, "/console/commerce?order=W-7", &cookie).await;
    let r = get(&t, header(&r, "location"), &cookie).await;
    assert_eq!(r.status, 200);
    let page = text(&r);
    for needle in [
        "<code>collected</code>",
        "Click &#38; collect · Lyon Bellecour",
        "89.90 EUR",
        "id=\"order-discount\">−5.00 EUR<",
        "id=\"order-total\">84.90 EUR<",
        "Five &#60;off&#62; <code>ann5</code>",
        "<code>ANN5</code>",
        "CARD ANN",
        "/console/commerce/loyalty/CARD%20ANN",
    ] {
        assert!(page.contains(needle), "{needle}: {page}");
    }
    // The offers, with their state and how many orders used them.
    let page = text(&get(&t, "/console/commerce", &cookie).await);
    let offers = page
        .split("id=\"table-offers\"")
        .nth(1)
        .expect("an offers table");
    for needle in [
        "5.00 EUR off",
        "coupon ANN5 (1 per customer)",
        ">scheduled<",
        "1 × SHOE-42 free",
    ] {
        assert!(offers.contains(needle), "{needle}: {offers}");
    }
    let ann = offers
        .split("<code>ann5</code>")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(ann.ends_with(">1</td>"), "one order used it: {ann}");

    // The member's ledger, in French too.
    let r = get(&t, "/console/commerce/loyalty/CARD%20ANN", &cookie).await;
    assert_eq!(r.status, 200);
    let page = text(&r);
    // Points on what she paid.
    assert!(page.contains("id=\"pts_active\">84<"), "{page}");
    assert!(page.contains("/console/commerce/orders/W-7"), "{page}");
    let r = get(
        &t,
        "/console/commerce/loyalty/CARD%20ANN",
        &format!("{cookie}; parcours_lang=fr"),
    )
    .await;
    let page = text(&r);
    assert!(
        page.contains("Points actifs") && page.contains("Adhérent fidélité"),
        "{page}"
    );
    assert!(!page.contains("??missing??"), "{page}");
    let r = get(&t, "/console/commerce/loyalty/NOBODY", &cookie).await;
    assert_eq!(r.status, 404);
    t.stop().await;
}

on_each_store!(
    commerce_pages_show_stock_an_order_and_a_ledger,
    a_customer_is_found_seen_across_channels_unmerged_and_read_in_french,
    a_read_only_session_sees_no_edit_control_and_cannot_act,
    hostile_input_gets_plain_answers,
    a_quarantined_event_is_fixed_and_replayed,
    sources_and_tokens_are_made_and_revoked,
    a_journey_document_is_checked_and_saved,
    the_dashboard_counts_each_day,
    a_test_message_checks_a_channel,
    the_language_follows_the_user,
    identity_rules_are_previewed_before_they_are_saved,
    workspaces_are_created_and_switched,
    an_audience_is_exported_and_its_destination_followed,
);
