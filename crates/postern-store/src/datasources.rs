//! Datasources: real databases behind aliases.

use postern_core::{DatasourceSpec, DatasourceType, UpstreamTls};
use sqlx::SqliteConnection;

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
    /// The datasource reached under `alias`.
    pub async fn datasource(&self, alias: &str) -> Result<Option<DatasourceSpec>, StoreError> {
        fetch(&mut *self.pool.acquire().await?, alias).await
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
