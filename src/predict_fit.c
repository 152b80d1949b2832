/*-------------------------------------------------------------------------
 *
 * predict_fit.c
 *	  Maximum-likelihood fits of the BG/NBD and Gamma-Gamma models:
 *	  cdp.bgnbd_fit(x, t_x, T [, weight]) and
 *	  cdp.gammagamma_fit(x, monetary [, weight]).
 *
 * The aggregate state is a histogram: identical input rows are merged into
 * one entry with a summed weight, so a million customers whose summaries
 * coincide cost one likelihood term each per iteration.  States combine by
 * merging histograms, which makes both aggregates parallel.
 *
 * The final functions maximise the log-likelihood with NLopt's L-BFGS on the
 * logarithms of the parameters (which keeps them positive without
 * constraints), with analytic gradients.  The likelihoods are written in log
 * space (lgamma, log1p, and ln(e^A + e^B) as max + log1p(e^-|A-B|)) so that
 * large counts and long observation windows neither overflow nor lose the
 * small second term of the BG/NBD likelihood.  Terms that depend only on x
 * are computed once per distinct x.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <nlopt.h>

#include "common/hashfn.h"
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "predict.h"

#define HIST_FORMAT_VERSION 1
#define HIST_KIND_BGNBD 'B'
#define HIST_KIND_GG 'G'

/*
 * log-parameters stay inside this box (a factor of 9e6 either way; alpha
 * and gamma relative to the data's time and money scale); reaching it means
 * there is no interior maximum
 */
#define LOGPARAM_BOUND 16.0
#define FIT_MAXEVAL 5000

typedef struct HistKey
{
	double		k[3];			/* (x, t_x, T) or (x, monetary, 0) */
} HistKey;

typedef struct HistEntry
{
	HistKey		key;
	double		weight;
	char		status;
} HistEntry;

#define SH_PREFIX hist
#define SH_ELEMENT_TYPE HistEntry
#define SH_KEY_TYPE HistKey
#define SH_KEY key
#define SH_HASH_KEY(tb, key) hash_bytes((const unsigned char *) &(key), sizeof(HistKey))
#define SH_EQUAL(tb, a, b) (memcmp(&(a), &(b), sizeof(HistKey)) == 0)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

typedef struct HistState
{
	char		kind;
	int64		rows;			/* input rows with positive weight */
	double		weight;			/* sum of their weights */
	hist_hash  *hash;
} HistState;

/* A histogram entry flattened for the optimiser, sorted by x. */
typedef struct FitRow
{
	double		x;
	double		u;				/* t_x or monetary */
	double		v;				/* T */
	double		w;
} FitRow;

typedef struct FitData
{
	FitRow	   *rows;
	int			nrows;
	double		weight;
	double		scale;			/* mean T or mean spend: unit of alpha, gamma */
	nlopt_opt	opt;
} FitData;

/*
 * Digamma psi(x) for x > 0: the recurrence psi(x) = psi(x + 1) - 1/x up to
 * x >= 6, then the asymptotic series, accurate to about 1e-13.
 */
double
cdp_digamma(double x)
{
	double		r = 0.0;
	double		f;

	while (x < 6.0)
	{
		r -= 1.0 / x;
		x += 1.0;
	}
	f = 1.0 / (x * x);
	return r + log(x) - 0.5 / x
		- f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240 - f / 132))));
}

static HistState *
histstate_create(MemoryContext mcxt, char kind)
{
	HistState  *st = MemoryContextAllocZero(mcxt, sizeof(HistState));

	st->kind = kind;
	st->hash = hist_create(mcxt, 256, NULL);
	return st;
}

static inline void
hist_add(HistState *st, double k0, double k1, double k2, double w, int64 rows)
{
	HistKey		key;
	HistEntry  *e;
	bool		found;

	/* +0.0 turns -0.0 into 0.0 so equal values hash alike */
	key.k[0] = k0 + 0.0;
	key.k[1] = k1 + 0.0;
	key.k[2] = k2 + 0.0;
	e = hist_insert(st->hash, key, &found);
	if (!found)
		e->weight = 0.0;
	e->weight += w;
	st->weight += w;
	st->rows += rows;
}

