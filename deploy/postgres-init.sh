#!/bin/sh
# First start of the compose PostgreSQL: the service's login role, which owns nothing (deploy/postgresql-roles.sql),
# and default grants so that the tables `rcp migrate` creates as rcp_owner are usable by it. The append-only
# revokes of postgresql-roles.sql are applied after each migration (deploy/README.md).
set -eu
psql -v ON_ERROR_STOP=1 -v pw="$RCP_DB_PASSWORD" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE rcp_app LOGIN PASSWORD :'pw';
GRANT USAGE ON SCHEMA public TO rcp_app;
ALTER DEFAULT PRIVILEGES FOR ROLE rcp_owner IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO rcp_app;
ALTER DEFAULT PRIVILEGES FOR ROLE rcp_owner IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO rcp_app;
SQL
