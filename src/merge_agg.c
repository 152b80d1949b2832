/*-------------------------------------------------------------------------
 *
 * merge_agg.c
 *	  Survivorship aggregates over any type with a default btree operator
 *	  class: cdp.latest, cdp.earliest, cdp.by_priority, cdp.most_frequent
 *	  and cdp.unique_values.
 *
 * All are internal-state aggregates with combine, serialize and
 * deserialize functions, so they run under parallel query.  Every tie is
 * broken by the value's btree order (smallest wins), so a result never
 * depends on row order, plan or the number of workers.  NULL values and
 * NULL timestamps are skipped.
 *
 * Serialized states start with a version byte and carry the value type, so
 * deserialize can check every value against the type's length rules and
 * the bytes present.  Values travel as their in-memory image (they only
 * move between processes of one server), detoasted first.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "merge_agg.h"

/*
 * Type information
 */

/*
 * Types whose btree equality is equality of binary images; text only under
 * a deterministic collation.
 */
static bool
type_image_eq(Oid typid, Oid collation)
{
	switch (typid)
	{
		case BOOLOID:
		case CHAROID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
		case UUIDOID:
		case BYTEAOID:
			return true;
		case TEXTOID:
		case VARCHAROID:
			return OidIsValid(collation) && get_collation_isdeterministic(collation);
		default:
			return false;
	}
}

void
cdp_typeinfo_init(CdpTypeInfo *ti, Oid typid, Oid collation)
{
	TypeCacheEntry *tc;

	if (!OidIsValid(typid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not determine the input data type")));
	tc = lookup_type_cache(typid, TYPECACHE_CMP_PROC_FINFO |
						   TYPECACHE_HASH_PROC_FINFO);
	if (!OidIsValid(tc->cmp_proc))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("could not identify a comparison function for type %s",
						format_type_be(typid)),
				 errdetail("Survivorship aggregates break ties by the value's order."),
				 errhint("Use a type with a default btree operator class, or cast the value, for example to text.")));
	ti->typid = typid;
	ti->collation = collation;
	ti->typlen = tc->typlen;
	ti->typbyval = tc->typbyval;
	ti->typalign = tc->typalign;
	ti->cmp = &tc->cmp_proc_finfo;
	ti->hash = OidIsValid(tc->hash_proc) ? &tc->hash_proc_finfo : NULL;
	ti->image_eq = type_image_eq(typid, collation);
}

/* Type information of argument argno, looked up once per query. */
static const CdpTypeInfo *
arg_typeinfo(FunctionCallInfo fcinfo, int argno)
{
	CdpTypeInfo *ti = (CdpTypeInfo *) fcinfo->flinfo->fn_extra;

	if (ti == NULL)
	{
		ti = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(CdpTypeInfo));
		cdp_typeinfo_init(ti, get_fn_expr_argtype(fcinfo->flinfo, argno),
						  PG_GET_COLLATION());
		fcinfo->flinfo->fn_extra = ti;
	}
	return ti;
}

/* The type fields of a serialized state, as written. */
typedef struct TypeHeader
{
	Oid			typid;
	Oid			collation;
	int16		typlen;
	bool		typbyval;
} TypeHeader;

static void
read_type_header(CdpReader *r, TypeHeader *h)
{
	memcpy(&h->typid, cdp_read_bytes(r, sizeof(Oid)), sizeof(Oid));
	memcpy(&h->collation, cdp_read_bytes(r, sizeof(Oid)), sizeof(Oid));
	memcpy(&h->typlen, cdp_read_bytes(r, sizeof(int16)), sizeof(int16));
	h->typbyval = cdp_read_uint8(r) != 0;
}

/* Type information of a header, checked against the catalog. */
static void
typeinfo_from_header(CdpTypeInfo *ti, const TypeHeader *h)
{
	if (!SearchSysCacheExists1(TYPEOID, ObjectIdGetDatum(h->typid)))
		cdp_state_corrupted("The value type does not exist.");
	if (OidIsValid(h->collation) &&
		!SearchSysCacheExists1(COLLOID, ObjectIdGetDatum(h->collation)))
		cdp_state_corrupted("The collation does not exist.");
	cdp_typeinfo_init(ti, h->typid, h->collation);
	if (ti->typlen != h->typlen || ti->typbyval != h->typbyval)
		cdp_state_corrupted("The value type's storage does not match the catalog.");
}

/*
 * The type information of a serialized state, kept in fn_extra for as long
 * as the query: states refer to it.  The catalog checks run once per type.
 */
static const CdpTypeInfo *
read_typeinfo_cached(FunctionCallInfo fcinfo, CdpReader *r)
{
	CdpTypeInfo *c = (CdpTypeInfo *) fcinfo->flinfo->fn_extra;
	TypeHeader	h;

	read_type_header(r, &h);
	if (c != NULL && c->typid == h.typid && c->collation == h.collation &&
		c->typlen == h.typlen && c->typbyval == h.typbyval)
		return c;
	c = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(CdpTypeInfo));
	typeinfo_from_header(c, &h);
	fcinfo->flinfo->fn_extra = c;
	return c;
}

int
cdp_value_cmp(const CdpTypeInfo *ti, Datum a, Datum b)
{
	return DatumGetInt32(FunctionCall2Coll(ti->cmp, ti->collation, a, b));
}

/* Copy of a value in CurrentMemoryContext, detoasted (maybe short header). */
Datum
cdp_value_copy(const CdpTypeInfo *ti, Datum value)
{
	if (ti->typbyval)
		return value;
	if (ti->typlen == -1)
	{
		struct varlena *v = (struct varlena *) DatumGetPointer(value);

		if (VARATT_IS_EXTENDED(v))
			return PointerGetDatum(detoast_attr(v));	/* a fresh copy */
		return datumCopy(value, false, -1);
	}
	return datumCopy(value, false, ti->typlen);
}

