#!/usr/bin/env bash
# Kinesis source benchmark (bench/kinesisbench): records/s of
# internal/source/kinesis (Read + ack, no decode, no sink) against a bare
# aws-sdk-go-v2 GetRecords loop reading the same kinesalite stream in the
# same run; each reader in its own process, its CPU from its rusage;
# kinesalite's CPU reported apart. Target: the source at >= 90% of the loop.
#
#   bench/kinesis.sh                              # 200k DSQL records, 4 shards, 5 rounds: ~3 min on 2 shared cores
#   bench/kinesis.sh -rounds 7
#   bench/kinesis.sh -cpuprofile                  # pprof of every read in $OUT
#   RECORDS=50000 bench/kinesis.sh -rounds 3      # smaller
#
# Extra arguments go to the Go program (go run ./bench/kinesisbench -h lists
# them). Output: the tables on stdout and in $OUT/report.md (default
# bench/out/kinesis). Needs node and kinesalite (scripts/test.sh installs
# them).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out/kinesis}
RECORDS=${RECORDS:-200000}
mkdir -p "$OUT"

go build -o "$OUT/kinesisbench" ./bench/kinesisbench
echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)" >&2
"$OUT/kinesisbench" -out "$OUT" -records "$RECORDS" "$@" | tee "$OUT/report.md"
