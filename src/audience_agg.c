/*-------------------------------------------------------------------------
 *
 * audience_agg.c
 *	  Aggregates building cdp.audience values: audience_agg(bigint),
 *	  audience_union_agg(audience) and audience_intersect_agg(audience).
 *
 * The transition state is one CRoaring bitmap owned by the aggregate memory
 * context (its reset callback frees it).  Ids are buffered and handed to
 * CRoaring in batches; audience inputs are merged in place and their
 * temporary bitmaps freed at once, so nothing piles up across rows.  All
 * three run in parallel: the state travels between processes in the stored
 * form (version byte, portable roaring bitmap).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/memutils.h"

#include "audience.h"

/* Ids buffered per state before a roaring_bitmap_add_many call. */
#define AGG_BATCH	256

typedef struct AudienceAggState
{
	AudienceBitmap *b;
	int			nbuf;
	uint32		buf[AGG_BATCH];
} AudienceAggState;

static MemoryContext
agg_context(FunctionCallInfo fcinfo, const char *name)
{
	MemoryContext aggcxt;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "%s called in non-aggregate context", name);
	return aggcxt;
}

static AudienceAggState *
agg_state_new(MemoryContext cxt)
{
	AudienceAggState *st = MemoryContextAlloc(cxt, sizeof(AudienceAggState));

	st->b = NULL;
	st->nbuf = 0;
	return st;
}

static void
agg_state_flush(AudienceAggState *st)
{
	if (st->nbuf > 0)
	{
		roaring_bitmap_add_many(st->b->r, st->nbuf, st->buf);
		st->nbuf = 0;
	}
}

/* transition of audience_agg(bigint): NULL ids are skipped */
PG_FUNCTION_INFO_V1(cdp_audience_agg_trans);
Datum
cdp_audience_agg_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = agg_context(fcinfo, "audience_agg_trans");
	AudienceAggState *st = PG_ARGISNULL(0) ? NULL :
		(AudienceAggState *) PG_GETARG_POINTER(0);
	uint32		id;

	if (PG_ARGISNULL(1))
	{
		if (st == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(st);
	}
	id = audience_check_id(PG_GETARG_INT64(1), "profile id");
	if (st == NULL)
	{
		st = agg_state_new(aggcxt);
		st->b = audience_bitmap_create(aggcxt);
	}
	st->buf[st->nbuf++] = id;
	if (st->nbuf == AGG_BATCH)
		agg_state_flush(st);
	PG_RETURN_POINTER(st);
}

/* transition of audience_union_agg(audience) */
PG_FUNCTION_INFO_V1(cdp_audience_union_agg_trans);
Datum
cdp_audience_union_agg_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = agg_context(fcinfo, "audience_union_agg_trans");
	AudienceAggState *st = PG_ARGISNULL(0) ? NULL :
		(AudienceAggState *) PG_GETARG_POINTER(0);
	AudienceBitmap *in;

	if (PG_ARGISNULL(1))
	{
		if (st == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(st);
	}
	if (st == NULL)
	{
		/* the first input becomes the state */
		st = agg_state_new(aggcxt);
		st->b = audience_from_datum(aggcxt, PG_GETARG_DATUM(1));
		PG_RETURN_POINTER(st);
	}
	in = audience_from_datum(CurrentMemoryContext, PG_GETARG_DATUM(1));
	roaring_bitmap_or_inplace(st->b->r, in->r);
	audience_bitmap_free(in);
	PG_RETURN_POINTER(st);
}

/* transition of audience_intersect_agg(audience) */
PG_FUNCTION_INFO_V1(cdp_audience_intersect_agg_trans);
Datum
cdp_audience_intersect_agg_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = agg_context(fcinfo, "audience_intersect_agg_trans");
	AudienceAggState *st = PG_ARGISNULL(0) ? NULL :
		(AudienceAggState *) PG_GETARG_POINTER(0);
	AudienceBitmap *in;

	if (PG_ARGISNULL(1))
	{
		if (st == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(st);
	}
	if (st == NULL)
	{
		st = agg_state_new(aggcxt);
		st->b = audience_from_datum(aggcxt, PG_GETARG_DATUM(1));
		PG_RETURN_POINTER(st);
	}
	/* once empty, always empty: skip deserializing the rest */
	if (roaring_bitmap_is_empty(st->b->r))
		PG_RETURN_POINTER(st);
	in = audience_from_datum(CurrentMemoryContext, PG_GETARG_DATUM(1));
	roaring_bitmap_and_inplace(st->b->r, in->r);
	audience_bitmap_free(in);
	PG_RETURN_POINTER(st);
}

