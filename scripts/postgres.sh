#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers at the given URL: if none does, starts the machine's
# PostgreSQL cluster (Debian's pg_ctlcluster, or pg_ctl on a data directory under
# target/postgres). Fails loudly when it cannot.
set -euo pipefail
url="${1:?usage: scripts/postgres.sh postgres://user@host:port/db}"

reachable() { psql "$url" -Atqc "SELECT 1" >/dev/null 2>&1; }

if ! command -v psql >/dev/null; then
  echo "error: psql is not installed; install PostgreSQL (Debian: apt-get install postgresql)" >&2
  exit 1
fi
if reachable; then
  echo "PostgreSQL is up at ${url%%\?*}" >&2
  exit 0
fi

echo "PostgreSQL does not answer at $url; starting it" >&2
if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql/*/main >/dev/null 2>&1; then
  version="$(ls /etc/postgresql | sort -V | tail -1)"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
else
  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  if [ -z "$bin" ]; then
    echo "error: no PostgreSQL server binaries found" >&2
    exit 1
  fi
  data="$PWD/target/postgres"
  if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data"
    "$bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
  fi
  "$bin/pg_ctl" -D "$data" -o "-p 5432 -k /tmp" -l "$data/server.log" -w start
fi

for _ in $(seq 1 30); do
  if reachable; then
    echo "PostgreSQL is up" >&2
    exit 0
  fi
  sleep 1
done
echo "error: PostgreSQL still does not answer at $url" >&2
exit 1
