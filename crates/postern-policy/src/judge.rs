//! The verdict on one message of SQL text: the firewall over the whole text, then the
//! mode and privileges per statement. Shared by the proxies (before anything goes
//! upstream) and by `postern policy check` (which runs nothing), so both say the same.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use postern_core::DatasourceType;
use postern_sql::pg::split_statements;
use postern_sql::{Analysis, SessionEffect, Statement, StatementFacts, SyntaxError};
use serde::Serialize;
use time::OffsetDateTime;

use crate::decide::{decide, Context, Decision, Mode};
use crate::firewall::{evaluate, FirewallAction, FirewallInput, FirewallRule, FirewallVerdict};
use crate::privilege::PrivilegeRule;

/// SQLSTATE of a refusal by policy (insufficient_privilege).
pub const SQLSTATE_REFUSED: &str = "42501";
/// SQLSTATE of text that does not parse (syntax_error).
pub const SQLSTATE_SYNTAX: &str = "42601";

/// What the client is told when a deny-silently rule refuses: nothing about the rule.
pub const SILENT_REFUSAL: &str = "Postern refused this statement by policy";

/// The form of a statement as kept on a datasource's allow-list: trimmed, without a
/// trailing `;`. The proxies compare exactly this.
pub fn allow_list_form(sql: &str) -> &str {
    let t = sql.trim();
    t.strip_suffix(';').map(str::trim_end).unwrap_or(t)
}

/// A user's standing policy on one datasource (fixed for a session).
#[derive(Debug, Clone)]
pub struct Policy {
    /// Datasource alias.
    pub datasource: String,
    /// The database the datasource connects to.
    pub database: String,
    /// The user's effective mode.
    pub mode: Mode,
    /// The privilege rules of all the user's roles.
    pub rules: Vec<PrivilegeRule>,
    /// The datasource's firewall, in order.
    pub firewall: Vec<FirewallRule>,
    /// The user's roles (firewall rules may be limited to some).
    pub roles: Vec<String>,
    /// Allow-listed statements, in [`allow_list_form`].
    pub allow_list: HashSet<String>,
    /// Whether catalog reads need no grant (see [`Context::catalog_read`]).
    pub catalog_read: bool,
    /// Masking policies of the user's roles (empty: nothing is masked).
    pub masking: Vec<crate::masking::MaskingPolicy>,
    /// Masking rules (`policy/rule`) the user's roles REVEAL.
    pub revealed: HashSet<String>,
    /// The datasource's kind: whose SQL the statements are.
    pub dialect: DatasourceType,
}

impl Policy {
    /// The masking rules that may mask anything for this user on this datasource and
    /// database (rules they are exempt from left out), whatever the mode.
    pub fn masking_rules(&self) -> impl Iterator<Item = &crate::masking::MaskingRule> {
        self.masking
            .iter()
            .flat_map(|p| &p.rules)
            .filter(|r| r.applies(&self.revealed, &self.datasource, &self.database))
    }

    /// Everything about [`Policy::masking_rules`] that masking depends on, as one string:
    /// equal fingerprints mean masking built for one policy is right for the other.
    pub fn masking_fingerprint(&self) -> String {
        let mut f = String::new();
        for p in &self.masking {
            for r in &p.rules {
                if r.applies(&self.revealed, &self.datasource, &self.database) {
                    f.push_str(&format!(
                        "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1e}",
                        p.priority,
                        r.name,
                        r.pattern.as_str(),
                        r.function,
                        r.allow_filter
                    ));
                }
            }
        }
        f
    }
}

/// What Postern knows of the session a statement runs in.
#[derive(Debug, Clone, Default)]
pub struct SessionView {
    /// Schemas an unqualified name may resolve to (`None`: not known).
    pub search_path: Option<Vec<String>>,
    /// Statements prepared in this session (SQL PREPARE or a named protocol Parse), by name.
    pub prepared: HashMap<String, StatementFacts>,
    /// The search_path the session started with (what `RESET` and `DISCARD ALL` restore).
    pub initial_search_path: Vec<String>,
    /// What `$user` in a search_path means: the upstream user's schema, when it exists.
    pub user_schema: Option<String>,
}

