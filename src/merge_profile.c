/*-------------------------------------------------------------------------
 *
 * merge_profile.c
 *	  Whole-record merge: cdp.merge_profile and cdp.merge_profile_lineage
 *	  build one golden record per group from jsonb observations, one
 *	  survivorship strategy per top-level key.
 *
 * The rules are parsed once per query and cached in fn_extra.  Each
 * attribute keeps only what its strategy needs: the running winner
 * (latest, earliest, priority, max, min), a numeric sum, a count, or a
 * value -> count table (most_frequent, union).  The result jsonb is built
 * once, in the final function.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "port/pg_bitutils.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/varlena.h"

#include "merge_agg.h"

typedef enum MergeStrategy
{
	MS_LATEST = 1,
	MS_EARLIEST,
	MS_PRIORITY,
	MS_MOST_FREQUENT,
	MS_MAX,
	MS_MIN,
	MS_SUM,
	MS_COUNT,
	MS_UNION
} MergeStrategy;

#define MS_FIRST MS_LATEST
#define MS_LAST MS_UNION

static const char *const strategy_names[] = {
	NULL, "latest", "earliest", "priority", "most_frequent", "max", "min",
	"sum", "count", "union"
};

#define IS_WINNER_STRATEGY(s) \
	((s) == MS_LATEST || (s) == MS_EARLIEST || (s) == MS_PRIORITY || \
	 (s) == MS_MAX || (s) == MS_MIN)

/* One parsed rule. */
typedef struct MergeRule
{
	const char *key;
	int			keylen;
	uint8		strategy;
} MergeRule;

/* An attribute name; names are interned once per query, see key_intern. */
typedef struct KeyStr
{
	const char *s;
	int32		len;
} KeyStr;

typedef struct KeyEntry
{
	KeyStr		k;
	int32		idx;			/* attribute index (attribute index only) */
	uint32		hash;
	char		status;
} KeyEntry;

static inline uint32
key_hash(KeyStr k)
{
	return hash_bytes((const unsigned char *) k.s, k.len);
}

static inline bool
key_equal(KeyStr a, KeyStr b)
{
	return a.len == b.len && (a.s == b.s || memcmp(a.s, b.s, a.len) == 0);
}

#define SH_PREFIX keyh
#define SH_ELEMENT_TYPE KeyEntry
#define SH_KEY_TYPE KeyStr
#define SH_KEY k
#define SH_HASH_KEY(tb, key) key_hash(key)
#define SH_EQUAL(tb, a, b) key_equal(a, b)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) a->hash
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/*
 * Per-query cache in fn_extra of every support function: the rules as last
 * seen, parsed; the interned attribute names; jsonb's type information.
 */
typedef struct MergeCache
{
	bool		parsed;
	Jsonb	   *raw;			/* copy of the rules, NULL when none given */
	bool		ignore_empty;
	int			nrules;
	MergeRule  *rules;			/* in jsonb key order (length, then bytes) */
	CdpTypeInfo jsonb_ti;
	MemoryContext mcxt;
	keyh_hash  *keys;
} MergeCache;

/* Lineage of one attribute, kept only by merge_profile_lineage. */
typedef struct MergeLineage
{
	TimestampTz first_at;
	TimestampTz last_at;
	char	   *source;			/* label of the winner, NULL when none */
	int32		srclen;
	int32		srccap;
} MergeLineage;

/*
 * What one group knows about one attribute: 48 bytes, kept in an array,
 * plus the strategy's payload.  Millions of groups are held at once by a
 * hash aggregate, so this stays small.
 */
typedef struct MergeAttr
{
	const char *key;			/* interned */
	void	   *data;			/* Jsonb winner, Numeric sum, CdpFreqTable */
	TimestampTz at;
	int64		nobs;			/* observations that contributed */
	int32		keylen;
	int32		valcap;			/* bytes allocated for a winner value */
	int32		priority;
	uint8		strategy;
	bool		has;			/* data holds a winner or a sum */
	bool		prio_null;		/* the winner's priority was NULL */
} MergeAttr;

#define MERGE_LINEAR_MAX 12

typedef struct MergeState
{
	MemoryContext cxt;
	int32		nattrs;
	int32		maxattrs;
	bool		lineage;
	MergeAttr  *attrs;
	MergeLineage *lins;			/* parallel to attrs, lineage only */
	keyh_hash  *index;			/* NULL while nattrs <= MERGE_LINEAR_MAX */
} MergeState;

static MemoryContext
merge_agg_context(FunctionCallInfo fcinfo)
{
	MemoryContext cxt;

	if (!AggCheckCallContext(fcinfo, &cxt))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cdp.merge_profile called in non-aggregate context")));
	return cxt;
}

/*
 * Rules
 */

static const char *
strategy_list(void)
{
	return "latest, earliest, priority, most_frequent, max, min, sum, count, union";
}

static int
rule_cmp(const char *k1, int l1, const char *k2, int l2)
{
	if (l1 != l2)
		return l1 < l2 ? -1 : 1;
	return memcmp(k1, k2, l1);
}

