-- Purchase predictions: summaries, BG/NBD and Gamma-Gamma fits, predictions, CLV.
SET timezone = 'UTC';
SET jit = off;

--
-- cdp.purchase_summary on hand-made purchases (calibration ends 2025-03-31)
--
CREATE TABLE predict_tx (customer int, at timestamptz, amount float8);
INSERT INTO predict_tx VALUES
  -- 1: two purchases on the first day, a repeat day with a NULL amount, holdout days
  (1, '2025-01-01 10:00', 10), (1, '2025-01-01 18:00', 5), (1, '2025-01-15 09:00', 20),
  (1, '2025-01-15 23:59', NULL), (1, '2025-02-12 12:00', 30),
  (1, '2025-04-10 08:00', 7), (1, '2025-04-10 09:00', 8), (1, '2025-05-01 00:00', 1),
  -- 2: one purchase only
  (2, '2025-02-01 00:00', 12),
  -- 3: purchases only after calibration_end: no summary
  (3, '2025-04-01 00:00', 99), (3, '2025-04-02 00:00', 99),
  -- 4: last calibration purchase late on the calibration_end day
  (4, '2025-01-31 00:00', 40), (4, '2025-03-31 23:00', 60),
  -- 5: purchases on both sides of 2000-01-01 (negative timestamps inside)
  (5, '1999-12-31 23:00', 1), (5, '2000-01-01 01:00', 3),
  -- 6: NULL purchase times are ignored
  (6, NULL, 5), (6, '2025-03-01 00:00', 5);
SELECT customer, (cdp.purchase_summary(at, amount, '2025-03-31')).*
FROM predict_tx GROUP BY customer ORDER BY customer;
-- in days
SELECT customer, (cdp.purchase_summary(at, amount, '2025-03-31', '1 day')).*
FROM predict_tx GROUP BY customer ORDER BY customer;
-- bad arguments
SELECT cdp.purchase_summary(at, amount, '2025-03-31', '1 month') FROM predict_tx;
SELECT cdp.purchase_summary(at, amount, '2025-03-31', '-1 day') FROM predict_tx;
SELECT cdp.purchase_summary(at, amount, NULL) FROM predict_tx;
SELECT cdp.purchase_summary(at, amount, CASE WHEN customer = 1 THEN '2025-03-31'::timestamptz ELSE '2025-04-30' END)
FROM predict_tx;
SELECT cdp.purchase_summary(at, 'Infinity', '2025-03-31') FROM predict_tx;
SELECT cdp.purchase_summary('infinity', 1, '2025-03-31');

--
-- Simulated customers with known parameters (test/predict_simulate.sql):
-- BG/NBD r = 0.25, alpha = 4, a = 0.8, b = 2.5 (weeks), Gamma-Gamma p = 6,
-- q = 4, gamma = 15; 20,000 customers, 52-week calibration, 26-week holdout
--
SET client_min_messages = warning;
\set ECHO none
\i test/predict_simulate.sql
\set ECHO all
SELECT predict_sim.generate(20000, 1, 0.25, 4.0, 0.8, 2.5, 6, 4, 15) > 50000 AS generated;
RESET client_min_messages;

-- purchase_summary against plain SQL over UTC days
CREATE TABLE predict_oracle AS
WITH d AS (SELECT customer_id, (at AT TIME ZONE 'UTC')::date AS day, sum(amount) AS amt
           FROM predict_sim.purchases GROUP BY 1, 2),
     f AS (SELECT customer_id, min(day) AS first FROM d WHERE day <= date '2025-12-31' GROUP BY 1)
SELECT customer_id,
       count(*) FILTER (WHERE day > first AND day <= date '2025-12-31')::int AS x,
       (max(day) FILTER (WHERE day <= date '2025-12-31') - first) / 7.0 AS t_x,
       (date '2025-12-31' - first) / 7.0 AS t,
       coalesce(avg(amt) FILTER (WHERE day > first AND day <= date '2025-12-31'), 0) AS monetary,
       count(*) FILTER (WHERE day > date '2025-12-31')::int AS holdout_x
FROM d JOIN f USING (customer_id) GROUP BY customer_id, first;
CREATE TABLE predict_summary AS
SELECT customer_id, (cdp.purchase_summary(at, amount, '2025-12-31')).*
FROM predict_sim.purchases GROUP BY customer_id;
SELECT count(*) AS customers,
       count(*) FILTER (WHERE s.x = o.x AND abs(s.t_x - o.t_x) < 1e-12 AND abs(s.t - o.t) < 1e-12
                          AND abs(s.monetary - o.monetary) <= 1e-9 * o.monetary
                          AND s.holdout_x = o.holdout_x) AS equal,
       sum(s.x) > 10000 AS many_repeats
