-- A run's wall time in microseconds, so sub-millisecond runs do not show as
-- 0 ms (NULL for rows written before it; duration_ms stays).
ALTER TABLE executions ADD COLUMN duration_us BIGINT;
