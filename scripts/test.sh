#!/usr/bin/env bash
# Runs every test cdcflow has: installs what the tests need, vets, runs the
# unit and integration tests with the race detector, then smoke-runs every
# fuzz target. Safe to run again; CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-10s}

need_apt=()
command -v gcc >/dev/null || need_apt+=(gcc libc6-dev)    # cgo, for DuckDB
command -v kcat >/dev/null || need_apt+=(kcat)                # independent Kafka producer in e2e tests
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_apt+=(postgresql)   # internal/pgtest starts private servers
command -v npm >/dev/null || need_apt+=(nodejs npm)          # runs kinesalite (internal/kinesistest)
[[ -x /usr/bin/aws ]] || need_apt+=(awscli)                  # independent Kinesis producer in tests
if ((${#need_apt[@]})); then
	echo "== installing ${need_apt[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

npm_dir="$(go env GOPATH)/cdcflow-npm"                        # internal/kinesistest looks here
if [[ ! -x "$npm_dir/node_modules/.bin/kinesalite" ]]; then
	echo "== installing kinesalite"
	mkdir -p "$npm_dir"
	npm install --prefix "$npm_dir" --no-audit --no-fund --silent kinesalite@3.3.3
fi

export CGO_ENABLED=1
echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 20m ./...

echo "== fuzz smoke ($FUZZTIME per target)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for pkg in $(go list ./... ); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
		echo "-- $pkg $target"
		if ! go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg" > "$log" 2>&1; then
			cat "$log"
			echo "fuzz target $target of $pkg failed; the failing input is saved under $dir/testdata/fuzz/$target/"
			exit 1
		fi
		tail -n 1 "$log"
	done
done
echo "== all tests passed"