/* The value with toasting undone, possibly in CurrentMemoryContext. */
static inline Datum
value_detoast(const CdpTypeInfo *ti, Datum value)
{
	if (ti->typlen == -1)
		return PointerGetDatum(pg_detoast_datum_packed((struct varlena *) DatumGetPointer(value)));
	return value;
}

static inline void
value_free(const CdpTypeInfo *ti, Datum value)
{
	if (!ti->typbyval)
		pfree(DatumGetPointer(value));
}

/*
 * Serialized states
 */

void
cdp_write_bytes(StringInfo buf, const void *p, int len)
{
	appendBinaryStringInfo(buf, (const char *) p, len);
}

void
cdp_write_typeinfo(StringInfo buf, const CdpTypeInfo *ti)
{
	cdp_write_bytes(buf, &ti->typid, sizeof(Oid));
	cdp_write_bytes(buf, &ti->collation, sizeof(Oid));
	cdp_write_bytes(buf, &ti->typlen, sizeof(int16));
	appendStringInfoChar(buf, ti->typbyval ? 1 : 0);
}

void
cdp_write_value(StringInfo buf, const CdpTypeInfo *ti, Datum value)
{
	if (ti->typbyval)
		cdp_write_bytes(buf, &value, sizeof(Datum));
	else if (ti->typlen > 0)
		cdp_write_bytes(buf, DatumGetPointer(value), ti->typlen);
	else
	{
		int32		len;

		if (ti->typlen == -1)
			len = VARSIZE_ANY(DatumGetPointer(value));
		else
			len = strlen(DatumGetCString(value)) + 1;
		cdp_write_bytes(buf, &len, sizeof(int32));
		cdp_write_bytes(buf, DatumGetPointer(value), len);
	}
}

void
cdp_state_corrupted(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("invalid serialized survivorship aggregate state"),
			 errdetail("%s", what)));
	pg_unreachable();
}

void
cdp_reader_init(CdpReader *r, bytea *b)
{
	r->data = VARDATA_ANY(b);
	r->len = VARSIZE_ANY_EXHDR(b);
	r->pos = 0;
	if (cdp_read_uint8(r) != CDP_MERGE_STATE_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("unsupported serialized survivorship aggregate state version %d",
						(int) (unsigned char) r->data[0]),
				 errdetail("This build reads version %d.", CDP_MERGE_STATE_VERSION)));
}

const char *
cdp_read_bytes(CdpReader *r, int len)
{
	const char *p;

	if (len < 0 || len > r->len - r->pos)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid serialized survivorship aggregate state"),
				 errdetail("%d bytes requested at offset %d, but the state has %d bytes.",
						   len, r->pos, r->len)));
	p = r->data + r->pos;
	r->pos += len;
	return p;
}

uint8
cdp_read_uint8(CdpReader *r)
{
	return (uint8) *cdp_read_bytes(r, 1);
}

int32
cdp_read_int32(CdpReader *r)
{
	int32		v;

	memcpy(&v, cdp_read_bytes(r, sizeof(int32)), sizeof(int32));
	return v;
}

int64
cdp_read_int64(CdpReader *r)
{
	int64		v;

	memcpy(&v, cdp_read_bytes(r, sizeof(int64)), sizeof(int64));
	return v;
}

void
cdp_read_typeinfo(CdpReader *r, CdpTypeInfo *ti)
{
	TypeHeader	h;

	read_type_header(r, &h);
	typeinfo_from_header(ti, &h);
}

/* A value in CurrentMemoryContext, its length checked against its type. */
Datum
cdp_read_value(CdpReader *r, const CdpTypeInfo *ti)
{
	int32		len;
	char	   *p;

	if (ti->typbyval)
	{
		Datum		d;

		memcpy(&d, cdp_read_bytes(r, sizeof(Datum)), sizeof(Datum));
		return d;
	}
	if (ti->typlen > 0)
	{
		p = palloc(ti->typlen);
		memcpy(p, cdp_read_bytes(r, ti->typlen), ti->typlen);
		return PointerGetDatum(p);
	}
	len = cdp_read_int32(r);
	if (len < 1)
		cdp_state_corrupted("A value has a negative or zero length.");
	p = palloc(len);
	memcpy(p, cdp_read_bytes(r, len), len);
	if (ti->typlen == -1)
	{
		if (VARATT_IS_1B(p))
		{
			if (VARATT_IS_1B_E(p) || VARSIZE_1B(p) != len)
				cdp_state_corrupted("A short varlena value's header does not match its length.");
		}
		else if (len < VARHDRSZ || !VARATT_IS_4B_U(p) || VARSIZE_4B(p) != len)
			cdp_state_corrupted("A varlena value's header does not match its length.");
	}
	else if (strnlen(p, len) != len - 1)
		cdp_state_corrupted("A cstring value is not terminated where its length says.");
	return PointerGetDatum(p);
}

void
cdp_reader_end(CdpReader *r)
{
	if (r->pos != r->len)
		cdp_state_corrupted("Trailing bytes after the state.");
}

/*
 * The value -> (count, latest at) table: simplehash keyed by the type's
 * default hash function and btree equality.  Types without a hash opclass
 * are keyed by their binary image; cdp_freq_entries then folds values
 * that are equal in btree order but differ in image (numeric 1.0 and 1.00).
 */

typedef struct FreqEntry
{
	Datum		key;
	int64		count;
	TimestampTz at;
	uint32		hash;
	char		status;
} FreqEntry;

struct CdpFreqTable
{
	CdpTypeInfo ti;
	MemoryContext cxt;
	struct freqh_hash *h;
};

static uint32
image_hash(const CdpTypeInfo *ti, Datum d)
{
	if (ti->typbyval)
		return hash_bytes((const unsigned char *) &d, sizeof(Datum));
	if (ti->typlen > 0)
		return hash_bytes((const unsigned char *) DatumGetPointer(d), ti->typlen);
	if (ti->typlen == -1)
		return hash_bytes((const unsigned char *) VARDATA_ANY(DatumGetPointer(d)),
						  VARSIZE_ANY_EXHDR(DatumGetPointer(d)));
	return hash_bytes((const unsigned char *) DatumGetCString(d),
					  strlen(DatumGetCString(d)));
}

