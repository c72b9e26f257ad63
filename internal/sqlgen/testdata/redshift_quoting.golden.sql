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

-- Target table of Weird "Name": one row per record_id, typed columns, kept current
-- by incremental_sync_Weird "Name"(). DISTKEY on the first key column, so joins on it
-- with other tables stay on their slices.
-- Columns not configured stay in cdc_events.event_data only.
CREATE TABLE IF NOT EXISTS "Weird ""Name""" (
  "_cdc_record_id" VARCHAR(512) NOT NULL,
  "_cdc_commit_order" VARCHAR(512) COLLATE CASE_SENSITIVE NOT NULL,
  "_cdc_commit_timestamp" TIMESTAMP,
  "_cdc_op" VARCHAR(10) NOT NULL,
  "a/b" VARCHAR(MAX),
  "it's" DATE,
  "record_id" VARCHAR(MAX),
  "x~y" TIMESTAMPTZ,
  PRIMARY KEY ("_cdc_record_id")
)
DISTSTYLE KEY
DISTKEY ("a/b");

-- Current state of Weird "Name" from the log alone: the latest event per
-- record_id by commit order (commit_timestamp alone ties within a millisecond
-- and is not the order of LSN-ordered sources), deletes hidden. Mixed-case
-- JSON keys need enable_case_sensitive_identifier when the view is created.
CREATE OR REPLACE VIEW "Weird ""Name""_current" AS
SELECT "latest"."record_id", "latest"."event_data", "latest"."commit_timestamp",
  CASE WHEN JSON_TYPEOF("latest"."event_data"."a/b") = 'string' THEN "latest"."event_data"."a/b"::VARCHAR(MAX) WHEN JSON_TYPEOF("latest"."event_data"."a/b") IN ('number', 'boolean', 'array', 'object') THEN JSON_SERIALIZE("latest"."event_data"."a/b") END AS "a/b",
  "latest"."event_data"."it's"::DATE AS "it's",
  "latest"."event_data"."x~y"::TIMESTAMPTZ AS "x~y"
FROM (
  SELECT "record_id", "operation", "event_data", "commit_timestamp",
    ROW_NUMBER() OVER (PARTITION BY "record_id" ORDER BY "commit_order" DESC, "stream_order" DESC, "event_id" DESC) AS "rn"
  FROM "cdc_events"
  WHERE "source_table" = 'weird' AND "source_schema" = 'sales''s'
) AS "latest"
WHERE "rn" = 1 AND "operation" <> 'd';

-- Incremental sync of Weird "Name" from cdc_events, in the style of seeds 001/003
-- with their bugs fixed: the watermark is the highest event_id processed, per table,
-- advancing on every run that saw events; an event changes the target only
-- when it is newer (by commit order) than the stored row and the key's
-- tombstone. One transaction; schedule CALL "incremental_sync_Weird ""Name"""();
CREATE OR REPLACE PROCEDURE "incremental_sync_Weird ""Name"""()
AS $$
DECLARE
  v_watermark BIGINT;
  v_lookback INTEGER;
  v_high BIGINT;
  v_new BIGINT;
  v_staged BIGINT;
  v_applied BIGINT;
