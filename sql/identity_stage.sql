-- Managed identity graph: how a refresh folds in its source rows.  Rows
-- repeating a pair, sources sharing a link, late rows, time-to-live and
-- overrides for identifiers first seen in the same refresh, and a refresh
-- large enough to recompute the whole graph in one pass.
SET client_min_messages = warning;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
CREATE TABLE ids_a (user_id text, email text, at timestamptz);
CREATE TABLE ids_b (user_id text, email text, at timestamptz);
-- profiles numbered 1, 2, ... in id order (earlier tests used the sequence)
CREATE VIEW ids_graph AS
  SELECT dense_rank() OVER (ORDER BY i.profile_id) AS profile, i.kind, i.value, i.first_seen, i.last_seen
  FROM cdp.identifiers i ORDER BY 1, 2, 3;
CREATE VIEW ids_links AS
  SELECT least(ia.value, ib.value) AS end1, greatest(ia.value, ib.value) AS end2,
         l.first_seen, l.last_seen, l.source
  FROM cdp.identity_links l
  JOIN cdp.identifiers ia ON ia.identifier_id = l.a
  JOIN cdp.identifiers ib ON ib.identifier_id = l.b
  ORDER BY 1, 2;
-- the graph's invariants, and that a rebuild would change no profile id
CREATE FUNCTION ids_check(OUT bad_counts bigint, OUT orphans bigint, OUT dangling_links bigint,
                          OUT unordered_links bigint, OUT changed_by_rebuild bigint)
LANGUAGE plpgsql AS $$
BEGIN
  SELECT count(*) INTO bad_counts FROM cdp.profiles p
  WHERE identifier_count <> (SELECT count(*) FROM cdp.identifiers i WHERE i.profile_id = p.profile_id);
  SELECT count(*) INTO orphans FROM cdp.identifiers i
  WHERE profile_id IS NOT NULL AND NOT EXISTS (SELECT FROM cdp.profiles p WHERE p.profile_id = i.profile_id);
  SELECT count(*) INTO dangling_links FROM cdp.identity_links l
  WHERE NOT EXISTS (SELECT FROM cdp.identifiers i WHERE i.identifier_id = l.a)
     OR NOT EXISTS (SELECT FROM cdp.identifiers i WHERE i.identifier_id = l.b);
  SELECT count(*) INTO unordered_links FROM cdp.identity_links WHERE a >= b;
  CREATE TEMP TABLE ids_before AS SELECT kind, value, profile_id FROM cdp.identifiers;
  PERFORM cdp.rebuild_identities();
  SELECT count(*) INTO changed_by_rebuild
  FROM ids_before b FULL JOIN cdp.identifiers i USING (kind, value)
  WHERE b.profile_id IS DISTINCT FROM i.profile_id;
  DROP TABLE ids_before;
END
$$;

SELECT cdp.set_rules('{"limits": {"user_id": 1}}') IS NOT NULL AS rules;
-- b_src has no watermark: every refresh reads it whole
SELECT cdp.add_source('b_src', $$SELECT user_id, email, at FROM ids_b$$);
SELECT cdp.add_source('a_src', $$SELECT user_id, email, at FROM ids_a$$, watermark => 'at');

-- the same pair in several rows of both sources: one link over the first
-- and last of those rows, named after the smallest source name
INSERT INTO ids_a VALUES ('u1', 'one@example.com', '2026-02-01 10:00+00'),
                         ('u1', 'one@example.com', '2026-02-03 10:00+00'),
                         ('u2', NULL, '2026-02-02 10:00+00');
INSERT INTO ids_b VALUES ('u1', 'one@example.com', '2026-02-02 10:00+00'),
                         ('u1', 'one@example.com', '2026-01-30 10:00+00');
SELECT rows_read, identifiers_added, links_added, identifiers_recomputed, profiles_created
FROM cdp.refresh_identities();
SELECT * FROM ids_graph;
SELECT * FROM ids_links;
-- new identifiers get consecutive ids
SELECT max(identifier_id) - min(identifier_id) + 1 = count(*) AS dense_ids FROM cdp.identifiers;

