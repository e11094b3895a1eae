#!/usr/bin/env bash
# make bench: every figure of the performance work, from one run.
#
#   bench/run.sh [BUILD_DIR]      (default: ./build; DAS_BUILD_DIR also works)
#
# Rows (each loaded in turn, round after round, so every ratio compares two
# rows of the same round): nginx answering a fixed 201; nginx proxying to
# that nginx (one HTTP hop); our gateway -> server on SQLite, REST read
# (idempotent PUT assign over 64 users) and REST writes (each PUT moves a
# device); GET list with metrics and JSON logs off and on (issue 12); the
# same two REST loads on a private PostgreSQL, with pgbench -S and -N
# beside them, and the read through one gateway in front of two server
# replicas on that database; our server's gRPC Health/Check and AssignDevice under h2load
# (with the token cache and without); and, when the grpc-gateway peer is
# built (PEER_BIN, default /tmp/das-peer-grpc-gateway/bin), the peer's REST
# stack, grpc-gateway in front of our server, and the Go server under
# h2load. A warm-up, then RUNS alternating rounds; the table (bench/table.py)
# shows medians and every ratio of the targets, met or not met.
# Then, per request: context switches and CPU time of each process
# (perf stat), and instructions (callgrind, a fixed number of requests,
# split by library and function).
#
# Knobs (env):
#   RUNS=3 DURATION=5s WARMUP=1s CONNS=32 PAUSE=1   the load rounds
#   PG=auto|0|1      the PostgreSQL rows (auto: when initdb is found)
#   PERF=1           perf stat section (0 = off)
#   CALLGRIND=1      callgrind section (0 = off); CG_N=2000 requests each
#   PEER_BIN=DIR     the peer's da-server and da-gateway
#   BENCH_TINY=1     smoke mode: one 1 s round per row, CG_N=20
#   BENCH_TABLE=FILE also write the table there
#   ROWS="row ..."   only these rows (names as in bench/table.py)
#   PAIRS="a:b ..."  rows whose ratio is close to its target, loaded as
#                    PAIR_N=6 pairs of PAIR_DURATION=2s per round, in the
#                    order ab ba ab ...; their ratio is the median of all
#                    pair ratios (default "obs_off:obs_on rest_read:peer_gw_ours";
#                    PAIRS= loads every row once a round)
#   BENCH_LOGS=DIR   keep the programs' logs there
#   PG_WORKERS=N     --workers of the servers on PostgreSQL (default: theirs)
#   SERVER_WORKERS=N --workers of the server on SQLite (default: its own)
# Everything listens on 127.0.0.1 ports the kernel picks and lives in one
# temporary directory; every process started here is stopped on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-${DAS_BUILD_DIR:-$here/../build}}
build=$(cd "$build" && pwd)
server_bin=$build/service/device-assignment-server
gateway_bin=$build/gateway/device-assignment-gateway
cli_bin=$build/cli/device-assignment

if [ "${BENCH_TINY:-0}" = 1 ]; then
	RUNS=${RUNS:-1} DURATION=${DURATION:-1s} WARMUP=${WARMUP:-0}
	PAUSE=${PAUSE:-0} CG_N=${CG_N:-20} PGBENCH_SCALE=${PGBENCH_SCALE:-1}
	PAIR_N=${PAIR_N:-2} PAIR_DURATION=${PAIR_DURATION:-1s}
