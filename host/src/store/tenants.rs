//! Tenants and their API keys. Only a SHA-256 of a key is stored; the key
//! itself is shown once, when the tenant is created.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Db, StoreError, StoreResult, is_unique_violation, now_ms, on_pool};
use crate::model::TenantId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Tenant {
    pub id: TenantId,
    /// The tenant's slug in webhook URLs.
    pub name: String,
    pub created_at: i64,
}

/// A new random API key: `sbx_` and 40 hex digits (160 bits).
pub fn new_api_key() -> String {
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).expect("the OS provides randomness");
    format!("sbx_{}", hex::encode(bytes))
}

pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Checks a tenant name: 1-63 lowercase letters, digits and `-`, not
/// starting or ending with `-`.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if name.is_empty()
        || name.len() > 63
        || !ok_chars
        || name.starts_with('-')
        || name.ends_with('-')
    {
        return Err(format!(
            "invalid tenant name {name:?}: use 1-63 lowercase letters, digits and '-', not at either end"
        ));
    }
    Ok(())
}

impl Db {
    /// Creates a tenant; returns it with its API key (the only time the key
    /// is available).
    pub async fn create_tenant(&self, name: &str) -> StoreResult<(Tenant, String)> {
        validate_name(name).map_err(StoreError::Invalid)?;
        let tenant = Tenant {
            id: TenantId::generate(),
            name: name.to_owned(),
            created_at: now_ms(),
        };
        let key = new_api_key();
        let hash = hash_api_key(&key);
        let result = on_pool!(self, pool => {
            sqlx::query("INSERT INTO tenants (id, name, api_key_hash, created_at) VALUES ($1, $2, $3, $4)")
                .bind(&tenant.id)
                .bind(&tenant.name)
                .bind(&hash)
                .bind(tenant.created_at)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        });
        match result {
            Ok(_) => Ok((tenant, key)),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "a tenant named {name:?} already exists"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The tenant an API key belongs to.
    pub async fn tenant_by_key(&self, key: &str) -> StoreResult<Tenant> {
        let hash = hash_api_key(key);
        on_pool!(self, pool => {
            sqlx::query_as::<_, Tenant>("SELECT id, name, created_at FROM tenants WHERE api_key_hash = $1")
                .bind(&hash)
                .fetch_one(pool)
                .await
        })
        .map_err(Into::into)
    }

    /// Every tenant, by name.
    pub async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        on_pool!(self, pool => {
            sqlx::query_as::<_, Tenant>("SELECT id, name, created_at FROM tenants ORDER BY name")
                .fetch_all(pool)
                .await
        })
        .map_err(Into::into)
    }

    /// Gives tenant `name` a new API key, returned; the old one no longer
    /// matches (nodes that cached it accept it until their cache expires).
    pub async fn rotate_api_key(&self, name: &str) -> StoreResult<(Tenant, String)> {
        let key = new_api_key();
        let hash = hash_api_key(&key);
        let updated = on_pool!(self, pool => {
            sqlx::query("UPDATE tenants SET api_key_hash = $1 WHERE name = $2")
                .bind(&hash)
                .bind(name)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?;
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        Ok((self.tenant_by_name(name).await?, key))
    }

    pub async fn tenant_by_name(&self, name: &str) -> StoreResult<Tenant> {
        on_pool!(self, pool => {
            sqlx::query_as::<_, Tenant>("SELECT id, name, created_at FROM tenants WHERE name = $1")
                .bind(name)
                .fetch_one(pool)
                .await
        })
        .map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hashes_stable() {
        let (a, b) = (new_api_key(), new_api_key());
        assert_ne!(a, b);
        assert!(a.starts_with("sbx_") && a.len() == 44);
        assert_eq!(hash_api_key(&a), hash_api_key(&a));
        assert_ne!(hash_api_key(&a), hash_api_key(&b));
    }

    #[test]
    fn tenant_names_are_slugs() {
        for good in ["acme", "a", "team-42", "x1-y2"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Acme", "-a", "a-", "a_b", "a b", &"a".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
