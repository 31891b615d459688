-- Tenants, scripts, executions and the per-tenant key-value data behind sdk.db.
-- Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE tenants (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    api_key_hash  TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL
);

CREATE TABLE scripts (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    source           TEXT NOT NULL,
    version          INTEGER NOT NULL,
    trigger_type     TEXT NOT NULL,
    schedule         TEXT,
    timezone         TEXT,
    webhook_path     TEXT,
    enabled          INTEGER NOT NULL, -- 0 or 1
    limits           TEXT NOT NULL,
    rate_limit       TEXT,
    webhook_auth     TEXT,
    webhook_methods  TEXT,
    max_retries      INTEGER NOT NULL,
    retry_delay_ms   INTEGER NOT NULL,
    next_run_at      INTEGER,
    last_executed_at INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
-- Listing a tenant's scripts, newest first (ids are time-ordered UUIDv7).
CREATE INDEX scripts_by_tenant ON scripts (tenant_id, id);
-- Scheduled scripts by tenant, trigger, enabled and last run.
CREATE INDEX scripts_scheduled ON scripts (tenant_id, trigger_type, enabled, last_executed_at);
-- One webhook script per (tenant, path).
CREATE UNIQUE INDEX scripts_webhook_path ON scripts (tenant_id, webhook_path) WHERE webhook_path IS NOT NULL;

CREATE TABLE executions (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    script_id         TEXT NOT NULL,
    script_version    INTEGER NOT NULL,
    trigger_type      TEXT NOT NULL,
    status            TEXT NOT NULL,
    input             TEXT NOT NULL,
    output            TEXT,
    error_type        TEXT,
    error_message     TEXT,
    error_stack       TEXT,
    logs              TEXT NOT NULL,
    attempt           INTEGER NOT NULL,
    node_id           TEXT NOT NULL,
    queued_at         INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER,
    duration_ms       INTEGER,
    fuel_used         INTEGER,
    memory_peak_bytes INTEGER,
    cpu_time_us       INTEGER
);
-- A script's history, newest first.
CREATE INDEX executions_by_script ON executions (tenant_id, script_id, id);
-- A tenant's history, optionally by status, newest first.
CREATE INDEX executions_by_tenant_status ON executions (tenant_id, status, id);
CREATE INDEX executions_by_tenant ON executions (tenant_id, id);
-- Runs still open, for recovery after a crash.
CREATE INDEX executions_open ON executions (status, node_id) WHERE status IN ('queued', 'running');

CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    heartbeat_at INTEGER NOT NULL
);

CREATE TABLE kv (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
