//! Where column values go in a statement, for data masking (A4): which names flow into each
//! result column, which are used to filter, order or group rows (where a masked value
//! would leak by bisection), and which are copied into tables or definitions.
//!
//! Names, not resolved columns: the walker has no catalog. Every alias a query defines
//! (a subquery's or CTE's output column, a FROM item's name) is recorded as a derivation
//! from the names and relations it is computed from, so the policy can follow a value
//! through any number of them by name. Tracking by name alone over-approximates (two
//! columns of the same name are treated alike), which is the safe direction for masking.

use pg_query::protobuf::{SetOperation, SubLinkType};
use serde::Serialize;

use crate::analysis::ObjectName;
use crate::pg::{is_select, list, name_parts, node, object_from_parts, range_var_name, str_field};
use crate::tree::{Map, Value};

/// What a value is computed from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Refs {
    /// Column (or alias) names referenced, last part only (`t.ssn` → `ssn`), and names used
    /// as whole rows (`row_to_json(t)` → `t`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Relations read as a whole (a FROM item's alias derives from its relation).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub relations: Vec<ObjectName>,
    /// A bare `*`, `t.*` or a NATURAL join: every column in scope may be involved.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub star: bool,
    /// Functions called on the way (a function Postern cannot see into hides what its
    /// result is made of).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<ObjectName>,
    /// A result column that is a bare column reference: its value is the column's value,
    /// not computed from it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub plain: bool,
}

impl Refs {
    /// Whether nothing flows in.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
            && self.relations.is_empty()
            && !self.star
            && self.functions.is_empty()
    }

    fn extend(&mut self, other: &Refs) {
        // Merging what several expressions read is itself a computation.
        self.plain = false;
        self.names.extend(other.names.iter().cloned());
        self.relations.extend(other.relations.iter().cloned());
        self.star |= other.star;
        self.functions.extend(other.functions.iter().cloned());
    }

    fn tidy(&mut self) {
        self.names.sort();
        self.names.dedup();
        self.relations.sort();
        self.relations.dedup();
        self.functions.sort();
        self.functions.dedup();
    }
}

/// One result column of a statement, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Output {
    /// What it is computed from.
    pub refs: Refs,
    /// `*` or `t.*`: expands to several result columns.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expands: bool,
}

/// How column values move through one statement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ColumnFlow {
    /// The result columns the statement returns to the client (SELECT list, RETURNING,
    /// `COPY … TO STDOUT`), in order; `None` when it returns no rows of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<Output>>,
    /// `COPY … TO STDOUT`: the rows go out as COPY data, not as DataRow messages.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub copy_out: bool,
    /// Names a query defines (aliases of output columns, FROM items, CTEs), each with what
    /// it derives from.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub derived: Vec<(String, Refs)>,
    /// Relations named anywhere in the statement (their columns are in scope).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub relations: Vec<ObjectName>,
    /// Used to choose, order, group or join rows (WHERE, JOIN ON/USING, ORDER BY, GROUP BY,
    /// HAVING, DISTINCT, window clauses, aggregate FILTER/ORDER BY, LIMIT, set operations
    /// other than UNION ALL…).
    pub filters: Refs,
    /// Written somewhere the user may read later without masking (INSERT, UPDATE SET,
    /// CREATE TABLE AS, views, other definitions).
    pub copies: Refs,
}

#[derive(Clone, Copy)]
enum Sink {
    Derive(usize),
    Filter,
    Copy,
    /// EXPLAIN without running: values go nowhere.
    Nowhere,
}

const MAX_DEPTH: usize = 2000;

/// A result column as written: its name, what it is computed from, whether it is a `*`.
type Entry = (String, Refs, bool);

/// The column flow of one statement (the tagged statement node `tag` with fields `n`).
pub fn column_flow(tag: &str, n: &Map) -> ColumnFlow {
    let mut w = FlowWalker::default();
    w.top(tag, n);
    let mut f = w.flow;
    f.filters.tidy();
    f.copies.tidy();
    f.relations.sort();
    f.relations.dedup();
    for (_, r) in &mut f.derived {
        r.tidy();
    }
    if let Some(outs) = &mut f.outputs {
        for o in outs {
            o.refs.tidy();
        }
    }
    f
}

