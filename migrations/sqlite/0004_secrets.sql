-- Tenants' secrets, encrypted (XChaCha20-Poly1305, one nonce per value,
-- bound to tenant and name); the key is the node's, never stored here.
CREATE TABLE secrets (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- A value encrypted with the key on first use, so that a node started with
-- another key refuses to start instead of failing every run.
CREATE TABLE secrets_key_check (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);

-- What a script may read at run time: declared secret names (JSON array)
-- and plain variables (JSON object of strings).
ALTER TABLE scripts ADD COLUMN secrets TEXT NOT NULL DEFAULT '[]';
ALTER TABLE scripts ADD COLUMN vars TEXT NOT NULL DEFAULT '{}';
