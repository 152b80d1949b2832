-- Maintained profile view: cdp.refresh_profiles() over every feed row (CRM
-- and DMP traits, every event), against the scan floor of the same feed
-- rows and against the same golden records and summaries computed by hand
-- in one statement each (what a user would otherwise schedule), which
-- writes nothing and checks nothing.  The identity graph is a stand-in:
-- cdp.identifiers and cdp.profiles are filled from the generator's truth,
-- so the bench measures the feeds, not stitching (bench/identity.sql does).
-- @setup
SET client_min_messages = warning;
TRUNCATE cdp.identifiers, cdp.identity_links, cdp.profiles, cdp.profile_lineage, cdp.identity_runs,
         cdp.identity_refusals, cdp.identity_overrides, cdp.identity_suppressed, cdp.identity_kinds,
         cdp.identity_sources, cdp.profile_traits, cdp.profile_activity;
INSERT INTO cdp.identifiers (kind, value, profile_id, first_seen, last_seen)
SELECT kind, value, person_id, '2025-01-01', '2025-01-01' FROM sample_truth WHERE person_id IS NOT NULL;
INSERT INTO cdp.profiles (profile_id, created_at, updated_at, identifier_count)
SELECT profile_id, '2025-01-01', '2025-01-01', count(*) FROM cdp.identifiers GROUP BY 1;
VACUUM ANALYZE cdp.identifiers, cdp.profiles;
DO $$ BEGIN PERFORM cdp.drop_feed(name) FROM cdp.profile_feeds; END $$;
SELECT cdp.set_trait_rules('{"email": "priority", "country": "most_frequent", "audiences": "union",
                             "first_name": "latest", "last_name": "latest"}');
CREATE OR REPLACE VIEW bench_prof_traits AS
  SELECT 'user_id' AS kind, user_id AS value,
         jsonb_build_object('email', cdp.normalize_email(email, true), 'country', country,
                            'first_name', first_name, 'last_name', last_name) AS attributes,
         updated_at AS at, CASE source_system WHEN 'shop' THEN 2 ELSE 1 END AS priority
  FROM public.crm_contacts WHERE user_id IS NOT NULL
  UNION ALL
  SELECT 'cookie_id', cookie_id, jsonb_build_object('audiences', audience_tags), first_seen, NULL::integer
  FROM public.dmp_cookies;
CREATE OR REPLACE VIEW bench_prof_events AS
  SELECT CASE WHEN user_id IS NULL THEN 'anonymous_id' ELSE 'user_id' END AS kind,
         coalesce(user_id, anonymous_id) AS value, event, ts AS at,
         (properties->>'revenue')::float8 AS amount
  FROM public.events;
SELECT cdp.add_trait_feed('traits', 'SELECT * FROM public.bench_prof_traits');
SELECT cdp.add_event_feed('events', 'SELECT * FROM public.bench_prof_events');
-- the first refresh writes every profile; the timed ones find no change
SELECT * FROM cdp.refresh_profiles();
VACUUM ANALYZE cdp.profile_traits, cdp.profile_activity;
-- @floor count(*) over every feed row
SELECT (SELECT count(*) FROM bench_prof_traits) + (SELECT count(*) FROM bench_prof_events);
-- @case scan of every feed column (sum of lengths, no identity join)
SELECT (SELECT sum(length(value) + pg_column_size(attributes)) FROM bench_prof_traits)
     + (SELECT sum(length(value) + length(event) + coalesce(amount, 0)) FROM bench_prof_events);
-- @case cdp.refresh_profiles, nothing changed
SELECT * FROM cdp.refresh_profiles();
-- @case hand-written: join to the graph, merge_profile and activity_agg GROUP BY, no writes
SELECT (SELECT count(*) FROM (
          SELECT i.profile_id, cdp.merge_profile(t.attributes, t.at, t.priority,
                   (SELECT trait_rules FROM cdp.profile_settings))
          FROM bench_prof_traits t JOIN cdp.identifiers i ON i.kind = t.kind AND i.value = t.value
          GROUP BY 1) m)
     + (SELECT count(*) FROM (
          SELECT i.profile_id, cdp.activity_agg(e.event, e.at, e.amount)
          FROM bench_prof_events e JOIN cdp.identifiers i ON i.kind = e.kind AND i.value = e.value
          GROUP BY 1) a);
-- @compare cdp.refresh_profiles, nothing changed | hand-written: join to the graph, merge_profile and activity_agg GROUP BY, no writes
-- @note the refresh reads every feed whole (full recompute), resolves each row through cdp.identifiers, merges and summarizes per profile and writes only changed rows; the hand-written query does the same reading and aggregation but stages nothing, compares nothing and writes nothing
-- @note identity graph: a stand-in filled from the generator's truth (see the file's header)