static void
parse_rules(MergeCache *c, MemoryContext mcxt, Jsonb *rules)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	int			keylen = 0;
	int			n;
	MemoryContext old = MemoryContextSwitchTo(mcxt);

	c->ignore_empty = true;
	c->nrules = 0;
	c->rules = NULL;
	c->raw = NULL;
	if (rules == NULL)
	{
		MemoryContextSwitchTo(old);
		return;
	}
	if (!JB_ROOT_IS_OBJECT(rules))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("merge rules must be a jsonb object"),
				 errdetail("The rules given are a jsonb %s.",
						   JB_ROOT_IS_SCALAR(rules) ? "scalar" : "array"),
				 errhint("Pass an object such as '{\"email\": \"priority\", \"tags\": \"union\"}'.")));
	n = JB_ROOT_COUNT(rules);
	c->rules = palloc(sizeof(MergeRule) * Max(n, 1));
	it = JsonbIteratorInit(&rules->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			keylen = v.val.string.len;
		}
		else if (tok == WJB_VALUE)
		{
			if (strcmp(key, "ignore_empty") == 0)
			{
				if (v.type != jbvBool)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("merge rule \"ignore_empty\" must be true or false"),
							 errdetail("The value given is a jsonb %s.", JsonbTypeName(&v))));
				c->ignore_empty = v.val.boolean;
			}
			else
			{
				int			s;
				char	   *name;

				if (v.type != jbvString)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("merge rule for attribute \"%s\" must be a strategy name", key),
							 errdetail("The value given is a jsonb %s.", JsonbTypeName(&v)),
							 errhint("Use one of %s.", strategy_list())));
				name = pnstrdup(v.val.string.val, v.val.string.len);
				for (s = MS_FIRST; s <= MS_LAST; s++)
					if (strcmp(name, strategy_names[s]) == 0)
						break;
				if (s > MS_LAST)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("unknown merge strategy \"%s\" for attribute \"%s\"", name, key),
							 errhint("Use one of %s.", strategy_list())));
				c->rules[c->nrules].key = key;
				c->rules[c->nrules].keylen = keylen;
				c->rules[c->nrules].strategy = s;
				c->nrules++;
			}
		}
	}
	/* iteration order is jsonb key order, which rule_cmp follows */
	c->raw = (Jsonb *) palloc(VARSIZE(rules));
	memcpy(c->raw, rules, VARSIZE(rules));
	MemoryContextSwitchTo(old);
}

/* The support function's per-query cache. */
static MergeCache *
get_cache(FunctionCallInfo fcinfo)
{
	MergeCache *c = (MergeCache *) fcinfo->flinfo->fn_extra;

	if (c == NULL)
	{
		c = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(MergeCache));
		c->mcxt = fcinfo->flinfo->fn_mcxt;
		c->ignore_empty = true;
		cdp_typeinfo_init(&c->jsonb_ti, JSONBOID, InvalidOid);
		c->keys = keyh_create(c->mcxt, 32, NULL);
		fcinfo->flinfo->fn_extra = c;
	}
	return c;
}

/* The parsed rules of this row; parsed again only when they change. */
static MergeCache *
get_rules(FunctionCallInfo fcinfo, int rules_arg)
{
	MergeCache *c = get_cache(fcinfo);
	Jsonb	   *rules = NULL;

	if (rules_arg < PG_NARGS() && !PG_ARGISNULL(rules_arg))
		rules = PG_GETARG_JSONB_P(rules_arg);
	if (!c->parsed ||
		(rules == NULL ? c->raw != NULL :
		 (c->raw == NULL || VARSIZE(c->raw) != VARSIZE(rules) ||
		  memcmp(c->raw, rules, VARSIZE(rules)) != 0)))
	{
		parse_rules(c, c->mcxt, rules);
		c->parsed = true;
	}
	return c;
}

/* A copy of an attribute name that lives as long as the query. */
static const char *
key_intern(MergeCache *c, const char *s, int len)
{
	KeyStr		k = {s, len};
	KeyEntry   *e;
	bool		found;

	e = keyh_insert(c->keys, k, &found);
	if (!found)
	{
		char	   *copy = MemoryContextAlloc(c->mcxt, len + 1);

		memcpy(copy, s, len);
		copy[len] = '\0';
		e->k.s = copy;
	}
	return e->k.s;
}

