//! Single sign-on from the command line: an ID token from the identity provider that
//! Postern names (`GET /api/v1/auth/oidc`), by the browser (authorization code with PKCE,
//! redirected to a one-shot listener on 127.0.0.1) or, on hosts without one, the device
//! flow (a code typed on another device). Postern then checks the token itself.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::api::Api;
use super::ClientError;

/// How long the browser flow waits for the redirect.
const BROWSER_WAIT: Duration = Duration::from_secs(300);
/// Longest request line + headers read from the browser.
const MAX_REQUEST: usize = 16 * 1024;

#[derive(Deserialize)]
struct SsoStart {
    issuer: String,
    client_id: String,
    scopes: Vec<String>,
    nonce: String,
}

#[derive(Deserialize)]
struct Discovery {
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    device_authorization_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct DeviceAnswer {
    device_code: String,
    user_code: String,
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
}

fn random(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

fn failed(what: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Failed(format!("single sign-on: {what}: {e}"))
}

/// Signs in at the identity provider and returns the ID token for Postern.
pub(crate) async fn id_token(api: &Api, device: bool) -> Result<String, ClientError> {
    let start: SsoStart =
        serde_json::from_value(api.call_anonymous_get("/api/v1/auth/oidc").await?)
            .map_err(|e| failed("unexpected answer from Postern", e))?;
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| failed("cannot set up HTTPS", e))?;
    let issuer = start.issuer.trim_end_matches('/');
    let disc: Discovery = http
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| {
            ClientError::Unreachable(format!("cannot reach the identity provider {issuer}: {e}"))
        })?
        .json()
        .await
        .map_err(|e| failed("the provider's discovery document is unreadable", e))?;
    if device {
        device_flow(&http, &start, &disc).await
    } else {
        browser_flow(&http, &start, &disc).await
    }
}

