#!/usr/bin/env bash
# A real pg_cron job refreshes the managed identity graph: it runs, succeeds
# and merges two profiles through a row that arrived after scheduling.
# pg_cron runs jobs in cron.database_name (the suite's server sets it to
# contrib_regression), so this test works there and removes what it adds.
# TAP-style output.
set -uo pipefail
DB=${CDP_CRON_DB:-contrib_regression}
PSQL=(psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB")

check() {  # check "description" "SQL returning one boolean"
  local got
  got=$("${PSQL[@]}" -c "$2" 2>&1)
  if [ "$got" = t ]; then echo "ok - $1"; else echo "not ok - $1"; echo "# $got"; fi
}

preload=$(psql -X -At -d "$DB" -c "SHOW shared_preload_libraries" 2>/dev/null)
crondb=$(psql -X -At -d "$DB" -c "SELECT current_setting('cron.database_name', true)" 2>/dev/null)
if [[ "$preload" != *pg_cron* ]] || [ "$crondb" != "$DB" ]; then
  echo "ok - pg_cron refreshes the identity graph # SKIP pg_cron not preloaded for $DB"
  exit 0
fi
had_cron=$("${PSQL[@]}" -c "SELECT count(*) FROM pg_extension WHERE extname = 'pg_cron'")

cleanup() {
  "${PSQL[@]}" >/dev/null 2>&1 <<'SQL'
SET client_min_messages = warning;
SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'cdp-identity-test';
SELECT cdp.drop_source(name) FROM cdp.identity_sources WHERE name = 'cron_visits';
TRUNCATE cdp.identifiers, cdp.identity_links, cdp.profiles, cdp.profile_lineage, cdp.identity_runs,
         cdp.identity_refusals, cdp.identity_kinds;
DROP SCHEMA IF EXISTS cdp_cron_test CASCADE;
SQL
  : # pg_cron stays installed: re-creating it would restart job ids
}
trap cleanup EXIT

"${PSQL[@]}" >/dev/null <<'SQL' || { echo "not ok - set-up"; exit 1; }
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS cdp;
CREATE EXTENSION IF NOT EXISTS pg_cron;
CREATE SCHEMA cdp_cron_test;
CREATE TABLE cdp_cron_test.visits (user_id text, anonymous_id text, ts timestamptz NOT NULL);
INSERT INTO cdp_cron_test.visits VALUES ('cron-u1', 'cron-d1', '2026-01-01'), (NULL, 'cron-d2', '2026-01-01');
SELECT cdp.add_source('cron_visits', $$SELECT user_id, anonymous_id, ts AS at FROM cdp_cron_test.visits$$,
                      watermark => 'at');
SELECT cdp.refresh_identities();
SQL
check "before the job: two profiles" \
  "SELECT cdp.resolve('anonymous_id', 'cron-d2') <> cdp.resolve('user_id', 'cron-u1')"

# the row that links them arrives; the job will pick it up
"${PSQL[@]}" -c "INSERT INTO cdp_cron_test.visits VALUES ('cron-u1', 'cron-d2', '2026-01-02')" >/dev/null
job=$("${PSQL[@]}" -c "SELECT cron.schedule('cdp-identity-test', '* * * * *', 'SELECT cdp.refresh_identities()')")
status=""
for _ in $(seq 1 75); do
  status=$("${PSQL[@]}" -c "SELECT status FROM cron.job_run_details WHERE jobid = $job
                            AND status IN ('succeeded', 'failed') ORDER BY runid LIMIT 1")
  [ -n "$status" ] && break
  sleep 2
done
if [ "$status" = succeeded ]; then
  echo "ok - the pg_cron job ran and succeeded"
else
  echo "not ok - the pg_cron job ran and succeeded"
  echo "# status: ${status:-no run within 80 s}"
  "${PSQL[@]}" -c "SELECT return_message FROM cron.job_run_details WHERE jobid = $job" | sed 's/^/# /'
fi
"${PSQL[@]}" -c "SELECT cron.unschedule($job)" >/dev/null

check "the job's refresh is in the run log" \
  "SELECT count(*) = 2 AND max(rows_read) FILTER (WHERE run_id = (SELECT max(run_id) FROM cdp.identity_runs)) = 1
   FROM cdp.identity_runs WHERE operation = 'refresh'"
check "the job merged the two profiles" \
  "SELECT cdp.resolve('anonymous_id', 'cron-d2') = cdp.resolve('user_id', 'cron-u1')"
check "the merge is in the lineage" \
  "SELECT count(*) = 1 FROM cdp.profile_lineage WHERE event = 'merge'"
