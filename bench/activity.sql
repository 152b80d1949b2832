-- Behavioural summaries: building one cdp.activity per profile against the
-- GROUP BY floor, and a 3-condition behavioural segment evaluated over the
-- stored summaries against plain SQL over the raw events.
-- @setup
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench_act_events, bench_act;
-- events mapped to profiles (the person behind the user_id, else the device)
CREATE TABLE bench_act_events AS
  SELECT coalesce(u.person_id, a.person_id) AS profile_id, e.event, e.ts,
         (e.properties->>'revenue')::float8 AS value
  FROM events e
  LEFT JOIN sample_truth u ON u.kind = 'user_id' AND u.value = e.user_id
  LEFT JOIN sample_truth a ON a.kind = 'anonymous_id' AND a.value = e.anonymous_id
  WHERE coalesce(u.person_id, a.person_id) IS NOT NULL;
VACUUM ANALYZE bench_act_events;
CREATE TABLE bench_act AS
  SELECT profile_id, cdp.activity_agg(event, ts, value) AS activity FROM bench_act_events GROUP BY 1;
ALTER TABLE bench_act ADD PRIMARY KEY (profile_id);
VACUUM ANALYZE bench_act;
DO $$
DECLARE
  r record;
BEGIN
  SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY pg_column_size(activity)) AS p50,
         percentile_cont(0.99) WITHIN GROUP (ORDER BY pg_column_size(activity)) AS p99,
         round(avg(pg_column_size(activity)), 1) AS mean,
         pg_size_pretty(pg_relation_size('bench_act')) AS heap,
         pg_size_pretty(pg_total_relation_size('bench_act')) AS summaries,
         pg_size_pretty(pg_total_relation_size('bench_act_events')) AS raw
    INTO r FROM bench_act;
  RAISE WARNING 'summary bytes per profile: median %, p99 %, mean %; summary heap %, % in all with the key; raw events %',
    r.p50, r.p99, r.mean, r.heap, r.summaries, r.raw;
END $$;
-- @floor SELECT profile_id, count(*) FROM events GROUP BY 1
SELECT count(n) FROM (SELECT profile_id, count(*) AS n FROM bench_act_events GROUP BY 1) s;
-- @case activity_agg(event, ts, value) GROUP BY profile
SELECT count(a) FROM (SELECT profile_id, cdp.activity_agg(event, ts, value) AS a FROM bench_act_events GROUP BY 1) s;
-- @case CREATE TABLE AS activity_agg GROUP BY profile
DROP TABLE IF EXISTS bench_act_build;
CREATE TABLE bench_act_build AS
  SELECT profile_id, cdp.activity_agg(event, ts, value) AS activity FROM bench_act_events GROUP BY 1;
-- @case segment over stored summaries (did, did, did_not)
SET TimeZone = 'UTC';
SELECT count(*) FROM bench_act
WHERE cdp.did(activity, 'order_completed', 2, '180 days', '2026-01-01Z')
  AND cdp.did(activity, 'product_added', 1, '30 days', '2026-01-01Z')
  AND cdp.did_not(activity, 'order_completed', 1, '30 days', '2026-01-01Z');
-- @case segment over raw events (GROUP BY ... HAVING count(*) FILTER)
SET TimeZone = 'UTC';
SELECT count(*) FROM (
  SELECT profile_id FROM bench_act_events GROUP BY 1
  HAVING count(*) FILTER (WHERE event = 'order_completed' AND ts >= timestamptz '2026-01-01Z' - interval '180 days' AND ts < '2026-01-01Z') >= 2
     AND count(*) FILTER (WHERE event = 'product_added' AND ts >= timestamptz '2026-01-01Z' - interval '30 days' AND ts < '2026-01-01Z') >= 1
     AND count(*) FILTER (WHERE event = 'order_completed' AND ts >= timestamptz '2026-01-01Z' - interval '30 days' AND ts < '2026-01-01Z') = 0) s;
