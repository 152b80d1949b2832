/*-------------------------------------------------------------------------
 *
 * predict.c
 *	  Customer summaries (cdp.purchase_summary) and the predictions of
 *	  fitted BG/NBD and Gamma-Gamma models: expected purchases, probability
 *	  alive, expected spend and customer lifetime value.
 *
 * Conventions follow Fader, Hardie & Lee (2005) and the lifetimes package:
 * purchases on the same (UTC) day are one purchase, the first purchase is
 * not a repeat purchase, t_x and T are measured from the first purchase in
 * a time unit of 7 days by default.
 *
 * The BG/NBD expectations need the Gauss hypergeometric function.  Instead
 * of the textbook form (a+b+x-1)/(a-1) * [1 - (1-z)^(r+x) 2F1(r+x, b+x;
 * a+b+x-1; z)], which cancels catastrophically for a near 1, we apply
 * Euler's transformation, 2F1(A, B; c; z) = (1-z)^(c-A-B) 2F1(c-A, c-B; c;
 * z) with c - B = a - 1, and divide the factor (a-1) out of the series
 * analytically; see bgnbd_expected().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "funcapi.h"
#include "libpq/pqformat.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "predict.h"

#define SUMMARY_FORMAT_VERSION 1
#define HYP_MAX_TERMS 10000000

/*
 * cdp.purchase_summary
 */

typedef struct Purchase
{
	int64		day;			/* UTC day number */
	double		amount;
} Purchase;

typedef struct SummaryState
{
	int64		cal_day;		/* day of calibration_end */
	double		unit_days;		/* time unit in days */
	int32		n;
	int32		cap;
	Purchase   *items;
} SummaryState;

static inline int64
utc_day(TimestampTz ts)
{
	int64		d = ts / USECS_PER_DAY;

	/* floor division for times before 2000-01-01 */
	if (ts < 0 && d * USECS_PER_DAY != ts)
		d--;
	return d;
}

static double
interval_days(Interval *iv)
{
	if (iv->month != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid time unit \"%s\"",
						DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(iv)))),
				 errdetail("Months and years have no fixed length."),
				 errhint("Use a unit in days, such as '7 days' or '30 days'.")));
	if (iv->day * (double) USECS_PER_DAY + iv->time <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid time unit \"%s\"",
						DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(iv)))),
				 errdetail("The time unit must be positive.")));
	return iv->day + (double) iv->time / USECS_PER_DAY;
}

static void
summary_set_params(SummaryState *st, int64 cal_day, double unit_days)
{
	if (st->unit_days == 0.0)
	{
		st->cal_day = cal_day;
		st->unit_days = unit_days;
	}
	else if (st->cal_day != cal_day || st->unit_days != unit_days)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("calibration_end and time_unit must be the same for every row of a customer")));
}

static void
summary_push(SummaryState *st, MemoryContext mcxt, int64 day, double amount)
{
	if (st->n == st->cap)
	{
		int32		cap = st->cap == 0 ? 8 : st->cap * 2;

		if ((Size) cap * sizeof(Purchase) > MaxAllocSize)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many purchases for one customer")));
		st->items = st->items == NULL
			? MemoryContextAlloc(mcxt, cap * sizeof(Purchase))
			: repalloc(st->items, cap * sizeof(Purchase));
		st->cap = cap;
	}
	st->items[st->n].day = day;
	st->items[st->n].amount = amount;
	st->n++;
}

