//! Masking of MySQL result rows (A4), no I/O: the relay hands over each column definition,
//! row and error of a masked command (see [`crate::tracker::Tracker::inspect`]); the masker
//! decides per column from the server's own metadata — the schema, original table and
//! original column a value comes from — or, for computed columns, from the statement's
//! masking plan, and rewrites rows in the text or binary protocol.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use postern_masking::ColumnClass;
use postern_policy::{Mask, SessionMasking, StatementMask};

use crate::codec::{self, put_lenenc_bytes, CodecError, Reader};

/// One result column as the server describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    /// Database the value comes from (empty for computed columns).
    pub schema: String,
    /// Table or view the value comes from, as stored (empty for computed columns).
    pub org_table: String,
    /// Column the value comes from, as stored (empty for computed columns).
    pub org_name: String,
    /// Character set number (63: binary).
    pub charset: u16,
    /// Type code (MYSQL_TYPE_*).
    pub kind: u8,
    /// Column flags (UNSIGNED…).
    pub flags: u16,
}

/// Reads a column definition packet (Protocol::ColumnDefinition41).
pub fn parse_column_def(p: &[u8]) -> Result<ColumnDef, CodecError> {
    let mut r = Reader::new(p, "column definition");
    let _catalog = r.lenenc_bytes()?;
    let schema = String::from_utf8_lossy(r.lenenc_bytes()?).to_lowercase();
    let _table = r.lenenc_bytes()?;
    let org_table = String::from_utf8_lossy(r.lenenc_bytes()?).to_lowercase();
    let _name = r.lenenc_bytes()?;
    let org_name = String::from_utf8_lossy(r.lenenc_bytes()?).to_lowercase();
    let _fixed = r.lenenc()?;
    let charset = r.u16()?;
    let _length = r.u32()?;
    let kind = r.u8()?;
    let flags = r.u16()?;
    Ok(ColumnDef {
        schema,
        org_table,
        org_name,
        charset,
        kind,
        flags,
    })
}

const T_DECIMAL: u8 = 0x00;
const T_TINY: u8 = 0x01;
const T_SHORT: u8 = 0x02;
const T_LONG: u8 = 0x03;
const T_FLOAT: u8 = 0x04;
const T_DOUBLE: u8 = 0x05;
const T_NULL: u8 = 0x06;
const T_TIMESTAMP: u8 = 0x07;
const T_LONGLONG: u8 = 0x08;
const T_INT24: u8 = 0x09;
const T_DATE: u8 = 0x0a;
const T_TIME: u8 = 0x0b;
const T_DATETIME: u8 = 0x0c;
const T_YEAR: u8 = 0x0d;
const T_NEWDATE: u8 = 0x0e;
const T_VARCHAR: u8 = 0x0f;
const T_BIT: u8 = 0x10;
const T_TIMESTAMP2: u8 = 0x11;
const T_DATETIME2: u8 = 0x12;
const T_JSON: u8 = 0xf5;
const T_NEWDECIMAL: u8 = 0xf6;
const T_ENUM: u8 = 0xf7;
const T_SET: u8 = 0xf8;
const T_TINY_BLOB: u8 = 0xf9;
const T_MEDIUM_BLOB: u8 = 0xfa;
const T_LONG_BLOB: u8 = 0xfb;
const T_BLOB: u8 = 0xfc;
const T_VAR_STRING: u8 = 0xfd;
const T_STRING: u8 = 0xfe;
const T_GEOMETRY: u8 = 0xff;

const BINARY_CHARSET: u16 = 63;

/// What masking makes of a MySQL column type.
pub fn class_of(c: &ColumnDef) -> ColumnClass {
    match c.kind {
        T_TINY | T_SHORT | T_YEAR => ColumnClass::Int2,
        T_LONG | T_INT24 => ColumnClass::Int4,
        T_LONGLONG => ColumnClass::Int8,
        T_DECIMAL | T_NEWDECIMAL => ColumnClass::Numeric,
        T_FLOAT => ColumnClass::Float4,
        T_DOUBLE => ColumnClass::Float8,
        T_DATE | T_NEWDATE => ColumnClass::Date,
        T_TIMESTAMP | T_DATETIME | T_TIMESTAMP2 | T_DATETIME2 => ColumnClass::Timestamp,
        T_JSON => ColumnClass::Json,
        T_VARCHAR | T_VAR_STRING | T_STRING | T_ENUM | T_SET | T_TINY_BLOB | T_MEDIUM_BLOB
        | T_LONG_BLOB | T_BLOB
            if c.charset != BINARY_CHARSET =>
        {
            ColumnClass::Text
        }
        _ => ColumnClass::Other,
    }
}

