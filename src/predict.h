/*-------------------------------------------------------------------------
 *
 * predict.h
 *	  Buy-till-you-die models shared by predict.c (summaries, predictions)
 *	  and predict_fit.c (likelihoods, NLopt fitting).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CDP_PREDICT_H
#define CDP_PREDICT_H

#include "fmgr.h"
#include "utils/jsonb.h"

/* BG/NBD parameters (Fader, Hardie & Lee 2005). */
typedef struct BgnbdParams
{
	double		r;
	double		alpha;
	double		a;
	double		b;
} BgnbdParams;

/* Gamma-Gamma spend parameters (Fader, Hardie & Lee 2005b). */
typedef struct GammaGammaParams
{
	double		p;
	double		q;
	double		gamma;
} GammaGammaParams;

/* errors for impossible (x, t_x, T) summaries */
extern void cdp_check_summary(double x, double t_x, double T);

/* digamma function; the C library has lgamma but no psi */
extern double cdp_digamma(double x);

/* model values (jsonb) read back, with errors naming the bad field */
extern void cdp_bgnbd_from_jsonb(Jsonb *model, BgnbdParams *out);
extern void cdp_gammagamma_from_jsonb(Jsonb *model, GammaGammaParams *out);

#endif							/* CDP_PREDICT_H */