/* transition of cdp.purchase_summary: collects one purchase */
PG_FUNCTION_INFO_V1(cdp_purchase_summary_trans);
Datum
cdp_purchase_summary_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	SummaryState *st;
	TimestampTz at,
				cal_end;
	double		amount = 0.0;
	double		unit_days = 7.0;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "purchase_summary_trans called in non-aggregate context");
	st = PG_ARGISNULL(0)
		? MemoryContextAllocZero(aggcxt, sizeof(SummaryState))
		: (SummaryState *) PG_GETARG_POINTER(0);

	if (PG_ARGISNULL(1))
		PG_RETURN_POINTER(st);
	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("calibration_end must not be null")));
	at = PG_GETARG_TIMESTAMPTZ(1);
	cal_end = PG_GETARG_TIMESTAMPTZ(3);
	if (TIMESTAMP_NOT_FINITE(at) || TIMESTAMP_NOT_FINITE(cal_end))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("purchase time and calibration_end must be finite")));
	if (PG_NARGS() > 4)
	{
		if (PG_ARGISNULL(4))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("time_unit must not be null")));
		unit_days = interval_days(PG_GETARG_INTERVAL_P(4));
	}
	if (!PG_ARGISNULL(2))
	{
		amount = PG_GETARG_FLOAT8(2);
		if (!isfinite(amount))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid purchase amount \"%g\"", amount),
					 errdetail("Amounts must be finite.")));
	}

	summary_set_params(st, utc_day(cal_end), unit_days);
	summary_push(st, aggcxt, utc_day(at), amount);
	PG_RETURN_POINTER(st);
}

/* combine function of cdp.purchase_summary: concatenates purchase lists */
PG_FUNCTION_INFO_V1(cdp_purchase_summary_combine);
Datum
cdp_purchase_summary_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	SummaryState *a = PG_ARGISNULL(0) ? NULL : (SummaryState *) PG_GETARG_POINTER(0);
	SummaryState *b = PG_ARGISNULL(1) ? NULL : (SummaryState *) PG_GETARG_POINTER(1);

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "purchase_summary_combine called in non-aggregate context");
	if (b == NULL || b->n == 0)
	{
		if (a == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(a);
	}
	if (a == NULL)
		a = MemoryContextAllocZero(aggcxt, sizeof(SummaryState));
	summary_set_params(a, b->cal_day, b->unit_days);
	for (int32 i = 0; i < b->n; i++)
		summary_push(a, aggcxt, b->items[i].day, b->items[i].amount);
	PG_RETURN_POINTER(a);
}

/* serialize function of cdp.purchase_summary */
PG_FUNCTION_INFO_V1(cdp_purchase_summary_serialize);
Datum
cdp_purchase_summary_serialize(PG_FUNCTION_ARGS)
{
	SummaryState *st = (SummaryState *) PG_GETARG_POINTER(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendbyte(&buf, SUMMARY_FORMAT_VERSION);
	pq_sendint64(&buf, st->cal_day);
	pq_sendfloat8(&buf, st->unit_days);
	pq_sendint32(&buf, st->n);
	for (int32 i = 0; i < st->n; i++)
	{
		pq_sendint64(&buf, st->items[i].day);
		pq_sendfloat8(&buf, st->items[i].amount);
	}
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* deserialize function of cdp.purchase_summary; checks every length */
PG_FUNCTION_INFO_V1(cdp_purchase_summary_deserialize);
Datum
cdp_purchase_summary_deserialize(PG_FUNCTION_ARGS)
{
	bytea	   *raw = PG_GETARG_BYTEA_PP(0);
	MemoryContext aggcxt;
	StringInfoData buf;
	SummaryState *st;
	int			version;
	int32		n;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "purchase_summary_deserialize called in non-aggregate context");
	buf.data = VARDATA_ANY(raw);
	buf.len = VARSIZE_ANY_EXHDR(raw);
	buf.maxlen = buf.len;
	buf.cursor = 0;
	if (buf.len < 21)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid purchase summary state: %d bytes is too short", buf.len)));
	version = pq_getmsgbyte(&buf);
	if (version != SUMMARY_FORMAT_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid purchase summary state: unknown format version %d", version)));

	st = MemoryContextAllocZero(aggcxt, sizeof(SummaryState));
	st->cal_day = pq_getmsgint64(&buf);
	st->unit_days = pq_getmsgfloat8(&buf);
	n = pq_getmsgint(&buf, 4);
	if (n < 0 || n > (buf.len - buf.cursor) / 16 || n * 16 != buf.len - buf.cursor ||
		!(st->unit_days >= 0.0))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid purchase summary state: %d purchases do not match %d bytes",
						n, buf.len - buf.cursor)));
	if (n > 0)
	{
		st->items = MemoryContextAlloc(aggcxt, n * sizeof(Purchase));
		st->cap = n;
	}
	for (int32 i = 0; i < n; i++)
	{
		st->items[i].day = pq_getmsgint64(&buf);
		st->items[i].amount = pq_getmsgfloat8(&buf);
	}
	st->n = n;
	PG_RETURN_POINTER(st);
}

