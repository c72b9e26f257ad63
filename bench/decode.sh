#!/usr/bin/env bash
# bench/decode.sh: decoder throughput and allocations per format.
#
# Runs BenchmarkDecode and BenchmarkEncodingJSONMap (encoding/json into
# map[string]any over the same records: the baseline) of every format
# package under internal/decode, with -cpu 1 -count 5 -benchmem, then prints
# per format: MB/s, ns/event, allocs/event and the ratios to the baseline.
# benchstat (pinned below) adds the spread of each number when it can be
# installed; the summary does not need it.
#
# Usage: bench/decode.sh [-count N] [-benchtime D] [-out DIR]
#   -count N      runs per benchmark (default 5); medians are reported
#   -benchtime D  go test -benchtime (default 1s)
#   -out DIR      keep the raw go test output there (default: a temp dir)
# Env: BENCHSTAT=0 skips benchstat.
set -euo pipefail

BENCHSTAT_VERSION=v0.0.0-20260908200009-22c9c6c9d4da # golang.org/x/perf

count=5
benchtime=1s
out=""
while [ $# -gt 0 ]; do
	case $1 in
	-count) count=$2; shift 2 ;;
	-benchtime) benchtime=$2; shift 2 ;;
	-out) out=$2; shift 2 ;;
	-h | -help | --help) sed -n '2,17p' "$0"; exit 0 ;;
	*) echo "decode.sh: unknown argument $1 (see -help)" >&2; exit 2 ;;
	esac
done

cd "$(dirname "$0")/.."
if [ -z "$out" ]; then
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"

formats="dsql debezium dms dynamodb"

# events_per_op prints how many events one op of a package's benchmarks
# decodes, for packages whose benchmarks do not report allocs/event and
# ns/event themselves (dsql does: 256 records per op).
events_per_op() {
	local f=internal/decode/$1/bench_test.go n
	case $1 in
	dsql) echo 256 ;;
	debezium) echo 1 ;; # one record per b.Loop iteration
	dms | dynamodb)
		# Each op decodes every testdata file named in benchRecords.
		n=$(grep -o 'range \[\]string{[^}]*}' "$f" | head -1 | grep -o '"[^"]*"' | wc -l)
		if [ "$n" -lt 1 ]; then
			echo "decode.sh: cannot count the records of $f" >&2
			exit 1
		fi
		echo "$n"
		;;
	*)
		echo "decode.sh: events per op of $1 unknown: teach events_per_op" >&2
		exit 1
		;;
	esac
}

echo "# go test -bench, -cpu 1 -count $count -benchtime $benchtime, $(go version | cut -d' ' -f3), $(nproc) cores"
for f in $formats; do
	echo "# $f" >&2
	go test -run '^$' -bench '^Benchmark(Decode|EncodingJSONMap)$' -benchmem \
		-cpu 1 -count "$count" -benchtime "$benchtime" "./internal/decode/$f/" >"$out/$f.txt"
done

if [ "${BENCHSTAT:-1}" != 0 ]; then
	bs=$(command -v benchstat || true)
	gobin=$(go env GOPATH)/bin
	if [ -z "$bs" ] && [ -x "$gobin/benchstat" ]; then
		bs=$gobin/benchstat
	fi
	if [ -z "$bs" ] && go install "golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION" 2>/dev/null; then
		bs=$gobin/benchstat
	fi
	if [ -n "$bs" ]; then
		for f in $formats; do
			echo
			echo "## $f: benchstat (columns: Decode vs EncodingJSONMap)"
			"$bs" -col .name "$out/$f.txt" || true
		done
	else
		echo
		echo "(benchstat not installed and not installable: spreads omitted)"
	fi
fi

echo
echo "## Summary (medians of $count runs; per event = per op / events per op)"
for f in $formats; do
	awk -v fmt="$f" -v per="$(events_per_op "$f")" '
	function median(key,    n, i, j, t, a) {
		n = cnt[key]
		if (n == 0) return -1
		for (i = 1; i <= n; i++) a[i] = val[key, i]
		for (i = 2; i <= n; i++) {
			t = a[i]
			for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
			a[j + 1] = t
		}
		if (n % 2) return a[(n + 1) / 2]
		return (a[n / 2] + a[n / 2 + 1]) / 2
	}
	/^Benchmark/ {
		name = $1
		sub(/-[0-9]+$/, "", name)
		sub(/^Benchmark/, "", name)
		for (i = 3; i < NF; i += 2) {
			key = name SUBSEP $(i + 1)
			val[key, ++cnt[key]] = $i
		}
	}
	function stat(name, unit, scale,    m) {
		m = median(name SUBSEP unit)
		if (m >= 0) return m / scale
		return -1
	}
	function perEvent(name, evUnit, opUnit,    m) {
		m = stat(name, evUnit, 1) # reported by the benchmark itself
		if (m >= 0) return m
		return stat(name, opUnit, per)
	}
	END {
		dMB = stat("Decode", "MB/s", 1); jMB = stat("EncodingJSONMap", "MB/s", 1)
		dA = perEvent("Decode", "allocs/event", "allocs/op"); jA = perEvent("EncodingJSONMap", "allocs/event", "allocs/op")
		dN = perEvent("Decode", "ns/event", "ns/op"); jN = perEvent("EncodingJSONMap", "ns/event", "ns/op")
		if (dMB < 0 || jMB < 0 || dA < 0 || jA < 0) {
			printf "decode.sh: %s: benchmark output incomplete\n", fmt > "/dev/stderr"
			exit 1
		}
		fewer = "inf"
		if (dA > 0) fewer = sprintf("%.1fx", jA / dA)
		printf "%s\t%d\t%.0f\t%.0f\t%.1fx\t%.0f\t%.0f\t%.2f\t%.2f\t%s\n", fmt, per, dMB, jMB, dMB / jMB, dN, jN, dA, jA, fewer
	}' "$out/$f.txt"
done | {
	printf "format\tevents/op\tMB/s\tjson MB/s\tspeed vs json\tns/event\tjson ns/event\tallocs/event\tjson allocs/event\tfewer allocs\n"
	cat
} | if command -v column >/dev/null; then column -t -s "$(printf '\t')"; else cat; fi
