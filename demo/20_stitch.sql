-- Identity stitching: one profile per person from CRM, events and DMP identifiers
\echo 'Every source, one column per identifier kind (priority order) and "at"'
CREATE TEMP VIEW demo_stitch_input AS
  SELECT user_id, cdp.normalize_email(email, true) AS email,
         cdp.normalize_phone(phone, CASE country WHEN 'NL' THEN '31' WHEN 'DE' THEN '49' WHEN 'US' THEN '1'
                                                 WHEN 'FR' THEN '33' ELSE '32' END) AS phone,
         NULL::text AS anonymous_id, NULL::text AS cookie_id, updated_at AS at
  FROM crm_contacts
  UNION ALL SELECT user_id, NULL, NULL, anonymous_id, NULL, ts FROM events
  UNION ALL SELECT NULL, NULL, NULL, device_id, cookie_id, first_seen FROM dmp_cookies;

\echo 'The rules: one user_id per profile, at most 5 e-mails; the default block list and hub detection stay on'
SELECT jsonb_pretty(cdp.stitch_rules('{"limits": {"user_id": 1, "email": 5}}'));

SET client_min_messages = warning;
DROP TABLE IF EXISTS demo_identity;
CREATE TABLE demo_identity AS
  SELECT * FROM cdp.stitch('SELECT * FROM demo_stitch_input', '{"limits": {"user_id": 1, "email": 5}}');
CREATE INDEX ON demo_identity (kind, value);
ANALYZE demo_identity;

\echo 'Profiles and identifiers'
SELECT count(DISTINCT profile_id) AS profiles, count(*) AS identifiers,
       count(*) FILTER (WHERE kind = 'user_id') AS user_ids, count(*) FILTER (WHERE kind = 'email') AS emails,
       count(*) FILTER (WHERE kind = 'phone') AS phones, count(*) FILTER (WHERE kind = 'anonymous_id') AS devices,
       count(*) FILTER (WHERE kind = 'cookie_id') AS cookies
FROM demo_identity;
SELECT identifiers_per_profile, count(*) AS profiles
FROM (SELECT profile_id, count(*) AS identifiers_per_profile FROM demo_identity GROUP BY 1) p
GROUP BY 1 ORDER BY 1;

\echo 'What the rules refused, by reason'
SELECT reason, kind, count(*) AS refused, min(detail) AS example
FROM cdp.stitch_report('SELECT * FROM demo_stitch_input', '{"limits": {"user_id": 1, "email": 5}}')
GROUP BY 1, 2 ORDER BY 1, 2;

\echo 'One profile with every kind of identifier'
SELECT i.kind, i.value, i.profile_id
FROM demo_identity i
WHERE i.profile_id = (SELECT profile_id FROM demo_identity GROUP BY profile_id
                      HAVING count(DISTINCT kind) = 5 ORDER BY count(*) DESC, profile_id LIMIT 1)
ORDER BY array_position(ARRAY['user_id', 'email', 'phone', 'anonymous_id', 'cookie_id'], i.kind), i.value;

\echo 'Precision and recall of same-person pairs against the generator''s ground truth'
CREATE TEMP TABLE demo_universe AS
  SELECT DISTINCT v.kind, v.value, t.person_id
  FROM demo_stitch_input s
  CROSS JOIN LATERAL (VALUES ('user_id', s.user_id), ('email', s.email), ('phone', s.phone),
                             ('anonymous_id', s.anonymous_id), ('cookie_id', s.cookie_id)) v(kind, value)
  JOIN sample_truth t ON t.kind = v.kind AND t.value = v.value;
CREATE TEMP TABLE demo_runs AS
  SELECT 'no rules' AS rules, * FROM cdp.stitch('SELECT * FROM demo_stitch_input', '{"blocked": {}, "max_degree": {}}')
  UNION ALL SELECT 'default rules', * FROM cdp.stitch('SELECT * FROM demo_stitch_input')
  UNION ALL SELECT 'default + limits', * FROM demo_identity;
WITH s AS (SELECT r.rules, u.person_id, p.profile_id
           FROM demo_universe u CROSS JOIN (SELECT DISTINCT rules FROM demo_runs) r
           LEFT JOIN demo_runs p ON p.rules = r.rules AND p.kind = u.kind AND p.value = u.value),
tp AS (SELECT rules, sum(n * (n - 1) / 2) AS pairs FROM (SELECT rules, count(*) AS n FROM s
       WHERE profile_id IS NOT NULL AND person_id IS NOT NULL GROUP BY 1, profile_id, person_id) x GROUP BY 1),
pp AS (SELECT rules, sum(n * (n - 1) / 2) AS pairs FROM (SELECT rules, count(*) AS n FROM s
       WHERE profile_id IS NOT NULL GROUP BY 1, profile_id) x GROUP BY 1),
tt AS (SELECT sum(n * (n - 1) / 2) AS pairs FROM (SELECT count(*) AS n FROM demo_universe
       WHERE person_id IS NOT NULL GROUP BY person_id) x)
SELECT rules, round(tp.pairs / pp.pairs, 4) AS pair_precision, round(tp.pairs / tt.pairs, 4) AS pair_recall,
       (SELECT max(n) FROM (SELECT count(*) AS n FROM demo_runs d WHERE d.rules = tp.rules GROUP BY profile_id) m) AS largest_profile
FROM tp JOIN pp USING (rules) CROSS JOIN tt
ORDER BY pair_precision;
\echo 'Recall stays below 1 under any rules: devices of persons who never log in share no identifier.'
