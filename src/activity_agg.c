/*-------------------------------------------------------------------------
 *
 * activity_agg.c
 *	  Building cdp.activity values: the activity_agg aggregate, merging two
 *	  summaries and trimming old day buckets.
 *
 * A profile sees a handful of events, and a GROUP BY over all profiles keeps
 * a million states in memory at once, so the transition state is small and
 * flat: one array of 16-byte rows, appended to in arrival order, one per
 * event plus one per non-zero value.  Event names are interned once per
 * query in a dictionary kept in the function's fn_extra (query lifetime),
 * and rows refer to them by id.  The final function sorts the rows once
 * (by event, then time, a day's values by value) and folds them into day
 * buckets, so float sums do not depend on the order the rows arrived in,
 * nor on how a parallel plan split them (short of the compaction below).
 *
 * A group with very many rows is compacted when its array fills up: the
 * values of one event on one UTC day become one row with their sum, and a
 * run of three or more of its events that day becomes two rows, one with
 * the earliest time stamp and all but one of the count, one with the
 * latest, so counts and sums per day and first and last time stamps stay
 * exact.
 *
 * Partial states travel between processes in their own versioned format
 * (names written out, rows referring to them by index), checked in full
 * when read back.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "common/int.h"
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "activity.h"

/* first byte of a serialized aggregate state */
#define ACT_STATE_VERSION	1

/* ---------------------------------------------------------------- names */

typedef struct ActKey
{
	const char *name;
	int			len;
} ActKey;

typedef struct ActDictEntry
{
	ActKey		key;
	uint32		hash;
	int32		id;
	char		status;
} ActDictEntry;

#define SH_PREFIX		actdict
#define SH_ELEMENT_TYPE ActDictEntry
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

/* Event names of one query, by id; lives as long as the query. */
typedef struct ActDict
{
	MemoryContext cxt;
	actdict_hash *map;
	int32		n;
	int32		cap;
	ActKey	   *names;			/* by id */
	int32		last_id;		/* most recent lookup, -1 if none */
} ActDict;

static ActDict *
dict_get(FunctionCallInfo fcinfo)
{
	ActDict    *d = (ActDict *) fcinfo->flinfo->fn_extra;

	if (d == NULL)
	{
		MemoryContext cxt = fcinfo->flinfo->fn_mcxt;

		d = MemoryContextAlloc(cxt, sizeof(ActDict));
		d->cxt = cxt;
		d->map = actdict_create(cxt, 16, NULL);
		d->n = 0;
		d->cap = 16;
		d->names = MemoryContextAlloc(cxt, d->cap * sizeof(ActKey));
		d->last_id = -1;
		fcinfo->flinfo->fn_extra = d;
	}
	return d;
}

/* Id of a name, interning it on first sight. */
static int32
dict_intern(ActDict *d, const char *name, int len)
{
	ActKey		key = {name, len};
	ActDictEntry *e;
	bool		found;

	/* events of one profile often repeat their name */
	if (d->last_id >= 0 && d->names[d->last_id].len == len &&
		memcmp(d->names[d->last_id].name, name, len) == 0)
		return d->last_id;

	e = actdict_lookup(d->map, key);
	if (e == NULL)
	{
		char	   *copy = MemoryContextAlloc(d->cxt, Max(len, 1));

		/* allocate everything before the table refers to it */
		memcpy(copy, name, len);
		key.name = copy;
		if (d->n == d->cap)
		{
			d->names = repalloc(d->names, d->cap * 2 * sizeof(ActKey));
			d->cap *= 2;
		}
		e = actdict_insert(d->map, key, &found);
		Assert(!found);
		e->id = d->n;
		d->names[d->n++] = key;
	}
	d->last_id = e->id;
	return e->id;
}

/* ---------------------------------------------------------------- state */

/*
 * A row is an event (a count row: time stamp and count) or, for events
 * with a non-zero value, that value on its UTC day (a value row, in the
 * same array, marked by a negative ev).  Most events carry no value, so
 * most take 16 bytes.
 */
