-- Identifier normalization over every CRM e-mail and phone, against the
-- plain SQL users would otherwise write and the scan floor.
-- @setup
DROP TABLE IF EXISTS bench_emails;
CREATE TABLE bench_emails AS
  SELECT email, phone FROM crm_contacts, generate_series(1, greatest(1, 1000000 / (SELECT count(*) FROM crm_contacts)::int + 1)) g
  LIMIT 1000000;
VACUUM ANALYZE bench_emails;
-- @floor count(email) over 1M rows
SELECT count(email) FROM bench_emails;
-- @case lower(trim(email))
SELECT count(lower(trim(email))) FROM bench_emails;
-- @case cdp.normalize_email(email)
SELECT count(cdp.normalize_email(email)) FROM bench_emails;
-- @case cdp.normalize_email(email, true)
SELECT count(cdp.normalize_email(email, true)) FROM bench_emails;
-- @case regexp validation + lower(trim(email))
SELECT count(CASE WHEN lower(trim(email)) ~ '^[a-z0-9.!#$%&''*+/=?^_`{|}~-]+@[a-z0-9-]+(\.[a-z0-9-]+)+$' THEN lower(trim(email)) END) FROM bench_emails;
-- @case cdp.normalize_phone(phone, '31')
SELECT count(cdp.normalize_phone(phone, '31')) FROM bench_emails;
-- @case regexp_replace(phone, '[^0-9+]', '', 'g')
SELECT count(regexp_replace(phone, '[^0-9+]', '', 'g')) FROM bench_emails;
-- @case cdp.hash_identifier(email)
SELECT count(cdp.hash_identifier(email)) FROM bench_emails;
-- @case encode(sha256(convert_to(email, 'UTF8')), 'hex')
SELECT count(encode(sha256(convert_to(email, 'UTF8')), 'hex')) FROM bench_emails;
-- @compare cdp.normalize_email(email) | lower(trim(email))
-- @compare cdp.normalize_email(email) | regexp validation + lower(trim(email))
-- @compare cdp.hash_identifier(email) | encode(sha256(convert_to(email, 'UTF8')), 'hex')
-- @note goal: cdp.normalize_email within 2x of lower(trim(email))
-- @setup
DROP TABLE bench_emails;
