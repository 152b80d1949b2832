-- Managed identity graph: incremental refresh, stable ids, lineage, rules
-- and refusal audit, erasure, time-to-live, overrides, errors.
SET client_min_messages = warning;
CREATE TABLE id_crm (user_id text, email text, phone text, updated_at timestamptz);
CREATE TABLE id_events (user_id text, anonymous_id text, ts timestamptz);
CREATE VIEW id_graph AS
  SELECT i.profile_id, i.kind, i.value FROM cdp.identifiers i ORDER BY 1, 2, 3;
-- everything a failed call must leave as it was
CREATE FUNCTION id_fingerprint() RETURNS text LANGUAGE sql AS $$
  SELECT md5(concat_ws('|',
    (SELECT string_agg(concat_ws(',', identifier_id, kind, value, profile_id, first_seen, last_seen), ';' ORDER BY identifier_id) FROM cdp.identifiers),
    (SELECT string_agg(concat_ws(',', a, b, first_seen, last_seen), ';' ORDER BY a, b) FROM cdp.identity_links),
    (SELECT string_agg(concat_ws(',', profile_id, identifier_count, updated_at), ';' ORDER BY profile_id) FROM cdp.profiles),
    (SELECT string_agg(concat_ws(',', old_profile_id, new_profile_id, event), ';' ORDER BY old_profile_id, new_profile_id) FROM cdp.profile_lineage),
    (SELECT string_agg(concat_ws(',', name, watermark_value, rows_read), ';' ORDER BY name) FROM cdp.identity_sources),
    (SELECT string_agg(concat_ws(',', identifier_id, reason), ';' ORDER BY identifier_id, reason) FROM cdp.identity_refusals),
    (SELECT count(*) FROM cdp.identity_runs),
    (SELECT rules::text FROM cdp.identity_settings)))
$$;

-- rules: user_id at most one per profile; an anonymous_id seen with more
-- than 3 others is a shared device
SELECT cdp.set_rules('{"limits": {"user_id": 1}, "max_degree": {"anonymous_id": 3}}') ->> 'limits';
SELECT cdp.add_source('crm', $$SELECT user_id, email, phone, updated_at AS at FROM id_crm$$,
                      watermark => 'at');
SELECT cdp.add_source('events', $$SELECT user_id, anonymous_id, ts AS at FROM id_events$$,
                      watermark => 'at');
SELECT kind, priority, ttl FROM cdp.identity_kinds ORDER BY priority;

-- first refresh: three profiles, numbered by their canonical member
INSERT INTO id_crm VALUES ('u1', 'ann@example.com', NULL, '2026-01-01 10:00+00'),
                          ('u2', 'bob@example.com', '+31611111111', '2026-01-01 10:00+00');
INSERT INTO id_events VALUES ('u1', 'a1', '2026-01-01 11:00+00'),
                             (NULL, 'a2', '2026-01-01 11:00+00');
SELECT operation, rows_read, identifiers_added, links_added, identifiers_recomputed,
       profiles_created, profiles_merged, profiles_split, profiles_deleted, refusals, sources
FROM cdp.refresh_identities();
SELECT * FROM id_graph;
SELECT profile_id, identifier_count FROM cdp.profiles ORDER BY 1;
SELECT name, watermark, watermark_value, last_rows_read FROM cdp.identity_sources ORDER BY name;

-- nothing new: nothing read, nothing recomputed
SELECT rows_read, identifiers_added, links_added, identifiers_recomputed FROM cdp.refresh_identities();

-- merge: a2 (profile 3) logs in as u2 (profile 2); the smaller id survives
INSERT INTO id_events VALUES ('u2', 'a2', '2026-01-02 09:00+00');
SELECT rows_read, identifiers_added, links_added, identifiers_recomputed,
       profiles_created, profiles_merged, profiles_split
FROM cdp.refresh_identities();
SELECT * FROM id_graph;
SELECT l.event, l.old_profile_id, l.new_profile_id, l.cause,
       least(ia.value, ib.value) AS link_end, greatest(ia.value, ib.value) AS other_end
