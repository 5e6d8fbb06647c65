-- pg_stat_statements as the monitoring role sees it (pg_monitor: pg_read_all_stats shows every
-- role's queryid and text, pg_read_all_settings shows shared_preload_libraries). One query after
-- each `-- name:` line.

-- name: probe
-- Where the extension is (NULL: not created in this database), whether its library is loaded
-- (shared_preload_libraries; its own setting exists only once loaded), who we are. Never fails,
-- whatever is missing, so that a missing piece is a health message and not a broken link.
-- It also gives this session the work_mem of the next query: pg_stat_statements() builds a
-- tuplestore of every entry with all its columns, which spills to disk at the default 4MB from
-- a few thousand entries on (and takes twice as long).
SELECT quote_ident(n.nspname) AS schema,
       coalesce((SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'), '')
           AS preload,
       current_setting('pg_stat_statements.max', true) AS max,
       pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS read_all_stats,
       current_user AS login,
       (SELECT oid FROM pg_roles WHERE rolname = current_user) AS login_oid,
       current_database() AS database,
       (SELECT oid FROM pg_database WHERE datname = current_database()) AS dbid,
       clock_timestamp() AS taken_at,
       pg_postmaster_start_time() AS server_started,
       set_config('work_mem', '64MB', false) AS work_mem
  FROM (SELECT 1) AS one
  LEFT JOIN pg_extension e ON e.extname = 'pg_stat_statements'
  LEFT JOIN pg_namespace n ON n.oid = e.extnamespace;

-- name: counts
-- Every entry's counters in this database, without texts (showtext := false reads no file), as
-- five arrays in one row (decoded by the driver in one go: a tenth of the time of 10,000 rows),
-- with pg_stat_statements_info: when the statistics were last reset as a whole, how many times
-- entries were evicted. {schema}: the extension's schema, quoted. $1: this database's oid.
SELECT i.dealloc, i.stats_reset,
       coalesce(s.userids, '{}') AS userids,
       coalesce(s.queryids, '{}') AS queryids,
       coalesce(s.toplevels, '{}') AS toplevels,
       coalesce(s.calls, '{}') AS calls,
       coalesce(s.rows, '{}') AS rows
  FROM {schema}.pg_stat_statements_info() AS i,
       (SELECT array_agg(userid) AS userids, array_agg(queryid) AS queryids,
               array_agg(toplevel) AS toplevels, array_agg(calls) AS calls,
               array_agg(rows) AS rows
          FROM {schema}.pg_stat_statements(false)
         WHERE dbid = $1) AS s;

-- name: roles
-- Role names, asked when an entry of a role not seen before grows. $1: their oids.
SELECT oid, rolname FROM pg_roles WHERE oid = ANY($1::oid[]);
