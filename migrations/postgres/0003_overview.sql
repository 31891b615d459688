-- A tenant's recent executions by time, for the dashboard's overview charts.
CREATE INDEX executions_by_tenant_time ON executions (tenant_id, queued_at);
