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

/* Per-query cache in fn_extra: the rules as last seen, parsed. */
typedef struct MergeCache
{
	Jsonb	   *raw;			/* copy of the rules, NULL when none given */
	bool		ignore_empty;
	int			nrules;
	MergeRule  *rules;			/* in jsonb key order (length, then bytes) */
	CdpTypeInfo jsonb_ti;
} MergeCache;

/* What one group knows about one attribute. */
typedef struct MergeAttr
{
	char	   *key;
	int32		keylen;
	uint8		strategy;
	int64		nobs;			/* observations that contributed */
	TimestampTz first_at;
	TimestampTz last_at;
	/* winner strategies */
	bool		has;
	TimestampTz at;
	int64		priority;
	Jsonb	   *value;
	int32		valcap;
	JsonbValue	vj;				/* view of value: scalar or jbvBinary */
	char	   *source;			/* lineage label of the winner, or NULL */
	int32		srclen;
	int32		srccap;
	/* sum */
	Numeric		sum;
	/* most_frequent, union */
	CdpFreqTable *ft;
} MergeAttr;

/* Attribute index once a group has many keys. */
typedef struct AttrEntry
{
	MergeAttr  *attr;
	uint32		hash;
	char		status;
} AttrEntry;

#define MERGE_LINEAR_MAX 12

typedef struct MergeState
{
	MemoryContext cxt;
	int32		nattrs;
	int32		maxattrs;
	MergeAttr **attrs;
	struct attrh_hash *index;	/* NULL while nattrs <= MERGE_LINEAR_MAX */
} MergeState;

static inline uint32
attr_hash(const MergeAttr *a)
{
	return hash_bytes((const unsigned char *) a->key, a->keylen);
}

static inline bool
attr_equal(const MergeAttr *a, const MergeAttr *b)
{
	return a->keylen == b->keylen && memcmp(a->key, b->key, a->keylen) == 0;
}

#define SH_PREFIX attrh
#define SH_ELEMENT_TYPE AttrEntry
#define SH_KEY_TYPE MergeAttr *
#define SH_KEY attr
#define SH_HASH_KEY(tb, k) attr_hash(k)
#define SH_EQUAL(tb, a, b) attr_equal(a, b)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) a->hash
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

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

/* The parsed rules of this row; parsed again only when they change. */
static MergeCache *
get_rules(FunctionCallInfo fcinfo, int rules_arg)
{
	MergeCache *c = (MergeCache *) fcinfo->flinfo->fn_extra;
	Jsonb	   *rules = NULL;

	if (rules_arg < PG_NARGS() && !PG_ARGISNULL(rules_arg))
		rules = PG_GETARG_JSONB_P(rules_arg);
	if (c == NULL)
	{
		c = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(MergeCache));
		cdp_typeinfo_init(&c->jsonb_ti, JSONBOID, InvalidOid);
		parse_rules(c, fcinfo->flinfo->fn_mcxt, rules);
		fcinfo->flinfo->fn_extra = c;
	}
	else if (rules == NULL ? c->raw != NULL :
			 (c->raw == NULL || VARSIZE(c->raw) != VARSIZE(rules) ||
			  memcmp(c->raw, rules, VARSIZE(rules)) != 0))
		parse_rules(c, fcinfo->flinfo->fn_mcxt, rules);
	return c;
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
		JsonbExtractScalar(&jb->root, v);
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

static MergeState *
merge_new(MemoryContext cxt)
{
	MergeState *s = MemoryContextAllocZero(cxt, sizeof(MergeState));

	s->cxt = cxt;
	s->maxattrs = 8;
	s->attrs = MemoryContextAlloc(cxt, sizeof(MergeAttr *) * s->maxattrs);
	return s;
}

