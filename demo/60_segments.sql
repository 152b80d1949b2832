-- Segments: definitions, two refreshes with new events in between, changes, overlaps and an export
CREATE TABLE IF NOT EXISTS demo_identity AS
  SELECT kind, value, person_id AS profile_id FROM sample_truth WHERE person_id IS NOT NULL;
SET client_min_messages = warning;

-- Activity summaries: the activity step's table when it ran, else built here.
DO $$
BEGIN
  IF to_regclass('demo_activity') IS NULL THEN
    CREATE TABLE demo_activity (profile_id bigint PRIMARY KEY, activity cdp.activity NOT NULL);
    INSERT INTO demo_activity
    SELECT coalesce(u.profile_id, a.profile_id), cdp.activity_agg(e.event, e.ts, (e.properties->>'revenue')::float8)
    FROM events e
    LEFT JOIN demo_identity u ON u.kind = 'user_id' AND u.value = e.user_id
    LEFT JOIN demo_identity a ON a.kind = 'anonymous_id' AND a.value = e.anonymous_id
    WHERE coalesce(u.profile_id, a.profile_id) IS NOT NULL
    GROUP BY 1;
  END IF;
END
$$;
TRUNCATE cdp.profile_activity;
INSERT INTO cdp.profile_activity (profile_id, activity) SELECT profile_id, activity FROM demo_activity;

-- Traits: CRM country, DMP audience tags, and (for the demo) a marketing
-- consent flag: about 1 in 12 known customers opted out.
TRUNCATE cdp.profile_traits;
INSERT INTO cdp.profile_traits (profile_id, traits)
SELECT p.profile_id,
       jsonb_strip_nulls(jsonb_build_object(
         'country', c.country,
         'customer', c.country IS NOT NULL,
         'tags', COALESCE(d.tags, '[]'::jsonb),
         'consent', CASE WHEN c.country IS NOT NULL AND p.profile_id % 12 = 5
                         THEN '{"marketing": "false"}'::jsonb END))
FROM (SELECT DISTINCT profile_id FROM demo_identity) p
LEFT JOIN (SELECT i.profile_id, max(c.country) AS country FROM crm_contacts c
           JOIN demo_identity i ON i.kind = 'user_id' AND i.value = c.user_id GROUP BY 1) c USING (profile_id)
LEFT JOIN (SELECT i.profile_id, jsonb_agg(DISTINCT t ORDER BY t) AS tags FROM dmp_cookies k
           JOIN demo_identity i ON i.kind = 'cookie_id' AND i.value = k.cookie_id
           CROSS JOIN LATERAL unnest(k.audience_tags) t GROUP BY 1) d USING (profile_id);

