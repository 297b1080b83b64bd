//! Postern's statement decisions, free of I/O: object privileges (A1) with wildcard
//! patterns and deny-overrides-allow, passthrough modes (A2), the SQL firewall (A3,
//! [`firewall`]), the decision on an analysed statement ([`decide`]), and the verdict on a
//! whole message of SQL that the proxies and `postern policy check` share ([`judge`]).

pub mod builtins;
pub mod decide;
pub mod firewall;
pub mod judge;
pub mod mask_plan;
pub mod masking;
pub mod mysql_builtins;
pub mod privilege;
pub mod spec;

pub use decide::{decide, Context, Decision, Mode};
pub use firewall::{
    evaluate, FirewallAction, FirewallInput, FirewallRule, FirewallRuleSpec, FirewallVerdict,
};
pub use judge::{
    allow_list_form, apply_effects, decide_in, judge, Arrival, Judgement, Policy, Refusal,
    SessionView,
};
pub use mask_plan::{
    CatalogRelation, How, Mask, MaskCatalog, PlannedMask, SessionMasking, StatementMask,
};
pub use masking::{rule_for, MaskingPolicy, MaskingRule};
pub use privilege::{
    check, Check, ColumnPattern, ColumnRef, Effect, ObjectPattern, PatternError, Privilege,
    PrivilegeRule, ResolvedObject,
};
pub use spec::{compile_masking_policy, compile_rules, parse_mode, validate_role};
