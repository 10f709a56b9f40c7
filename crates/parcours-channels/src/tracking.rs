//! Open and click tracking for journey email: an open pixel and click redirects served by
//! Parcours. Every link is signed with a secret of its own message (HMAC-SHA256), and a click
//! redirects only to the address the message itself held, so a tracking link can neither be
//! forged nor turned into an open redirect.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Hex digits of a link's signature (128 bits).
const SIG_HEX: usize = 32;

/// Where a tracked message's links point.
#[derive(Debug, Clone, Copy)]
pub struct Links<'a> {
    /// The node's public address (`https://parcours.shop.example`).
    pub base: &'a str,
    pub workspace: &'a str,
    pub key: &'a str,
    /// The message's secret.
    pub secret: &'a str,
}

impl Links<'_> {
    fn prefix(&self) -> String {
        format!(
            "{}/v1/m/{}/{}",
            self.base.trim_end_matches('/'),
            self.workspace,
            self.key
        )
    }

    /// The open pixel's address.
    pub fn open(&self) -> String {
        format!(
            "{}/open/{}",
            self.prefix(),
            sign(self.secret, &opened(self.workspace, self.key))
        )
    }

    /// Where the provider reports what became of an SMS or a push (its status callback).
    pub fn status(&self) -> String {
        format!(
            "{}/status/{}",
            self.prefix(),
            sign(self.secret, &status(self.workspace, self.key))
        )
    }

    /// The redirect of the message's `index`th link, to `url`.
    pub fn click(&self, index: usize, url: &str) -> String {
        format!(
            "{}/click/{index}/{}",
            self.prefix(),
            sign(self.secret, &clicked(self.workspace, self.key, index, url))
        )
    }
}

fn opened(ws: &str, key: &str) -> String {
    format!("open\n{ws}\n{key}")
}

fn status(ws: &str, key: &str) -> String {
    format!("status\n{ws}\n{key}")
}

fn clicked(ws: &str, key: &str, index: usize, url: &str) -> String {
    format!("click\n{ws}\n{key}\n{index}\n{url}")
}

fn mac(secret: &str, what: &str) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    m.update(what.as_bytes());
    m
}