static bool
image_equal(const CdpTypeInfo *ti, Datum a, Datum b)
{
	if (ti->typbyval)
		return a == b;
	if (ti->typlen > 0)
		return memcmp(DatumGetPointer(a), DatumGetPointer(b), ti->typlen) == 0;
	if (ti->typlen == -1)
	{
		Size		la = VARSIZE_ANY_EXHDR(DatumGetPointer(a));

		return la == VARSIZE_ANY_EXHDR(DatumGetPointer(b)) &&
			memcmp(VARDATA_ANY(DatumGetPointer(a)), VARDATA_ANY(DatumGetPointer(b)), la) == 0;
	}
	return strcmp(DatumGetCString(a), DatumGetCString(b)) == 0;
}

/*
 * Order of binary images: breaks ties between values that are equal in
 * btree order but print differently (numeric 2 and 2.00), so that which
 * one survives does not depend on row order.
 */
int
cdp_image_cmp(const CdpTypeInfo *ti, Datum a, Datum b)
{
	const char *pa;
	const char *pb;
	Size		la;
	Size		lb;
	int			c;

	if (ti->typbyval)
		return a == b ? 0 : (a < b ? -1 : 1);
	if (ti->typlen > 0)
		return memcmp(DatumGetPointer(a), DatumGetPointer(b), ti->typlen);
	if (ti->typlen == -1)
	{
		pa = VARDATA_ANY(DatumGetPointer(a));
		pb = VARDATA_ANY(DatumGetPointer(b));
		la = VARSIZE_ANY_EXHDR(DatumGetPointer(a));
		lb = VARSIZE_ANY_EXHDR(DatumGetPointer(b));
	}
	else
	{
		pa = DatumGetCString(a);
		pb = DatumGetCString(b);
		la = strlen(pa);
		lb = strlen(pb);
	}
	c = memcmp(pa, pb, Min(la, lb));
	if (c != 0)
		return c;
	return la == lb ? 0 : (la < lb ? -1 : 1);
}

static inline uint32
freq_hash_key(CdpFreqTable *ft, Datum key)
{
	if (ft->ti.hash)
		return DatumGetUInt32(FunctionCall1Coll(ft->ti.hash, ft->ti.collation, key));
	return image_hash(&ft->ti, key);
}

static inline bool
freq_equal(CdpFreqTable *ft, Datum a, Datum b)
{
	if (ft->ti.hash)
		return cdp_value_cmp(&ft->ti, a, b) == 0;
	return image_equal(&ft->ti, a, b);
}

#define SH_PREFIX freqh
#define SH_ELEMENT_TYPE FreqEntry
#define SH_KEY_TYPE Datum
#define SH_KEY key
#define SH_HASH_KEY(tb, k) freq_hash_key((CdpFreqTable *) (tb)->private_data, k)
#define SH_EQUAL(tb, a, b) freq_equal((CdpFreqTable *) (tb)->private_data, a, b)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) a->hash
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

CdpFreqTable *
cdp_freq_create(MemoryContext cxt, const CdpTypeInfo *ti)
{
	CdpFreqTable *ft = MemoryContextAlloc(cxt, sizeof(CdpFreqTable));

	ft->ti = *ti;
	ft->cxt = cxt;
	/* most groups see a handful of values: start small, grow as needed */
	ft->h = freqh_create(cxt, 2, ft);
	return ft;
}

/* Count a value; copies it into the table's context when it is new. */
void
cdp_freq_add(CdpFreqTable *ft, Datum value, int64 count, TimestampTz at)
{
	FreqEntry  *e;
	bool		found;

	value = value_detoast(&ft->ti, value);
	e = freqh_insert(ft->h, value, &found);
	if (!found)
	{
		MemoryContext old = MemoryContextSwitchTo(ft->cxt);

		e->key = cdp_value_copy(&ft->ti, value);
		MemoryContextSwitchTo(old);
		e->count = count;
		e->at = at;
	}
	else
	{
		e->count += count;
		if (at > e->at)
			e->at = at;
		/* equal values of different images: keep the smallest image */
		if (ft->ti.hash != NULL && cdp_image_cmp(&ft->ti, value, e->key) < 0)
		{
			MemoryContext old = MemoryContextSwitchTo(ft->cxt);
			Datum		prev = e->key;

			e->key = cdp_value_copy(&ft->ti, value);
			MemoryContextSwitchTo(old);
			value_free(&ft->ti, prev);
		}
	}
}

void
cdp_freq_merge(CdpFreqTable *dst, CdpFreqTable *src)
{
	freqh_iterator it;
	FreqEntry  *e;

	freqh_start_iterate(src->h, &it);
	while ((e = freqh_iterate(src->h, &it)) != NULL)
		cdp_freq_add(dst, e->key, e->count, e->at);
}

/* Give back the table's memory (states merged into another are freed). */
void
cdp_freq_free(CdpFreqTable *ft)
{
	freqh_iterator it;
	FreqEntry  *e;

	if (!ft->ti.typbyval)
	{
		freqh_start_iterate(ft->h, &it);
		while ((e = freqh_iterate(ft->h, &it)) != NULL)
			pfree(DatumGetPointer(e->key));
	}
	freqh_destroy(ft->h);
	pfree(ft);
}

const CdpTypeInfo *
cdp_freq_typeinfo(CdpFreqTable *ft)
{
	return &ft->ti;
}

uint32
cdp_freq_size(CdpFreqTable *ft)
{
	return ft->h->members;
}

static int
item_value_cmp(const void *a, const void *b, void *arg)
{
	return cdp_value_cmp((const CdpTypeInfo *) arg,
						 ((const CdpFreqItem *) a)->value,
						 ((const CdpFreqItem *) b)->value);
}

