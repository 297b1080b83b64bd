//! Object privileges (A1): which actions a role may take on which objects.
//!
//! A rule names privileges and an object pattern `datasource.database.schema.object`, each
//! level a name or a glob (`*`, `sales_*`); names with dots or capitals are written in
//! double quotes, as in SQL. Deny rules override allow rules.

use serde::{Deserialize, Serialize};

/// Something a role may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Privilege {
    /// Read rows.
    Select,
    /// Add rows.
    Insert,
    /// Change (or lock for change) rows.
    Update,
    /// Remove rows.
    Delete,
    /// Empty tables.
    Truncate,
    /// Create, alter, drop objects; on `ds.db.*.*` also roles, grants and settings.
    Ddl,
    /// Call functions and procedures that are not harmless built-ins.
    Execute,
    /// Run `DO` blocks (procedural code Postern cannot see into).
    ExecuteSqlBlock,
    /// Run SQL built at run time (`query_to_xml`, `dblink`, computed `set_config`…).
    ExecuteDynamicSql,
    /// `SET ROLE` / `SET SESSION AUTHORIZATION` (also through `set_config`).
    SetRole,
    /// `COPY … TO/FROM PROGRAM`: a shell command on the database server.
    CopyProgram,
    /// `COPY … TO/FROM 'file'`: a file on the database server.
    CopyFile,
}

impl Privilege {
    /// Every privilege (what `ALL` means in a rule).
    pub const ALL: [Privilege; 12] = [
        Privilege::Select,
        Privilege::Insert,
        Privilege::Update,
        Privilege::Delete,
        Privilege::Truncate,
        Privilege::Ddl,
        Privilege::Execute,
        Privilege::ExecuteSqlBlock,
        Privilege::ExecuteDynamicSql,
        Privilege::SetRole,
        Privilege::CopyProgram,
        Privilege::CopyFile,
    ];

    /// The name used in rules and messages (`SELECT`, `EXECUTE SQL BLOCK`…).
    pub fn name(self) -> &'static str {
        match self {
            Privilege::Select => "SELECT",
            Privilege::Insert => "INSERT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
            Privilege::Truncate => "TRUNCATE",
            Privilege::Ddl => "DDL",
            Privilege::Execute => "EXECUTE",
            Privilege::ExecuteSqlBlock => "EXECUTE SQL BLOCK",
            Privilege::ExecuteDynamicSql => "EXECUTE DYNAMIC SQL",
            Privilege::SetRole => "SET ROLE",
            Privilege::CopyProgram => "COPY PROGRAM",
            Privilege::CopyFile => "COPY FILE",
        }
    }

    /// Parses a name as written in rules: case-insensitive, spaces or underscores between
    /// words (`select`, `EXECUTE SQL BLOCK`, `copy_program`).
    pub fn parse(s: &str) -> Option<Privilege> {
        let norm: String = s
            .trim()
            .split([' ', '_'])
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_uppercase();
        Privilege::ALL.into_iter().find(|p| p.name() == norm)
    }
}

impl std::fmt::Display for Privilege {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One level of an object pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Matches any name.
    Any,
    /// Matches exactly this name.
    Exact(String),
    /// A glob with `*` wildcards (split at the stars).
    Glob(Vec<String>),
}

impl Segment {
    fn matches(&self, name: &str) -> bool {
        match self {
            Segment::Any => true,
            Segment::Exact(e) => e == name,
            Segment::Glob(parts) => glob_match(parts, name),
        }
    }
}

/// `parts` are the pieces between `*`s: the first anchors the start, the last the end.
fn glob_match(parts: &[String], name: &str) -> bool {
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return true;
    };
    if parts.len() == 1 {
        return name == first;
    }
    if !name.starts_with(first.as_str()) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid.as_str()) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    rest.ends_with(last.as_str())
}

/// A `datasource.database.schema.object` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPattern {
    text: String,
    levels: [Segment; 4],
}

/// A pattern that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("object pattern {pattern:?}: {problem} (write datasource.database.schema.object; each level a name, \"Quoted.Name\" or a glob such as * or sales_*)")]
pub struct PatternError {
    /// The pattern.
    pub pattern: String,
    /// What is wrong.
    pub problem: String,
}

