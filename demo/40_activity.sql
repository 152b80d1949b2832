-- Behavioural summaries: one cdp.activity per profile, and segments read from them
CREATE TABLE IF NOT EXISTS demo_identity AS
  SELECT kind, value, person_id AS profile_id FROM sample_truth WHERE person_id IS NOT NULL;

-- events of known profiles: the profile of the user_id, else of the device
CREATE TEMP VIEW demo_profile_events AS
  SELECT coalesce(u.profile_id, a.profile_id) AS profile_id, e.event, e.ts,
         (e.properties->>'revenue')::float8 AS revenue
  FROM events e
  LEFT JOIN demo_identity u ON u.kind = 'user_id' AND u.value = e.user_id
  LEFT JOIN demo_identity a ON a.kind = 'anonymous_id' AND a.value = e.anonymous_id
  WHERE coalesce(u.profile_id, a.profile_id) IS NOT NULL;

SET client_min_messages = warning;
DROP TABLE IF EXISTS demo_activity;
RESET client_min_messages;
CREATE TABLE demo_activity (profile_id bigint PRIMARY KEY, activity cdp.activity NOT NULL);
INSERT INTO demo_activity
  SELECT profile_id, cdp.activity_agg(event, ts, revenue) FROM demo_profile_events GROUP BY 1;

\echo 'One profile''s summary (text form is JSON; cdp.events() lists the totals)'
SELECT profile_id, e.* FROM demo_activity, cdp.events(activity) e
WHERE profile_id = (SELECT min(profile_id) FROM demo_activity) ORDER BY e.count DESC;

\echo 'Size of the summaries against the raw events they replace'
SELECT count(*) AS profiles,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY pg_column_size(activity)) AS median_bytes,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY pg_column_size(activity)) AS p99_bytes,
       pg_size_pretty(pg_total_relation_size('demo_activity')) AS summaries,
       pg_size_pretty(pg_total_relation_size('events')) AS raw_events
FROM demo_activity;

\echo 'Behavioural segments (as of the newest event)'
SELECT date_trunc('day', max(cdp.last_seen(activity)) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 day' AS as_of
FROM demo_activity \gset
SELECT count(*) FILTER (WHERE cdp.did(activity, 'order_completed', 3, '90 days', :'as_of')) AS repeat_buyers_3_in_90d,
       count(*) FILTER (WHERE cdp.did(activity, 'product_added', 1, '7 days', :'as_of')
                          AND cdp.did_not(activity, 'order_completed', 1, '7 days', :'as_of')) AS cart_abandoners_7d,
       count(*) FILTER (WHERE cdp.last_seen(activity) < timestamptz :'as_of' - interval '60 days') AS lapsed_60d,
       count(*) FILTER (WHERE cdp.event_sum(activity, 'order_completed', timestamptz :'as_of' - interval '365 days', :'as_of') > 200) AS spent_over_200_in_a_year,
       count(*) AS all_profiles
FROM demo_activity;

\echo 'The same repeat-buyer segment from raw events, for comparison'
SELECT count(*) AS repeat_buyers_from_raw_events FROM (
  SELECT profile_id FROM demo_profile_events GROUP BY 1
  HAVING count(*) FILTER (WHERE event = 'order_completed'
                            AND ts >= timestamptz :'as_of' - interval '90 days' AND ts < :'as_of') >= 3) s;

\echo 'Incremental maintenance: merge the summary of new events into the table'
CREATE TEMP TABLE demo_new_events AS
  SELECT profile_id, 'order_completed'::text AS event, timestamptz :'as_of' - interval '1 hour' AS ts, 99.5::float8 AS revenue
  FROM demo_activity ORDER BY profile_id LIMIT 3;
INSERT INTO demo_activity AS t (profile_id, activity)
  SELECT profile_id, cdp.activity_agg(event, ts, revenue) FROM demo_new_events GROUP BY 1
  ON CONFLICT (profile_id) DO UPDATE SET activity = cdp.activity_merge(t.activity, excluded.activity);
SELECT profile_id, cdp.event_count(activity, 'order_completed') AS orders,
       cdp.last_seen(activity, 'order_completed') AS last_order
FROM demo_activity WHERE profile_id IN (SELECT profile_id FROM demo_new_events) ORDER BY 1;

\echo 'Bounding size for long-lived profiles: fold day buckets older than 180 days into the totals'
SELECT sum(pg_column_size(activity)) AS bytes_before,
       sum(pg_column_size(cdp.activity_trim(activity, timestamptz :'as_of' - interval '180 days'))) AS bytes_after_trim_180d
FROM demo_activity;