static int
purchase_cmp(const void *a, const void *b)
{
	const Purchase *pa = a;
	const Purchase *pb = b;

	if (pa->day != pb->day)
		return pa->day < pb->day ? -1 : 1;
	/* a fixed summation order makes the spend independent of input order */
	if (pa->amount != pb->amount)
		return pa->amount < pb->amount ? -1 : 1;
	return 0;
}

/*
 * final function of cdp.purchase_summary: (x, t_x, t, monetary, holdout_x),
 * or NULL for a customer without purchases up to calibration_end
 */
PG_FUNCTION_INFO_V1(cdp_purchase_summary_final);
Datum
cdp_purchase_summary_final(PG_FUNCTION_ARGS)
{
	SummaryState *st;
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	int64		first,
				last,
				prev;
	int32		x = 0,
				holdout_x = 0;
	double		repeat_spend = 0.0;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	st = (SummaryState *) PG_GETARG_POINTER(0);
	if (st->n == 0)
		PG_RETURN_NULL();

	/* sorting only reorders the state; its meaning is unchanged */
	qsort(st->items, st->n, sizeof(Purchase), purchase_cmp);
	first = st->items[0].day;
	if (first > st->cal_day)
		PG_RETURN_NULL();

	last = prev = first;
	for (int32 i = 1; i < st->n; i++)
	{
		int64		day = st->items[i].day;

		if (day > st->cal_day)
		{
			if (day != prev)
				holdout_x++;
		}
		else if (day != prev)
		{
			x++;
			last = day;
			repeat_spend += st->items[i].amount;
		}
		else if (day != first)
			repeat_spend += st->items[i].amount;
		prev = day;
	}

	tupdesc = (TupleDesc) fcinfo->flinfo->fn_extra;
	if (tupdesc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "purchase_summary_final must return a composite type");
		tupdesc = BlessTupleDesc(CreateTupleDescCopy(tupdesc));
		fcinfo->flinfo->fn_extra = tupdesc;
		MemoryContextSwitchTo(old);
	}

	values[0] = Int32GetDatum(x);
	values[1] = Float8GetDatum((last - first) / st->unit_days);
	values[2] = Float8GetDatum((st->cal_day - first) / st->unit_days);
	values[3] = Float8GetDatum(x > 0 ? repeat_spend / x : 0.0);
	values[4] = Int32GetDatum(holdout_x);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * Model arguments are parsed once per query: the parameters are cached in
 * fn_extra together with a copy of the jsonb they came from.
 */

typedef struct ModelCacheSlot
{
	Jsonb	   *model;
	BgnbdParams bg;
	GammaGammaParams gg;
} ModelCacheSlot;

typedef struct ModelCache
{
	ModelCacheSlot slot[2];
} ModelCache;

static ModelCacheSlot *
cached_model(FunctionCallInfo fcinfo, int argno, int slotno, bool bgnbd)
{
	Jsonb	   *model = PG_GETARG_JSONB_P(argno);
	ModelCache *cache = (ModelCache *) fcinfo->flinfo->fn_extra;
	ModelCacheSlot *slot;

	if (cache == NULL)
	{
		cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(ModelCache));
		fcinfo->flinfo->fn_extra = cache;
	}
	slot = &cache->slot[slotno];
	if (slot->model != NULL && VARSIZE(slot->model) == VARSIZE(model) &&
		memcmp(slot->model, model, VARSIZE(model)) == 0)
		return slot;

	if (bgnbd)
		cdp_bgnbd_from_jsonb(model, &slot->bg);
	else
		cdp_gammagamma_from_jsonb(model, &slot->gg);
	if (slot->model)
		pfree(slot->model);
	slot->model = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, VARSIZE(model));
	memcpy(slot->model, model, VARSIZE(model));
	return slot;
}

