//! Where column values go in a MySQL statement ([`ColumnFlow`], the same value the
//! PostgreSQL walker in [`crate::flow`] gives), from `sqlparser`'s MySQL syntax tree.
//!
//! Query structure (FROM items, joins, WHERE, GROUP BY, ORDER BY, set operations, CTEs,
//! subqueries in the select list, FROM and WHERE) is followed exactly. Inside other
//! expressions every name is collected; names inside a query nested deeper than that are
//! counted both as values and as filters, which only ever masks or refuses more.

use std::ops::ControlFlow;

use sqlparser::ast::{
    self, Expr, GroupByExpr, JoinConstraint, JoinOperator, ObjectNamePart, Query, Select,
    SelectItem, SetExpr, SetOperator, SetQuantifier, Statement, TableFactor, TableWithJoins, Visit,
    Visitor,
};

use crate::analysis::ObjectName;
use crate::flow::{ColumnFlow, Output, Refs};
use crate::mysql::{fold, object_name as object};

/// Where values met on the way go.
#[derive(Clone, Copy)]
enum Sink {
    /// Into a scratch derivation (see [`Walker::collected`]).
    Derive(usize),
    Filter,
    Copy,
}

/// A result column as written: name, what it derives from, whether it is a `*`.
type Entry = (String, Refs, bool);

#[derive(Default)]
struct Walker {
    flow: ColumnFlow,
}

/// The column flow of one parsed MySQL statement.
pub fn column_flow(st: &Statement) -> ColumnFlow {
    let mut w = Walker::default();
    w.top(st);
    let mut f = w.flow;
    tidy(&mut f.filters);
    tidy(&mut f.copies);
    f.relations.sort();
    f.relations.dedup();
    for (_, r) in &mut f.derived {
        tidy(r);
    }
    if let Some(outs) = &mut f.outputs {
        for o in outs {
            tidy(&mut o.refs);
        }
    }
    f
}

fn tidy(r: &mut Refs) {
    r.names.sort();
    r.names.dedup();
    r.relations.sort();
    r.relations.dedup();
    r.functions.sort();
    r.functions.dedup();
}

fn extend(into: &mut Refs, other: &Refs) {
    // Merging what several expressions read is itself a computation.
    into.plain = false;
    into.names.extend(other.names.iter().cloned());
    into.relations.extend(other.relations.iter().cloned());
    into.star |= other.star;
    into.functions.extend(other.functions.iter().cloned());
}

/// Collects every name, function and relation below an expression; names inside nested
/// queries are also filters (see the module docs).
struct Collect<'a> {
    refs: Refs,
    filters: Refs,
    relations: &'a mut Vec<ObjectName>,
    depth: usize,
    /// A `@var := value` inside: the values are also copied into a variable.
    assigns: bool,
}

impl Collect<'_> {
    fn name(&mut self, n: String) {
        if self.depth > 0 {
            self.filters.names.push(n.clone());
        }
        self.refs.names.push(n);
    }
}

