#!/usr/bin/env bash
# Kafka -> PostgreSQL benchmark of the production path (bench/kafkapg).
# In one run, with a private PostgreSQL (fsync on) and an in-process kfake
# broker (1 broker, 4 partitions, 127.0.0.1), on 1M DSQL changes over 100k keys:
#   limit        pgx CopyFrom of the pre-decoded rows into an identical cdc_events
#   log-only     cdcflow load --log-only --sink postgres://… (the records as files)
#   merged       cdcflow load --sink postgres://… (files)
#   merged       cdcflow run -c (source.kafka, sink.postgres), pre-produced topic
# each -rounds times, alternating; then freshness: 20k records/s produced for
# 60 s (after a 10 s warm-up) while cdcflow run applies them, p99 of
# produce-to-visible per record.
#
#   bench/kafka-pg.sh                                  # everything, ~10 minutes on 2 shared cores
#   bench/kafka-pg.sh -skip-throughput                 # freshness only
#   bench/kafka-pg.sh -skip-freshness -rounds 3
#   bench/kafka-pg.sh -skip-throughput -batch-wait 250ms -max-in-flight 16
#   CHANGES=200000 KEYSPACE=20000 bench/kafka-pg.sh    # smaller throughput runs
#
# Extra arguments go to the Go program (go run ./bench/kafkapg -h lists them).
# Output: the tables on stdout and in $OUT/report.md; cdcflow logs, configs,
# data files and /metrics snapshots under $OUT (default bench/out/kafkapg).
# Needs the PostgreSQL server packages (scripts/test.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out/kafkapg}
CHANGES=${CHANGES:-1000000}
KEYSPACE=${KEYSPACE:-100000}
mkdir -p "$OUT"

go build -o "$OUT/cdcflow" ./cmd/cdcflow
go build -o "$OUT/kafkapg" ./bench/kafkapg
echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)" >&2
"$OUT/kafkapg" -cdcflow "$OUT/cdcflow" -out "$OUT" -changes "$CHANGES" -keyspace "$KEYSPACE" "$@" | tee "$OUT/report.md"
