-- Cancel the query of (or terminate) one client backend, only when the server would let the
-- monitoring role do it: the rule of pg_cancel_backend/pg_terminate_backend (signalfuncs.c) is
-- read from the catalog first, so that a refusal comes back as an answer (whatever the server's
-- version and lc_messages) rather than an error. A superuser's backend: only a superuser may
-- signal it; any other: a role with the privileges of its role or of pg_signal_backend.
-- $1: the pid; $2: true to terminate, false to cancel its query; $3: when the backend started
-- (microseconds since the epoch; null: any), so that a pid reused by a new session is never hit.
WITH me AS (
    SELECT r.rolname::text AS role,
           r.rolsuper AS superuser,
           pg_has_role(current_user, 'pg_signal_backend', 'USAGE') AS signaller
      FROM pg_roles r
     WHERE r.rolname = current_user
),
target AS (
    SELECT a.pid,
           coalesce(r.rolname::text, '') AS role,
           coalesce(r.rolsuper, false) AS superuser,
           coalesce(pg_has_role(current_user, a.usesysid, 'USAGE'), false) AS own,
           $3::float8 IS NULL
               OR abs(extract(epoch FROM a.backend_start)::float8 * 1e6 - $3::float8) < 1e6
               AS same_session
      FROM pg_stat_activity a
      LEFT JOIN pg_roles r ON r.oid = a.usesysid
     WHERE a.pid = $1::int4 AND a.backend_type = 'client backend'
)
SELECT me.role AS monitor,
       me.superuser AS monitor_superuser,
       t.pid IS NOT NULL AS found,
       coalesce(t.same_session, false) AS same_session,
       coalesce(t.role, '') AS owner,
       coalesce(t.superuser, false) AS owner_superuser,
       CASE
           WHEN t.pid IS NULL OR NOT t.same_session THEN NULL
           WHEN t.superuser AND NOT me.superuser THEN NULL
           WHEN NOT (me.superuser OR me.signaller OR t.own) THEN NULL
           WHEN $2::bool THEN pg_terminate_backend(t.pid)
           ELSE pg_cancel_backend(t.pid)
       END AS signalled
  FROM me
  LEFT JOIN target t ON true
