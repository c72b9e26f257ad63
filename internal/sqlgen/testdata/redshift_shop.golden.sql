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

-- Target table of customers: one row per record_id, typed columns, kept current
-- by incremental_sync_customers(). DISTKEY on the first key column, so joins on it
-- with other tables stay on their slices.
-- Columns not configured stay in cdc_events.event_data only.
CREATE TABLE IF NOT EXISTS "customers" (
  "_cdc_record_id" VARCHAR(512) NOT NULL,
  "_cdc_commit_order" VARCHAR(512) COLLATE CASE_SENSITIVE NOT NULL,
  "_cdc_commit_timestamp" TIMESTAMP,
  "_cdc_op" VARCHAR(10) NOT NULL,
  "customerId" VARCHAR(MAX),
  "Email" VARCHAR(MAX),
  "birthday" DATE,
  "created_at" TIMESTAMPTZ,
  "profile" SUPER,
  "vip" BOOLEAN,
  PRIMARY KEY ("_cdc_record_id")
)
DISTSTYLE KEY
DISTKEY ("customerId");

-- Current state of customers from the log alone: the latest event per
-- record_id by commit order (commit_timestamp alone ties within a millisecond
-- and is not the order of LSN-ordered sources), deletes hidden. Mixed-case
-- JSON keys need enable_case_sensitive_identifier when the view is created.
CREATE OR REPLACE VIEW "customers_current" AS
SELECT "latest"."record_id", "latest"."event_data", "latest"."commit_timestamp",
  CASE WHEN JSON_TYPEOF("latest"."event_data"."customerId") = 'string' THEN "latest"."event_data"."customerId"::VARCHAR(MAX) WHEN JSON_TYPEOF("latest"."event_data"."customerId") IN ('number', 'boolean', 'array', 'object') THEN JSON_SERIALIZE("latest"."event_data"."customerId") END AS "customerId",
  CASE WHEN JSON_TYPEOF("latest"."event_data"."Email") = 'string' THEN "latest"."event_data"."Email"::VARCHAR(MAX) WHEN JSON_TYPEOF("latest"."event_data"."Email") IN ('number', 'boolean', 'array', 'object') THEN JSON_SERIALIZE("latest"."event_data"."Email") END AS "Email",
  "latest"."event_data"."birthday"::DATE AS "birthday",
  "latest"."event_data"."created_at"::TIMESTAMPTZ AS "created_at",
  "latest"."event_data"."profile" AS "profile",
  "latest"."event_data"."vip"::BOOLEAN AS "vip"
FROM (
  SELECT "record_id", "operation", "event_data", "commit_timestamp",
    ROW_NUMBER() OVER (PARTITION BY "record_id" ORDER BY "commit_order" DESC, "stream_order" DESC, "event_id" DESC) AS "rn"
  FROM "cdc_events"
  WHERE "source_table" = 'customers' AND "source_schema" = 'crm'
) AS "latest"
WHERE "rn" = 1 AND "operation" <> 'd';

