"""The bus: the only package that talks to PostgreSQL.

It holds settings, the embedded server, the connection pool, migrations,
shared state and the typed errors that the rest of the system sees.
"""