static int
item_recency_cmp(const void *a, const void *b, void *arg)
{
	const CdpFreqItem *x = a;
	const CdpFreqItem *y = b;

	if (x->at != y->at)
		return x->at > y->at ? -1 : 1;
	return item_value_cmp(a, b, arg);
}

void
cdp_freq_sort(CdpFreqItem *items, int n, const CdpTypeInfo *ti, bool by_recency)
{
	qsort_arg(items, n, sizeof(CdpFreqItem),
			  by_recency ? item_recency_cmp : item_value_cmp, (void *) ti);
}

/*
 * The distinct values in CurrentMemoryContext (values point into the
 * table).  Image-keyed tables are folded by btree equality here.
 */
CdpFreqItem *
cdp_freq_entries(CdpFreqTable *ft, int *n)
{
	CdpFreqItem *items;
	freqh_iterator it;
	FreqEntry  *e;
	int			k = 0;

	items = palloc(sizeof(CdpFreqItem) * Max(ft->h->members, 1));
	freqh_start_iterate(ft->h, &it);
	while ((e = freqh_iterate(ft->h, &it)) != NULL)
	{
		items[k].value = e->key;
		items[k].count = e->count;
		items[k].at = e->at;
		k++;
	}
	if (ft->ti.hash == NULL && k > 1)
	{
		int			out = 0;

		cdp_freq_sort(items, k, &ft->ti, false);
		for (int i = 1; i < k; i++)
		{
			if (cdp_value_cmp(&ft->ti, items[out].value, items[i].value) == 0)
			{
				items[out].count += items[i].count;
				items[out].at = Max(items[out].at, items[i].at);
				if (cdp_image_cmp(&ft->ti, items[i].value, items[out].value) < 0)
					items[out].value = items[i].value;
			}
			else
				items[++out] = items[i];
		}
		k = out + 1;
	}
	*n = k;
	return items;
}

/*
 * Drop all but the first `keep` values in output order.  Safe before the
 * end: a value that is not among the first `keep` of a part of the input
 * cannot be among the first `keep` of the whole.  Skipped for image-keyed
 * tables, whose entries are only folded at the end.
 */
void
cdp_freq_keep(CdpFreqTable *ft, int keep, bool by_recency)
{
	CdpFreqItem *items;
	int			n;

	if (ft->ti.hash == NULL || ft->h->members <= (uint32) keep)
		return;
	items = cdp_freq_entries(ft, &n);
	cdp_freq_sort(items, n, &ft->ti, by_recency);
	for (int i = keep; i < n; i++)
	{
		freqh_delete(ft->h, items[i].value);
		value_free(&ft->ti, items[i].value);
	}
	pfree(items);
}

/* Index of the most frequent item; ties by recency if asked, then value. */
int
cdp_freq_best(CdpFreqItem *items, int n, const CdpTypeInfo *ti, bool by_recency)
{
	int			best = 0;

	for (int i = 1; i < n; i++)
	{
		CdpFreqItem *a = &items[i];
		CdpFreqItem *b = &items[best];

		if (a->count != b->count)
		{
			if (a->count > b->count)
				best = i;
		}
		else if (by_recency && a->at != b->at)
		{
			if (a->at > b->at)
				best = i;
		}
		else if (cdp_value_cmp(ti, a->value, b->value) < 0)
			best = i;
	}
	return best;
}

void
cdp_freq_write(StringInfo buf, CdpFreqTable *ft)
{
	freqh_iterator it;
	FreqEntry  *e;
	int32		n = ft->h->members;

	cdp_write_bytes(buf, &n, sizeof(int32));
	freqh_start_iterate(ft->h, &it);
	while ((e = freqh_iterate(ft->h, &it)) != NULL)
	{
		cdp_write_bytes(buf, &e->count, sizeof(int64));
		cdp_write_bytes(buf, &e->at, sizeof(int64));
		cdp_write_value(buf, &ft->ti, e->key);
	}
}

CdpFreqTable *
cdp_freq_read(CdpReader *r, MemoryContext cxt, const CdpTypeInfo *ti)
{
	CdpFreqTable *ft = cdp_freq_create(cxt, ti);
	int32		n = cdp_read_int32(r);

	/* every entry takes at least 17 bytes */
	if (n < 0 || n > (r->len - r->pos) / 17)
		cdp_state_corrupted("The number of distinct values does not fit the state.");
	for (int i = 0; i < n; i++)
	{
		int64		count = cdp_read_int64(r);
		TimestampTz at = cdp_read_int64(r);
		Datum		v = cdp_read_value(r, ti);

		if (count < 1)
			cdp_state_corrupted("A value has a count below one.");
		cdp_freq_add(ft, v, count, at);
		value_free(ti, v);
	}
	return ft;
}

/*
 * latest / earliest / by_priority: one running winner
 */

#define PICK_LATEST		1
#define PICK_EARLIEST	2
#define PICK_PRIORITY	3

/*
 * One allocation per group: this header and, for a by-reference type, the
 * winner's image right after it (a larger state is allocated when a
 * winner does not fit).
 */
typedef struct PickState
{
	const CdpTypeInfo *ti;		/* lives as long as the query */
	TimestampTz at;
	int64		priority;
	Datum		value;			/* by value only, see pick_value */
	uint32		room;			/* bytes for the image */
	uint8		kind;
	bool		has;
} PickState;

#define PICK_HDRSZ MAXALIGN(sizeof(PickState))

static inline Datum
pick_value(PickState *s)
{
	return s->ti->typbyval ? s->value : PointerGetDatum((char *) s + PICK_HDRSZ);
}

/* Bytes of a value's image as the state keeps it (4-byte varlena header). */
static inline uint32
image_size(const CdpTypeInfo *ti, Datum value)
{
	if (ti->typbyval)
		return 0;
	if (ti->typlen > 0)
		return ti->typlen;
	if (ti->typlen == -1)
		return VARSIZE_ANY_EXHDR(DatumGetPointer(value)) + VARHDRSZ;
	return strlen(DatumGetCString(value)) + 1;
}

