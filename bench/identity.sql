-- Managed identity graph: a 1% incremental refresh against a full build
-- of the same graph from the sources, a recompute of it from its stored
-- links (cdp.rebuild_identities), the stateless cdp.stitch() over every
-- row and the scan floor.  Sources only see rows up to a clock; the first
-- refresh (untimed set-up) builds the graph from 93% of the rows, and
-- every timed refresh advances the clock by 1% of the time range (about 1%
-- of the rows of each source), or by 0.05% for the small refreshes (exact
-- first_seen/last_seen, then a granularity of one day).  After the
-- incremental runs the graph is scored against the generator's ground
-- truth, then built again from empty out of every row up to the clock
-- (timed), then recomputed from its links: all three must score the same.
--
-- The sources read copies of the generator's tables stored in time order,
-- as an append-only event log is: the generator writes events person by
-- person, so reading 1% of them by time would touch half of the pages of
-- the events table (the source query, not the graph, would dominate).
-- @setup
SET client_min_messages = warning;
DROP VIEW IF EXISTS bench_id_all, bench_id_quality;
DROP TABLE IF EXISTS bench_id_clock, bench_id_score, bench_id_events, bench_id_crm, bench_id_dmp;
CREATE TABLE bench_id_events AS SELECT user_id, anonymous_id, ts FROM events ORDER BY ts;
CREATE TABLE bench_id_crm AS SELECT * FROM crm_contacts ORDER BY updated_at;
CREATE TABLE bench_id_dmp AS SELECT * FROM dmp_cookies ORDER BY first_seen;
-- watermark reads want an index on the watermark column, as any user would have
CREATE INDEX ON bench_id_events (ts);
CREATE INDEX ON bench_id_crm (updated_at);
CREATE INDEX ON bench_id_dmp (first_seen);
VACUUM ANALYZE bench_id_events, bench_id_crm, bench_id_dmp;
CREATE TABLE bench_id_clock AS
  SELECT min(ts) + 0.93 * (max(ts) - min(ts)) AS upto, (max(ts) - min(ts)) / 100 AS step FROM bench_id_events;
TRUNCATE cdp.identifiers, cdp.identity_links, cdp.profiles, cdp.profile_lineage, cdp.identity_runs,
         cdp.identity_refusals, cdp.identity_overrides, cdp.identity_suppressed, cdp.identity_kinds,
         cdp.identity_sources;
SELECT cdp.set_rules('{"limits": {"user_id": 1, "email": 5}}');
SELECT cdp.add_source('crm', $$
  SELECT user_id, cdp.normalize_email(email, true) AS email,
         cdp.normalize_phone(phone, CASE country WHEN 'NL' THEN '31' WHEN 'DE' THEN '49' WHEN 'US' THEN '1'
                                                 WHEN 'FR' THEN '33' ELSE '32' END) AS phone,
         updated_at AS at
  FROM public.bench_id_crm WHERE updated_at <= (SELECT upto FROM public.bench_id_clock) $$, watermark => 'at');
SELECT cdp.add_source('events', $$
  SELECT user_id, anonymous_id, ts AS at
  FROM public.bench_id_events WHERE ts <= (SELECT upto FROM public.bench_id_clock) $$, watermark => 'at');
SELECT cdp.add_source('dmp', $$
  SELECT cookie_id, device_id AS anonymous_id, first_seen AS at
  FROM public.bench_id_dmp WHERE first_seen <= (SELECT upto FROM public.bench_id_clock) $$, watermark => 'at');
DO $$
DECLARE
  r cdp.identity_runs;
BEGIN
  r := cdp.refresh_identities();
  RAISE WARNING 'first refresh (build from empty): % rows, % identifiers, % links, % profiles in %',
    r.rows_read, r.identifiers_added, r.links_added, r.profiles_created, r.duration;
END $$;
VACUUM ANALYZE cdp.identifiers, cdp.identity_links, cdp.profiles;
CREATE OR REPLACE VIEW bench_id_all AS
  SELECT user_id, cdp.normalize_email(email, true) AS email,
         cdp.normalize_phone(phone, CASE country WHEN 'NL' THEN '31' WHEN 'DE' THEN '49' WHEN 'US' THEN '1'
                                                 WHEN 'FR' THEN '33' ELSE '32' END) AS phone,
         NULL::text AS anonymous_id, NULL::text AS cookie_id, updated_at AS at
  FROM bench_id_crm
  UNION ALL SELECT user_id, NULL, NULL, anonymous_id, NULL, ts FROM bench_id_events
  UNION ALL SELECT NULL, NULL, NULL, device_id, cookie_id, first_seen FROM bench_id_dmp;