-- Incremental sync of customers from cdc_events, in the style of seeds 001/003
-- with their bugs fixed: the watermark is the highest event_id processed, per table,
-- advancing on every run that saw events; an event changes the target only
-- when it is newer (by commit order) than the stored row and the key's
-- tombstone. One transaction; schedule CALL "incremental_sync_customers"();
CREATE OR REPLACE PROCEDURE "incremental_sync_customers"()
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

  SELECT INTO v_watermark, v_lookback "last_event_id", "lookback_seconds" FROM "_cdc_sync_watermarks" WHERE "table_name" = 'customers';
  IF NOT FOUND THEN
    v_watermark := 0;
    v_lookback := 900;
    INSERT INTO "_cdc_sync_watermarks" ("table_name", "last_event_id", "lookback_seconds") VALUES ('customers', 0, 900);
  END IF;

  -- (a) The new events are those logged after the watermark, whatever their
  -- operation; v_high bounds this run so every statement sees the same set.
  SELECT INTO v_high, v_new COALESCE(MAX("event_id"), v_watermark), COUNT(*)
  FROM "cdc_events"
  WHERE "source_table" = 'customers' AND "source_schema" = 'crm' AND "event_id" > v_watermark;

  -- Staging: a temporary table, not TRUNCATE (which commits in Redshift).
  CREATE TEMP TABLE "_cdc_stage_customers" (
    "_cdc_record_id" VARCHAR(512) NOT NULL,
    "_cdc_commit_order" VARCHAR(512) COLLATE CASE_SENSITIVE NOT NULL,
    "_cdc_commit_timestamp" TIMESTAMP,
    "_cdc_op" VARCHAR(10) NOT NULL,
    "customerId" VARCHAR(MAX),
    "Email" VARCHAR(MAX),
    "birthday" DATE,
    "created_at" TIMESTAMPTZ,
    "profile" SUPER,
    "vip" BOOLEAN
  );

  -- (b) Rank 1 per record_id by commit order (ROW_NUMBER: exactly one winner)
  -- among the new events and those ingested within the lookback window.
  INSERT INTO "_cdc_stage_customers" ("_cdc_record_id", "_cdc_commit_order", "_cdc_commit_timestamp", "_cdc_op", "customerId", "Email", "birthday", "created_at", "profile", "vip")
  SELECT "ranked"."record_id", "ranked"."commit_order", "ranked"."commit_timestamp", "ranked"."operation",
    CASE WHEN JSON_TYPEOF("ranked"."event_data"."customerId") = 'string' THEN "ranked"."event_data"."customerId"::VARCHAR(MAX) WHEN JSON_TYPEOF("ranked"."event_data"."customerId") IN ('number', 'boolean', 'array', 'object') THEN JSON_SERIALIZE("ranked"."event_data"."customerId") END,
    CASE WHEN JSON_TYPEOF("ranked"."event_data"."Email") = 'string' THEN "ranked"."event_data"."Email"::VARCHAR(MAX) WHEN JSON_TYPEOF("ranked"."event_data"."Email") IN ('number', 'boolean', 'array', 'object') THEN JSON_SERIALIZE("ranked"."event_data"."Email") END,
    "ranked"."event_data"."birthday"::DATE,
    "ranked"."event_data"."created_at"::TIMESTAMPTZ,
    "ranked"."event_data"."profile",
    "ranked"."event_data"."vip"::BOOLEAN
  FROM (
    SELECT "record_id", "operation", "event_data", "commit_order", "commit_timestamp",
      ROW_NUMBER() OVER (PARTITION BY "record_id" ORDER BY "commit_order" DESC, "stream_order" DESC, "event_id" DESC) AS "rn"
    FROM "cdc_events"
    WHERE "source_table" = 'customers' AND "source_schema" = 'crm'
      AND "event_id" <= v_high
      AND ("event_id" > v_watermark OR "ingested_at" >= DATEADD(second, -v_lookback, GETDATE()))
  ) AS "ranked"
  WHERE "ranked"."rn" = 1;
  GET DIAGNOSTICS v_staged := ROW_COUNT;

  -- Newer-than guards: drop staged changes not newer than the key's tombstone
  DELETE FROM "_cdc_stage_customers" USING "_cdc_tombstones"
  WHERE "_cdc_tombstones"."table_name" = 'customers' AND "_cdc_tombstones"."record_id" = "_cdc_stage_customers"."_cdc_record_id"
    AND "_cdc_tombstones"."commit_order" >= "_cdc_stage_customers"."_cdc_commit_order";
  -- ... or than the stored row.
  DELETE FROM "_cdc_stage_customers" USING "customers"
  WHERE "customers"."_cdc_record_id" = "_cdc_stage_customers"."_cdc_record_id"
    AND "customers"."_cdc_commit_order" >= "_cdc_stage_customers"."_cdc_commit_order";
  SELECT INTO v_applied COUNT(*) FROM "_cdc_stage_customers";

  -- Puts: update newer rows, insert new keys.
  UPDATE "customers" SET
    "_cdc_commit_order" = "_cdc_stage_customers"."_cdc_commit_order",
    "_cdc_commit_timestamp" = "_cdc_stage_customers"."_cdc_commit_timestamp",
    "_cdc_op" = "_cdc_stage_customers"."_cdc_op",
    "customerId" = "_cdc_stage_customers"."customerId",
    "Email" = "_cdc_stage_customers"."Email",
    "birthday" = "_cdc_stage_customers"."birthday",
    "created_at" = "_cdc_stage_customers"."created_at",
    "profile" = "_cdc_stage_customers"."profile",
    "vip" = "_cdc_stage_customers"."vip"
  FROM "_cdc_stage_customers"
  WHERE "customers"."_cdc_record_id" = "_cdc_stage_customers"."_cdc_record_id"
    AND "_cdc_stage_customers"."_cdc_op" <> 'd'
    AND "_cdc_stage_customers"."_cdc_commit_order" > "customers"."_cdc_commit_order";
  INSERT INTO "customers" ("_cdc_record_id", "_cdc_commit_order", "_cdc_commit_timestamp", "_cdc_op", "customerId", "Email", "birthday", "created_at", "profile", "vip")
  SELECT "_cdc_stage_customers"."_cdc_record_id", "_cdc_stage_customers"."_cdc_commit_order", "_cdc_stage_customers"."_cdc_commit_timestamp", "_cdc_stage_customers"."_cdc_op", "_cdc_stage_customers"."customerId", "_cdc_stage_customers"."Email", "_cdc_stage_customers"."birthday", "_cdc_stage_customers"."created_at", "_cdc_stage_customers"."profile", "_cdc_stage_customers"."vip"
  FROM "_cdc_stage_customers"
  WHERE "_cdc_stage_customers"."_cdc_op" <> 'd'
    AND NOT EXISTS (SELECT 1 FROM "customers" WHERE "customers"."_cdc_record_id" = "_cdc_stage_customers"."_cdc_record_id");

  -- Deletes: remove only rows older than the delete.
  DELETE FROM "customers" USING "_cdc_stage_customers"
  WHERE "customers"."_cdc_record_id" = "_cdc_stage_customers"."_cdc_record_id"
    AND "_cdc_stage_customers"."_cdc_op" = 'd'
    AND "_cdc_stage_customers"."_cdc_commit_order" > "customers"."_cdc_commit_order";
  -- Tombstones: keep the newest delete per key.
  UPDATE "_cdc_tombstones" SET
    "commit_order" = "_cdc_stage_customers"."_cdc_commit_order",
    "commit_timestamp" = "_cdc_stage_customers"."_cdc_commit_timestamp"
  FROM "_cdc_stage_customers"
  WHERE "_cdc_tombstones"."table_name" = 'customers' AND "_cdc_tombstones"."record_id" = "_cdc_stage_customers"."_cdc_record_id"
    AND "_cdc_stage_customers"."_cdc_op" = 'd'
    AND "_cdc_stage_customers"."_cdc_commit_order" > "_cdc_tombstones"."commit_order";
  INSERT INTO "_cdc_tombstones" ("table_name", "record_id", "commit_order", "commit_timestamp")
  SELECT 'customers', "_cdc_stage_customers"."_cdc_record_id", "_cdc_stage_customers"."_cdc_commit_order", "_cdc_stage_customers"."_cdc_commit_timestamp"
  FROM "_cdc_stage_customers"
  WHERE "_cdc_stage_customers"."_cdc_op" = 'd'
    AND NOT EXISTS (SELECT 1 FROM "_cdc_tombstones" WHERE "_cdc_tombstones"."table_name" = 'customers' AND "_cdc_tombstones"."record_id" = "_cdc_stage_customers"."_cdc_record_id");

  -- (a) Advance the watermark: v_high >= v_watermark, so it never moves back,
  -- and it moves on delete-only and stale-only batches too.
  UPDATE "_cdc_sync_watermarks" SET
    "last_event_id" = v_high,
    "last_run_at" = GETDATE(),
    "last_run_events" = v_new
  WHERE "table_name" = 'customers';

  DROP TABLE "_cdc_stage_customers";
  RAISE INFO 'sync of %: % new events up to event_id %, % keys staged, % applied', 'customers', v_new, v_high, v_staged, v_applied;