/// The masking of one statement's results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementPlan {
    /// Its computed columns' masks (`None`: none is masked).
    pub mask: Option<StatementMask>,
    /// Names the statement itself defines (CTEs, derived tables, aliases): a result column
    /// the server says comes from one of these is judged by lineage, never by a catalog
    /// table of the same name.
    pub defines: Vec<String>,
}

impl StatementPlan {
    /// A plan for rows Postern cannot follow: every computed column masked.
    pub fn opaque() -> Self {
        StatementPlan {
            mask: Some(StatementMask::opaque()),
            defines: Vec::new(),
        }
    }
}

/// How one result column is masked.
#[derive(Debug, Clone, Copy)]
struct ColumnMask {
    mask: Mask,
    class: ColumnClass,
    kind: u8,
    unsigned: bool,
}

/// Follows the results of one masked command.
#[derive(Debug, Clone)]
pub struct Follow {
    /// The session's masking when the command was judged.
    masking: Arc<SessionMasking>,
    /// Masking plans of the command's statements, in order (`None`: no computed column of
    /// that statement is masked).
    plans: Vec<StatementPlan>,
    /// Rows in the binary protocol (COM_STMT_EXECUTE).
    binary: bool,
    /// Which statement's result is arriving.
    result: usize,
    columns: Vec<(ColumnDef, Option<ColumnMask>)>,
    /// Columns of this result that are masked (`false` when none: rows pass untouched).
    any: bool,
}

impl Follow {
    /// Results of a command judged under `masking`, with these per-statement plans.
    pub fn new(masking: Arc<SessionMasking>, plans: Vec<StatementPlan>, binary: bool) -> Self {
        Follow {
            masking,
            plans,
            binary,
            result: 0,
            columns: Vec::new(),
            any: false,
        }
    }

    /// The rows of a cursor opened by this command (COM_STMT_FETCH): same columns.
    pub fn for_fetch(&self) -> Self {
        self.clone()
    }

    fn plan(&self) -> Option<&StatementPlan> {
        self.plans.get(self.result).or(self.plans.last())
    }
}

/// The masking of one session's rows: the key of hash masking (what is covered travels
/// with each command's [`Follow`]).
pub struct Masker {
    key: zeroize::Zeroizing<[u8; 32]>,
    datasource: String,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker").finish_non_exhaustive()
    }
}

impl Masker {
    /// A masker for datasource `datasource` whose hash masking is keyed by `key`.
    pub fn new(key: zeroize::Zeroizing<[u8; 32]>, datasource: &str) -> Self {
        Masker {
            key,
            datasource: datasource.to_string(),
        }
    }

    /// A column definition of the result now arriving.
    fn column(&self, f: &mut Follow, payload: &[u8]) -> Result<(), CodecError> {
        let def = parse_column_def(payload)?;
        let i = f.columns.len();
        // MariaDB names a view's computed columns with the view but no database: those, like
        // expressions, are judged by the statement's lineage.
        // A CTE's or derived table's columns name it, not the table they come from; one may
        // even shadow a table's name.
        let named = !def.schema.is_empty()
            && !def.org_table.is_empty()
            && !def.org_name.is_empty()
            && !f.plan().is_some_and(|p| p.defines.contains(&def.org_table));
        let lineage = || {
            f.plan()
                .and_then(|p| p.mask.as_ref())
                .and_then(|m| m.computed(i))
        };
        let mask = if named && f.masking.knows(&def.schema, &def.org_table) {
            f.masking
                .source_named(&def.schema, &def.org_table, &def.org_name)
        } else if named {
            // A table created since the catalog was read: the rules' patterns decide.
            f.masking
                .source_by_rules(&self.datasource, &def.schema, &def.org_table, &def.org_name)
                .or_else(lineage)
        } else {
            lineage()
        };
        let cm = mask.map(|mask| ColumnMask {
            mask,
            class: class_of(&def),
            kind: def.kind,
            unsigned: def.flags & 0x20 != 0,
        });
        f.any |= cm.is_some();
        f.columns.push((def, cm));
        Ok(())
    }

