-- Install the extension and look at the raw data
CREATE EXTENSION cdp CASCADE;
\echo 'A few CRM contacts as they arrive: mixed case, stray spaces, national phone formats, placeholders'
SELECT contact_id, user_id, email, phone, country, source_system FROM crm_contacts ORDER BY contact_id LIMIT 8;
\echo 'Events: an anonymous_id per device, a user_id once the person logs in'
SELECT event_id, anonymous_id, user_id, event, ts::date, properties FROM events ORDER BY event_id LIMIT 6;
