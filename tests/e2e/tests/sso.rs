//! Single sign-on (I1) against a real OpenID Connect provider (npm oidc-provider, started
//! by scripts/test-oidc.sh): `postern login --sso` through the browser flow (PKCE, loopback
//! redirect) with the provider's groups mapped to a role that reaches a datasource with
//! the certificate; `postern admin login --sso --device` through the device flow; ID tokens
//! with a bad signature, a foreign key, or a used nonce refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use postern::config::OidcConfig;
use postern_e2e::{pg, postern_bin, unique, Postern, Upstream};
use postern_store::AuditFilter;
use sha2::Digest;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with scripts/test.sh, which starts the test OpenID provider")
    })
}

/// A person at the provider, in `groups`.
fn provider_account(login: &str, groups: &[&str]) {
    let path =
        std::path::Path::new(&env("POSTERN_TEST_OIDC_ACCOUNTS")).join(format!("{login}.json"));
    std::fs::write(path, serde_json::json!({ "groups": groups }).to_string()).unwrap();
}

/// Where a browser ends up.
enum Landing {
    /// A redirect to a loopback address (a native client's callback), not followed.
    Loopback(reqwest::Url),
    /// A page without a form.
    Page(String),
}

/// A minimal browser: keeps cookies, follows redirects, fills and submits each page's form
/// (the provider's login, consent and device-code pages) with the given values.
struct Browser {
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn new() -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn visit(&mut self, start: &str, fill: &[(&str, &str)]) -> Landing {
        let form_re = regex::Regex::new(r#"(?s)<form\b([^>]*)>(.*?)</form>"#).unwrap();
        let input_re = regex::Regex::new(r#"(?s)<input\b([^>]*)>"#).unwrap();
        let attr = |tag: &str, name: &str| -> Option<String> {
            let re = regex::Regex::new(&format!(r#"(?s)\b{name}="([^"]*)""#)).unwrap();
            re.captures(tag)
                .map(|c| c[1].replace("&amp;", "&").replace("&#x2F;", "/"))
        };
        let mut url = reqwest::Url::parse(start).unwrap();
        let mut form: Option<Vec<(String, String)>> = None;
        for _ in 0..30 {
            let mut req = match &form {
                Some(fields) => self.http.post(url.clone()).form(fields),
                None => self.http.get(url.clone()),
            };
            if !self.cookies.is_empty() {
                req = req.header("cookie", self.cookie_header());
            }
            let resp = req.send().await.unwrap();
            for c in resp.headers().get_all("set-cookie") {
                let c = c.to_str().unwrap();
                if let Some((k, v)) = c.split(';').next().and_then(|kv| kv.split_once('=')) {
                    self.cookies.insert(k.trim().to_string(), v.to_string());
                }
            }
            if resp.status().is_redirection() {
                let loc = resp.headers()["location"].to_str().unwrap().to_string();
                let next = url.join(&loc).unwrap();
                if next.host_str() == Some("127.0.0.1") && next.port() != url.port() {
                    return Landing::Loopback(next);
                }
                url = next;
                form = None;
                continue;
            }
            let status = resp.status();
            let html = resp.text().await.unwrap();
            assert!(status.is_success(), "{status} at {url}: {html}");
            let Some(f) = form_re.captures(&html) else {
                return Landing::Page(html);
            };
            let action = attr(&f[1], "action").unwrap_or_else(|| url.to_string());
            let mut fields: Vec<(String, String)> = input_re
                .captures_iter(&f[2])
                .filter_map(|i| {
                    Some((
                        attr(&i[1], "name")?,
                        attr(&i[1], "value").unwrap_or_default(),
                    ))
                })
                .collect();
            for (k, v) in fill {
                if let Some(f) = fields.iter_mut().find(|(name, _)| name == k) {
                    f.1 = v.to_string();
                }
            }
            url = url.join(&action).unwrap();
            form = Some(fields);
        }
        panic!("the browser went round in circles");
    }
}

async fn setup(group: &str) -> (Postern, Upstream, String) {
    let up = pg().upstream(None).await;
    let alias = unique("sso");
    let mut group_roles = BTreeMap::new();
    group_roles.insert(group.to_string(), vec![format!("{alias}-role")]);
    let oidc = OidcConfig {
        issuer: env("POSTERN_TEST_OIDC_ISSUER"),
        client_id: env("POSTERN_TEST_OIDC_CLIENT_ID"),
        scopes: vec!["openid".into(), "profile".into(), "groups".into()],
        username_claim: "preferred_username".into(),
        groups_claim: "groups".into(),
        ca: None,
        timeout: std::time::Duration::from_secs(10),
        group_roles,
    };
    let postern = Postern::start_with(|c| {
        c.oidc = Some(oidc);
        // The second factor stays required: the provider's sign-in stands for both factors,
        // so these logins need no TOTP code.
        c.auth.require_2fa = true;
    })
    .await;
    postern
        .grant(
            &up,
            &alias,
            &unique("keeper"),
            "keeper-pw-123456",
            "disable",
        )
        .await;
    (postern, up, alias)
}

/// Runs the CLI with its own HOME; returns the child and the first stderr line starting
/// with `marker` (the line is handed back whole, stderr keeps draining).
#[allow(clippy::zombie_processes)] // a failed assert ends the test, the child with it
fn cli_waiting(
    home: &std::path::Path,
    args: &[&str],
    marker: &str,
) -> (std::process::Child, String, std::thread::JoinHandle<String>) {
    let mut child = Command::new(postern_bin())
        .args(args)
        .env("HOME", home)
        .env("BROWSER", "true")
        .env_remove("POSTERN_HOME")
        .env_remove("POSTERN_SERVER")
        .env_remove("POSTERN_TOKEN")
        .env_remove("POSTERN_CA")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "no {marker:?} line: {seen}"
        );
        seen.push_str(&line);
        if line.contains(marker) {
            let rest = std::thread::spawn(move || {
                let mut rest = String::new();
                let _ = std::io::Read::read_to_string(&mut err, &mut rest);
                rest
            });
            return (child, line, rest);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sign_in_maps_groups_to_roles_and_reaches_the_database() {
    let group = unique("sso-dbas");
    let (postern, up, alias) = setup(&group).await;
    let login = unique("sam");
    provider_account(&login, &[&group, "unrelated"]);
    let home = tempfile::tempdir().unwrap();
    let server = format!("https://127.0.0.1:{}", postern.handle.api_addr.port());
    let ca = postern.handle.ca_path.display().to_string();

    let (child, line, _) = cli_waiting(
        home.path(),
        &["login", "--sso", "--server", &server, "--ca", &ca],
        "  http",
    );
    let url = line.trim();
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    let mut browser = Browser::new();
    let Landing::Loopback(callback) = browser
        .visit(url, &[("login", &login), ("password", "anything")])
        .await
    else {
        panic!("the provider did not redirect to the CLI")
    };
    // The browser delivers the code to the CLI's one-shot listener.
    let page = reqwest::get(callback).await.unwrap().text().await.unwrap();
    assert!(page.contains("Signed in to Postern"), "{page}");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("as {login}")) && said.contains("certificate"),
        "{said}"
    );

    // The provider's group is a role here, and the certificate reaches the database.
    let info = postern
        .handle
        .store
        .login_info(&login)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.source, "oidc");
    let db_login = Command::new(postern_bin())
        .args(["db", "login", &alias])
        .env("HOME", home.path())
        .env_remove("POSTERN_HOME")
        .output()
        .unwrap();
    assert!(db_login.status.success(), "{db_login:?}");
    let mut psql = pg().tool("psql");
    psql.env("HOME", home.path())
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICEFILE")
        .args([
            "-X",
            "-w",
            "-At",
            "-d",
            &format!("service={alias}"),
            "-c",
            "select current_user",
        ]);
    let out = psql.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), up.role);

