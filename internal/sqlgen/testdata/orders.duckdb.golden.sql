CREATE TABLE IF NOT EXISTS "cdc_events" (
  event_id BIGINT NOT NULL,
  source_table VARCHAR NOT NULL,
  operation VARCHAR NOT NULL,
  record_id VARCHAR NOT NULL,
  event_data JSON,
  commit_timestamp TIMESTAMPTZ NOT NULL,
  ingested_at TIMESTAMPTZ NOT NULL,
  source_schema VARCHAR,
  commit_ts_ns BIGINT NOT NULL,
  seq VARCHAR,
  tx_id VARCHAR,
  stream_position VARCHAR,
  commit_order VARCHAR NOT NULL,
  stream_order VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS "cdc_dead_letters" (
  reason VARCHAR NOT NULL,
  detail VARCHAR,
  format VARCHAR,
  position VARCHAR,
  stream_source VARCHAR,
  stream_partition VARCHAR,
  stream_offset VARCHAR,
  source_table VARCHAR,
  record_id VARCHAR,
  raw BLOB,
  created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS "_cdc_checkpoints" (
  source VARCHAR NOT NULL,
  partition VARCHAR NOT NULL,
  applied_source VARCHAR NOT NULL,
  applied_partition VARCHAR NOT NULL,
  applied_offset VARCHAR NOT NULL,
  applied_index BIGINT NOT NULL,
  applied_indexed BOOLEAN NOT NULL,
  held BOOLEAN NOT NULL,
  resume_source VARCHAR NOT NULL,
  resume_partition VARCHAR NOT NULL,
  resume_offset VARCHAR NOT NULL,
  resume_index BIGINT NOT NULL,
  resume_indexed BOOLEAN NOT NULL,
  updated_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (source, partition)
);

CREATE TABLE IF NOT EXISTS "_cdc_tombstones" (
  table_name VARCHAR NOT NULL,
  record_id VARCHAR NOT NULL,
  commit_order VARCHAR NOT NULL,
  commit_timestamp TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS "_cdc_tables" (
  table_name VARCHAR PRIMARY KEY,
  source_schema VARCHAR,
  source_table VARCHAR NOT NULL,
  match_schema BOOLEAN NOT NULL,
  created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS "_cdc_columns" (
  table_name VARCHAR NOT NULL,
  column_name VARCHAR NOT NULL,
  column_type VARCHAR NOT NULL,
  pinned BOOLEAN NOT NULL,
  ordinal INTEGER NOT NULL,
  updated_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (table_name, column_name)
);

CREATE SEQUENCE IF NOT EXISTS "_cdc_chunks_seq";

CREATE TABLE IF NOT EXISTS "_cdc_chunks" (
  seq BIGINT NOT NULL DEFAULT nextval('"_cdc_chunks_seq"'),
  chunk_id VARCHAR NOT NULL,
  stream_position VARCHAR,
  created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS "_cdc_record_positions" (
  source VARCHAR NOT NULL,
  position VARCHAR NOT NULL,
  created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS "order_lines" (
  "_cdc_record_id" VARCHAR NOT NULL,
  "_cdc_commit_order" VARCHAR NOT NULL,
  "_cdc_commit_timestamp" TIMESTAMPTZ,
  "_cdc_op" VARCHAR NOT NULL,
  "_deleted" BOOLEAN NOT NULL DEFAULT false,
  "order_id" BIGINT,
  "line" INTEGER,
  "sku" VARCHAR
);

CREATE OR REPLACE VIEW "order_lines_current" AS
SELECT record_id, event_data, commit_timestamp,
  TRY_CAST((event_data ->> '/order_id') AS BIGINT) AS "order_id",
  TRY_CAST((event_data ->> '/line') AS INTEGER) AS "line",
  (event_data ->> '/sku') AS "sku"
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
  "_cdc_record_id" VARCHAR NOT NULL,
  "_cdc_commit_order" VARCHAR NOT NULL,
  "_cdc_commit_timestamp" TIMESTAMPTZ,
  "_cdc_op" VARCHAR NOT NULL,
  "id" BIGINT,
  "meta" JSON,
  "paid" BOOLEAN,
  "placed_at" TIMESTAMP,
  "score" DOUBLE,
  "status" VARCHAR,
  "total" DECIMAL(12,2)
);

CREATE OR REPLACE VIEW "orders_current" AS
SELECT record_id, event_data, commit_timestamp,
  TRY_CAST((event_data ->> '/id') AS BIGINT) AS "id",
  NULLIF((event_data -> '/meta'), CAST('null' AS JSON)) AS "meta",
  TRY_CAST((event_data ->> '/paid') AS BOOLEAN) AS "paid",
  timezone('UTC', TRY_CAST((event_data ->> '/placed_at') AS TIMESTAMPTZ)) AS "placed_at",
  TRY_CAST((event_data ->> '/score') AS DOUBLE) AS "score",
  (event_data ->> '/status') AS "status",
  TRY_CAST((event_data ->> '/total') AS DECIMAL(12,2)) AS "total"
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
