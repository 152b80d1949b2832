-- cdp.activity: behavioural summaries, their I/O, accessors, merge and trim.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, YMD';

CREATE TABLE act_ev (profile_id int, event text, at timestamptz, value float8);
INSERT INTO act_ev VALUES
  (1, 'order_completed', '2025-01-01 10:00:00Z', 40.5),
  (1, 'order_completed', '2025-03-02 08:00:00Z', 30),
  (1, 'order_completed', '2025-03-02 09:00:00.25Z', 50),
  (1, 'page_viewed',     '2025-03-01 23:59:59.999999Z', NULL),
  (1, 'page_viewed',     '2025-03-02 00:00:00Z', NULL),
  (1, 'page_viewed',     '2025-03-01 00:00:00Z', NULL),
  (1, 'product_added',   '2024-02-29 12:00:00Z', 0),
  (2, 'page_viewed',     '2025-06-15 12:00:00Z', NULL),
  (2, 'Ünïcode "quoted" \ name', '2025-06-15 13:00:00Z', -2.5),
  (3, NULL,              '2025-06-15 12:00:00Z', 1),   -- skipped: no name
  (3, 'page_viewed',     NULL, 1);                     -- skipped: no time
CREATE TABLE act AS
  SELECT profile_id, cdp.activity_agg(event, at, value) AS a FROM act_ev GROUP BY 1;

-- text form: JSON keyed by event name, UTC time stamps, per-day [count, sum]
SELECT profile_id, a FROM act ORDER BY 1;
-- without values every sum is 0
SELECT cdp.activity_agg(event, at) FROM act_ev WHERE profile_id = 1;

-- round trips: text, jsonb, and the empty summary
SELECT profile_id, a::text::cdp.activity::text = a::text AS text_round_trip,
       a::jsonb::text::cdp.activity::text = a::text AS jsonb_round_trip
FROM act ORDER BY 1;
SELECT jsonb_pretty(a::jsonb) FROM act WHERE profile_id = 2;
SELECT '{}'::cdp.activity, '  { }  '::cdp.activity;
-- input accepts any key order and white space, and normalizes the form
SELECT '{"b": {"days": {"2025-01-02": [2, 1.5], "2025-01-01": [1, 0]}, "last": "2025-01-02T00:00:00.5Z", "first": "2025-01-01T23:00:00Z", "count": 3, "sum": 1.5},
         "a": {"count": 1, "sum": 0, "first": "2025-01-01T00:00:00Z", "last": "2025-01-01T00:00:00Z", "days": {"2025-01-01": [1, 0]}}}'::cdp.activity;
-- exact float8 sums survive the text form
SELECT (cdp.activity_agg('x', '2025-01-01Z', v)::text::cdp.activity)::text
FROM (VALUES (0.1::float8), (0.2), (1e-300), (1.7976931348623157e308 / 4)) t(v);
-- many events in random order: sorted, compacted buckets (input validates
-- the order, so the text round trip proves it)
SELECT a::text::cdp.activity::text = a::text AS shuffled_round_trip,
       cdp.event_count(a, 'e0') + cdp.event_count(a, 'e1') + cdp.event_count(a, 'e2') AS n,
       cdp.active_days(a) AS days, cdp.event_sum(a, 'e1') AS e1_sum
FROM (SELECT cdp.activity_agg('e' || (i % 3), '2024-01-01Z'::timestamptz + make_interval(hours => (i * 7919) % 8760), i % 3)
      AS a FROM generate_series(1, 5000) i) s;
-- a group large enough to be compacted while it is built (a run of one
-- event on one day folds into two rows) keeps exact per-day counts and
-- sums, first and last time stamps, whatever the input order
CREATE TABLE act_big AS
  SELECT 'e' || (i % 3) AS e,
         '2024-01-01Z'::timestamptz + make_interval(mins => (i * 7919) % 525600) AS t,
         (i % 7)::float8 AS v
  FROM generate_series(1, 20000) i;
WITH s AS (SELECT cdp.activity_agg(e, t, v) AS a
           FROM (SELECT * FROM act_big ORDER BY md5(t::text || e)) x),
o AS (SELECT e, date_trunc('day', t) AS d, count(*) AS n, sum(v) AS sv,
             min(min(t)) OVER (PARTITION BY e) AS first_t,
             max(max(t)) OVER (PARTITION BY e) AS last_t
      FROM act_big GROUP BY 1, 2)