/* Copy a value's (detoasted) image to dst, len bytes (see image_size). */
static inline void
image_write(const CdpTypeInfo *ti, Datum value, char *dst, uint32 len)
{
	if (ti->typlen == -1)
	{
		SET_VARSIZE(dst, len);
		memcpy(VARDATA(dst), VARDATA_ANY(DatumGetPointer(value)), len - VARHDRSZ);
	}
	else
		memcpy(dst, DatumGetPointer(value), len);
}

static MemoryContext
agg_context(FunctionCallInfo fcinfo, const char *name)
{
	MemoryContext cxt;

	if (!AggCheckCallContext(fcinfo, &cxt))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s called in non-aggregate context", name)));
	return cxt;
}

static PickState *
pick_new(MemoryContext cxt, const CdpTypeInfo *ti, uint8 kind, uint32 room)
{
	Size		size = pg_nextpower2_64(PICK_HDRSZ + (Size) room);
	PickState  *s;

	if (size > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("aggregate state of %zu bytes is too large", size)));
	s = MemoryContextAlloc(cxt, size);
	memset(s, 0, PICK_HDRSZ);
	s->ti = ti;
	s->kind = kind;
	s->room = size - PICK_HDRSZ;
	return s;
}

/* Does (priority, at, value) beat the state's winner? */
static inline bool
pick_beats(PickState *s, int64 priority, TimestampTz at, Datum value)
{
	int			c;

	if (!s->has)
		return true;
	if (s->kind == PICK_PRIORITY && priority != s->priority)
		return priority > s->priority;
	if (at != s->at)
		return s->kind == PICK_EARLIEST ? at < s->at : at > s->at;
	c = cdp_value_cmp(s->ti, value, pick_value(s));
	if (c != 0)
		return c < 0;
	return cdp_image_cmp(s->ti, value_detoast(s->ti, value), pick_value(s)) < 0;
}

/* Offer a row; the state may move to a larger allocation. */
static PickState *
pick_offer(PickState *s, MemoryContext cxt, int64 priority, TimestampTz at,
		   Datum value)
{
	if (!pick_beats(s, priority, at, value))
		return s;
	if (s->ti->typbyval)
		s->value = value;
	else
	{
		uint32		len;

		value = value_detoast(s->ti, value);
		len = image_size(s->ti, value);
		if (len > s->room)
		{
			PickState  *n = pick_new(cxt, s->ti, s->kind, len);

			pfree(s);
			s = n;
		}
		image_write(s->ti, value, (char *) s + PICK_HDRSZ, len);
	}
	s->at = at;
	s->priority = priority;
	s->has = true;
	return s;
}

static Datum
pick_trans(FunctionCallInfo fcinfo, uint8 kind, const char *name)
{
	MemoryContext cxt = agg_context(fcinfo, name);
	PickState  *s = PG_ARGISNULL(0) ? NULL : (PickState *) PG_GETARG_POINTER(0);
	int			at_arg = kind == PICK_PRIORITY ? 3 : 2;
	int64		priority = 0;

	if (s == NULL)
		s = pick_new(cxt, arg_typeinfo(fcinfo, 1), kind, 0);
	if (PG_ARGISNULL(1) || PG_ARGISNULL(at_arg))
		PG_RETURN_POINTER(s);
	if (kind == PICK_PRIORITY)
		priority = PG_ARGISNULL(2) ? CDP_PRIORITY_NULL : PG_GETARG_INT32(2);
	s = pick_offer(s, cxt, priority, PG_GETARG_TIMESTAMPTZ(at_arg), PG_GETARG_DATUM(1));
	PG_RETURN_POINTER(s);
}

/* transition function of cdp.latest */
PG_FUNCTION_INFO_V1(cdp_latest_trans);
Datum
cdp_latest_trans(PG_FUNCTION_ARGS)
{
	return pick_trans(fcinfo, PICK_LATEST, "cdp.latest");
}

/* transition function of cdp.earliest */
PG_FUNCTION_INFO_V1(cdp_earliest_trans);
Datum
cdp_earliest_trans(PG_FUNCTION_ARGS)
{
	return pick_trans(fcinfo, PICK_EARLIEST, "cdp.earliest");
}

/* transition function of cdp.by_priority */
PG_FUNCTION_INFO_V1(cdp_by_priority_trans);
Datum
cdp_by_priority_trans(PG_FUNCTION_ARGS)
{
	return pick_trans(fcinfo, PICK_PRIORITY, "cdp.by_priority");
}

