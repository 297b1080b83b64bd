//! Prints the MySQL analysis of each argument (a debugging aid).
fn main() {
    for sql in std::env::args().skip(1) {
        match postern_sql::mysql::analyse(&sql) {
            Ok(a) => println!("{sql}\n  {}", serde_json::to_string(&a).unwrap_or_default()),
            Err(e) => println!("{sql}\n  error {e}"),
        }
    }
}