    /// A column definition, a row, an error or the end of a result. `true` when the packet
    /// is to be replaced by the payload written to `out` (same sequence id).
    pub fn packet(
        &self,
        f: &mut Follow,
        kind: crate::tracker::Seen,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<bool, CodecError> {
        use crate::tracker::Seen;
        match kind {
            Seen::ColumnDef => {
                self.column(f, payload)?;
                Ok(false)
            }
            Seen::Row if f.any => {
                if f.binary {
                    self.binary_row(&f.masking, payload, &f.columns, out)?;
                } else {
                    self.text_row(&f.masking, payload, &f.columns, out)?;
                }
                Ok(true)
            }
            Seen::Row => Ok(false),
            Seen::ResultEnd => {
                f.result += 1;
                f.columns.clear();
                f.any = false;
                Ok(false)
            }
            Seen::Err => {
                // The server's message may quote a masked value (a failed conversion, a
                // duplicate key): keep the code, hide the text.
                if f.plans
                    .iter()
                    .any(|p| p.mask.as_ref().is_some_and(|m| m.messages.is_some()))
                {
                    let e = codec::parse_err(payload)?;
                    out.extend_from_slice(&codec::err(
                        e.code,
                        &e.sqlstate,
                        &format!(
                            "error {} (Postern hid the server's message: it may quote values masked for you)",
                            e.code
                        ),
                    ));
                    return Ok(true);
                }
                Ok(false)
            }
        }
    }

    fn apply_text(&self, masking: &SessionMasking, m: &ColumnMask, value: &str) -> Option<String> {
        masking
            .function(m.mask)
            .apply_text(value, m.class, &self.key[..])
    }

    /// A text-protocol row: each value a length-encoded string, or 0xFB for NULL.
    fn text_row(
        &self,
        masking: &SessionMasking,
        p: &[u8],
        cols: &[(ColumnDef, Option<ColumnMask>)],
        out: &mut BytesMut,
    ) -> Result<(), CodecError> {
        let mut r = Reader::new(p, "row");
        for (_, m) in cols {
            if r.rest().first() == Some(&0xfb) {
                r.u8()?;
                out.put_u8(0xfb);
                continue;
            }
            let v = r.lenenc_bytes()?;
            match m {
                None => put_lenenc_bytes(out, v),
                Some(m) => match self.apply_text(masking, m, &String::from_utf8_lossy(v)) {
                    Some(s) => put_lenenc_bytes(out, s.as_bytes()),
                    None => out.put_u8(0xfb),
                },
            }
        }
        if !r.rest().is_empty() {
            return Err(CodecError::Malformed("row (more values than columns)"));
        }
        Ok(())
    }

    /// A binary-protocol row: 0x00, a NULL bitmap (offset 2), then the non-NULL values
    /// in their types' encodings.
    fn binary_row(
        &self,
        masking: &SessionMasking,
        p: &[u8],
        cols: &[(ColumnDef, Option<ColumnMask>)],
        out: &mut BytesMut,
    ) -> Result<(), CodecError> {
        let bitmap_len = (cols.len() + 7 + 2) / 8;
        let mut r = Reader::new(p, "binary row");
        if r.u8()? != 0 {
            return Err(CodecError::Malformed("binary row header"));
        }
        // The header and NULL bitmap first; a value masked to NULL sets its bit there.
        out.put_u8(0);
        let bitmap = out.len();
        out.extend_from_slice(r.take(bitmap_len)?);
        for (i, (def, m)) in cols.iter().enumerate() {
            let (byte, mask) = (bitmap + (i + 2) / 8, 1u8 << ((i + 2) % 8));
            if out[byte] & mask != 0 {
                continue;
            }
            let raw = binary_value(&mut r, def.kind)?;
            match m {
                None => out.extend_from_slice(raw),
                Some(m) => match self.mask_binary(masking, m, raw) {
                    Some(v) => out.extend_from_slice(&v),
                    None => out[byte] |= mask,
                },
            }
        }
        if !r.rest().is_empty() {
            return Err(CodecError::Malformed(
                "binary row (more values than columns)",
            ));
        }
        Ok(())
    }

    /// The masked encoding of a binary value, or `None` for NULL.
    fn mask_binary(&self, masking: &SessionMasking, m: &ColumnMask, raw: &[u8]) -> Option<Vec<u8>> {
        let text = decode_binary(raw, m.kind, m.unsigned)?;
        let masked = self.apply_text(masking, m, &text)?;
        encode_binary(&masked, m.kind, m.unsigned)
    }
}

/// The bytes of one binary value of type `kind` (length prefix included for strings).
fn binary_value<'a>(r: &mut Reader<'a>, kind: u8) -> Result<&'a [u8], CodecError> {
    let before = r.rest();
    let n = match kind {
        T_TINY => 1,
        T_SHORT | T_YEAR => 2,
        T_LONG | T_INT24 | T_FLOAT => 4,
        T_LONGLONG | T_DOUBLE => 8,
        T_NULL => 0,
        T_DATE | T_NEWDATE | T_DATETIME | T_TIMESTAMP | T_TIME | T_DATETIME2 | T_TIMESTAMP2 => {
            1 + usize::from(
                *before
                    .first()
                    .ok_or(CodecError::Malformed("binary value"))?,
            )
        }
        _ => {
            // Length-encoded: strings, decimals, JSON, BIT, GEOMETRY…
            let mut probe = Reader::new(before, "binary value");
            let len = probe
                .lenenc()?
                .ok_or(CodecError::Malformed("binary value"))?;
            let len = usize::try_from(len).map_err(|_| CodecError::Malformed("binary value"))?;
            before.len() - probe.rest().len() + len
        }
    };
    r.take(n)
}

