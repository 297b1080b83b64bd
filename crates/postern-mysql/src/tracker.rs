//! Follows the server's responses packet by packet (no I/O): knows, for each command, where
//! its response ends — OK / ERR, result sets with or without EOF markers, multiple results,
//! prepared-statement metadata — and what it said (rows, affected rows, error), without ever
//! holding a row: a packet body Postern need not read is passed over as it streams by.

use crate::codec::{self, CodecError, ServerError, MAX_PAYLOAD};

/// Largest response packet the tracker waits for whole (OK, ERR, EOF, column counts and
/// definitions are far smaller); bigger ones can only be rows.
pub const MAX_INSPECTED: usize = 1 << 20;

/// The shape of the response a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// COM_QUERY, COM_STMT_EXECUTE: OK, ERR, or result sets (several with MORE_RESULTS).
    Results,
    /// COM_STMT_PREPARE: the statement OK with parameter and column definitions, or ERR.
    Prepare,
    /// One OK or ERR (COM_PING, COM_INIT_DB, COM_STMT_RESET, COM_RESET_CONNECTION, …).
    Simple,
    /// One packet of any kind (COM_STATISTICS, COM_SET_OPTION).
    OnePacket,
    /// Column definitions up to EOF, or ERR (COM_FIELD_LIST).
    UntilEof,
    /// Rows up to EOF, or ERR (COM_STMT_FETCH).
    Rows,
}

/// What a finished response said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Rows sent (all result sets).
    pub rows: u64,
    /// Affected rows (all OK packets).
    pub affected: u64,
    /// Result sets and OK packets seen.
    pub results: u32,
    /// The error that ended it, if any.
    pub error: Option<ServerError>,
    /// COM_STMT_PREPARE: the new statement's id.
    pub statement_id: Option<u32>,
    /// COM_STMT_PREPARE: how many parameters it takes.
    pub params: u16,
    /// Server status flags of the last OK / EOF.
    pub status: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    /// The first packet of a result (OK / ERR / column count).
    First,
    Columns(u64),
    ColumnsEof,
    Rows,
    PrepareFirst,
    Params {
        left: u64,
        columns: u64,
    },
    ParamsEof {
        columns: u64,
    },
    PrepColumns(u64),
    PrepColumnsEof,
    Simple,
    OnePacket,
    UntilEof,
    /// The server asked for a LOCAL INFILE file: the client's data packets are under way.
    LocalInfile,
}

/// What [`Tracker::feed`] did.
#[derive(Debug, Default)]
pub struct Fed {
    /// Bytes of the input that may go on to the client now.
    pub consumed: usize,
    /// The response ended at `consumed`.
    pub done: Option<Outcome>,
    /// The server asked for the file of an allowed `LOAD DATA LOCAL INFILE` (the request
    /// ends at `consumed`): the client's next packets are the file, up to an empty one.
    pub local_infile: bool,
}

/// What an inspected packet was (see [`Tracker::inspect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// A result set's column definition.
    ColumnDef,
    /// A row of a result set.
    Row,
    /// An ERR packet.
    Err,
    /// The end of one result (its OK, or the EOF after its rows).
    ResultEnd,
}

/// A packet read whole while inspecting: where it starts in the slice given to
/// [`Tracker::feed`] (its 4-byte header), its payload length, and what it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// Offset of the packet's header.
    pub at: usize,
    /// Payload length.
    pub len: usize,
    /// What it was.
    pub kind: Seen,
}

/// Follows one response at a time.
#[derive(Debug)]
pub struct Tracker {
    deprecate_eof: bool,
    /// Rows are read whole (up to one physical packet) and reported as [`Event`]s.
    inspect: bool,
    events: Vec<Event>,
    /// The file name a LOCAL INFILE request may name for the command being followed.
    local_file: Option<Vec<u8>>,
    state: State,
    /// Body bytes of the current packet still to pass over.
    skip: usize,
    /// The current logical packet continues in the next physical packet.
    continued: bool,
    outcome: Outcome,
}

const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x40;

impl Tracker {
    /// A tracker for a connection with (or without) CLIENT_DEPRECATE_EOF.
    pub fn new(deprecate_eof: bool) -> Self {
        Self {
            deprecate_eof,
            inspect: false,
            events: Vec::new(),
            local_file: None,
            state: State::Idle,
            skip: 0,
            continued: false,
            outcome: Outcome::default(),
        }
    }

