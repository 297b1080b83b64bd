//! Which result columns to mask, and which statements to refuse, for a user subject to
//! masking rules (A4). Pure: the proxy loads a [`MaskCatalog`] from the upstream at session
//! start and asks [`SessionMasking`] two questions — at judge time, [`SessionMasking::plan`]
//! for a statement (the inference and copy guards, and what its computed columns derive
//! from); at result time, [`SessionMasking::source`] for a column the server says comes
//! straight from a table or view column.

use std::collections::{BTreeSet, HashMap, HashSet};

use postern_masking::MaskFn;
use postern_sql::pg::{analyse, LexSettings, DYNAMIC_SQL_FUNCTIONS};
use postern_sql::{ColumnFlow, ObjectName, Refs, Statement, StatementFacts, StatementKind};

use crate::decide::Mode;
use crate::judge::{Refusal, SQLSTATE_REFUSED};
use crate::masking::{rule_for, MaskingPolicy, MaskingRule};
use crate::privilege::ColumnRef;

/// One relation of the upstream database, as the catalog query returns it.
#[derive(Debug, Clone)]
pub struct CatalogRelation {
    /// pg_class OID.
    pub oid: u32,
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// relkind: `r` table, `p` partitioned, `v` view, `m` materialized view, `f` foreign.
    pub kind: char,
    /// (attnum, name) of its columns.
    pub columns: Vec<(i16, String)>,
    /// For views: the definition, as `pg_get_viewdef` printed it.
    pub definition: Option<String>,
    /// MySQL: the database holding it (its `schema` too); `None`: the session's database.
    pub database: Option<String>,
}

/// What the masking decisions need from the upstream catalog: the relations holding
/// columns a rule may cover and the views built on them, and the functions defined in the
/// database (whose results Postern cannot follow).
#[derive(Debug, Clone, Default)]
pub struct MaskCatalog {
    /// Relations.
    pub relations: Vec<CatalogRelation>,
    /// Names of functions defined outside the system schemas.
    pub user_functions: HashSet<String>,
    /// The search_path in effect when view definitions were printed (names in them that
    /// are not schema-qualified resolve through it).
    pub search_path: Vec<String>,
    /// View definitions are MySQL text (else PostgreSQL's).
    pub mysql: bool,
}

/// How a masked value relates to the column's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// It is the covered column's value: the rule's function applies.
    Direct,
    /// It is computed from covered values: only functions that reveal nothing of a
    /// computed value apply (`hash`, `null`); others become `full`.
    Derived,
    /// It comes from a function Postern cannot see into: `full`.
    Opaque,
}

/// The masking of one result column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mask {
    /// Index of the rule ([`SessionMasking::rule`]); `None` for [`How::Opaque`] alone.
    pub rule: Option<u16>,
    /// How the value relates to the covered column.
    pub how: How,
}

/// What a name or value derives from: covered columns (by rule) and opaque functions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Taint {
    rules: BTreeSet<u16>,
    /// Reached through a computation, not only bare column references.
    computed: bool,
    /// Reached through a function Postern cannot see into (its name).
    opaque: Option<String>,
}

impl Taint {
    fn is_clean(&self) -> bool {
        self.rules.is_empty() && self.opaque.is_none()
    }
    fn absorb(&mut self, o: &Taint) -> bool {
        let before = (self.rules.len(), self.computed, self.opaque.is_some());
        self.rules.extend(o.rules.iter().copied());
        self.computed |= o.computed;
        if self.opaque.is_none() {
            self.opaque.clone_from(&o.opaque);
        }
        before != (self.rules.len(), self.computed, self.opaque.is_some())
    }
}

/// The masking plan of one statement: what its computed result columns derive from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementMask {
    /// Per written result column (when known): the mask of a value with no source column.
    pub outputs: Option<Vec<Option<Mask>>>,
    /// Per written result column: whether it is a `*` (several result columns).
    pub expands: Vec<bool>,
    /// The mask for a computed result column that cannot be matched to a written one.
    pub fallback: Option<Mask>,
    /// Set when the statement reads masked columns (or a function Postern cannot see
    /// into): the server's errors and notices about it may quote their values (a failed
    /// cast, a check constraint's failing row, a RAISE), so their text is hidden.
    pub messages: Option<Mask>,
}