static HistState *
hist_state_for(FunctionCallInfo fcinfo, char kind)
{
	MemoryContext aggcxt;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "%s called in non-aggregate context",
			 kind == HIST_KIND_BGNBD ? "bgnbd_fit" : "gammagamma_fit");
	if (PG_ARGISNULL(0))
		return histstate_create(aggcxt, kind);
	return (HistState *) PG_GETARG_POINTER(0);
}

/* Reads the optional weight argument; false means skip the row. */
static bool
read_weight(FunctionCallInfo fcinfo, int argno, double *w)
{
	*w = 1.0;
	if (PG_NARGS() <= argno)
		return true;
	if (PG_ARGISNULL(argno))
		return false;
	*w = PG_GETARG_FLOAT8(argno);
	if (isnan(*w) || *w < 0.0 || isinf(*w))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid weight \"%g\"", *w),
				 errdetail("A weight must be a finite number >= 0."),
				 errhint("Pass 1 for an ordinary customer, or the number of customers a row stands for.")));
	return *w > 0.0;
}

/* transition of cdp.bgnbd_fit: validates and counts one (x, t_x, T) row */
PG_FUNCTION_INFO_V1(cdp_bgnbd_fit_trans);
Datum
cdp_bgnbd_fit_trans(PG_FUNCTION_ARGS)
{
	HistState  *st = hist_state_for(fcinfo, HIST_KIND_BGNBD);
	double		x,
				t_x,
				T,
				w;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		PG_RETURN_POINTER(st);
	x = PG_GETARG_FLOAT8(1);
	t_x = PG_GETARG_FLOAT8(2);
	T = PG_GETARG_FLOAT8(3);
	if (!read_weight(fcinfo, 4, &w))
		PG_RETURN_POINTER(st);

	cdp_check_summary(x, t_x, T);
	hist_add(st, x, t_x, T, w, 1);
	PG_RETURN_POINTER(st);
}

/* transition of cdp.gammagamma_fit: validates and counts one (x, monetary) row */
PG_FUNCTION_INFO_V1(cdp_gammagamma_fit_trans);
Datum
cdp_gammagamma_fit_trans(PG_FUNCTION_ARGS)
{
	HistState  *st = hist_state_for(fcinfo, HIST_KIND_GG);
	double		x,
				m,
				w;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_POINTER(st);
	x = PG_GETARG_FLOAT8(1);
	m = PG_GETARG_FLOAT8(2);
	if (!read_weight(fcinfo, 3, &w))
		PG_RETURN_POINTER(st);

	if (!isfinite(x) || x < 0 || x != floor(x))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid customer summary (x = %g, monetary = %g)", x, m),
				 errdetail("x counts repeat purchases and must be a whole number >= 0.")));
	/* the spend model only sees customers with repeat purchases */
	if (x == 0)
		PG_RETURN_POINTER(st);
	if (!isfinite(m) || m <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid customer summary (x = %g, monetary = %g)", x, m),
				 errdetail("The Gamma-Gamma model needs a positive mean spend for customers with x > 0."),
				 errhint("Leave out customers whose repeat purchases are all free.")));

	hist_add(st, x, m, 0.0, w, 1);
	PG_RETURN_POINTER(st);
}

/* combine function of the fit aggregates: merges two histograms */
PG_FUNCTION_INFO_V1(cdp_predict_hist_combine);
Datum
cdp_predict_hist_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	HistState  *a = PG_ARGISNULL(0) ? NULL : (HistState *) PG_GETARG_POINTER(0);
	HistState  *b = PG_ARGISNULL(1) ? NULL : (HistState *) PG_GETARG_POINTER(1);
	hist_iterator it;
	HistEntry  *e;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "predict_hist_combine called in non-aggregate context");
	if (b == NULL)
	{
		if (a == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(a);
	}
	if (a == NULL)
		a = histstate_create(aggcxt, b->kind);
	if (a->kind != b->kind)
		elog(ERROR, "cannot combine fit states of different models");

	hist_start_iterate(b->hash, &it);
	while ((e = hist_iterate(b->hash, &it)) != NULL)
		hist_add(a, e->key.k[0], e->key.k[1], e->key.k[2], e->weight, 0);
	a->rows += b->rows;
	PG_RETURN_POINTER(a);
}

