//! Masking on the wire (A4): follows which result each server message belongs to, learns
//! each result's columns from its RowDescription (source table OID and attribute number,
//! type, format), and rewrites the values of masked columns in DataRow messages — text or
//! binary, always a value valid for the column's type, or NULL.
//!
//! No I/O. The relay feeds it the client's Query / Parse / Bind / Describe / Execute /
//! Close / Sync and the server's RowDescription / NoData / DataRow / CommandComplete /
//! EmptyQueryResponse / PortalSuspended / ErrorResponse / ReadyForQuery. Results whose
//! columns need no masking are left alone: their rows are never parsed or copied.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::BytesMut;
use postern_audit::MaskedColumn;
use postern_masking::ColumnClass;
use postern_policy::{Mask, SessionMasking, StatementMask};

use crate::codec::{cstr_bytes, CodecError};

/// Plans of the statements of one message, in order (`None`: needs no lineage masking).
pub type Plans = Arc<Vec<Option<StatementMask>>>;

/// One result column as the server described it.
#[derive(Debug, Clone)]
struct Column {
    name: Box<str>,
    table: u32,
    attnum: i16,
    type_oid: u32,
    binary: bool,
}

/// What to do to column `i` of the current rows.
#[derive(Debug, Clone, Copy)]
struct ColumnMask {
    mask: Mask,
    class: ColumnClass,
    binary: bool,
}

#[derive(Debug)]
enum Expect {
    Query { plans: Option<Plans>, index: usize },
    DescribeStatement(Box<str>),
    DescribePortal(Box<str>),
    Execute(Box<str>),
    Sync,
}

#[derive(Debug, Clone, Default)]
struct Portal {
    plan: Option<StatementMask>,
    columns: Option<Arc<Vec<Column>>>,
    formats: Vec<i16>,
}

/// A prepared statement's plan and (once described) result columns.
type Described = (Option<StatementMask>, Option<Arc<Vec<Column>>>);

/// The masking state of one session.
#[derive(Debug)]
pub struct Masker {
    masking: Arc<SessionMasking>,
    key: zeroize::Zeroizing<[u8; 32]>,
    /// Prepared statements: their plan and, once described, their columns.
    statements: HashMap<Box<str>, Described>,
    portals: HashMap<Box<str>, Portal>,
    queue: VecDeque<Expect>,
    /// Masks of the rows now arriving (`None`: forward them untouched).
    current: Option<Vec<Option<ColumnMask>>>,
    /// The current Execute's masks were worked out.
    current_set: bool,
    /// The columns of the result now starting that are masked, for the audit trail (see
    /// [`Masker::take_masked`]).
    noted: Vec<MaskedColumn>,
}