impl StatementMask {
    /// A plan for rows Postern cannot follow (a function it cannot see into, an
    /// unanalysed statement, a cursor): every computed column is masked.
    pub fn opaque() -> StatementMask {
        let all = Some(Mask {
            rule: None,
            how: How::Opaque,
        });
        StatementMask {
            outputs: None,
            expands: Vec::new(),
            fallback: all,
            messages: all,
        }
    }

    /// The mask of result column `i` when it has no source column.
    pub fn computed(&self, i: usize) -> Option<Mask> {
        match &self.outputs {
            Some(outs) if !self.expands.iter().take(i + 1).any(|e| *e) => {
                outs.get(i).copied().flatten()
            }
            _ => self.fallback,
        }
    }
}

/// One masked result column, in words (see [`SessionMasking::explain`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlannedMask {
    /// `#N`: the Nth result column written in the statement (`#N (table.column)` for a
    /// column a `*` expands to).
    pub column: String,
    /// The rule (`policy/rule`, `(computed)` when the value is computed from it).
    pub rule: String,
    /// The masking function applied.
    pub function: String,
}

/// A session's masking: its rules, the masked source columns, and the catalog facts the
/// lineage needs.
#[derive(Debug)]
pub struct SessionMasking {
    rules: Vec<(i32, String, MaskingRule)>,
    /// (relation OID, attnum) → mask of a source column.
    columns: HashMap<(u32, i16), Mask>,
    /// (schema, relation, column) → mask of a source column (what MySQL's column
    /// definitions name).
    by_column: HashMap<(String, String, String), Mask>,
    /// (schema, name) → OID.
    by_name: HashMap<(String, String), u32>,
    /// OID → masked column names with their taint.
    masked_names: HashMap<u32, Vec<(String, Taint)>>,
    user_functions: HashSet<String>,
    /// Built without a catalog ([`SessionMasking::blind`]): every value is masked.
    blind: bool,
}

const STATS_VIEWS: &[&str] = &[
    "pg_stats",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_statistic",
];

