-- Segments: refreshing 20 segments over every profile (activity summaries
-- and traits in cdp.profile_view), in total and one by one, against the
-- plain SQL users would otherwise run: the same 20 predicates evaluated over
-- the raw events in one GROUP BY pass.  Events are mapped to persons through
-- sample_truth, a stand-in for the identity graph.  Time stamps are fixed
-- relative to the data's anchor (2026-01-01).
-- @setup
SET client_min_messages = warning;
-- events of known persons (kept between runs: it only depends on the data)
CREATE TABLE IF NOT EXISTS bench_seg_events AS
SELECT COALESCE(u.person_id, a.person_id) AS person_id, e.event, e.ts,
       (e.properties->>'revenue')::float8 AS revenue
FROM events e
LEFT JOIN sample_truth u ON u.kind = 'user_id' AND u.value = e.user_id
LEFT JOIN sample_truth a ON a.kind = 'anonymous_id' AND a.value = e.anonymous_id
WHERE COALESCE(u.person_id, a.person_id) IS NOT NULL;
INSERT INTO cdp.profile_activity (profile_id, activity)
SELECT person_id, cdp.activity_agg(event, ts, revenue) FROM bench_seg_events GROUP BY person_id;
INSERT INTO cdp.profile_traits (profile_id, traits)
SELECT p.person_id,
       jsonb_strip_nulls(jsonb_build_object('country', c.country, 'tags', COALESCE(d.tags, '[]'::jsonb)))
FROM (SELECT DISTINCT person_id FROM sample_truth WHERE person_id IS NOT NULL) p
LEFT JOIN (SELECT s.person_id, max(c.country) AS country FROM crm_contacts c
           JOIN sample_truth s ON s.kind = 'user_id' AND s.value = c.user_id GROUP BY 1) c USING (person_id)
LEFT JOIN (SELECT s.person_id, jsonb_agg(DISTINCT t) AS tags FROM dmp_cookies k
           JOIN sample_truth s ON s.kind = 'cookie_id' AND s.value = k.cookie_id
           CROSS JOIN LATERAL unnest(k.audience_tags) t GROUP BY 1) d USING (person_id);
