//! Calls to the API, with errors turned into [`ClientError`]s that say what to do.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::conn::Conn;
use super::ClientError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A client for one server.
pub struct Api {
    http: reqwest::Client,
    conn: Conn,
}

impl Api {
    /// A client trusting `conn.ca` (or the public web roots when there is none).
    pub fn new(conn: Conn) -> Result<Self, ClientError> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("postern-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &conn.ca {
            let pem = std::fs::read(ca).map_err(|e| {
                ClientError::Unreachable(format!(
                    "cannot read the CA certificate {}: {e}; pass --ca with Postern's CA file (ca.crt in the server's data directory)",
                    ca.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    ClientError::Unreachable(format!(
                        "{} holds no PEM certificate; pass --ca with Postern's CA file (ca.crt in the server's data directory)",
                        ca.display()
                    ))
                })?;
            b = b.tls_built_in_root_certs(false);
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b
            .build()
            .map_err(|e| ClientError::Unreachable(format!("cannot set up TLS: {}", chain(&e))))?;
        Ok(Self { http, conn })
    }

    /// The resolved connection settings.
    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    /// A call that needs a token. Returns the JSON answer (`Null` for an empty one).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let resp = self.authed(method, path, query, body).await?;
        self.answer(resp).await
    }

    /// A GET that answers `None` when the server says 404.
    pub async fn get_optional(&self, path: &str) -> Result<Option<Value>, ClientError> {
        let resp = self.authed(Method::GET, path, &[], None).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.answer(resp).await.map(Some)
    }

    async fn authed(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<reqwest::Response, ClientError> {
        let Some(token) = self.conn.token.as_deref() else {
            return Err(self.conn.not_logged_in());
        };
        let resp = self.send(method, path, query, body, Some(token)).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let msg = error_text(resp).await;
            return Err(ClientError::NotLoggedIn(format!(
                "{msg}\n(run `postern admin login --server {}` to get a new token)",
                self.conn.server
            )));
        }
        Ok(resp)
    }

    /// A call without a token (sign-in).
    pub async fn call_anonymous(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let resp = self.send(Method::POST, path, &[], Some(body), None).await?;
        self.answer(resp).await
    }

    /// A GET without a token.
    pub async fn call_anonymous_get(&self, path: &str) -> Result<Value, ClientError> {
        let resp = self.send(Method::GET, path, &[], None, None).await?;
        self.answer(resp).await
    }

    /// Shorthand for a typed GET.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let v = self.call(Method::GET, path, query, None).await?;
        serde_json::from_value(v).map_err(|e| {
            ClientError::Failed(format!(
                "unexpected answer from {} for {path}: {e} (is the server the same version as this CLI?)",
                self.conn.server
            ))
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{path}", self.conn.server);
        let mut req = self.http.request(method, &url);
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.map_err(|e| self.transport_error(&e))
    }

    async fn answer(&self, resp: reqwest::Response) -> Result<Value, ClientError> {
        let status = resp.status();
        if !status.is_success() {
            let msg = error_text(resp).await;
            return Err(ClientError::Failed(format!("{msg} (HTTP {status})")));
        }
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(&e))?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Failed(format!(
                "{} answered something that is not JSON ({e}); is --server pointing at Postern's API port?",
                self.conn.server
            ))
        })
    }

    fn transport_error(&self, e: &reqwest::Error) -> ClientError {
        let detail = chain(e);
        let server = &self.conn.server;
        let lower = detail.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("unknownissuer") {
            let hint = match &self.conn.ca {
                Some(ca) => format!(
                    "the server's certificate is not signed by {}; pass --ca with the CA file of this Postern server (ca.crt in its data directory)",
                    ca.display()
                ),
                None => "pass --ca with Postern's CA file (ca.crt in the server's data directory)"
                    .to_string(),
            };
            return ClientError::Unreachable(format!("TLS with {server} failed: {detail}\n{hint}"));
        }
        if e.is_timeout() {
            return ClientError::Unreachable(format!(
                "{server} did not answer in time ({detail}); check --server and that Postern is running"
            ));
        }
        ClientError::Unreachable(format!(
            "cannot reach Postern at {server}: {detail}\ncheck --server (or POSTERN_SERVER) and that the server is running"
        ))
    }
}

/// The `error` field of an error answer, or the status when there is none.
async fn error_text(resp: reqwest::Response) -> String {
    let status = resp.status();
    match resp.json::<Value>().await {
        Ok(v) => match v.get("error").and_then(Value::as_str) {
            Some(m) => m.to_string(),
            None => format!("the server answered {status}"),
        },
        Err(_) => format!("the server answered {status}"),
    }
}

/// An error and its sources, joined by ": ".
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