END;
$$ LANGUAGE plpgsql
SET enable_case_sensitive_identifier TO true;

-- Target table of order_lines: one row per record_id, typed columns, kept current
-- by incremental_sync_order_lines(). DISTKEY on the first key column, so joins on it
-- with other tables stay on their slices.
-- Soft delete: a delete sets _deleted and keeps the row's last values.
-- Columns not configured stay in cdc_events.event_data only.
CREATE TABLE IF NOT EXISTS "order_lines" (
  "_cdc_record_id" VARCHAR(512) NOT NULL,
  "_cdc_commit_order" VARCHAR(512) COLLATE CASE_SENSITIVE NOT NULL,
  "_cdc_commit_timestamp" TIMESTAMP,
  "_cdc_op" VARCHAR(10) NOT NULL,
  "_deleted" BOOLEAN NOT NULL DEFAULT false,
  "order_id" BIGINT,
  "line" INTEGER,
  "price" DECIMAL(10,2),
  "qty" INTEGER,
  "sku" VARCHAR(MAX),
  PRIMARY KEY ("_cdc_record_id")
)
DISTSTYLE KEY
DISTKEY ("order_id");

-- Current state of order_lines from the log alone: the latest event per
-- record_id by commit order (commit_timestamp alone ties within a millisecond
-- and is not the order of LSN-ordered sources), deletes hidden. Mixed-case
-- JSON keys need enable_case_sensitive_identifier when the view is created.
CREATE OR REPLACE VIEW "order_lines_current" AS
SELECT "latest"."record_id", "latest"."event_data", "latest"."commit_timestamp",
  "latest"."event_data"."order_id"::BIGINT AS "order_id",
  "latest"."event_data"."line"::INTEGER AS "line",
  "latest"."event_data"."price"::DECIMAL(10,2) AS "price",
  "latest"."event_data"."qty"::INTEGER AS "qty",
  CASE WHEN JSON_TYPEOF("latest"."event_data"."sku") = 'string' THEN "latest"."event_data"."sku"::VARCHAR(MAX) WHEN JSON_TYPEOF("latest"."event_data"."sku") IN ('number', 'boolean', 'array', 'object') THEN JSON_SERIALIZE("latest"."event_data"."sku") END AS "sku"
