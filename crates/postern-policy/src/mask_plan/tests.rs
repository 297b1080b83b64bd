use super::*;
use crate::privilege::ColumnPattern;

fn rule(policy: &str, name: &str, on: &str, f: &str, allow_filter: bool) -> MaskingRule {
    MaskingRule {
        name: format!("{policy}/{name}"),
        pattern: ColumnPattern::parse(on).unwrap(),
        function: MaskFn::parse(f).unwrap(),
        allow_filter,
    }
}

fn rel(oid: u32, name: &str, cols: &[&str], def: Option<&str>) -> CatalogRelation {
    CatalogRelation {
        oid,
        schema: "public".into(),
        name: name.into(),
        kind: if def.is_some() { 'v' } else { 'r' },
        columns: cols
            .iter()
            .enumerate()
            .map(|(i, c)| (i as i16 + 1, c.to_string()))
            .collect(),
        definition: def.map(Into::into),
        database: None,
    }
}

fn masking(revealed: &[&str]) -> SessionMasking {
    let policies = vec![MaskingPolicy {
        name: "pii".into(),
        priority: 1,
        rules: vec![
            rule("pii", "emails", "*.*.*.*.*email*", "email", false),
            rule(
                "pii",
                "ssn",
                "shop.*.public.customers.ssn",
                "partial(0, 4)",
                false,
            ),
            rule("pii", "ids", "shop.*.public.customers.uid", "hash", true),
        ],
    }];
    let catalog =
        MaskCatalog {
            relations: vec![
            rel(100, "customers", &["id", "name", "email", "ssn", "uid"], None),
            rel(
                200,
                "v",
                &["id", "ssn", "e", "h"],
                Some(
                    " SELECT c.id, c.ssn, upper(c.email) AS e, md5(c.uid) AS h FROM customers c;",
                ),
            ),
            rel(300, "vv", &["ssn"], Some(" SELECT v.ssn FROM v;")),
            rel(400, "orders", &["id", "total"], None),
        ],
            user_functions: ["get_ssn".to_string()].into(),
            search_path: vec!["public".into()],
            mysql: false,
        };
    let revealed = revealed.iter().map(|s| s.to_string()).collect();
    SessionMasking::new(&policies, &revealed, "shop", "shop", &catalog).unwrap()
}

fn facts(sql: &str) -> StatementFacts {
    match analyse(sql, LexSettings::default())
        .unwrap()
        .statements
        .remove(0)
    {
        Statement::Analysed(f) => f,
        other => panic!("{other:?}"),
    }
}

fn plan(m: &SessionMasking, sql: &str, mode: Mode) -> Result<Option<StatementMask>, Refusal> {
    m.plan(&facts(sql), &HashMap::new(), &["public".to_string()], mode)
}

fn name(m: &SessionMasking, mask: Option<Mask>) -> Option<String> {
    mask.map(|k| m.describe(k))
}

#[test]
fn source_columns_of_tables_and_views() {
    let m = masking(&[]);
    assert_eq!(name(&m, m.source(100, 3)).as_deref(), Some("pii/emails"));
    assert_eq!(name(&m, m.source(100, 4)).as_deref(), Some("pii/ssn"));
    assert_eq!(m.source(100, 2), None);
    assert_eq!(m.source(400, 1), None);
    // A view column that is the table's column keeps the rule's function…
    assert_eq!(m.source(200, 2).map(|k| k.how), Some(How::Direct));
    assert!(matches!(
        m.function(m.source(200, 2).unwrap()),
        MaskFn::Partial { .. }
    ));
    // …a computed one gets a function that reveals nothing of it.
    assert_eq!(m.source(200, 3).map(|k| k.how), Some(How::Derived));
    assert!(matches!(
        m.function(m.source(200, 3).unwrap()),
        MaskFn::Full
    ));
    assert!(matches!(
        m.function(m.source(200, 4).unwrap()),
        MaskFn::Hash
    ));
    assert_eq!(m.source(200, 1), None);
    // Views over views.
    assert_eq!(name(&m, m.source(300, 1)).as_deref(), Some("pii/ssn"));
    // REVEAL exempts.
    let r = masking(&["pii/ssn"]);
    assert_eq!(r.source(100, 4), None);
    assert_eq!(r.source(300, 1), None);
}

