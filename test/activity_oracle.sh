#!/usr/bin/env bash
# cdp.activity against plain SQL over the raw events: every accessor, for
# many random (event, since, until) windows, including windows bounded at
# UTC midnight, a DST-observing session time zone, trimmed summaries and
# random splits merged back together.
set -uo pipefail
export PGDATABASE=${PGDATABASE:-contrib_regression}
PSQL=(psql -X -q -At -v ON_ERROR_STOP=1)

check() {  # check DESCRIPTION SQL: the SQL must print 0 (mismatches)
  local out
  out=$("${PSQL[@]}" -c "SET search_path = act_oracle, public" -c "SET TimeZone = 'Europe/Amsterdam'" -c "$2" 2>&1)
  if [ "$out" = 0 ]; then echo "ok - $1"; else echo "not ok - $1"; echo "# got: $out"; fi
}

"${PSQL[@]}" <<'SQL' || { echo "not ok - set-up"; exit 1; }
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS act_oracle CASCADE;
CREATE SCHEMA act_oracle;
SET search_path = act_oracle, public;
-- profiles are devices here; values are the order revenue (NULL elsewhere)
CREATE TABLE ev AS
  SELECT anonymous_id AS pid, event, ts, (properties->>'revenue')::float8 AS v,
         (event_id % 97)::float8 / 4 AS iv
  FROM public.events WHERE anonymous_id IS NOT NULL;
