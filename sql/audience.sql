-- cdp.audience: sets of profile ids on CRoaring bitmaps
SET search_path = public, cdp;

--
-- Text I/O
--
-- round trips; runs of 3 or more print as lo..hi
SELECT t AS input, t::audience AS audience, t::audience::text::audience = t::audience AS round_trip
FROM (VALUES ('{}'), ('{7}'), ('{1,2}'), ('{1,2,3}'), ('{1,2,3,5,6,8}'),
             ('{0,4294967295}'), ('{1..100000,100002}'), ('{0..4294967295}'),
             ('{4294967290..4294967295}'), ('{65535,65536,65537,131072}')) v(t);
-- white space, order, duplicates and overlapping ranges do not matter
SELECT ' { 9 , 3,1 ,2, 2, 10 .. 12 , 11..13,
   5 } '::audience;
SELECT '{1..3}'::audience = '{3,2,1,1}'::audience AS same;
-- bad syntax is an error, with the position
SELECT ''::audience;
SELECT '{'::audience;
SELECT '1,2'::audience;
SELECT '{1,}'::audience;
SELECT '{,1}'::audience;
SELECT '{1 2}'::audience;
SELECT '{1}x'::audience;
SELECT '{a}'::audience;
SELECT '{1...3}'::audience;
SELECT '{1..}'::audience;
SELECT '{5..3}'::audience;
SELECT '{1.5}'::audience;
-- boundary ids: 0 and 4294967295 work, -1 and 4294967296 are errors
SELECT '{0}'::audience AS zero, '{4294967295}'::audience AS max;
SELECT '{-1}'::audience;
SELECT '{4294967296}'::audience;
SELECT '{99999999999999999999999}'::audience;
SELECT '{1..4294967296}'::audience;
SELECT size('{0..4294967295}'), to_array('{0,4294967295}');

--
-- Construction
--
SELECT audience(ARRAY[5, 3, NULL, 3, 0, 4294967295]::bigint[]) AS skips_nulls,
       audience('{}'::bigint[]) AS empty,
       audience('{{1,2},{3,4}}'::bigint[]) AS two_dims,
       audience(NULL::bigint[]) IS NULL AS null_array;
SELECT audience(ARRAY[1, -1]::bigint[]);
SELECT audience(ARRAY[4294967296]::bigint[]);

CREATE TABLE audience_ids (grp int, id bigint);
INSERT INTO audience_ids
  SELECT g % 3, g * 7 FROM generate_series(1, 3000) g;
INSERT INTO audience_ids VALUES (0, NULL), (1, 7), (3, NULL);
SELECT grp, size(audience_agg(id)), audience_agg(id) = audience(array_agg(id)) AS same_as_array
FROM audience_ids GROUP BY grp ORDER BY grp;
-- no rows, or only NULLs: NULL (like array_agg and sum)
SELECT audience_agg(id) IS NULL AS no_rows FROM audience_ids WHERE false;
SELECT audience_agg(id) IS NULL AS only_nulls FROM audience_ids WHERE grp = 3;
SELECT audience_agg(id) FROM (VALUES (4294967295), (0)) v(id);
SELECT audience_agg(id) FROM (VALUES (1), (-1)) v(id);
SELECT audience_agg(id) FROM (VALUES (1), (4294967296)) v(id);

--
-- Algebra
--
SELECT a, b, a | b AS "union", a & b AS "intersect", a - b AS "minus", a # b AS "xor",
       a = b AS eq, a <> b AS ne, a @> b AS contains, a <@ b AS contained, a && b AS overlaps
FROM (VALUES ('{1,2,3}'::audience, '{3,4}'::audience),
             ('{1..10}', '{2..4}'),
             ('{2..4}', '{1..10}'),
             ('{1,2}', '{2,1}'),
             ('{}', '{}'),
             ('{}', '{1}'),
             ('{1}', '{}'),
             ('{0,4294967295}', '{4294967295}'),
             ('{1..100000}', '{50000..150000}')) v(a, b);