fi
RUNS=${RUNS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
CONNS=${CONNS:-32}
PAUSE=${PAUSE:-1}
PG=${PG:-auto}
PERF=${PERF:-1}
CALLGRIND=${CALLGRIND:-1}
CG_N=${CG_N:-2000}
PGBENCH_SCALE=${PGBENCH_SCALE:-10}
PAIRS=${PAIRS-obs_off:obs_on rest_read:peer_gw_ours}
PAIR_N=${PAIR_N:-6}
PAIR_DURATION=${PAIR_DURATION:-2s}
PEER_BIN=${PEER_BIN:-/tmp/das-peer-grpc-gateway/bin}
secs=${DURATION%s}
USERS=64

for b in "$server_bin" "$gateway_bin" "$cli_bin"; do
	[ -x "$b" ] || { echo "missing $b (build first)" >&2; exit 2; }
done
for t in wrk h2load curl python3; do
	command -v "$t" >/dev/null || { echo "missing $t (make deps)" >&2; exit 2; }
done
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx_bin" ] || { echo "missing nginx (make deps)" >&2; exit 2; }

tmp=$(mktemp -d /tmp/das-bench.XXXXXX)
chmod 711 "$tmp"
pids=()
pg_ctl_cmd=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "${BENCH_LOGS:-}" ]; then
		mkdir -p "$BENCH_LOGS" && cp "$tmp"/*.err "$BENCH_LOGS"/ 2>/dev/null || true
		[ -f "$tmp/pg/log" ] && cp "$tmp/pg/log" "$BENCH_LOGS/postgresql.log" 2>/dev/null || true
	fi
	if ((${#pg_ctl_cmd[@]})); then
		"${pg_ctl_cmd[@]}" stop -m immediate >/dev/null 2>&1 || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '%s\n' "$*" >&2; }

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # PORT PID
	for _ in $(seq 1 600); do
		kill -0 "$2" 2>/dev/null || { say "process $2 died"; tail -n 20 "$tmp"/*.err >&2; exit 1; }
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	say "port $1 never opened"
	exit 1
}

# start NAME CMD... : CMD in the background; waits for its "listening on
# HOST:PORT" line; sets $addr and $pid.
start() {
	local name=$1
	shift
	: >"$tmp/$name.out" # exists before the child gets to open it
	"$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
	pid=$!
	pids+=("$pid")
	for _ in $(seq 1 600); do
		addr=$(sed -n 's/.* listening on \(.*\)$/\1/p' "$tmp/$name.out")
		[ -n "$addr" ] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	say "$name did not start:"
	cat "$tmp/$name.err" >&2
	exit 1
}

stop_pid() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	local keep=() p
	for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	pids=("${keep[@]}")
}

# percentiles: microsecond values on stdin -> "p50_ms p99_ms"
percentiles() {
	python3 -c '
import sys
v = sorted(float(x) for x in sys.stdin.read().split())
if not v:
    print("-1 -1")
else:
    q = lambda p: v[min(len(v) - 1, int(p * len(v)))] / 1000.0
    print("%.3f %.3f" % (q(0.50), q(0.99)))'
}

# ---- nginx: fixed 201, and a proxy hop in front of it ------------------------
ng_port=$(free_port)
hop_port=$(free_port)
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<CONF
worker_processes 2;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $tmp/nginx;
	proxy_temp_path $tmp/nginx;
	fastcgi_temp_path $tmp/nginx;
	uwsgi_temp_path $tmp/nginx;
	scgi_temp_path $tmp/nginx;
	upstream fixed { server 127.0.0.1:$ng_port; keepalive 64; }
	server {
		listen 127.0.0.1:$ng_port;
		location / {
			default_type "application/json; charset=utf-8";
			return 201 '{"status":"success","timestamp":"2019-11-29T16:03:23.9251680Z"}';
		}
	}
	server {
		listen 127.0.0.1:$hop_port;
		location / {
			proxy_pass http://fixed;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
}
CONF
"$nginx_bin" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' \
	>"$tmp/nginx.out" 2>"$tmp/nginx.err" &
nginx_pid=$!
pids+=("$nginx_pid")
wait_port "$ng_port" "$nginx_pid"
wait_port "$hop_port" "$nginx_pid"

# ---- secret, token, directory --------------------------------------------------
# Hex, no newline: the same file works for our server and the Go peer.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/secret"
token=$("$cli_bin" token --secret-file "$tmp/secret" --sub bench \
	--tenant '*' --scope 'devices:assign directory:admin' --ttl 7200)
tenant=0f8fad5b-d9cb-469f-a165-70867728950e
python3 - "$tenant" "$USERS" >"$tmp/directory.json" <<'PY'
import json, sys
t, n = sys.argv[1], int(sys.argv[2])
print(json.dumps({
    "customers": [{"tenantId": t, "name": "Bench"}],
    "users": [{"tenantId": t, "userId": "u%d" % i,
               "roles": ["customer_user_uc", "customer_user_uc_softphone"]}
              for i in range(n)],
    "pbxDevices": [{"tenantId": t, "deviceId": "d%d" % i,
                    "ownerUserId": "u%d" % i} for i in range(n)]}))
PY

# start_server NAME STORE [FLAGS...]: our server with the directory loaded;
# sets $addr and $pid.
start_server() {
	local name=$1 store=$2
	shift 2
	start "$name" "$server_bin" --listen 127.0.0.1:0 --store "$store" \
		--jwt-hs256-secret-file "$tmp/secret" --log-level warn "$@"
	"$cli_bin" --server "$addr" --token "$token" import \
		"$tmp/directory.json" >/dev/null
}

start_gateway() { # NAME UPSTREAM
	start "$1" "$gateway_bin" --listen 127.0.0.1:0 --upstream "$2" \
		--log-level warn
}

start_server server "sqlite:$tmp/bench.db" ${SERVER_WORKERS:+--workers "$SERVER_WORKERS"}
server_addr=$addr server_pid=$pid
start_gateway gateway "$server_addr"
gateway_addr=$addr gateway_pid=$pid
start_server server-nocache "sqlite:$tmp/nocache.db" --token-cache 0
nocache_addr=$addr

# Metrics and JSON logs (issue 12), their cost on a read (GET list): two
# server + gateway pairs, each server on a database of its own (a server
# holds its SQLite file alone), off (--metrics false, warn: no access line)
# and on (metrics counted, --log-format json at info, both /metrics scraped
# every second); rows obs_off and obs_on.
start_server server-off "sqlite:$tmp/obs-off.db" --metrics false
obs_off_server_pid=$pid
start gateway-off "$gateway_bin" --listen 127.0.0.1:0 --upstream "$addr" \
	--metrics false --log-level warn
obs_off_addr=$addr obs_off_gateway_pid=$pid
start_server server-on "sqlite:$tmp/obs-on.db" --metrics-listen 127.0.0.1:0 \
	--log-format json --log-level info
obs_server_metrics=$(sed -n 's/.* metrics on \(.*\)$/\1/p' "$tmp/server-on.out")
obs_on_server_pid=$pid
start gateway-on "$gateway_bin" --listen 127.0.0.1:0 --upstream "$addr" \
	--log-format json
obs_on_addr=$addr obs_on_gateway_pid=$pid
(while :; do
	curl -s -o /dev/null "http://$obs_on_addr/metrics"
	curl -s -o /dev/null "$obs_server_metrics"
	sleep 1
done) &
pids+=($!)

# ---- private PostgreSQL ----------------------------------------------------------
pg_bin=
if [ "$PG" != 0 ]; then
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		[ -x "$d/initdb" ] && { pg_bin=$d; break; }
	done
	if [ -z "$pg_bin" ] || ! command -v pgbench >/dev/null; then
		[ "$PG" = 1 ] && { say "PG=1 but no initdb/pgbench"; exit 2; }
		say "PostgreSQL rows skipped: no initdb or pgbench"
		pg_bin=
	fi
fi
as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [ -n "$pg_bin" ]; then
	pg_dir=$tmp/pg
	mkdir -p "$pg_dir"
	[ "$(id -u)" = 0 ] && chown postgres "$pg_dir"
	pg_port=$(free_port)
	as_pg "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U postgres \
		>"$tmp/pg-initdb.log" 2>&1 || { cat "$tmp/pg-initdb.log" >&2; exit 1; }
	cat >>"$pg_dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$pg_dir'
max_connections = 200
shared_buffers = 128MB
CONF
	pg_ctl_cmd=(as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data")
	"${pg_ctl_cmd[@]}" -l "$pg_dir/log" -w -t 60 start >/dev/null
	pg_uri="postgresql://postgres@127.0.0.1:$pg_port"
	psql -q "$pg_uri/postgres" -c 'CREATE DATABASE das' >/dev/null
	pgbench -q -i -s "$PGBENCH_SCALE" -h 127.0.0.1 -p "$pg_port" -U postgres \
		postgres >"$tmp/pgbench-init.log" 2>&1 ||
		{ cat "$tmp/pgbench-init.log" >&2; exit 1; }
	pg_flags=()
	[ -n "${PG_WORKERS:-}" ] && pg_flags=(--workers "$PG_WORKERS")
	start_server server-pg "$pg_uri/das" "${pg_flags[@]}"
	pg_server_addr=$addr pg_server_pid=$pid
	start_gateway gateway-pg "$pg_server_addr"
	pg_gateway_addr=$addr pg_gateway_pid=$pid
	# Two replicas on the same database behind one gateway.
	start_server server-pg2 "$pg_uri/das" "${pg_flags[@]}"
	pg2_server_addr=$addr pg2_server_pid=$pid
	start_gateway gateway-pg2 "$pg_server_addr,$pg2_server_addr"
	pg2_gateway_addr=$addr pg2_gateway_pid=$pid
	pg_postmaster_pid=$(head -n 1 "$pg_dir/data/postmaster.pid")
fi

# ---- the peer ------------------------------------------------------------------------
have_peer=0
if [ -x "$PEER_BIN/da-server" ] && [ -x "$PEER_BIN/da-gateway" ]; then
	have_peer=1
	p_grpc=$(free_port) p_gw=$(free_port) p_gw2=$(free_port)
	"$PEER_BIN/da-server" -listen "127.0.0.1:$p_grpc" -secret-file "$tmp/secret" \
		>"$tmp/peer-server.out" 2>"$tmp/peer-server.err" &
	peer_server_pid=$!
	pids+=("$peer_server_pid")
	wait_port "$p_grpc" "$peer_server_pid"
	"$PEER_BIN/da-gateway" -listen "127.0.0.1:$p_gw" -upstream "127.0.0.1:$p_grpc" \
		>"$tmp/peer-gw.out" 2>"$tmp/peer-gw.err" &
	peer_gw_pid=$!
	pids+=("$peer_gw_pid")
	wait_port "$p_gw" "$peer_gw_pid"
	"$PEER_BIN/da-gateway" -listen "127.0.0.1:$p_gw2" -upstream "$server_addr" \
		>"$tmp/peer-gw2.out" 2>"$tmp/peer-gw2.err" &
	peer_gw2_pid=$!
	pids+=("$peer_gw2_pid")
	wait_port "$p_gw2" "$peer_gw2_pid"
else
	say "peer rows skipped: no da-server/da-gateway in $PEER_BIN (shared/peers/grpc-gateway/build.sh)"
fi

# ---- loads ---------------------------------------------------------------------------
# wrk: PUT .../assign over the 64 users; MODE read repeats one client type,
# write moves every device to the other type on each pass.
wrk_script() { # FILE MODE TYPE_A TYPE_B
	cat >"$1" <<LUA
local mode, users, n = "$2", $USERS, 0
local types = { "$3", "$4" }
local headers = { ["Content-Type"] = "application/json",
                  ["Authorization"] = "Bearer $token" }
function request()
	n = n + 1
	local u = n % users
	local ty = types[1]
	if mode == "write" then ty = types[(math.floor(n / users) % 2) + 1] end
	return wrk.format("PUT",
		"/v1.0/customers/$tenant/users/u" .. u .. "/devices/pbx/d" .. u .. "/assign",
		headers, '{"clientType":"' .. ty .. '"}')
end
LUA
}
wrk_script "$tmp/read.lua" read desktop mobile
wrk_script "$tmp/write.lua" write desktop mobile
wrk_script "$tmp/peer-read.lua" read CLIENT_TYPE_DESKTOP CLIENT_TYPE_MOBILE
cat >"$tmp/list.lua" <<LUA
wrk.method = "GET"
wrk.path = "/v1.0/customers/$tenant/users/u0/devices/pbx"
wrk.headers["Authorization"] = "Bearer $token"
LUA
cat >"$tmp/fixed.lua" <<LUA
wrk.method = "PUT"
wrk.path = "/v1.0/customers/$tenant/users/u0/devices/pbx/d0/assign"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
wrk.body = '{"clientType":"desktop"}'
LUA

# gRPC frames: AssignDeviceRequest{tenant, u0, d0, DESKTOP}, and an empty
# HealthCheckRequest.
python3 - "$tenant" "$tmp" <<'PY'
import struct, sys
def s(field, v):
    b = v.encode()
    return bytes([field << 3 | 2, len(b)]) + b
msg = s(1, sys.argv[1]) + s(2, "u0") + s(3, "d0") + bytes([4 << 3, 1])
frame = lambda m: b"\0" + struct.pack(">I", len(m)) + m
open(sys.argv[2] + "/assign.grpc", "wb").write(frame(msg))
open(sys.argv[2] + "/health.grpc", "wb").write(frame(b""))
PY
assign_path=/deviceassignment.v1.DeviceAssignment/AssignDevice
health_path=/grpc.health.v1.Health/Check

# Each load prints "REQ_PER_S P50_MS P99_MS NON_OK REQUESTS" (latencies -1
# when the tool gives none).
load_wrk() { # URL SCRIPT DURATION
	wrk -t1 -c"$CONNS" -d"$3" --latency -s "$2" "$1" >"$tmp/wrk.txt" 2>&1 || true
	awk '
	function ms(v,  u) { u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
		return (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v }
	/Requests\/sec:/ { rps = $2 }
	/ requests in / { n = $1 }
	$1 == "50%" { p50 = ms($2) }
	$1 == "99%" { p99 = ms($2) }
	/Non-2xx or 3xx responses:/ { bad += $NF }
	/Socket errors:/ { gsub(/,/, ""); bad += $4 + $10 }
	END { if (rps == "") rps = 0
	      printf "%s %.3f %.3f %d %d\n", rps, p50 + 0, p99 + 0, bad + 0, n + 0 }' \
		"$tmp/wrk.txt"
}

load_h2() { # ADDR PATH FRAME DURATION|-nN
	local what=(-D "${4%s}")
	case $4 in -n*) what=("$4") ;; esac
	rm -f "$tmp/h2.log"
	h2load "${what[@]}" -c 4 -m 8 -t 1 --data="$3" --log-file="$tmp/h2.log" \
		-H 'content-type: application/grpc' -H 'te: trailers' \
		-H "authorization: Bearer $token" "http://$1$2" >"$tmp/h2.txt" 2>&1 || true
	local lat
	lat=$(awk '{ print $NF }' "$tmp/h2.log" 2>/dev/null | percentiles)
	# "requests: T total, S started, D done, OK succeeded, ..." (h2load
	# counts a 2xx or 3xx as succeeded) and "status codes: A 2xx, B 3xx,
	# ...": not OK are the requests done but not succeeded, and the 3xx.
	# (Not "succeeded" minus 2xx: an answer still arriving when the time
	# is up can count among the status codes and not among the others.)
	awk -v lat="$lat" '
	/^finished in/ { rps = $4 }
	/^requests:/ { done = $6; bad = $6 - $8 }
	/^status codes:/ { bad3xx = $5 }
	END { if (rps == "") rps = 0
	      printf "%s %s %d %d\n", rps, lat, bad + bad3xx, done + 0 }' "$tmp/h2.txt"
}

load_pgbench() { # FLAG DURATION (at least 3 s: 32 connections take a while)
	local d=${2%s}
	[ "$d" -ge 3 ] || d=3
	rm -f "$tmp"/pgb.*
	pgbench -n "$1" -c 32 -j 2 -T "$d" -l --log-prefix="$tmp/pgb" \
		-h 127.0.0.1 -p "$pg_port" -U postgres postgres >"$tmp/pgbench.txt" 2>&1 || true
	local lat
	lat=$(cat "$tmp"/pgb.* 2>/dev/null | awk '{ print $3 }' | percentiles)
	awk -v lat="$lat" '
	/^tps = / { tps = $3 }
	/number of transactions actually processed:/ { n = $6 }
	/number of failed transactions:/ { bad = $5 }
	END { if (tps == "") tps = 0
	      printf "%s %s %d %d\n", tps, lat, bad + 0, n + 0 }' "$tmp/pgbench.txt"
}

# load ROW DURATION: one load of ROW.
load() {
	case $1 in
	nginx_201) load_wrk "http://127.0.0.1:$ng_port" "$tmp/fixed.lua" "$2" ;;
	nginx_hop) load_wrk "http://127.0.0.1:$hop_port" "$tmp/fixed.lua" "$2" ;;
	rest_read) load_wrk "http://$gateway_addr" "$tmp/read.lua" "$2" ;;
	rest_write) load_wrk "http://$gateway_addr" "$tmp/write.lua" "$2" ;;
	rest_read_pg) load_wrk "http://$pg_gateway_addr" "$tmp/read.lua" "$2" ;;
	rest_write_pg) load_wrk "http://$pg_gateway_addr" "$tmp/write.lua" "$2" ;;
	rest_read_pg2) load_wrk "http://$pg2_gateway_addr" "$tmp/read.lua" "$2" ;;
	pgbench_S) load_pgbench -S "$2" ;;
	pgbench_N) load_pgbench -N "$2" ;;
	grpc_health) load_h2 "$server_addr" "$health_path" "$tmp/health.grpc" "$2" ;;
	grpc_assign) load_h2 "$server_addr" "$assign_path" "$tmp/assign.grpc" "$2" ;;
	grpc_assign_nocache) load_h2 "$nocache_addr" "$assign_path" "$tmp/assign.grpc" "$2" ;;
	obs_off) load_wrk "http://$obs_off_addr" "$tmp/list.lua" "$2" ;;
	obs_on) load_wrk "http://$obs_on_addr" "$tmp/list.lua" "$2" ;;
	peer_rest) load_wrk "http://127.0.0.1:$p_gw" "$tmp/peer-read.lua" "$2" ;;
	peer_gw_ours) load_wrk "http://127.0.0.1:$p_gw2" "$tmp/peer-read.lua" "$2" ;;
	peer_grpc) load_h2 "127.0.0.1:$p_grpc" "$assign_path" "$tmp/assign.grpc" "$2" ;;
	esac
}

rows=(nginx_201 nginx_hop rest_read rest_write)
[ -n "$pg_bin" ] && rows+=(rest_read_pg rest_read_pg2 rest_write_pg pgbench_S pgbench_N)
rows+=(grpc_health grpc_assign grpc_assign_nocache)
[ "$have_peer" = 1 ] && rows+=(peer_rest peer_gw_ours peer_grpc)
rows+=(obs_off obs_on)
# ROWS="row ...": only those rows (and their perf stat lines), e.g.
# ROWS="rest_read rest_read_pg rest_read_pg2 rest_write_pg pgbench_N".
want() { [ -z "${ROWS:-}" ] || [[ " $ROWS " == *" $1 "* ]]; }
if [ -n "${ROWS:-}" ]; then
	picked=()
	for row in "${rows[@]}"; do want "$row" && picked+=("$row"); done
	rows=("${picked[@]}")
	((${#rows[@]})) || { say "ROWS=$ROWS selects no row"; exit 2; }
fi

# ---- correctness of what is measured -----------------------------------------------
extras=$tmp/extras.md
: >"$extras"
probe() { # NAME URL BODY
	local code
	code=$(curl -s -o "$tmp/probe.json" -w '%{http_code}' -X PUT "$2" \
		-H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$3")
	case $code in 2??) ;; *) say "$1: probe answered $code: $(cat "$tmp/probe.json")"; exit 1 ;; esac
}
u0=/v1.0/customers/$tenant/users/u0/devices/pbx/d0/assign
probe "our gateway" "http://$gateway_addr$u0" '{"clientType":"desktop"}'
[ -n "$pg_bin" ] && probe "our gateway on PostgreSQL" "http://$pg_gateway_addr$u0" '{"clientType":"desktop"}'
[ -n "$pg_bin" ] && probe "our gateway on two PostgreSQL replicas" "http://$pg2_gateway_addr$u0" '{"clientType":"desktop"}'
[ "$have_peer" = 1 ] && probe "peer" "http://127.0.0.1:$p_gw$u0" '{"clientType":"CLIENT_TYPE_DESKTOP"}'
[ "$have_peer" = 1 ] && probe "grpc-gateway on our server" "http://127.0.0.1:$p_gw2$u0" '{"clientType":"CLIENT_TYPE_DESKTOP"}'

# h2load counts HTTP 200s; a real client checks grpc-status once per target.
grpc_py=/usr/bin/python3
if "$grpc_py" -c 'import grpc' 2>/dev/null; then
	checks=("server $health_path health" "server $assign_path assign"
		"nocache $assign_path assign")
	[ "$have_peer" = 1 ] && checks+=("peer $assign_path assign")
	line="grpc-status checked with python3-grpcio before the h2load rows:"
	for c in "${checks[@]}"; do
		set -- $c
		case $1 in server) a=$server_addr ;; nocache) a=$nocache_addr ;;
		peer) a=127.0.0.1:$p_grpc ;; esac
		if ! r=$("$grpc_py" "$here/grpc_check.py" "$a" "$2" "$tmp/$3.grpc" "$token"); then
			say "gRPC check $1 $2: $r"
			exit 1
		fi
		line="$line $1 ${2##*/} $r;"
	done
	echo "$line" >>"$extras"
