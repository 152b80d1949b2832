-- Identity stitching: cdp.stitch(), cdp.stitch_report(), cdp.stitch_stats(),
-- cdp.stitch_rules().  No rules means the default rules; '{"blocked": {},
-- "max_degree": {}}' turns every rule off.
CREATE TABLE stitch_links (user_id text, email text, anonymous_id text, at timestamptz);
INSERT INTO stitch_links VALUES
  ('u2', 'b@x.io', NULL, '2026-01-02'),   -- u2 - b@x.io
  (NULL, 'b@x.io', 'dev-1', '2026-01-03'), -- b@x.io - dev-1
  ('u1', NULL, 'dev-1', '2026-01-01'),     -- so u1 and u2 are one person, without limits
  ('u3', NULL, NULL, '2026-01-04'),        -- alone
  ('u3', NULL, NULL, '2026-01-05'),        -- duplicate
  ('u4', 'u4@x.io', 'dev-4', NULL),        -- NULL at
  ('u4', 'u4@x.io', 'dev-4', NULL),
  (NULL, NULL, NULL, '2026-01-06');        -- nothing
\set off '{"blocked": {}, "max_degree": {}}'

-- the output: one row per distinct identifier; dense ids numbered by the
-- profile's canonical member (first column's kind first, then smallest value)
SELECT * FROM cdp.stitch('SELECT * FROM stitch_links', :'off') ORDER BY profile_id, kind, value;

-- profiles are numbered in the order of their canonical members, bytewise,
-- also among values that share their first 8 or 16 bytes or more, and among
-- values that are prefixes of each other
CREATE TABLE stitch_order AS
  SELECT * FROM cdp.stitch($$
    SELECT 'customer-0000' || (i % 70) AS user_id, 'customer-0000' || (i % 30) || 'x' AS email
    FROM generate_series(1, 500) i
    UNION ALL SELECT NULL, e FROM unnest(ARRAY['customer', 'customer-', 'custom', 'customer-0000', 'Customer', 'c', '~', 'customer-0000~',
                                          'customer-0000-long-b', 'customer-0000-long', 'customer-0000-long-a']) e$$, :'off');
SELECT (SELECT count(*) FROM stitch_order) AS identifiers, count(*) AS profiles,
       bool_and(profile_id = rn) AS ids_follow_canonical_members
FROM (SELECT profile_id, row_number() OVER (ORDER BY kind = 'email', value COLLATE "C") AS rn
      FROM (SELECT DISTINCT ON (profile_id) profile_id, kind, value FROM stitch_order
            ORDER BY profile_id, kind = 'email', value COLLATE "C") c) x;
SELECT profile_id, kind, value FROM stitch_order WHERE kind = 'email' AND value NOT LIKE '%x'
ORDER BY profile_id;
DROP TABLE stitch_order;

-- the same rows in any order (and any plan) give the same ids
SELECT count(*) AS differences FROM (
  (SELECT * FROM cdp.stitch('SELECT * FROM stitch_links ORDER BY at', :'off')
   EXCEPT SELECT * FROM cdp.stitch('SELECT * FROM stitch_links ORDER BY at DESC NULLS FIRST', :'off'))
  UNION ALL
  (SELECT * FROM cdp.stitch('SELECT * FROM stitch_links ORDER BY at DESC NULLS FIRST', :'off')
   EXCEPT SELECT * FROM cdp.stitch('SELECT * FROM stitch_links ORDER BY at', :'off'))) d;

-- priority: column order, or rules.priority (listed kinds first)
SELECT kind, value, profile_id FROM cdp.stitch('SELECT anonymous_id, user_id FROM stitch_links', :'off')
ORDER BY profile_id, kind, value;
SELECT kind, value, profile_id
FROM cdp.stitch('SELECT * FROM stitch_links', '{"priority": ["email"], "blocked": {}, "max_degree": {}}')
ORDER BY profile_id, kind, value;