#[derive(Default)]
struct FlowWalker {
    flow: ColumnFlow,
    depth: usize,
}

fn int(n: &Map, k: &str) -> i64 {
    n.get(k).and_then(Value::as_i64).unwrap_or(0)
}

fn flag(n: &Map, k: &str) -> bool {
    n.get(k).and_then(Value::as_bool).unwrap_or(false)
}

fn strings(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| match node(i) {
            Some(("String", s)) => Some(str_field(s, "sval").to_string()),
            _ => None,
        })
        .collect()
}

fn alias_of(n: &Map) -> Option<&Map> {
    n.get("alias").and_then(Value::as_object)
}

/// The name PostgreSQL gives an unnamed result column (as its FigureColname does for the
/// common cases; anything else is `?column?`).
fn column_name(target: &Map) -> String {
    let name = str_field(target, "name");
    if !name.is_empty() {
        return name.to_string();
    }
    target
        .get("val")
        .and_then(figure)
        .unwrap_or_else(|| "?column?".to_string())
}

fn figure(v: &Value) -> Option<String> {
    let (tag, n) = node(v)?;
    match tag {
        "ColumnRef" => strings(list(n, "fields")).pop(),
        "FuncCall" => strings(list(n, "funcname")).pop(),
        "TypeCast" => n.get("arg").and_then(figure).or_else(|| {
            n.get("type_name")
                .and_then(Value::as_object)
                .and_then(|t| strings(list(t, "names")).pop())
        }),
        "AIndirection" => n.get("arg").and_then(figure),
        "CaseExpr" => Some("case".into()),
        "AArrayExpr" => Some("array".into()),
        "RowExpr" => Some("row".into()),
        "CoalesceExpr" => Some("coalesce".into()),
        "NullIfExpr" => Some("nullif".into()),
        "MinMaxExpr" => Some(
            if int(n, "op") == 2 {
                "least"
            } else {
                "greatest"
            }
            .into(),
        ),
        "SubLink" => {
            let kind = int(n, "sub_link_type");
            if kind == SubLinkType::ExistsSublink as i64 {
                Some("exists".into())
            } else if kind == SubLinkType::ArraySublink as i64 {
                Some("array".into())
            } else {
                n.get("subselect")
                    .and_then(node)
                    .and_then(|(_, s)| list(s, "target_list").first())
                    .and_then(node)
                    .map(|(_, t)| column_name(t))
            }
        }
        _ => None,
    }
}

impl FlowWalker {
    fn sink(&mut self, s: Sink) -> Option<&mut Refs> {
        match s {
            Sink::Derive(i) => self.flow.derived.get_mut(i).map(|d| &mut d.1),
            Sink::Filter => Some(&mut self.flow.filters),
            Sink::Copy => Some(&mut self.flow.copies),
            Sink::Nowhere => None,
        }
    }

    /// What the values `walk` visits are computed from (collected in a scratch
    /// derivation, removed again).
    fn collected(&mut self, walk: impl FnOnce(&mut Self, Sink)) -> Refs {
        self.flow.derived.push((String::new(), Refs::default()));
        let idx = self.flow.derived.len() - 1;
        walk(self, Sink::Derive(idx));
        let refs = std::mem::take(&mut self.flow.derived[idx].1);
        self.flow.derived.truncate(idx);
        refs
    }

    /// The result columns of a target list (SELECT list, RETURNING): name, what each
    /// is computed from, whether it is a `*`.
    fn target_entries(&mut self, items: &[Value]) -> Vec<Entry> {
        let mut entries = Vec::with_capacity(items.len());
        for t in items {
            let Some(("ResTarget", rt)) = node(t) else {
                continue;
            };
            let val = rt.get("val");
            let expands = matches!(
                val.and_then(node),
                Some(("ColumnRef", c)) if list(c, "fields").iter().any(|f| matches!(node(f), Some(("AStar", _))))
            );
            let mut refs = self.collected(|w, sink| {
                if let Some(v) = val {
                    w.walk(v, sink);
                }
            });
            refs.plain = is_plain(rt);
            entries.push((column_name(rt), refs, expands));
        }
        entries
    }

