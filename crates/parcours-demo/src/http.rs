//! A small keep-alive HTTP/1.1 client for the demo, the benchmarks and the tests.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
    base: String,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;

impl Client {
    /// `base` like `http://127.0.0.1:8750`.
    pub fn new(base: impl Into<String>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let inner = HyperClient::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(connector);
        Self {
            inner,
            base: base.into(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Response, Error> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(body.into()))?;
        let resp = self.inner.request(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// A tracking call with the write key as HTTP Basic `key:`.
    pub async fn track(
        &self,
        path: &str,
        write_key: &str,
        body: impl Into<Bytes>,
    ) -> Result<Response, Error> {
        let auth = format!("Basic {}", basic(write_key));
        self.request(Method::POST, path, &[("authorization", &auth)], body)
            .await
    }

    pub async fn get(&self, path: &str, token: &str) -> Result<Response, Error> {
        let auth = format!("Bearer {token}");
        self.request(Method::GET, path, &[("authorization", &auth)], Bytes::new())
            .await
    }

    pub async fn post(
        &self,
        path: &str,
        token: &str,
        body: impl Into<Bytes>,
    ) -> Result<Response, Error> {
        self.authorized(Method::POST, path, token, body).await
    }

    pub async fn put(
        &self,
        path: &str,
        token: &str,
        body: impl Into<Bytes>,
    ) -> Result<Response, Error> {
        self.authorized(Method::PUT, path, token, body).await
    }

    async fn authorized(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: impl Into<Bytes>,
    ) -> Result<Response, Error> {
        let auth = format!("Bearer {token}");
        self.request(method, path, &[("authorization", &auth)], body)
            .await
    }
}

/// `base64("key:")`.
pub fn basic(write_key: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{write_key}:");
    let mut out = String::new();
    for chunk in input.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn basic_auth_is_standard_base64() {
        assert_eq!(super::basic("abc"), "YWJjOg==");
        assert_eq!(super::basic("wk_1"), "d2tfMTo=");
    }
}