fn int16(b: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn int32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// The columns of a RowDescription body.
fn row_description(body: &[u8]) -> Option<Vec<Column>> {
    let n = usize::try_from(int16(body, 0)?).ok()?;
    let mut at = 2;
    let mut cols = Vec::with_capacity(n.min(1664));
    for _ in 0..n {
        let (name, rest) = cstr_bytes(body.get(at..)?)?;
        at = body.len() - rest.len();
        cols.push(Column {
            name: String::from_utf8_lossy(name).into(),
            table: int32(body, at)?,
            attnum: int16(body, at + 4)?,
            type_oid: int32(body, at + 6)?,
            binary: int16(body, at + 16)? == 1,
        });
        at += 18;
    }
    Some(cols)
}

impl Masker {
    /// A masker for a session under `masking`; `key` keys hash masking.
    pub fn new(masking: Arc<SessionMasking>, key: zeroize::Zeroizing<[u8; 32]>) -> Self {
        Self {
            masking,
            key,
            statements: HashMap::new(),
            portals: HashMap::new(),
            queue: VecDeque::new(),
            current: None,
            current_set: false,
            noted: Vec::new(),
        }
    }

    /// The masked columns of the result that just started (after a RowDescription or the
    /// first DataRow of an Execute), once: the relay hands them to the statement tracker.
    pub fn take_masked(&mut self) -> Option<Vec<MaskedColumn>> {
        (!self.noted.is_empty()).then(|| std::mem::take(&mut self.noted))
    }

    /// Masks from now on with `masking` (a refreshed catalog; the session is idle, so no
    /// result is in flight).
    pub fn set_masking(&mut self, masking: Arc<SessionMasking>) {
        self.masking = masking;
    }

    /// Whether DataRow messages arriving now must be looked at.
    pub fn rows_need_masking(&self) -> bool {
        self.current.is_some()
            || matches!(self.queue.front(), Some(Expect::Execute(_)) if !self.current_set)
    }

    /// A client message the relay forwarded (after the gate), with its ruling's statement
    /// plans when the gate ruled on it (`Some(None)`: ruled, nothing to plan).
    pub fn client_message(&mut self, ty: u8, body: &[u8], ruled: Option<Option<Plans>>) {
        let plans = ruled.clone().flatten();
        match ty {
            b'Q' => self.queue.push_back(Expect::Query { plans, index: 0 }),
            b'P' => {
                let Some((name, _)) = cstr_bytes(body) else {
                    return;
                };
                let plan = plans.and_then(|p| p.first().cloned().flatten());
                self.statements
                    .insert(String::from_utf8_lossy(name).into(), (plan, None));
            }
            b'B' => {
                let Some((portal, rest)) = cstr_bytes(body) else {
                    return;
                };
                let Some((stmt, rest)) = cstr_bytes(rest) else {
                    return;
                };
                let (plan, columns) =
                    match self.statements.get(String::from_utf8_lossy(stmt).as_ref()) {
                        Some((stored, columns)) => (
                            // The Bind's ruling plans the statement with the masking as
                            // it is now.
                            match ruled {
                                Some(p) => p.and_then(|p| p.first().cloned().flatten()),
                                None => stored.clone(),
                            },
                            columns.clone(),
                        ),
                        // Prepared before masking began in this session: which column is
                        // which is unknown, so every value is masked.
                        None => (Some(StatementMask::opaque()), None),
                    };
                self.portals.insert(
                    String::from_utf8_lossy(portal).into(),
                    Portal {
                        plan,
                        columns,
                        formats: result_formats(rest).unwrap_or_default(),
                    },
                );
            }
            b'D' => {
                let Some((&kind, rest)) = body.split_first() else {
                    return;
                };
                let Some((name, _)) = cstr_bytes(rest) else {
                    return;
                };
                let name: Box<str> = String::from_utf8_lossy(name).into();
                self.queue.push_back(if kind == b'S' {
                    Expect::DescribeStatement(name)
                } else {
                    Expect::DescribePortal(name)
                });
            }
            b'E' => {
                let Some((portal, _)) = cstr_bytes(body) else {
                    return;
                };
                self.queue
                    .push_back(Expect::Execute(String::from_utf8_lossy(portal).into()));
            }
            b'S' => self.queue.push_back(Expect::Sync),
            b'C' => {
                let Some((&kind, rest)) = body.split_first() else {
                    return;
                };
                let Some((name, _)) = cstr_bytes(rest) else {
                    return;
                };
                let name = String::from_utf8_lossy(name);
                if kind == b'S' {
                    self.statements.remove(name.as_ref());
                } else {
                    self.portals.remove(name.as_ref());
                }
            }
            _ => {}
        }
    }

    /// Whether the DataRow that just arrived must be rewritten ([`Masker::rewrite_row`]).
    pub fn masks_row(&mut self) -> bool {
        if !self.current_set {
            self.start_execute();
        }
        self.current.is_some()
    }

    /// Appends to `out` the DataRow `body` (a row of the current result) as a whole message
    /// with its masked columns' values replaced. A row that cannot be read cannot be
    /// masked: it is an error, and it must not reach the client.
    pub fn rewrite_row(&self, body: &[u8], out: &mut BytesMut) -> Result<(), CodecError> {
        let masks = self.current.as_deref().unwrap_or_default();
        rewrite_row(body, masks, &self.masking, &self.key[..], out)
            .ok_or(CodecError::Malformed("DataRow"))
    }

    /// An ErrorResponse or NoticeResponse about a statement that reads masked data, with
    /// its text replaced: a failed cast, a violated constraint's failing row or a RAISE in
    /// a function may quote a masked value. `None`: forward it as it is. A message that
    /// cannot be read is replaced by a bare one.
    pub fn scrub(&self, ty: u8, body: &[u8]) -> Option<BytesMut> {
        if !matches!(ty, b'E' | b'N') {
            return None;
        }
        let plan = match self.queue.front()? {
            Expect::Query { plans, index } => plans.as_ref()?.get(*index)?.as_ref(),
            Expect::Execute(portal) => self.portals.get(portal)?.plan.as_ref(),
            _ => None,
        }?;
        let mask = plan.messages?;
        let what = if mask.rule.is_some() {
            format!("masked data (rule {})", self.masking.describe(mask))
        } else {
            "values Postern cannot tell apart from masked data".to_string()
        };
        let kind = if ty == b'E' { "error" } else { "notice" };
        let message = format!(
            "the server's {kind} text is hidden by Postern: this statement reads {what} and the \
             text may quote it; the SQLSTATE is the server's"
        );
        crate::codec::rewrite_notice(ty, body, &message).or_else(|| {
            let bare: &[u8] = if ty == b'E' {
                b"SERROR\0VERROR\0CXX000\0M\0\0"
            } else {
                b"SNOTICE\0VNOTICE\0C01000\0M\0\0"
            };
            crate::codec::rewrite_notice(ty, bare, &message)
        })
    }

    /// A server message other than DataRow (see [`Masker::masks_row`]).
    pub fn server_message(&mut self, ty: u8, body: &[u8]) {
        match ty {
            b'T' => {
                let cols = row_description(body).map(Arc::new);
                match self.queue.front_mut() {
                    Some(Expect::DescribeStatement(name)) => {
                        let name = std::mem::take(name);
                        if let Some(s) = self.statements.get_mut(&name) {
                            s.1 = cols;
                        }
                        self.queue.pop_front();
                    }
                    Some(Expect::DescribePortal(name)) => {
                        let name = std::mem::take(name);
                        if let Some(p) = self.portals.get_mut(&name) {
                            // A portal's description carries its actual result formats.
                            p.formats = cols
                                .iter()
                                .flat_map(|c| c.iter())
                                .map(|c| i16::from(c.binary))
                                .collect();
                            p.columns = cols;
                        }
                        self.queue.pop_front();
                    }
                    Some(Expect::Query { plans, index }) => {
                        let plan = plans
                            .as_ref()
                            .and_then(|p| p.get(*index).cloned().flatten());
                        let cols = cols.unwrap_or_default();
                        self.current = self.masks(&cols, &[], plan.as_ref(), false);
                        self.note(&cols);
                        self.current_set = true;
                    }
                    _ => {}
                }
            }
            b'n' => {
                if matches!(
                    self.queue.front(),
                    Some(Expect::DescribeStatement(_) | Expect::DescribePortal(_))
                ) {
                    self.queue.pop_front();
                }
            }
            b'C' | b'I' | b's' => {
                self.current = None;
                self.current_set = false;
                match self.queue.front_mut() {
                    Some(Expect::Query { index, .. }) => *index += 1,
                    Some(Expect::Execute(_)) => {
                        self.queue.pop_front();
                    }
                    _ => {}
                }
            }
            b'E' => {
                self.current = None;
                self.current_set = false;
                // Extended protocol: the server skips to the next Sync.
                while matches!(
                    self.queue.front(),
                    Some(
                        Expect::Execute(_)
                            | Expect::DescribePortal(_)
                            | Expect::DescribeStatement(_)
                    )
                ) {
                    self.queue.pop_front();
                }
            }
            b'Z' => {
                self.current = None;
                self.current_set = false;
                while let Some(e) = self.queue.pop_front() {
                    if matches!(e, Expect::Sync | Expect::Query { .. }) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }

    /// The rows of the Execute at the front start: work out their masks from the portal.
    fn start_execute(&mut self) {
        self.current_set = true;
        let Some(Expect::Execute(portal)) = self.queue.front() else {
            return;
        };
        let Some(p) = self.portals.get(portal) else {
            return;
        };
        let columns = p.columns.clone();
        self.current = match &columns {
            Some(cols) => self.masks(cols, &p.formats, p.plan.as_ref(), true),
            // Never described: nothing says which column is which, so every value of a
            // statement that reads masked data is masked (NULL: the type is unknown).
            None => p.plan.as_ref().and_then(|plan| {
                plan.fallback.map(|mask| {
                    vec![
                        Some(ColumnMask {
                            mask,
                            class: ColumnClass::Other,
                            binary: false,
                        });
                        1664
                    ]
                })
            }),
        };
        match &columns {
            Some(cols) => self.note(cols),
            None => {
                if let Some(m) = self
                    .current
                    .as_ref()
                    .and_then(|c| c.first().copied().flatten())
                {
                    self.noted = vec![MaskedColumn {
                        column: "*".into(),
                        rule: self.masking.describe(m.mask),
                        function: "null".into(),
                    }];
                }
            }
        }
    }

    /// Notes which of `cols` the current masks cover.
    fn note(&mut self, cols: &[Column]) {
        let Some(current) = &self.current else {
            return;
        };
        self.noted = cols
            .iter()
            .zip(current)
            .filter_map(|(c, m)| {
                let m = (*m)?;
                Some(MaskedColumn {
                    column: c.name.to_string(),
                    rule: self.masking.describe(m.mask),
                    function: self.masking.function(m.mask).to_string(),
                })
            })
            .collect();
    }

    fn masks(
        &self,
        cols: &[Column],
        formats: &[i16],
        plan: Option<&StatementMask>,
        from_bind: bool,
    ) -> Option<Vec<Option<ColumnMask>>> {
        let mut any = false;
        let out: Vec<Option<ColumnMask>> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mask = if c.table != 0 {
                    self.masking.source(c.table, c.attnum)
                } else {
                    plan.and_then(|p| p.computed(i))
                }?;
                any = true;
                let binary = if from_bind {
                    match formats {
                        [] => false,
                        [one] => *one == 1,
                        many => many.get(i).is_some_and(|f| *f == 1),
                    }
                } else {
                    c.binary
                };
                Some(ColumnMask {
                    mask,
                    class: ColumnClass::of_pg_type(c.type_oid),
                    binary,
                })
            })
            .collect();
        any.then_some(out)
    }
}

/// The result-column format codes of a Bind, after its portal and statement names.
fn result_formats(rest: &[u8]) -> Option<Vec<i16>> {
    let nf = usize::try_from(int16(rest, 0)?).ok()?;
    let mut at = 2 + nf * 2;
    let np = usize::try_from(int16(rest, at)?).ok()?;
    at += 2;
    for _ in 0..np {
        let len = int32(rest, at)? as i32;
        at += 4;
        if len > 0 {
            at += len as usize;
        }
    }
    let nr = usize::try_from(int16(rest, at)?).ok()?;
    at += 2;
    (0..nr).map(|i| int16(rest, at + i * 2)).collect()
}

/// Appends the DataRow `body` as a whole message with the masked columns' values replaced
/// (values of other columns copied as they are). `None`, with `out` left as it was, when the
/// row is malformed.
fn rewrite_row(
    body: &[u8],
    masks: &[Option<ColumnMask>],
    masking: &SessionMasking,
    key: &[u8],
    out: &mut BytesMut,
) -> Option<()> {
    let start = out.len();
    let done = append_masked_row(body, masks, masking, key, out);
    if done.is_none() {
        out.truncate(start);
    }
    done
}

fn append_masked_row(
    body: &[u8],
    masks: &[Option<ColumnMask>],
    masking: &SessionMasking,
    key: &[u8],
    out: &mut BytesMut,
) -> Option<()> {
    let start = out.len();
    let n = usize::try_from(int16(body, 0)?).ok()?;
    out.reserve(body.len() + 5 + 16 * masks.len().min(n));
    out.extend_from_slice(&[b'D', 0, 0, 0, 0]);
    out.extend_from_slice(&body[..2]);
    let mut at = 2;
    for i in 0..n {
        let len = int32(body, at)? as i32;
        let value = if len >= 0 {
            let end = (at + 4).checked_add(len as usize)?;
            let v = body.get(at + 4..end)?;
            Some((v, end))
        } else {
            None
        };
        match masks.get(i).copied().flatten() {
            None => {
                // Unmasked: length word and value as they came.
                let end = value.map_or(at + 4, |(_, end)| end);
                out.extend_from_slice(body.get(at..end)?);
                at = end;
            }
            Some(m) => {
                let masked = value.and_then(|(v, end)| {
                    at = end;
                    masking.function(m.mask).apply(v, m.binary, m.class, key)
                });
                if value.is_none() {
                    at += 4;
                }
                match masked {
                    Some(v) => {
                        out.extend_from_slice(&i32::try_from(v.len()).ok()?.to_be_bytes());
                        out.extend_from_slice(&v);
                    }
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
        }
    }
    if at != body.len() {
        return None;
    }
    let len = u32::try_from(out.len() - start - 1).ok()?;
    out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_policy::{
        CatalogRelation, ColumnPattern, How, MaskCatalog, MaskingPolicy, MaskingRule,
    };
    use proptest::prelude::*;

    fn masking() -> SessionMasking {
        let policies = vec![MaskingPolicy {
            name: "p".into(),
            priority: 0,
            rules: [
                "full",
                "hash",
                "null",
                "partial(1, 2)",
                "email",
                "date_year_only",
            ]
            .iter()
            .enumerate()
            .map(|(i, f)| MaskingRule {
                name: format!("p/r{i}"),
                pattern: ColumnPattern::parse(&format!("ds.db.public.t.c{i}")).unwrap(),
                function: postern_masking::MaskFn::parse(f).unwrap(),
                allow_filter: false,
            })
            .collect(),
        }];
        let catalog = MaskCatalog {
            relations: vec![CatalogRelation {
                oid: 1,
                schema: "public".into(),
                name: "t".into(),
                kind: 'r',
                columns: (0..6).map(|i| (i as i16 + 1, format!("c{i}"))).collect(),
                definition: None,
                database: None,
            }],
            ..MaskCatalog::default()
        };
        SessionMasking::new(&policies, &Default::default(), "ds", "db", &catalog).unwrap()
    }

    fn cstr(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    /// A result of column c0 of table t (int4, masked `full`) described as one int4 column
    /// in `format`, then one row holding 7.
    fn portal_result(m: &mut Masker, format: i16) -> Result<Option<BytesMut>, CodecError> {
        let mut parse = cstr("");
        parse.extend(cstr("select c0 from t"));
        parse.extend(0i16.to_be_bytes());
        m.client_message(b'P', &parse, None);
        let mut bind = cstr("");
        bind.extend(cstr(""));
        bind.extend(0i16.to_be_bytes()); // parameter formats
        bind.extend(0i16.to_be_bytes()); // parameters
        bind.extend(1i16.to_be_bytes());
        bind.extend(format.to_be_bytes());
        m.client_message(b'B', &bind, None);
        let mut describe = vec![b'P'];
        describe.extend(cstr(""));
        m.client_message(b'D', &describe, None);
        let mut execute = cstr("");
        execute.extend(0i32.to_be_bytes());
        m.client_message(b'E', &execute, None);
        m.client_message(b'S', &[], None);
        let mut desc = 1i16.to_be_bytes().to_vec();
        desc.extend(cstr("c0"));
        desc.extend(1u32.to_be_bytes()); // table OID
        desc.extend(1i16.to_be_bytes()); // attnum
        desc.extend(23u32.to_be_bytes()); // int4
        desc.extend(4i16.to_be_bytes());
        desc.extend((-1i32).to_be_bytes());
        desc.extend(format.to_be_bytes());
        m.server_message(b'T', &desc);
        let mut row = 1i16.to_be_bytes().to_vec();
        let value: Vec<u8> = if format == 1 {
            7i32.to_be_bytes().to_vec()
        } else {
            b"7".to_vec()
        };
        row.extend((value.len() as i32).to_be_bytes());
        row.extend(value);
        data_row(m, &row)
    }

    /// What the relay does with a DataRow: the rewritten message, if it is rewritten.
    fn data_row(m: &mut Masker, row: &[u8]) -> Result<Option<BytesMut>, CodecError> {
        if !m.masks_row() {
            return Ok(None);
        }
        let mut out = BytesMut::from(&b"before"[..]);
        m.rewrite_row(row, &mut out)?;
        assert_eq!(&out[..6], b"before", "appends");
        Ok(Some(out.split_off(6)))
    }

    fn masker() -> Masker {
        Masker::new(Arc::new(masking()), zeroize::Zeroizing::new([7u8; 32]))
    }

    #[test]
    fn portal_description_gives_the_result_format() {
        let out = portal_result(&mut masker(), 1).unwrap().expect("masked");
        // One column, four bytes: a binary int4 zero.
        assert_eq!(&out[5..], &[0, 1, 0, 0, 0, 4, 0, 0, 0, 0]);
        let out = portal_result(&mut masker(), 0).unwrap().expect("masked");
        assert_eq!(&out[5..], &[0, 1, 0, 0, 0, 1, b'0']);
    }

    #[test]
    fn unreadable_row_of_a_masked_result_is_an_error() {
        let mut m = masker();
        portal_result(&mut m, 1).unwrap();
        // The next Execute of the same portal; its row claims more bytes than it has.
        let mut execute = cstr("");
        execute.extend(0i32.to_be_bytes());
        m.server_message(b'Z', b"I");
        m.client_message(b'E', &execute, None);
        let mut row = 1i16.to_be_bytes().to_vec();
        row.extend(10i32.to_be_bytes());
        row.extend([1, 2]);
        assert!(data_row(&mut m, &row).is_err());
    }

    const TYPES: &[u32] = &[
        25, 21, 23, 20, 1700, 700, 701, 1082, 1114, 2950, 16, 114, 3802, 17, 600,
    ];

    proptest! {
        /// Whatever the values, masks, types and formats, the rewritten DataRow is
        /// well formed: its length word, its column count and every value length agree.
        #[test]
        fn rewritten_rows_are_well_formed(
            values in prop::collection::vec(prop::option::of(prop::collection::vec(any::<u8>(), 0..40)), 0..12),
            masks in prop::collection::vec((any::<bool>(), 0u16..6, 0usize..TYPES.len(), any::<bool>(), 0u8..3), 0..12),
        ) {
            let m = masking();
            let mut body = (values.len() as i16).to_be_bytes().to_vec();
            for v in &values {
                match v {
                    Some(v) => {
                        body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        body.extend_from_slice(v);
                    }
                    None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
            let cms: Vec<Option<ColumnMask>> = masks
                .iter()
                .map(|(on, rule, ty, binary, how)| on.then_some(ColumnMask {
                    mask: Mask {
                        rule: Some(*rule),
                        how: [How::Direct, How::Derived, How::Opaque][usize::from(*how)],
                    },
                    class: ColumnClass::of_pg_type(TYPES[*ty]),
                    binary: *binary,
                }))
                .collect();
            let mut out = BytesMut::new();
            rewrite_row(&body, &cms, &m, b"key", &mut out).expect("well-formed input");
            prop_assert_eq!(out[0], b'D');
            let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
            prop_assert_eq!(len, out.len() - 1);
            let b = &out[5..];
            prop_assert_eq!(int16(b, 0), Some(values.len() as i16));
            let mut at = 2;
            for (i, v) in values.iter().enumerate() {
                let l = int32(b, at).unwrap() as i32;
                at += 4;
                prop_assert!(l >= -1);
                if l >= 0 {
                    at += l as usize;
                }
                // Unmasked columns are untouched.
                if cms.get(i).copied().flatten().is_none() {
                    let got = (l >= 0).then(|| b[at - l as usize..at].to_vec());
                    prop_assert_eq!(&got, v);
                }
            }
            prop_assert_eq!(at, b.len());
        }

        /// Truncated or inconsistent rows are refused, never mis-framed.
        #[test]
        fn malformed_rows_give_none(body in prop::collection::vec(any::<u8>(), 0..64)) {
            let m = masking();
            let cms = vec![None; 4];
            let mut out = BytesMut::from(&b"xy"[..]);
            match rewrite_row(&body, &cms, &m, b"key", &mut out) {
                Some(()) => prop_assert_eq!(&out[7..], &body[..]),
                None => prop_assert_eq!(&out[..], b"xy"),
            }
        }
    }
}
