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
#include "executor/nodeAgg.h"
#include "fmgr.h"
#include "nodes/execnodes.h"
#include "port/pg_bitutils.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/varlena.h"

#include "hugemem.h"
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
	int32		idx;			/* the name's key id */
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

/* An interned attribute name, NUL-terminated, its length in front. */
typedef struct MergeKey
{
	int32		len;
	char		name[FLEXIBLE_ARRAY_MEMBER];
} MergeKey;

/*
 * Group states of a hash aggregate, see merge_arena_alloc.  Chunk sizes are
 * multiples of 32 bytes up to MERGE_ARENA_MAX; larger states are
 * palloc'd.
 */
#define MERGE_ARENA_UNIT 32
#define MERGE_ARENA_MAX 2048
#define MERGE_ARENA_FIRST_BLOCK ((Size) 64 * 1024)
#define MERGE_ARENA_LAST_BLOCK ((Size) 16 * 1024 * 1024)

typedef struct MergeArena
{
	MemoryContext cxt;			/* the hash aggregate's context */
	struct MergeArena **owner;	/* the cache's pointer to this arena */
	char	   *next;			/* unused part of the current block */
	char	   *end;
	Size		blocksize;		/* size of the next block */
	struct MergeFreeChunk *freelist[MERGE_ARENA_MAX / MERGE_ARENA_UNIT];	/* by size */
	uint64		nonempty;		/* bit i: freelist[i] is not empty */
	MemoryContextCallback reset;
} MergeArena;

StaticAssertDecl(MERGE_ARENA_MAX / MERGE_ARENA_UNIT <= 64,
				 "one bit of MergeArena.nonempty per free list");

/*
 * The key ids and strategies of one layout of observation keys, see
 * merge_shape.
 */
#define MERGE_SHAPES 64
#define MERGE_SHAPE_MAXKEYS 64

typedef struct MergeShape
{
	uint32		hash;
	int32		n;				/* number of keys */
	uint32		klen;			/* bytes of the keys */
	char	   *bytes;			/* the keys' JEntries, then their bytes */
	uint16	   *ids;			/* key id of each key; NULL: unused */
	uint8	   *strategies;		/* strategy of each key */
} MergeShape;

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
	keyh_hash  *keys;			/* name -> key id */
	const MergeKey **names;		/* key id -> name */
	int			nnames;
	int			maxnames;
	Jsonb	   *argbuf;			/* aligned copy of a short observation */
	Size		argbufsize;
	MergeArena *arena;			/* states of a hash aggregate, or NULL */
	MergeShape	shapes[MERGE_SHAPES];	/* layouts of observation keys */
	uint32	   *mark;			/* key id -> stamp of the input that has it */
	uint32	   *markitem;		/* key id -> its place in that input */
	uint32		stamp;			/* of the current input, never 0 */
	struct MergeItem *items;	/* the current input's attributes */
	int			maxitems;
	int			pf_transno;		/* see merge_prefetch_groups */
	tuplehash_hash *pf_table;
	uint32		pf_tuple;
	uint32		pf_state;
} MergeCache;

/*
 * What one group knows about one attribute: a 16-byte slot.  A winner's
 * value, a sum and a source label live in the group's state (MergeState),
 * in the attribute's record; a value table (most_frequent, union) is
 * allocated on its own.
 */
typedef struct MergeAttr
{
	union
	{
		TimestampTz at;			/* the winner's */
		int64		count;		/* count */
		CdpFreqTable *ft;		/* most_frequent, union */
	}			u;
	uint32		entry;			/* JEntry type bits and length of the value */
	uint16		key;			/* key id in the state's MergeCache */
	uint8		strategy;
	uint8		flags;			/* MERGE_SEEN, MERGE_HAS, MERGE_PRIO_NULL */
} MergeAttr;

StaticAssertDecl(sizeof(MergeAttr) == 16, "MergeAttr is meant to take 16 bytes");

#define MERGE_SEEN		0x01	/* an observation contributed */
#define MERGE_HAS		0x02	/* a winner or a sum is stored */
#define MERGE_PRIO_NULL 0x04	/* the winner's priority was NULL */

/* merge_profile_lineage's slot: the attribute and where its value came from */
typedef struct MergeAttrLin
{
	MergeAttr	a;
	int64		nobs;			/* observations that contributed */
	TimestampTz first_at;
	TimestampTz last_at;
	int32		priority;		/* the winner's */
	int32		srclen;			/* its source label's length, -1 when none */
} MergeAttrLin;

/*
 * A group's state is one allocation: this header, the attribute slots
 * growing up from it, and the attributes' records growing down from the
 * end, one after another in slot order, each starting int-aligned (like
 * jsonb's own numerics and containers).  A record is the winner's
 * priority (priority, max and min without lineage: the only strategies
 * whose result depends on it), the value's bytes, and with lineage the
 * winner's source label.  Where a record starts follows from the lengths
 * of the records before it, so a slot keeps no offset: the functions that
 * walk the slots add the lengths up as they go.  A record that changes
 * length moves the records after it (a few hundred bytes at most that are
 * in cache already), so replaced values leave no holes, and a state is
 * never larger than what it holds plus the room for growth.  Offsets count
 * from the end, so that the records do not change place within it when
 * the state grows.
 */
typedef struct MergeState
{
	MergeCache *dict;			/* names of the key ids, lives for the query */
	int32		nattrs;
	uint32		size;			/* bytes allocated, header included */
	uint32		used;			/* bytes of the records, at the end */
	bool		lineage;
	bool		in_arena;		/* allocated from dict->arena, not palloc'd */
	bool		prev_free;		/* in_arena: the chunk before it is free */
} MergeState;

#define MERGE_HDRSZ MAXALIGN(sizeof(MergeState))
#define MERGE_STRIDE(s) \
	((s)->lineage ? sizeof(MergeAttrLin) : sizeof(MergeAttr))
#define MERGE_SLOT(s, i) \
	((MergeAttr *) ((char *) (s) + MERGE_HDRSZ + (Size) (i) * MERGE_STRIDE(s)))
#define MERGE_LIN(s, i) ((MergeAttrLin *) MERGE_SLOT(s, i))
#define MERGE_LOWER(s) (MERGE_HDRSZ + (uint32) ((s)->nattrs * MERGE_STRIDE(s)))
/* a record at offset `off` from the state's end */
#define MERGE_BYTES(s, off) ((char *) (s) + (s)->size - (off))

StaticAssertDecl(MERGE_HDRSZ == 24, "MergeState is meant to take 24 bytes");

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
		c->pf_transno = -1;
		fcinfo->flinfo->fn_extra = c;
	}
	return c;
}

/* Forget every layout's strategies: the rules changed. */
static void
merge_shapes_reset(MergeCache *c)
{
	for (int i = 0; i < MERGE_SHAPES; i++)
	{
		MergeShape *sh = &c->shapes[i];

		if (sh->ids != NULL)
		{
			pfree(sh->bytes);
			pfree(sh->ids);
			sh->ids = NULL;
		}
	}
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
		merge_shapes_reset(c);
		c->parsed = true;
	}
	return c;
}

/*
 * The id of an attribute name, which is copied once per query: states keep
 * 2-byte ids, names are looked up in the cache the state refers to.
 */
static uint16
key_intern(MergeCache *c, const char *s, int len)
{
	KeyStr		k = {s, len};
	KeyEntry   *e;
	bool		found;
	MergeKey   *mk;

	e = keyh_insert(c->keys, k, &found);
	if (found)
		return (uint16) e->idx;
	if (c->nnames > PG_UINT16_MAX)
	{
		keyh_delete_item(c->keys, e);
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("more than %d distinct attribute names in one cdp.merge_profile",
						PG_UINT16_MAX + 1),
				 errdetail("Attribute name \"%s\" would be number %d; states keep names as 2-byte ids.",
						   pnstrdup(s, len), c->nnames + 1),
				 errhint("Merge fewer distinct top-level keys in one query.")));
	}
	if (c->nnames == c->maxnames)
	{
		int			old = c->maxnames;

		c->maxnames = Max(c->maxnames * 2, 32);
		if (c->names == NULL)
		{
			c->names = MemoryContextAlloc(c->mcxt, sizeof(MergeKey *) * c->maxnames);
			c->mark = MemoryContextAllocZero(c->mcxt, sizeof(uint32) * c->maxnames);
			c->markitem = MemoryContextAlloc(c->mcxt, sizeof(uint32) * c->maxnames);
		}
		else
		{
			c->names = repalloc(c->names, sizeof(MergeKey *) * c->maxnames);
			c->mark = repalloc(c->mark, sizeof(uint32) * c->maxnames);
			memset(c->mark + old, 0, sizeof(uint32) * (c->maxnames - old));
			c->markitem = repalloc(c->markitem, sizeof(uint32) * c->maxnames);
		}
	}
	mk = MemoryContextAlloc(c->mcxt, offsetof(MergeKey, name) + len + 1);
	mk->len = len;
	memcpy(mk->name, s, len);
	mk->name[len] = '\0';
	e->k.s = mk->name;
	e->idx = c->nnames;
	c->names[c->nnames] = mk;
	return (uint16) c->nnames++;
}

