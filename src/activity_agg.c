/*-------------------------------------------------------------------------
 *
 * activity_agg.c
 *	  Building cdp.activity values: the activity_agg aggregate, merging two
 *	  summaries and trimming old day buckets.
 *
 * The aggregate state maps each event name (simplehash) to its totals and
 * an array of day buckets.  Events usually arrive in time order per name, so
 * a row either adds to the last bucket or appends one; out-of-order days
 * are appended too and the array is sorted and compacted when it fills up
 * and once in the final function.  The state serializes to the on-disk
 * format, so partial states travel between workers as ordinary summaries
 * and combining them is the same operation as merging summaries.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "common/int.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "activity.h"

typedef struct ActDayBucket
{
	int32		day;
	int32		count;
	float8		sum;
} ActDayBucket;

typedef struct ActKey
{
	const char *name;
	int			len;
} ActKey;

typedef struct ActEntry
{
	ActKey		key;
	uint32		hash;
	char		status;
	bool		sorted;			/* buckets ascend by day without repeats */
	int64		count;
	float8		sum;
	TimestampTz first_at;
	TimestampTz last_at;
	int32		trim_day;
	int			nbuckets;
	int			cap;
	ActDayBucket *buckets;
} ActEntry;

#define SH_PREFIX		actmap
#define SH_ELEMENT_TYPE ActEntry
#define SH_KEY_TYPE		ActKey
#define SH_KEY			key
#define SH_HASH_KEY(tb, k)	hash_bytes((const unsigned char *) (k).name, (k).len)
#define SH_EQUAL(tb, a, b)	((a).len == (b).len && memcmp((a).name, (b).name, (a).len) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a)	((a)->hash)
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

typedef struct ActState
{
	actmap_hash *map;
	MemoryContext ctx;			/* the aggregate context */
} ActState;

static ActState *
state_create(MemoryContext ctx)
{
	ActState   *st = MemoryContextAlloc(ctx, sizeof(ActState));

	st->ctx = ctx;
	/* profiles see a handful of event names */
	st->map = actmap_create(ctx, 8, NULL);
	return st;
}

static void
count_overflow(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("cdp.activity count out of range"),
			 errdetail("A day's count is limited to 2147483647 events of one name, the total to 2^63-1.")));
}

static float8
add_sum(float8 a, float8 b)
{
	float8		r = a + b;

	if (unlikely(isinf(r)))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("cdp.activity sum out of range"),
				 errdetail("The sum of the values of one event name overflows float8.")));
	return r;
}

static int
bucket_cmp(const void *a, const void *b)
{
	int32		x = ((const ActDayBucket *) a)->day;
	int32		y = ((const ActDayBucket *) b)->day;

	return (x > y) - (x < y);
}

/* Sort the buckets by day and add up repeated days. */
static void
entry_compact(ActEntry *e)
{
	int			n = 0;

	if (e->sorted)
		return;
	qsort(e->buckets, e->nbuckets, sizeof(ActDayBucket), bucket_cmp);
	for (int i = 0; i < e->nbuckets; i++)
	{
		if (n > 0 && e->buckets[n - 1].day == e->buckets[i].day)
		{
			if (pg_add_s32_overflow(e->buckets[n - 1].count, e->buckets[i].count,
									&e->buckets[n - 1].count))
				count_overflow();
			e->buckets[n - 1].sum = add_sum(e->buckets[n - 1].sum, e->buckets[i].sum);
		}
		else
			e->buckets[n++] = e->buckets[i];
	}
	e->nbuckets = n;
	e->sorted = true;
}

/* Add count events with sum on day to the entry's buckets. */
static void
entry_add_day(ActState *st, ActEntry *e, int32 day, int32 count, float8 sum)
{
	if (e->nbuckets > 0)
	{
		ActDayBucket *last = &e->buckets[e->nbuckets - 1];

		if (last->day == day)
		{
			if (pg_add_s32_overflow(last->count, count, &last->count))
				count_overflow();
			last->sum = add_sum(last->sum, sum);
			return;
		}
	}
	if (e->nbuckets == e->cap)
	{
		/* out-of-order input: compacting may make room without growing */
		if (!e->sorted && e->cap >= 16)
			entry_compact(e);
		if (e->nbuckets > e->cap / 2 || e->cap < 16)
		{
			int			cap = e->cap * 2;

			if ((Size) cap * sizeof(ActDayBucket) > MaxAllocSize)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("too many day buckets for one event name in cdp.activity_agg")));
			e->buckets = e->buckets
				? repalloc(e->buckets, cap * sizeof(ActDayBucket))
				: MemoryContextAlloc(st->ctx, cap * sizeof(ActDayBucket));
			e->cap = cap;
		}
	}
	/* compaction above may have changed the last bucket: check order now */
	if (e->nbuckets > 0 && e->buckets[e->nbuckets - 1].day >= day)
		e->sorted = false;
	e->buckets[e->nbuckets].day = day;
	e->buckets[e->nbuckets].count = count;
	e->buckets[e->nbuckets].sum = sum;
	e->nbuckets++;
}