/// Parses up to `n` dot-separated levels (`"Quoted.Names"`, globs); fewer are padded with
/// `*`. Unquoted names are case-folded to lower case, as PostgreSQL folds identifiers.
/// `Err` carries the problem.
fn parse_levels(s: &str, n: usize) -> Result<Vec<Segment>, String> {
    let mut levels: Vec<Segment> = Vec::with_capacity(n);
    let mut chars = s.trim().chars().peekable();
    loop {
        let mut cur = String::new();
        let mut quoted_any = false;
        let mut has_star = false;
        // One level: a mix of quoted and unquoted runs until an unquoted dot.
        let mut pieces: Vec<String> = Vec::new();
        loop {
            match chars.peek().copied() {
                None | Some('.') => break,
                Some('"') => {
                    chars.next();
                    quoted_any = true;
                    loop {
                        match chars.next() {
                            None => return Err("unterminated quoted name".into()),
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                cur.push('"');
                            }
                            Some('"') => break,
                            Some(c) => cur.push(c),
                        }
                    }
                }
                Some('*') => {
                    chars.next();
                    has_star = true;
                    pieces.push(std::mem::take(&mut cur));
                }
                Some(c) if c.is_whitespace() => {
                    return Err("spaces are only allowed inside double quotes".into());
                }
                Some(c) => {
                    chars.next();
                    cur.extend(c.to_lowercase());
                }
            }
        }
        pieces.push(cur);
        let seg = if has_star {
            if pieces.iter().all(String::is_empty) {
                Segment::Any
            } else {
                Segment::Glob(pieces)
            }
        } else {
            let name = pieces.concat();
            if name.is_empty() && !quoted_any {
                return Err("empty level".into());
            }
            Segment::Exact(name)
        };
        levels.push(seg);
        match chars.next() {
            Some('.') => {
                if levels.len() == n {
                    return Err(format!("more than {n} levels"));
                }
            }
            _ => break,
        }
    }
    while levels.len() < n {
        levels.push(Segment::Any);
    }
    Ok(levels)
}

impl ObjectPattern {
    /// Parses `ds.db.schema.object`. Fewer than four levels are padded with `*`
    /// (`shop` means everything on datasource shop). Unquoted names are case-folded to
    /// lower case, as PostgreSQL folds identifiers.
    pub fn parse(s: &str) -> Result<ObjectPattern, PatternError> {
        let err = |problem: String| PatternError {
            pattern: s.to_string(),
            problem: problem.replace("more than 4 levels", "more than four levels"),
        };
        let levels: [Segment; 4] =
            parse_levels(s, 4)
                .map_err(err)?
                .try_into()
                .map_err(|_| PatternError {
                    pattern: s.to_string(),
                    problem: "more than four levels".into(),
                })?;
        Ok(ObjectPattern {
            text: s.trim().to_string(),
            levels,
        })
    }

    /// Whether the pattern covers this object.
    pub fn matches(&self, datasource: &str, database: &str, schema: &str, object: &str) -> bool {
        let [d, b, s, o] = &self.levels;
        d.matches(datasource) && b.matches(database) && s.matches(schema) && o.matches(object)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A `datasource.database.schema.table.column` pattern (masking rules), with the same
/// syntax as [`ObjectPattern`]: `*.*.*.*.*email*` covers every column whose name holds
/// "email".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPattern {
    text: String,
    levels: [Segment; 5],
}

impl ColumnPattern {
    /// Parses `ds.db.schema.table.column` (fewer levels are padded with `*`).
    pub fn parse(s: &str) -> Result<ColumnPattern, PatternError> {
        let err = |problem: String| PatternError {
            pattern: s.to_string(),
            problem: format!(
                "{problem}; a column pattern is datasource.database.schema.table.column"
            ),
        };
        let levels: [Segment; 5] = parse_levels(s, 5)
            .map_err(err)?
            .try_into()
            .map_err(|_| err("more than 5 levels".into()))?;
        Ok(ColumnPattern {
            text: s.trim().to_string(),
            levels,
        })
    }

