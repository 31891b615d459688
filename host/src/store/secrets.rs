//! Tenants' secrets as stored: sealed values, names and update times.
//! Values are sealed and opened by the caller (`crate::secrets`); nothing
//! here sees a plaintext.

use super::{Db, StoreError, StoreResult, now_ms, on_pool};
use crate::model::TenantId;

/// The most secrets a tenant may keep.
pub const MAX_SECRETS_PER_TENANT: i64 = 1_000;

/// A sealed value as stored: its nonce and the ciphertext with its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// A secret as listed: its name and when it was last set.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SecretEntry {
    pub name: String,
    pub updated_at: i64,
}

impl Db {
    /// The key check value stored with the secrets, after storing `fresh`
    /// as it when there is none yet.
    pub async fn key_check_value(&self, fresh: &Sealed) -> StoreResult<Sealed> {
        let (nonce, ciphertext): (Vec<u8>, Vec<u8>) = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO secrets_key_check (id, nonce, ciphertext, created_at) \
                 VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&fresh.nonce).bind(&fresh.ciphertext).bind(now_ms())
            .execute(pool).await?;
            sqlx::query_as("SELECT nonce, ciphertext FROM secrets_key_check WHERE id = 1")
                .fetch_one(pool).await
        })?;
        Ok(Sealed { nonce, ciphertext })
    }

    /// Sets a tenant's secret (sealed by the caller); `Invalid` past
    /// [`MAX_SECRETS_PER_TENANT`] secrets.
    pub async fn put_secret(
        &self,
        tenant_id: &TenantId,
        name: &str,
        sealed: &Sealed,
    ) -> StoreResult<()> {
        let begin = self.begin_write();
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let (count,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM secrets WHERE tenant_id = $1 AND name <> $2",
            )
            .bind(tenant_id).bind(name).fetch_one(&mut *tx).await?;
            if count >= MAX_SECRETS_PER_TENANT {
                return Err(StoreError::Invalid(format!(
                    "a tenant may keep at most {MAX_SECRETS_PER_TENANT} secrets; delete one first"
                )));
            }
            sqlx::query(
                "INSERT INTO secrets (tenant_id, name, nonce, ciphertext, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, name) DO UPDATE SET \
                 nonce = excluded.nonce, ciphertext = excluded.ciphertext, \
                 updated_at = excluded.updated_at",
            )
            .bind(tenant_id).bind(name).bind(&sealed.nonce).bind(&sealed.ciphertext)
            .bind(now_ms())
            .execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// A tenant's secrets: names and update times, by name.
    pub async fn list_secrets(&self, tenant_id: &TenantId) -> StoreResult<Vec<SecretEntry>> {
        on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT name, updated_at FROM secrets WHERE tenant_id = $1 ORDER BY name",
            )
            .bind(tenant_id).fetch_all(pool).await
        })
        .map_err(Into::into)
    }

    /// The sealed values of the tenant's secrets among `names` (names not
    /// set are left out).
    pub async fn sealed_secrets(
        &self,
        tenant_id: &TenantId,
        names: &[String],
    ) -> StoreResult<Vec<(String, Sealed)>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (2..names.len() + 2).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT name, nonce, ciphertext FROM secrets WHERE tenant_id = $1 AND name IN ({})",
            placeholders.join(", ")
        );
        let rows: Vec<(String, Vec<u8>, Vec<u8>)> = on_pool!(self, pool => {
            let mut query = sqlx::query_as::<_, (String, Vec<u8>, Vec<u8>)>(&sql).bind(tenant_id);
            for name in names {
                query = query.bind(name);
            }
            query.fetch_all(pool).await
        })?;
        Ok(rows
            .into_iter()
            .map(|(name, nonce, ciphertext)| (name, Sealed { nonce, ciphertext }))
            .collect())
    }

    /// Deletes a tenant's secret. `Conflict` naming the scripts that
    /// declare it, which would fail without it; `NotFound` when not set.
    pub async fn delete_secret(&self, tenant_id: &TenantId, name: &str) -> StoreResult<()> {
        let begin = self.begin_write();
        on_pool!(self, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let declared: Vec<(String, String)> =
                sqlx::query_as("SELECT name, secrets FROM scripts WHERE tenant_id = $1")
                    .bind(tenant_id).fetch_all(&mut *tx).await?;
            let users: Vec<String> = declared
                .into_iter()
                .filter(|(_, secrets)| {
                    serde_json::from_str::<Vec<String>>(secrets)
                        .is_ok_and(|names| names.iter().any(|n| n == name))
                })
                .map(|(script, _)| script)
                .collect();
            if !users.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "secret {name} is declared by script(s) {}; remove it from their \
                     `secrets` first",
                    users.join(", ")
                )));
            }
            let done = sqlx::query("DELETE FROM secrets WHERE tenant_id = $1 AND name = $2")
                .bind(tenant_id).bind(name).execute(&mut *tx).await?.rows_affected();
            if done == 0 {
                return Err(StoreError::NotFound);
            }
            tx.commit().await?;
            Ok(())
        })
    }
}
