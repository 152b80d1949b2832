#!/usr/bin/env bash
# Incremental refreshes against an independent answer: random batches of
# rows (shared devices, users seen on several devices, limits, hubs,
# erasures) are refreshed one by one; after each, the partition of the
# managed graph must equal a stateless cdp.stitch() over the stored links,
# and every identifier whose profile id changed must be explained by the
# lineage (a merge of its old id, or a split of it).  A second source
# without watermark brings back-dated copies of some rows, so first_seen
# moves back as last_seen moves on; at the end every identifier's and every
# link's first_seen/last_seen must equal the min/max of the rows holding
# it.  TAP-style output.
set -uo pipefail
DB=cdp_identity_oracle
PSQL=(psql -X -q -At -v ON_ERROR_STOP=1 -d $DB)
PGOPTIONS="-c client_min_messages=warning" psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" \
  -c "CREATE DATABASE $DB" >/dev/null || exit 1
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null' EXIT

"${PSQL[@]}" >/dev/null <<'SQL' || { echo "not ok - set-up"; exit 1; }
SET client_min_messages = warning;
CREATE EXTENSION cdp;
CREATE TABLE rows_in (user_id text, email text, anonymous_id text, ts timestamptz NOT NULL);
-- batch b: 300 rows over 400 persons; a person has 1-3 devices and one
-- e-mail; some devices are shared between persons (hubs); some e-mails are
-- shared by two user ids (the limit refuses the second)
CREATE FUNCTION add_batch(b int) RETURNS void LANGUAGE sql AS $$
  INSERT INTO rows_in
  SELECT CASE WHEN r % 3 = 0 THEN 'u' || p END,
         CASE WHEN r % 5 = 0 THEN 'e' || (p / 2) || '@x' END,
         CASE WHEN r % 17 = 0 THEN 'kiosk' || (r % 2) ELSE 'd' || p || '-' || (r / 7 % 3) END,
         timestamptz '2026-01-01' + (b * 1000 + i) * interval '1 s'
  FROM generate_series(1, 300) i,
       LATERAL (SELECT abs(hashint4(b * 1000 + i)) AS r) h,
       LATERAL (SELECT h.r % 400 AS p) q
$$;
SELECT cdp.set_rules('{"limits": {"user_id": 1}, "max_degree": {"anonymous_id": 6}}');
SELECT cdp.add_source('rows', $$SELECT user_id, email, anonymous_id, ts AS at FROM rows_in$$, watermark => 'at');
CREATE TABLE late_in (LIKE rows_in);
SELECT cdp.add_source('late', $$SELECT user_id, email, anonymous_id, ts AS at FROM late_in$$);
-- first_seen/last_seen against the rows read: identifiers, then links
CREATE VIEW seen_oracle AS
  WITH r AS (SELECT row_number() OVER () AS row, *
             FROM (SELECT * FROM rows_in UNION ALL SELECT * FROM late_in) x),
       v AS (SELECT r.row, k, v, ts
             FROM r, LATERAL (VALUES ('user_id', r.user_id), ('email', r.email),
                                     ('anonymous_id', r.anonymous_id)) x(k, v)
             WHERE v IS NOT NULL),
       n AS (SELECT v.row, v.ts, i.identifier_id AS id FROM v JOIN cdp.identifiers i ON i.kind = v.k AND i.value = v.v),
       io AS (SELECT id, min(ts) AS f, max(ts) AS l FROM n GROUP BY id),
       lo AS (SELECT x.id AS a, y.id AS b, min(x.ts) AS f, max(x.ts) AS l
              FROM n x JOIN n y ON x.row = y.row AND x.id < y.id GROUP BY 1, 2)
  SELECT (SELECT count(*) FROM cdp.identifiers i FULL JOIN io ON io.id = i.identifier_id
          WHERE (i.first_seen, i.last_seen) IS DISTINCT FROM (io.f, io.l)) AS bad_identifiers,
         (SELECT count(*) FROM cdp.identity_links l FULL JOIN lo USING (a, b)
          WHERE (l.first_seen, l.last_seen) IS DISTINCT FROM (lo.f, lo.l)) AS bad_links,
         (SELECT count(*) FROM io JOIN cdp.identifiers i ON i.identifier_id = io.id
          WHERE i.first_seen < (SELECT min(ts) FROM rows_in)) AS moved_back;
