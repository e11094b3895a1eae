#!/usr/bin/env bash
# `make test-compose`: builds the Dockerfile's images and runs the compose
# stack for real, with Debian's podman behind docker-compose 1.29 (no Docker
# engine and no image registry needed), then removes everything it made.
#
#   1. packages (tag compose in deps/debian-packages.txt), `docker-compose
#      config` validates docker-compose.yml
#   2. podman with all its state in one work folder, its Docker-compatible
#      API on a socket there, a loop that runs the healthchecks (podman 4.3
#      schedules them with systemd timers, absent here)
#   3. the base image debian:bookworm-slim made locally with debootstrap
#   4. docker-compose build
#   5. default stack (server on SQLite + gateway): the demo data imported
#      from inside the stack, an assign, a 402 and its accept, a list
#   6. postgres profile (database, 2 server replicas, gateway): the same
#      flow, then one replica killed and the gateway still answering
#   7. down -v, images and podman state removed, host side effects undone
#
# Every wait has a timeout; the whole run is bounded by TEST_COMPOSE_TIMEOUT
# (default 900 s). Needs root (podman as root). Ports are free ones picked
# at start. Prints the time of each step.
#
# For working on the compose files: TEST_COMPOSE_WORK=DIR keeps podman's
# state (images, build cache) in DIR across runs instead of a fresh folder
# removed at the end; the stacks are still taken down and the host
# restored. Remove DIR with `podman system reset` under the same settings,
# or run once more without TEST_COMPOSE_WORK.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

log() { printf 'test-compose: %s\n' "$*"; }
fail() {
	printf 'test-compose: FAIL: %s\n' "$*" >&2
	exit 1
}

((EUID == 0)) || fail "needs root (podman runs rootful here); run it as root"

# The whole run is bounded: a watchdog ends it (and so runs the cleanup).
if [[ -z ${TEST_COMPOSE_INNER:-} ]]; then
	export TEST_COMPOSE_INNER=1
	limit=${TEST_COMPOSE_TIMEOUT:-900}
	# timeout sends TERM to the script after $limit s, KILL 60 s later
	# (the cleanup has that long).
	exec timeout -k 60 "$limit" "$0" "$@"
fi