BEGIN
  -- Runs wait for each other here instead of failing with a serializable
  -- isolation error. The lock comes before the first read, so this run's
  -- snapshot includes what the previous run committed.
  LOCK "_cdc_sync_watermarks";

  SELECT INTO v_watermark, v_lookback "last_event_id", "lookback_seconds" FROM "_cdc_sync_watermarks" WHERE "table_name" = 'Weird "Name"';
  IF NOT FOUND THEN
    v_watermark := 0;
    v_lookback := 900;
    INSERT INTO "_cdc_sync_watermarks" ("table_name", "last_event_id", "lookback_seconds") VALUES ('Weird "Name"', 0, 900);
  END IF;

  -- (a) The new events are those logged after the watermark, whatever their
  -- operation; v_high bounds this run so every statement sees the same set.
  SELECT INTO v_high, v_new COALESCE(MAX("event_id"), v_watermark), COUNT(*)
  FROM "cdc_events"
  WHERE "source_table" = 'weird' AND "source_schema" = 'sales''s' AND "event_id" > v_watermark;

  -- Staging: a temporary table, not TRUNCATE (which commits in Redshift).
  CREATE TEMP TABLE "_cdc_stage_Weird ""Name""" (
    "_cdc_record_id" VARCHAR(512) NOT NULL,
    "_cdc_commit_order" VARCHAR(512) COLLATE CASE_SENSITIVE NOT NULL,
    "_cdc_commit_timestamp" TIMESTAMP,
    "_cdc_op" VARCHAR(10) NOT NULL,
    "a/b" VARCHAR(MAX),
    "it's" DATE,
    "record_id" VARCHAR(MAX),
    "x~y" TIMESTAMPTZ
  );

  -- (b) Rank 1 per record_id by commit order (ROW_NUMBER: exactly one winner)
  -- among the new events and those ingested within the lookback window.
  INSERT INTO "_cdc_stage_Weird ""Name""" ("_cdc_record_id", "_cdc_commit_order", "_cdc_commit_timestamp", "_cdc_op", "a/b", "it's", "record_id", "x~y")
  SELECT "ranked"."record_id", "ranked"."commit_order", "ranked"."commit_timestamp", "ranked"."operation",
    CASE WHEN JSON_TYPEOF("ranked"."event_data"."a/b") = 'string' THEN "ranked"."event_data"."a/b"::VARCHAR(MAX) WHEN JSON_TYPEOF("ranked"."event_data"."a/b") IN ('number', 'boolean', 'array', 'object') THEN JSON_SERIALIZE("ranked"."event_data"."a/b") END,
    "ranked"."event_data"."it's"::DATE,
    CASE WHEN JSON_TYPEOF("ranked"."event_data"."record_id") = 'string' THEN "ranked"."event_data"."record_id"::VARCHAR(MAX) WHEN JSON_TYPEOF("ranked"."event_data"."record_id") IN ('number', 'boolean', 'array', 'object') THEN JSON_SERIALIZE("ranked"."event_data"."record_id") END,
    "ranked"."event_data"."x~y"::TIMESTAMPTZ
  FROM (
    SELECT "record_id", "operation", "event_data", "commit_order", "commit_timestamp",
      ROW_NUMBER() OVER (PARTITION BY "record_id" ORDER BY "commit_order" DESC, "stream_order" DESC, "event_id" DESC) AS "rn"
    FROM "cdc_events"
    WHERE "source_table" = 'weird' AND "source_schema" = 'sales''s'
      AND "event_id" <= v_high
      AND ("event_id" > v_watermark OR "ingested_at" >= DATEADD(second, -v_lookback, GETDATE()))
  ) AS "ranked"
  WHERE "ranked"."rn" = 1;
  GET DIAGNOSTICS v_staged := ROW_COUNT;

  -- Newer-than guards: drop staged changes not newer than the key's tombstone
  DELETE FROM "_cdc_stage_Weird ""Name""" USING "_cdc_tombstones"
  WHERE "_cdc_tombstones"."table_name" = 'Weird "Name"' AND "_cdc_tombstones"."record_id" = "_cdc_stage_Weird ""Name"""."_cdc_record_id"
    AND "_cdc_tombstones"."commit_order" >= "_cdc_stage_Weird ""Name"""."_cdc_commit_order";
  -- ... or than the stored row.
  DELETE FROM "_cdc_stage_Weird ""Name""" USING "Weird ""Name"""
  WHERE "Weird ""Name"""."_cdc_record_id" = "_cdc_stage_Weird ""Name"""."_cdc_record_id"
    AND "Weird ""Name"""."_cdc_commit_order" >= "_cdc_stage_Weird ""Name"""."_cdc_commit_order";
  SELECT INTO v_applied COUNT(*) FROM "_cdc_stage_Weird ""Name""";

  -- Puts: update newer rows, insert new keys.
  UPDATE "Weird ""Name""" SET
    "_cdc_commit_order" = "_cdc_stage_Weird ""Name"""."_cdc_commit_order",
    "_cdc_commit_timestamp" = "_cdc_stage_Weird ""Name"""."_cdc_commit_timestamp",
    "_cdc_op" = "_cdc_stage_Weird ""Name"""."_cdc_op",
    "a/b" = "_cdc_stage_Weird ""Name"""."a/b",
    "it's" = "_cdc_stage_Weird ""Name"""."it's",
    "record_id" = "_cdc_stage_Weird ""Name"""."record_id",
    "x~y" = "_cdc_stage_Weird ""Name"""."x~y"
  FROM "_cdc_stage_Weird ""Name"""
  WHERE "Weird ""Name"""."_cdc_record_id" = "_cdc_stage_Weird ""Name"""."_cdc_record_id"
    AND "_cdc_stage_Weird ""Name"""."_cdc_op" <> 'd'
    AND "_cdc_stage_Weird ""Name"""."_cdc_commit_order" > "Weird ""Name"""."_cdc_commit_order";
  INSERT INTO "Weird ""Name""" ("_cdc_record_id", "_cdc_commit_order", "_cdc_commit_timestamp", "_cdc_op", "a/b", "it's", "record_id", "x~y")
  SELECT "_cdc_stage_Weird ""Name"""."_cdc_record_id", "_cdc_stage_Weird ""Name"""."_cdc_commit_order", "_cdc_stage_Weird ""Name"""."_cdc_commit_timestamp", "_cdc_stage_Weird ""Name"""."_cdc_op", "_cdc_stage_Weird ""Name"""."a/b", "_cdc_stage_Weird ""Name"""."it's", "_cdc_stage_Weird ""Name"""."record_id", "_cdc_stage_Weird ""Name"""."x~y"
  FROM "_cdc_stage_Weird ""Name"""
  WHERE "_cdc_stage_Weird ""Name"""."_cdc_op" <> 'd'
    AND NOT EXISTS (SELECT 1 FROM "Weird ""Name""" WHERE "Weird ""Name"""."_cdc_record_id" = "_cdc_stage_Weird ""Name"""."_cdc_record_id");

  -- Deletes: remove only rows older than the delete.
  DELETE FROM "Weird ""Name""" USING "_cdc_stage_Weird ""Name"""
  WHERE "Weird ""Name"""."_cdc_record_id" = "_cdc_stage_Weird ""Name"""."_cdc_record_id"
    AND "_cdc_stage_Weird ""Name"""."_cdc_op" = 'd'
    AND "_cdc_stage_Weird ""Name"""."_cdc_commit_order" > "Weird ""Name"""."_cdc_commit_order";
  -- Tombstones: keep the newest delete per key.
  UPDATE "_cdc_tombstones" SET
    "commit_order" = "_cdc_stage_Weird ""Name"""."_cdc_commit_order",
    "commit_timestamp" = "_cdc_stage_Weird ""Name"""."_cdc_commit_timestamp"
  FROM "_cdc_stage_Weird ""Name"""
  WHERE "_cdc_tombstones"."table_name" = 'Weird "Name"' AND "_cdc_tombstones"."record_id" = "_cdc_stage_Weird ""Name"""."_cdc_record_id"
    AND "_cdc_stage_Weird ""Name"""."_cdc_op" = 'd'
    AND "_cdc_stage_Weird ""Name"""."_cdc_commit_order" > "_cdc_tombstones"."commit_order";
  INSERT INTO "_cdc_tombstones" ("table_name", "record_id", "commit_order", "commit_timestamp")
  SELECT 'Weird "Name"', "_cdc_stage_Weird ""Name"""."_cdc_record_id", "_cdc_stage_Weird ""Name"""."_cdc_commit_order", "_cdc_stage_Weird ""Name"""."_cdc_commit_timestamp"
  FROM "_cdc_stage_Weird ""Name"""
  WHERE "_cdc_stage_Weird ""Name"""."_cdc_op" = 'd'
    AND NOT EXISTS (SELECT 1 FROM "_cdc_tombstones" WHERE "_cdc_tombstones"."table_name" = 'Weird "Name"' AND "_cdc_tombstones"."record_id" = "_cdc_stage_Weird ""Name"""."_cdc_record_id");

  -- (a) Advance the watermark: v_high >= v_watermark, so it never moves back,
  -- and it moves on delete-only and stale-only batches too.
  UPDATE "_cdc_sync_watermarks" SET
    "last_event_id" = v_high,
    "last_run_at" = GETDATE(),
    "last_run_events" = v_new
  WHERE "table_name" = 'Weird "Name"';

  DROP TABLE "_cdc_stage_Weird ""Name""";
  RAISE INFO 'sync of %: % new events up to event_id %, % keys staged, % applied', 'Weird "Name"', v_new, v_high, v_staged, v_applied;
END;
$$ LANGUAGE plpgsql
SET enable_case_sensitive_identifier TO true;
