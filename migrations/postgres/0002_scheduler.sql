-- The scheduler: claimed occurrences, pending retries and due times.

-- The occurrence (fire time, ms) a scheduled run belongs to; retries keep it.
ALTER TABLE executions ADD COLUMN scheduled_for BIGINT;
-- A pending retry: not to start before this time (ms). Cleared when a node
-- claims it.
ALTER TABLE executions ADD COLUMN run_after BIGINT;

-- One execution per (script, occurrence, attempt): an occurrence cannot be
-- claimed twice, whichever node tries.
CREATE UNIQUE INDEX executions_occurrence ON executions (script_id, scheduled_for, attempt)
    WHERE scheduled_for IS NOT NULL;
-- Pending retries by due time.
CREATE INDEX executions_retries_due ON executions (run_after) WHERE run_after IS NOT NULL;
-- A script's open runs, for the overlap check.
CREATE INDEX executions_open_by_script ON executions (script_id)
    WHERE status IN ('queued', 'running');
-- Dead-letter queue size.
CREATE INDEX executions_dead ON executions (status) WHERE status = 'dead';

-- Due scripts by next fire time. Only enabled scheduled scripts have one.
DROP INDEX scripts_scheduled;
CREATE INDEX scripts_due ON scripts (next_run_at) WHERE next_run_at IS NOT NULL;
