/*-------------------------------------------------------------------------
 *
 * audience.c
 *	  The cdp.audience type: a set of profile ids held as a CRoaring bitmap,
 *	  its text and binary I/O, the set algebra and the membership functions.
 *
 * The bitmap code is Debian's CRoaring (32-bit roaring bitmaps); this file
 * only wraps it.  Two rules keep that safe inside a backend:
 *
 * - CRoaring mallocs.  Every bitmap is wrapped in an AudienceBitmap whose
 *	 memory-context reset callback frees it, so an error raised anywhere
 *	 leaks nothing; functions free their temporaries early on success.
 * - CRoaring 0.2.66 trusts its input: its "safe" portable deserializer only
 *	 checks lengths, and an unsorted array or an overflowing run would make
 *	 later operations read or write out of bounds.  So the portable format is
 *	 validated completely here before any byte reaches CRoaring.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/binaryheap.h"
#include "lib/stringinfo.h"
#include "libpq/pqformat.h"
#include "port/pg_bitutils.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "audience.h"

/* Constants of the portable format (RoaringFormatSpec). */
#define PORTABLE_COOKIE_NO_RUN	12346
#define PORTABLE_COOKIE_RUN		12347
#define PORTABLE_NO_OFFSET_MAX	4	/* fewer run-format containers: no offsets */
#define PORTABLE_ARRAY_MAX		4096	/* larger containers are bitsets */
#define PORTABLE_BITSET_BYTES	8192

/* Values moved between CRoaring and PostgreSQL per batch. */
#define AUDIENCE_BATCH			4096

#define AUDIENCE_ID_HINT \
	"Audiences hold profile ids from 0 to 4294967295."

/* ----------------------------------------------------------------
 * The CRoaring wrapper
 * ----------------------------------------------------------------
 */

static void
audience_bitmap_reset(void *arg)
{
	AudienceBitmap *b = (AudienceBitmap *) arg;

	if (b->r != NULL)
		roaring_bitmap_free(b->r);
	b->r = NULL;
}

/*
 * The holder is allocated and its callback registered before CRoaring
 * allocates anything, so no error can fall between the malloc and the moment
 * somebody owns it.
 */
AudienceBitmap *
audience_bitmap_holder(MemoryContext cxt)
{
	AudienceBitmap *b = MemoryContextAlloc(cxt, sizeof(AudienceBitmap));

	b->r = NULL;
	b->cb.func = audience_bitmap_reset;
	b->cb.arg = b;
	MemoryContextRegisterResetCallback(cxt, &b->cb);
	return b;
}

static void
audience_out_of_memory(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("out of memory"),
			 errdetail("The roaring bitmap library could not allocate memory.")));
}

AudienceBitmap *
audience_bitmap_create(MemoryContext cxt)
{
	AudienceBitmap *b = audience_bitmap_holder(cxt);

	b->r = roaring_bitmap_create();
	if (b->r == NULL)
		audience_out_of_memory();
	return b;
}

void
audience_bitmap_check(AudienceBitmap *b)
{
	if (b->r == NULL)
		audience_out_of_memory();
}

void
audience_bitmap_free(AudienceBitmap *b)
{
	if (b != NULL)
		audience_bitmap_reset(b);
}

uint32
audience_check_id(int64 id, const char *what)
{
	if (id < 0 || id > AUDIENCE_MAX_ID)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("%s " INT64_FORMAT " is out of range for type cdp.audience",
						what, id),
				 errdetail(AUDIENCE_ID_HINT),
				 errhint("Map larger or negative identifiers to dense profile ids first.")));
	return (uint32) id;
}

/* ----------------------------------------------------------------
 * The portable format: validation, (de)serialization
 * ----------------------------------------------------------------
 */

static inline uint16
rd16(const unsigned char *p)
{
	return (uint16) (p[0] | (p[1] << 8));
}

static inline uint32
rd32(const unsigned char *p)
{
	return (uint32) p[0] | ((uint32) p[1] << 8) |
		((uint32) p[2] << 16) | ((uint32) p[3] << 24);
}

/*
 * Check buf[0..len) against the portable format, strictly: known cookie,
 * every count and length within the bytes present, container keys strictly
 * ascending, offsets pointing at their containers, array values strictly
 * ascending, bitset population equal to the declared cardinality, runs
 * ascending, non-empty, non-overlapping, non-adjacent and inside 0..65535
 * with the declared cardinality, and no trailing bytes.  Returns NULL when
 * valid, else what is wrong; *at gets the byte offset.
 */