#define attr_key(s, a) ((s)->dict->names[(a)->key])

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
 * Key ids of an observation's keys, remembered per layout.  Observations
 * from one source have the same keys (a CRM row, an event's traits), so
 * the ids and strategies of a layout are looked up once and found again
 * by a hash over the keys' JEntries (their lengths) and the first key's
 * first bytes, checked against the keys' JEntries and bytes, instead of
 * comparing each key's name with each attribute's.  Observations with
 * many keys take the per-key path.
 */
static inline uint32
merge_shape_hash(const JEntry *children, int n, const char *base)
{
	uint64		h = (uint64) n * UINT64CONST(0x9E3779B97F4A7C15);
	uint64		w = 0;

	for (int i = 0; i < n; i++)
		h = (h ^ children[i]) * UINT64CONST(0x9E3779B97F4A7C15);
	/* the first key ends at its JEntry's offset (it has one) */
	memcpy(&w, base, Min(JBE_OFFLENFLD(children[0]), sizeof(uint64)));
	h = (h ^ w) * UINT64CONST(0x9E3779B97F4A7C15);
	return (uint32) (h >> 32);
}

static const MergeShape *
merge_shape(MergeCache *c, JsonbContainer *jc, int n, const char *base)
{
	uint32		jlen = sizeof(JEntry) * n;
	uint32		klen;
	uint32		h;
	MergeShape *sh;
	uint32		koff = 0;
	uint16	   *ids;
	uint8	   *strategies;

	if (n > MERGE_SHAPE_MAXKEYS || n == 0)
		return NULL;
	h = merge_shape_hash(jc->children, n, base);
	sh = &c->shapes[h % MERGE_SHAPES];
	/* the same keys' JEntries give the same offsets, and klen */
	if (sh->ids != NULL && sh->hash == h && sh->n == n &&
		memcmp(sh->bytes, jc->children, jlen) == 0 &&
		memcmp(sh->bytes + jlen, base, sh->klen) == 0)
		return sh;
	klen = getJsonbOffset(jc, n);

	/* a new layout takes the place of the one there */
	if (sh->ids != NULL)
	{
		pfree(sh->bytes);
		pfree(sh->ids);
	}
	sh->ids = NULL;
	ids = MemoryContextAlloc(c->mcxt, (sizeof(uint16) + 1) * Max(n, 1));
	strategies = (uint8 *) (ids + Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		uint32		kstart = koff;

		JBE_ADVANCE_OFFSET(koff, jc->children[i]);
		ids[i] = key_intern(c, base + kstart, koff - kstart);
		strategies[i] = rule_strategy(c, base + kstart, koff - kstart);
	}
	sh->bytes = MemoryContextAlloc(c->mcxt, jlen + klen);
	memcpy(sh->bytes, jc->children, jlen);
	memcpy(sh->bytes + jlen, base, klen);
	sh->ids = ids;
	sh->strategies = strategies;
	sh->hash = h;
	sh->n = n;
	sh->klen = klen;
	return sh;
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
 * A value as it is kept in a state: a JEntry (type bits and length) and
 * the bytes, which is how a container keeps its children.
 */
static void
value_image(const JsonbValue *v, uint32 *entry, const char **p, uint32 *len)
{
	*p = NULL;
	*len = 0;
	switch (v->type)
	{
		case jbvNull:
			*entry = JENTRY_ISNULL;
			return;
		case jbvBool:
			*entry = v->val.boolean ? JENTRY_ISBOOL_TRUE : JENTRY_ISBOOL_FALSE;
			return;
		case jbvString:
			*p = v->val.string.val;
			*len = v->val.string.len;
			*entry = JENTRY_ISSTRING;
			break;
		case jbvNumeric:
			*p = (const char *) v->val.numeric;
			*len = VARSIZE_ANY(v->val.numeric);
			*entry = JENTRY_ISNUMERIC;
			break;
		case jbvBinary:
			*p = (const char *) v->val.binary.data;
			*len = v->val.binary.len;
			*entry = JENTRY_ISCONTAINER;
			break;
		default:
			elog(ERROR, "unexpected jsonb value type %d in cdp.merge_profile",
				 (int) v->type);
	}
	if (*len > JENTRY_OFFLENMASK)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("jsonb value of %u bytes is too large for cdp.merge_profile",
						*len),
				 errdetail("A value may take at most %u bytes.", JENTRY_OFFLENMASK)));
	*entry |= *len;
}

/*
 * Group states
 */

static inline uint32
state_room(MergeState *s)
{
	return s->size - s->used - MERGE_LOWER(s);
}

/*
 * A hash aggregate holds every group's state at once, and writes each one
 * for the first time when its group first appears: on ordinary 4 kB pages
 * that is a page fault every few groups, and palloc rounds every state up
 * to a power of 2.  The states of a hash aggregate are carved out of large
 * blocks instead, allocated in the aggregate context (so they count
 * against hash_mem and go away with a reset) and advised onto huge pages;
 * a state takes a multiple of 32 bytes.
 *
 * States grow as their groups see more attributes.  A state grows in place
 * when the memory right after it is free (a chunk given back earlier, or
 * the unused end of the block); otherwise it moves, and the chunk it
 * leaves joins the free chunks on both sides of it and goes to a free
 * list by size, from which later states of that size or smaller are cut.
 * Input ordered by source (all CRM rows, then all events) grows nearly
 * every state at once, in random order: without this reuse the chunks left
 * behind would take a fifth of the memory, and joined only with the free
 * chunks after them a sixth.  A free chunk is told from a state by its
 * first word, which a state never leaves NULL (MergeState.dict); a
 * sentinel closes each block.  A free chunk repeats its size in its last
 * word, and the state after it knows (MergeState.prev_free), so that the
 * chunk of a state given back finds the free chunk before it.
 */
StaticAssertDecl(offsetof(MergeState, dict) == 0,
				 "a state's first word tells it from a free chunk");

typedef struct MergeFreeChunk
{
	void	   *dict;			/* NULL: this chunk is free */
	struct MergeFreeChunk *next;	/* in its free list */
	struct MergeFreeChunk *prev;
	uint32		size;
} MergeFreeChunk;

StaticAssertDecl(offsetof(MergeFreeChunk, size) + 2 * sizeof(uint32) <=
				 MERGE_ARENA_UNIT,
				 "a free chunk's header and its size in its last word fit the smallest chunk");

static void
merge_arena_reset(void *arg)
{
	MergeArena *a = (MergeArena *) arg;

	if (*a->owner == a)
		*a->owner = NULL;
}

/* The arena for states in cxt, NULL when they are palloc'd. */
static MergeArena *
merge_arena_get(FunctionCallInfo fcinfo, MemoryContext cxt, MergeCache *c)
{
	AggState   *as = (AggState *) fcinfo->context;
	MergeArena *a;

	if (c->arena != NULL)
		return c->arena->cxt == cxt ? c->arena : NULL;
	if (as == NULL || !IsA(as, AggState) || as->hashcontext == NULL ||
		as->hashcontext->ecxt_per_tuple_memory != cxt)
		return NULL;
	a = MemoryContextAllocZero(cxt, sizeof(MergeArena));
	a->cxt = cxt;
	a->owner = &c->arena;
	a->blocksize = MERGE_ARENA_FIRST_BLOCK;
	a->reset.func = merge_arena_reset;
	a->reset.arg = a;
	MemoryContextRegisterResetCallback(cxt, &a->reset);
	c->arena = a;
	return a;
}

static inline void
merge_arena_unlink(MergeArena *a, MergeFreeChunk *f)
{
	int			cls = f->size / MERGE_ARENA_UNIT - 1;

	if (f->prev != NULL)
		f->prev->next = f->next;
	else
	{
		a->freelist[cls] = f->next;
		if (f->next == NULL)
			a->nonempty &= ~(UINT64CONST(1) << cls);
	}
	if (f->next != NULL)
		f->next->prev = f->prev;
}

/*
 * Tell the chunk at q whether the chunk before it is free, when q is a
 * state (or the sentinel closing a block, which ignores it); free chunks
 * and the unused end of the block keep no such flag.
 */
static inline void
merge_arena_tag(MergeArena *a, char *q, bool prev_free)
{
	if (q != a->next && ((MergeFreeChunk *) q)->dict != NULL)
		((MergeState *) q)->prev_free = prev_free;
}

/*
 * Give back a chunk, joined with the free chunks that follow it and, when
 * prev_free says there is one, the free chunk before it, whose size is in
 * its last word (a boundary tag).
 */
