//! The MySQL analyser, its statement splitter and the MySQL audit-log masking against
//! arbitrary text: no panic, and one split statement per analysed statement.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_sql::mysql::{analyse, ends_with_line_comment, split_statements};
use postern_sql::mysql_mask::mysql_log_text;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = analyse(sql) {
        assert_eq!(a.statements.len(), split_statements(sql).len());
    }
    let _ = ends_with_line_comment(sql);
    let _ = mysql_log_text(sql);
});
