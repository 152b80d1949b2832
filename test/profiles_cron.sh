#!/usr/bin/env bash
# The documented pipeline under pg_cron: a job (run by the superuser that
# scheduled it) calls a procedure that refreshes identities, profiles and
# segments in turn.  The trait feed was registered by an unprivileged role
# and must be read as that role; once the role loses SELECT, the pipeline
# must fail rather than read the table with the superuser's rights.
# TAP-style output; works in cron.database_name and removes what it adds.
set -uo pipefail
DB=${CDP_CRON_DB:-contrib_regression}
PSQL=(psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB")

check() {  # check "description" "SQL returning one boolean"
  local got
  got=$("${PSQL[@]}" -c "$2" 2>&1)
  if [ "$got" = t ]; then echo "ok - $1"; else
    echo "not ok - $1"; echo "# $got"
    "${PSQL[@]}" -c "SELECT 'profiles ' || count(*) FROM cdp.profiles UNION ALL
                     SELECT 'traits ' || count(*) FROM cdp.profile_traits UNION ALL
                     SELECT 'sources ' || string_agg(name, ',') FROM cdp.identity_sources UNION ALL
                     SELECT 'feeds ' || string_agg(name, ',') FROM cdp.profile_feeds UNION ALL
                     SELECT 'jobs ' || string_agg(jobname || ':' || command, ',') FROM cron.job" 2>&1 | sed 's/^/# /'
  fi
}

preload=$(psql -X -At -d "$DB" -c "SHOW shared_preload_libraries" 2>/dev/null)
crondb=$(psql -X -At -d "$DB" -c "SELECT current_setting('cron.database_name', true)" 2>/dev/null)
if [[ "$preload" != *pg_cron* ]] || [ "$crondb" != "$DB" ]; then
  echo "ok - pg_cron runs the profile pipeline # SKIP pg_cron not preloaded for $DB"
  exit 0
fi
had_cron=$("${PSQL[@]}" -c "SELECT count(*) FROM pg_extension WHERE extname = 'pg_cron'")

cleanup() {
  "${PSQL[@]}" >/dev/null 2>&1 <<'SQL'
SET client_min_messages = warning;
SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'cdp-profiles-test';
SELECT cdp.drop_feed(name) FROM cdp.profile_feeds WHERE name = 'cron_crm';
SELECT cdp.drop_segment(name) FROM cdp.segments WHERE name = 'cron_pf_nl';
SELECT cdp.drop_source(name) FROM cdp.identity_sources WHERE name = 'cron_pf_crm';
TRUNCATE cdp.identifiers, cdp.identity_links, cdp.profiles, cdp.profile_lineage, cdp.identity_runs,
         cdp.identity_refusals, cdp.identity_kinds, cdp.profile_traits, cdp.profile_activity;
DROP SCHEMA IF EXISTS cdp_pf_cron CASCADE;
REVOKE ALL ON cdp.profile_feeds FROM regress_pf_cron;
REVOKE ALL ON FUNCTION cdp.profile_add_feed(text, text, text, text), cdp.profile_check_feed(text) FROM regress_pf_cron;
REVOKE ALL ON SCHEMA cdp FROM regress_pf_cron;
DROP ROLE IF EXISTS regress_pf_cron;
SQL
  : # pg_cron stays installed: re-creating it would restart job ids
}
trap cleanup EXIT

"${PSQL[@]}" >/dev/null <<'SQL' || { echo "not ok - set-up"; exit 1; }
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pg_cron;
CREATE ROLE regress_pf_cron;
GRANT USAGE ON SCHEMA cdp TO regress_pf_cron;
GRANT EXECUTE ON FUNCTION cdp.profile_add_feed(text, text, text, text), cdp.profile_check_feed(text) TO regress_pf_cron;
GRANT SELECT, INSERT ON cdp.profile_feeds TO regress_pf_cron;
CREATE SCHEMA cdp_pf_cron;
GRANT USAGE ON SCHEMA cdp_pf_cron TO regress_pf_cron;
CREATE TABLE cdp_pf_cron.crm (user_id text, email text, country text, updated_at timestamptz);
INSERT INTO cdp_pf_cron.crm VALUES ('pfc-u1', 'pfc1@example.com', 'NL', '2026-01-01'),
                                   ('pfc-u2', 'pfc2@example.com', 'DE', '2026-01-01');
GRANT SELECT ON cdp_pf_cron.crm TO regress_pf_cron;
SELECT cdp.add_source('cron_pf_crm', $$SELECT user_id, email, updated_at AS at FROM cdp_pf_cron.crm$$);
SET ROLE regress_pf_cron;
SELECT cdp.add_trait_feed('cron_crm', $$
  SELECT 'user_id' AS kind, user_id AS value,
         jsonb_build_object('country', country, 'reader', current_user::text) AS attributes,
         updated_at AS at FROM cdp_pf_cron.crm $$);
RESET ROLE;
SELECT cdp.define_segment('cron_pf_nl', $$traits->>'country' = 'NL'$$);
CREATE PROCEDURE cdp_pf_cron.pipeline() LANGUAGE plpgsql AS $$
BEGIN
  PERFORM cdp.refresh_identities(); COMMIT;
  PERFORM cdp.refresh_profiles();   COMMIT;
  PERFORM cdp.refresh_segments(ARRAY['cron_pf_nl']); COMMIT;
END $$;
SQL

run_job() {  # run_job: schedule the pipeline, wait for one finished run, print its status
  local job status=""
  job=$("${PSQL[@]}" -c "SELECT cron.schedule('cdp-profiles-test', '* * * * *', 'CALL cdp_pf_cron.pipeline()')")
  for _ in $(seq 1 75); do
    status=$("${PSQL[@]}" -c "SELECT status FROM cron.job_run_details WHERE jobid = $job
                              AND status IN ('succeeded', 'failed') ORDER BY runid LIMIT 1")
    [ -n "$status" ] && break
    sleep 2
  done
  "${PSQL[@]}" -c "SELECT cron.unschedule($job)" >/dev/null
  echo "${status:-none}"
  "${PSQL[@]}" -c "SELECT return_message FROM cron.job_run_details WHERE jobid = $job" >&2
}

msg=$(mktemp)
status=$(run_job 2>"$msg")
if [ "$status" = succeeded ]; then
  echo "ok - the scheduled pipeline ran and succeeded"
else
  echo "not ok - the scheduled pipeline ran and succeeded (status $status)"
  sed 's/^/# /' "$msg"
fi
rm -f "$msg"
# the run is recorded as it ends; give its last commit a moment to be visible
for _ in $(seq 1 20); do
  [ "$("${PSQL[@]}" -c "SELECT count(*) FROM cdp.profile_traits WHERE profile_id IN
        (SELECT cdp.resolve('user_id', v) FROM unnest(ARRAY['pfc-u1', 'pfc-u2']) v)")" = 2 ] && break
  sleep 1
done
"${PSQL[@]}" -c "SELECT 'run: ' || status || ' ' || coalesce(return_message, '') FROM cron.job_run_details
                 ORDER BY runid DESC LIMIT 3" | sed 's/^/# /'
check "the job stitched two profiles and fed their traits" \
  "SELECT count(*) = 2 AND count(*) FILTER (WHERE traits->>'country' IS NOT NULL) = 2 FROM cdp.profile_traits
   WHERE profile_id IN (SELECT cdp.resolve('user_id', v) FROM unnest(ARRAY['pfc-u1', 'pfc-u2']) v)"
check "the feed was read as the role that registered it, not the job's superuser" \
  "SELECT bool_and(traits->>'reader' = 'regress_pf_cron') FROM cdp.profile_traits WHERE profile_id IN (SELECT cdp.resolve('user_id', v) FROM unnest(ARRAY['pfc-u1', 'pfc-u2']) v)"
check "the segment over cdp.profile_view saw the fed traits" \
  "SELECT cdp.contains(members, cdp.resolve('user_id', 'pfc-u1'))
          AND NOT cdp.contains(members, cdp.resolve('user_id', 'pfc-u2'))
   FROM cdp.segments WHERE name = 'cron_pf_nl'"

# the owner loses the right: the pipeline, called as the same superuser as
# the job (one job run is enough to wait for), fails and the tables stay
"${PSQL[@]}" -c "REVOKE SELECT ON cdp_pf_cron.crm FROM regress_pf_cron;
                 UPDATE cdp_pf_cron.crm SET country = 'FR'" >/dev/null
out=$("${PSQL[@]}" -c "CALL cdp_pf_cron.pipeline()" 2>&1)
if [[ "$out" == *"permission denied for table crm"* ]]; then
  echo "ok - without the owner's SELECT the superuser's refresh fails (permission denied)"
else
  echo "not ok - without the owner's SELECT the superuser's refresh fails"
  echo "# $out"
fi
check "the failed refresh left the traits as they were" \
  "SELECT count(*) = 2 AND count(*) FILTER (WHERE traits->>'country' = 'FR') = 0 FROM cdp.profile_traits
   WHERE profile_id IN (SELECT cdp.resolve('user_id', v) FROM unnest(ARRAY['pfc-u1', 'pfc-u2']) v)"
