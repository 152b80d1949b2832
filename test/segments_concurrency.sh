#!/usr/bin/env bash
# Two sessions refresh the same segment at the same time: the second waits
# for the first (row lock on the segment) and diffs against its result, so
# every change is logged exactly once and replaying the log gives the members.
set -uo pipefail
DB=${CDP_TEST_DB:-contrib_regression}
PSQL=(psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB")

if ! "${PSQL[@]}" -c "SELECT 1 FROM pg_extension WHERE extname = 'cdp'" 2>/dev/null | grep -q 1; then
  echo "ok - concurrent refreshes # SKIP extension cdp is not installed in $DB"
  exit 0
fi

cleanup() {
  "${PSQL[@]}" >/dev/null 2>&1 <<'SQL'
SELECT cdp.drop_segment('conc_test_seg') FROM cdp.segments WHERE name = 'conc_test_seg';
DELETE FROM cdp.profile_traits WHERE profile_id BETWEEN 3100000001 AND 3100000200;
SQL
}
trap cleanup EXIT
cleanup

"${PSQL[@]}" >/dev/null <<'SQL' || { echo "not ok - set-up"; exit 1; }
INSERT INTO cdp.profile_traits (profile_id, traits)
SELECT g, jsonb_build_object('c', g % 3 = 0) FROM generate_series(3100000001, 3100000200) g;
SELECT cdp.define_segment('conc_test_seg', $$(traits->>'c')::boolean$$);
SELECT count(*) FROM cdp.refresh_segments(ARRAY['conc_test_seg']);
SQL

ok=1
for round in 1 2 3; do
  # flip a different slice each round
  "${PSQL[@]}" -c "UPDATE cdp.profile_traits SET traits = jsonb_build_object('c', NOT (traits->>'c')::boolean)
                   WHERE profile_id BETWEEN 3100000001 AND 3100000200 AND profile_id % 7 = $round" >/dev/null
  flips=$("${PSQL[@]}" -c "SELECT count(*) FROM cdp.profile_traits
                           WHERE profile_id BETWEEN 3100000001 AND 3100000200 AND profile_id % 7 = $round")
  before=$("${PSQL[@]}" -c "SELECT count(*) FROM cdp.segment_changes WHERE segment = 'conc_test_seg'")
  for s in 1 2; do
    "${PSQL[@]}" -o /dev/null -c "BEGIN" \
      -c "SELECT count(*) FROM cdp.refresh_segments(ARRAY['conc_test_seg'])" \
      -c "SELECT pg_sleep(0.5)" -c "COMMIT" &
  done
  wait
  after=$("${PSQL[@]}" -c "SELECT count(*) FROM cdp.segment_changes WHERE segment = 'conc_test_seg'")
  if [ $((after - before)) -ne "$flips" ]; then
    echo "not ok - round $round: $flips flipped profiles logged once each (got $((after - before)) changes)"
    ok=0
  fi
done
[ $ok = 1 ] && echo "ok - concurrent refreshes of one segment log each change exactly once"

same=$("${PSQL[@]}" <<'SQL'
SELECT (SELECT members FROM cdp.segments WHERE name = 'conc_test_seg')
       OPERATOR(cdp.=)
       (SELECT cdp.audience_agg(profile_id) FROM
          (SELECT profile_id, (array_agg(change ORDER BY refresh_id DESC))[1] AS last
           FROM cdp.segment_changes WHERE segment = 'conc_test_seg' GROUP BY profile_id) c
        WHERE last = 'enter')
   AND (SELECT members FROM cdp.segments WHERE name = 'conc_test_seg')
       OPERATOR(cdp.=)
       (SELECT cdp.audience_agg(profile_id) FROM cdp.profile_traits
        WHERE profile_id BETWEEN 3100000001 AND 3100000200 AND (traits->>'c')::boolean)
SQL
)
if [ "$same" = t ]; then
  echo "ok - after concurrent refreshes, members equal the predicate and the replayed change log"
else
  echo "not ok - after concurrent refreshes, members equal the predicate and the replayed change log"
fi
