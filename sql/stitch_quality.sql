-- Stitching quality on the generated sample (1,000 persons): precision and
-- recall of same-person pairs against sample_truth, counted per cluster
-- (sum of n choose 2), scored over the identifiers the ground truth knows.
-- The faults: shared kiosk devices, the all-zero device id and 'null' user ids.
CREATE VIEW stitch_input AS
  SELECT user_id, cdp.normalize_email(email, true) AS email,
         cdp.normalize_phone(phone, CASE country WHEN 'NL' THEN '31' WHEN 'DE' THEN '49' WHEN 'US' THEN '1'
                                                 WHEN 'FR' THEN '33' ELSE '32' END) AS phone,
         NULL::text AS anonymous_id, NULL::text AS cookie_id, updated_at AS at
  FROM crm_contacts
  UNION ALL SELECT user_id, NULL, NULL, anonymous_id, NULL, ts FROM events
  UNION ALL SELECT NULL, NULL, NULL, device_id, cookie_id, first_seen FROM dmp_cookies;
CREATE TABLE stitch_universe AS
  SELECT DISTINCT v.kind, v.value, t.person_id
  FROM stitch_input i
  CROSS JOIN LATERAL (VALUES ('user_id', i.user_id), ('email', i.email), ('phone', i.phone),
                             ('anonymous_id', i.anonymous_id), ('cookie_id', i.cookie_id)) v(kind, value)
  JOIN sample_truth t ON t.kind = v.kind AND t.value = v.value;
CREATE TABLE stitch_result (rules text, kind text, value text, profile_id bigint);
INSERT INTO stitch_result SELECT 'none', * FROM cdp.stitch('SELECT * FROM stitch_input', '{"blocked": {}, "max_degree": {}}');
INSERT INTO stitch_result SELECT 'default', * FROM cdp.stitch('SELECT * FROM stitch_input');
INSERT INTO stitch_result SELECT 'limits', * FROM cdp.stitch('SELECT * FROM stitch_input', '{"limits": {"user_id": 1, "email": 5}}');

CREATE VIEW stitch_score AS
  WITH s AS (SELECT r.rules, u.person_id, r.profile_id
             FROM stitch_universe u
             CROSS JOIN (VALUES ('none'), ('default'), ('limits')) rr(rules)
             LEFT JOIN stitch_result r ON r.rules = rr.rules AND r.kind = u.kind AND r.value = u.value),
  tp AS (SELECT rules, sum(n * (n - 1) / 2) AS pairs FROM (SELECT rules, count(*) AS n FROM s
         WHERE profile_id IS NOT NULL AND person_id IS NOT NULL GROUP BY rules, profile_id, person_id) x GROUP BY rules),
  pp AS (SELECT rules, sum(n * (n - 1) / 2) AS pairs FROM (SELECT rules, count(*) AS n FROM s
         WHERE profile_id IS NOT NULL GROUP BY rules, profile_id) x GROUP BY rules),
  tt AS (SELECT sum(n * (n - 1) / 2) AS pairs FROM (SELECT count(*) AS n FROM stitch_universe
         WHERE person_id IS NOT NULL GROUP BY person_id) x)
  SELECT rules, tp.pairs AS true_positive_pairs, pp.pairs AS predicted_pairs, tt.pairs AS true_pairs,
         round(tp.pairs / pp.pairs, 4) AS pair_precision, round(tp.pairs / tt.pairs, 4) AS pair_recall
  FROM tp JOIN pp USING (rules) CROSS JOIN tt;

SELECT * FROM stitch_score ORDER BY rules;

-- the default rules raise precision without giving up recall (recall stays
-- below 1 whatever the rules: devices of persons who never log in share no
-- identifier, so nothing links them)
SELECT d.pair_precision > n.pair_precision AS precision_up, d.pair_recall >= n.pair_recall AS recall_kept,
       l.pair_precision >= d.pair_precision AND l.pair_recall >= d.pair_recall AS limits_no_worse
FROM stitch_score d, stitch_score n, stitch_score l
WHERE d.rules = 'default' AND n.rules = 'none' AND l.rules = 'limits';

-- what they refused, by reason
SELECT reason, kind, count(*) FROM cdp.stitch_report('SELECT * FROM stitch_input') GROUP BY 1, 2 ORDER BY 1, 2;
SELECT reason, value, detail FROM cdp.stitch_report('SELECT * FROM stitch_input') WHERE reason = 'hub' ORDER BY value;

-- without rules the kiosks glue hundreds of persons together
SELECT rules, max(n) AS largest_profile FROM (SELECT rules, count(*) AS n FROM stitch_result GROUP BY rules, profile_id) x
GROUP BY rules ORDER BY rules;

DROP VIEW stitch_score;
DROP TABLE stitch_result, stitch_universe;
DROP VIEW stitch_input;
