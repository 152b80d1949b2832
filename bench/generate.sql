-- Deterministic generator of realistic CDP sample data.
--
--   \i bench/generate.sql
--   SELECT * FROM cdp_sample.generate(persons => 1000, seed => 42,
--                                     anchor => '2026-01-01');
--
-- Writes ordinary tables in the schema cdp_sample.generate() is told to use
-- (default: the first schema of search_path):
--   crm_contacts   CRM rows: 1-3 per known person, messy e-mails and phones,
--                  conflicting names/countries over time, placeholder values
--   dmp_cookies    DMP cookies tied to device ids, third-party audience tags,
--                  some expired
--   events         web/app events over the 365 days before anchor, with
--                  anonymous_id, user_id (when logged in) and properties
--   sample_truth   ground truth: the real person behind every identifier
--                  (kind, value as normalized, person_id; NULL for shared
--                  kiosk devices and placeholder values)
--
-- Every pseudo-random choice is a hash of (row, seed, purpose), so the data
-- depend only on (persons, seed, anchor): not on plan, parallelism or order.

CREATE SCHEMA IF NOT EXISTS cdp_sample;

-- uniform [0, 1) from a row number and a salt
CREATE OR REPLACE FUNCTION cdp_sample.r(i bigint, salt bigint)
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ((hashint8extended(i, salt) >> 11) & 9007199254740991)::float8 / 9007199254740992.0 $$;

-- uniform integer in [0, n)
CREATE OR REPLACE FUNCTION cdp_sample.ri(i bigint, salt bigint, n int)
RETURNS int LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT floor(cdp_sample.r(i, salt) * n)::int $$;

CREATE OR REPLACE FUNCTION cdp_sample.generate(persons int, seed int DEFAULT 42,
                                               anchor timestamptz DEFAULT '2026-01-01 00:00:00+00',
                                               target_schema name DEFAULT NULL)
RETURNS TABLE(table_name text, row_count bigint)
LANGUAGE plpgsql
AS $gen$
DECLARE
  s bigint := seed::bigint * 1000;
  sch name := coalesce(target_schema, (current_schemas(false))[1], 'public');
  firsts text[] := '{anna,bram,carla,daan,emma,finn,greta,hugo,iris,jan,kim,lars,mila,noah,olga,piet,quinn,rosa,sem,tess,umar,vera,wim,xena,yara,zoe,lotte,ruben,sara,thijs,eva,lucas,julia,milan,nora,levi,fleur,jesse,sophie,max}';
  lasts text[] := '{jansen,devries,bakker,visser,smit,meijer,mulder,bos,vos,peters,hendriks,dekker,brouwer,dijkstra,schouten,kok,jacobs,vermeulen,willems,claes,muller,schmidt,schneider,fischer,weber,martin,bernard,dubois,thomas,robert,smith,johnson,brown,miller,davis,garcia,wilson,moore,taylor,lee}';
  domains text[] := '{gmail.com,outlook.com,hotmail.com,yahoo.com,icloud.com,ziggo.nl,web.de,orange.fr,example.nl,googlemail.com}';
  -- 100 slots, names repeated by weight
  evnames text[];
  tags text[] := '{in_market_auto,travel_enthusiast,sports_fan,new_parent,home_improvement,luxury_shopper,tech_early_adopter,pet_owner,fitness,gamer,foodie,bargain_hunter}';
  n bigint;
  saved_path text := current_setting('search_path');