else
	say "no python3-grpcio: grpc-status not checked (h2load counts HTTP 200s only)"
	echo "grpc-status NOT checked (no python3-grpcio)" >>"$extras"
fi

# ---- rounds --------------------------------------------------------------------------
results=$tmp/results
: >"$results"
say "bench: ${#rows[@]} rows, warm-up $WARMUP, $RUNS rounds of $DURATION, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$WARMUP" != 0 ]; then
	for row in "${rows[@]}"; do load "$row" "$WARMUP" >/dev/null; done
fi
# Pairs (PAIRS): both rows selected; pair_first ROW / pair_second ROW
# print the partner when ROW is the first / second row of a pair.
pairs_file=$tmp/pairs
: >"$pairs_file"
active_pairs=()
for pr in $PAIRS; do
	want "${pr%%:*}" && want "${pr#*:}" && [[ " ${rows[*]} " == *" ${pr%%:*} "* ]] &&
		[[ " ${rows[*]} " == *" ${pr#*:} "* ]] && active_pairs+=("$pr")
done
pair_first() { local pr; for pr in "${active_pairs[@]}"; do [ "${pr%%:*}" = "$1" ] && { echo "${pr#*:}"; return 0; }; done; return 1; }
pair_second() { local pr; for pr in "${active_pairs[@]}"; do [ "${pr#*:}" = "$1" ] && return 0; done; return 1; }

