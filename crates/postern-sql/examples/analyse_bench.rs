//! Micro-benchmark: time per analysis of typical OLTP statements (release build):
//!
//! ```text
//! cargo run --release -p postern-sql --example analyse_bench
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use postern_sql::pg::{analyse, LexSettings};

const STATEMENTS: &[(&str, &str)] = &[
    ("pgbench select", "SELECT abalance FROM pgbench_accounts WHERE aid = $1"),
    (
        "pgbench update",
        "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
    ),
    (
        "pgbench insert",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
    ),
    (
        "join + order",
        "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id \
         WHERE o.created_at > now() - interval '1 day' AND c.country = 'NL' ORDER BY o.total DESC LIMIT 50",
    ),
    (
        "cte + subquery",
        "WITH recent AS (SELECT customer_id, sum(total) AS t FROM orders WHERE created_at > $1 GROUP BY 1) \
         SELECT c.*, r.t FROM customers c JOIN recent r ON r.customer_id = c.id \
         WHERE c.id IN (SELECT customer_id FROM vip) ORDER BY r.t DESC",
    ),
    ("begin", "BEGIN"),
];

fn main() {
    let lex = LexSettings::default();
    println!("{:<16} {:>12} {:>8}", "statement", "µs/analysis", "bytes");
    for (name, sql) in STATEMENTS {
        // Warm up, then time enough iterations for a stable figure.
        for _ in 0..200 {
            let _ = black_box(analyse(black_box(sql), lex));
        }
        let mut n = 0u32;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(500) {
            for _ in 0..100 {
                let _ = black_box(analyse(black_box(sql), lex));
            }
            n += 100;
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        println!("{name:<16} {us:>12.1} {:>8}", sql.len());
    }
}