-- Identifiers exports read (the identity graph's cdp.identifiers replaces this)
TRUNCATE cdp.profile_identifier_map;
INSERT INTO cdp.profile_identifier_map (kind, value, profile_id)
SELECT kind, value, profile_id FROM demo_identity WHERE kind IN ('email', 'phone', 'user_id')
ON CONFLICT DO NOTHING;

\echo 'Segments, defined once; each predicate is checked when it is defined'
SELECT cdp.define_segment('repeat_buyers',
  $$event_count(activity, 'order_completed', now() - interval '90 days') >= 2$$,
  description => '2+ orders in the last 90 days');
SELECT cdp.define_segment('cart_abandoners_7d',
  $$did(activity, 'product_added', within => '7 days')
    AND did_not(activity, 'order_completed', within => '7 days')$$,
  description => 'added to cart in the last 7 days, no order since');
SELECT cdp.define_segment('lapsed_high_value',
  $$event_sum(activity, 'order_completed') >= 300
    AND last_seen(activity, 'order_completed') < now() - interval '90 days'$$,
  description => 'spent 300+ in total, no order for 90 days');
SELECT cdp.define_segment('in_market_auto_customers',
  $$traits->'tags' ? 'in_market_auto' AND (traits->>'customer')::boolean$$,
  description => 'DMP audience "in-market auto" who are known customers');
SELECT cdp.set_consent('marketing', $$traits->'consent'->>'marketing' = 'false'$$);
\echo 'A predicate that would smuggle in a statement is refused at definition:'
\set ON_ERROR_STOP 0
SELECT cdp.define_segment('evil', 'true); DROP TABLE events; --');
\set ON_ERROR_STOP 1

\echo 'Refresh 1 (what a pg_cron job runs: SELECT cron.schedule(''cdp-segments'', ''*/15 * * * *'', ''SELECT cdp.refresh_segments()''))'
SELECT segment, status, members, entered, exited, duration FROM cdp.refresh_segments();
SELECT max(last_refresh_id) AS first_refresh FROM cdp.segments \gset

-- New events arrive: 300 cart abandoners buy, 200 other customers add to cart,
-- and two repeat buyers turn out to be one person (a merge).
DROP TABLE IF EXISTS demo_new_events;
CREATE TABLE demo_new_events AS
SELECT profile_id, 'order_completed'::text AS event, now() - interval '1 hour' AS ts, 80.0::float8 AS revenue
FROM (SELECT m.profile_id FROM cdp.segment_members m WHERE m.segment = 'cart_abandoners_7d'
      ORDER BY m.profile_id LIMIT 300) a
UNION ALL
SELECT profile_id, 'product_added', now() - interval '2 hours', NULL
FROM (SELECT t.profile_id FROM cdp.profile_traits t
      WHERE (t.traits->>'customer')::boolean
        AND NOT EXISTS (SELECT FROM cdp.segment_members m
                        WHERE m.segment = 'cart_abandoners_7d' AND m.profile_id = t.profile_id)
      ORDER BY t.profile_id DESC LIMIT 200) b;
UPDATE cdp.profile_activity p
SET activity = cdp.activity_merge(p.activity, n.activity), updated_at = now()
FROM (SELECT profile_id, cdp.activity_agg(event, ts, revenue) AS activity
      FROM demo_new_events GROUP BY 1) n
WHERE n.profile_id = p.profile_id;

SELECT min(profile_id) AS survivor, max(profile_id) AS merged
FROM (SELECT profile_id FROM cdp.segment_members WHERE segment = 'repeat_buyers'
      ORDER BY profile_id LIMIT 2) two \gset
UPDATE cdp.profile_activity SET activity = cdp.activity_merge(activity,
         (SELECT activity FROM cdp.profile_activity WHERE profile_id = :merged))
WHERE profile_id = :survivor;
DELETE FROM cdp.profile_activity WHERE profile_id = :merged;
DELETE FROM cdp.profile_traits WHERE profile_id = :merged;
UPDATE cdp.profile_identifier_map SET profile_id = :survivor WHERE profile_id = :merged;
INSERT INTO cdp.profile_merges (old_profile_id, surviving_profile_id) VALUES (:merged, :survivor);

\echo 'Refresh 2'
SELECT segment, status, members, entered, exited, duration FROM cdp.refresh_segments();

\echo 'Sizes over time (cdp.segment_sizes)'
SELECT segment, refresh_id, members, entered, exited FROM cdp.segment_sizes ORDER BY segment, refresh_id;

\echo 'Overlaps between segments (profiles in both)'
SELECT a.name AS segment, b.name AS other, cdp.overlap(a.members, b.members) AS both_,
       round(cdp.jaccard(a.members, b.members)::numeric, 3) AS jaccard
FROM cdp.segments a JOIN cdp.segments b ON a.name < b.name ORDER BY 1, 2;

\echo 'Changes of refresh 2 (cdp.segment_changes); the merged profile neither exits nor re-enters'
SELECT segment, change, count(*) FROM cdp.segment_changes
WHERE refresh_id > :first_refresh GROUP BY 1, 2 ORDER BY 1, 2;
SELECT count(*) AS changes_for_merged_pair FROM cdp.segment_changes
WHERE refresh_id > :first_refresh AND profile_id IN (:survivor, :merged) AND segment = 'repeat_buyers';

\echo 'Export for a customer-match upload: hashed e-mails of repeat buyers, opted-out profiles removed'
SELECT * FROM cdp.segment_export('repeat_buyers', 'email', 'marketing') LIMIT 3;
SELECT cdp.size(s.members) AS members,
       (SELECT count(*) FROM cdp.segment_members m JOIN cdp.profile_traits t USING (profile_id)
        WHERE m.segment = s.name AND t.traits->'consent'->>'marketing' = 'false') AS opted_out,
       (SELECT count(DISTINCT profile_id) FROM cdp.segment_export(s.name, 'email', 'marketing')) AS exported_profiles
FROM cdp.segments s WHERE s.name = 'repeat_buyers';
\echo 'What a sync job sends after refresh 1: only the differences'
SELECT change, count(*) FROM cdp.segment_export_changes('repeat_buyers', 'email', :first_refresh, 'marketing')
GROUP BY 1 ORDER BY 1;
