-- Identifier normalization: e-mail, phone (E.164), SHA-256.

-- e-mail: trimmed and ASCII-lowercased
SELECT v, cdp.normalize_email(v)
FROM (VALUES ('  Ann.Smith@Example.COM '), (E'\tbob@x.io\n'), ('o''brien+x@sub.example.co.uk'),
             ('ünïcode@exämple.de'), ('a@b.co'), ('test@test.com')) t(v);

-- not addresses: NULL, never an error
SELECT v, cdp.normalize_email(v) IS NULL AS is_null
FROM (VALUES (''), ('   '), ('null'), ('foo'), ('@example.com'), ('ann@'), ('a@b'),
             ('a@@b.com'), ('a@b@c.com'), ('a@b..com'), ('.a@b.com'), ('a.@b.com'),
             ('a..b@c.com'), ('a b@c.com'), ('a@-b.com'), ('a@b-.com'), ('a@b.123'),
             ('a@1.2.3.4'), ('"quoted"@x.com'), ('a@[127.0.0.1]'), ('a@b.com.'),
             ('a@.b.com'), ('a(b)@c.com'), ('a@b_c.com')) t(v);
SELECT cdp.normalize_email(NULL) IS NULL AS null_in_null_out;

-- length limits: local part 64, label 63, whole address 320
SELECT cdp.normalize_email(repeat('a', 64) || '@x.com') IS NOT NULL AS local_64,
       cdp.normalize_email(repeat('a', 65) || '@x.com') IS NULL AS local_65,
       cdp.normalize_email('a@' || repeat('b', 63) || '.com') IS NOT NULL AS label_63,
       cdp.normalize_email('a@' || repeat('b', 64) || '.com') IS NULL AS label_64,
       cdp.normalize_email('a@' || repeat('b.', 200) || 'com') IS NULL AS too_long,
       cdp.normalize_email(repeat('x', 100000)) IS NULL AS huge;

-- provider aliases
SELECT v, cdp.normalize_email(v, true) AS folded, cdp.normalize_email(v, false) AS plain
FROM (VALUES ('John.Doe+news@GoogleMail.com'), ('j.o.h.n@gmail.com'), ('john+x@outlook.com'),
             ('jo.hn+x@outlook.com'), ('john+x@example.com'), ('+tag@gmail.com'),
             ('.+x@gmail.com'), ('a+b+c@icloud.com')) t(v);

-- phone: international forms need no country code
SELECT v, cdp.normalize_phone(v)
FROM (VALUES ('+31 6 1234 5678'), ('0031-6-12345678'), ('+1 (415) 555-0100'),
             ('+31 (0)6 12345678'), ('+31 06 12345678'), ('+39 06 1234 5678'),
             ('+44 20 7946 0958 ext. 123'), ('+44 20 7946 0958 x123'), ('tel:+31612345678'),
             ('(+31) 612345678'), ('+49.151.12345678'), ('+683 4002')) t(v);

-- national forms with a default country code
SELECT v, cc, cdp.normalize_phone(v, cc)
FROM (VALUES ('(06) 12345678', '31'), ('06-12345678', '+31'), ('612345678', '31'),
             ('(415) 555-0100', '1'), ('1-415-555-0100', '1'), ('011 31 6 12345678', '1'),
             ('06 1234 5678', '39'), ('8 (912) 345-67-89', '7'), ('0151 12345678', '49'),
             ('+31 6 1234 5678', '49'), ('06 12345678', NULL)) t(v, cc);

-- not phone numbers: NULL
SELECT v, cdp.normalize_phone(v, '31') IS NULL AS is_null
FROM (VALUES (''), ('  '), ('abc'), ('1-800-FLOWERS'), ('+0 123456789'), ('+28 1234567'),
             ('+1 415 555 010'), ('+1 115 555 0100'), ('+1 415 155 0100'),
             ('+1234567890123456'), ('0000000000'), ('+31 00 12345678'), ('++31 6'),
             ('6+31'), ('+'), ('0'), ('00'), ('12'), (repeat('1', 100)), ('+31 6 ☎ 12345678')) t(v);
SELECT cdp.normalize_phone(NULL) IS NULL AS null_phone, cdp.normalize_phone(NULL, '31') IS NULL AS null_phone_cc;

-- the country code may come from a column
SELECT phone, cc, cdp.normalize_phone(phone, cc)
FROM (VALUES ('06 12345678', '31'), ('0151 12345678', '49'), ('(415) 555-0100', '1')) t(phone, cc);

-- a malformed default country code is the caller's mistake: an error
SELECT cdp.normalize_phone('0612345678', '28');
SELECT cdp.normalize_phone('0612345678', 'abc');
SELECT cdp.normalize_phone('0612345678', '0031');
SELECT cdp.normalize_phone('0612345678', '');

-- SHA-256: known vectors, and agreement with the built-in sha256()
SELECT cdp.hash_identifier('') AS empty, cdp.hash_identifier('abc') AS abc;
SELECT cdp.hash_identifier(cdp.normalize_email(' Ann@Example.com ')) AS ann;
SELECT count(*) AS mismatches
FROM generate_series(1, 2000) i,
     LATERAL (SELECT repeat(md5(i::text), i % 7) || chr(200 + i % 500) AS v) s
WHERE cdp.hash_identifier(v) <> encode(sha256(convert_to(v, 'UTF8')), 'hex');
SELECT cdp.hash_identifier(NULL) IS NULL AS null_hash;

-- the generated CRM data: everything valid normalizes to the lowercased,
-- trimmed value, and only placeholders are rejected
SELECT count(*) FILTER (WHERE n IS NULL) AS rejected,
       count(*) FILTER (WHERE n IS NULL AND email NOT IN ('', 'null', 'n/a')) AS rejected_non_placeholder,
       count(*) FILTER (WHERE n IS NOT NULL AND n <> lower(btrim(email))) AS differs_from_lower_trim
FROM (SELECT email, cdp.normalize_email(email) AS n FROM crm_contacts) s;
-- folding maps every variant of a person's address onto the truth
SELECT count(*) AS unmatched
FROM crm_contacts c
WHERE cdp.normalize_email(c.email, true) NOT IN (SELECT value FROM sample_truth WHERE kind = 'email')
  AND c.email NOT IN ('', 'null', 'n/a', 'test@test.com');
SELECT count(*) AS unmatched_phones
FROM crm_contacts c
WHERE c.phone IS NOT NULL AND c.phone <> '0000000000'
  AND cdp.normalize_phone(c.phone, CASE c.country WHEN 'NL' THEN '31' WHEN 'DE' THEN '49'
                                                  WHEN 'US' THEN '1' WHEN 'FR' THEN '33' ELSE '32' END)
      NOT IN (SELECT value FROM sample_truth WHERE kind = 'phone')
  AND c.phone ~ '^(\+|00)';   -- international forms do not depend on the country column

-- volatility and parallel labels are what the docs promise
SELECT p.oid::regprocedure AS fn, p.provolatile, p.proisstrict, p.proparallel
FROM pg_proc p WHERE p.pronamespace = 'cdp'::regnamespace
  AND p.proname IN ('normalize_email', 'normalize_phone', 'hash_identifier')
ORDER BY 1::text;
