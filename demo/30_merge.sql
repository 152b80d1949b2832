-- Golden records: survivorship rules over CRM, DMP and event observations
SET client_min_messages = warning;
CREATE TABLE IF NOT EXISTS demo_identity AS
  SELECT kind, value, person_id AS profile_id FROM sample_truth WHERE person_id IS NOT NULL;

-- every observation of a profile as (attributes, at, priority, source)
DROP TABLE IF EXISTS demo_observations;
CREATE TABLE demo_observations AS
SELECT coalesce(u.profile_id, e.profile_id) AS profile_id, c.updated_at AS at,
       CASE c.source_system WHEN 'shop' THEN 3 WHEN 'store_pos' THEN 2 ELSE 1 END AS priority,
       'crm:' || c.source_system AS source,
       jsonb_strip_nulls(jsonb_build_object(
         'email', cdp.normalize_email(c.email, true),
         'phone', cdp.normalize_phone(c.phone, CASE c.country WHEN 'NL' THEN '31' WHEN 'DE' THEN '49'
                                                 WHEN 'US' THEN '1' WHEN 'FR' THEN '33' ELSE '32' END),
         'first_name', initcap(c.first_name), 'last_name', initcap(c.last_name),
         'country', c.country)) AS attrs
FROM crm_contacts c
LEFT JOIN demo_identity u ON u.kind = 'user_id' AND u.value = c.user_id
LEFT JOIN demo_identity e ON e.kind = 'email' AND e.value = cdp.normalize_email(c.email, true)
UNION ALL
SELECT i.profile_id, d.first_seen, 1, 'dmp',
       jsonb_build_object('audience_tags', to_jsonb(d.audience_tags), 'first_seen', d.first_seen)
FROM dmp_cookies d JOIN demo_identity i ON i.kind = 'cookie_id' AND i.value = d.cookie_id
UNION ALL
SELECT coalesce(u.profile_id, a.profile_id), ev.ts, 0, 'events:' || ev.event,
       jsonb_build_object('first_seen', ev.ts, 'last_seen', ev.ts, 'last_event', ev.event)
       || CASE WHEN ev.event = 'order_completed'
               THEN jsonb_build_object('lifetime_value', ev.properties -> 'revenue', 'orders', 1)
               ELSE '{}' END
FROM events ev
LEFT JOIN demo_identity u ON u.kind = 'user_id' AND u.value = ev.user_id
LEFT JOIN demo_identity a ON a.kind = 'anonymous_id' AND a.value = ev.anonymous_id;
DELETE FROM demo_observations WHERE profile_id IS NULL;
ANALYZE demo_observations;

-- the survivorship rules: one strategy per attribute (default: latest)
\set rules '{"email": "priority", "phone": "priority", "country": "most_frequent", "first_seen": "earliest", "last_seen": "latest", "lifetime_value": "sum", "orders": "count", "audience_tags": "union"}'

\echo 'Observations per source, and the rules applied'
SELECT source, count(*) AS observations, count(DISTINCT profile_id) AS profiles
FROM demo_observations GROUP BY 1 ORDER BY 1;
SELECT key AS attribute, value AS strategy FROM jsonb_each_text(:'rules') ORDER BY 1;

-- one typed row per profile, readable by any BI tool
DROP TABLE IF EXISTS demo_golden;
CREATE TABLE demo_golden AS
SELECT profile_id,
       g ->> 'email' AS email,
       g ->> 'phone' AS phone,
       g ->> 'first_name' AS first_name,
       g ->> 'last_name' AS last_name,
       g ->> 'country' AS country,
       (g ->> 'first_seen')::timestamptz AS first_seen,
       (g ->> 'last_seen')::timestamptz AS last_seen,
       g ->> 'last_event' AS last_event,
       coalesce((g ->> 'orders')::int, 0) AS orders,
       coalesce((g ->> 'lifetime_value')::numeric, 0) AS lifetime_value,
       ARRAY(SELECT jsonb_array_elements_text(g -> 'audience_tags')) AS audience_tags
FROM (SELECT profile_id, cdp.merge_profile(attrs, at, priority, :'rules') AS g
      FROM demo_observations GROUP BY profile_id) s;
ALTER TABLE demo_golden ADD PRIMARY KEY (profile_id);
COMMENT ON TABLE demo_golden IS 'golden record per profile: cdp.merge_profile over CRM, DMP and event observations';

\echo 'Golden records (the customers with the highest lifetime value)'
SELECT profile_id, email, phone, first_name, last_name, country, first_seen::date, orders,
       lifetime_value, audience_tags
FROM demo_golden WHERE email IS NOT NULL ORDER BY lifetime_value DESC, profile_id LIMIT 5;

\echo 'How complete the golden records are'
SELECT count(*) AS profiles, count(email) AS with_email, count(phone) AS with_phone,
       count(country) AS with_country, count(*) FILTER (WHERE orders > 0) AS buyers,
       round(avg(lifetime_value) FILTER (WHERE orders > 0), 2) AS avg_ltv_of_buyers
FROM demo_golden;

\echo 'Why does this profile say NL? Its country observations, then the lineage of the merged value'
SELECT profile_id AS nl_profile FROM demo_observations
WHERE attrs ? 'country'
GROUP BY profile_id
HAVING count(DISTINCT attrs ->> 'country') > 1 AND cdp.most_frequent(attrs ->> 'country') = 'NL'
ORDER BY count(*) FILTER (WHERE attrs ->> 'country' = 'NL') DESC, profile_id LIMIT 1 \gset
SELECT at::date, source, priority, attrs ->> 'country' AS country
FROM demo_observations WHERE profile_id = :nl_profile AND attrs ? 'country' ORDER BY at;
SELECT key AS attribute, value AS lineage
FROM jsonb_each((SELECT cdp.merge_profile_lineage(attrs, at, priority, :'rules', source)
                 FROM demo_observations WHERE profile_id = :nl_profile))
WHERE key IN ('country', 'email', 'lifetime_value')
ORDER BY key;

\echo 'Per-attribute survivorship aggregates work on typed columns too'
SELECT c.user_id,
       cdp.latest(c.last_name, c.updated_at) AS latest_last_name,
       cdp.by_priority(cdp.normalize_email(c.email, true), CASE c.source_system WHEN 'shop' THEN 3 ELSE 1 END,
                       c.updated_at) AS shop_first_email,
       cdp.most_frequent(c.country) AS country,
       cdp.unique_values(c.last_name, c.updated_at, 3) AS last_names
FROM crm_contacts c WHERE c.user_id IS NOT NULL
GROUP BY c.user_id HAVING count(DISTINCT c.last_name) > 1
ORDER BY c.user_id LIMIT 3;