#[test]
fn computed_columns_follow_lineage() {
    let m = masking(&[]);
    let p = plan(
        &m,
        "select name, upper(email), substr(ssn, 1, 3) from customers",
        Mode::Masked,
    )
    .unwrap()
    .unwrap();
    assert_eq!(p.computed(0), None);
    assert_eq!(
        name(&m, p.computed(1)).as_deref(),
        Some("pii/emails (computed)")
    );
    assert!(matches!(m.function(p.computed(2).unwrap()), MaskFn::Full));
    let p = plan(
        &m,
        "with x as (select ssn as s from customers) select upper(s) from x",
        Mode::Masked,
    )
    .unwrap()
    .unwrap();
    assert!(p.computed(0).is_some());
    let p = plan(&m, "select row_to_json(c) from customers c", Mode::Masked)
        .unwrap()
        .unwrap();
    assert!(p.computed(0).is_some());
    let p = plan(&m, "select upper(e) from v", Mode::Masked)
        .unwrap()
        .unwrap();
    assert!(p.computed(0).is_some());
    assert_eq!(
        plan(&m, "select total * 2 from orders", Mode::Masked).unwrap(),
        None
    );
    // A function defined in the database: masked in MASKED mode, refused in PROTECTED.
    let p = plan(&m, "select get_ssn(1)", Mode::Masked)
        .unwrap()
        .unwrap();
    assert_eq!(p.computed(0).map(|k| k.how), Some(How::Opaque));
    let e = plan(&m, "select get_ssn(1)", Mode::Protected).unwrap_err();
    assert!(e.message.contains("get_ssn"), "{e:?}");
}

#[test]
fn inference_and_copy_guards() {
    let m = masking(&[]);
    for sql in [
        "select id from customers where ssn like '1%'",
        "select id from customers order by ssn",
        "select ssn from customers order by 1",
        "select count(*) from customers group by email",
        "select * from customers a join customers b on a.ssn = b.ssn",
        "select id from v where ssn = '1'",
        "select id from customers where upper(email) like 'A%'",
        "select count(*) filter (where ssn like '1%') from customers",
        "select id from (select id, ssn as s from customers) q where s like '1%'",
    ] {
        let e = plan(&m, sql, Mode::Masked).unwrap_err();
        assert_eq!(e.sqlstate, "42501", "{sql}");
        assert!(
            e.rule.as_deref().unwrap().starts_with("masking: pii/"),
            "{sql}: {e:?}"
        );
    }
    // allow_filter rules may be filtered on.
    assert!(plan(&m, "select id from customers where uid = 'x'", Mode::Masked).is_ok());
    for sql in [
        "insert into orders (id) select ssn::int from customers",
        "update customers set name = ssn",
        "create view leak as select ssn from customers",
        "create table leak as select email from customers",
        "copy (select ssn from customers) to stdout",
        "copy customers to stdout",
        "select * from pg_stats",
        // What a function Postern cannot see into reads could be filtered on or copied,
        // and neither can be masked afterwards: refused in MASKED mode too.
        "select id from customers where get_ssn(id) like '1%'",
        "select id from orders order by get_ssn(id)",
        "create table leak as select get_ssn(1)",
        "insert into orders (id) select get_ssn(1)::int",
        "do $$ begin raise notice '%', (select ssn from customers limit 1); end $$",
    ] {
        let e = plan(&m, sql, Mode::Masked).unwrap_err();
        assert_eq!(e.sqlstate, "42501", "{sql}");
    }
    assert!(plan(&m, "copy orders to stdout", Mode::Masked)
        .unwrap()
        .is_none());
    assert!(
        plan(&m, "copy customers (id, name) to stdout", Mode::Masked)
            .unwrap()
            .is_none()
    );
}

