#!/usr/bin/env bash
# normalize_email against an independent SQL/regex implementation on random
# strings; properties of normalize_phone (well-formed E.164, idempotent) and
# of hash_identifier on random input.  TAP-style output.
set -uo pipefail
DB=cdp_normalize_oracle
psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null || exit 1
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null' EXIT

check() {  # check "description" "SQL returning one boolean"
  local got
  got=$(psql -X -q -At -v ON_ERROR_STOP=1 -d $DB -c "$2" 2>&1)
  if [ "$got" = t ]; then echo "ok - $1"; else echo "not ok - $1"; echo "# $got"; fi
}

psql -X -q -v ON_ERROR_STOP=1 -d $DB >/dev/null <<'SQL' || { echo "not ok - set-up"; exit 1; }
CREATE EXTENSION cdp;
-- the oracle: the documented rules, written as regular expressions
CREATE FUNCTION oracle_email(e text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN t ~ '^[a-z0-9!#$%&''*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&''*+/=?^_`{|}~-]+)*@([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'
               AND length(split_part(t, '@', 1)) <= 64
               AND length(split_part(t, '@', 2)) BETWEEN 3 AND 253
               AND length(t) <= 320
               AND split_part(t, '@', 2) !~ '(^|\.)[0-9]+$'
              THEN t END
  FROM (SELECT translate(regexp_replace(e, '^[ \t\n\r\f\v]+|[ \t\n\r\f\v]+$', '', 'g'),
                         'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') AS t) s
$$;
-- random strings over an alphabet that exercises every rule
CREATE TABLE r AS
SELECT i, (SELECT string_agg(substr(E'aZ9.@-+_ \t#(x', 1 + (abs(hashint8extended(i * 64 + j, 7)) % 14)::int, 1), '')
           FROM generate_series(1, 1 + (abs(hashint8extended(i, 3)) % 24)::int) j) AS s
FROM generate_series(1, 200000) i;
-- and near-valid addresses built around one '@'
INSERT INTO r
SELECT 1000000 + i, a || '@' || b
FROM generate_series(1, 100000) i,
     LATERAL (SELECT (SELECT string_agg(substr('abAB.-+_9', 1 + (abs(hashint8extended(i * 64 + j, 11)) % 9)::int, 1), '')
                      FROM generate_series(1, 1 + (abs(hashint8extended(i, 12)) % 8)::int) j) AS a,
                     (SELECT string_agg(substr('abc.-9Z', 1 + (abs(hashint8extended(i * 64 + j, 13)) % 7)::int, 1), '')
                      FROM generate_series(1, 1 + (abs(hashint8extended(i, 14)) % 12)::int) j) AS b) x;
SQL

check "normalize_email equals the regex oracle on 300,000 random strings" \
  "SELECT count(*) = 0 FROM r WHERE cdp.normalize_email(s) IS DISTINCT FROM oracle_email(s)"
check "the random strings include thousands of valid addresses" \
  "SELECT count(*) > 5000 FROM r WHERE oracle_email(s) IS NOT NULL"
check "normalize_email is idempotent" \
  "SELECT count(*) = 0 FROM r WHERE cdp.normalize_email(cdp.normalize_email(s)) IS DISTINCT FROM cdp.normalize_email(s)"
check "alias folding is idempotent and only ever shortens" \
  "SELECT count(*) = 0 FROM (SELECT cdp.normalize_email(replace(s, '@b', '@gmail.com'), true) AS f, s FROM r) x
   WHERE f IS NOT NULL AND (cdp.normalize_email(f, true) IS DISTINCT FROM f OR length(f) > length(s) + 10)"
check "normalize_phone output is always well-formed E.164 and idempotent" \
  "SELECT count(*) = 0 FROM (SELECT cdp.normalize_phone(translate(s, 'aZx_', '1234'), '31') AS p FROM r) x
   WHERE p IS NOT NULL AND (p !~ '^\+[1-9][0-9]{6,14}$' OR cdp.normalize_phone(p) IS DISTINCT FROM p)"
check "normalize_phone keeps random valid international numbers as they are, whatever the separators" \
  "SELECT count(*) = 100000 AND count(*) FILTER (WHERE cdp.normalize_phone(regexp_replace(e, '([0-9]{3})', '\\1 -', 'g')) IS NOT DISTINCT FROM e) = 100000
   FROM (SELECT '+' || CASE WHEN i % 7 = 6
                            THEN '1' || (2 + i % 8)::text || lpad((i % 100)::text, 2, '0')
                                     || (2 + i / 8 % 8)::text || lpad(((i::bigint * 7919) % 1000000)::text, 6, '0')
                            ELSE (ARRAY['31','49','44','33','39','358'])[1 + i % 7]
                                 || (2 + i % 8)::text || lpad(((i::bigint * 7919) % 100000000)::text, 8, '0') END AS e
         FROM generate_series(1, 100000) i) x"
check "hash_identifier equals the built-in sha256 on random strings" \
  "SELECT count(*) = 0 FROM r WHERE cdp.hash_identifier(s) <> encode(sha256(convert_to(s, 'UTF8')), 'hex')"