static void
merge_arena_free(MergeArena *a, void *p, Size size, bool prev_free)
{
	MergeFreeChunk *f;
	MergeFreeChunk *b = NULL;
	int			cls;

	Assert(size % MERGE_ARENA_UNIT == 0 && size <= MERGE_ARENA_MAX);
	if (prev_free)
	{
		b = (MergeFreeChunk *) ((char *) p - ((uint32 *) p)[-1]);
		Assert(b->dict == NULL && (char *) b + b->size == (char *) p);
	}
	for (;;)
	{
		MergeFreeChunk *q = (MergeFreeChunk *) ((char *) p + size);

		if ((char *) q == a->next)
		{
			/* the end of the current block: unused again */
			if (b != NULL)
			{
				merge_arena_unlink(a, b);
				p = b;
			}
			a->next = p;
			return;
		}
		if (q->dict != NULL || size + q->size > MERGE_ARENA_MAX)
			break;
		merge_arena_unlink(a, q);
		size += q->size;
	}
	if (b != NULL && size + b->size <= MERGE_ARENA_MAX)
	{
		merge_arena_unlink(a, b);
		p = b;
		size += b->size;
	}
	cls = size / MERGE_ARENA_UNIT - 1;
	f = (MergeFreeChunk *) p;
	f->dict = NULL;
	f->size = size;
	((uint32 *) ((char *) p + size))[-1] = size;
	f->prev = NULL;
	f->next = a->freelist[cls];
	if (f->next != NULL)
		f->next->prev = f;
	a->freelist[cls] = f;
	a->nonempty |= UINT64CONST(1) << cls;
	merge_arena_tag(a, (char *) p + size, true);
}

/*
 * A chunk of `size` bytes: from the free list of that size, else cut from
 * the smallest larger free chunk, else from the current block.
 */
static void *
merge_arena_alloc(MergeArena *a, Size size)
{
	int			cls = size / MERGE_ARENA_UNIT - 1;
	uint64		fit = a->nonempty & ~((UINT64CONST(1) << cls) - 1);
	char	   *p;

	Assert(size % MERGE_ARENA_UNIT == 0 && size <= MERGE_ARENA_MAX);
	if (fit != 0)
	{
		MergeFreeChunk *f = a->freelist[pg_rightmost_one_pos64(fit)];
		Size		fsize = f->size;

		merge_arena_unlink(a, f);
		p = (char *) f;
		if (fsize > size)
			merge_arena_free(a, p + size, fsize - size, false);
		else
			merge_arena_tag(a, p + size, false);
		return p;
	}
	if ((Size) (a->end - a->next) < size)
	{
		char	   *rest = a->next;
		char	   *end = a->end;
		char	   *block;

		/*
		 * Room for the alignment and the closing sentinel.  A block of 2 MB
		 * or more starts at the first huge page boundary of an allocation 2
		 * MB larger: the 2 MB that hold the allocation's header are faulted
		 * in on 4 kB pages when it is written, before any advice.  The part
		 * before the boundary is never touched; it counts against hash_mem
		 * but takes no memory.
		 */
		if (a->blocksize >= CDP_HUGE_PAGE)
		{
			block = MemoryContextAllocHuge(a->cxt,
										   a->blocksize + CDP_HUGE_PAGE + MERGE_ARENA_UNIT);
			a->next = (char *) TYPEALIGN(CDP_HUGE_PAGE, block);
			cdp_advise_huge(a->next, a->blocksize);
		}
		else
		{
			block = MemoryContextAlloc(a->cxt, a->blocksize + 2 * MERGE_ARENA_UNIT);
			a->next = (char *) TYPEALIGN(MERGE_ARENA_UNIT, block);
		}
		a->end = a->next + a->blocksize;
		((MergeFreeChunk *) a->end)->dict = a;
		if (a->blocksize < MERGE_ARENA_LAST_BLOCK)
			a->blocksize *= 2;
		/* what the last block had left is a free chunk now */
		if (end > rest)
			merge_arena_free(a, rest, end - rest, false);
	}
	p = a->next;
	a->next += size;
	return p;
}

/*
 * Grow a chunk of `size` bytes in place to `newsize`, taking the free
 * chunks or the unused end of the block right after it; false when they
 * are too small.
 */
static bool
merge_arena_grow(MergeArena *a, void *p, Size size, Size newsize)
{
	char	   *q = (char *) p + size;
	Size		need = newsize - size;
	Size		got = 0;

	Assert(newsize % MERGE_ARENA_UNIT == 0 && newsize <= MERGE_ARENA_MAX);
	while (got < need)
	{
		MergeFreeChunk *f = (MergeFreeChunk *) (q + got);

		if ((char *) f == a->next)
		{
			if ((Size) (a->end - a->next) < need - got)
				break;
			a->next += need - got;
			got = need;
			break;
		}
		if (f->dict != NULL)
			break;
		merge_arena_unlink(a, f);
		got += f->size;
	}
	if (got < need)
	{
		/* not enough: the chunks taken go back */
		if (got > 0)
			merge_arena_free(a, q, got, false);
		return false;
	}
	if (got > need)
		merge_arena_free(a, (char *) p + newsize, got - need, false);
	else
		merge_arena_tag(a, (char *) p + newsize, false);
	return true;
}

/* The allocation size for a state that needs `want` bytes. */
static inline Size
merge_chunk_size(MergeArena *arena, Size want)
{
	if (arena != NULL && want <= MERGE_ARENA_MAX)
		return TYPEALIGN(MERGE_ARENA_UNIT, want);
	return pg_nextpower2_64(want);
}

/* The context a state lives in. */
static inline MemoryContext
state_context(MergeState *s)
{
	return s->in_arena ? s->dict->arena->cxt : GetMemoryChunkContext(s);
}

/* The arena that states of this cache in cxt go to, or NULL. */
static inline MergeArena *
state_arena(MergeCache *dict, MemoryContext cxt)
{
	return dict->arena != NULL && dict->arena->cxt == cxt ? dict->arena : NULL;
}

/*
 * Memory for a state of `size` bytes holding nattrs attributes; the caller
 * sets in_arena.
 */
static MergeState *
merge_chunk_alloc(MemoryContext cxt, MergeArena *arena, Size size,
				  int32 nattrs, bool *in_arena)
{
	if (size > MaxAllocHugeSize || size > PG_UINT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cdp.merge_profile state of %zu bytes is too large", size),
				 errdetail("A group has %d attributes; a state is limited to %u bytes.",
						   nattrs, PG_UINT32_MAX)));
	*in_arena = arena != NULL && size <= MERGE_ARENA_MAX &&
		size % MERGE_ARENA_UNIT == 0;
	if (*in_arena)
		return merge_arena_alloc(arena, size);
	return MemoryContextAllocHuge(cxt, size);
}

static void
merge_chunk_free(MergeState *s)
{
	if (s->in_arena)
		merge_arena_free(s->dict->arena, s, s->size, s->prev_free);
	else
		pfree(s);
}

/* A new state in cxt; arena from merge_arena_get. */
static MergeState *
merge_new(MemoryContext cxt, MergeCache *dict, MergeArena *arena, bool lineage,
		  int32 nattrs_hint, Size bytes_hint)
{
	uint16		stride = lineage ? sizeof(MergeAttrLin) : sizeof(MergeAttr);
	Size		size;
	bool		in_arena;
	MergeState *s;

	Assert(arena == NULL || arena == dict->arena);
	size = merge_chunk_size(arena, Max(MERGE_HDRSZ + (Size) Max(nattrs_hint, 1) * stride +
									   bytes_hint, 128));
	s = merge_chunk_alloc(cxt, arena, size, nattrs_hint, &in_arena);
	memset(s, 0, MERGE_HDRSZ);
	s->dict = dict;
	s->size = size;
	s->used = 0;
	s->lineage = lineage;
	s->in_arena = in_arena;
	return s;
}

#define IS_PRIO_STRATEGY(s) \
	((s) == MS_PRIORITY || (s) == MS_MAX || (s) == MS_MIN)

/*
 * Bytes of the priority at the start of a record: lineage keeps it in the
 * slot, and only priority, max and min compare it.
 */
static inline uint32
attr_prio_bytes(MergeState *s, MergeAttr *a)
{
	return !s->lineage && IS_PRIO_STRATEGY(a->strategy) ? sizeof(int32) : 0;
}

/* Length of an attribute's record; only winners and sums have one. */
static inline uint32
attr_rec_len(MergeState *s, MergeAttr *a)
{
	uint32		len;

	if (!(a->flags & MERGE_HAS))
		return 0;
	len = attr_prio_bytes(s, a) + JBE_OFFLENFLD(a->entry);
	if (s->lineage && ((MergeAttrLin *) a)->srclen > 0)
		len += ((MergeAttrLin *) a)->srclen;
	return len;
}

/*
 * Where attribute a's record starts, counted back from the state's end,
 * when the record of the attribute before it starts at prev.  Records
 * start int-aligned: offsets are multiples of 4, and so are state sizes.
 */
#define MERGE_NEXT_OFF(s, a, prev) ((prev) + INTALIGN(attr_rec_len(s, a)))

/* The value's bytes in the record at offset off. */
static inline char *
attr_value_bytes(MergeState *s, MergeAttr *a, uint32 off)
{
	return MERGE_BYTES(s, off) + attr_prio_bytes(s, a);
}

/*
 * Observations that contributed to attribute i: counted by count and
 * lineage only, otherwise 1 when there were any.
 */