    /// Reads rows whole and reports column definitions, rows, errors and result ends as
    /// [`Event`]s (for masking); a row longer than one physical packet (16 MiB) is then an
    /// error.
    pub fn inspect(&mut self, on: bool) {
        self.inspect = on;
    }

    /// The packets inspected by the last [`Tracker::feed`].
    pub fn take_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// The command being followed is a judged `LOAD DATA LOCAL INFILE 'name'`: the server
    /// may ask for that file (and no other).
    pub fn allow_local_infile(&mut self, name: &[u8]) {
        self.local_file = Some(name.to_vec());
    }

    /// The client's file data ended (its empty packet went upstream): the server's answer
    /// follows.
    pub fn local_infile_sent(&mut self) {
        if self.state == State::LocalInfile {
            self.state = State::First;
        }
    }

    /// Whether a response is being followed.
    pub fn busy(&self) -> bool {
        self.state != State::Idle
    }

    /// Starts following the response to a command.
    pub fn expect(&mut self, e: Expect) {
        self.outcome = Outcome::default();
        self.skip = 0;
        self.continued = false;
        self.local_file = None;
        self.state = match e {
            Expect::Results => State::First,
            Expect::Prepare => State::PrepareFirst,
            Expect::Simple => State::Simple,
            Expect::OnePacket => State::OnePacket,
            Expect::UntilEof => State::UntilEof,
            Expect::Rows => State::Rows,
        };
    }

    /// Reads server bytes: returns how many may be passed on, and the outcome when the
    /// response ended there (the bytes after it belong to the next response).
    pub fn feed(&mut self, buf: &[u8]) -> Result<Fed, CodecError> {
        self.events.clear();
        let mut at = 0;
        loop {
            if self.state == State::Idle || self.state == State::LocalInfile {
                return Ok(Fed {
                    consumed: at,
                    done: None,
                    local_infile: false,
                });
            }
            if self.skip > 0 {
                let n = self.skip.min(buf.len() - at);
                self.skip -= n;
                at += n;
                if self.skip > 0 {
                    return Ok(Fed {
                        consumed: at,
                        done: None,
                        local_infile: false,
                    });
                }
                continue;
            }
            let Some((len, _seq)) = codec::header(&buf[at..]) else {
                return Ok(Fed {
                    consumed: at,
                    done: None,
                    local_infile: false,
                });
            };
            let continues = len == MAX_PAYLOAD;
            if self.continued {
                // The tail of a packet whose head was handled already.
                self.continued = continues;
                at += 4;
                self.skip = len;
                continue;
            }
            let body = &buf[at + 4..];
            if self.inspect && continues && self.state == State::Rows {
                return Err(CodecError::TooLong(len, MAX_PAYLOAD - 1));
            }
            let max = if self.inspect && self.state == State::Rows {
                MAX_PAYLOAD
            } else {
                MAX_INSPECTED
            };
            if len > max {
                // Only rows are this big: their first byte is enough.
                if body.is_empty() {
                    return Ok(Fed {
                        consumed: at,
                        done: None,
                        local_infile: false,
                    });
                }
                if self.state != State::Rows {
                    return Err(CodecError::TooLong(len, MAX_INSPECTED));
                }
                self.outcome.rows += 1;
                self.continued = continues;
                at += 4;
                self.skip = len;
                continue;
            }
            if body.len() < len {
                return Ok(Fed {
                    consumed: at,
                    done: None,
                    local_infile: false,
                });
            }
            let payload = &body[..len];
            let start = at;
            at += 4 + len;
            self.continued = continues;
            let before = self.state;
            let results = self.outcome.results;
            let ended = self.packet(payload)?;
            if self.state == State::LocalInfile {
                return Ok(Fed {
                    consumed: at,
                    done: None,
                    local_infile: true,
                });
            }
            if self.inspect {
                let kind = if payload.first() == Some(&0xff) {
                    Some(Seen::Err)
                } else if self.outcome.results != results {
                    Some(Seen::ResultEnd)
                } else {
                    match before {
                        State::Columns(_) => Some(Seen::ColumnDef),
                        State::Rows => Some(Seen::Row),
                        _ => None,
                    }
                };
                if let Some(kind) = kind {
                    self.events.push(Event {
                        at: start,
                        len,
                        kind,
                    });
                }
            }
            if ended {
                let done = std::mem::take(&mut self.outcome);
                self.state = State::Idle;
                return Ok(Fed {
                    consumed: at,
                    done: Some(done),
                    local_infile: false,
                });
            }
        }
    }

