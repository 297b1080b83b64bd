//! `postern sessions ls` and `postern sessions play`: recordings of SSH sessions.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use postern_store::SshRecording;
use serde::Deserialize;

use super::conn::ConnArgs;
use super::resources::api;
use super::table::{render, truncate};
use super::{ClientError, CmdResult};

/// `postern sessions …`
#[derive(clap::Subcommand, Debug)]
pub enum SessionsCommand {
    /// List recorded SSH sessions, newest first (yours; everyone's with admin or audit-read).
    Ls(LsArgs),
    /// Replay a recording in this terminal, at its own pace or faster.
    Play(PlayArgs),
}

/// `postern sessions ls`
#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Only this person's sessions.
    #[arg(long)]
    user: Option<String>,
    /// Only sessions on this SSH login.
    #[arg(long)]
    login: Option<String>,
    /// Most sessions shown.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: ConnArgs,
}

/// `postern sessions play`
#[derive(clap::Args, Debug)]
pub struct PlayArgs {
    /// The recording's id (from `postern sessions ls`).
    id: String,
    /// Playback speed: 2 plays twice as fast.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Longest pause kept between two outputs, in seconds (longer idle time is cut short).
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    max_idle: f64,
    /// Print everything at once, without pauses.
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Deserialize)]
struct Recording {
    recording: SshRecording,
    cast: String,
    intact: Option<bool>,
}

/// Runs a sessions command.
pub async fn run(cmd: SessionsCommand) -> CmdResult {
    match cmd {
        SessionsCommand::Ls(a) => ls(a).await,
        SessionsCommand::Play(a) => play(a).await,
    }
}

async fn ls(a: LsArgs) -> CmdResult {
    let mut q: Vec<(&str, String)> = vec![("limit", a.limit.to_string())];
    if let Some(u) = &a.user {
        q.push(("user", u.clone()));
    }
    if let Some(l) = &a.login {
        q.push(("login", l.clone()));
    }
    let api = api(&a.conn)?;
    let list: Vec<SshRecording> = api.get("/api/v1/ssh/sessions", &q).await?;
    if a.json {
        let text = serde_json::to_string_pretty(&list)
            .map_err(|e| ClientError::Failed(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.user.clone(),
                r.login.clone(),
                match &r.command {
                    Some(c) => truncate(&format!("{} {c}", r.kind), 40),
                    None => r.kind.clone(),
                },
                r.started_at.get(..19).unwrap_or(&r.started_at).to_string() + "Z",
                match &r.ended_at {
                    Some(e) => e.get(..19).unwrap_or(e).to_string() + "Z",
                    None => "(open)".into(),
                },
                r.bytes.map(|b| b.to_string()).unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        render(
            &["ID", "USER", "LOGIN", "WHAT", "STARTED", "ENDED", "BYTES"],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// One output event of a recording: when, and what the terminal showed.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Seconds since the start.
    pub at: f64,
    /// The text.
    pub text: String,
}

/// The output events of an asciicast v2 recording (input and resizes are not replayed).
pub fn frames(cast: &str) -> Result<Vec<Frame>, String> {
    let mut lines = cast.lines();
    let header: serde_json::Value = lines
        .next()
        .ok_or("the recording is empty")
        .and_then(|h| serde_json::from_str(h).map_err(|_| "the recording has no header"))?;
    if header["version"] != 2 {
        return Err(format!(
            "not an asciicast v2 recording (version {})",
            header["version"]
        ));
    }
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let ev: (f64, String, String) = serde_json::from_str(line)
            .map_err(|e| format!("event {} of the recording is unreadable: {e}", n + 1))?;
        if ev.1 == "o" {
            out.push(Frame {
                at: ev.0,
                text: ev.2,
            });
        }
    }
    Ok(out)
}

/// The pause before each frame: the recorded gap divided by `speed`, at most `max_idle`.
pub fn pauses(frames: &[Frame], speed: f64, max_idle: f64) -> Vec<Duration> {
    let speed = if speed.is_finite() && speed > 0.0 {
        speed
    } else {
        1.0
    };
    let mut last = 0.0;
    frames
        .iter()
        .map(|f| {
            let gap = ((f.at - last) / speed).clamp(0.0, max_idle.max(0.0));
            last = f.at;
            Duration::from_secs_f64(gap)
        })
        .collect()
}

async fn play(a: PlayArgs) -> CmdResult {
    let api = api(&a.conn)?;
    let path = format!("/api/v1/ssh/sessions/{}", a.id);
    let r: Recording = api.get(&path, &[]).await?;
    if r.intact == Some(false) {
        return Err(ClientError::Failed(format!(
            "recording {} does not match the hash the audit trail holds for it: the file was \
             altered after the session ended",
            r.recording.id
        )));
    }
    let frames = frames(&r.cast).map_err(ClientError::Failed)?;
    let waits = if a.no_wait {
        vec![Duration::ZERO; frames.len()]
    } else {
        pauses(&frames, a.speed, a.max_idle)
    };
    let mut out = std::io::stdout().lock();
    for (f, w) in frames.iter().zip(waits) {
        if !w.is_zero() {
            let _ = out.flush();
            std::thread::sleep(w);
        }
        out.write_all(f.text.as_bytes())
            .map_err(|e| ClientError::Failed(format!("cannot write to the terminal: {e}")))?;
    }
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAST: &str = "{\"version\":2,\"width\":80,\"height\":24}\n[0.5,\"o\",\"$ \"]\n[1.0,\"i\",\"ls\\r\"]\n[1.25,\"o\",\"a b\\r\\n\"]\n[30.0,\"r\",\"100x30\"]\n[40.0,\"o\",\"bye\"]\n";

    #[test]
    fn frames_are_the_output_events() {
        let f = frames(CAST).unwrap();
        assert_eq!(
            f.iter().map(|f| f.text.as_str()).collect::<Vec<_>>(),
            ["$ ", "a b\r\n", "bye"]
        );
        assert!(frames("").is_err());
        assert!(frames("{\"version\":1}\n").is_err());
        assert!(frames("{\"version\":2}\nnot json\n").is_err());
    }

    #[test]
    fn pauses_follow_speed_and_idle_cap() {
        let f = frames(CAST).unwrap();
        let p = pauses(&f, 1.0, 2.0);
        assert_eq!(p[0], Duration::from_millis(500));
        assert_eq!(p[1], Duration::from_millis(750));
        assert_eq!(p[2], Duration::from_secs(2), "long idle is cut short");
        let fast = pauses(&f, 2.0, 2.0);
        assert_eq!(fast[1], Duration::from_millis(375));
    }
}
