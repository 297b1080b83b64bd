//! Datasources: real databases behind aliases.

use postern_core::{DatasourceSpec, DatasourceType, UpstreamTls};
use sqlx::SqliteConnection;

use postern_vault::MasterKey;

use crate::{Store, StoreError};

type Row = (
    String,
    String,
    String,
    i64,
    String,
    String,
    Option<String>,
    String,
    String,
);

/// The columns [`Row`] reads.
const COLUMNS: &str = "name, type, host, port, database, tls, tls_ca, firewall, allow_list";

fn from_row(
    (name, kind, host, port, database, tls, tls_ca, firewall, allow_list): Row,
) -> Result<DatasourceSpec, StoreError> {
    let bad = |what: &str| StoreError::corrupt(format_args!("the {what} of datasource {name}"));
    Ok(DatasourceSpec {
        kind: DatasourceType::parse(&kind).ok_or_else(|| bad("type"))?,
        port: u16::try_from(port).map_err(|_| bad("port"))?,
        tls: UpstreamTls::parse(&tls).ok_or_else(|| bad("tls mode"))?,
        firewall: serde_json::from_str(&firewall).map_err(|_| bad("firewall rules"))?,
        allow_list: serde_json::from_str(&allow_list).map_err(|_| bad("allow-list"))?,
        name,
        host,
        database,
        tls_ca,
    })
}

/// A datasource's allow-list entry in the form it is compared in: trimmed, without a
/// final `;`.
pub use postern_policy::allow_list_form;

/// The sealing context of a datasource's allow-list: a seal copied to another datasource
/// does not open.
pub(crate) fn allow_list_context(datasource: &str) -> String {
    format!("datasource-allow-list:{datasource}")
}

/// The allow-list as sealed by `postern apply`: `Some(empty)` when none was sealed and the
/// stored list is empty, `None` when the stored seal is missing for a non-empty list, does
/// not open, or differs from the list shown to admins (the store was edited by something
/// else).
pub(crate) async fn sealed_allow_list(
    conn: &mut SqliteConnection,
    key: &MasterKey,
    alias: &str,
) -> Result<Option<Vec<String>>, StoreError> {
    let row: Option<(String, Option<Vec<u8>>)> =
        sqlx::query_as("SELECT allow_list, allow_list_seal FROM datasources WHERE name = ?")
            .bind(alias)
            .fetch_optional(conn)
            .await?;
    let Some((plain, seal)) = row else {
        return Ok(None);
    };
    let Some(seal) = seal else {
        return Ok((plain == "[]").then(Vec::new));
    };
    let Ok(json) = key.open_string(&allow_list_context(alias), &seal) else {
        return Ok(None);
    };
    // The list admins see must be the one that is enforced.
    Ok((*json == plain)
        .then(|| serde_json::from_str(&json).ok())
        .flatten())
}

/// Reads one datasource (inside a transaction or not).
pub(crate) async fn fetch(
    conn: &mut SqliteConnection,
    alias: &str,
) -> Result<Option<DatasourceSpec>, StoreError> {
    let row: Option<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM datasources WHERE name = ?"))
            .bind(alias)
            .fetch_optional(conn)
            .await?;
    row.map(from_row).transpose()
}

impl Store {
    /// The allow-list the proxies may trust for datasource `alias`: what `postern apply`
    /// sealed. A list that does not match its seal (written into the store by other means)
    /// counts as empty, so PROTECTED mode refuses more rather than less, and is logged.
    pub async fn trusted_allow_list(&self, alias: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        match sealed_allow_list(&mut conn, &self.key, alias).await? {
            Some(list) => Ok(list),
            None => {
                tracing::error!(
                    datasource = alias,
                    "the allow-list of this datasource does not match its seal (was the store \
                     edited by hand?): ignoring it; apply the datasource again to restore it"
                );
                Ok(Vec::new())
            }
        }
    }

    /// The datasource reached under `alias`.
    pub async fn datasource(&self, alias: &str) -> Result<Option<DatasourceSpec>, StoreError> {
        fetch(&mut *self.pool.acquire().await?, alias).await
    }

    /// The MySQL / MariaDB datasources, by name.
    pub async fn mysql_datasources(&self) -> Result<Vec<DatasourceSpec>, StoreError> {
        Ok(self
            .datasources()
            .await?
            .into_iter()
            .filter(|d| d.kind == postern_core::DatasourceType::Mysql)
            .collect())
    }

    /// Every datasource, by name.
    pub(crate) async fn datasources(&self) -> Result<Vec<DatasourceSpec>, StoreError> {
        let rows: Vec<Row> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM datasources ORDER BY name"))
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter().map(from_row).collect()
    }
}
