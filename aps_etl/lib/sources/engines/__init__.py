"""The source engines: one module per engine family (postgres, mariadb, oracle,
sqlserver), each supplying the connection and Arrow reader, the dialect of the extract
SELECT, the fingerprint SQL, the drift query and its type names. `registry.py` picks one
by name (APS_SOURCE_ENGINE); `base.py` is what they share, with `../dialect.py` (how a
SELECT is spelled). Nothing above the source room knows which engine it reads.
"""
