"""What the PostgreSQL setup of config.postgres_setup is made of, and the grants of the target
database `aps` to the roles besides its owner (`aps_loader`): the planners' reader and
Trino's stage writer. Role placeholders ({aps_reader}, {aps_stage_writer:name}, ...) as in
config.postgres_setup, which renders them for each deployment. Standard library only."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Generated:
    """A query whose rows are the statements to run next (psql's \\gexec): CREATE ROLE and
    CREATE DATABASE only when missing, so the setup is idempotent on both targets."""

    query: str


Statement = str | Generated

# aps_etl/lib/warehouse/target.py's STAGE_SCHEMA; the master dimensions Trino's merge
# compares with (aps_etl/lib/warehouse/merge.py) are the output tables named DIMENSIONS
# (infra/trino/rules.json lets Trino's user read only those in `public`).
STAGE_SCHEMA = "aps_stage"
DIMENSIONS = r"aps\_dim\_%"
WRITER_RIGHTS = "SELECT, INSERT, UPDATE, DELETE"


def aps_grants() -> list[Statement]:
    """In database `aps`, as the superuser: the reader sees the output tables (`public`, the
    loader's later ones too), not the stages. The stage writer (Trino's `aps` catalog) fills
    the loader's stages, and makes, fills and drops tables of its own beside them (Trino's
    INSERT writes a temporary table first); it reads the master dimensions, which the merge
    compares with. Nothing else: no other output table, no CREATE in public, no TEMP."""
    return [
        "GRANT USAGE ON SCHEMA public TO {aps_reader}",
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {aps_reader}",
        "ALTER DEFAULT PRIVILEGES FOR ROLE {aps_loader} IN SCHEMA public "
        "GRANT SELECT ON TABLES TO {aps_reader}",
        f"CREATE SCHEMA IF NOT EXISTS {STAGE_SCHEMA} AUTHORIZATION {{aps_loader}}",
        f"GRANT USAGE, CREATE ON SCHEMA {STAGE_SCHEMA} TO {{aps_stage_writer}}",
        f"GRANT {WRITER_RIGHTS} ON ALL TABLES IN SCHEMA {STAGE_SCHEMA} TO {{aps_stage_writer}}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {{aps_loader}} IN SCHEMA {STAGE_SCHEMA} "
        f"GRANT {WRITER_RIGHTS} ON TABLES TO {{aps_stage_writer}}",
        "GRANT USAGE ON SCHEMA public TO {aps_stage_writer}",
        Generated(
            "SELECT format('GRANT SELECT ON %s TO %I', c.oid::regclass, {aps_stage_writer:name}) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') "
            f"AND c.relname LIKE '{DIMENSIONS}'"
        ),
        # A dimension the loader makes later is readable at once: PostgreSQL's default
        # privileges cannot pick tables by name, an event trigger can. It runs as the role
        # that made the table, its owner, who may grant on it.
        Generated(
            "SELECT format($sql$CREATE OR REPLACE FUNCTION public.aps_grant_dimensions() "
            "RETURNS event_trigger LANGUAGE plpgsql SET search_path = pg_catalog AS $body$ "
            "DECLARE made record; BEGIN "
            "FOR made IN SELECT objid FROM pg_event_trigger_ddl_commands() "
            "WHERE object_type = 'table' AND schema_name = 'public' LOOP "
            "IF (SELECT relname FROM pg_class WHERE oid = made.objid) "
            f"LIKE '{DIMENSIONS.replace('%', '%%')}' THEN "
            "EXECUTE format('GRANT SELECT ON %%s TO %%I', made.objid::regclass, %L); "
            "END IF; END LOOP; END $body$$sql$, {aps_stage_writer:name})"
        ),
        Generated(
            "SELECT 'CREATE EVENT TRIGGER aps_grant_dimensions ON ddl_command_end "
            "WHEN TAG IN (''CREATE TABLE'', ''CREATE TABLE AS'') "
            "EXECUTE FUNCTION public.aps_grant_dimensions()' "
            "WHERE NOT EXISTS (SELECT FROM pg_event_trigger WHERE evtname = 'aps_grant_dimensions')"
        ),
    ]