-- a few same-instant duplicates and events exactly at UTC midnight
INSERT INTO ev SELECT pid, event, ts, v, iv FROM ev WHERE random() < 0.02;
INSERT INTO ev SELECT pid, event, date_trunc('day', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', v, iv FROM ev WHERE random() < 0.05;
-- one heavy profile whose events arrive in random order
INSERT INTO ev SELECT 'heavy', event, ts, v, iv FROM (SELECT * FROM ev ORDER BY random()) r;
CREATE TABLE summ AS SELECT pid, cdp.activity_agg(event, ts, v) AS a FROM ev GROUP BY pid;
CREATE UNIQUE INDEX ON summ (pid);
SELECT setseed(0.42);
-- random windows: arbitrary instants, UTC midnights, open ends
CREATE TABLE win AS
  SELECT i,
         CASE WHEN i % 10 = 0 THEN '-infinity'::timestamptz
              WHEN i % 3 = 0 THEN date_trunc('day', t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
              ELSE t END AS since,
         CASE WHEN i % 11 = 0 THEN 'infinity'::timestamptz
              WHEN i % 7 = 0 THEN date_trunc('day', t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 day'
              WHEN i % 5 = 0 THEN date_trunc('day', t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + make_interval(days => 1 + i % 60)
              ELSE t + make_interval(secs => random() * 120 * 86400) END AS until
  FROM (SELECT i, '2025-01-01Z'::timestamptz + make_interval(secs => random() * 400 * 86400) AS t
        FROM generate_series(1, 120) i) r;
-- the window definition, written out: a UTC day overlaps [since, until)
CREATE TABLE ev_day AS
  SELECT pid, event, ts, v, (ts AT TIME ZONE 'UTC')::date AS d FROM ev;
CREATE TABLE oracle AS
  SELECT w.i, e.pid, e.event, count(*) AS n, sum(e.v) AS s, count(DISTINCT e.d) AS days
  FROM win w JOIN ev_day e
    ON (e.d::timestamp AT TIME ZONE 'UTC') < w.until
   AND ((e.d + 1)::timestamp AT TIME ZONE 'UTC') > w.since
  GROUP BY 1, 2, 3;
CREATE TABLE oracle_any AS
  SELECT w.i, e.pid, count(DISTINCT e.d) AS days
  FROM win w JOIN ev_day e
    ON (e.d::timestamp AT TIME ZONE 'UTC') < w.until
   AND ((e.d + 1)::timestamp AT TIME ZONE 'UTC') > w.since
  GROUP BY 1, 2;
ANALYZE;
SQL

check "the oracle is not trivial: many non-empty (window, profile, event) cells, trimmed windows, midnight bounds" "
  SELECT ((SELECT count(*) FROM oracle) < 2000
       OR (SELECT count(*) FROM win WHERE (since >= '2025-07-01Z' OR since = '-infinity') AND until >= '2025-07-01Z') < 10
       OR (SELECT count(*) FROM ev WHERE ts = date_trunc('day', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') < 50)::int"

check "summaries cover every profile" \
  "SELECT abs((SELECT count(DISTINCT pid) FROM ev) - (SELECT count(*) FROM summ WHERE a IS NOT NULL))"

check "events(a) equals GROUP BY totals, first and last" "
  SELECT count(*) FROM (
    SELECT pid, event, count(*) AS n, sum(v) AS s, min(ts) AS f, max(ts) AS l FROM ev GROUP BY 1, 2) o
  FULL JOIN (SELECT pid, x.* FROM summ, cdp.events(a) x) c USING (pid, event)
  WHERE c.count IS DISTINCT FROM o.n OR abs(coalesce(c.sum, 0) - coalesce(o.s, 0)) > 1e-9 * (1 + abs(coalesce(o.s, 0)))
     OR c.first_at IS DISTINCT FROM o.f OR c.last_at IS DISTINCT FROM o.l"

check "event_count, event_sum, first_seen, last_seen, active_days without window" "
  SELECT count(*) FROM (
    SELECT pid, event, count(*) AS n, coalesce(sum(v), 0) AS s, min(ts) AS f, max(ts) AS l,
           count(DISTINCT (ts AT TIME ZONE 'UTC')::date) AS d
    FROM ev GROUP BY 1, 2) o JOIN summ USING (pid)
  WHERE cdp.event_count(a, event) <> n OR abs(cdp.event_sum(a, event) - s) > 1e-9 * (1 + abs(s))
     OR cdp.first_seen(a, event) <> f OR cdp.last_seen(a, event) <> l OR cdp.active_days(a, event) <> d"

check "first_seen, last_seen, active_days over all events" "
  SELECT count(*) FROM (
    SELECT pid, min(ts) AS f, max(ts) AS l, count(DISTINCT (ts AT TIME ZONE 'UTC')::date) AS d
    FROM ev GROUP BY 1) o JOIN summ USING (pid)
  WHERE cdp.first_seen(a) <> f OR cdp.last_seen(a) <> l OR cdp.active_days(a) <> d"

check "event_count, event_sum, active_days in 120 random windows (every profile and event)" "
  SELECT count(*)
  FROM win w CROSS JOIN summ s CROSS JOIN LATERAL cdp.events(s.a) x
  LEFT JOIN oracle o ON o.i = w.i AND o.pid = s.pid AND o.event = x.event
  WHERE cdp.event_count(s.a, x.event, w.since, w.until) <> coalesce(o.n, 0)
     OR abs(cdp.event_sum(s.a, x.event, w.since, w.until) - coalesce(o.s, 0)) > 1e-9 * (1 + abs(coalesce(o.s, 0)))
     OR cdp.active_days(s.a, x.event, w.since, w.until) <> coalesce(o.days, 0)"

check "since-only windows equal [since, infinity)" "
  SELECT count(*)
  FROM win w CROSS JOIN summ s CROSS JOIN LATERAL cdp.events(s.a) x
  WHERE cdp.event_count(s.a, x.event, w.since) <> cdp.event_count(s.a, x.event, w.since, 'infinity')
     OR cdp.active_days(s.a, x.event, w.since) <> cdp.active_days(s.a, x.event, w.since, 'infinity')"

check "active_days over all events in random windows" "
  SELECT count(*) FROM win w CROSS JOIN summ s
  LEFT JOIN oracle_any o ON o.i = w.i AND o.pid = s.pid
  WHERE cdp.active_days(s.a, w.since, w.until) <> coalesce(o.days, 0)"

check "unknown events give 0 in every window" "
  SELECT count(*) FROM win w CROSS JOIN summ s
  WHERE cdp.event_count(s.a, 'no_such_event', w.since, w.until) <> 0
     OR cdp.event_sum(s.a, 'no_such_event', w.since, w.until) <> 0
     OR cdp.first_seen(s.a, 'no_such_event') IS NOT NULL"

check "did / did_not with within in a DST time zone equal count(*) FILTER over raw events" "
  WITH q AS (
    SELECT i, '2025-01-01Z'::timestamptz + make_interval(secs => (i * 7919 % 365) * 86400 + (i * 104729 % 86400)) AS as_of,
           make_interval(days => 1 + i % 90) AS within, 1 + i % 3 AS n
    FROM generate_series(1, 40) i),
  o AS (
    SELECT q.i, e.pid, count(*) FILTER (WHERE e.event = 'page_viewed') AS views
    FROM q JOIN ev_day e
      ON (e.d::timestamp AT TIME ZONE 'UTC') < q.as_of
     AND ((e.d + 1)::timestamp AT TIME ZONE 'UTC') > q.as_of - q.within
    GROUP BY 1, 2)
  SELECT count(*) FROM q CROSS JOIN summ s LEFT JOIN o ON o.i = q.i AND o.pid = s.pid
  WHERE cdp.did(s.a, 'page_viewed', q.n, q.within, q.as_of) <> (coalesce(o.views, 0) >= q.n)
     OR cdp.did_not(s.a, 'page_viewed', q.n, q.within, q.as_of) <> (coalesce(o.views, 0) < q.n)"

check "trimmed summaries answer windows after the trim day and windows covering everything before it" "
  WITH t AS (SELECT pid, cdp.activity_trim(a, '2025-07-01 12:00Z') AS a FROM summ)
  SELECT count(*)
  FROM win w CROSS JOIN t CROSS JOIN LATERAL cdp.events(t.a) x
  LEFT JOIN oracle o ON o.i = w.i AND o.pid = t.pid AND o.event = x.event
  WHERE (w.since >= '2025-07-01Z' OR w.since = '-infinity') AND w.until >= '2025-07-01Z'
    AND (cdp.event_count(t.a, x.event, w.since, w.until) <> coalesce(o.n, 0)
         OR abs(cdp.event_sum(t.a, x.event, w.since, w.until) - coalesce(o.s, 0)) > 1e-6 * (1 + abs(coalesce(o.s, 0))))"

check "trimmed summaries keep totals, first and last" "
  SELECT count(*) FROM summ s, cdp.events(s.a) x, cdp.events(cdp.activity_trim(s.a, '2025-07-01Z')) y
  WHERE x.event = y.event AND (x.count, x.first_at, x.last_at) IS DISTINCT FROM (y.count, y.first_at, y.last_at)"

check "merge of a random 3-way split equals the summary of all events (exact values)" "
  WITH parts AS (
    SELECT pid, (hashtext(pid || ts::text || event) & 3) % 3 AS part, cdp.activity_agg(event, ts, iv) AS a
    FROM ev GROUP BY 1, 2),
  merged AS (
    SELECT pid,
           cdp.activity_merge(cdp.activity_merge(max(a::text) FILTER (WHERE part = 0)::cdp.activity,
                                                 max(a::text) FILTER (WHERE part = 1)::cdp.activity),
                              max(a::text) FILTER (WHERE part = 2)::cdp.activity) AS a
    FROM parts GROUP BY 1),
  whole AS (SELECT pid, cdp.activity_agg(event, ts, iv) AS a FROM ev GROUP BY 1)
  SELECT count(*) FROM whole w FULL JOIN merged m USING (pid) WHERE w.a::text IS DISTINCT FROM m.a::text"

"${PSQL[@]}" -c "DROP SCHEMA act_oracle CASCADE" >/dev/null 2>&1
exit 0
