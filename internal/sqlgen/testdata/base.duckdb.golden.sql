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
