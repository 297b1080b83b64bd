//! The SQL analyser against arbitrary text, under both string-lexing modes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_sql::pg::{analyse, LexSettings};

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    for standard_conforming_strings in [true, false] {
        let _ = analyse(sql, LexSettings { standard_conforming_strings });
    }
});