FROM (
  SELECT "record_id", "operation", "event_data", "commit_timestamp",
    ROW_NUMBER() OVER (PARTITION BY "record_id" ORDER BY "commit_order" DESC, "stream_order" DESC, "event_id" DESC) AS "rn"
  FROM "cdc_events"
  WHERE "source_table" = 'order_lines'
) AS "latest"
WHERE "rn" = 1 AND "operation" <> 'd';

-- Incremental sync of order_lines from cdc_events, in the style of seeds 001/003
-- with their bugs fixed: the watermark is the highest event_id processed, per table,
-- advancing on every run that saw events; an event changes the target only
-- when it is newer (by commit order) than the stored row and the key's
-- tombstone. One transaction; schedule CALL "incremental_sync_order_lines"();
CREATE OR REPLACE PROCEDURE "incremental_sync_order_lines"()
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

  SELECT INTO v_watermark, v_lookback "last_event_id", "lookback_seconds" FROM "_cdc_sync_watermarks" WHERE "table_name" = 'order_lines';
  IF NOT FOUND THEN
    v_watermark := 0;
    v_lookback := 900;
    INSERT INTO "_cdc_sync_watermarks" ("table_name", "last_event_id", "lookback_seconds") VALUES ('order_lines', 0, 900);
  END IF;

  -- (a) The new events are those logged after the watermark, whatever their
  -- operation; v_high bounds this run so every statement sees the same set.
  SELECT INTO v_high, v_new COALESCE(MAX("event_id"), v_watermark), COUNT(*)
  FROM "cdc_events"
  WHERE "source_table" = 'order_lines' AND "event_id" > v_watermark;

  -- Staging: a temporary table, not TRUNCATE (which commits in Redshift).
  CREATE TEMP TABLE "_cdc_stage_order_lines" (
    "_cdc_record_id" VARCHAR(512) NOT NULL,
    "_cdc_commit_order" VARCHAR(512) COLLATE CASE_SENSITIVE NOT NULL,
    "_cdc_commit_timestamp" TIMESTAMP,
    "_cdc_op" VARCHAR(10) NOT NULL,
    "order_id" BIGINT,
    "line" INTEGER,
    "price" DECIMAL(10,2),
    "qty" INTEGER,
    "sku" VARCHAR(MAX)
  );

  -- (b) Rank 1 per record_id by commit order (ROW_NUMBER: exactly one winner)
  -- among the new events and those ingested within the lookback window.
  INSERT INTO "_cdc_stage_order_lines" ("_cdc_record_id", "_cdc_commit_order", "_cdc_commit_timestamp", "_cdc_op", "order_id", "line", "price", "qty", "sku")
  SELECT "ranked"."record_id", "ranked"."commit_order", "ranked"."commit_timestamp", "ranked"."operation",
    "ranked"."event_data"."order_id"::BIGINT,
    "ranked"."event_data"."line"::INTEGER,
    "ranked"."event_data"."price"::DECIMAL(10,2),
    "ranked"."event_data"."qty"::INTEGER,
    CASE WHEN JSON_TYPEOF("ranked"."event_data"."sku") = 'string' THEN "ranked"."event_data"."sku"::VARCHAR(MAX) WHEN JSON_TYPEOF("ranked"."event_data"."sku") IN ('number', 'boolean', 'array', 'object') THEN JSON_SERIALIZE("ranked"."event_data"."sku") END
  FROM (
    SELECT "record_id", "operation", "event_data", "commit_order", "commit_timestamp",
      ROW_NUMBER() OVER (PARTITION BY "record_id" ORDER BY "commit_order" DESC, "stream_order" DESC, "event_id" DESC) AS "rn"
    FROM "cdc_events"
    WHERE "source_table" = 'order_lines'
      AND "event_id" <= v_high
      AND ("event_id" > v_watermark OR "ingested_at" >= DATEADD(second, -v_lookback, GETDATE()))
  ) AS "ranked"
  WHERE "ranked"."rn" = 1;
  GET DIAGNOSTICS v_staged := ROW_COUNT;

  -- Newer-than guards: drop staged changes not newer than the key's tombstone
  DELETE FROM "_cdc_stage_order_lines" USING "_cdc_tombstones"
  WHERE "_cdc_tombstones"."table_name" = 'order_lines' AND "_cdc_tombstones"."record_id" = "_cdc_stage_order_lines"."_cdc_record_id"
    AND "_cdc_tombstones"."commit_order" >= "_cdc_stage_order_lines"."_cdc_commit_order";
  -- ... or than the stored row.
  DELETE FROM "_cdc_stage_order_lines" USING "order_lines"
  WHERE "order_lines"."_cdc_record_id" = "_cdc_stage_order_lines"."_cdc_record_id"
    AND "order_lines"."_cdc_commit_order" >= "_cdc_stage_order_lines"."_cdc_commit_order";
  SELECT INTO v_applied COUNT(*) FROM "_cdc_stage_order_lines";

  -- Puts: update newer rows, insert new keys.
  UPDATE "order_lines" SET
    "_cdc_commit_order" = "_cdc_stage_order_lines"."_cdc_commit_order",
    "_cdc_commit_timestamp" = "_cdc_stage_order_lines"."_cdc_commit_timestamp",
    "_cdc_op" = "_cdc_stage_order_lines"."_cdc_op",
    "order_id" = "_cdc_stage_order_lines"."order_id",
    "line" = "_cdc_stage_order_lines"."line",
    "price" = "_cdc_stage_order_lines"."price",
    "qty" = "_cdc_stage_order_lines"."qty",
    "sku" = "_cdc_stage_order_lines"."sku",
    "_deleted" = false
  FROM "_cdc_stage_order_lines"
  WHERE "order_lines"."_cdc_record_id" = "_cdc_stage_order_lines"."_cdc_record_id"
    AND "_cdc_stage_order_lines"."_cdc_op" <> 'd'
    AND "_cdc_stage_order_lines"."_cdc_commit_order" > "order_lines"."_cdc_commit_order";
  INSERT INTO "order_lines" ("_cdc_record_id", "_cdc_commit_order", "_cdc_commit_timestamp", "_cdc_op", "_deleted", "order_id", "line", "price", "qty", "sku")
  SELECT "_cdc_stage_order_lines"."_cdc_record_id", "_cdc_stage_order_lines"."_cdc_commit_order", "_cdc_stage_order_lines"."_cdc_commit_timestamp", "_cdc_stage_order_lines"."_cdc_op", false, "_cdc_stage_order_lines"."order_id", "_cdc_stage_order_lines"."line", "_cdc_stage_order_lines"."price", "_cdc_stage_order_lines"."qty", "_cdc_stage_order_lines"."sku"
  FROM "_cdc_stage_order_lines"
  WHERE "_cdc_stage_order_lines"."_cdc_op" <> 'd'
    AND NOT EXISTS (SELECT 1 FROM "order_lines" WHERE "order_lines"."_cdc_record_id" = "_cdc_stage_order_lines"."_cdc_record_id");

  -- Deletes (soft): mark newer rows deleted, keeping their values; record
  -- unknown keys as deleted so an older insert cannot create them.
  UPDATE "order_lines" SET
    "_cdc_commit_order" = "_cdc_stage_order_lines"."_cdc_commit_order",
    "_cdc_commit_timestamp" = "_cdc_stage_order_lines"."_cdc_commit_timestamp",
    "_cdc_op" = "_cdc_stage_order_lines"."_cdc_op",
    "_deleted" = true
  FROM "_cdc_stage_order_lines"
  WHERE "order_lines"."_cdc_record_id" = "_cdc_stage_order_lines"."_cdc_record_id"
    AND "_cdc_stage_order_lines"."_cdc_op" = 'd'
    AND "_cdc_stage_order_lines"."_cdc_commit_order" > "order_lines"."_cdc_commit_order";
  INSERT INTO "order_lines" ("_cdc_record_id", "_cdc_commit_order", "_cdc_commit_timestamp", "_cdc_op", "_deleted")
  SELECT "_cdc_stage_order_lines"."_cdc_record_id", "_cdc_stage_order_lines"."_cdc_commit_order", "_cdc_stage_order_lines"."_cdc_commit_timestamp", "_cdc_stage_order_lines"."_cdc_op", true
  FROM "_cdc_stage_order_lines"
  WHERE "_cdc_stage_order_lines"."_cdc_op" = 'd'
    AND NOT EXISTS (SELECT 1 FROM "order_lines" WHERE "order_lines"."_cdc_record_id" = "_cdc_stage_order_lines"."_cdc_record_id");
  -- Tombstones: keep the newest delete per key.
  UPDATE "_cdc_tombstones" SET
    "commit_order" = "_cdc_stage_order_lines"."_cdc_commit_order",
    "commit_timestamp" = "_cdc_stage_order_lines"."_cdc_commit_timestamp"
  FROM "_cdc_stage_order_lines"
  WHERE "_cdc_tombstones"."table_name" = 'order_lines' AND "_cdc_tombstones"."record_id" = "_cdc_stage_order_lines"."_cdc_record_id"
    AND "_cdc_stage_order_lines"."_cdc_op" = 'd'
    AND "_cdc_stage_order_lines"."_cdc_commit_order" > "_cdc_tombstones"."commit_order";
  INSERT INTO "_cdc_tombstones" ("table_name", "record_id", "commit_order", "commit_timestamp")
  SELECT 'order_lines', "_cdc_stage_order_lines"."_cdc_record_id", "_cdc_stage_order_lines"."_cdc_commit_order", "_cdc_stage_order_lines"."_cdc_commit_timestamp"
  FROM "_cdc_stage_order_lines"
  WHERE "_cdc_stage_order_lines"."_cdc_op" = 'd'
    AND NOT EXISTS (SELECT 1 FROM "_cdc_tombstones" WHERE "_cdc_tombstones"."table_name" = 'order_lines' AND "_cdc_tombstones"."record_id" = "_cdc_stage_order_lines"."_cdc_record_id");

  -- (a) Advance the watermark: v_high >= v_watermark, so it never moves back,
  -- and it moves on delete-only and stale-only batches too.
  UPDATE "_cdc_sync_watermarks" SET
    "last_event_id" = v_high,
    "last_run_at" = GETDATE(),
    "last_run_events" = v_new
  WHERE "table_name" = 'order_lines';

  DROP TABLE "_cdc_stage_order_lines";
  RAISE INFO 'sync of %: % new events up to event_id %, % keys staged, % applied', 'order_lines', v_new, v_high, v_staged, v_applied;
