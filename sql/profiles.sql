-- Maintained profile view: trait and event feeds resolved through the
-- identity graph into cdp.profile_traits / cdp.profile_activity.
SET client_min_messages = warning;
CREATE TABLE pf_crm (user_id text, email text, updated_at timestamptz, country text,
                     ltv numeric, prio int);
CREATE TABLE pf_events (user_id text, anonymous_id text, event text, ts timestamptz, revenue float8);
CREATE TABLE pf_dmp (email text, segment text, seen timestamptz);
-- profiles shown by their identifiers, ids vary with earlier tests
CREATE VIEW pf_who AS
  SELECT profile_id, string_agg(kind || ':' || value, ' ' ORDER BY kind, value) AS who
  FROM cdp.identifiers GROUP BY profile_id;

SELECT cdp.add_source('pf_crm', $$SELECT user_id, email, updated_at AS at FROM pf_crm$$) IS NOT NULL AS ok;
SELECT cdp.add_source('pf_events', $$SELECT user_id, anonymous_id, ts AS at FROM pf_events$$) IS NOT NULL AS ok;

INSERT INTO pf_crm VALUES
  ('u1', 'ann@example.com', '2026-01-01 10:00+00', 'NL', 10, 1),
  ('u1', 'ann@example.com', '2026-01-03 10:00+00', 'DE', 5, 1),
  ('u2', 'bob@example.com', '2026-01-02 10:00+00', 'FR', 7.5, 2),
  ('u2', 'bob@example.com', '2026-01-04 10:00+00', 'BE', NULL, 1),
  ('u3', 'carl@example.com', '2026-01-02 10:00+00', 'NL', 1, 1);
INSERT INTO pf_events VALUES
  ('u1', 'a1', 'order_completed', '2026-01-02 09:00+00', 40),
  (NULL, 'a1', 'product_added', '2026-01-02 08:00+00', NULL),
  ('u2', NULL, 'order_completed', '2026-01-05 09:00+00', 20),
  ('u2', NULL, 'order_completed', '2026-01-06 09:00+00', 22.5),
  (NULL, 'a2', 'page_viewed', '2026-01-03 12:00+00', NULL);
-- an email the graph does not know: unresolved
INSERT INTO pf_dmp VALUES ('ann@example.com', 'auto', '2026-01-05 00:00+00'),
                          ('zed@example.com', 'auto', '2026-01-05 00:00+00');
SELECT profiles_created FROM cdp.refresh_identities();
SELECT who FROM pf_who ORDER BY who;

-- feeds
SELECT cdp.set_trait_rules('{"ltv": "sum", "segments": "union", "country": "priority"}') ? 'ltv' AS rules_set;
SELECT cdp.add_trait_feed('crm', $$
  SELECT 'user_id' AS kind, user_id AS value,
         jsonb_build_object('country', country, 'ltv', ltv) AS attributes,
         updated_at AS at, prio AS priority
  FROM pf_crm$$);
SELECT cdp.add_trait_feed('dmp', $$
  SELECT 'email'::varchar AS kind, email AS value, jsonb_build_object('segments', segment) AS attributes,
         seen AS at FROM pf_dmp$$);
SELECT cdp.add_event_feed('web', $$
  SELECT CASE WHEN user_id IS NULL THEN 'anonymous_id' ELSE 'user_id' END AS kind,
         coalesce(user_id, anonymous_id) AS value, event, ts AS at, revenue AS amount
  FROM pf_events$$);
SELECT name, feed, owner, search_path FROM cdp.profile_feeds ORDER BY name;

SELECT * FROM cdp.refresh_profiles();
SELECT w.who, t.traits FROM cdp.profile_traits t JOIN pf_who w USING (profile_id) ORDER BY w.who;
SELECT w.who, a.activity FROM cdp.profile_activity a JOIN pf_who w USING (profile_id) ORDER BY w.who;
SELECT name, last_rows_read FROM cdp.profile_feeds ORDER BY name;
-- nothing changed: nothing written
SELECT traits_changed, activity_changed, traits_removed, activity_removed FROM cdp.refresh_profiles();