BEGIN
  IF persons IS NULL OR persons < 1 THEN
    RAISE EXCEPTION 'persons must be at least 1';
  END IF;
  evnames := array_fill('page_viewed'::text, ARRAY[28])
          || array_fill('product_viewed'::text, ARRAY[20])
          || array_fill('product_list_viewed'::text, ARRAY[8])
          || array_fill('products_searched'::text, ARRAY[6])
          || array_fill('product_added'::text, ARRAY[8])
          || array_fill('product_removed'::text, ARRAY[2])
          || array_fill('cart_viewed'::text, ARRAY[5])
          || array_fill('checkout_started'::text, ARRAY[4])
          || array_fill('payment_info_entered'::text, ARRAY[3])
          || array_fill('order_completed'::text, ARRAY[5])
          || array_fill('order_refunded'::text, ARRAY[1])
          || array_fill('coupon_applied'::text, ARRAY[2])
          || array_fill('signed_up'::text, ARRAY[1])
          || array_fill('signed_in'::text, ARRAY[5])
          || array_fill('newsletter_subscribed'::text, ARRAY[2]);

  PERFORM set_config('search_path', format('%I, pg_catalog, pg_temp', sch), true);

  DROP TABLE IF EXISTS crm_contacts, dmp_cookies, events, sample_truth;
  DROP TABLE IF EXISTS gen_persons, gen_devices;

  -- one row per real person
  CREATE TEMP TABLE gen_persons AS
  SELECT p AS person_id,
         cdp_sample.r(p, s + 1) < 0.6 AS identified,
         cdp_sample.r(p, s + 2) < 0.15 AS offline_only,
         firsts[1 + cdp_sample.ri(p, s + 3, array_length(firsts, 1))] AS first_name,
         lasts[1 + cdp_sample.ri(p, s + 4, array_length(lasts, 1))] AS last_name,
         domains[1 + cdp_sample.ri(p, s + 5, array_length(domains, 1))] AS domain,
         (ARRAY['NL','NL','NL','NL','DE','DE','US','US','FR','BE'])[1 + cdp_sample.ri(p, s + 6, 10)] AS country,
         1 + cdp_sample.ri(p, s + 7, 3) AS n_devices,
         -- roughly geometric number of events, mean about 10
         least(1 + floor(-ln(1.0 - cdp_sample.r(p, s + 8)) * 9.5)::int, 300) AS n_events,
         -- phone numbers are a bijection of the person number: unique
         (10000000 + (p::bigint * 7919 + seed) % 90000000)::text AS phone_digits
  FROM generate_series(1, persons) p;

  -- e-mail: local part without dots at gmail (dotted variants fold back)
  ALTER TABLE gen_persons ADD COLUMN email text, ADD COLUMN cc text, ADD COLUMN nsn text,
                          ADD COLUMN e164 text, ADD COLUMN user_id text;
  UPDATE gen_persons SET
    email = CASE WHEN domain IN ('gmail.com','googlemail.com')
                 THEN first_name || last_name || person_id || '@gmail.com'
                 ELSE first_name || '.' || last_name || person_id || '@' || domain END,
    cc = CASE country WHEN 'NL' THEN '31' WHEN 'DE' THEN '49' WHEN 'US' THEN '1'
                      WHEN 'FR' THEN '33' ELSE '32' END,
    -- national significant number: a mobile number of the country
    nsn = CASE country WHEN 'NL' THEN '6' || phone_digits
                       WHEN 'DE' THEN '151' || phone_digits
                       WHEN 'US' THEN '415' || (2000000 + (person_id::bigint * 7919 + seed) % 8000000)
                       WHEN 'FR' THEN '6' || phone_digits
                       ELSE '4' || phone_digits END,
    user_id = CASE WHEN identified THEN 'usr_' || person_id END;
  UPDATE gen_persons SET e164 = '+' || cc || nsn;

  -- devices: 1-3 per person; the device id is the web/app anonymous_id
  CREATE TEMP TABLE gen_devices AS
  SELECT p.person_id, d AS device_no,
         md5(seed || ':' || p.person_id || ':' || d)::uuid::text AS anonymous_id,
         p.identified AND cdp_sample.r(p.person_id * 4 + d, s + 10) < 0.85 AS logs_in
  FROM gen_persons p, generate_series(1, p.n_devices) d;

  ------------------------------------------------------------------ CRM
  CREATE TABLE crm_contacts (
    contact_id bigint PRIMARY KEY,
    user_id text,
    email text,
    phone text,
    first_name text,
    last_name text,
    country text,
    updated_at timestamptz NOT NULL,
    source_system text NOT NULL
  );
  INSERT INTO crm_contacts
  SELECT row_number() OVER (ORDER BY p.person_id, c) AS contact_id,
         p.user_id,
         CASE
           WHEN cdp_sample.r(k, s + 20) < 0.004 THEN (ARRAY['', 'null', 'test@test.com', 'n/a'])[1 + cdp_sample.ri(k, s + 21, 4)]
           WHEN c = 1 THEN p.email
           WHEN c = 2 THEN '  ' || initcap(split_part(p.email, '@', 1)) || '@' || upper(split_part(p.email, '@', 2)) || ' '
           WHEN p.domain IN ('gmail.com','googlemail.com')
             THEN p.first_name || '.' || p.last_name || '.' || p.person_id || '+shop@' || p.domain
           ELSE upper(p.email) END AS email,
         CASE
           WHEN cdp_sample.r(k, s + 22) < 0.3 THEN NULL
           WHEN cdp_sample.r(k, s + 23) < 0.003 THEN '0000000000'
           ELSE CASE (c + cdp_sample.ri(k, s + 24, 4)) % 4
             WHEN 0 THEN p.e164
             WHEN 1 THEN '00' || p.cc || '-' || p.nsn
             WHEN 2 THEN CASE p.country
                           WHEN 'US' THEN '(' || substr(p.nsn, 1, 3) || ') ' || substr(p.nsn, 4, 3) || '-' || substr(p.nsn, 7)
                           ELSE '0' || substr(p.nsn, 1, 1) || ' ' || substr(p.nsn, 2) END
             ELSE '+' || p.cc || ' ' || substr(p.nsn, 1, 3) || ' ' || substr(p.nsn, 4) END
         END AS phone,
         p.first_name,
         CASE WHEN c = 3 THEN lasts[1 + cdp_sample.ri(k, s + 25, array_length(lasts, 1))] ELSE p.last_name END,
         CASE WHEN c > 1 AND cdp_sample.r(k, s + 26) < 0.2 THEN 'NL' ELSE p.country END,
         anchor - make_interval(secs => cdp_sample.r(k, s + 27) * 365 * 86400),
         (ARRAY['shop','newsletter','store_pos'])[1 + cdp_sample.ri(k, s + 28, 3)]
  FROM gen_persons p
  CROSS JOIN LATERAL generate_series(1, CASE WHEN cdp_sample.r(p.person_id, s + 11) < 0.7 THEN 1
                                             WHEN cdp_sample.r(p.person_id, s + 11) < 0.9 THEN 2 ELSE 3 END) c
  CROSS JOIN LATERAL (SELECT p.person_id * 4 + c AS k) kk
  WHERE p.identified OR p.offline_only;
  -- offline-only contacts have no web account
  ------------------------------------------------------------------ DMP
  CREATE TABLE dmp_cookies (
    cookie_id text PRIMARY KEY,
    device_id text,
    audience_tags text[] NOT NULL DEFAULT '{}',
    first_seen timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
  );
  INSERT INTO dmp_cookies
  SELECT 'ck_' || substr(md5('ck' || seed || ':' || d.anonymous_id), 1, 20),
         d.anonymous_id,
         ARRAY(SELECT tags[1 + cdp_sample.ri(d.person_id * 4 + d.device_no, s + 40 + t, array_length(tags, 1))]
               FROM generate_series(1, cdp_sample.ri(d.person_id * 4 + d.device_no, s + 31, 4)) t
               GROUP BY 1 ORDER BY 1),
         fs, fs + interval '90 days'
  FROM gen_devices d
  CROSS JOIN LATERAL (SELECT anchor - make_interval(secs => cdp_sample.r(d.person_id * 4 + d.device_no, s + 32) * 180 * 86400) AS fs) f
  WHERE cdp_sample.r(d.person_id * 4 + d.device_no, s + 30) < 0.7;

  ------------------------------------------------------------------ events
  CREATE TABLE events (
    event_id bigint PRIMARY KEY,
    anonymous_id text,
    user_id text,
    event text NOT NULL,
    ts timestamptz NOT NULL,
    properties jsonb NOT NULL DEFAULT '{}'
  );
  INSERT INTO events
  SELECT row_number() OVER (ORDER BY e.k) AS event_id,
         CASE WHEN cdp_sample.r(e.k, s + 50) < 0.001 THEN '00000000-0000-0000-0000-000000000000'
              ELSE d.anonymous_id END,
         CASE WHEN d.logs_in AND cdp_sample.r(e.k, s + 51) < 0.5
              THEN CASE WHEN cdp_sample.r(e.k, s + 52) < 0.0005 THEN 'null' ELSE p.user_id END END,
         e.ev,
         anchor - make_interval(secs => cdp_sample.r(e.k, s + 53) * 365 * 86400),
         CASE e.ev
           WHEN 'order_completed' THEN jsonb_build_object('revenue', round((exp(3.2 + 0.8 * cdp_sample.r(p.person_id, s + 54) + 0.6 * cdp_sample.r(e.k, s + 55)))::numeric, 2), 'currency', 'EUR')
           WHEN 'product_viewed' THEN jsonb_build_object('sku', 'sku_' || cdp_sample.ri(e.k, s + 56, 5000))
           ELSE '{}'::jsonb END
  FROM gen_persons p
  CROSS JOIN LATERAL generate_series(1, p.n_events) i
  CROSS JOIN LATERAL (SELECT p.person_id * 1024 + i AS k,
                             evnames[1 + cdp_sample.ri(p.person_id * 1024 + i, s + 57, 100)] AS ev,
                             1 + cdp_sample.ri(p.person_id * 1024 + i, s + 58, p.n_devices) AS dev) e
  JOIN gen_devices d ON d.person_id = p.person_id AND d.device_no = e.dev;
  -- shared kiosk devices: one anonymous_id seen with hundreds of users
  SELECT max(event_id) INTO n FROM events;
  INSERT INTO events
  SELECT n + row_number() OVER (ORDER BY kiosk, j),
         'kiosk-' || kiosk, 'usr_' || u.person_id, 'signed_in',
         anchor - make_interval(secs => cdp_sample.r(kiosk * 1000 + j, s + 61) * 365 * 86400), '{}'
  FROM generate_series(1, greatest(3, persons / 20000)) kiosk,
       generate_series(1, 200) j,
       LATERAL (SELECT 1 + cdp_sample.ri(kiosk * 1000 + j, s + 60, persons) AS person_id) u
  JOIN gen_persons gp ON gp.person_id = u.person_id AND gp.identified;

  ------------------------------------------------------------------ truth
  CREATE TABLE sample_truth (kind text NOT NULL, value text NOT NULL, person_id bigint,
                             PRIMARY KEY (kind, value));
  INSERT INTO sample_truth
  SELECT 'user_id', user_id, person_id FROM gen_persons WHERE identified
  UNION ALL SELECT 'email', email, person_id FROM gen_persons WHERE identified OR offline_only
  UNION ALL SELECT 'phone', e164, person_id FROM gen_persons WHERE identified OR offline_only
  UNION ALL SELECT 'anonymous_id', anonymous_id, person_id FROM gen_devices;
  INSERT INTO sample_truth
  SELECT 'cookie_id', c.cookie_id, d.person_id FROM dmp_cookies c JOIN gen_devices d ON d.anonymous_id = c.device_id;
  INSERT INTO sample_truth
  SELECT DISTINCT 'anonymous_id', anonymous_id, NULL::bigint FROM events
  WHERE anonymous_id LIKE 'kiosk-%' OR anonymous_id = '00000000-0000-0000-0000-000000000000';

  ANALYZE crm_contacts; ANALYZE dmp_cookies; ANALYZE events; ANALYZE sample_truth;
  DROP TABLE gen_persons, gen_devices;
  PERFORM set_config('search_path', saved_path, true);

  RETURN QUERY
  SELECT 'crm_contacts', (SELECT count(*) FROM crm_contacts)
  UNION ALL SELECT 'dmp_cookies', (SELECT count(*) FROM dmp_cookies)
  UNION ALL SELECT 'events', (SELECT count(*) FROM events)
  UNION ALL SELECT 'sample_truth', (SELECT count(*) FROM sample_truth);
END
$gen$;
