"""Security tests on real redis-server processes: TLS, authentication and ACLs, key-prefix
isolation between deployments, and secrets that must never reach logs, errors or files."""
