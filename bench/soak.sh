#!/usr/bin/env bash
# Soak: the differential correctness test (internal/e2e TestDifferential) with
# many more seeds and bigger histories. Every seed is a random source history
# encoded in every format (DSQL with fragments, Debezium with and without
# schema, DMS, DynamoDB) with duplicates, shards and reordering, run through
# file source -> decoder -> pipeline -> DuckDB with 1-3 crashes between commit
# and ack, and compared with the source's final state.
#
#   SEEDS=200 CHANGES=20000 bench/soak.sh     # the defaults
#   BASE=12345 bench/soak.sh                  # start at a given seed (default: time-based)
#   RACE=1 bench/soak.sh                      # with the race detector (about 3x slower)
#
# Prints seeds/s and every failing seed with the command that reruns it;
# exits non-zero if any seed failed. Output: bench/out/soak/soak.log.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-200}
CHANGES=${CHANGES:-20000}
BASE=${BASE:-$(( $(date +%s) % 1000000000 ))}
TIMEOUT=${TIMEOUT:-48h}
OUT=${OUT:-bench/out/soak}
mkdir -p "$OUT"
race=()
if [[ "${RACE:-0}" == 1 ]]; then race=(-race); fi

echo "== soak: $SEEDS seeds from $BASE, $CHANGES changes each, 5 formats per seed${race:+ (race)}"
go test -c "${race[@]}" -o "$OUT/e2e.test" ./internal/e2e
start=$(date +%s)
set +e
CDCFLOW_SOAK_SEEDS=$SEEDS CDCFLOW_SOAK_CHANGES=$CHANGES CDCFLOW_SOAK_BASE=$BASE \
	"$OUT/e2e.test" -test.run '^TestDifferential$' -test.v -test.timeout "$TIMEOUT" > "$OUT/soak.log" 2>&1
status=$?
set -e
secs=$(( $(date +%s) - start ))
(( secs > 0 )) || secs=1

passed=$(grep -c -- '--- PASS: TestDifferential/seed=' "$OUT/soak.log" || true)
failed=$(grep -o -- '--- FAIL: TestDifferential/seed=[0-9]*/[a-z_]*' "$OUT/soak.log" | sed 's/.*seed=//' | sort -u || true)
echo "scenarios passed=$passed failed=$(printf '%s' "$failed" | grep -c . || true) seconds=$secs seeds_per_sec=$(awk -v n="$SEEDS" -v s="$secs" 'BEGIN{printf "%.3f", n/s}')"
if [[ -n "$failed" ]]; then
	echo "== failing seeds (details in $OUT/soak.log):"
	while IFS=/ read -r seed format; do
		echo "  seed=$seed format=$format   rerun: CDCFLOW_SEED=$seed CDCFLOW_SOAK_CHANGES=$CHANGES go test ./internal/e2e -run 'TestDifferential/seed=$seed/$format\$' -v"
	done <<< "$failed"
fi
if (( status != 0 )); then
	if [[ -z "$failed" ]]; then
		echo "== the test binary failed without a failing seed (timeout or panic?); tail of $OUT/soak.log:"
		tail -n 30 "$OUT/soak.log"
	fi
	exit "$status"
fi
echo "ok"