FROM predict_summary s FULL JOIN predict_oracle o USING (customer_id);

-- parallel workers
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
-- input order does not matter (amounts are summed in a fixed order)
SELECT count(*) AS differences FROM (
  (SELECT customer_id, (cdp.purchase_summary(at, amount, '2025-12-31')).* FROM predict_sim.purchases GROUP BY customer_id
   EXCEPT SELECT * FROM predict_summary)
  UNION ALL
  (SELECT * FROM predict_summary
   EXCEPT SELECT customer_id, (cdp.purchase_summary(at, amount, '2025-12-31')).* FROM predict_sim.purchases GROUP BY customer_id)) d;
-- partial aggregation (one group of all purchases, so that the workers
-- aggregate and the leader combines their serialized states)
EXPLAIN (COSTS OFF)
SELECT cdp.purchase_summary(at, amount, '2025-12-31') FROM predict_sim.purchases;
CREATE TABLE predict_mixed AS
SELECT cdp.purchase_summary(at, amount, '2025-12-31') AS s FROM predict_sim.purchases;
SET max_parallel_workers_per_gather = 0;
SELECT cdp.purchase_summary(at, amount, '2025-12-31') = (SELECT s FROM predict_mixed) AS parallel_equal,
       (SELECT (s).x FROM predict_mixed) AS days_after_first
FROM predict_sim.purchases;
SET max_parallel_workers_per_gather = 2;

-- BG/NBD log-likelihood in plain SQL (FHL 2005, eq. 6), as an oracle;
-- lnG(r+x) - lnG(r) and lnB(a, b+x) - lnB(a, b) as sums over k < x
CREATE TABLE predict_direct AS
SELECT c.customer_id,
       count(*) FILTER (WHERE k > 0 AND tk <= c.t_cal)::float8 AS x,
       coalesce(max(tk) FILTER (WHERE k > 0 AND tk <= c.t_cal), 0) AS t_x,
       c.t_cal AS t
FROM predict_sim.customers c JOIN predict_sim.purchases p USING (customer_id)
GROUP BY c.customer_id, c.t_cal;
CREATE FUNCTION predict_ll(r float8, alpha float8, a float8, b float8) RETURNS float8
LANGUAGE sql STABLE AS $$
  WITH xs AS MATERIALIZED (SELECT x, (SELECT coalesce(sum(ln(r + k) + ln((b + k) / (a + b + k))), 0)
                         FROM generate_series(0, x::int - 1) k) AS s
              FROM (SELECT DISTINCT x FROM predict_direct) d)
  SELECT sum(A + m + ln(exp(L1 - m) + coalesce(exp(L2 - m), 0)))
  FROM (SELECT *, greatest(L1, coalesce(L2, L1)) AS m
        FROM (SELECT xs.s + r * ln(alpha) AS A,
                     -(r + p.x) * ln(alpha + t) AS L1,
                     CASE WHEN p.x > 0 THEN ln(a) - ln(b + p.x - 1) - (r + p.x) * ln(alpha + t_x) END AS L2
              FROM predict_direct p JOIN xs USING (x)) s) s2
$$;

-- the fit recovers the true parameters (sampling error at 20,000 customers
-- is a few percent)
CREATE TABLE predict_fit AS
SELECT cdp.bgnbd_fit(x, t_x, t) AS bg FROM predict_direct;
SELECT bg->>'model' AS model, bg->>'status' AS status, bg->'customers' AS customers,
       abs((bg->>'r')::float8 / 0.25 - 1) < 0.1 AS r_ok,
       abs((bg->>'alpha')::float8 / 4.0 - 1) < 0.1 AS alpha_ok,
       abs((bg->>'a')::float8 / 0.8 - 1) < 0.1 AS a_ok,
       abs((bg->>'b')::float8 / 2.5 - 1) < 0.1 AS b_ok,
       (bg->>'iterations')::int BETWEEN 1 AND 1000 AS iterations_ok
FROM predict_fit;

-- the reported log-likelihood is the oracle's at the fitted parameters, and
-- no nearby point nor the truth is more likely: a maximum
WITH p AS (SELECT (bg->>'r')::float8 r, (bg->>'alpha')::float8 al, (bg->>'a')::float8 a,
                  (bg->>'b')::float8 b, (bg->>'log_likelihood')::float8 ll FROM predict_fit),
     o AS (SELECT *, predict_ll(r, al, a, b) AS ll_sql FROM p)
