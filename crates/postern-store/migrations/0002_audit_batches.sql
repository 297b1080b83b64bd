-- Audit events are stored one row per group-commit batch instead of one row per event:
-- a busy gateway writes hundreds of events per batch, and a row per event (with its
-- indexes) cost more CPU than the proxy hop itself. Searches narrow batches by time and by
-- the keys below, then filter the batch's events exactly.

CREATE TABLE audit_batches (
    -- Sequence numbers of the batch's first and last event (the chain has no gaps).
    first_seq INTEGER PRIMARY KEY NOT NULL,
    last_seq  INTEGER NOT NULL,
    -- Earliest and latest `ts` among the batch's events.
    ts_min    TEXT NOT NULL,
    ts_max    TEXT NOT NULL,
    -- `hash` of the last event: where the chain continues after a restart.
    last_hash TEXT NOT NULL,
    -- The events, one JSON object per line, each ending in a newline, in `seq` order
    -- (exactly the JSON the hash chain covers); stored as `encoding` says:
    --   jsonl      the lines as they are;
    --   jsonl-lz4  the uncompressed length (4 bytes, little endian), then an LZ4 block
    --              of the lines (LZ4 costs less CPU than writing the bytes it saves).
    encoding  TEXT NOT NULL CHECK (encoding IN ('jsonl', 'jsonl-lz4')),
    events    BLOB NOT NULL,
    CHECK (last_seq >= first_seq)
);
CREATE INDEX audit_batches_ts_max ON audit_batches (ts_max);

-- Which users, datasources and kinds occur in each batch.
CREATE TABLE audit_batch_keys (
    field     TEXT NOT NULL CHECK (field IN ('user', 'datasource', 'kind')),
    value     TEXT NOT NULL,
    first_seq INTEGER NOT NULL REFERENCES audit_batches (first_seq) ON DELETE CASCADE,
    PRIMARY KEY (field, value, first_seq)
) WITHOUT ROWID;
CREATE INDEX audit_batch_keys_batch ON audit_batch_keys (first_seq);

INSERT INTO audit_batches (first_seq, last_seq, ts_min, ts_max, last_hash, encoding, events)
    SELECT seq, seq, ts, ts, hash, 'jsonl', CAST(json || char(10) AS BLOB) FROM audit_events;
INSERT INTO audit_batch_keys (field, value, first_seq)
    SELECT 'user', user, seq FROM audit_events WHERE user IS NOT NULL
    UNION ALL SELECT 'datasource', datasource, seq FROM audit_events WHERE datasource IS NOT NULL
    UNION ALL SELECT 'kind', kind, seq FROM audit_events;
DROP TABLE audit_events;
