-- Survivorship aggregates and golden records (cdp.latest ... cdp.merge_profile)
SET timezone = 'UTC';
CREATE TABLE merge_obs (g int, v text, n numeric, at timestamptz, p int, src text, j jsonb);
INSERT INTO merge_obs VALUES
  (1, 'b',  2,    '2024-01-01', 1,    'crm', '{"email": "a@x.nl", "country": "NL", "tags": ["x", "y"], "ltv": 10, "seen": "2024-01-01"}'),
  (1, 'a',  2.00, '2024-03-01', 2,    'dmp', '{"email": "b@x.nl", "country": "DE", "tags": ["y", "z"], "ltv": 5.5, "seen": ""}'),
  (1, 'c',  1,    '2024-03-01', 1,    'web', '{"email": "", "country": "NL", "tags": [], "ltv": "n/a", "seen": "2023-12-31"}'),
  (1, NULL, NULL, '2024-06-01', 9,    'web', '{"email": null, "country": {}}'),
  (1, 'z',  9,    NULL,         9,    'web', '{"email": "late@x.nl"}'),
  (1, 'd',  7,    '2023-01-01', NULL, 'pos', '{"country": "BE", "ltv": 1}'),
  (2, NULL, NULL, '2024-01-01', 1,    'crm', NULL),
  (3, 'q',  5,    '2024-01-01', 1,    'crm', '{"email": "q@x.nl"}');

-- latest: greatest at; 'a' and 'c' tie at 2024-03-01, the smaller wins;
-- NULL values and NULL at are skipped; a group with none gives NULL
SELECT g, cdp.latest(v, at), cdp.earliest(v, at), cdp.by_priority(v, p, at),
       cdp.latest(n, at) AS latest_n, cdp.earliest(n, at) AS earliest_n
FROM merge_obs GROUP BY g ORDER BY g;
-- by_priority: NULL priority ranks below every priority, then latest
SELECT cdp.by_priority(v, p, at) FROM merge_obs WHERE v IN ('d', 'b');
SELECT cdp.by_priority(v, p, at) FROM merge_obs WHERE v IN ('d');
-- row order does not matter
SELECT cdp.latest(v, at ORDER BY v DESC) = cdp.latest(v, at ORDER BY v) AS same FROM merge_obs;

-- most_frequent: ties go to the smallest value; numeric 2 and 2.00 are equal
SELECT g, cdp.most_frequent(v) AS v, cdp.most_frequent(n) AS n, cdp.most_frequent(v, at) AS v_recent
FROM merge_obs GROUP BY g ORDER BY g;
SELECT cdp.most_frequent(x) FROM unnest(ARRAY['b', 'a', 'b', 'a', 'c']) x;
SELECT cdp.most_frequent(x, t) FROM (VALUES ('b', '2024-01-02'::timestamptz), ('a', '2024-01-01'), ('b', '2024-01-01'), ('a', '2024-01-03')) s(x, t);
-- a type without a hash opclass (bit) is keyed by its image and folded by btree equality
SELECT cdp.most_frequent(x::bit(3)) FROM unnest(ARRAY['101', '011', '101', '011']) x;
-- a nondeterministic collation: 'a' and 'A' are one value (its smallest
-- image is shown); equal counts go to the smallest in collation order
CREATE COLLATION merge_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
SELECT cdp.most_frequent(x COLLATE merge_ci) AS mf, cdp.unique_values(x COLLATE merge_ci, 5) AS uv,
       cdp.most_frequent(x) AS mf_default
FROM unnest(ARRAY['b', 'a', 'B', 'A', 'c', 'b']) x;
SELECT cdp.most_frequent(x COLLATE merge_ci) AS mf
FROM unnest(ARRAY['b', 'a', 'B', 'A', 'c']) x;
-- more distinct values than are kept inline (8): the hash table takes over
SELECT cdp.most_frequent(x) AS mf, cdp.most_frequent(x COLLATE merge_ci) AS mf_ci,
       cdp.most_frequent(x::bit(5)) AS mf_bit, cdp.unique_values(x, 3) AS uv