# load_checked ROW DURATION ROUND: one load; prints its figures, stops the
# run when the row served nothing.
load_checked() {
	set -- "$1" "$3" $(load "$1" "$2")
	say "round $2 $1: $3 req/s p50 $4 ms p99 $5 ms non-OK $6 of $7"
	if [ "${7:-0}" = 0 ]; then
		say "$1 served no request; last output:"
		cat "$tmp/wrk.txt" "$tmp/h2.txt" "$tmp/pgbench.txt" 2>/dev/null | tail -n 20 >&2
		exit 1
	fi
	shift 2
	echo "$*"
}

# run_pairs A B ROUND: PAIR_N pairs of loads, A then B, then B then A, ...
# (a drift within the round falls on both rows alike); every pair's ratio
# is kept in $pairs_file as "A B ROUND K RPS_A RPS_B", and each row's
# line of the round is its loads together: mean req/s, median p50 and
# p99, all answers.
run_pairs() {
	local a=$1 b=$2 r=$3 k x ra rb
	: >"$tmp/pl.$a"
	: >"$tmp/pl.$b"
	[ "$PAUSE" != 0 ] && sleep "$PAUSE"
	for k in $(seq 1 "$PAIR_N"); do
		if ((k % 2)); then set -- "$a" "$b"; else set -- "$b" "$a"; fi
		for x in "$@"; do
			load_checked "$x" "$PAIR_DURATION" "$r.$k" >>"$tmp/pl.$x"
		done
		ra=$(tail -n 1 "$tmp/pl.$a" | cut -d' ' -f1)
		rb=$(tail -n 1 "$tmp/pl.$b" | cut -d' ' -f1)
		echo "$a $b $r $k $ra $rb" >>"$pairs_file"
	done
	for x in "$a" "$b"; do
		python3 -c '
import statistics, sys
f = [l.split() for l in open(sys.argv[1]) if l.strip()]
col = lambda i: [float(v[i]) for v in f]
print(sys.argv[2], sys.argv[3], "%.2f" % statistics.mean(col(0)),
      "%.3f" % statistics.median(col(1)), "%.3f" % statistics.median(col(2)),
      sum(int(v[3]) for v in f), sum(int(v[4]) for v in f))' \
			"$tmp/pl.$x" "$x" "$r" >>"$results"
	done
}

