//! The SSH file-transfer readers (SFTP packets, legacy scp control lines) against arbitrary
//! bytes in both directions: no panic, and the same events whether the bytes come in one
//! piece or in chunks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_ssh::transfer::{Direction, ScpAudit, SftpAudit};

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(shape % 31) + 1;
    let dir = if shape & 0x80 == 0 {
        Direction::Up
    } else {
        Direction::Down
    };
    let mut whole = SftpAudit::default();
    let mut pieces = SftpAudit::default();
    let a = whole.feed(dir, rest);
    let mut b = Ok(Vec::new());
    for c in rest.chunks(chunk) {
        match pieces.feed(dir, c) {
            Ok(mut ev) => {
                if let Ok(v) = &mut b {
                    v.append(&mut ev);
                }
            }
            Err(e) => {
                b = Err(e);
                break;
            }
        }
    }
    if let (Ok(a), Ok(b)) = (&a, &b) {
        assert_eq!(a, b);
    }
    assert_eq!(a.is_err(), b.is_err());
    let _ = whole.finish();

    for command in ["scp -t /tmp/x", "scp -r -f /srv"] {
        let Some(mut scp) = ScpAudit::for_command(command) else {
            continue;
        };
        let _ = scp.feed(Direction::Up, rest);
        let _ = scp.feed(Direction::Down, rest);
    }
});
