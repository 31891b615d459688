-- The key of the advisory lock a node holds while it lives on PostgreSQL
-- (see migrations/postgres). Unused on SQLite, whose file has one node;
-- kept so both schemas have the same shape.
ALTER TABLE nodes ADD COLUMN lock_key BIGINT;
