-- Runs first: install the extension and generate a small, deterministic
-- sample data set (1,000 persons) that the other tests read.
SET client_min_messages = warning;
CREATE EXTENSION cdp;
\set ECHO none
\i bench/generate.sql
\set ECHO all
SELECT * FROM cdp_sample.generate(persons => 1000, seed => 42, anchor => '2026-01-01 00:00:00+00');
RESET client_min_messages;

-- the generator is deterministic: fingerprints of every table
SELECT 'crm_contacts' AS t, md5(string_agg(c::text, '|' ORDER BY contact_id)) FROM crm_contacts c
UNION ALL SELECT 'events', md5(string_agg(e::text, '|' ORDER BY event_id)) FROM events e
UNION ALL SELECT 'dmp_cookies', md5(string_agg(d::text, '|' ORDER BY cookie_id)) FROM dmp_cookies d
UNION ALL SELECT 'sample_truth', md5(string_agg(s::text, '|' ORDER BY kind, value)) FROM sample_truth s;

-- the faults the issue asks for are present
SELECT count(*) FILTER (WHERE anonymous_id LIKE 'kiosk-%') > 100 AS kiosk_events,
       count(DISTINCT user_id) FILTER (WHERE anonymous_id LIKE 'kiosk-%') > 100 AS kiosk_users,
       bool_or(anonymous_id = '00000000-0000-0000-0000-000000000000') AS zero_uuid,
       bool_or(user_id = 'null') AS null_string_user
FROM events;
SELECT bool_or(email IN ('', 'null', 'test@test.com', 'n/a')) AS placeholder_emails,
       bool_or(email <> lower(btrim(email))) AS messy_emails,
       count(DISTINCT user_id) < count(*) FILTER (WHERE user_id IS NOT NULL) AS multi_row_persons
FROM crm_contacts;
SELECT bool_or(expires_at < '2026-01-01') AS some_expired, bool_and(expires_at > first_seen) AS sane
FROM dmp_cookies;
