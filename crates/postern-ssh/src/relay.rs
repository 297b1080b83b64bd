//! Moving one channel's messages between the person and the target.
//!
//! Each direction runs as its own task so a slow reader on one side never stops the other.
//! Flow control is russh's: a write waits for the peer's window, and a full channel queue
//! stops reading that peer's socket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use postern_audit::{AuditLog, EventKind, SessionIdent};
use russh::{Channel, ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};

use crate::recording::{Recorder, RecordingSettings, Terminal};
use crate::transfer::{Direction, FileEvent, ScpAudit, SftpAudit, Unreadable};
use crate::upstream::Bridge;

/// Traffic of one connection: bytes each way and the time of the last byte, for the idle
/// timeout.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Milliseconds after `start` of the last traffic.
    last_ms: AtomicU64,
    /// Bytes from the person.
    pub bytes_in: AtomicU64,
    /// Bytes to the person.
    pub bytes_out: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the last traffic.
    pub fn idle_for(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    fn input(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        self.touch();
    }

    fn output(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        self.touch();
    }
}

type ServerChannel = Channel<russh::server::Msg>;
type ClientChannel = Channel<russh::client::Msg>;

/// Pipes a plain channel (a forwarded port, the agent, X11) both ways until both sides
/// close.
pub fn spawn_pipe(person: ServerChannel, target: ClientChannel, activity: Arc<Activity>) {
    let (p_read, p_write) = person.split();
    let (t_read, t_write) = target.split();
    let a = activity.clone();
    tokio::spawn(async move {
        pipe_one_way(p_read, t_write, move |n| a.input(n)).await;
    });
    tokio::spawn(async move {
        pipe_one_way(t_read, p_write, move |n| activity.output(n)).await;
    });
}

async fn pipe_one_way<S>(
    mut from: ChannelReadHalf,
    to: ChannelWriteHalf<S>,
    count: impl Fn(usize) + Send,
) where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    while let Some(msg) = from.wait().await {
        let sent = match msg {
            ChannelMsg::Data { data } => {
                count(data.len());
                to.data_bytes(data).await
            }
            ChannelMsg::ExtendedData { data, ext } => {
                count(data.len());
                to.extended_data_bytes(ext, data).await
            }
            ChannelMsg::Eof => to.eof().await,
            ChannelMsg::Close => break,
            _ => Ok(()),
        };
        if sent.is_err() {
            break;
        }
    }
    let _ = to.close().await;
}

/// What a session channel (shell, command, subsystem) knows about its session.
pub struct SessionChannel {
    /// The session's audit identity.
    pub ident: SessionIdent,
    /// The audit log.
    pub audit: AuditLog,
    /// The store (recordings are listed there).
    pub store: postern_store::Store,
    /// Where recordings go.
    pub recordings: Arc<RecordingSettings>,
    /// This channel's number within the session (names its recording).
    pub number: u32,
    /// Rights, forwarding flags, traffic.
    pub bridge: Arc<Bridge>,
    /// The person's session (exit signals go through it).
    pub person: russh::server::Handle,
    /// The recording, once the channel turned out interactive.
    pub recorder: std::sync::OnceLock<(String, Recorder)>,
    /// The file transfer audit, once the channel turned out to be sftp or scp.
    pub transfer: std::sync::OnceLock<Mutex<Transfer>>,
}

/// The file-transfer protocol a channel speaks.
#[derive(Debug)]
pub enum Transfer {
    /// The sftp subsystem.
    Sftp(SftpAudit),
    /// A legacy `scp -t` / `scp -f`.
    Scp(ScpAudit),
}

impl Transfer {
    fn feed(&mut self, dir: Direction, data: &[u8]) -> Result<Vec<FileEvent>, Unreadable> {
        match self {
            Transfer::Sftp(a) => a.feed(dir, data),
            Transfer::Scp(a) => a.feed(dir, data),
        }
    }
}

