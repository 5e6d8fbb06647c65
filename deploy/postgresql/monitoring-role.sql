-- The database side of tablewatch, with the least privilege it needs. Run as a superuser in the
-- database that holds the watched table (re-running it is harmless).
--
-- 1. pgaudit: object audit of the watched table through an audit role (postgresql.conf:
--    shared_preload_libraries = 'pgaudit', pgaudit.role = 'auditor', log_destination = 'csvlog',
--    logging_collector = on). The audit role never logs in.
DO $$ BEGIN CREATE ROLE auditor NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT SELECT ON crm.client_list TO auditor;   -- every read of the table is logged from now on

-- 2. The monitoring role of the live pg_stat_* sources and `tablewatch doctor`: statistics
--    only, never the table's rows (set its password with \password tablewatch, or use .pgpass).
DO $$ BEGIN CREATE ROLE tablewatch LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT pg_monitor TO tablewatch;                -- pg_stat_activity, pg_stat_statements, settings
REVOKE ALL ON crm.client_list FROM tablewatch; -- never SELECT on the watched table

-- 3. The agent reads the server's log files: on Debian they belong to group adm
--    (usermod -aG adm tablewatch); nothing in the database is needed for that.
