//! The nodes sharing a database, and how each tells whether another is
//! alive.
//!
//! Every node writes a heartbeat (`nodes.heartbeat_at`); recovery closes
//! the open runs of nodes whose heartbeat has gone stale. That takes a
//! while by design (a node may be slow, not dead), which is too long for
//! the scheduler's overlap rule: an occurrence claimed by a node that is
//! then killed would block its script's next occurrences until recovery.
//!
//! So on PostgreSQL a node also holds a *presence lock*: a session-level
//! advisory lock on a random key, stored in its `nodes` row, taken on a
//! connection kept for nothing else. PostgreSQL releases the lock the
//! moment that connection ends, and a dead process's connections end at
//! once (the kernel closes its sockets, even after SIGKILL). The overlap
//! rule counts an open run only while its node holds its lock.
//!
//! A node whose presence connection drops (a network blip, a database
//! restart) is alive but unseen until it takes the lock again on its next
//! heartbeat; meanwhile another node may start its script's next
//! occurrence although its run is still going. Recovery never uses the
//! lock, so such a node's runs are not closed under it.

use super::{Db, StoreResult, now_ms};

/// This node's presence lock (PostgreSQL only; nothing on SQLite).
#[derive(Default)]
pub struct Presence {
    held: tokio::sync::Mutex<Option<sqlx::PgConnection>>,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence").finish_non_exhaustive()
    }
}

/// The node ids holding their presence lock in this database, as a
/// subquery. An advisory lock on a `bigint` key shows in `pg_locks` as its
/// high half in `classid` and its low half in `objid`, with `objsubid` 1.
pub(super) const PRESENT_NODES: &str = "SELECT n.id FROM nodes n WHERE n.lock_key IN ( \
    SELECT (l.classid::bigint << 32) | l.objid::bigint FROM pg_locks l \
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))";

impl Db {
    /// Records that `node_id` is alive.
    pub async fn heartbeat(&self, node_id: &str) -> StoreResult<()> {
        let sql = "INSERT INTO nodes (id, heartbeat_at) VALUES ($1, $2) \
            ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at";
        super::on_pool!(self, pool => {
            sqlx::query(sql).bind(node_id).bind(now_ms()).execute(pool).await.map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// Makes sure `node_id` holds its presence lock: checks the connection
    /// holding it, and takes the lock anew (on a new key) if that
    /// connection is gone. Nothing on SQLite.
    pub async fn hold_presence(&self, node_id: &str, presence: &Presence) -> StoreResult<()> {
        let Db::Postgres(pool) = self else {
            return Ok(());
        };
        let mut held = presence.held.lock().await;
        if let Some(conn) = held.as_mut() {
            if sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok() {
                return Ok(());
            }
            // The connection is gone, and the lock with it.
            *held = None;
        }
        // A connection of its own: the pool would recycle or close it.
        let mut conn = pool.acquire().await?.detach();
        loop {
            let key = random_key();
            let (taken,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut conn)
                .await?;
            if !taken {
                continue; // another node drew the same key
            }
            sqlx::query(
                "INSERT INTO nodes (id, heartbeat_at, lock_key) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET lock_key = excluded.lock_key",
            )
            .bind(node_id)
            .bind(now_ms())
            .bind(key)
            .execute(&mut conn)
            .await?;
            *held = Some(conn);
            return Ok(());
        }
    }
}

/// A random non-negative lock key (its high half below 2^31, so the
/// `pg_locks` halves recombine into the same `bigint`).
fn random_key() -> i64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 1) as i64
}
