-- Segments: definition validation, injection attempts, privileges of the
-- defining role, enter/exit changes across merges, failure isolation,
-- exports (hashing, consent, diffs) and BI views.
\set VERBOSITY default

-- A small, hand-made profile set: ids 3000000101..3000000108, far from the
-- ids other tests may have merged; comments name them by their last digits.
INSERT INTO cdp.profile_traits (profile_id, traits) VALUES
  (3000000101, '{"tier": "gold", "country": "NL"}'),
  (3000000102, '{"tier": "gold", "country": "DE"}'),
  (3000000103, '{"tier": "gold", "country": "NL", "consent": {"marketing": "false"}}'),
  (3000000104, '{"tier": "silver", "country": "NL"}'),
  (3000000105, '{"tier": "gold", "country": "NL"}'),
  (3000000106, '{"tier": "silver", "country": "BE"}'),
  (3000000107, '{"tier": "silver", "country": "FR"}'),
  (3000000108, '{"tier": "bronze", "country": "NL", "n": "1"}');
INSERT INTO cdp.profile_activity (profile_id, activity)
SELECT p, cdp.activity_agg(e, t, v)
FROM (VALUES (3000000101, 'order_completed', '2026-03-01 10:00+00'::timestamptz, 40.0),
             (3000000101, 'order_completed', '2026-03-05 10:00+00', 60.0),
             (3000000101, 'order_completed', '2026-03-09 10:00+00', 20.0),
             (3000000102, 'order_completed', '2026-03-02 10:00+00', 15.0),
             (3000000104, 'product_added', '2026-03-09 12:00+00', NULL),
             (3000000104, 'order_completed', '2026-02-01 12:00+00', 500.0)) v(p, e, t, v)
GROUP BY p;

------------------------------------------------------------------ definition
SELECT cdp.define_segment('gold', $$traits->>'tier' = 'gold'$$, description => 'gold tier') > 0 AS defined;
SELECT cdp.define_segment('nl_buyers',
  $$ cdp.event_count(activity, 'order_completed', '2026-01-01'::timestamptz) >= 3
     AND traits->>'country' = 'NL' $$) > 0 AS defined;
-- functions of the activity type and audience operators resolve unqualified
SELECT cdp.define_segment('cart_no_order',
  $$did(activity, 'product_added', within => '7 days', as_of => '2026-03-10')
    AND did_not(activity, 'order_completed', within => '7 days', as_of => '2026-03-10')$$) > 0 AS defined;
SELECT name, description, owner, paused, status, members IS NULL AS never_refreshed
FROM cdp.segments ORDER BY name;