SELECT count(*) AS cells, sum(n) AS events,
       count(*) FILTER (WHERE cdp.event_count(s.a, o.e, o.d, o.d + interval '1 day') <> o.n
                           OR cdp.event_sum(s.a, o.e, o.d, o.d + interval '1 day') <> o.sv
                           OR cdp.first_seen(s.a, o.e) <> o.first_t
                           OR cdp.last_seen(s.a, o.e) <> o.last_t) AS wrong,
       bool_and(cdp.active_days(s.a, o.e) = (SELECT count(*) FROM o o2 WHERE o2.e = o.e)) AS days_ok
FROM s, o;
DROP TABLE act_big;
-- a NULL aggregate input set gives NULL
SELECT cdp.activity_agg(event, at) IS NULL AS no_rows FROM act_ev WHERE false;
SELECT cdp.activity_agg(event, at) IS NULL AS only_null_rows FROM act_ev WHERE profile_id = 3;

-- accessors: totals
SELECT e, cdp.event_count(a, e) AS n, cdp.event_sum(a, e) AS s,
       cdp.first_seen(a, e) AS first, cdp.last_seen(a, e) AS last,
       cdp.active_days(a, e) AS days
FROM act, unnest(ARRAY['order_completed', 'page_viewed', 'product_added', 'nope', '']) e
WHERE profile_id = 1 ORDER BY e;
SELECT cdp.first_seen(a), cdp.last_seen(a), cdp.active_days(a) FROM act WHERE profile_id = 1;
SELECT * FROM cdp.events((SELECT a FROM act WHERE profile_id = 1));
SELECT * FROM cdp.events((SELECT a FROM act WHERE profile_id = 2));
SELECT count(*) AS no_rows FROM cdp.events('{}');
SELECT cdp.first_seen('{}') IS NULL AS empty_first, cdp.last_seen('{}') IS NULL AS empty_last,
       cdp.active_days('{}') AS empty_days, cdp.event_count('{}', 'x') AS empty_count;
-- STRICT: NULL in, NULL out
SELECT cdp.event_count(NULL, 'x') IS NULL AS a, cdp.event_count(a, NULL) IS NULL AS b,
       cdp.event_count(a, 'page_viewed', NULL, now()) IS NULL AS c
FROM act WHERE profile_id = 1;

-- windows [since, until) at UTC-day granularity.  order_completed: 1 on
-- 2025-01-01, 2 on 2025-03-02; page_viewed: 2 on 2025-03-01, 1 on 2025-03-02.
SELECT since, until,
       cdp.event_count(a, 'order_completed', since, until) AS orders,
       cdp.event_sum(a, 'order_completed', since, until) AS revenue,
       cdp.event_count(a, 'page_viewed', since, until) AS views,
       cdp.active_days(a, 'page_viewed', since, until) AS view_days,
       cdp.active_days(a, since, until) AS any_days
FROM act, (VALUES
  ('2025-03-01 00:00Z'::timestamptz, '2025-03-02 00:00Z'::timestamptz),  -- exactly 1 March
  ('2025-03-02 00:00Z', '2025-03-03 00:00Z'),                            -- exactly 2 March
  ('2025-03-01 00:00Z', '2025-03-01 00:00:00.000001Z'),                  -- touches 1 March only
  ('2025-03-01 23:59:59.999999Z', '2025-03-02 00:00Z'),                  -- last microsecond of 1 March
  ('2025-03-01 12:00Z', '2025-03-02 12:00Z'),                            -- partial days count whole
  ('2025-03-02 00:00Z', '2025-03-02 00:00Z'),                            -- empty window
  ('2025-03-03 00:00Z', '2025-03-01 00:00Z'),                            -- reversed: empty
  ('-infinity', '2025-03-01 00:00Z'),
  ('2025-01-01 00:00Z', 'infinity'),
  ('-infinity', 'infinity'),
  ('infinity', 'infinity')) w(since, until)
WHERE profile_id = 1;
-- since only: open-ended
SELECT cdp.event_count(a, 'order_completed', '2025-03-02 23:59Z') AS orders_from_2_march,
       cdp.event_sum(a, 'order_completed', '2025-01-02 00:00Z') AS revenue_after_new_year,
       cdp.active_days(a, 'page_viewed', '2025-03-02Z') AS view_days,
       cdp.active_days(a, '2025-01-01 10:00Z'::timestamptz) AS any_days,
       -- an untyped literal resolves to the event-name form
       cdp.active_days(a, '2025-01-01 10:00Z') AS event_named_like_a_date