-- a set built from bitset containers equals the same set built from runs
SELECT (SELECT audience_agg(x) FROM generate_series(0, 9999) x) = '{0..9999}'::audience AS bitset_eq_run,
       (SELECT audience_agg(x) FROM generate_series(0, 9999) x) <> '{0..9998}'::audience AS differ;
-- element membership: operators and cdp.contains
SELECT a @> 3 AS has3, 3 <@ a AS in3, a @> 5 AS has5, contains(a, 0), contains(a, 4294967295)
FROM (VALUES ('{0,3,4294967295}'::audience)) v(a);
SELECT '{1}'::audience @> -1;
SELECT 4294967296 <@ '{1}'::audience;
-- membership against a constant audience over many rows, and row by row
SELECT count(*) FROM generate_series(1, 1000) g WHERE '{1..10,500,2000}'::audience @> g::bigint;
SELECT count(*) FROM audience_ids i
  JOIN (SELECT grp, audience_agg(id) a FROM audience_ids GROUP BY grp) s USING (grp)
WHERE contains(s.a, i.id) AND i.id < 7000;
-- NULLs: every function and operator is strict
SELECT NULL::audience | '{1}' AS u, size(NULL), contains(NULL, 1), contains('{1}', NULL),
       '{1}'::audience @> NULL::bigint AS op, jaccard(NULL, '{1}'), overlap('{1}', NULL),
       sample(NULL, 1, 1), to_array(NULL), to_roaring(NULL), audience_from_roaring(NULL);
SELECT count(*) FROM members(NULL);

--
-- Measures and members
--
SELECT size(a), array_length(to_array(a), 1) AS array_length, jaccard(a, b), overlap(a, b), size(a & b) AS check_overlap
FROM (VALUES ('{1,2,3}'::audience, '{2,3,4}'::audience),
             ('{}', '{}'),
             ('{}', '{1}'),
             ('{1..1000}', '{501..1500}'),
             ('{0,4294967295}', '{0,4294967295}')) v(a, b);
-- members come out ascending
SELECT array_agg(m ORDER BY n) AS members, bool_and(m > coalesce(prev, -1)) AS ascending
FROM (SELECT m, n, lag(m) OVER (ORDER BY n) prev
      FROM members('{4294967295,70000,5,0,65536,65535}') WITH ORDINALITY AS t(m, n)) s;
SELECT count(*), min(m), max(m), sum(m) FROM members('{0..99999,1000000..1099999}') m;
SELECT count(*) FROM members('{}');
SELECT m FROM members('{1..1000000}') m LIMIT 3;
SELECT to_array('{}'), array_length(to_array('{0..99999}'), 1);

--
-- Sampling
--
SELECT sample(a, 5, 1) AS s1, sample(a, 5, 1) = sample(a, 5, 1) AS deterministic,
       sample(a, 5, 1) <> sample(a, 5, 2) AS seed_matters,
       sample(a, 5, 1) <@ a AS from_a,
       size(sample(a, 500, 42)) AS n500, sample(a, 0, 1) AS none,
       sample(a, 1000, 1) = a AS all, sample(a, 5000, 1) = a AS more_than_all
FROM (VALUES ('{1..1000}'::audience)) v(a);
-- for one seed, samples of nested audiences agree on what they share
-- (user-defined operators share one precedence: parenthesize)
SELECT sample(small, 100, 9) <@ (sample(big, 1000, 9) & small) AS nested_consistent,
       size(sample(big, 1000, 9) & small) AS big_sample_in_small
FROM (SELECT '{1..10000}'::audience big, '{1..2000}'::audience small) s;
SELECT sample('{1,2}', -1, 1);