/// Where and when the statement arrives.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// Client address.
    pub client: IpAddr,
    /// Now.
    pub now: OffsetDateTime,
}

/// A refusal, ready for the client and the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// SQLSTATE for the client.
    pub sqlstate: &'static str,
    /// What the client is told.
    pub message: String,
    /// What the audit log records (names the deciding rule even when the client is not told).
    pub reason: String,
    /// The rule that decided, when one did (`firewall: NAME` or `ROLE: PATTERN`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// The verdict on a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judgement {
    /// The firewall rule that applied, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firewall: Option<FirewallVerdict>,
    /// Per statement, in order (empty when the text does not parse).
    pub decisions: Vec<Decision>,
    /// Set when the message must not go upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
}

impl Judgement {
    /// Whether the message may go upstream.
    pub fn allowed(&self) -> bool {
        self.refusal.is_none()
    }

    /// Whether an allow-and-alert firewall rule let it through.
    pub fn alert(&self) -> bool {
        self.firewall
            .as_ref()
            .is_some_and(|f| f.action == FirewallAction::AllowAndAlert)
    }
}

/// Judges one message of SQL text (all its statements) under `policy` in `session`.
pub fn judge(
    policy: &Policy,
    session: &SessionView,
    text: &str,
    analysis: &Result<Analysis, SyntaxError>,
    arrival: Arrival,
) -> Judgement {
    if policy.mode == Mode::Passthrough {
        return Judgement {
            firewall: None,
            decisions: vec![Decision::Allow {
                note: Some("PASSTHROUGH mode: not checked".into()),
            }],
            refusal: None,
        };
    }
    let analysis = match analysis {
        Ok(a) => a,
        Err(e) => {
            let listed = policy.allow_list.contains(allow_list_form(text));
            // The server reads SQL with the same grammar and would refuse it too; PROTECTED
            // mode does not let unparsable text through on that assumption.
            let refusal = (policy.mode == Mode::Protected && !listed).then(|| Refusal {
                sqlstate: SQLSTATE_SYNTAX,
                message: e.message.clone(),
                reason: format!("does not parse: {}", e.message),
                rule: None,
            });
            return Judgement {
                firewall: None,
                decisions: Vec::new(),
                refusal,
            };
        }
    };
    let firewall = if policy.firewall.is_empty() {
        None
    } else {
        evaluate(
            &policy.firewall,
            &FirewallInput {
                datasource: &policy.datasource,
                roles: &policy.roles,
                client: arrival.client,
                now: arrival.now,
                text,
                analysis,
                comment_terminated: match policy.dialect {
                    DatasourceType::Mysql => postern_sql::mysql::ends_with_line_comment(text),
                    DatasourceType::Postgres => postern_sql::mask::ends_with_line_comment(text),
                },
                dialect: policy.dialect,
            },
        )
    };
    if let Some(v) = &firewall {
        let rule = Some(format!("firewall: {}", v.rule));
        let refusal = match v.action {
            FirewallAction::Deny => Some(Refusal {
                sqlstate: SQLSTATE_REFUSED,
                message: format!("Postern refused this statement: firewall rule {}", v.rule),
                reason: format!("firewall rule {}", v.rule),
                rule,
            }),
            FirewallAction::DenySilently => Some(Refusal {
                sqlstate: SQLSTATE_REFUSED,
                message: SILENT_REFUSAL.into(),
                reason: format!("firewall rule {} (deny silently)", v.rule),
                rule,
            }),
            FirewallAction::Allow | FirewallAction::AllowAndAlert => None,
        };
        if let Some(r) = refusal {
            let d = Decision::Deny {
                reason: r.reason.clone(),
                rule: r.rule.clone(),
            };
            return Judgement {
                firewall,
                decisions: vec![d; analysis.statements.len().max(1)],
                refusal: Some(r),
            };
        }
    }
    // Raw statement texts are needed only to look an unanalysable one up on the allow-list.
    let raw = if policy.mode == Mode::Protected && !analysis.fully_analysed() {
        match policy.dialect {
            DatasourceType::Mysql => postern_sql::mysql::split_statements(text),
            DatasourceType::Postgres => split_statements(text),
        }
    } else {
        Vec::new()
    };
    let n = analysis.statements.len();
    // Later statements of the message run in the session as earlier ones left it (a SET
    // search_path or PREPARE before them): judge them in a copy carrying those effects.
    let mut changed: Option<SessionView> = None;
    let mut decisions = Vec::with_capacity(n);
    let mut refusal = None;
    for (i, s) in analysis.statements.iter().enumerate() {
        let view = changed.as_ref().unwrap_or(session);
        let allow_listed = raw
            .get(i)
            .is_some_and(|r| policy.allow_list.contains(allow_list_form(r)));
        let d = decide(s, &context(policy, view, allow_listed));
        if let (Decision::Deny { reason, rule }, None) = (&d, &refusal) {
            let message = if n > 1 {
                format!(
                    "Postern refused this query: statement {} of {n}: {reason}",
                    i + 1
                )
            } else {
                format!("Postern refused this statement: {reason}")
            };
            refusal = Some(Refusal {
                sqlstate: SQLSTATE_REFUSED,
                message,
                reason: reason.clone(),
                rule: rule.clone(),
            });
        }
        if let Statement::Analysed(f) = s {
            if i + 1 < n && f.changes_session() {
                apply_statement(changed.get_or_insert_with(|| session.clone()), f);
            }
        }
        decisions.push(d);
    }
    Judgement {
        firewall,
        decisions,
        refusal,
    }
}