/* Errors for summaries that no customer can have (shared with the fits). */
void
cdp_check_summary(double x, double t_x, double T)
{
	if (!isfinite(x) || !isfinite(t_x) || !isfinite(T) ||
		x < 0 || t_x < 0 || T < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid customer summary (x = %g, t_x = %g, T = %g)", x, t_x, T),
				 errdetail("x, t_x and T must be finite and non-negative.")));
	if (x != floor(x))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid customer summary (x = %g, t_x = %g, T = %g)", x, t_x, T),
				 errdetail("x counts repeat purchases and must be a whole number.")));
	if (t_x > T)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid customer summary (x = %g, t_x = %g, T = %g)", x, t_x, T),
				 errdetail("The last purchase t_x lies after the end of the observation period T."),
				 errhint("Measure t_x and T from the first purchase, in the same time unit.")));
	if (x > 0 && t_x == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid customer summary (x = %g, t_x = %g, T = %g)", x, t_x, T),
				 errdetail("A customer with repeat purchases must have t_x > 0."),
				 errhint("Count purchases in the same period as one (cdp.purchase_summary does).")));
	if (x == 0 && t_x != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid customer summary (x = %g, t_x = %g, T = %g)", x, t_x, T),
				 errdetail("A customer without repeat purchases must have t_x = 0.")));
}

static void
check_horizon(double t)
{
	if (!isfinite(t) || t < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid prediction horizon \"%g\"", t),
				 errdetail("The horizon must be a finite number >= 0, in the time unit of the summaries.")));
}

/*
 * Index after which the terms t_{n+1} = t_n z (p+n)(q+n) / ((c+n)(n+1))
 * no longer grow: past the larger root of (p+n)(q+n) z = (c+n)(n+1) and
 * past every sign change of the factors.  Large parameters push it out,
 * which is what decides between the two forms below.
 */
static double
series_peak(double p, double q, double c, double z)
{
	double		qa = z - 1.0;
	double		qb = z * (p + q) - c - 1.0;
	double		qc = z * p * q - c;
	double		disc = qb * qb - 4.0 * qa * qc;
	double		n = 0.0;

	if (disc > 0.0)
		n = (-qb - sqrt(disc)) / (2.0 * qa);
	return Max(Max(n, 0.0), Max(Max(-p, -q), -c));
}

/*
 * sum_{n >= n0} t_n with t_{n0} = t0 and the term ratio above, for
 * 0 <= z < 1.  Terms can be astronomically large before they fall, so the
 * sum is kept as sum * exp(*log_scale).  Once past series_peak() the term
 * ratio tends to z, and |t_n| rho / (1 - rho), rho = max(ratio, z), bounds
 * the rest of the sum; we stop when that is below 1e-16 of the sum.  The
 * number of terms grows like the peak plus 1/(1 - z).
 */
static double
hyp_series(double t0, int n0, double p, double q, double c, double z,
		   double *log_scale)
{
	double		term = t0;
	double		sum = t0;
	double		peak = series_peak(p, q, c, z);
	double		ls = 0.0;

	for (int n = n0; n < n0 + HYP_MAX_TERMS; n++)
	{
		double		ratio = (p + n) * (q + n) * z / ((c + n) * (n + 1));
		double		rho;

		term *= ratio;
		sum += term;
		if (term == 0.0 || !isfinite(sum))
			break;
		if (fabs(sum) > 1e250)
		{
			sum *= 1e-250;
			term *= 1e-250;
			ls += 250.0 * M_LN10;
		}
		rho = Max(fabs(ratio), z);
		if (n > peak && rho < 1.0 &&
			fabs(term) * rho / (1.0 - rho) <= 1e-16 * fabs(sum))
		{
			*log_scale = ls;
			return sum;
		}
	}
	if (term == 0.0 && isfinite(sum))
	{
		*log_scale = ls;
		return sum;
	}
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("hypergeometric series did not converge within %d terms (z = %.17g)",
					HYP_MAX_TERMS, z),
			 errhint("The prediction horizon is too long compared to alpha + T.")));
	return 0.0;					/* keep compiler quiet */
}