static inline int64
attr_nobs(MergeState *s, int i)
{
	MergeAttr  *a = MERGE_SLOT(s, i);

	if (s->lineage)
		return ((MergeAttrLin *) a)->nobs;
	if (a->strategy == MS_COUNT)
		return a->u.count;
	return (a->flags & MERGE_SEEN) ? 1 : 0;
}

/* Bytes the state needs: header, slots and records. */
static inline Size
merge_live(MergeState *s)
{
	return MERGE_LOWER(s) + s->used;
}

/* The state copied into a fresh allocation of `size` bytes, at least merge_live. */
static MergeState *
merge_repack_to(MergeState *s, Size size)
{
	MergeState *n;
	MemoryContext cxt = state_context(s);
	bool		in_arena;

	Assert(size >= merge_live(s));
	n = merge_chunk_alloc(cxt, state_arena(s->dict, cxt), size, s->nattrs,
						  &in_arena);
	memcpy(n, s, MERGE_LOWER(s));
	n->size = size;
	n->in_arena = in_arena;
	n->prev_free = false;		/* not known, see merge_arena_free */
	memcpy((char *) n + size - s->used, (char *) s + s->size - s->used, s->used);
	merge_chunk_free(s);
	return n;
}

/*
 * The state grown to have at least `need` bytes of room.  palloc'd states
 * take powers of 2, as the allocator rounds to them anyway.  A state in an
 * arena takes an eighth more than it needs, in multiples of 32 bytes, in
 * place where the memory after it is free (merge_arena_grow).
 */
static MergeState *
merge_repack(MergeState *s, uint32 need)
{
	Size		want = merge_live(s) + need;
	MergeArena *arena = state_arena(s->dict, state_context(s));
	Size		size;

	if (arena != NULL)
	{
		size = merge_chunk_size(arena, want + want / 8);
		if (size <= MERGE_ARENA_MAX)
		{
			/* in place, moving the records to the new end */
			if (s->in_arena && size > s->size &&
				merge_arena_grow(arena, s, s->size, size))
			{
				memmove((char *) s + size - s->used,
						(char *) s + s->size - s->used, s->used);
				s->size = size;
				return s;
			}
			return merge_repack_to(s, size);
		}
	}
	return merge_repack_to(s, pg_nextpower2_64(want));
}

/* The state with room for `need` more bytes; it may have moved. */
static inline MergeState *
merge_reserve(MergeState *s, uint32 need)
{
	if (state_room(s) < need)
		s = merge_repack(s, need);
	return s;
}

/*
 * Make the record at offset *off, of oldlen bytes, `len` bytes long,
 * moving the records after it (below it); *off is where it starts now.
 * The state may move.
 */
static MergeState *
attr_resize(MergeState *s, uint32 *off, uint32 oldlen, uint32 len)
{
	uint32		newoff = *off - INTALIGN(oldlen) + INTALIGN(len);

	if (newoff > *off)
		s = merge_reserve(s, newoff - *off);
	if (newoff != *off)
	{
		char	   *end = (char *) s + s->size;
		uint32		after = s->used - *off; /* the records after it */

		memmove(end - newoff - after, end - *off - after, after);
		s->used = newoff + after;
		*off = newoff;
	}
	return s;
}

/* The winner's priority, or CDP_PRIORITY_NULL. */
static inline int64
attr_priority(MergeState *s, MergeAttr *a, uint32 off)
{
	int32		p;

	if (a->flags & MERGE_PRIO_NULL)
		return CDP_PRIORITY_NULL;
	if (s->lineage)
		return ((MergeAttrLin *) a)->priority;
	if (attr_prio_bytes(s, a) == 0 || !(a->flags & MERGE_HAS))
		return 0;
	memcpy(&p, MERGE_BYTES(s, off), sizeof(int32));
	return p;
}

/* A stored value (winner or sum) as a JsonbValue pointing into the state. */
static inline void
attr_view(MergeState *s, MergeAttr *a, uint32 off, JsonbValue *v)
{
	container_value(a->entry, attr_value_bytes(s, a, off), 0,
					JBE_OFFLENFLD(a->entry), v);
}

/* A new attribute of key id `key`, the last slot; its record is empty. */
static MergeState *
attr_add_id(MergeState *s, uint16 key, uint8 strategy)
{
	MergeAttr  *a;

	s = merge_reserve(s, MERGE_STRIDE(s));
	a = MERGE_SLOT(s, s->nattrs);
	s->nattrs++;
	memset(a, 0, MERGE_STRIDE(s));
	a->key = key;
	a->strategy = strategy;
	if (strategy == MS_MOST_FREQUENT || strategy == MS_UNION)
		a->u.ft = cdp_freq_create(state_context(s), &s->dict->jsonb_ti);
	if (s->lineage)
	{
		MergeAttrLin *lin = (MergeAttrLin *) a;

		lin->first_at = DT_NOEND;
		lin->last_at = DT_NOBEGIN;
		lin->srclen = -1;
	}
	return s;
}

/*
 * Store attribute i's record, whose offset is *off: the priority where
 * kept, the value's bytes (entry: their JEntry type bits and length) and
 * with lineage the source label.  None of the bytes may be in this state.
 */
static MergeState *
attr_set_record(MergeState *s, int i, uint32 *off, int64 priority,
				uint32 entry, const char *p, const char *src, int srclen)
{
	MergeAttr  *a = MERGE_SLOT(s, i);
	uint32		oldlen = attr_rec_len(s, a);
	uint32		pb = attr_prio_bytes(s, a);
	uint32		vlen = JBE_OFFLENFLD(entry);
	uint32		sl = s->lineage && src != NULL ? srclen : 0;
	char	   *rec;

	s = attr_resize(s, off, oldlen, pb + vlen + sl);
	rec = MERGE_BYTES(s, *off);
	if (pb > 0)
	{
		int32		p32 = priority == CDP_PRIORITY_NULL ? 0 : (int32) priority;

		memcpy(rec, &p32, sizeof(int32));
	}
	if (vlen > 0)
		memcpy(rec + pb, p, vlen);
	if (sl > 0)
		memcpy(rec + pb + vlen, src, sl);
	a = MERGE_SLOT(s, i);
	a->entry = entry;
	a->flags |= MERGE_HAS;
	if (s->lineage)
		((MergeAttrLin *) a)->srclen = src != NULL ? srclen : -1;
	return s;
}

