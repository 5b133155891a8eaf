"""Scale-out tests: several hosts (network namespaces), PgBouncer, failover."""
