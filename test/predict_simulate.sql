-- Simulated customers with known BG/NBD and Gamma-Gamma parameters, in
-- plain SQL (independent of the C code under test).  Every random number
-- is a hash of (row, salt, seed), so the data do not depend on plan order
-- or parallelism.
--
--   \i test/predict_simulate.sql
--   SELECT predict_sim.generate(customers, seed, r, alpha, a, b, p, q, gamma);
--
-- creates predict_sim.customers (true lambda, p, nu per customer) and
-- predict_sim.purchases (customer_id, k, weeks since the first purchase,
-- at, amount): first purchases on one of 84 days from 2025-01-01, then the
-- BG/NBD process (exponential gaps at rate lambda per week, death with
-- probability p after each repeat purchase) up to 2026-07-01.  The
-- calibration period ends on 2025-12-31 (day 364), so T = (364 - d0) / 7
-- weeks.

CREATE SCHEMA IF NOT EXISTS predict_sim;

-- uniform (0, 1) from a row key and a salt
CREATE OR REPLACE FUNCTION predict_sim.u(i bigint, salt bigint)
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (((hashint8extended(i, salt) >> 11) & 9007199254740991)::float8 + 0.5) / 9007199254740992.0 $$;

-- Gamma(shape, 1): a sum of exponentials for a small whole shape, else
-- Marsaglia & Tsang (2000) (shape < 1 via Gamma(shape + 1) U^(1/shape))
CREATE OR REPLACE FUNCTION predict_sim.rgamma(shape float8, i bigint, salt bigint)
RETURNS float8 LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  d float8 := CASE WHEN shape < 1 THEN shape + 1 ELSE shape END - 1.0 / 3;
  c float8 := 1 / sqrt(9 * d);
  z float8;
  v float8;
  g float8 := 0;
BEGIN
  IF shape = floor(shape) AND shape <= 8 THEN
    FOR k IN 1..shape::int LOOP
      g := g - ln(predict_sim.u(i, salt * 100 + k));
    END LOOP;
    RETURN g;
  END IF;
  FOR k IN 0..31 LOOP
    z := sqrt(-2 * ln(predict_sim.u(i, salt * 100 + 3 * k))) * cos(2 * pi() * predict_sim.u(i, salt * 100 + 3 * k + 1));
    v := (1 + c * z) ^ 3;
    IF v > 0 AND ln(predict_sim.u(i, salt * 100 + 3 * k + 2)) < z * z / 2 + d - d * v + d * ln(v) THEN
      RETURN d * v * CASE WHEN shape < 1 THEN predict_sim.u(i, salt * 100 + 99) ^ (1 / shape) ELSE 1 END;
    END IF;
  END LOOP;
  RAISE EXCEPTION 'no Gamma candidate accepted for row %', i;
END
$$;

CREATE OR REPLACE FUNCTION predict_sim.generate(customers int, seed int,
                                                r float8, alpha float8, a float8, b float8,
                                                p float8, q float8, gamma float8)
RETURNS bigint LANGUAGE plpgsql SET timezone = 'UTC' AS $$
DECLARE
  s bigint := seed::bigint * 10;
  n bigint;
BEGIN
  DROP TABLE IF EXISTS predict_sim.customers, predict_sim.purchases;
  CREATE TABLE predict_sim.customers AS
  SELECT i AS customer_id, lam, pd, d0, (364 - d0) / 7.0 AS t_cal, (546 - d0) / 7.0 AS t_end,
         -- death after the J-th repeat purchase, J >= 1 geometric
         1 + floor(ln(predict_sim.u(i, s + 6)) / ln(1 - least(pd, 1 - 1e-15))) AS j,
         nu
  FROM (SELECT i,
               predict_sim.rgamma(r, i, s + 1) / alpha AS lam,
               g1 / (g1 + predict_sim.rgamma(b, i, s + 3)) AS pd,
               floor(84 * predict_sim.u(i, s + 5))::int AS d0,
               predict_sim.rgamma(q, i, s + 4) / gamma AS nu
        FROM (SELECT i, predict_sim.rgamma(a, i, s + 2) AS g1
              FROM generate_series(1, customers::bigint) i) g) c;

  CREATE TABLE predict_sim.purchases AS
  SELECT customer_id, k, tk,
         timestamptz '2025-01-01 00:00:00+00' + make_interval(days => d0) + tk * interval '7 days' AS at,
         greatest(0.01, round((predict_sim.rgamma(p, customer_id * 8192 + k, s + 7) / nu)::numeric, 2))::float8 AS amount
  FROM (SELECT c.customer_id, 0 AS k, 0::float8 AS tk, c.d0, c.nu FROM predict_sim.customers c
        UNION ALL
        SELECT customer_id, k, tk, d0, nu
        FROM (SELECT c.customer_id, k, c.d0, c.nu, c.t_end,
                     sum(-ln(predict_sim.u(c.customer_id * 8192 + k, s + 8)) / c.lam)
                       OVER (PARTITION BY c.customer_id ORDER BY k) AS tk
              FROM predict_sim.customers c,
                   generate_series(1, least(c.j, ceil(c.lam * c.t_end + 6 * sqrt(c.lam * c.t_end) + 10), 8000)::int) k) g
        WHERE tk <= t_end) t;
  GET DIAGNOSTICS n = ROW_COUNT;
  ANALYZE predict_sim.customers;
  ANALYZE predict_sim.purchases;
  RETURN n;
END
$$;