FROM act WHERE profile_id = 1;

-- leap day: the bucket of 2024-02-29 and windows around it
SELECT cdp.event_count(a, 'product_added', '2024-02-29Z', '2024-03-01Z') AS on_leap_day,
       cdp.event_count(a, 'product_added', '2024-02-28Z', '2024-02-29Z') AS day_before,
       cdp.event_count(a, 'product_added', '2024-03-01Z', '2024-03-02Z') AS day_after,
       cdp.event_count(a, 'product_added', '2024-02-29 23:59:59Z', '2024-03-01Z') AS last_second
FROM act WHERE profile_id = 1;
SELECT '{"x": {"count": 1, "sum": 0, "first": "2024-02-29T12:00:00Z", "last": "2024-02-29T12:00:00Z", "days": {"2024-02-29": [1, 0]}}}'::cdp.activity;

-- did / did_not: [as_of - within, as_of), no lower bound without within
SELECT cdp.did(a, 'order_completed') AS ever,
       cdp.did(a, 'order_completed', 3) AS three_ever,
       cdp.did(a, 'order_completed', 4) AS four_ever,
       cdp.did(a, 'order_completed', 2, '1 day', '2025-03-03 00:00Z') AS two_on_2_march,
       cdp.did(a, 'order_completed', 1, '1 day', '2025-03-02 00:00Z') AS one_on_1_march,
       cdp.did(a, 'order_completed', as_of => '2025-01-01 00:00Z') AS before_first_day,
       cdp.did(a, 'order_completed', as_of => '2025-01-01 00:00:01Z') AS first_day_touched,
       cdp.did_not(a, 'order_completed', within => '30 days', as_of => '2025-02-15Z') AS none_in_30d,
       cdp.did_not(a, 'nope') AS never_nope,
       cdp.did(a, 'nope', 0) AS zero_is_always_true
FROM act WHERE profile_id = 1;
-- NULL within: no lower bound; any other NULL argument gives NULL
SELECT cdp.did(a, 'order_completed', 3, NULL, '2025-03-03Z') AS no_lower_bound,
       cdp.did_not(a, 'order_completed', 3, NULL, '2025-03-03Z') AS not_no_lower_bound,
       cdp.did(NULL, 'order_completed') IS NULL AS null_summary,
       cdp.did(a, NULL) IS NULL AS null_event,
       cdp.did(a, 'order_completed', NULL) IS NULL AS null_at_least,
       cdp.did_not(a, 'order_completed', 1, '1 day', NULL) IS NULL AS null_as_of
FROM act WHERE profile_id = 1;
-- the window changes from row to row: each row gets its own
SELECT within, d, cdp.did(a, 'order_completed', 1, within::interval, d) AS did,
       cdp.event_count(a, 'order_completed', d - within::interval, d) AS n
FROM act, (VALUES ('1 day', timestamptz '2025-03-03Z'), ('1 day', '2025-03-02Z'),
                  ('2 days', '2025-03-02Z'), ('1 day', '2025-01-02Z'), ('1 day', '2025-01-02Z'),
                  ('1 mon', '2025-02-01Z'), ('1 mon', '2025-02-02Z'), ('1 year', 'infinity')) v(within, d)
WHERE profile_id = 1;

-- a session time zone with DST: within is calendar arithmetic in that zone,
-- the window is then widened to whole UTC days.  Amsterdam moved to summer
-- time on 2025-03-30 at 02:00 local (01:00 UTC).
SET TimeZone = 'Europe/Amsterdam';
CREATE TABLE act_dst AS
  SELECT cdp.activity_agg('visit', t) AS a
  FROM (VALUES ('2025-03-28 22:30:00Z'::timestamptz),  -- 23:30 CET on 28 March
               ('2025-03-29 23:30:00Z'),               -- 00:30 CET on 30 March
               ('2025-03-30 01:30:00Z'),               -- 03:30 CEST on 30 March
               ('2025-03-30 22:30:00Z')) t(t);         -- 00:30 CEST on 31 March