END;
$$ LANGUAGE plpgsql
SET enable_case_sensitive_identifier TO true;

-- Target table of orders: one row per record_id, typed columns, kept current
-- by incremental_sync_orders(). DISTKEY on the first key column, so joins on it
-- with other tables stay on their slices.
-- Columns not configured stay in cdc_events.event_data only.
CREATE TABLE IF NOT EXISTS "orders" (
  "_cdc_record_id" VARCHAR(512) NOT NULL,
  "_cdc_commit_order" VARCHAR(512) COLLATE CASE_SENSITIVE NOT NULL,
  "_cdc_commit_timestamp" TIMESTAMP,
  "_cdc_op" VARCHAR(10) NOT NULL,
  "id" BIGINT,
  "paid" BOOLEAN,
  "placed_at" TIMESTAMP,
  "score" DOUBLE PRECISION,
  "status" VARCHAR(MAX),
  "total" DECIMAL(12,2),
  PRIMARY KEY ("_cdc_record_id")
)
DISTSTYLE KEY
DISTKEY ("id");

-- Current state of orders from the log alone: the latest event per
-- record_id by commit order (commit_timestamp alone ties within a millisecond
-- and is not the order of LSN-ordered sources), deletes hidden. Mixed-case
-- JSON keys need enable_case_sensitive_identifier when the view is created.
CREATE OR REPLACE VIEW "orders_current" AS
SELECT "latest"."record_id", "latest"."event_data", "latest"."commit_timestamp",
  "latest"."event_data"."id"::BIGINT AS "id",
  "latest"."event_data"."paid"::BOOLEAN AS "paid",
  ("latest"."event_data"."placed_at"::TIMESTAMPTZ AT TIME ZONE 'UTC') AS "placed_at",
  "latest"."event_data"."score"::DOUBLE PRECISION AS "score",
  CASE WHEN JSON_TYPEOF("latest"."event_data"."status") = 'string' THEN "latest"."event_data"."status"::VARCHAR(MAX) WHEN JSON_TYPEOF("latest"."event_data"."status") IN ('number', 'boolean', 'array', 'object') THEN JSON_SERIALIZE("latest"."event_data"."status") END AS "status",
  "latest"."event_data"."total"::DECIMAL(12,2) AS "total"