--
-- Binary format: CRoaring's portable serialization
--
SELECT a, to_roaring(a), audience_from_roaring(to_roaring(a)) = a AS round_trip
FROM (VALUES ('{}'::audience), ('{1,2,3,70000}'), ('{1..100}'), ('{0,4294967295}')) v(a);
-- big ones: bitset, run and many array containers
SELECT n, size(a), length(to_roaring(a)) AS bytes, audience_from_roaring(to_roaring(a)) = a AS round_trip
FROM (SELECT 'bitset' n, audience_agg(x * 2) a FROM generate_series(0, 50000) x
      UNION ALL SELECT 'runs', '{0..1000000}'::audience
      UNION ALL SELECT 'arrays', audience_agg(x * 65536 + 7) FROM generate_series(0::bigint, 65535) x) s;
-- a serialization without run containers (as Java or Go write it) is accepted
SELECT audience_from_roaring('\x3a300000010000000000020010000000010002000300');

CREATE FUNCTION pg_temp.try_roaring(b bytea) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  RETURN cdp.audience_from_roaring(b)::text;
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
CREATE FUNCTION pg_temp.try_detail(b bytea) RETURNS text LANGUAGE plpgsql AS $$
DECLARE d text;
BEGIN
  PERFORM cdp.audience_from_roaring(b);
  RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
  RETURN SQLSTATE || ': ' || d;
END $$;
-- hand-altered serializations: each defect is named
SELECT what, pg_temp.try_detail(b::bytea) AS result FROM (VALUES
  ('valid array',        '\x3a300000010000000000020010000000010002000300'),
  ('empty input',        '\x'),
  ('garbage',            '\xdeadbeef'),
  ('cookie only',        '\x3a300000'),
  ('count 65537',        '\x3a300000010001000000020010000000010002000300'),
  ('count too big',      '\x3a300000ffffffff'),
  ('count 2, 1 present', '\x3a300000020000000000020010000000010002000300'),
  ('cardinality +1',     '\x3a300000010000000000030010000000010002000300'),
  ('cardinality -1',     '\x3a300000010000000000010010000000010002000300'),
  ('unsorted values',    '\x3a300000010000000000020010000000030002000100'),
  ('duplicate values',   '\x3a300000010000000000020010000000010001000300'),
  ('wrong offset',       '\x3a300000010000000000020011000000010002000300'),
  ('trailing byte',      '\x3a30000001000000000002001000000001000200030000'),
  ('truncated values',   '\x3a3000000100000000000200100000000100020003'),
  ('keys descending',    '\x3a300000020000000100000000000000180000001a00000001000100'),
  ('valid run',          '\x3b3000000100006300010001006300'),
  ('no runs',            '\x3b3000000100006300000001006300'),
  ('run past 65535',     '\x3b30000001000001000100ffff0100'),
  ('run count too big',  '\x3b3000000100006300090001006300'),
  ('overlapping runs',   '\x3b300000010000130002000100090005000900'),
  ('adjacent runs',      '\x3b30000001000013000200000009000a000900'),
  ('run sum differs',    '\x3b3000000100006400010001006300'),
  ('unknown cookie',     '\x3c3000000100006300010001006300')) v(what, b);
