-- What the database's statistics say about each watched table: sequential scans and the tuples
-- they read, tuples read through its indexes, since the statistics began, and its size. Readable
-- with pg_monitor (pg_read_all_stats); tables are found in the catalog (no USAGE on the schema).
-- $1: the watched tables as shown, $2: their schemas ('' : any), $3: their names.
WITH watched AS (
    SELECT shown, (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.relname = name AND (schema = '' OR n.nspname = schema)
                      AND c.relkind IN ('r', 'p', 'm')
                    ORDER BY n.nspname LIMIT 1) AS oid
      FROM unnest($1::text[], $2::text[], $3::text[]) AS w(shown, schema, name)
)
SELECT w.shown,
       w.oid IS NOT NULL AS found,
       coalesce(s.seq_scan, 0) AS seq_scans,
       coalesce(s.seq_tup_read, 0) AS seq_tuples,
       -- index entries returned by its indexes' scans: index-only scans fetch no heap tuple
       -- (idx_tup_fetch stays put) but still hand out the indexed columns
       greatest(coalesce(s.idx_tup_fetch, 0),
                (SELECT coalesce(sum(i.idx_tup_read), 0) FROM pg_stat_all_indexes i
                  WHERE i.relid = w.oid)) AS idx_tuples,
       coalesce(c.reltuples, -1)::float8 AS reltuples,
       coalesce(s.n_live_tup, 0) AS live_tuples,
       clock_timestamp() AS taken_at,
       pg_postmaster_start_time() AS server_started
  FROM watched w
  LEFT JOIN pg_class c ON c.oid = w.oid
  LEFT JOIN pg_stat_all_tables s ON s.relid = w.oid