-- against plain SQL: country of the highest priority, then the latest;
-- ltv summed; events counted and summed per resolved profile
WITH obs AS (
  SELECT i.profile_id, c.* FROM pf_crm c
  JOIN cdp.identifiers i ON i.kind = 'user_id' AND i.value = c.user_id
), oracle AS (
  SELECT p.profile_id,
         (SELECT o.country FROM obs o WHERE o.profile_id = p.profile_id
          ORDER BY o.prio DESC, o.updated_at DESC LIMIT 1) AS country,
         (SELECT sum(o.ltv) FROM obs o WHERE o.profile_id = p.profile_id) AS ltv
  FROM cdp.profiles p
)
SELECT count(*) AS profiles,
       count(*) FILTER (WHERE t.traits->>'country' IS NOT DISTINCT FROM o.country
                          AND (t.traits->>'ltv')::numeric IS NOT DISTINCT FROM o.ltv) AS traits_agree
FROM oracle o JOIN cdp.profile_traits t USING (profile_id);
WITH ev AS (
  SELECT coalesce(cdp.resolve('user_id', e.user_id), cdp.resolve('anonymous_id', e.anonymous_id)) AS profile_id,
         e.* FROM pf_events e
), oracle AS (
  SELECT profile_id, count(*) AS n, count(*) FILTER (WHERE event = 'order_completed') AS orders,
         coalesce(sum(revenue) FILTER (WHERE event = 'order_completed'), 0) AS revenue, max(ts) AS last
  FROM ev GROUP BY profile_id
)
SELECT count(*) AS profiles,
       count(*) FILTER (WHERE cdp.event_count(v.activity, 'order_completed') = o.orders
                          AND cdp.event_sum(v.activity, 'order_completed') = o.revenue
                          AND (SELECT sum(count) FROM cdp.events(v.activity)) = o.n
                          AND cdp.last_seen(v.activity) = o.last) AS activity_agrees,
       (SELECT count(*) FROM cdp.profile_activity) AS activity_rows
FROM oracle o JOIN cdp.profile_view v USING (profile_id);
-- the view covers every stitched profile
SELECT (SELECT count(*) FROM cdp.profile_view) = (SELECT count(*) FROM cdp.profiles) AS every_profile;

-- a segment over cdp.profile_view sees the fed data
SELECT cdp.define_segment('pf_buyers', $$cdp.event_count(activity, 'order_completed') >= 1
                                         AND traits->>'country' <> 'NL'$$) > 0 AS defined;
SELECT segment, status, members, entered, exited FROM cdp.refresh_segments(ARRAY['pf_buyers']);
SELECT cdp.size(members) AS members,
       members OPERATOR(cdp.=) (SELECT cdp.audience_agg(profile_id) FROM cdp.profile_view
                                WHERE cdp.event_count(activity, 'order_completed') >= 1
                                  AND traits->>'country' <> 'NL') AS same_as_plain_sql
FROM cdp.segments WHERE name = 'pf_buyers';

-- a merge in the graph: a2 (anonymous) logs in as u3; traits and activity
-- move to the surviving id, the retired id leaves both tables
SELECT cdp.resolve('anonymous_id', 'a2') AS p_a2, cdp.resolve('user_id', 'u3') AS p_u3 \gset
INSERT INTO pf_events VALUES ('u3', 'a2', 'order_completed', '2026-01-07 09:00+00', 99);
UPDATE pf_crm SET country = 'SE' WHERE user_id = 'u3';
SELECT profiles_merged FROM cdp.refresh_identities();
SELECT cdp.resolve('anonymous_id', 'a2') = least(:p_a2, :p_u3) AS smaller_survives,
       cdp.resolve('user_id', 'u3') = least(:p_a2, :p_u3) AS same_profile;
SELECT profiles, traits_changed, activity_changed, traits_removed, activity_removed FROM cdp.refresh_profiles();
SELECT t.traits, cdp.event_count(a.activity, 'page_viewed') AS page_views,
       cdp.event_sum(a.activity, 'order_completed') AS revenue
FROM cdp.profile_traits t JOIN cdp.profile_activity a USING (profile_id)
WHERE profile_id = least(:p_a2, :p_u3);
SELECT (SELECT count(*) FROM cdp.profile_traits WHERE profile_id = greatest(:p_a2, :p_u3)) +
       (SELECT count(*) FROM cdp.profile_activity WHERE profile_id = greatest(:p_a2, :p_u3)) AS retired_rows;
