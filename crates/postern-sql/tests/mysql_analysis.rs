//! The MySQL analyser: what statements read, write and call, read the way the server reads
//! the text (comments, quotes, executable comments), and the fail-closed corners.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use postern_sql::mysql::{analyse, ends_with_line_comment, split_statements, sql_mode_is_safe};
use postern_sql::{Action, SessionEffect, Statement, StatementFacts, StatementKind};
use proptest::prelude::*;

fn one(sql: &str) -> Statement {
    let a = analyse(sql).unwrap();
    assert_eq!(a.statements.len(), 1, "{sql}: {a:?}");
    a.statements.into_iter().next().unwrap()
}

#[track_caller]
fn facts(sql: &str) -> StatementFacts {
    match one(sql) {
        Statement::Analysed(f) => f,
        Statement::Unanalysable { reason, .. } => panic!("{sql}: unanalysable: {reason}"),
    }
}

/// `schema.name:action` (or `name:action`) of every access.
fn acc(sql: &str) -> Vec<String> {
    facts(sql)
        .accesses
        .iter()
        .map(|a| {
            let action = serde_json::to_value(a.action).unwrap();
            format!("{}:{}", a.object, action.as_str().unwrap())
        })
        .collect()
}

#[test]
fn reads_writes_and_qualified_names() {
    assert_eq!(acc("SELECT a FROM t WHERE x = 1"), ["t:select"]);
    assert_eq!(
        acc("select * from `Shop`.`Orders` o join items i on o.id = i.oid"),
        ["items:select", "shop.orders:select"]
    );
    assert_eq!(
        acc("INSERT INTO t SELECT * FROM s"),
        ["s:select", "t:insert"]
    );
    assert_eq!(acc("REPLACE INTO t VALUES (1)"), ["t:insert", "t:delete"]);
    assert_eq!(
        acc("INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = 2"),
        ["t:select", "t:insert", "t:update"]
    );
    assert_eq!(
        acc("UPDATE t1 JOIN t2 ON t1.a = t2.a SET t1.b = t2.b WHERE t2.c = 1"),
        ["t1:select", "t1:update", "t2:select"]
    );
    assert_eq!(acc("DELETE FROM t"), ["t:delete"]);
    assert_eq!(
        acc("DELETE a FROM t1 a JOIN t2 b ON a.x = b.x WHERE b.y = 1"),
        ["t1:select", "t1:delete", "t2:select"]
    );
    assert_eq!(acc("TRUNCATE TABLE t"), ["t:truncate"]);
    assert_eq!(acc("DROP TABLE t, db.u"), ["t:ddl", "db.u:ddl"]);
    assert_eq!(
        acc("CREATE VIEW v AS SELECT * FROM secret"),
        ["secret:select", "v:ddl"]
    );
    assert_eq!(acc("CALL proc(1)"), ["proc:call"]);
    assert_eq!(acc("GRANT ALL ON *.* TO x"), ["*:ddl"]);
    assert_eq!(acc("SET GLOBAL general_log = 1"), ["*:ddl"]);
    assert_eq!(acc("SELECT * FROM t FOR UPDATE"), ["t:select", "t:lock"]);
    let f = facts("UPDATE t SET a = 1");
    assert!(f.flags.modifies_without_where);
    assert!(facts("DROP TABLE t").flags.drops);
    assert!(
        facts("SELECT * FROM t WHERE a = 1 OR 1 = 1")
            .flags
            .tautology
    );
    assert!(
        facts("SELECT * FROM t WHERE a = 1 OR 'x' = 'x'")
            .flags
            .tautology
    );
    assert!(
        !facts("SELECT * FROM t WHERE a = 1 OR b = 2")
            .flags
            .tautology
    );
    assert_eq!(
        facts("SELECT my_udf(a), concat(a, 'x') FROM t")
            .functions
            .len(),
        2
    );
}

#[test]
fn text_is_read_the_way_the_server_reads_it() {
    // Executable comments are code, whatever version they name (MySQL's and MariaDB's).
    assert_eq!(
        acc("SELECT 1 FROM t /*! JOIN secret */"),
        ["secret:select", "t:select"]
    );
    assert_eq!(
        acc("SELECT 1 FROM t /*!50000 JOIN secret */"),
        ["secret:select", "t:select"]
    );
    assert_eq!(
        acc("SELECT 1 FROM t /*M!100100 JOIN secret */"),
        ["secret:select", "t:select"]
    );
    // A plain comment is not; `--` needs a space to start one, `#` does not.
    assert_eq!(acc("SELECT 1 FROM t /* JOIN secret */"), ["t:select"]);
    assert_eq!(acc("SELECT 1 --x\n FROM secret"), ["secret:select"]);
    assert_eq!(acc("SELECT 1 # FROM t\n FROM secret"), ["secret:select"]);
    // Backslash escapes inside strings: the quote does not end there.
    assert_eq!(acc("SELECT 'a\\' FROM t' FROM secret"), ["secret:select"]);
    assert_eq!(acc("SELECT \"a\\\" ; \" FROM secret"), ["secret:select"]);
    // Upper and lower case name the same table.
    assert_eq!(acc("SELECT * FROM SECRET"), ["secret:select"]);
}