static const char *
portable_check(const unsigned char *buf, size_t len, size_t *at)
{
	size_t		pos;
	uint32		cookie;
	uint32		n;
	bool		hasrun;
	const unsigned char *runflags = NULL;
	const unsigned char *keycards;
	const unsigned char *offsets = NULL;
	int64		prevkey = -1;

#define NEED(nbytes, what) \
	do { \
		if (len - pos < (size_t) (nbytes)) \
		{ \
			*at = pos; \
			return (what); \
		} \
	} while (0)
#define BAD(what) \
	do { \
		*at = pos; \
		return (what); \
	} while (0)

	pos = 0;
	NEED(4, "truncated cookie");
	cookie = rd32(buf);
	if ((cookie & 0xFFFF) == PORTABLE_COOKIE_RUN)
	{
		hasrun = true;
		n = (cookie >> 16) + 1;
		pos = 4;
		NEED((n + 7) / 8, "truncated run-container flags");
		runflags = buf + pos;
		pos += (n + 7) / 8;
	}
	else if (cookie == PORTABLE_COOKIE_NO_RUN)
	{
		hasrun = false;
		pos = 4;
		NEED(4, "truncated container count");
		n = rd32(buf + 4);
		if (n > 65536)
			BAD("container count exceeds 65536");
		pos = 8;
	}
	else
		BAD("unknown cookie (not a portable roaring bitmap)");

	NEED((size_t) n * 4, "truncated container keys and cardinalities");
	keycards = buf + pos;
	pos += (size_t) n * 4;
	if (!hasrun || n >= PORTABLE_NO_OFFSET_MAX)
	{
		NEED((size_t) n * 4, "truncated container offsets");
		offsets = buf + pos;
		pos += (size_t) n * 4;
	}

	for (uint32 i = 0; i < n; i++)
	{
		uint16		key = rd16(keycards + 4 * i);
		uint32		card = (uint32) rd16(keycards + 4 * i + 2) + 1;

		if ((int64) key <= prevkey)
			BAD("container keys are not strictly ascending");
		prevkey = key;
		if (offsets != NULL && rd32(offsets + 4 * i) != pos)
			BAD("container offset does not match the container's position");

		if (hasrun && (runflags[i / 8] & (1 << (i % 8))) != 0)
		{
			uint32		nruns;
			int32		prevend = -2;
			uint32		total = 0;

			NEED(2, "truncated run count");
			nruns = rd16(buf + pos);
			pos += 2;
			if (nruns == 0)
				BAD("run container without runs");
			NEED((size_t) nruns * 4, "truncated runs");
			for (uint32 j = 0; j < nruns; j++)
			{
				int32		start = rd16(buf + pos + 4 * j);
				int32		end = start + rd16(buf + pos + 4 * j + 2);

				if (end > 65535)
					BAD("run extends past its container");
				if (start <= prevend + 1)
					BAD("runs are not ascending, separate and disjoint");
				total += end - start + 1;
				prevend = end;
			}
			if (total != card)
				BAD("run lengths do not add up to the container's cardinality");
			pos += (size_t) nruns * 4;
		}
		else if (card <= PORTABLE_ARRAY_MAX)
		{
			int32		prev = -1;

			NEED((size_t) card * 2, "truncated array container");
			for (uint32 j = 0; j < card; j++)
			{
				int32		v = rd16(buf + pos + 2 * j);

				if (v <= prev)
					BAD("array container values are not strictly ascending");
				prev = v;
			}
			pos += (size_t) card * 2;
		}
		else
		{
			NEED(PORTABLE_BITSET_BYTES, "truncated bitset container");
			if (pg_popcount((const char *) buf + pos, PORTABLE_BITSET_BYTES) != card)
				BAD("bitset population differs from the container's cardinality");
			pos += PORTABLE_BITSET_BYTES;
		}
	}
	if (pos != len)
		BAD("trailing bytes after the bitmap");
	return NULL;

#undef NEED
#undef BAD
}

AudienceBitmap *
audience_from_portable(MemoryContext cxt, const char *buf, size_t len,
					   bool stored)
{
	const char *problem;
	size_t		at = 0;
	AudienceBitmap *b;

	problem = portable_check((const unsigned char *) buf, len, &at);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(stored ? ERRCODE_DATA_CORRUPTED :
						 ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid %s for type cdp.audience",
						stored ? "stored value" : "binary input"),
				 errdetail("Portable roaring bitmap of %zu bytes: %s at byte %zu.",
						   len, problem, at),
				 stored ? 0 :
				 errhint("Send CRoaring's portable serialization of a 32-bit roaring bitmap.")));

	b = audience_bitmap_holder(cxt);
	b->r = roaring_bitmap_portable_deserialize_safe(buf, len);
	if (b->r == NULL)
		audience_out_of_memory();
	return b;
}