impl SessionMasking {
    /// The masking of a user holding `policies` (minus `revealed` rules) on `datasource`
    /// / `database`; `None` when no rule can cover anything there.
    pub fn new(
        policies: &[MaskingPolicy],
        revealed: &HashSet<String>,
        datasource: &str,
        database: &str,
        catalog: &MaskCatalog,
    ) -> Option<SessionMasking> {
        let relevant: Vec<MaskingPolicy> = policies
            .iter()
            .map(|p| MaskingPolicy {
                name: p.name.clone(),
                priority: p.priority,
                rules: p
                    .rules
                    .iter()
                    .filter(|r| {
                        r.applies(revealed, datasource, database)
                            || catalog.relations.iter().any(|rel| {
                                rel.database
                                    .as_deref()
                                    .is_some_and(|d| r.applies(revealed, datasource, d))
                            })
                    })
                    .cloned()
                    .collect(),
            })
            .filter(|p| !p.rules.is_empty())
            .collect();
        if relevant.is_empty() {
            return None;
        }
        let mut rules = Vec::new();
        for p in &relevant {
            for r in &p.rules {
                rules.push((p.priority, p.name.clone(), r.clone()));
            }
        }
        let index_of = |r: &MaskingRule| rules.iter().position(|(_, _, x)| x.name == r.name);
        let mut m = SessionMasking {
            columns: HashMap::new(),
            by_column: HashMap::new(),
            by_name: HashMap::new(),
            masked_names: HashMap::new(),
            user_functions: catalog.user_functions.clone(),
            rules: Vec::new(),
            blind: false,
        };
        for rel in &catalog.relations {
            m.by_name
                .insert((rel.schema.clone(), rel.name.clone()), rel.oid);
        }
        // Tables: the rules cover their columns by name.
        for rel in catalog.relations.iter().filter(|r| r.definition.is_none()) {
            let mut names = Vec::new();
            for (attnum, col) in &rel.columns {
                let c = ColumnRef {
                    datasource,
                    database: rel.database.as_deref().unwrap_or(database),
                    schema: &rel.schema,
                    table: &rel.name,
                    column: col,
                };
                if let Some(i) = rule_for(&relevant, &HashSet::new(), &c).and_then(index_of) {
                    let i = i as u16;
                    let mask = Mask {
                        rule: Some(i),
                        how: How::Direct,
                    };
                    m.columns.insert((rel.oid, *attnum), mask);
                    m.by_column
                        .insert((rel.schema.clone(), rel.name.clone(), col.clone()), mask);
                    names.push((
                        col.clone(),
                        Taint {
                            rules: [i].into(),
                            ..Taint::default()
                        },
                    ));
                }
            }
            if !names.is_empty() {
                m.masked_names.insert(rel.oid, names);
            }
        }
        m.rules = rules;
        // Views: their columns derive from what their definitions read. A view may be
        // built on another view, so repeat until nothing changes.
        let views: Vec<(&CatalogRelation, Option<ColumnFlow>)> = catalog
            .relations
            .iter()
            .filter_map(|r| {
                let def = r.definition.as_deref()?;
                let analysed = if catalog.mysql {
                    postern_sql::mysql::analyse(def)
                } else {
                    analyse(def, LexSettings::default())
                };
                let flow = analysed
                    .ok()
                    .and_then(|a| match a.statements.into_iter().next() {
                        Some(Statement::Analysed(f)) => Some(*f.flow),
                        _ => None,
                    });
                Some((r, flow))
            })
            .collect();
        for _ in 0..=views.len() {
            let mut changed = false;
            for (rel, flow) in &views {
                let outs: Vec<Taint> = match flow {
                    Some(f) => {
                        let taints = m.taints(f, &catalog.search_path);
                        match &f.outputs {
                            Some(o) if !o.iter().any(|o| o.expands) => o
                                .iter()
                                .map(|o| m.taint_of(&o.refs, &taints, &catalog.search_path))
                                .collect(),
                            // pg_get_viewdef expands `*`; anything else is not followed.
                            _ => vec![Self::everything(&taints)],
                        }
                    }
                    None => vec![Taint {
                        opaque: Some(format!("the definition of view {}", rel.name)),
                        ..Taint::default()
                    }],
                };
                let mut names = Vec::new();
                for (i, (attnum, col)) in rel.columns.iter().enumerate() {
                    let t = if outs.len() == rel.columns.len() {
                        outs[i].clone()
                    } else {
                        let mut all = Taint::default();
                        for o in &outs {
                            all.absorb(o);
                        }
                        all.computed = true;
                        all
                    };
                    let Some(mask) = m.mask_of(&t) else { continue };
                    if m.columns.insert((rel.oid, *attnum), mask) != Some(mask) {
                        changed = true;
                    }
                    m.by_column
                        .insert((rel.schema.clone(), rel.name.clone(), col.clone()), mask);
                    names.push((col.clone(), t));
                }
                if !names.is_empty() {
                    m.masked_names.insert(rel.oid, names);
                }
            }
            if !changed {
                break;
            }
        }
        Some(m)
    }

    /// The rule at index `i` of [`Mask::rule`].
    pub fn rule(&self, i: u16) -> Option<&MaskingRule> {
        self.rules.get(usize::from(i)).map(|(_, _, r)| r)
    }

    /// The function that masks a value under `mask`.
    pub fn function(&self, mask: Mask) -> &MaskFn {
        const FULL: &MaskFn = &MaskFn::Full;
        const NULL: &MaskFn = &MaskFn::Null;
        const HASH: &MaskFn = &MaskFn::Hash;
        let Some(rule) = mask.rule.and_then(|i| self.rule(i)) else {
            return FULL;
        };
        match mask.how {
            How::Direct => &rule.function,
            How::Derived => match rule.function {
                MaskFn::Hash => HASH,
                MaskFn::Null => NULL,
                _ => FULL,
            },
            How::Opaque => FULL,
        }
    }