/*
 * Combine: state2 comes from the deserial function and is ours to consume,
 * so its bitmap is taken over or freed right away.
 */
static Datum
agg_combine(FunctionCallInfo fcinfo, bool intersect)
{
	MemoryContext aggcxt = agg_context(fcinfo, "audience aggregate combine");
	AudienceAggState *st1 = PG_ARGISNULL(0) ? NULL :
		(AudienceAggState *) PG_GETARG_POINTER(0);
	AudienceAggState *st2 = PG_ARGISNULL(1) ? NULL :
		(AudienceAggState *) PG_GETARG_POINTER(1);

	if (st2 == NULL)
	{
		if (st1 == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(st1);
	}
	agg_state_flush(st2);
	if (st1 == NULL)
	{
		st1 = agg_state_new(aggcxt);
		st1->b = audience_bitmap_holder(aggcxt);
		st1->b->r = st2->b->r;
		st2->b->r = NULL;
		PG_RETURN_POINTER(st1);
	}
	agg_state_flush(st1);
	if (intersect)
		roaring_bitmap_and_inplace(st1->b->r, st2->b->r);
	else
		roaring_bitmap_or_inplace(st1->b->r, st2->b->r);
	audience_bitmap_free(st2->b);
	PG_RETURN_POINTER(st1);
}

/* combine of audience_agg and audience_union_agg */
PG_FUNCTION_INFO_V1(cdp_audience_agg_combine);
Datum
cdp_audience_agg_combine(PG_FUNCTION_ARGS)
{
	return agg_combine(fcinfo, false);
}

/* combine of audience_intersect_agg */
PG_FUNCTION_INFO_V1(cdp_audience_intersect_agg_combine);
Datum
cdp_audience_intersect_agg_combine(PG_FUNCTION_ARGS)
{
	return agg_combine(fcinfo, true);
}

/*
 * Final: the state as a cdp.audience.  Flushing and run-optimizing change
 * only the state's representation, never its members, so the state stays
 * usable (window aggregates call this repeatedly).
 */
PG_FUNCTION_INFO_V1(cdp_audience_agg_final);
Datum
cdp_audience_agg_final(PG_FUNCTION_ARGS)
{
	AudienceAggState *st;

	(void) agg_context(fcinfo, "audience_agg_final");
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	st = (AudienceAggState *) PG_GETARG_POINTER(0);
	agg_state_flush(st);
	PG_RETURN_POINTER(audience_to_varlena(st->b));
}

/* serial: the state as bytea in the stored form */
PG_FUNCTION_INFO_V1(cdp_audience_agg_serialize);
Datum
cdp_audience_agg_serialize(PG_FUNCTION_ARGS)
{
	AudienceAggState *st;

	(void) agg_context(fcinfo, "audience_agg_serialize");
	st = (AudienceAggState *) PG_GETARG_POINTER(0);
	agg_state_flush(st);
	PG_RETURN_BYTEA_P(audience_to_varlena(st->b));
}

/* deserial: bytea in the stored form back to a state (validated) */
PG_FUNCTION_INFO_V1(cdp_audience_agg_deserialize);
Datum
cdp_audience_agg_deserialize(PG_FUNCTION_ARGS)
{
	AudienceAggState *st;

	(void) agg_context(fcinfo, "audience_agg_deserialize");
	st = agg_state_new(CurrentMemoryContext);
	st->b = audience_from_datum(CurrentMemoryContext, PG_GETARG_DATUM(0));
	PG_RETURN_POINTER(st);
}
