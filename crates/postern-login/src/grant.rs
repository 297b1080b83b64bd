//! After the person: what they may open. The same checks for every database front door —
//! the datasource exists and is of the protocol's type, a role of theirs grants a credential
//! for it, the credential is there, and the policy their roles give them there.

use postern_core::{choose_credential, AccessDenied, DatasourceSpec, DatasourceType};
use postern_store::{StoreError, UpstreamCredential};

use crate::flow::LoginFlow;

/// What a session may open.
pub struct Grant {
    /// The datasource.
    pub datasource: DatasourceSpec,
    /// Name of the credential it runs with.
    pub credential_name: String,
    /// The credential, opened from the vault.
    pub credential: UpstreamCredential,
    /// The user's statement policy there.
    pub policy: postern_policy::Policy,
    /// The store's change counter, read before any of the above: a change committed
    /// meanwhile is seen by the session's first comparison.
    pub epoch: u64,
}

/// Why a session may not open (each protocol words it in its own terms).
#[derive(Debug)]
pub enum GrantRefusal {
    /// No datasource of that alias.
    UnknownDatasource,
    /// The datasource speaks another protocol.
    WrongType(DatasourceType),
    /// No role of the user grants a credential for it.
    NotGranted(AccessDenied),
    /// The granted credential was removed.
    CredentialGone(String),
    /// The store could not be read.
    Store(StoreError),
}

impl From<StoreError> for GrantRefusal {
    fn from(e: StoreError) -> Self {
        GrantRefusal::Store(e)
    }
}

impl LoginFlow {
    /// The grant check of a session of `user` on datasource `alias`, which must be of type
    /// `kind`.
    pub async fn grant(
        &self,
        user: &str,
        alias: &str,
        kind: DatasourceType,
    ) -> Result<Grant, GrantRefusal> {
        let store = self.store();
        let epoch = store
            .policy_epoch()
            .load(std::sync::atomic::Ordering::Acquire);
        let datasource = store
            .datasource(alias)
            .await?
            .ok_or(GrantRefusal::UnknownDatasource)?;
        if datasource.kind != kind {
            return Err(GrantRefusal::WrongType(datasource.kind));
        }
        let grants = store.role_grants(user).await?;
        let credential_name =
            choose_credential(user, alias, &grants).map_err(GrantRefusal::NotGranted)?;
        let credential = store
            .upstream_credential(&credential_name)
            .await?
            .ok_or_else(|| GrantRefusal::CredentialGone(credential_name.clone()))?;
        let policy = store.session_policy(user, &datasource).await?;
        Ok(Grant {
            datasource,
            credential_name,
            credential,
            policy,
            epoch,
        })
    }

    /// After the store changed: whether an open session may go on
    /// ([`LoginFlow::session_still_allowed`]), and the user's policy now, with the store's
    /// change counter read before it was loaded (so a later change is seen next time).
    pub async fn reload_policy(
        &self,
        user: &str,
        alias: &str,
        credential: &str,
        cert: Option<&crate::PresentedCert>,
    ) -> Result<(postern_policy::Policy, u64), String> {
        let store = self.store();
        let epoch = store
            .policy_epoch()
            .load(std::sync::atomic::Ordering::Acquire);
        let ds = self
            .session_still_allowed(user, alias, credential, cert)
            .await?;
        let policy = store
            .session_policy(user, &ds)
            .await
            .map_err(|e| format!("Postern could not read its store ({e})"))?;
        Ok((policy, epoch))
    }
}