# ---- timings ----
declare -a step_names=() step_secs=()
step_start=0
step_name=
begin() {
	step_name=$1
	step_start=$(date +%s.%N)
	log "== $step_name"
}
end() {
	local now secs
	now=$(date +%s.%N)
	secs=$(awk -v a="$step_start" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
	step_names+=("$step_name")
	step_secs+=("$secs")
	log "   $step_name: ${secs} s"
	step_name=
}
print_timings() {
	local i
	((${#step_names[@]})) || return 0
	log "step timings:"
	for i in "${!step_names[@]}"; do
		printf '  %-44s %7s s\n' "${step_names[$i]}" "${step_secs[$i]}"
	done
}
t_all=$(date +%s.%N)

# ---- 1. packages and the compose file ----
begin "packages (scripts/deps.sh compose test)"
scripts/deps.sh compose test
end

keep_work=false
if [[ -n ${TEST_COMPOSE_WORK:-} ]]; then
	keep_work=true
	work=$(mkdir -p "$TEST_COMPOSE_WORK" && cd "$TEST_COMPOSE_WORK" && pwd)
else
	work=$(mktemp -d /var/tmp/das-compose.XXXXXX)
fi
chmod 0700 "$work"
proj=dastc$$
export DOCKER_HOST="unix://$work/podman.sock"
export COMPOSE_PROJECT_NAME=$proj
export COMPOSE_INTERACTIVE_NO_CLI=1
export CONTAINERS_CONF="$work/containers.conf"
export CONTAINERS_STORAGE_CONF="$work/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$work/registries.conf"

# Host state podman/netavark may change outside the work folder: recorded
# now, put back by the cleanup.
host_paths=(/run/containers /var/lib/containers /etc/containers/networks
	/run/netns /etc/cni/net.d/cni.lock)
declare -A existed=()
for p in "${host_paths[@]}"; do
	[[ -e $p ]] && existed[$p]=1
done
ip_forward_before=$(cat /proc/sys/net/ipv4/ip_forward)
netns_mounted_before=false
grep -q ' /run/netns ' /proc/mounts && netns_mounted_before=true
fw_before=$(iptables-save 2>/dev/null | grep -c NETAVARK || true)
nft_before=$(nft list tables 2>/dev/null || true)

service_pid=
health_pid=
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	[[ -n $step_name ]] && log "step '$step_name' did not finish"
	begin "cleanup"
	if [[ -S $work/podman.sock ]]; then
		for prof in "" "--profile postgres"; do
			# shellcheck disable=SC2086
			timeout 120 docker-compose $prof down -v --remove-orphans \
				--timeout 20 >/dev/null 2>&1
		done
	fi
	if [[ -n $health_pid ]]; then
		kill "$health_pid" 2>/dev/null
		wait "$health_pid" 2>/dev/null
	fi
	# Containers, images, volumes, networks and layers in the work folder.
	timeout 120 podman rm -af -t 5 >/dev/null 2>&1
	$keep_work || timeout 120 podman system reset -f >/dev/null 2>&1
	if [[ -n $service_pid ]]; then
		kill "$service_pid" 2>/dev/null
		wait "$service_pid" 2>/dev/null
	fi
	# Anything still mounted under the work folder (a failed reset).
	grep -o " $work/[^ ]*" /proc/mounts | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null
	done
	if $keep_work; then
		rm -rf "$work/secrets" "$work/podman.sock" "$work/rootfs"
	else
		rm -rf "$work"
	fi
	# Processes podman left with our work folder on their command line
	# (conmon keeps an exec session's monitor for minutes), by PID.
	local pid
	for pid in $(pgrep -f -- "$work/" || true); do
		((pid == $$)) && continue
		kill -TERM "$pid" 2>/dev/null
	done
	sleep 0.5
	for pid in $(pgrep -f -- "$work/" || true); do
		((pid == $$)) && continue
		kill -KILL "$pid" 2>/dev/null
	done
	# Host side effects of podman/netavark: its iptables chains and rules
	# (each table rewritten without them) and the nft tables iptables-nft
	# created, when none of it was there before.
	if [[ $fw_before == 0 ]]; then
		for table in nat filter; do
			if iptables-save -t "$table" 2>/dev/null | grep -q NETAVARK; then
				iptables-save -t "$table" | grep -v NETAVARK |
					iptables-restore -T "$table"
			fi
		done
	fi
	local t
	nft list tables 2>/dev/null | while read -r t; do
		grep -qxF "$t" <<<"$nft_before" || nft delete $t 2>/dev/null
	done
	if ! $netns_mounted_before; then
		while grep -q ' /run/netns ' /proc/mounts; do
			umount /run/netns 2>/dev/null || break
		done
	fi
	for p in "${host_paths[@]}"; do
		[[ -n ${existed[$p]:-} ]] || rm -rf "$p"
	done
	[[ -n ${existed[/var/lib/containers]:-} ]] || rm -rf /var/lib/containers
	echo "$ip_forward_before" >/proc/sys/net/ipv4/ip_forward 2>/dev/null
	end
	print_timings
	log "total: $(awk -v a="$t_all" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
	if ((rc == 0)); then
		log "PASS"
	else
		log "FAIL (status $rc)"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free loopback ports for what the stack publishes.
free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
GRPC_PORT=$(free_port)
GATEWAY_PORT=$(free_port)
GATEWAY_PG_PORT=$(free_port)
export GRPC_PORT GATEWAY_PORT GATEWAY_PG_PORT

# The secrets, as the README tells a user to make them: 0640 in a 0700
# folder, their group handed to the containers' users.
secrets=$work/secrets
install -d -m 0700 "$secrets"
(umask 027 && openssl rand -hex 32 >"$secrets/jwt-secret" &&
	openssl rand -hex 24 >"$secrets/pg-password")
export SECRETS_DIR=$secrets
SECRETS_GID=$(stat -c %g "$secrets/jwt-secret")
export SECRETS_GID

begin "docker-compose config"
timeout 60 docker-compose config -q
timeout 60 docker-compose --profile postgres --profile metrics config -q
timeout 60 docker-compose --profile postgres config --services | sort | tr '\n' ' '
echo
end

# ---- 2. podman in the work folder ----
begin "podman service"
hard_nofile=$(ulimit -Hn)
[[ $hard_nofile == unlimited ]] && hard_nofile=1048576
cat >"$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "overlay"
graphroot = "$work/storage"
runroot = "$work/run"
EOF
cat >"$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=$hard_nofile:$hard_nofile", "nproc=32768:32768"]
log_driver = "k8s-file"

[network]
network_backend = "netavark"
network_config_dir = "$work/networks"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$work/events.log"
tmp_dir = "$work/tmp"
static_dir = "$work/libpod"
volume_path = "$work/volumes"
image_copy_tmp_dir = "$work/tmp"
EOF
cat >"$CONTAINERS_REGISTRIES_CONF" <<EOF
unqualified-search-registries = []
EOF
mkdir -p "$work/tmp" "$work/networks"
podman system service --time=0 "unix://$work/podman.sock" \
	>"$work/podman-service.log" 2>&1 &
service_pid=$!
for ((i = 0; i < 200; i++)); do
	[[ -S $work/podman.sock ]] && curl -fsS -m 2 --unix-socket "$work/podman.sock" \
		http://d/_ping >/dev/null 2>&1 && break
	kill -0 "$service_pid" 2>/dev/null || { cat "$work/podman-service.log" >&2; fail "podman service exited"; }
	sleep 0.1
done
((i < 200)) || fail "podman service did not answer within 20 s"
# Healthchecks: podman 4.3 would schedule them with systemd timers.
(
	set +e
	trap 'exit 0' TERM
	while :; do
		for c in $(podman ps -q --filter health=starting --filter health=healthy \
			--filter health=unhealthy 2>/dev/null); do
			timeout 10 podman healthcheck run "$c" >/dev/null 2>&1
		done
		sleep 2 &
		wait $!
	done
) &
health_pid=$!
end

# ---- 3. base image without a registry ----
begin "base image (debootstrap)"
if $keep_work && podman image exists docker.io/library/debian:bookworm-slim; then
	log "   kept from an earlier run in $work"
else
mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
if [[ -z $mirror ]]; then
	mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}
rootfs=$work/rootfs
timeout 300 debootstrap --variant=minbase bookworm "$rootfs" "$mirror" \
	>"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap failed"; }
# The host's apt sources and settings (its mirror may need them); only the
# Debian sources, not third-party ones.
if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
	cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/"
	: >"$rootfs/etc/apt/sources.list"
fi
for f in /etc/apt/apt.conf.d/*; do
	[[ -f $f ]] && cp "$f" "$rootfs/etc/apt/apt.conf.d/"
done
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
	"$rootfs"/var/cache/apt/archives/*.deb
timeout 300 bash -c "tar -C '$rootfs' -c . | podman import --change 'CMD [\"bash\"]' - docker.io/library/debian:bookworm-slim" >/dev/null
rm -rf "$rootfs"
fi
end

# ---- 4. images ----
begin "docker-compose build"
# Two images: the runtime one (server, gateway, server-pg, gateway-pg run
# it) and the postgres one, built side by side (one mostly compiles, the
# other mostly installs packages).
timeout 900 docker-compose --profile postgres build --parallel server postgres \
	>"$work/build.log" 2>&1 ||
	{ tail -40 "$work/build.log" >&2; fail "docker-compose build failed"; }
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -v '^docker.io/library/debian' | sed 's/^/  /'
end

# ---- the flow ----
tenant=6fa459ea-ee8a-4ca4-894e-db77e160355e
demo=/usr/share/device-assignment/examples/directory.json

# up_wait PROFILE_ARGS... SERVICES...: up -d (which waits for the
# depends_on healthchecks), then every service's container healthy.
wait_healthy() {
	local deadline=$((SECONDS + $1)) c st all
	shift
	while :; do
		all=true
		for c in "$@"; do
			st=$(podman inspect -f '{{.State.Health.Status}}' "$c" 2>/dev/null || echo missing)
			[[ $st == healthy ]] || all=false
		done
		$all && return 0
		((SECONDS < deadline)) || {
			podman ps -a --format '{{.Names}} {{.Status}}' >&2
			dump_logs
			fail "not healthy within the time limit: $*"
		}
		sleep 1
	done
}

# dump_logs: the last lines of every container of the run, for a failure.
dump_logs() {
	local c
	# What the programs log at their own timeouts (5 s, as the gateway's
	# deadline) lands after the failure the test saw: wait for it.
	sleep 6
	for c in $(podman ps -a --format '{{.Names}}'); do
		echo "--- $c" >&2
		podman logs --tail 60 "$c" >&2 2>&1
	done
}

# call EXPECTED_STATUS METHOD URL [curl args...]: one REST call; fails the
# run when the status differs. The body is left in $work/body.
token=
call() {
	local want=$1 method=$2 url=$3 got
	shift 3
	got=$(curl -sS -m 15 -o "$work/body" -w '%{http_code}' -X "$method" "$url" \
		-H "Authorization: Bearer $token" "$@") || got="curl-failed"
	if [[ $got != "$want" ]]; then
		echo "  body: $(head -c 400 "$work/body" 2>/dev/null)" >&2
		dump_logs
		fail "$method $url: expected $want, got $got"
	fi
	printf '  %s %s -> %s\n' "$method" "${url#http://127.0.0.1:*/}" "$got"
}