    fn end_of_result(&mut self, status: u16) -> bool {
        self.outcome.status = status;
        self.outcome.results += 1;
        if status & codec::SERVER_MORE_RESULTS_EXISTS != 0 {
            self.state = State::First;
            false
        } else {
            true
        }
    }

    fn error(&mut self, p: &[u8]) -> Result<bool, CodecError> {
        self.outcome.error = Some(codec::parse_err(p)?);
        Ok(true)
    }

    fn eof_status(&self, p: &[u8]) -> Result<u16, CodecError> {
        if self.deprecate_eof {
            codec::parse_ok(p).map(|o| o.status)
        } else {
            codec::parse_eof(p)
        }
    }

    /// Handles one whole packet; true when the response ended with it.
    fn packet(&mut self, p: &[u8]) -> Result<bool, CodecError> {
        let first = p.first().copied();
        match self.state {
            State::Idle | State::LocalInfile => Ok(false),
            State::First => match first {
                Some(0x00) => {
                    let ok = codec::parse_ok(p)?;
                    self.outcome.affected += ok.affected;
                    Ok(self.end_of_result(ok.status))
                }
                Some(0xff) => self.error(p),
                Some(0xfb) => match &self.local_file {
                    Some(name) if p[1..] == name[..] => {
                        self.local_file = None;
                        self.state = State::LocalInfile;
                        Ok(false)
                    }
                    _ => Err(CodecError::Malformed(
                        "response (LOCAL INFILE request for a file no allowed statement named)",
                    )),
                },
                Some(_) => {
                    let n = codec::Reader::new(p, "column count")
                        .lenenc()?
                        .ok_or(CodecError::Malformed("column count"))?;
                    self.state = State::Columns(n);
                    Ok(false)
                }
                None => Err(CodecError::Malformed("empty response packet")),
            },
            State::Columns(n) => {
                if first == Some(0xff) {
                    return self.error(p);
                }
                self.state = match n.saturating_sub(1) {
                    0 if self.deprecate_eof => State::Rows,
                    0 => State::ColumnsEof,
                    left => State::Columns(left),
                };
                Ok(false)
            }
            State::ColumnsEof => {
                if first == Some(0xff) {
                    return self.error(p);
                }
                let status = codec::parse_eof(p)?;
                if status & SERVER_STATUS_CURSOR_EXISTS != 0 {
                    // An open cursor: rows come with COM_STMT_FETCH.
                    self.outcome.status = status;
                    return Ok(true);
                }
                self.state = State::Rows;
                Ok(false)
            }
            State::Rows => {
                if first == Some(0xff) {
                    return self.error(p);
                }
                if codec::is_eof(p, self.deprecate_eof) {
                    let status = self.eof_status(p)?;
                    return Ok(self.end_of_result(status));
                }
                self.outcome.rows += 1;
                Ok(false)
            }
            State::PrepareFirst => match first {
                Some(0x00) => {
                    let mut r = codec::Reader::new(p, "prepare OK");
                    r.u8()?;
                    let id = r.u32()?;
                    let columns = u64::from(r.u16()?);
                    let params = r.u16()?;
                    self.outcome.statement_id = Some(id);
                    self.outcome.params = params;
                    let params = u64::from(params);
                    self.state = State::Params {
                        left: params,
                        columns,
                    };
                    if params == 0 {
                        return Ok(self.after_params(columns));
                    }
                    Ok(false)
                }
                Some(0xff) => self.error(p),
                _ => Err(CodecError::Malformed("prepare response")),
            },
            State::Params { left, columns } => {
                let left = left.saturating_sub(1);
                if left > 0 {
                    self.state = State::Params { left, columns };
                    return Ok(false);
                }
                if self.deprecate_eof {
                    return Ok(self.after_params(columns));
                }
                self.state = State::ParamsEof { columns };
                Ok(false)
            }
            State::ParamsEof { columns } => Ok(self.after_params(columns)),
            State::PrepColumns(n) => {
                let left = n.saturating_sub(1);
                if left > 0 {
                    self.state = State::PrepColumns(left);
                    return Ok(false);
                }
                if self.deprecate_eof {
                    return Ok(true);
                }
                self.state = State::PrepColumnsEof;
                Ok(false)
            }
            State::PrepColumnsEof => Ok(true),
            State::Simple => match first {
                Some(0xff) => self.error(p),
                _ => {
                    if let Ok(ok) = codec::parse_ok(p) {
                        self.outcome.affected += ok.affected;
                        self.outcome.status = ok.status;
                    }
                    Ok(true)
                }
            },
            State::OnePacket => {
                if first == Some(0xff) {
                    return self.error(p);
                }
                Ok(true)
            }
            State::UntilEof => {
                if first == Some(0xff) {
                    return self.error(p);
                }
                Ok(codec::is_eof(p, self.deprecate_eof))
            }
        }
    }

