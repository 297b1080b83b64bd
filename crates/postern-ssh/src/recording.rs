//! Recordings of interactive SSH channels in asciicast v2 (the format `asciinema` plays):
//! a header line, then one JSON line per event — output (`o`), input (`i`, when configured)
//! and terminal resizes (`r`) — with the seconds since the start.
//!
//! The relay hands events to a writer task through a bounded queue (it waits when the disk
//! is slow: nothing is dropped). When the channel ends the file is flushed and synced and
//! its SHA-256 goes into the channel's audit event, so the audit hash chain vouches for it.
//! A recording that cannot be written ends the channel (fail closed).

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Where recordings go and what they hold.
#[derive(Debug, Clone)]
pub struct RecordingSettings {
    /// The directory of the `.cast` files (created, mode 0700).
    pub dir: PathBuf,
    /// Also record what the person types (passwords typed at prompts included).
    pub record_input: bool,
}

/// An event of the terminal.
#[derive(Debug)]
enum Event {
    Output(Bytes),
    Input(Bytes),
    Resize(u32, u32),
    End,
}

/// What the header says about the terminal.
#[derive(Debug, Clone)]
pub struct Terminal {
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// `TERM`.
    pub term: String,
    /// A title (`alice@web`).
    pub title: String,
}

/// A finished recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// File size.
    pub bytes: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

/// The relay's handle on one recording.
pub struct Recorder {
    tx: mpsc::Sender<Event>,
    record_input: bool,
    done: std::sync::Mutex<Option<tokio::task::JoinHandle<std::io::Result<Finished>>>>,
}

/// The header line of a recording started at unix time `timestamp`.
pub fn header(t: &Terminal, timestamp: i64) -> String {
    let mut line = serde_json::json!({
        "version": 2,
        "width": t.width.max(1),
        "height": t.height.max(1),
        "timestamp": timestamp,
        "env": { "TERM": t.term },
        "title": t.title,
    })
    .to_string();
    line.push('\n');
    line
}

/// One event line: `[seconds, code, data]`.
pub fn event_line(seconds: f64, code: &str, data: &str) -> String {
    let mut line = serde_json::json!([seconds, code, data]).to_string();
    line.push('\n');
    line
}

/// Appends `chunk` to `pending` and takes out the longest prefix that is whole UTF-8 text;
/// bytes that can never be UTF-8 become U+FFFD, a sequence cut at the end of the chunk
/// waits for the next one (asciicast events are JSON strings).
pub fn take_utf8(pending: &mut Vec<u8>, chunk: &[u8]) -> String {
    pending.extend_from_slice(chunk);
    let mut out = String::with_capacity(pending.len());
    let mut rest: &[u8] = pending;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                rest = &[];
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // valid_up_to() guarantees `good` is UTF-8.
                out.push_str(&String::from_utf8_lossy(good));
                match e.error_len() {
                    Some(n) => {
                        out.push('\u{FFFD}');
                        rest = bad.get(n..).unwrap_or_default();
                    }
                    None => {
                        rest = bad;
                        break;
                    }
                }
            }
        }
    }
    let keep = rest.to_vec();
    *pending = keep;
    out
}

impl Recorder {
    /// Creates the file `dir/name` and starts its writer.
    pub async fn start(
        settings: &RecordingSettings,
        name: &str,
        terminal: Terminal,
    ) -> std::io::Result<Recorder> {
        create_private_dir(&settings.dir).await?;
        let path = settings.dir.join(name);
        let mut opts = tokio::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let file = opts.open(&path).await?;
        let (tx, rx) = mpsc::channel(256);
        let task = tokio::spawn(write(file, rx, terminal));
        Ok(Recorder {
            tx,
            record_input: settings.record_input,
            done: std::sync::Mutex::new(Some(task)),
        })
    }

    /// Output from the target. Err when the recording failed (the channel must end).
    pub async fn output(&self, data: &Bytes) -> Result<(), ()> {
        self.tx
            .send(Event::Output(data.clone()))
            .await
            .map_err(|_| ())
    }

    /// What the person typed (kept only when configured).
    pub async fn input(&self, data: &Bytes) -> Result<(), ()> {
        if !self.record_input {
            return Ok(());
        }
        self.tx
            .send(Event::Input(data.clone()))
            .await
            .map_err(|_| ())
    }

    /// A terminal resize.
    pub async fn resize(&self, cols: u32, rows: u32) -> Result<(), ()> {
        self.tx
            .send(Event::Resize(cols, rows))
            .await
            .map_err(|_| ())
    }

    /// Ends the recording: the file is flushed and synced; its size and hash.
    pub async fn finish(&self) -> std::io::Result<Finished> {
        let _ = self.tx.send(Event::End).await;
        let task = self.done.lock().ok().and_then(|mut d| d.take());
        match task {
            Some(t) => t
                .await
                .map_err(|e| std::io::Error::other(format!("recording task failed: {e}")))?,
            None => Err(std::io::Error::other("recording already finished")),
        }
    }
}

async fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if tokio::fs::metadata(dir).await.is_ok() {
        return Ok(());
    }
    let mut b = tokio::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    b.mode(0o700);
    b.create(dir).await
}

async fn write(
    file: tokio::fs::File,
    mut rx: mpsc::Receiver<Event>,
    terminal: Terminal,
) -> std::io::Result<Finished> {
    let started = Instant::now();
    let mut out = tokio::io::BufWriter::with_capacity(64 * 1024, file);
    let mut hash = Sha256::new();
    let mut bytes = 0u64;
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut put = |line: String, hash: &mut Sha256| {
        hash.update(line.as_bytes());
        bytes += line.len() as u64;
        line
    };
    let h = put(header(&terminal, timestamp), &mut hash);
    out.write_all(h.as_bytes()).await?;
    let mut pending_out = Vec::new();
    let mut pending_in = Vec::new();
    while let Some(ev) = rx.recv().await {
        let t = (started.elapsed().as_micros() as f64) / 1e6;
        let line = match ev {
            Event::Output(d) => {
                let s = take_utf8(&mut pending_out, &d);
                if s.is_empty() {
                    continue;
                }
                event_line(t, "o", &s)
            }
            Event::Input(d) => {
                let s = take_utf8(&mut pending_in, &d);
                if s.is_empty() {
                    continue;
                }
                event_line(t, "i", &s)
            }
            Event::Resize(c, r) => event_line(t, "r", &format!("{c}x{r}")),
            Event::End => break,
        };
        let line = put(line, &mut hash);
        out.write_all(line.as_bytes()).await?;
    }
    out.flush().await?;
    let file = out.into_inner();
    file.sync_all().await?;
    Ok(Finished {
        bytes,
        sha256: hex_lower(&hash.finalize()),
    })
}

fn hex_lower(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_chunks_is_kept_whole() {
        let text = "héllo → wörld";
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            let mut pending = Vec::new();
            let mut got = take_utf8(&mut pending, &bytes[..cut]);
            got.push_str(&take_utf8(&mut pending, &bytes[cut..]));
            assert_eq!(got, text, "cut at {cut}");
            assert!(pending.is_empty());
        }
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut pending = Vec::new();
        assert_eq!(take_utf8(&mut pending, b"a\xffb"), "a\u{FFFD}b");
        assert!(pending.is_empty());
        // A cut sequence waits; if the next chunk does not complete it, it is invalid.
        assert_eq!(take_utf8(&mut pending, b"x\xe2\x82"), "x");
        assert_eq!(pending, b"\xe2\x82");
        assert_eq!(take_utf8(&mut pending, b"y"), "\u{FFFD}y");
    }

    #[test]
    fn lines_are_asciicast_v2() {
        let h = header(
            &Terminal {
                width: 80,
                height: 24,
                term: "xterm".into(),
                title: "alice@web".into(),
            },
            1_700_000_000,
        );
        let v: serde_json::Value = serde_json::from_str(h.trim_end()).unwrap();
        assert_eq!(v["version"], 2);
        assert_eq!(v["width"], 80);
        assert_eq!(v["env"]["TERM"], "xterm");
        let e = event_line(1.5, "o", "a\"b\r\n");
        let v: serde_json::Value = serde_json::from_str(e.trim_end()).unwrap();
        assert_eq!(v, serde_json::json!([1.5, "o", "a\"b\r\n"]));
    }

    #[tokio::test]
    async fn a_recording_is_written_and_hashed() {
        let dir = std::env::temp_dir().join(format!("postern-rec-{}", uuid::Uuid::new_v4()));
        let settings = RecordingSettings {
            dir: dir.clone(),
            record_input: false,
        };
        let rec = Recorder::start(
            &settings,
            "one.cast",
            Terminal {
                width: 100,
                height: 30,
                term: "xterm-256color".into(),
                title: "t".into(),
            },
        )
        .await
        .unwrap();
        rec.output(&Bytes::from_static(b"$ ls\r\n")).await.unwrap();
        rec.input(&Bytes::from_static(b"secret")).await.unwrap();
        rec.resize(120, 40).await.unwrap();
        rec.output(&Bytes::from_static(b"\xe2\x86")).await.unwrap();
        rec.output(&Bytes::from_static(b"\x92 done")).await.unwrap();
        let done = rec.finish().await.unwrap();
        let file = std::fs::read(dir.join("one.cast")).unwrap();
        assert_eq!(done.bytes, file.len() as u64);
        assert_eq!(done.sha256, hex_lower(&Sha256::digest(&file)));
        let text = String::from_utf8(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            !text.contains("secret"),
            "input is not recorded unless configured"
        );
        assert!(lines[2].contains("\"r\",\"120x40\""), "{text}");
        assert!(lines[3].contains("→ done"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("one.cast"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