# flow SERVICE GATEWAY_URL: import from inside SERVICE's container, then
# the assign / 402 / accept / list story on the demo data.
flow() {
	local svc=$1 gw=$2 base
	base="$gw/v1.0/customers/$tenant/users"
	# The import runs inside the stack: the CLI in the server's image, the
	# token minted from the secret the container reads, the demo data the
	# image carries.
	timeout 60 docker-compose exec -T "$svc" sh -c \
		'DAS_TOKEN=$(device-assignment token --secret-file /run/secrets/jwt-secret --sub compose-test --tenant "*" --scope directory:admin --ttl 300) device-assignment --server 127.0.0.1:50051 import '"$demo" ||
		fail "import inside $svc failed"
	token=$(timeout 60 docker-compose exec -T "$svc" device-assignment token \
		--secret-file /run/secrets/jwt-secret --sub compose-test \
		--tenant "$tenant" --scope devices:assign --ttl 600 | tr -d '\r\n')
	[[ -n $token ]] || fail "no token from $svc"
	call 201 PUT "$base/alice/devices/pbx/alice-desk-01/assign" \
		-H 'Content-Type: application/json' -d '{"clientType":"desktop"}'
	grep -q '"status":"success"' "$work/body" || fail "assign body: $(cat "$work/body")"
	call 201 PUT "$base/bob/devices/pbx/bob-desk-01/assign" \
		-H 'Content-Type: application/json' -d '{"clientType":"desktop"}'
	call 402 PUT "$base/dave/devices/pbx/dave-desk-01/assign" \
		-H 'Content-Type: application/json' -d '{"clientType":"mobile"}'
	grep -q '"clientType":"mobile"' "$work/body" || fail "402 body: $(cat "$work/body")"
	call 201 PUT "$base/dave/devices/pbx/dave-desk-01/assign" \
		-H 'Content-Type: application/json' -H 'accept-charges: true' \
		-d '{"clientType":"mobile"}'
	call 200 GET "$base/alice/devices/pbx"
	grep -q '"deviceId":"alice-desk-01","clientType":"desktop"' "$work/body" ||
		fail "list body: $(cat "$work/body")"
	call 200 GET "$base/dave/devices/pbx"
	grep -q '"deviceId":"dave-desk-01","clientType":"mobile"' "$work/body" ||
		fail "list body: $(cat "$work/body")"
}