#[test]
fn messages_of_statements_touching_masked_data_are_hidden() {
    let m = masking(&[]);
    for sql in [
        "select ssn::int from customers",
        "update customers set name = 'x'",
        "delete from customers where id = 1",
        "select name from customers",
        "select get_ssn(1)",
        "fetch 1 from c",
    ] {
        let p = plan(&m, sql, Mode::Masked).unwrap();
        assert!(p.and_then(|p| p.messages).is_some(), "{sql}");
    }
    for sql in ["update orders set total = 1", "select total from orders"] {
        let p = plan(&m, sql, Mode::Masked).unwrap();
        assert!(p.and_then(|p| p.messages).is_none(), "{sql}");
    }
}

/// A MySQL catalog: databases are schemas, view definitions are MySQL text.
fn mysql_masking() -> SessionMasking {
    let policies = vec![MaskingPolicy {
        name: "pii".into(),
        priority: 1,
        rules: vec![rule(
            "pii",
            "ssn",
            "shopmy.crm.crm.customers.ssn",
            "partial(0, 4)",
            false,
        )],
    }];
    let mut customers = rel(1, "customers", &["id", "name", "ssn"], None);
    customers.schema = "crm".into();
    customers.database = Some("crm".into());
    let mut view = rel(
        2,
        "v",
        &["id", "tail"],
        Some("select `crm`.`customers`.`id` AS `id`,right(`crm`.`customers`.`ssn`,4) AS `tail` from `crm`.`customers`"),
    );
    view.schema = "crm".into();
    view.database = Some("crm".into());
    let catalog = MaskCatalog {
        relations: vec![customers, view],
        mysql: true,
        ..MaskCatalog::default()
    };
    SessionMasking::new(&policies, &Default::default(), "shopmy", "app", &catalog)
        .expect("a rule applies in database crm")
}

fn mysql_plan(m: &SessionMasking, sql: &str) -> Result<Option<StatementMask>, Refusal> {
    let f = match postern_sql::mysql::analyse(sql)
        .unwrap()
        .statements
        .remove(0)
    {
        Statement::Analysed(f) => f,
        other => panic!("{other:?}"),
    };
    m.plan(&f, &HashMap::new(), &["crm".to_string()], Mode::Masked)
}

#[test]
fn mysql_catalogs_name_their_columns() {
    let m = mysql_masking();
    let ssn = m.source_named("crm", "customers", "ssn").expect("masked");
    assert_eq!(ssn.how, How::Direct);
    assert_eq!(m.source_named("crm", "customers", "name"), None);
    // A table the catalog does not hold yet: the rules' patterns decide.
    assert_eq!(
        m.source_by_rules("shopmy", "crm", "customers", "ssn")
            .map(|x| x.how),
        Some(How::Direct)
    );
    assert_eq!(m.source_by_rules("shopmy", "crm", "other", "ssn"), None);
    assert_eq!(
        m.source_by_rules("elsewhere", "crm", "customers", "ssn"),
        None
    );
    // The view's column computed from ssn is masked as derived from it.
    let tail = m
        .source_named("crm", "v", "tail")
        .expect("view column masked");
    assert_eq!(tail.how, How::Derived);
    assert_eq!(m.source_named("crm", "v", "id"), None);
    // Lineage of computed result columns, and the inference guard, on MySQL text.
    let p = mysql_plan(&m, "SELECT CONCAT(name, ssn) FROM customers")
        .unwrap()
        .expect("plan");
    assert_eq!(p.computed(0).map(|x| x.how), Some(How::Derived));
    let e = mysql_plan(&m, "SELECT name FROM `crm`.`customers` WHERE ssn LIKE '1%'").unwrap_err();
    assert!(e.message.contains("ssn"), "{}", e.message);
    assert!(mysql_plan(&m, "SELECT name FROM customers WHERE id = 1")
        .unwrap()
        .is_some());
}