-- any column type, compared as text through its output function; self
-- links, duplicate columns of one kind, NULLs
SELECT * FROM cdp.stitch($$SELECT * FROM (VALUES (1::bigint, 'a'::varchar, '00000000-0000-0000-0000-00000000000a'::uuid),
                                                  (1, 'a', NULL), (2, NULL, NULL), (NULL, 'b', 'b0000000-0000-0000-0000-000000000000'))
                           t(user_id, anonymous_id, device)$$, :'off')
ORDER BY profile_id, kind, value;
SELECT * FROM cdp.stitch($$SELECT 'x' AS email, 'x' AS email, 'y' AS email$$, :'off') ORDER BY value;
SELECT count(*) AS no_rows FROM cdp.stitch('SELECT user_id FROM stitch_links WHERE false');

-- limits, Segment style: rows apply in "at" order; a row that would put two
-- user_id values into one profile loses its lowest-priority identifier
SELECT * FROM cdp.stitch('SELECT * FROM stitch_links', '{"limits": {"user_id": 1}, "blocked": {}, "max_degree": {}}')
ORDER BY profile_id, kind, value;
SELECT * FROM cdp.stitch_report('SELECT * FROM stitch_links', '{"limits": {"user_id": 1}}');
-- the earlier row wins: reversing the times moves dev-1 to u2
SELECT * FROM cdp.stitch($$SELECT user_id, email, anonymous_id, '2027-01-01'::timestamptz - (at - '2026-01-01') AS at
                           FROM stitch_links$$, '{"limits": {"user_id": 1}}')
WHERE value IN ('u1', 'u2', 'dev-1', 'b@x.io') ORDER BY profile_id, kind, value;
-- demotion drops the lowest-priority identifier first and retries; a demoted
-- identifier keeps a profile of its own (x@y) unless other rows link it (d)
SELECT * FROM cdp.stitch($$SELECT * FROM (VALUES ('u1', 'd', NULL, '2026-01-01'::timestamptz), ('u2', 'd', 'x@y', '2026-01-02'),
                                                  ('u2', 'e', NULL, '2026-01-03'), ('u3', 'e', NULL, '2026-01-02'))
                           t(user_id, anonymous_id, email, at)$$, '{"limits": {"user_id": 1}}')
ORDER BY profile_id, kind, value;
SELECT reason, kind, value, linked_value, at FROM cdp.stitch_report(
  $$SELECT * FROM (VALUES ('u1', 'd', NULL, '2026-01-01'::timestamptz), ('u2', 'd', 'x@y', '2026-01-02'),
                          ('u2', 'e', NULL, '2026-01-03'), ('u3', 'e', NULL, '2026-01-02'))
    t(user_id, anonymous_id, email, at)$$, '{"limits": {"user_id": 1}}')
ORDER BY at, value;
-- ties in "at" are broken by content, so row order still does not matter
SELECT count(*) AS differences FROM (
  (SELECT * FROM cdp.stitch($$SELECT * FROM (VALUES ('u1', 'd'), ('u2', 'd'), ('u3', 'd')) t(user_id, anonymous_id)$$, '{"limits": {"user_id": 1}}')
   EXCEPT
   SELECT * FROM cdp.stitch($$SELECT * FROM (VALUES ('u3', 'd'), ('u2', 'd'), ('u1', 'd')) t(user_id, anonymous_id)$$, '{"limits": {"user_id": 1}}'))) d;
-- a limit above 1
SELECT kind, value, profile_id FROM cdp.stitch($$SELECT * FROM (VALUES ('u1', 'a@x'), ('u1', 'b@x'), ('u1', 'c@x')) t(user_id, email)$$,
                                               '{"limits": {"email": 2}}') ORDER BY profile_id, kind, value;
SELECT reason, kind, value, linked_kind, linked_value, detail
FROM cdp.stitch_report($$SELECT * FROM (VALUES ('u1', 'a@x'), ('u1', 'b@x'), ('u1', 'c@x')) t(user_id, email)$$,
                       '{"limits": {"email": 2}}');