# ---- 5. default stack ----
begin "up: default stack (server + gateway)"
timeout 180 docker-compose up -d >"$work/up.log" 2>&1 ||
	{ cat "$work/up.log" >&2; fail "docker-compose up failed"; }
wait_healthy 120 "${proj}_server_1" "${proj}_gateway_1"
end

begin "flow: default stack"
flow server "http://127.0.0.1:$GATEWAY_PORT"
# The secret is readable in the container (group) and not by others on
# the host.
perm=$(stat -c %a "$secrets/jwt-secret")
[[ $perm == 640 ]] || fail "secret mode $perm on the host, expected 640"
end

begin "down: default stack"
timeout 120 docker-compose down -v --timeout 25 >/dev/null 2>&1 || fail "down failed"
[[ -z $(podman ps -aq) ]] || fail "containers left after down: $(podman ps -a --format '{{.Names}}')"
end

# ---- 6. postgres profile ----
begin "up: postgres profile (postgres + 2 replicas + gateway-pg)"
timeout 240 docker-compose --profile postgres up -d postgres server-pg gateway-pg \
	>"$work/up-pg.log" 2>&1 || { cat "$work/up-pg.log" >&2; fail "docker-compose up (postgres) failed"; }
wait_healthy 150 "${proj}_postgres_1" "${proj}_server-pg_1" "${proj}_server-pg_2" "${proj}_gateway-pg_1"
end