AudienceBitmap *
audience_from_datum(MemoryContext cxt, Datum d)
{
	struct varlena *raw = (struct varlena *) DatumGetPointer(d);
	struct varlena *v = PG_DETOAST_DATUM(d);
	const char *data = VARDATA_ANY(v);
	size_t		len = VARSIZE_ANY_EXHDR(v);
	AudienceBitmap *b;

	if (len < 1 || (uint8) data[0] != AUDIENCE_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid stored value for type cdp.audience"),
				 errdetail("Format version %d is not supported (expected %d).",
						   len < 1 ? -1 : (int) (uint8) data[0],
						   AUDIENCE_VERSION)));
	b = audience_from_portable(cxt, data + 1, len - 1, true);
	/* don't let detoasted copies pile up in long-lived contexts */
	if (v != raw)
		pfree(v);
	return b;
}

struct varlena *
audience_to_varlena(AudienceBitmap *b)
{
	size_t		size;
	struct varlena *result;

	roaring_bitmap_run_optimize(b->r);
	size = roaring_bitmap_portable_size_in_bytes(b->r);
	if (size > MaxAllocSize - VARHDRSZ - 1)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cdp.audience of %zu bytes is too large", size),
				 errdetail("A value is limited to 1 GB.")));
	result = palloc(VARHDRSZ + 1 + size);
	SET_VARSIZE(result, VARHDRSZ + 1 + size);
	*((uint8 *) VARDATA(result)) = AUDIENCE_VERSION;
	if (roaring_bitmap_portable_serialize(b->r, VARDATA(result) + 1) != size)
		elog(ERROR, "roaring bitmap serialized to an unexpected size");
	return result;
}

/* Shorthands for the SQL functions: arguments in, result out. */
#define AUDIENCE_ARG(n) audience_from_datum(CurrentMemoryContext, PG_GETARG_DATUM(n))
#define AUDIENCE_RETURN(b) \
	do { \
		struct varlena *result_ = audience_to_varlena(b); \
		audience_bitmap_free(b); \
		PG_RETURN_POINTER(result_); \
	} while (0)

/*
 * Cardinality straight from the portable header, without deserializing.
 * Only called on values that audience_from_datum would accept, but it checks
 * the header bounds anyway.
 */
static uint64
audience_cardinality(Datum d)
{
	struct varlena *v = PG_DETOAST_DATUM_PACKED(d);
	const unsigned char *buf = (const unsigned char *) VARDATA_ANY(v) + 1;
	size_t		len = VARSIZE_ANY_EXHDR(v);
	uint32		cookie;
	uint32		n;
	size_t		pos;
	uint64		card = 0;

	if (len < 5 || buf[-1] != AUDIENCE_VERSION)
		goto corrupt;
	len--;
	cookie = rd32(buf);
	if ((cookie & 0xFFFF) == PORTABLE_COOKIE_RUN)
	{
		n = (cookie >> 16) + 1;
		pos = 4 + (n + 7) / 8;
	}
	else if (cookie == PORTABLE_COOKIE_NO_RUN && len >= 8)
	{
		n = rd32(buf + 4);
		pos = 8;
	}
	else
		goto corrupt;
	if (pos > len || (len - pos) / 4 < n)
		goto corrupt;
	for (uint32 i = 0; i < n; i++)
		card += (uint64) rd16(buf + pos + 4 * i + 2) + 1;
	return card;

corrupt:
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("invalid stored value for type cdp.audience"),
			 errdetail("The bitmap header is truncated or has an unknown format.")));
	return 0;					/* keep compiler quiet */
}

/* ----------------------------------------------------------------
 * Text and binary I/O
 * ----------------------------------------------------------------
 */

static void
audience_syntax_error(const char *str, const char *p, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid input syntax for type cdp.audience: \"%s\"", str),
			 errdetail("%s at position %d.", detail, (int) (p - str) + 1),
			 errhint("Write profile ids between braces, for example {1,2,3} or {1..100,205}.")));
}

/* Parse one id at *pp: digits only; a sign or overflow is out of range. */
static uint32
audience_parse_id(const char *str, const char **pp)
{
	const char *p = *pp;
	const char *start = p;
	uint64		v = 0;

	if (*p == '-' || *p == '+')
		p++;
	if (!isdigit((unsigned char) *p))
		audience_syntax_error(str, p, "Expected a profile id");
	while (isdigit((unsigned char) *p))
	{
		if (v <= AUDIENCE_MAX_ID)
			v = v * 10 + (*p - '0');
		p++;
	}
	if (*start == '-' ? (v != 0) : (v > AUDIENCE_MAX_ID))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("profile id \"%.*s\" is out of range for type cdp.audience",
						(int) (p - start), start),
				 errdetail(AUDIENCE_ID_HINT),
				 errhint("Map larger or negative identifiers to dense profile ids first.")));
	*pp = p;
	return (uint32) v;
}