/* serialize function of the fit aggregates */
PG_FUNCTION_INFO_V1(cdp_predict_hist_serialize);
Datum
cdp_predict_hist_serialize(PG_FUNCTION_ARGS)
{
	HistState  *st = (HistState *) PG_GETARG_POINTER(0);
	StringInfoData buf;
	hist_iterator it;
	HistEntry  *e;

	pq_begintypsend(&buf);
	pq_sendbyte(&buf, HIST_FORMAT_VERSION);
	pq_sendbyte(&buf, st->kind);
	pq_sendint64(&buf, st->rows);
	pq_sendint64(&buf, (int64) st->hash->members);
	hist_start_iterate(st->hash, &it);
	while ((e = hist_iterate(st->hash, &it)) != NULL)
	{
		pq_sendfloat8(&buf, e->key.k[0]);
		pq_sendfloat8(&buf, e->key.k[1]);
		pq_sendfloat8(&buf, e->key.k[2]);
		pq_sendfloat8(&buf, e->weight);
	}
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* deserialize function of the fit aggregates; checks every length */
PG_FUNCTION_INFO_V1(cdp_predict_hist_deserialize);
Datum
cdp_predict_hist_deserialize(PG_FUNCTION_ARGS)
{
	bytea	   *raw = PG_GETARG_BYTEA_PP(0);
	MemoryContext aggcxt;
	StringInfoData buf;
	HistState  *st;
	int			version;
	char		kind;
	int64		rows;
	int64		n;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "predict_hist_deserialize called in non-aggregate context");

	buf.data = VARDATA_ANY(raw);
	buf.len = VARSIZE_ANY_EXHDR(raw);
	buf.maxlen = buf.len;
	buf.cursor = 0;

	if (buf.len < 18)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid fit state: %d bytes is too short", buf.len)));
	version = pq_getmsgbyte(&buf);
	if (version != HIST_FORMAT_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid fit state: unknown format version %d", version)));
	kind = pq_getmsgbyte(&buf);
	if (kind != HIST_KIND_BGNBD && kind != HIST_KIND_GG)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid fit state: unknown model kind %d", (int) kind)));
	rows = pq_getmsgint64(&buf);
	n = pq_getmsgint64(&buf);
	if (rows < 0 || n < 0 || n > (buf.len - buf.cursor) / 32 ||
		n * 32 != buf.len - buf.cursor)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid fit state: %lld entries do not match %d bytes",
						(long long) n, buf.len - buf.cursor)));

	st = histstate_create(aggcxt, kind);
	for (int64 i = 0; i < n; i++)
	{
		double		k0 = pq_getmsgfloat8(&buf);
		double		k1 = pq_getmsgfloat8(&buf);
		double		k2 = pq_getmsgfloat8(&buf);
		double		w = pq_getmsgfloat8(&buf);

		hist_add(st, k0, k1, k2, w, 0);
	}
	st->rows = rows;
	PG_RETURN_POINTER(st);
}

static int
fitrow_cmp(const void *a, const void *b)
{
	const FitRow *ra = a;
	const FitRow *rb = b;

	if (ra->x != rb->x)
		return ra->x < rb->x ? -1 : 1;
	if (ra->u != rb->u)
		return ra->u < rb->u ? -1 : 1;
	if (ra->v != rb->v)
		return ra->v < rb->v ? -1 : 1;
	return 0;
}

/* Flattens the histogram, sorted so that the result does not depend on hash order. */
static FitRow *
hist_rows(HistState *st, int *nrows)
{
	FitRow	   *rows = MemoryContextAllocHuge(CurrentMemoryContext,
											  sizeof(FitRow) * Max(st->hash->members, 1));
	hist_iterator it;
	HistEntry  *e;
	int			n = 0;

	hist_start_iterate(st->hash, &it);
	while ((e = hist_iterate(st->hash, &it)) != NULL)
	{
		rows[n].x = e->key.k[0];
		rows[n].u = e->key.k[1];
		rows[n].v = e->key.k[2];
		rows[n].w = e->weight;
		n++;
	}
	qsort(rows, n, sizeof(FitRow), fitrow_cmp);
	*nrows = n;
	return rows;
}

/*
 * BG/NBD log-likelihood of one customer (Fader, Hardie & Lee 2005, eq. 6):
 *   ln L = A + ln(exp(L1) + [x > 0] exp(L2))
 *   A  = lnG(r+x) - lnG(r) + r ln(alpha) + lnB(a, b+x) - lnB(a, b)
 *   L1 = -(r+x) ln(alpha+T)
 *   L2 = ln(a) - ln(b+x-1) - (r+x) ln(alpha+t_x)
 * Returns the mean log-likelihood and, if grad, its gradient with respect
 * to (ln r, ln alpha, ln a, ln b).
 */