    /// Whether the pattern covers this column.
    pub fn matches(&self, c: &ColumnRef<'_>) -> bool {
        let [d, b, s, t, col] = &self.levels;
        d.matches(c.datasource)
            && b.matches(c.database)
            && s.matches(c.schema)
            && t.matches(c.table)
            && col.matches(c.column)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern may cover columns of this datasource and database.
    pub fn covers_database(&self, datasource: &str, database: &str) -> bool {
        self.levels[0].matches(datasource) && self.levels[1].matches(database)
    }

    /// Anchored regular expressions (PostgreSQL's `~` syntax) for the schema, table and
    /// column levels, so that the catalog can be asked for candidate columns only.
    pub fn level_regexes(&self) -> [String; 3] {
        let re = |s: &Segment| match s {
            Segment::Any => String::new(),
            Segment::Exact(e) => format!("^{}$", regex_escape(e)),
            Segment::Glob(parts) => format!(
                "^{}$",
                parts
                    .iter()
                    .map(|p| regex_escape(p))
                    .collect::<Vec<_>>()
                    .join(".*")
            ),
        };
        [
            re(&self.levels[2]),
            re(&self.levels[3]),
            re(&self.levels[4]),
        ]
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A column, fully resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnRef<'a> {
    /// Datasource alias.
    pub datasource: &'a str,
    /// Database.
    pub database: &'a str,
    /// Schema.
    pub schema: &'a str,
    /// Table.
    pub table: &'a str,
    /// Column.
    pub column: &'a str,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Grants the privileges.
    Allow,
    /// Refuses them, whatever else allows them.
    Deny,
}

/// One rule of a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivilegeRule {
    /// Allow or deny.
    pub effect: Effect,
    /// Which privileges.
    pub privileges: Vec<Privilege>,
    /// On which objects.
    pub pattern: ObjectPattern,
    /// The role that holds the rule (named in decisions).
    pub role: String,
}

/// An object, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedObject<'a> {
    /// Datasource alias.
    pub datasource: &'a str,
    /// Database.
    pub database: &'a str,
    /// Schema.
    pub schema: &'a str,
    /// Object.
    pub object: &'a str,
}

impl std::fmt::Display for ResolvedObject<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.datasource, self.database, self.schema, self.object
        )
    }
}

/// The outcome of a privilege check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<'r> {
    /// Allowed by this rule.
    Allowed(&'r PrivilegeRule),
    /// Refused by this deny rule.
    Denied(&'r PrivilegeRule),
    /// No rule allows it.
    NotGranted,
}

/// Checks one privilege on one object against all of a user's rules: any matching deny
/// wins; otherwise any matching allow.
pub fn check<'r>(
    rules: &'r [PrivilegeRule],
    privilege: Privilege,
    o: &ResolvedObject<'_>,
) -> Check<'r> {
    let mut allowed = None;
    for r in rules {
        if !r.privileges.contains(&privilege)
            || !r
                .pattern
                .matches(o.datasource, o.database, o.schema, o.object)
        {
            continue;
        }
        match r.effect {
            Effect::Deny => return Check::Denied(r),
            Effect::Allow => {
                allowed.get_or_insert(r);
            }
        }
    }
    match allowed {
        Some(r) => Check::Allowed(r),
        None => Check::NotGranted,
    }
}

