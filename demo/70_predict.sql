-- Purchase predictions: BG/NBD, Gamma-Gamma, CLV, and RFM next to a predictive segment
-- The models describe people, so they need each person's whole order
-- history.  Stitching (step 20) cannot link the devices of people who never
-- log in, which splits their orders over several small profiles and leaves
-- BG/NBD without an identifiable dropout; this step therefore keys orders by
-- the generator's ground truth of who is who.
CREATE TEMP VIEW predict_identity AS
  SELECT kind, value, person_id AS profile_id FROM sample_truth WHERE person_id IS NOT NULL;

DROP VIEW IF EXISTS demo_valuable_at_risk;
DROP TABLE IF EXISTS demo_orders, demo_summary, demo_models, demo_customer_value, demo_rfm;

-- Orders per profile (the user_id's profile, else the device's).  The sample
-- generator spreads each person's orders evenly over the year, so nobody
-- churns and cdp.bgnbd_fit rightly stops with "the data show no dropout".
-- To have churn to predict, the demo lets each profile stop buying after
-- any repeat order with its own probability p (p ~ Beta(1, 3) across
-- profiles, drawn deterministically from the profile id): BG/NBD's story.
CREATE TABLE demo_orders AS
WITH o AS (
  SELECT coalesce(u.profile_id, a.profile_id) AS profile_id, e.ts AS at,
         (e.properties->>'revenue')::float8 AS revenue
  FROM events e
  LEFT JOIN predict_identity u ON u.kind = 'user_id' AND u.value = e.user_id
  LEFT JOIN predict_identity a ON a.kind = 'anonymous_id' AND a.value = e.anonymous_id
  WHERE e.event = 'order_completed' AND coalesce(u.profile_id, a.profile_id) IS NOT NULL),
numbered AS (
  SELECT o.*, dense_rank() OVER (PARTITION BY profile_id ORDER BY (at AT TIME ZONE 'UTC')::date) - 1 AS repeat_no
  FROM o),
churn AS (
  SELECT profile_id, 1 + floor(ln(u2) / ln(1 - least(1 - power(1 - u1, 1.0 / 3), 1 - 1e-12))) AS last_repeat
  FROM (SELECT DISTINCT profile_id,
               (((hashint8extended(profile_id, 70) >> 11) & 9007199254740991) + 0.5) / 9007199254740992.0 AS u1,
               (((hashint8extended(profile_id, 71) >> 11) & 9007199254740991) + 0.5) / 9007199254740992.0 AS u2
        FROM o) h)
SELECT n.profile_id, n.at, n.revenue
FROM numbered n JOIN churn c USING (profile_id)
WHERE n.repeat_no <= c.last_repeat;

\echo 'Validation: fit on all but the last 13 weeks, predict those 13 weeks per customer'
WITH cal AS (SELECT max(at) - interval '13 weeks' AS cal_end FROM demo_orders),
     s AS (SELECT profile_id, (cdp.purchase_summary(at, revenue, cal_end)).*
           FROM demo_orders, cal GROUP BY profile_id, cal_end),
     m AS (SELECT cdp.bgnbd_fit(x, t_x, t) AS bg FROM s WHERE x IS NOT NULL)
SELECT count(*) AS customers,
       round(sum(cdp.expected_purchases(bg, 13, x, t_x, t))::numeric, 1) AS predicted_repeat_purchases,
       sum(holdout_x) AS actual_repeat_purchases
FROM s, m WHERE x IS NOT NULL;

-- summaries up to the last order, in weeks
CREATE TABLE demo_summary AS
SELECT profile_id, (cdp.purchase_summary(at, revenue, (SELECT max(at) FROM demo_orders))).*
FROM demo_orders GROUP BY profile_id;

CREATE TABLE demo_models AS
SELECT (SELECT cdp.bgnbd_fit(x, t_x, t) FROM demo_summary) AS bg,
       (SELECT cdp.gammagamma_fit(x, monetary) FROM demo_summary) AS gg;

\echo 'Fitted models (time unit: weeks)'
SELECT 'BG/NBD' AS model,
       format('r = %s, alpha = %s, a = %s, b = %s', round((bg->>'r')::numeric, 3), round((bg->>'alpha')::numeric, 3),
              round((bg->>'a')::numeric, 3), round((bg->>'b')::numeric, 3)) AS parameters,
       round((bg->>'log_likelihood')::numeric, 1) AS log_likelihood, bg->'customers' AS customers, bg->>'status' AS status
