#!/usr/bin/env bash
# Makes a PostgreSQL database for the Prefect server on this machine, and does nothing
# that is done already: installs Debian's postgresql where missing, creates and starts
# a cluster, creates the role and database `prefect`. Run as root (or with sudo), e.g.
# `make postgres`. Then run the server on it:
#   PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://prefect:prefect@127.0.0.1:5432/prefect \
#     prefect server start
#   PGPORT     port of the cluster (default: 5432)
#   PGPASS     password of the role prefect (default: prefect; loopback only)
set -euo pipefail
PGPORT=${PGPORT:-5432}
PGPASS=${PGPASS:-prefect}
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

if ! command -v pg_lsclusters >/dev/null; then
    echo "postgres-up: installing postgresql"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi

version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | awk '{print $2}' | grep -qx main; then
    echo "postgres-up: creating cluster $version/main on port $PGPORT"
    $SUDO pg_createcluster "$version" main --port "$PGPORT" >/dev/null
fi
cluster_version=$(pg_lsclusters -h | awk '$2 == "main" {print $1}' | head -1)
if ! pg_lsclusters -h | awk '$2 == "main" {print $4}' | grep -qx online; then
    echo "postgres-up: starting cluster $cluster_version/main"
    # 600 connections: a large fan-out opens many; the server's pool is 5 + 10 overflow each.
    $SUDO pg_ctlcluster "$cluster_version" main start -- -o "-c max_connections=600" \
        || $SUDO pg_ctlcluster "$cluster_version" main start
fi
port=$(pg_lsclusters -h | awk '$2 == "main" {print $3}' | head -1)

as_postgres() { (cd / && $SUDO -u postgres "$@"); }
[ "$(id -u)" = 0 ] && as_postgres() { (cd / && runuser -u postgres -- "$@"); }
for _ in $(seq 30); do
    as_postgres psql -p "$port" -qtAc 'select 1' >/dev/null 2>&1 && break
    sleep 1
done
if [ "$(as_postgres psql -p "$port" -qtAc "select 1 from pg_roles where rolname='prefect'")" != 1 ]; then
    echo "postgres-up: creating role prefect"
    as_postgres psql -p "$port" -qc "create role prefect login password '$PGPASS'"
fi
if [ "$(as_postgres psql -p "$port" -qtAc "select 1 from pg_database where datname='prefect'")" != 1 ]; then
    echo "postgres-up: creating database prefect"
    as_postgres psql -p "$port" -qc "create database prefect owner prefect"
fi
echo "postgresql+asyncpg://prefect:$PGPASS@127.0.0.1:$port/prefect"
