-- The service's PostgreSQL role may add to the audit trail and to the signed decision versions, never change them.
--
-- Run once, as the role that owns the tables (the one that runs `rcp migrate`), after each `rcp migrate` that adds
-- tables. `rcp_app` is the role in the service's RCP_DATABASE_URL: a login role that owns nothing (an owner could
-- drop the triggers of alembic revision 0006 and grant itself the rights back).
--
--   CREATE ROLE rcp_app LOGIN PASSWORD '…';   -- once
--   psql "$OWNER_URL" -f deploy/postgresql-roles.sql

GRANT USAGE ON SCHEMA public TO rcp_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO rcp_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO rcp_app;
-- Append-only: who accessed which patient, and what was signed.
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, decision_versions FROM rcp_app;
-- Migrations are the owner's business.
REVOKE ALL ON alembic_version FROM rcp_app;