static MergeState *
attr_store_winner(MergeState *s, int i, uint32 *off, const JsonbValue *v,
				  TimestampTz at, int64 priority, const char *src, int srclen)
{
	uint32		entry;
	const char *p;
	uint32		len;
	MergeAttr  *a;

	value_image(v, &entry, &p, &len);
	s = attr_set_record(s, i, off, priority, entry, p, src, srclen);
	a = MERGE_SLOT(s, i);
	a->u.at = at;
	if (priority == CDP_PRIORITY_NULL)
		a->flags |= MERGE_PRIO_NULL;
	else
		a->flags &= ~MERGE_PRIO_NULL;
	if (s->lineage)
		((MergeAttrLin *) a)->priority =
			priority == CDP_PRIORITY_NULL ? 0 : (int32) priority;
	return s;
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

/* Does an observation beat attribute i's current winner (record at off)? */
static bool
attr_beats(MergeState *s, int i, uint32 off, JsonbValue *v, TimestampTz at,
		   int64 priority, const char *src, int srclen)
{
	MergeAttr  *a = MERGE_SLOT(s, i);
	MergeAttrLin *lin;
	JsonbValue	cur;
	int64		cur_priority;
	int			c;

	if (!(a->flags & MERGE_HAS))
		return true;
	cur_priority = attr_priority(s, a, off);
	switch (a->strategy)
	{
		case MS_PRIORITY:
			if (priority != cur_priority)
				return priority > cur_priority;
			/* FALLTHROUGH */
		case MS_LATEST:
			if (at != a->u.at)
				return at > a->u.at;
			break;
		case MS_EARLIEST:
			if (at != a->u.at)
				return at < a->u.at;
			break;
	}
	attr_view(s, a, off, &cur);
	c = jval_cmp(v, &cur);
	if (a->strategy == MS_MAX || a->strategy == MS_MIN)
	{
		if (c != 0)
			return a->strategy == MS_MAX ? c > 0 : c < 0;
		/* equal values: the lineage shows the latest, highest source */
		if (at != a->u.at)
			return at > a->u.at;
		if (priority != cur_priority)
			return priority > cur_priority;
	}
	else if (c != 0)
		return c < 0;
	/* equal values that print differently (2 and 2.00): smallest image */
	c = jsonb_image_cmp(JsonbValueToJsonb(v), JsonbValueToJsonb(&cur));
	if (c != 0)
		return c < 0;
	/*
	 * All else equal, the lineage shows the smallest source label (a label
	 * before none), then the highest priority, whatever the row order.
	 */
	if (!s->lineage)
		return false;
	lin = MERGE_LIN(s, i);
	if ((src != NULL) != (lin->srclen >= 0))
		return src != NULL;
	if (src != NULL)
	{
		c = memcmp(src, MERGE_BYTES(s, off) + JBE_OFFLENFLD(a->entry),
				   Min(srclen, lin->srclen));
		if (c != 0 || srclen != lin->srclen)
			return c < 0 || (c == 0 && srclen < lin->srclen);
	}
	return priority > cur_priority;
}

/* Add a number to attribute i's sum; the sum is computed in short-lived memory. */
static MergeState *
attr_add_sum(MergeState *s, int i, uint32 *off, Numeric n)
{
	MergeAttr  *a = MERGE_SLOT(s, i);
	Numeric		sum;

	if (a->flags & MERGE_HAS)
	{
		JsonbValue	cur;

		attr_view(s, a, *off, &cur);
		sum = DatumGetNumeric(DirectFunctionCall2(numeric_add,
												  NumericGetDatum(cur.val.numeric),
												  NumericGetDatum(n)));
	}
	else if (VARATT_IS_4B_U(n))
		sum = n;
	else
		sum = DatumGetNumericCopy(NumericGetDatum(n));
	return attr_set_record(s, i, off, 0, JENTRY_ISNUMERIC | VARSIZE(sum),
						   (const char *) sum, NULL, 0);
}

static MergeState *
attr_observe(MergeState *s, int i, uint32 *off, JsonbValue *v, TimestampTz at,
			 int64 priority, const char *src, int srclen, bool ignore_empty)
{
	MergeAttr  *a = MERGE_SLOT(s, i);

	switch (a->strategy)
	{
		case MS_LATEST:
		case MS_EARLIEST:
		case MS_PRIORITY:
		case MS_MAX:
		case MS_MIN:
			if (attr_beats(s, i, *off, v, at, priority, src, srclen))
				s = attr_store_winner(s, i, off, v, at, priority, src, srclen);
			break;
		case MS_SUM:
			if (v->type != jbvNumeric)
				return s;		/* only numbers add up */
			s = attr_add_sum(s, i, off, v->val.numeric);
			break;
		case MS_COUNT:
			break;
		case MS_MOST_FREQUENT:
			cdp_freq_add(a->u.ft, JsonbPGetDatum(JsonbValueToJsonb(v)), 1, at);
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
					cdp_freq_add(a->u.ft, JsonbPGetDatum(JsonbValueToJsonb(&e)), 1, at);
					any = true;
				}
				if (!any)
					return s;
			}
			else
				cdp_freq_add(a->u.ft, JsonbPGetDatum(JsonbValueToJsonb(v)), 1, at);
			break;
	}
	a = MERGE_SLOT(s, i);
	a->flags |= MERGE_SEEN;
	if (a->strategy == MS_COUNT)
		a->u.count++;
	if (s->lineage)
	{
		MergeAttrLin *lin = MERGE_LIN(s, i);

		lin->nobs++;
		if (at < lin->first_at)
			lin->first_at = at;
		if (at > lin->last_at)
			lin->last_at = at;
	}
	return s;
}

/*
 * Finding an input's attributes in a state.  An input (an observation's
 * pairs, or the attributes of a state being combined) marks the key ids it
 * has with a fresh stamp; one walk over the state's slots then meets the
 * marked ones, adding up the records' offsets on the way, and the ids
 * still marked afterwards are new attributes.  That is one pass over the
 * slots per input rather than one per key, however many attributes a
 * group has.
 */
typedef struct MergeItem
{
	JsonbValue	v;				/* an observation's value */
	int32		j;				/* a combined state's attribute */
	uint32		off;			/* and its record's offset */
	uint16		id;
	uint8		strategy;
} MergeItem;

/* A fresh stamp for the key ids of the next input. */
static uint32
merge_next_stamp(MergeCache *d)
{
	if (++d->stamp == 0)
	{
		if (d->maxnames > 0)
			memset(d->mark, 0, sizeof(uint32) * d->maxnames);
		d->stamp = 1;
	}
	return d->stamp;
}

/* Room for n items of an input. */
static MergeItem *
merge_items(MergeCache *d, int n)
{
	if (d->maxitems < n)
	{
		if (d->items != NULL)
			pfree(d->items);
		d->maxitems = Max(n, 32);
		d->items = MemoryContextAlloc(d->mcxt, sizeof(MergeItem) * d->maxitems);
	}
	return d->items;
}

/* Mark item k of the input of `stamp`; false when its key is marked already. */
static inline bool
merge_mark(MergeCache *d, uint32 stamp, uint16 id, int k)
{
	if (d->mark[id] == stamp)
		return false;
	d->mark[id] = stamp;
	d->markitem[id] = k;
	return true;
}

/*
 * An observation's jsonb.  Most are short enough to be stored with a 1-byte
 * header, unaligned; PG_GETARG_JSONB_P would palloc an aligned copy of each
 * row.  They are copied into one buffer per query instead, which is only
 * read during the call (values are copied into the state).
 */
static Jsonb *
merge_arg_jsonb(FunctionCallInfo fcinfo, int argno)
{
	struct varlena *raw = (struct varlena *) PG_GETARG_POINTER(argno);
	MergeCache *c;
	Size		len;

	/* compressed or toasted values and 4-byte headers: the usual way */
	if (!VARATT_IS_SHORT(raw) || VARATT_IS_EXTERNAL(raw))
		return PG_GETARG_JSONB_P(argno);
	c = get_cache(fcinfo);
	len = VARSIZE_SHORT(raw) - VARHDRSZ_SHORT;
	if (c->argbufsize < VARHDRSZ + len)
	{
		/* a short varlena has at most 126 bytes of data */
		c->argbufsize = VARHDRSZ + VARATT_SHORT_MAX;
		c->argbuf = MemoryContextAlloc(c->mcxt, c->argbufsize);
	}
	SET_VARSIZE(c->argbuf, VARHDRSZ + len);
	memcpy(VARDATA(c->argbuf), VARDATA_SHORT(raw), len);
	return c->argbuf;
}

/*
 * Ask for a state's cache lines before they are read and written.  In a
 * hash aggregate over many groups the state of the next row is cold: its
 * header, the attribute slots and the records are on different lines, and
 * fetched one after another they cost a memory latency each.  Prefetching
 * them together overlaps those misses.  The first MERGE_PF_HEAD bytes are
 * asked for blindly (a prefetch never faults, even past the chunk) before
 * the observation is read, the rest of a larger state once its size is
 * known.
 */
#define MERGE_PF_HEAD 320

static inline void
merge_prefetch_head(MergeState *s)
{
	for (int off = 0; off < MERGE_PF_HEAD; off += 64)
		cdp_prefetch_write((char *) s + off);
}