SELECT abs(ll - ll_sql) < 1e-6 * abs(ll) AS ll_matches_oracle,
       ll_sql >= predict_ll(0.25, 4.0, 0.8, 2.5) AS beats_truth,
       ll_sql > greatest(predict_ll(r * 1.01, al, a, b), predict_ll(r * 0.99, al, a, b),
                         predict_ll(r, al * 1.01, a, b), predict_ll(r, al * 0.99, a, b),
                         predict_ll(r, al, a * 1.01, b), predict_ll(r, al, a * 0.99, b),
                         predict_ll(r, al, a, b * 1.01), predict_ll(r, al, a, b * 0.99)) AS beats_neighbours
FROM o;

-- compressed input with weights gives the same fit
SELECT (SELECT cdp.bgnbd_fit(x, t_x, t, n) - 'rows' FROM (SELECT x, t_x, t, count(*)::float8 n FROM predict_direct GROUP BY 1, 2, 3) g)
     = (SELECT bg - 'rows' FROM predict_fit) AS weighted_equal;

-- parallel fit (workers serialize, the leader combines) equals the serial one
EXPLAIN (COSTS OFF) SELECT cdp.bgnbd_fit(x, t_x, t) FROM predict_direct;
SELECT cdp.bgnbd_fit(x, t_x, t) = (SELECT bg FROM predict_fit) AS parallel_equal FROM predict_direct;
CREATE TABLE predict_gg_par AS SELECT cdp.gammagamma_fit(x, monetary) AS gg FROM predict_summary;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
RESET parallel_leader_participation;
SET max_parallel_workers_per_gather = 0;
SELECT cdp.gammagamma_fit(x, monetary) = (SELECT gg FROM predict_gg_par) AS gg_parallel_equal FROM predict_summary;
RESET max_parallel_workers_per_gather;

-- Gamma-Gamma on the simulated spend (x > 0 only)
SELECT gg->>'model' AS model, gg->>'status' AS status,
       (gg->>'customers')::int = (SELECT count(*) FROM predict_summary WHERE x > 0) AS repeat_buyers_only,
       abs((gg->>'p')::float8 / 6 - 1) < 0.1 AS p_ok,
       abs((gg->>'q')::float8 / 4 - 1) < 0.1 AS q_ok,
       abs((gg->>'gamma')::float8 / 15 - 1) < 0.1 AS gamma_ok
FROM predict_gg_par;

-- the true model predicts the holdout: 26 weeks of repeat purchases
SELECT sum(cdp.expected_purchases('{"model": "bgnbd", "r": 0.25, "alpha": 4, "a": 0.8, "b": 2.5}', 26, x, t_x, t))
       / sum(holdout_x) BETWEEN 0.95 AND 1.05 AS within_5_percent
FROM predict_summary;

