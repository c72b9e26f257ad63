#!/usr/bin/env bash
# Issue-3 benchmark: N DSQL events (default 1M over 100k keys), file -> DuckDB.
# Measures, in one run on the same files:
#   limit   DuckDB's own appender inserting the same pre-decoded rows
#   log     cdcflow load --log-only (event log + views + checkpoints)
#   merged  cdcflow load (event log + merged tables + tombstones)
# and prints events/s, the ratios against the limit, and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
CHANGES=${CHANGES:-1000000}
KEYSPACE=${KEYSPACE:-100000}
OUT=${OUT:-bench/out/warehouse}
rm -rf "$OUT" && mkdir -p "$OUT/data"

go build -o "$OUT/cdcflow" ./cmd/cdcflow
go build -o "$OUT/cdcgen" ./cmd/cdcgen
go build -o "$OUT/appendlimit" ./bench/appendlimit

echo "== generating $CHANGES DSQL changes over $KEYSPACE keys"
"$OUT/cdcgen" -format dsql -seed 42 -changes "$CHANGES" -keyspace "$KEYSPACE" -dup 0 -shards 4 -fragment 0 -big -1 -out "$OUT/data" >/dev/null
du -sh "$OUT/data"
keys=(--key orders=order_id --key order_items=order_id,line_no --key customers=id)

rss() { awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); printf "%.0f", $2/1024}' "$1"; }
load() { # name, extra flags
	local name=$1; shift
	/usr/bin/time -v -o "$OUT/$name.time" "$OUT/cdcflow" load --no-progress --format dsql "${keys[@]}" "$@" \
		--sink "duckdb://$OUT/$name.duckdb" "$OUT"/data/shard-*.ndjson 2> "$OUT/$name.log"
	local secs events
	secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$OUT/$name.time")
	events=$(awk '/^read / {print $4}' "$OUT/$name.log" | tr -d ,)
	echo "$name events=$events seconds=$secs events_per_sec=$(awk -v e="$events" -v s="$secs" 'BEGIN{printf "%.0f", e/s}') peak_rss_mb=$(rss "$OUT/$name.time")"
}

echo "== runs"
limit=$("$OUT/appendlimit" -db "$OUT/limit.duckdb" -batch 10000 "$OUT"/data/shard-*.ndjson)
echo "$limit"
logline=$(load log --log-only)
echo "$logline"
mergedline=$(load merged)
echo "$mergedline"

rate() { sed -n 's/.*events_per_sec=\([0-9]*\).*/\1/p' <<<"$1"; }
echo "== ratios against the limit (same files, same run)"
awk -v l="$(rate "$limit")" -v g="$(rate "$logline")" -v m="$(rate "$mergedline")" \
	'BEGIN { printf "log-only: %.0f%% of the limit\nlog+merged: %.0f%% of the limit\n", 100*g/l, 100*m/l }'