typedef struct ActRow
{
	union
	{
		TimestampTz ts;			/* count row */
		float8		value;		/* value row: a value, or a folded sum */
	}			u;
	int32		ev;				/* count row: id in the state's dictionary;
								 * value row: -1 - id */
	int32		n;				/* count row: count (1, or a folded run's);
								 * value row: UTC day */
} ActRow;

#define ROW_IS_VALUE(r)	((r)->ev < 0)
#define ROW_EV(r)		((r)->ev >= 0 ? (r)->ev : -1 - (r)->ev)
#define ROW_DAY(r)		(ROW_IS_VALUE(r) ? (r)->n : activity_day_of((r)->u.ts))

typedef struct ActState
{
	ActDict    *dict;
	int32		nrows;
	int32		cap;
	ActRow		rows[FLEXIBLE_ARRAY_MEMBER];
} ActState;

StaticAssertDecl(sizeof(ActRow) == 16, "ActRow must be 16 bytes");

#define STATE_SIZE(cap)		(offsetof(ActState, rows) + (Size) (cap) * sizeof(ActRow))
/* compact a full array of at least this many rows before growing it */
#define COMPACT_MIN_ROWS	1024

/*
 * Capacity that fills an allocation of the smallest power of two holding
 * "need" rows (palloc rounds small requests up to a power of two anyway).
 */
static int32
state_cap_for(int64 need)
{
	Size		size = 128;

	while (size < STATE_SIZE(need))
		size *= 2;
	if (size > MaxAllocSize)
	{
		if (STATE_SIZE(need) > MaxAllocSize)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many events in one group of cdp.activity_agg"),
					 errdetail("One group can hold about %zu events of distinct time stamps.",
							   (MaxAllocSize - offsetof(ActState, rows)) / (2 * sizeof(ActRow)))));
		size = MaxAllocSize;
	}
	return (int32) ((size - offsetof(ActState, rows)) / sizeof(ActRow));
}