impl Visitor for Collect<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, .. } = tf {
            if let Some(o) = object(name) {
                self.relations.push(o.clone());
                // A nested query's rows come from its relations, whatever it selects.
                self.refs.relations.push(o.clone());
                self.filters.relations.push(o);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        match e {
            Expr::Identifier(i) => self.name(fold(i)),
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last() {
                    self.name(fold(last));
                }
            }
            Expr::Function(f) => {
                if let Some(o) = object(&f.name) {
                    self.refs.functions.push(o);
                }
            }
            Expr::BinaryOp {
                op: ast::BinaryOperator::Assignment,
                ..
            } => self.assigns = true,
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

impl Walker {
    fn sink(&mut self, s: Sink) -> Option<&mut Refs> {
        match s {
            Sink::Derive(i) => self.flow.derived.get_mut(i).map(|d| &mut d.1),
            Sink::Filter => Some(&mut self.flow.filters),
            Sink::Copy => Some(&mut self.flow.copies),
        }
    }

    fn put(&mut self, sink: Sink, r: &Refs) {
        if let Some(s) = self.sink(sink) {
            extend(s, r);
        }
    }

    /// What the values `walk` visits are computed from.
    fn collected(&mut self, walk: impl FnOnce(&mut Self, Sink)) -> Refs {
        self.flow.derived.push((String::new(), Refs::default()));
        let idx = self.flow.derived.len() - 1;
        walk(self, Sink::Derive(idx));
        let refs = std::mem::take(&mut self.flow.derived[idx].1);
        self.flow.derived.truncate(idx);
        refs
    }

    /// Anything walked generically: every name below it into `sink`.
    fn generic<T: Visit>(&mut self, node: &T, sink: Sink) {
        let mut c = Collect {
            refs: Refs::default(),
            filters: Refs::default(),
            relations: &mut self.flow.relations,
            depth: 0,
            assigns: false,
        };
        let _ = node.visit(&mut c);
        let (refs, filters, assigns) = (c.refs, c.filters, c.assigns);
        self.put(sink, &refs);
        extend(&mut self.flow.filters, &filters);
        if assigns {
            extend(&mut self.flow.copies, &refs);
        }
    }

    fn expr(&mut self, e: &Expr, sink: Sink) {
        match e {
            Expr::Nested(inner) => self.expr(inner, sink),
            Expr::Subquery(q) => {
                let entries = self.query(q);
                for (_, r, _) in &entries {
                    self.put(sink, r);
                }
            }
            Expr::Exists { subquery, .. } => {
                // Whether rows exist is a filter on them.
                let entries = self.query(subquery);
                for (_, r, _) in &entries {
                    extend(&mut self.flow.filters, r);
                }
                self.put(sink, &Refs::default());
            }
            Expr::InSubquery { expr, subquery, .. } => {
                // A comparison: both sides choose rows.
                self.expr(expr, Sink::Filter);
                let entries = self.query(subquery);
                for (_, r, _) in &entries {
                    extend(&mut self.flow.filters, r);
                }
                self.expr(expr, sink);
            }
            Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::Assignment,
                right,
            } => {
                // `@var := value`: the value is kept in a variable, read later unmasked.
                self.expr(left, sink);
                self.expr(right, sink);
                self.expr(right, Sink::Copy);
            }
            Expr::BinaryOp { left, right, .. } => {
                self.expr(left, sink);
                self.expr(right, sink);
            }
            Expr::UnaryOp { expr, .. } => self.expr(expr, sink),
            other => self.generic(other, sink),
        }
    }

    fn top(&mut self, st: &Statement) {
        match st {
            Statement::Query(q) => {
                let entries = self.query(q);
                let into = matches!(q.body.as_ref(), SetExpr::Select(s) if s.into.is_some());
                if into {
                    // SELECT … INTO @var / OUTFILE: the values go somewhere the user reads later.
                    for (_, r, _) in &entries {
                        extend(&mut self.flow.copies, r);
                    }
                    return;
                }
                let outputs = entries
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
            Statement::Insert(ins) => {
                if let Some(src) = &ins.source {
                    let entries = self.query(src);
                    for (_, r, _) in &entries {
                        extend(&mut self.flow.copies, r);
                    }
                }
                for a in &ins.assignments {
                    self.expr(&a.value, Sink::Copy);
                }
                if let Some(on) = &ins.on {
                    self.generic(on, Sink::Copy);
                }
                if let ast::TableObject::TableName(n) = &ins.table {
                    if let Some(o) = object(n) {
                        self.flow.relations.push(o);
                    }
                }
            }
            Statement::Update(u) => {
                self.table_with_joins(&u.table);
                for a in &u.assignments {
                    self.expr(&a.value, Sink::Copy);
                }
                if let Some(w) = &u.selection {
                    self.expr(w, Sink::Filter);
                }
                for o in &u.order_by {
                    self.expr(&o.expr, Sink::Filter);
                }
            }
            Statement::Delete(d) => {
                let from = match &d.from {
                    ast::FromTable::WithFromKeyword(v) | ast::FromTable::WithoutKeyword(v) => v,
                };
                for t in from {
                    self.table_with_joins(t);
                }
                if let Some(w) = &d.selection {
                    self.expr(w, Sink::Filter);
                }
                for o in &d.order_by {
                    self.expr(&o.expr, Sink::Filter);
                }
            }
            Statement::Explain { statement, .. } => {
                // Without running it, values go nowhere; its filters still count.
                let mut inner = Walker::default();
                inner.top(statement);
                self.flow.relations.extend(inner.flow.relations);
                extend(&mut self.flow.filters, &inner.flow.filters);
            }
            // Definitions (views, CREATE TABLE … AS, defaults) store what they reference.
            other => self.generic(other, Sink::Copy),
        }
    }

    /// A query's result columns, with every other clause walked on the way.
    fn query(&mut self, q: &Query) -> Vec<Entry> {
        let ctes: Vec<String> = q
            .with
            .as_ref()
            .map(|w| w.cte_tables.iter().map(|c| fold(&c.alias.name)).collect())
            .unwrap_or_default();
        if let Some(with) = &q.with {
            for (c, name) in with.cte_tables.iter().zip(&ctes) {
                let entries = self.query(&c.query);
                let mut all = Refs::default();
                for (i, (col, r, _)) in entries.iter().enumerate() {
                    extend(&mut all, r);
                    let col = c
                        .alias
                        .columns
                        .get(i)
                        .map(|d| fold(&d.name))
                        .unwrap_or_else(|| col.clone());
                    self.flow.derived.push((col, r.clone()));
                }
                self.flow.derived.push((name.clone(), all));
            }
        }
        let entries = self.set_expr(&q.body);
        if let Some(ob) = &q.order_by {
            if let ast::OrderByKind::Expressions(v) = &ob.kind {
                for o in v {
                    self.positional_or_expr(&o.expr, &entries);
                }
            }
        }
        if let Some(l) = &q.limit_clause {
            self.generic(l, Sink::Filter);
        }
        // A CTE's name stays among the relations: it may shadow a table that its own body
        // reads, and counting that table's columns in scope only ever masks more.
        entries
    }

    fn set_expr(&mut self, s: &SetExpr) -> Vec<Entry> {
        match s {
            SetExpr::Select(sel) => self.select(sel),
            SetExpr::Query(q) => self.query(q),
            SetExpr::SetOperation {
                op,
                set_quantifier,
                left,
                right,
            } => {
                let mut l = self.set_expr(left);
                let r = self.set_expr(right);
                for (i, (_, refs, star)) in r.iter().enumerate() {
                    if let Some(e) = l.get_mut(i) {
                        extend(&mut e.1, refs);
                        e.2 |= *star;
                    }
                }
                let union_all =
                    *op == SetOperator::Union && matches!(set_quantifier, SetQuantifier::All);
                if !union_all {
                    // UNION, INTERSECT and EXCEPT compare rows.
                    for (_, refs, _) in l.iter().chain(r.iter()) {
                        extend(&mut self.flow.filters, refs);
                    }
                }
                l
            }
            SetExpr::Values(v) => {
                let mut entries: Vec<Entry> = Vec::new();
                for row in &v.rows {
                    for (i, e) in row.iter().enumerate() {
                        let refs = self.collected(|w, sink| w.expr(e, sink));
                        match entries.get_mut(i) {
                            Some(x) => extend(&mut x.1, &refs),
                            None => entries.push((format!("column_{i}"), refs, false)),
                        }
                    }
                }
                entries
            }
            SetExpr::Table(t) => {
                let name = t.table_name.clone().unwrap_or_default().to_lowercase();
                let o = match &t.schema_name {
                    Some(s) => ObjectName::qualified(s.to_lowercase(), name),
                    None => ObjectName::bare(name),
                };
                self.flow.relations.push(o);
                vec![(
                    "*".into(),
                    Refs {
                        star: true,
                        ..Refs::default()
                    },
                    true,
                )]
            }
            other => {
                // Not a query shape MySQL has: every value is output and filter alike.
                let refs = self.collected(|w, sink| w.generic(other, sink));
                extend(&mut self.flow.filters, &refs);
                vec![("?".into(), refs, true)]
            }
        }
    }

    fn select(&mut self, s: &Select) -> Vec<Entry> {
        for t in &s.from {
            self.table_with_joins(t);
        }
        let mut entries = Vec::with_capacity(s.projection.len());
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let mut refs = self.collected(|w, sink| w.expr(e, sink));
                    refs.plain = matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
                    entries.push((figure(e), refs, false));
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let mut refs = self.collected(|w, sink| w.expr(expr, sink));
                    refs.plain = matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_));
                    entries.push((fold(alias), refs, false));
                }
                SelectItem::Wildcard(_) => entries.push((
                    "*".into(),
                    Refs {
                        star: true,
                        ..Refs::default()
                    },
                    true,
                )),
                SelectItem::QualifiedWildcard(kind, _) => {
                    // `t.*`: every column of what `t` names (a relation or an alias).
                    let mut refs = Refs::default();
                    match kind {
                        ast::SelectItemQualifiedWildcardKind::ObjectName(n) => {
                            if let Some(ObjectNamePart::Identifier(i)) = n.0.last() {
                                refs.names.push(fold(i));
                            }
                            if let Some(o) = object(n) {
                                refs.relations.push(o);
                            }
                        }
                        ast::SelectItemQualifiedWildcardKind::Expr(e) => {
                            refs = self.collected(|w, sink| w.expr(e, sink));
                        }
                    }
                    refs.star = true;
                    entries.push(("*".into(), refs, true));
                }
                other => {
                    let refs = self.collected(|w, sink| w.generic(other, sink));
                    entries.push(("?".into(), refs, false));
                }
            }
        }
        if let Some(w) = &s.selection {
            self.expr(w, Sink::Filter);
        }
        if let Some(h) = &s.having {
            self.expr(h, Sink::Filter);
        }
        match &s.group_by {
            GroupByExpr::Expressions(v, _) => {
                for e in v {
                    self.positional_or_expr(e, &entries);
                }
            }
            GroupByExpr::All(_) => {
                for (_, r, _) in &entries {
                    extend(&mut self.flow.filters, r);
                }
            }
        }
        if s.distinct.is_some() {
            // DISTINCT compares whole rows.
            for (_, r, _) in &entries {
                extend(&mut self.flow.filters, r);
            }
        }
        for w in &s.named_window {
            self.generic(w, Sink::Filter);
        }
        entries
    }

    /// `GROUP BY 2`, `ORDER BY name`: a position or an output alias means that output.
    fn positional_or_expr(&mut self, e: &Expr, entries: &[Entry]) {
        if let Expr::Value(v) = e {
            if let ast::Value::Number(n, _) = &v.value {
                if let Some((_, r, _)) = n
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| i.checked_sub(1))
                    .and_then(|i| entries.get(i))
                {
                    let r = r.clone();
                    extend(&mut self.flow.filters, &r);
                    return;
                }
            }
        }
        if let Expr::Identifier(i) = e {
            let name = fold(i);
            if let Some((_, r, _)) = entries.iter().find(|(n, _, _)| *n == name) {
                let r = r.clone();
                extend(&mut self.flow.filters, &r);
            }
        }
        self.expr(e, Sink::Filter);
    }

    fn table_with_joins(&mut self, t: &TableWithJoins) {
        self.table_factor(&t.relation);
        for j in &t.joins {
            self.table_factor(&j.relation);
            match constraint(&j.join_operator) {
                Some(JoinConstraint::On(e)) => self.expr(e, Sink::Filter),
                Some(JoinConstraint::Using(cols)) => {
                    for c in cols {
                        if let Some(ObjectNamePart::Identifier(i)) = c.0.last() {
                            self.flow.filters.names.push(fold(i));
                        }
                    }
                }
                // NATURAL joins compare every column of the same name.
                Some(JoinConstraint::Natural) => self.flow.filters.star = true,
                Some(JoinConstraint::None) => {}
                None => self.generic(&j.join_operator, Sink::Filter),
            }
        }
    }

    fn table_factor(&mut self, tf: &TableFactor) {
        match tf {
            TableFactor::Table { name, alias, .. } => {
                if let Some(o) = object(name) {
                    self.flow.relations.push(o.clone());
                    if let Some(a) = alias {
                        self.flow.derived.push((
                            fold(&a.name),
                            Refs {
                                relations: vec![o],
                                ..Refs::default()
                            },
                        ));
                    }
                }
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let entries = self.query(subquery);
                let mut all = Refs::default();
                for (i, (col, r, _)) in entries.iter().enumerate() {
                    extend(&mut all, r);
                    let col = alias
                        .as_ref()
                        .and_then(|a| a.columns.get(i))
                        .map(|d| fold(&d.name))
                        .unwrap_or_else(|| col.clone());
                    self.flow.derived.push((col, r.clone()));
                }
                if let Some(a) = alias {
                    self.flow.derived.push((fold(&a.name), all));
                }
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => self.table_with_joins(table_with_joins),
            other => {
                // Table functions (JSON_TABLE…): their columns derive from their arguments.
                let refs = self.collected(|w, sink| w.generic(other, sink));
                let name = match other {
                    TableFactor::JsonTable { alias: Some(a), .. } => fold(&a.name),
                    _ => "?".to_string(),
                };
                self.flow.derived.push((name, refs));
            }
        }
    }
}

fn constraint(op: &JoinOperator) -> Option<&JoinConstraint> {
    use JoinOperator as J;
    match op {
        J::Join(c)
        | J::Inner(c)
        | J::Left(c)
        | J::LeftOuter(c)
        | J::Right(c)
        | J::RightOuter(c)
        | J::FullOuter(c)
        | J::CrossJoin(c)
        | J::StraightJoin(c) => Some(c),
        _ => None,
    }
}

/// The name MySQL gives an unaliased result column: a column's own name; anything else is
/// its text (never a column name, so never confused with one).
fn figure(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => fold(i),
        Expr::CompoundIdentifier(p) => p.last().map(fold).unwrap_or_default(),
        other => other.to_string().to_lowercase(),
    }
}