    /// How to name a mask in audit events and errors.
    pub fn describe(&self, mask: Mask) -> String {
        match (mask.rule.and_then(|i| self.rule(i)), mask.how) {
            (Some(r), How::Direct) => r.name.clone(),
            (Some(r), _) => format!("{} (computed)", r.name),
            (None, _) => "opaque result".into(),
        }
    }

    /// What [`SessionMasking::plan`] means for a statement, in words (for `postern policy
    /// check`): per result column written in the statement (`#1`, `#2`, …) its mask, and
    /// for a `*` the masked columns of the relations it reads. Empty when nothing is masked.
    pub fn explain(
        &self,
        facts: &StatementFacts,
        plan: &StatementMask,
        search_path: &[String],
    ) -> Vec<PlannedMask> {
        let words = |column: String, mask: Mask| PlannedMask {
            column,
            rule: self.describe(mask),
            function: self.function(mask).to_string(),
        };
        let Some(outs) = &facts.flow.outputs else {
            return plan
                .fallback
                .map(|m| vec![words("every column".into(), m)])
                .unwrap_or_default();
        };
        let mut planned = Vec::new();
        for (i, out) in outs.iter().enumerate() {
            if out.expands || out.refs.star {
                for r in &facts.flow.relations {
                    for oid in self.resolve(r, search_path) {
                        for (name, taint) in self.masked_names.get(&oid).into_iter().flatten() {
                            if let Some(m) = self.mask_of(taint) {
                                planned.push(words(format!("#{} ({}.{name})", i + 1, r.name), m));
                            }
                        }
                    }
                }
            } else if let Some(m) = plan
                .outputs
                .as_ref()
                .and_then(|o| o.get(i).copied().flatten())
            {
                planned.push(words(format!("#{}", i + 1), m));
            }
        }
        planned
    }

    /// Masking for a session whose masking rules changed while Postern could not read the
    /// catalog yet (the upstream was inside a transaction block): what the rules cover is
    /// unknown, so every result value is masked and COPY … TO STDOUT is refused.
    pub fn blind() -> SessionMasking {
        SessionMasking {
            rules: Vec::new(),
            columns: HashMap::new(),
            by_column: HashMap::new(),
            by_name: HashMap::new(),
            masked_names: HashMap::new(),
            user_functions: HashSet::new(),
            blind: true,
        }
    }

    /// Whether the catalog holds relation `schema.relation` (MySQL names, lower case).
    pub fn knows(&self, schema: &str, relation: &str) -> bool {
        self.by_name
            .contains_key(&(schema.to_string(), relation.to_string()))
    }

    /// The mask of a column of a relation the catalog does not hold (created since it was
    /// read), by the rules' patterns alone (MySQL: the database is the schema).
    pub fn source_by_rules(
        &self,
        datasource: &str,
        schema: &str,
        relation: &str,
        column: &str,
    ) -> Option<Mask> {
        if self.blind {
            return Some(Mask {
                rule: None,
                how: How::Opaque,
            });
        }
        let c = ColumnRef {
            datasource,
            database: schema,
            schema,
            table: relation,
            column,
        };
        // Per policy its first matching rule; the best policy wins (as `rule_for`).
        let mut best: Option<(usize, i32, &str)> = None;
        let mut seen_policy: Option<&str> = None;
        for (i, (priority, policy, rule)) in self.rules.iter().enumerate() {
            if seen_policy == Some(policy.as_str()) || !rule.pattern.matches(&c) {
                continue;
            }
            seen_policy = Some(policy.as_str());
            let better = match best {
                None => true,
                Some((_, p, n)) => *priority > p || (*priority == p && policy.as_str() < n),
            };
            if better {
                best = Some((i, *priority, policy.as_str()));
            }
        }
        best.map(|(i, _, _)| Mask {
            rule: u16::try_from(i).ok(),
            how: How::Direct,
        })
    }