#define SKIP_WS(p) \
	while (*(p) == ' ' || *(p) == '\t' || *(p) == '\n' || *(p) == '\r') (p)++

/* text -> cdp.audience: {1,2,3}, ranges {1..100}, order and duplicates free */
PG_FUNCTION_INFO_V1(cdp_audience_in);
Datum
cdp_audience_in(PG_FUNCTION_ARGS)
{
	const char *str = PG_GETARG_CSTRING(0);
	const char *p = str;
	AudienceBitmap *b = audience_bitmap_create(CurrentMemoryContext);
	uint32		batch[AUDIENCE_BATCH];
	int			nbatch = 0;

	SKIP_WS(p);
	if (*p != '{')
		audience_syntax_error(str, p, "Expected \"{\"");
	p++;
	SKIP_WS(p);
	if (*p == '}')
		p++;
	else
	{
		for (;;)
		{
			uint32		lo;

			SKIP_WS(p);
			lo = audience_parse_id(str, &p);
			SKIP_WS(p);
			if (p[0] == '.' && p[1] == '.')
			{
				uint32		hi;

				p += 2;
				SKIP_WS(p);
				hi = audience_parse_id(str, &p);
				if (hi < lo)
					audience_syntax_error(str, p, "Range upper bound is below its lower bound");
				roaring_bitmap_add_range_closed(b->r, lo, hi);
				SKIP_WS(p);
			}
			else
			{
				batch[nbatch++] = lo;
				if (nbatch == AUDIENCE_BATCH)
				{
					roaring_bitmap_add_many(b->r, nbatch, batch);
					nbatch = 0;
				}
			}
			if (*p == ',')
			{
				p++;
				continue;
			}
			if (*p == '}')
			{
				p++;
				break;
			}
			audience_syntax_error(str, p, "Expected \",\" or \"}\"");
		}
	}
	SKIP_WS(p);
	if (*p != '\0')
		audience_syntax_error(str, p, "Unexpected text after \"}\"");
	if (nbatch > 0)
		roaring_bitmap_add_many(b->r, nbatch, batch);
	AUDIENCE_RETURN(b);
}

static void
append_id(StringInfo buf, uint32 v)
{
	enlargeStringInfo(buf, 10);
	buf->len += pg_ultoa_n(v, buf->data + buf->len);
	buf->data[buf->len] = '\0';
}

/* Append one maximal run of consecutive ids: 3 or more become lo..hi. */
static void
append_run(StringInfo buf, uint32 lo, uint32 hi, bool *first)
{
	if (!*first)
		appendStringInfoChar(buf, ',');
	*first = false;
	append_id(buf, lo);
	if (hi - lo >= 2)
	{
		appendBinaryStringInfo(buf, "..", 2);
		append_id(buf, hi);
	}
	else if (hi != lo)
	{
		appendStringInfoChar(buf, ',');
		append_id(buf, hi);
	}
}

/* cdp.audience -> text, ascending, runs of 3 or more written as lo..hi */
PG_FUNCTION_INFO_V1(cdp_audience_out);
Datum
cdp_audience_out(PG_FUNCTION_ARGS)
{
	AudienceBitmap *b = AUDIENCE_ARG(0);
	roaring_uint32_iterator_t it;
	uint32		batch[AUDIENCE_BATCH];
	uint32		n;
	uint32		lo = 0;
	uint32		hi = 0;
	bool		inrun = false;
	bool		first = true;
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	roaring_init_iterator(b->r, &it);
	while ((n = roaring_read_uint32_iterator(&it, batch, AUDIENCE_BATCH)) > 0)
	{
		for (uint32 i = 0; i < n; i++)
		{
			if (inrun && batch[i] == hi + 1)
				hi = batch[i];
			else
			{
				if (inrun)
					append_run(&buf, lo, hi, &first);
				lo = hi = batch[i];
				inrun = true;
			}
		}
	}
	if (inrun)
		append_run(&buf, lo, hi, &first);
	appendStringInfoChar(&buf, '}');
	audience_bitmap_free(b);
	PG_RETURN_CSTRING(buf.data);
}