-- each validation error, at definition time
SELECT cdp.define_segment('bad', '');
SELECT cdp.define_segment('bad', '   ');
SELECT cdp.define_segment('bad', NULL);
SELECT cdp.define_segment(NULL, 'true');
SELECT cdp.define_segment('', 'true');
SELECT cdp.define_segment(E'bad\nname', 'true');
SELECT cdp.define_segment('bad', $$traits->>'tier' = $$);
SELECT cdp.define_segment('bad', $$traits->>'tier = 'gold'$$);
SELECT cdp.define_segment('bad', 'no_such_column > 1');
SELECT cdp.define_segment('bad', 'traits->>''tier''');
SELECT cdp.define_segment('bad', 'profile_id + 1');
SELECT cdp.define_segment('bad', 'NULL');
SELECT cdp.define_segment('bad', $$traits->>'tier' = 'gold' x$$);
SELECT cdp.define_segment('bad', $$traits->>'tier' = 'gold' AS x$$);
SELECT cdp.define_segment('bad', 'true, false');
SELECT cdp.define_segment('bad', '*');
SELECT cdp.define_segment('bad', 'profile_id = $1');
SELECT cdp.define_segment('bad', 'profile_id IN (SELECT 1)');
SELECT cdp.define_segment('bad', 'EXISTS (SELECT FROM pg_class)');
SELECT cdp.define_segment('bad', 'ARRAY(SELECT 1) IS NOT NULL');
SELECT cdp.define_segment('bad', 'count(*) > 1');
SELECT cdp.define_segment('bad', 'row_number() OVER () = 1');
SELECT cdp.define_segment('bad', 'generate_series(1, 2) > 1');
SELECT cdp.define_segment('bad', 'random() < 0.5');
SELECT cdp.define_segment('bad', 'nextval(''cdp.segment_refresh_id_seq'') > 0');
SELECT cdp.define_segment('bad', 'true FROM pg_class');
SELECT cdp.define_segment('bad', 'true WHERE false');
SELECT cdp.define_segment('bad', 'true UNION SELECT false');
SELECT cdp.define_segment('bad', 'true ORDER BY 1');
SELECT cdp.define_segment('bad', 'true LIMIT 1');
SELECT cdp.define_segment('bad', 'true GROUP BY 1');
SELECT cdp.define_segment('bad', 'true INTO seg_x');
SELECT cdp.define_segment('bad', 'true FOR UPDATE');
SELECT cdp.define_segment('bad', 'DISTINCT true');
-- functions outside pg_catalog and cdp must be schema-qualified
CREATE FUNCTION public.seg_true(bigint) RETURNS boolean LANGUAGE sql STABLE AS 'SELECT true';
SELECT cdp.define_segment('bad', 'seg_true(profile_id)');
SELECT cdp.define_segment('qualified', 'public.seg_true(profile_id)') > 0 AS defined;
SELECT cdp.drop_segment('qualified');
SELECT count(*) AS bad_segments FROM cdp.segments WHERE name = 'bad';

------------------------------------------------------------------ injection
CREATE TABLE seg_victim (x int);
INSERT INTO seg_victim VALUES (1);
SELECT cdp.define_segment('inj', 'true); DROP TABLE seg_victim; --');
SELECT cdp.define_segment('inj', 'true; DROP TABLE seg_victim');
SELECT cdp.define_segment('inj', 'true;');
SELECT cdp.define_segment('inj', E'true\n) OR (true');
SELECT cdp.define_segment('inj', E'true\n); DELETE FROM seg_victim; SELECT (true');
SELECT cdp.define_segment('inj', 'true /* ) ; DROP TABLE seg_victim; -- ');
SELECT cdp.define_segment('inj_literal', $$'a' = 'a'' ) ; DROP TABLE seg_victim; --'$$) > 0 AS defined;
SELECT cdp.define_segment('inj', $$E'\'' = '' ) ; DROP TABLE seg_victim; --'$$);
SELECT cdp.define_segment('inj', $$ $q$ $$);
SELECT cdp.define_segment('inj', 'true)) UNION ALL (SELECT 1 FROM seg_victim');
-- a trailing comment and semicolons inside literals are harmless
SELECT cdp.define_segment('inj', $$traits->>'note' = 'a;b' -- comment ) ; DROP TABLE seg_victim$$) > 0 AS defined;
SELECT cdp.define_segment('inj2', $p$traits->>'note' = $x$ ); DROP TABLE seg_victim; -- $x$$p$) > 0 AS defined;
-- backslashes: the text is read with standard_conforming_strings on, at
-- definition and at every refresh, whatever the session says
SELECT cdp.define_segment('inj_backslash', $$'a\' = 'a\'$$) > 0 AS defined;
SET standard_conforming_strings = off;
SELECT segment, status, members, entered, exited, error
FROM cdp.refresh_segments(ARRAY['inj', 'inj2', 'inj_literal', 'inj_backslash']);
RESET standard_conforming_strings;
SELECT count(*) AS victim_rows FROM seg_victim;
SELECT cdp.drop_segment('inj');
SELECT cdp.drop_segment('inj2');
SELECT cdp.drop_segment('inj_literal');
SELECT cdp.drop_segment('inj_backslash');

------------------------------------------------------------------ enter/exit over three refreshes, merges in between
-- refresh 1: gold = 101, 102, 103, 105
SELECT segment, status, members, entered, exited, error FROM cdp.refresh_segments(ARRAY['gold']);
SELECT profile_id, change FROM cdp.segment_changes WHERE segment = 'gold' ORDER BY refresh_id, change, profile_id;
SELECT last_refresh_id AS r1 FROM cdp.segments WHERE name = 'gold' \gset
-- 105 (member) merges into 101 (member); 102 (member) into 107 (not a member
-- until now, gold after the merge); 103 leaves; 104 joins
DELETE FROM cdp.profile_traits WHERE profile_id IN (3000000105, 3000000102);
INSERT INTO cdp.profile_merges (old_profile_id, surviving_profile_id) VALUES (3000000105, 3000000101), (3000000102, 3000000107);
UPDATE cdp.profile_traits SET traits = traits || '{"tier": "gold"}' WHERE profile_id IN (3000000107, 3000000104);
UPDATE cdp.profile_traits SET traits = traits || '{"tier": "silver"}' WHERE profile_id = 3000000103;
-- refresh 2: only 104 enters and 103 exits
SELECT segment, status, members, entered, exited, error FROM cdp.refresh_segments(ARRAY['gold']);
SELECT profile_id, change FROM cdp.segment_changes WHERE segment = 'gold' AND refresh_id > :r1 ORDER BY change, profile_id;
SELECT last_refresh_id AS r2 FROM cdp.segments WHERE name = 'gold' \gset
-- a chain: 107 (member, carrying 102) merges into 101 (member); 108 (not a
-- member) into 104 (member); 106 joins; 101 leaves
DELETE FROM cdp.profile_traits WHERE profile_id IN (3000000107, 3000000108);
INSERT INTO cdp.profile_merges (old_profile_id, surviving_profile_id) VALUES (3000000107, 3000000101), (3000000108, 3000000104);
UPDATE cdp.profile_traits SET traits = traits || '{"tier": "gold"}' WHERE profile_id = 3000000106;
UPDATE cdp.profile_traits SET traits = traits || '{"tier": "silver"}' WHERE profile_id = 3000000101;
SELECT * FROM cdp.profile_merge_map() ORDER BY 1;
-- refresh 3: 106 enters, 101 exits (once, not once per merged id)
SELECT segment, status, members, entered, exited, error FROM cdp.refresh_segments(ARRAY['gold']);
SELECT profile_id, change FROM cdp.segment_changes WHERE segment = 'gold' AND refresh_id > :r2 ORDER BY change, profile_id;
SELECT last_refresh_id AS r3 FROM cdp.segments WHERE name = 'gold' \gset
-- membership equals the predicate evaluated directly (oracle)
SELECT (SELECT members FROM cdp.segments WHERE name = 'gold')
     OPERATOR(cdp.=) (SELECT cdp.audience_agg(profile_id) FROM cdp.profile_view WHERE traits->>'tier' = 'gold') AS same_as_plain_sql;
SELECT * FROM cdp.segment_members WHERE segment = 'gold' ORDER BY profile_id;
-- replaying the changes from empty, merged ids mapped to their survivors,
-- gives the current members
SELECT array_agg(profile_id ORDER BY profile_id) AS replayed
FROM (SELECT COALESCE(m.surviving_profile_id, c.profile_id) AS profile_id,
             (array_agg(c.change ORDER BY c.refresh_id DESC))[1] AS last
      FROM cdp.segment_changes c
      LEFT JOIN cdp.profile_merge_map() m ON m.old_profile_id = c.profile_id
      WHERE c.segment = 'gold' GROUP BY 1) c
WHERE last = 'enter';
SELECT refresh_id - :r1 AS nth, status, members, entered, exited
FROM cdp.segment_sizes WHERE segment = 'gold' ORDER BY refresh_id;

------------------------------------------------------------------ failure isolation
UPDATE cdp.profile_traits SET traits = traits || '{"n": "5"}' WHERE profile_id = 3000000106;
SELECT cdp.define_segment('n_positive', $$(traits->>'n')::int > 0$$) > 0 AS defined;
SELECT segment, status, members, entered, exited, error FROM cdp.refresh_segments(ARRAY['n_positive', 'nl_buyers']);
UPDATE cdp.profile_traits SET traits = traits || '{"n": "many"}' WHERE profile_id = 3000000104;
-- the failing segment keeps its previous members; the others refresh
SELECT segment, status, members, entered, exited, error FROM cdp.refresh_segments(ARRAY['n_positive', 'gold', 'nl_buyers']);
SELECT name, status, error, cdp.size(members) AS members FROM cdp.segments WHERE name = 'n_positive';
SELECT status, members, error FROM cdp.segment_sizes WHERE segment = 'n_positive' ORDER BY refresh_id;
SELECT count(*) AS changes_of_failed_refresh FROM cdp.segment_changes c JOIN cdp.segments s ON s.name = c.segment
WHERE c.segment = 'n_positive' AND c.refresh_id = s.last_refresh_id;
UPDATE cdp.profile_traits SET traits = traits || '{"n": "2"}' WHERE profile_id = 3000000104;
SELECT segment, status, members, entered, exited, error FROM cdp.refresh_segments(ARRAY['n_positive']);
-- a profile relation that disappeared fails every segment, not the call
CREATE TABLE seg_profiles (profile_id bigint, traits jsonb, activity cdp.activity);
SELECT cdp.set_profile_relation('seg_profiles');
DROP TABLE seg_profiles;
SELECT segment, status, error FROM cdp.refresh_segments(ARRAY['gold', 'n_positive']);
SELECT cdp.set_profile_relation('cdp.profile_view');
SELECT cdp.set_profile_relation('seg_victim');
SELECT segment, status FROM cdp.refresh_segments(ARRAY['gold']);
-- unknown names are an error before anything runs
SELECT * FROM cdp.refresh_segments(ARRAY['gold', 'no_such_segment']);

------------------------------------------------------------------ rename, pause, resume, drop, redefine
SELECT cdp.rename_segment('n_positive', 'n_pos');
SELECT cdp.rename_segment('n_pos', 'gold');
SELECT cdp.rename_segment('no_such_segment', 'x');
SELECT count(*) AS history_follows_rename FROM cdp.segment_changes WHERE segment = 'n_pos';
SELECT cdp.pause_segment('n_pos');
SELECT segment, status FROM cdp.refresh_segments() ORDER BY segment;
SELECT segment, status, members FROM cdp.refresh_segments(ARRAY['n_pos']);
SELECT cdp.resume_segment('n_pos');
SELECT segment, status FROM cdp.refresh_segments() ORDER BY segment;
-- redefinition keeps the members until the next refresh, which reports the difference
SELECT cdp.define_segment('n_pos', $$(traits->>'n')::int > 2$$) > 0 AS redefined;
SELECT description, cdp.size(members) AS members FROM cdp.segments WHERE name = 'n_pos';
SELECT segment, members, entered, exited FROM cdp.refresh_segments(ARRAY['n_pos']);
SELECT cdp.drop_segment('n_pos');
SELECT cdp.drop_segment('n_pos');
SELECT count(*) AS orphans FROM cdp.segment_change_log l
WHERE NOT EXISTS (SELECT FROM cdp.segments s WHERE s.segment_id = l.segment_id);

------------------------------------------------------------------ privileges: two roles
CREATE ROLE regress_seg_alice;
CREATE ROLE regress_seg_bob;
GRANT USAGE ON SCHEMA cdp TO regress_seg_alice, regress_seg_bob;
GRANT SELECT ON cdp.profile_view TO regress_seg_alice, regress_seg_bob;
CREATE TABLE seg_secret (profile_id bigint PRIMARY KEY, vip boolean);
INSERT INTO seg_secret VALUES (3000000101, true), (3000000104, true), (3000000106, false);
GRANT SELECT ON seg_secret TO regress_seg_alice;
CREATE FUNCTION public.seg_is_vip(id bigint) RETURNS boolean
LANGUAGE sql STABLE AS 'SELECT vip FROM public.seg_secret WHERE profile_id = id';

SET ROLE regress_seg_bob;
SELECT count(*) FROM seg_secret;             -- bob cannot read it directly
-- ... and not through a segment: the predicate runs as bob, whoever refreshes
SELECT cdp.define_segment('bob_vip', 'public.seg_is_vip(profile_id)') > 0 AS defined;
SELECT cdp.define_segment('bob_nl', $$traits->>'country' = 'NL'$$) > 0 AS defined;
-- bob can neither write the bookkeeping nor change another role's segment
UPDATE cdp.segments SET owner = 'postgres' WHERE name = 'bob_vip';
SELECT cdp.segment_store(1, '{}', 1, now());
SELECT cdp.drop_segment('gold');
SELECT cdp.define_segment('gold', 'true');
RESET ROLE;
SET ROLE regress_seg_alice;
SELECT cdp.define_segment('alice_vip', 'public.seg_is_vip(profile_id)') > 0 AS defined;
SELECT cdp.drop_segment('bob_nl');
RESET ROLE;
-- the superuser (as a cron job would) refreshes all three
SELECT segment, status, members, error FROM cdp.refresh_segments(ARRAY['alice_vip', 'bob_vip', 'bob_nl']);
SELECT name, owner, status FROM cdp.segment_definitions WHERE name LIKE '%vip' OR name LIKE 'bob%' ORDER BY name;
-- a role that loses the right loses the segment at the next refresh
REVOKE SELECT ON seg_secret FROM regress_seg_alice;
SELECT segment, status, error FROM cdp.refresh_segments(ARRAY['alice_vip']);
-- a role that cannot read the profile relation cannot define a segment on it
REVOKE SELECT ON cdp.profile_view FROM regress_seg_bob;
SET ROLE regress_seg_bob;
SELECT cdp.define_segment('bob_any', 'true');
RESET ROLE;
-- a superuser may redefine a role's segment; it then runs as the superuser
SELECT cdp.define_segment('bob_vip', 'public.seg_is_vip(profile_id)') > 0 AS redefined;
SELECT owner FROM cdp.segment_definitions WHERE name = 'bob_vip';
SELECT cdp.drop_segment('bob_vip');
SELECT cdp.drop_segment('bob_nl');
SELECT cdp.drop_segment('alice_vip');
REVOKE ALL ON cdp.profile_view FROM regress_seg_alice, regress_seg_bob;
REVOKE ALL ON SCHEMA cdp FROM regress_seg_alice, regress_seg_bob;
DROP ROLE regress_seg_alice;
DROP ROLE regress_seg_bob;

------------------------------------------------------------------ exports
-- (explicitly the extension's own map, whether or not the identity graph exists)
SELECT cdp.set_identifier_relation('cdp.profile_identifier_map');
INSERT INTO cdp.profile_identifier_map (kind, value, profile_id) VALUES
  ('email', '  Test@Example.COM ', 3000000104),
  ('email', 'not an address', 3000000104),
  ('email', 'gold106@example.org', 3000000106),
  ('phone', '+31 6 1234 5678', 3000000106),
  ('email', 'optout@example.com', 3000000103),
  ('user_id', 'usr_104', 3000000104);
-- known SHA-256 vectors
SELECT cdp.export_value('email', '  Test@Example.COM ') =
       '973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b' AS email_vector,
       cdp.export_value('phone', '+31 6 1234 5678') =
       'fab7be8a931d1088a82f6acf9e468aaf6a3accc07d5112ee5d6fca93281e1583' AS phone_vector,
       cdp.export_value('phone', '+31 6 1234 5678', false) AS phone_plain,
       cdp.export_value('email', 'not an address') IS NULL AS unusable_is_null;
SELECT * FROM cdp.segment_export('gold', 'email');
SELECT * FROM cdp.segment_export('gold', 'email', hashed => false);
SELECT * FROM cdp.segment_export('gold', 'phone', hashed => false);
SELECT * FROM cdp.segment_export('gold', 'user_id', hashed => false);
-- hashes agree with the built-in sha256 over the plain export (oracle)
SELECT bool_and(h.value = encode(sha256(convert_to(p.value, 'UTF8')), 'hex')) AS hashes_match, count(*)
FROM cdp.segment_export('gold', 'email') h
JOIN cdp.segment_export('gold', 'email', hashed => false) p USING (profile_id);
SELECT * FROM cdp.segment_export('no_such_segment', 'email');
-- the identifier source is configurable
CREATE TABLE seg_ids (pid bigint, k text, v text);
INSERT INTO seg_ids VALUES (3000000104, 'email', 'Other@Example.com'), (3000000101, 'email', 'not-a-member@example.com');
CREATE VIEW seg_ids_v AS SELECT pid AS profile_id, k AS kind, v AS value FROM seg_ids;
SELECT cdp.set_identifier_relation('seg_ids');
SELECT cdp.set_identifier_relation('seg_ids_v');
SELECT cdp.segment_identifier_relation();
SELECT * FROM cdp.segment_export('gold', 'email', hashed => false);
SELECT cdp.set_identifier_relation(NULL);
SELECT cdp.segment_identifier_relation() IN ('cdp.profile_identifier_map'::regclass, to_regclass('cdp.identifiers')) AS default_source;
SELECT cdp.set_identifier_relation('cdp.profile_identifier_map');
DROP VIEW seg_ids_v;
DROP TABLE seg_ids;
-- validation on its own, for user interfaces
SELECT cdp.validate_predicate($$traits ? 'tier'$$);
SELECT cdp.validate_predicate('traits');

-- consent: 103 opts out of marketing; it is in the segment but not exported
UPDATE cdp.profile_traits SET traits = traits || '{"tier": "gold"}' WHERE profile_id = 3000000103;
SELECT segment, members, entered, exited FROM cdp.refresh_segments(ARRAY['gold']);
SELECT cdp.set_consent('marketing', $$traits->'consent'->>'marketing' = 'false'$$);
SELECT cdp.set_consent('marketing', 'nosuch = 1');
SELECT cdp.set_consent('marketing', 'true); DELETE FROM cdp.segments; --');
SELECT cdp.set_consent('', 'true');
SELECT purpose, opted_out FROM cdp.consent_rules;
SELECT cdp.contains(members, 3000000103) AS member FROM cdp.segments WHERE name = 'gold';
SELECT * FROM cdp.segment_export('gold', 'email', 'marketing', hashed => false);
SELECT * FROM cdp.segment_export('gold', 'email', hashed => false);   -- NULL purpose: every rule applies
SELECT * FROM cdp.segment_export('gold', 'email', 'analytics');
SELECT cdp.set_consent('marketing', NULL);
SELECT * FROM cdp.segment_export('gold', 'email', hashed => false);

-- diffs since a refresh: since r3, 103 came back and 106 leaves now
UPDATE cdp.profile_traits SET traits = traits || '{"tier": "silver"}' WHERE profile_id = 3000000106;
SELECT segment, members, entered, exited FROM cdp.refresh_segments(ARRAY['gold']);
SELECT * FROM cdp.segment_export_changes('gold', 'email', :r3, hashed => false);
SELECT cdp.set_consent('marketing', $$traits->'consent'->>'marketing' = 'false'$$);
SELECT * FROM cdp.segment_export_changes('gold', 'email', :r3, 'marketing', hashed => false);
-- since the beginning: what a destination that never synced must add (106
-- entered and left again: nothing to send; 103 opted out)
SELECT * FROM cdp.segment_export_changes('gold', 'email', 0, hashed => false);
SELECT cdp.set_consent('marketing', NULL);

------------------------------------------------------------------ sample data: oracle and parallel query
-- activity of the 1,000 sample persons, events mapped to persons by user_id
-- or anonymous_id through the generator's truth
CREATE TABLE seg_event_person AS
SELECT e.event, e.ts, (e.properties->>'revenue')::float8 AS revenue,
       COALESCE(u.person_id, a.person_id) AS person_id
FROM events e
LEFT JOIN sample_truth u ON u.kind = 'user_id' AND u.value = e.user_id
LEFT JOIN sample_truth a ON a.kind = 'anonymous_id' AND a.value = e.anonymous_id;
DELETE FROM cdp.profile_traits;
DELETE FROM cdp.profile_activity;
DELETE FROM cdp.profile_merges;
INSERT INTO cdp.profile_activity (profile_id, activity)
SELECT person_id, cdp.activity_agg(event, ts, revenue) FROM seg_event_person
WHERE person_id IS NOT NULL GROUP BY person_id;
SELECT cdp.define_segment('repeat_buyers',
  $$cdp.event_count(activity, 'order_completed', '2025-07-01 00:00+00'::timestamptz) >= 2$$) > 0 AS defined;
SELECT cdp.define_segment('no_recent_order',
  $$cdp.event_count(activity, 'order_completed', '2025-10-03 00:00+00', '2026-01-01 00:00+00') = 0$$) > 0 AS defined;
-- both in one scan (same owner)
SELECT segment, status, members > 10 AS some_members FROM cdp.refresh_segments(ARRAY['repeat_buyers', 'no_recent_order']);
SELECT (SELECT members FROM cdp.segments WHERE name = 'no_recent_order')
     OPERATOR(cdp.=) (SELECT cdp.audience_agg(profile_id) FROM cdp.profile_activity
                      WHERE profile_id NOT IN (SELECT person_id FROM seg_event_person
                                               WHERE event = 'order_completed' AND ts >= '2025-10-03 00:00+00'
                                                 AND ts < '2026-01-01 00:00+00' AND person_id IS NOT NULL)) AS same_as_events;
SELECT (SELECT members FROM cdp.segments WHERE name = 'repeat_buyers')
     OPERATOR(cdp.=) (SELECT cdp.audience_agg(person_id) FROM
          (SELECT person_id FROM seg_event_person
           WHERE event = 'order_completed' AND ts >= '2025-07-01 00:00+00' AND person_id IS NOT NULL
           GROUP BY person_id HAVING count(*) >= 2) o) AS same_as_events;
-- the same refresh with parallel workers: nothing changes
SELECT members AS serial_members FROM cdp.segments WHERE name = 'repeat_buyers' \gset
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET force_parallel_mode = on;
EXPLAIN (COSTS OFF)
SELECT cdp.audience_agg(profile_id) FROM cdp.profile_activity
WHERE cdp.event_count(activity, 'order_completed', '2025-07-01 00:00+00'::timestamptz) >= 2;
SELECT segment, status FROM cdp.refresh_segments(ARRAY['repeat_buyers']);
SELECT members OPERATOR(cdp.=) :'serial_members'::cdp.audience AS same_as_serial
FROM cdp.segments WHERE name = 'repeat_buyers';
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
RESET force_parallel_mode;

------------------------------------------------------------------ clean up
SELECT cdp.set_identifier_relation(NULL);
SELECT cdp.drop_segment(name) FROM cdp.segments ORDER BY name;
DELETE FROM cdp.profile_traits;
DELETE FROM cdp.profile_activity;
DELETE FROM cdp.profile_identifier_map;
DROP TABLE seg_victim, seg_secret, seg_event_person;
DROP FUNCTION public.seg_is_vip(bigint);
DROP FUNCTION public.seg_true(bigint);
SELECT count(*) AS left_over FROM cdp.segment_refresh_log;
