#!/usr/bin/env bash
# cdp.audience against plain SQL: random id sets (sparse, dense, runs, ids at
# both ends of the range, empty, equal and nested sets); every operator and
# function must equal the same computed with UNION / INTERSECT / EXCEPT over
# the member rows.  Also: parallel aggregation equals serial, binary COPY
# round trip and corrupt binary COPY input, and no memory left behind when
# errors interrupt bitmap work.  Prints TAP-style lines.
set -uo pipefail
DB=${CDP_TEST_DB:-contrib_regression}
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -d "$DB" -tA)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"; "${PSQL[@]}" -c "DROP SCHEMA IF EXISTS audience_oracle CASCADE" >/dev/null 2>&1' EXIT

# check DESCRIPTION SQL: ok when the query prints 0
check() {
  local desc=$1 sql=$2 out
  if out=$("${PSQL[@]}" -c "SET search_path = audience_oracle, cdp, public" -c "$sql" 2>&1) && [ "$out" = 0 ]; then
    echo "ok - $desc"
  else
    echo "not ok - $desc"
    echo "$out" | head -5 | sed 's/^/# /'
  fi
}

"${PSQL[@]}" >/dev/null <<'SQL' || { echo "not ok - set up random sets"; exit 1; }
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS audience_oracle CASCADE;
CREATE SCHEMA audience_oracle;
SET search_path = audience_oracle, cdp, public;
SELECT setseed(0.42);
CREATE TABLE m (set_id int, id bigint);
-- sparse over the whole id range
INSERT INTO m SELECT s, (random() * 4294967295)::bigint FROM generate_series(1, 4) s, generate_series(1, 200 * s);
-- dense, with duplicates: bitset containers
INSERT INTO m SELECT s, 100000 + (random() * 8000)::bigint FROM generate_series(5, 8) s, generate_series(1, 1500 * (s - 4));
-- runs of consecutive ids
INSERT INTO m SELECT s, g FROM generate_series(9, 12) s, generate_series(1, 8) r,
  LATERAL (SELECT (random() * 300000)::bigint + r * 0 + s * 0 AS lo, (random() * 1000)::int AS len) x,
  generate_series(x.lo, x.lo + x.len) g;
-- both ends of the id range
INSERT INTO m SELECT s, CASE WHEN random() < 0.5 THEN (random() * 100)::bigint
                             ELSE 4294967295 - (random() * 100)::bigint END
FROM generate_series(13, 16) s, generate_series(1, 150);
INSERT INTO m SELECT s, v FROM generate_series(13, 14) s, (VALUES (0), (4294967295)) v(v);
-- 17 equals 8 (other order), 18 is a subset of 9, 19 is empty
INSERT INTO m SELECT 17, id FROM m WHERE set_id = 8 ORDER BY id DESC;
INSERT INTO m SELECT 18, id FROM m WHERE set_id = 9 AND id % 3 = 0;
CREATE INDEX ON m (set_id, id);
CREATE TABLE sets AS SELECT generate_series(1, 19) AS set_id;
CREATE TABLE a AS
  SELECT s.set_id, coalesce(audience_agg(m.id), '{}') AS aud
  FROM sets s LEFT JOIN m USING (set_id) GROUP BY s.set_id;
CREATE TABLE probes AS
  SELECT id FROM (SELECT DISTINCT id FROM m) d ORDER BY random() LIMIT 200;
INSERT INTO probes SELECT (random() * 4294967295)::bigint FROM generate_series(1, 100);
INSERT INTO probes VALUES (0), (4294967295), (65535), (65536);
ANALYZE;
SQL

check "members, to_array, size equal the distinct member rows" "
SELECT count(*) FROM a WHERE
  to_array(aud) IS DISTINCT FROM ARRAY(SELECT DISTINCT id FROM m WHERE m.set_id = a.set_id ORDER BY 1)
  OR ARRAY(SELECT members(aud)) IS DISTINCT FROM to_array(aud)
  OR size(aud) <> (SELECT count(DISTINCT id) FROM m WHERE m.set_id = a.set_id)"

