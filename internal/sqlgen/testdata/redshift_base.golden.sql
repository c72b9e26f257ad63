-- cdcflow DDL for Amazon Redshift: the cdc_events log (seed 000's SUPER
-- design plus cdcflow's ordering columns), a <table>_current view and a typed
-- target table per configured table, kept current by CALL
-- incremental_sync_<table>(); see docs/redshift.md.
-- Quoted names keep their case only with this setting. Views keep the value
-- they were created with, so run the whole script in one session (psql, Query
-- Editor v2, or redshift-data batch-execute-statement). Sessions that query
-- mixed-case columns need it too; the procedures set it for themselves.
SET enable_case_sensitive_identifier TO true;

-- The append-only event log (seed 000). The loader inserts event_data with
-- JSON_PARSE(:param) and leaves event_id (IDENTITY: unique, for people and for
-- the sync watermark; order comes from commit_order) and ingested_at (the
-- lookback window reads it) to their defaults.
--   record_id is VARCHAR(512), not 50: composite keys are stored as a JSON
--     array of their values (two UUIDs already take 79 bytes).
--   commit_order decides which event of a record_id is current: commit time
--     plus the source's own sequence (or the log position first), compared
--     bytewise, so same-millisecond changes and LSN-ordered sources resolve
--     exactly; stream_order breaks the remaining ties.
--   DISTKEY(record_id) keeps a row's events on one slice for the window
--     functions; SORTKEY(source_table, commit_timestamp) lets zone maps prune.
--   PRIMARY KEY is informational in Redshift (not enforced).
CREATE TABLE IF NOT EXISTS "cdc_events" (
  "event_id" BIGINT IDENTITY(1,1) NOT NULL,
  "source_table" VARCHAR(128) NOT NULL,
  "operation" VARCHAR(10) NOT NULL,
  "record_id" VARCHAR(512) NOT NULL,
  "event_data" SUPER,
  "commit_timestamp" TIMESTAMP NOT NULL,
  "ingested_at" TIMESTAMP NOT NULL DEFAULT GETDATE(),
  "source_schema" VARCHAR(128),
  "commit_ts_ns" BIGINT NOT NULL,
  "seq" VARCHAR(256),
  "tx_id" VARCHAR(256),
  "stream_position" VARCHAR(1024),
  "commit_order" VARCHAR(512) COLLATE CASE_SENSITIVE NOT NULL,
  "stream_order" VARCHAR(1024) COLLATE CASE_SENSITIVE NOT NULL,
  PRIMARY KEY ("event_id")
)
DISTSTYLE KEY
DISTKEY ("record_id")
SORTKEY ("source_table", "commit_timestamp");

-- Seed 000 grants to PUBLIC to keep its demo simple. In production grant
-- INSERT, SELECT to the loader's IAM identity only (the database user Redshift
-- maps it to, e.g. "IAMR:<lambda-role-name>") and REVOKE the PUBLIC grant.
GRANT INSERT, SELECT ON "cdc_events" TO PUBLIC;

-- The newest applied delete per (table_name, record_id): a late, older insert
-- of a deleted key is recognized and dropped instead of resurrecting it.
CREATE TABLE IF NOT EXISTS "_cdc_tombstones" (
  "table_name" VARCHAR(128) NOT NULL,
  "record_id" VARCHAR(512) NOT NULL,
  "commit_order" VARCHAR(512) COLLATE CASE_SENSITIVE NOT NULL,
  "commit_timestamp" TIMESTAMP,
  PRIMARY KEY ("table_name", "record_id")
)
DISTSTYLE KEY
DISTKEY ("record_id");

-- One row per synced table, created by its first run: the highest event_id
-- processed (it advances on every run that saw events, deletes included, and
-- never moves backwards), the lookback window (see docs/redshift.md), and the
-- last run's time and number of new events.
CREATE TABLE IF NOT EXISTS "_cdc_sync_watermarks" (
  "table_name" VARCHAR(128) NOT NULL,
  "last_event_id" BIGINT NOT NULL,
  "lookback_seconds" INTEGER NOT NULL DEFAULT 900,
  "last_run_at" TIMESTAMP,
  "last_run_events" BIGINT,
  PRIMARY KEY ("table_name")
)
DISTSTYLE ALL;
