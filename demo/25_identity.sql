-- Managed identity graph: incremental refresh, stable ids, lineage, erasure
-- The graph is kept in tables of schema cdp and refreshed from three
-- registered sources; later rows only touch the profiles they reach.
SET client_min_messages = warning;
DROP TABLE IF EXISTS demo_new_events;
CREATE TABLE demo_new_events (LIKE events INCLUDING DEFAULTS);
DO $$ BEGIN PERFORM cdp.drop_source(name) FROM cdp.identity_sources WHERE name IN ('crm', 'events', 'dmp'); END $$;
TRUNCATE cdp.identifiers, cdp.identity_links, cdp.profiles, cdp.profile_lineage, cdp.identity_runs,
         cdp.identity_refusals, cdp.identity_overrides, cdp.identity_suppressed, cdp.identity_kinds;

SELECT cdp.set_rules('{"limits": {"user_id": 1, "email": 5}, "max_degree": {"anonymous_id": 50}}') ->> 'limits' AS limits;
SELECT cdp.add_source('crm', $$
  SELECT user_id, cdp.normalize_email(email, true) AS email,
         cdp.normalize_phone(phone, CASE country WHEN 'NL' THEN '31' WHEN 'DE' THEN '49' WHEN 'US' THEN '1'
                                                 WHEN 'FR' THEN '33' ELSE '32' END) AS phone,
         updated_at AS at
  FROM crm_contacts $$, watermark => 'at') AS crm_kinds;
SELECT cdp.add_source('events', $$
  SELECT user_id, anonymous_id, ts AS at FROM events
  UNION ALL SELECT user_id, anonymous_id, ts FROM demo_new_events $$, watermark => 'at') AS event_kinds;
-- no watermark: re-read whole at every refresh
SELECT cdp.add_source('dmp', $$SELECT cookie_id, device_id AS anonymous_id, first_seen AS at FROM dmp_cookies$$)
  AS dmp_kinds;

\echo '== first refresh: every source read whole'
SELECT run_id, rows_read, identifiers_added, links_added, profiles_created, refusals, duration
FROM cdp.refresh_identities();

\echo '== one person, three sources'
SELECT * FROM cdp.profile_identifiers(cdp.resolve('user_id', (SELECT min(user_id) FROM crm_contacts)));

\echo '== new events: 40 anonymous visitors log in; the refresh reads only new rows (and dmp whole)'
INSERT INTO demo_new_events (event_id, anonymous_id, user_id, event, ts)
SELECT 100000000 + row_number() OVER (), a.value, u.value, 'login', now()
FROM (SELECT value, row_number() OVER (ORDER BY value) AS n FROM cdp.identifiers i
      WHERE kind = 'anonymous_id' AND NOT EXISTS
        (SELECT FROM cdp.identifiers j WHERE j.profile_id = i.profile_id AND j.kind = 'user_id')
      ORDER BY value LIMIT 40) a
JOIN (SELECT value, row_number() OVER (ORDER BY value) AS n FROM cdp.identifiers
      WHERE kind = 'user_id' AND profile_id IS NOT NULL ORDER BY value LIMIT 40) u USING (n);
SELECT run_id, rows_read, identifiers_added, links_added, identifiers_recomputed,
       profiles_merged, profiles_split, duration
FROM cdp.refresh_identities();

\echo '== merges: the older (smaller) id survives; old ids still resolve'
SELECT l.old_profile_id, l.new_profile_id, cdp.current_profile_id(l.old_profile_id) AS resolves_to,
       ia.kind || ':' || ia.value AS link_from, ib.kind || ':' || ib.value AS link_to
FROM cdp.profile_lineage l
JOIN cdp.identifiers ia ON ia.identifier_id = l.link_a
JOIN cdp.identifiers ib ON ib.identifier_id = l.link_b
WHERE l.event = 'merge' ORDER BY l.old_profile_id LIMIT 5;

\echo '== erasure: forget the user_id that ties a CRM contact to its devices'
SELECT i.value AS forgotten, i.profile_id
FROM cdp.identifiers i
WHERE i.kind = 'user_id' AND i.profile_id IN
  (SELECT profile_id FROM cdp.identifiers GROUP BY profile_id
   HAVING count(*) FILTER (WHERE kind = 'anonymous_id') > 0 AND count(*) FILTER (WHERE kind = 'email') > 0)
  AND NOT EXISTS (SELECT FROM cdp.identity_links l
                  JOIN cdp.identifiers e ON e.identifier_id IN (l.a, l.b) AND e.kind = 'email'
                  JOIN cdp.identifiers d ON d.identifier_id IN (l.a, l.b) AND d.kind = 'anonymous_id'
                  WHERE e.profile_id = i.profile_id)
ORDER BY i.value LIMIT 1 \gset demo_
SELECT kind, value FROM cdp.profile_identifiers(:demo_profile_id);
SELECT * FROM cdp.forget('user_id', :'demo_forgotten');
SELECT i.profile_id, string_agg(i.kind || ':' || i.value, ', ' ORDER BY i.kind, i.value) AS identifiers
FROM cdp.identifiers i
WHERE i.profile_id = :demo_profile_id
   OR i.profile_id IN (SELECT new_profile_id FROM cdp.profile_lineage
                       WHERE old_profile_id = :demo_profile_id AND event = 'split')
GROUP BY 1 ORDER BY 1;
SELECT event, old_profile_id, new_profile_id, cause FROM cdp.profile_lineage WHERE cause = 'forget';
\echo '   only its SHA-256 remains, so no source can bring it back:'
SELECT kind, value_sha256 FROM cdp.identity_suppressed;

\echo '== the run log'
SELECT run_id, operation, rows_read, identifiers_added, links_added, profiles_created,
       profiles_merged, profiles_split, duration
FROM cdp.identity_runs ORDER BY run_id;

\echo '== scheduling with pg_cron (run in the database named by cron.database_name):'
\echo '   CREATE EXTENSION pg_cron;'
\echo '   SELECT cron.schedule(''cdp-identities'', ''*/5 * * * *'', ''SELECT cdp.refresh_identities()'');'
\echo '   SELECT * FROM cron.job_run_details ORDER BY start_time DESC LIMIT 5;  -- did it run?'
\echo '   SELECT cron.unschedule(''cdp-identities'');'
