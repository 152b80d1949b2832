
-- Purchase predictions: customer summaries, BG/NBD, Gamma-Gamma and CLV.

CREATE TYPE cdp.customer_summary AS (
    x integer,
    t_x float8,
    t float8,
    monetary float8,
    holdout_x integer
);
COMMENT ON TYPE cdp.customer_summary IS 'per-customer summary (Fader & Hardie): x repeat purchase days, t_x time of the last purchase and t (T) time to the end of calibration, both since the first purchase, monetary mean repeat spend, holdout_x repeat purchase days after calibration';

CREATE FUNCTION cdp.purchase_summary_trans(internal, timestamptz, float8, timestamptz)
RETURNS internal AS 'MODULE_PATHNAME', 'cdp_purchase_summary_trans'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.purchase_summary_trans(internal, timestamptz, float8, timestamptz) IS 'transition function of cdp.purchase_summary';

CREATE FUNCTION cdp.purchase_summary_trans(internal, timestamptz, float8, timestamptz, interval)
RETURNS internal AS 'MODULE_PATHNAME', 'cdp_purchase_summary_trans'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.purchase_summary_trans(internal, timestamptz, float8, timestamptz, interval) IS 'transition function of cdp.purchase_summary';

CREATE FUNCTION cdp.purchase_summary_combine(internal, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'cdp_purchase_summary_combine'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.purchase_summary_combine(internal, internal) IS 'combine function of cdp.purchase_summary';

CREATE FUNCTION cdp.purchase_summary_serialize(internal)
RETURNS bytea AS 'MODULE_PATHNAME', 'cdp_purchase_summary_serialize'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.purchase_summary_serialize(internal) IS 'serialize function of cdp.purchase_summary';

CREATE FUNCTION cdp.purchase_summary_deserialize(bytea, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'cdp_purchase_summary_deserialize'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.purchase_summary_deserialize(bytea, internal) IS 'deserialize function of cdp.purchase_summary';

CREATE FUNCTION cdp.purchase_summary_final(internal)
RETURNS cdp.customer_summary AS 'MODULE_PATHNAME', 'cdp_purchase_summary_final'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.purchase_summary_final(internal) IS 'final function of cdp.purchase_summary';

CREATE AGGREGATE cdp.purchase_summary(at timestamptz, amount float8, calibration_end timestamptz) (
    SFUNC = cdp.purchase_summary_trans,
    STYPE = internal,
    SSPACE = 256,
    FINALFUNC = cdp.purchase_summary_final,
    COMBINEFUNC = cdp.purchase_summary_combine,
    SERIALFUNC = cdp.purchase_summary_serialize,
    DESERIALFUNC = cdp.purchase_summary_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE cdp.purchase_summary(timestamptz, float8, timestamptz) IS 'customer summary (x, t_x, T, monetary, holdout_x) in weeks from one customer''s purchases; same-day purchases are one; NULL if no purchase up to calibration_end';

CREATE AGGREGATE cdp.purchase_summary(at timestamptz, amount float8, calibration_end timestamptz, time_unit interval) (
    SFUNC = cdp.purchase_summary_trans,
    STYPE = internal,
    SSPACE = 256,
    FINALFUNC = cdp.purchase_summary_final,
    COMBINEFUNC = cdp.purchase_summary_combine,
    SERIALFUNC = cdp.purchase_summary_serialize,
    DESERIALFUNC = cdp.purchase_summary_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE cdp.purchase_summary(timestamptz, float8, timestamptz, interval) IS 'customer summary (x, t_x, T, monetary, holdout_x) in the given time unit from one customer''s purchases; same-day purchases are one; NULL if no purchase up to calibration_end';

-- Fits: the state is a histogram of identical rows.

CREATE FUNCTION cdp.bgnbd_fit_trans(internal, float8, float8, float8)
RETURNS internal AS 'MODULE_PATHNAME', 'cdp_bgnbd_fit_trans'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.bgnbd_fit_trans(internal, float8, float8, float8) IS 'transition function of cdp.bgnbd_fit';

CREATE FUNCTION cdp.bgnbd_fit_trans(internal, float8, float8, float8, float8)
RETURNS internal AS 'MODULE_PATHNAME', 'cdp_bgnbd_fit_trans'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.bgnbd_fit_trans(internal, float8, float8, float8, float8) IS 'transition function of cdp.bgnbd_fit (weighted)';

CREATE FUNCTION cdp.gammagamma_fit_trans(internal, float8, float8)
RETURNS internal AS 'MODULE_PATHNAME', 'cdp_gammagamma_fit_trans'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.gammagamma_fit_trans(internal, float8, float8) IS 'transition function of cdp.gammagamma_fit';

CREATE FUNCTION cdp.gammagamma_fit_trans(internal, float8, float8, float8)
RETURNS internal AS 'MODULE_PATHNAME', 'cdp_gammagamma_fit_trans'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.gammagamma_fit_trans(internal, float8, float8, float8) IS 'transition function of cdp.gammagamma_fit (weighted)';

CREATE FUNCTION cdp.predict_hist_combine(internal, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'cdp_predict_hist_combine'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.predict_hist_combine(internal, internal) IS 'combine function of cdp.bgnbd_fit and cdp.gammagamma_fit';

CREATE FUNCTION cdp.predict_hist_serialize(internal)
RETURNS bytea AS 'MODULE_PATHNAME', 'cdp_predict_hist_serialize'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.predict_hist_serialize(internal) IS 'serialize function of cdp.bgnbd_fit and cdp.gammagamma_fit';

CREATE FUNCTION cdp.predict_hist_deserialize(bytea, internal)
RETURNS internal AS 'MODULE_PATHNAME', 'cdp_predict_hist_deserialize'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.predict_hist_deserialize(bytea, internal) IS 'deserialize function of cdp.bgnbd_fit and cdp.gammagamma_fit';

CREATE FUNCTION cdp.bgnbd_fit_final(internal)
RETURNS jsonb AS 'MODULE_PATHNAME', 'cdp_bgnbd_fit_final'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.bgnbd_fit_final(internal) IS 'final function of cdp.bgnbd_fit: maximum-likelihood fit with NLopt';

CREATE FUNCTION cdp.gammagamma_fit_final(internal)
RETURNS jsonb AS 'MODULE_PATHNAME', 'cdp_gammagamma_fit_final'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.gammagamma_fit_final(internal) IS 'final function of cdp.gammagamma_fit: maximum-likelihood fit with NLopt';

CREATE AGGREGATE cdp.bgnbd_fit(x float8, t_x float8, t float8) (
    SFUNC = cdp.bgnbd_fit_trans,
    STYPE = internal,
    SSPACE = 65536,
    FINALFUNC = cdp.bgnbd_fit_final,
    COMBINEFUNC = cdp.predict_hist_combine,
    SERIALFUNC = cdp.predict_hist_serialize,
    DESERIALFUNC = cdp.predict_hist_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE cdp.bgnbd_fit(float8, float8, float8) IS 'BG/NBD maximum-likelihood fit over customer summaries (x, t_x, T): jsonb with r, alpha, a, b, log_likelihood and convergence information';

CREATE AGGREGATE cdp.bgnbd_fit(x float8, t_x float8, t float8, weight float8) (
    SFUNC = cdp.bgnbd_fit_trans,
    STYPE = internal,
    SSPACE = 65536,
    FINALFUNC = cdp.bgnbd_fit_final,
    COMBINEFUNC = cdp.predict_hist_combine,
    SERIALFUNC = cdp.predict_hist_serialize,
    DESERIALFUNC = cdp.predict_hist_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE cdp.bgnbd_fit(float8, float8, float8, float8) IS 'BG/NBD maximum-likelihood fit over weighted customer summaries (x, t_x, T, weight)';

CREATE AGGREGATE cdp.gammagamma_fit(x float8, monetary float8) (
    SFUNC = cdp.gammagamma_fit_trans,
    STYPE = internal,
    SSPACE = 65536,
    FINALFUNC = cdp.gammagamma_fit_final,
    COMBINEFUNC = cdp.predict_hist_combine,
    SERIALFUNC = cdp.predict_hist_serialize,
    DESERIALFUNC = cdp.predict_hist_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE cdp.gammagamma_fit(float8, float8) IS 'Gamma-Gamma spend model fit over customers with x > 0 repeat purchases of mean value monetary: jsonb with p, q, gamma';

CREATE AGGREGATE cdp.gammagamma_fit(x float8, monetary float8, weight float8) (
    SFUNC = cdp.gammagamma_fit_trans,
    STYPE = internal,
    SSPACE = 65536,
    FINALFUNC = cdp.gammagamma_fit_final,
    COMBINEFUNC = cdp.predict_hist_combine,
    SERIALFUNC = cdp.predict_hist_serialize,
    DESERIALFUNC = cdp.predict_hist_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE cdp.gammagamma_fit(float8, float8, float8) IS 'Gamma-Gamma spend model fit over weighted (x, monetary, weight) rows with x > 0';

-- Predictions

CREATE FUNCTION cdp.expected_purchases(model jsonb, horizon float8)
RETURNS float8 AS 'MODULE_PATHNAME', 'cdp_expected_purchases'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.expected_purchases(jsonb, float8) IS 'BG/NBD: expected number of repeat purchases of a new customer within horizon time units of the first purchase';

CREATE FUNCTION cdp.expected_purchases(model jsonb, horizon float8, x float8, t_x float8, t float8)
RETURNS float8 AS 'MODULE_PATHNAME', 'cdp_expected_purchases_conditional'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.expected_purchases(jsonb, float8, float8, float8, float8) IS 'BG/NBD: expected number of purchases in the next horizon time units of a customer with summary (x, t_x, T)';

CREATE FUNCTION cdp.p_alive(model jsonb, x float8, t_x float8, t float8)
RETURNS float8 AS 'MODULE_PATHNAME', 'cdp_p_alive'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.p_alive(jsonb, float8, float8, float8) IS 'BG/NBD: probability that a customer with summary (x, t_x, T) is still active at T';

CREATE FUNCTION cdp.expected_spend(model jsonb, x float8, monetary float8)
RETURNS float8 AS 'MODULE_PATHNAME', 'cdp_expected_spend'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.expected_spend(jsonb, float8, float8) IS 'Gamma-Gamma: expected spend per purchase of a customer with x repeat purchases of mean value monetary';

CREATE FUNCTION cdp.clv(bg_model jsonb, gg_model jsonb, x float8, t_x float8, t float8, monetary float8,
                        horizon integer DEFAULT 12, discount_rate float8 DEFAULT 0.01, period float8 DEFAULT 4.345)
RETURNS float8 AS 'MODULE_PATHNAME', 'cdp_clv'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.clv(jsonb, jsonb, float8, float8, float8, float8, integer, float8, float8) IS 'customer lifetime value: expected spend times expected purchases in each of horizon periods of period time units, discounted at discount_rate per period';