static inline void
merge_prefetch_rest(MergeState *s)
{
	if (s->size > MERGE_PF_HEAD)
	{
		uint32		from = Max((s->size - s->used) & ~(uint32) 63, MERGE_PF_HEAD);

		for (uint32 off = from; off < s->size; off += 64)
			cdp_prefetch_write((char *) s + off);
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
	MergeCache *d;
	const MergeShape *shape;
	JsonbContainer *jc;
	MergeItem  *items;
	char	   *base;
	uint32		koff;
	uint32		voff;
	uint32		off;
	uint32		stamp;
	int			n;
	int			k = 0;
	int			matched = 0;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
	{
		if (s == NULL)
			s = merge_new(cxt, get_cache(fcinfo),
						  merge_arena_get(fcinfo, cxt, get_cache(fcinfo)),
						  lineage, 4, 0);
		PG_RETURN_POINTER(s);
	}
	if (s != NULL)
		merge_prefetch_head(s);
	jb = merge_arg_jsonb(fcinfo, 1);
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

	/*
	 * The observation's attributes, with the key ids of this function's
	 * cache, read before the state is touched so that its lines arrive
	 * meanwhile.  The values' data start where the keys' end.
	 */
	shape = merge_shape(rules, jc, n, base);
	voff = shape != NULL ? shape->klen : getJsonbOffset(jc, n);
	items = merge_items(rules, n);
	for (int i = 0; i < n; i++)
	{
		const char *key = base + koff;
		uint32		kstart = koff;
		uint32		vstart = voff;
		MergeItem  *it = &items[k];

		JBE_ADVANCE_OFFSET(koff, jc->children[i]);
		JBE_ADVANCE_OFFSET(voff, jc->children[n + i]);
		container_value(jc->children[n + i], base, vstart, voff - vstart, &it->v);
		if (rules->ignore_empty && jval_is_empty(&it->v))
			continue;
		if (shape != NULL)
		{
			it->id = shape->ids[i];
			it->strategy = shape->strategies[i];
		}
		else
		{
			it->id = key_intern(rules, key, koff - kstart);
			it->strategy = rule_strategy(rules, key, koff - kstart);
		}
		k++;
	}

	/*
	 * A new state is sized for this observation's whole jsonb: more than its
	 * values need, which leaves room for a few more attributes (fewer moves
	 * leave less memory behind in the arena's free chunks).
	 */
	if (s == NULL)
		s = merge_new(cxt, rules, merge_arena_get(fcinfo, cxt, rules), lineage,
					  n, VARSIZE(jb) + (lineage ? srclen + 3 : 0));
	else
		merge_prefetch_rest(s);
	/* key ids are those of the state's cache, normally this function's */
	d = s->dict;
	if (d != rules)
	{
		for (int j = 0; j < k; j++)
		{
			const MergeKey *mk = rules->names[items[j].id];

			items[j].id = key_intern(d, mk->name, mk->len);
		}
	}
	stamp = merge_next_stamp(d);
	/* an object's keys are unique */
	for (int j = 0; j < k; j++)
		(void) merge_mark(d, stamp, items[j].id, j);

	/* the attributes the group has seen, in one walk over its slots */
	off = 0;
	for (int i = 0; i < s->nattrs && matched < k; i++)
	{
		MergeAttr  *a = MERGE_SLOT(s, i);
		MergeItem  *it;

		off = MERGE_NEXT_OFF(s, a, off);
		if (d->mark[a->key] != stamp)
			continue;
		d->mark[a->key] = 0;
		it = &items[d->markitem[a->key]];
		s = attr_observe(s, i, &off, &it->v, at, priority, src, srclen,
						 rules->ignore_empty);
		matched++;
	}
	/* new ones, in the observation's key order */
	for (int j = 0; j < k && matched < k; j++)
	{
		MergeItem  *it = &items[j];

		if (d->mark[it->id] != stamp)
			continue;
		d->mark[it->id] = 0;
		s = attr_add_id(s, it->id, it->strategy);
		off = s->used;
		s = attr_observe(s, s->nattrs - 1, &off, &it->v, at, priority, src,
						 srclen, rules->ignore_empty);
		matched++;
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

/* Merge attribute j of state bs (record at boff) into attribute i of state s. */
static MergeState *
attr_merge(MergeState *s, int i, uint32 *off, MergeState *bs, int j,
		   uint32 boff)
{
	MergeAttr  *a = MERGE_SLOT(s, i);
	MergeAttr  *b = MERGE_SLOT(bs, j);
	JsonbValue	bv;

	if (a->strategy != b->strategy)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("attribute \"%s\" was merged with strategies \"%s\" and \"%s\"",
						attr_key(s, a)->name, strategy_names[a->strategy],
						strategy_names[b->strategy]),
				 errhint("Pass the same rules for every row of a group.")));
	if (!(b->flags & MERGE_SEEN))
		return s;
	if (IS_WINNER_STRATEGY(a->strategy))
	{
		const char *src = NULL;
		int			srclen = 0;

		if (bs->lineage && MERGE_LIN(bs, j)->srclen >= 0)
		{
			src = MERGE_BYTES(bs, boff) + JBE_OFFLENFLD(b->entry);
			srclen = MERGE_LIN(bs, j)->srclen;
		}
		if (b->flags & MERGE_HAS)
		{
			int64		bprio = attr_priority(bs, b, boff);

			attr_view(bs, b, boff, &bv);
			if (attr_beats(s, i, *off, &bv, b->u.at, bprio, src, srclen))
				s = attr_store_winner(s, i, off, &bv, b->u.at, bprio, src, srclen);
		}
	}
	else if (a->strategy == MS_SUM)
	{
		if (b->flags & MERGE_HAS)
		{
			attr_view(bs, b, boff, &bv);
			s = attr_add_sum(s, i, off, bv.val.numeric);
		}
	}
	else if (a->strategy == MS_COUNT)
		a->u.count += b->u.count;
	else
		cdp_freq_merge(a->u.ft, b->u.ft);
	a = MERGE_SLOT(s, i);
	a->flags |= MERGE_SEEN;
	if (s->lineage && bs->lineage)
	{
		MergeAttrLin *alin = MERGE_LIN(s, i);
		MergeAttrLin *blin = MERGE_LIN(bs, j);

		alin->nobs += blin->nobs;
		alin->first_at = Min(alin->first_at, blin->first_at);
		alin->last_at = Max(alin->last_at, blin->last_at);
	}
	return s;
}

/* Give back a state merged into another one. */
static void
merge_free(MergeState *s)
{
	for (int i = 0; i < s->nattrs; i++)
	{
		MergeAttr  *a = MERGE_SLOT(s, i);

		if (a->strategy == MS_MOST_FREQUENT || a->strategy == MS_UNION)
			cdp_freq_free(a->u.ft);
	}
	merge_chunk_free(s);
}

/* combine function of cdp.merge_profile and cdp.merge_profile_lineage */
PG_FUNCTION_INFO_V1(cdp_merge_profile_combine);
Datum
cdp_merge_profile_combine(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = merge_agg_context(fcinfo);
	MergeState *a = PG_ARGISNULL(0) ? NULL : (MergeState *) PG_GETARG_POINTER(0);
	MergeState *b = PG_ARGISNULL(1) ? NULL : (MergeState *) PG_GETARG_POINTER(1);
	MergeCache *d;
	MergeItem  *items;
	uint32		stamp;
	uint32		off;
	int			matched = 0;

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
	if (a == NULL && state_context(b) == cxt)
		PG_RETURN_POINTER(b);
	if (a == NULL)
		a = merge_new(cxt, get_cache(fcinfo),
					  merge_arena_get(fcinfo, cxt, get_cache(fcinfo)),
					  b->lineage, b->nattrs, b->used);

	/* b's attributes by their ids in a's cache */
	d = a->dict;
	items = merge_items(d, b->nattrs);
	stamp = merge_next_stamp(d);
	off = 0;
	for (int j = 0; j < b->nattrs; j++)
	{
		MergeAttr  *bj = MERGE_SLOT(b, j);
		const MergeKey *key = attr_key(b, bj);

		off = MERGE_NEXT_OFF(b, bj, off);
		items[j].j = j;
		items[j].off = off;
		items[j].id = key_intern(d, key->name, key->len);
		if (!merge_mark(d, stamp, items[j].id, j))
			elog(ERROR, "attribute \"%s\" appears twice in a merge state",
				 key->name);
	}
	off = 0;
	for (int i = 0; i < a->nattrs && matched < b->nattrs; i++)
	{
		MergeAttr  *ai = MERGE_SLOT(a, i);
		MergeItem  *it;

		off = MERGE_NEXT_OFF(a, ai, off);
		if (d->mark[ai->key] != stamp)
			continue;
		d->mark[ai->key] = 0;
		it = &items[d->markitem[ai->key]];
		a = attr_merge(a, i, &off, b, it->j, it->off);
		matched++;
	}
	for (int j = 0; j < b->nattrs && matched < b->nattrs; j++)
	{
		MergeItem  *it = &items[j];

		if (d->mark[it->id] != stamp)
			continue;
		d->mark[it->id] = 0;
		a = attr_add_id(a, it->id, MERGE_SLOT(b, j)->strategy);
		off = a->used;
		a = attr_merge(a, a->nattrs - 1, &off, b, j, it->off);
		matched++;
	}
	if (state_context(b) == cxt)
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
	uint32		off = 0;

	merge_agg_context(fcinfo);
	initStringInfo(&buf);
	appendStringInfoSpaces(&buf, VARHDRSZ);
	appendStringInfoChar(&buf, CDP_MERGE_STATE_VERSION);
	appendStringInfoChar(&buf, s->lineage ? 1 : 0);
	cdp_write_bytes(&buf, &s->nattrs, sizeof(int32));
	for (int i = 0; i < s->nattrs; i++)
	{
		MergeAttr  *a = MERGE_SLOT(s, i);
		JsonbValue	v;
		int64		nobs = attr_nobs(s, i);
		bool		has = (a->flags & MERGE_HAS) != 0;

		off = MERGE_NEXT_OFF(s, a, off);
		cdp_write_bytes(&buf, &attr_key(s, a)->len, sizeof(int32));
		cdp_write_bytes(&buf, attr_key(s, a)->name, attr_key(s, a)->len);
		appendStringInfoChar(&buf, a->strategy);
		appendStringInfoChar(&buf, has ? 1 : 0);
		cdp_write_bytes(&buf, &nobs, sizeof(int64));
		if (IS_WINNER_STRATEGY(a->strategy) && has)
		{
			int64		priority = attr_priority(s, a, off);

			cdp_write_bytes(&buf, &a->u.at, sizeof(int64));
			cdp_write_bytes(&buf, &priority, sizeof(int64));
			attr_view(s, a, off, &v);
			write_jsonb(&buf, JsonbValueToJsonb(&v));
		}
		else if (a->strategy == MS_SUM && has)
		{
			int32		len;

			/* sums are stored with a 4-byte header, see attr_add_sum */
			attr_view(s, a, off, &v);
			len = VARSIZE(v.val.numeric);
			cdp_write_bytes(&buf, &len, sizeof(int32));
			cdp_write_bytes(&buf, v.val.numeric, len);
		}
		else if (a->strategy == MS_MOST_FREQUENT || a->strategy == MS_UNION)
			cdp_freq_write(&buf, a->u.ft);
		if (s->lineage)
		{
			MergeAttrLin *lin = MERGE_LIN(s, i);

			cdp_write_bytes(&buf, &lin->first_at, sizeof(int64));
			cdp_write_bytes(&buf, &lin->last_at, sizeof(int64));
			cdp_write_bytes(&buf, &lin->srclen, sizeof(int32));
			if (lin->srclen > 0)
				cdp_write_bytes(&buf, MERGE_BYTES(s, off) + JBE_OFFLENFLD(a->entry),
								lin->srclen);
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
	Size		size;
	uint32		stamp;

	/* built in the aggregate context, see the combine function */
	cdp_reader_init(&r, b);
	lineage = cdp_read_uint8(&r) != 0;
	n = cdp_read_int32(&r);
	/* every attribute takes at least 14 bytes */
	if (n < 0 || n > (r.len - r.pos) / 14)
		cdp_state_corrupted("The number of attributes does not fit the state.");
	s = merge_new(cxt, c, merge_arena_get(fcinfo, cxt, c), lineage, n,
				  r.len - r.pos);
	stamp = merge_next_stamp(c);
	for (int i = 0; i < n; i++)
	{
		int32		keylen = cdp_read_int32(&r);
		const char *key = cdp_read_bytes(&r, keylen);
		uint8		strategy = cdp_read_uint8(&r);
		bool		has = cdp_read_uint8(&r) != 0;
		MergeAttr  *a;
		int64		nobs;
		uint16		id;
		uint32		off;
		Jsonb	   *jb = NULL;
		const char *sum = NULL;
		int32		sumlen = 0;
		TimestampTz at = 0;
		int64		priority = 0;
		const char *src = NULL;
		int32		srclen = -1;
		TimestampTz first_at = 0;
		TimestampTz last_at = 0;

		if (strategy < MS_FIRST || strategy > MS_LAST)
			cdp_state_corrupted("Unknown merge strategy.");
		id = key_intern(c, key, keylen);
		if (!merge_mark(c, stamp, id, i))
			cdp_state_corrupted("An attribute appears twice.");
		s = attr_add_id(s, id, strategy);
		off = s->used;
		nobs = cdp_read_int64(&r);
		if (nobs < 0)
			cdp_state_corrupted("An attribute has a negative number of observations.");
		if (has && IS_WINNER_STRATEGY(strategy))
		{
			int32		len;
			const char *p;

			at = cdp_read_int64(&r);
			priority = cdp_read_int64(&r);
			if (priority != CDP_PRIORITY_NULL &&
				(priority < PG_INT32_MIN || priority > PG_INT32_MAX))
				cdp_state_corrupted("A priority is out of range.");
			p = read_varlena(&r, &len, "jsonb value");
			/* an aligned copy to read it from */
			jb = palloc(len);
			memcpy(jb, p, len);
			if (JB_ROOT_IS_SCALAR(jb) && JB_ROOT_COUNT(jb) != 1)
				cdp_state_corrupted("A jsonb scalar does not hold one value.");
		}
		else if (has && strategy == MS_SUM)
		{
			sum = read_varlena(&r, &sumlen, "sum");
			if ((uint32) sumlen > JENTRY_OFFLENMASK)
				cdp_state_corrupted("A sum is too long.");
		}
		else if (has)
			cdp_state_corrupted("An attribute has a value its strategy does not keep.");
		else if (strategy == MS_MOST_FREQUENT || strategy == MS_UNION)
		{
			a = MERGE_SLOT(s, i);
			cdp_freq_free(a->u.ft);
			a->u.ft = cdp_freq_read(&r, cxt, &c->jsonb_ti);
		}
		if (lineage)
		{
			first_at = cdp_read_int64(&r);
			last_at = cdp_read_int64(&r);
			srclen = cdp_read_int32(&r);
			if (srclen < -1)
				cdp_state_corrupted("A source label has a negative length.");
			if (srclen >= 0)
				src = cdp_read_bytes(&r, srclen);
		}
		if (jb != NULL)
		{
			JsonbValue	v;

			jsonb_view(jb, &v);
			s = attr_store_winner(s, i, &off, &v, at, priority, src, srclen);
			pfree(jb);
		}
		else if (sum != NULL)
			s = attr_set_record(s, i, &off, 0, JENTRY_ISNUMERIC | sumlen, sum,
								NULL, 0);
		a = MERGE_SLOT(s, i);
		if (nobs > 0)
			a->flags |= MERGE_SEEN;
		if (strategy == MS_COUNT)
			a->u.count = nobs;
		if (lineage)
		{
			MergeAttrLin *lin = MERGE_LIN(s, i);

			lin->nobs = nobs;
			lin->first_at = first_at;
			lin->last_at = last_at;
		}
	}
	cdp_reader_end(&r);
	/* the serialized size overestimates what the state needs */
	size = merge_chunk_size(state_arena(c, cxt), merge_live(s));
	if (size < s->size)
		s = merge_repack_to(s, size);
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
push_attr_value(JsonbParseState **ps, MergeState *s, MergeAttr *a, uint32 off,
				CdpFreqItem **best)
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
		case MS_SUM:
			if (!(a->flags & MERGE_HAS))
				return false;
			attr_view(s, a, off, &v);
			pushJsonbValue(ps, WJB_VALUE, &v);
			return true;
		case MS_COUNT:
			push_int64(ps, WJB_VALUE, a->u.count);
			return true;
		case MS_MOST_FREQUENT:
			items = cdp_freq_entries(a->u.ft, &n);
			if (n == 0)
				return false;
			*best = &items[cdp_freq_best(items, n, cdp_freq_typeinfo(a->u.ft), false)];
			push_jsonb(ps, WJB_VALUE, DatumGetJsonbP((*best)->value));
			return true;
		case MS_UNION:
			items = cdp_freq_entries(a->u.ft, &n);
			if (n == 0)
				return false;
			cdp_freq_sort(items, n, cdp_freq_typeinfo(a->u.ft), false);
			pushJsonbValue(ps, WJB_BEGIN_ARRAY, NULL);
			for (int i = 0; i < n; i++)
				push_jsonb(ps, WJB_ELEM, DatumGetJsonbP(items[i].value));
			pushJsonbValue(ps, WJB_END_ARRAY, NULL);
			return true;
	}
	return false;
}

/* One pair of a golden record written by merge_final_direct. */
typedef struct MergeOutPair
{
	const char *key;
	int32		keylen;
	uint32		type;			/* JEntry type bits of the value */
	const char *val;
	uint32		vallen;
} MergeOutPair;

/* jsonb's key order: shorter keys first, then bytewise (see jsonb.h) */
static inline int
out_pair_cmp(const MergeOutPair *a, const MergeOutPair *b)
{
	if (a->keylen != b->keylen)
		return a->keylen < b->keylen ? -1 : 1;
	return memcmp(a->key, b->key, a->keylen);
}

static int
out_pair_qsort_cmp(const void *a, const void *b)
{
	return out_pair_cmp((const MergeOutPair *) a, (const MergeOutPair *) b);
}

/* Bytes of padding that int-align a numeric or container at offset off. */
static inline uint32
out_pad(uint32 type, uint32 off)
{
	if (type == JENTRY_ISNUMERIC || type == JENTRY_ISCONTAINER)
		return INTALIGN(off) - off;
	return 0;
}

/*
 * The golden record of a state whose attributes all keep their value as an
 * image (winners and sums), written straight into jsonb's
 * on-disk format: the values are stored the way a jsonb container stores
 * its children, so building a JsonbValue tree, sorting and converting it
 * (pushJsonbValue, JsonbValueToJsonb) would only copy them again.  The
 * layout is the one convertToJsonb produces: the object header, the keys'
 * JEntries, the values' JEntries (an end offset instead of a length in
 * every JB_OFFSET_STRIDE'th), the keys' bytes in key order, then the
 * values, numerics and containers int-aligned with zero padding counted in
 * their length.  Returns NULL when the state holds another kind of
 * attribute; the caller builds the record with the jsonb API then.
 */
static Jsonb *
merge_final_direct(MergeState *s)
{
	MergeOutPair stackpairs[32];
	MergeOutPair *pairs = stackpairs;
	int			n = 0;
	uint32		datalen = 0;
	uint32		off = 0;
	Size		total;
	Jsonb	   *res;
	JEntry	   *children;
	char	   *data;

	for (int i = 0; i < s->nattrs; i++)
	{
		MergeAttr  *a = MERGE_SLOT(s, i);

		if (!(a->flags & MERGE_SEEN))
			continue;
		if (!(IS_WINNER_STRATEGY(a->strategy) || a->strategy == MS_SUM) ||
			!(a->flags & MERGE_HAS))
			return NULL;
	}
	if (s->nattrs > lengthof(stackpairs))
		pairs = palloc(sizeof(MergeOutPair) * s->nattrs);
	for (int i = 0; i < s->nattrs; i++)
	{
		MergeAttr  *a = MERGE_SLOT(s, i);
		const MergeKey *k = attr_key(s, a);
		MergeOutPair p;
		int			j;

		off = MERGE_NEXT_OFF(s, a, off);
		if (!(a->flags & MERGE_SEEN))
			continue;
		p.key = k->name;
		p.keylen = k->len;
		p.type = a->entry & JENTRY_TYPEMASK;
		p.vallen = JBE_OFFLENFLD(a->entry);
		p.val = p.vallen > 0 ? attr_value_bytes(s, a, off) : NULL;
		if (pairs != stackpairs)
		{
			pairs[n++] = p;
			continue;
		}
		/* insertion sort: a record has a handful of attributes */
		for (j = n; j > 0 && out_pair_cmp(&pairs[j - 1], &p) > 0; j--)
			pairs[j] = pairs[j - 1];
		pairs[j] = p;
		n++;
	}
	if (n == 0)
		return NULL;
	if (pairs != stackpairs)
		qsort(pairs, n, sizeof(MergeOutPair), out_pair_qsort_cmp);

	/* sizes: keys, then values with their alignment padding */
	for (int i = 0; i < 2 * n; i++)
	{
		MergeOutPair *p = &pairs[i % n];

		if (i < n)
			datalen += p->keylen;
		else
			datalen += out_pad(p->type, datalen) + p->vallen;
		/* each part is below the limit, so the sum cannot wrap first */
		if (datalen > JENTRY_OFFLENMASK)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("total size of jsonb object elements exceeds the maximum of %u bytes",
							JENTRY_OFFLENMASK)));
	}
	total = VARHDRSZ + sizeof(uint32) + sizeof(JEntry) * 2 * (Size) n + datalen;
	if (total > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("golden record of %zu bytes is too large", total)));

	/* zeroed, which makes the padding bytes zero as jsonb writes them */
	res = palloc0(total);
	SET_VARSIZE(res, total);
	res->root.header = (uint32) n | JB_FOBJECT;
	children = res->root.children;
	data = (char *) &children[2 * n];
	off = 0;
	for (int i = 0; i < 2 * n; i++)
	{
		MergeOutPair *p = &pairs[i % n];
		uint32		type;
		uint32		len;

		if (i < n)
		{
			type = JENTRY_ISSTRING;
			memcpy(data + off, p->key, p->keylen);
			len = p->keylen;
		}
		else
		{
			uint32		pad = out_pad(p->type, off);

			type = p->type;
			if (p->vallen > 0)
				memcpy(data + off + pad, p->val, p->vallen);
			len = pad + p->vallen;
		}
		off += len;
		children[i] = type | ((i % JB_OFFSET_STRIDE) == 0 ?
							  (off | JENTRY_HAS_OFF) : len);
	}
	Assert(off == datalen);
	if (pairs != stackpairs)
		pfree(pairs);
	return res;
}