-- max_profile_size: links that would grow a profile beyond it are refused
SELECT kind, value, profile_id
FROM cdp.stitch($$SELECT user_id, anonymous_id, '2026-01-01'::timestamptz + n * interval '1 day' AS at FROM (VALUES ('u1', 'a', 1), ('u1', 'b', 2), ('u1', 'c', 3), ('u2', 'c', 4)) t(user_id, anonymous_id, n)$$,
                '{"max_profile_size": 3}')
ORDER BY profile_id, kind, value;
SELECT reason, kind, value, linked_value, detail
FROM cdp.stitch_report($$SELECT user_id, anonymous_id, '2026-01-01'::timestamptz + n * interval '1 day' AS at FROM (VALUES ('u1', 'a', 1), ('u1', 'b', 2), ('u1', 'c', 3), ('u2', 'c', 4)) t(user_id, anonymous_id, n)$$,
                       '{"max_profile_size": 3}')
ORDER BY value;

-- blocked values: exact strings and regular expressions, per kind or "*"
SELECT kind, value, profile_id
FROM cdp.stitch($$SELECT * FROM (VALUES ('u1', 'null'), ('u2', 'null'), ('u3', 'QA-1'), ('u4', 'qa-2'), ('-1', 'ok'), ('u5', 'ok')) t(user_id, anonymous_id)$$,
                '{"blocked": {"anonymous_id": ["null", {"regex": "^qa-"}], "*": ["-1"]}}')
ORDER BY profile_id, kind, value;
SELECT reason, kind, value, detail
FROM cdp.stitch_report($$SELECT * FROM (VALUES ('u1', 'null'), ('u2', 'null'), ('u3', 'QA-1'), ('u4', 'qa-2'), ('-1', 'ok'), ('u5', 'ok')) t(user_id, anonymous_id)$$,
                       '{"blocked": {"anonymous_id": ["null", {"regex": "^qa-"}], "*": ["-1"]}}')
ORDER BY kind, value;
-- the default block list, and how to turn it off
SELECT cdp.stitch_rules() -> 'blocked' AS default_blocked;
SELECT v, EXISTS (SELECT FROM cdp.stitch(format('SELECT %L::text AS user_id', v)) ) AS kept_by_default,
          EXISTS (SELECT FROM cdp.stitch(format('SELECT %L::text AS user_id', v), '{"blocked": {}}')) AS kept_without
FROM (VALUES (''), ('null'), ('NULL'), ('Undefined'), ('-1'), ('0'), ('anonymous'), ('00000000-0000-0000-0000-000000000000'),
             ('---'), ('n/a'), ('u1'), ('0x'), ('nullable')) t(v);
-- the default patterns are matched in C; the regex engine agrees on them
CREATE TABLE stitch_odd AS SELECT unnest(ARRAY['', '0', '-', '0-0', '00a', ' 0', 'NULL', 'NuLl', 'n/A', 'nil ', ' null',
  'nulls', 'ÑULL', 'none', 'NONE', 'unknowN', 'anonymous1', 'Anonymous', 'undefined', 'n/', 'na']) AS user_id;
SELECT count(*) AS same_verdict, count(*) FILTER (WHERE native) AS blocked
FROM (SELECT o.user_id,
             o.user_id IN (SELECT value FROM cdp.stitch_report('SELECT * FROM stitch_odd',
                           '{"blocked": {"*": [{"regex": "^[0-]+$"}, {"regex": "(?i)^(null|nil|none|undefined|unknown|anonymous|n/a)$"}]}}')) AS native,
             o.user_id IN (SELECT value FROM cdp.stitch_report('SELECT * FROM stitch_odd',
                           '{"blocked": {"*": [{"regex": "^(?:[0-]+)$"}, {"regex": "(?i)^(?:null|nil|none|undefined|unknown|anonymous|n/a)$"}]}}')) AS engine
      FROM stitch_odd o) x