SELECT segment, status, members, entered, exited FROM cdp.refresh_segments(ARRAY['pf_buyers']);
SELECT w.who, c.change FROM cdp.segment_changes c JOIN pf_who w USING (profile_id)
WHERE c.segment = 'pf_buyers' ORDER BY c.refresh_id, w.who;
SELECT cdp.drop_segment('pf_buyers');

-- bad feeds: clear errors at registration, nothing stored
SELECT cdp.add_trait_feed('crm', $$SELECT 'user_id' AS kind, user_id AS value, '{}'::jsonb AS attributes, updated_at AS at FROM pf_crm$$);
SELECT cdp.add_trait_feed('bad', $$SELECT 'user_id' AS kind, user_id AS value, updated_at AS at FROM pf_crm$$);
SELECT cdp.add_trait_feed('bad', $$SELECT 'user_id' AS kind, user_id AS value, '{}'::jsonb AS attributes, updated_at::text AS at FROM pf_crm$$);
SELECT cdp.add_trait_feed('bad', $$SELECT 'user_id' AS kind, user_id AS value, '{}'::json AS attributes, updated_at AS at FROM pf_crm$$);
SELECT cdp.add_trait_feed('bad', $$SELECT 'user_id' AS kind, user_id AS value, '{}'::jsonb AS attributes, updated_at AS at, prio::bigint AS priority FROM pf_crm$$);
SELECT cdp.add_trait_feed('bad', $$SELECT 'user_id' AS kind, user_id AS value, '{}'::jsonb AS attributes, updated_at AS at, country FROM pf_crm$$);
SELECT cdp.add_trait_feed('bad', $$SELECT 'user_id' AS kind, user_id AS value, '{}'::jsonb AS attributes, updated_at AS at, 'x' AS event FROM pf_crm$$);
SELECT cdp.add_trait_feed('bad', $$SELECT 'user_id' AS kind, user_id AS value, user_id AS value, '{}'::jsonb AS attributes, updated_at AS at FROM pf_crm$$);
SELECT cdp.add_event_feed('bad', $$SELECT 'user_id' AS kind, user_id AS value, event, ts AS at, revenue::numeric AS amount FROM pf_events$$);
SELECT cdp.add_event_feed('bad', $$SELECT 'user_id' AS kind, user_id AS value, ts AS at FROM pf_events$$);
SELECT cdp.add_event_feed('bad', $$SELECT 'user_id' AS kind, user_id AS value, event, ts AS at FROM pf_nowhere$$);
SELECT cdp.add_event_feed('bad', NULL);
-- injection and writes cannot get through the wrapper
SELECT cdp.add_event_feed('bad', $$SELECT 1) x; DROP TABLE pf_events; --$$);
SELECT cdp.add_event_feed('bad', $$WITH d AS (DELETE FROM pf_events RETURNING *) SELECT 'user_id' AS kind, user_id AS value, event, ts AS at FROM d$$);
SELECT cdp.add_event_feed('bad', $$DELETE FROM pf_events RETURNING 'user_id' AS kind, user_id AS value, event, ts AS at$$);
SELECT count(*) AS events_intact FROM pf_events;
SELECT cdp.drop_feed('nope');
SELECT cdp.set_trait_rules('{"country": "newest"}');
SELECT cdp.set_trait_rules('["latest"]');
SELECT count(*) AS feeds, (SELECT trait_rules->>'country' FROM cdp.profile_settings) AS rule
FROM cdp.profile_feeds;
SELECT * FROM cdp.profile_read_feed('nope');

-- a feed failing at refresh fails the whole refresh: tables unchanged
SELECT md5(string_agg(profile_id || traits::text, ';' ORDER BY profile_id)) AS before FROM cdp.profile_traits \gset
CREATE TABLE pf_div (n int);
INSERT INTO pf_div VALUES (0);
SELECT cdp.add_trait_feed('zz_div', $$SELECT 'user_id' AS kind, 'u1' AS value, jsonb_build_object('x', 1 / n) AS attributes, now() AS at FROM pf_div$$);
UPDATE pf_crm SET country = 'XX';
SELECT * FROM cdp.refresh_profiles();
SELECT md5(string_agg(profile_id || traits::text, ';' ORDER BY profile_id)) = :'before' AS unchanged FROM cdp.profile_traits;
SELECT cdp.drop_feed('zz_div');
DROP TABLE pf_div;