static uint8
rule_strategy(MergeCache *c, const char *key, int keylen)
{
	int			lo = 0,
				hi = c->nrules - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		int			r = rule_cmp(key, keylen, c->rules[mid].key, c->rules[mid].keylen);

		if (r == 0)
			return c->rules[mid].strategy;
		if (r < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return MS_LATEST;
}

/*
 * jsonb values
 */

static inline bool
jval_is_empty(const JsonbValue *v)
{
	if (v->type == jbvNull)
		return true;
	if (v->type == jbvString)
		return v->val.string.len == 0;
	if (v->type == jbvBinary)
		return JsonContainerSize(v->val.binary.data) == 0;
	return false;
}

/* jsonb's btree order, without building jsonb for same-typed scalars */
static int
jval_cmp(JsonbValue *a, JsonbValue *b)
{
	Jsonb	   *ja;
	Jsonb	   *jb;

	if (a->type == b->type)
	{
		switch (a->type)
		{
			case jbvNull:
				return 0;
			case jbvString:
				return varstr_cmp(a->val.string.val, a->val.string.len,
								  b->val.string.val, b->val.string.len,
								  DEFAULT_COLLATION_OID);
			case jbvNumeric:
				return DatumGetInt32(DirectFunctionCall2(numeric_cmp,
														 NumericGetDatum(a->val.numeric),
														 NumericGetDatum(b->val.numeric)));
			case jbvBool:
				return (int) a->val.boolean - (int) b->val.boolean;
			default:
				break;
		}
	}
	ja = JsonbValueToJsonb(a);
	jb = JsonbValueToJsonb(b);
	return compareJsonbContainers(&ja->root, &jb->root);
}

/* A view of a stored jsonb as a value to compare or push. */
static void
jsonb_view(Jsonb *jb, JsonbValue *v)
{
	if (JB_ROOT_IS_SCALAR(jb))
		*v = *getIthJsonbValueFromContainer(&jb->root, 0);
	else
	{
		v->type = jbvBinary;
		v->val.binary.data = &jb->root;
		v->val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
}

/*
 * Attributes
 */

/* Room for at least n attributes that fills a power-of-2 allocation. */
static int32
attrs_capacity(int32 n)
{
	Size		size = 128;

	while (size / sizeof(MergeAttr) < (Size) n)
		size *= 2;
	return size / sizeof(MergeAttr);
}

static MergeState *
merge_new(MemoryContext cxt, bool lineage, int32 nattrs_hint)
{
	MergeState *s = MemoryContextAllocZero(cxt, sizeof(MergeState));

	s->cxt = cxt;
	s->lineage = lineage;
	s->maxattrs = attrs_capacity(Max(nattrs_hint, 1));
	s->attrs = MemoryContextAlloc(cxt, sizeof(MergeAttr) * s->maxattrs);
	if (lineage)
		s->lins = MemoryContextAlloc(cxt, sizeof(MergeLineage) * s->maxattrs);
	return s;
}

static inline MergeLineage *
attr_lin(MergeState *s, MergeAttr *a)
{
	return s->lins ? &s->lins[a - s->attrs] : NULL;
}

static inline int64
attr_priority(MergeAttr *a)
{
	return a->prio_null ? CDP_PRIORITY_NULL : a->priority;
}

static MergeAttr *
attr_find(MergeState *s, const char *key, int keylen)
{
	if (s->index != NULL)
	{
		KeyStr		k = {key, keylen};
		KeyEntry   *e = keyh_lookup(s->index, k);

		return e ? &s->attrs[e->idx] : NULL;
	}
	for (int i = 0; i < s->nattrs; i++)
	{
		MergeAttr  *a = &s->attrs[i];

		if (a->keylen == keylen &&
			(a->key == key || memcmp(a->key, key, keylen) == 0))
			return a;
	}
	return NULL;
}

/* A new attribute; key must be interned. */
static MergeAttr *
attr_add(MergeState *s, const char *key, int keylen, uint8 strategy,
		 const CdpTypeInfo *jsonb_ti)
{
	MergeAttr  *a;
	bool		found;

	if (s->nattrs == s->maxattrs)
	{
		s->maxattrs = attrs_capacity(s->nattrs + 1);
		s->attrs = repalloc(s->attrs, sizeof(MergeAttr) * s->maxattrs);
		if (s->lins)
			s->lins = repalloc(s->lins, sizeof(MergeLineage) * s->maxattrs);
	}
	a = &s->attrs[s->nattrs++];
	memset(a, 0, sizeof(MergeAttr));
	a->key = key;
	a->keylen = keylen;
	a->strategy = strategy;
	if (strategy == MS_MOST_FREQUENT || strategy == MS_UNION)
		a->data = cdp_freq_create(s->cxt, jsonb_ti);
	if (s->lins)
	{
		MergeLineage *lin = attr_lin(s, a);

		memset(lin, 0, sizeof(MergeLineage));
		lin->first_at = DT_NOEND;
		lin->last_at = DT_NOBEGIN;
		lin->srclen = -1;
	}
	if (s->index == NULL && s->nattrs > MERGE_LINEAR_MAX)
	{
		s->index = keyh_create(s->cxt, s->nattrs * 2, NULL);
		for (int i = 0; i < s->nattrs; i++)
		{
			KeyStr		k = {s->attrs[i].key, s->attrs[i].keylen};

			keyh_insert(s->index, k, &found)->idx = i;
		}
	}
	else if (s->index != NULL)
	{
		KeyStr		k = {key, keylen};

		keyh_insert(s->index, k, &found)->idx = s->nattrs - 1;
	}
	return a;
}

static inline Jsonb *
attr_value(MergeAttr *a)
{
	return (Jsonb *) a->data;
}

static void
attr_store_winner(MergeState *s, MergeAttr *a, Jsonb *value, TimestampTz at,
				  int64 priority, const char *src, int srclen)
{
	Size		size = VARSIZE(value);

	if (size > a->valcap)
	{
		/* the allocator rounds up to a power of 2 anyway: use it all */
		if (a->data)
			pfree(a->data);
		a->valcap = pg_nextpower2_32(Max(size, 16));
		a->data = MemoryContextAlloc(s->cxt, a->valcap);
	}
	memcpy(a->data, value, size);
	a->at = at;
	a->prio_null = priority == CDP_PRIORITY_NULL;
	a->priority = a->prio_null ? 0 : (int32) priority;
	a->has = true;
	if (s->lins != NULL)
	{
		MergeLineage *lin = attr_lin(s, a);

		if (src == NULL)
			lin->srclen = -1;
		else
		{
			if (srclen > lin->srccap)
			{
				if (lin->source)
					pfree(lin->source);
				lin->srccap = Max(srclen, 16);
				lin->source = MemoryContextAlloc(s->cxt, lin->srccap);
			}
			memcpy(lin->source, src, srclen);
			lin->srclen = srclen;
		}
	}
}

static int
jsonb_image_cmp(Jsonb *a, Jsonb *b)
{
	Size		la = VARSIZE(a);
	Size		lb = VARSIZE(b);
	int			c = memcmp(a, b, Min(la, lb));

	if (c != 0)
		return c;
	return la == lb ? 0 : (la < lb ? -1 : 1);
}

/* Does an observation beat the attribute's current winner? */
static bool
attr_beats(MergeAttr *a, MergeLineage *lin, JsonbValue *v, TimestampTz at,
		   int64 priority, const char *src, int srclen)
{
	JsonbValue	cur;
	int			c;

	if (!a->has)
		return true;
	switch (a->strategy)
	{
		case MS_PRIORITY:
			if (priority != attr_priority(a))
				return priority > attr_priority(a);
			/* FALLTHROUGH */
		case MS_LATEST:
			if (at != a->at)
				return at > a->at;
			break;
		case MS_EARLIEST:
			if (at != a->at)
				return at < a->at;
			break;
	}
	jsonb_view(attr_value(a), &cur);
	c = jval_cmp(v, &cur);
	if (a->strategy == MS_MAX || a->strategy == MS_MIN)
	{
		if (c != 0)
			return a->strategy == MS_MAX ? c > 0 : c < 0;
		/* equal values: the lineage shows the latest, highest source */
		if (at != a->at)
			return at > a->at;
		if (priority != attr_priority(a))
			return priority > attr_priority(a);
	}
	else if (c != 0)
		return c < 0;
	/* equal values that print differently (2 and 2.00): smallest image */
	c = jsonb_image_cmp(JsonbValueToJsonb(v), attr_value(a));
	if (c != 0)
		return c < 0;
	/* all else equal: the smallest source label, for a stable lineage */
	if (src == NULL || lin == NULL || lin->srclen < 0)
		return false;
	c = memcmp(src, lin->source, Min(srclen, lin->srclen));
	return c < 0 || (c == 0 && srclen < lin->srclen);
}

static void
attr_add_sum(MergeState *s, MergeAttr *a, Numeric n)
{
	MemoryContext old = MemoryContextSwitchTo(s->cxt);
	Numeric		prev = a->has ? (Numeric) a->data : NULL;

	a->data = prev == NULL ? DatumGetNumericCopy(NumericGetDatum(n)) :
		DatumGetNumeric(DirectFunctionCall2(numeric_add, NumericGetDatum(prev),
											NumericGetDatum(n)));
	a->has = true;
	MemoryContextSwitchTo(old);
	if (prev)
		pfree(prev);
}

static void
attr_observe(MergeState *s, MergeAttr *a, JsonbValue *v, TimestampTz at,
			 int64 priority, const char *src, int srclen, bool ignore_empty)
{
	switch (a->strategy)
	{
		case MS_LATEST:
		case MS_EARLIEST:
		case MS_PRIORITY:
		case MS_MAX:
		case MS_MIN:
			if (attr_beats(a, attr_lin(s, a), v, at, priority, src, srclen))
				attr_store_winner(s, a, JsonbValueToJsonb(v), at, priority,
								  src, srclen);
			break;
		case MS_SUM:
			if (v->type != jbvNumeric)
				return;			/* only numbers add up */
			attr_add_sum(s, a, v->val.numeric);
			break;
		case MS_COUNT:
			break;
		case MS_MOST_FREQUENT:
			cdp_freq_add(a->data, JsonbPGetDatum(JsonbValueToJsonb(v)), 1, at);
			break;
		case MS_UNION:
			if (v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data))
			{
				JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
				JsonbValue	e;
				JsonbIteratorToken tok;
				bool		any = false;

				while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
				{
					if (tok != WJB_ELEM || (ignore_empty && jval_is_empty(&e)))
						continue;
					cdp_freq_add(a->data, JsonbPGetDatum(JsonbValueToJsonb(&e)), 1, at);
					any = true;
				}
				if (!any)
					return;
			}
			else
				cdp_freq_add(a->data, JsonbPGetDatum(JsonbValueToJsonb(v)), 1, at);
			break;
	}
	a->nobs++;
	if (s->lins)
	{
		MergeLineage *lin = attr_lin(s, a);

		if (at < lin->first_at)
			lin->first_at = at;
		if (at > lin->last_at)
			lin->last_at = at;
	}
}

/* The value of a container child whose data is [offset, offset + len). */
static inline void
container_value(JEntry entry, char *base, uint32 offset, uint32 len,
				JsonbValue *v)
{
	if (JBE_ISNULL(entry))
		v->type = jbvNull;
	else if (JBE_ISSTRING(entry))
	{
		v->type = jbvString;
		v->val.string.val = base + offset;
		v->val.string.len = len;
	}
	else if (JBE_ISNUMERIC(entry))
	{
		v->type = jbvNumeric;
		v->val.numeric = (Numeric) (base + INTALIGN(offset));
	}
	else if (JBE_ISBOOL_TRUE(entry) || JBE_ISBOOL_FALSE(entry))
	{
		v->type = jbvBool;
		v->val.boolean = JBE_ISBOOL_TRUE(entry);
	}
	else
	{
		/* a nested container, aligned like numerics */
		v->type = jbvBinary;
		v->val.binary.data = (JsonbContainer *) (base + INTALIGN(offset));
		v->val.binary.len = len - (INTALIGN(offset) - offset);
	}
}

/*
 * Transition: (state, attributes, at [, priority [, rules [, source]]])
 */
static Datum
merge_trans(FunctionCallInfo fcinfo, bool lineage)
{
	MemoryContext cxt = merge_agg_context(fcinfo);
	MergeState *s = PG_ARGISNULL(0) ? NULL : (MergeState *) PG_GETARG_POINTER(0);
	int			nargs = PG_NARGS();
	Jsonb	   *jb;
	TimestampTz at;
	int64		priority = 0;
	const char *src = NULL;
	int			srclen = 0;
	MergeCache *rules;
	JsonbContainer *jc;
	JsonbValue	v;
	char	   *base;
	uint32		koff;
	uint32		voff;
	int			n;

	if (s == NULL)
		s = merge_new(cxt, lineage,
					  PG_ARGISNULL(1) ? 4 : JB_ROOT_COUNT(PG_GETARG_JSONB_P(1)));
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_POINTER(s);
	jb = PG_GETARG_JSONB_P(1);
	at = PG_GETARG_TIMESTAMPTZ(2);
	if (nargs > 3)
		priority = PG_ARGISNULL(3) ? CDP_PRIORITY_NULL : PG_GETARG_INT32(3);
	if (lineage && nargs > 5 && !PG_ARGISNULL(5))
	{
		text	   *t = PG_GETARG_TEXT_PP(5);

		src = VARDATA_ANY(t);
		srclen = VARSIZE_ANY_EXHDR(t);
	}
	rules = get_rules(fcinfo, 4);

	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("attributes of cdp.merge_profile must be a jsonb object"),
				 errdetail("An observation is a jsonb %s.",
						   JB_ROOT_IS_SCALAR(jb) ? "scalar" : "array"),
				 errhint("Pass one object of attribute names and values per row.")));

	/*
	 * Walk the object's pairs in place, without an iterator: keys' JEntries
	 * come first, then the values', then the data in the same order
	 * (utils/jsonb.h).
	 */
	jc = &jb->root;
	n = JsonContainerSize(jc);
	base = (char *) &jc->children[n * 2];
	koff = 0;
	voff = getJsonbOffset(jc, n);
	for (int i = 0; i < n; i++)
	{
		MergeAttr  *a;
		const char *key = base + koff;
		uint32		kstart = koff;
		uint32		vstart = voff;
		int			keylen;

		JBE_ADVANCE_OFFSET(koff, jc->children[i]);
		JBE_ADVANCE_OFFSET(voff, jc->children[n + i]);
		keylen = koff - kstart;
		container_value(jc->children[n + i], base, vstart, voff - vstart, &v);
		if (rules->ignore_empty && jval_is_empty(&v))
			continue;
		a = attr_find(s, key, keylen);
		if (a == NULL)
			a = attr_add(s, key_intern(rules, key, keylen), keylen,
						 rule_strategy(rules, key, keylen), &rules->jsonb_ti);
		attr_observe(s, a, &v, at, priority, src, srclen, rules->ignore_empty);
	}
	PG_RETURN_POINTER(s);
}