static double
bgnbd_loglik(const FitData *d, const double *theta, double *grad)
{
	double		r = exp(theta[0]),
				alpha = exp(theta[1]) * d->scale,
				a = exp(theta[2]),
				b = exp(theta[3]);
	double		ll = 0.0;
	double		g[4] = {0, 0, 0, 0};
	double		lnalpha = log(alpha);
	double		lg_ab = lgamma(a + b) - lgamma(b) - lgamma(r),
				psi_r = cdp_digamma(r),
				psi_b = cdp_digamma(b),
				psi_ab = cdp_digamma(a + b);
	int			i = 0;

	while (i < d->nrows)
	{
		double		x = d->rows[i].x;
		double		rx = r + x;
		double		A = lgamma(rx) + r * lnalpha + lg_ab + lgamma(b + x) - lgamma(a + b + x);
		double		dA_r = cdp_digamma(rx) - psi_r + lnalpha;
		double		dA_alpha = r / alpha;
		double		psi_abx = cdp_digamma(a + b + x);
		double		dA_a = psi_ab - psi_abx;
		double		dA_b = psi_ab + cdp_digamma(b + x) - psi_b - psi_abx;
		double		c2 = x > 0 ? log(a) - log(b + x - 1) : 0.0;
		double		sw = 0.0;

		/* every row with this x */
		for (; i < d->nrows && d->rows[i].x == x; i++)
		{
			const FitRow *row = &d->rows[i];
			double		w = row->w;
			double		lT = log(alpha + row->v);
			double		L1 = -rx * lT;

			sw += w;
			if (x == 0)
			{
				ll += w * L1;
				g[0] += w * -lT;
				g[1] += w * -rx / (alpha + row->v);
			}
			else
			{
				double		lt = log(alpha + row->u);
				double		L2 = c2 - rx * lt;
				double		m = Max(L1, L2);
				double		e = exp(-fabs(L1 - L2));
				double		p1,
							p2;

				ll += w * (m + log1p(e));
				/* posterior weights of the two terms */
				p1 = L1 >= L2 ? 1.0 / (1.0 + e) : e / (1.0 + e);
				p2 = 1.0 - p1;
				g[0] += w * (p1 * -lT + p2 * -lt);
				g[1] += w * (p1 * -rx / (alpha + row->v) + p2 * -rx / (alpha + row->u));
				g[2] += w * p2 / a;
				g[3] += w * p2 * -1.0 / (b + x - 1);
			}
		}
		ll += sw * A;
		g[0] += sw * dA_r;
		g[1] += sw * dA_alpha;
		g[2] += sw * dA_a;
		g[3] += sw * dA_b;
	}

	if (grad)
	{
		grad[0] = g[0] * r / d->weight;
		grad[1] = g[1] * alpha / d->weight;
		grad[2] = g[2] * a / d->weight;
		grad[3] = g[3] * b / d->weight;
	}
	return ll / d->weight;
}

/*
 * Gamma-Gamma log-likelihood of one customer with x > 0 repeat purchases of
 * mean value m (Fader, Hardie & Lee 2005b; as in lifetimes):
 *   lnG(px+q) - lnG(px) - lnG(q) + q ln(g) + (px-1) ln(m) + px ln(x)
 *   - (px+q) ln(g + x m)
 */
static double
gg_loglik(const FitData *d, const double *theta, double *grad)
{
	double		p = exp(theta[0]),
				q = exp(theta[1]),
				gm = exp(theta[2]) * d->scale;
	double		ll = 0.0;
	double		g[3] = {0, 0, 0};
	double		lng = log(gm),
				lgq = lgamma(q),
				psi_q = cdp_digamma(q);
	int			i = 0;

	while (i < d->nrows)
	{
		double		x = d->rows[i].x;
		double		px = p * x;
		double		lnx = log(x);
		double		base = lgamma(px + q) - lgamma(px) - lgq + q * lng + px * lnx;
		double		psi_pxq = cdp_digamma(px + q);
		double		psi_px = cdp_digamma(px);
		double		sw = 0.0;

		for (; i < d->nrows && d->rows[i].x == x; i++)
		{
			const FitRow *row = &d->rows[i];
			double		w = row->w;
			double		lnm = log(row->u);
			double		den = gm + x * row->u;
			double		lden = log(den);

			sw += w;
			ll += w * ((px - 1) * lnm - (px + q) * lden);
			g[0] += w * x * (lnm - lden);
			g[1] += w * -lden;
			g[2] += w * -(px + q) / den;
		}
		ll += sw * base;
		g[0] += sw * x * (psi_pxq - psi_px + lnx);
		g[1] += sw * (psi_pxq - psi_q + lng);
		g[2] += sw * q / gm;
	}

	if (grad)
	{
		grad[0] = g[0] * p / d->weight;
		grad[1] = g[1] * q / d->weight;
		grad[2] = g[2] * gm / d->weight;
	}
	return ll / d->weight;
}