#[test]
fn cte_names_are_scoped() {
    assert!(acc("WITH s AS (SELECT 1) SELECT * FROM s").is_empty());
    // A CTE's body does not see itself (unless RECURSIVE) or later ones.
    assert_eq!(
        acc("WITH x AS (SELECT 1), secret AS (SELECT * FROM secret) SELECT * FROM secret"),
        ["secret:select"]
    );
    assert_eq!(
        acc("WITH a AS (SELECT * FROM secret), secret AS (SELECT 2) SELECT * FROM a, secret"),
        ["secret:select"]
    );
    assert!(acc(
        "WITH RECURSIVE c AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM c WHERE n < 3) \
         SELECT * FROM c"
    )
    .is_empty());
    // A CTE in a subquery hides nothing outside it.
    assert_eq!(
        acc("SELECT * FROM secret, (WITH secret AS (SELECT 1) SELECT * FROM secret) x"),
        ["secret:select"]
    );
}

#[test]
fn mysql_statements_the_grammar_lacks() {
    let f = facts("PREPARE s FROM 'SELECT * FROM secret WHERE a = ''x'''");
    assert_eq!(f.kind, StatementKind::Prepare);
    assert_eq!(f.prepared.as_deref(), Some("s"));
    assert_eq!(
        acc("PREPARE s FROM 'SELECT * FROM secret'"),
        ["secret:select"]
    );
    assert!(facts("PREPARE s FROM @sql").flags.dynamic_sql);
    let f = facts("EXECUTE s USING @a, @b");
    assert_eq!(
        (f.kind, f.prepared.as_deref()),
        (StatementKind::Execute, Some("s"))
    );
    assert_eq!(
        facts("DEALLOCATE PREPARE s").kind,
        StatementKind::Deallocate
    );
    assert_eq!(facts("DROP PREPARE s").kind, StatementKind::Deallocate);
    assert_eq!(acc("HANDLER secret OPEN AS h"), ["secret:select"]);
    assert!(acc("HANDLER h READ FIRST").is_empty());
    assert_eq!(acc("TABLE secret ORDER BY 1 LIMIT 2"), ["secret:select"]);
    assert_eq!(acc("DO (SELECT COUNT(*) FROM secret)"), ["secret:select"]);
    assert_eq!(
        facts("USE Other").session,
        [SessionEffect::UseDatabase("other".into())]
    );
    assert_eq!(acc("SHOW TABLES"), ["information_schema.tables:select"]);
    assert_eq!(
        acc("SHOW CREATE TABLE secret"),
        ["information_schema.tables:select"]
    );
    assert_eq!(
        acc("DESCRIBE secret"),
        ["information_schema.columns:select"]
    );
    assert_eq!(acc("SHOW BINLOG EVENTS"), ["*:ddl"]);
    let f = facts("LOAD DATA INFILE '/tmp/x' REPLACE INTO TABLE t");
    assert!(f.flags.copy_server_file);
    assert_eq!(
        acc("LOAD DATA LOCAL INFILE 'x' INTO TABLE db.t"),
        ["db.t:insert"]
    );
    // Drivers' SET with NAMES among other settings, and MariaDB's SET STATEMENT.
    let f = facts(
        "SET sql_mode=(SELECT CONCAT(@@sql_mode, ',PIPES_AS_CONCAT,NO_ENGINE_SUBSTITUTION')),\
         time_zone='+00:00',NAMES utf8mb4 COLLATE utf8mb4_unicode_ci",
    );
    assert!(!f.flags.lexing);
    assert_eq!(f.session.len(), 3);
    assert_eq!(
        acc("SET STATEMENT max_statement_time = 1 FOR SELECT * FROM secret"),
        ["secret:select"]
    );
    assert_eq!(
        acc("SET @a = (SELECT MAX(x) FROM secret), @b = 2"),
        ["secret:select"]
    );
}