/*
 * The customer-level part of the BG/NBD expectation (FHL 2005, eq. 10)
 * without its P(alive) factor:
 *   (a+b+x-1)/(a-1) * [1 - (1-z)^(r+x) 2F1(r+x, b+x; a+b+x-1; z)],
 *   z = t / (alpha + T + t).
 * With A = r + x, c = a+b+x-1, e = a - 1 and L = ln(1-z), two series:
 *
 * - Euler's transformation turns (1-z)^A 2F1(A, b+x; c; z) into
 *   e^(eL) 2F1(c-A, e; c; z) = e^(eL) (1 + e H), where
 *   H = sum_{n>=1} (c-A)_n (a)_(n-1) z^n / ((c)_n n!), so the bracket
 *   divided by e is -expm1(eL)/e - e^(eL) H: no 0/0 at a = 1.
 * - The textbook series 2F1(A, b+x; c; z) directly.
 *
 * Each has a growth phase before its terms fall (large a for the first,
 * large x with b >> a for the second); we sum the one that peaks first,
 * and the textbook one only when |a - 1| > 0.05 so that dividing by a - 1
 * costs at most a digit or two.  With x = 0 and T = 0 this is the
 * population expectation E[X(t)] (FHL 2005, eq. 9).
 */
static double
bgnbd_expected(const BgnbdParams *m, double t, double x, double T)
{
	double		A = m->r + x;
	double		B = m->b + x;
	double		e = m->a - 1.0;
	double		c = m->a + m->b + x - 1.0;
	double		z,
				L,
				k,
				ls = 0.0;

	if (t == 0.0)
		return 0.0;
	z = t / (m->alpha + T + t);
	L = -log1p(t / (m->alpha + T));

	if (fabs(e) > 0.05 &&
		series_peak(A, B, c, z) < series_peak(c - A, e, c, z))
	{
		double		f = hyp_series(1.0, 0, A, B, c, z, &ls);

		k = -expm1(A * L + ls + log(f)) / e;
	}
	else
	{
		double		h = hyp_series((c - A) * z / c, 1, c - A, e, c, z, &ls);
		double		lead = (e == 0.0 ? -L : -expm1(e * L) / e);

		if (h == 0.0)
			k = lead;
		else
			k = lead - (h > 0 ? 1.0 : -1.0) * exp(e * L + ls + log(fabs(h)));
	}
	return c * k;
}

/* P(alive | x, t_x, T) (FHL 2005, eq. 13), in log form against overflow */
static double
bgnbd_p_alive(const BgnbdParams *m, double x, double t_x, double T)
{
	double		lr;

	if (x == 0)
		return 1.0;
	lr = log(m->a) - log(m->b + x - 1.0)
		+ (m->r + x) * log1p((T - t_x) / (m->alpha + t_x));
	return 1.0 / (1.0 + exp(lr));
}

/* E[M | x, mean spend m] of the Gamma-Gamma model */
static double
gg_expected_spend(const GammaGammaParams *g, double x, double m)
{
	double		den = g->p * x + g->q - 1.0;

	if (!isfinite(x) || x < 0 || x != floor(x) || !isfinite(m) || m < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid customer summary (x = %g, monetary = %g)", x, m),
				 errdetail("x must be a whole number >= 0 and monetary a finite number >= 0.")));
	if (!(den > 0.0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the expected spend is infinite for x = %g (p = %g, q = %g)", x, g->p, g->q),
				 errdetail("The Gamma-Gamma mean exists only when p * x + q > 1.")));
	if (x == 0)
		return g->p * g->gamma / den;
	return g->p * (g->gamma + x * m) / den;
}

/* cdp.expected_purchases(model, t): E[X(t)] for a random new customer */
PG_FUNCTION_INFO_V1(cdp_expected_purchases);
Datum
cdp_expected_purchases(PG_FUNCTION_ARGS)
{
	ModelCacheSlot *mc = cached_model(fcinfo, 0, 0, true);
	double		t = PG_GETARG_FLOAT8(1);

	check_horizon(t);
	PG_RETURN_FLOAT8(bgnbd_expected(&mc->bg, t, 0.0, 0.0));
}

