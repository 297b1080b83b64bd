//! The statement gate on arbitrary client and server messages: it must never panic,
//! whatever the SQL, names, encodings or message order, and a replacement it produces must
//! be a well-formed message.
#![no_main]

use std::collections::HashSet;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use postern_core::PrivilegeSpec;
use postern_pg::codec;
use postern_pg::gate::{Gate, GateOut, Lexing};
use postern_policy::{compile_rules, Mode, Policy};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let specs = vec![PrivilegeSpec {
        allow: vec!["SELECT".into()],
        deny: vec![],
        on: "shop.*.public.products".into(),
    }];
    let policy = Policy {
        datasource: "shop".into(),
        database: "shop".into(),
        mode: if flags & 1 == 0 { Mode::Masked } else { Mode::Protected },
        rules: compile_rules("r", &specs).unwrap_or_default(),
        firewall: vec![],
        roles: vec!["r".into()],
        allow_list: HashSet::new(),
        catalog_read: true,
        masking: Vec::new(),
        revealed: Default::default(),
    };
    let mut gate = Gate::new(
        Arc::new(policy),
        (Arc::default(), 0),
        Some(vec!["public".into()]),
        None,
        std::net::IpAddr::from([127, 0, 0, 1]),
    );
    let lex = Lexing {
        standard_conforming_strings: flags & 2 == 0,
        utf8_client: flags & 4 == 0,
    };
    while let Ok(Some((ty, total))) = codec::complete_frame(rest, 1 << 20) {
        let body = &rest[5..total];
        if ty.is_ascii_uppercase() {
            if let Ok(GateOut::Replace(with, _)) = gate.client_message(ty, body, lex) {
                assert!(matches!(codec::complete_frame(&with, 1 << 20), Ok(Some((_, n))) if n == with.len()));
            }
        } else if let Some(with) = gate.server_message(ty.to_ascii_uppercase(), body) {
            assert!(matches!(codec::complete_frame(&with, 1 << 20), Ok(Some((_, n))) if n == with.len()));
        }
        rest = &rest[total..];
    }
});