/* binary input: CRoaring's portable format, validated */
PG_FUNCTION_INFO_V1(cdp_audience_recv);
Datum
cdp_audience_recv(PG_FUNCTION_ARGS)
{
	StringInfo	msg = (StringInfo) PG_GETARG_POINTER(0);
	AudienceBitmap *b;

	b = audience_from_portable(CurrentMemoryContext,
							   msg->data + msg->cursor,
							   msg->len - msg->cursor, false);
	msg->cursor = msg->len;
	AUDIENCE_RETURN(b);
}

/* binary output: CRoaring's portable format, as stored */
PG_FUNCTION_INFO_V1(cdp_audience_send);
Datum
cdp_audience_send(PG_FUNCTION_ARGS)
{
	struct varlena *v = PG_GETARG_VARLENA_PP(0);
	StringInfoData buf;

	/* what we store was validated on the way in; check the version only */
	(void) audience_cardinality(PointerGetDatum(v));
	pq_begintypsend(&buf);
	pq_sendbytes(&buf, VARDATA_ANY(v) + 1, VARSIZE_ANY_EXHDR(v) - 1);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* bytea in CRoaring's portable format -> cdp.audience, validated */
PG_FUNCTION_INFO_V1(cdp_audience_from_roaring);
Datum
cdp_audience_from_roaring(PG_FUNCTION_ARGS)
{
	bytea	   *in = PG_GETARG_BYTEA_PP(0);
	AudienceBitmap *b;

	b = audience_from_portable(CurrentMemoryContext, VARDATA_ANY(in),
							   VARSIZE_ANY_EXHDR(in), false);
	AUDIENCE_RETURN(b);
}

/* cdp.audience -> bytea in CRoaring's portable format */
PG_FUNCTION_INFO_V1(cdp_to_roaring);
Datum
cdp_to_roaring(PG_FUNCTION_ARGS)
{
	struct varlena *v = PG_GETARG_VARLENA_PP(0);
	size_t		len;
	bytea	   *result;

	(void) audience_cardinality(PointerGetDatum(v));
	len = VARSIZE_ANY_EXHDR(v) - 1;
	result = palloc(VARHDRSZ + len);
	SET_VARSIZE(result, VARHDRSZ + len);
	memcpy(VARDATA(result), VARDATA_ANY(v) + 1, len);
	PG_RETURN_BYTEA_P(result);
}

/* ----------------------------------------------------------------
 * Construction from ids
 * ----------------------------------------------------------------
 */

/* bigint[] -> cdp.audience; NULL elements are skipped */
PG_FUNCTION_INFO_V1(cdp_audience);
Datum
cdp_audience(PG_FUNCTION_ARGS)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	AudienceBitmap *b;
	uint32		batch[AUDIENCE_BATCH];
	int			nbatch = 0;

	if (ARR_ELEMTYPE(arr) != INT8OID)
		elog(ERROR, "expected a bigint array");
	deconstruct_array(arr, INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &elems, &nulls, &nelems);
	b = audience_bitmap_create(CurrentMemoryContext);
	for (int i = 0; i < nelems; i++)
	{
		if (nulls[i])
			continue;
		batch[nbatch++] = audience_check_id(DatumGetInt64(elems[i]), "profile id");
		if (nbatch == AUDIENCE_BATCH)
		{
			roaring_bitmap_add_many(b->r, nbatch, batch);
			nbatch = 0;
		}
	}
	if (nbatch > 0)
		roaring_bitmap_add_many(b->r, nbatch, batch);
	pfree(elems);
	pfree(nulls);
	AUDIENCE_RETURN(b);
}

/* ----------------------------------------------------------------
 * Set algebra
 * ----------------------------------------------------------------
 */

/* a | b: union */
PG_FUNCTION_INFO_V1(cdp_audience_union);
Datum
cdp_audience_union(PG_FUNCTION_ARGS)
{
	AudienceBitmap *a = AUDIENCE_ARG(0);
	AudienceBitmap *b = AUDIENCE_ARG(1);

	roaring_bitmap_or_inplace(a->r, b->r);
	audience_bitmap_free(b);
	AUDIENCE_RETURN(a);
}

/* a & b: intersection */
PG_FUNCTION_INFO_V1(cdp_audience_intersection);
Datum
cdp_audience_intersection(PG_FUNCTION_ARGS)
{
	AudienceBitmap *a = AUDIENCE_ARG(0);
	AudienceBitmap *b = AUDIENCE_ARG(1);

	roaring_bitmap_and_inplace(a->r, b->r);
	audience_bitmap_free(b);
	AUDIENCE_RETURN(a);
}

/* a - b: members of a that are not in b */
PG_FUNCTION_INFO_V1(cdp_audience_difference);
Datum
cdp_audience_difference(PG_FUNCTION_ARGS)
{
	AudienceBitmap *a = AUDIENCE_ARG(0);
	AudienceBitmap *b = AUDIENCE_ARG(1);

	roaring_bitmap_andnot_inplace(a->r, b->r);
	audience_bitmap_free(b);
	AUDIENCE_RETURN(a);
}

