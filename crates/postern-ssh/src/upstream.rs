//! The target's side: Postern as an SSH client, signing in with the login's stored secret.
//!
//! The target's host key must match the pinned one; when nothing is pinned yet, the key the
//! target shows is pinned (trust on first use) before the login goes on. Channels the
//! target opens towards the person — remote forwards (`ssh -R`), the agent (`ssh -A`), X11 —
//! reach the person only when their roles grant it and they asked for it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use postern_store::{SshRights, SshSecret, SshTarget, Store};
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelOpenFailure};

use crate::relay;

/// Why Postern could not sign in to the target, in words for the person.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The target showed another host key than the pinned one.
    #[error(
        "the host key of ssh login {login} ({host}:{port}) has changed: Postern pinned {pinned}, \
         the target now shows {seen}. This may be an attack; if the target was really \
         re-installed, an admin runs `postern sshlogin forget-host-key {login}` (or sets host_key)"
    )]
    HostKeyChanged {
        /// Login name.
        login: String,
        /// Target host.
        host: String,
        /// Target port.
        port: u16,
        /// Fingerprint of the pinned key.
        pinned: String,
        /// Fingerprint of the key shown.
        seen: String,
    },
    /// TCP or SSH trouble before signing in.
    #[error("cannot reach ssh login {login} at {host}:{port}: {why}")]
    Unreachable {
        /// Login name.
        login: String,
        /// Target host.
        host: String,
        /// Target port.
        port: u16,
        /// What went wrong.
        why: String,
    },
    /// The target refused the stored secret.
    #[error(
        "the target of ssh login {login} refused Postern's {what} for {user}@{host}; an admin \
         checks the target's authorized_keys (`postern sshlogin pubkey {login}`) or the password"
    )]
    Refused {
        /// Login name.
        login: String,
        /// Target account.
        user: String,
        /// Target host.
        host: String,
        /// `key` or `password`.
        what: &'static str,
    },
    /// No answer in time.
    #[error("ssh login {login} ({host}:{port}) did not answer within {secs} s")]
    Timeout {
        /// Login name.
        login: String,
        /// Target host.
        host: String,
        /// Target port.
        port: u16,
        /// The limit.
        secs: u64,
    },
    /// The store could not be read or written.
    #[error("Postern could not read its store: {0}")]
    Store(String),
}

/// What the target may open towards the person: set once the person's session exists.
#[derive(Default)]
pub struct Bridge {
    /// The person's session.
    pub client: OnceLock<russh::server::Handle>,
    /// Their rights on this login (replaced when an admin change is seen).
    pub rights: Mutex<SshRights>,
    /// Remote forwards (`ssh -R`) the person asked for and the target granted:
    /// (address, port).
    pub remote_forwards: Mutex<HashSet<(String, u32)>>,
    /// The person asked for agent forwarding and may have it.
    pub agent: AtomicBool,
    /// The person asked for X11 forwarding and may have it.
    pub x11: AtomicBool,
    /// Bytes moved, for idle detection (see [`relay::Activity`]).
    pub activity: Arc<relay::Activity>,
    /// Session channels opened so far (numbers recordings).
    pub channels: std::sync::atomic::AtomicU32,
}