SELECT cdp.first_seen(a), cdp.last_seen(a) FROM act_dst;
-- Row 1: '1 day' before local midnight of 31 March is local midnight of 30
-- March, 23 hours earlier; the window [29 March 23:00Z, 30 March 22:00Z)
-- overlaps the UTC days 29 and 30 March, which hold 3 visits (the one at
-- 00:30 CEST on 31 March lies on UTC day 30 March).  Bounds at UTC midnight
-- are exact; bounds at local midnight widen to the UTC days they touch.
SELECT as_of, as_of - interval '1 day' AS since,
       cdp.event_count(a, 'visit', as_of - interval '1 day', as_of) AS visits,
       cdp.did(a, 'visit', 3, '1 day', as_of) AS three_visits
FROM act_dst, (VALUES ('2025-03-31 00:00 Europe/Amsterdam'::timestamptz),
                      ('2025-03-30 00:00 Europe/Amsterdam'),
                      ('2025-03-31 02:00 Europe/Amsterdam')) v(as_of);
-- the same instants give the same answers whatever the session time zone
SET TimeZone = 'America/New_York';
SELECT cdp.event_count(a, 'visit', '2025-03-30 00:00 Europe/Amsterdam', '2025-03-31 00:00 Europe/Amsterdam') AS visits,
       cdp.active_days(a, 'visit') AS days, cdp.first_seen(a) AS first_in_new_york
FROM act_dst;
SET TimeZone = 'UTC';
SELECT cdp.event_count(a, 'visit', '2025-03-30 00:00 Europe/Amsterdam', '2025-03-31 00:00 Europe/Amsterdam') AS visits_utc
FROM act_dst;

-- merge laws: any split of the events merges to the summary of all
CREATE TABLE act_parts AS
  SELECT profile_id, part, cdp.activity_agg(event, at, value) AS a
  FROM (SELECT *, (row_number() OVER (ORDER BY at, event)) % 3 AS part FROM act_ev) s
  GROUP BY 1, 2;
SELECT p.profile_id,
       cdp.activity_merge(cdp.activity_merge(x.a, y.a), z.a)::text = w.a::text AS left_assoc,
       cdp.activity_merge(x.a, cdp.activity_merge(y.a, z.a))::text = w.a::text AS right_assoc,
       cdp.activity_merge(z.a, cdp.activity_merge(x.a, y.a))::text = w.a::text AS commuted,
       cdp.activity_merge(w.a, '{}')::text = w.a::text AS empty_identity,
       cdp.activity_merge(w.a, NULL)::text = w.a::text AS null_identity
FROM (SELECT DISTINCT profile_id FROM act_ev WHERE profile_id = 1) p
JOIN act w USING (profile_id)
JOIN act_parts x ON x.profile_id = p.profile_id AND x.part = 0
JOIN act_parts y ON y.profile_id = p.profile_id AND y.part = 1
JOIN act_parts z ON z.profile_id = p.profile_id AND z.part = 2;
SELECT cdp.activity_merge(NULL, NULL) IS NULL AS both_null;
-- merging a summary with itself doubles counts and sums, keeps first/last
SELECT cdp.activity_merge(a, a) FROM act WHERE profile_id = 1;

-- incremental maintenance recipe
CREATE TABLE act_store (profile_id int PRIMARY KEY, a cdp.activity);
INSERT INTO act_store AS t
  SELECT profile_id, cdp.activity_agg(event, at, value) FROM act_ev WHERE at < '2025-03-02Z' GROUP BY 1
  ON CONFLICT (profile_id) DO UPDATE SET a = cdp.activity_merge(t.a, excluded.a);
INSERT INTO act_store AS t
  SELECT profile_id, cdp.activity_agg(event, at, value) FROM act_ev WHERE at >= '2025-03-02Z' GROUP BY 1
  ON CONFLICT (profile_id) DO UPDATE SET a = cdp.activity_merge(t.a, excluded.a);
SELECT s.profile_id, s.a::text = w.a::text AS incremental_equals_full
FROM act_store s JOIN act w USING (profile_id) ORDER BY 1;

