#!/usr/bin/env bash
# Entry point of the `postgres` stage of the Dockerfile (Debian's
# postgresql-15). On an empty data volume: creates the cluster, the role
# and the database named by POSTGRES_USER / POSTGRES_DB with the password
# read from POSTGRES_PASSWORD_FILE. Then runs postgres in the foreground.
set -euo pipefail

bin=/usr/lib/postgresql/15/bin
data=${PGDATA:-/var/lib/postgresql/data}
user=${POSTGRES_USER:-das}
db=${POSTGRES_DB:-device_assignment}
pwfile=${POSTGRES_PASSWORD_FILE:?POSTGRES_PASSWORD_FILE must name a file}

[[ $user =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || { echo "bad POSTGRES_USER" >&2; exit 1; }
[[ $db =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || { echo "bad POSTGRES_DB" >&2; exit 1; }

if [[ ! -s $data/PG_VERSION ]]; then
	"$bin/initdb" -D "$data" -U postgres --auth-local=peer \
		--auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
	echo "host all all all scram-sha-256" >>"$data/pg_hba.conf"
	# The password goes in as a quoted SQL literal: single quotes doubled.
	pw=$(head -n 1 "$pwfile")
	pw=${pw//\'/\'\'}
	"$bin/postgres" --single -D "$data" postgres >/dev/null <<SQL
CREATE ROLE $user LOGIN PASSWORD '$pw';
CREATE DATABASE $db OWNER $user;
SQL
	echo "docker-postgres: initialised $data (database $db, role $user)"
fi
# Connections and lock waits over deadlock_timeout (1 s) are logged: in a
# dev stack they explain a slow or stuck request.
exec "$bin/postgres" -D "$data" -c listen_addresses='*' \
	-c log_connections=on -c log_lock_waits=on
