//! What files a channel moves: the SFTP protocol (the `sftp` subsystem, which `scp` also
//! uses by default) and the legacy scp protocol (`scp -t` / `scp -f` commands), read as they
//! pass without buffering file contents. Pure: bytes in, [`FileEvent`]s out.
//!
//! Only the head of each SFTP packet is kept (the fields that name files and handles); the
//! data of reads and writes is counted and skipped. A stream that breaks the protocol's
//! limits stops being readable, and the caller ends the channel (a transfer Postern cannot
//! audit does not go on).

use std::collections::HashMap;

/// The largest SFTP packet OpenSSH sends or accepts (`SFTP_MAX_MSG_LENGTH`), with room.
pub const MAX_SFTP_PACKET: u32 = 1024 * 1024;
/// The most of a packet kept to read its fields (two paths of 4096 bytes and change).
const HEAD_MAX: usize = 16 * 1024;
/// The longest legacy scp control line.
const MAX_SCP_LINE: usize = 8 * 1024;
/// The deepest directory nesting a legacy scp transfer may announce.
const MAX_SCP_DEPTH: usize = 256;

/// A file operation, as audited.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileEvent {
    /// `upload`, `download`, `open` (opened, nothing moved), `remove`, `rename`, `mkdir`,
    /// `rmdir`, `list`, `setstat`, `symlink`.
    pub op: &'static str,
    /// The path.
    pub path: String,
    /// The new path of a rename or the target of a symlink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Bytes moved.
    pub bytes: u64,
    /// Whether the server said it succeeded (SFTP status; scp: the file's data arrived whole).
    pub ok: bool,
    /// `sftp` or `scp`.
    pub via: &'static str,
}

/// The protocol broke its limits; auditing cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

/// Which way bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the person to the target.
    Up,
    /// From the target to the person.
    Down,
}

// SFTP packet types (draft-ietf-secsh-filexfer-02, protocol version 3).
const FXP_OPEN: u8 = 3;
const FXP_CLOSE: u8 = 4;
const FXP_READ: u8 = 5;
const FXP_WRITE: u8 = 6;
const FXP_SETSTAT: u8 = 9;
const FXP_OPENDIR: u8 = 11;
const FXP_REMOVE: u8 = 13;
const FXP_MKDIR: u8 = 14;
const FXP_RMDIR: u8 = 15;
const FXP_RENAME: u8 = 18;
const FXP_SYMLINK: u8 = 20;
const FXP_EXTENDED: u8 = 200;
const FXP_STATUS: u8 = 101;
const FXP_HANDLE: u8 = 102;
const FXP_DATA: u8 = 103;

/// The head of one SFTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Packet {
    /// `kind` of request with id and path(s).
    PathOp {
        kind: u8,
        id: u32,
        path: String,
        to: Option<String>,
        pflags: u32,
    },
    Close {
        id: u32,
        handle: Vec<u8>,
    },
    Read {
        id: u32,
        handle: Vec<u8>,
    },
    Write {
        handle: Vec<u8>,
        len: u64,
    },
    Handle {
        id: u32,
        handle: Vec<u8>,
    },
    Status {
        id: u32,
        code: u32,
    },
    Data {
        id: u32,
        len: u64,
    },
    Other,
}

/// Splits one direction of an SFTP stream into packet heads.
#[derive(Debug, Default)]
struct Framer {
    /// Bytes of the current packet seen (length prefix included).
    seen: usize,
    /// Its length (without the prefix), once known.
    len: Option<u32>,
    head: Vec<u8>,
}