for r in $(seq 1 "$RUNS"); do
	for row in "${rows[@]}"; do
		pair_second "$row" && continue
		if partner=$(pair_first "$row"); then
			run_pairs "$row" "$partner" "$r"
			continue
		fi
		[ "$PAUSE" != 0 ] && sleep "$PAUSE"
		line=$(load_checked "$row" "$DURATION" "$r")
		echo "$row $r $line" >>"$results"
	done
done

# ---- per request: context switches and CPU time (perf stat) ---------------------------
# cpu_ticks PID[,PID...]: "user system" clock ticks of the processes (all
# their threads), from /proc/PID/stat.
cpu_ticks() {
	local p u=0 s=0 f
	for p in ${1//,/ }; do
		f=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
		set -- $f
		u=$((u + ${12})) s=$((s + ${13}))
	done
	echo "$u $s"
}

# perf_row ROW NAME:PID...: one more load of ROW with perf stat attached to
# each process; per request = counter / requests served in that load. User
# and kernel CPU come from /proc (no hardware counters needed).
perf_row() {
	local row=$1 spec name p n i
	shift
	local files=() perf_pids=() specs=("$@") before=()
	for spec in "${specs[@]}"; do
		name=${spec%%:*} p=${spec#*:}
		perf stat -x, -e context-switches,task-clock -p "$p" \
			-o "$tmp/perf.$name" >/dev/null 2>&1 &
		perf_pids+=($!)
		files+=("$name")
		before+=("$(cpu_ticks "$p")")
	done
	sleep 0.2
	set -- $(load "$row" "$DURATION")
	n=${5:-0}
	for p in "${perf_pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
	for p in "${perf_pids[@]}"; do wait "$p" 2>/dev/null || true; done
	for i in "${!specs[@]}"; do
		name=${specs[$i]%%:*} p=${specs[$i]#*:}
		awk -F, -v row="$row" -v name="$name" -v n="$n" \
			-v b="${before[$i]}" -v a="$(cpu_ticks "$p")" -v hz="$(getconf CLK_TCK)" '
		$3 == "context-switches" { cs = $1 }
		$3 == "task-clock" { ms = $1 }
		END { split(b, x, " "); split(a, y, " ")
		      if (n > 0 && cs != "")
			printf "| %s | %s | %.2f | %.1f | %.1f | %.1f |\n", row, name,
			       cs / n, ms * 1000 / n, (y[1] - x[1]) * 1e6 / hz / n,
			       (y[2] - x[2]) * 1e6 / hz / n }' \
			"$tmp/perf.$name" >>"$extras"
	done
}
if [ "$PERF" = 1 ] && perf stat -e context-switches true >/dev/null 2>&1; then
	{
		echo
		echo "Per request, perf stat on each process during one more $DURATION load:"
		echo
		echo "| row | process | context switches / req | CPU µs / req | of which user µs | kernel µs |"
		echo "|---|---|---:|---:|---:|---:|"
	} >>"$extras"
	nginx_workers=$(pgrep -P "$nginx_pid" | paste -sd, -)
	want nginx_201 && perf_row nginx_201 "nginx workers:$nginx_workers"
	want rest_read && perf_row rest_read "gateway:$gateway_pid" "server:$server_pid"
	want rest_write && perf_row rest_write "gateway:$gateway_pid" "server:$server_pid"
	if [ -n "$pg_bin" ]; then
		# Every PostgreSQL process: the backends of both servers'
		# pools and the WAL writer, checkpointer and the rest.
		postgres_pids=$pg_postmaster_pid,$(pgrep -P "$pg_postmaster_pid" | paste -sd, -)
		want rest_read_pg && perf_row rest_read_pg "gateway:$pg_gateway_pid" \
			"server:$pg_server_pid" "postgres:$postgres_pids"
		want rest_read_pg2 && perf_row rest_read_pg2 "gateway:$pg2_gateway_pid" \
			"server:$pg_server_pid" "server2:$pg2_server_pid" "postgres:$postgres_pids"
		want rest_write_pg && perf_row rest_write_pg "gateway:$pg_gateway_pid" \
			"server:$pg_server_pid" "postgres:$postgres_pids"
	fi
	want grpc_health && perf_row grpc_health "server:$server_pid"
	want grpc_assign && perf_row grpc_assign "server:$server_pid"
	if [ "$have_peer" = 1 ]; then
		want peer_rest && perf_row peer_rest "da-gateway:$peer_gw_pid" "da-server:$peer_server_pid"
		want peer_grpc && perf_row peer_grpc "da-server:$peer_server_pid"
		want peer_gw_ours && perf_row peer_gw_ours "grpc-gateway:$peer_gw2_pid" \
			"server:$server_pid"
	fi
	want obs_off && perf_row obs_off "gateway:$obs_off_gateway_pid" "server:$obs_off_server_pid"
	want obs_on && perf_row obs_on "gateway:$obs_on_gateway_pid" "server:$obs_on_server_pid"
elif [ "$PERF" = 1 ]; then
	echo "perf stat not usable here (perf_event_paranoid?): section skipped" >>"$extras"
fi

# ---- per request: instructions (callgrind) ------------------------------------------
# (grep reads everything: with pipefail, grep -q could SIGPIPE ldd.)
is_sanitized() { ldd "$1" 2>/dev/null | grep 'libasan\|libubsan' >/dev/null; }
cg_wait() { # PID: callgrind_control answers once the process is up
	for _ in $(seq 1 50); do callgrind_control -s "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
	return 1
}
# cg_measure NAME PID COUNT CMD...: zero the counters, run CMD, dump; the
# split per request goes to extras.
cg_measure() {
	local name=$1 p=$2 n=$3 f
	shift 3
	callgrind_control -z "$p" >/dev/null
	"$@" >"$tmp/cg-load.txt" 2>&1 || true
	callgrind_control -d "$p" >/dev/null
	f=$(ls -t "$tmp"/cg/*.[0-9]* 2>/dev/null | sed -n 1p)
	{
		echo
		echo "callgrind, $name: $n requests, instructions per request (self cost):"
		echo '```'
		python3 "$here/callgrind_split.py" "$f" "$n" 10
		echo '```'
	} >>"$extras"
}
h2n() { # ADDR PATH FRAME [N]: exactly N (CG_N) calls, one at a time
	h2load -n "${4:-$CG_N}" -c 1 -m 1 -t 1 --data="$3" -H 'content-type: application/grpc' \
		-H 'te: trailers' -H "authorization: Bearer $token" "http://$1$2"
}
h1n() { # ADDR: exactly CG_N REST reads (POST assign of u0/d0), one at a time
	printf '{"clientType":"desktop"}' >"$tmp/body.json"
	h2load --h1 -n "$CG_N" -c 1 -m 1 -t 1 --data="$tmp/body.json" \
		-H 'content-type: application/json' -H "authorization: Bearer $token" \
		"http://$1$u0"
}
if [ "$CALLGRIND" = 1 ]; then
	if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
		echo "callgrind: skipped (no valgrind)" >>"$extras"
	elif is_sanitized "$server_bin"; then
		echo "callgrind: skipped (sanitizer build; use a release build)" >>"$extras"
	else
		mkdir -p "$tmp/cg"
		vg=(valgrind --tool=callgrind --callgrind-out-file="$tmp/cg/%p")
		for cache in 1024 0; do
			start "cg-server-$cache" "${vg[@]}" "$server_bin" --listen 127.0.0.1:0 \
				--store "sqlite:$tmp/cg-$cache.db" --jwt-hs256-secret-file "$tmp/secret" \
				--log-level warn --token-cache "$cache"
			cg_addr=$addr cg_pid=$pid
			"$cli_bin" --server "$cg_addr" --token "$token" import "$tmp/directory.json" >/dev/null
			h2n "$cg_addr" "$assign_path" "$tmp/assign.grpc" 20 >/dev/null 2>&1
			cg_wait "$cg_pid"
			if [ "$cache" = 1024 ]; then
				cg_measure "server Health/Check" "$cg_pid" "$CG_N" \
					h2n "$cg_addr" "$health_path" "$tmp/health.grpc"
				cg_measure "server AssignDevice (token cache on)" "$cg_pid" "$CG_N" \
					h2n "$cg_addr" "$assign_path" "$tmp/assign.grpc"
				# The gateway of a REST read, in front of a native server.
				start cg-gateway "${vg[@]}" "$gateway_bin" --listen 127.0.0.1:0 \
					--upstream "$server_addr" --log-level warn
				cg_gw_addr=$addr cg_gw_pid=$pid
				h1n "$cg_gw_addr" >/dev/null 2>&1
				cg_wait "$cg_gw_pid"
				cg_measure "gateway REST read (PUT assign, upstream native)" \
					"$cg_gw_pid" "$CG_N" h1n "$cg_gw_addr"
				stop_pid "$cg_gw_pid"
			else
				cg_measure "server AssignDevice (--token-cache 0)" "$cg_pid" "$CG_N" \
					h2n "$cg_addr" "$assign_path" "$tmp/assign.grpc"
			fi
			stop_pid "$cg_pid"
		done
		{
			echo
			echo "callgrind, GET list with metrics + JSON logs off and on (bench/callgrind.sh, $CG_N requests):"
			echo '```'
			N=$CG_N "$here/callgrind.sh" "$build" "$tmp" "$tenant" "$token"
			echo '```'
		} >>"$extras"
	fi
fi

# ---- the table -----------------------------------------------------------------------
{
	echo "make bench, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load average at the end $(cut -d' ' -f1-3 /proc/loadavg);"
	echo "warm-up $WARMUP, $RUNS rounds of $DURATION per row (rows alternate within a round), wrk -t1 -c$CONNS, h2load -c4 -m8 -t1."
	((${#active_pairs[@]})) && echo "Loaded in pairs (${active_pairs[*]}): $PAIR_N pairs of $PAIR_DURATION a round, ab ba ab ...; a row's req/s of a round is the mean of its loads."
	echo
	python3 "$here/table.py" "$results" "$extras" "$pairs_file"
} >"$tmp/table.md"
cat "$tmp/table.md"
[ -n "${BENCH_TABLE:-}" ] && cp "$tmp/table.md" "$BENCH_TABLE"
exit 0
