//! The masking a user's session on a MySQL datasource would get, worked out without a
//! client (for `postern policy check`): the same credential, catalog query and
//! [`SessionMasking`] as a real session.

use std::time::Duration;

use postern_core::DatasourceSpec;
use postern_policy::{Mode, Policy, SessionMasking};
use postern_store::Store;

use crate::codec;
use crate::upstream::{self, UpstreamTarget};

/// Opens an upstream session as `user` would on `ds`, reads the masking catalog, and
/// closes it: the masking and the database names resolve through. `Ok(None)` when no
/// masking rule may apply (nothing is asked of the upstream then).
pub async fn session_masking(
    store: &Store,
    user: &str,
    ds: &DatasourceSpec,
    policy: &Policy,
    timeout: Duration,
) -> Result<Option<(Option<SessionMasking>, Vec<String>)>, String> {
    if policy.mode == Mode::Passthrough || policy.masking_rules().next().is_none() {
        return Ok(None);
    }
    let cred = store.credential_for(user, &ds.name).await?;
    let target = UpstreamTarget {
        host: &ds.host,
        port: ds.port,
        database: &ds.database,
        tls: ds.tls,
        tls_ca: ds.tls_ca.as_deref(),
        username: &cred.username,
        password: &cred.password,
        client_capabilities: codec::OFFERED,
        charset: 45,
    };
    let fail = |e: upstream::UpstreamError| {
        format!(
            "cannot read the masking catalog of {} as {}: {e}",
            ds.name, cred.username
        )
    };
    let mut up = upstream::connect(&target, timeout).await.map_err(fail)?;
    let caps = up.capabilities;
    let catalog = upstream::mask_catalog(
        &mut up.stream,
        &mut up.leftover,
        caps,
        &ds.database,
        timeout,
    )
    .await
    .map_err(fail)?;
    // COM_QUIT, so the server logs a clean exit rather than a dropped connection.
    let _ = crate::io::write_packet(&mut up.stream, 0, &[codec::COM_QUIT]).await;
    let path = catalog.search_path.clone();
    Ok(Some((
        SessionMasking::new(
            &policy.masking,
            &policy.revealed,
            &policy.datasource,
            &ds.database,
            &catalog,
        ),
        path,
    )))
}
