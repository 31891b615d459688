-- A script's own retention limits, overriding `[retention]` (NULL: the
-- node's setting).
ALTER TABLE scripts ADD COLUMN retention_max_age_ms BIGINT;
ALTER TABLE scripts ADD COLUMN retention_max_per_script BIGINT;