/* transition function of cdp.merge_profile */
PG_FUNCTION_INFO_V1(cdp_merge_profile_trans);
Datum
cdp_merge_profile_trans(PG_FUNCTION_ARGS)
{
	return merge_trans(fcinfo, false);
}

/* transition function of cdp.merge_profile_lineage */
PG_FUNCTION_INFO_V1(cdp_merge_profile_lineage_trans);
Datum
cdp_merge_profile_lineage_trans(PG_FUNCTION_ARGS)
{
	return merge_trans(fcinfo, true);
}

/*
 * Combine, serialize, deserialize
 */

static void
attr_merge(MergeState *s, MergeAttr *a, MergeState *bs, MergeAttr *b)
{
	MergeLineage *alin = attr_lin(s, a);
	MergeLineage *blin = attr_lin(bs, b);

	if (a->strategy != b->strategy)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("attribute \"%s\" was merged with strategies \"%s\" and \"%s\"",
						a->key, strategy_names[a->strategy], strategy_names[b->strategy]),
				 errhint("Pass the same rules for every row of a group.")));
	if (b->nobs == 0)
		return;
	if (IS_WINNER_STRATEGY(a->strategy))
	{
		JsonbValue	bv;
		const char *src = NULL;
		int			srclen = 0;

		if (blin != NULL && blin->srclen >= 0)
		{
			src = blin->source;
			srclen = blin->srclen;
		}
		jsonb_view(attr_value(b), &bv);
		if (attr_beats(a, alin, &bv, b->at, attr_priority(b), src, srclen))
			attr_store_winner(s, a, attr_value(b), b->at, attr_priority(b),
							  src, srclen);
	}
	else if (a->strategy == MS_SUM)
		attr_add_sum(s, a, (Numeric) b->data);
	else if (a->strategy != MS_COUNT)
		cdp_freq_merge(a->data, b->data);
	a->nobs += b->nobs;
	if (alin && blin)
	{
		alin->first_at = Min(alin->first_at, blin->first_at);
		alin->last_at = Max(alin->last_at, blin->last_at);
	}
}