    let ok = postern.audit_of(&login, "login_success").await;
    let sso = ok
        .iter()
        .find(|e| e.detail.as_ref().is_some_and(|d| d["auth"] == "oidc"))
        .expect("an oidc login event");
    assert!(sso.detail.as_ref().unwrap()["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g == group.as_str()));
    postern.stop().await;
    up.drop_all().await;
}

/// The test as its own native client: an ID token for `login` with Postern's nonce.
async fn id_token_for(postern: &Postern, login: &str) -> String {
    let api = api_client(postern);
    let server = format!("https://127.0.0.1:{}", postern.handle.api_addr.port());
    let start: serde_json::Value = api
        .get(format!("{server}/api/v1/auth/oidc"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let issuer = start["issuer"].as_str().unwrap().to_string();
    let verifier = "a-test-verifier-that-is-long-enough-for-pkce-0123456789";
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let redirect = "http://127.0.0.1:1/callback";
    let url = reqwest::Url::parse_with_params(
        &format!("{issuer}/auth"),
        &[
            ("response_type", "code"),
            ("client_id", start["client_id"].as_str().unwrap()),
            ("redirect_uri", redirect),
            ("scope", "openid profile groups"),
            ("state", "s"),
            ("nonce", start["nonce"].as_str().unwrap()),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .unwrap();
    let Landing::Loopback(back) = Browser::new()
        .visit(url.as_str(), &[("login", login), ("password", "x")])
        .await
    else {
        panic!("no redirect")
    };
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let t: serde_json::Value = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("client_id", start["client_id"].as_str().unwrap()),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    t["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{t}"))
        .to_string()
}

fn api_client(postern: &Postern) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(postern.handle.ca_pem.as_bytes()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap()
}

async fn sign_in_with(
    postern: &Postern,
    id_token: &str,
) -> (reqwest::StatusCode, serde_json::Value) {
    let server = format!("https://127.0.0.1:{}", postern.handle.api_addr.port());
    let r = api_client(postern)
        .post(format!("{server}/api/v1/auth/oidc"))
        .json(&serde_json::json!({ "id_token": id_token }))
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_flow_and_forged_or_replayed_tokens() {
    let group = unique("sso-ops");
    let (postern, up, _alias) = setup(&group).await;
    let login = unique("dev");
    provider_account(&login, &[&group]);
    let home = tempfile::tempdir().unwrap();
    let server = format!("https://127.0.0.1:{}", postern.handle.api_addr.port());
    let ca = postern.handle.ca_path.display().to_string();

    // The device flow: the CLI shows a code, someone enters it on another device.
    let (child, line, rest) = cli_waiting(
        home.path(),
        &[
            "admin", "login", "--sso", "--device", "--server", &server, "--ca", &ca,
        ],
        "enter the code",
    );
    let (uri, code) = {
        let rest = line.trim().strip_prefix("To sign in, open ").unwrap();
        let (uri, code) = rest
            .split_once(" on any device and enter the code: ")
            .unwrap();
        (uri.to_string(), code.to_string())
    };
    let landing = Browser::new()
        .visit(
            &uri,
            &[("user_code", &code), ("login", &login), ("password", "x")],
        )
        .await;
    let Landing::Page(page) = landing else {
        panic!("the device flow ends on a page")
    };
    assert!(page.to_lowercase().contains("success"), "{page}");
    let out = child.wait_with_output().unwrap();
    let err = rest.join().unwrap();
    assert!(out.status.success(), "{out:?} {err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("as {login}")));

    // A real token with its signature altered.
    let token = id_token_for(&postern, &login).await;
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let mut sig = URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
    sig[10] ^= 0x01;
    parts[2] = URL_SAFE_NO_PAD.encode(sig);
    let (status, body) = sign_in_with(&postern, &parts.join(".")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not accepted"),
        "{body}"
    );

    // The same claims signed by another key under the provider's key id.
    let header = jsonwebtoken::decode_header(&token).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = header.kid.clone();
    let forged = jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der()),
    )
    .unwrap();
    let (status, body) = sign_in_with(&postern, &forged).await;
    assert_eq!(status, 401, "{body}");

    // The untouched token works once; its nonce cannot be used again.
    let (status, body) = sign_in_with(&postern, &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"], login.as_str());
    let (status, body) = sign_in_with(&postern, &token).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("nonce"), "{body}");

    let failures = postern
        .audit(AuditFilter {
            kind: Some("login_failure".into()),
            ..AuditFilter::default()
        })
        .await;
    assert!(
        failures
            .iter()
            .filter(|e| e.protocol == Some(postern_audit::Protocol::Api))
            .count()
            >= 3,
        "{failures:?}"
    );
    postern.stop().await;
    up.drop_all().await;
}