/// Feeds the transfer audit (if any) and records the file operations that completed.
/// Err when the stream cannot be read: the channel must end.
async fn audit_files(ctx: &SessionChannel, dir: Direction, data: &[u8]) -> Result<(), ()> {
    let Some(t) = ctx.transfer.get() else {
        return Ok(());
    };
    let fed = match t.lock() {
        Ok(mut t) => t.feed(dir, data),
        Err(_) => Err(Unreadable("the transfer audit failed".into())),
    };
    match fed {
        Ok(events) => {
            for f in events {
                file_event(ctx, &f).await;
            }
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, "ending an SSH channel whose file transfer cannot be audited");
            let mut ev = ctx.ident.event(EventKind::SshChannel);
            ev.error = Some(e.0.clone());
            ev.detail =
                Some(serde_json::json!({ "action": "cut", "reason": "file transfer unreadable" }));
            let _ = ctx.audit.record(ev).await;
            Err(())
        }
    }
}

async fn file_event(ctx: &SessionChannel, f: &FileEvent) {
    let mut e = ctx.ident.event(EventKind::SshFile);
    e.detail = serde_json::to_value(f).ok();
    if !f.ok {
        e.error = Some(format!("the target refused to {} {}", f.op, f.path));
    }
    let _ = ctx.audit.record(e).await;
}

/// What the channel turned out to be, for its audit events.
#[derive(Debug, Default, Clone)]
struct Usage {
    kind: Option<&'static str>,
    command: Option<String>,
    subsystem: Option<String>,
    pty: Option<String>,
    terminal: Option<(String, u32, u32)>,
    exit_status: Option<u32>,
    exit_signal: Option<String>,
    bytes_in: u64,
    bytes_out: u64,
}

