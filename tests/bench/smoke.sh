#!/usr/bin/env bash
# Keeps `make bench` from rotting: runs bench/run.sh in its tiny mode (one
# 1 s round per row) against this build and checks that every row it can
# run here served requests, answered only 2xx / grpc-status OK, and made
# it into the table. Nothing here looks at speed.
#
#   smoke.sh SOURCE_DIR BUILD_DIR
# Exit 77 (skipped) when the load tools are not installed (make deps).
set -euo pipefail
src=$1 build=$2
for t in wrk h2load curl; do
	command -v "$t" >/dev/null || { echo "skipped: no $t (make deps)"; exit 77; }
done
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] ||
	{ echo "skipped: no nginx (make deps)"; exit 77; }

out=$(mktemp /tmp/das-bench-smoke.XXXXXX)
trap 'rm -f "$out"' EXIT
BENCH_TINY=1 BENCH_TABLE=$out "$src/bench/run.sh" "$build"

want=("nginx, fixed 201" "nginx -> nginx proxy hop" "REST read: PUT assign"
	"REST writes: each PUT moves" "gRPC Health/Check" "gRPC AssignDevice repeat"
	"gRPC AssignDevice, --token-cache 0" "REST read / nginx 201"
	"gRPC AssignDevice / own Health")
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v pgbench >/dev/null; then
	want+=("REST read, PostgreSQL store" "REST writes, PostgreSQL store"
		"REST read, two PostgreSQL replicas behind one gateway"
		"two PostgreSQL replicas / one" "pgbench -S -c32" "pgbench -N -c32")
fi
if /usr/bin/python3 -c 'import grpc' 2>/dev/null; then
	want+=("grpc-status checked with python3-grpcio")
fi
if command -v perf >/dev/null && perf stat -e context-switches true >/dev/null 2>&1; then
	want+=("context switches / req")
fi
fail=0
for w in "${want[@]}"; do
	grep -qF -- "$w" "$out" || { echo "missing from the table: $w"; fail=1; }
done
# Every measured row: no non-2xx / non-OK answer ("| 0 of N |").
if awk -F'|' 'NF > 6 && $6 ~ /^ [0-9]+ of [0-9]+ $/ { split($6, a, " "); if (a[1] != 0) bad = 1 }
	END { exit !bad }' "$out"; then
	echo "a row had non-2xx / non-OK answers"
	fail=1
fi
exit $fail