-- privileges: a feed runs as the role that registered it, whoever refreshes
CREATE ROLE regress_pf_owner;
CREATE ROLE regress_pf_other;
GRANT USAGE ON SCHEMA cdp TO regress_pf_owner, regress_pf_other;
GRANT EXECUTE ON FUNCTION cdp.profile_add_feed(text, text, text, text), cdp.profile_check_feed(text)
  TO regress_pf_owner, regress_pf_other;
GRANT SELECT, INSERT ON cdp.profile_feeds TO regress_pf_owner, regress_pf_other;
CREATE TABLE pf_private (user_id text, secret text);
INSERT INTO pf_private VALUES ('u1', 's3cret');
GRANT SELECT ON pf_private TO regress_pf_owner;
-- a role that cannot read the table cannot register a feed over it
SET ROLE regress_pf_other;
SELECT cdp.add_trait_feed('stolen', $$SELECT 'user_id' AS kind, user_id AS value, jsonb_build_object('secret', secret) AS attributes, now() AS at FROM public.pf_private$$);
-- nor read a feed through the internal reader
SELECT * FROM cdp.profile_read_feed('crm');
RESET ROLE;
SET ROLE regress_pf_owner;
SELECT cdp.add_trait_feed('private', $$SELECT 'user_id' AS kind, user_id AS value,
  jsonb_build_object('reader', current_user::text) AS attributes, '2026-01-10 00:00+00'::timestamptz AS at
  FROM public.pf_private$$);
RESET ROLE;
UPDATE pf_crm SET country = 'DE' WHERE user_id = 'u1';
-- a superuser refresh: the feed read as its owner
SELECT trait_rows FROM cdp.refresh_profiles();
SELECT traits->>'reader' AS reader FROM cdp.profile_traits WHERE profile_id = cdp.resolve('user_id', 'u1');
-- the owner loses the right: the refresh fails for that feed, not run with the caller's rights
REVOKE SELECT ON pf_private FROM regress_pf_owner;
SELECT trait_rows FROM cdp.refresh_profiles();
SELECT cdp.drop_feed('private');
SELECT trait_rows FROM cdp.refresh_profiles();

-- a feed is planned as large: at 1M profiles the default estimate of 1000
-- rows joined 10M event rows to cdp.identifiers by index probes (99 s
-- instead of one hash join)
SELECT prorows >= 1000000 AS feeds_estimated_large FROM pg_proc
WHERE oid = 'cdp.profile_read_feed(text)'::regprocedure;
EXPLAIN (COSTS OFF)
SELECT i.profile_id, count(*) FROM cdp.profile_read_feed('web') r
LEFT JOIN cdp.identifiers i ON i.kind = r.kind COLLATE "C" AND i.value = r.value COLLATE "C"
GROUP BY 1;

-- clean up: feeds, sources and graph back to empty; an empty graph empties the tables
SELECT cdp.drop_feed('crm'), cdp.drop_feed('dmp'), cdp.drop_feed('web');
SELECT cdp.set_trait_rules(NULL);
SELECT cdp.drop_source('pf_crm'), cdp.drop_source('pf_events');
TRUNCATE cdp.identifiers, cdp.identity_links, cdp.profiles, cdp.profile_lineage, cdp.identity_runs,
         cdp.identity_refusals, cdp.identity_kinds;
SELECT profiles, trait_rows, traits_removed, activity_removed FROM cdp.refresh_profiles();
SELECT (SELECT count(*) FROM cdp.profile_traits) + (SELECT count(*) FROM cdp.profile_activity) AS rows_left;
DELETE FROM cdp.profile_settings;
REVOKE ALL ON cdp.profile_feeds FROM regress_pf_owner, regress_pf_other;
REVOKE ALL ON FUNCTION cdp.profile_add_feed(text, text, text, text), cdp.profile_check_feed(text)
  FROM regress_pf_owner, regress_pf_other;
REVOKE ALL ON SCHEMA cdp FROM regress_pf_owner, regress_pf_other;
DROP ROLE regress_pf_owner, regress_pf_other;
DROP VIEW pf_who;
DROP TABLE pf_crm, pf_events, pf_dmp, pf_private;