FROM cdp.profile_lineage l
LEFT JOIN cdp.identifiers ia ON ia.identifier_id = l.link_a
LEFT JOIN cdp.identifiers ib ON ib.identifier_id = l.link_b;
-- old ids lead to the current profile
SELECT cdp.resolve('anonymous_id', 'a2') AS a2, cdp.current_profile_id(3) AS old_3,
       cdp.current_profile_id(2) AS current_2, cdp.current_profile_id(99) AS unknown,
       cdp.resolve('email', 'nobody@example.com') AS unknown_email;
SELECT * FROM cdp.profile_aliases;
SELECT kind, value, first_seen, last_seen FROM cdp.profile_identifiers(3);

-- limits: u3 shares ann's address; linking would give profile 1 two
-- user_ids, so u3 is demoted to a profile of its own and the refusal audited
INSERT INTO id_crm VALUES ('u3', 'ann@example.com', NULL, '2026-01-03 10:00+00');
SELECT identifiers_added, links_added, profiles_created, profiles_merged, refusals
FROM cdp.refresh_identities();
SELECT * FROM id_graph WHERE value IN ('u1', 'u3', 'ann@example.com');
SELECT kind, value, reason, linked_kind, linked_value, at, detail FROM cdp.identity_refusals ORDER BY 1, 2;

-- hubs: a kiosk device seen with 4 users is not used for linking
INSERT INTO id_events VALUES ('u1', 'kiosk', '2026-01-04 10:00+00'), ('u2', 'kiosk', '2026-01-04 10:00+00'),
                             ('u3', 'kiosk', '2026-01-04 10:00+00'), ('u4', 'kiosk', '2026-01-04 10:00+00');
SELECT identifiers_added, links_added, profiles_created, profiles_merged, refusals
FROM cdp.refresh_identities();
SELECT kind, value, reason, detail FROM cdp.identity_refusals WHERE reason = 'hub';
SELECT count(DISTINCT profile_id) AS kiosk_users_profiles FROM cdp.identifiers WHERE value IN ('u1', 'u2', 'u3', 'u4');

-- stable ids: a full rebuild from the links changes nothing
CREATE TEMP TABLE before_rebuild AS SELECT kind, value, profile_id FROM cdp.identifiers;
SELECT operation, identifiers_recomputed, profiles_created, profiles_merged, profiles_split, profiles_deleted
FROM cdp.rebuild_identities();
SELECT count(*) AS changed_by_rebuild FROM before_rebuild b JOIN cdp.identifiers i USING (kind, value)
WHERE b.profile_id IS DISTINCT FROM i.profile_id;
-- and the graph equals a stateless cdp.stitch() over the same links
SELECT count(DISTINCT i.profile_id) = count(DISTINCT s.profile_id)
   AND count(DISTINCT i.profile_id) = count(DISTINCT (i.profile_id, s.profile_id)) AS same_partition
FROM cdp.identifiers i
JOIN cdp.stitch($$
  SELECT max(v) FILTER (WHERE k = 'user_id') AS user_id, max(v) FILTER (WHERE k = 'email') AS email,
         max(v) FILTER (WHERE k = 'phone') AS phone, max(v) FILTER (WHERE k = 'anonymous_id') AS anonymous_id,
         max(at) AS at
  FROM (SELECT l.a, l.b, l.first_seen AS at, i.kind AS k, i.value AS v
        FROM cdp.identity_links l JOIN cdp.identifiers i ON i.identifier_id IN (l.a, l.b)
        UNION ALL SELECT i.identifier_id, 0, NULL, i.kind, i.value FROM cdp.identifiers i) x
  GROUP BY a, b $$, (SELECT rules FROM cdp.identity_settings)) s USING (kind, value);

-- erasure: bridge@example.com is the only tie between u5/a5 and a phone
INSERT INTO id_crm VALUES ('u5', 'bridge@example.com', NULL, '2026-01-05 10:00+00'),
                          (NULL, 'bridge@example.com', '+31655555555', '2026-01-05 10:00+00');
