"""The `aps-etl` command: the operator's tools (run, seed, reconcile, backfill, doctor, lake,
report), one module per command.

May import anything of aps_etl; nothing imports it but the console script and tests."""
