-- The audit set-up as the monitoring role sees it (pg_monitor is enough: pg_settings, pg_roles
-- and pg_class are readable by all, the privilege functions answer for any role, and the tables
-- are found in the catalog, so no USAGE on their schema is needed).
-- $1: the watched tables as shown, $2: their schemas ('' : any), $3: their names,
-- $4: the audit role named in pgaudit.role.
WITH watched AS (
    SELECT shown, (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.relname = name AND (schema = '' OR n.nspname = schema)
                      AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                    ORDER BY n.nspname LIMIT 1) AS oid
      FROM unnest($1::text[], $2::text[], $3::text[]) AS w(shown, schema, name)
)
SELECT
    current_user AS login,
    current_setting('server_version') AS server_version,
    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
    pg_has_role(current_user, 'pg_monitor', 'MEMBER') AS pg_monitor,
    coalesce((SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'), '')
        AS preload,  -- hidden (empty) without pg_read_all_settings, never an error
    EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgaudit') AS extension,
    (SELECT coalesce(json_object_agg(name, setting), '{}')::text FROM pg_settings
      WHERE name LIKE 'pgaudit.%'
         OR name IN ('logging_collector', 'log_destination', 'log_directory', 'log_filename',
                     'log_line_prefix', 'log_min_messages', 'data_directory')) AS settings,
    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $4) AS audit_role_exists,
    (SELECT coalesce(json_agg(json_build_object(
         'name', shown,
         'exists', oid IS NOT NULL,
         'audited', CASE WHEN oid IS NOT NULL AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $4)
                         THEN has_table_privilege($4, oid, 'SELECT') END,
         'readable_by_me', CASE WHEN oid IS NOT NULL THEN has_table_privilege(oid, 'SELECT') END
     )), '[]')::text FROM watched) AS tables
