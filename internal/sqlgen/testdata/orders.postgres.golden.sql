CREATE TABLE IF NOT EXISTS "cdc_events" (
  event_id BIGINT NOT NULL,
  source_table TEXT NOT NULL,
  operation TEXT NOT NULL,
  record_id TEXT NOT NULL,
  event_data JSONB,
  commit_timestamp TIMESTAMPTZ NOT NULL,
  ingested_at TIMESTAMPTZ NOT NULL,
  source_schema TEXT,
  commit_ts_ns BIGINT NOT NULL,
  seq TEXT,
  tx_id TEXT,
  stream_position TEXT,
  commit_order TEXT COLLATE "C" NOT NULL,
  stream_order TEXT COLLATE "C" NOT NULL
);

CREATE TABLE IF NOT EXISTS "cdc_dead_letters" (
  reason TEXT NOT NULL,
  detail TEXT,
  format TEXT,
  position TEXT,
  stream_source TEXT,
  stream_partition TEXT,
  stream_offset TEXT,
  source_table TEXT,
  record_id TEXT,
  raw BYTEA,
  created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS "_cdc_checkpoints" (
  source TEXT NOT NULL,
  partition TEXT NOT NULL,
  applied_source TEXT NOT NULL,
  applied_partition TEXT NOT NULL,
  applied_offset TEXT NOT NULL,
  applied_index BIGINT NOT NULL,
  applied_indexed BOOLEAN NOT NULL,
  held BOOLEAN NOT NULL,
  resume_source TEXT NOT NULL,
  resume_partition TEXT NOT NULL,
  resume_offset TEXT NOT NULL,
  resume_index BIGINT NOT NULL,
  resume_indexed BOOLEAN NOT NULL,
  updated_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (source, partition)
);

CREATE TABLE IF NOT EXISTS "_cdc_tombstones" (
  table_name TEXT NOT NULL,
  record_id TEXT NOT NULL,
  commit_order TEXT COLLATE "C" NOT NULL,
  commit_timestamp TIMESTAMPTZ,
  PRIMARY KEY (table_name, record_id)
);

CREATE TABLE IF NOT EXISTS "_cdc_tables" (
  table_name TEXT PRIMARY KEY,
  source_schema TEXT,
  source_table TEXT NOT NULL,
  match_schema BOOLEAN NOT NULL,
  created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS "_cdc_columns" (
  table_name TEXT NOT NULL,
  column_name TEXT NOT NULL,
  column_type TEXT NOT NULL,
  pinned BOOLEAN NOT NULL,
  ordinal INTEGER NOT NULL,
  updated_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (table_name, column_name)
);

CREATE SEQUENCE IF NOT EXISTS "_cdc_chunks_seq";

CREATE TABLE IF NOT EXISTS "_cdc_chunks" (
  seq BIGINT NOT NULL DEFAULT nextval('"_cdc_chunks_seq"'),
  chunk_id TEXT NOT NULL,
  stream_position TEXT,
  created_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (seq)
);

CREATE UNIQUE INDEX IF NOT EXISTS "_cdc_chunks_chunk_id" ON "_cdc_chunks" (chunk_id);

CREATE TABLE IF NOT EXISTS "_cdc_pieces" (
  chunk_id TEXT NOT NULL,
  idx INTEGER NOT NULL,
  fragments INTEGER NOT NULL,
  stream_source TEXT NOT NULL,
  stream_partition TEXT NOT NULL,
  stream_offset TEXT NOT NULL,
  stream_index BIGINT NOT NULL,
  stream_indexed BOOLEAN NOT NULL,
  raw BYTEA NOT NULL,
  created_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (chunk_id, idx)
);

CREATE TABLE IF NOT EXISTS "_cdc_record_positions" (
  source TEXT NOT NULL,
  position TEXT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (source, position)
);

CREATE INDEX IF NOT EXISTS "_cdc_record_positions_created_at" ON "_cdc_record_positions" (created_at);

CREATE TABLE IF NOT EXISTS "order_lines" (
  "_cdc_record_id" TEXT PRIMARY KEY,
  "_cdc_commit_order" TEXT COLLATE "C" NOT NULL,
  "_cdc_commit_timestamp" TIMESTAMPTZ,
  "_cdc_op" TEXT NOT NULL,
  "_deleted" BOOLEAN NOT NULL DEFAULT false,
  "order_id" BIGINT,
  "line" INTEGER,
  "sku" TEXT
);

CREATE OR REPLACE VIEW "order_lines_current" AS
SELECT record_id, event_data, commit_timestamp,
  CAST(CAST((event_data ->> 'order_id') AS NUMERIC) AS BIGINT) AS "order_id",
  CAST(CAST((event_data ->> 'line') AS NUMERIC) AS INTEGER) AS "line",
  (event_data ->> 'sku') AS "sku"
FROM (
  SELECT record_id, operation, event_data, commit_timestamp,
    ROW_NUMBER() OVER (PARTITION BY record_id ORDER BY commit_order DESC, stream_order DESC, event_id DESC) AS rn
  FROM "cdc_events"
  WHERE source_table = 'order_lines'
) latest
WHERE rn = 1 AND operation <> 'd';

INSERT INTO "_cdc_tables" (table_name, source_schema, source_table, match_schema, created_at) VALUES ('order_lines', NULL, 'order_lines', false, CURRENT_TIMESTAMP) ON CONFLICT DO NOTHING;

INSERT INTO "_cdc_columns" (table_name, column_name, column_type, pinned, ordinal, updated_at) VALUES
  ('order_lines', 'order_id', 'BIGINT', true, 0, CURRENT_TIMESTAMP),
  ('order_lines', 'line', 'INTEGER', true, 1, CURRENT_TIMESTAMP),
  ('order_lines', 'sku', 'VARCHAR', true, 2, CURRENT_TIMESTAMP)
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS "orders" (
  "_cdc_record_id" TEXT PRIMARY KEY,
  "_cdc_commit_order" TEXT COLLATE "C" NOT NULL,
  "_cdc_commit_timestamp" TIMESTAMPTZ,
  "_cdc_op" TEXT NOT NULL,
  "id" BIGINT,
  "meta" JSONB,
  "paid" BOOLEAN,
  "placed_at" TIMESTAMP,
  "score" DOUBLE PRECISION,
  "status" TEXT,
  "total" NUMERIC(12,2)
);

CREATE OR REPLACE VIEW "orders_current" AS
SELECT record_id, event_data, commit_timestamp,
  CAST(CAST((event_data ->> 'id') AS NUMERIC) AS BIGINT) AS "id",
  NULLIF((event_data -> 'meta'), CAST('null' AS JSONB)) AS "meta",
  CAST((event_data ->> 'paid') AS BOOLEAN) AS "paid",
  (CAST((event_data ->> 'placed_at') AS TIMESTAMPTZ) AT TIME ZONE 'UTC') AS "placed_at",
  CAST((event_data ->> 'score') AS DOUBLE PRECISION) AS "score",
  (event_data ->> 'status') AS "status",
  CAST((event_data ->> 'total') AS NUMERIC(12,2)) AS "total"
FROM (
  SELECT record_id, operation, event_data, commit_timestamp,
    ROW_NUMBER() OVER (PARTITION BY record_id ORDER BY commit_order DESC, stream_order DESC, event_id DESC) AS rn
  FROM "cdc_events"
  WHERE source_table = 'orders'
) latest
WHERE rn = 1 AND operation <> 'd';

INSERT INTO "_cdc_tables" (table_name, source_schema, source_table, match_schema, created_at) VALUES ('orders', NULL, 'orders', false, CURRENT_TIMESTAMP) ON CONFLICT DO NOTHING;

INSERT INTO "_cdc_columns" (table_name, column_name, column_type, pinned, ordinal, updated_at) VALUES
  ('orders', 'id', 'BIGINT', true, 0, CURRENT_TIMESTAMP),
  ('orders', 'meta', 'JSON', true, 1, CURRENT_TIMESTAMP),
  ('orders', 'paid', 'BOOLEAN', true, 2, CURRENT_TIMESTAMP),
  ('orders', 'placed_at', 'TIMESTAMP', true, 3, CURRENT_TIMESTAMP),
  ('orders', 'score', 'DOUBLE', true, 4, CURRENT_TIMESTAMP),
  ('orders', 'status', 'VARCHAR', true, 5, CURRENT_TIMESTAMP),
  ('orders', 'total', 'DECIMAL(12,2)', true, 6, CURRENT_TIMESTAMP)
ON CONFLICT DO NOTHING;