-- a late row of the source without watermark moves first_seen back, a new
-- row moves last_seen on; known links and identifiers recompute nothing
INSERT INTO ids_b VALUES ('u1', 'one@example.com', '2026-01-20 10:00+00');
INSERT INTO ids_a VALUES ('u2', NULL, '2026-02-05 10:00+00');
SELECT rows_read, identifiers_added, links_added, identifiers_recomputed, profiles_created
FROM cdp.refresh_identities();
SELECT * FROM ids_graph;
SELECT * FROM ids_links;

-- overrides naming identifiers no source has brought yet hold in the
-- refresh that first brings them
SELECT cdp.force_apart('user_id', 'u3', 'email', 'three@example.com') IS NOT NULL AS apart;
SELECT cdp.force_together('user_id', 'u4', 'email', 'four@example.com') IS NOT NULL AS together;
INSERT INTO ids_a VALUES ('u3', 'three@example.com', '2026-02-06 10:00+00'),
                         ('u4', NULL, '2026-02-06 10:00+00'),
                         (NULL, 'four@example.com', '2026-02-06 10:00+00');
SELECT identifiers_added, links_added, profiles_created FROM cdp.refresh_identities();
SELECT cdp.resolve('user_id', 'u3') <> cdp.resolve('email', 'three@example.com') AS u3_apart,
       cdp.resolve('user_id', 'u4') = cdp.resolve('email', 'four@example.com') AS u4_together;
SELECT kind, value, reason, linked_value, detail FROM cdp.identity_refusals ORDER BY 1, 2;

-- time-to-live: identifiers and links already past it when a refresh first
-- reads them are counted as added and expired and never written
CREATE TABLE ids_c (cookie_id text, email text, at timestamptz);
SELECT cdp.add_source('c_src', $$SELECT cookie_id, email, at FROM ids_c$$);
SELECT cdp.set_kind_ttl('cookie_id', '30 days');
INSERT INTO ids_c VALUES ('c-old', 'one@example.com', now() - interval '40 days'),
                         ('c-new', 'one@example.com', now() - interval '1 day'),
                         ('c-old2', 'five@example.com', now() - interval '40 days');
SELECT identifiers_added, links_added, identifiers_expired, links_expired, profiles_created
FROM cdp.refresh_identities();
SELECT kind, value, profile_id = cdp.resolve('user_id', 'u1') AS with_u1
FROM cdp.identifiers WHERE kind = 'cookie_id' OR value LIKE 'five%' ORDER BY 1, 2;
SELECT count(*) AS old_cookie_links FROM ids_links WHERE end1 LIKE 'c-old%' OR end2 LIKE 'c-old%';
SELECT cdp.set_kind_ttl('cookie_id', NULL);
SELECT * FROM ids_check();

SELECT count(*) AS overrides_removed FROM (SELECT cdp.remove_override(override_id) FROM cdp.identity_overrides) x;

-- a refresh bringing 12,000 identifiers recomputes the graph in one pass;
-- one@example.com, now seen with 3,000 more user ids, turns into a hub
-- (default max_degree 50) and joins nobody: u1 and c-new part
INSERT INTO ids_a
SELECT 'bulk-u' || g, CASE WHEN g % 2 = 0 THEN 'one@example.com' ELSE 'bulk' || g || '@example.com' END,
       '2026-03-01 00:00+00'::timestamptz + g * interval '1 minute'
FROM generate_series(1, 6000) g;
INSERT INTO ids_a SELECT NULL, 'bulk' || g || '@example.com', '2026-03-10 00:00+00'
FROM generate_series(1, 6000) g WHERE g % 2 = 0;
SELECT rows_read, identifiers_added, links_added, identifiers_recomputed, profiles_created,
       profiles_merged, refusals
FROM cdp.refresh_identities();
SELECT count(*) AS identifiers, count(DISTINCT profile_id) AS profiles FROM cdp.identifiers;
SELECT count(*) AS with_u1 FROM cdp.identifiers WHERE profile_id = cdp.resolve('user_id', 'u1');
SELECT kind, value, reason, detail FROM cdp.identity_refusals WHERE reason = 'hub';
SELECT event, count(*) FROM cdp.profile_lineage WHERE run_id = (SELECT max(run_id) FROM cdp.identity_runs)
GROUP BY 1 ORDER BY 1;
SELECT * FROM ids_check();
-- the same partition as a stateless cdp.stitch() over the stored links
SELECT count(DISTINCT i.profile_id) = count(DISTINCT s.profile_id)
   AND count(DISTINCT i.profile_id) = count(DISTINCT (i.profile_id, s.profile_id)) AS same_partition