-- @case scan of the stored summaries (count(*))
SELECT count(*) FROM bench_act;
-- @case floor, serial plan
SET max_parallel_workers_per_gather = 0;
SELECT count(n) FROM (SELECT profile_id, count(*) AS n FROM bench_act_events GROUP BY 1) s;
-- @case activity_agg GROUP BY profile, serial plan
SET max_parallel_workers_per_gather = 0;
SELECT count(a) FROM (SELECT profile_id, cdp.activity_agg(event, ts, value) AS a FROM bench_act_events GROUP BY 1) s;
-- @case segment over stored summaries, serial plan
SET max_parallel_workers_per_gather = 0;
SET TimeZone = 'UTC';
SELECT count(*) FROM bench_act
WHERE cdp.did(activity, 'order_completed', 2, '180 days', '2026-01-01Z')
  AND cdp.did(activity, 'product_added', 1, '30 days', '2026-01-01Z')
  AND cdp.did_not(activity, 'order_completed', 1, '30 days', '2026-01-01Z');
-- @case segment over raw events, serial plan
SET max_parallel_workers_per_gather = 0;
SET TimeZone = 'UTC';
SELECT count(*) FROM (
  SELECT profile_id FROM bench_act_events GROUP BY 1
  HAVING count(*) FILTER (WHERE event = 'order_completed' AND ts >= timestamptz '2026-01-01Z' - interval '180 days' AND ts < '2026-01-01Z') >= 2
     AND count(*) FILTER (WHERE event = 'product_added' AND ts >= timestamptz '2026-01-01Z' - interval '30 days' AND ts < '2026-01-01Z') >= 1
     AND count(*) FILTER (WHERE event = 'order_completed' AND ts >= timestamptz '2026-01-01Z' - interval '30 days' AND ts < '2026-01-01Z') = 0) s;
-- @case segment over stored summaries, serial plan, pooled connection
SET max_parallel_workers_per_gather = 0;
SET TimeZone = 'UTC';
\timing off
SELECT count(*) FROM bench_act WHERE activity IS NOT NULL;
\timing on
SELECT count(*) FROM bench_act
WHERE cdp.did(activity, 'order_completed', 2, '180 days', '2026-01-01Z')
  AND cdp.did(activity, 'product_added', 1, '30 days', '2026-01-01Z')
  AND cdp.did_not(activity, 'order_completed', 1, '30 days', '2026-01-01Z');
-- @case segment over raw events, serial plan, pooled connection
SET max_parallel_workers_per_gather = 0;
SET TimeZone = 'UTC';
\timing off
SELECT count(*) FROM bench_act_events WHERE event IS NOT NULL;
\timing on
SELECT count(*) FROM (
  SELECT profile_id FROM bench_act_events GROUP BY 1
  HAVING count(*) FILTER (WHERE event = 'order_completed' AND ts >= timestamptz '2026-01-01Z' - interval '180 days' AND ts < '2026-01-01Z') >= 2
     AND count(*) FILTER (WHERE event = 'product_added' AND ts >= timestamptz '2026-01-01Z' - interval '30 days' AND ts < '2026-01-01Z') >= 1
     AND count(*) FILTER (WHERE event = 'order_completed' AND ts >= timestamptz '2026-01-01Z' - interval '30 days' AND ts < '2026-01-01Z') = 0) s;
-- @compare activity_agg(event, ts, value) GROUP BY profile | SELECT profile_id, count(*) FROM events GROUP BY 1
-- @compare activity_agg GROUP BY profile, serial plan | floor, serial plan
-- @compare segment over stored summaries (did, did, did_not) | segment over raw events (GROUP BY ... HAVING count(*) FILTER)
-- @compare segment over stored summaries, serial plan | segment over raw events, serial plan
-- @compare segment over stored summaries, serial plan, pooled connection | segment over raw events, serial plan, pooled connection
-- @note goal: building within 3x of the floor; the segment over summaries at least 10x faster than over raw events
-- @note the serial-plan cases show the work itself; on 2 cores the parallel plans add worker start-up, page faults in new processes and a leader that finalizes every group alone
-- @note both segment queries use windows bounded at UTC midnight, where the summaries are exact: they return the same count
-- @note every timed statement runs in a new connection, whose backend maps the shared buffers it reads page by page; the pooled-connection cases read their table once, untimed, in the same connection first, as a connection pool or a BI tool holding its connection would have (on a VM where a page fault is slow, the difference is large)
-- @note sizes: printed by the set-up (summary bytes per profile, median, p99 and mean; the summary table's heap and its total with the key; raw events; see doc/activity.md)
-- @setup
DROP TABLE IF EXISTS bench_act_build;