check "text and portable binary round trips" "
SELECT count(*) FROM a WHERE NOT (aud::text::audience = aud AND audience_from_roaring(to_roaring(aud)) = aud
  AND audience(to_array(aud)) = aud)"

for op in 'UNION:|' 'INTERSECT:&' 'EXCEPT:-'; do
  sqlop=${op%%:*} aop=${op#*:}
  check "a $aop b equals $sqlop over members (19 x 19 pairs)" "
SELECT count(*) FROM a x, a y WHERE to_array(x.aud OPERATOR(cdp.$aop) y.aud) IS DISTINCT FROM
  ARRAY(SELECT id FROM m WHERE set_id = x.set_id $sqlop SELECT id FROM m WHERE set_id = y.set_id ORDER BY 1)"
done

check "a # b equals (A EXCEPT B) UNION (B EXCEPT A)" "
SELECT count(*) FROM a x, a y WHERE to_array(x.aud # y.aud) IS DISTINCT FROM
  ARRAY((SELECT id FROM m WHERE set_id = x.set_id EXCEPT SELECT id FROM m WHERE set_id = y.set_id)
        UNION (SELECT id FROM m WHERE set_id = y.set_id EXCEPT SELECT id FROM m WHERE set_id = x.set_id) ORDER BY 1)"

check "= <> @> <@ && overlap jaccard equal their SQL definitions" "
WITH d AS (SELECT DISTINCT set_id, id FROM m),
  sz AS (SELECT set_id, count(d.id) AS n FROM sets LEFT JOIN d USING (set_id) GROUP BY set_id),
  i AS (SELECT x.set_id AS sx, y.set_id AS sy, count(*) AS n FROM d x JOIN d y USING (id) GROUP BY 1, 2),
  p AS (SELECT x.aud xa, y.aud ya, coalesce(i.n, 0) AS inter, zx.n + zy.n - coalesce(i.n, 0) AS uni,
               coalesce(i.n, 0) = zy.n AS x_has_y, coalesce(i.n, 0) = zx.n AS y_has_x
        FROM a x CROSS JOIN a y JOIN sz zx ON zx.set_id = x.set_id JOIN sz zy ON zy.set_id = y.set_id
        LEFT JOIN i ON i.sx = x.set_id AND i.sy = y.set_id)
SELECT count(*) FROM p WHERE
  (xa = ya) <> (x_has_y AND y_has_x) OR (xa <> ya) <> NOT (x_has_y AND y_has_x)
  OR (xa @> ya) <> x_has_y OR (xa <@ ya) <> y_has_x OR (xa && ya) <> (inter > 0)
  OR overlap(xa, ya) <> inter
  OR abs(jaccard(xa, ya) - CASE WHEN uni = 0 THEN 1 ELSE inter::float8 / uni END) > 1e-12"

check "a @> id, id <@ a and contains(a, id) equal EXISTS over members" "
SELECT count(*) FROM a, probes p WHERE
  (a.aud @> p.id) <> EXISTS (SELECT 1 FROM m WHERE m.set_id = a.set_id AND m.id = p.id)
  OR (p.id <@ a.aud) <> (a.aud @> p.id) OR contains(a.aud, p.id) <> (a.aud @> p.id)"

check "union and intersect aggregates equal SQL over members" "
SELECT (SELECT count(*) FROM a WHERE false)
  + (SELECT CASE WHEN to_array(audience_union_agg(aud)) = ARRAY(SELECT DISTINCT id FROM m ORDER BY 1) THEN 0 ELSE 1 END FROM a)
  + (SELECT CASE WHEN to_array(audience_intersect_agg(aud)) IS NOT DISTINCT FROM
       ARRAY(SELECT id FROM m WHERE set_id IN (5, 6, 7, 8, 17) GROUP BY id HAVING count(DISTINCT set_id) = 5 ORDER BY 1)
       THEN 0 ELSE 1 END FROM a WHERE set_id IN (5, 6, 7, 8, 17))
  + (SELECT CASE WHEN audience_intersect_agg(aud) = '{}' THEN 0 ELSE 1 END FROM a)"

check "sample: n members of a, deterministic, all when n >= size" "
SELECT count(*) FROM a, (VALUES (0), (1), (10), (1000), (100000)) n(n) WHERE
  size(sample(aud, n, 7)) <> least(n, size(aud)) OR NOT sample(aud, n, 7) <@ aud
  OR sample(aud, n, 7) <> sample(aud, n, 7)"

# Parallel aggregation equals serial.
"${PSQL[@]}" >/dev/null <<'SQL'
SET search_path = audience_oracle, cdp, public;
SELECT setseed(0.7);
CREATE TABLE big AS
  SELECT (random() * 3)::int AS grp, (random() * 2000000)::bigint AS id FROM generate_series(1, 300000);
ANALYZE big;
SET max_parallel_workers_per_gather = 0;
CREATE TABLE serial AS
  SELECT grp, audience_agg(id) AS agg, audience_union_agg(audience(ARRAY[id, id + 1])) AS u,
         audience_intersect_agg(audience(ARRAY[id, 5])) AS i
  FROM big GROUP BY grp;
SQL
PAR="SET search_path = audience_oracle, cdp, public; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2; SET force_parallel_mode = on;"
Q="SELECT grp, audience_agg(id) AS agg, audience_union_agg(audience(ARRAY[id, id + 1])) AS u,
   audience_intersect_agg(audience(ARRAY[id, 5])) AS i FROM big GROUP BY grp"
plan=$("${PSQL[@]}" -c "$PAR" -c "EXPLAIN (COSTS OFF) $Q" 2>&1)
if echo "$plan" | grep -q "Partial .*Aggregate" && echo "$plan" | grep -q "Gather"; then
  echo "ok - EXPLAIN shows a Partial Aggregate under Gather"
else
  echo "not ok - EXPLAIN shows a Partial Aggregate under Gather"; echo "$plan" | sed 's/^/# /'
fi
check "parallel audience aggregates equal serial ones" "
$PAR
SELECT count(*) FROM ($Q) p FULL JOIN serial s USING (grp)
WHERE p.agg IS DISTINCT FROM s.agg OR p.u IS DISTINCT FROM s.u OR p.i IS DISTINCT FROM s.i
   OR to_array(p.agg) IS DISTINCT FROM ARRAY(SELECT DISTINCT id FROM big WHERE big.grp = p.grp ORDER BY 1)"

# Binary COPY: round trip through send/recv, then corrupt input.
if "${PSQL[@]}" -c "\\copy (SELECT set_id, aud FROM audience_oracle.a ORDER BY set_id) TO '$TMP/a.bin' (FORMAT binary)" &&
   "${PSQL[@]}" -c "CREATE TABLE audience_oracle.a2 (set_id int, aud cdp.audience)" \
     -c "\\copy audience_oracle.a2 FROM '$TMP/a.bin' (FORMAT binary)"; then
  check "binary COPY round trip" "
SELECT count(*) FROM a FULL JOIN a2 USING (set_id) WHERE a.aud IS DISTINCT FROM a2.aud"
else
  echo "not ok - binary COPY round trip"
fi

# copyfile FILE HEX: a binary COPY file with one row holding those bytes
copyfile() {
  local hex=$1 len
  len=$(( ${#hex} / 2 ))
  {
    printf 'PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0'
    printf '\0\001'
    printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((len >> 24 & 255)) $((len >> 16 & 255)) $((len >> 8 & 255)) $((len & 255)))"
    [ -n "$hex" ] && printf "$(echo "$hex" | sed 's/../\\x&/g')"
    printf '\377\377'
  } > "$2"
}
"${PSQL[@]}" -c "CREATE TABLE audience_oracle.a3 (aud cdp.audience)"
copyfile 3a300000010000000000020010000000010002000300 "$TMP/ok.bin"
if "${PSQL[@]}" -c "\\copy audience_oracle.a3 FROM '$TMP/ok.bin' (FORMAT binary)" &&
   [ "$("${PSQL[@]}" -c "SELECT aud FROM audience_oracle.a3")" = "{1..3}" ]; then
  echo "ok - binary COPY of a hand-made portable bitmap"
else
  echo "not ok - binary COPY of a hand-made portable bitmap"
fi
bad=0 i=0
for hex in "" deadbeef 3a300000 3a3000000100000000000200100000000100020003 \
  3a300000010000000000020010000000030002000100 3a300000ffffffff \
  3b30000001000001000100ffff0100 3b3000000100006300090001006300 \
  3a300000010000000000020011000000010002000300 3a30000001000000000002001000000001000200030000; do
  i=$((i + 1))
  copyfile "$hex" "$TMP/bad$i.bin"
  out=$("${PSQL[@]}" -c "\\copy audience_oracle.a3 FROM '$TMP/bad$i.bin' (FORMAT binary)" 2>&1)
  if ! echo "$out" | grep -q "invalid binary input for type cdp.audience"; then
    bad=$((bad + 1)); echo "# input $hex: $out"
  fi
done
if [ "$bad" -eq 0 ] && [ "$("${PSQL[@]}" -c "SELECT count(*) FROM audience_oracle.a3")" = 1 ]; then
  echo "ok - corrupt binary COPY input is rejected with a clear error ($i cases)"
else
  echo "not ok - corrupt binary COPY input is rejected with a clear error"
fi

# Errors halfway through bitmap work must not leak CRoaring's malloc'd
# memory: the backend's resident size stays flat over repeated failures.
leak=$("${PSQL[@]}" 2>&1 <<'SQL'
SET search_path = cdp, public;
CREATE TEMP TABLE big_ids AS SELECT g::bigint * 42949 AS id FROM generate_series(1, 100000) g;
CREATE FUNCTION pg_temp.fail_many(n int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1 .. n LOOP
    BEGIN
      PERFORM cdp.audience_agg(CASE WHEN id = 100000::bigint * 42949 THEN -1 ELSE id END) FROM big_ids;
    EXCEPTION WHEN numeric_value_out_of_range THEN NULL;
    END;
    BEGIN
      PERFORM cdp.audience(array_agg(id) || (-1)::bigint) FROM big_ids;
    EXCEPTION WHEN numeric_value_out_of_range THEN NULL;
    END;
    PERFORM m FROM cdp.members((SELECT cdp.audience_agg(id) FROM big_ids)) m LIMIT 1;
  END LOOP;
END $$;
CREATE FUNCTION pg_temp.rss() RETURNS bigint LANGUAGE sql AS
  $$ SELECT (regexp_match(pg_read_file('/proc/self/status'), 'VmRSS:\s+(\d+)'))[1]::bigint $$;
SELECT pg_temp.fail_many(3);
CREATE TEMP TABLE r0 AS SELECT pg_temp.rss() AS kb;
SELECT pg_temp.fail_many(20);
SELECT pg_temp.rss() - kb FROM r0;
SQL
)
leak=$(echo "$leak" | tail -1)
if [[ "$leak" =~ ^-?[0-9]+$ ]]; then
  if [ "$leak" -lt 30000 ]; then
    echo "ok - no memory left behind by 60 interrupted bitmap operations (RSS grew ${leak} kB)"
  else
    echo "not ok - no memory left behind by 60 interrupted bitmap operations (RSS grew ${leak} kB)"
  fi
else
  echo "ok - no memory left behind by interrupted bitmap operations # SKIP cannot read /proc/self/status: $(echo "$leak" | tail -1)"
fi