VACUUM ANALYZE bench_seg_events;
VACUUM ANALYZE cdp.profile_activity;
VACUUM ANALYZE cdp.profile_traits;
DELETE FROM cdp.segments;
SELECT cdp.define_segment('repeat_buyers_90d', $$cdp.event_count(activity, 'order_completed', '2025-10-03'::timestamptz) >= 2$$);
SELECT cdp.define_segment('buyers_nl', $$cdp.event_count(activity, 'order_completed') >= 1 AND traits->>'country' = 'NL'$$);
SELECT cdp.define_segment('cart_abandoners_7d', $$cdp.event_count(activity, 'product_added', '2025-12-25'::timestamptz) >= 1 AND cdp.event_count(activity, 'order_completed', '2025-12-25'::timestamptz) = 0$$);
SELECT cdp.define_segment('lapsed_high_value', $$cdp.event_sum(activity, 'order_completed') > 300 AND cdp.last_seen(activity, 'order_completed') < '2025-10-01'$$);
SELECT cdp.define_segment('in_market_auto_known', $$traits->'tags' ? 'in_market_auto' AND traits ? 'country'$$);
SELECT cdp.define_segment('newsletter_subscribers', $$cdp.event_count(activity, 'newsletter_subscribed') >= 1$$);
SELECT cdp.define_segment('active_30d', $$cdp.last_seen(activity) >= '2025-12-02'$$);
SELECT cdp.define_segment('refunders', $$cdp.event_count(activity, 'order_refunded') >= 1$$);
SELECT cdp.define_segment('searchers_no_order_30d', $$cdp.event_count(activity, 'products_searched', '2025-12-02'::timestamptz) >= 1 AND cdp.event_count(activity, 'order_completed', '2025-12-02'::timestamptz) = 0$$);
SELECT cdp.define_segment('big_spenders', $$cdp.event_sum(activity, 'order_completed') >= 500$$);
SELECT cdp.define_segment('coupon_users', $$cdp.event_count(activity, 'coupon_applied') >= 2$$);
SELECT cdp.define_segment('signed_up_q4', $$cdp.first_seen(activity, 'signed_up') >= '2025-10-01'$$);
SELECT cdp.define_segment('checkout_dropouts', $$cdp.event_count(activity, 'checkout_started') > cdp.event_count(activity, 'order_completed')$$);
SELECT cdp.define_segment('heavy_browsers', $$cdp.event_count(activity, 'page_viewed', '2025-12-01'::timestamptz) >= 5$$);
SELECT cdp.define_segment('luxury_shoppers', $$traits->'tags' ? 'luxury_shopper'$$);
SELECT cdp.define_segment('country_de', $$traits->>'country' = 'DE'$$);
SELECT cdp.define_segment('active_days_10', $$cdp.active_days(activity) >= 10$$);
SELECT cdp.define_segment('one_time_buyers', $$cdp.event_count(activity, 'order_completed') = 1$$);
SELECT cdp.define_segment('dormant_180d', $$cdp.last_seen(activity) < '2025-07-01'$$);
SELECT cdp.define_segment('payment_dropouts_14d', $$cdp.event_count(activity, 'payment_info_entered', '2025-12-18'::timestamptz) >= 1 AND cdp.event_count(activity, 'order_completed', '2025-12-18'::timestamptz) = 0$$);
SELECT count(*) FROM cdp.refresh_segments();
-- @floor count(*) over cdp.profile_view
SELECT count(*) FROM cdp.profile_view;
-- @case refresh 20 segments
SELECT count(*) FROM cdp.refresh_segments();
-- @case plain SQL: 20 predicates over raw events
SELECT count(*) FILTER (WHERE s0) AS repeat_buyers_90d,
       count(*) FILTER (WHERE s1) AS buyers_nl,
       count(*) FILTER (WHERE s2) AS cart_abandoners_7d,
       count(*) FILTER (WHERE s3) AS lapsed_high_value,
       count(*) FILTER (WHERE s4) AS in_market_auto_known,
       count(*) FILTER (WHERE s5) AS newsletter_subscribers,
       count(*) FILTER (WHERE s6) AS active_30d,
       count(*) FILTER (WHERE s7) AS refunders,
       count(*) FILTER (WHERE s8) AS searchers_no_order_30d,
       count(*) FILTER (WHERE s9) AS big_spenders,
       count(*) FILTER (WHERE s10) AS coupon_users,
       count(*) FILTER (WHERE s11) AS signed_up_q4,
       count(*) FILTER (WHERE s12) AS checkout_dropouts,
       count(*) FILTER (WHERE s13) AS heavy_browsers,
       count(*) FILTER (WHERE s14) AS luxury_shoppers,
       count(*) FILTER (WHERE s15) AS country_de,
       count(*) FILTER (WHERE s16) AS active_days_10,
       count(*) FILTER (WHERE s17) AS one_time_buyers,
       count(*) FILTER (WHERE s18) AS dormant_180d,
       count(*) FILTER (WHERE s19) AS payment_dropouts_14d
FROM (SELECT e.person_id,
              count(*) FILTER (WHERE event = 'order_completed' AND ts >= '2025-10-03') >= 2 AS s0,
              count(*) FILTER (WHERE event = 'order_completed') >= 1 AND max(t.traits->>'country') = 'NL' AS s1,
              count(*) FILTER (WHERE event = 'product_added' AND ts >= '2025-12-25') >= 1 AND count(*) FILTER (WHERE event = 'order_completed' AND ts >= '2025-12-25') = 0 AS s2,
              sum(revenue) FILTER (WHERE event = 'order_completed') > 300 AND max(ts) FILTER (WHERE event = 'order_completed') < '2025-10-01' AS s3,
              bool_or(t.traits->'tags' ? 'in_market_auto' AND t.traits ? 'country') AS s4,
              count(*) FILTER (WHERE event = 'newsletter_subscribed') >= 1 AS s5,
              max(ts) >= '2025-12-02' AS s6,
              count(*) FILTER (WHERE event = 'order_refunded') >= 1 AS s7,
              count(*) FILTER (WHERE event = 'products_searched' AND ts >= '2025-12-02') >= 1 AND count(*) FILTER (WHERE event = 'order_completed' AND ts >= '2025-12-02') = 0 AS s8,
              sum(revenue) FILTER (WHERE event = 'order_completed') >= 500 AS s9,
              count(*) FILTER (WHERE event = 'coupon_applied') >= 2 AS s10,
              min(ts) FILTER (WHERE event = 'signed_up') >= '2025-10-01' AS s11,
              count(*) FILTER (WHERE event = 'checkout_started') > count(*) FILTER (WHERE event = 'order_completed') AS s12,
              count(*) FILTER (WHERE event = 'page_viewed' AND ts >= '2025-12-01') >= 5 AS s13,
              bool_or(t.traits->'tags' ? 'luxury_shopper') AS s14,
              max(t.traits->>'country') = 'DE' AS s15,
              count(DISTINCT date_trunc('day', ts AT TIME ZONE 'UTC')) >= 10 AS s16,
              count(*) FILTER (WHERE event = 'order_completed') = 1 AS s17,
              max(ts) < '2025-07-01' AS s18,
              count(*) FILTER (WHERE event = 'payment_info_entered' AND ts >= '2025-12-18') >= 1 AND count(*) FILTER (WHERE event = 'order_completed' AND ts >= '2025-12-18') = 0 AS s19
      FROM bench_seg_events e LEFT JOIN cdp.profile_traits t ON t.profile_id = e.person_id
      GROUP BY e.person_id) per_person;