-- @floor count(*) over every source row
SELECT count(*) FROM bench_id_all;
-- @case cdp.stitch, stateless, every row
SELECT count(*) FROM cdp.stitch('SELECT * FROM bench_id_all', '{"limits": {"user_id": 1, "email": 5}}');
-- @case cdp.rebuild_identities (full recompute from the stored links)
SELECT cdp.rebuild_identities();
-- @case cdp.refresh_identities, 1% new rows
UPDATE bench_id_clock SET upto = upto + step;
SELECT cdp.refresh_identities();
-- @case cdp.refresh_identities, 0.05% new rows (4.4 hours)
SELECT cdp.set_seen_granularity(NULL);
UPDATE bench_id_clock SET upto = upto + step / 20;
SELECT cdp.refresh_identities();
-- @case cdp.refresh_identities, 0.05% new rows, seen granularity 1 day
SELECT cdp.set_seen_granularity('1 day');
UPDATE bench_id_clock SET upto = upto + step / 20;
SELECT cdp.refresh_identities();
-- @compare cdp.refresh_identities, 1% new rows | cdp.rebuild_identities (full recompute from the stored links)
-- @compare cdp.refresh_identities, 1% new rows | cdp.stitch, stateless, every row
-- @compare cdp.refresh_identities, 0.05% new rows, seen granularity 1 day | cdp.refresh_identities, 0.05% new rows (4.4 hours)
-- @note the 0.05% refreshes read 1/20 of a 1% step each (about 4.4 hours of rows); with a granularity of a day, first_seen/last_seen of identifiers and links seen again within a day stay as they are
-- @setup
SELECT cdp.set_seen_granularity(NULL);
-- quality after the incremental runs: pairwise precision and recall against
-- the generator's truth, for the graph, for a full build from the sources
-- and for a rebuild of it; they must be equal
CREATE VIEW bench_id_quality AS
  WITH j AS (SELECT i.profile_id, s.person_id FROM cdp.identifiers i JOIN sample_truth s USING (kind, value)
             WHERE s.person_id IS NOT NULL AND i.profile_id IS NOT NULL),
       tp AS (SELECT sum(n * (n - 1) / 2) AS v FROM (SELECT count(*) AS n FROM j GROUP BY profile_id, person_id) a),
       pp AS (SELECT sum(n * (n - 1) / 2) AS v FROM (SELECT count(*) AS n FROM j GROUP BY profile_id) a),
       tt AS (SELECT sum(n * (n - 1) / 2) AS v FROM (SELECT count(*) AS n FROM j GROUP BY person_id) a)
  SELECT round(tp.v / pp.v, 4) AS precision, round(tp.v / tt.v, 4) AS recall FROM tp, pp, tt;
CREATE TABLE bench_id_score AS SELECT 'incremental'::text AS graph, * FROM bench_id_quality;
-- @case full build from the sources (every row up to the clock, into an empty graph)
TRUNCATE cdp.identifiers, cdp.identity_links, cdp.profiles, cdp.profile_lineage, cdp.identity_refusals;
UPDATE cdp.identity_sources SET watermark_value = NULL;
SELECT cdp.refresh_identities();
-- @compare cdp.refresh_identities, 1% new rows | full build from the sources (every row up to the clock, into an empty graph)
-- @note goal: a 1% refresh costs at most ~10% of a full rebuild (the full build above reads every source row up to the clock, about 97% of them, and writes the whole graph; cdp.rebuild_identities recomputes profiles from the stored links without reading the sources)
-- @setup
INSERT INTO bench_id_score SELECT 'full build', * FROM bench_id_quality;
SELECT cdp.rebuild_identities();
INSERT INTO bench_id_score SELECT 'rebuild', * FROM bench_id_quality;
DO $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT * FROM bench_id_score LOOP
    RAISE WARNING 'identity graph %: precision %, recall %', r.graph, r.precision, r.recall;
  END LOOP;
  IF (SELECT count(DISTINCT (precision, recall)) FROM bench_id_score) <> 1 THEN
    RAISE EXCEPTION 'the incrementally refreshed graph scores differently from a full build or a rebuild';
  END IF;
END $$;
DROP VIEW bench_id_all, bench_id_quality;
DROP TABLE bench_id_clock, bench_id_score, bench_id_events, bench_id_crm, bench_id_dmp;
SELECT cdp.drop_source(name) FROM cdp.identity_sources;
TRUNCATE cdp.identifiers, cdp.identity_links, cdp.profiles, cdp.profile_lineage, cdp.identity_runs,
         cdp.identity_refusals, cdp.identity_overrides, cdp.identity_suppressed, cdp.identity_kinds;