    /// Whether this is [`SessionMasking::blind`].
    pub fn is_blind(&self) -> bool {
        self.blind
    }

    /// The mask of a result column the server says comes from column `attnum` of the
    /// relation `oid`.
    pub fn source(&self, oid: u32, attnum: i16) -> Option<Mask> {
        if self.blind {
            return Some(Mask {
                rule: None,
                how: How::Opaque,
            });
        }
        self.columns.get(&(oid, attnum)).copied()
    }

    /// The mask of a result column the server says comes from `column` of relation
    /// `schema.relation` (MySQL's column definitions; names as the catalog holds them,
    /// lower case).
    pub fn source_named(&self, schema: &str, relation: &str, column: &str) -> Option<Mask> {
        if self.blind {
            return Some(Mask {
                rule: None,
                how: How::Opaque,
            });
        }
        self.by_column
            .get(&(schema.to_string(), relation.to_string(), column.to_string()))
            .copied()
    }

    /// The plan for one analysed statement, or the refusal the guards give it.
    /// `prepared` holds statements prepared with SQL PREPARE (for EXECUTE).
    pub fn plan(
        &self,
        facts: &StatementFacts,
        prepared: &HashMap<String, StatementFacts>,
        search_path: &[String],
        mode: Mode,
    ) -> Result<Option<StatementMask>, Refusal> {
        let flow = match (&facts.prepared, facts.command.as_str()) {
            (Some(name), "EXECUTE") => match prepared.get(name) {
                Some(p) => &p.flow,
                None => &facts.flow,
            },
            _ => &facts.flow,
        };
        for r in &flow.relations {
            let catalog_schema = r.schema.as_deref().is_none_or(|s| s == "pg_catalog");
            if catalog_schema && STATS_VIEWS.contains(&r.name.as_str()) {
                return Err(refusal(
                    None,
                    format!(
                        "{} shows sampled column values, which masking rules hide from you",
                        r.name
                    ),
                ));
            }
        }
        if facts.kind == StatementKind::DoBlock {
            // Its code runs unseen: it could RAISE a masked value or copy it into a table.
            return Err(refusal(
                self.rules.first().map(|(_, _, r)| r),
                "a DO block runs code Postern cannot see into, and masking rules apply to \
                 you here; run its statements one by one"
                    .to_string(),
            ));
        }
        if self.blind {
            if flow.copy_out {
                return Err(refusal(
                    None,
                    "your masking rules changed and Postern has not read what they cover yet; \
                     COPY … TO STDOUT is refused until the transaction ends"
                        .to_string(),
                ));
            }
            return Ok(Some(StatementMask::opaque()));
        }
        let taints = self.taints(flow, search_path);
        // Inference guard: filtering, joining, grouping or ordering on a masked value
        // reveals it by bisection.
        let f = self.taint_of(&flow.filters, &taints, search_path);
        if let Some(rule) = f
            .rules
            .iter()
            .filter_map(|i| self.rule(*i))
            .find(|r| !r.allow_filter)
        {
            let name = self.culprit(&flow.filters, &taints, rule);
            return Err(refusal(
                Some(rule),
                format!(
                    "masked column {name} (rule {}) may not be used to filter, join, group or \
                     order rows",
                    rule.name
                ),
            ));
        }
        // A filter's effect on the rows cannot be masked afterwards, whatever the mode.
        if let Some(func) = &f.opaque {
            return Err(refusal(
                None,
                format!(
                    "{func} is used to filter, join, group or order rows and Postern cannot \
                     tell whether it reads masked columns"
                ),
            ));
        }
        // Copy guard: values written elsewhere would be readable later without masking.
        let c = self.taint_of(&flow.copies, &taints, search_path);
        if let Some(rule) = c.rules.iter().find_map(|i| self.rule(*i)) {
            let name = self.culprit(&flow.copies, &taints, rule);
            return Err(refusal(
                Some(rule),
                format!(
                    "values of masked column {name} (rule {}) may not be copied into tables or \
                     definitions",
                    rule.name
                ),
            ));
        }
        // Copied values are read later without masking, whatever the mode.
        if let Some(func) = &c.opaque {
            return Err(refusal(
                None,
                format!(
                    "{func} is copied into a table or definition and Postern cannot tell \
                     whether it reads masked columns"
                ),
            ));
        }
        // Everything the statement touches, for its errors and notices.
        let mut touched = f;
        touched.absorb(&c);
        for t in taints.values() {
            touched.absorb(t);
        }
        let Some(outs) = &flow.outputs else {
            // Rows of FETCH, CALL, MySQL HANDLER and EXECUTE of unknown statements come from a query not
            // seen here: computed columns are masked.
            let unknown = matches!(
                facts.command.as_str(),
                "FETCH" | "MOVE" | "CALL" | "EXECUTE" | "HANDLER"
            );
            if unknown {
                return Ok(Some(StatementMask::opaque()));
            }
            return Ok(self.mask_of(&touched).map(|m| StatementMask {
                outputs: None,
                expands: Vec::new(),
                fallback: None,
                messages: Some(m),
            }));
        };
        let per: Vec<Taint> = outs
            .iter()
            .map(|o| self.taint_of(&o.refs, &taints, search_path))
            .collect();
        for t in &per {
            touched.absorb(t);
        }
        let messages = self.mask_of(&touched);
        if flow.copy_out {
            // COPY data is not rewritten: refuse what would need masking.
            let scope_masked = outs.iter().any(|o| o.expands || o.refs.star)
                && self.scope_rules(flow, search_path).next().is_some();
            let rule = per
                .iter()
                .find_map(|t| t.rules.iter().find_map(|i| self.rule(*i)));
            if rule.is_some() || scope_masked || per.iter().any(|t| t.opaque.is_some()) {
                let rule = rule.or_else(|| self.scope_rules(flow, search_path).next());
                return Err(refusal(
                    rule,
                    format!(
                        "COPY … TO STDOUT would send masked columns{}; use SELECT, whose \
                         results Postern masks",
                        rule.map(|r| format!(" (rule {})", r.name))
                            .unwrap_or_default()
                    ),
                ));
            }
            return Ok(None);
        }
        if mode == Mode::Protected {
            if let Some(func) = per.iter().find_map(|t| t.opaque.as_ref()) {
                return Err(refusal(
                    None,
                    format!(
                        "Postern cannot tell whether {func} returns masked values, so it cannot \
                         mask its result exactly (PROTECTED mode refuses; MASKED mode masks it)"
                    ),
                ));
            }
        }
        let masks: Vec<Option<Mask>> = per.iter().map(|t| self.mask_of(t)).collect();
        let mut all = Taint::default();
        for t in &per {
            all.absorb(t);
        }
        for (_, t) in taints.iter() {
            all.absorb(t);
        }
        all.computed = true;
        let fallback = self.mask_of(&all);
        if masks.iter().all(Option::is_none) && fallback.is_none() && messages.is_none() {
            return Ok(None);
        }
        Ok(Some(StatementMask {
            expands: outs.iter().map(|o| o.expands).collect(),
            outputs: Some(masks),
            fallback,
            messages,
        }))
    }