static MergeAttr *
attr_find(MergeState *s, const char *key, int keylen)
{
	if (s->index != NULL)
	{
		MergeAttr	probe;
		AttrEntry  *e;

		probe.key = (char *) key;
		probe.keylen = keylen;
		e = attrh_lookup(s->index, &probe);
		return e ? e->attr : NULL;
	}
	for (int i = 0; i < s->nattrs; i++)
	{
		MergeAttr  *a = s->attrs[i];

		if (a->keylen == keylen && memcmp(a->key, key, keylen) == 0)
			return a;
	}
	return NULL;
}

static MergeAttr *
attr_add(MergeState *s, const char *key, int keylen, uint8 strategy,
		 const CdpTypeInfo *jsonb_ti)
{
	MergeAttr  *a = MemoryContextAllocZero(s->cxt, sizeof(MergeAttr));
	bool		found;

	a->key = MemoryContextAlloc(s->cxt, keylen + 1);
	memcpy(a->key, key, keylen);
	a->key[keylen] = '\0';
	a->keylen = keylen;
	a->strategy = strategy;
	a->first_at = DT_NOEND;
	a->last_at = DT_NOBEGIN;
	if (strategy == MS_MOST_FREQUENT || strategy == MS_UNION)
		a->ft = cdp_freq_create(s->cxt, jsonb_ti);
	if (s->nattrs == s->maxattrs)
	{
		s->maxattrs *= 2;
		s->attrs = repalloc(s->attrs, sizeof(MergeAttr *) * s->maxattrs);
	}
	s->attrs[s->nattrs++] = a;
	if (s->index == NULL && s->nattrs > MERGE_LINEAR_MAX)
	{
		s->index = attrh_create(s->cxt, s->nattrs * 2, NULL);
		for (int i = 0; i < s->nattrs; i++)
			attrh_insert(s->index, s->attrs[i], &found);
	}
	else if (s->index != NULL)
		attrh_insert(s->index, a, &found);
	return a;
}

static void
attr_store_winner(MergeState *s, MergeAttr *a, Jsonb *value, TimestampTz at,
				  int64 priority, const char *src, int srclen)
{
	Size		size = VARSIZE(value);

	if (size > a->valcap)
	{
		if (a->value)
			pfree(a->value);
		a->valcap = Max(size, 32);
		a->value = MemoryContextAlloc(s->cxt, a->valcap);
	}
	memcpy(a->value, value, size);
	jsonb_view(a->value, &a->vj);
	a->at = at;
	a->priority = priority;
	a->has = true;
	if (src == NULL)
		a->srclen = -1;
	else
	{
		if (srclen > a->srccap)
		{
			if (a->source)
				pfree(a->source);
			a->srccap = Max(srclen, 16);
			a->source = MemoryContextAlloc(s->cxt, a->srccap);
		}
		memcpy(a->source, src, srclen);
		a->srclen = srclen;
	}
}