WHERE native = engine;

-- max_degree: an identifier linked with more distinct identifiers is a hub,
-- not used for linking but still an identifier (a profile of its own)
CREATE TABLE stitch_kiosk AS
  SELECT 'u' || i AS user_id, 'kiosk' AS anonymous_id FROM generate_series(1, 4) i
  UNION ALL SELECT 'u1', 'phone-1' UNION ALL SELECT 'u2', 'phone-1';
SELECT * FROM cdp.stitch('SELECT * FROM stitch_kiosk', '{"max_degree": {"anonymous_id": 3}}') ORDER BY profile_id, kind, value;
SELECT * FROM cdp.stitch_report('SELECT * FROM stitch_kiosk', '{"max_degree": {"anonymous_id": 3}}');
SELECT count(DISTINCT profile_id) AS one_profile FROM cdp.stitch('SELECT * FROM stitch_kiosk', '{"max_degree": {"anonymous_id": 4}}');
-- a kind's own bound wins over "*"; hubs and limits together
SELECT count(DISTINCT profile_id) AS profiles FROM cdp.stitch('SELECT * FROM stitch_kiosk', '{"max_degree": {"*": 1, "anonymous_id": 10}}');
SELECT reason, value FROM cdp.stitch_report('SELECT *, now() AS at FROM stitch_kiosk', '{"max_degree": {"anonymous_id": 3}, "limits": {"user_id": 1}}')
ORDER BY reason, value;

-- effective rules: defaults filled in, the caller's rules validated
SELECT cdp.stitch_rules('{"limits": {"user_id": 1, "email": 5}, "blocked": {"email": [{"regex": "@example\\.com$"}]}, "max_profile_size": 1000, "priority": ["user_id"]}');

-- statistics of one run
SELECT rows_read, identifiers, profiles, largest_profile, blocked, hubs, refused_links, memory_bytes > 0 AS has_memory
FROM cdp.stitch_stats('SELECT * FROM stitch_kiosk', '{"max_degree": {"anonymous_id": 3}}');
SELECT rows_read, identifiers, profiles, blocked, hubs, refused_links
FROM cdp.stitch_stats('SELECT *, now() AS at FROM stitch_kiosk', '{"max_degree": {"anonymous_id": 3}, "limits": {"user_id": 1}, "blocked": {"*": ["u4"]}}');

-- bad rules: errors name the key
SELECT cdp.stitch_rules('{"limit": {"user_id": 1}}');
SELECT cdp.stitch_rules('[1]');
SELECT cdp.stitch_rules('{"limits": {"user_id": 0}}');
SELECT cdp.stitch_rules('{"limits": {"user_id": 1.5}}');
SELECT cdp.stitch_rules('{"limits": {"user_id": "1"}}');
SELECT cdp.stitch_rules('{"limits": {"*": 1}}');
SELECT cdp.stitch_rules('{"limits": [1]}');
SELECT cdp.stitch_rules('{"max_degree": {"anonymous_id": 99999999999}}');
SELECT cdp.stitch_rules('{"max_profile_size": -5}');
SELECT cdp.stitch_rules('{"blocked": {"email": "x"}}');
SELECT cdp.stitch_rules('{"blocked": {"email": [1]}}');
SELECT cdp.stitch_rules('{"blocked": {"email": [{"regexp": "a"}]}}');
SELECT cdp.stitch_rules('{"blocked": {"email": ["ok", {"regex": "(unclosed"}]}}');
SELECT cdp.stitch_rules('{"priority": ["email", "email"]}');
SELECT cdp.stitch_rules('{"priority": "email"}');
SELECT * FROM cdp.stitch('SELECT user_id FROM stitch_links', '{"max_profile_size": 0}');

