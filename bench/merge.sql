-- Golden records: cdp.merge_profile over every CRM, DMP and event-trait
-- observation of every profile, against the scan floor, plain SQL
-- (DISTINCT ON per attribute + jsonb_object_agg) and first_last_agg's last().
-- @setup
CREATE EXTENSION IF NOT EXISTS first_last_agg;
DROP TABLE IF EXISTS bench_obs;
CREATE TABLE bench_obs AS
SELECT coalesce(u.person_id, e.person_id) AS profile_id, c.updated_at AS at,
       CASE c.source_system WHEN 'shop' THEN 3 WHEN 'store_pos' THEN 2 ELSE 1 END AS priority,
       'crm:' || c.source_system AS source,
       jsonb_strip_nulls(jsonb_build_object('email', cdp.normalize_email(c.email, true), 'phone', c.phone,
         'first_name', c.first_name, 'last_name', c.last_name, 'country', c.country)) AS attrs
FROM crm_contacts c
LEFT JOIN sample_truth u ON u.kind = 'user_id' AND u.value = c.user_id
LEFT JOIN sample_truth e ON e.kind = 'email' AND e.value = cdp.normalize_email(c.email, true)
UNION ALL
SELECT t.person_id, d.first_seen, 1, 'dmp',
       jsonb_build_object('audience_tags', to_jsonb(d.audience_tags), 'first_seen', d.first_seen)
FROM dmp_cookies d JOIN sample_truth t ON t.kind = 'cookie_id' AND t.value = d.cookie_id
UNION ALL
SELECT t.person_id, ev.ts, 0, 'events', ev.properties || jsonb_build_object('last_event', ev.event)
FROM events ev JOIN sample_truth t ON t.kind = 'anonymous_id' AND t.value = ev.anonymous_id
WHERE ev.properties <> '{}';
DELETE FROM bench_obs WHERE profile_id IS NULL;
VACUUM ANALYZE bench_obs;
-- @floor count(*) GROUP BY profile_id
SELECT count(s.*) FROM (SELECT profile_id, count(*) FROM bench_obs GROUP BY 1) s;
-- @case cdp.merge_profile(attrs, at)
SELECT count(s.*) FROM (SELECT profile_id, cdp.merge_profile(attrs, at) FROM bench_obs GROUP BY 1) s;
-- @case cdp.merge_profile with rules
SELECT count(s.*) FROM (
  SELECT profile_id, cdp.merge_profile(attrs, at, priority,
    '{"email": "priority", "phone": "priority", "country": "most_frequent", "audience_tags": "union",
      "first_seen": "earliest", "revenue": "sum", "sku": "count", "last_event": "latest"}')
  FROM bench_obs GROUP BY 1) s;
-- @case cdp.merge_profile_lineage with rules and source
SELECT count(s.*) FROM (
  SELECT profile_id, cdp.merge_profile_lineage(attrs, at, priority,
    '{"email": "priority", "phone": "priority", "country": "most_frequent", "audience_tags": "union",
      "first_seen": "earliest", "revenue": "sum", "sku": "count", "last_event": "latest"}', source)
  FROM bench_obs GROUP BY 1) s;
-- @case plain SQL: DISTINCT ON per attribute + jsonb_object_agg
SELECT count(s.*) FROM (
  SELECT profile_id, jsonb_object_agg(key, value)
  FROM (SELECT DISTINCT ON (profile_id, key) profile_id, key, value
        FROM bench_obs, jsonb_each(attrs)
        WHERE value NOT IN ('null', '""', '[]', '{}')
        ORDER BY profile_id, key, at DESC, value) o
  GROUP BY 1) s;
-- @case cdp.latest per attribute (11 columns)
SELECT count(s.*) FROM (
  SELECT profile_id, cdp.latest(attrs -> 'email', at), cdp.latest(attrs -> 'phone', at),
         cdp.latest(attrs -> 'first_name', at), cdp.latest(attrs -> 'last_name', at),
         cdp.latest(attrs -> 'country', at), cdp.latest(attrs -> 'audience_tags', at),
         cdp.latest(attrs -> 'first_seen', at), cdp.latest(attrs -> 'revenue', at),
         cdp.latest(attrs -> 'currency', at), cdp.latest(attrs -> 'sku', at), cdp.latest(attrs -> 'last_event', at)
  FROM bench_obs GROUP BY 1) s;
-- @case first_last_agg last() per attribute (11 columns, input sorted by at)
SELECT count(s.*) FROM (
  SELECT profile_id, last(attrs -> 'email'), last(attrs -> 'phone'),
         last(attrs -> 'first_name'), last(attrs -> 'last_name'),
         last(attrs -> 'country'), last(attrs -> 'audience_tags'),
         last(attrs -> 'first_seen'), last(attrs -> 'revenue'),
         last(attrs -> 'currency'), last(attrs -> 'sku'), last(attrs -> 'last_event')
  FROM (SELECT * FROM bench_obs ORDER BY profile_id, at) o GROUP BY 1) s;
-- @case cdp.most_frequent(source)
SELECT count(s.*) FROM (SELECT profile_id, cdp.most_frequent(source) FROM bench_obs GROUP BY 1) s;
-- @case mode() WITHIN GROUP (ORDER BY source)
SELECT count(s.*) FROM (SELECT profile_id, mode() WITHIN GROUP (ORDER BY source) FROM bench_obs GROUP BY 1) s;
-- @compare cdp.merge_profile(attrs, at) | plain SQL: DISTINCT ON per attribute + jsonb_object_agg
-- @compare cdp.merge_profile(attrs, at) | first_last_agg last() per attribute (11 columns, input sorted by at)
-- @compare cdp.latest per attribute (11 columns) | first_last_agg last() per attribute (11 columns, input sorted by at)
-- @compare cdp.most_frequent(source) | mode() WITHIN GROUP (ORDER BY source)
-- @note goal: cdp.merge_profile within 2x of the floor, at least 5x faster than plain SQL, faster than last()
-- @note last() takes the last row in input order (ties on at depend on the sort); cdp breaks ties by value
-- @setup
DROP TABLE bench_obs;