/* NLopt objectives: minimise the negative mean log-likelihood */
static double
bgnbd_objective(unsigned n, const double *theta, double *grad, void *data)
{
	FitData    *d = data;
	double		v = bgnbd_loglik(d, theta, grad);

	if (grad)
		for (unsigned i = 0; i < n; i++)
			grad[i] = -grad[i];
	/*
	 * An error cannot unwind through NLopt: on a cancel or termination
	 * request stop it and let CHECK_FOR_INTERRUPTS raise afterwards.
	 * InterruptPending alone is no reason: parallel workers' messages set
	 * it too.
	 */
	if (QueryCancelPending || ProcDiePending)
	{
		nlopt_force_stop(d->opt);
	}
	return isfinite(v) ? -v : HUGE_VAL;
}

static double
gg_objective(unsigned n, const double *theta, double *grad, void *data)
{
	FitData    *d = data;
	double		v = gg_loglik(d, theta, grad);

	if (grad)
		for (unsigned i = 0; i < n; i++)
			grad[i] = -grad[i];
	if (QueryCancelPending || ProcDiePending)
	{
		nlopt_force_stop(d->opt);
	}
	return isfinite(v) ? -v : HUGE_VAL;
}

static const char *
nlopt_status_name(nlopt_result res)
{
	switch (res)
	{
		case NLOPT_SUCCESS:
			return "success";
		case NLOPT_STOPVAL_REACHED:
			return "stopval_reached";
		case NLOPT_FTOL_REACHED:
			return "ftol_reached";
		case NLOPT_XTOL_REACHED:
			return "xtol_reached";
		case NLOPT_MAXEVAL_REACHED:
			return "maxeval_reached";
		case NLOPT_MAXTIME_REACHED:
			return "maxtime_reached";
		case NLOPT_FAILURE:
			return "failure";
		case NLOPT_INVALID_ARGS:
			return "invalid_args";
		case NLOPT_OUT_OF_MEMORY:
			return "out_of_memory";
		case NLOPT_ROUNDOFF_LIMITED:
			return "roundoff_limited";
		case NLOPT_FORCED_STOP:
			return "forced_stop";
		default:
			break;
	}
	return "unknown";
}

/* frees the NLopt object (malloc'd) if an error unwinds past it */
static void
fit_cleanup(void *arg)
{
	FitData    *d = arg;

	if (d->opt)
		nlopt_destroy(d->opt);
	d->opt = NULL;
}

typedef double (*LoglikFn) (const FitData *d, const double *theta, double *grad);

typedef struct FitResult
{
	double		theta[4];
	double		loglik;			/* total, not mean */
	int			evals;
	nlopt_result status;
	const char *algorithm;
} FitResult;