-- trim: buckets of days ending at or before "before" fold into the totals
SELECT cdp.activity_trim(a, '2025-03-01 12:00Z') AS trimmed FROM act WHERE profile_id = 1;
SELECT t::text::cdp.activity::text = t::text AS trimmed_round_trip,
       cdp.event_count(t, 'order_completed') AS total_kept,
       cdp.event_sum(t, 'order_completed') AS sum_kept,
       cdp.first_seen(t, 'order_completed') AS first_kept,
       cdp.event_count(t, 'order_completed', '2025-03-01Z') AS after_trim,
       cdp.event_count(t, 'order_completed', '-infinity', '2025-03-05Z') AS covering_all,
       cdp.event_count(t, 'order_completed', '2025-01-01Z', '2025-03-01Z') AS covering_folded,
       cdp.event_count(t, 'order_completed', '2024-01-01Z', '2024-12-31Z') AS before_first,
       cdp.event_count(t, 'product_added') AS all_folded,
       cdp.active_days(t, 'page_viewed') AS untouched_days
FROM (SELECT cdp.activity_trim(a, '2025-03-01 12:00Z') AS t FROM act WHERE profile_id = 1) s;
-- windows that cut through folded days cannot be answered
SELECT cdp.event_count(cdp.activity_trim(a, '2025-03-01Z'), 'order_completed', '2025-01-02Z', '2025-03-05Z')
FROM act WHERE profile_id = 1;
SELECT cdp.active_days(cdp.activity_trim(a, '2025-03-01Z'), 'order_completed')
FROM act WHERE profile_id = 1;
-- trimming before the first day changes nothing; -infinity is a no-op
SELECT cdp.activity_trim(a, '2020-01-01Z')::text = a::text AS early_noop,
       cdp.activity_trim(a, '-infinity')::text = a::text AS ninf_noop,
       cdp.active_days(cdp.activity_trim(a, '2025-01-01 23:59:59Z'), 'order_completed') AS same_day_kept,
       cdp.event_count(cdp.activity_trim(a, '2025-01-02 00:00Z'), 'order_completed', '-infinity', '2025-01-02Z') AS day_folded
FROM act WHERE profile_id = 1;
SELECT t, t::text::cdp.activity::text = t::text AS round_trip
FROM (SELECT cdp.activity_trim(a, 'infinity') AS t FROM act WHERE profile_id = 2) s;
-- trim commutes with merge
SELECT cdp.activity_trim(cdp.activity_merge(x.a, y.a), '2025-03-02Z')::text =
       cdp.activity_merge(cdp.activity_trim(x.a, '2025-03-02Z'), cdp.activity_trim(y.a, '2025-03-02Z'))::text
       AS trim_merge_commute
FROM act_parts x JOIN act_parts y ON x.profile_id = y.profile_id AND x.part = 0 AND y.part = 1
WHERE x.profile_id = 1;

-- stored names: snake_case packs into 5 bits a character, names with
-- capitals or digits into 6, anything else is stored as is; every class
-- round trips and is found by name (and only by its exact name)
CREATE TABLE act_names AS
  SELECT n, '2025-01-01Z'::timestamptz + make_interval(hours => i::int) AS at
  FROM unnest(ARRAY['order_completed', 'order-completed', 'Order Completed',
                    'Step 2', 'Order-Completed', 'ordér', '', 'Ü',
                    repeat('x', 40), repeat('event_', 50), repeat('Ab9 ', 60)])
       WITH ORDINALITY AS t(n, i);
SELECT pg_column_size(cdp.activity_agg(n, at)) AS bytes, length(n) AS chars, n
FROM act_names GROUP BY n ORDER BY n COLLATE "C";
SELECT s.a::text::cdp.activity::text = s.a::text AS text_round_trip,
       s.a::jsonb::text::cdp.activity::text = s.a::text AS jsonb_round_trip,
       (SELECT array_agg(e.event ORDER BY e.event) FROM cdp.events(s.a) e)
         = (SELECT array_agg(n ORDER BY n) FROM act_names) AS events_listed,
       (SELECT bool_and(cdp.event_count(s.a, n) = 1 AND cdp.first_seen(s.a, n) = at)
        FROM act_names) AS each_found,
       cdp.event_count(s.a, 'Order_completed') AS other_case,
       cdp.event_count(s.a, 'order_complete') AS prefix,
       cdp.event_count(s.a, repeat('x', 39)) AS shorter,
       cdp.event_count(s.a, 'ordEr') AS packed_differently
FROM (SELECT cdp.activity_agg(n, at) AS a FROM act_names) s;
SELECT cdp.activity_merge(s.a, s.a)::text = d.a::text AS self_merge_is_doubled_input,
       cdp.event_count(cdp.activity_merge(s.a, s.a), 'Step 2') AS doubled