FROM (
  SELECT "record_id", "operation", "event_data", "commit_timestamp",
    ROW_NUMBER() OVER (PARTITION BY "record_id" ORDER BY "commit_order" DESC, "stream_order" DESC, "event_id" DESC) AS "rn"
  FROM "cdc_events"
  WHERE "source_table" = 'orders'
) AS "latest"
WHERE "rn" = 1 AND "operation" <> 'd';

-- Incremental sync of orders from cdc_events, in the style of seeds 001/003
-- with their bugs fixed: the watermark is the highest event_id processed, per table,
-- advancing on every run that saw events; an event changes the target only
-- when it is newer (by commit order) than the stored row and the key's
-- tombstone. One transaction; schedule CALL "incremental_sync_orders"();
CREATE OR REPLACE PROCEDURE "incremental_sync_orders"()
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

  SELECT INTO v_watermark, v_lookback "last_event_id", "lookback_seconds" FROM "_cdc_sync_watermarks" WHERE "table_name" = 'orders';
  IF NOT FOUND THEN
    v_watermark := 0;
    v_lookback := 900;
    INSERT INTO "_cdc_sync_watermarks" ("table_name", "last_event_id", "lookback_seconds") VALUES ('orders', 0, 900);
  END IF;

  -- (a) The new events are those logged after the watermark, whatever their
  -- operation; v_high bounds this run so every statement sees the same set.
  SELECT INTO v_high, v_new COALESCE(MAX("event_id"), v_watermark), COUNT(*)
  FROM "cdc_events"
  WHERE "source_table" = 'orders' AND "event_id" > v_watermark;

  -- Staging: a temporary table, not TRUNCATE (which commits in Redshift).
  CREATE TEMP TABLE "_cdc_stage_orders" (
    "_cdc_record_id" VARCHAR(512) NOT NULL,
    "_cdc_commit_order" VARCHAR(512) COLLATE CASE_SENSITIVE NOT NULL,
    "_cdc_commit_timestamp" TIMESTAMP,
    "_cdc_op" VARCHAR(10) NOT NULL,
    "id" BIGINT,
    "paid" BOOLEAN,
    "placed_at" TIMESTAMP,
    "score" DOUBLE PRECISION,
    "status" VARCHAR(MAX),
    "total" DECIMAL(12,2)
  );

  -- (b) Rank 1 per record_id by commit order (ROW_NUMBER: exactly one winner)
  -- among the new events and those ingested within the lookback window.
  INSERT INTO "_cdc_stage_orders" ("_cdc_record_id", "_cdc_commit_order", "_cdc_commit_timestamp", "_cdc_op", "id", "paid", "placed_at", "score", "status", "total")
  SELECT "ranked"."record_id", "ranked"."commit_order", "ranked"."commit_timestamp", "ranked"."operation",
    "ranked"."event_data"."id"::BIGINT,
    "ranked"."event_data"."paid"::BOOLEAN,
    ("ranked"."event_data"."placed_at"::TIMESTAMPTZ AT TIME ZONE 'UTC'),
    "ranked"."event_data"."score"::DOUBLE PRECISION,
    CASE WHEN JSON_TYPEOF("ranked"."event_data"."status") = 'string' THEN "ranked"."event_data"."status"::VARCHAR(MAX) WHEN JSON_TYPEOF("ranked"."event_data"."status") IN ('number', 'boolean', 'array', 'object') THEN JSON_SERIALIZE("ranked"."event_data"."status") END,
    "ranked"."event_data"."total"::DECIMAL(12,2)
  FROM (
    SELECT "record_id", "operation", "event_data", "commit_order", "commit_timestamp",
      ROW_NUMBER() OVER (PARTITION BY "record_id" ORDER BY "commit_order" DESC, "stream_order" DESC, "event_id" DESC) AS "rn"
    FROM "cdc_events"
    WHERE "source_table" = 'orders'
      AND "event_id" <= v_high
      AND ("event_id" > v_watermark OR "ingested_at" >= DATEADD(second, -v_lookback, GETDATE()))
  ) AS "ranked"
  WHERE "ranked"."rn" = 1;
  GET DIAGNOSTICS v_staged := ROW_COUNT;

  -- Newer-than guards: drop staged changes not newer than the key's tombstone
  DELETE FROM "_cdc_stage_orders" USING "_cdc_tombstones"
  WHERE "_cdc_tombstones"."table_name" = 'orders' AND "_cdc_tombstones"."record_id" = "_cdc_stage_orders"."_cdc_record_id"
    AND "_cdc_tombstones"."commit_order" >= "_cdc_stage_orders"."_cdc_commit_order";
  -- ... or than the stored row.
  DELETE FROM "_cdc_stage_orders" USING "orders"
  WHERE "orders"."_cdc_record_id" = "_cdc_stage_orders"."_cdc_record_id"
    AND "orders"."_cdc_commit_order" >= "_cdc_stage_orders"."_cdc_commit_order";
  SELECT INTO v_applied COUNT(*) FROM "_cdc_stage_orders";

  -- Puts: update newer rows, insert new keys.
  UPDATE "orders" SET
    "_cdc_commit_order" = "_cdc_stage_orders"."_cdc_commit_order",
    "_cdc_commit_timestamp" = "_cdc_stage_orders"."_cdc_commit_timestamp",
    "_cdc_op" = "_cdc_stage_orders"."_cdc_op",
    "id" = "_cdc_stage_orders"."id",
    "paid" = "_cdc_stage_orders"."paid",
    "placed_at" = "_cdc_stage_orders"."placed_at",
    "score" = "_cdc_stage_orders"."score",
    "status" = "_cdc_stage_orders"."status",
    "total" = "_cdc_stage_orders"."total"
  FROM "_cdc_stage_orders"
  WHERE "orders"."_cdc_record_id" = "_cdc_stage_orders"."_cdc_record_id"
    AND "_cdc_stage_orders"."_cdc_op" <> 'd'
    AND "_cdc_stage_orders"."_cdc_commit_order" > "orders"."_cdc_commit_order";
  INSERT INTO "orders" ("_cdc_record_id", "_cdc_commit_order", "_cdc_commit_timestamp", "_cdc_op", "id", "paid", "placed_at", "score", "status", "total")
  SELECT "_cdc_stage_orders"."_cdc_record_id", "_cdc_stage_orders"."_cdc_commit_order", "_cdc_stage_orders"."_cdc_commit_timestamp", "_cdc_stage_orders"."_cdc_op", "_cdc_stage_orders"."id", "_cdc_stage_orders"."paid", "_cdc_stage_orders"."placed_at", "_cdc_stage_orders"."score", "_cdc_stage_orders"."status", "_cdc_stage_orders"."total"
  FROM "_cdc_stage_orders"
  WHERE "_cdc_stage_orders"."_cdc_op" <> 'd'
    AND NOT EXISTS (SELECT 1 FROM "orders" WHERE "orders"."_cdc_record_id" = "_cdc_stage_orders"."_cdc_record_id");

  -- Deletes: remove only rows older than the delete.
  DELETE FROM "orders" USING "_cdc_stage_orders"
  WHERE "orders"."_cdc_record_id" = "_cdc_stage_orders"."_cdc_record_id"
    AND "_cdc_stage_orders"."_cdc_op" = 'd'
    AND "_cdc_stage_orders"."_cdc_commit_order" > "orders"."_cdc_commit_order";
  -- Tombstones: keep the newest delete per key.
  UPDATE "_cdc_tombstones" SET
    "commit_order" = "_cdc_stage_orders"."_cdc_commit_order",
    "commit_timestamp" = "_cdc_stage_orders"."_cdc_commit_timestamp"
  FROM "_cdc_stage_orders"
  WHERE "_cdc_tombstones"."table_name" = 'orders' AND "_cdc_tombstones"."record_id" = "_cdc_stage_orders"."_cdc_record_id"
    AND "_cdc_stage_orders"."_cdc_op" = 'd'
    AND "_cdc_stage_orders"."_cdc_commit_order" > "_cdc_tombstones"."commit_order";
  INSERT INTO "_cdc_tombstones" ("table_name", "record_id", "commit_order", "commit_timestamp")
  SELECT 'orders', "_cdc_stage_orders"."_cdc_record_id", "_cdc_stage_orders"."_cdc_commit_order", "_cdc_stage_orders"."_cdc_commit_timestamp"
  FROM "_cdc_stage_orders"
  WHERE "_cdc_stage_orders"."_cdc_op" = 'd'
    AND NOT EXISTS (SELECT 1 FROM "_cdc_tombstones" WHERE "_cdc_tombstones"."table_name" = 'orders' AND "_cdc_tombstones"."record_id" = "_cdc_stage_orders"."_cdc_record_id");

  -- (a) Advance the watermark: v_high >= v_watermark, so it never moves back,
  -- and it moves on delete-only and stale-only batches too.
  UPDATE "_cdc_sync_watermarks" SET
    "last_event_id" = v_high,
    "last_run_at" = GETDATE(),
    "last_run_events" = v_new
  WHERE "table_name" = 'orders';

  DROP TABLE "_cdc_stage_orders";
  RAISE INFO 'sync of %: % new events up to event_id %, % keys staged, % applied', 'orders', v_new, v_high, v_staged, v_applied;
END;
$$ LANGUAGE plpgsql
SET enable_case_sensitive_identifier TO true;
