-- Maintained profile view: golden-record traits and activity summaries per stitched profile
-- Trait and event feeds are resolved through the managed identity graph of
-- the previous step into cdp.profile_traits / cdp.profile_activity, the
-- tables behind cdp.profile_view that segment predicates read.
SET client_min_messages = warning;
DO $$ BEGIN PERFORM cdp.drop_feed(name) FROM cdp.profile_feeds WHERE name IN ('crm', 'events', 'dmp'); END $$;

SELECT cdp.set_trait_rules('{"email": "priority", "country": "most_frequent", "audiences": "union",
                             "first_name": "latest", "last_name": "latest"}') IS NOT NULL AS rules_set;
SELECT cdp.add_trait_feed('crm', $$
  SELECT 'user_id' AS kind, user_id AS value,
         jsonb_build_object('email', cdp.normalize_email(email, true), 'country', country,
                            'first_name', first_name, 'last_name', last_name) AS attributes,
         updated_at AS at, CASE source_system WHEN 'shop' THEN 2 ELSE 1 END AS priority
  FROM crm_contacts WHERE user_id IS NOT NULL $$);
SELECT cdp.add_trait_feed('dmp', $$
  SELECT 'cookie_id' AS kind, cookie_id AS value, jsonb_build_object('audiences', audience_tags) AS attributes,
         first_seen AS at FROM dmp_cookies $$);
SELECT cdp.add_event_feed('events', $$
  SELECT CASE WHEN user_id IS NULL THEN 'anonymous_id' ELSE 'user_id' END AS kind,
         coalesce(user_id, anonymous_id) AS value, event, ts AS at,
         (properties->>'revenue')::float8 AS amount
  FROM events $$);

\echo '== refresh: every feed row resolved to its current profile'
SELECT * FROM cdp.refresh_profiles();

\echo '== the profile with most orders, as segments see it'
SELECT profile_id, traits, cdp.event_count(activity, 'order_completed') AS orders,
       round(cdp.event_sum(activity, 'order_completed')::numeric, 2) AS revenue, cdp.last_seen(activity)
FROM cdp.profile_view
ORDER BY cdp.event_count(activity, 'order_completed') DESC, profile_id LIMIT 1;

\echo '== countries of golden records'
SELECT traits->>'country' AS country, count(*) FROM cdp.profile_view
WHERE traits ? 'country' GROUP BY 1 ORDER BY 2 DESC LIMIT 5;

\echo '== a second refresh with nothing new writes nothing'
SELECT traits_changed, activity_changed, traits_removed, activity_removed FROM cdp.refresh_profiles();

-- the segments step fills the profile tables by hand with its own ids
SELECT cdp.drop_feed('crm'), cdp.drop_feed('dmp'), cdp.drop_feed('events');