static ActState *
state_create(MemoryContext ctx, ActDict *dict, int64 need)
{
	int32		cap = state_cap_for(need);
	ActState   *st = MemoryContextAlloc(ctx, STATE_SIZE(cap));

	st->dict = dict;
	st->nrows = 0;
	st->cap = cap;
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

/*
 * Order: event, then time (a value row sorts at the start of its day,
 * before the count rows of that day), then the value or count.  A total
 * order, so sums do not depend on the order rows arrived in.
 */
static inline int
row_cmp(const ActRow *a, const ActRow *b)
{
	int32		ea = ROW_EV(a),
				eb = ROW_EV(b);
	int64		ta,
				tb;

	if (ea != eb)
		return ea < eb ? -1 : 1;
	ta = ROW_IS_VALUE(a) ? (int64) a->n * USECS_PER_DAY : a->u.ts;
	tb = ROW_IS_VALUE(b) ? (int64) b->n * USECS_PER_DAY : b->u.ts;
	if (ta != tb)
		return ta < tb ? -1 : 1;
	if (ROW_IS_VALUE(a) != ROW_IS_VALUE(b))
		return ROW_IS_VALUE(a) ? -1 : 1;
	if (ROW_IS_VALUE(a))
	{
		if (a->u.value != b->u.value)
			return a->u.value < b->u.value ? -1 : 1;
		return 0;
	}
	return (a->n > b->n) - (a->n < b->n);
}

#define ST_SORT			act_sort_rows
#define ST_ELEMENT_TYPE ActRow
#define ST_COMPARE(a, b)	row_cmp(a, b)
#define ST_SCOPE		static
#define ST_DECLARE
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * Sort the rows, then fold each event's rows of one UTC day: its value rows
 * into one with their sum, and a run of three or more count rows into two,
 * the earliest with all but one of the count and the latest with one.
 */
static void
state_compact(ActState *st)
{
	int32		n = 0;
	int32		i = 0;

	act_sort_rows(st->rows, st->nrows);
	while (i < st->nrows)
	{
		ActRow	   *r = &st->rows[i];
		int32		ev = ROW_EV(r);
		int32		day = ROW_DAY(r);
		int32		j = i;
		int32		nvalues = 0;
		float8		sum = 0.0;
		int32		c0 = -1;	/* first count row */
		int32		count = 0;

		for (; j < st->nrows && ROW_EV(&st->rows[j]) == ev &&
			 ROW_DAY(&st->rows[j]) == day; j++)
		{
			const ActRow *q = &st->rows[j];

			if (ROW_IS_VALUE(q))
			{
				sum = add_sum(sum, q->u.value);
				nvalues++;
			}
			else
			{
				if (c0 < 0)
					c0 = j;
				if (pg_add_s32_overflow(count, q->n, &count))
					count_overflow();
			}
		}
		if (nvalues > 0)
		{
			st->rows[n] = *r;	/* the first row is a value row */
			st->rows[n].u.value = sum;
			n++;
		}
		if (c0 >= 0 && j - c0 <= 2)
		{
			memmove(&st->rows[n], &st->rows[c0], (j - c0) * sizeof(ActRow));
			n += j - c0;
		}
		else if (c0 >= 0)
		{
			ActRow		first = st->rows[c0];
			ActRow		last = st->rows[j - 1];

			st->rows[n] = first;
			st->rows[n++].n = count - 1;
			st->rows[n] = last;
			st->rows[n++].n = 1;
		}
		i = j;
	}
	st->nrows = n;
}

/* Make room for "more" rows; may move the state. */
static ActState *
state_reserve(ActState *st, int32 more)
{
	int32		cap;

	if ((int64) st->nrows + more <= st->cap)
		return st;
	/* a large group: fold repeated days before growing */
	if (st->nrows >= COMPACT_MIN_ROWS)
	{
		state_compact(st);
		if ((int64) st->nrows + more <= st->cap / 2)
			return st;
	}
	cap = state_cap_for(Max((int64) st->nrows + more, (int64) st->cap * 2));
	st = repalloc(st, STATE_SIZE(cap));
	st->cap = cap;
	return st;
}

/* Append the rows of src to dst (in the aggregate context); may move dst. */
static ActState *
state_append(ActState *dst, const ActState *src)
{
	dst = state_reserve(dst, src->nrows);
	if (dst->dict == src->dict)
		memcpy(&dst->rows[dst->nrows], src->rows, src->nrows * sizeof(ActRow));
	else
	{
		/* states built with different dictionaries: map ids by name */
		for (int32 i = 0; i < src->nrows; i++)
		{
			const ActRow *r = &src->rows[i];
			const ActKey *k = &src->dict->names[ROW_EV(r)];
			int32		id = dict_intern(dst->dict, k->name, k->len);

			dst->rows[dst->nrows + i] = *r;
			dst->rows[dst->nrows + i].ev = ROW_IS_VALUE(r) ? -1 - id : id;
		}
	}
	dst->nrows += src->nrows;
	return dst;
}

static void
corrupt_state(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("invalid cdp.activity_agg state"),
			 errdetail("A value has no event on its day.")));
}

/* Pack the state into a summary (in the current memory context). */
static struct varlena *
state_pack(ActState *st)
{
	ActivityBuildEvent *ev;
	int32	   *days;
	int32	   *counts;
	float8	   *sums;
	int			n = 0;
	int32		k = 0;			/* day buckets used so far */
	int32		i = 0;

	act_sort_rows(st->rows, st->nrows);
	ev = palloc(Max(st->nrows, 1) * sizeof(ActivityBuildEvent));
	days = palloc(Max(st->nrows, 1) * sizeof(int32));
	counts = palloc(Max(st->nrows, 1) * sizeof(int32));
	sums = palloc(Max(st->nrows, 1) * sizeof(float8));

	while (i < st->nrows)
	{
		ActivityBuildEvent *o = &ev[n++];
		int32		evid = ROW_EV(&st->rows[i]);
		const ActKey *name = &st->dict->names[evid];
		int32		start = k;

		o->name = name->name;
		o->name_len = name->len;
		o->count = 0;
		o->sum = 0.0;
		o->trim_day = ACTIVITY_NO_TRIM;
		for (; i < st->nrows && ROW_EV(&st->rows[i]) == evid; i++)
		{
			const ActRow *r = &st->rows[i];
			int32		day = ROW_DAY(r);

			if (k == start || days[k - 1] != day)
			{
				/* the previous day must have had an event */
				if (k > start && counts[k - 1] == 0)
					corrupt_state();
				days[k] = day;
				counts[k] = 0;
				sums[k] = 0.0;
				k++;
			}
			if (ROW_IS_VALUE(r))
			{
				o->sum = add_sum(o->sum, r->u.value);
				sums[k - 1] = add_sum(sums[k - 1], r->u.value);
			}
			else
			{
				if (o->count == 0)
					o->first_at = r->u.ts;
				o->last_at = r->u.ts;
				if (pg_add_s64_overflow(o->count, r->n, &o->count) ||
					pg_add_s32_overflow(counts[k - 1], r->n, &counts[k - 1]))
					count_overflow();
			}
		}
		if (counts[k - 1] == 0)
			corrupt_state();
		o->ndays = k - start;
		o->days = days + start;
		o->counts = counts + start;
		o->sums = sums + start;
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
	ActRow	   *r;

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
		st = state_create(ctx, dict_get(fcinfo), 2);
	else if (st->nrows + 2 > st->cap)
		st = state_reserve(st, 2);

	r = &st->rows[st->nrows++];
	r->u.ts = at;
	r->ev = dict_intern(st->dict, VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name));
	r->n = 1;
	if (value != 0.0)
	{
		ActRow	   *v = &st->rows[st->nrows++];

		v->u.value = value;
		v->ev = -1 - r->ev;
		v->n = activity_day_of(at);
	}
	PG_RETURN_POINTER(st);
}

