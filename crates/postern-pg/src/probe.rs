//! The masking a user's session on a datasource would get, worked out without a client
//! (for `postern policy check`): the same credential choice, upstream catalog query and
//! [`SessionMasking`] as a real session, so the check shows what the proxy would do.

use std::time::Duration;

use postern_auth::SaltedPasswordCache;
use postern_core::DatasourceSpec;
use postern_policy::{Mode, Policy, SessionMasking};
use postern_store::Store;

use crate::upstream::{self, UpstreamTarget};

/// The `[schema, table, column]` regexes of the masking rules that may cover something on
/// the policy's datasource and database (none in PASSTHROUGH mode, which never masks).
pub fn masking_levels(policy: &Policy) -> Vec<[String; 3]> {
    if policy.mode == Mode::Passthrough {
        return Vec::new();
    }
    policy
        .masking_rules()
        .map(|r| r.pattern.level_regexes())
        .collect()
}

/// A session's masking and the search_path it resolves names through.
pub struct MaskingView {
    /// The masking; `None` when no rule covers anything here.
    pub masking: Option<SessionMasking>,
    /// The upstream session's search_path.
    pub search_path: Vec<String>,
}

/// Opens an upstream session as `user` would on `ds` (same credential), reads the catalog
/// facts masking needs, and closes it. `Ok(None)` when no masking rule may apply at all
/// (nothing is asked of the upstream then). Errors are for people: what failed and why.
pub async fn session_masking(
    store: &Store,
    user: &str,
    ds: &DatasourceSpec,
    policy: &Policy,
    timeout: Duration,
) -> Result<Option<MaskingView>, String> {
    let levels = masking_levels(policy);
    if levels.is_empty() {
        return Ok(None);
    }
    let cred = store.credential_for(user, &ds.name).await?;
    let salted = SaltedPasswordCache::new(1);
    let target = UpstreamTarget {
        host: &ds.host,
        port: ds.port,
        database: &ds.database,
        tls: ds.tls,
        tls_ca: ds.tls_ca.as_deref(),
        username: &cred.username,
        password: &cred.password,
        salted: &salted,
    };
    let params = [(
        "application_name".to_string(),
        "postern policy check".to_string(),
    )];
    let fail = |e: upstream::UpstreamError| {
        format!(
            "cannot read the masking catalog of {} as {}: {e}",
            ds.name, cred.username
        )
    };
    let mut up = upstream::connect(&target, &params, timeout)
        .await
        .map_err(fail)?;
    let facts = upstream::session_facts(&mut up, timeout)
        .await
        .map_err(fail)?;
    let catalog = upstream::mask_catalog(&mut up, &levels, facts.search_path.clone(), timeout)
        .await
        .map_err(fail)?;
    // Terminate, so the server logs a clean exit rather than a dropped connection.
    let _ = tokio::io::AsyncWriteExt::write_all(&mut up.stream, &[b'X', 0, 0, 0, 4]).await;
    Ok(Some(MaskingView {
        masking: SessionMasking::new(
            &policy.masking,
            &policy.revealed,
            &policy.datasource,
            &policy.database,
            &catalog,
        ),
        search_path: facts.search_path,
    }))
}
