#!/usr/bin/env bash
# First start: initdb with the superuser's password. Every start: the databases and
# least-privilege roles of infra/docker/postgres-init.sh with the passwords as they are now,
# then serve on all interfaces, TLS only (hostssl) with scram-sha-256, with the certificate
# mounted at /tls (server.crt, server.key), the passwords gone from the server's environment.
# Passwords come from the environment; psql reads them with \getenv, never from argv.
set -euo pipefail
: "${POSTGRES_USER:?POSTGRES_USER is not set}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set}"
for var in APS_MES_OWNER_USER APS_MES_OWNER_PASSWORD APS_MES_READER_USER APS_MES_READER_PASSWORD \
           APS_APS_LOADER_USER APS_APS_LOADER_PASSWORD APS_DAGSTER_PG_USER APS_DAGSTER_PG_PASSWORD \
           APS_APS_READER_USER APS_APS_READER_PASSWORD \
           APS_APS_STAGE_WRITER_USER APS_APS_STAGE_WRITER_PASSWORD; do
  [[ -n ${!var:-} ]] || { echo "postgres: $var is not set" >&2; exit 64; }
done

if [[ ! -s $PGDATA/PG_VERSION ]]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth-local=scram-sha-256 \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  # over the network: TLS or nothing (the certificate is mounted at /tls)
  echo "hostssl all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
fi

# Every start, not only the first: the roles, databases and grants, and every password as
# infra/.env has it now, so a changed password takes effect with a restart. The server
# runs meanwhile on a socket in a folder only this user can enter, no TCP, and trusts that
# socket alone (its own hba file): the superuser's old password need not be known.
setup=$(mktemp -d)
chmod 700 "$setup"
echo "local all all trust" >"$setup/hba.conf"
pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k $setup -c hba_file=$setup/hba.conf" -w start \
  >/dev/null
PGHOST=$setup psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname postgres \
  -v superuser="$POSTGRES_USER" <<'SQL'
\getenv superuser_pw POSTGRES_PASSWORD
SET log_min_error_statement = panic;
ALTER ROLE :"superuser" PASSWORD :'superuser_pw';
SQL
PGHOST=$setup bash /usr/local/share/aps-postgres-init.sh
pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
rm -rf "$setup"

[[ -f /tls/server.crt && -f /tls/server.key ]] \
  || { echo "postgres: no certificate at /tls (server.crt, server.key)" >&2; exit 64; }
# the key must be private to the server's user: copy it out of the (read-only) mount
install -m 600 /tls/server.key /tmp/server.key
# the server itself holds no password: they were for the setup above
exec env -u POSTGRES_PASSWORD -u APS_MES_OWNER_PASSWORD -u APS_MES_READER_PASSWORD \
  -u APS_APS_LOADER_PASSWORD -u APS_DAGSTER_PG_PASSWORD -u APS_APS_READER_PASSWORD \
  -u APS_APS_STAGE_WRITER_PASSWORD \
  postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp \
  -c ssl=on -c ssl_cert_file=/tls/server.crt -c ssl_key_file=/tmp/server.key