    fn mask_of(&self, t: &Taint) -> Option<Mask> {
        if let Some(best) = t.rules.iter().copied().max_by(|a, b| {
            let (pa, na, _) = &self.rules[usize::from(*a)];
            let (pb, nb, _) = &self.rules[usize::from(*b)];
            pa.cmp(pb).then(nb.cmp(na))
        }) {
            let how = if t.opaque.is_some() {
                How::Opaque
            } else if t.computed {
                How::Derived
            } else {
                How::Direct
            };
            return Some(Mask {
                rule: Some(best),
                how,
            });
        }
        t.opaque.as_ref().map(|_| Mask {
            rule: None,
            how: How::Opaque,
        })
    }

    /// The relations a name may denote, as OIDs known to the catalog.
    fn resolve(&self, o: &ObjectName, search_path: &[String]) -> Vec<u32> {
        o.candidate_schemas(search_path)
            .into_iter()
            .filter_map(|s| self.by_name.get(&(s.to_string(), o.name.clone())).copied())
            .collect()
    }

    fn scope_rules<'a>(
        &'a self,
        flow: &'a ColumnFlow,
        search_path: &'a [String],
    ) -> impl Iterator<Item = &'a MaskingRule> + 'a {
        flow.relations
            .iter()
            .flat_map(move |r| self.resolve(r, search_path))
            .filter_map(|oid| self.masked_names.get(&oid))
            .flatten()
            .flat_map(|(_, t)| t.rules.iter().filter_map(|i| self.rule(*i)))
    }

    /// Every name's taint in a statement: masked columns of the relations in scope, then
    /// the names derived from them, to a fixed point.
    fn taints(&self, flow: &ColumnFlow, search_path: &[String]) -> HashMap<String, Taint> {
        let mut t: HashMap<String, Taint> = HashMap::new();
        for r in &flow.relations {
            for oid in self.resolve(r, search_path) {
                for (name, taint) in self.masked_names.get(&oid).into_iter().flatten() {
                    t.entry(name.clone()).or_default().absorb(taint);
                }
            }
        }
        for _ in 0..=flow.derived.len() {
            let mut changed = false;
            for (name, refs) in &flow.derived {
                let d = self.taint_of(refs, &t, search_path);
                if d.is_clean() {
                    continue;
                }
                changed |= t.entry(name.clone()).or_default().absorb(&d);
            }
            if !changed {
                break;
            }
        }
        t
    }

    fn taint_of(
        &self,
        refs: &Refs,
        taints: &HashMap<String, Taint>,
        search_path: &[String],
    ) -> Taint {
        let mut out = Taint::default();
        for n in &refs.names {
            if let Some(x) = taints.get(n) {
                out.absorb(x);
            }
        }
        for r in &refs.relations {
            for oid in self.resolve(r, search_path) {
                for (_, x) in self.masked_names.get(&oid).into_iter().flatten() {
                    out.absorb(x);
                }
            }
            // A whole row is a computed value.
            out.computed = true;
        }
        if refs.star {
            out.absorb(&Self::everything(taints));
        }
        for f in &refs.functions {
            if self.opaque(f) {
                out.opaque.get_or_insert_with(|| format!("function {f}"));
            }
        }
        if !refs.plain && !refs.names.is_empty() {
            out.computed = true;
        }
        out
    }

    /// What a bare `*` may read: every tainted name in scope.
    fn everything(taints: &HashMap<String, Taint>) -> Taint {
        let mut all = Taint::default();
        for t in taints.values() {
            all.absorb(t);
        }
        all
    }

    fn opaque(&self, f: &ObjectName) -> bool {
        match f.schema.as_deref() {
            Some("pg_catalog") => DYNAMIC_SQL_FUNCTIONS.contains(&f.name.as_str()),
            Some(_) => true,
            None => {
                self.user_functions.contains(&f.name)
                    || DYNAMIC_SQL_FUNCTIONS.contains(&f.name.as_str())
            }
        }
    }

    /// The name to blame for a guard's refusal.
    fn culprit(&self, refs: &Refs, taints: &HashMap<String, Taint>, rule: &MaskingRule) -> String {
        let idx = self.rules.iter().position(|(_, _, r)| r.name == rule.name);
        refs.names
            .iter()
            .find(|n| {
                taints
                    .get(*n)
                    .is_some_and(|t| idx.is_some_and(|i| t.rules.contains(&(i as u16))))
            })
            .cloned()
            .unwrap_or_else(|| "*".into())
    }
}

fn refusal(rule: Option<&MaskingRule>, what: String) -> Refusal {
    Refusal {
        sqlstate: SQLSTATE_REFUSED,
        message: format!("Postern refused this statement: {what}"),
        reason: what,
        rule: rule.map(|r| format!("masking: {}", r.name)),
    }
}

#[cfg(test)]
mod tests;