/* Give back a state merged into another one. */
static void
merge_free(MergeState *s)
{
	for (int i = 0; i < s->nattrs; i++)
	{
		MergeAttr  *a = &s->attrs[i];

		if (a->strategy == MS_MOST_FREQUENT || a->strategy == MS_UNION)
			cdp_freq_free(a->data);
		else if (a->data)
			pfree(a->data);
		if (s->lins && s->lins[i].source)
			pfree(s->lins[i].source);
	}
	if (s->index)
		keyh_destroy(s->index);
	if (s->lins)
		pfree(s->lins);
	pfree(s->attrs);
	pfree(s);
}

/* combine function of cdp.merge_profile and cdp.merge_profile_lineage */
PG_FUNCTION_INFO_V1(cdp_merge_profile_combine);
Datum
cdp_merge_profile_combine(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = merge_agg_context(fcinfo);
	MergeState *a = PG_ARGISNULL(0) ? NULL : (MergeState *) PG_GETARG_POINTER(0);
	MergeState *b = PG_ARGISNULL(1) ? NULL : (MergeState *) PG_GETARG_POINTER(1);
	MergeCache *c;

	if (b == NULL)
	{
		if (a == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(a);
	}
	/*
	 * Deserialized states are built in the aggregate context: the first one
	 * of a group is adopted as it is, later ones are freed once merged.
	 */
	if (a == NULL && b->cxt == cxt)
		PG_RETURN_POINTER(b);
	c = get_cache(fcinfo);
	if (a == NULL)
		a = merge_new(cxt, b->lineage, b->nattrs);
	for (int i = 0; i < b->nattrs; i++)
	{
		MergeAttr  *y = &b->attrs[i];
		MergeAttr  *x = attr_find(a, y->key, y->keylen);

		if (x == NULL)
			x = attr_add(a, key_intern(c, y->key, y->keylen), y->keylen,
						 y->strategy, &c->jsonb_ti);
		attr_merge(a, x, b, y);
	}
	if (b->cxt == cxt)
		merge_free(b);
	PG_RETURN_POINTER(a);
}

static void
write_jsonb(StringInfo buf, Jsonb *jb)
{
	int32		len = VARSIZE(jb);

	cdp_write_bytes(buf, &len, sizeof(int32));
	cdp_write_bytes(buf, jb, len);
}

/* A jsonb or numeric image of a state, its header checked. */
static const char *
read_varlena(CdpReader *r, int32 *len, const char *what)
{
	const char *p;

	*len = cdp_read_int32(r);
	if (*len < (int32) (VARHDRSZ + sizeof(uint16)))
		cdp_state_corrupted(psprintf("A %s is shorter than its header.", what));
	p = cdp_read_bytes(r, *len);
	if (!VARATT_IS_4B_U(p) || VARSIZE(p) != *len)
		cdp_state_corrupted(psprintf("A %s's header does not match its length.", what));
	return p;
}

/* serialize function of cdp.merge_profile and cdp.merge_profile_lineage */
PG_FUNCTION_INFO_V1(cdp_merge_profile_serialize);
Datum
cdp_merge_profile_serialize(PG_FUNCTION_ARGS)
{
	MergeState *s = (MergeState *) PG_GETARG_POINTER(0);
	StringInfoData buf;

	merge_agg_context(fcinfo);
	initStringInfo(&buf);
	appendStringInfoSpaces(&buf, VARHDRSZ);
	appendStringInfoChar(&buf, CDP_MERGE_STATE_VERSION);
	appendStringInfoChar(&buf, s->lineage ? 1 : 0);
	cdp_write_bytes(&buf, &s->nattrs, sizeof(int32));
	for (int i = 0; i < s->nattrs; i++)
	{
		MergeAttr  *a = &s->attrs[i];

		cdp_write_bytes(&buf, &a->keylen, sizeof(int32));
		cdp_write_bytes(&buf, a->key, a->keylen);
		appendStringInfoChar(&buf, a->strategy);
		appendStringInfoChar(&buf, a->has ? 1 : 0);
		cdp_write_bytes(&buf, &a->nobs, sizeof(int64));
		if (IS_WINNER_STRATEGY(a->strategy) && a->has)
		{
			int64		priority = attr_priority(a);

			cdp_write_bytes(&buf, &a->at, sizeof(int64));
			cdp_write_bytes(&buf, &priority, sizeof(int64));
			write_jsonb(&buf, attr_value(a));
		}
		else if (a->strategy == MS_SUM && a->has)
		{
			int32		len = VARSIZE(a->data);

			cdp_write_bytes(&buf, &len, sizeof(int32));
			cdp_write_bytes(&buf, a->data, len);
		}
		else if (a->strategy == MS_MOST_FREQUENT || a->strategy == MS_UNION)
			cdp_freq_write(&buf, a->data);
		if (s->lineage)
		{
			MergeLineage *lin = attr_lin(s, a);

			cdp_write_bytes(&buf, &lin->first_at, sizeof(int64));
			cdp_write_bytes(&buf, &lin->last_at, sizeof(int64));
			cdp_write_bytes(&buf, &lin->srclen, sizeof(int32));
			if (lin->srclen > 0)
				cdp_write_bytes(&buf, lin->source, lin->srclen);
		}
	}
	SET_VARSIZE(buf.data, buf.len);
	PG_RETURN_BYTEA_P((bytea *) buf.data);
}

/* deserialize function of cdp.merge_profile and cdp.merge_profile_lineage */
PG_FUNCTION_INFO_V1(cdp_merge_profile_deserialize);
Datum
cdp_merge_profile_deserialize(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = merge_agg_context(fcinfo);
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	MergeCache *c = get_cache(fcinfo);
	MergeState *s;
	CdpReader	r;
	int32		n;
	bool		lineage;

	/* built in the aggregate context, see the combine function */
	cdp_reader_init(&r, b);
	lineage = cdp_read_uint8(&r) != 0;
	n = cdp_read_int32(&r);
	/* every attribute takes at least 14 bytes */
	if (n < 0 || n > (r.len - r.pos) / 14)
		cdp_state_corrupted("The number of attributes does not fit the state.");
	s = merge_new(cxt, lineage, n);
	for (int i = 0; i < n; i++)
	{
		int32		keylen = cdp_read_int32(&r);
		const char *key = cdp_read_bytes(&r, keylen);
		uint8		strategy = cdp_read_uint8(&r);
		bool		has = cdp_read_uint8(&r) != 0;
		MergeAttr  *a;

		if (strategy < MS_FIRST || strategy > MS_LAST)
			cdp_state_corrupted("Unknown merge strategy.");
		if (attr_find(s, key, keylen) != NULL)
			cdp_state_corrupted("An attribute appears twice.");
		a = attr_add(s, key_intern(c, key, keylen), keylen, strategy, &c->jsonb_ti);
		a->nobs = cdp_read_int64(&r);
		if (a->nobs < 0)
			cdp_state_corrupted("An attribute has a negative number of observations.");
		if (has && IS_WINNER_STRATEGY(strategy))
		{
			int32		len;
			const char *p;

			int64		priority;

			a->at = cdp_read_int64(&r);
			priority = cdp_read_int64(&r);
			if (priority != CDP_PRIORITY_NULL &&
				(priority < PG_INT32_MIN || priority > PG_INT32_MAX))
				cdp_state_corrupted("A priority is out of range.");
			a->prio_null = priority == CDP_PRIORITY_NULL;
			a->priority = a->prio_null ? 0 : (int32) priority;
			p = read_varlena(&r, &len, "jsonb value");
			a->data = MemoryContextAlloc(cxt, len);
			memcpy(a->data, p, len);
			a->valcap = len;
			if (JB_ROOT_IS_SCALAR(attr_value(a)) && JB_ROOT_COUNT(attr_value(a)) != 1)
				cdp_state_corrupted("A jsonb scalar does not hold one value.");
			a->has = true;
		}
		else if (has && strategy == MS_SUM)
		{
			int32		len;
			const char *p = read_varlena(&r, &len, "sum");

			a->data = MemoryContextAlloc(cxt, len);
			memcpy(a->data, p, len);
			a->has = true;
		}
		else if (has)
			cdp_state_corrupted("An attribute has a value its strategy does not keep.");
		else if (strategy == MS_MOST_FREQUENT || strategy == MS_UNION)
		{
			cdp_freq_free(a->data);
			a->data = cdp_freq_read(&r, cxt, &c->jsonb_ti);
		}
		if (lineage)
		{
			MergeLineage *lin = attr_lin(s, a);
			int32		srclen;

			lin->first_at = cdp_read_int64(&r);
			lin->last_at = cdp_read_int64(&r);
			srclen = cdp_read_int32(&r);
			if (srclen < -1)
				cdp_state_corrupted("A source label has a negative length.");
			if (srclen >= 0)
			{
				lin->srccap = Max(srclen, 1);
				lin->source = MemoryContextAlloc(cxt, lin->srccap);
				memcpy(lin->source, cdp_read_bytes(&r, srclen), srclen);
			}
			lin->srclen = srclen;
		}
	}
	cdp_reader_end(&r);
	PG_RETURN_POINTER(s);
}

/*
 * Final functions
 */

static void
push_string(JsonbParseState **ps, JsonbIteratorToken tok, const char *s, int len)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) s;
	v.val.string.len = len;
	pushJsonbValue(ps, tok, &v);
}