begin "flow: postgres profile"
gw="http://127.0.0.1:$GATEWAY_PG_PORT"
flow server-pg "$gw"
# The gateway is connected to both replicas (round_robin keeps a
# connection to every address it resolved): each replica has an
# established TCP connection on :50051 from outside its container.
for n in 1 2; do
	conns=$(podman exec "${proj}_server-pg_$n" cat /proc/net/tcp /proc/net/tcp6 |
		awk '$2 ~ /:C383$/ && $4 == "01" && $3 !~ /^0100007F:/ && $3 !~ /0000000001000000:/' | wc -l)
	log "  server-pg_$n: $conns connection(s) from the gateway"
	((conns > 0)) || fail "server-pg_$n has no connection from the gateway"
done
end

begin "replica killed, the other answers"
podman kill --signal KILL "${proj}_server-pg_1" >/dev/null
base="$gw/v1.0/customers/$tenant/users"
ok=0
bad=0
deadline=$((SECONDS + 30))
while ((ok < 10)); do
	((SECONDS < deadline)) || fail "the gateway did not answer 10 calls in a row within 30 s after the kill ($bad failed)"
	code=$(curl -sS -m 10 -o "$work/body" -w '%{http_code}' \
		"$base/alice/devices/pbx" -H "Authorization: Bearer $token" || true)
	if [[ $code == 200 ]]; then
		ok=$((ok + 1))
	else
		ok=0
		bad=$((bad + 1))
		sleep 0.2
	fi
done
# A change through the survivor, and the killed one is really down.
call 201 PUT "$base/bob/devices/pbx/bob-desk-01/assign" \
	-H 'Content-Type: application/json' -d '{"clientType":"crm"}'
st=$(podman inspect -f '{{.State.Status}}' "${proj}_server-pg_1")
log "  killed replica: $st; 10 calls in a row answered 200 ($bad failed before)"
[[ $st != running ]] || fail "the killed replica is running again; the check proved nothing"
end

begin "down: postgres profile"
timeout 120 docker-compose --profile postgres down -v --timeout 25 >/dev/null 2>&1 || fail "down failed"
[[ -z $(podman ps -aq) ]] || fail "containers left after down"
end