/* One NLopt run from res->theta; the result replaces it. */
static nlopt_result
optimize_once(FitData *d, nlopt_algorithm algorithm, unsigned n,
			  nlopt_func objective, FitResult *res)
{
	double		lb[4],
				ub[4],
				f = 0.0;
	nlopt_result status;

	for (unsigned i = 0; i < n; i++)
	{
		lb[i] = -LOGPARAM_BOUND;
		ub[i] = LOGPARAM_BOUND;
	}
	d->opt = nlopt_create(algorithm, n);
	if (d->opt == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	nlopt_set_min_objective(d->opt, objective, d);
	nlopt_set_lower_bounds(d->opt, lb);
	nlopt_set_upper_bounds(d->opt, ub);
	nlopt_set_ftol_rel(d->opt, 1e-13);
	nlopt_set_xtol_rel(d->opt, 1e-10);
	nlopt_set_maxeval(d->opt, FIT_MAXEVAL);
	status = nlopt_optimize(d->opt, res->theta, &f);
	res->evals += nlopt_get_numevals(d->opt);
	nlopt_destroy(d->opt);
	d->opt = NULL;
	CHECK_FOR_INTERRUPTS();
	return status;
}

static double
max_gradient(FitData *d, unsigned n, LoglikFn loglik, FitResult *res)
{
	double		grad[4],
				gmax = 0.0;

	res->loglik = loglik(d, res->theta, grad) * d->weight;
	for (unsigned i = 0; i < n; i++)
		gmax = Max(gmax, fabs(grad[i]));
	return isfinite(gmax) ? gmax : HUGE_VAL;
}

/*
 * Smallest Cholesky pivot of minus the Hessian of the mean log-likelihood
 * at theta (central differences of the analytic gradient): <= 0 or tiny
 * means the point is no strict maximum, as on the ridges that data too
 * thin to identify all parameters produce.
 */
static double
min_curvature(FitData *d, unsigned n, LoglikFn loglik, const double *theta)
{
	double		h[4][4],
				gp[4],
				gm[4],
				t[4],
				minpiv = HUGE_VAL;
	const double step = 1e-5;

	for (unsigned j = 0; j < n; j++)
	{
		memcpy(t, theta, sizeof(double) * n);
		t[j] = theta[j] + step;
		loglik(d, t, gp);
		t[j] = theta[j] - step;
		loglik(d, t, gm);
		for (unsigned i = 0; i < n; i++)
			h[i][j] = -(gp[i] - gm[i]) / (2 * step);
	}
	/* symmetrise, then Cholesky in place */
	for (unsigned i = 0; i < n; i++)
		for (unsigned j = 0; j < i; j++)
			h[i][j] = h[j][i] = (h[i][j] + h[j][i]) / 2;
	for (unsigned j = 0; j < n; j++)
	{
		double		piv = h[j][j];

		for (unsigned k = 0; k < j; k++)
			piv -= h[j][k] * h[j][k];
		if (!(piv > 0.0))
			return piv;
		minpiv = Min(minpiv, piv);
		piv = sqrt(piv);
		h[j][j] = piv;
		for (unsigned i = j + 1; i < n; i++)
		{
			double		v = h[i][j];

			for (unsigned k = 0; k < j; k++)
				v -= h[i][k] * h[j][k];
			h[i][j] = v / piv;
		}
	}
	return minpiv;
}

/*
 * Maximises the likelihood and checks that the optimiser converged to an
 * interior maximum; anything else is an error, never numbers.
 *
 * L-BFGS with the analytic gradient converges in a few dozen evaluations.
 * When its line search gives up (NLopt's "failure" or "roundoff limited",
 * typical on a flat ridge), Nelder-Mead restarts from where it stopped.
 * Either way the result counts as converged only if the gradient of the
 * mean log-likelihood (per customer, in log-parameters) is below 1e-5
 * and the Hessian there is negative definite.
 */
static void
run_fit(FitData *d, const char *model, const char **names, unsigned n,
		const double *theta0, nlopt_func objective, LoglikFn loglik,
		FitResult *res)
{
	/* d and cb live in this context, so they outlive the callback */
	MemoryContextCallback *cb = palloc0(sizeof(MemoryContextCallback));
	double		gmax,
				curv;
	nlopt_result status;

	cb->func = fit_cleanup;
	cb->arg = d;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);

	res->evals = 0;
	res->algorithm = "lbfgs";
	for (unsigned i = 0; i < n; i++)
		res->theta[i] = theta0[i];

	status = optimize_once(d, NLOPT_LD_LBFGS, n, objective, res);
	gmax = max_gradient(d, n, loglik, res);
	if (status == NLOPT_FAILURE || status == NLOPT_ROUNDOFF_LIMITED)
	{
		for (unsigned i = 0; i < n; i++)
			if (!isfinite(res->theta[i]))
				res->theta[i] = theta0[i];
		res->algorithm = "lbfgs+neldermead";
		status = optimize_once(d, NLOPT_LN_NELDERMEAD, n, objective, res);
		gmax = max_gradient(d, n, loglik, res);
	}
	res->status = status;

	/*
	 * BG/NBD on data without dropout heads for a -> 0, b -> infinity: the
	 * dropout probability a / (a + b) vanishes and the model degenerates to
	 * the NBD.  Say so rather than report a flat ridge.
	 */
	if (n == 4 && res->theta[2] - res->theta[3] < -9.0 &&
		(status < 0 || gmax >= 1e-5 ||
		 !(min_curvature(d, n, loglik, res->theta) > 1e-9)))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("%s fit did not converge: the data show no dropout", model),
				 errdetail("The dropout probability a / (a + b) tends to 0, where BG/NBD degenerates into the NBD model."),
				 errhint("BG/NBD needs customers who stop buying; check the observation window and the customer mapping.")));
	for (unsigned i = 0; i < n; i++)
		if (fabs(res->theta[i]) >= LOGPARAM_BOUND - 1e-3)
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("%s fit did not converge: %s runs off to %s",
							model, names[i], res->theta[i] > 0 ? "infinity" : "zero"),
					 errdetail("The likelihood of these data has no maximum with finite, positive parameters."),
					 errhint("Fit on more customers; thin or degenerate data do not identify every parameter.")));
	if (status == NLOPT_MAXEVAL_REACHED || status == NLOPT_MAXTIME_REACHED ||
		status == NLOPT_FORCED_STOP || status == NLOPT_INVALID_ARGS ||
		status == NLOPT_OUT_OF_MEMORY || status == NLOPT_FAILURE ||
		gmax >= 1e-5 || !isfinite(res->loglik))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("%s fit did not converge: %s after %d evaluations",
						model, nlopt_status_name(status), res->evals),
				 errdetail("The largest gradient component at the last point is %g.", gmax),
				 errhint("Fit on more customers; a handful of summaries rarely identifies the model.")));
	curv = min_curvature(d, n, loglik, res->theta);
	if (!(curv > 1e-9))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("%s fit did not converge: the maximum is not identified", model),
				 errdetail("The log-likelihood is flat along some direction at the last point (curvature %g).", curv),
				 errhint("Fit on more customers; a handful of summaries rarely identifies the model.")));
}