/// Relays a session channel: the person's requests (PTY, shell, exec, subsystem, window
/// changes, signals, environment) go to the target in order; output, exit status and
/// close come back. Requests Postern refused (forwarding without the grant) were answered
/// by the session handler and are not passed on.
pub fn spawn_session(person: ServerChannel, target: ClientChannel, ctx: SessionChannel) {
    let channel_id = person.id();
    let (p_read, p_write) = person.split();
    let (t_read, t_write) = target.split();
    let usage = Arc::new(Mutex::new(Usage::default()));
    let ctx = Arc::new(ctx);
    let started = Instant::now();
    let up = tokio::spawn(person_to_target(
        p_read,
        t_write,
        ctx.clone(),
        usage.clone(),
        channel_id,
    ));
    let down = tokio::spawn(target_to_person(
        t_read,
        p_write,
        ctx.clone(),
        usage.clone(),
        channel_id,
    ));
    tokio::spawn(async move {
        let _ = down.await;
        up.abort();
        let u = usage.lock().map(|u| u.clone()).unwrap_or_default();
        let unfinished = match ctx.transfer.get().map(|t| t.lock()) {
            Some(Ok(mut t)) => match &mut *t {
                Transfer::Sftp(a) => a.finish(),
                Transfer::Scp(_) => Vec::new(),
            },
            _ => Vec::new(),
        };
        for f in &unfinished {
            file_event(&ctx, f).await;
        }
        let recording = match ctx.recorder.get() {
            Some((id, rec)) => match rec.finish().await {
                Ok(done) => {
                    if let Err(e) = ctx
                        .store
                        .ssh_recording_ended(id, done.bytes, &done.sha256)
                        .await
                    {
                        tracing::error!(error = %e, recording = %id, "cannot record the end of a recording");
                    }
                    serde_json::json!({ "id": id, "sha256": done.sha256, "bytes": done.bytes })
                }
                Err(e) => {
                    tracing::error!(error = %e, recording = %id, "a recording failed");
                    serde_json::json!({ "id": id, "error": e.to_string() })
                }
            },
            None => serde_json::Value::Null,
        };
        let mut e = ctx.ident.event(EventKind::SshChannel);
        e.duration_us = Some(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        e.detail = Some(serde_json::json!({
            "action": "end",
            "channel": u.kind.unwrap_or("session"),
            "command": u.command,
            "subsystem": u.subsystem,
            "pty": u.pty,
            "exit_status": u.exit_status,
            "exit_signal": u.exit_signal,
            "bytes_in": u.bytes_in,
            "bytes_out": u.bytes_out,
            "recording": recording,
        }));
        let _ = ctx.audit.record(e).await;
    });
}

/// Starts recording an interactive channel. False when that failed: the person was told
/// and the channel must end (an interactive session is never unrecorded).
async fn record(
    ctx: &SessionChannel,
    usage: &Mutex<Usage>,
    kind: &'static str,
    command: Option<&str>,
    to: &ChannelWriteHalf<russh::client::Msg>,
    person_channel: ChannelId,
) -> bool {
    if ctx.recorder.get().is_some() {
        return true;
    }
    let (term, width, height) = usage
        .lock()
        .ok()
        .and_then(|u| u.terminal.clone())
        .unwrap_or_else(|| ("dumb".into(), 80, 24));
    let id = format!("{}-{}", ctx.ident.session, ctx.number);
    let user = ctx.ident.user.as_deref().unwrap_or_default().to_string();
    let login = ctx
        .ident
        .datasource
        .as_deref()
        .unwrap_or_default()
        .to_string();
    let file = format!("{id}.cast");
    let terminal = Terminal {
        width,
        height,
        term,
        title: format!("{user}@{login}"),
    };
    let started = match Recorder::start(&ctx.recordings, &file, terminal).await {
        Ok(rec) => {
            let row = postern_store::SshRecording {
                id: id.clone(),
                session: ctx.ident.session.to_string(),
                user,
                login,
                remote_user: ctx.ident.db_user.as_deref().unwrap_or_default().to_string(),
                client_addr: ctx.ident.client.to_string(),
                kind: kind.to_string(),
                command: command.map(str::to_string),
                started_at: postern_audit::now_ts(),
                ended_at: None,
                file: ctx
                    .recordings
                    .dir
                    .join(&file)
                    .to_string_lossy()
                    .into_owned(),
                bytes: None,
                sha256: None,
            };
            match ctx.store.ssh_recording_started(&row).await {
                Ok(()) => Ok(rec),
                Err(e) => Err(e.to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    match started {
        Ok(rec) => {
            let _ = ctx.recorder.set((id, rec));
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start a session recording; refusing the channel");
            let mut ev = ctx.ident.event(EventKind::SshChannel);
            ev.error = Some(format!("recording failed: {e}"));
            ev.detail = Some(
                serde_json::json!({ "action": "refused", "channel": kind, "reason": "recording failed" }),
            );
            let _ = ctx.audit.record(ev).await;
            end_unstarted(
                ctx,
                to,
                person_channel,
                "Postern: this session cannot be recorded, so it may not start",
            )
            .await;
            false
        }
    }
}

/// Ends a channel Postern will not start: the person is told why (stderr, exit status 1),
/// both sides are closed.
async fn end_unstarted(
    ctx: &SessionChannel,
    to: &ChannelWriteHalf<russh::client::Msg>,
    person_channel: ChannelId,
    why: &str,
) {
    let _ = ctx
        .person
        .extended_data(person_channel, 1, bytes::Bytes::from(format!("{why}\r\n")))
        .await;
    let _ = ctx.person.exit_status_request(person_channel, 1).await;
    let _ = ctx.person.close(person_channel).await;
    let _ = to.close().await;
}

/// Audits the start of a shell, command or subsystem; when the audit log takes no events
/// the channel is ended instead (fail closed) and `false` returned.
async fn started(
    ctx: &SessionChannel,
    detail: serde_json::Value,
    to: &ChannelWriteHalf<russh::client::Msg>,
    person_channel: ChannelId,
) -> bool {
    let mut e = ctx.ident.event(EventKind::SshChannel);
    e.detail = Some(detail);
    if ctx.audit.record(e).await.is_ok() {
        return true;
    }
    end_unstarted(ctx, to, person_channel, crate::session::AUDIT_CLOSED).await;
    false
}

async fn person_to_target(
    mut from: ChannelReadHalf,
    to: ChannelWriteHalf<russh::client::Msg>,
    ctx: Arc<SessionChannel>,
    usage: Arc<Mutex<Usage>>,
    person_channel: ChannelId,
) {
    let rights = ctx.bridge.rights();
    while let Some(msg) = from.wait().await {
        let sent = match msg {
            ChannelMsg::Data { data } => {
                ctx.bridge.activity.input(data.len());
                if let Ok(mut u) = usage.lock() {
                    u.bytes_in += data.len() as u64;
                }
                if let Some((_, rec)) = ctx.recorder.get() {
                    if rec.input(&data).await.is_err() {
                        break;
                    }
                }
                if audit_files(&ctx, Direction::Up, &data).await.is_err() {
                    let _ = ctx
                        .person
                        .extended_data(
                            person_channel,
                            1,
                            bytes::Bytes::from_static(
                                b"Postern: this file transfer cannot be audited; ending it\r\n",
                            ),
                        )
                        .await;
                    let _ = ctx.person.close(person_channel).await;
                    break;
                }
                to.data_bytes(data).await
            }
            ChannelMsg::ExtendedData { data, ext } => {
                ctx.bridge.activity.input(data.len());
                to.extended_data_bytes(ext, data).await
            }
            ChannelMsg::Eof => to.eof().await,
            ChannelMsg::Close => break,
            ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                pix_width,
                pix_height,
                terminal_modes,
                ..
            } => {
                if let Ok(mut u) = usage.lock() {
                    u.pty = Some(format!("{term} {col_width}x{row_height}"));
                    u.terminal = Some((term.clone(), col_width, row_height));
                }
                to.request_pty(
                    false,
                    &term,
                    col_width,
                    row_height,
                    pix_width,
                    pix_height,
                    &terminal_modes,
                )
                .await
            }
            ChannelMsg::RequestShell { .. } => {
                if let Ok(mut u) = usage.lock() {
                    u.kind = Some("shell");
                }
                if !record(&ctx, &usage, "shell", None, &to, person_channel).await {
                    break;
                }
                let json = serde_json::json!({ "action": "start", "channel": "shell" });
                if !started(&ctx, json, &to, person_channel).await {
                    break;
                }
                to.request_shell(true).await
            }
            ChannelMsg::Exec { command, .. } => {
                let text = String::from_utf8_lossy(&command).into_owned();
                if let Ok(mut u) = usage.lock() {
                    u.kind = Some("exec");
                    u.command = Some(text.clone());
                }
                if let Some(scp) = ScpAudit::for_command(&text) {
                    let _ = ctx.transfer.set(Mutex::new(Transfer::Scp(scp)));
                }
                let with_terminal = usage.lock().is_ok_and(|u| u.terminal.is_some());
                if with_terminal
                    && !record(&ctx, &usage, "exec", Some(&text), &to, person_channel).await
                {
                    break;
                }
                let json =
                    serde_json::json!({ "action": "start", "channel": "exec", "command": text });
                if !started(&ctx, json, &to, person_channel).await {
                    break;
                }
                to.exec(true, command).await
            }
            ChannelMsg::RequestSubsystem { name, .. } => {
                if let Ok(mut u) = usage.lock() {
                    u.kind = Some("subsystem");
                    u.subsystem = Some(name.clone());
                }
                if name == "sftp" {
                    let _ = ctx
                        .transfer
                        .set(Mutex::new(Transfer::Sftp(SftpAudit::default())));
                }
                let json = serde_json::json!({ "action": "start", "channel": "subsystem", "subsystem": name });
                if !started(&ctx, json, &to, person_channel).await {
                    break;
                }
                to.request_subsystem(true, &name).await
            }
            ChannelMsg::SetEnv {
                variable_name,
                variable_value,
                ..
            } => to.set_env(false, variable_name, variable_value).await,
            ChannelMsg::WindowChange {
                col_width,
                row_height,
                pix_width,
                pix_height,
            } => {
                if let Some((_, rec)) = ctx.recorder.get() {
                    if rec.resize(col_width, row_height).await.is_err() {
                        break;
                    }
                }
                to.window_change(col_width, row_height, pix_width, pix_height)
                    .await
            }
            ChannelMsg::Signal { signal } => to.signal(signal).await,
            ChannelMsg::AgentForward { .. } if rights.agent_forwarding => {
                to.agent_forward(false).await
            }
            ChannelMsg::RequestX11 {
                single_connection,
                x11_authentication_protocol,
                x11_authentication_cookie,
                x11_screen_number,
                ..
            } if rights.x11_forwarding => {
                to.request_x11(
                    false,
                    single_connection,
                    x11_authentication_protocol,
                    x11_authentication_cookie,
                    x11_screen_number,
                )
                .await
            }
            _ => Ok(()),
        };
        if sent.is_err() {
            break;
        }
    }
    let _ = to.close().await;
}

async fn target_to_person(
    mut from: ChannelReadHalf,
    to: ChannelWriteHalf<russh::server::Msg>,
    ctx: Arc<SessionChannel>,
    usage: Arc<Mutex<Usage>>,
    channel_id: ChannelId,
) {
    while let Some(msg) = from.wait().await {
        let sent = match msg {
            ChannelMsg::Data { data } => {
                ctx.bridge.activity.output(data.len());
                if let Ok(mut u) = usage.lock() {
                    u.bytes_out += data.len() as u64;
                }
                if audit_files(&ctx, Direction::Down, &data).await.is_err() {
                    let _ = to
                        .extended_data_bytes(
                            1,
                            &b"Postern: this file transfer cannot be audited; ending it\r\n"[..],
                        )
                        .await;
                    break;
                }
                if let Some((_, rec)) = ctx.recorder.get() {
                    if rec.output(&data).await.is_err() {
                        let _ = to
                            .extended_data_bytes(
                                1,
                                &b"\r\nPostern: the recording failed; ending the session\r\n"[..],
                            )
                            .await;
                        break;
                    }
                }
                to.data_bytes(data).await
            }
            ChannelMsg::ExtendedData { data, ext } => {
                ctx.bridge.activity.output(data.len());
                if let Some((_, rec)) = ctx.recorder.get() {
                    if rec.output(&data).await.is_err() {
                        break;
                    }
                }
                to.extended_data_bytes(ext, data).await
            }
            ChannelMsg::Eof => to.eof().await,
            ChannelMsg::ExitStatus { exit_status } => {
                if let Ok(mut u) = usage.lock() {
                    u.exit_status = Some(exit_status);
                }
                to.exit_status(exit_status).await
            }
            ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            } => {
                if let Ok(mut u) = usage.lock() {
                    u.exit_signal = Some(format!("{signal_name:?}"));
                }
                ctx.person
                    .exit_signal_request(
                        channel_id,
                        signal_name,
                        core_dumped,
                        error_message,
                        lang_tag,
                    )
                    .await
                    .map_err(|_| russh::Error::SendError)
            }
            // Only shell, exec and subsystem requests ask for a reply: the person was told
            // yes already, so a refusal is said on stderr and ends the channel.
            ChannelMsg::Failure => {
                let kind = usage.lock().ok().and_then(|u| u.kind).unwrap_or("request");
                let text = format!("Postern: the target refused the {kind} request\r\n");
                let _ = to.extended_data_bytes(1, text.into_bytes()).await;
                let _ = to.exit_status(1).await;
                if let Ok(mut u) = usage.lock() {
                    u.exit_status = Some(1);
                }
                break;
            }
            ChannelMsg::Close => break,
            _ => Ok(()),
        };
        if sent.is_err() {
            break;
        }
    }
    let _ = to.close().await;
}