/* a # b: members of exactly one of a and b */
PG_FUNCTION_INFO_V1(cdp_audience_symmetric_difference);
Datum
cdp_audience_symmetric_difference(PG_FUNCTION_ARGS)
{
	AudienceBitmap *a = AUDIENCE_ARG(0);
	AudienceBitmap *b = AUDIENCE_ARG(1);

	roaring_bitmap_xor_inplace(a->r, b->r);
	audience_bitmap_free(b);
	AUDIENCE_RETURN(a);
}

/* Do a and b hold the same ids?  Equal bytes settle it without CRoaring. */
static bool
audience_equal(FunctionCallInfo fcinfo)
{
	struct varlena *va = PG_GETARG_VARLENA_PP(0);
	struct varlena *vb = PG_GETARG_VARLENA_PP(1);
	AudienceBitmap *a;
	AudienceBitmap *b;
	bool		result;

	if (VARSIZE_ANY_EXHDR(va) == VARSIZE_ANY_EXHDR(vb) &&
		memcmp(VARDATA_ANY(va), VARDATA_ANY(vb), VARSIZE_ANY_EXHDR(va)) == 0)
		return true;
	/* different bytes can still be the same set in another container mix */
	if (audience_cardinality(PointerGetDatum(va)) !=
		audience_cardinality(PointerGetDatum(vb)))
		return false;
	a = audience_from_datum(CurrentMemoryContext, PointerGetDatum(va));
	b = audience_from_datum(CurrentMemoryContext, PointerGetDatum(vb));
	result = roaring_bitmap_equals(a->r, b->r);
	audience_bitmap_free(a);
	audience_bitmap_free(b);
	return result;
}

/* a = b */
PG_FUNCTION_INFO_V1(cdp_audience_eq);
Datum
cdp_audience_eq(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(audience_equal(fcinfo));
}

/* a <> b */
PG_FUNCTION_INFO_V1(cdp_audience_ne);
Datum
cdp_audience_ne(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(!audience_equal(fcinfo));
}

/* a @> b: every member of b is in a */
PG_FUNCTION_INFO_V1(cdp_audience_contains);
Datum
cdp_audience_contains(PG_FUNCTION_ARGS)
{
	AudienceBitmap *a = AUDIENCE_ARG(0);
	AudienceBitmap *b = AUDIENCE_ARG(1);
	bool		result = roaring_bitmap_is_subset(b->r, a->r);

	audience_bitmap_free(a);
	audience_bitmap_free(b);
	PG_RETURN_BOOL(result);
}

/* a <@ b: every member of a is in b */
PG_FUNCTION_INFO_V1(cdp_audience_contained);
Datum
cdp_audience_contained(PG_FUNCTION_ARGS)
{
	AudienceBitmap *a = AUDIENCE_ARG(0);
	AudienceBitmap *b = AUDIENCE_ARG(1);
	bool		result = roaring_bitmap_is_subset(a->r, b->r);

	audience_bitmap_free(a);
	audience_bitmap_free(b);
	PG_RETURN_BOOL(result);
}

/* a && b: do a and b share a member? */
PG_FUNCTION_INFO_V1(cdp_audience_overlaps);
Datum
cdp_audience_overlaps(PG_FUNCTION_ARGS)
{
	AudienceBitmap *a = AUDIENCE_ARG(0);
	AudienceBitmap *b = AUDIENCE_ARG(1);
	bool		result = roaring_bitmap_intersect(a->r, b->r);

	audience_bitmap_free(a);
	audience_bitmap_free(b);
	PG_RETURN_BOOL(result);
}

/*
 * Membership tests against one audience argument.  When that argument is a
 * constant or an external parameter (the usual "WHERE aud @> profile_id"
 * over many rows) the bitmap is deserialized once per query and kept in
 * fn_extra; otherwise once per call.
 */
static bool
audience_has_id(FunctionCallInfo fcinfo, int audarg, int idarg)
{
	uint32		id = audience_check_id(PG_GETARG_INT64(idarg), "profile id");
	AudienceBitmap *b;
	bool		result;

	if (get_fn_expr_arg_stable(fcinfo->flinfo, audarg))
	{
		b = (AudienceBitmap *) fcinfo->flinfo->fn_extra;
		if (b == NULL)
		{
			b = audience_from_datum(fcinfo->flinfo->fn_mcxt,
									PG_GETARG_DATUM(audarg));
			fcinfo->flinfo->fn_extra = b;
		}
		return roaring_bitmap_contains(b->r, id);
	}
	b = audience_from_datum(CurrentMemoryContext, PG_GETARG_DATUM(audarg));
	result = roaring_bitmap_contains(b->r, id);
	audience_bitmap_free(b);
	return result;
}

