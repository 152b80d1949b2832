#!/usr/bin/env bash
# cdp.activity binary I/O: a binary COPY round trip, and receive fed with
# truncated and altered bytes must fail cleanly (or yield a value that
# passes validation), never crash the server.
set -uo pipefail
export PGDATABASE=${CDP_TEST_DB:-contrib_regression}
PSQL=(psql -X -q -At -v ON_ERROR_STOP=1)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

"${PSQL[@]}" <<'SQL' || { echo "not ok - set-up"; exit 1; }
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS act_bin CASCADE;
CREATE SCHEMA act_bin;
CREATE TABLE act_bin.src AS
  SELECT anonymous_id AS pid, cdp.activity_agg(event, ts, (properties->>'revenue')::float8) AS a
  FROM public.events WHERE anonymous_id IS NOT NULL GROUP BY 1;
INSERT INTO act_bin.src VALUES ('empty', '{}'),
  ('trimmed', cdp.activity_trim((SELECT cdp.activity_agg(event, ts, 1) FROM public.events WHERE anonymous_id LIKE 'kiosk-%'), '2025-06-01Z')),
  ('unicode', (SELECT cdp.activity_agg('Ünïcode ✓', '2025-01-01Z', 2.5))),
  -- small but with every feature: sums, several days, a folded part
  ('small', cdp.activity_trim((SELECT cdp.activity_agg(e, t, v) FROM (VALUES
     ('ab', '2025-01-01 10:00Z'::timestamptz, 1.5::float8), ('ab', '2025-02-01 10:00Z', NULL),
     ('ab', '2025-03-01 10:00Z', 2), ('c', '2025-02-01 11:00Z', NULL),
     ('signed_in', '2025-02-03 09:00Z', NULL), ('signed_in', '2025-02-05 09:00Z', NULL)) x(e, t, v)), '2025-01-15Z'));
CREATE TABLE act_bin.dst (LIKE act_bin.src);
CREATE TABLE act_bin.one (a cdp.activity);
SQL

"${PSQL[@]}" -c "\\copy act_bin.src TO '$dir/all.bin' WITH (FORMAT binary)" \
             -c "\\copy act_bin.dst FROM '$dir/all.bin' WITH (FORMAT binary)"