/*
 * A hash aggregate calls the final function group after group in the order
 * of its hash table's buckets, which has nothing to do with where the
 * groups' states are: the first read of each state is a cache miss, and
 * so is the executor's read of the group's key tuple right before.  The
 * groups that come next are in the buckets the table's iterator has not
 * reached yet (simplehash walks them downwards), so their key tuples and
 * per-group data are asked for MERGE_PF_TUPLE buckets ahead, and their
 * states, found through the per-group data by then in cache,
 * MERGE_PF_STATE buckets ahead.  Only prefetches are issued for those
 * groups, so a wrong guess costs nothing but the prefetch.
 */
#define MERGE_PF_TUPLE 32
#define MERGE_PF_STATE 16

static void
merge_prefetch_groups(FunctionCallInfo fcinfo, MergeCache *c, MergeState *s)
{
	AggState   *as = (AggState *) fcinfo->context;
	AggStatePerHash perhash;
	tuplehash_hash *tb;
	TupleHashEntryData *e;
	uint32		cur;
	uint32		mask;

	/* the buckets are there to read only while a hash table is read out */
	if (c->pf_transno == -2 || as == NULL || !IsA(as, AggState) ||
		!as->table_filled || as->perhash == NULL ||
		as->current_set < 0 || as->current_set >= as->num_hashes)
		return;
	perhash = &as->perhash[as->current_set];
	if (perhash->hashtable == NULL || perhash->hashiter.done)
		return;
	tb = perhash->hashtable->hashtab;
	mask = tb->sizemask;
	/* a small table stays in cache */
	if (mask < 8 * MERGE_PF_TUPLE)
		return;
	cur = perhash->hashiter.cur;
	if (c->pf_transno < 0)
	{
		/* which transition value of a group is this aggregate's */
		e = &tb->data[(cur + 1) & mask];
		if (e->status != tuplehash_SH_IN_USE || e->additional == NULL)
			return;
		for (int t = 0; t < as->numtrans; t++)
		{
			if (((AggStatePerGroup) e->additional)[t].transValue ==
				PointerGetDatum(s))
				c->pf_transno = t;
		}
		if (c->pf_transno < 0)
		{
			c->pf_transno = -2;
			return;
		}
	}
	/* a new table or a new pass over it: start again from here */
	if (tb != c->pf_table ||
		((cur - c->pf_tuple) & mask) > 2 * MERGE_PF_TUPLE ||
		((cur - c->pf_state) & mask) > 2 * MERGE_PF_TUPLE)
	{
		c->pf_table = tb;
		c->pf_tuple = c->pf_state = cur;
	}
	while (((cur - c->pf_tuple) & mask) < MERGE_PF_TUPLE)
	{
		e = &tb->data[c->pf_tuple];
		if (e->status == tuplehash_SH_IN_USE)
		{
			cdp_prefetch_write(e->firstTuple);
			cdp_prefetch_write(e->additional);
		}
		c->pf_tuple = (c->pf_tuple - 1) & mask;
	}
	while (((cur - c->pf_state) & mask) < MERGE_PF_STATE)
	{
		e = &tb->data[c->pf_state];
		if (e->status == tuplehash_SH_IN_USE && e->additional != NULL)
		{
			AggStatePerGroup pg = &((AggStatePerGroup) e->additional)[c->pf_transno];

			if (!pg->transValueIsNull)
			{
				char	   *p = DatumGetPointer(pg->transValue);

				for (int off = 0; off < 320; off += 64)
					cdp_prefetch_write(p + off);
			}
		}
		c->pf_state = (c->pf_state - 1) & mask;
	}
}