static ActEntry *
state_entry(ActState *st, const char *name, int len)
{
	ActKey		key = {name, len};
	bool		found;
	ActEntry   *e = actmap_insert(st->map, key, &found);

	if (!found)
	{
		char	   *copy = MemoryContextAlloc(st->ctx, Max(len, 1));

		memcpy(copy, name, len);
		e->key.name = copy;
		e->sorted = true;
		e->count = 0;
		e->sum = 0.0;
		e->first_at = DT_NOEND;
		e->last_at = DT_NOBEGIN;
		e->trim_day = ACTIVITY_NO_TRIM;
		e->nbuckets = 0;
		e->cap = 2;
		e->buckets = MemoryContextAlloc(st->ctx, e->cap * sizeof(ActDayBucket));
	}
	return e;
}

/* Add a (packed or state) event's totals; buckets are added by the caller. */
static void
entry_add_totals(ActEntry *e, int64 count, float8 sum, TimestampTz first_at,
				 TimestampTz last_at, int32 trim_day)
{
	if (pg_add_s64_overflow(e->count, count, &e->count))
		count_overflow();
	e->sum = add_sum(e->sum, sum);
	if (first_at < e->first_at)
		e->first_at = first_at;
	if (last_at > e->last_at)
		e->last_at = last_at;
	if (trim_day > e->trim_day)
		e->trim_day = trim_day;
}

/* Add every event of a packed value to the state. */
static void
state_add_packed(ActState *st, const ActivityHeader *a)
{
	for (int i = 0; i < a->nevents; i++)
	{
		ActivityBuildEvent pe;
		ActEntry   *e;

		activity_unpack_event(a, i, &pe);
		e = state_entry(st, pe.name, pe.name_len);
		entry_add_totals(e, pe.count, pe.sum, pe.first_at, pe.last_at, pe.trim_day);
		for (int j = 0; j < pe.ndays; j++)
			entry_add_day(st, e, pe.days[j], pe.counts[j], pe.sums ? pe.sums[j] : 0.0);
	}
}

/* Pack the state (in the current memory context). */
static ActivityHeader *
state_pack(ActState *st)
{
	ActivityBuildEvent *ev;
	actmap_iterator it;
	ActEntry   *e;
	int			n = 0;

	ev = palloc(Max(st->map->members, 1) * sizeof(ActivityBuildEvent));
	actmap_start_iterate(st->map, &it);
	while ((e = actmap_iterate(st->map, &it)) != NULL)
	{
		ActivityBuildEvent *o = &ev[n++];
		bool		any_sum = false;

		entry_compact(e);
		o->name = e->key.name;
		o->name_len = e->key.len;
		o->count = e->count;
		o->sum = e->sum;
		o->first_at = e->first_at;
		o->last_at = e->last_at;
		o->trim_day = e->trim_day;
		o->ndays = e->nbuckets;
		o->days = palloc(Max(e->nbuckets, 1) * sizeof(int32));
		o->counts = palloc(Max(e->nbuckets, 1) * sizeof(int32));
		o->sums = palloc(Max(e->nbuckets, 1) * sizeof(float8));
		for (int j = 0; j < e->nbuckets; j++)
		{
			o->days[j] = e->buckets[j].day;
			o->counts[j] = e->buckets[j].count;
			o->sums[j] = e->buckets[j].sum;
			any_sum |= (o->sums[j] != 0.0);
		}
		if (!any_sum)
			o->sums = NULL;
	}
	return activity_pack(ev, n);
}

static MemoryContext
agg_context(FunctionCallInfo fcinfo, const char *fname)
{
	MemoryContext ctx;

	if (!AggCheckCallContext(fcinfo, &ctx))
		elog(ERROR, "%s called in non-aggregate context", fname);
	return ctx;
}