fn sign(secret: &str, what: &str) -> String {
    let bytes = mac(secret, what).finalize().into_bytes();
    let mut out = String::with_capacity(SIG_HEX);
    for b in &bytes[..SIG_HEX / 2] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn verify(secret: &str, what: &str, sig: &str) -> bool {
    if sig.len() != SIG_HEX || !sig.is_ascii() {
        return false;
    }
    let mut bytes = [0u8; SIG_HEX / 2];
    for (i, b) in bytes.iter_mut().enumerate() {
        match u8::from_str_radix(&sig[2 * i..2 * i + 2], 16) {
            Ok(v) => *b = v,
            Err(_) => return false,
        }
    }
    // Constant time: the comparison does not say how many digits were right.
    mac(secret, what).verify_truncated_left(&bytes).is_ok()
}

/// Whether `sig` is the open pixel's signature for this message.
pub fn verify_open(secret: &str, ws: &str, key: &str, sig: &str) -> bool {
    verify(secret, &opened(ws, key), sig)
}

/// Whether `sig` is the status callback's signature for this message.
pub fn verify_status(secret: &str, ws: &str, key: &str, sig: &str) -> bool {
    verify(secret, &status(ws, key), sig)
}

/// Whether `sig` is the signature of the message's `index`th link, to `url`.
pub fn verify_click(secret: &str, ws: &str, key: &str, index: usize, url: &str, sig: &str) -> bool {
    verify(secret, &clicked(ws, key, index, url), sig)
}

/// Rewrites the `http(s)` links of an email's HTML (`<a href="…">`) to signed redirects and
/// adds the open pixel: the HTML to send, and the links' addresses in order (what each
/// redirect leads to). Other links (`mailto:`, anchors, stylesheets) are left as they are.
pub fn instrument(html: &str, links: &Links<'_>) -> (String, Vec<String>) {
    static ANCHOR: std::sync::OnceLock<regex_lite::Regex> = std::sync::OnceLock::new();
    static HREF: std::sync::OnceLock<regex_lite::Regex> = std::sync::OnceLock::new();
    let anchor = ANCHOR.get_or_init(|| regex_lite::Regex::new(r"(?i)<a\s[^>]*>").expect("valid"));
    let href = HREF.get_or_init(|| {
        regex_lite::Regex::new(r#"(?i)(\shref\s*=\s*)("(https?://[^"]*)"|'(https?://[^']*)')"#)
            .expect("valid")
    });
    let mut urls: Vec<String> = Vec::new();
    let mut out = String::with_capacity(html.len() + 256);
    let mut last = 0;
    for a in anchor.find_iter(html) {
        let tag = a.as_str();
        let Some(c) = href.captures(tag) else {
            continue;
        };
        let raw = c
            .get(3)
            .or_else(|| c.get(4))
            .expect("one of the two")
            .as_str();
        let url = unescape(raw);
        let whole = c.get(2).expect("the value");
        let tracked = links.click(urls.len(), &url);
        urls.push(url);
        out.push_str(&html[last..a.start() + whole.start()]);
        out.push('"');
        out.push_str(&tracked);
        out.push('"');
        last = a.start() + whole.end();
    }
    out.push_str(&html[last..]);
    let pixel = format!(
        "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0\">",
        links.open()
    );
    match out.to_ascii_lowercase().rfind("</body>") {
        Some(at) => out.insert_str(at, &pixel),
        None => out.push_str(&pixel),
    }
    (out, urls)
}

/// The address a browser follows for an attribute's text (its character references read).
fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Links<'static> = Links {
        base: "https://p.example/",
        workspace: "w1",
        key: "r1:reminder:2",
        secret: "0123456789abcdef0123456789abcdef",
    };

    #[test]
    fn links_are_rewritten_and_the_pixel_added() {
        let html = "<html><body><p><a class=x href=\"https://shop.example/cart?id=1&amp;utm=a\">Cart</a> \
                    <a href='http://shop.example/b'>B</a> <a href=\"mailto:help@shop.example\">help</a> \
                    <a name=top>t</a></p></BODY></html>";
        let (out, urls) = instrument(html, &L);
        assert_eq!(
            urls,
            [
                "https://shop.example/cart?id=1&utm=a",
                "http://shop.example/b"
            ]
        );
        assert!(!out.contains("shop.example/cart"), "{out}");
        assert!(
            out.contains("<a class=x href=\"https://p.example/v1/m/w1/r1:reminder:2/click/0/"),
            "{out}"
        );
        assert!(out.contains("href=\"mailto:help@shop.example\""), "{out}");
        assert!(out.contains("<a name=top>"), "{out}");
        let pixel = out.find("/open/").unwrap();
        assert!(pixel < out.find("</BODY>").unwrap(), "{out}");
        // Each link's signature checks, for its own address only.
        let sig = |i: usize| {
            let at = out.find(&format!("/click/{i}/")).unwrap() + format!("/click/{i}/").len();
            out[at..at + SIG_HEX].to_string()
        };
        assert!(verify_click(L.secret, "w1", L.key, 0, &urls[0], &sig(0)));
        assert!(verify_click(L.secret, "w1", L.key, 1, &urls[1], &sig(1)));
        assert!(!verify_click(L.secret, "w1", L.key, 1, &urls[0], &sig(1)));
        assert!(!verify_click(L.secret, "w1", L.key, 0, &urls[0], &sig(1)));
        assert!(!verify_click(
            "another secret",
            "w1",
            L.key,
            0,
            &urls[0],
            &sig(0)
        ));
        assert!(!verify_click(L.secret, "w2", L.key, 0, &urls[0], &sig(0)));
    }

    #[test]
    fn the_pixel_goes_at_the_end_of_a_fragment_and_verifies() {
        let (out, urls) = instrument("<p>Hello</p>", &L);
        assert!(urls.is_empty());
        assert!(out.starts_with("<p>Hello</p><img src=\"https://p.example/v1/m/w1/"));
        let sig = &out[out.find("/open/").unwrap() + 6..][..SIG_HEX];
        assert!(verify_open(L.secret, "w1", L.key, sig));
        assert!(!verify_open(L.secret, "w1", "r1:reminder:3", sig));
        // Each kind of link has its own signature: the pixel's is not the status callback's.
        let status = L.status();
        let status_sig = &status[status.rfind('/').unwrap() + 1..];
        assert!(verify_status(L.secret, "w1", L.key, status_sig));
        assert!(!verify_status(L.secret, "w1", L.key, sig));
        assert!(!verify_open(L.secret, "w1", L.key, status_sig));
        for bad in [
            "",
            "zz",
            &"g".repeat(SIG_HEX),
            &"é".repeat(16),
            &sig[..SIG_HEX - 2],
        ] {
            assert!(!verify_open(L.secret, "w1", L.key, bad), "{bad}");
        }
    }
}