-- bad queries
SELECT * FROM cdp.stitch(NULL);
SELECT * FROM cdp.stitch('INSERT INTO stitch_links VALUES (''x'') RETURNING user_id');
SELECT * FROM cdp.stitch('DELETE FROM stitch_links');
SELECT * FROM cdp.stitch('WITH d AS (DELETE FROM stitch_links RETURNING user_id) SELECT user_id FROM d');
SELECT * FROM cdp.stitch('SELECT user_id INTO stitch_copy FROM stitch_links');
SELECT * FROM cdp.stitch('SELECT 1 AS user_id; SELECT 2 AS user_id');
SELECT * FROM cdp.stitch('SELECT at FROM stitch_links');
SELECT * FROM cdp.stitch('SELECT user_id, at::date AS at FROM stitch_links');
SELECT * FROM cdp.stitch('SELECT user_id, at, at FROM stitch_links');
SELECT * FROM cdp.stitch('SELECT user_id, ''x'' || email FROM stitch_links');
-- an expression column is named by PostgreSQL's rules: here the kind "lower"
SELECT kind, count(*) FROM cdp.stitch('SELECT user_id, lower(email) FROM stitch_links') GROUP BY kind ORDER BY kind;
SELECT * FROM cdp.stitch('SELEC user_id FROM stitch_links');
SELECT * FROM cdp.stitch('SELECT user_id FROM no_such_table');
SELECT count(*) AS table_unchanged FROM stitch_links;
-- an error halfway through the rows frees the engine's memory
SELECT * FROM cdp.stitch('SELECT i::text AS user_id, (1 / (i - 5000))::text AS email FROM generate_series(1, 10000) i');
SELECT count(*) AS engine_contexts_left FROM pg_backend_memory_contexts WHERE name LIKE 'cdp stitch%';

-- the query runs with the caller's privileges
CREATE ROLE stitch_nobody;
GRANT USAGE ON SCHEMA cdp TO stitch_nobody;
SET ROLE stitch_nobody;
SELECT * FROM cdp.stitch('SELECT user_id FROM stitch_links');
RESET ROLE;
REVOKE USAGE ON SCHEMA cdp FROM stitch_nobody;
DROP ROLE stitch_nobody;

-- parallel scans give the same ids as a serial one
CREATE TABLE stitch_serial AS SELECT * FROM cdp.stitch('SELECT user_id, anonymous_id, ts AS at FROM events', '{"limits": {"user_id": 1}}');
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT user_id, anonymous_id, ts AS at FROM events;
SELECT count(*) AS differences FROM (
  (SELECT * FROM cdp.stitch('SELECT user_id, anonymous_id, ts AS at FROM events', '{"limits": {"user_id": 1}}') EXCEPT SELECT * FROM stitch_serial)
  UNION ALL
  (SELECT * FROM stitch_serial EXCEPT SELECT * FROM cdp.stitch('SELECT user_id, anonymous_id, ts AS at FROM events', '{"limits": {"user_id": 1}}'))) d;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;

DROP TABLE stitch_links, stitch_kiosk, stitch_serial, stitch_odd;

-- regression: the effective rules that cdp.stitch_rules() prints are
-- accepted back unchanged ("max_profile_size": null means no cap)
SELECT cdp.stitch_rules(cdp.stitch_rules()) = cdp.stitch_rules() AS default_rules_round_trip,
       cdp.stitch_rules(cdp.stitch_rules('{"limits": {"user_id": 1}}'))
         = cdp.stitch_rules('{"limits": {"user_id": 1}}') AS limits_round_trip;
SELECT cdp.stitch_rules('{"max_profile_size": null}') -> 'max_profile_size' AS no_cap;
SELECT cdp.stitch_rules('{"max_profile_size": 0}');