FROM (SELECT cdp.activity_agg(n, at) AS a FROM act_names) s,
     (SELECT cdp.activity_agg(n, at) AS a
      FROM (SELECT n, at FROM act_names UNION ALL SELECT n, at FROM act_names) u) d;
DROP TABLE act_names;
-- day buckets: up to 14 stored ones fit the flags byte, 15 and more take a
-- varint
SELECT nd, pg_column_size(a) AS bytes, cdp.active_days(a) AS days, cdp.event_count(a, 'e') AS n,
       a::text::cdp.activity::text = a::text AS round_trip
FROM (SELECT nd, cdp.activity_agg('e', '2025-01-01Z'::timestamptz + make_interval(days => d)) AS a
      FROM generate_series(13, 17) nd, generate_series(1, nd) d GROUP BY nd) s ORDER BY nd;
-- an event whose events all lie on one day stores no bucket (it follows
-- from the totals) unless its day sum differs from its sum by rounding
SELECT a, pg_column_size(a) AS bytes, a::text::cdp.activity::text = a::text AS round_trip,
       cdp.event_count(a, 'x', '2025-01-01Z', '2025-01-02Z') AS on_the_day,
       cdp.event_sum(a, 'x', '2025-01-01Z', '2025-01-02Z') AS sum_on_the_day,
       cdp.event_count(a, 'x', '2025-01-02Z') AS after, cdp.active_days(a, 'x') AS days
FROM (VALUES ('{"x": {"count": 2, "sum": 1.5, "first": "2025-01-01T01:00:00Z", "last": "2025-01-01T23:00:00Z", "days": {"2025-01-01": [2, 1.5]}}}'::cdp.activity),
             ('{"x": {"count": 2, "sum": 0.30000000000000004, "first": "2025-01-01T01:00:00Z", "last": "2025-01-01T23:00:00Z", "days": {"2025-01-01": [2, 0.3]}}}'),
             ('{"x": {"count": 2, "sum": 0, "first": "2025-01-01T01:00:00Z", "last": "2025-01-01T23:00:00Z", "days": {"2025-01-01": [2, 0]}}}')) t(a);
SELECT '{"x": {"count": 1, "sum": 0, "first": "2025-01-01T00:00:00Z", "last": "2025-01-01T00:00:00Z", "days": {}}}'::cdp.activity;

-- well-known event names (the Segment specs' and Google Analytics 4's) are
-- stored as their index in a list: one byte for the first 32, two for the
-- others; a name differing in any byte is packed as any other
SELECT n, pg_column_size(cdp.activity_agg(n, '2025-01-01Z')) AS bytes,
       cdp.event_count(cdp.activity_agg(n, '2025-01-01Z'), n) AS found
FROM unnest(ARRAY['page_viewed', 'Page Viewed', 'page viewed', 'purchase', 'Purchase',
                  'purchases', 'select_content', 'Screen Viewed', 'screen_viewed ']) n
GROUP BY n ORDER BY n COLLATE "C";
-- known and other names side by side: the i-th name has i events; each is
-- found with its own count, listed in byte order, and survives the text
-- round trip and a merge
CREATE TABLE act_known AS
  SELECT n, i FROM unnest(ARRAY['signed_in', 'signed_up', 'signed_out', 'Signed In', 'sign_up',
                                'login', 'signed_inx', 'signed_i', 'Signed in', 'view_item_list',
                                'view_item', 'view_items']) WITH ORDINALITY AS t(n, i);
SELECT (SELECT array_agg(e.event || ':' || e.count ORDER BY e.event COLLATE "C") FROM cdp.events(s.a) e) AS events,
       (SELECT bool_and(cdp.event_count(s.a, n) = i) FROM act_known) AS each_found,
       s.a::text::cdp.activity::text = s.a::text AS text_round_trip,
       (SELECT bool_and(cdp.event_count(cdp.activity_merge(s.a, s.a), n) = 2 * i) FROM act_known) AS merged
FROM (SELECT cdp.activity_agg(n, '2025-01-01Z'::timestamptz + make_interval(secs => g))  AS a
      FROM act_known, generate_series(1, i) g) s;
DROP TABLE act_known;