async fn browser_flow(
    http: &reqwest::Client,
    start: &SsoStart,
    disc: &Discovery,
) -> Result<String, ClientError> {
    let verifier = random(32);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let state = random(16);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| failed("cannot listen on 127.0.0.1 for the browser's redirect", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| failed("no local address", e))?
        .port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let url = reqwest::Url::parse_with_params(
        &disc.authorization_endpoint,
        &[
            ("response_type", "code"),
            ("client_id", start.client_id.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("scope", start.scopes.join(" ").as_str()),
            ("state", state.as_str()),
            ("nonce", start.nonce.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .map_err(|e| failed("bad authorization endpoint", e))?;
    eprintln!(
        "Sign in at {} in your browser; if none opens, visit:",
        start.issuer
    );
    eprintln!("  {url}");
    open_browser(url.as_str());

    let code = tokio::time::timeout(BROWSER_WAIT, wait_for_code(&listener, &state))
        .await
        .map_err(|_| {
            ClientError::Failed(format!(
                "single sign-on: no answer from the browser within {} s (on a host without a browser, use --device)",
                BROWSER_WAIT.as_secs()
            ))
        })??;
    let answer: TokenAnswer = http
        .post(&disc.token_endpoint)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("client_id", start.client_id.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .map_err(|e| failed("the token request failed", e))?
        .json()
        .await
        .map_err(|e| failed("the token answer is unreadable", e))?;
    token_of(answer)
}

fn token_of(answer: TokenAnswer) -> Result<String, ClientError> {
    match (answer.id_token, answer.error) {
        (Some(t), _) => Ok(t),
        (None, Some(e)) => Err(ClientError::Failed(format!(
            "single sign-on refused by the provider: {e}{}",
            answer
                .error_description
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ))),
        (None, None) => Err(ClientError::Failed(
            "single sign-on: the provider issued no ID token (is \"openid\" among the scopes?)"
                .into(),
        )),
    }
}

/// Opens `url` with $BROWSER, else the desktop's opener; silently does nothing when there
/// is none (the address is printed).
fn open_browser(url: &str) {
    let candidates: Vec<String> = match std::env::var("BROWSER") {
        Ok(b) if !b.trim().is_empty() => vec![b],
        _ => vec!["xdg-open".into(), "open".into()],
    };
    for program in candidates {
        let spawned = std::process::Command::new(&program)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if let Ok(mut child) = spawned {
            // Reap it in the background; its outcome does not matter.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
            return;
        }
    }
}

/// Serves the one redirect: `GET /callback?code=…&state=…`.
async fn wait_for_code(
    listener: &tokio::net::TcpListener,
    state: &str,
) -> Result<String, ClientError> {
    loop {
        let (mut sock, _) = listener
            .accept()
            .await
            .map_err(|e| failed("the redirect listener failed", e))?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        let head = loop {
            let n = match tokio::time::timeout(Duration::from_secs(10), sock.read(&mut chunk)).await
            {
                Ok(Ok(n)) => n,
                _ => break None,
            };
            if n == 0 {
                break None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break Some(String::from_utf8_lossy(&buf).into_owned());
            }
            if buf.len() > MAX_REQUEST {
                break None;
            }
        };
        let Some(head) = head else { continue };
        let target = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("/");
        let Ok(url) = reqwest::Url::parse(&format!("http://127.0.0.1{target}")) else {
            continue;
        };
        if url.path() != "/callback" {
            let _ = respond(&mut sock, "404 Not Found", "Not here.").await;
            continue;
        }
        let param = |k: &str| {
            url.query_pairs()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.into_owned())
        };
        if param("state").as_deref() != Some(state) {
            let _ = respond(
                &mut sock,
                "400 Bad Request",
                "This sign-in is not the one Postern started.",
            )
            .await;
            continue;
        }
        if let Some(e) = param("error") {
            let _ = respond(&mut sock, "200 OK", "Sign-in refused; see your terminal.").await;
            return Err(ClientError::Failed(format!(
                "single sign-on refused by the provider: {e}{}",
                param("error_description")
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            )));
        }
        let Some(code) = param("code") else {
            let _ = respond(&mut sock, "400 Bad Request", "No authorization code.").await;
            continue;
        };
        let _ = respond(
            &mut sock,
            "200 OK",
            "Signed in to Postern; you can close this tab.",
        )
        .await;
        return Ok(code);
    }
}

async fn respond(
    sock: &mut tokio::net::TcpStream,
    status: &str,
    text: &str,
) -> std::io::Result<()> {
    let body = format!("<!doctype html><meta charset=utf-8><title>Postern</title><p>{text}</p>");
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(resp.as_bytes()).await?;
    sock.shutdown().await
}

async fn device_flow(
    http: &reqwest::Client,
    start: &SsoStart,
    disc: &Discovery,
) -> Result<String, ClientError> {
    let Some(endpoint) = &disc.device_authorization_endpoint else {
        return Err(ClientError::Failed(
            "single sign-on: the identity provider offers no device flow; sign in with the browser (without --device)".into(),
        ));
    };
    let d: DeviceAnswer = http
        .post(endpoint)
        .form(&[
            ("client_id", start.client_id.as_str()),
            ("scope", start.scopes.join(" ").as_str()),
            ("nonce", start.nonce.as_str()),
        ])
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| failed("the device authorization request failed", e))?
        .json()
        .await
        .map_err(|e| failed("the device authorization answer is unreadable", e))?;
    eprintln!(
        "To sign in, open {} on any device and enter the code: {}",
        d.verification_uri, d.user_code
    );
    if let Some(c) = &d.verification_uri_complete {
        eprintln!("  (or open {c})");
    }
    let mut interval = Duration::from_secs(d.interval.unwrap_or(5).clamp(1, 60));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(d.expires_in.min(1800));
    loop {
        tokio::time::sleep(interval).await;
        if tokio::time::Instant::now() > deadline {
            return Err(ClientError::Failed(
                "single sign-on: the device code expired before the sign-in was completed".into(),
            ));
        }
        let answer: TokenAnswer = http
            .post(&disc.token_endpoint)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", d.device_code.as_str()),
                ("client_id", start.client_id.as_str()),
            ])
            .send()
            .await
            .map_err(|e| failed("polling the provider failed", e))?
            .json()
            .await
            .map_err(|e| failed("the token answer is unreadable", e))?;
        match answer.error.as_deref() {
            Some("authorization_pending") => continue,
            Some("slow_down") => {
                interval += Duration::from_secs(5);
                continue;
            }
            _ => return token_of(answer),
        }
    }
}
