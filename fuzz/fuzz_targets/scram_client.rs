//! The upstream SCRAM client against arbitrary server messages (a hostile or impersonated
//! upstream must not make Postern panic or spin).
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_auth::{salted_password, ScramClient};

fuzz_target!(|data: &[u8]| {
    let split = data.first().copied().unwrap_or(0) as usize;
    let rest = data.get(1..).unwrap_or(&[]);
    let (a, b) = rest.split_at(split.min(rest.len()));
    let mut c = ScramClient::new();
    // Random nonces are never guessed by the fuzzer: also try the message after our nonce.
    let nonce = c.client_first()["n,,n=,r=".len()..].to_string();
    let mut prefixed = format!("r={nonce}").into_bytes();
    prefixed.extend_from_slice(a);
    for m in [a, prefixed.as_slice()] {
        if let Ok(p) = c.server_first(m) {
            // Bounded by the client's own iteration cap; use 1 to keep the fuzzer fast.
            let salted = salted_password("pw", &p.salt, 1);
            let _ = c.client_final(&salted);
            let _ = c.server_final(b);
        }
    }
});