/* activity_agg final function: sort and pack once */
PG_FUNCTION_INFO_V1(cdp_activity_agg_final);
Datum
cdp_activity_agg_final(PG_FUNCTION_ARGS)
{
	agg_context(fcinfo, "cdp_activity_agg_final");
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_ACTIVITY_P(state_pack((ActState *) PG_GETARG_POINTER(0)));
}

/* activity_agg combine function: adds the second state's rows to the first */
PG_FUNCTION_INFO_V1(cdp_activity_agg_combine);
Datum
cdp_activity_agg_combine(PG_FUNCTION_ARGS)
{
	MemoryContext ctx = agg_context(fcinfo, "cdp_activity_agg_combine");
	ActState   *s1 = PG_ARGISNULL(0) ? NULL : (ActState *) PG_GETARG_POINTER(0);
	ActState   *s2 = PG_ARGISNULL(1) ? NULL : (ActState *) PG_GETARG_POINTER(1);

	if (s2 == NULL)
	{
		if (s1 == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(s1);
	}
	/* s2 may live in a shorter-lived context: copy it, sharing its names */
	if (s1 == NULL)
		s1 = state_create(ctx, s2->dict, s2->nrows);
	PG_RETURN_POINTER(state_append(s1, s2));
}

/*
 * activity_agg serial function.  Format: version byte, int32 number of
 * names, each as int32 length and bytes, then int32 number of rows, each
 * as int32 name index, int32 count, int64 time stamp, float8 value (network
 * byte order).
 */
PG_FUNCTION_INFO_V1(cdp_activity_agg_serialize);
Datum
cdp_activity_agg_serialize(PG_FUNCTION_ARGS)
{
	ActState   *st;
	StringInfoData buf;
	int32		nnames = 0;
	int32		idx = -1;

	agg_context(fcinfo, "cdp_activity_agg_serialize");
	st = (ActState *) PG_GETARG_POINTER(0);

	/* sorted by event, each name is written once and indexed in order */
	act_sort_rows(st->rows, st->nrows);
	for (int32 i = 0; i < st->nrows; i++)
		if (i == 0 || ROW_EV(&st->rows[i]) != ROW_EV(&st->rows[i - 1]))
			nnames++;

	pq_begintypsend(&buf);
	enlargeStringInfo(&buf, 9 + nnames * 20 + st->nrows * (Size) 16);
	pq_sendbyte(&buf, ACT_STATE_VERSION);
	pq_sendint32(&buf, nnames);
	for (int32 i = 0; i < st->nrows; i++)
	{
		if (i == 0 || ROW_EV(&st->rows[i]) != ROW_EV(&st->rows[i - 1]))
		{
			const ActKey *k = &st->dict->names[ROW_EV(&st->rows[i])];

			pq_sendint32(&buf, k->len);
			pq_sendbytes(&buf, k->name, k->len);
		}
	}
	pq_sendint32(&buf, st->nrows);
	for (int32 i = 0; i < st->nrows; i++)
	{
		const ActRow *r = &st->rows[i];

		if (i == 0 || ROW_EV(r) != ROW_EV(&st->rows[i - 1]))
			idx++;
		pq_sendint32(&buf, ROW_IS_VALUE(r) ? -1 - idx : idx);
		pq_sendint32(&buf, r->n);
		if (ROW_IS_VALUE(r))
			pq_sendfloat8(&buf, r->u.value);
		else
			pq_sendint64(&buf, r->u.ts);
	}
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

static void
bad_state(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("invalid cdp.activity_agg state"),
			 errdetail("%s", detail)));
}