/* Does an observation beat the attribute's current winner? */
static bool
attr_beats(MergeAttr *a, JsonbValue *v, TimestampTz at, int64 priority,
		   const char *src, int srclen)
{
	int			c;

	if (!a->has)
		return true;
	switch (a->strategy)
	{
		case MS_PRIORITY:
			if (priority != a->priority)
				return priority > a->priority;
			/* FALLTHROUGH */
		case MS_LATEST:
			if (at != a->at)
				return at > a->at;
			break;
		case MS_EARLIEST:
			if (at != a->at)
				return at < a->at;
			break;
		case MS_MAX:
		case MS_MIN:
			c = jval_cmp(v, &a->vj);
			if (c != 0)
				return a->strategy == MS_MAX ? c > 0 : c < 0;
			/* equal values: the lineage shows the latest, highest source */
			if (at != a->at)
				return at > a->at;
			if (priority != a->priority)
				return priority > a->priority;
			break;
	}
	if (a->strategy != MS_MAX && a->strategy != MS_MIN)
	{
		c = jval_cmp(v, &a->vj);
		if (c != 0)
			return c < 0;
	}
	/* all else equal: the smallest source label, for a stable lineage */
	if (src == NULL || a->srclen < 0)
		return false;
	c = memcmp(src, a->source, Min(srclen, a->srclen));
	return c < 0 || (c == 0 && srclen < a->srclen);
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
			if (attr_beats(a, v, at, priority, src, srclen))
				attr_store_winner(s, a, JsonbValueToJsonb(v), at, priority,
								  src, srclen);
			break;
		case MS_SUM:
			if (v->type != jbvNumeric)
				return;			/* only numbers add up */
			else
			{
				MemoryContext old = MemoryContextSwitchTo(s->cxt);
				Numeric		prev = a->sum;

				a->sum = prev == NULL ? DatumGetNumericCopy(NumericGetDatum(v->val.numeric)) :
					DatumGetNumeric(DirectFunctionCall2(numeric_add,
														NumericGetDatum(prev),
														NumericGetDatum(v->val.numeric)));
				MemoryContextSwitchTo(old);
				if (prev)
					pfree(prev);
			}
			break;
		case MS_COUNT:
			break;
		case MS_MOST_FREQUENT:
			cdp_freq_add(a->ft, JsonbPGetDatum(JsonbValueToJsonb(v)), 1, at);
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
					cdp_freq_add(a->ft, JsonbPGetDatum(JsonbValueToJsonb(&e)), 1, at);
					any = true;
				}
				if (!any)
					return;
			}
			else
				cdp_freq_add(a->ft, JsonbPGetDatum(JsonbValueToJsonb(v)), 1, at);
			break;
	}
	a->nobs++;
	if (at < a->first_at)
		a->first_at = at;
	if (at > a->last_at)
		a->last_at = at;
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
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (s == NULL)
		s = merge_new(cxt);
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

	memset(&k, 0, sizeof(k));
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		MergeAttr  *a;

		if (tok == WJB_KEY)
		{
			k = v;
			continue;
		}
		if (tok != WJB_VALUE || (rules->ignore_empty && jval_is_empty(&v)))
			continue;
		a = attr_find(s, k.val.string.val, k.val.string.len);
		if (a == NULL)
			a = attr_add(s, k.val.string.val, k.val.string.len,
						 rule_strategy(rules, k.val.string.val, k.val.string.len),
						 &rules->jsonb_ti);
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
attr_merge(MergeState *s, MergeAttr *a, MergeAttr *b)
{
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
		if (b->has && attr_beats(a, &b->vj, b->at, b->priority,
								 b->srclen >= 0 ? b->source : NULL, b->srclen))
			attr_store_winner(s, a, b->value, b->at, b->priority,
							  b->srclen >= 0 ? b->source : NULL, b->srclen);
	}
	else if (a->strategy == MS_SUM && b->sum != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(s->cxt);
		Numeric		prev = a->sum;

		a->sum = prev == NULL ? DatumGetNumericCopy(NumericGetDatum(b->sum)) :
			DatumGetNumeric(DirectFunctionCall2(numeric_add, NumericGetDatum(prev),
												NumericGetDatum(b->sum)));
		MemoryContextSwitchTo(old);
		if (prev)
			pfree(prev);
	}
	else if (a->ft != NULL)
		cdp_freq_merge(a->ft, b->ft);
	a->nobs += b->nobs;
	a->first_at = Min(a->first_at, b->first_at);
	a->last_at = Max(a->last_at, b->last_at);
}

static void
merge_into(MergeState *dst, MergeState *src, const CdpTypeInfo *jsonb_ti)
{
	for (int i = 0; i < src->nattrs; i++)
	{
		MergeAttr  *b = src->attrs[i];
		MergeAttr  *a = attr_find(dst, b->key, b->keylen);

		if (a == NULL)
			a = attr_add(dst, b->key, b->keylen, b->strategy, jsonb_ti);
		attr_merge(dst, a, b);
	}
}

static const CdpTypeInfo *
jsonb_typeinfo(FunctionCallInfo fcinfo)
{
	CdpTypeInfo *ti = (CdpTypeInfo *) fcinfo->flinfo->fn_extra;

	if (ti == NULL)
	{
		ti = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(CdpTypeInfo));
		cdp_typeinfo_init(ti, JSONBOID, InvalidOid);
		fcinfo->flinfo->fn_extra = ti;
	}
	return ti;
}

