//! Micro-benchmark: time per analysis, per audit-log masking, and per cached analysis
//! (what a session pays for a statement shape it has seen) of typical OLTP statements
//! (release build):
//!
//! ```text
//! cargo run --release -p postern-sql --example analyse_bench
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use postern_sql::cache::AnalysisCache;
use postern_sql::mask::log_text;
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
    println!(
        "{:<16} {:>12} {:>10} {:>12} {:>8}",
        "statement", "µs/analysis", "µs/mask", "µs/cache hit", "bytes"
    );
    for (name, sql) in STATEMENTS {
        let analysis = time(|| {
            let _ = black_box(analyse(black_box(sql), lex));
        });
        let mask = time(|| {
            black_box(log_text(black_box(sql), lex));
        });
        // A session's cache: the same statement shape, so every call after the first hits.
        let mut cache = AnalysisCache::new(1024);
        let hit = time(|| {
            black_box(cache.analyse(black_box(sql), lex));
        });
        println!(
            "{name:<16} {analysis:>12.1} {mask:>10.1} {hit:>12.1} {:>8}",
            sql.len()
        );
    }
}

/// Microseconds per call of `f`, after a warm-up, over half a second.
fn time(mut f: impl FnMut()) -> f64 {
    for _ in 0..200 {
        f();
    }
    let mut n = 0u32;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}
