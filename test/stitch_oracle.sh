#!/usr/bin/env bash
# cdp.stitch() against independent implementations on random graphs:
#   - without rules, the partition equals SQL label propagation (min-label
#     UPDATE loop) and, where installed, pgRouting's pgr_connectedComponents;
#   - with limits, the result equals a row-by-row PL/pgSQL implementation of
#     Segment-style demotion;
#   - shuffled input and parallel scans give the same ids.
# Prints TAP lines.  Runs in its own database.
set -uo pipefail
DB=cdp_stitch_oracle
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -d "$DB")
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null || exit 1
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1' EXIT
"${PSQL[@]}" -c "CREATE EXTENSION cdp" >/dev/null || exit 1

ok() { if [ "$2" = "$3" ]; then echo "ok - $1"; else echo "not ok - $1 (got '$2', expected '$3')"; fi; }

# Random graphs: identifiers of three kinds; rows link 1-3 of them.  Chains,
# stars, cycles, random pairs, duplicate rows, self links and NULLs.
"${PSQL[@]}" <<'SQL' >/dev/null || exit 1
CREATE FUNCTION make_graph(seed float8, n int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM setseed(seed);
  DROP TABLE IF EXISTS g;
  CREATE TABLE g (a text, b text, c text, at timestamptz);
  -- chains of 1-60 nodes
  INSERT INTO g SELECT 'a' || i, 'a' || (i + 1), NULL, now() FROM generate_series(1, n) i
    WHERE (i % (1 + (hashint4(i) & 63))) <> 0;
  -- stars: a few centers of kind b with many leaves of kind a
  INSERT INTO g SELECT 'a' || (n + i), 'star' || (i % 7), NULL, now() FROM generate_series(1, n / 10) i;
  -- cycles of kind c
  INSERT INTO g SELECT NULL, NULL, 'c' || i, now() FROM generate_series(1, n / 5) i;
  INSERT INTO g SELECT NULL, 'cyc' || (i / 10), 'c' || i, now() FROM generate_series(1, n / 5) i;
  -- random triples, with NULLs
  INSERT INTO g SELECT CASE WHEN random() < 0.8 THEN 'a' || (1 + floor(random() * 2 * n))::int END,
                       CASE WHEN random() < 0.3 THEN 'b' || (1 + floor(random() * n))::int END,
                       CASE WHEN random() < 0.5 THEN 'c' || (1 + floor(random() * n))::int END,
                       now() - random() * interval '100 days'
  FROM generate_series(1, n / 2);
  -- duplicates and self links
  INSERT INTO g SELECT * FROM g WHERE random() < 0.1;
  INSERT INTO g SELECT 'a' || i, NULL, NULL, now() FROM generate_series(1, 20) i;
  INSERT INTO g SELECT 'selfloop', 'selfloop', NULL, now();
END $$;

-- label propagation: every node takes the smallest label of its neighbours
-- until nothing changes
CREATE FUNCTION label_propagation() RETURNS void LANGUAGE plpgsql AS $$
DECLARE changed bigint;
BEGIN
  DROP TABLE IF EXISTS lp_nodes, lp_edges;
  CREATE TABLE lp_nodes AS
    SELECT kind, value, row_number() OVER (ORDER BY kind, value) AS id
    FROM (SELECT DISTINCT kind, value FROM g, LATERAL (VALUES ('a', a), ('b', b), ('c', c)) v(kind, value)
          WHERE value IS NOT NULL) d;
  ALTER TABLE lp_nodes ADD COLUMN label bigint;
  UPDATE lp_nodes SET label = id;
  CREATE UNIQUE INDEX ON lp_nodes (kind, value);
  CREATE UNIQUE INDEX ON lp_nodes (id);
  CREATE TABLE lp_edges AS
    SELECT DISTINCT x.id AS src, y.id AS dst
    FROM g, LATERAL (VALUES ('a', a), ('b', b), ('c', c)) v1(kind, value),
            LATERAL (VALUES ('a', a), ('b', b), ('c', c)) v2(kind, value),
         lp_nodes x, lp_nodes y
    WHERE v1.value IS NOT NULL AND v2.value IS NOT NULL
      AND x.kind = v1.kind AND x.value = v1.value AND y.kind = v2.kind AND y.value = v2.value AND x.id <> y.id;
  ANALYZE lp_nodes; ANALYZE lp_edges;
  LOOP
    UPDATE lp_nodes n SET label = m.label
    FROM (SELECT e.src, min(d.label) AS label FROM lp_edges e JOIN lp_nodes d ON d.id = e.dst GROUP BY e.src) m
    WHERE n.id = m.src AND m.label < n.label;
    GET DIAGNOSTICS changed = ROW_COUNT;
    EXIT WHEN changed = 0;
  END LOOP;
END $$;

-- partitions equal: same identifiers, and the pairing of the two labelings
-- is a bijection
CREATE FUNCTION same_partition(x regclass, xl text, y regclass, yl text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  EXECUTE format($q$
    SELECT format('%%s ids, %%s/%%s/%%s classes, %%s unmatched',
                  count(*), count(DISTINCT p.%2$I), count(DISTINCT q.%4$I), count(DISTINCT (p.%2$I, q.%4$I)),
                  count(*) FILTER (WHERE p.%2$I IS NULL OR q.%4$I IS NULL))
    FROM %1$s p FULL JOIN %3$s q USING (kind, value)$q$, x, xl, y, yl) INTO r;
  RETURN r;
END $$;

-- Segment-style demotion, one row at a time (rows have distinct "at"):
-- link the row's identifiers unless the profile would hold more than lim
-- values of kind a; then drop the lowest-priority identifier and retry.
CREATE FUNCTION demotion_oracle(lim int) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  r record; ids text[]; kinds text[]; labs bigint[]; m int; n_a bigint;
BEGIN
  DROP TABLE IF EXISTS dm_nodes;
  CREATE TABLE dm_nodes AS SELECT kind, value, id AS label FROM lp_nodes;
  CREATE UNIQUE INDEX ON dm_nodes (kind, value);
  CREATE INDEX ON dm_nodes (label);
  FOR r IN SELECT * FROM g ORDER BY at LOOP
    SELECT array_agg(kind ORDER BY kind, value), array_agg(value ORDER BY kind, value) INTO kinds, ids
    FROM (SELECT DISTINCT kind, value FROM (VALUES ('a', r.a), ('b', r.b), ('c', r.c)) v(kind, value) WHERE value IS NOT NULL) d;
    m := coalesce(array_length(ids, 1), 0);
    WHILE m >= 2 LOOP
      SELECT array_agg(DISTINCT n.label) INTO labs FROM dm_nodes n, unnest(kinds[1:m], ids[1:m]) u(k, v)
      WHERE n.kind = u.k AND n.value = u.v;
      EXIT WHEN array_length(labs, 1) = 1;
      SELECT count(*) INTO n_a FROM dm_nodes WHERE label = ANY (labs) AND kind = 'a';
      IF n_a <= lim THEN
        UPDATE dm_nodes SET label = labs[1] WHERE label = ANY (labs);
        EXIT;
      END IF;
      m := m - 1;
    END LOOP;
  END LOOP;
END $$;
SQL

off='{"blocked": {}, "max_degree": {}}'
have_pgr=$("${PSQL[@]}" -tAc "SELECT count(*) FROM pg_available_extensions WHERE name = 'pgrouting'")
if [ "$have_pgr" = 1 ]; then
  "${PSQL[@]}" -c "SET client_min_messages = warning" -c "CREATE EXTENSION pgrouting CASCADE" >/dev/null 2>&1 || have_pgr=0
fi

for spec in "0.11 1500" "0.42 4000" "0.77 2500"; do
  set -- $spec; seed=$1; n=$2
  "${PSQL[@]}" -c "SELECT make_graph($seed, $n)" -c "SELECT label_propagation()" \
    -c "DROP TABLE IF EXISTS st; CREATE TABLE st AS SELECT * FROM cdp.stitch('SELECT a, b, c FROM g', '$off')" >/dev/null || exit 1
  rows=$("${PSQL[@]}" -tAc "SELECT count(*) || ' rows, ' || (SELECT count(*) FROM lp_nodes) || ' nodes, ' || (SELECT count(DISTINCT label) FROM lp_nodes) || ' components' FROM g")
  expect=$("${PSQL[@]}" -tAc "SELECT format('%s ids, %s/%s/%s classes, 0 unmatched', count(*), count(DISTINCT label), count(DISTINCT label), count(DISTINCT label)) FROM lp_nodes")
  ok "seed $seed ($rows): stitch partition equals SQL label propagation" \
    "$("${PSQL[@]}" -tAc "SELECT same_partition('st', 'profile_id', 'lp_nodes', 'label')")" "$expect"
  ok "seed $seed: profile ids are dense 1..K" \
    "$("${PSQL[@]}" -tAc "SELECT min(profile_id) = 1 AND max(profile_id) = count(DISTINCT profile_id) FROM st")" t
  ok "seed $seed: profile 1 holds the smallest identifier of the first kind" \
    "$("${PSQL[@]}" -tAc "SELECT profile_id FROM st WHERE kind = 'a' ORDER BY value COLLATE \"C\" LIMIT 1")" 1
  ok "seed $seed: profile ids follow the order of their canonical members" \
    "$("${PSQL[@]}" -tAc "SELECT bool_and(profile_id = rn) FROM (SELECT profile_id, row_number() OVER (ORDER BY kind, value COLLATE \"C\") AS rn FROM (SELECT DISTINCT ON (profile_id) profile_id, kind, value FROM st ORDER BY profile_id, kind, value COLLATE \"C\") c) x")" t

  if [ "$have_pgr" = 1 ]; then
    got=$("${PSQL[@]}" -tAc "
      CREATE TEMP TABLE pgr AS
        SELECT n.kind, n.value, c.component
        FROM pgr_connectedComponents('SELECT row_number() OVER () AS id, src AS source, dst AS target, 1.0::float8 AS cost, 1.0::float8 AS reverse_cost FROM lp_edges WHERE src < dst') c
        JOIN lp_nodes n ON n.id = c.node
        UNION ALL SELECT kind, value, -id FROM lp_nodes n WHERE NOT EXISTS (SELECT FROM lp_edges e WHERE e.src = n.id);
      SELECT same_partition('st', 'profile_id', 'pgr', 'component')")
    ok "seed $seed: stitch partition equals pgr_connectedComponents" "$got" "$expect"
  else
    echo "ok - seed $seed: stitch partition equals pgr_connectedComponents # SKIP pgrouting not installed"
  fi

  # shuffled rows, a different plan, parallel workers: the same ids
  ok "seed $seed: shuffled input and parallel scan give identical ids (limits, hubs, size cap)" \
    "$("${PSQL[@]}" -tAc "
      SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
      CREATE TEMP TABLE r1 AS SELECT * FROM cdp.stitch('SELECT a, b, c, date_trunc(''day'', at) AS at FROM g ORDER BY random()', '{\"limits\": {\"a\": 2}, \"max_degree\": {\"b\": 30}, \"max_profile_size\": 40}');
      SET max_parallel_workers_per_gather = 2;
      CREATE TEMP TABLE r2 AS SELECT * FROM cdp.stitch('SELECT a, b, c, date_trunc(''day'', at) AS at FROM g', '{\"limits\": {\"a\": 2}, \"max_degree\": {\"b\": 30}, \"max_profile_size\": 40}');
      SELECT count(*) FROM ((TABLE r1 EXCEPT TABLE r2) UNION ALL (TABLE r2 EXCEPT TABLE r1)) d")" 0

  # the caller's query itself may run with parallel workers
  ok "seed $seed: the stitching query runs with parallel workers when the planner wants them" \
    "$("${PSQL[@]}" -tA 2>&1 <<'SQL' | grep -c 'Workers Launched: [1-9]'
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;
SET auto_explain.log_analyze = on; SET auto_explain.log_level = notice; SET client_min_messages = notice;
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SELECT count(*) FROM cdp.stitch('SELECT a, b, c FROM g');
SQL
)" 1

  # limits against the row-by-row implementation (distinct "at" per row)
  got=$("${PSQL[@]}" -tAc "
    UPDATE g SET at = '2026-01-01'::timestamptz + make_interval(secs => x.rn)
    FROM (SELECT ctid, row_number() OVER (ORDER BY md5(coalesce(a, '') || coalesce(b, '') || coalesce(c, '') || ctid::text)) AS rn FROM g) x
    WHERE g.ctid = x.ctid;
    DO \$\$ BEGIN PERFORM demotion_oracle(1); END \$\$;
    DROP TABLE IF EXISTS st1; CREATE TABLE st1 AS SELECT * FROM cdp.stitch('SELECT a, b, c, at FROM g', '{\"limits\": {\"a\": 1}, \"blocked\": {}, \"max_degree\": {}}');
    SELECT same_partition('st1', 'profile_id', 'dm_nodes', 'label')")
  expect=$("${PSQL[@]}" -tAc "SELECT format('%s ids, %s/%s/%s classes, 0 unmatched', count(*), count(DISTINCT label), count(DISTINCT label), count(DISTINCT label)) FROM dm_nodes")
  ok "seed $seed: limits {a: 1} equal the row-by-row demotion oracle ($("${PSQL[@]}" -tAc "SELECT count(*) FROM cdp.stitch_report('SELECT a, b, c, at FROM g', '{\"limits\": {\"a\": 1}, \"blocked\": {}, \"max_degree\": {}}')") refusals)" "$got" "$expect"
  ok "seed $seed: no profile holds two values of a limited kind" \
    "$("${PSQL[@]}" -tAc "SELECT count(*) FROM (SELECT profile_id FROM st1 WHERE kind = 'a' GROUP BY 1 HAVING count(*) > 1) x")" 0
done
