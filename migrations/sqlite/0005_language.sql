-- The language a script is written in: 'javascript', or 'typescript' (types
-- erased before it compiles).
ALTER TABLE scripts ADD COLUMN language TEXT NOT NULL DEFAULT 'javascript';