/* combine function of cdp.latest, cdp.earliest and cdp.by_priority */
PG_FUNCTION_INFO_V1(cdp_pick_combine);
Datum
cdp_pick_combine(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = agg_context(fcinfo, "cdp_pick_combine");
	PickState  *a = PG_ARGISNULL(0) ? NULL : (PickState *) PG_GETARG_POINTER(0);
	PickState  *b = PG_ARGISNULL(1) ? NULL : (PickState *) PG_GETARG_POINTER(1);

	if (b == NULL)
	{
		if (a == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(a);
	}
	if (a == NULL)
		a = pick_new(cxt, b->ti, b->kind, 0);
	if (b->has)
		a = pick_offer(a, cxt, b->priority, b->at, pick_value(b));
	PG_RETURN_POINTER(a);
}

/* serialize function of cdp.latest, cdp.earliest and cdp.by_priority */
PG_FUNCTION_INFO_V1(cdp_pick_serialize);
Datum
cdp_pick_serialize(PG_FUNCTION_ARGS)
{
	PickState  *s = (PickState *) PG_GETARG_POINTER(0);
	StringInfoData buf;

	agg_context(fcinfo, "cdp_pick_serialize");
	initStringInfo(&buf);
	appendStringInfoSpaces(&buf, VARHDRSZ);
	appendStringInfoChar(&buf, CDP_MERGE_STATE_VERSION);
	appendStringInfoChar(&buf, s->kind);
	appendStringInfoChar(&buf, s->has ? 1 : 0);
	cdp_write_typeinfo(&buf, s->ti);
	if (s->has)
	{
		cdp_write_bytes(&buf, &s->at, sizeof(int64));
		cdp_write_bytes(&buf, &s->priority, sizeof(int64));
		cdp_write_value(&buf, s->ti, pick_value(s));
	}
	SET_VARSIZE(buf.data, buf.len);
	PG_RETURN_BYTEA_P((bytea *) buf.data);
}

/* deserialize function of cdp.latest, cdp.earliest and cdp.by_priority */
PG_FUNCTION_INFO_V1(cdp_pick_deserialize);
Datum
cdp_pick_deserialize(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	CdpReader	r;
	PickState  *s;
	uint8		kind;
	const CdpTypeInfo *ti;
	bool		has;

	agg_context(fcinfo, "cdp_pick_deserialize");
	cdp_reader_init(&r, b);
	kind = cdp_read_uint8(&r);
	if (kind < PICK_LATEST || kind > PICK_PRIORITY)
		cdp_state_corrupted("Unknown aggregate kind.");
	has = cdp_read_uint8(&r) != 0;
	ti = read_typeinfo_cached(fcinfo, &r);
	s = pick_new(CurrentMemoryContext, ti, kind, 0);
	if (has)
	{
		TimestampTz at = cdp_read_int64(&r);
		int64		priority = cdp_read_int64(&r);
		Datum		v = cdp_read_value(&r, ti);

		s = pick_offer(s, CurrentMemoryContext, priority, at, v);
		value_free(ti, v);
	}
	cdp_reader_end(&r);
	PG_RETURN_POINTER(s);
}

/* final function of cdp.latest, cdp.earliest and cdp.by_priority */
PG_FUNCTION_INFO_V1(cdp_pick_final);
Datum
cdp_pick_final(PG_FUNCTION_ARGS)
{
	PickState  *s = PG_ARGISNULL(0) ? NULL : (PickState *) PG_GETARG_POINTER(0);

	agg_context(fcinfo, "cdp_pick_final");
	if (s == NULL || !s->has)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(pick_value(s));
}

/*
 * most_frequent / unique_values: a value -> count table
 */

#define FREQ_MOST		1
#define FREQ_MOST_AT	2
#define FREQ_UNIQUE		3
#define FREQ_UNIQUE_AT	4

#define FREQ_BY_RECENCY(k) ((k) == FREQ_MOST_AT || (k) == FREQ_UNIQUE_AT)
#define FREQ_IS_UNIQUE(k) ((k) == FREQ_UNIQUE || (k) == FREQ_UNIQUE_AT)

/*
 * Most groups see a handful of distinct values.  They are kept in the state
 * itself, one allocation: the header, an array of items growing up, and
 * the images of by-reference values growing down from the end (offsets
 * count from the end, so that a larger allocation can take them over
 * unchanged).  A value is looked up by comparing images where equal images
 * are exactly equal values (CdpTypeInfo.image_eq), else by btree equality.  Past
 * FREQ_SMALL_MAX distinct values they move to a CdpFreqTable.
 */
#define FREQ_SMALL_MAX	8

typedef struct FreqSmallItem
{
	Datum		value;			/* by value: the value; else its image's offset */
	int64		count;
	TimestampTz at;
} FreqSmallItem;

typedef struct FreqAggState
{
	const CdpTypeInfo *ti;		/* lives as long as the query */
	CdpFreqTable *ft;			/* NULL while values are kept inline */
	int32		max_values;		/* unique_values only */
	uint32		size;			/* bytes allocated */
	uint32		upper;			/* start of the images */
	uint8		kind;
	uint8		nitems;
	FreqSmallItem items[FLEXIBLE_ARRAY_MEMBER];
} FreqAggState;

#define FREQ_LOWER(s) \
	((uint32) (offsetof(FreqAggState, items) + (s)->nitems * sizeof(FreqSmallItem)))

static FreqAggState *
freq_agg_new(MemoryContext cxt, const CdpTypeInfo *ti, uint8 kind, int32 max_values)
{
	FreqAggState *s = MemoryContextAlloc(cxt, 128);

	s->ti = ti;
	s->ft = NULL;
	s->max_values = max_values;
	s->size = 128;
	s->upper = 128;
	s->kind = kind;
	s->nitems = 0;
	return s;
}

static inline Datum
small_value(FreqAggState *s, FreqSmallItem *it)
{
	if (s->ti->typbyval)
		return it->value;
	return PointerGetDatum((char *) s + s->size - DatumGetUInt32(it->value));
}

/* Copy a value's image into the state, which has room; its offset. */
static uint32
image_put(FreqAggState *s, Datum value, uint32 len)
{
	char	   *dst;

	s->upper = TYPEALIGN_DOWN(MAXIMUM_ALIGNOF, s->upper - len);
	dst = (char *) s + s->upper;
	image_write(s->ti, value, dst, len);
	return s->size - s->upper;
}

/* The state with room for `need` more bytes; it may have moved. */
static FreqAggState *
freq_reserve(FreqAggState *s, uint32 need)
{
	Size		size;
	uint32		tail;

	if (s->upper - FREQ_LOWER(s) >= need)
		return s;
	size = pg_nextpower2_64((Size) s->size + need);
	if (size > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("aggregate state of %zu bytes is too large", size)));
	tail = s->size - s->upper;
	s = repalloc(s, size);
	memmove((char *) s + size - tail, (char *) s + s->upper, tail);
	s->upper = size - tail;
	s->size = size;
	return s;
}

/* Move the inline values to a CdpFreqTable. */
static void
freq_to_table(FreqAggState *s)
{
	s->ft = cdp_freq_create(GetMemoryChunkContext(s), s->ti);
	for (int i = 0; i < s->nitems; i++)
		cdp_freq_add(s->ft, small_value(s, &s->items[i]), s->items[i].count,
					 s->items[i].at);
	s->nitems = 0;
	s->upper = s->size;
}

