#!/usr/bin/env bash
# A real pg_cron job refreshes a segment: schedule cdp.refresh_segments()
# every minute in the database pg_cron serves, wait for a run, check the run
# succeeded and the segment was refreshed, then unschedule and clean up.
set -uo pipefail
DB=${CDP_CRON_DB:-contrib_regression}
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -tA -d "$DB")

if ! "${PSQL[@]}" -c "SELECT 1" >/dev/null 2>&1; then
  echo "ok - pg_cron refresh # SKIP database $DB is not reachable"
  exit 0
fi
served=$("${PSQL[@]}" -c "SELECT current_setting('cron.database_name', true)" 2>/dev/null || true)
if [ "$served" != "$DB" ]; then
  echo "ok - pg_cron refresh # SKIP pg_cron is not preloaded for database $DB"
  exit 0
fi

had_cron=$("${PSQL[@]}" -c "SELECT count(*) FROM pg_extension WHERE extname = 'pg_cron'")
cleanup() {
  "${PSQL[@]}" <<'SQL' >/dev/null 2>&1
SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'cdp-segments-test';
SELECT cdp.drop_segment('cron_test_seg') FROM cdp.segments WHERE name = 'cron_test_seg';
DELETE FROM cdp.profile_traits WHERE profile_id BETWEEN 900001 AND 900010;
SQL
  if [ "$had_cron" = 0 ]; then
    : # pg_cron stays installed: re-creating it would restart job ids
  fi
}
trap cleanup EXIT

"${PSQL[@]}" <<'SQL' >/dev/null || { echo "not ok - pg_cron job scheduled"; exit 1; }
CREATE EXTENSION IF NOT EXISTS pg_cron;
INSERT INTO cdp.profile_traits (profile_id, traits)
SELECT g, jsonb_build_object('cron_test', g % 2 = 0) FROM generate_series(900001, 900010) g;
SELECT cdp.define_segment('cron_test_seg', $$(traits->>'cron_test')::boolean$$);
SELECT cron.schedule('cdp-segments-test', '* * * * *',
                     $$SELECT count(*) FROM cdp.refresh_segments(ARRAY['cron_test_seg'])$$);
SQL
echo "ok - pg_cron job scheduled"

jobid=$("${PSQL[@]}" -c "SELECT jobid FROM cron.job WHERE jobname = 'cdp-segments-test'")
status=""
for _ in $(seq 1 150); do
  status=$("${PSQL[@]}" -c "SELECT status FROM cron.job_run_details WHERE jobid = $jobid
                            AND status IN ('succeeded', 'failed') ORDER BY runid LIMIT 1")
  [ -n "$status" ] && break
  sleep 1
done
if [ "$status" = succeeded ]; then
  echo "ok - the scheduled refresh ran and succeeded"
else
  msg=$("${PSQL[@]}" -c "SELECT string_agg(status || ': ' || coalesce(return_message, ''), '; ')
                         FROM cron.job_run_details WHERE jobid = $jobid")
  echo "not ok - the scheduled refresh ran and succeeded (status '${status:-none}' $msg)"
fi

got=$("${PSQL[@]}" -c "SELECT status || ' ' || cdp.size(members) || ' ' ||
                              (SELECT count(*) FROM cdp.segment_sizes WHERE segment = 'cron_test_seg')
                       FROM cdp.segments WHERE name = 'cron_test_seg'")
case "$got" in
  "ok 5 "[1-9]*) echo "ok - the cron job refreshed the segment (5 members)" ;;
  *) echo "not ok - the cron job refreshed the segment (got '$got')" ;;
esac
