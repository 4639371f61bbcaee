#!/usr/bin/env bash
# First-start initialisation of the compose PostgreSQL: source `mes`, target `aps`,
# Dagster's own `dagster` database, each with its least-privilege role.
set -euo pipefail
# Role names as psql variables; passwords read by psql itself from the environment
# (\getenv), so they never appear in a process's argv.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v mes_owner="$APS_MES_OWNER_USER" -v mes_reader="$APS_MES_READER_USER" \
  -v aps_loader="$APS_APS_LOADER_USER" -v dagster_user="$APS_DAGSTER_PG_USER" <<'SQL'
\getenv mes_owner_pw APS_MES_OWNER_PASSWORD
\getenv mes_reader_pw APS_MES_READER_PASSWORD
\getenv aps_loader_pw APS_APS_LOADER_PASSWORD
\getenv dagster_pw APS_DAGSTER_PG_PASSWORD
create role :"mes_owner" login password :'mes_owner_pw';
create role :"mes_reader" login password :'mes_reader_pw';
create role :"aps_loader" login password :'aps_loader_pw';
create database mes owner :"mes_owner";
create database aps owner :"aps_loader";
create role :"dagster_user" login password :'dagster_pw';
create database dagster owner :"dagster_user";
revoke all on database mes from public;
revoke all on database aps from public;
revoke all on database dagster from public;
grant connect on database mes to :"mes_reader";
\connect mes
alter schema public owner to :"mes_owner";
grant usage on schema public to :"mes_reader";
alter default privileges for role :"mes_owner" in schema public grant select on tables to :"mes_reader";
\connect aps
alter schema public owner to :"aps_loader";
SQL
