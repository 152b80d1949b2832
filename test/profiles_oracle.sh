#!/usr/bin/env bash
# cdp.refresh_profiles() against plain SQL on the sample data: identity
# sources over crm_contacts and events, a trait feed keyed by normalized
# e-mail, an event feed keyed by user_id / anonymous_id.  Golden records
# under the default rule (latest per attribute, ties: smallest value, empty
# values ignored) and activity summaries per event name must equal what
# GROUP BY / DISTINCT ON compute over the same rows resolved through
# cdp.identifiers.  TAP-style output; removes what it adds.
set -uo pipefail
DB=${CDP_ORACLE_DB:-contrib_regression}
PSQL=(psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB")

check() {  # check "description" "SQL returning one boolean"
  local got
  got=$("${PSQL[@]}" -c "$2" 2>&1)
  if [ "$got" = t ]; then echo "ok - $1"; else echo "not ok - $1"; echo "# $got"; fi
}

if ! "${PSQL[@]}" -c "SELECT count(*) FROM crm_contacts" >/dev/null 2>&1; then
  echo "ok - profiles oracle # SKIP no sample data in $DB"
  exit 0
fi

cleanup() {
  "${PSQL[@]}" >/dev/null 2>&1 <<'SQL'
SET client_min_messages = warning;
SELECT cdp.drop_feed(name) FROM cdp.profile_feeds WHERE name IN ('oracle_crm', 'oracle_events');
SELECT cdp.drop_source(name) FROM cdp.identity_sources WHERE name IN ('oracle_crm', 'oracle_events');
TRUNCATE cdp.identifiers, cdp.identity_links, cdp.profiles, cdp.profile_lineage, cdp.identity_runs,
         cdp.identity_refusals, cdp.identity_kinds, cdp.profile_traits, cdp.profile_activity;
DELETE FROM cdp.profile_settings;
SELECT cdp.set_rules(NULL);
SQL
}
trap cleanup EXIT

"${PSQL[@]}" >/dev/null <<'SQL' || { echo "not ok - set-up"; exit 1; }
SET client_min_messages = warning;
SELECT cdp.set_rules('{"limits": {"user_id": 1}, "max_degree": {"anonymous_id": 50}}');
SELECT cdp.set_trait_rules(NULL);  -- default rule: latest for every attribute
SELECT cdp.add_source('oracle_crm', $$SELECT user_id, cdp.normalize_email(email, true) AS email,
                                             updated_at AS at FROM crm_contacts$$);
SELECT cdp.add_source('oracle_events', $$SELECT user_id, anonymous_id, ts AS at FROM events$$);
SELECT cdp.refresh_identities();
SELECT cdp.add_trait_feed('oracle_crm', $$
  SELECT 'email' AS kind, cdp.normalize_email(email, true) AS value,
         jsonb_build_object('country', country, 'last_name', last_name, 'first_name', first_name,
                            'system', source_system) AS attributes,
         updated_at AS at FROM crm_contacts $$);
SELECT cdp.add_event_feed('oracle_events', $$
  SELECT CASE WHEN user_id IS NULL THEN 'anonymous_id' ELSE 'user_id' END AS kind,
         coalesce(user_id, anonymous_id) AS value, event, ts AS at,
         (properties->>'revenue')::float8 AS amount FROM events $$);
SELECT cdp.refresh_profiles();
SQL

check "every current profile has one traits row" \
  "SELECT (SELECT count(*) FROM cdp.profile_traits) = (SELECT count(*) FROM cdp.profiles)
      AND NOT EXISTS (SELECT FROM cdp.profile_traits t LEFT JOIN cdp.profiles p USING (profile_id)
                      WHERE p.profile_id IS NULL)"

check "golden records equal DISTINCT ON over the resolved CRM rows" \
  "WITH obs AS (
     SELECT i.profile_id, e.key, e.value AS val, c.updated_at AS at
     FROM crm_contacts c
     JOIN cdp.identifiers i ON i.kind = 'email' AND i.value = cdp.normalize_email(c.email, true)
     CROSS JOIN LATERAL jsonb_each(jsonb_build_object('country', c.country, 'last_name', c.last_name,
                                   'first_name', c.first_name, 'system', c.source_system)) e
     WHERE i.profile_id IS NOT NULL AND e.value NOT IN ('null', '\"\"', '[]', '{}')
   ), winners AS (
     SELECT DISTINCT ON (profile_id, key) profile_id, key, val
     FROM obs ORDER BY profile_id, key, at DESC, val
   ), oracle AS (
     SELECT p.profile_id, coalesce(jsonb_object_agg(w.key, w.val) FILTER (WHERE w.key IS NOT NULL), '{}') AS traits
     FROM cdp.profiles p LEFT JOIN winners w USING (profile_id) GROUP BY p.profile_id
   )
   SELECT count(*) > 100 AND bool_and(o.traits = t.traits)
   FROM oracle o FULL JOIN cdp.profile_traits t USING (profile_id)"

check "activity summaries equal GROUP BY over the resolved events (counts, sums, first, last)" \
  "WITH ev AS (
     SELECT i.profile_id, e.event, e.ts, (e.properties->>'revenue')::float8 AS amount
     FROM events e
     JOIN cdp.identifiers i ON i.kind = CASE WHEN e.user_id IS NULL THEN 'anonymous_id' ELSE 'user_id' END
                           AND i.value = coalesce(e.user_id, e.anonymous_id)
     WHERE i.profile_id IS NOT NULL
   ), oracle AS (
     SELECT profile_id, event, count(*) AS n, round(coalesce(sum(amount), 0)::numeric, 6) AS total,
            min(ts) AS first_at, max(ts) AS last_at
     FROM ev GROUP BY 1, 2
   ), got AS (
     SELECT a.profile_id, x.event, x.count AS n, round(x.sum::numeric, 6) AS total, x.first_at, x.last_at
     FROM cdp.profile_activity a CROSS JOIN LATERAL cdp.events(a.activity) x
   )
   SELECT count(*) > 1000 AND bool_and(o IS NOT DISTINCT FROM g AND o.profile_id IS NOT NULL)
   FROM oracle o FULL JOIN got g USING (profile_id, event)"

check "unresolved rows are the feed rows whose identifier has no profile" \
  "SELECT (SELECT unresolved_rows FROM cdp.refresh_profiles()) =
          (SELECT count(*) FROM crm_contacts c LEFT JOIN cdp.identifiers i
             ON i.kind = 'email' AND i.value = cdp.normalize_email(c.email, true)
           WHERE i.profile_id IS NULL)
        + (SELECT count(*) FROM events e LEFT JOIN cdp.identifiers i
             ON i.kind = CASE WHEN e.user_id IS NULL THEN 'anonymous_id' ELSE 'user_id' END
            AND i.value = coalesce(e.user_id, e.anonymous_id)
           WHERE i.profile_id IS NULL)"

check "a second refresh with nothing new changes nothing" \
  "SELECT traits_changed + activity_changed + traits_removed + activity_removed = 0 FROM cdp.refresh_profiles()"
