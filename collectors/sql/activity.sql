-- The client backends of this database other than ours, as pg_stat_activity shows them now,
-- after one row about us that is always there (a LEFT JOIN: no backend, still one row).
-- pg_monitor (pg_read_all_stats) shows every role's query; without it, another role's query
-- reads `<insufficient privilege>`. client_addr without its mask; NULL for a Unix socket. Each
-- query cut to its first $1 characters (track_activity_query_size may be up to 1MB; the parse
-- reads no more).
WITH me AS (
    SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS read_all_stats,
           current_user AS login,
           current_database() AS database,
           (SELECT setting::int FROM pg_settings WHERE name = 'track_activity_query_size')
               AS query_size,
           clock_timestamp() AS taken_at
)
SELECT me.read_all_stats, me.login, me.database, me.query_size, me.taken_at,
       a.pid, a.usename, host(a.client_addr) AS client_addr, a.application_name, a.state,
       a.backend_start, a.xact_start, a.query_start, left(a.query, $1) AS query
  FROM me
  LEFT JOIN pg_stat_activity a
    ON a.datname = me.database
   AND a.backend_type = 'client backend'
   AND a.pid <> pg_backend_pid()