/* a @> id */
PG_FUNCTION_INFO_V1(cdp_audience_contains_id);
Datum
cdp_audience_contains_id(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(audience_has_id(fcinfo, 0, 1));
}

/* id <@ a */
PG_FUNCTION_INFO_V1(cdp_id_contained);
Datum
cdp_id_contained(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(audience_has_id(fcinfo, 1, 0));
}

/* cdp.contains(a, id): same as a @> id */
PG_FUNCTION_INFO_V1(cdp_contains);
Datum
cdp_contains(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(audience_has_id(fcinfo, 0, 1));
}

/* ----------------------------------------------------------------
 * Measures
 * ----------------------------------------------------------------
 */

/* number of members, read from the header */
PG_FUNCTION_INFO_V1(cdp_size);
Datum
cdp_size(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64((int64) audience_cardinality(PG_GETARG_DATUM(0)));
}

/* |a & b| without building the intersection */
PG_FUNCTION_INFO_V1(cdp_overlap);
Datum
cdp_overlap(PG_FUNCTION_ARGS)
{
	AudienceBitmap *a = AUDIENCE_ARG(0);
	AudienceBitmap *b = AUDIENCE_ARG(1);
	uint64		result = roaring_bitmap_and_cardinality(a->r, b->r);

	audience_bitmap_free(a);
	audience_bitmap_free(b);
	PG_RETURN_INT64((int64) result);
}

/* |a & b| / |a | b|; two empty audiences are identical, so 1 */
PG_FUNCTION_INFO_V1(cdp_jaccard);
Datum
cdp_jaccard(PG_FUNCTION_ARGS)
{
	AudienceBitmap *a = AUDIENCE_ARG(0);
	AudienceBitmap *b = AUDIENCE_ARG(1);
	uint64		inter = roaring_bitmap_and_cardinality(a->r, b->r);
	uint64		uni = roaring_bitmap_get_cardinality(a->r) +
		roaring_bitmap_get_cardinality(b->r) - inter;

	audience_bitmap_free(a);
	audience_bitmap_free(b);
	PG_RETURN_FLOAT8(uni == 0 ? 1.0 : (double) inter / (double) uni);
}

/* ----------------------------------------------------------------
 * Members out
 * ----------------------------------------------------------------
 */

typedef struct MembersState
{
	AudienceBitmap *b;
	roaring_uint32_iterator_t it;
	uint32		n;
	uint32		next;
	uint32		batch[AUDIENCE_BATCH];
} MembersState;

/* members in ascending order, one row each */
PG_FUNCTION_INFO_V1(cdp_members);
Datum
cdp_members(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;
	MembersState *st;

	if (SRF_IS_FIRSTCALL())
	{
		funcctx = SRF_FIRSTCALL_INIT();
		st = MemoryContextAlloc(funcctx->multi_call_memory_ctx,
								sizeof(MembersState));
		/* freed with multi_call_memory_ctx, also when the scan stops early */
		st->b = audience_from_datum(funcctx->multi_call_memory_ctx,
									PG_GETARG_DATUM(0));
		roaring_init_iterator(st->b->r, &st->it);
		st->n = st->next = 0;
		funcctx->user_fctx = st;
	}
	funcctx = SRF_PERCALL_SETUP();
	st = (MembersState *) funcctx->user_fctx;
	if (st->next == st->n)
	{
		st->n = roaring_read_uint32_iterator(&st->it, st->batch, AUDIENCE_BATCH);
		st->next = 0;
		if (st->n == 0)
		{
			audience_bitmap_free(st->b);
			SRF_RETURN_DONE(funcctx);
		}
	}
	SRF_RETURN_NEXT(funcctx, Int64GetDatum((int64) st->batch[st->next++]));
}