/* cdp.expected_purchases(model, t, x, t_x, T): E[Y(t) | x, t_x, T] */
PG_FUNCTION_INFO_V1(cdp_expected_purchases_conditional);
Datum
cdp_expected_purchases_conditional(PG_FUNCTION_ARGS)
{
	ModelCacheSlot *mc = cached_model(fcinfo, 0, 0, true);
	double		t = PG_GETARG_FLOAT8(1);
	double		x = PG_GETARG_FLOAT8(2);
	double		t_x = PG_GETARG_FLOAT8(3);
	double		T = PG_GETARG_FLOAT8(4);
	double		pa;

	check_horizon(t);
	cdp_check_summary(x, t_x, T);
	pa = bgnbd_p_alive(&mc->bg, x, t_x, T);
	if (pa == 0.0)
		PG_RETURN_FLOAT8(0.0);
	PG_RETURN_FLOAT8(pa * bgnbd_expected(&mc->bg, t, x, T));
}

/* cdp.p_alive(model, x, t_x, T): probability that the customer is alive at T */
PG_FUNCTION_INFO_V1(cdp_p_alive);
Datum
cdp_p_alive(PG_FUNCTION_ARGS)
{
	ModelCacheSlot *mc = cached_model(fcinfo, 0, 0, true);
	double		x = PG_GETARG_FLOAT8(1);
	double		t_x = PG_GETARG_FLOAT8(2);
	double		T = PG_GETARG_FLOAT8(3);

	cdp_check_summary(x, t_x, T);
	PG_RETURN_FLOAT8(bgnbd_p_alive(&mc->bg, x, t_x, T));
}

/* cdp.expected_spend(model, x, monetary): Gamma-Gamma mean spend per purchase */
PG_FUNCTION_INFO_V1(cdp_expected_spend);
Datum
cdp_expected_spend(PG_FUNCTION_ARGS)
{
	ModelCacheSlot *mc = cached_model(fcinfo, 0, 0, false);

	PG_RETURN_FLOAT8(gg_expected_spend(&mc->gg, PG_GETARG_FLOAT8(1), PG_GETARG_FLOAT8(2)));
}

/*
 * cdp.clv(bg, gg, x, t_x, T, monetary, horizon, discount_rate, period):
 * sum over k = 1..horizon of expected spend * (E[Y(k*period)] -
 * E[Y((k-1)*period)]) / (1 + discount_rate)^k, as lifetimes computes it.
 */
PG_FUNCTION_INFO_V1(cdp_clv);
Datum
cdp_clv(PG_FUNCTION_ARGS)
{
	ModelCacheSlot *bg = cached_model(fcinfo, 0, 0, true);
	ModelCacheSlot *gg = cached_model(fcinfo, 1, 1, false);
	double		x = PG_GETARG_FLOAT8(2);
	double		t_x = PG_GETARG_FLOAT8(3);
	double		T = PG_GETARG_FLOAT8(4);
	double		monetary = PG_GETARG_FLOAT8(5);
	int32		horizon = PG_GETARG_INT32(6);
	double		rate = PG_GETARG_FLOAT8(7);
	double		period = PG_GETARG_FLOAT8(8);
	double		spend,
				pa,
				prev = 0.0,
				discount = 1.0,
				clv = 0.0;

	cdp_check_summary(x, t_x, T);
	if (horizon < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid horizon %d", horizon),
				 errdetail("The horizon counts discounting periods and must be >= 0.")));
	if (!isfinite(rate) || rate <= -1.0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid discount rate \"%g\"", rate),
				 errdetail("The discount rate per period must be greater than -1.")));
	if (!isfinite(period) || period <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid period \"%g\"", period),
				 errdetail("The period is the length of one discounting period in the summaries' time unit and must be positive.")));

	spend = gg_expected_spend(&gg->gg, x, monetary);
	pa = bgnbd_p_alive(&bg->bg, x, t_x, T);
	if (pa == 0.0)
		PG_RETURN_FLOAT8(0.0);
	for (int32 k = 1; k <= horizon; k++)
	{
		double		e = pa * bgnbd_expected(&bg->bg, k * period, x, T);

		discount /= 1.0 + rate;
		clv += spend * (e - prev) * discount;
		prev = e;
	}
	PG_RETURN_FLOAT8(clv);
}
