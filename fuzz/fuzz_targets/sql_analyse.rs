//! The SQL analyser and the audit-log masking against arbitrary text, under both
//! string-lexing modes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_sql::mask::log_text;
use postern_sql::pg::{analyse, LexSettings};

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    for standard_conforming_strings in [true, false] {
        let lex = LexSettings { standard_conforming_strings };
        let _ = analyse(sql, lex);
        let _ = log_text(sql, lex);
    }
});