-- time stamps are stored as day offsets and times of day: the first and
-- last days the type accepts, days before 2000, events centuries apart,
-- and two events at the same microsecond (count 2, first = last)
SELECT a::text::cdp.activity::text = a::text AS round_trip,
       cdp.first_seen(a, 'a') AS first_a, cdp.last_seen(a, 'a') AS last_a,
       cdp.first_seen(a) AS first_any, cdp.last_seen(a) AS last_any,
       cdp.event_count(a, 'a', '0001-01-01Z', '0001-01-02Z') AS a_day_one,
       cdp.event_count(a, 'a', '1999-12-31Z', '2000-01-02Z') AS a_around_2000,
       cdp.event_count(a, 'b', '9999-12-31Z', 'infinity') AS b_last_day,
       cdp.event_count(a, 'c') AS c, cdp.first_seen(a, 'c') = cdp.last_seen(a, 'c') AS c_one_instant,
       cdp.active_days(a) AS days
FROM (SELECT cdp.activity_agg(e, t) AS a FROM (VALUES
  ('a', '0001-01-01 00:00:00Z'::timestamptz), ('a', '1999-12-31 23:59:59.999999Z'),
  ('a', '2000-01-01 00:00:00Z'), ('b', '9999-12-31 23:59:59.999999Z'), ('b', '9999-12-31 00:00:00Z'),
  ('c', '1970-01-01 00:00:00.000001Z'), ('c', '1970-01-01 00:00:00.000001Z')) x(e, t)) s;
-- sums: k / 10^s for s up to 6 when that gives the value back exactly,
-- else the float8 itself; every form returns the exact value
SELECT v, pg_column_size(cdp.activity_agg('x', '2025-01-01Z', v)) AS bytes,
       cdp.event_sum(cdp.activity_agg('x', '2025-01-01Z', v), 'x') = v AS exact,
       cdp.activity_agg('x', '2025-01-01Z', v)::text::cdp.activity::text
         = cdp.activity_agg('x', '2025-01-01Z', v)::text AS round_trip
FROM (VALUES (47.01::float8), (-2.5), (1), (1e15), (9007199254740992), (9007199254740993e3),
             (0.000001), (1e-7), (0.1::float8 + 0.2::float8), (1e300), (-0::float8)) t(v)
GROUP BY v ORDER BY v;
-- day sums use the same form: two days of prices, a third with a float8
SELECT a::text, pg_column_size(a) AS bytes,
       cdp.event_sum(a, 'o', '2025-01-02Z', '2025-01-03Z') AS second_day,
       cdp.event_sum(a, 'o', '2025-01-03Z') AS third_day
FROM (SELECT cdp.activity_agg('o', t, v) AS a FROM (VALUES
  ('2025-01-01 10:00Z'::timestamptz, 47.01::float8), ('2025-01-02 10:00Z', 29.27),
  ('2025-01-02 11:00Z', 0.5), ('2025-01-03 10:00Z', 1.0 / 3)) x(t, v)) s;

-- bad aggregate input
SELECT cdp.activity_agg('x', 'infinity'::timestamptz);
SELECT cdp.activity_agg('x', '0044-03-15 BC'::timestamptz);
SELECT cdp.activity_agg('x', now(), 'NaN'::float8);
SELECT cdp.activity_agg('x', now(), v) FROM (VALUES (1e308::float8), (1e308)) t(v);