CREATE TABLE prev (identifier_id bigint, profile_id bigint);
CREATE VIEW mismatch AS
  WITH o AS (SELECT * FROM cdp.stitch($q$
    SELECT max(v) FILTER (WHERE k = 'user_id') AS user_id, max(v) FILTER (WHERE k = 'email') AS email,
           max(v) FILTER (WHERE k = 'anonymous_id') AS anonymous_id, max(at) AS at
    FROM (SELECT l.a, l.b, l.first_seen AS at, i.kind AS k, i.value AS v
          FROM cdp.identity_links l JOIN cdp.identifiers i ON i.identifier_id IN (l.a, l.b)
          UNION ALL SELECT i.identifier_id, 0, NULL, i.kind, i.value FROM cdp.identifiers i) x
    GROUP BY a, b $q$, (SELECT rules FROM cdp.identity_settings)))
  SELECT NOT (count(DISTINCT i.profile_id) = count(DISTINCT o.profile_id)
              AND count(DISTINCT i.profile_id) = count(DISTINCT (i.profile_id, o.profile_id))
              AND count(*) = (SELECT count(*) FROM cdp.identifiers WHERE profile_id IS NOT NULL)) AS bad
  FROM cdp.identifiers i JOIN o USING (kind, value);
-- ids that changed without a lineage record of their old profile
CREATE VIEW unexplained AS
  SELECT count(*) AS n FROM prev p JOIN cdp.identifiers i USING (identifier_id)
  WHERE p.profile_id IS DISTINCT FROM i.profile_id AND p.profile_id IS NOT NULL AND i.profile_id IS NOT NULL
    AND NOT EXISTS (SELECT FROM cdp.profile_lineage l
                    WHERE l.old_profile_id = p.profile_id AND l.new_profile_id = i.profile_id);
SQL

bad_partition=0 bad_lineage=0 merges=0 splits=0
for b in $(seq 1 10); do
  "${PSQL[@]}" -c "TRUNCATE prev" -c "INSERT INTO prev SELECT identifier_id, profile_id FROM cdp.identifiers" \
    -c "SELECT add_batch($b)" >/dev/null || { bad_partition=1; break; }
  # back-dated copies of some rows already read
  if [ $((b % 3)) = 0 ]; then
    "${PSQL[@]}" -c "INSERT INTO late_in SELECT user_id, email, anonymous_id, ts - interval '30 days'
                     FROM rows_in WHERE abs(hashtext(ts::text)) % 10 = 0 AND ts < timestamptz '2026-01-01' + $((b * 1000)) * interval '1 s'" >/dev/null
  fi
  "${PSQL[@]}" -c "SELECT cdp.refresh_identities()" >/dev/null || { bad_partition=1; break; }
  [ "$("${PSQL[@]}" -c "SELECT n FROM unexplained")" = 0 ] || bad_lineage=$b
  # now and then erase an e-mail that may be a bridge
  if [ $((b % 4)) = 0 ]; then
    "${PSQL[@]}" -c "TRUNCATE prev" -c "INSERT INTO prev SELECT identifier_id, profile_id FROM cdp.identifiers" \
      -c "SELECT cdp.forget('email', (SELECT min(value) FROM cdp.identifiers WHERE kind = 'email'))" >/dev/null
    [ "$("${PSQL[@]}" -c "SELECT n FROM unexplained")" = 0 ] || bad_lineage=$b
  fi
  [ "$("${PSQL[@]}" -c "SELECT bad FROM mismatch")" = f ] || bad_partition=$b
done
seen=$("${PSQL[@]}" -F ' ' -c "SELECT * FROM seen_oracle")
[ "${seen% *}" = "0 0" ] && [ "${seen##* }" -gt 0 ] &&
  echo "ok - first_seen/last_seen of identifiers and links are the min/max of their rows ($seen)" ||
  echo "not ok - first_seen/last_seen of identifiers and links are the min/max of their rows # bad identifiers, bad links, moved back: $seen"
merges=$("${PSQL[@]}" -c "SELECT count(*) FROM cdp.profile_lineage WHERE event = 'merge'")
splits=$("${PSQL[@]}" -c "SELECT count(*) FROM cdp.profile_lineage WHERE event = 'split'")

[ "$bad_partition" = 0 ] && echo "ok - after every refresh the graph equals cdp.stitch() over its links" ||
  echo "not ok - after every refresh the graph equals cdp.stitch() over its links # first bad batch $bad_partition"
[ "$bad_lineage" = 0 ] && echo "ok - every id change by a refresh or an erasure is in the lineage" ||
  echo "not ok - every id change by a refresh or an erasure is in the lineage # batch $bad_lineage"
[ "$merges" -gt 0 ] && [ "$splits" -gt 0 ] && echo "ok - the batches merged ($merges) and split ($splits) profiles" ||
  echo "not ok - the batches merged ($merges) and split ($splits) profiles"
"${PSQL[@]}" -c "CREATE TABLE before AS SELECT identifier_id, profile_id FROM cdp.identifiers" \
  -c "SELECT cdp.rebuild_identities()" >/dev/null
got=$("${PSQL[@]}" -c "SELECT count(*) FROM before b JOIN cdp.identifiers i USING (identifier_id)
                        WHERE b.profile_id IS DISTINCT FROM i.profile_id")
[ "$got" = 0 ] && echo "ok - a rebuild after the incremental runs changes no id" ||
  echo "not ok - a rebuild after the incremental runs changes no id # $got changed"