FROM cdp.identifiers i
JOIN cdp.stitch($$
  SELECT max(v) FILTER (WHERE k = 'user_id') AS user_id, max(v) FILTER (WHERE k = 'email') AS email,
         max(v) FILTER (WHERE k = 'cookie_id') AS cookie_id, max(at) AS at
  FROM (SELECT l.a, l.b, l.first_seen AS at, i.kind AS k, i.value AS v
        FROM cdp.identity_links l JOIN cdp.identifiers i ON i.identifier_id IN (l.a, l.b)
        UNION ALL SELECT i.identifier_id, 0, NULL, i.kind, i.value FROM cdp.identifiers i) x
  GROUP BY a, b $$, (SELECT rules FROM cdp.identity_settings)) s USING (kind, value);

-- first_seen/last_seen granularity: with one day, a refresh moves them only
-- when its rows widen them by more than a day; NULL makes them exact again
SELECT cdp.set_seen_granularity('1 day');
SELECT seen_granularity FROM cdp.identity_settings;
INSERT INTO ids_a VALUES ('g1', 'g1@example.com', '2026-04-01 10:00+00');
SELECT identifiers_added, links_added FROM cdp.refresh_identities();
-- ten hours later: nothing moves
INSERT INTO ids_a VALUES ('g1', 'g1@example.com', '2026-04-01 20:00+00');
SELECT identifiers_added, links_added FROM cdp.refresh_identities();
SELECT kind, value, first_seen, last_seen FROM cdp.identifiers WHERE value LIKE 'g1%' ORDER BY 1;
SELECT * FROM ids_links WHERE end1 LIKE 'g1%';
-- two days later: g1 moves, the e-mail and the link (not in the row) stay
INSERT INTO ids_a VALUES ('g1', NULL, '2026-04-03 10:00+00');
SELECT identifiers_added, links_added FROM cdp.refresh_identities();
SELECT kind, value, first_seen, last_seen FROM cdp.identifiers WHERE value LIKE 'g1%' ORDER BY 1;
SELECT cdp.set_seen_granularity('-1 hour');
SELECT cdp.set_seen_granularity(NULL);
-- exact again: an hour moves the identifiers and the link
INSERT INTO ids_a VALUES ('g1', 'g1@example.com', '2026-04-03 11:00+00');
SELECT identifiers_added, links_added FROM cdp.refresh_identities();
SELECT kind, value, first_seen, last_seen FROM cdp.identifiers WHERE value LIKE 'g1%' ORDER BY 1;
SELECT * FROM ids_links WHERE end1 LIKE 'g1%';
-- exact: rows of the source without watermark inside the known ranges
-- move and add nothing; one widening only the e-mail moves only the e-mail
INSERT INTO ids_b VALUES ('g1', 'g1@example.com', '2026-04-02 00:00+00');
SELECT identifiers_added, links_added FROM cdp.refresh_identities();
SELECT kind, value, first_seen, last_seen FROM cdp.identifiers WHERE value LIKE 'g1%' ORDER BY 1;
INSERT INTO ids_b VALUES (NULL, 'g1@example.com', '2026-04-04 00:00+00');
SELECT identifiers_added, links_added FROM cdp.refresh_identities();
SELECT kind, value, first_seen, last_seen FROM cdp.identifiers WHERE value LIKE 'g1%' ORDER BY 1;
SELECT * FROM ids_links WHERE end1 LIKE 'g1%';
SELECT * FROM ids_check();

-- clean up
SELECT cdp.drop_source(name) FROM cdp.identity_sources ORDER BY name;
SELECT cdp.set_rules(NULL) IS NOT NULL AS reset;
TRUNCATE cdp.identifiers, cdp.identity_links, cdp.profiles, cdp.profile_lineage, cdp.identity_runs,
         cdp.identity_refusals, cdp.identity_overrides, cdp.identity_suppressed, cdp.identity_kinds;
DROP FUNCTION ids_check();
DROP VIEW ids_graph, ids_links;
DROP TABLE ids_a, ids_b, ids_c;
