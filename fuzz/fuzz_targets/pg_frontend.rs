//! Everything a PostgreSQL client can send before and after login: first packets, framing,
//! and the message bodies the statement tracker parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_pg::codec;
use postern_pg::tracker::Tracker;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(n)) = codec::first_packet_len(data) {
        let _ = codec::parse_first_packet(&data[..n]);
    }
    let _ = codec::parse_sasl_initial(data);
    let _ = codec::error_summary(data);
    let mut t = Tracker::new();
    let mut rest = data;
    while let Ok(Some((ty, total))) = codec::complete_frame(rest, 1 << 20) {
        let body = &rest[5..total];
        if ty.is_ascii_uppercase() {
            let _ = t.client_message(ty, body, None);
        } else {
            t.server_message(ty.to_ascii_uppercase(), body);
        }
        rest = &rest[total..];
    }
    let _ = t.drain_unfinished();
});