INSERT INTO id_events VALUES ('u5', 'a5', '2026-01-05 11:00+00');
SELECT profiles_created FROM cdp.refresh_identities();
SELECT * FROM id_graph WHERE profile_id = cdp.resolve('user_id', 'u5');
SELECT * FROM cdp.forget('email', 'bridge@example.com');
-- the larger part keeps the id, the phone gets a new one
SELECT * FROM id_graph WHERE value IN ('u5', 'a5', '+31655555555');
SELECT event, old_profile_id, new_profile_id, cause FROM cdp.profile_lineage WHERE cause = 'forget';
SELECT kind, value_sha256 = cdp.hash_identifier('bridge@example.com') AS hashed FROM cdp.identity_suppressed;
SELECT count(*) AS traces FROM cdp.identifiers WHERE value = 'bridge@example.com';
-- a source that re-reads everything does not bring it back, nor does a rebuild
SELECT cdp.add_source('replay', $$SELECT 'u5'::text AS user_id, 'bridge@example.com'::text AS email$$);
SELECT identifiers_added, links_added FROM cdp.refresh_identities();
SELECT profiles_merged FROM cdp.rebuild_identities();
SELECT count(*) AS traces FROM cdp.identifiers WHERE value = 'bridge@example.com';
SELECT count(*) AS audit_traces FROM cdp.identity_refusals
WHERE 'bridge@example.com' IN (value, linked_value);
SELECT cdp.drop_source('replay');
-- forgetting an unknown value only suppresses it
SELECT * FROM cdp.forget('email', 'never-seen@example.com');

-- time-to-live: a cookie last seen 200 days ago ties a6 and a7
CREATE TABLE id_cookies (cookie_id text, anonymous_id text, at timestamptz);
SELECT cdp.add_source('dmp', $$SELECT cookie_id, anonymous_id, at FROM id_cookies$$);
INSERT INTO id_cookies VALUES ('c-old', 'a6', now() - interval '200 days'),
                              ('c-old', 'a7', now() - interval '200 days'),
                              ('c-new', 'a1', now() - interval '1 day');
SELECT identifiers_added, profiles_created FROM cdp.refresh_identities();
SELECT * FROM id_graph WHERE kind = 'cookie_id' OR value IN ('a6', 'a7');
SELECT cdp.set_kind_ttl('cookie_id', '90 days');
SELECT identifiers_expired, links_expired, profiles_split, profiles_deleted FROM cdp.refresh_identities();
SELECT * FROM id_graph WHERE kind = 'cookie_id' OR value IN ('a6', 'a7');
SELECT event, old_profile_id, new_profile_id, cause FROM cdp.profile_lineage
WHERE old_profile_id = cdp.resolve('anonymous_id', 'a6');
SELECT cdp.set_kind_ttl('cookie_id', '-1 day');
SELECT cdp.set_kind_ttl('cookie_id', NULL);
SELECT cdp.drop_source('dmp');

-- overrides win over links and rules
SELECT * FROM id_graph WHERE profile_id = cdp.resolve('user_id', 'u1');
SELECT cdp.force_apart('anonymous_id', 'a1', 'user_id', 'u1', 'shared laptop') AS apart_id \gset
SELECT * FROM id_graph WHERE value IN ('u1', 'ann@example.com', 'a1', 'c-new');
SELECT kind, value, reason, linked_value, detail FROM cdp.identity_refusals WHERE reason LIKE 'override%';
SELECT cdp.force_together('user_id', 'u3', 'user_id', 'u1') AS together_id \gset
SELECT cdp.resolve('user_id', 'u3') = cdp.resolve('user_id', 'u1') AS u3_with_u1;
SELECT action, kind_a, value_a, kind_b, value_b, note FROM cdp.identity_overrides ORDER BY override_id;
SELECT cdp.remove_override(:apart_id);
SELECT cdp.remove_override(:together_id);
SELECT cdp.resolve('anonymous_id', 'a1') = cdp.resolve('user_id', 'u1') AS a1_back,
       cdp.resolve('user_id', 'u3') = cdp.resolve('user_id', 'u1') AS u3_apart_again;
SELECT cdp.force_apart('user_id', 'u1', 'user_id', 'u1');
-- erasure also removes the audit rows and overrides that name it
SELECT cdp.force_apart('user_id', 'u3', 'user_id', 'u4') IS NOT NULL AS apart;
SELECT * FROM cdp.forget('user_id', 'u3');
SELECT count(*) AS u3_traces FROM cdp.identity_refusals WHERE 'u3' IN (value, linked_value);
SELECT cdp.remove_override(424242);

