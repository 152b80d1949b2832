#!/usr/bin/env bash
# Concurrent refreshes of the managed identity graph: the second waits for
# the first (advisory lock) and sees its result; writes to the source table
# go on during a refresh; the graph afterwards equals a stateless stitch of
# the stored links and a full rebuild changes nothing.  TAP-style output.
set -uo pipefail
DB=cdp_identity_concurrency
PSQL=(psql -X -q -At -v ON_ERROR_STOP=1 -d $DB)
PGOPTIONS="-c client_min_messages=warning" psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null || exit 1
tmp=$(mktemp -d)
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null; rm -rf "$tmp"' EXIT

check() {  # check "description" "SQL returning one boolean"
  local got
  got=$("${PSQL[@]}" -c "$2" 2>&1)
  if [ "$got" = t ]; then echo "ok - $1"; else echo "not ok - $1"; echo "# $got"; fi
}

# random visits: 60,000 possible persons, devices shared within a person, some
# logged in; rows arrive in time order
"${PSQL[@]}" >/dev/null <<'SQL' || { echo "not ok - set-up"; exit 1; }
SET client_min_messages = warning;
CREATE EXTENSION cdp;
CREATE TABLE visits (user_id text, anonymous_id text, ts timestamptz NOT NULL);
CREATE FUNCTION add_visits(n int, t0 timestamptz) RETURNS void LANGUAGE sql AS $$
  INSERT INTO visits
  SELECT CASE WHEN hashint4(i * 7 + s) % 3 = 0 THEN 'u' || p END,
         'd' || p || '-' || abs(hashint4(i * 13 + s)) % 3,
         t0 + i * interval '1 ms'
  FROM generate_series(1, n) i,
       LATERAL (SELECT abs(hashint4(i + extract(epoch FROM t0)::int)) % 60000 AS p,
                       extract(epoch FROM t0)::int AS s) x
$$;
SELECT add_visits(40000, '2026-01-01');
SELECT cdp.set_rules('{"limits": {"user_id": 1}}');
SELECT cdp.add_source('visits', $$SELECT user_id, anonymous_id, ts AS at FROM visits$$, watermark => 'at');
SQL

# session A holds its refresh open for 3 s; session B starts meanwhile and
# must wait; a writer keeps inserting and a reader keeps reading
"${PSQL[@]}" -c "SELECT add_visits(5000, '2026-02-01')" >/dev/null
( "${PSQL[@]}" -c "BEGIN" -c "SELECT run_id FROM cdp.refresh_identities()" \
    -c "SELECT pg_sleep(3)" -c "SELECT clock_timestamp()" -c "COMMIT" >"$tmp/a" 2>&1; echo $? >"$tmp/a.rc" ) &
sleep 1
( "${PSQL[@]}" -c "SELECT run_id, rows_read FROM cdp.refresh_identities()" -c "SELECT clock_timestamp()" \
    >"$tmp/b" 2>&1; echo $? >"$tmp/b.rc" ) &
( for i in 1 2 3 4 5 6; do
    "${PSQL[@]}" -c "INSERT INTO visits SELECT 'w$i', 'wd$i', clock_timestamp()" || exit 1
    "${PSQL[@]}" -c "SELECT count(*) FROM visits" >/dev/null || exit 1
    sleep 0.4
  done; echo done >"$tmp/w" ) &
wait

[ "$(cat "$tmp/a.rc")" = 0 ] && [ "$(cat "$tmp/b.rc")" = 0 ] &&
  echo "ok - two concurrent refreshes both succeed" ||
  { echo "not ok - two concurrent refreshes both succeed"; sed 's/^/# /' "$tmp/a" "$tmp/b"; }
[ "$(cat "$tmp/w" 2>/dev/null)" = done ] &&
  echo "ok - source writes and reads go on during a refresh" ||
  echo "not ok - source writes and reads go on during a refresh"
a_commit=$(tail -n 1 "$tmp/a")
b_run=$(head -n 1 "$tmp/b" | cut -d'|' -f1)
check "the second refresh started only after the first committed" \
  "SELECT started_at >= '$a_commit' FROM cdp.identity_runs WHERE run_id = $b_run"
check "run intervals never overlap" \
  "SELECT bool_and(r2.started_at >= r1.finished_at) FROM cdp.identity_runs r1 JOIN cdp.identity_runs r2 ON r2.run_id > r1.run_id"
check "the waiting refresh read only what the first had not (writes made meanwhile)" \
  "SELECT rows_read < 5000 FROM cdp.identity_runs WHERE run_id = $b_run"
a_run=$(head -n 1 "$tmp/a")
check "rows written while the first refresh ran are in the source" \
  "SELECT count(*) > 0 FROM visits v, cdp.identity_runs r
   WHERE r.run_id = $a_run AND v.user_id LIKE 'w%' AND v.ts BETWEEN r.started_at AND '$a_commit'"

# catch up, then compare with a stateless stitch and a rebuild
"${PSQL[@]}" -c "SELECT cdp.refresh_identities()" >/dev/null
check "every source identifier is in the graph" \
  "SELECT NOT EXISTS (SELECT FROM visits v WHERE NOT EXISTS
     (SELECT FROM cdp.identifiers i WHERE i.kind = 'anonymous_id' AND i.value = v.anonymous_id))"
check "the graph equals cdp.stitch() over its links" \
  "WITH o AS (SELECT * FROM cdp.stitch(\$\$
     SELECT max(v) FILTER (WHERE k = 'user_id') AS user_id, max(v) FILTER (WHERE k = 'anonymous_id') AS anonymous_id, max(at) AS at
     FROM (SELECT l.a, l.b, l.first_seen AS at, i.kind AS k, i.value AS v
           FROM cdp.identity_links l JOIN cdp.identifiers i ON i.identifier_id IN (l.a, l.b)
           UNION ALL SELECT i.identifier_id, 0, NULL, i.kind, i.value FROM cdp.identifiers i) x
     GROUP BY a, b \$\$, '{\"limits\": {\"user_id\": 1}}'))
   SELECT count(DISTINCT i.profile_id) = count(DISTINCT o.profile_id)
      AND count(DISTINCT i.profile_id) = count(DISTINCT (i.profile_id, o.profile_id))
      AND count(*) = (SELECT count(*) FROM cdp.identifiers)
   FROM cdp.identifiers i JOIN o USING (kind, value)"
"${PSQL[@]}" -c "CREATE TABLE before AS SELECT identifier_id, profile_id FROM cdp.identifiers" \
  -c "SELECT cdp.rebuild_identities()" >/dev/null
check "a rebuild keeps every profile id" \
  "SELECT count(*) = 0 FROM before b JOIN cdp.identifiers i USING (identifier_id) WHERE b.profile_id IS DISTINCT FROM i.profile_id"
check "profile counts match the identifiers" \
  "SELECT count(*) = 0 FROM cdp.profiles p WHERE identifier_count <> (SELECT count(*) FROM cdp.identifiers i WHERE i.profile_id = p.profile_id)"