static void
push_key(JsonbParseState **st, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	pushJsonbValue(st, WJB_KEY, &k);
}

static void
push_float(JsonbParseState **st, const char *key, double v)
{
	JsonbValue	val;

	push_key(st, key);
	val.type = jbvNumeric;
	val.val.numeric = DatumGetNumeric(DirectFunctionCall1(float8_numeric, Float8GetDatum(v)));
	pushJsonbValue(st, WJB_VALUE, &val);
}

static void
push_int(JsonbParseState **st, const char *key, int64 v)
{
	JsonbValue	val;

	push_key(st, key);
	val.type = jbvNumeric;
	val.val.numeric = int64_to_numeric(v);
	pushJsonbValue(st, WJB_VALUE, &val);
}

static void
push_string(JsonbParseState **st, const char *key, const char *v)
{
	JsonbValue	val;

	push_key(st, key);
	val.type = jbvString;
	val.val.string.val = (char *) v;
	val.val.string.len = strlen(v);
	pushJsonbValue(st, WJB_VALUE, &val);
}

static Jsonb *
model_jsonb(const char *model, const char **names, const double *params, int n,
			const FitResult *res, const HistState *st, int nrows)
{
	JsonbParseState *ps = NULL;
	JsonbValue *v;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	push_string(&ps, "model", model);
	for (int i = 0; i < n; i++)
		push_float(&ps, names[i], params[i]);
	push_float(&ps, "log_likelihood", res->loglik);
	push_float(&ps, "customers", st->weight);
	push_int(&ps, "rows", st->rows);
	push_int(&ps, "distinct_rows", nrows);
	push_int(&ps, "iterations", res->evals);
	push_string(&ps, "status", nlopt_status_name(res->status));
	push_string(&ps, "algorithm", res->algorithm);
	v = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(v);
}