-- bad input: clear errors, and the graph is left exactly as it was.  A
-- source that fails after the others were read rolls back their rows and
-- watermarks too.
INSERT INTO id_events VALUES ('u6', 'a6', '2026-01-06 10:00+00');
SELECT cdp.add_source('zz_bad', $$SELECT user_id, (1 / (length(user_id) - 2))::text AS email FROM id_crm$$);
SELECT id_fingerprint() AS fp \gset
SELECT cdp.refresh_identities();
SELECT id_fingerprint() = :'fp' AS untouched;
SELECT cdp.drop_source('zz_bad');
SELECT rows_read, links_added, profiles_merged FROM cdp.refresh_identities();
SELECT id_fingerprint() AS fp \gset
SELECT cdp.add_source('nowm', $$SELECT user_id, updated_at AS at FROM id_crm$$, watermark => 'updated_at');
SELECT cdp.add_source('noid', $$SELECT updated_at AS at FROM id_crm$$);
SELECT cdp.add_source('badat', $$SELECT user_id, 'x'::text AS at FROM id_crm$$);
SELECT cdp.add_source('dml', $$DELETE FROM id_crm RETURNING user_id$$);
SELECT cdp.add_source('crm', $$SELECT user_id FROM id_crm$$);
SELECT cdp.set_rules('{"limit": {"user_id": 1}}');
SELECT cdp.set_rules('{"limits": {"user_id": 0}}');
SELECT cdp.drop_source('nope');
SELECT cdp.identity_read_source('nope');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT cdp.refresh_identities();
ROLLBACK;
SELECT id_fingerprint() = :'fp' AS untouched;
SELECT count(*) AS sources FROM cdp.identity_sources;

-- run log and bookkeeping agree with the graph
SELECT operation, count(*) FROM cdp.identity_runs GROUP BY 1 ORDER BY 1;
SELECT bool_and(finished_at >= started_at AND duration IS NOT NULL) AS runs_closed FROM cdp.identity_runs;
SELECT count(*) AS bad_counts FROM cdp.profiles p
WHERE identifier_count <> (SELECT count(*) FROM cdp.identifiers i WHERE i.profile_id = p.profile_id);
SELECT count(*) AS orphans FROM cdp.identifiers i
WHERE profile_id IS NOT NULL AND NOT EXISTS (SELECT FROM cdp.profiles p WHERE p.profile_id = i.profile_id);
SELECT count(*) AS dangling_links FROM cdp.identity_links l
WHERE NOT EXISTS (SELECT FROM cdp.identifiers i WHERE i.identifier_id = l.a)
   OR NOT EXISTS (SELECT FROM cdp.identifiers i WHERE i.identifier_id = l.b);
-- every table is dumped by pg_dump
SELECT count(*) AS config_tables FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'cdp'
  AND c = ANY (ARRAY['cdp.identity_settings', 'cdp.identity_kinds', 'cdp.identity_sources', 'cdp.identifiers', 'cdp.identity_links', 'cdp.profiles', 'cdp.profile_lineage', 'cdp.identity_runs', 'cdp.identity_refusals', 'cdp.identity_overrides', 'cdp.identity_suppressed', 'cdp.identifier_id_seq', 'cdp.profile_id_seq', 'cdp.identity_run_id_seq', 'cdp.identity_override_id_seq']::regclass[]);

-- clean up: sources and graph back to empty for later tests
SELECT cdp.drop_source('crm');
SELECT cdp.drop_source('events');
SELECT cdp.set_rules(NULL) IS NOT NULL AS reset;
TRUNCATE cdp.identifiers, cdp.identity_links, cdp.profiles, cdp.profile_lineage, cdp.identity_runs,
         cdp.identity_refusals, cdp.identity_overrides, cdp.identity_suppressed, cdp.identity_kinds;
DROP VIEW id_graph;
DROP FUNCTION id_fingerprint();
DROP TABLE id_crm, id_events, id_cookies;
