//! The login flow shared by every front door (issue: identity and second factor):
//! brute-force accounting with lockouts (`throttle`), TOTP and recovery codes (`totp`),
//! approvals of native-tool logins (`approvals`), client certificates as a login (`certs`), directory and
//! single sign-on logins (`directory`, `sso`), the grant check after the login (`grant`), and the flow tying them to the store
//! and the audit trail (`flow`).

pub mod approvals;
pub mod certs;
pub mod directory;
pub mod flow;
pub mod grant;
pub mod sso;
pub mod throttle;
pub mod totp;

pub use approvals::{Approvals, Outcome, PendingView};
pub use certs::{CertVerifiers, PresentedCert};
pub use directory::{DirectoryAnswer, LdapDirectory, LdapSettings};
pub use flow::{split_code, Denial, DenialKind, LoginConfig, LoginFlow, Prompt, SecondFactor};
pub use grant::{Grant, GrantRefusal};
pub use sso::{Oidc, OidcSettings, SsoError, SsoIdentity};
pub use throttle::{Lockout, Scope, Throttle, ThrottleConfig};