-- @case refresh repeat_buyers_90d
SELECT count(*) FROM cdp.refresh_segments(ARRAY['repeat_buyers_90d']);
-- @case refresh buyers_nl
SELECT count(*) FROM cdp.refresh_segments(ARRAY['buyers_nl']);
-- @case refresh cart_abandoners_7d
SELECT count(*) FROM cdp.refresh_segments(ARRAY['cart_abandoners_7d']);
-- @case refresh lapsed_high_value
SELECT count(*) FROM cdp.refresh_segments(ARRAY['lapsed_high_value']);
-- @case refresh in_market_auto_known
SELECT count(*) FROM cdp.refresh_segments(ARRAY['in_market_auto_known']);
-- @case refresh newsletter_subscribers
SELECT count(*) FROM cdp.refresh_segments(ARRAY['newsletter_subscribers']);
-- @case refresh active_30d
SELECT count(*) FROM cdp.refresh_segments(ARRAY['active_30d']);
-- @case refresh refunders
SELECT count(*) FROM cdp.refresh_segments(ARRAY['refunders']);
-- @case refresh searchers_no_order_30d
SELECT count(*) FROM cdp.refresh_segments(ARRAY['searchers_no_order_30d']);
-- @case refresh big_spenders
SELECT count(*) FROM cdp.refresh_segments(ARRAY['big_spenders']);
-- @case refresh coupon_users
SELECT count(*) FROM cdp.refresh_segments(ARRAY['coupon_users']);
-- @case refresh signed_up_q4
SELECT count(*) FROM cdp.refresh_segments(ARRAY['signed_up_q4']);
-- @case refresh checkout_dropouts
SELECT count(*) FROM cdp.refresh_segments(ARRAY['checkout_dropouts']);
-- @case refresh heavy_browsers
SELECT count(*) FROM cdp.refresh_segments(ARRAY['heavy_browsers']);
-- @case refresh luxury_shoppers
SELECT count(*) FROM cdp.refresh_segments(ARRAY['luxury_shoppers']);
-- @case refresh country_de
SELECT count(*) FROM cdp.refresh_segments(ARRAY['country_de']);
-- @case refresh active_days_10
SELECT count(*) FROM cdp.refresh_segments(ARRAY['active_days_10']);
-- @case refresh one_time_buyers
SELECT count(*) FROM cdp.refresh_segments(ARRAY['one_time_buyers']);
-- @case refresh dormant_180d
SELECT count(*) FROM cdp.refresh_segments(ARRAY['dormant_180d']);
-- @case refresh payment_dropouts_14d
SELECT count(*) FROM cdp.refresh_segments(ARRAY['payment_dropouts_14d']);
-- @compare refresh 20 segments | plain SQL: 20 predicates over raw events
-- @note steady state: the timed refreshes find no changes, as a scheduled refresh mostly does; each writes one cdp.segment_sizes row per segment
-- @note with 20 segments of one owner, refresh evaluates them in one scan of the profile relation (one filtered cdp.audience_agg each); a single named segment scans alone
-- @note plain SQL only counts members; refresh also stores each segment as a cdp.audience and diffs it against the previous one
-- @setup
DELETE FROM cdp.segments;
DELETE FROM cdp.profile_activity;
DELETE FROM cdp.profile_traits;