impl Bridge {
    /// The person's current rights.
    pub fn rights(&self) -> SshRights {
        self.rights.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// The russh client handler of one upstream connection.
pub struct Upstream {
    login: String,
    host: String,
    port: u16,
    pinned: Option<String>,
    store: Store,
    /// Set when the host key did not match (the connect error says so).
    mismatch: Arc<Mutex<Option<(String, String)>>>,
    bridge: Arc<Bridge>,
}

/// `algorithm base64` of a public key, as pinned.
fn key_line(key: &russh::keys::PublicKey) -> Option<String> {
    let mut k = key.clone();
    k.set_comment("");
    k.to_openssh().ok().map(|s| s.trim().to_string())
}

fn fingerprint_of_line(line: &str) -> String {
    postern_vault::ssh::parse_public_key(line)
        .map(|p| p.fingerprint)
        .unwrap_or_else(|_| "an unreadable key".into())
}

impl client::Handler for Upstream {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(c) => c.public_key().clone().into(),
        };
        let Some(seen) = key_line(&key) else {
            return Ok(false);
        };
        let pinned = match &self.pinned {
            Some(p) => p.clone(),
            None => match self.store.pin_ssh_host_key(&self.login, &seen).await {
                Ok(true) => {
                    tracing::info!(login = %self.login, host = %self.host, port = self.port, fingerprint = %fingerprint_of_line(&seen), "pinned the target's host key on first use");
                    return Ok(true);
                }
                // Pinned meanwhile by another session: compare with that.
                Ok(false) => match self
                    .store
                    .get(postern_core::Kind::SshLogin, &self.login)
                    .await
                {
                    Ok(Some(v)) => match v.get("host_key").and_then(|k| k.as_str()) {
                        Some(k) => k.to_string(),
                        None => return Ok(false),
                    },
                    _ => return Ok(false),
                },
                Err(e) => {
                    tracing::error!(error = %e, "cannot pin a host key");
                    return Ok(false);
                }
            },
        };
        if pinned == seen {
            return Ok(true);
        }
        if let Ok(mut m) = self.mismatch.lock() {
            *m = Some((fingerprint_of_line(&pinned), fingerprint_of_line(&seen)));
        }
        Ok(false)
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<client::Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let asked = self
            .bridge
            .remote_forwards
            .lock()
            .map(|f| {
                f.contains(&(connected_address.to_string(), connected_port))
                    || f.contains(&(connected_address.to_string(), 0))
            })
            .unwrap_or(false);
        let Some(person) = self.bridge.client.get().cloned() else {
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return Ok(());
        };
        if !(asked && self.bridge.rights().port_forwarding) {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        match person
            .channel_open_forwarded_tcpip(
                connected_address,
                connected_port,
                originator_address,
                originator_port,
            )
            .await
        {
            Ok(theirs) => {
                reply.accept().await;
                relay::spawn_pipe(theirs, channel, self.bridge.activity.clone());
            }
            Err(_) => reply.reject(ChannelOpenFailure::ConnectFailed).await,
        }
        Ok(())
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        channel: Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let person = self.bridge.client.get().cloned();
        match person {
            Some(person)
                if self.bridge.agent.load(Ordering::Acquire)
                    && self.bridge.rights().agent_forwarding =>
            {
                match person.channel_open_agent().await {
                    Ok(theirs) => {
                        reply.accept().await;
                        relay::spawn_pipe(theirs, channel, self.bridge.activity.clone());
                    }
                    Err(_) => reply.reject(ChannelOpenFailure::ConnectFailed).await,
                }
            }
            _ => {
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await
            }
        }
        Ok(())
    }

    async fn server_channel_open_x11(
        &mut self,
        channel: Channel<client::Msg>,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let person = self.bridge.client.get().cloned();
        match person {
            Some(person)
                if self.bridge.x11.load(Ordering::Acquire)
                    && self.bridge.rights().x11_forwarding =>
            {
                match person
                    .channel_open_x11(originator_address, originator_port)
                    .await
                {
                    Ok(theirs) => {
                        reply.accept().await;
                        relay::spawn_pipe(theirs, channel, self.bridge.activity.clone());
                    }
                    Err(_) => reply.reject(ChannelOpenFailure::ConnectFailed).await,
                }
            }
            _ => {
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await
            }
        }
        Ok(())
    }

    async fn server_channel_open_session(
        &mut self,
        _channel: Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        // A target has no business opening sessions towards Postern.
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn server_channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<client::Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn server_channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<client::Msg>,
        _socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        _channel: Channel<client::Msg>,
        _socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        // Postern never asks for Unix-socket forwards.
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }
}

/// Connects and signs in to `target`, within `timeout`.
pub async fn connect(
    target: &SshTarget,
    store: Store,
    bridge: Arc<Bridge>,
    timeout: Duration,
) -> Result<Handle<Upstream>, UpstreamError> {
    let timed_out = || UpstreamError::Timeout {
        login: target.name.clone(),
        host: target.host.clone(),
        port: target.port,
        secs: timeout.as_secs(),
    };
    tokio::time::timeout(timeout, connect_inner(target, store, bridge))
        .await
        .map_err(|_| timed_out())?
}

async fn connect_inner(
    target: &SshTarget,
    store: Store,
    bridge: Arc<Bridge>,
) -> Result<Handle<Upstream>, UpstreamError> {
    let unreachable = |why: String| UpstreamError::Unreachable {
        login: target.name.clone(),
        host: target.host.clone(),
        port: target.port,
        why,
    };
    let config = Arc::new(client::Config {
        client_id: russh::SshId::Standard("SSH-2.0-Postern".into()),
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 4,
        nodelay: true,
        ..Default::default()
    });
    let mismatch = Arc::new(Mutex::new(None));
    let handler = Upstream {
        login: target.name.clone(),
        host: target.host.clone(),
        port: target.port,
        pinned: target.host_key.clone(),
        store,
        mismatch: mismatch.clone(),
        bridge,
    };
    let connected = client::connect(config, (target.host.as_str(), target.port), handler).await;
    let mut handle = match connected {
        Ok(h) => h,
        Err(e) => {
            if let Some((pinned, seen)) = mismatch.lock().ok().and_then(|m| m.clone()) {
                return Err(UpstreamError::HostKeyChanged {
                    login: target.name.clone(),
                    host: target.host.clone(),
                    port: target.port,
                    pinned,
                    seen,
                });
            }
            return Err(unreachable(e.to_string()));
        }
    };
    let (result, what) = match &target.secret {
        SshSecret::Key(pem) => {
            let key = PrivateKey::from_openssh(pem.as_bytes())
                .map_err(|e| UpstreamError::Store(format!("the stored key is unreadable: {e}")))?;
            let hash = if matches!(key.algorithm(), russh::keys::Algorithm::Rsa { .. }) {
                handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(|e| unreachable(e.to_string()))?
                    .flatten()
                    .or(Some(HashAlg::Sha256))
            } else {
                None
            };
            (
                handle
                    .authenticate_publickey(
                        target.user.clone(),
                        PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                    )
                    .await,
                "key",
            )
        }
        SshSecret::Password(pw) => (
            handle
                .authenticate_password(target.user.clone(), pw.as_str())
                .await,
            "password",
        ),
    };
    match result {
        Ok(client::AuthResult::Success) => Ok(handle),
        Ok(client::AuthResult::Failure { .. }) => Err(UpstreamError::Refused {
            login: target.name.clone(),
            user: target.user.clone(),
            host: target.host.clone(),
            what,
        }),
        Err(e) => Err(unreachable(e.to_string())),
    }
}
