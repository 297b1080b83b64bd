//! The SCRAM server exchange against arbitrary client messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_auth::{ScramServer, ScramVerifier};

fuzz_target!(|data: &[u8]| {
    let split = data.first().copied().unwrap_or(0) as usize;
    let rest = data.get(1..).unwrap_or(&[]);
    let (a, b) = rest.split_at(split.min(rest.len()));
    let mut s = ScramServer::new(ScramVerifier::derive_with_salt("pw", vec![1; 16], 1));
    let _ = s.client_first(a);
    let _ = s.client_final(b);
});
