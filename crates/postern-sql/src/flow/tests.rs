use crate::analysis::Statement;
use crate::pg::{analyse, LexSettings};

use super::*;

fn flow(sql: &str) -> ColumnFlow {
    let a = analyse(sql, LexSettings::default()).expect("parses");
    match a.statements.into_iter().next() {
        Some(Statement::Analysed(f)) => *f.flow,
        other => panic!("{sql}: {other:?}"),
    }
}

fn names(r: &Refs) -> Vec<&str> {
    r.names.iter().map(String::as_str).collect()
}

fn outputs(f: &ColumnFlow) -> Vec<Vec<&str>> {
    f.outputs
        .as_ref()
        .expect("returns rows")
        .iter()
        .map(|o| names(&o.refs))
        .collect()
}

/// Follows derivations from `name` (what the policy does), returning every name reached.
fn closure<'f>(f: &'f ColumnFlow, start: &[&'f str]) -> Vec<&'f str> {
    let mut seen: Vec<&str> = start.to_vec();
    let mut i = 0;
    while i < seen.len() {
        let n = seen[i];
        for (d, r) in &f.derived {
            if d == n {
                for m in &r.names {
                    if !seen.contains(&m.as_str()) {
                        seen.push(m);
                    }
                }
            }
        }
        i += 1;
    }
    seen
}

#[test]
fn outputs_name_what_they_read() {
    let f = flow("select a.name, upper(email) as e, 1, ssn::int, t.* from customers a, t");
    assert_eq!(
        outputs(&f),
        vec![vec!["name"], vec!["email"], vec![], vec!["ssn"], vec!["t"]]
    );
    let outs = f.outputs.as_ref().unwrap();
    assert!(outs[4].expands && !outs[0].expands);
    assert_eq!(outs[1].refs.functions, vec![ObjectName::bare("upper")]);
    assert!(f.filters.is_empty() && f.copies.is_empty());
    assert!(f.relations.contains(&ObjectName::bare("customers")));
    // FROM aliases derive from their relation (whole-row references).
    assert!(f
        .derived
        .iter()
        .any(|(n, r)| n == "a" && r.relations == vec![ObjectName::bare("customers")]));
}

#[test]
fn filters_orders_groups_and_joins() {
    let f = flow(
        "select count(*) filter (where k like '1%'), row_number() over (order by w) \
         from t join u on t.j = u.j join v using (uu) where ssn like '1%' \
         group by g having max(h) > 1 order by o limit (select length(l) from x)",
    );
    let mut want = vec!["g", "h", "j", "k", "l", "o", "ssn", "uu", "w"];
    want.sort();
    assert_eq!(names(&f.filters), want);
    assert!(!f.filters.star);
    // ORDER BY position and alias name the output.
    let f = flow("select email as e, ssn from t order by 2");
    assert_eq!(names(&f.filters), vec!["ssn"]);
    let f = flow("select upper(ssn) as e from t order by e");
    assert_eq!(closure(&f, &["e"]), vec!["e", "ssn"]);
    assert_eq!(names(&f.filters), vec!["e"]);
    let f = flow("select * from t natural join u");
    assert!(f.filters.star);
    let f = flow("select distinct ssn from t");
    assert_eq!(names(&f.filters), vec!["ssn"]);
    let f = flow("select distinct on (ssn) name from t");
    assert_eq!(names(&f.filters), vec!["ssn"]);
}

#[test]
fn derivations_through_subqueries_and_ctes() {
    let f = flow(
        "with c(x) as (select ssn from t) select upper(x) from c \
         union all select y from (select lower(email) as y from u) s",
    );
    assert_eq!(outputs(&f), vec![vec!["x", "y"]]);
    assert_eq!(closure(&f, &["x", "y"]), vec!["x", "y", "ssn", "email"]);
    // UNION without ALL compares rows.
    let f = flow("select ssn from t union select '1'");
    assert_eq!(names(&f.filters), vec!["ssn"]);
    // An unnamed expression is named the way the server names it.
    let f = flow("select upper from (select upper(ssn) from t) s");
    assert_eq!(closure(&f, &["upper"]), vec!["upper", "ssn"]);
    let f = flow("select s from (select ssn from t) s");
    assert_eq!(closure(&f, &["s"]), vec!["s", "ssn"]);
    // Scalar subqueries in the select list flow into the column.
    let f = flow("select (select max(ssn) from t), exists(select 1 from t where ssn = '1')");
    assert_eq!(outputs(&f)[0], vec!["ssn"]);
    assert_eq!(names(&f.filters), vec!["ssn"]);
}

#[test]
fn aggregates_and_functions() {
    let f = flow(
        "select string_agg(name, ',' order by ssn), array_agg(email), \
         row_to_json(c), json_agg(c.*), percentile_disc(0.5) within group (order by salary) \
         from customers c",
    );
    let o = outputs(&f);
    assert_eq!(o[0], vec!["name"]);
    assert_eq!(o[1], vec!["email"]);
    assert_eq!(o[2], vec!["c"]);
    assert_eq!(o[3], vec!["c"]);
    assert_eq!(o[4], vec!["salary"]);
    assert!(names(&f.filters).contains(&"ssn"));
    let f = flow("select * from get_customers() as g(x, y)");
    assert!(f
        .derived
        .iter()
        .any(|(n, r)| n == "x" && r.functions == vec![ObjectName::bare("get_customers")]));
}

#[test]
fn writes_copy_and_returning() {
    let f = flow("insert into other select ssn from t where k = 1");
    assert_eq!(names(&f.copies), vec!["ssn"]);
    assert_eq!(names(&f.filters), vec!["k"]);
    assert!(f.outputs.is_none());
    let f = flow("update t set name = ssn where id = 1 returning ssn, upper(email)");
    assert_eq!(names(&f.copies), vec!["ssn"]);
    assert_eq!(outputs(&f), vec![vec!["ssn"], vec!["email"]]);
    let f = flow("create view v as select ssn from t");
    assert_eq!(names(&f.copies), vec!["ssn"]);
    let f = flow("create table x as select email from t");
    assert_eq!(names(&f.copies), vec!["email"]);
    let f = flow("select email into x from t");
    assert_eq!(names(&f.copies), vec!["email"]);
    let f = flow("copy (select upper(email) from t) to stdout");
    assert!(f.copy_out);
    assert_eq!(outputs(&f), vec![vec!["email"]]);
    let f = flow("copy t (ssn) to stdout");
    assert!(f.copy_out);
    assert_eq!(outputs(&f), vec![vec!["ssn"]]);
    let f = flow("copy t to stdout");
    assert!(f.outputs.as_ref().unwrap()[0].refs.star);
    let f = flow("explain select ssn from t where k = 1");
    assert!(f.outputs.is_none());
    assert_eq!(names(&f.filters), vec!["k"]);
    let f = flow("with u as (update t set a = 1 returning ssn) select upper(ssn) from u");
    assert_eq!(closure(&f, &["ssn"]), vec!["ssn"]);
    assert_eq!(outputs(&f), vec![vec!["ssn"]]);
}