/* activity_agg transition: one event (NULL name or time stamp: skipped) */
PG_FUNCTION_INFO_V1(cdp_activity_agg_trans);
Datum
cdp_activity_agg_trans(PG_FUNCTION_ARGS)
{
	MemoryContext ctx = agg_context(fcinfo, "cdp_activity_agg_trans");
	ActState   *st = PG_ARGISNULL(0) ? NULL : (ActState *) PG_GETARG_POINTER(0);
	text	   *name;
	TimestampTz at;
	float8		value = 0.0;
	ActEntry   *e;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
	{
		if (st == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(st);
	}
	name = PG_GETARG_TEXT_PP(1);
	at = PG_GETARG_TIMESTAMPTZ(2);
	activity_check_timestamp(at);
	if (PG_NARGS() > 3 && !PG_ARGISNULL(3))
	{
		value = PG_GETARG_FLOAT8(3);
		if (!isfinite(value))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("value %s of event \"%s\" is not finite",
							float8out_internal(value), text_to_cstring(name)),
					 errhint("Pass NULL for events without a value.")));
	}
	if (st == NULL)
		st = state_create(ctx);

	e = state_entry(st, VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name));
	entry_add_totals(e, 1, value, at, at, ACTIVITY_NO_TRIM);
	entry_add_day(st, e, activity_day_of(at), 1, value);
	PG_RETURN_POINTER(st);
}

/* activity_agg final function: sort and pack once */
PG_FUNCTION_INFO_V1(cdp_activity_agg_final);
Datum
cdp_activity_agg_final(PG_FUNCTION_ARGS)
{
	ActState   *st;

	agg_context(fcinfo, "cdp_activity_agg_final");
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	st = (ActState *) PG_GETARG_POINTER(0);
	PG_RETURN_ACTIVITY_P(state_pack(st));
}

