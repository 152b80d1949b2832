-- Audiences: DMP tags and behavioural segments as roaring bitmaps
SET search_path = public, cdp;
SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS demo_identity AS
  SELECT kind, value, person_id AS profile_id FROM sample_truth WHERE person_id IS NOT NULL;

DROP TABLE IF EXISTS demo_audiences;
CREATE TABLE demo_audiences (name text PRIMARY KEY, members cdp.audience NOT NULL);

-- Third-party tags ride on cookies; a cookie's device id is the anonymous_id
-- of the web events, which identity resolution maps to a profile.
INSERT INTO demo_audiences
SELECT 'dmp:' || tag, audience_agg(i.profile_id)
FROM dmp_cookies c
CROSS JOIN LATERAL unnest(c.audience_tags) AS tag
JOIN demo_identity i ON i.kind = 'anonymous_id' AND i.value = c.device_id
GROUP BY tag;

-- Behavioural segments in plain SQL over events, "now" being the last event.
CREATE TEMP TABLE demo_profile_events AS
SELECT e.event, e.ts, coalesce(u.profile_id, a.profile_id) AS profile_id
FROM events e
LEFT JOIN demo_identity u ON u.kind = 'user_id' AND u.value = e.user_id
LEFT JOIN demo_identity a ON a.kind = 'anonymous_id' AND a.value = e.anonymous_id
WHERE e.event IN ('order_completed', 'product_added', 'newsletter_subscribed');

INSERT INTO demo_audiences
SELECT name, coalesce(audience_agg(profile_id), '{}')
FROM (VALUES ('buyers_90d', 'order_completed', interval '90 days'),
             ('buyers_30d', 'order_completed', interval '30 days'),
             ('cart_adders_30d', 'product_added', interval '30 days'),
             ('newsletter', 'newsletter_subscribed', interval '100 years')) s(name, event, span)
LEFT JOIN demo_profile_events e
  ON e.event = s.event AND e.ts > (SELECT max(ts) FROM events) - s.span
GROUP BY name;

-- Cart abandoners: added to the cart in the last 30 days, bought nothing.
INSERT INTO demo_audiences
SELECT 'cart_abandoners_30d', a.members - b.members
FROM demo_audiences a, demo_audiences b
WHERE a.name = 'cart_adders_30d' AND b.name = 'buyers_30d';

\echo 'Audiences and their sizes (bytes: the stored bitmap)'
SELECT name, size(members) AS members, pg_column_size(members) AS bytes,
       round(pg_column_size(members)::numeric / greatest(size(members), 1), 2) AS bytes_per_member
FROM demo_audiences ORDER BY name;

\echo 'Pairwise overlaps of the behavioural segments'
SELECT a.name AS a, b.name AS b, overlap(a.members, b.members) AS overlap,
       round(jaccard(a.members, b.members)::numeric, 3) AS jaccard
FROM demo_audiences a JOIN demo_audiences b ON a.name < b.name
WHERE a.name NOT LIKE 'dmp:%' AND b.name NOT LIKE 'dmp:%'
ORDER BY a.name, b.name;

\echo 'Which DMP tags say most about recent buyers (share of the tag that bought in 90 days)'
SELECT t.name AS tag, size(t.members) AS tagged, overlap(t.members, b.members) AS buyers,
       round(100.0 * overlap(t.members, b.members) / greatest(size(t.members), 1), 1) AS pct_buyers,
       round(jaccard(t.members, b.members)::numeric, 3) AS jaccard
FROM demo_audiences t, demo_audiences b
WHERE t.name LIKE 'dmp:%' AND b.name = 'buyers_90d'
ORDER BY pct_buyers DESC, tag;

\echo 'Campaign: cart abandoners who read the newsletter, excluding luxury shoppers'
SELECT size((ab.members & nl.members) - lux.members) AS target,
       to_array(sample((ab.members & nl.members) - lux.members, 5, 1)) AS five_of_them
FROM demo_audiences ab, demo_audiences nl, demo_audiences lux
WHERE ab.name = 'cart_abandoners_30d' AND nl.name = 'newsletter' AND lux.name = 'dmp:luxury_shopper';

\echo 'A 10% holdout of the 90-day buyers, fixed by its seed, disjoint from the treated group'
SELECT size(members) AS audience, size(holdout) AS holdout, size(members - holdout) AS treated,
       holdout && (members - holdout) AS overlap, holdout = sample(members, size(members) / 10, 2026) AS reproducible
FROM (SELECT members, sample(members, size(members) / 10, 2026) AS holdout
      FROM demo_audiences WHERE name = 'buyers_90d') s;

\echo 'The same overlap from membership rows, for comparison'
SELECT count(*) AS overlap_from_rows
FROM (SELECT DISTINCT profile_id FROM demo_profile_events
      WHERE event = 'order_completed' AND ts > (SELECT max(ts) FROM events) - interval '90 days'
      INTERSECT
      SELECT i.profile_id FROM dmp_cookies c JOIN demo_identity i
        ON i.kind = 'anonymous_id' AND i.value = c.device_id
      WHERE 'luxury_shopper' = ANY (c.audience_tags)) s;
SELECT overlap(a.members, b.members) AS overlap_from_bitmaps
FROM demo_audiences a, demo_audiences b WHERE a.name = 'buyers_90d' AND b.name = 'dmp:luxury_shopper';