/* Count a value (count times, latest at); the state may move. */
static FreqAggState *
freq_agg_add(FreqAggState *s, Datum value, int64 count, TimestampTz at)
{
	const CdpTypeInfo *ti = s->ti;
	FreqSmallItem *it;
	uint32		len;

	if (s->ft != NULL)
	{
		cdp_freq_add(s->ft, value, count, at);
		return s;
	}
	value = value_detoast(ti, value);
	for (int i = 0; i < s->nitems; i++)
	{
		Datum		cur;

		it = &s->items[i];
		cur = small_value(s, it);
		if (!image_equal(ti, value, cur) &&
			(ti->image_eq || cdp_value_cmp(ti, value, cur) != 0))
			continue;
		it->count += count;
		if (at > it->at)
			it->at = at;
		/* equal values of different images: keep the smallest image */
		if (!ti->image_eq && !ti->typbyval && cdp_image_cmp(ti, value, cur) < 0)
		{
			len = image_size(ti, value);
			s = freq_reserve(s, len + MAXIMUM_ALIGNOF);
			it = &s->items[i];
			it->value = UInt32GetDatum(image_put(s, value, len));
		}
		else if (!ti->image_eq && ti->typbyval && cdp_image_cmp(ti, value, cur) < 0)
			it->value = value;
		return s;
	}
	if (s->nitems == FREQ_SMALL_MAX)
	{
		freq_to_table(s);
		cdp_freq_add(s->ft, value, count, at);
		return s;
	}
	len = image_size(ti, value);
	s = freq_reserve(s, sizeof(FreqSmallItem) + len + MAXIMUM_ALIGNOF);
	it = &s->items[s->nitems++];
	it->value = ti->typbyval ? value : UInt32GetDatum(image_put(s, value, len));
	it->count = count;
	it->at = at;
	return s;
}

/* The distinct values in CurrentMemoryContext (values point into s). */
static CdpFreqItem *
freq_agg_items(FreqAggState *s, int *n)
{
	CdpFreqItem *items;

	if (s->ft != NULL)
		return cdp_freq_entries(s->ft, n);
	items = palloc(sizeof(CdpFreqItem) * Max(s->nitems, 1));
	for (int i = 0; i < s->nitems; i++)
	{
		items[i].value = small_value(s, &s->items[i]);
		items[i].count = s->items[i].count;
		items[i].at = s->items[i].at;
	}
	*n = s->nitems;
	return items;
}

/* unique_values keeps at most twice its cap between prunings */
static inline void
freq_agg_prune(FreqAggState *s)
{
	if (FREQ_IS_UNIQUE(s->kind) && s->ft != NULL &&
		cdp_freq_size(s->ft) > (uint32) s->max_values * 2 + 64)
		cdp_freq_keep(s->ft, s->max_values, FREQ_BY_RECENCY(s->kind));
}

static Datum
freq_trans(FunctionCallInfo fcinfo, uint8 kind, const char *name)
{
	MemoryContext cxt = agg_context(fcinfo, name);
	FreqAggState *s = PG_ARGISNULL(0) ? NULL : (FreqAggState *) PG_GETARG_POINTER(0);
	bool		with_at = FREQ_BY_RECENCY(kind);
	int			max_arg = with_at ? 3 : 2;
	TimestampTz at = DT_NOBEGIN;
	int32		max_values = 0;

	if (PG_ARGISNULL(1) || (with_at && PG_ARGISNULL(2)))
	{
		if (s == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(s);
	}
	if (FREQ_IS_UNIQUE(kind))
	{
		if (PG_ARGISNULL(max_arg) || PG_GETARG_INT32(max_arg) < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_values of %s must be at least 1", name),
					 errdetail("The value given was %s.",
							   PG_ARGISNULL(max_arg) ? "NULL" :
							   psprintf("%d", PG_GETARG_INT32(max_arg)))));
		max_values = PG_GETARG_INT32(max_arg);
	}
	if (s == NULL)
		s = freq_agg_new(cxt, arg_typeinfo(fcinfo, 1), kind, max_values);
	else if (s->max_values != max_values)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_values of %s changed within a group from %d to %d",
						name, s->max_values, max_values),
				 errhint("Pass the same max_values for every row.")));
	if (with_at)
		at = PG_GETARG_TIMESTAMPTZ(2);
	s = freq_agg_add(s, PG_GETARG_DATUM(1), 1, at);
	freq_agg_prune(s);
	PG_RETURN_POINTER(s);
}

/* transition function of cdp.most_frequent(value) */
PG_FUNCTION_INFO_V1(cdp_most_frequent_trans);
Datum
cdp_most_frequent_trans(PG_FUNCTION_ARGS)
{
	return freq_trans(fcinfo, FREQ_MOST, "cdp.most_frequent");
}

/* transition function of cdp.most_frequent(value, at) */
PG_FUNCTION_INFO_V1(cdp_most_frequent_at_trans);
Datum
cdp_most_frequent_at_trans(PG_FUNCTION_ARGS)
{
	return freq_trans(fcinfo, FREQ_MOST_AT, "cdp.most_frequent");
}

/* transition function of cdp.unique_values(value, max_values) */
PG_FUNCTION_INFO_V1(cdp_unique_values_trans);
Datum
cdp_unique_values_trans(PG_FUNCTION_ARGS)
{
	return freq_trans(fcinfo, FREQ_UNIQUE, "cdp.unique_values");
}

/* transition function of cdp.unique_values(value, at, max_values) */
PG_FUNCTION_INFO_V1(cdp_unique_values_at_trans);
Datum
cdp_unique_values_at_trans(PG_FUNCTION_ARGS)
{
	return freq_trans(fcinfo, FREQ_UNIQUE_AT, "cdp.unique_values");
}

