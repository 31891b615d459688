-- The key of the advisory lock a node holds while it lives (its presence
-- lock): PostgreSQL releases it as soon as the node's connection ends, so
-- other nodes know at once that the node's open runs are not running.
ALTER TABLE nodes ADD COLUMN lock_key BIGINT;
