//! Where Parcours may send requests on a user's behalf (destinations today; webhooks and
//! channels next): public addresses only, unless the configuration allows the others.
//!
//! A destination URL is chosen by a marketer. Without this rule it could make a node call
//! what only the node can reach: its own admin API on loopback, a database on the private
//! network, or the cloud metadata service on a link-local address. A literal address is
//! checked when the URL is saved and again before sending; a name is checked once resolved,
//! at each connection, so a name that later points inward is refused too.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// An HTTP(S) client that connects to allowed addresses only.
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector<PublicOnly>>, Full<Bytes>>;

/// Whether an address is on the public internet: not loopback, private, shared (carrier
/// NAT), link-local, unspecified, multicast, broadcast, reserved or documentation.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if s[0] == 0x2002 {
        // 6to4: the IPv4 address it carries decides.
        let [a, b] = s[1].to_be_bytes();
        let [c, d] = s[2].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x2001 && s[1] == 0x0000)
        || (s[0] == 0x0064 && s[1] == 0xff9b)
        || s[..6] == [0; 6])
}

/// Checks a receiver URL: `http://` or `https://` with a host, and, unless allowed, a host
/// that is not a literal non-public address (names are checked when resolved).
pub fn check_url(url: &str, allow_private: bool) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|e| format!("`url`: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("`url` must be an absolute http:// or https:// address".into());
    }
    let Some(host) = uri.host() else {
        return Err("`url` must be an absolute http:// or https:// address".into());
    };
    if !allow_private {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let named_local = host.eq_ignore_ascii_case("localhost")
            || host.to_ascii_lowercase().ends_with(".localhost");
        if named_local || literal.parse::<IpAddr>().is_ok_and(|ip| !is_public(ip)) {
            return Err(format!(
                "`url` points at `{host}`, which is not a public address; a node sends only to public addresses unless `destinations.allow_private_addresses` is set"
            ));
        }
    }
    Ok(uri)
}

/// A resolver that keeps the public addresses of a name (all of them when allowed).
#[derive(Clone)]
pub struct PublicOnly {
    inner: GaiResolver,
    allow_private: bool,
}

type Addrs = std::vec::IntoIter<SocketAddr>;

impl tower_service::Service<Name> for PublicOnly {
    type Response = Addrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addrs, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow = self.allow_private;
        let host = name.as_str().to_string();
        let resolving = self.inner.call(name);
        Box::pin(async move {
            let all: Vec<SocketAddr> = resolving.await?.collect();
            let kept: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| allow || is_public(a.ip()))
                .collect();
            if kept.is_empty() && !all.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "`{host}` resolves only to non-public addresses; a node sends only to public addresses unless `destinations.allow_private_addresses` is set"
                    ),
                ));
            }
            Ok(kept.into_iter())
        })
    }
}

/// A client over TLS (public web roots) or plain HTTP that connects to allowed addresses only.
pub fn client(allow_private: bool) -> HttpClient {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the ring provider supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new_with_resolver(PublicOnly {
        inner: GaiResolver::new(),
        allow_private,
    });
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
}

/// An address as operators may see it: its host and port, without the credentials or the
/// path (which may hold an account id or a token).
pub fn shown_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_is_shown_without_its_credentials_or_path() {
        assert_eq!(
            shown_host("smtp://user:secret@mail.shop.example:587?tls=required"),
            "mail.shop.example:587"
        );
        assert_eq!(
            shown_host("https://AC123:tok@api.twilio.com/2010-04-01/Accounts/AC123/Messages.json"),
            "api.twilio.com"
        );
        assert_eq!(shown_host("smtp://127.0.0.1:2525"), "127.0.0.1:2525");
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
            "64:ff9b::a00:1",
            "64:ff9b:1::a00:1",
            "fec0::1",
            "2002:7f00:1::1",
            "2002:a00:1::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "93.184.216.34",
            "2606:4700::1111",
            "2002:808:808::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn urls_to_literal_private_addresses_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/",
            "http://[::1]/hook",
            "https://169.254.169.254/latest/meta-data",
            "http://localhost:8750/api/v1/tokens",
            "http://api.localhost/",
            "http://10.0.0.5/",
        ] {
            let e = check_url(url, false).unwrap_err();
            assert!(e.contains("not a public address"), "{url}: {e}");
            assert!(check_url(url, true).is_ok(), "{url}");
        }
        assert!(check_url("https://hooks.example.com/parcours", false).is_ok());
        assert!(check_url("ftp://example.com/", true).is_err());
        assert!(check_url("/relative", true).is_err());
    }

    #[tokio::test]
    async fn names_that_resolve_inward_are_refused_at_connection() {
        let client = client(false);
        let req = hyper::Request::post("http://localhost:9/")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let e = client.request(req).await.unwrap_err();
        let chain = format!("{e:?}");
        assert!(chain.contains("non-public"), "{chain}");
    }
}
