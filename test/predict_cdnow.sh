#!/usr/bin/env bash
# CDNOW: cdp.purchase_summary, cdp.bgnbd_fit, cdp.gammagamma_fit and the
# predictions against the published results (Fader, Hardie & Lee 2005; the
# lifetimes package's summaries).  The data live beside the clone, in
# ../shared/data/cdnow (see its SOURCE.md); without them every check is
# reported as skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA="${CDP_CDNOW_DIR:-$(pwd)/../shared/data/cdnow}"

checks=(
  "CDNOW summaries: 2,357 customers, sum x = 2,457, 946 with x > 0, 1,882 holdout repeats"
  "CDNOW summaries equal lifetimes' cdnow_customers_summary.csv (x exactly, t_x and T within 0.005 weeks)"
  "CDNOW monetary equals the mean repeat spend zbar of cdnow_customers_summary_with_transactions.csv (within 0.005)"
  "CDNOW BG/NBD: r = 0.243, alpha = 4.414, a = 0.793, b = 2.426 within 1%, log-likelihood -9582.4 within 0.1"
  "CDNOW BG/NBD fit with parallel workers equals the serial fit"
  "CDNOW Gamma-Gamma: p = 6.25, q = 3.74, gamma = 15.44 within 1%"
  "CDNOW expected purchases of a new customer by week 78 = 1.858 within 0.001"
  "CDNOW conditional expectation x = 2, t_x = 30.43, T = 38.86 over 39 weeks = 1.226 within 0.001"
)

if [ ! -f "$DATA/CDNOW_sample.txt" ] || [ ! -f "$DATA/cdnow_customers_summary.csv" ] ||
   [ ! -f "$DATA/cdnow_customers_summary_with_transactions.csv" ]; then
  for c in "${checks[@]}"; do echo "ok - $c # SKIP no CDNOW data"; done
  exit 0
fi

# pg_regress leaves the extension installed in contrib_regression
export PGDATABASE=${CDP_TEST_DB:-contrib_regression}
PSQL=(psql -X -q -At -v ON_ERROR_STOP=1)

setup=$("${PSQL[@]}" 2>&1 <<EOF
SET client_min_messages = warning;
SET timezone = 'UTC';
DROP SCHEMA IF EXISTS predict_cdnow CASCADE;
CREATE SCHEMA predict_cdnow;
SET search_path = predict_cdnow, public;
CREATE TABLE raw (line text);
\copy raw FROM '$DATA/CDNOW_sample.txt'
CREATE TABLE tx AS
SELECT f[2]::int AS id, to_date(f[3], 'YYYYMMDD')::timestamptz AS at, f[5]::float8 AS dollars
FROM (SELECT regexp_split_to_array(btrim(line, E' \r\t'), '\s+') AS f FROM raw) s;
CREATE TABLE ref (id int, x int, t_x float8, t float8);
\copy ref FROM '$DATA/cdnow_customers_summary.csv' CSV HEADER
CREATE TABLE ref_m (id int, x int, t_x float8, t float8, zbar float8);
\copy ref_m FROM '$DATA/cdnow_customers_summary_with_transactions.csv' CSV HEADER
CREATE TABLE summary AS
SELECT id, (cdp.purchase_summary(at, dollars, '1997-09-30')).* FROM tx GROUP BY id;
CREATE TABLE model AS
SELECT (SELECT cdp.bgnbd_fit(x, t_x, t) FROM summary) AS bg,
       (SELECT cdp.gammagamma_fit(x, monetary) FROM summary) AS gg;
EOF
)
if [ $? -ne 0 ]; then
  echo "$setup" | sed 's/^/# /'
  for c in "${checks[@]}"; do echo "not ok - $c"; done
  exit 1
fi

# check N SQL: the SQL prints t when the check passes
check() {
  local out
  out=$("${PSQL[@]}" -c "SET search_path = predict_cdnow, public" -c "SET timezone = 'UTC'" -c "$2" 2>&1)
  if [ "$out" = t ]; then
    echo "ok - ${checks[$1]}"
  else
    echo "not ok - ${checks[$1]}"
    echo "$out" | sed 's/^/# /'
    "${PSQL[@]}" -c "SELECT 'bg: ' || bg || E'\ngg: ' || gg FROM predict_cdnow.model" | sed 's/^/# /'
  fi
}

check 0 "SELECT count(*) = 2357 AND sum(x) = 2457 AND count(*) FILTER (WHERE x > 0) = 946
                AND sum(holdout_x) = 1882 FROM summary"
check 1 "SELECT count(*) = 2357 AND bool_and(s.x = r.x AND abs(s.t_x - r.t_x) <= 0.005 AND abs(s.t - r.t) <= 0.005)
         FROM summary s JOIN ref r USING (id)"
check 2 "SELECT count(*) = 2357 AND bool_and(abs(s.monetary - r.zbar) <= 0.005 + 1e-9)
         FROM summary s JOIN ref_m r USING (id)"
check 3 "SELECT abs((bg->>'r')::float8 / 0.243 - 1) <= 0.01 AND abs((bg->>'alpha')::float8 / 4.414 - 1) <= 0.01
            AND abs((bg->>'a')::float8 / 0.793 - 1) <= 0.01 AND abs((bg->>'b')::float8 / 2.426 - 1) <= 0.01
            AND abs((bg->>'log_likelihood')::float8 + 9582.4) <= 0.1 AND (bg->>'customers')::int = 2357
         FROM model"
check 4 "SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
         SET max_parallel_workers_per_gather = 2; SET parallel_leader_participation = off;
         SELECT cdp.bgnbd_fit(x, t_x, t) = (SELECT bg FROM model) FROM summary"
check 5 "SELECT abs((gg->>'p')::float8 / 6.25 - 1) <= 0.01 AND abs((gg->>'q')::float8 / 3.74 - 1) <= 0.01
            AND abs((gg->>'gamma')::float8 / 15.44 - 1) <= 0.01 AND (gg->>'customers')::int = 946
         FROM model"
check 6 "SELECT abs(cdp.expected_purchases(bg, 78) - 1.858) <= 0.001 FROM model"
check 7 "SELECT abs(cdp.expected_purchases(bg, 39, 2, 30.43, 38.86) - 1.226) <= 0.001 FROM model"

"${PSQL[@]}" -c "SET client_min_messages = warning" -c "DROP SCHEMA predict_cdnow CASCADE" >/dev/null