/// The text MySQL would send for a binary value (what masking functions read).
fn decode_binary(raw: &[u8], kind: u8, unsigned: bool) -> Option<String> {
    let int = |n: usize| -> Option<i128> {
        let b = raw.get(..n)?;
        let mut v: u64 = 0;
        for (i, x) in b.iter().enumerate() {
            v |= u64::from(*x) << (8 * i);
        }
        if unsigned {
            Some(i128::from(v))
        } else {
            let shift = 64 - 8 * n as u32;
            Some(i128::from(((v << shift) as i64) >> shift))
        }
    };
    Some(match kind {
        T_TINY => int(1)?.to_string(),
        T_SHORT | T_YEAR => int(2)?.to_string(),
        T_LONG | T_INT24 => int(4)?.to_string(),
        T_LONGLONG => int(8)?.to_string(),
        T_FLOAT => f32::from_le_bytes(raw.get(..4)?.try_into().ok()?).to_string(),
        T_DOUBLE => f64::from_le_bytes(raw.get(..8)?.try_into().ok()?).to_string(),
        T_DATE | T_NEWDATE | T_DATETIME | T_TIMESTAMP | T_DATETIME2 | T_TIMESTAMP2 => {
            let len = usize::from(*raw.first()?);
            let b = raw.get(1..1 + len)?;
            let (y, mo, d) = if len >= 4 {
                (u16::from_le_bytes([b[0], b[1]]), b[2], b[3])
            } else {
                (0, 0, 0)
            };
            let (h, mi, s) = if len >= 7 {
                (b[4], b[5], b[6])
            } else {
                (0, 0, 0)
            };
            if matches!(kind, T_DATE | T_NEWDATE) {
                format!("{y:04}-{mo:02}-{d:02}")
            } else {
                format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
            }
        }
        T_TIME => return None,
        _ => {
            let mut r = Reader::new(raw, "binary value");
            String::from_utf8_lossy(r.lenenc_bytes().ok()?).into_owned()
        }
    })
}