/// Whether some allow rule grants any privilege on some object in `schema` of `database`
/// (what MySQL's `USE db` needs: access to something there).
pub fn grants_within(
    rules: &[PrivilegeRule],
    datasource: &str,
    database: &str,
    schema: &str,
) -> bool {
    rules.iter().any(|r| {
        r.effect == Effect::Allow && {
            let [d, b, s, _] = &r.pattern.levels;
            d.matches(datasource) && b.matches(database) && s.matches(schema)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ObjectPattern {
        ObjectPattern::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn patterns_match_levels_and_globs() {
        let cases = [
            (
                "shop.shop.public.products",
                "shop",
                "shop",
                "public",
                "products",
                true,
            ),
            (
                "shop.shop.public.products",
                "shop",
                "shop",
                "public",
                "orders",
                false,
            ),
            ("shop.*.public.*", "shop", "x", "public", "orders", true),
            ("shop", "shop", "x", "y", "z", true),
            ("shop", "crm", "x", "y", "z", false),
            ("*.*.*.*", "a", "b", "c", "d", true),
            (
                "shop.shop.public.sales_*",
                "shop",
                "shop",
                "public",
                "sales_2024",
                true,
            ),
            (
                "shop.shop.public.sales_*",
                "shop",
                "shop",
                "public",
                "sale",
                false,
            ),
            (
                "shop.shop.public.*_archive",
                "shop",
                "shop",
                "public",
                "orders_archive",
                true,
            ),
            (
                "shop.shop.public.a*b*c",
                "shop",
                "shop",
                "public",
                "aXbYc",
                true,
            ),
            (
                "shop.shop.public.a*b*c",
                "shop",
                "shop",
                "public",
                "abc",
                true,
            ),
            (
                "shop.shop.public.a*b*c",
                "shop",
                "shop",
                "public",
                "ac",
                false,
            ),
            (
                "shop.shop.public.Products",
                "shop",
                "shop",
                "public",
                "products",
                true,
            ),
            (
                "shop.shop.public.\"Products\"",
                "shop",
                "shop",
                "public",
                "products",
                false,
            ),
            (
                "shop.shop.public.\"Products\"",
                "shop",
                "shop",
                "public",
                "Products",
                true,
            ),
            (
                "shop.shop.\"my.schema\".t",
                "shop",
                "shop",
                "my.schema",
                "t",
                true,
            ),
            (
                "shop.shop.public.\"a*\"",
                "shop",
                "shop",
                "public",
                "abc",
                false,
            ),
            (
                "shop.shop.public.\"a*\"",
                "shop",
                "shop",
                "public",
                "a*",
                true,
            ),
            // The whole-database object `*` is matched only by a wildcard.
            ("shop.shop.*.*", "shop", "shop", "*", "*", true),
            ("shop.shop.public.*", "shop", "shop", "*", "*", false),
        ];
        for (pat, d, b, s, o, want) in cases {
            assert_eq!(p(pat).matches(d, b, s, o), want, "{pat} vs {d}.{b}.{s}.{o}");
        }
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        for bad in ["", "a..b", "a.b.c.d.e", "a.\"b", "a b", "."] {
            let e = ObjectPattern::parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("datasource.database.schema.object"),
                "{e}"
            );
        }
    }

    #[test]
    fn privilege_names() {
        assert_eq!(Privilege::parse("select"), Some(Privilege::Select));
        assert_eq!(
            Privilege::parse("EXECUTE SQL BLOCK"),
            Some(Privilege::ExecuteSqlBlock)
        );
        assert_eq!(
            Privilege::parse("execute_dynamic_sql"),
            Some(Privilege::ExecuteDynamicSql)
        );
        assert_eq!(Privilege::parse(" set  role "), Some(Privilege::SetRole));
        assert_eq!(Privilege::parse("selec"), None);
        for p in Privilege::ALL {
            assert_eq!(Privilege::parse(p.name()), Some(p));
        }
    }

    #[test]
    fn deny_overrides_allow() {
        let rule = |effect, privs: &[Privilege], pat: &str| PrivilegeRule {
            effect,
            privileges: privs.to_vec(),
            pattern: p(pat),
            role: "r".into(),
        };
        let rules = vec![
            rule(Effect::Allow, &[Privilege::Select], "shop.*.public.*"),
            rule(Effect::Deny, &[Privilege::Select], "shop.*.public.salaries"),
        ];
        let obj = |o| ResolvedObject {
            datasource: "shop",
            database: "shop",
            schema: "public",
            object: o,
        };
        assert!(matches!(
            check(&rules, Privilege::Select, &obj("orders")),
            Check::Allowed(_)
        ));
        assert!(matches!(
            check(&rules, Privilege::Select, &obj("salaries")),
            Check::Denied(_)
        ));
        assert_eq!(
            check(&rules, Privilege::Insert, &obj("orders")),
            Check::NotGranted
        );
    }
}