static Datum
merge_final(FunctionCallInfo fcinfo, bool lineage)
{
	MergeState *s = PG_ARGISNULL(0) ? NULL : (MergeState *) PG_GETARG_POINTER(0);
	JsonbParseState *ps = NULL;
	JsonbValue *res;
	int			emitted = 0;
	uint32		off = 0;

	merge_agg_context(fcinfo);
	if (s == NULL)
		PG_RETURN_NULL();
	merge_prefetch_groups(fcinfo, get_cache(fcinfo), s);
	if (s->nattrs == 0)
		PG_RETURN_NULL();
	if (lineage && !s->lineage)
		elog(ERROR, "merge state without lineage in cdp.merge_profile_lineage");
	if (!lineage)
	{
		Jsonb	   *direct = merge_final_direct(s);

		if (direct != NULL)
			PG_RETURN_JSONB_P(direct);
	}
	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < s->nattrs; i++)
	{
		MergeAttr  *a = MERGE_SLOT(s, i);
		MergeAttrLin *lin = lineage ? MERGE_LIN(s, i) : NULL;
		CdpFreqItem *best;

		off = MERGE_NEXT_OFF(s, a, off);
		if (!(a->flags & MERGE_SEEN))
			continue;
		push_string(&ps, WJB_KEY, attr_key(s, a)->name, attr_key(s, a)->len);
		if (!lineage)
		{
			if (!push_attr_value(&ps, s, a, off, &best))
				elog(ERROR, "attribute \"%s\" has observations but no value",
					 attr_key(s, a)->name);
			emitted++;
			continue;
		}
		pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
		push_key(&ps, "value");
		if (!push_attr_value(&ps, s, a, off, &best))
			elog(ERROR, "attribute \"%s\" has observations but no value",
				 attr_key(s, a)->name);
		push_key(&ps, "strategy");
		push_string(&ps, WJB_VALUE, strategy_names[a->strategy],
					strlen(strategy_names[a->strategy]));
		push_key(&ps, "observations");
		push_int64(&ps, WJB_VALUE, lin->nobs);
		if (IS_WINNER_STRATEGY(a->strategy))
		{
			JsonbValue	nullv;

			push_key(&ps, "at");
			push_timestamptz(&ps, a->u.at);
			push_key(&ps, "priority");
			if (a->flags & MERGE_PRIO_NULL)
			{
				nullv.type = jbvNull;
				pushJsonbValue(&ps, WJB_VALUE, &nullv);
			}
			else
				push_int64(&ps, WJB_VALUE, lin->priority);
			if (lin->srclen >= 0)
			{
				push_key(&ps, "source");
				push_string(&ps, WJB_VALUE,
							MERGE_BYTES(s, off) + JBE_OFFLENFLD(a->entry),
							lin->srclen);
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
			push_timestamptz(&ps, lin->first_at);
			push_key(&ps, "last_at");
			push_timestamptz(&ps, lin->last_at);
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
