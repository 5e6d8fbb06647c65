-- The audit set-up as the monitoring role sees it (pg_monitor is enough: pg_settings, pg_roles,
-- pg_class and pg_db_role_setting are readable by all, the privilege functions answer for any
-- role, and the tables are found in the catalog, so no USAGE on their schema is needed).
-- $1: the watched tables as shown, $2: their schemas ('' : any), $3: their names,
-- $4: the audit role named in pgaudit.role.
WITH watched AS (
    SELECT shown, (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.relname = name AND (schema = '' OR n.nspname = schema)
                      AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                    ORDER BY n.nspname LIMIT 1) AS oid
      FROM unnest($1::text[], $2::text[], $3::text[]) AS w(shown, schema, name)
),
-- The settings that decide what pgaudit writes and where the server log goes.
audited_setting AS (
    SELECT name FROM pg_settings
     WHERE name LIKE 'pgaudit.%'
        OR name IN ('logging_collector', 'log_destination', 'log_directory', 'log_filename',
                    'log_line_prefix', 'log_min_messages', 'data_directory')
),
-- ALTER ROLE / ALTER DATABASE ... SET of those settings that reach this database: a role's or
-- a database's own value wins over the server's. "name=value", the value unquoted.
role_setting AS (
    SELECT coalesce(r.rolname, '') AS role, coalesce(d.datname, '') AS database,
           split_part(c.cfg, '=', 1) AS name, substr(c.cfg, strpos(c.cfg, '=') + 1) AS value
      FROM pg_db_role_setting s
      LEFT JOIN pg_roles r ON r.oid = s.setrole
      LEFT JOIN pg_database d ON d.oid = s.setdatabase
     CROSS JOIN LATERAL unnest(s.setconfig) AS c(cfg)
     WHERE (s.setdatabase = 0 OR d.datname = current_database())
       AND (lower(split_part(c.cfg, '=', 1)) LIKE 'pgaudit.%'
            OR lower(split_part(c.cfg, '=', 1)) IN (
                'logging_collector', 'log_destination', 'log_directory', 'log_filename',
                'log_line_prefix', 'log_min_messages'))
)
SELECT
    current_user AS login,
    current_setting('server_version') AS server_version,
    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
    pg_has_role(current_user, 'pg_monitor', 'MEMBER') AS pg_monitor,
    coalesce((SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'), '')
        AS preload,  -- hidden (empty) without pg_read_all_settings, never an error
    EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgaudit') AS extension,
    EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements') AS statements,
    pg_has_role(current_user, 'pg_signal_backend', 'MEMBER') AS signal_backend,
    (SELECT coalesce(json_object_agg(name, setting), '{}')::text FROM pg_settings
      WHERE name IN (SELECT name FROM audited_setting)) AS settings,
    -- this session's values that come from a per-role or per-database setting, not the server's
    (SELECT coalesce(json_agg(name), '[]')::text FROM pg_settings
      WHERE name IN (SELECT name FROM audited_setting)
        AND source IN ('database', 'user', 'database user')) AS overridden,
    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $4) AS audit_role_exists,
    (SELECT coalesce(json_agg(json_build_object(
         'name', shown,
         'exists', oid IS NOT NULL,
         'audited', CASE WHEN oid IS NOT NULL AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $4)
                         THEN has_table_privilege($4, oid, 'SELECT') END,
         'readable_by_me', CASE WHEN oid IS NOT NULL THEN has_table_privilege(oid, 'SELECT') END
     )), '[]')::text FROM watched) AS tables,
    (SELECT coalesce(json_agg(json_build_object(
         'role', role, 'database', database, 'name', name, 'value', value)
         ORDER BY role, database, name), '[]')::text FROM role_setting) AS role_settings,
    pg_postmaster_start_time() AS started_at,
    clock_timestamp() AS taken_at
