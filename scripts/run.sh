#!/usr/bin/env bash
# `make run`: the server on SQLite and the gateway on loopback, the example
# directory imported, a dev token printed with ready-to-paste curl commands.
# Stays in the foreground showing both logs; Ctrl-C stops both and exits 0.
#
#   scripts/run.sh                 the above (make run builds first)
#   scripts/run.sh --check-ports   only say whether the two ports are free
#                                  (make run does this before building)
#
# Environment: BUILD_DIR (default build), RUN_GRPC (default
# 127.0.0.1:50051), RUN_HTTP (default 127.0.0.1:8080), RUN_VAR (the state
# folder, default ./var).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${BUILD_DIR:-build}
grpc_addr=${RUN_GRPC:-127.0.0.1:50051}
http_addr=${RUN_HTTP:-127.0.0.1:8080}
var=${RUN_VAR:-./var}
demo_tenant=6fa459ea-ee8a-4ca4-894e-db77e160355e

die() {
	echo "make run: $*" >&2
	exit 1
}

# A port someone already answers on: say so (every one of them) before
# starting or building anything.
port_is_busy() {
	local host=${1%:*} port=${1##*:}
	(exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}
check_ports() {
	local a busy=()
	for a in "$grpc_addr" "$http_addr"; do
		if port_is_busy "$a"; then
			busy+=("$a")
		fi
	done
	((${#busy[@]} == 0)) && return 0
	for a in "${busy[@]}"; do
		echo "make run: ${a} is busy (see: ss -ltnp 'sport = :${a##*:}')" >&2
	done
	die "stop what listens there (another 'make run'?) or set RUN_GRPC/RUN_HTTP to other addresses"
}
check_ports
if [[ ${1:-} == --check-ports ]]; then
	exit 0
fi

# The programs live where their folder's CMakeLists puts them; find them by
# name so a move of a target does not break the demo.
find_program() {
	local p
	p=$(find "$build" -type f -name "$1" -perm -u+x -print -quit 2>/dev/null)
	[[ -n $p ]] || die "$1 not found under $build/ (did 'make build' succeed?)"
	printf '%s\n' "$p"
}
server=$(find_program device-assignment-server)
gateway=$(find_program device-assignment-gateway)
cli=$(find_program device-assignment)

# The state folder and the signing secret are private, whether they were
# just made or already there (an older checkout made var/ 0755).
mkdir -p "$var"
chmod 0700 "$var"
if [[ ! -s $var/jwt-secret ]]; then
	(umask 077 && openssl rand -hex 32 >"$var/jwt-secret.tmp")
	mv "$var/jwt-secret.tmp" "$var/jwt-secret"
	echo "make run: generated a new HS256 secret in $var/jwt-secret"
fi
chmod 0600 "$var/jwt-secret"

server_pid=
gateway_pid=
tail_pid=
# stop_all: the log tail first (so the shutdown does not scroll the
# message away), then the gateway, then the server, each with SIGTERM.
# Returns 1 when a program did not exit 0.
stop_all() {
	local p rc=0 st
	if [[ -n $tail_pid ]]; then
		kill -TERM "$tail_pid" 2>/dev/null || true
		wait "$tail_pid" 2>/dev/null || true
		tail_pid=
	fi
	for p in gateway server; do
		local var_pid=${p}_pid
		[[ -n ${!var_pid} ]] || continue
		kill -TERM "${!var_pid}" 2>/dev/null || true
		# The server gives calls in flight up to 10 s; past 20 s (wall
		# clock: a loaded machine stretches every sleep), KILL. A stop
		# that takes long says which program it waits for.
		local t0=${EPOCHREALTIME/./} now told=0
		while kill -0 "${!var_pid}" 2>/dev/null; do
			now=${EPOCHREALTIME/./}
			if ((now - t0 >= 20000000)); then
				echo "make run: the $p (pid ${!var_pid}) did not stop within 20 s; killing it" >&2
				kill -KILL "${!var_pid}" 2>/dev/null || true
				break
			fi
			if ((!told && now - t0 >= 5000000)); then
				echo "make run: waiting for the $p (pid ${!var_pid}) to stop (log: $var/$p.log)" >&2
				told=1
			fi
			sleep 0.1
		done
		st=0
		wait "${!var_pid}" 2>/dev/null || st=$?
		# A Ctrl-C during start-up can end a program by a signal before it
		# set up its own handling (130: the SIGINT reached it before it left
		# this process group; 143: our SIGTERM): stopped all the same.
		if ((st != 0 && st != 130 && st != 143)); then
			echo "make run: the $p exited with status $st while stopping (log: $var/$p.log)" >&2
			rc=1
		fi
		printf -v "$var_pid" '%s' ''
	done
	return $rc
}
# Ctrl-C (the terminal's SIGINT to this process group) or SIGTERM: the
# programs run in sessions of their own, so only this script hears the
# signal and stops them in order; one message, status 0.
on_signal() {
	# A second Ctrl-C while stopping changes nothing (and cannot leave a
	# program running).
	trap '' INT TERM
	trap - EXIT
	if stop_all; then
		printf '\nmake run: stopped the gateway and the server\n'
		exit 0
	fi
	exit 1
}
on_exit() {
	local rc=$?
	trap - INT TERM EXIT
	stop_all || rc=1
	exit $rc
}
trap on_signal INT TERM
trap on_exit EXIT

# Waits until a program printed its "listening on" line; fails when it
# exited instead or took longer than 30 s.
wait_listening() {
	local name=$1 pid=$2 log=$3 i
	for ((i = 0; i < 300; i++)); do
		if grep -q "$name listening on " "$log" 2>/dev/null; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "make run: $name exited during start-up; its log:" >&2
			sed 's/^/  /' "$log" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "make run: $name did not report listening within 30 s; its log:" >&2
	sed 's/^/  /' "$log" >&2
	return 1
}

: >"$var/server.log"
: >"$var/gateway.log"
# setsid: each program in a session of its own, out of reach of the
# terminal's SIGINT (stop_all stops them).
setsid "$server" --listen "$grpc_addr" \
	--store "sqlite:$var/device-assignment.db" \
	--jwt-hs256-secret-file "$var/jwt-secret" >>"$var/server.log" 2>&1 </dev/null &
server_pid=$!
wait_listening device-assignment-server "$server_pid" "$var/server.log"

setsid "$gateway" --listen "$http_addr" --upstream "$grpc_addr" \
	>>"$var/gateway.log" 2>&1 </dev/null &
gateway_pid=$!
wait_listening device-assignment-gateway "$gateway_pid" "$var/gateway.log"

# Ready means: the server answers gRPC health, the gateway answers /readyz
# (which needs the upstream).
ready=false
for ((i = 0; i < 100; i++)); do
	if "$cli" --server "$grpc_addr" health >/dev/null 2>&1 &&
		curl -fsS -o /dev/null "http://$http_addr/readyz" 2>/dev/null; then
		ready=true
		break
	fi
	sleep 0.1
done
$ready || die "server or gateway not ready after 10 s (logs in $var/)"

admin_token=$("$cli" token --secret-file "$var/jwt-secret" --sub make-run \
	--tenant '*' --scope 'directory:admin' --ttl 600)
"$cli" --server "$grpc_addr" --token "$admin_token" \
	import examples/directory.json >/dev/null ||
	die "importing examples/directory.json failed"

token=$("$cli" token --secret-file "$var/jwt-secret" --sub dev \
	--tenant '*' --scope 'devices:assign directory:admin ledger:read' \
	--ttl 86400)

base="http://$http_addr/v1.0/customers/$demo_tenant/users"
cat <<EOF

  device-assignment-server  grpc  $grpc_addr  (store: $var/device-assignment.db)
  device-assignment-gateway rest  http://$http_addr
  examples/directory.json imported (customer $demo_tenant, 2 included seats)

  Dev token (24 h, all tenants):
    export DAS_TOKEN='$token'

  Assign alice's desk phone as her desktop softphone (201):
    curl -si -X POST '$base/alice/devices/pbx/alice-desk-01/assign' -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d '{"clientType":"desktop"}'

  List alice's softphones:
    curl -s '$base/alice/devices/pbx' -H "Authorization: Bearer $token"

  API docs: http://$http_addr/docs  (OpenAPI: http://$http_addr/openapi.json)

  More calls in README.md. Logs follow; Ctrl-C stops both programs.

EOF

# A Ctrl-C that lands between starting the tail and noting its pid would
# stop everything but the tail (background jobs ignore SIGINT): hold the
# signal over those two steps and act on it right after.
held=
trap 'held=1' INT TERM
tail -n 0 -f "$var/server.log" "$var/gateway.log" &
tail_pid=$!
trap on_signal INT TERM
[[ -z $held ]] || on_signal
# Foreground until Ctrl-C (the trap ends the script), or until one of the
# programs exits by itself: nothing but stop_all signals them, so that is a
# real failure. Not `wait -n`: bash (5.2) keeps a trapped SIGINT that
# arrives just before it blocks in `wait -n` pending until a child exits,
# and the programs never do (their own sessions), so a Ctrl-C right after
# the banner was lost. A short foreground sleep ends at once on Ctrl-C (it
# is in this process group) or within 0.5 s, and the trap runs after it.
while kill -0 "$server_pid" 2>/dev/null && kill -0 "$gateway_pid" 2>/dev/null; do
	sleep 0.5
done
for p in server gateway; do
	pid_of=${p}_pid
	if ! kill -0 "${!pid_of}" 2>/dev/null; then
		rc=0
		wait "${!pid_of}" 2>/dev/null || rc=$?
		echo "make run: the $p exited on its own (status $rc; log: $var/$p.log); stopping the other" >&2
		printf -v "$pid_of" '%s' ''
	fi
done
exit 1