#[test]
fn what_the_word_scan_finds_survives_a_failed_parse() {
    match one("SELECT * FROM t INTO OUTFILE '/tmp/x'") {
        Statement::Unanalysable { flags, .. } => assert!(flags.copy_server_file),
        other => panic!("{other:?}"),
    }
    assert!(
        facts("SELECT LOAD_FILE('/etc/passwd')")
            .flags
            .copy_server_file
    );
    assert!(facts("SELECT `sys_exec`('id')").flags.copy_program);
    assert!(facts("SELECT sys_eval('id')").flags.copy_program);
    // A column named like a function is no call.
    assert!(!facts("SELECT load_file FROM t").flags.copy_server_file);
    for bad in [
        "SET sql_mode = 'ANSI_QUOTES'",
        "SET SESSION sql_mode = 'ANSI'",
        "SET @@sql_mode = 'NO_BACKSLASH_ESCAPES,STRICT_TRANS_TABLES'",
        "SET sql_mode := 'ORACLE'",
        "SET sql_mode = CONCAT(@@sql_mode, ',AN', 'SI_QUOTES')",
        "SET sql_mode = @x",
        "SET sql_mode = 'SOMETHING_NEW'",
        "SET STATEMENT sql_mode = 'ANSI_QUOTES' FOR SELECT 1",
    ] {
        let flags = match one(bad) {
            Statement::Analysed(f) => f.flags,
            Statement::Unanalysable { flags, .. } => flags,
        };
        assert!(flags.lexing, "{bad}");
    }
    for good in [
        "SET sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'",
        "SET sql_mode = ''",
        "SET sql_mode = DEFAULT",
        "SELECT @@sql_mode",
    ] {
        assert!(!facts(good).flags.lexing, "{good}");
    }
    assert!(sql_mode_is_safe(
        "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION"
    ));
    assert!(!sql_mode_is_safe(
        "REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE,ANSI"
    ));
    // Statements the grammar does not read are never guessed at.
    assert!(matches!(
        one("SELECT 1 FROM t LOCK IN SHARE MODE"),
        Statement::Unanalysable { .. }
    ));
}

#[test]
fn splitting_and_trailing_comments() {
    assert_eq!(
        split_statements("SELECT ';' ; SELECT `a;b` FROM t; /* ; */ SELECT 3 -- ;"),
        [
            "SELECT ';' ",
            " SELECT `a;b` FROM t",
            " /* ; */ SELECT 3 -- ;"
        ]
    );
    assert_eq!(split_statements("  ; -- nothing\n ;").len(), 0);
    assert!(ends_with_line_comment("SELECT 1 FROM t WHERE a = 'x' -- "));
    assert!(ends_with_line_comment("SELECT 1 # rest\n"));
    assert!(!ends_with_line_comment("SELECT '#' FROM t"));
    assert!(!ends_with_line_comment("SELECT 1 --1"));
}

proptest! {
    #[test]
    fn never_panics_and_splits_consistently(s in "\\PC{0,200}") {
        let a = analyse(&s).unwrap();
        prop_assert_eq!(a.statements.len(), split_statements(&s).len());
    }

    #[test]
    fn sql_shaped_text_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![
                Just("SELECT"), Just("FROM"), Just("t"), Just("`x`"), Just("'s'"), Just("\"d\""),
                Just("/*!"), Just("*/"), Just("/*M!1"), Just("#"), Just("-- "), Just("\n"),
                Just(";"), Just("("), Just(")"), Just(","), Just("WITH"), Just("AS"), Just("SET"),
                Just("sql_mode"), Just("="), Just("PREPARE"), Just("@q"), Just("\\"), Just("."),
            ],
            0..40,
        )
    ) {
        let s = parts.join(" ");
        let a = analyse(&s).unwrap();
        prop_assert_eq!(a.statements.len(), split_statements(&s).len());
    }
}

#[test]
fn actions_are_the_shared_ones() {
    // The policy reads the same Action values the PostgreSQL analyser gives.
    let f = facts("INSERT INTO t VALUES (1)");
    assert_eq!(f.accesses[0].action, Action::Insert);
}