-- bad text input: clear errors, never a crash
SELECT 'not json'::cdp.activity;
SELECT '[]'::cdp.activity;
SELECT '1'::cdp.activity;
SELECT '{"x": 1}'::cdp.activity;
SELECT '{"x": {"count": 1, "sum": 0, "first": "2025-01-01T00:00:00Z", "last": "2025-01-01T00:00:00Z"}}'::cdp.activity;
SELECT '{"x": {"count": 1, "sum": 0, "first": "2025-01-01T00:00:00Z", "last": "2025-01-01T00:00:00Z", "days": {"2025-01-01": [1, 0]}, "extra": 1}}'::cdp.activity;
SELECT '{"x": {"count": 1.5, "sum": 0, "first": "2025-01-01T00:00:00Z", "last": "2025-01-01T00:00:00Z", "days": {"2025-01-01": [1, 0]}}}'::cdp.activity;
SELECT '{"x": {"count": 0, "sum": 0, "first": "2025-01-01T00:00:00Z", "last": "2025-01-01T00:00:00Z", "days": {}}}'::cdp.activity;
SELECT '{"x": {"count": 1, "sum": "0", "first": "2025-01-01T00:00:00Z", "last": "2025-01-01T00:00:00Z", "days": {"2025-01-01": [1, 0]}}}'::cdp.activity;
SELECT '{"x": {"count": 1, "sum": 1e999, "first": "2025-01-01T00:00:00Z", "last": "2025-01-01T00:00:00Z", "days": {"2025-01-01": [1, 0]}}}'::cdp.activity;
SELECT '{"x": {"count": 1, "sum": 0, "first": "2025-01-01 00:00:00+00", "last": "2025-01-01T00:00:00Z", "days": {"2025-01-01": [1, 0]}}}'::cdp.activity;
SELECT '{"x": {"count": 1, "sum": 0, "first": "2025-01-01T24:00:00Z", "last": "2025-01-01T00:00:00Z", "days": {"2025-01-01": [1, 0]}}}'::cdp.activity;
SELECT '{"x": {"count": 1, "sum": 0, "first": "2023-02-29T00:00:00Z", "last": "2023-02-29T00:00:00Z", "days": {"2023-02-29": [1, 0]}}}'::cdp.activity;
SELECT '{"x": {"count": 1, "sum": 0, "first": "2025-01-01T00:00:00.1234567Z", "last": "2025-01-01T00:00:00Z", "days": {"2025-01-01": [1, 0]}}}'::cdp.activity;
SELECT '{"x": {"count": 1, "sum": 0, "first": "2025-01-02T00:00:00Z", "last": "2025-01-01T00:00:00Z", "days": {"2025-01-01": [1, 0]}}}'::cdp.activity;
SELECT '{"x": {"count": 1, "sum": 0, "first": "2025-01-01T00:00:00Z", "last": "2025-01-01T00:00:00Z", "days": {"2025-01-02": [1, 0]}}}'::cdp.activity;
SELECT '{"x": {"count": 1, "sum": 0, "first": "2025-01-01T00:00:00Z", "last": "2025-01-01T00:00:00Z", "days": {"2025-01-01": [2, 0]}}}'::cdp.activity;
SELECT '{"x": {"count": 2, "sum": 0, "first": "2025-01-01T00:00:00Z", "last": "2025-01-01T00:00:00Z", "days": {"2025-01-01": [1, 0]}}}'::cdp.activity;
SELECT '{"x": {"count": 1, "sum": 0, "first": "2025-01-01T00:00:00Z", "last": "2025-01-01T00:00:00Z", "days": {"2025-01-01": [0, 0]}}}'::cdp.activity;
SELECT '{"x": {"count": 1, "sum": 0, "first": "2025-01-01T00:00:00Z", "last": "2025-01-01T00:00:00Z", "days": {"2025-01-01": [1]}}}'::cdp.activity;
SELECT '{"x": {"count": 1, "sum": 0, "first": "2025-01-01T00:00:00Z", "last": "2025-01-01T00:00:00Z", "days": {"2025-1-1": [1, 0]}}}'::cdp.activity;
SELECT '{"x": {"count": 1, "sum": 0, "first": "2025-01-01T00:00:00Z", "last": "2025-01-01T00:00:00Z", "days": {"2025-01-01": [3000000000, 0]}}}'::cdp.activity;
SELECT '{"x": {"count": 2, "sum": 0, "first": "2024-01-01T00:00:00Z", "last": "2025-01-01T00:00:00Z", "trimmed_before": "2024-01-01", "days": {"2025-01-01": [1, 0]}}}'::cdp.activity;
SELECT '{"x": {"count": 1, "sum": 0, "first": "2025-01-01T00:00:00Z", "last": "2025-01-01T00:00:00Z", "trimmed_before": "2025-06-01", "days": {"2025-01-01": [1, 0]}}}'::cdp.activity;

-- a stored value of another format (version byte 3, the previous one) is a
-- clear error asking for a rebuild, in accessors and output alike
CREATE CAST (bytea AS cdp.activity) WITHOUT FUNCTION;
SELECT cdp.event_count('\x0300'::bytea::cdp.activity, 'x');
SELECT '\x0300'::bytea::cdp.activity::text;
SELECT '\x0400'::bytea::cdp.activity::text AS empty_format_4;
DROP CAST (bytea AS cdp.activity);

DROP TABLE act_ev, act, act_dst, act_parts, act_store;