FROM demo_models
UNION ALL
SELECT 'Gamma-Gamma',
       format('p = %s, q = %s, gamma = %s', round((gg->>'p')::numeric, 3), round((gg->>'q')::numeric, 3),
              round((gg->>'gamma')::numeric, 3)),
       round((gg->>'log_likelihood')::numeric, 1), gg->'customers', gg->>'status'
FROM demo_models;

\echo 'Population view: expected repeat purchases of a new customer'
SELECT h AS weeks, round(cdp.expected_purchases(bg, h)::numeric, 3) AS expected_repeat_purchases
FROM demo_models, unnest(ARRAY[4, 13, 26, 52]) h;

-- per customer: probability alive, next 13 weeks, spend, 12-month CLV
CREATE TABLE demo_customer_value AS
SELECT s.profile_id, s.x, round(s.t_x::numeric, 1) AS t_x, round(s.t::numeric, 1) AS t,
       round(s.monetary::numeric, 2) AS monetary,
       cdp.p_alive(bg, x, t_x, t) AS p_alive,
       cdp.expected_purchases(bg, 13, x, t_x, t) AS next_13_weeks,
       cdp.expected_spend(gg, x, monetary) AS expected_spend,
       cdp.clv(bg, gg, x, t_x, t, monetary, 12, 0.01) AS clv
FROM demo_summary s, demo_models;

-- classic RFM: scores 1-5 by percent_rank (ties share the lower score, unlike
-- ntile(5), which splits them arbitrarily), then segments
CREATE TABLE demo_rfm AS
SELECT profile_id, r, f, m, r::text || f || m AS rfm,
       CASE WHEN r >= 4 AND f >= 4 THEN 'champions'
            WHEN r >= 3 AND f >= 3 THEN 'loyal'
            WHEN r >= 4 THEN 'new or promising'
            WHEN r <= 2 AND f >= 4 THEN 'cannot lose them'
            WHEN r <= 2 AND f >= 2 THEN 'at risk'
            WHEN r = 3 THEN 'need attention'
            ELSE 'hibernating' END AS rfm_segment
FROM (SELECT profile_id,
             least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY last_order)))::int AS r,
             least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY orders)))::int AS f,
             least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY revenue)))::int AS m
      FROM (SELECT profile_id, max(at::date) AS last_order, count(DISTINCT at::date) AS orders,
                   sum(revenue) AS revenue
            FROM demo_orders GROUP BY profile_id) o) s;

\echo 'The most valuable customers by predicted 12-month CLV'
SELECT v.profile_id, v.x AS repeat_orders, v.t_x, v.t, v.monetary,
       round(v.p_alive::numeric, 3) AS p_alive, round(v.next_13_weeks::numeric, 2) AS next_13_weeks,
       round(v.clv::numeric, 2) AS clv, r.rfm, r.rfm_segment
FROM demo_customer_value v JOIN demo_rfm r USING (profile_id)
ORDER BY v.clv DESC, v.profile_id LIMIT 8;

\echo 'Predictive segment "valuable customers at risk": top 25% by CLV and bottom 25% by probability alive'
CREATE OR REPLACE VIEW demo_valuable_at_risk AS
SELECT profile_id, x, t_x, t, monetary, p_alive, clv
FROM (SELECT *, cume_dist() OVER (ORDER BY clv) AS clv_rank,
             cume_dist() OVER (ORDER BY p_alive) AS alive_rank
      FROM demo_customer_value) v
WHERE clv_rank > 0.75 AND alive_rank <= 0.25;
SELECT count(*) AS customers, round(max(p_alive)::numeric, 3) AS max_p_alive, round(min(clv)::numeric, 2) AS min_clv,
       round(sum(clv)::numeric, 0) AS clv_at_stake,
       round(100 * sum(clv) / (SELECT sum(clv) FROM demo_customer_value))::text || '%' AS share_of_all_clv
FROM demo_valuable_at_risk;

\echo 'RFM segments next to the predictive view (BG/NBD gives P(alive) = 1 to customers without repeat orders)'
SELECT r.rfm_segment, count(*) AS customers,
       round(avg(v.p_alive)::numeric, 3) AS avg_p_alive,
       round(avg(v.clv)::numeric, 2) AS avg_clv,
       count(*) FILTER (WHERE a.profile_id IS NOT NULL) AS valuable_at_risk
FROM demo_rfm r JOIN demo_customer_value v USING (profile_id)
LEFT JOIN demo_valuable_at_risk a USING (profile_id)
GROUP BY r.rfm_segment ORDER BY avg_clv DESC;