#[test]
fn column_flow_follows_values() {
    let f = facts(
        "SELECT name, UPPER(ssn) AS u, (SELECT MAX(salary) FROM pay p WHERE p.id = e.id) \
         FROM emp e WHERE dept = 'x' ORDER BY 2",
    )
    .flow;
    let outs = f.outputs.as_ref().expect("outputs");
    assert_eq!(outs.len(), 3);
    assert!(outs[0].refs.plain && outs[0].refs.names == ["name"]);
    assert!(!outs[1].refs.plain && outs[1].refs.names == ["ssn"]);
    assert_eq!(outs[2].refs.names, ["salary"]);
    // WHERE, the subquery's WHERE and ORDER BY 2 (the UPPER(ssn) column) choose rows.
    assert_eq!(f.filters.names, ["dept", "id", "ssn"]);
    assert_eq!(f.relations.len(), 2);

    // An alias is followed back to what it derives from.
    let f = facts("SELECT * FROM (SELECT ssn AS s FROM people) x WHERE x.s LIKE '1%'").flow;
    assert_eq!(f.filters.names, ["s"]);
    assert!(f
        .derived
        .iter()
        .any(|(n, r)| n == "s" && r.names == ["ssn"]));
    // Relations in scope include what CTE bodies read (a CTE may shadow a table's name).
    let f = facts("WITH people AS (SELECT ssn AS name FROM people) SELECT name FROM people").flow;
    assert!(f
        .relations
        .contains(&postern_sql::ObjectName::bare("people")));
    assert!(f
        .derived
        .iter()
        .any(|(n, r)| n == "name" && r.names == ["ssn"]));
    // Copies, set operations, GROUP BY, EXISTS.
    assert_eq!(
        facts("INSERT INTO t SELECT ssn FROM people")
            .flow
            .copies
            .names,
        ["ssn"]
    );
    assert_eq!(
        facts("SELECT name FROM a UNION SELECT ssn FROM b")
            .flow
            .filters
            .names,
        ["name", "ssn"]
    );
    assert!(facts("SELECT name FROM a UNION ALL SELECT ssn FROM b")
        .flow
        .filters
        .names
        .is_empty());
    assert_eq!(
        facts("SELECT COUNT(*) FROM people GROUP BY ssn")
            .flow
            .filters
            .names,
        ["ssn"]
    );
    assert_eq!(
        facts("SELECT name FROM p WHERE EXISTS (SELECT 1 FROM x WHERE x.ssn = p.ssn)")
            .flow
            .filters
            .names,
        ["ssn"]
    );
    // Names deep inside an expression's subquery count as filters too.
    let f = facts("SELECT IF((SELECT COUNT(*) FROM p WHERE ssn LIKE '1%') > 0, 1, 0)").flow;
    assert!(f.filters.names.contains(&"ssn".to_string()), "{f:?}");
    // Values assigned to variables are copies.
    let f = facts("SET @s = (SELECT ssn FROM p LIMIT 1), NAMES utf8mb4").flow;
    assert!(f.copies.names.contains(&"ssn".to_string()), "{f:?}");
    // UPDATE: assigned values are copies, WHERE a filter.
    let f = facts("UPDATE t SET a = (SELECT ssn FROM p LIMIT 1) WHERE b = 1").flow;
    assert!(f.copies.names.contains(&"ssn".to_string()));
    assert_eq!(f.filters.names, ["b"]);
}

#[test]
fn local_infile_names_the_file_of_one_load_statement() {
    use postern_sql::mysql::local_infile;
    assert_eq!(
        local_infile("LOAD DATA LOW_PRIORITY LOCAL INFILE '/tmp/a\\'b.csv' INTO TABLE t")
            .as_deref(),
        Some("/tmp/a'b.csv")
    );
    assert_eq!(
        local_infile("LOAD DATA INFILE '/tmp/a.csv' INTO TABLE t"),
        None
    );
    assert_eq!(local_infile("SELECT 'LOAD DATA LOCAL INFILE'"), None);
    assert_eq!(
        local_infile(
            "LOAD DATA LOCAL INFILE 'a' INTO TABLE t; LOAD DATA LOCAL INFILE 'b' INTO TABLE t"
        ),
        None
    );
}

#[test]
fn charset_changes_are_found() {
    use postern_sql::mysql::charset_changes;
    assert_eq!(charset_changes("SET NAMES gbk"), ["gbk"]);
    assert_eq!(
        charset_changes("SET NAMES 'UTF8MB4' COLLATE x"),
        ["utf8mb4"]
    );
    assert_eq!(charset_changes("SET CHARACTER SET big5"), ["big5"]);
    assert_eq!(
        charset_changes("SET @@session.character_set_client = sjis, autocommit = 1"),
        ["sjis"]
    );
    assert_eq!(charset_changes("SET character_set_client = @x"), ["?"]);
    assert!(charset_changes("SELECT names FROM t").is_empty());
    assert!(charset_changes("SET @a = (SELECT names FROM t)").is_empty());
    assert!(charset_changes("SET autocommit = 1").is_empty());
}