--
-- Predictions against values computed independently with mpmath (40 digits,
-- textbook formula with hyp2f1), relative error below 1e-12
--
SELECT m, h, x, t_x, t, abs(cdp.expected_purchases(m::jsonb, h, x, t_x, t) / expected - 1) < 1e-12 AS ok
FROM (VALUES
  ('{"model": "bgnbd", "r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}', 39, 2, 30.43, 38.86, 1.2260281747671445),
  ('{"model": "bgnbd", "r": 0.243, "alpha": 4.414, "a": 1.0000001, "b": 2.426}', 39, 2, 30.43, 38.86, 1.1021367314169068),
  ('{"model": "bgnbd", "r": 0.243, "alpha": 4.414, "a": 1.001, "b": 2.426}', 39, 5, 30.43, 38.86, 2.4422541124431692),
  ('{"model": "bgnbd", "r": 2.5, "alpha": 0.5, "a": 3.0, "b": 0.7}', 5000, 0, 0, 0, 1.349999978743571),
  ('{"model": "bgnbd", "r": 0.5, "alpha": 10, "a": 0.2, "b": 0.3}', 1e5, 10, 20, 30, 4664.4963926913993),
  ('{"model": "bgnbd", "r": 0.25, "alpha": 4, "a": 0.8, "b": 2.5}', 1, 100, 50, 52, 1.3654245140008322),
  ('{"model": "bgnbd", "r": 5, "alpha": 1, "a": 50, "b": 200}', 520, 3, 10, 12, 2.6483066931388791),
  -- a, b huge (homogeneous dropout), x large with b >> a, a near 1 both sides, long horizon
  ('{"model": "bgnbd", "r": 0.2406, "alpha": 16.02, "a": 1186507.9, "b": 1036118.1}', 13, 5, 27.57, 28.71, 0.42991368245266316),
  ('{"model": "bgnbd", "r": 0.5, "alpha": 10, "a": 0.5, "b": 10000}', 26, 500, 50, 52, 0.3265772322891775),
  ('{"model": "bgnbd", "r": 0.5, "alpha": 10, "a": 0.5, "b": 10000}', 26, 50, 50, 52, 21.160540523941468),
  ('{"model": "bgnbd", "r": 0.243, "alpha": 4.414, "a": 0.96, "b": 2.426}', 39, 2, 30.43, 38.86, 1.1243636309670967),
  ('{"model": "bgnbd", "r": 0.243, "alpha": 4.414, "a": 1.04, "b": 2.426}', 39, 2, 30.43, 38.86, 1.0806536390417166),
  ('{"model": "bgnbd", "r": 0.3, "alpha": 2, "a": 40, "b": 5}', 1000, 20, 30, 40, 0.0039337637041908447),
  ('{"model": "bgnbd", "r": 3, "alpha": 2, "a": 100000, "b": 100}', 52, 0, 0, 0, 1.0009490068729934),
  ('{"model": "bgnbd", "r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}', 5000, 2, 30.43, 38.86, 19.441629834623581)
) v(m, h, x, t_x, t, expected);
SELECT abs(cdp.expected_purchases('{"model": "bgnbd", "r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}', 78) / 1.8605190579427686 - 1) < 1e-12 AS population_ok,
       cdp.expected_purchases('{"model": "bgnbd", "r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}', 0) AS at_zero,
       cdp.expected_purchases('{"model": "bgnbd", "r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}', 10)
       = cdp.expected_purchases('{"model": "bgnbd", "r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}', 10, 0, 0, 0) AS population_is_new_customer;

-- P(alive), expected spend and CLV against their formulas in plain SQL
WITH m AS (SELECT '{"model": "bgnbd", "r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}'::jsonb bg,
                  '{"model": "gammagamma", "p": 6.25, "q": 3.74, "gamma": 15.44}'::jsonb gg)
SELECT x, t_x, t,
       abs(cdp.p_alive(bg, x, t_x, t) - CASE WHEN x = 0 THEN 1
           ELSE 1 / (1 + 0.793 / (2.426 + x - 1) * power((4.414 + t) / (4.414 + t_x), 0.243 + x)) END) < 1e-14 AS p_alive_ok,
       abs(cdp.expected_spend(gg, x, monetary) - CASE WHEN x = 0 THEN 6.25 * 15.44 / (3.74 - 1)
           ELSE 6.25 * (15.44 + x * monetary) / (6.25 * x + 3.74 - 1) END) < 1e-12 AS spend_ok,
       round(cdp.p_alive(bg, x, t_x, t)::numeric, 6) AS p_alive
FROM m, (VALUES (0, 0, 38.86, 0), (1, 1.71, 38.86, 11.77), (2, 30.43, 38.86, 22.35),
                (7, 10, 38.86, 40), (500, 38, 38.86, 1)) v(x, t_x, t, monetary);
WITH m AS (SELECT '{"model": "bgnbd", "r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}'::jsonb bg,
                  '{"model": "gammagamma", "p": 6.25, "q": 3.74, "gamma": 15.44}'::jsonb gg)
SELECT abs(cdp.clv(bg, gg, 2, 30.43, 38.86, 22.35) / 36.289211125599217 - 1) < 1e-12 AS clv_default_ok,
       abs(cdp.clv(bg, gg, 0, 0, 38.86, 0) / 8.3690043589204606 - 1) < 1e-12 AS clv_new_ok,
       abs(cdp.clv(bg, gg, 10, 30, 38.86, 50, 24, 0.02, 1) / 110.64072832953206 - 1) < 1e-12 AS clv_weekly_ok,
       cdp.clv(bg, gg, 2, 30.43, 38.86, 22.35, 0) AS no_horizon,
       cdp.clv(bg, gg, 500, 10, 38.86, 22.35) < 1e-6 AS gone_customer_worthless
FROM m;