-- a bitset container with one bit flipped
SELECT pg_temp.try_detail(set_byte(r, 100, get_byte(r, 100) # 1)) AS flipped_bit,
       pg_temp.try_detail(r) AS intact
FROM (SELECT to_roaring(audience_agg(x * 2)) r FROM generate_series(0, 50000) x) s;
-- every truncation of a multi-container serialization is rejected
SELECT count(*) AS prefixes, count(*) FILTER (WHERE pg_temp.try_roaring(substr(r, 1, n)) LIKE '22P03:%') AS rejected
FROM (SELECT to_roaring('{1,2,3,70000..70100,140000,200000,300000}'::audience) r) s,
     generate_series(0, length(r) - 1) n;
-- every single-byte change is rejected or gives a valid audience that
-- survives another round trip
SELECT count(*) AS mutations,
       count(*) FILTER (WHERE res LIKE '22P03:%') AS rejected,
       count(*) FILTER (WHERE res NOT LIKE '22P03:%'
                        AND res::audience = audience_from_roaring(to_roaring(res::audience))) AS accepted_valid
FROM (SELECT pg_temp.try_roaring(set_byte(r, n, (get_byte(r, n) + d) % 256)) res
      FROM (SELECT to_roaring('{1,2,3,70000..70100,140000,200000,300000}'::audience) r) s,
           generate_series(0, length(r) - 1) n, (VALUES (1), (128), (255)) v(d)) m;
-- random garbage
SELECT setseed(0.5);
SELECT count(*) AS garbage, count(*) FILTER (WHERE res LIKE '22P03:%') AS rejected
FROM (SELECT pg_temp.try_roaring(decode(string_agg(lpad(to_hex((random() * 255)::int), 2, '0'), ''), 'hex')) res
      FROM generate_series(1, 500) g, generate_series(1, 1 + g % 40) k GROUP BY g) s;
-- the same with a valid cookie in front
SELECT count(*) AS garbage, count(*) FILTER (WHERE res LIKE '22P03:%') AS rejected
FROM (SELECT pg_temp.try_roaring(c || decode(string_agg(lpad(to_hex((random() * 255)::int), 2, '0'), ''), 'hex')) res
      FROM generate_series(1, 500) g, generate_series(1, 1 + g % 40) k,
           (VALUES ('\x3a300000'::bytea), ('\x3b300000')) v(c) GROUP BY g, c) s;

--
-- Union and intersection aggregates
--
SELECT audience_union_agg(a) AS u, audience_intersect_agg(a) AS i
FROM (VALUES ('{1,2,3}'::audience), (NULL), ('{2,3,4}'), ('{3,2}')) v(a);
SELECT audience_union_agg(a) AS u, audience_intersect_agg(a) AS i
FROM (VALUES ('{1,2,3}'::audience), ('{}'), ('{4}')) v(a);
SELECT audience_union_agg(a) IS NULL AS u_null, audience_intersect_agg(a) IS NULL AS i_null
FROM (VALUES (NULL::audience)) v(a);
SELECT grp, u = (SELECT audience_agg(id) FROM audience_ids j WHERE j.grp = s.grp) AS union_ok, size(i) AS inter
FROM (SELECT grp, audience_union_agg(audience(ARRAY[id])) u, audience_intersect_agg(audience(ARRAY[id])) i
      FROM audience_ids WHERE id IS NOT NULL GROUP BY grp) s ORDER BY grp;
SELECT audience_intersect_agg(a) FROM (VALUES ('{1..10}'::audience), ('{5..20}'), ('{0..7}')) v(a);
-- as window aggregates: the final function leaves the state usable
SELECT id, audience_agg(id) OVER (ORDER BY id) FROM audience_ids WHERE id <= 35 AND grp = 1;

--
-- Parallel aggregation equals serial
--
CREATE TABLE audience_par AS
  SELECT g AS id, ('{' || g || ',' || g * 3 || '}')::audience AS a
  FROM generate_series(1, 60000) g;
ANALYZE audience_par;
CREATE TABLE audience_serial AS
  SELECT audience_agg(id * 5) AS agg, audience_union_agg(a) AS u,
         audience_intersect_agg(a | '{7}') AS i FROM audience_par;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET force_parallel_mode = on;
EXPLAIN (COSTS OFF)
SELECT audience_agg(id * 5), audience_union_agg(a), audience_intersect_agg(a | '{7}') FROM audience_par;
SELECT p.agg = s.agg AS agg_same, p.u = s.u AS union_same, p.i = s.i AS intersect_same,
       size(p.agg) AS n, size(p.u) AS nu, p.i
FROM (SELECT audience_agg(id * 5) AS agg, audience_union_agg(a) AS u,
             audience_intersect_agg(a | '{7}') AS i FROM audience_par) p, audience_serial s;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
RESET force_parallel_mode;

-- an error in the middle of an aggregate; the next aggregate starts clean
-- (test/audience_oracle.sh checks that no memory is left behind)
SELECT audience_agg(CASE WHEN id = 40000 THEN -5 ELSE id END) FROM audience_par;
SELECT size(audience_agg(id)) FROM audience_par;

DROP TABLE audience_ids, audience_par, audience_serial;
RESET search_path;