/* combine function of cdp.most_frequent and cdp.unique_values */
PG_FUNCTION_INFO_V1(cdp_freq_combine);
Datum
cdp_freq_combine(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = agg_context(fcinfo, "cdp_freq_combine");
	FreqAggState *a = PG_ARGISNULL(0) ? NULL : (FreqAggState *) PG_GETARG_POINTER(0);
	FreqAggState *b = PG_ARGISNULL(1) ? NULL : (FreqAggState *) PG_GETARG_POINTER(1);

	if (b == NULL)
	{
		if (a == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(a);
	}
	if (a == NULL)
		a = freq_agg_new(cxt, b->ti, b->kind, b->max_values);
	else if (a->max_values != b->max_values)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_values of cdp.unique_values changed within a group from %d to %d",
						a->max_values, b->max_values),
				 errhint("Pass the same max_values for every row.")));
	if (a->ft != NULL && b->ft != NULL)
		cdp_freq_merge(a->ft, b->ft);
	else
	{
		CdpFreqItem *items;
		int			n;

		items = freq_agg_items(b, &n);
		for (int i = 0; i < n; i++)
			a = freq_agg_add(a, items[i].value, items[i].count, items[i].at);
	}
	freq_agg_prune(a);
	PG_RETURN_POINTER(a);
}

/* serialize function of cdp.most_frequent and cdp.unique_values */
PG_FUNCTION_INFO_V1(cdp_freq_serialize);
Datum
cdp_freq_serialize(PG_FUNCTION_ARGS)
{
	FreqAggState *s = (FreqAggState *) PG_GETARG_POINTER(0);
	StringInfoData buf;

	agg_context(fcinfo, "cdp_freq_serialize");
	initStringInfo(&buf);
	appendStringInfoSpaces(&buf, VARHDRSZ);
	appendStringInfoChar(&buf, CDP_MERGE_STATE_VERSION);
	appendStringInfoChar(&buf, s->kind);
	cdp_write_bytes(&buf, &s->max_values, sizeof(int32));
	cdp_write_typeinfo(&buf, s->ti);
	if (s->ft != NULL)
		cdp_freq_write(&buf, s->ft);
	else
	{
		/* the same format as cdp_freq_write */
		int32		n = s->nitems;

		cdp_write_bytes(&buf, &n, sizeof(int32));
		for (int i = 0; i < n; i++)
		{
			cdp_write_bytes(&buf, &s->items[i].count, sizeof(int64));
			cdp_write_bytes(&buf, &s->items[i].at, sizeof(int64));
			cdp_write_value(&buf, s->ti, small_value(s, &s->items[i]));
		}
	}
	SET_VARSIZE(buf.data, buf.len);
	PG_RETURN_BYTEA_P((bytea *) buf.data);
}

/* deserialize function of cdp.most_frequent and cdp.unique_values */
PG_FUNCTION_INFO_V1(cdp_freq_deserialize);
Datum
cdp_freq_deserialize(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	CdpReader	r;
	FreqAggState *s;
	const CdpTypeInfo *ti;
	uint8		kind;
	int32		max_values;
	int32		n;

	agg_context(fcinfo, "cdp_freq_deserialize");
	cdp_reader_init(&r, b);
	kind = cdp_read_uint8(&r);
	if (kind < FREQ_MOST || kind > FREQ_UNIQUE_AT)
		cdp_state_corrupted("Unknown aggregate kind.");
	max_values = cdp_read_int32(&r);
	if (FREQ_IS_UNIQUE(kind) ? max_values < 1 : max_values != 0)
		cdp_state_corrupted("Invalid max_values.");
	ti = read_typeinfo_cached(fcinfo, &r);
	s = freq_agg_new(CurrentMemoryContext, ti, kind, max_values);
	n = cdp_read_int32(&r);
	/* every entry takes at least 17 bytes */
	if (n < 0 || n > (r.len - r.pos) / 17)
		cdp_state_corrupted("The number of distinct values does not fit the state.");
	for (int i = 0; i < n; i++)
	{
		int64		count = cdp_read_int64(&r);
		TimestampTz at = cdp_read_int64(&r);
		Datum		v = cdp_read_value(&r, ti);

		if (count < 1)
			cdp_state_corrupted("A value has a count below one.");
		s = freq_agg_add(s, v, count, at);
		value_free(ti, v);
	}
	cdp_reader_end(&r);
	PG_RETURN_POINTER(s);
}

/* final function of cdp.most_frequent */
PG_FUNCTION_INFO_V1(cdp_most_frequent_final);
Datum
cdp_most_frequent_final(PG_FUNCTION_ARGS)
{
	FreqAggState *s = PG_ARGISNULL(0) ? NULL : (FreqAggState *) PG_GETARG_POINTER(0);
	CdpFreqItem *items;
	int			n;

	agg_context(fcinfo, "cdp_most_frequent_final");
	if (s == NULL)
		PG_RETURN_NULL();
	items = freq_agg_items(s, &n);
	if (n == 0)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(items[cdp_freq_best(items, n, s->ti,
										FREQ_BY_RECENCY(s->kind))].value);
}

/* final function of cdp.unique_values */
PG_FUNCTION_INFO_V1(cdp_unique_values_final);
Datum
cdp_unique_values_final(PG_FUNCTION_ARGS)
{
	FreqAggState *s = PG_ARGISNULL(0) ? NULL : (FreqAggState *) PG_GETARG_POINTER(0);
	CdpFreqItem *items;
	Datum	   *values;
	int			n;
	const CdpTypeInfo *ti;

	agg_context(fcinfo, "cdp_unique_values_final");
	if (s == NULL)
		PG_RETURN_NULL();
	ti = s->ti;
	items = freq_agg_items(s, &n);
	if (n == 0)
		PG_RETURN_NULL();
	cdp_freq_sort(items, n, ti, FREQ_BY_RECENCY(s->kind));
	n = Min(n, s->max_values);
	values = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
		values[i] = items[i].value;
	PG_RETURN_ARRAYTYPE_P(construct_array(values, n, ti->typid, ti->typlen,
										  ti->typbyval, ti->typalign));
}