/* combine function of cdp.merge_profile and cdp.merge_profile_lineage */
PG_FUNCTION_INFO_V1(cdp_merge_profile_combine);
Datum
cdp_merge_profile_combine(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = merge_agg_context(fcinfo);
	MergeState *a = PG_ARGISNULL(0) ? NULL : (MergeState *) PG_GETARG_POINTER(0);
	MergeState *b = PG_ARGISNULL(1) ? NULL : (MergeState *) PG_GETARG_POINTER(1);

	if (b == NULL)
	{
		if (a == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(a);
	}
	if (a == NULL)
		a = merge_new(cxt);
	merge_into(a, b, jsonb_typeinfo(fcinfo));
	PG_RETURN_POINTER(a);
}

static void
write_jsonb(StringInfo buf, Jsonb *jb)
{
	int32		len = VARSIZE(jb);

	cdp_write_bytes(buf, &len, sizeof(int32));
	cdp_write_bytes(buf, jb, len);
}

static Jsonb *
read_jsonb(CdpReader *r)
{
	int32		len = cdp_read_int32(r);
	Jsonb	   *jb;

	if (len < (int32) (VARHDRSZ + sizeof(uint32)))
		cdp_state_corrupted("A jsonb value is shorter than its header.");
	jb = palloc(len);
	memcpy(jb, cdp_read_bytes(r, len), len);
	if (!VARATT_IS_4B_U(jb) || VARSIZE(jb) != len)
		cdp_state_corrupted("A jsonb value's header does not match its length.");
	if (JB_ROOT_IS_SCALAR(jb) && JB_ROOT_COUNT(jb) != 1)
		cdp_state_corrupted("A jsonb scalar does not hold one value.");
	return jb;
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
	cdp_write_bytes(&buf, &s->nattrs, sizeof(int32));
	for (int i = 0; i < s->nattrs; i++)
	{
		MergeAttr  *a = s->attrs[i];

		cdp_write_bytes(&buf, &a->keylen, sizeof(int32));
		cdp_write_bytes(&buf, a->key, a->keylen);
		appendStringInfoChar(&buf, a->strategy);
		cdp_write_bytes(&buf, &a->nobs, sizeof(int64));
		cdp_write_bytes(&buf, &a->first_at, sizeof(int64));
		cdp_write_bytes(&buf, &a->last_at, sizeof(int64));
		if (IS_WINNER_STRATEGY(a->strategy))
		{
			appendStringInfoChar(&buf, a->has ? 1 : 0);
			if (a->has)
			{
				cdp_write_bytes(&buf, &a->at, sizeof(int64));
				cdp_write_bytes(&buf, &a->priority, sizeof(int64));
				write_jsonb(&buf, a->value);
				cdp_write_bytes(&buf, &a->srclen, sizeof(int32));
				if (a->srclen > 0)
					cdp_write_bytes(&buf, a->source, a->srclen);
			}
		}
		else if (a->strategy == MS_SUM)
		{
			int32		len = a->sum ? VARSIZE(a->sum) : -1;

			cdp_write_bytes(&buf, &len, sizeof(int32));
			if (a->sum)
				cdp_write_bytes(&buf, a->sum, len);
		}
		else if (a->ft != NULL)
			cdp_freq_write(&buf, a->ft);
	}
	SET_VARSIZE(buf.data, buf.len);
	PG_RETURN_BYTEA_P((bytea *) buf.data);
}

/* deserialize function of cdp.merge_profile and cdp.merge_profile_lineage */
PG_FUNCTION_INFO_V1(cdp_merge_profile_deserialize);
Datum
cdp_merge_profile_deserialize(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	const CdpTypeInfo *jsonb_ti = jsonb_typeinfo(fcinfo);
	MergeState *s;
	CdpReader	r;
	int32		n;

	merge_agg_context(fcinfo);
	cdp_reader_init(&r, b);
	s = merge_new(CurrentMemoryContext);
	n = cdp_read_int32(&r);
	if (n < 0 || n > (r.len - r.pos) / 29)
		cdp_state_corrupted("The number of attributes does not fit the state.");
	for (int i = 0; i < n; i++)
	{
		int32		keylen = cdp_read_int32(&r);
		const char *key = cdp_read_bytes(&r, keylen);
		uint8		strategy = cdp_read_uint8(&r);
		MergeAttr  *a;

		if (strategy < MS_FIRST || strategy > MS_LAST)
			cdp_state_corrupted("Unknown merge strategy.");
		if (attr_find(s, key, keylen) != NULL)
			cdp_state_corrupted("An attribute appears twice.");
		a = attr_add(s, key, keylen, strategy, jsonb_ti);
		a->nobs = cdp_read_int64(&r);
		a->first_at = cdp_read_int64(&r);
		a->last_at = cdp_read_int64(&r);
		if (IS_WINNER_STRATEGY(strategy))
		{
			if (cdp_read_uint8(&r))
			{
				TimestampTz at = cdp_read_int64(&r);
				int64		priority = cdp_read_int64(&r);
				Jsonb	   *value = read_jsonb(&r);
				int32		srclen = cdp_read_int32(&r);
				const char *src = NULL;

				if (srclen < -1)
					cdp_state_corrupted("A source label has a negative length.");
				if (srclen >= 0)
					src = cdp_read_bytes(&r, srclen);
				attr_store_winner(s, a, value, at, priority, src, srclen);
			}
		}
		else if (strategy == MS_SUM)
		{
			int32		len = cdp_read_int32(&r);

			if (len != -1)
			{
				char	   *p;

				if (len < (int32) VARHDRSZ)
					cdp_state_corrupted("A sum is shorter than its header.");
				p = palloc(len);
				memcpy(p, cdp_read_bytes(&r, len), len);
				if (!VARATT_IS_4B_U(p) || VARSIZE(p) != len)
					cdp_state_corrupted("A sum's header does not match its length.");
				a->sum = (Numeric) p;
			}
		}
		else if (a->ft != NULL)
			a->ft = cdp_freq_read(&r, CurrentMemoryContext, jsonb_ti);
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
	if (IS_WINNER_STRATEGY(a->strategy))
	{
		if (!a->has)
			return false;
		pushJsonbValue(ps, WJB_VALUE, &a->vj);
		return true;
	}
	switch (a->strategy)
	{
		case MS_SUM:
			if (a->sum == NULL)
				return false;
			v.type = jbvNumeric;
			v.val.numeric = a->sum;
			pushJsonbValue(ps, WJB_VALUE, &v);
			return true;
		case MS_COUNT:
			push_int64(ps, WJB_VALUE, a->nobs);
			return true;
		case MS_MOST_FREQUENT:
			items = cdp_freq_entries(a->ft, &n);
			if (n == 0)
				return false;
			*best = &items[cdp_freq_best(items, n, cdp_freq_typeinfo(a->ft), false)];
			push_jsonb(ps, WJB_VALUE, DatumGetJsonbP((*best)->value));
			return true;
		case MS_UNION:
			items = cdp_freq_entries(a->ft, &n);
			if (n == 0)
				return false;
			cdp_freq_sort(items, n, cdp_freq_typeinfo(a->ft), false);
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
	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < s->nattrs; i++)
	{
		MergeAttr  *a = s->attrs[i];
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
			if (a->priority == CDP_PRIORITY_NULL)
			{
				nullv.type = jbvNull;
				pushJsonbValue(&ps, WJB_VALUE, &nullv);
			}
			else
				push_int64(&ps, WJB_VALUE, a->priority);
			if (a->srclen >= 0)
			{
				push_key(&ps, "source");
				push_string(&ps, WJB_VALUE, a->source, a->srclen);
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
			push_timestamptz(&ps, a->first_at);
			push_key(&ps, "last_at");
			push_timestamptz(&ps, a->last_at);
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