static void
push_key(JsonbParseState **ps, const char *key)
{
	push_string(ps, WJB_KEY, key, strlen(key));
}

static void
push_int64(JsonbParseState **ps, JsonbIteratorToken tok, int64 n)
{
	JsonbValue	v;

	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(n);
	pushJsonbValue(ps, tok, &v);
}

static void
push_timestamptz(JsonbParseState **ps, TimestampTz at)
{
	char		buf[MAXDATELEN + 1];

	/* pushJsonbValue keeps the pointer, not a copy */
	JsonEncodeDateTime(buf, TimestampTzGetDatum(at), TIMESTAMPTZOID, NULL);
	push_string(ps, WJB_VALUE, pstrdup(buf), strlen(buf));
}

static void
push_jsonb(JsonbParseState **ps, JsonbIteratorToken tok, Jsonb *jb)
{
	JsonbValue	v;

	jsonb_view(jb, &v);
	pushJsonbValue(ps, tok, &v);
}

/* The merged value of one attribute; false when it has none. */
static bool
push_attr_value(JsonbParseState **ps, MergeAttr *a, CdpFreqItem **best)
{
	JsonbValue	v;
	CdpFreqItem *items;
	int			n;

	*best = NULL;
	switch (a->strategy)
	{
		case MS_LATEST:
		case MS_EARLIEST:
		case MS_PRIORITY:
		case MS_MAX:
		case MS_MIN:
			if (!a->has)
				return false;
			push_jsonb(ps, WJB_VALUE, attr_value(a));
			return true;
		case MS_SUM:
			if (!a->has)
				return false;
			v.type = jbvNumeric;
			v.val.numeric = (Numeric) a->data;
			pushJsonbValue(ps, WJB_VALUE, &v);
			return true;
		case MS_COUNT:
			push_int64(ps, WJB_VALUE, a->nobs);
			return true;
		case MS_MOST_FREQUENT:
			items = cdp_freq_entries(a->data, &n);
			if (n == 0)
				return false;
			*best = &items[cdp_freq_best(items, n, cdp_freq_typeinfo(a->data), false)];
			push_jsonb(ps, WJB_VALUE, DatumGetJsonbP((*best)->value));
			return true;
		case MS_UNION:
			items = cdp_freq_entries(a->data, &n);
			if (n == 0)
				return false;
			cdp_freq_sort(items, n, cdp_freq_typeinfo(a->data), false);
			pushJsonbValue(ps, WJB_BEGIN_ARRAY, NULL);
			for (int i = 0; i < n; i++)
				push_jsonb(ps, WJB_ELEM, DatumGetJsonbP(items[i].value));
			pushJsonbValue(ps, WJB_END_ARRAY, NULL);
			return true;
	}
	return false;
}