/* members as an ascending bigint[] */
PG_FUNCTION_INFO_V1(cdp_to_array);
Datum
cdp_to_array(PG_FUNCTION_ARGS)
{
	AudienceBitmap *b = AUDIENCE_ARG(0);
	uint64		card = roaring_bitmap_get_cardinality(b->r);
	roaring_uint32_iterator_t it;
	ArrayType  *result;
	int64	   *out;
	size_t		nbytes;
	uint32		n;

	if (card == 0)
	{
		audience_bitmap_free(b);
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(INT8OID));
	}
	if (card > (MaxAllocSize - ARR_OVERHEAD_NONULLS(1)) / sizeof(int64))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cdp.audience of " UINT64_FORMAT " members is too large for an array",
						card),
				 errdetail("An array is limited to 1 GB."),
				 errhint("Use cdp.members() instead.")));
	nbytes = ARR_OVERHEAD_NONULLS(1) + card * sizeof(int64);
	result = (ArrayType *) palloc0(nbytes);
	SET_VARSIZE(result, nbytes);
	result->ndim = 1;
	result->dataoffset = 0;
	result->elemtype = INT8OID;
	ARR_DIMS(result)[0] = (int) card;
	ARR_LBOUND(result)[0] = 1;
	out = (int64 *) ARR_DATA_PTR(result);

	roaring_init_iterator(b->r, &it);
	while ((n = roaring_read_uint32_iterator(&it, (uint32 *) out, AUDIENCE_BATCH)) > 0)
	{
		/* widen in place, back to front */
		for (int i = (int) n - 1; i >= 0; i--)
			out[i] = ((uint32 *) out)[i];
		out += n;
	}
	audience_bitmap_free(b);
	PG_RETURN_ARRAYTYPE_P(result);
}

/* ----------------------------------------------------------------
 * Sampling
 * ----------------------------------------------------------------
 */

/* sample keys: 32 bits of the seeded hash, then the id itself */
static inline uint64
sample_key(uint32 id, uint64 seed)
{
	return ((hash_bytes_uint32_extended(id, seed) >> 32) << 32) | id;
}

static int
sample_key_cmp(Datum a, Datum b, void *arg)
{
	uint64		ka = DatumGetUInt64(a);
	uint64		kb = DatumGetUInt64(b);

	return (ka > kb) - (ka < kb);
}

static int
uint32_cmp(const void *a, const void *b)
{
	uint32		x = *(const uint32 *) a;
	uint32		y = *(const uint32 *) b;

	return (x > y) - (x < y);
}

/*
 * n members chosen by a seeded hash of their ids: the n with the smallest
 * hash.  Deterministic for a seed, and coordinated across audiences: a
 * profile's rank depends only on (seed, id), so samples of overlapping
 * audiences under one seed agree on the shared profiles.
 */
PG_FUNCTION_INFO_V1(cdp_sample);
Datum
cdp_sample(PG_FUNCTION_ARGS)
{
	int64		n = PG_GETARG_INT64(1);
	uint64		seed = (uint64) PG_GETARG_INT64(2);
	AudienceBitmap *b;
	AudienceBitmap *result;
	binaryheap *heap;
	roaring_uint32_iterator_t it;
	uint32		batch[AUDIENCE_BATCH];
	uint32		got;
	uint32	   *ids;

	if (n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sample size " INT64_FORMAT " is negative", n),
				 errhint("Ask for 0 or more members.")));
	b = AUDIENCE_ARG(0);
	if ((uint64) n >= roaring_bitmap_get_cardinality(b->r))
	{
		audience_bitmap_free(b);
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	}
	if (n > (int64) ((MaxAllocSize - 1024) / sizeof(Datum)))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("sample size " INT64_FORMAT " is too large", n),
				 errdetail("Samples are limited to %d members.",
						   (int) ((MaxAllocSize - 1024) / sizeof(Datum)))));

	result = audience_bitmap_create(CurrentMemoryContext);
	if (n > 0)
	{
		heap = binaryheap_allocate((int) n, sample_key_cmp, NULL);
		roaring_init_iterator(b->r, &it);
		while ((got = roaring_read_uint32_iterator(&it, batch, AUDIENCE_BATCH)) > 0)
		{
			for (uint32 i = 0; i < got; i++)
			{
				uint64		key = sample_key(batch[i], seed);

				if (heap->bh_size < n)
				{
					binaryheap_add_unordered(heap, UInt64GetDatum(key));
					if (heap->bh_size == n)
						binaryheap_build(heap);
				}
				else if (key < DatumGetUInt64(binaryheap_first(heap)))
					binaryheap_replace_first(heap, UInt64GetDatum(key));
			}
		}
		/* ids in order, so CRoaring appends instead of inserting */
		ids = palloc(sizeof(uint32) * heap->bh_size);
		for (int i = 0; i < heap->bh_size; i++)
			ids[i] = (uint32) DatumGetUInt64(heap->bh_nodes[i]);
		qsort(ids, heap->bh_size, sizeof(uint32), uint32_cmp);
		roaring_bitmap_add_many(result->r, heap->bh_size, ids);
		pfree(ids);
		binaryheap_free(heap);
	}
	audience_bitmap_free(b);
	AUDIENCE_RETURN(result);
}