impl Framer {
    fn feed(&mut self, mut data: &[u8], out: &mut Vec<Packet>) -> Result<(), Unreadable> {
        while !data.is_empty() {
            let Some(len) = self.len else {
                let need = 4 - self.head.len();
                let take = need.min(data.len());
                self.head.extend_from_slice(&data[..take]);
                data = &data[take..];
                self.seen += take;
                if self.head.len() == 4 {
                    let len = u32::from_be_bytes([
                        self.head[0],
                        self.head[1],
                        self.head[2],
                        self.head[3],
                    ]);
                    if len == 0 || len > MAX_SFTP_PACKET {
                        return Err(Unreadable(format!(
                            "an SFTP packet of {len} bytes is outside the protocol's limits"
                        )));
                    }
                    self.len = Some(len);
                    self.head.clear();
                }
                continue;
            };
            let total = len as usize + 4;
            if self.head.is_empty() {
                // The type first: it decides how much of the packet is kept.
                self.head.push(data[0]);
                data = &data[1..];
                self.seen += 1;
                if self.seen == total {
                    out.push(parse_head(&self.head, len));
                    self.head.clear();
                    self.len = None;
                    self.seen = 0;
                }
                continue;
            }
            let left = total - self.seen;
            let take = left.min(data.len());
            // Reads' and writes' data is counted, never kept: only their fields are.
            let limit = match self.head.first() {
                Some(&FXP_WRITE) => 1024,
                Some(&FXP_DATA) => 16,
                _ => HEAD_MAX,
            };
            let keep = take.min(limit.saturating_sub(self.head.len()));
            self.head.extend_from_slice(&data[..keep]);
            data = &data[take..];
            self.seen += take;
            if self.seen == total {
                out.push(parse_head(&self.head, len));
                self.head.clear();
                self.len = None;
                self.seen = 0;
            }
        }
        Ok(())
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (&x, rest) = self.b.split_first()?;
        self.b = rest;
        Some(x)
    }
    fn u32(&mut self) -> Option<u32> {
        let (x, rest) = self.b.split_first_chunk::<4>()?;
        self.b = rest;
        Some(u32::from_be_bytes(*x))
    }
    fn u64(&mut self) -> Option<u64> {
        let (x, rest) = self.b.split_first_chunk::<8>()?;
        self.b = rest;
        Some(u64::from_be_bytes(*x))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > self.b.len() {
            return None;
        }
        let (x, rest) = self.b.split_at(n);
        self.b = rest;
        Some(x)
    }
    fn string(&mut self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// Reads the fields Postern audits from a packet's head (`len`: the whole packet's length,
/// for the data size of writes).
fn parse_head(head: &[u8], len: u32) -> Packet {
    let mut r = Reader { b: head };
    let Some(kind) = r.u8() else {
        return Packet::Other;
    };
    let parsed = (|| -> Option<Packet> {
        Some(match kind {
            FXP_OPEN | FXP_OPENDIR | FXP_REMOVE | FXP_MKDIR | FXP_RMDIR | FXP_SETSTAT => {
                let id = r.u32()?;
                let path = r.string()?;
                let pflags = if kind == FXP_OPEN { r.u32()? } else { 0 };
                Packet::PathOp {
                    kind,
                    id,
                    path,
                    to: None,
                    pflags,
                }
            }
            FXP_RENAME | FXP_SYMLINK => {
                let id = r.u32()?;
                let path = r.string()?;
                let to = r.string()?;
                Packet::PathOp {
                    kind,
                    id,
                    path,
                    to: Some(to),
                    pflags: 0,
                }
            }
            FXP_EXTENDED => {
                let id = r.u32()?;
                let name = r.string()?;
                if name == "posix-rename@openssh.com" {
                    let path = r.string()?;
                    let to = r.string()?;
                    Packet::PathOp {
                        kind: FXP_RENAME,
                        id,
                        path,
                        to: Some(to),
                        pflags: 0,
                    }
                } else {
                    Packet::Other
                }
            }
            FXP_CLOSE => {
                let id = r.u32()?;
                Packet::Close {
                    id,
                    handle: r.bytes()?.to_vec(),
                }
            }
            FXP_READ => {
                let id = r.u32()?;
                Packet::Read {
                    id,
                    handle: r.bytes()?.to_vec(),
                }
            }
            FXP_WRITE => {
                let _id = r.u32()?;
                let handle = r.bytes()?.to_vec();
                let _offset = r.u64()?;
                // The data's length field; the data itself was skipped.
                let data_len = r.u32()?;
                let fixed = 1 + 4 + 4 + handle.len() as u64 + 8 + 4;
                Packet::Write {
                    handle,
                    len: u64::from(data_len).min(u64::from(len).saturating_sub(fixed)),
                }
            }
            FXP_HANDLE => {
                let id = r.u32()?;
                Packet::Handle {
                    id,
                    handle: r.bytes()?.to_vec(),
                }
            }
            FXP_STATUS => {
                let id = r.u32()?;
                Packet::Status { id, code: r.u32()? }
            }
            FXP_DATA => {
                let id = r.u32()?;
                let data_len = r.u32()?;
                Packet::Data {
                    id,
                    len: u64::from(data_len).min(u64::from(len).saturating_sub(9)),
                }
            }
            _ => Packet::Other,
        })
    })();
    parsed.unwrap_or(Packet::Other)
}

/// A file open through SFTP.
#[derive(Debug)]
struct OpenFile {
    path: String,
    dir: bool,
    read: u64,
    written: u64,
}

/// The file operations of one SFTP channel.
#[derive(Debug, Default)]
pub struct SftpAudit {
    up: Framer,
    down: Framer,
    /// Requests waiting for their answer, by id.
    pending: HashMap<u32, Packet>,
    /// Reads waiting for their data: id → handle.
    reads: HashMap<u32, Vec<u8>>,
    open: HashMap<Vec<u8>, OpenFile>,
    packets: Vec<Packet>,
}

/// Most requests tracked at once (a client pipelines a few dozen; more is abuse).
const MAX_PENDING: usize = 65_536;

impl SftpAudit {
    /// Feeds bytes going `dir`; returns the operations that completed.
    pub fn feed(&mut self, dir: Direction, data: &[u8]) -> Result<Vec<FileEvent>, Unreadable> {
        let mut packets = std::mem::take(&mut self.packets);
        match dir {
            Direction::Up => self.up.feed(data, &mut packets)?,
            Direction::Down => self.down.feed(data, &mut packets)?,
        }
        let mut events = Vec::new();
        for p in packets.drain(..) {
            self.on_packet(dir, p, &mut events);
        }
        self.packets = packets;
        if self.pending.len() > MAX_PENDING
            || self.reads.len() > MAX_PENDING
            || self.open.len() > MAX_PENDING
        {
            return Err(Unreadable("too many SFTP requests in flight".into()));
        }
        Ok(events)
    }

    /// Files still open when the channel ends, as events.
    pub fn finish(&mut self) -> Vec<FileEvent> {
        self.open
            .drain()
            .filter(|(_, f)| !f.dir)
            .map(|(_, f)| file_event(f, false))
            .collect()
    }

    fn on_packet(&mut self, dir: Direction, p: Packet, events: &mut Vec<FileEvent>) {
        match (dir, p) {
            (Direction::Up, p @ Packet::PathOp { .. }) => {
                if let Packet::PathOp { id, .. } = &p {
                    self.pending.insert(*id, p);
                }
            }
            (Direction::Up, Packet::Close { id, handle }) => {
                self.pending.insert(id, Packet::Close { id, handle });
            }
            (Direction::Up, Packet::Read { id, handle }) => {
                self.reads.insert(id, handle);
            }
            (Direction::Up, Packet::Write { handle, len }) => {
                if let Some(f) = self.open.get_mut(&handle) {
                    f.written += len;
                }
            }
            (Direction::Down, Packet::Data { id, len }) => {
                if let Some(h) = self.reads.remove(&id) {
                    if let Some(f) = self.open.get_mut(&h) {
                        f.read += len;
                    }
                }
            }
            (Direction::Down, Packet::Handle { id, handle }) => {
                if let Some(Packet::PathOp { kind, path, .. }) = self.pending.remove(&id) {
                    self.open.insert(
                        handle,
                        OpenFile {
                            path,
                            dir: kind == FXP_OPENDIR,
                            read: 0,
                            written: 0,
                        },
                    );
                }
            }
            (Direction::Down, Packet::Status { id, code }) => {
                self.reads.remove(&id);
                match self.pending.remove(&id) {
                    Some(Packet::Close { handle, .. }) => {
                        if let Some(f) = self.open.remove(&handle) {
                            events.push(file_event(f, code == 0));
                        }
                    }
                    Some(Packet::PathOp { kind, path, to, .. }) => {
                        let op = match kind {
                            FXP_OPEN => "open",
                            FXP_OPENDIR => "list",
                            FXP_REMOVE => "remove",
                            FXP_MKDIR => "mkdir",
                            FXP_RMDIR => "rmdir",
                            FXP_RENAME => "rename",
                            FXP_SYMLINK => "symlink",
                            _ => "setstat",
                        };
                        events.push(FileEvent {
                            op,
                            path,
                            to,
                            bytes: 0,
                            ok: code == 0,
                            via: "sftp",
                        });
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

fn file_event(f: OpenFile, ok: bool) -> FileEvent {
    let (op, bytes) = match (f.dir, f.written, f.read) {
        (true, _, _) => ("list", 0),
        (false, w, _) if w > 0 => ("upload", w),
        (false, _, r) if r > 0 => ("download", r),
        _ => ("open", 0),
    };
    FileEvent {
        op,
        path: f.path,
        to: None,
        bytes,
        ok,
        via: "sftp",
    }
}

/// The legacy scp protocol of one `scp -t` (upload) or `scp -f` (download) command: the
/// control lines of the side that sends files, and the file data skipped by its size.
#[derive(Debug)]
pub struct ScpAudit {
    /// The direction files travel.
    files_go: Direction,
    /// The path the command names.
    base: String,
    dirs: Vec<String>,
    line: Vec<u8>,
    /// The file being sent: name, size, bytes still to skip (its data and the status byte).
    current: Option<(String, u64, u64)>,
}

impl ScpAudit {
    /// The audit of an exec'd command, when it is the remote end of a legacy scp.
    pub fn for_command(command: &str) -> Option<ScpAudit> {
        let words: Vec<&str> = command.split_whitespace().collect();
        if words.first().map(|w| w.rsplit('/').next()) != Some(Some("scp")) {
            return None;
        }
        let mut files_go = None;
        let mut path = None;
        let mut it = words.iter().skip(1);
        while let Some(w) = it.next() {
            match *w {
                "-t" => files_go = Some(Direction::Up),
                "-f" => files_go = Some(Direction::Down),
                "--" => {
                    path = it.next().map(|s| s.to_string());
                    break;
                }
                w if w.starts_with('-') => {
                    if w.contains('t') && !w.contains('f') {
                        files_go = files_go.or(Some(Direction::Up));
                    }
                    if w.contains('f') && !w.contains('t') {
                        files_go = files_go.or(Some(Direction::Down));
                    }
                }
                w => path = Some(w.to_string()),
            }
        }
        Some(ScpAudit {
            files_go: files_go?,
            base: path.unwrap_or_else(|| ".".into()),
            dirs: Vec::new(),
            line: Vec::new(),
            current: None,
        })
    }

    fn path_of(&self, name: &str) -> String {
        let mut p = self.base.clone();
        for d in &self.dirs {
            p.push('/');
            p.push_str(d);
        }
        if self.files_go == Direction::Up || !self.dirs.is_empty() {
            // Uploads name the file inside the target path when it is a directory.
            if !self.dirs.is_empty() || self.base.ends_with('/') {
                if !p.ends_with('/') {
                    p.push('/');
                }
                p.push_str(name);
            }
        }
        p
    }

    /// Feeds bytes going `dir`; returns the files that completed.
    pub fn feed(&mut self, dir: Direction, mut data: &[u8]) -> Result<Vec<FileEvent>, Unreadable> {
        let mut events = Vec::new();
        if dir != self.files_go {
            return Ok(events);
        }
        while !data.is_empty() {
            if let Some((name, size, left)) = &mut self.current {
                let take = (*left).min(data.len() as u64);
                *left -= take;
                data = &data[take as usize..];
                if *left == 0 {
                    let (name, size) = (name.clone(), *size);
                    self.current = None;
                    events.push(FileEvent {
                        op: if self.files_go == Direction::Up {
                            "upload"
                        } else {
                            "download"
                        },
                        path: self.path_of(&name),
                        to: None,
                        bytes: size,
                        ok: true,
                        via: "scp",
                    });
                }
                continue;
            }
            match data.iter().position(|&b| b == b'\n') {
                None => {
                    self.line.extend_from_slice(data);
                    data = &[];
                }
                Some(i) => {
                    self.line.extend_from_slice(&data[..i]);
                    data = &data[i + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.on_line(&line)?;
                }
            }
            if self.line.len() > MAX_SCP_LINE {
                return Err(Unreadable("an scp control line is too long".into()));
            }
        }
        Ok(events)
    }

    fn on_line(&mut self, line: &[u8]) -> Result<(), Unreadable> {
        // A status byte (0 = fine) may precede a line in the same chunk.
        let line = match line.first() {
            Some(0) => &line[1..],
            _ => line,
        };
        let text = String::from_utf8_lossy(line);
        let bad = || Unreadable(format!("an scp control line is unreadable: {text:?}"));
        match line.first() {
            Some(b'C') => {
                let mut parts = text[1..].splitn(3, ' ');
                let _mode = parts.next().ok_or_else(bad)?;
                let size: u64 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let name = parts.next().ok_or_else(bad)?.to_string();
                // The data, then one status byte.
                self.current = Some((name, size, size.saturating_add(1)));
            }
            Some(b'D') => {
                let name = text[1..].splitn(3, ' ').nth(2).ok_or_else(bad)?.to_string();
                if self.dirs.len() >= MAX_SCP_DEPTH {
                    return Err(Unreadable(format!(
                        "scp directories nest deeper than {MAX_SCP_DEPTH}"
                    )));
                }
                self.dirs.push(name);
            }
            Some(b'E') => {
                self.dirs.pop();
            }
            Some(b'T') | None => {}
            // Warnings and errors (1, 2) are messages.
            Some(1) | Some(2) => {}
            Some(_) => return Err(bad()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut p = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        p.push(kind);
        p.extend_from_slice(body);
        p
    }
    fn s(b: &[u8]) -> Vec<u8> {
        let mut v = (b.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(b);
        v
    }
    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// An upload: OPEN, HANDLE, two WRITEs, CLOSE, STATUS ok — fed in every chunking.
    #[test]
    fn an_sftp_upload_is_one_event_with_its_size() {
        let up = cat(&[
            &packet(
                FXP_OPEN,
                &cat(&[
                    &1u32.to_be_bytes(),
                    &s(b"/tmp/x.bin"),
                    &0x1au32.to_be_bytes(),
                    &0u32.to_be_bytes(),
                ]),
            ),
            &packet(
                FXP_WRITE,
                &cat(&[
                    &2u32.to_be_bytes(),
                    &s(b"h1"),
                    &0u64.to_be_bytes(),
                    &s(&[7u8; 3000]),
                ]),
            ),
            &packet(
                FXP_WRITE,
                &cat(&[
                    &3u32.to_be_bytes(),
                    &s(b"h1"),
                    &3000u64.to_be_bytes(),
                    &s(&[7u8; 20000]),
                ]),
            ),
            &packet(FXP_CLOSE, &cat(&[&4u32.to_be_bytes(), &s(b"h1")])),
        ]);
        let handle = packet(FXP_HANDLE, &cat(&[&1u32.to_be_bytes(), &s(b"h1")]));
        let ok = packet(
            FXP_STATUS,
            &cat(&[&4u32.to_be_bytes(), &0u32.to_be_bytes(), &s(b""), &s(b"")]),
        );
        for chunk in [1usize, 3, 7, 100, 4096, 1 << 20] {
            let mut a = SftpAudit::default();
            // The OPEN goes first, then the server's HANDLE, then the rest.
            let first_len = u32::from_be_bytes(up[..4].try_into().unwrap()) as usize + 4;
            let (first, after) = up.split_at(first_len);
            let mut events = Vec::new();
            for c in first.chunks(chunk) {
                events.extend(a.feed(Direction::Up, c).unwrap());
            }
            events.extend(a.feed(Direction::Down, &handle).unwrap());
            for c in after.chunks(chunk) {
                events.extend(a.feed(Direction::Up, c).unwrap());
            }
            for c in ok.chunks(chunk) {
                events.extend(a.feed(Direction::Down, c).unwrap());
            }
            assert_eq!(
                events,
                vec![FileEvent {
                    op: "upload",
                    path: "/tmp/x.bin".into(),
                    to: None,
                    bytes: 23000,
                    ok: true,
                    via: "sftp"
                }],
                "chunk {chunk}"
            );
            assert!(a.head_is_small(), "write data is not kept");
        }
    }

    #[test]
    fn sftp_downloads_and_path_operations() {
        let mut a = SftpAudit::default();
        let mut ev = Vec::new();
        ev.extend(
            a.feed(
                Direction::Up,
                &packet(
                    FXP_OPEN,
                    &cat(&[&1u32.to_be_bytes(), &s(b"/etc/hosts"), &1u32.to_be_bytes()]),
                ),
            )
            .unwrap(),
        );
        ev.extend(
            a.feed(
                Direction::Down,
                &packet(FXP_HANDLE, &cat(&[&1u32.to_be_bytes(), &s(b"H")])),
            )
            .unwrap(),
        );
        ev.extend(
            a.feed(
                Direction::Up,
                &packet(
                    FXP_READ,
                    &cat(&[
                        &2u32.to_be_bytes(),
                        &s(b"H"),
                        &0u64.to_be_bytes(),
                        &32768u32.to_be_bytes(),
                    ]),
                ),
            )
            .unwrap(),
        );
        ev.extend(
            a.feed(
                Direction::Down,
                &packet(FXP_DATA, &cat(&[&2u32.to_be_bytes(), &s(&[1u8; 123])])),
            )
            .unwrap(),
        );
        ev.extend(
            a.feed(
                Direction::Up,
                &packet(
                    FXP_READ,
                    &cat(&[
                        &3u32.to_be_bytes(),
                        &s(b"H"),
                        &123u64.to_be_bytes(),
                        &32768u32.to_be_bytes(),
                    ]),
                ),
            )
            .unwrap(),
        );
        ev.extend(
            a.feed(
                Direction::Down,
                &packet(
                    FXP_STATUS,
                    &cat(&[&3u32.to_be_bytes(), &1u32.to_be_bytes()]),
                ),
            )
            .unwrap(),
        );
        ev.extend(
            a.feed(
                Direction::Up,
                &packet(FXP_CLOSE, &cat(&[&4u32.to_be_bytes(), &s(b"H")])),
            )
            .unwrap(),
        );
        ev.extend(
            a.feed(
                Direction::Down,
                &packet(
                    FXP_STATUS,
                    &cat(&[&4u32.to_be_bytes(), &0u32.to_be_bytes()]),
                ),
            )
            .unwrap(),
        );
        ev.extend(
            a.feed(
                Direction::Up,
                &packet(FXP_REMOVE, &cat(&[&5u32.to_be_bytes(), &s(b"/tmp/gone")])),
            )
            .unwrap(),
        );
        ev.extend(
            a.feed(
                Direction::Down,
                &packet(
                    FXP_STATUS,
                    &cat(&[&5u32.to_be_bytes(), &2u32.to_be_bytes()]),
                ),
            )
            .unwrap(),
        );
        ev.extend(
            a.feed(
                Direction::Up,
                &packet(
                    FXP_EXTENDED,
                    &cat(&[
                        &6u32.to_be_bytes(),
                        &s(b"posix-rename@openssh.com"),
                        &s(b"/a"),
                        &s(b"/b"),
                    ]),
                ),
            )
            .unwrap(),
        );
        ev.extend(
            a.feed(
                Direction::Down,
                &packet(
                    FXP_STATUS,
                    &cat(&[&6u32.to_be_bytes(), &0u32.to_be_bytes()]),
                ),
            )
            .unwrap(),
        );
        assert_eq!(
            ev,
            vec![
                FileEvent {
                    op: "download",
                    path: "/etc/hosts".into(),
                    to: None,
                    bytes: 123,
                    ok: true,
                    via: "sftp"
                },
                FileEvent {
                    op: "remove",
                    path: "/tmp/gone".into(),
                    to: None,
                    bytes: 0,
                    ok: false,
                    via: "sftp"
                },
                FileEvent {
                    op: "rename",
                    path: "/a".into(),
                    to: Some("/b".into()),
                    bytes: 0,
                    ok: true,
                    via: "sftp"
                },
            ]
        );
    }

    #[test]
    fn oversized_or_empty_sftp_packets_are_unreadable() {
        let mut a = SftpAudit::default();
        assert!(a
            .feed(Direction::Up, &(MAX_SFTP_PACKET + 1).to_be_bytes())
            .is_err());
        let mut b = SftpAudit::default();
        assert!(b.feed(Direction::Down, &0u32.to_be_bytes()).is_err());
        // Garbage inside a well-framed packet is just not an operation.
        let mut c = SftpAudit::default();
        assert_eq!(
            c.feed(Direction::Up, &packet(FXP_OPEN, &[1, 2])).unwrap(),
            vec![]
        );
    }

    #[test]
    fn legacy_scp_uploads_and_downloads() {
        let mut up = ScpAudit::for_command("scp -t /tmp/dest.bin").unwrap();
        let stream = cat(&[b"C0644 5 local.bin\n", b"hello", &[0u8]]);
        let mut ev = Vec::new();
        for c in stream.chunks(2) {
            ev.extend(up.feed(Direction::Up, c).unwrap());
        }
        // The sink's acknowledgements go the other way and are ignored.
        ev.extend(up.feed(Direction::Down, &[0, 0, 0]).unwrap());
        assert_eq!(
            ev,
            vec![FileEvent {
                op: "upload",
                path: "/tmp/dest.bin".into(),
                to: None,
                bytes: 5,
                ok: true,
                via: "scp"
            }]
        );

        let mut down = ScpAudit::for_command("scp -r -f /srv").unwrap();
        let stream = cat(&[
            b"D0755 0 srv\n",
            b"T1 0 1 0\n",
            b"C0600 3 a.txt\n",
            b"abc",
            &[0],
            b"E\n",
        ]);
        let ev = down.feed(Direction::Down, &stream).unwrap();
        assert_eq!(
            ev,
            vec![FileEvent {
                op: "download",
                path: "/srv/srv/a.txt".into(),
                to: None,
                bytes: 3,
                ok: true,
                via: "scp"
            }]
        );

        // Found by fuzzing: the largest size announced, and endless nesting.
        let mut huge = ScpAudit::for_command("scp -t /x").unwrap();
        assert!(huge
            .feed(Direction::Up, b"C0644 18446744073709551615 f\nabc")
            .unwrap()
            .is_empty());
        let mut deep = ScpAudit::for_command("scp -r -t /x").unwrap();
        let nest = b"D0755 0 d\n".repeat(MAX_SCP_DEPTH + 1);
        assert!(deep.feed(Direction::Up, &nest).is_err());

        assert!(ScpAudit::for_command("ls -la").is_none());
        assert!(ScpAudit::for_command("/usr/bin/scp -f x").is_some());
        let mut bad = ScpAudit::for_command("scp -t x").unwrap();
        assert!(bad.feed(Direction::Up, b"Zgarbage\n").is_err());
        assert!(bad.feed(Direction::Up, &[b'C'; MAX_SCP_LINE + 10]).is_err());
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic, and chunking never changes what is seen.
        #[test]
        fn chunking_does_not_matter(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096), chunk in 1usize..64, down in proptest::prelude::any::<bool>()) {
            let dir = if down { Direction::Down } else { Direction::Up };
            let whole = SftpAudit::default().feed(dir, &data);
            let mut pieces = SftpAudit::default();
            let mut got = Ok(Vec::new());
            for c in data.chunks(chunk) {
                match pieces.feed(dir, c) {
                    Ok(mut ev) => { if let Ok(v) = &mut got { v.append(&mut ev); } }
                    Err(e) => { got = Err(e); break; }
                }
            }
            proptest::prop_assert_eq!(whole.is_err(), got.is_err());
            if let (Ok(a), Ok(b)) = (whole, got) {
                proptest::prop_assert_eq!(a, b);
            }
            let mut scp = ScpAudit::for_command("scp -t /x").unwrap();
            let _ = scp.feed(dir, &data);
        }

        /// A well-formed upload is one event of the right size however it is cut.
        #[test]
        fn uploads_of_any_size(sizes in proptest::collection::vec(1usize..70_000, 1..5), chunk in 1usize..5000) {
            let mut up = packet(FXP_OPEN, &cat(&[&1u32.to_be_bytes(), &s(b"/f"), &0x1au32.to_be_bytes()]));
            let mut offset = 0u64;
            for (i, n) in sizes.iter().enumerate() {
                up.extend(packet(FXP_WRITE, &cat(&[&(i as u32 + 2).to_be_bytes(), &s(b"h"), &offset.to_be_bytes(), &s(&vec![0u8; *n])])));
                offset += *n as u64;
            }
            up.extend(packet(FXP_CLOSE, &cat(&[&99u32.to_be_bytes(), &s(b"h")])));
            let mut a = SftpAudit::default();
            let first = u32::from_be_bytes(up[..4].try_into().unwrap()) as usize + 4;
            let mut events = a.feed(Direction::Up, &up[..first]).unwrap();
            events.extend(a.feed(Direction::Down, &packet(FXP_HANDLE, &cat(&[&1u32.to_be_bytes(), &s(b"h")]))).unwrap());
            for c in up[first..].chunks(chunk) {
                events.extend(a.feed(Direction::Up, c).unwrap());
            }
            events.extend(a.feed(Direction::Down, &packet(FXP_STATUS, &cat(&[&99u32.to_be_bytes(), &0u32.to_be_bytes()]))).unwrap());
            proptest::prop_assert_eq!(events.len(), 1);
            proptest::prop_assert_eq!(events[0].bytes, offset);
            proptest::prop_assert_eq!(events[0].op, "upload");
        }
    }

    impl SftpAudit {
        fn head_is_small(&self) -> bool {
            self.up.head.capacity() <= 2048 && self.down.head.capacity() <= 2048
        }
    }
}