/* activity_agg combine function: adds the second state to the first */
PG_FUNCTION_INFO_V1(cdp_activity_agg_combine);
Datum
cdp_activity_agg_combine(PG_FUNCTION_ARGS)
{
	MemoryContext ctx = agg_context(fcinfo, "cdp_activity_agg_combine");
	ActState   *s1 = PG_ARGISNULL(0) ? NULL : (ActState *) PG_GETARG_POINTER(0);
	ActState   *s2 = PG_ARGISNULL(1) ? NULL : (ActState *) PG_GETARG_POINTER(1);
	actmap_iterator it;
	ActEntry   *e2;

	if (s2 == NULL)
	{
		if (s1 == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(s1);
	}
	if (s1 == NULL)
		s1 = state_create(ctx);
	actmap_start_iterate(s2->map, &it);
	while ((e2 = actmap_iterate(s2->map, &it)) != NULL)
	{
		ActEntry   *e1 = state_entry(s1, e2->key.name, e2->key.len);

		entry_add_totals(e1, e2->count, e2->sum, e2->first_at, e2->last_at, e2->trim_day);
		for (int j = 0; j < e2->nbuckets; j++)
			entry_add_day(s1, e1, e2->buckets[j].day, e2->buckets[j].count,
						  e2->buckets[j].sum);
	}
	PG_RETURN_POINTER(s1);
}

/* activity_agg serial function: the state in the on-disk format */
PG_FUNCTION_INFO_V1(cdp_activity_agg_serialize);
Datum
cdp_activity_agg_serialize(PG_FUNCTION_ARGS)
{
	agg_context(fcinfo, "cdp_activity_agg_serialize");
	PG_RETURN_BYTEA_P((bytea *) state_pack((ActState *) PG_GETARG_POINTER(0)));
}

/* activity_agg deserial function: validates, then rebuilds the state */
PG_FUNCTION_INFO_V1(cdp_activity_agg_deserialize);
Datum
cdp_activity_agg_deserialize(PG_FUNCTION_ARGS)
{
	MemoryContext ctx = agg_context(fcinfo, "cdp_activity_agg_deserialize");
	ActivityHeader *a = (ActivityHeader *) PG_GETARG_BYTEA_P(0);
	ActState   *st;

	activity_validate(a, VARSIZE(a), ERRCODE_DATA_CORRUPTED);
	st = state_create(ctx);
	state_add_packed(st, a);
	PG_RETURN_POINTER(st);
}

/* ---------------------------------------------------------------- merge */

/* Merge two events of the same name into out (fresh arrays). */
static void
merge_event(const ActivityBuildEvent *x, const ActivityBuildEvent *y,
			ActivityBuildEvent *out)
{
	int			i = 0,
				j = 0,
				n = 0;
	int			cap = x->ndays + y->ndays;
	bool		sums = x->sums != NULL || y->sums != NULL;

	out->name = x->name;
	out->name_len = x->name_len;
	if (pg_add_s64_overflow(x->count, y->count, &out->count))
		count_overflow();
	out->sum = add_sum(x->sum, y->sum);
	out->first_at = Min(x->first_at, y->first_at);
	out->last_at = Max(x->last_at, y->last_at);
	out->trim_day = Max(x->trim_day, y->trim_day);
	out->days = palloc(Max(cap, 1) * sizeof(int32));
	out->counts = palloc(Max(cap, 1) * sizeof(int32));
	out->sums = sums ? palloc(Max(cap, 1) * sizeof(float8)) : NULL;
	while (i < x->ndays || j < y->ndays)
	{
		bool		take_x = j >= y->ndays || (i < x->ndays && x->days[i] <= y->days[j]);
		bool		take_y = i >= x->ndays || (j < y->ndays && y->days[j] <= x->days[i]);
		int32		c = 0;
		float8		s = 0.0;

		if (take_x)
		{
			out->days[n] = x->days[i];
			c = x->counts[i];
			if (x->sums)
				s = x->sums[i];
			i++;
		}
		if (take_y)
		{
			out->days[n] = y->days[j];
			if (pg_add_s32_overflow(c, y->counts[j], &c))
				count_overflow();
			if (y->sums)
				s = add_sum(s, y->sums[j]);
			j++;
		}
		out->counts[n] = c;
		if (sums)
			out->sums[n] = s;
		n++;
	}
	out->ndays = n;
}

static int
name_cmp(const ActivityBuildEvent *x, const ActivityBuildEvent *y)
{
	int			r = memcmp(x->name, y->name, Min(x->name_len, y->name_len));

	if (r != 0)
		return r;
	return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* exact merge of two summaries; NULL acts as the empty summary */
PG_FUNCTION_INFO_V1(cdp_activity_merge);
Datum
cdp_activity_merge(PG_FUNCTION_ARGS)
{
	ActivityHeader *a,
			   *b;
	ActivityBuildEvent *ev;
	int			i = 0,
				j = 0,
				n = 0;

	if (PG_ARGISNULL(0) && PG_ARGISNULL(1))
		PG_RETURN_NULL();
	if (PG_ARGISNULL(0))
		PG_RETURN_DATUM(PG_GETARG_DATUM(1));
	if (PG_ARGISNULL(1))
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	a = PG_GETARG_ACTIVITY_P(0);
	b = PG_GETARG_ACTIVITY_P(1);
	activity_check_header(a);
	activity_check_header(b);

	/* both are sorted by name: one linear pass */
	ev = palloc(Max(a->nevents + b->nevents, 1) * sizeof(ActivityBuildEvent));
	while (i < a->nevents || j < b->nevents)
	{
		ActivityBuildEvent x,
					y;
		int			r;

		if (i < a->nevents)
			activity_unpack_event(a, i, &x);
		if (j < b->nevents)
			activity_unpack_event(b, j, &y);
		r = i >= a->nevents ? 1 : j >= b->nevents ? -1 : name_cmp(&x, &y);
		if (r < 0)
		{
			ev[n++] = x;
			i++;
		}
		else if (r > 0)
		{
			ev[n++] = y;
			j++;
		}
		else
		{
			merge_event(&x, &y, &ev[n++]);
			i++;
			j++;
		}
	}
	PG_RETURN_ACTIVITY_P(activity_pack(ev, n));
}

/* ---------------------------------------------------------------- trim */

/* fold day buckets of UTC days wholly before "before" into the totals */
PG_FUNCTION_INFO_V1(cdp_activity_trim);
Datum
cdp_activity_trim(PG_FUNCTION_ARGS)
{
	ActivityHeader *a = PG_GETARG_ACTIVITY_P(0);
	TimestampTz before = PG_GETARG_TIMESTAMPTZ(1);
	int32		cut;
	ActivityBuildEvent *ev;

	activity_check_header(a);
	if (TIMESTAMP_IS_NOBEGIN(before))
		PG_RETURN_ACTIVITY_P(a);
	/* a day is folded only when it ends at or before "before" */
	cut = TIMESTAMP_IS_NOEND(before) ? activity_max_day() + 1 : activity_day_of(before);
	cut = Max(Min(cut, activity_max_day() + 1), activity_min_day());

	ev = palloc(Max(a->nevents, 1) * sizeof(ActivityBuildEvent));
	for (int i = 0; i < a->nevents; i++)
	{
		ActivityBuildEvent *e = &ev[i];
		int			k = 0;
		int64		kept = 0;

		activity_unpack_event(a, i, e);
		while (k < e->ndays && e->days[k] < cut)
			k++;
		if (k > 0)
		{
			e->days += k;
			e->counts += k;
			if (e->sums)
				e->sums += k;
			e->ndays -= k;
		}
		for (int j = 0; j < e->ndays; j++)
			kept += e->counts[j];
		/* the trim day marks where folded events may lie */
		if (kept < e->count)
			e->trim_day = Max(e->trim_day, cut);
	}
	PG_RETURN_ACTIVITY_P(activity_pack(ev, a->nevents));
}