-- a graph large enough for the engine's arrays, hash table and string
-- arena to grow onto huge pages (several MB each): user id u<k> with the
-- anonymous ids of g = 2k and 2k + 1; exact counts, dense ids, every
-- anonymous id with its user id
CREATE TEMP TABLE stitch_big AS
  SELECT * FROM cdp.stitch($$SELECT 'u' || (g / 2) AS user_id, 'anon-' || g || repeat('x', 20) AS anonymous_id
                             FROM generate_series(1, 300000) g$$, '{"blocked": {}}');
SELECT count(*) AS identifiers,
       count(*) FILTER (WHERE kind = 'user_id') AS user_ids,
       count(DISTINCT profile_id) AS profiles, max(profile_id) AS max_id
FROM stitch_big;
SELECT count(*) AS misplaced
FROM stitch_big a
LEFT JOIN stitch_big u
  ON u.kind = 'user_id' AND u.value = 'u' || (substr(a.value, 6, length(a.value) - 25)::int / 2)
WHERE a.kind = 'anonymous_id' AND u.profile_id IS DISTINCT FROM a.profile_id;
-- the same graph with a limit keeps every row (7 MB of them) in arrays that
-- grow in place many times: same answer
SELECT count(*) AS differences FROM (
  (SELECT * FROM cdp.stitch($$SELECT 'u' || (g / 2) AS user_id, 'anon-' || g || repeat('x', 20) AS anonymous_id, now() AS at
                              FROM generate_series(1, 300000) g$$, '{"blocked": {}, "limits": {"user_id": 1}}')
   EXCEPT ALL SELECT * FROM stitch_big)
  UNION ALL
  (SELECT * FROM stitch_big
   EXCEPT ALL SELECT * FROM cdp.stitch($$SELECT 'u' || (g / 2) AS user_id, 'anon-' || g || repeat('x', 20) AS anonymous_id, now() AS at
                                         FROM generate_series(1, 300000) g$$, '{"blocked": {}, "limits": {"user_id": 1}}'))) d;
DROP TABLE stitch_big;

-- output larger than work_mem goes to the tuplestore's file from its first
-- row, smaller output stays in memory: the same rows either way, with values
-- of every length (empty, short, longer than a 1-byte varlena header holds)
SET work_mem = '64kB';
CREATE TEMP TABLE stitch_out_file AS
  SELECT * FROM cdp.stitch($$SELECT 'u' || (g % 1000) AS user_id, repeat(chr(97 + g % 26), g % 300) AS anonymous_id
                             FROM generate_series(0, 5000) g$$, '{"blocked": {}}');
SET work_mem = '1GB';
CREATE TEMP TABLE stitch_out_mem AS
  SELECT * FROM cdp.stitch($$SELECT 'u' || (g % 1000) AS user_id, repeat(chr(97 + g % 26), g % 300) AS anonymous_id
                             FROM generate_series(0, 5000) g$$, '{"blocked": {}}');
RESET work_mem;
SELECT count(*) AS identifiers, count(DISTINCT profile_id) AS profiles,
       min(length(value)) AS shortest, max(length(value)) AS longest,
       sum(length(value)) AS value_bytes
FROM stitch_out_file;
SELECT count(*) AS differences FROM (
  (SELECT * FROM stitch_out_file EXCEPT ALL SELECT * FROM stitch_out_mem)
  UNION ALL
  (SELECT * FROM stitch_out_mem EXCEPT ALL SELECT * FROM stitch_out_file)) d;
-- a scrollable cursor reads the file backwards
BEGIN;
DECLARE stitch_cur SCROLL CURSOR FOR
  SELECT kind, left(value, 3) AS starts, length(value) AS length, profile_id FROM cdp.stitch($$SELECT 'u' || (g % 1000) AS user_id, repeat(chr(97 + g % 26), g % 300) AS anonymous_id
                             FROM generate_series(0, 5000) g$$, '{"blocked": {}}');
SET LOCAL work_mem = '64kB';
MOVE LAST IN stitch_cur;
FETCH BACKWARD 2 FROM stitch_cur;
COMMIT;
DROP TABLE stitch_out_file, stitch_out_mem;