FROM (SELECT lpad((i % 13)::bit(5)::text, 5, '0') AS x FROM generate_series(1, 40) i) s;
DROP COLLATION merge_ci;
-- attribute names are kept as 2-byte ids: at most 65,536 per query
SELECT cdp.merge_profile(j, now()) -> 'k65536' AS last_key
FROM (SELECT jsonb_object_agg('k' || i, i) j FROM generate_series(1, 65536) i) s;
SELECT cdp.merge_profile(j, now())
FROM (SELECT jsonb_object_agg('k' || i, i) j FROM generate_series(1, 65536) i
      UNION ALL SELECT '{"one_more": 1}') s;

-- values equal in btree order that print differently (2, 2.0, 2.00): the
-- smallest binary image survives, whatever the row order
SELECT cdp.latest(x, '2024-01-01') AS l1, cdp.latest(x, '2024-01-01' ORDER BY x::text DESC) AS l2,
       cdp.most_frequent(x) AS m1, cdp.most_frequent(x ORDER BY x::text DESC) AS m2,
       cdp.unique_values(x, 3) AS u,
       cdp.merge_profile(jsonb_build_object('a', x, 'b', x), '2024-01-01', 0, '{"a": "max", "b": "most_frequent"}') AS mp1,
       cdp.merge_profile(jsonb_build_object('a', x, 'b', x), '2024-01-01', 0, '{"a": "max", "b": "most_frequent"}'
                         ORDER BY x::text DESC) AS mp2
FROM unnest(ARRAY[2.00, 2, 2.0]::numeric[]) x;

-- unique_values: distinct, capped; btree order, or most recent first with at
SELECT g, cdp.unique_values(v, 2) AS first2, cdp.unique_values(v, 10) AS all_v,
       cdp.unique_values(v, at, 2) AS recent2, cdp.unique_values(n, 10) AS nums
FROM merge_obs GROUP BY g ORDER BY g;

-- type coverage: text, numeric, timestamptz, jsonb, arrays
SELECT cdp.latest(at, at) AS ts, cdp.most_frequent(at) AS ts_mode,
       cdp.latest(j, at) AS jsonb_latest, cdp.most_frequent(j -> 'country') AS jsonb_mode,
       cdp.latest(ARRAY[n, n + 1], at) AS arr_latest, cdp.most_frequent(ARRAY[v]) AS arr_mode,
       cdp.unique_values(j -> 'tags', 5) AS jsonb_unique
FROM merge_obs;
SELECT cdp.latest(x, t), cdp.earliest(x, t), cdp.most_frequent(x) FROM (VALUES
  ('{1,2}'::int[], '2024-01-01'::timestamptz), ('{1}', '2024-01-02'), ('{1}', '2024-01-01'), ('{0,9}', '2024-01-02')) s(x, t);
SELECT cdp.latest(x, t) FROM (VALUES (true, '2024-01-01'::timestamptz), (false, '2024-01-01')) s(x, t);
SELECT cdp.latest(x, t) FROM (VALUES ('1 day'::interval, '2024-01-01'::timestamptz), ('24 hours', '2024-01-02')) s(x, t);
SELECT cdp.latest(x COLLATE "C", t) AS c_order, cdp.unique_values(x COLLATE "C", 3) AS c_unique
FROM (VALUES ('B', '2024-01-01'::timestamptz), ('a', '2024-01-01')) s(x, t);