/* final function of cdp.bgnbd_fit: maximum-likelihood r, alpha, a, b */
PG_FUNCTION_INFO_V1(cdp_bgnbd_fit_final);
Datum
cdp_bgnbd_fit_final(PG_FUNCTION_ARGS)
{
	HistState  *st;
	FitData    *d = palloc0(sizeof(FitData));
	FitResult	res;
	double		theta0[4];
	double		params[4];
	double		sumT = 0.0;
	static const char *names[] = {"r", "alpha", "a", "b"};

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	st = (HistState *) PG_GETARG_POINTER(0);
	if (st->weight <= 0.0)
		PG_RETURN_NULL();

	d->rows = hist_rows(st, &d->nrows);
	d->weight = st->weight;
	for (int i = 0; i < d->nrows; i++)
		sumT += d->rows[i].w * d->rows[i].v;
	/* rows are sorted by x: the last has the largest */
	if (d->rows[d->nrows - 1].x == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("BG/NBD fit did not converge: no customer has a repeat purchase"),
				 errdetail("Without repeat purchases the likelihood grows without bound as the purchase rate goes to zero.")));

	/* start at r = a = b = 1 and alpha at the mean T (the time scale) */
	theta0[0] = 0.0;
	d->scale = sumT > 0 ? sumT / d->weight : 1.0;
	theta0[1] = 0.0;
	theta0[2] = 0.0;
	theta0[3] = 0.0;
	run_fit(d, "BG/NBD", names, 4, theta0, bgnbd_objective, bgnbd_loglik, &res);

	for (int i = 0; i < 4; i++)
		params[i] = exp(res.theta[i]);
	params[1] *= d->scale;
	PG_RETURN_JSONB_P(model_jsonb("bgnbd", names, params, 4, &res, st, d->nrows));
}

/* final function of cdp.gammagamma_fit: maximum-likelihood p, q, gamma */
PG_FUNCTION_INFO_V1(cdp_gammagamma_fit_final);
Datum
cdp_gammagamma_fit_final(PG_FUNCTION_ARGS)
{
	HistState  *st;
	FitData    *d = palloc0(sizeof(FitData));
	FitResult	res;
	double		theta0[3];
	double		params[3];
	double		sumM = 0.0;
	static const char *names[] = {"p", "q", "gamma"};

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	st = (HistState *) PG_GETARG_POINTER(0);
	if (st->weight <= 0.0)
		PG_RETURN_NULL();

	d->rows = hist_rows(st, &d->nrows);
	d->weight = st->weight;
	for (int i = 0; i < d->nrows; i++)
		sumM += d->rows[i].w * d->rows[i].u;

	/* p = q = 1 and gamma at the mean spend (the money scale) */
	theta0[0] = 0.0;
	theta0[1] = 0.0;
	d->scale = sumM / d->weight;
	theta0[2] = 0.0;
	run_fit(d, "Gamma-Gamma", names, 3, theta0, gg_objective, gg_loglik, &res);

	for (int i = 0; i < 3; i++)
		params[i] = exp(res.theta[i]);
	params[2] *= d->scale;
	PG_RETURN_JSONB_P(model_jsonb("gammagamma", names, params, 3, &res, st, d->nrows));
}

static double
model_param(Jsonb *model, const char *kind, const char *key)
{
	JsonbValue	v;
	double		d = NAN;

	if (getKeyJsonValueFromContainer(&model->root, key, strlen(key), &v) &&
		v.type == jbvNumeric)
		d = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
											   NumericGetDatum(v.val.numeric)));
	if (!(d > 0.0) || !isfinite(d))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s model: \"%s\" is missing or not a positive number", kind, key),
				 errhint("Pass the value returned by cdp.%s_fit.", kind)));
	return d;
}

static void
check_model_kind(Jsonb *model, const char *kind)
{
	JsonbValue	v;

	if (!JB_ROOT_IS_OBJECT(model) ||
		!getKeyJsonValueFromContainer(&model->root, "model", 5, &v) ||
		v.type != jbvString || v.val.string.len != strlen(kind) ||
		memcmp(v.val.string.val, kind, v.val.string.len) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("model is not a %s model", kind),
				 errdetail("The model's \"model\" key must be \"%s\".", kind),
				 errhint("Pass the value returned by cdp.%s_fit.", kind)));
}

void
cdp_bgnbd_from_jsonb(Jsonb *model, BgnbdParams *out)
{
	check_model_kind(model, "bgnbd");
	out->r = model_param(model, "bgnbd", "r");
	out->alpha = model_param(model, "bgnbd", "alpha");
	out->a = model_param(model, "bgnbd", "a");
	out->b = model_param(model, "bgnbd", "b");
}

void
cdp_gammagamma_from_jsonb(Jsonb *model, GammaGammaParams *out)
{
	check_model_kind(model, "gammagamma");
	out->p = model_param(model, "gammagamma", "p");
	out->q = model_param(model, "gammagamma", "q");
	out->gamma = model_param(model, "gammagamma", "gamma");
}