n=$("${PSQL[@]}" -c "SELECT count(*) FROM act_bin.src s FULL JOIN act_bin.dst d USING (pid)
                      WHERE s.a::text IS DISTINCT FROM d.a::text")
total=$("${PSQL[@]}" -c "SELECT count(*) FROM act_bin.dst")
if [ "$n" = 0 ] && [ "$total" -gt 100 ]; then echo "ok - binary COPY round trip of $total summaries"
else echo "not ok - binary COPY round trip ($n differ of $total)"; fi

# a binary COPY file holding one value, from its hex
copyfile() {  # copyfile HEX FILE
  perl -e '
    my $v = pack("H*", $ARGV[0]);
    print "PGCOPY\n\377\r\n\0", pack("N", 0), pack("N", 0);
    print pack("n", 1), pack("N", length $v), $v, pack("n", 0xffff);' "$1" > "$2"
}

hex=$("${PSQL[@]}" -c "SELECT encode(cdp.activity_send(a), 'hex') FROM act_bin.src WHERE pid = 'small'")
copyfile "$hex" "$dir/ok.bin"
if "${PSQL[@]}" -c "\\copy act_bin.one FROM '$dir/ok.bin' WITH (FORMAT binary)" 2>/dev/null; then
  echo "ok - a hand-built binary COPY file is accepted"
else echo "not ok - a hand-built binary COPY file is accepted"; fi

# every truncation, and every byte altered in three ways (one perl run
# writes all the files and the psql script)
script="$dir/fuzz.sql"
perl -e '
  my ($hex, $dir) = @ARGV;
  my $v = pack("H*", $hex);
  sub out { my ($name, $val) = @_;
    open(my $f, ">", "$dir/$name") or die; binmode $f;
    print $f "PGCOPY\n\377\r\n\0", pack("N", 0), pack("N", 0),
             pack("n", 1), pack("N", length $val), $val, pack("n", 0xffff);
    close $f;
    print "\\copy act_bin.one FROM \x27$dir/$name\x27 WITH (FORMAT binary)\n"; }
  for my $i (0 .. length($v) - 1) {
    out("t$i.bin", substr($v, 0, $i));
    my $b = ord(substr($v, $i, 1));
    for my $x ($b ^ 1, $b ^ 128, 255) {
      next if $x == $b;
      my $m = $v; substr($m, $i, 1) = chr($x);
      out("m${i}_$x.bin", $m);
    }
  }
  out("trail.bin", $v . "\0");' "$hex" "$dir" > "$script"
"${PSQL[@]}" -c "TRUNCATE act_bin.one"
psql -X -q -At -f "$script" > "$dir/fuzz.out" 2>&1
tries=$(grep -c copy "$script")
errors=$(grep -c 'ERROR' "$dir/fuzz.out")
clean=$(grep -cE 'ERROR:  invalid (binary )?cdp.activity value' "$dir/fuzz.out")
other=$(grep 'ERROR' "$dir/fuzz.out" | grep -vE 'invalid (binary )?cdp.activity value|out of range for cdp.activity|invalid byte sequence|cdp.activity count out of range' | head -3)
if "${PSQL[@]}" -c "SELECT 1" >/dev/null 2>&1 && ! grep -qiE 'server closed|terminated|crash' "$dir/fuzz.out"; then
  echo "ok - $tries truncated or altered values: server still up"
else echo "not ok - server survived altered binary input"; fi
if [ "$clean" -gt 0 ] && [ -z "$other" ]; then
  echo "ok - $errors of them rejected, $clean as invalid cdp.activity values"
else echo "not ok - altered binary input rejected with clear errors"; echo "$other" | sed 's/^/# /'; fi
# what got through is valid: it survives the text round trip (input validates)
bad=$("${PSQL[@]}" -c "SELECT count(*) FROM act_bin.one WHERE a::text::cdp.activity::text <> a::text" 2>&1)
acc=$("${PSQL[@]}" -c "SELECT count(*) FROM act_bin.one")
if [ "$bad" = 0 ]; then echo "ok - the $acc altered values that were accepted are valid summaries"
else echo "not ok - accepted altered values are valid ($bad)"; fi
if tail -3 "$dir/fuzz.out" | grep -q "trailing data"; then
  echo "ok - trailing bytes are rejected"
else echo "not ok - trailing bytes are rejected"; fi

# Stored bytes altered behind the type's back (a binary-coercible cast
# stands in for a damaged page): every accessor must fail cleanly or
# answer, never crash or read outside the value.
res=$("${PSQL[@]}" 2>&1 <<'SQL'
SET client_min_messages = warning;
CREATE CAST (cdp.activity AS bytea) WITHOUT FUNCTION;
CREATE CAST (bytea AS cdp.activity) WITHOUT FUNCTION;
CREATE TABLE act_bin.mut AS
  WITH raw AS (SELECT a::bytea AS b FROM act_bin.src WHERE pid IN ('small', 'unicode'))
  SELECT substr(b, 1, i) AS m FROM raw, generate_series(0, length(b) - 1) i
  UNION ALL
  SELECT set_byte(b, i, x) FROM raw, generate_series(0, length(b) - 1) i,
         LATERAL (VALUES (get_byte(b, i) # 1), (get_byte(b, i) # 128), (255), (0)) v(x)
  WHERE x <> get_byte(b, i);
DO $$
DECLARE
  r record;
  x cdp.activity;
  ok int := 0;
  clean int := 0;
  other text := '';
BEGIN
  FOR r IN SELECT m FROM act_bin.mut LOOP
    x := r.m::cdp.activity;
    BEGIN
      PERFORM x::text, cdp.event_count(x, 'ab'), cdp.event_count(x, 'ab', '2025-01-01Z', '2025-02-15Z'),
              cdp.event_sum(x, 'ab', '2025-02-01Z'), cdp.did(x, 'ab', 1, '30 days', '2025-03-02Z'),
              cdp.did_not(x, 'c', 1, NULL, '2025-03-02Z'), cdp.first_seen(x), cdp.last_seen(x, 'c'),
              cdp.event_count(x, 'signed_in', '2025-02-04Z'), cdp.did(x, 'signed_in', 2, '3 days', '2025-02-06Z'),
              cdp.active_days(x), cdp.active_days(x, 'ab', '2025-02-01Z'),
              (SELECT count(*) FROM cdp.events(x)), cdp.activity_merge(x, x)::text,
              cdp.activity_trim(x, '2025-02-10Z')::text, cdp.activity_send(x);
      ok := ok + 1;
    EXCEPTION
      WHEN data_corrupted OR invalid_parameter_value OR numeric_value_out_of_range
        OR datetime_field_overflow OR program_limit_exceeded THEN
        clean := clean + 1;
      WHEN OTHERS THEN
        other := other || SQLSTATE || ' ' || SQLERRM || '; ';
    END;
  END LOOP;
  RAISE WARNING 'result % % %', ok, clean, other;
END $$;
DROP CAST (cdp.activity AS bytea);
DROP CAST (bytea AS cdp.activity);
SQL
)
if "${PSQL[@]}" -c "SELECT 1" >/dev/null 2>&1 && echo "$res" | grep -q 'result'; then
  echo "ok - stored bytes truncated or altered: server still up ($(echo "$res" | sed -n 's/.*result \([0-9]*\) \([0-9]*\).*/\1 answered, \2 rejected/p'))"
else echo "not ok - server survived altered stored bytes"; echo "$res" | head -5 | sed 's/^/# /'; fi
if echo "$res" | grep -qE 'result [0-9]+ [1-9][0-9]* *$'; then
  echo "ok - altered stored bytes fail with data errors, nothing else"
else echo "not ok - altered stored bytes fail with data errors"; echo "$res" | grep result | cut -c1-600 | sed 's/^/# /'; fi

"${PSQL[@]}" -c "DROP CAST IF EXISTS (cdp.activity AS bytea)" -c "DROP CAST IF EXISTS (bytea AS cdp.activity)" >/dev/null 2>&1
"${PSQL[@]}" -c "DROP SCHEMA act_bin CASCADE" >/dev/null 2>&1
exit 0