    /// After the parameter definitions of a prepare response: the columns, or the end.
    fn after_params(&mut self, columns: u64) -> bool {
        if columns == 0 {
            return true;
        }
        self.state = State::PrepColumns(columns);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{put_lenenc, put_packet};
    use bytes::{BufMut, BytesMut};

    fn packets(payloads: &[&[u8]]) -> BytesMut {
        let mut out = BytesMut::new();
        let mut seq = 1;
        for p in payloads {
            seq = put_packet(&mut out, seq, p);
        }
        out
    }

    fn eof(status: u16) -> Vec<u8> {
        let mut v = vec![0xfe, 0, 0];
        v.extend_from_slice(&status.to_le_bytes());
        v
    }

    fn count(n: u64) -> Vec<u8> {
        let mut b = BytesMut::new();
        put_lenenc(&mut b, n);
        b.to_vec()
    }

    /// Feeds `wire` in pieces of `step` bytes, as a socket might deliver it.
    fn run(t: &mut Tracker, wire: &[u8], step: usize) -> (usize, Option<Outcome>) {
        let mut buf = Vec::new();
        let mut passed = 0;
        for chunk in wire.chunks(step) {
            buf.extend_from_slice(chunk);
            let fed = t.feed(&buf).unwrap();
            passed += fed.consumed;
            buf.drain(..fed.consumed);
            if let Some(o) = fed.done {
                return (passed, Some(o));
            }
        }
        (passed, None)
    }

    #[test]
    fn local_infile_requests_only_for_the_judged_file() {
        let ok = crate::codec::ok(3, 2, "");
        let request = |name: &[u8]| {
            let mut p = vec![0xfb];
            p.extend_from_slice(name);
            packets(&[&p])
        };
        let mut t = Tracker::new(true);
        t.expect(Expect::Results);
        t.allow_local_infile(b"/tmp/a.csv");
        let wire = request(b"/tmp/a.csv");
        let fed = t.feed(&wire).unwrap();
        assert!(fed.local_infile && fed.done.is_none());
        assert_eq!(fed.consumed, wire.len());
        // Until the client's file went up, nothing more is read.
        let answer = packets(&[&ok]);
        assert_eq!(t.feed(&answer).unwrap().consumed, 0);
        t.local_infile_sent();
        let fed = t.feed(&answer).unwrap();
        assert_eq!(fed.done.map(|o| o.affected), Some(3));
        // Another file, or a request the statement never allowed: refused.
        t.expect(Expect::Results);
        t.allow_local_infile(b"/tmp/a.csv");
        assert!(t.feed(&request(b"/etc/passwd")).is_err());
        t.expect(Expect::Results);
        assert!(t.feed(&request(b"/tmp/a.csv")).is_err());
    }

    #[test]
    fn inspecting_reports_columns_rows_errors_and_result_ends() {
        let mut t = Tracker::new(false);
        t.inspect(true);
        t.expect(Expect::Results);
        let wire = packets(&[
            &count(2),
            b"coldef1",
            b"coldef2",
            &eof(2 | codec::SERVER_MORE_RESULTS_EXISTS),
            b"\x01a\x01b",
            &eof(2 | codec::SERVER_MORE_RESULTS_EXISTS),
            &crate::codec::err(1062, "23000", "Duplicate entry"),
        ]);
        let fed = t.feed(&wire).unwrap();
        assert_eq!(fed.consumed, wire.len());
        assert!(fed.done.is_some());
        let kinds: Vec<Seen> = t.take_events().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                Seen::ColumnDef,
                Seen::ColumnDef,
                Seen::Row,
                Seen::ResultEnd,
                Seen::Err
            ]
        );
        // Offsets point at each packet's header.
        t.expect(Expect::Results);
        let wire = packets(&[&count(1), b"c", &eof(2), b"\x01x", &eof(2)]);
        t.feed(&wire).unwrap();
        let row = t.take_events().find(|e| e.kind == Seen::Row).unwrap();
        assert_eq!(&wire[row.at + 4..row.at + 4 + row.len], b"\x01x");
        // A row that does not fit one packet cannot be masked: an error, not a pass.
        t.expect(Expect::Rows);
        let mut big = BytesMut::new();
        big.put_slice(&[0xff, 0xff, 0xff, 0]);
        big.put_slice(&[1, 2, 3]);
        assert!(t.feed(&big).is_err());
    }

    #[test]
    fn result_set_with_eof_markers_in_any_chunking() {
        let ok = crate::codec::ok(0, 2, "");
        let wire = packets(&[
            &count(2),
            b"coldef1",
            b"coldef2",
            &eof(2),
            b"\x01a\x01b",
            b"\x00\x01c",
            &eof(2),
            &ok, // the next response's: must not be consumed
        ]);
        for step in [1, 3, 7, 1000] {
            let mut t = Tracker::new(false);
            t.expect(Expect::Results);
            let (passed, o) = run(&mut t, &wire, step);
            let o = o.unwrap();
            assert_eq!(o.rows, 2, "step {step}");
            assert_eq!(passed, wire.len() - 4 - ok.len());
            assert!(!t.busy());
        }
    }

    #[test]
    fn multi_results_deprecate_eof_and_errors() {
        let mut more = BytesMut::new();
        more.put_u8(0xfe);
        put_lenenc(&mut more, 0);
        put_lenenc(&mut more, 0);
        more.put_u16_le(crate::codec::SERVER_MORE_RESULTS_EXISTS | 2);
        more.put_u16_le(0);
        let wire = packets(&[
            &count(1),
            b"coldef",
            b"\x01x",
            &more,
            &crate::codec::ok(3, 2, ""),
        ]);
        let mut t = Tracker::new(true);
        t.expect(Expect::Results);
        let (passed, o) = run(&mut t, &wire, 5);
        let o = o.unwrap();
        assert_eq!(
            (o.rows, o.affected, o.results, passed),
            (1, 3, 2, wire.len())
        );

        let wire = packets(&[
            &count(1),
            b"coldef",
            b"\x01x",
            &crate::codec::err(1317, "70100", "Query execution was interrupted"),
        ]);
        let mut t = Tracker::new(true);
        t.expect(Expect::Results);
        let o = run(&mut t, &wire, 4).1.unwrap();
        assert_eq!(o.error.unwrap().code, 1317);
        assert_eq!(o.rows, 1);
    }

    #[test]
    fn prepare_response() {
        let mut ok = vec![0u8];
        ok.extend_from_slice(&7u32.to_le_bytes());
        ok.extend_from_slice(&1u16.to_le_bytes());
        ok.extend_from_slice(&2u16.to_le_bytes());
        ok.extend_from_slice(&[0, 0, 0]);
        let wire = packets(&[&ok, b"p1", b"p2", &eof(2), b"c1", &eof(2)]);
        let mut t = Tracker::new(false);
        t.expect(Expect::Prepare);
        let (passed, o) = run(&mut t, &wire, 2);
        assert_eq!(o.unwrap().statement_id, Some(7));
        assert_eq!(passed, wire.len());
    }

    #[test]
    fn big_rows_stream_without_being_held() {
        let big = vec![b'x'; MAX_PAYLOAD + 10];
        let mut row = BytesMut::new();
        crate::codec::put_lenenc_bytes(&mut row, &big);
        let wire = packets(&[&count(1), b"coldef", &eof(2), &row, &eof(2)]);
        let mut t = Tracker::new(false);
        t.expect(Expect::Results);
        // Deliver in 64 KiB pieces; the tracker never needs more than one piece at a time.
        let mut passed = 0;
        let mut pending: Vec<u8> = Vec::new();
        let mut done = None;
        for chunk in wire.chunks(65536) {
            pending.extend_from_slice(chunk);
            let fed = t.feed(&pending).unwrap();
            passed += fed.consumed;
            pending.drain(..fed.consumed);
            assert!(pending.len() < 2 * 65536);
            if fed.done.is_some() {
                done = fed.done;
            }
        }
        assert_eq!(done.unwrap().rows, 1);
        assert_eq!(passed, wire.len());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_garbage(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400), e in 0u8..6) {
            let mut t = Tracker::new(e % 2 == 0);
            t.expect([Expect::Results, Expect::Prepare, Expect::Simple, Expect::OnePacket, Expect::UntilEof, Expect::Rows][e as usize]);
            let _ = t.feed(&b);
        }
    }
}
