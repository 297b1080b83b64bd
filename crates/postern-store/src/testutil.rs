//! Helpers shared by the unit tests.

use std::sync::Arc;

use postern_core::{ApplyDocument, CredentialSpec, DatasourceSpec, RoleSpec, UserSpec};
use postern_vault::MasterKey;

use crate::Store;

/// A store in a fresh temporary directory (kept alive by the returned guard).
pub async fn open_temp() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("postern.db"),
        Arc::new(MasterKey::generate()),
    )
    .await
    .unwrap();
    (dir, store)
}

/// Clear upstream password used by [`sample_doc`].
pub const UPSTREAM_PW: &str = "Upstream-Secret-7f3a9c";
/// Clear user password used by [`sample_doc`].
pub const USER_PW: &str = "alice-initial-pw-5521";

/// A datasource `shop`, credential `shop-rw`, role `dba`, user `alice`.
pub fn sample_doc() -> ApplyDocument {
    ApplyDocument {
        datasource: vec![DatasourceSpec {
            name: "shop".into(),
            kind: Default::default(),
            host: "db.internal".into(),
            port: 5432,
            database: "shop".into(),
            tls: Default::default(),
            tls_ca: None,
            firewall: vec![],
            allow_list: vec![],
        }],
        credential: vec![CredentialSpec {
            name: "shop-rw".into(),
            datasource: "shop".into(),
            username: "shop_app".into(),
            password: Some(UPSTREAM_PW.into()),
        }],
        role: vec![RoleSpec {
            name: "dba".into(),
            description: "database admins".into(),
            credentials: vec!["shop-rw".into()],
            permissions: vec![],
            ..Default::default()
        }],
        user: vec![UserSpec {
            name: "alice".into(),
            roles: vec!["dba".into()],
            disabled: false,
            password: Some(USER_PW.into()),
        }],
        ..Default::default()
    }
}