/* activity_agg deserial function: checks every length, index and value */
PG_FUNCTION_INFO_V1(cdp_activity_agg_deserialize);
Datum
cdp_activity_agg_deserialize(PG_FUNCTION_ARGS)
{
	bytea	   *b;
	StringInfoData buf;
	ActDict    *dict;
	int32	   *ids;
	int32		nnames,
				nrows;
	int			version;
	ActState   *st;

	agg_context(fcinfo, "cdp_activity_agg_deserialize");
	b = PG_GETARG_BYTEA_PP(0);
	dict = dict_get(fcinfo);
	/* a read-only view of the bytes */
	buf.data = VARDATA_ANY(b);
	buf.len = VARSIZE_ANY_EXHDR(b);
	buf.maxlen = buf.len;
	buf.cursor = 0;

	if (buf.len < 5)
		bad_state("The state is shorter than its 5-byte header.");
	version = pq_getmsgbyte(&buf);
	if (version != ACT_STATE_VERSION)
		bad_state(psprintf("State format version %d is not supported (expected %d).",
						   version, ACT_STATE_VERSION));
	nnames = pq_getmsgint(&buf, 4);
	if (nnames < 0 || nnames > (buf.len - buf.cursor) / 4)
		bad_state(psprintf("Name count %d does not fit in the %d bytes left.",
						   nnames, buf.len - buf.cursor));
	ids = palloc(Max(nnames, 1) * sizeof(int32));
	for (int32 i = 0; i < nnames; i++)
	{
		int32		len;

		if (buf.len - buf.cursor < 4)
			bad_state(psprintf("Name %d is truncated.", i));
		len = pq_getmsgint(&buf, 4);
		if (len < 0 || len > buf.len - buf.cursor)
			bad_state(psprintf("Name length %d of name %d does not fit in the bytes left.", len, i));
		ids[i] = dict_intern(dict, buf.data + buf.cursor, len);
		buf.cursor += len;
	}
	if (buf.len - buf.cursor < 4)
		bad_state("The row count is missing.");
	nrows = pq_getmsgint(&buf, 4);
	if (nrows < 0 || nrows != (buf.len - buf.cursor) / 16 ||
		(buf.len - buf.cursor) % 16 != 0)
		bad_state(psprintf("Row count %d does not match the %d bytes left.",
						   nrows, buf.len - buf.cursor));
	/* lives in the per-tuple context: combine copies it */
	st = palloc(STATE_SIZE(Max(nrows, 1)));
	st->dict = dict;
	st->nrows = nrows;
	st->cap = Max(nrows, 1);
	for (int32 i = 0; i < nrows; i++)
	{
		ActRow	   *r = &st->rows[i];
		int32		idx = pq_getmsgint(&buf, 4);
		bool		is_value = idx < 0;

		if (is_value)
			idx = -1 - idx;
		if (idx >= nnames)
			bad_state(psprintf("Row %d refers to name %d of %d.", i, idx, nnames));
		r->ev = is_value ? -1 - ids[idx] : ids[idx];
		r->n = pq_getmsgint(&buf, 4);
		if (is_value)
		{
			r->u.value = pq_getmsgfloat8(&buf);
			if (!isfinite(r->u.value))
				bad_state(psprintf("Row %d has a value that is not finite.", i));
			if (r->n < activity_min_day() || r->n > activity_max_day())
				bad_state(psprintf("Row %d has a day outside years 1-9999.", i));
		}
		else
		{
			r->u.ts = pq_getmsgint64(&buf);
			if (r->n < 1)
				bad_state(psprintf("Row %d has count %d.", i, r->n));
			if (TIMESTAMP_NOT_FINITE(r->u.ts) ||
				activity_day_of(r->u.ts) < activity_min_day() ||
				activity_day_of(r->u.ts) > activity_max_day())
				bad_state(psprintf("Row %d has a time stamp outside years 1-9999.", i));
		}
	}
	pq_getmsgend(&buf);
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


/* exact merge of two summaries; NULL acts as the empty summary */
PG_FUNCTION_INFO_V1(cdp_activity_merge);
Datum
cdp_activity_merge(PG_FUNCTION_ARGS)
{
	ActivityReader ra,
				rb;
	ActivityEventRef xr,
				yr;
	ActivityBuildEvent *ev;
	ActivityBuildEvent x,
				y;
	bool		has_x,
				has_y;
	int			n = 0;

	if (PG_ARGISNULL(0) && PG_ARGISNULL(1))
		PG_RETURN_NULL();
	if (PG_ARGISNULL(0))
		PG_RETURN_DATUM(PG_GETARG_DATUM(1));
	if (PG_ARGISNULL(1))
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	activity_reader_init(&ra, PG_GETARG_ACTIVITY_P(0), ERRCODE_DATA_CORRUPTED);
	activity_reader_init(&rb, PG_GETARG_ACTIVITY_P(1), ERRCODE_DATA_CORRUPTED);

	/* both are sorted by name: one linear pass */
	ev = palloc(Max(ra.nevents + rb.nevents, 1) * sizeof(ActivityBuildEvent));
	has_x = activity_next_event(&ra, &xr);
	has_y = activity_next_event(&rb, &yr);
	if (has_x)
		activity_event_unpack(&xr, ERRCODE_DATA_CORRUPTED, &x);
	if (has_y)
		activity_event_unpack(&yr, ERRCODE_DATA_CORRUPTED, &y);
	while (has_x || has_y)
	{
		int			r = !has_x ? 1 : !has_y ? -1 : activity_build_event_cmp(&x, &y);

		if (r < 0)
			ev[n++] = x;
		else if (r > 0)
			ev[n++] = y;
		else
			merge_event(&x, &y, &ev[n++]);
		if (r <= 0 && (has_x = activity_next_event(&ra, &xr)))
			activity_event_unpack(&xr, ERRCODE_DATA_CORRUPTED, &x);
		if (r >= 0 && (has_y = activity_next_event(&rb, &yr)))
			activity_event_unpack(&yr, ERRCODE_DATA_CORRUPTED, &y);
	}
	PG_RETURN_ACTIVITY_P(activity_pack_sorted(ev, n));
}

/* ---------------------------------------------------------------- trim */

/* fold day buckets of UTC days wholly before "before" into the totals */
PG_FUNCTION_INFO_V1(cdp_activity_trim);
Datum
cdp_activity_trim(PG_FUNCTION_ARGS)
{
	struct varlena *a = PG_GETARG_ACTIVITY_P(0);
	TimestampTz before = PG_GETARG_TIMESTAMPTZ(1);
	int32		cut;
	ActivityBuildEvent *ev;
	ActivityReader r;
	ActivityEventRef ref;

	activity_reader_init(&r, a, ERRCODE_DATA_CORRUPTED);
	if (TIMESTAMP_IS_NOBEGIN(before))
		PG_RETURN_ACTIVITY_P(a);
	/* a day is folded only when it ends at or before "before" */
	cut = TIMESTAMP_IS_NOEND(before) ? activity_max_day() + 1 : activity_day_of(before);
	cut = Max(Min(cut, activity_max_day() + 1), activity_min_day());

	ev = palloc(Max(r.nevents, 1) * sizeof(ActivityBuildEvent));
	while (activity_next_event(&r, &ref))
	{
		ActivityBuildEvent *e = &ev[r.next - 1];
		int			k = 0;
		int64		kept = 0;

		activity_event_unpack(&ref, ERRCODE_DATA_CORRUPTED, e);
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
	PG_RETURN_ACTIVITY_P(activity_pack_sorted(ev, r.nevents));
}