static Datum
merge_final(FunctionCallInfo fcinfo, bool lineage)
{
	MergeState *s = PG_ARGISNULL(0) ? NULL : (MergeState *) PG_GETARG_POINTER(0);
	JsonbParseState *ps = NULL;
	JsonbValue *res;
	int			emitted = 0;

	merge_agg_context(fcinfo);
	if (s == NULL || s->nattrs == 0)
		PG_RETURN_NULL();
	if (lineage && !s->lineage)
		elog(ERROR, "merge state without lineage in cdp.merge_profile_lineage");
	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < s->nattrs; i++)
	{
		MergeAttr  *a = &s->attrs[i];
		CdpFreqItem *best;

		if (a->nobs == 0)
			continue;
		push_string(&ps, WJB_KEY, a->key, a->keylen);
		if (!lineage)
		{
			if (!push_attr_value(&ps, a, &best))
				elog(ERROR, "attribute \"%s\" has observations but no value", a->key);
			emitted++;
			continue;
		}
		pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
		push_key(&ps, "value");
		if (!push_attr_value(&ps, a, &best))
			elog(ERROR, "attribute \"%s\" has observations but no value", a->key);
		push_key(&ps, "strategy");
		push_string(&ps, WJB_VALUE, strategy_names[a->strategy],
					strlen(strategy_names[a->strategy]));
		push_key(&ps, "observations");
		push_int64(&ps, WJB_VALUE, a->nobs);
		if (IS_WINNER_STRATEGY(a->strategy))
		{
			JsonbValue	nullv;

			push_key(&ps, "at");
			push_timestamptz(&ps, a->at);
			push_key(&ps, "priority");
			if (a->prio_null)
			{
				nullv.type = jbvNull;
				pushJsonbValue(&ps, WJB_VALUE, &nullv);
			}
			else
				push_int64(&ps, WJB_VALUE, a->priority);
			if (attr_lin(s, a)->srclen >= 0)
			{
				push_key(&ps, "source");
				push_string(&ps, WJB_VALUE, attr_lin(s, a)->source,
							attr_lin(s, a)->srclen);
			}
		}
		else
		{
			if (best != NULL)
			{
				push_key(&ps, "count");
				push_int64(&ps, WJB_VALUE, best->count);
				push_key(&ps, "at");
				push_timestamptz(&ps, best->at);
			}
			push_key(&ps, "first_at");
			push_timestamptz(&ps, attr_lin(s, a)->first_at);
			push_key(&ps, "last_at");
			push_timestamptz(&ps, attr_lin(s, a)->last_at);
		}
		pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
		emitted++;
	}
	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	if (emitted == 0)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(JsonbValueToJsonb(res));
}

/* final function of cdp.merge_profile */
PG_FUNCTION_INFO_V1(cdp_merge_profile_final);
Datum
cdp_merge_profile_final(PG_FUNCTION_ARGS)
{
	return merge_final(fcinfo, false);
}

/* final function of cdp.merge_profile_lineage */
PG_FUNCTION_INFO_V1(cdp_merge_profile_lineage_final);
Datum
cdp_merge_profile_lineage_final(PG_FUNCTION_ARGS)
{
	return merge_final(fcinfo, true);
}