/// The binary encoding of a masked text value for a column of type `kind`; `None` (NULL)
/// when it does not fit.
fn encode_binary(text: &str, kind: u8, unsigned: bool) -> Option<Vec<u8>> {
    let int = |n: usize| -> Option<Vec<u8>> {
        let v: i128 = text.trim().parse().ok()?;
        let bits = 8 * n as u32;
        let fits = if unsigned {
            v >= 0 && v < (1i128 << bits)
        } else {
            v >= -(1i128 << (bits - 1)) && v < (1i128 << (bits - 1))
        };
        fits.then(|| (v as u64).to_le_bytes()[..n].to_vec())
    };
    match kind {
        T_TINY => int(1),
        T_SHORT | T_YEAR => int(2),
        T_LONG | T_INT24 => int(4),
        T_LONGLONG => int(8),
        T_FLOAT => Some(text.trim().parse::<f32>().ok()?.to_le_bytes().to_vec()),
        T_DOUBLE => Some(text.trim().parse::<f64>().ok()?.to_le_bytes().to_vec()),
        T_DATE | T_NEWDATE | T_DATETIME | T_TIMESTAMP | T_DATETIME2 | T_TIMESTAMP2 => {
            let (date, time) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
            let mut d = date.split('-').map(|x| x.parse::<u16>().ok());
            let (y, mo, dd) = (d.next()??, d.next()??, d.next()??);
            let mut t = time
                .split(':')
                .map(|x| x.split('.').next()?.parse::<u8>().ok());
            let (h, mi, s) = if time.is_empty() {
                (0, 0, 0)
            } else {
                (t.next()??, t.next()??, t.next()??)
            };
            let mut v = vec![0u8];
            v.extend_from_slice(&y.to_le_bytes());
            v.push(u8::try_from(mo).ok()?);
            v.push(u8::try_from(dd).ok()?);
            if !matches!(kind, T_DATE | T_NEWDATE) {
                v.extend_from_slice(&[h, mi, s]);
            }
            v[0] = (v.len() - 1) as u8;
            Some(v)
        }
        T_TIME | T_BIT | T_GEOMETRY | T_NULL => None,
        _ => {
            let mut b = BytesMut::new();
            put_lenenc_bytes(&mut b, text.as_bytes());
            Some(b.to_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::Seen;
    use postern_policy::{CatalogRelation, MaskCatalog, MaskingPolicy, MaskingRule};

    /// The masker's verdict on a packet: the replacement payload, or `None` to keep it.
    fn pass(
        masker: &Masker,
        f: &mut Follow,
        kind: Seen,
        payload: &[u8],
    ) -> Result<Option<BytesMut>, CodecError> {
        let mut out = BytesMut::new();
        Ok(masker.packet(f, kind, payload, &mut out)?.then_some(out))
    }

    fn masking() -> Arc<SessionMasking> {
        let rule = |name: &str, col: &str, f: &str| MaskingRule {
            name: name.into(),
            pattern: postern_policy::ColumnPattern::parse(&format!("ds.app.app.people.{col}"))
                .unwrap(),
            function: postern_masking::MaskFn::parse(f).unwrap(),
            allow_filter: false,
        };
        let policies = vec![MaskingPolicy {
            name: "pii".into(),
            priority: 1,
            rules: vec![
                rule("ssn", "ssn", "partial(0, 4)"),
                rule("pay", "pay", "full"),
                rule("born", "born", "date_year_only"),
            ],
        }];
        let catalog = MaskCatalog {
            relations: vec![CatalogRelation {
                oid: 1,
                schema: "app".into(),
                name: "people".into(),
                kind: 'r',
                columns: vec![
                    (1, "id".into()),
                    (2, "ssn".into()),
                    (3, "pay".into()),
                    (4, "born".into()),
                ],
                definition: None,
                database: Some("app".into()),
            }],
            mysql: true,
            ..MaskCatalog::default()
        };
        Arc::new(
            SessionMasking::new(&policies, &Default::default(), "ds", "app", &catalog).unwrap(),
        )
    }

    fn coldef(schema: &str, table: &str, col: &str, kind: u8, charset: u16) -> BytesMut {
        let mut p = BytesMut::new();
        for s in ["def", schema, table, table, col, col] {
            put_lenenc_bytes(&mut p, s.as_bytes());
        }
        p.put_u8(0x0c);
        p.put_u16_le(charset);
        p.put_u32_le(40);
        p.put_u8(kind);
        p.put_u16_le(0);
        p.put_u8(0);
        p.put_u16_le(0);
        p
    }

    fn follow(m: &Arc<SessionMasking>, masker: &Masker, binary: bool) -> Follow {
        let mut f = Follow::new(
            m.clone(),
            vec![StatementPlan {
                mask: None,
                defines: Vec::new(),
            }],
            binary,
        );
        for (c, k, cs) in [
            ("id", T_LONG, 63),
            ("ssn", T_VAR_STRING, 45),
            ("pay", T_LONG, 63),
            ("born", T_DATE, 63),
        ] {
            let d = coldef("app", "people", c, k, cs);
            assert!(pass(masker, &mut f, Seen::ColumnDef, &d).unwrap().is_none());
        }
        f
    }

    #[test]
    fn column_definitions_are_read() {
        let d = parse_column_def(&coldef("App", "People", "SSN", T_VAR_STRING, 45)).unwrap();
        assert_eq!(
            (d.schema.as_str(), d.org_table.as_str(), d.org_name.as_str()),
            ("app", "people", "ssn")
        );
        assert_eq!(class_of(&d), ColumnClass::Text);
        assert!(parse_column_def(b"\x03de").is_err());
    }

    #[test]
    fn text_rows_are_rewritten() {
        let m = masking();
        let masker = Masker::new(zeroize::Zeroizing::new([7u8; 32]), "ds");
        let mut f = follow(&m, &masker, false);
        let mut row = BytesMut::new();
        for v in ["1", "123-45-6789", "91000", "1990-05-17"] {
            put_lenenc_bytes(&mut row, v.as_bytes());
        }
        let Some(out) = pass(&masker, &mut f, Seen::Row, &row).unwrap() else {
            panic!("not rewritten");
        };
        let mut r = Reader::new(&out, "row");
        let vals: Vec<String> = (0..4)
            .map(|_| String::from_utf8_lossy(r.lenenc_bytes().unwrap()).into_owned())
            .collect();
        assert_eq!(vals, ["1", "*******6789", "0", "1990-01-01"]);
        // NULL stays NULL; a short row is an error, not a pass.
        let mut nulls = BytesMut::new();
        put_lenenc_bytes(&mut nulls, b"2");
        nulls.extend_from_slice(&[0xfb, 0xfb, 0xfb]);
        assert!(pass(&masker, &mut f, Seen::Row, &nulls).is_ok());
        assert!(pass(&masker, &mut f, Seen::Row, &row[..3]).is_err());
        // After the result, the next one's columns start afresh.
        pass(&masker, &mut f, Seen::ResultEnd, b"").unwrap();
        assert!(pass(&masker, &mut f, Seen::Row, &row).unwrap().is_none());
    }

    #[test]
    fn binary_rows_are_rewritten() {
        let m = masking();
        let masker = Masker::new(zeroize::Zeroizing::new([7u8; 32]), "ds");
        let mut f = follow(&m, &masker, true);
        let mut row = BytesMut::new();
        row.put_u8(0);
        row.put_u8(0); // NULL bitmap: (4 + 2 + 7) / 8 = 1 byte, nothing NULL
        row.put_i32_le(1);
        put_lenenc_bytes(&mut row, b"123-45-6789");
        row.put_i32_le(91000);
        row.extend_from_slice(&[4, 0xc6, 0x07, 5, 17]); // 1990-05-17
        let Some(out) = pass(&masker, &mut f, Seen::Row, &row).unwrap() else {
            panic!("not rewritten");
        };
        let mut r = Reader::new(&out, "row");
        assert_eq!(r.u8().unwrap(), 0);
        assert_eq!(r.u8().unwrap(), 0);
        assert_eq!(r.u32().unwrap(), 1);
        assert_eq!(r.lenenc_bytes().unwrap(), b"*******6789");
        assert_eq!(r.u32().unwrap(), 0);
        assert_eq!(r.take(5).unwrap(), &[4, 0xc6, 0x07, 1, 1]);
        assert!(r.rest().is_empty());
    }

    #[test]
    fn error_texts_are_hidden_when_the_statement_reads_masked_values() {
        let m = masking();
        let masker = Masker::new(zeroize::Zeroizing::new([7u8; 32]), "ds");
        let e = codec::err(
            1292,
            "22007",
            "Truncated incorrect DOUBLE value: '123-45-6789'",
        );
        let mut quiet = Follow::new(m.clone(), vec![StatementPlan::opaque()], false);
        let Some(out) = pass(&masker, &mut quiet, Seen::Err, &e).unwrap() else {
            panic!("kept");
        };
        let err = codec::parse_err(&out).unwrap();
        assert_eq!((err.code, err.sqlstate.as_str()), (1292, "22007"));
        assert!(!err.message.contains("123-45"), "{}", err.message);
        // A statement that reads nothing masked keeps the server's words.
        let mut plain = Follow::new(
            m,
            vec![StatementPlan {
                mask: None,
                defines: Vec::new(),
            }],
            false,
        );
        assert!(pass(&masker, &mut plain, Seen::Err, &e).unwrap().is_none());
    }

    #[test]
    fn binary_values_round_trip() {
        for (kind, unsigned, text) in [
            (T_TINY, false, "-5"),
            (T_TINY, true, "250"),
            (T_SHORT, false, "-300"),
            (T_LONG, false, "-70000"),
            (T_LONGLONG, true, "18446744073709551615"),
            (T_DOUBLE, false, "2.5"),
            (T_DATE, false, "2024-02-29"),
            (T_DATETIME, false, "2024-02-29 13:14:15"),
            (T_VAR_STRING, false, "héllo"),
        ] {
            let enc = encode_binary(text, kind, unsigned).unwrap();
            assert_eq!(decode_binary(&enc, kind, unsigned).as_deref(), Some(text));
        }
        // What does not fit the column is NULL, never a wrapped value.
        assert_eq!(encode_binary("300", T_TINY, false), None);
        assert_eq!(encode_binary("-1", T_LONG, true), None);
    }
}
