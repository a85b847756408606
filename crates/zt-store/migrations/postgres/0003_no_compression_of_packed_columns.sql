-- Report bodies are gzip and the agents' compact inventories are mostly random key bytes:
-- neither compresses, yet PostgreSQL tried (pglz) on every insert and update of such a value,
-- ~1% of its CPU during a fleet load. EXTERNAL keeps them out of line without that attempt.
-- (ALTER TABLE on the partitioned parents reaches every partition.)
ALTER TABLE reports ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE agents ALTER COLUMN inventory SET STORAGE EXTERNAL;
