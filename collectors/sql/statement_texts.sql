-- The texts of pg_stat_statements entries: all of them at the first poll, then only those of
-- queryids not seen before (showtext := true reads the whole query-text file, so not on every
-- poll). Each cut to its first $3 characters (a text can be megabytes; the parse reads no
-- more). {schema}: the extension's schema, quoted. $1: this database's oid, $2: the queryids
-- (NULL: all), $3: the length to cut at.
SELECT DISTINCT ON (queryid) queryid, left(query, $3) AS query
  FROM {schema}.pg_stat_statements(true)
 WHERE dbid = $1 AND queryid IS NOT NULL AND ($2::int8[] IS NULL OR queryid = ANY($2::int8[]))
 ORDER BY queryid, toplevel DESC
