#!/usr/bin/env bash
# cdp.activity_agg with parallel workers (Partial Aggregate, serialize,
# deserialize, combine) gives the same summaries as a serial plan.
set -uo pipefail
export PGDATABASE=${CDP_TEST_DB:-contrib_regression}
PSQL=(psql -X -q -At -v ON_ERROR_STOP=1)
PAR="SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
     SET max_parallel_workers_per_gather = 2; SET force_parallel_mode = on; SET enable_hashagg = off;"
SER="SET max_parallel_workers_per_gather = 0;"

"${PSQL[@]}" <<'SQL' || { echo "not ok - set-up"; exit 1; }
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS act_par CASCADE;
CREATE SCHEMA act_par;
-- values are multiples of 1/4: every sum is exact whatever the order
CREATE TABLE act_par.ev AS
  SELECT coalesce(anonymous_id, 'none') AS pid, event, ts, (event_id % 1001)::float8 / 4 AS v
  FROM public.events, generate_series(1, 4) g;
ANALYZE act_par.ev;
SQL

# Q: one summary per profile, and one summary of everything (one group)
QG="SELECT md5(string_agg(pid || '=' || a::text, '|' ORDER BY pid)) FROM (SELECT pid, cdp.activity_agg(event, ts, v) AS a FROM act_par.ev GROUP BY pid) s"
QA="SELECT md5(cdp.activity_agg(event, ts, v)::text) || md5(cdp.activity_agg(event, ts)::text) FROM act_par.ev"

for q in "$QG" "$QA"; do
  label=$([ "$q" = "$QG" ] && echo "grouped by profile" || echo "one group")
  plan=$("${PSQL[@]}" -c "$PAR" -c "EXPLAIN (COSTS OFF) $q")
  if echo "$plan" | grep -q "Partial .*Aggregate" && echo "$plan" | grep -q "Gather"; then
    echo "ok - parallel plan has a Partial Aggregate ($label)"
  else
    echo "not ok - parallel plan has a Partial Aggregate ($label)"; echo "$plan" | sed 's/^/# /'
  fi
  par=$("${PSQL[@]}" -c "$PAR" -c "$q")
  ser=$("${PSQL[@]}" -c "$SER" -c "$q")
  if [ -n "$par" ] && [ "$par" = "$ser" ]; then
    echo "ok - parallel summaries equal serial ones ($label)"
  else
    echo "not ok - parallel summaries equal serial ones ($label)"; echo "# $par vs $ser"
  fi
done

# A hash aggregate that spills to disk (work_mem far below the states'
# size) gives the same summaries as a sorted group aggregate.
SPILL="SET max_parallel_workers_per_gather = 0; SET work_mem = '64kB'; SET hash_mem_multiplier = 1; SET enable_sort = off;"
SORTED="SET max_parallel_workers_per_gather = 0; SET enable_hashagg = off;"
plan=$("${PSQL[@]}" -c "$SPILL" -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) $QG")
if echo "$plan" | grep -q "HashAggregate" && echo "$plan" | grep -Eq "Batches: ([2-9]|[1-9][0-9]+)"; then
  echo "ok - hash aggregate spills to disk with work_mem 64kB"
else
  echo "not ok - hash aggregate spills to disk with work_mem 64kB"; echo "$plan" | sed 's/^/# /'
fi
spill=$("${PSQL[@]}" -c "$SPILL" -c "$QG")
sorted=$("${PSQL[@]}" -c "$SORTED" -c "$QG")
if [ -n "$spill" ] && [ "$spill" = "$sorted" ]; then
  echo "ok - spilled hash aggregate equals sorted group aggregate"
else
  echo "not ok - spilled hash aggregate equals sorted group aggregate"; echo "# $spill vs $sorted"
fi

# workers really ran
w=$("${PSQL[@]}" -c "$PAR" -c "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) $QA" | grep -o 'Workers Launched: [0-9]*' | head -1)
case "$w" in
  "Workers Launched: 0"|"") echo "ok - parallel workers launched # SKIP no worker slots free ($w)" ;;
  *) echo "ok - parallel workers launched ($w)" ;;
esac

"${PSQL[@]}" -c "DROP SCHEMA act_par CASCADE" >/dev/null 2>&1
exit 0
