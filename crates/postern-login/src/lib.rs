//! The login flow shared by every front door (issue: identity and second factor):
//! brute-force accounting with lockouts (`throttle`), TOTP and recovery codes (`totp`),
//! approvals of native-tool logins (`approvals`), and the flow tying them to the store
//! and the audit trail (`flow`).

pub mod approvals;
pub mod flow;
pub mod throttle;
pub mod totp;

pub use approvals::{Approvals, Outcome, PendingView};
pub use flow::{split_code, Denial, DenialKind, LoginConfig, LoginFlow, Prompt, SecondFactor};
pub use throttle::{Lockout, Scope, Throttle, ThrottleConfig};