--
-- Errors
--
SELECT cdp.bgnbd_fit(x, t_x, t) FROM (VALUES (1, 0, 5)) v(x, t_x, t);
SELECT cdp.bgnbd_fit(x, t_x, t) FROM (VALUES (1, 6, 5)) v(x, t_x, t);
SELECT cdp.bgnbd_fit(x, t_x, t) FROM (VALUES (-1, 0, 5)) v(x, t_x, t);
SELECT cdp.bgnbd_fit(x, t_x, t) FROM (VALUES (1.5, 2, 5)) v(x, t_x, t);
SELECT cdp.bgnbd_fit(x, t_x, t) FROM (VALUES (0, 2, 5)) v(x, t_x, t);
SELECT cdp.bgnbd_fit(x, t_x, t) FROM (VALUES (1, 2, 'NaN'::float8)) v(x, t_x, t);
SELECT cdp.bgnbd_fit(x, t_x, t, w) FROM (VALUES (1, 2, 5, -1)) v(x, t_x, t, w);
SELECT cdp.gammagamma_fit(x, m) FROM (VALUES (2, 0)) v(x, m);
SELECT cdp.gammagamma_fit(x, m) FROM (VALUES (2.5, 10)) v(x, m);
-- no maximum: no repeat buyers, one customer, identical spends, no dropout
SELECT cdp.bgnbd_fit(0, 0, t) FROM generate_series(1, 10) t;
SET client_min_messages = warning;
SELECT predict_sim.generate(3000, 2, 0.5, 4.0, 1, 100000, 6, 4, 15) > 0 AS generated;
RESET client_min_messages;
SELECT cdp.bgnbd_fit(x, t_x, t)
FROM (SELECT customer_id, (cdp.purchase_summary(at, amount, '2025-12-31')).* FROM predict_sim.purchases GROUP BY 1) s;
SELECT cdp.bgnbd_fit(1, 1, 10);
SELECT cdp.gammagamma_fit(x, x) FROM generate_series(1, 5) x;
-- NULL rows are skipped; nothing to fit gives NULL
SELECT cdp.bgnbd_fit(x, t_x, t) IS NULL AS empty, cdp.gammagamma_fit(x, t) IS NULL AS gg_empty
FROM (VALUES (NULL::float8, 1::float8, 2::float8), (0, 0, NULL)) v(x, t_x, t);
SELECT cdp.gammagamma_fit(0, 5) IS NULL AS no_repeat_buyers;
-- bad models and arguments
SELECT cdp.p_alive('{"model": "gammagamma", "p": 1, "q": 2, "gamma": 3}', 1, 1, 2);
SELECT cdp.p_alive('{"model": "bgnbd", "r": 1, "alpha": 2, "a": -1, "b": 1}', 1, 1, 2);
SELECT cdp.p_alive('{"model": "bgnbd", "r": 1, "alpha": 2, "a": 1}', 1, 1, 2);
SELECT cdp.p_alive('[1, 2]', 1, 1, 2);
SELECT cdp.p_alive('{"model": "bgnbd", "r": 1, "alpha": 2, "a": 1, "b": 1}', 1, 3, 2);
SELECT cdp.expected_purchases('{"model": "bgnbd", "r": 1, "alpha": 2, "a": 1, "b": 1}', -1);
SELECT cdp.expected_purchases('{"model": "bgnbd", "r": 1, "alpha": 2, "a": 1, "b": 1}', 'Infinity');
SELECT cdp.expected_spend('{"model": "gammagamma", "p": 1, "q": 0.5, "gamma": 3}', 0, 0);
SELECT cdp.expected_spend('{"model": "gammagamma", "p": 1, "q": 2, "gamma": 3}', 1, -5);
SELECT cdp.clv('{"model": "bgnbd", "r": 1, "alpha": 2, "a": 1, "b": 1}', '{"model": "gammagamma", "p": 1, "q": 2, "gamma": 3}', 1, 1, 2, 10, -1);
SELECT cdp.clv('{"model": "bgnbd", "r": 1, "alpha": 2, "a": 1, "b": 1}', '{"model": "gammagamma", "p": 1, "q": 2, "gamma": 3}', 1, 1, 2, 10, 12, -1);
SELECT cdp.clv('{"model": "bgnbd", "r": 1, "alpha": 2, "a": 1, "b": 1}', '{"model": "gammagamma", "p": 1, "q": 2, "gamma": 3}', 1, 1, 2, 10, 12, 0.01, 0);
SELECT cdp.clv('{"model": "gammagamma", "p": 1, "q": 2, "gamma": 3}', '{"model": "bgnbd", "r": 1, "alpha": 2, "a": 1, "b": 1}', 1, 1, 2, 10);

DROP FUNCTION predict_ll(float8, float8, float8, float8);
DROP TABLE predict_tx, predict_oracle, predict_summary, predict_direct, predict_fit, predict_gg_par, predict_mixed;
SET client_min_messages = warning;
DROP SCHEMA predict_sim CASCADE;
RESET client_min_messages;