/// The decision on one statement in the session as it is now (a statement prepared with
/// SQL PREPARE and bound through the protocol later). The firewall is not consulted: it
/// judged the text that prepared it.
pub fn decide_in(policy: &Policy, session: &SessionView, statement: &Statement) -> Decision {
    decide(statement, &context(policy, session, false))
}

/// The decision context of `policy` in `session`.
fn context<'a>(policy: &'a Policy, session: &'a SessionView, allow_listed: bool) -> Context<'a> {
    Context {
        datasource: &policy.datasource,
        database: &policy.database,
        search_path: session.search_path.as_deref(),
        existing_schemas: None,
        mode: policy.mode,
        rules: &policy.rules,
        catalog_read: policy.catalog_read,
        prepared: &session.prepared,
        allow_listed,
        dialect: policy.dialect,
    }
}

/// Applies what an allowed message changes in the session: search_path (widened to
/// every schema it may now hold, since the statement may yet fail or be rolled back; see
/// [`SessionView::search_path`]) and prepared statements.
pub fn apply_effects(session: &mut SessionView, analysis: &Analysis) {
    for s in &analysis.statements {
        if let Statement::Analysed(f) = s {
            if f.changes_session() {
                apply_statement(session, f);
            }
        }
    }
}

fn apply_statement(session: &mut SessionView, f: &StatementFacts) {
    for e in &f.session {
        match e {
            SessionEffect::SearchPath(p) => {
                let p = expand_path(p, session.user_schema.as_deref());
                widen(&mut session.search_path, &p);
            }
            SessionEffect::SearchPathDefault => {
                let initial = std::mem::take(&mut session.initial_search_path);
                widen(&mut session.search_path, &initial);
                session.initial_search_path = initial;
            }
            SessionEffect::SearchPathUnknown => session.search_path = None,
            SessionEffect::UseDatabase(db) => {
                widen(&mut session.search_path, std::slice::from_ref(db))
            }
            _ => {}
        }
    }
    match f.kind {
        postern_sql::StatementKind::Prepare => {
            if let Some(name) = &f.prepared {
                session.prepared.insert(name.clone(), f.clone());
            }
        }
        postern_sql::StatementKind::Deallocate => match &f.prepared {
            Some(name) => {
                session.prepared.remove(name);
            }
            None => session.prepared.clear(),
        },
        _ if f.discards_all() => session.prepared.clear(),
        _ => {}
    }
}

/// `$user` → the session user's schema when it exists, else nothing (as the server does).
pub fn expand_path(path: &[String], user: Option<&str>) -> Vec<String> {
    path.iter()
        .filter_map(|s| {
            if s == "$user" {
                user.map(str::to_string)
            } else {
                Some(s.clone())
            }
        })
        .collect()
}