    /// The statement at the top of the query string.
    fn top(&mut self, tag: &str, n: &Map) {
        match tag {
            "SelectStmt" => {
                if n.get("into_clause")
                    .is_some_and(|v| !matches!(v, Value::Null))
                {
                    // SELECT … INTO: the rows go into a new table.
                    self.select_into(n, Sink::Copy);
                } else {
                    self.select_outputs(n);
                }
            }
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                self.modify(tag, n, true);
            }
            "CopyStmt" => self.copy(n),
            "ExplainStmt" => {
                if let Some((t, q)) = n.get("query").and_then(node) {
                    self.inner_statement(t, q, Sink::Nowhere);
                }
            }
            "PrepareStmt" => {
                // The prepared statement's flow is its own (judged when it is prepared,
                // applied when it is executed).
                if let Some((t, q)) = n.get("query").and_then(node) {
                    self.top(t, q);
                }
            }
            "DeclareCursorStmt" => {
                // Rows come out later through FETCH, whose result columns are matched to
                // their sources then; here the query's values are treated as output.
                if let Some((t, q)) = n.get("query").and_then(node) {
                    self.top(t, q);
                }
            }
            _ => {
                // Definitions (views, CREATE TABLE AS, rules, defaults…) store what they
                // reference.
                self.walk_map(n, Sink::Copy);
            }
        }
    }

    fn inner_statement(&mut self, tag: &str, n: &Map, values: Sink) {
        match tag {
            "SelectStmt" => self.select_into(n, values),
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                let entries = self.modify(tag, n, false);
                if let Some(s) = self.sink(values) {
                    for (_, r, _) in &entries {
                        s.extend(r);
                    }
                }
            }
            _ => self.walk_map(n, values),
        }
    }

    /// The top-level query: its result columns are the statement's outputs.
    fn select_outputs(&mut self, n: &Map) {
        self.with_clause(n);
        let entries = self.select_entries(n);
        let outputs: Vec<Output> = entries
            .into_iter()
            .map(|(name, refs, expands)| {
                if !expands {
                    self.flow.derived.push((name, refs.clone()));
                }
                Output { refs, expands }
            })
            .collect();
        self.flow.outputs = Some(outputs);
    }

    /// A SELECT (or set operation) whose result columns flow into `sink` as a whole.
    fn select_into(&mut self, n: &Map, sink: Sink) {
        self.with_clause(n);
        let entries = self.select_entries(n);
        if let Some(s) = self.sink(sink) {
            for (_, r, _) in &entries {
                s.extend(r);
            }
        }
    }

    /// The result columns of a SELECT (name, what it derives from, whether it is a `*`),
    /// walking every other clause of it on the way.
    fn select_entries(&mut self, n: &Map) -> Vec<Entry> {
        let larg = n.get("larg").and_then(Value::as_object);
        let rarg = n.get("rarg").and_then(Value::as_object);
        if let (Some(l), Some(r)) = (larg, rarg) {
            let mut left = self.select_entries_nested(l);
            let right = self.select_entries_nested(r);
            for (i, (_, refs, _)) in right.iter().enumerate() {
                if let Some(e) = left.get_mut(i) {
                    e.1.extend(refs);
                    e.2 |= right[i].2;
                }
            }
            let op = int(n, "op");
            let union_all = op == SetOperation::SetopUnion as i64 && flag(n, "all");
            if !union_all {
                // UNION, INTERSECT and EXCEPT compare rows.
                for (_, r, _) in left.iter().chain(right.iter()) {
                    self.flow.filters.extend(r);
                }
            }
            self.order_and_limits(n, &left);
            return left;
        }
        for f in list(n, "from_clause") {
            self.source_item(f);
        }
        let mut entries = self.target_entries(list(n, "target_list"));
        for values in list(n, "values_lists") {
            // VALUES rows: column i of every row.
            let items = match node(values) {
                Some(("List", l)) => list(l, "items"),
                _ => continue,
            };
            for (i, item) in items.iter().enumerate() {
                let refs = self.collected(|w, sink| w.walk(item, sink));
                if entries.len() <= i {
                    entries.push((format!("column{}", i + 1), refs, false));
                } else {
                    entries[i].1.extend(&refs);
                }
            }
        }
        for key in ["where_clause", "having_clause"] {
            if let Some(v) = n.get(key) {
                self.walk(v, Sink::Filter);
            }
        }
        for key in ["group_clause", "window_clause", "distinct_clause"] {
            for v in list(n, key) {
                self.positional_or_expr(v, &entries);
            }
        }
        if !list(n, "distinct_clause").is_empty()
            && list(n, "distinct_clause").iter().all(|v| node(v).is_none())
        {
            // Plain DISTINCT (a list of one empty node): compares whole rows.
            for (_, r, _) in &entries {
                self.flow.filters.extend(r);
            }
        }
        if !list(n, "locking_clause").is_empty() {
            self.walk_list(list(n, "locking_clause"), Sink::Filter);
        }
        self.order_and_limits(n, &entries);
        entries
    }

    fn select_entries_nested(&mut self, n: &Map) -> Vec<Entry> {
        self.depth += 1;
        let out = if self.depth > MAX_DEPTH {
            Vec::new()
        } else {
            self.with_clause(n);
            self.select_entries(n)
        };
        self.depth -= 1;
        out
    }

    fn order_and_limits(&mut self, n: &Map, entries: &[Entry]) {
        for v in list(n, "sort_clause") {
            self.positional_or_expr(v, entries);
        }
        for key in ["limit_offset", "limit_count"] {
            if let Some(v) = n.get(key) {
                self.walk(v, Sink::Filter);
            }
        }
    }

    /// An ORDER BY / GROUP BY / DISTINCT ON item: `ORDER BY 2` means the second result
    /// column; anything else is an expression used to filter or order.
    fn positional_or_expr(&mut self, v: &Value, entries: &[Entry]) {
        let inner = match node(v) {
            Some(("SortBy", s)) => s.get("node"),
            _ => Some(v),
        };
        if let Some(i) = inner.and_then(const_int) {
            if let Some((_, r, expands)) = usize::try_from(i - 1).ok().and_then(|i| entries.get(i))
            {
                self.flow.filters.extend(r);
                if *expands {
                    self.flow.filters.star = true;
                }
            } else if entries.iter().any(|e| e.2) {
                // A position past a `*`: some column of the expansion.
                self.flow.filters.star = true;
                for (_, r, _) in entries {
                    self.flow.filters.extend(r);
                }
            }
            return;
        }
        self.walk(v, Sink::Filter);
    }

    fn with_clause(&mut self, n: &Map) {
        let Some(w) = n.get("with_clause").and_then(Value::as_object) else {
            return;
        };
        // Walk once; a recursive CTE referring to itself is covered because names are
        // tracked, not scopes.
        for c in list(w, "ctes") {
            let Some(("CommonTableExpr", cte)) = node(c) else {
                continue;
            };
            let name = str_field(cte, "ctename").to_string();
            let cols = strings(list(cte, "aliascolnames"));
            let Some((tag, q)) = cte.get("ctequery").and_then(node) else {
                continue;
            };
            let entries = match tag {
                "SelectStmt" => self.select_entries_nested(q),
                "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                    self.modify(tag, q, false)
                }
                _ => {
                    self.walk_map(q, Sink::Copy);
                    Vec::new()
                }
            };
            self.define_relation(&name, &cols, entries);
            for key in ["search_clause", "cycle_clause"] {
                if let Some(v) = cte.get(key) {
                    self.walk(v, Sink::Filter);
                }
            }
        }
    }

    /// A named row source (CTE, subquery alias): its name derives from all its columns,
    /// each column name (or the alias list, by position) from its entry.
    fn define_relation(&mut self, name: &str, cols: &[String], entries: Vec<Entry>) {
        let mut whole = Refs::default();
        let count = entries.len();
        for (i, (entry_name, refs, expands)) in entries.into_iter().enumerate() {
            whole.extend(&refs);
            if expands {
                whole.star = true;
            }
            let n = cols.get(i).cloned().unwrap_or(entry_name);
            let mut r = refs;
            r.star |= expands;
            self.flow.derived.push((n, r));
        }
        if !name.is_empty() {
            self.flow.derived.push((name.to_string(), whole.clone()));
        }
        // Alias-list names beyond the entries (a `*` expanded) may hold anything.
        for extra in cols.iter().skip(count) {
            self.flow.derived.push((extra.clone(), whole.clone()));
        }
    }

    fn source_item(&mut self, v: &Value) {
        self.depth += 1;
        if self.depth <= MAX_DEPTH {
            self.source_item_inner(v);
        }
        self.depth -= 1;
    }

    fn source_item_inner(&mut self, v: &Value) {
        let Some((tag, n)) = node(v) else { return };
        match tag {
            "RangeVar" => {
                let rel = range_var_name(n);
                self.flow.relations.push(rel.clone());
                let alias = alias_of(n)
                    .map(|a| str_field(a, "aliasname").to_string())
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| rel.name.clone());
                let refs = Refs {
                    relations: vec![rel],
                    ..Refs::default()
                };
                if let Some(a) = alias_of(n) {
                    // Column aliases rename the relation's columns: each may be any of them.
                    for c in strings(list(a, "colnames")) {
                        self.flow.derived.push((c, refs.clone()));
                    }
                }
                self.flow.derived.push((alias, refs));
            }
            "RangeSubselect" => {
                let Some(("SelectStmt", q)) = n.get("subquery").and_then(node) else {
                    if let Some(q) = n.get("subquery") {
                        self.walk(q, Sink::Filter);
                    }
                    return;
                };
                let entries = self.select_entries_nested(q);
                let (name, cols) = match alias_of(n) {
                    Some(a) => (
                        str_field(a, "aliasname").to_string(),
                        strings(list(a, "colnames")),
                    ),
                    None => (String::new(), Vec::new()),
                };
                self.define_relation(&name, &cols, entries);
            }
            "RangeFunction" => {
                let refs = self.collected(|w, sink| w.walk_list(list(n, "functions"), sink));
                let mut names = Vec::new();
                if let Some(a) = alias_of(n) {
                    names.push(str_field(a, "aliasname").to_string());
                    names.extend(strings(list(a, "colnames")));
                }
                for d in list(n, "coldeflist") {
                    if let Some(("ColumnDef", c)) = node(d) {
                        names.push(str_field(c, "colname").to_string());
                    }
                }
                // Unaliased: the function's name names it (and its single column).
                names.extend(refs.functions.iter().map(|f| f.name.clone()));
                for name in names.into_iter().filter(|n| !n.is_empty()) {
                    self.flow.derived.push((name, refs.clone()));
                }
            }
            "JoinExpr" => {
                for side in ["larg", "rarg"] {
                    if let Some(s) = n.get(side) {
                        self.source_item(s);
                    }
                }
                if let Some(q) = n.get("quals") {
                    self.walk(q, Sink::Filter);
                }
                self.flow
                    .filters
                    .names
                    .extend(strings(list(n, "using_clause")));
                if flag(n, "is_natural") {
                    self.flow.filters.star = true;
                }
                if let Some(a) = alias_of(n) {
                    // `(a JOIN b) AS j`: j.x may be any column of either side.
                    let name = str_field(a, "aliasname").to_string();
                    let refs = Refs {
                        star: true,
                        ..Refs::default()
                    };
                    self.flow.derived.push((name, refs));
                }
            }
            _ => {
                // RangeTableFunc (XMLTABLE/JSON_TABLE), RangeTableSample…: their inputs
                // flow into every column they define; their names are not followed, so
                // they count as reading everything.
                let mut refs = self.collected(|w, sink| w.walk_map(n, sink));
                refs.star = true;
                if let Some(a) = alias_of(n) {
                    let name = str_field(a, "aliasname").to_string();
                    self.flow.derived.push((name, refs));
                }
            }
        }
    }

    /// INSERT / UPDATE / DELETE / MERGE. Returns its RETURNING entries; at the top level
    /// they are the statement's outputs.
    fn modify(&mut self, tag: &str, n: &Map, top: bool) -> Vec<Entry> {
        self.with_clause(n);
        if let Some(rv) = n.get("relation").and_then(Value::as_object) {
            let rel = range_var_name(rv);
            self.flow.relations.push(rel.clone());
            let alias = alias_of(rv)
                .map(|a| str_field(a, "aliasname").to_string())
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| rel.name.clone());
            self.flow.derived.push((
                alias,
                Refs {
                    relations: vec![rel],
                    ..Refs::default()
                },
            ));
        }
        match tag {
            "InsertStmt" => {
                if let Some((t, q)) = n.get("select_stmt").and_then(node) {
                    self.inner_statement(t, q, Sink::Copy);
                }
                if let Some(oc) = n.get("on_conflict_clause").and_then(Value::as_object) {
                    if let Some(v) = oc.get("where_clause") {
                        self.walk(v, Sink::Filter);
                    }
                    if let Some(v) = oc.get("infer") {
                        self.walk(v, Sink::Filter);
                    }
                    self.walk_list(list(oc, "target_list"), Sink::Copy);
                }
            }
            "UpdateStmt" => {
                for f in list(n, "from_clause") {
                    self.source_item(f);
                }
                self.walk_list(list(n, "target_list"), Sink::Copy);
                if let Some(v) = n.get("where_clause") {
                    self.walk(v, Sink::Filter);
                }
            }
            "DeleteStmt" => {
                for f in list(n, "using_clause") {
                    self.source_item(f);
                }
                if let Some(v) = n.get("where_clause") {
                    self.walk(v, Sink::Filter);
                }
            }
            _ => {
                if let Some(s) = n.get("source_relation") {
                    self.source_item(s);
                }
                if let Some(v) = n.get("join_condition") {
                    self.walk(v, Sink::Filter);
                }
                for w in list(n, "merge_when_clauses") {
                    if let Some(("MergeWhenClause", m)) = node(w) {
                        if let Some(c) = m.get("condition") {
                            self.walk(c, Sink::Filter);
                        }
                        self.walk_list(list(m, "target_list"), Sink::Copy);
                        self.walk_list(list(m, "values"), Sink::Copy);
                    }
                }
            }
        }
        let entries = match n.get("returning_clause").and_then(Value::as_object) {
            Some(rc) => self.target_entries(list(rc, "exprs")),
            None => Vec::new(),
        };
        if top {
            if !entries.is_empty() {
                self.flow.outputs = Some(
                    entries
                        .iter()
                        .map(|(_, r, e)| Output {
                            refs: r.clone(),
                            expands: *e,
                        })
                        .collect(),
                );
            }
            Vec::new()
        } else {
            entries
        }
    }

    fn copy(&mut self, n: &Map) {
        if flag(n, "is_from") {
            if let Some(v) = n.get("where_clause") {
                self.walk(v, Sink::Filter);
            }
            return;
        }
        let to_client = str_field(n, "filename").is_empty() && !flag(n, "is_program");
        if let Some(rv) = n.get("relation").and_then(Value::as_object) {
            let rel = range_var_name(rv);
            self.flow.relations.push(rel.clone());
            let cols = strings(list(n, "attlist"));
            let out = if cols.is_empty() {
                vec![Output {
                    refs: Refs {
                        relations: vec![rel],
                        star: true,
                        ..Refs::default()
                    },
                    expands: true,
                }]
            } else {
                cols.into_iter()
                    .map(|c| Output {
                        refs: Refs {
                            names: vec![c],
                            ..Refs::default()
                        },
                        expands: false,
                    })
                    .collect()
            };
            if to_client {
                self.flow.outputs = Some(out);
            } else {
                for o in out {
                    self.flow.copies.extend(&o.refs);
                }
            }
        }
        if let Some(("SelectStmt", q)) = n.get("query").and_then(node) {
            if to_client {
                self.select_outputs(q);
            } else {
                self.select_into(q, Sink::Copy);
            }
        } else if let Some((t, q)) = n.get("query").and_then(node) {
            // COPY (INSERT … RETURNING …) TO STDOUT.
            let entries = self.modify(t, q, false);
            let out = entries
                .into_iter()
                .map(|(_, refs, expands)| Output { refs, expands })
                .collect();
            if to_client {
                self.flow.outputs = Some(out);
            } else {
                for o in out {
                    self.flow.copies.extend(&o.refs);
                }
            }
        }
        self.flow.copy_out = to_client;
    }

    fn walk_list(&mut self, items: &[Value], sink: Sink) {
        for i in items {
            self.walk(i, sink);
        }
    }

    fn walk_map(&mut self, n: &Map, sink: Sink) {
        for (_, v) in n.iter() {
            self.walk(v, sink);
        }
    }

    fn walk(&mut self, v: &Value, sink: Sink) {
        self.depth += 1;
        if self.depth <= MAX_DEPTH {
            self.walk_inner(v, sink);
        }
        self.depth -= 1;
    }

    fn walk_inner(&mut self, v: &Value, sink: Sink) {
        match v {
            Value::Array(items) => self.walk_list(items, sink),
            Value::Object(o) => {
                if let Some((tag, n)) = node(v) {
                    self.node(tag, n, sink);
                } else if is_select(o) {
                    self.select_into(o, sink);
                } else if o.contains_key("relname") && o.contains_key("schemaname") {
                    let rel = range_var_name(o);
                    self.flow.relations.push(rel.clone());
                    if let Some(s) = self.sink(sink) {
                        s.relations.push(rel);
                    }
                } else {
                    self.walk_map(o, sink);
                }
            }
            _ => {}
        }
    }

    fn node(&mut self, tag: &str, n: &Map, sink: Sink) {
        match tag {
            "ColumnRef" => {
                let fields = list(n, "fields");
                let names = strings(fields);
                // A bare `*`: every column in scope. `t.*` is the whole row of `t`, named
                // by `t` (its last name part), like `t.col` is named by `col`.
                let bare_star = fields.len() == 1 && matches!(node(&fields[0]), Some(("AStar", _)));
                if let Some(s) = self.sink(sink) {
                    s.star |= bare_star;
                    if let Some(last) = names.last() {
                        s.names.push(last.clone());
                    }
                }
            }
            "FuncCall" => {
                // A name the analyser cannot read makes the statement unanalysable; here it
                // counts as a function Postern cannot see into.
                let name = name_parts(list(n, "funcname"))
                    .and_then(|p| object_from_parts(&p))
                    .unwrap_or_else(|| ObjectName::qualified("?", "?"));
                if let Some(s) = self.sink(sink) {
                    s.functions.push(name);
                }
                self.walk_list(list(n, "args"), sink);
                let order_sink = if flag(n, "agg_within_group") {
                    // percentile_disc(…) WITHIN GROUP (ORDER BY x) returns x's values.
                    sink
                } else {
                    Sink::Filter
                };
                for o in list(n, "agg_order") {
                    match node(o) {
                        Some(("SortBy", s)) => {
                            if let Some(e) = s.get("node") {
                                self.walk(e, order_sink);
                            }
                            if !flag(n, "agg_within_group") {
                                continue;
                            }
                            // Also ordering: the order of aggregated values is visible.
                            if let Some(e) = s.get("node") {
                                self.walk(e, Sink::Filter);
                            }
                        }
                        _ => self.walk(o, order_sink),
                    }
                }
                if let Some(f) = n.get("agg_filter") {
                    self.walk(f, Sink::Filter);
                }
                if let Some(w) = n.get("over") {
                    self.walk(w, Sink::Filter);
                }
            }
            "SubLink" => {
                if let Some(t) = n.get("testexpr") {
                    self.walk(t, sink);
                }
                if let Some(s) = n.get("subselect") {
                    self.walk(s, sink);
                }
            }
            "SelectStmt" => self.select_into(n, sink),
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                let entries = self.modify(tag, n, false);
                if let Some(s) = self.sink(sink) {
                    for (_, r, _) in &entries {
                        s.extend(r);
                    }
                }
            }
            "RangeVar" => {
                let rel = range_var_name(n);
                self.flow.relations.push(rel.clone());
                if let Some(s) = self.sink(sink) {
                    s.relations.push(rel);
                }
            }
            "WindowDef" => self.walk_map(n, Sink::Filter),
            _ => self.walk_map(n, sink),
        }
    }
}

/// A result column that is a bare column reference (no `*`, no subscript).
fn is_plain(target: &Map) -> bool {
    list(target, "indirection").is_empty()
        && matches!(
            target.get("val").and_then(node),
            Some(("ColumnRef", c)) if !list(c, "fields").iter().any(|f| matches!(node(f), Some(("AStar", _))))
        )
}

fn const_int(v: &Value) -> Option<i64> {
    match node(v)? {
        ("AConst", c) => c
            .get("val")?
            .get("Ival")?
            .get("ival")
            .and_then(Value::as_i64),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
