-- The overview reads a tenant's recent executions through (tenant_id, id):
-- ids are UUIDv7, created with queued_at on the same clock, so an id range
-- bounds the window (host/src/store/stats.rs). One B-tree fewer to update
-- on every run recorded.
DROP INDEX executions_by_tenant_time;