fn widen(path: &mut Option<Vec<String>>, more: &[String]) {
    if let Some(p) = path {
        for s in more {
            if !p.contains(s) {
                p.push(s.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::compile_rules;
    use postern_core::PrivilegeSpec;
    use postern_sql::pg::{analyse, LexSettings};

    fn policy(mode: Mode, allow: &[(&str, &str)]) -> Policy {
        let specs: Vec<PrivilegeSpec> = allow
            .iter()
            .map(|(p, on)| PrivilegeSpec {
                allow: vec![p.to_string()],
                deny: vec![],
                on: on.to_string(),
            })
            .collect();
        Policy {
            datasource: "shop".into(),
            database: "shopdb".into(),
            mode,
            rules: compile_rules("reader", &specs).unwrap(),
            firewall: vec![],
            roles: vec!["reader".into()],
            allow_list: HashSet::new(),
            catalog_read: true,
            masking: Vec::new(),
            revealed: Default::default(),
            dialect: DatasourceType::Postgres,
        }
    }

    fn session() -> SessionView {
        SessionView {
            search_path: Some(vec!["public".into()]),
            initial_search_path: vec!["public".into()],
            ..SessionView::default()
        }
    }

    fn at() -> Arrival {
        Arrival {
            client: IpAddr::from([127, 0, 0, 1]),
            now: OffsetDateTime::now_utc(),
        }
    }

    fn run(p: &Policy, s: &SessionView, sql: &str) -> Judgement {
        judge(p, s, sql, &analyse(sql, LexSettings::default()), at())
    }

    #[test]
    fn multi_statement_refusal_names_the_statement() {
        let p = policy(Mode::Masked, &[("SELECT", "shop.*.public.products")]);
        let j = run(
            &p,
            &session(),
            "select * from products; select * from orders",
        );
        let r = j.refusal.expect("refused");
        assert_eq!(r.sqlstate, SQLSTATE_REFUSED);
        assert!(r.message.contains("statement 2 of 2"), "{}", r.message);
        assert!(
            r.message.contains("shop.shopdb.public.orders"),
            "{}",
            r.message
        );
        assert!(j.decisions[0].allowed());
        assert!(run(&p, &session(), "select * from products").allowed());
    }

    #[test]
    fn syntax_errors_refused_only_in_protected_mode() {
        let sql = "selec * from products";
        let j = run(&policy(Mode::Protected, &[]), &session(), sql);
        assert_eq!(j.refusal.unwrap().sqlstate, SQLSTATE_SYNTAX);
        assert!(run(&policy(Mode::Masked, &[]), &session(), sql).allowed());
        let mut p = policy(Mode::Protected, &[]);
        p.allow_list.insert(sql.into());
        assert!(run(&p, &session(), &format!("  {sql} ;")).allowed());
    }

    #[test]
    fn prepare_then_execute_in_one_message() {
        let p = policy(Mode::Protected, &[("SELECT", "shop.*.public.products")]);
        let ok = "prepare q as select * from products; execute q";
        assert!(run(&p, &session(), ok).allowed());
        let bad = "prepare q as select * from orders; execute q";
        assert!(!run(&p, &session(), bad).allowed());
    }

    #[test]
    fn later_statements_see_earlier_effects() {
        let p = policy(Mode::Masked, &[("SELECT", "shop.*.public.products")]);
        let sql = "set search_path = secret; select * from products";
        let r = run(&p, &session(), sql).refusal.expect("refused");
        assert!(r.message.contains("secret.products"), "{}", r.message);
    }

    #[test]
    fn effects_widen_the_search_path_and_track_prepared() {
        let mut s = session();
        let a = analyse(
            "set search_path = \"$user\", secret; prepare q as select 1",
            LexSettings::default(),
        )
        .unwrap();
        apply_effects(&mut s, &a);
        assert_eq!(
            s.search_path.as_deref(),
            Some(&["public".to_string(), "secret".to_string()][..])
        );
        assert!(s.prepared.contains_key("q"));
        let a = analyse(
            "deallocate all; set local search_path = x",
            LexSettings::default(),
        )
        .unwrap();
        apply_effects(&mut s, &a);
        assert!(s.prepared.is_empty());
        assert_eq!(s.search_path, None);
        assert_eq!(
            expand_path(&["$user".into(), "public".into()], Some("app")),
            ["app", "public"]
        );
    }
}