-- merge_profile: default strategy latest, empty values ignored
SELECT g, cdp.merge_profile(j, at) FROM merge_obs GROUP BY g ORDER BY g;
-- every strategy
SELECT jsonb_pretty(cdp.merge_profile(j, at, p, '{"email": "priority", "country": "most_frequent",
  "tags": "union", "ltv": "sum", "seen": "earliest", "n": "count"}'))
FROM merge_obs WHERE g = 1;
SELECT cdp.merge_profile(j, at, p, '{"email": "max", "country": "min", "ltv": "max", "tags": "count"}')
FROM merge_obs WHERE g = 1;
SELECT cdp.merge_profile(j, at, p, '{"email": "earliest", "country": "latest", "ltv": "min", "tags": "most_frequent"}')
FROM merge_obs WHERE g = 1;
-- ignore_empty false: "", [], {} and null take part
SELECT cdp.merge_profile(j, at, p, '{"ignore_empty": false, "tags": "union", "ltv": "sum", "country": "count"}')
FROM merge_obs WHERE g = 1;
-- union flattens one level, keeps nested arrays, ignores empty elements
SELECT cdp.merge_profile(x, t, 0, '{"tags": "union"}') FROM (VALUES
  ('{"tags": ["b", "a", "", null, ["n"], {"k": 1}]}'::jsonb, '2024-01-01'::timestamptz),
  ('{"tags": "c"}', '2024-01-02'), ('{"tags": [1, "a"]}', '2024-01-03')) s(x, t);
-- max/min compare in jsonb order: null < string < number < boolean < array < object
SELECT cdp.merge_profile(x, t, 0, '{"a": "max", "b": "min"}') FROM (VALUES
  ('{"a": "zzz", "b": 10}'::jsonb, '2024-01-01'::timestamptz), ('{"a": 2, "b": 9.5}', '2024-01-02'),
  ('{"a": 10, "b": "x"}', '2024-01-03'), ('{"a": true, "b": [1]}', '2024-01-04')) s(x, t);
-- sum keeps exact numerics and skips non-numbers; a key with no number is left out
SELECT cdp.merge_profile(x, t, 0, '{"a": "sum", "b": "sum"}') FROM (VALUES
  ('{"a": 0.1, "b": "x"}'::jsonb, '2024-01-01'::timestamptz), ('{"a": 0.2}', '2024-01-02'),
  ('{"a": 1e20}', '2024-01-03')) s(x, t);
-- latest ties on at go to the smallest value in jsonb order
SELECT cdp.merge_profile(x, '2024-01-01', 0) FROM (VALUES ('{"a": "b"}'::jsonb), ('{"a": "a"}'), ('{"a": 1}')) s(x);
-- a group without usable observations gives NULL
SELECT cdp.merge_profile(j, at) FROM merge_obs WHERE g = 2;
SELECT cdp.merge_profile(x, now()) FROM (VALUES ('{"a": ""}'::jsonb), ('{}')) s(x);

-- lineage: why does this profile say NL?
SELECT key, value FROM jsonb_each((SELECT cdp.merge_profile_lineage(j, at, p,
  '{"country": "most_frequent", "email": "priority", "ltv": "sum"}', src) FROM merge_obs WHERE g = 1)) ORDER BY key;
SELECT cdp.merge_profile_lineage(j, at) -> 'email' FROM merge_obs WHERE g = 1;
SELECT cdp.merge_profile_lineage(j, at, p) -> 'email' FROM merge_obs WHERE g = 1;
SELECT cdp.merge_profile_lineage(j, at, NULL, NULL, 'crm') -> 'email' FROM merge_obs WHERE g = 1;
-- equal value, at and priority: the smallest source label is shown
SELECT cdp.merge_profile_lineage(x, '2024-01-01', 1, NULL, s) -> 'a' FROM (VALUES ('{"a": 1}'::jsonb, 'web'), ('{"a": 1}', 'crm')) v(x, s);

-- golden records are written straight in jsonb's format: the same bytes as
-- the jsonb API builds (jsonb_object_agg over DISTINCT ON), also past 32
-- keys (every 32nd entry keeps an offset), for numerics and containers
-- after odd-length strings (int-aligned), and for null, bool and ""
CREATE TABLE merge_wide AS
SELECT g, at, jsonb_object_agg(k, v) AS j
FROM (SELECT g, at, 'k' || lpad(i::text, 2, '0') || repeat('x', i % 3) AS k,
             CASE i % 7 WHEN 0 THEN to_jsonb(i * at_i + 0.5)
                        WHEN 1 THEN to_jsonb(repeat('s', (i + at_i) % 5))
                        WHEN 2 THEN jsonb_build_array(i, 'a' || at_i, jsonb_build_object('n', at_i))
                        WHEN 3 THEN to_jsonb(at_i % 2 = 0)
                        WHEN 4 THEN 'null'::jsonb
                        WHEN 5 THEN jsonb_build_object('x', repeat('y', at_i % 4), 'z', at_i)
                        ELSE to_jsonb(-at_i) END AS v
      FROM generate_series(1, 3) g, generate_series(1, 4) at_i,
           LATERAL (SELECT timestamptz '2024-01-01' + at_i * interval '1 day' AS at) t,
           generate_series(1, 10 + g * 12) i
      WHERE (i + at_i + g) % 4 <> 0) o
GROUP BY g, at;
WITH mp AS (SELECT g, cdp.merge_profile(j, at, 0, '{"ignore_empty": false}') AS mp
            FROM merge_wide GROUP BY g),
ref AS (SELECT g, jsonb_object_agg(key, value) AS ref
        FROM (SELECT DISTINCT ON (g, key) g, key, value
              FROM merge_wide, jsonb_each(j) ORDER BY g, key, at DESC, value) o
        GROUP BY g)
SELECT g, (SELECT count(*) FROM jsonb_object_keys(mp)) AS keys, mp = ref AS equal,
       mp::text = ref::text AS same_text, pg_column_size(mp) = pg_column_size(ref) AS same_size,
       mp @> ref AND ref @> mp AS contain,
       (SELECT bool_and(mp -> key = value AND mp ? key) FROM jsonb_each(ref)) AS lookups
FROM mp JOIN ref USING (g) ORDER BY g;
SELECT cdp.merge_profile(j, at, 0, '{"ignore_empty": false, "k07x": "sum", "k08xx": "max"}') AS mp,
       cdp.merge_profile(j, at, 0, '{"k01x": "earliest"}') -> 'k01x' AS earliest
FROM merge_wide WHERE g = 1;
DROP TABLE merge_wide;

-- observations stored with a 1-byte header (copied to an aligned buffer),
-- a 4-byte header, and out of line (toasted) give the same merge
CREATE TABLE merge_toast (g int, at timestamptz, j jsonb);
ALTER TABLE merge_toast ALTER j SET STORAGE external;
INSERT INTO merge_toast
SELECT 1, timestamptz '2024-01-01' + i * interval '1 day',
       jsonb_build_object('big', repeat(md5(i::text), 100 * i), 'i', i, 's', 'x' || i)
FROM generate_series(1, 3) i
UNION ALL SELECT 1, '2024-02-01', '{"s": "short", "c": "NL"}'
UNION ALL SELECT 1, '2023-02-01', jsonb_build_object('c', 'DE', 'pad', repeat('p', 200));
SELECT pg_column_size(j) AS stored, pg_column_size(j) < 127 AS short_header FROM merge_toast ORDER BY at;
SELECT m - 'big' - 'pad' AS merged, length(m ->> 'big') AS big, length(m ->> 'pad') AS pad
FROM (SELECT cdp.merge_profile(j, at) AS m FROM merge_toast GROUP BY g) x;
DROP TABLE merge_toast;

-- observations are matched to attributes by their key layout: layouts with
-- the same key bytes split differently, layouts that change strategy when
-- the rules change from one row to the next, and more layouts than the
-- per-query cache holds (its slots are reused)
SELECT g, cdp.merge_profile(j, at, 0, r) AS merged
FROM (VALUES (1, 1, '{"ab": 1, "cd": 2}'::jsonb, '{"ab": "max"}'::jsonb),
             (1, 2, '{"a": 3, "bcd": 4}', '{"ab": "max"}'),
             (1, 3, '{"ab": 0, "cd": 5}', '{"ab": "max"}'),
             (2, 4, '{"ab": 7}', '{"ab": "min"}'),
             (2, 5, '{"ab": 6}', '{"ab": "min"}'),
             (2, 6, '{"ab": 8}', '{"ab": "min"}')) v(g, t, j, r),
     LATERAL (SELECT timestamptz '2024-01-01' + t * interval '1 h' AS at) a
GROUP BY g ORDER BY g;
WITH o AS (
  SELECT i, jsonb_build_object('k' || (i % 300), i, 'k' || ((i * 7 + 3) % 300), -i) AS j,
         timestamptz '2024-01-01' + i * interval '1 s' AS at
  FROM generate_series(1, 3000) i
)
SELECT (SELECT count(*) FROM jsonb_object_keys(m)) AS keys, m = oracle AS same
FROM (SELECT cdp.merge_profile(j, at) AS m FROM o) a,
     (SELECT jsonb_object_agg(k, v) AS oracle FROM (
        SELECT DISTINCT ON (k) k, v FROM o, jsonb_each(j) e(k, v) ORDER BY k, at DESC) s) b;
-- values replaced in place by ones of another type (strings are stored
-- unaligned, numerics and containers int-aligned); the record after each row
SELECT t, cdp.merge_profile(j, timestamptz '2024-01-01' + t * interval '1 h') OVER (ORDER BY t) AS merged
FROM (VALUES (1, '{"s": "abc", "v": "a string of 23 letters"}'::jsonb),
             (2, '{"v": 12.5}'), (3, '{"v": "xy"}'), (4, '{"v": [1, 2]}'),
             (5, '{"s": "abcde", "v": 7}'), (6, '{"v": {"k": 1.5}}')) v(t, j);

-- a state keeps its attributes' records one after another: when the first
-- attribute's value grows or shrinks (or becomes empty and is skipped) the
-- records after it move, numerics and arrays among them; priority, max and
-- min keep the winner's priority in the record, lineage the source label.
-- After every row the record equals DISTINCT ON over the rows so far.
CREATE TABLE merge_shift AS
SELECT t, timestamptz '2024-01-01' + t * interval '1 h' AS at, (t * 5) % 3 AS p,
       'src' || repeat('z', t % 7) AS src,
       jsonb_build_object('a', repeat('x', (t * 7) % 23), 'n' || t % 4, t * 1.25,
                          'c' || t % 3, jsonb_build_array(t, repeat('y', t % 5))) AS j
FROM generate_series(1, 60) t;
CREATE VIEW merge_shift_kv AS
SELECT t, at, p, src, k, v FROM merge_shift, jsonb_each(j) e(k, v)
WHERE v NOT IN ('""', '[]', '{}', 'null');
WITH w AS (
  SELECT t, cdp.merge_profile(j, at) OVER w AS m,
         cdp.merge_profile(j, at, p, '{"a": "priority", "n1": "max", "n2": "min", "c0": "priority"}') OVER w AS r,
         cdp.merge_profile_lineage(j, at, p, '{"a": "priority", "n1": "max"}', src) OVER w AS l
  FROM merge_shift WINDOW w AS (ORDER BY t))
SELECT count(*) AS rows, count(*) FILTER (WHERE m = mo) AS latest_equal,
       count(*) FILTER (WHERE r = ro) AS rules_equal, count(*) FILTER (WHERE lv = lo) AS lineage_equal
FROM w, LATERAL (
  SELECT (SELECT jsonb_object_agg(k, v) FROM (
            SELECT DISTINCT ON (k) k, v FROM merge_shift_kv WHERE t <= w.t
            ORDER BY k, at DESC) d) AS mo,
         (SELECT jsonb_object_agg(k, v) FROM (
            SELECT DISTINCT ON (k) k, v FROM merge_shift_kv WHERE t <= w.t
            ORDER BY k, CASE WHEN k IN ('a', 'c0') THEN p END DESC, CASE k WHEN 'n1' THEN v END DESC,
                     CASE k WHEN 'n2' THEN v END, at DESC) d) AS ro,
         (SELECT jsonb_object_agg(k, jsonb_build_object('value', v, 'source', src, 'priority', p)) FROM (
            SELECT DISTINCT ON (k) k, v, src, p FROM merge_shift_kv WHERE t <= w.t
            ORDER BY k, CASE WHEN k = 'a' THEN p END DESC, CASE k WHEN 'n1' THEN v END DESC,
                     at DESC) d) AS lo,
         (SELECT jsonb_object_agg(key, jsonb_build_object('value', value -> 'value',
                   'source', value -> 'source', 'priority', value -> 'priority'))
          FROM jsonb_each(w.l)) AS lv) o;
DROP VIEW merge_shift_kv;
DROP TABLE merge_shift;

-- bad input
SELECT cdp.merge_profile(j, at, p, '{"email": "newest"}') FROM merge_obs;
SELECT cdp.merge_profile(j, at, p, '{"email": 1}') FROM merge_obs;
SELECT cdp.merge_profile(j, at, p, '{"ignore_empty": "yes"}') FROM merge_obs;
SELECT cdp.merge_profile(j, at, p, '["latest"]') FROM merge_obs;
SELECT cdp.merge_profile('[1, 2]', now());
SELECT cdp.merge_profile('"x"', now());
SELECT cdp.latest(point(1, 2), now());
SELECT cdp.most_frequent(x) FROM (VALUES ('{"a": 1}'::json)) s(x);
SELECT cdp.unique_values(v, 0) FROM merge_obs;
SELECT cdp.unique_values(v, NULL) FROM merge_obs;
SELECT cdp.unique_values(v, CASE WHEN v = 'a' THEN 3 ELSE 2 END) FROM merge_obs;
SELECT cdp.unique_values(ARRAY[v], 2) FROM merge_obs;

-- large groups stay linear: 100k observations, 100k distinct values
SELECT cdp.most_frequent(i % 50000) AS mf, cdp.unique_values(i, 3) AS uv,
       cdp.unique_values(i, '2024-01-01'::timestamptz + i * interval '1 s', 3) AS uv_recent,
       cdp.latest(i, '2024-01-01'::timestamptz + (i % 1000) * interval '1 s') AS latest,
       jsonb_array_length(cdp.merge_profile(jsonb_build_object('t', i, 'k' || (i % 100), i), now(), 0, '{"t": "union"}') -> 't') AS union_len
FROM generate_series(1, 100000) i;

-- golden records of the sample CRM data agree with plain SQL (DISTINCT ON, mode())
CREATE TABLE merge_crm AS
SELECT coalesce(user_id, 'crm_' || contact_id) AS pid, updated_at AS at,
       CASE source_system WHEN 'shop' THEN 3 WHEN 'store_pos' THEN 2 ELSE 1 END AS prio,
       jsonb_strip_nulls(jsonb_build_object('email', cdp.normalize_email(email, true),
         'first_name', first_name, 'last_name', last_name, 'country', country)) AS attrs
FROM crm_contacts;
WITH golden AS (
  SELECT pid, cdp.merge_profile(attrs, at, prio, '{"country": "most_frequent", "email": "priority"}') AS g
  FROM merge_crm GROUP BY pid
), kv AS (
  SELECT pid, key, value, at, prio FROM merge_crm, jsonb_each(attrs)
), oracle AS (
  SELECT pid, jsonb_object_agg(key, value) AS g FROM (
    (SELECT DISTINCT ON (pid, key) pid, key, value FROM kv WHERE key IN ('first_name', 'last_name')
      ORDER BY pid, key, at DESC, value)
    UNION ALL
    (SELECT DISTINCT ON (pid, key) pid, key, value FROM kv WHERE key = 'email'
      ORDER BY pid, key, prio DESC, at DESC, value)
    UNION ALL
    SELECT pid, key, mode() WITHIN GROUP (ORDER BY value) FROM kv WHERE key = 'country' GROUP BY pid, key
  ) s GROUP BY pid
)
SELECT count(*) AS profiles, count(*) FILTER (WHERE golden.g IS DISTINCT FROM oracle.g) AS mismatches,
       count(*) FILTER (WHERE golden.g ? 'email') > 0 AS some_emails
FROM golden FULL JOIN oracle USING (pid);

-- parallel plans give the same answers as serial ones
CREATE TABLE merge_par AS
SELECT i % 97 AS g, (ARRAY['nl', 'de', 'fr', 'be', NULL])[1 + abs(hashint4(i * 13)) % 5] AS v,
       '2024-01-01'::timestamptz + (abs(hashint4(i * 3)) % 200) * interval '1 h' AS at,
       abs(hashint4(i * 7)) % 3 AS p,
       jsonb_build_object('c', (ARRAY['nl', 'de', 'fr', 'be', ''])[1 + abs(hashint4(i * 5)) % 5],
                          'n', abs(hashint4(i * 11)) % 10, 't', jsonb_build_array(i % 7, (i % 4)::text)) AS j
FROM generate_series(1, 30000) i;
ANALYZE merge_par;
CREATE TABLE merge_serial AS
SELECT g, cdp.latest(v, at) AS l, cdp.earliest(v, at) AS e, cdp.by_priority(v, p, at) AS bp,
       cdp.most_frequent(v) AS mf, cdp.most_frequent(v, at) AS mfa, cdp.unique_values(v, 3) AS uv,
       cdp.unique_values(v, at, 2) AS uva,
       cdp.merge_profile(j, at, p, '{"c": "most_frequent", "n": "sum", "t": "union"}') AS mp,
       cdp.merge_profile_lineage(j, at, p, '{"n": "max", "c": "priority"}', 's' || p) AS ml
FROM merge_par GROUP BY g;
CREATE TABLE merge_serial_all AS
SELECT cdp.unique_values(v, at, 3) AS uva, cdp.most_frequent(v, at) AS mfa, cdp.merge_profile(j, at) AS mp,
       cdp.merge_profile_lineage(j, at, p, '{"c": "min", "t": "union", "n": "count"}') AS ml
FROM merge_par;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET force_parallel_mode = on;
SET enable_hashagg = off;
EXPLAIN (COSTS OFF)
SELECT g, cdp.latest(v, at), cdp.most_frequent(v), cdp.merge_profile(j, at) FROM merge_par GROUP BY g;
EXPLAIN (COSTS OFF)
SELECT cdp.unique_values(v, 3), cdp.merge_profile_lineage(j, at) FROM merge_par;
CREATE TABLE merge_parallel AS
SELECT g, cdp.latest(v, at) AS l, cdp.earliest(v, at) AS e, cdp.by_priority(v, p, at) AS bp,
       cdp.most_frequent(v) AS mf, cdp.most_frequent(v, at) AS mfa, cdp.unique_values(v, 3) AS uv,
       cdp.unique_values(v, at, 2) AS uva,
       cdp.merge_profile(j, at, p, '{"c": "most_frequent", "n": "sum", "t": "union"}') AS mp,
       cdp.merge_profile_lineage(j, at, p, '{"n": "max", "c": "priority"}', 's' || p) AS ml
FROM merge_par GROUP BY g;
SELECT count(*) AS groups,
       (SELECT count(*) FROM (TABLE merge_serial EXCEPT TABLE merge_parallel) d) AS differ,
       count(DISTINCT l) > 1 AS varied, bool_and(mp ? 't') AS has_union
FROM merge_parallel;
SELECT s.* = p.* AS same, p.uva, p.mfa, p.mp
FROM merge_serial_all s, (SELECT cdp.unique_values(v, at, 3) AS uva, cdp.most_frequent(v, at) AS mfa, cdp.merge_profile(j, at) AS mp,
       cdp.merge_profile_lineage(j, at, p, '{"c": "min", "t": "union", "n": "count"}') AS ml
  FROM merge_par) p;
RESET enable_hashagg;
RESET force_parallel_mode;
RESET max_parallel_workers_per_gather;
RESET min_parallel_table_scan_size;
RESET parallel_tuple_cost;
RESET parallel_setup_cost;

DROP TABLE merge_obs, merge_crm, merge_par, merge_serial, merge_serial_all, merge_parallel;

-- The state size declared for merge_profile with rules counts palloc's
-- rounding: a smaller figure made the planner choose a spilling hash
-- aggregate over the sorted plan at 1M profiles (13.3 s against 7.5 s).
SELECT aggtransspace >= 1536 AS rules_state_size_declared
FROM pg_aggregate WHERE aggfnoid = 'cdp.merge_profile(jsonb, timestamptz, integer, jsonb)'::regprocedure;
-- Without rules a state counts about 348 bytes of a hash aggregate's arena
-- at 1M profiles (free chunks and the huge page alignment of the blocks
-- included).
SELECT aggfnoid::regprocedure, aggtransspace FROM pg_aggregate
WHERE aggfnoid IN ('cdp.merge_profile(jsonb, timestamptz)'::regprocedure,
                   'cdp.merge_profile(jsonb, timestamptz, integer)'::regprocedure)
ORDER BY 1::text;
