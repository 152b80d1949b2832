-- Identifier normalization: e-mails, phones (E.164) and hashed forms
\echo 'Messy CRM identifiers and their normalized, hashed forms'
SELECT email,
       cdp.normalize_email(email)        AS email_normalized,
       cdp.normalize_email(email, true)  AS email_folded,
       phone,
       cdp.normalize_phone(phone, CASE country WHEN 'NL' THEN '31' WHEN 'DE' THEN '49' WHEN 'US' THEN '1'
                                               WHEN 'FR' THEN '33' ELSE '32' END) AS phone_e164
FROM crm_contacts ORDER BY contact_id LIMIT 10;

\echo 'How many raw spellings collapse into one identifier'
SELECT count(DISTINCT email) AS raw_emails,
       count(DISTINCT cdp.normalize_email(email)) AS normalized,
       count(DISTINCT cdp.normalize_email(email, true)) AS alias_folded,
       count(*) FILTER (WHERE email IS NOT NULL AND cdp.normalize_email(email) IS NULL) AS rejected
FROM crm_contacts;

\echo 'Customer-match upload form: SHA-256 of the normalized address'
SELECT cdp.hash_identifier(cdp.normalize_email(email, true)) AS hashed_email
FROM crm_contacts WHERE cdp.normalize_email(email) IS NOT NULL ORDER BY contact_id LIMIT 3;
