/*-------------------------------------------------------------------------
 *
 * stitch.c
 *	  Identity stitching: rules, the engine that applies them, and the SQL
 *	  functions cdp.stitch(), cdp.stitch_report(), cdp.stitch_stats() and
 *	  cdp.stitch_rules().
 *
 * Identifiers (kind, value) are interned once in a simplehash whose entries
 * hold only a dense node id and a hash; the bytes live in a chunked arena.
 * Links are unions in a disjoint-set forest over the node ids
 * (unionfind.c).  Rules that depend on order (limits, max_profile_size)
 * keep the rows with two or more identifiers, sort them by "at" and a
 * content tiebreak, and apply them one by one with Segment-style demotion;
 * without such rules no sort is needed, since union-find does not care
 * about order.  max_degree needs the degree of each identifier before any
 * link is made, so links touching a kind with max_degree are collected
 * (deduplicated) in a second simplehash and applied at the end.
 *
 * Profile ids are numbered by each profile's canonical member (highest
 * priority kind, then smallest value bytewise), so the same input set
 * always gives the same ids, whatever the row order or plan.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "port/pg_bswap.h"

#include "access/htup_details.h"
#include "catalog/pg_collation_d.h"
#include "catalog/pg_type_d.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "regex/regex.h"
#include "tcop/dest.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/plancache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "hugemem.h"
#include "stitch.h"
#include "unionfind.h"

#define ZEROS_REGEX "^[0-]+$"
#define PLACEHOLDER_REGEX "(?i)^(null|nil|none|undefined|unknown|anonymous|n/a)$"
#define DEFAULT_BLOCKED_JSON \
	"{\"*\": [\"\", \"0\", \"-1\", \"null\", \"undefined\", \"anonymous\", " \
	"{\"regex\": \"" ZEROS_REGEX "\"}, {\"regex\": \"" PLACEHOLDER_REGEX "\"}]}"
#define DEFAULT_MAX_DEGREE 50
#define ARENA_CHUNK (64 * 1024)
#define ARENA_CHUNK_MAX (16 * 1024 * 1024)
#define NO_NODE PG_UINT32_MAX

/* ---------------------------------------------------------------- rules */

typedef enum BlockMatcher
{
	BLOCK_EXACT,
	BLOCK_REGEX,				/* PostgreSQL's regex engine */
	BLOCK_ZEROS,				/* ZEROS_REGEX, checked in C */
	BLOCK_PLACEHOLDER			/* PLACEHOLDER_REGEX, checked in C */
} BlockMatcher;

typedef struct BlockEntry
{
	char	   *str;			/* exact value or pattern */
	int			len;
	bool		is_regex;
	BlockMatcher matcher;
	text	   *regex;
} BlockEntry;

/* Settings of one kind name as written in the rules ("*": every kind). */
typedef struct KindRule
{
	char	   *kind;
	int			limit;			/* 0: none */
	int			max_degree;		/* 0: none */
	List	   *blocked;		/* BlockEntry * */
} KindRule;

struct StitchRules
{
	List	   *kinds;			/* KindRule *, in first-mention order */
	List	   *priority;		/* char * */
	int			max_profile_size;	/* 0: none */
	int			nlimits;
};

static void
rule_error(const char *path, const char *detail, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid stitching rule \"%s\"", path),
			 errdetail_internal("%s", detail),
			 hint ? errhint("%s", hint) : 0));
}

static KindRule *
rules_kind(StitchRules *rules, const char *kind)
{
	ListCell   *lc;
	KindRule   *kr;

	foreach(lc, rules->kinds)
	{
		kr = lfirst(lc);
		if (strcmp(kr->kind, kind) == 0)
			return kr;
	}
	kr = palloc0(sizeof(KindRule));
	kr->kind = pstrdup(kind);
	rules->kinds = lappend(rules->kinds, kr);
	return kr;
}

static char *
jbv_string(JsonbValue *v)
{
	return pnstrdup(v->val.string.val, v->val.string.len);
}

static const char *
jbv_type_name(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "an array" : "an object";
		default:
			return "an unexpected value";
	}
}

/* A positive int4 from a JSON number, else an error naming path. */
static int
jbv_positive_int(JsonbValue *v, const char *path)
{
	char	   *s;
	char	   *end;
	long		n;

	if (v->type != jbvNumeric)
		rule_error(path, psprintf("The value is %s, not an integer.", jbv_type_name(v)),
				   "Write a whole number of at least 1.");
	s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	errno = 0;
	n = strtol(s, &end, 10);
	if (*end != '\0' || errno != 0 || n > PG_INT32_MAX)
		rule_error(path, psprintf("The value %s is not an integer in range.", s),
				   "Write a whole number of at least 1.");
	if (n < 1)
		rule_error(path, psprintf("The value %s is below 1.", s),
				   "Write a whole number of at least 1; leave the key out for no bound.");
	return (int) n;
}

/*
 * Iterate the members of a JSON object container: calls fn for each
 * (key, value); nested containers arrive as jbvBinary.
 */
typedef void (*ObjectMemberFn) (StitchRules *rules, const char *path,
								const char *key, JsonbValue *v);

static void
foreach_member(StitchRules *rules, JsonbValue *obj, const char *path,
			   ObjectMemberFn fn)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	if (obj->type != jbvBinary || !JsonContainerIsObject(obj->val.binary.data))
		rule_error(path, psprintf("The value is %s, not an object.", jbv_type_name(obj)),
				   "Write an object keyed by identifier kind, for example {\"user_id\": 1}.");
	it = JsonbIteratorInit(obj->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = jbv_string(&v);
		else if (tok == WJB_VALUE)
			fn(rules, path, key, &v);
	}
}

static void
parse_limit(StitchRules *rules, const char *path, const char *key, JsonbValue *v)
{
	char	   *p = psprintf("%s.%s", path, key);
	KindRule   *kr;

	if (strcmp(key, "*") == 0)
		rule_error(p, "Limits apply to a named kind.",
				   "Name each kind, for example {\"user_id\": 1}.");
	kr = rules_kind(rules, key);
	kr->limit = jbv_positive_int(v, p);
	rules->nlimits++;
}

static void
parse_max_degree(StitchRules *rules, const char *path, const char *key, JsonbValue *v)
{
	rules_kind(rules, key)->max_degree = jbv_positive_int(v, psprintf("%s.%s", path, key));
}

static void
regex_error_callback(void *arg)
{
	errcontext("in stitching rule \"%s\"", (const char *) arg);
}

static void
parse_blocked(StitchRules *rules, const char *path, const char *key, JsonbValue *v)
{
	char	   *p = psprintf("%s.%s", path, key);
	KindRule   *kr = rules_kind(rules, key);
	JsonbIterator *it;
	JsonbValue	e;
	JsonbIteratorToken tok;
	int			i = 0;

	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data) ||
		JsonContainerIsScalar(v->val.binary.data))
		rule_error(p, psprintf("The value is %s, not an array.", jbv_type_name(v)),
				   "Write an array of values and {\"regex\": \"...\"} objects.");
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
	{
		BlockEntry *be;
		char	   *ep;

		if (tok != WJB_ELEM)
			continue;
		ep = psprintf("%s[%d]", p, i++);
		be = palloc0(sizeof(BlockEntry));
		if (e.type == jbvString)
		{
			be->str = jbv_string(&e);
			be->len = e.val.string.len;
		}
		else if (e.type == jbvBinary && JsonContainerIsObject(e.val.binary.data))
		{
			JsonbIterator *oit = JsonbIteratorInit(e.val.binary.data);
			JsonbValue	ov;
			char	   *okey = NULL;

			while ((tok = JsonbIteratorNext(&oit, &ov, true)) != WJB_DONE)
			{
				if (tok == WJB_KEY)
					okey = jbv_string(&ov);
				else if (tok == WJB_VALUE)
				{
					char	   *rp = psprintf("%s.%s", ep, okey);

					if (strcmp(okey, "regex") != 0)
						rule_error(rp, "The only key of a blocked-value object is \"regex\".",
								   "Write {\"regex\": \"^pattern$\"}.");
					if (ov.type != jbvString)
						rule_error(rp, psprintf("The value is %s, not a string.", jbv_type_name(&ov)),
								   "Write the regular expression as a JSON string.");
					be->is_regex = true;
					be->str = jbv_string(&ov);
					be->len = ov.val.string.len;
				}
			}
			if (!be->is_regex)
				rule_error(ep, "The object has no \"regex\" key.",
						   "Write {\"regex\": \"^pattern$\"}.");
			/* compile now, so that a bad pattern fails here, naming its key */
			{
				ErrorContextCallback cb;

				cb.callback = regex_error_callback;
				cb.arg = psprintf("%s.regex", ep);
				cb.previous = error_context_stack;
				error_context_stack = &cb;
				be->regex = cstring_to_text_with_len(be->str, be->len);
				(void) RE_compile_and_cache(be->regex, REG_ADVANCED, C_COLLATION_OID);
				error_context_stack = cb.previous;
			}
			/*
			 * The default list's patterns run once per distinct identifier,
			 * millions of times: match them with equivalent C code.  (With
			 * the C collation, (?i) folds ASCII letters only.)
			 */
			if (strcmp(be->str, ZEROS_REGEX) == 0)
				be->matcher = BLOCK_ZEROS;
			else if (strcmp(be->str, PLACEHOLDER_REGEX) == 0)
				be->matcher = BLOCK_PLACEHOLDER;
			else
				be->matcher = BLOCK_REGEX;
		}
		else
			rule_error(ep, psprintf("The element is %s.", jbv_type_name(&e)),
					   "Blocked values are strings or {\"regex\": \"...\"} objects.");
		kr->blocked = lappend(kr->blocked, be);
	}
}

static void
parse_blocked_json(StitchRules *rules, const char *json)
{
	Jsonb	   *j = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
	JsonbValue	v;

	v.type = jbvBinary;
	v.val.binary.data = &j->root;
	v.val.binary.len = VARSIZE(j) - VARHDRSZ;
	foreach_member(rules, &v, "blocked", parse_blocked);
}

StitchRules *
stitch_rules_parse(Jsonb *json)
{
	StitchRules *rules = palloc0(sizeof(StitchRules));
	bool		have_blocked = false;
	bool		have_max_degree = false;

	if (json != NULL)
	{
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken tok;
		char	   *key = NULL;

		if (!JB_ROOT_IS_OBJECT(json))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stitching rules must be a JSON object"),
					 errhint("Write for example '{\"limits\": {\"user_id\": 1}}', or NULL for the defaults.")));
		it = JsonbIteratorInit(&json->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
			{
				key = jbv_string(&v);
				continue;
			}
			if (tok != WJB_VALUE)
				continue;
			if (strcmp(key, "limits") == 0)
				foreach_member(rules, &v, key, parse_limit);
			else if (strcmp(key, "blocked") == 0)
			{
				foreach_member(rules, &v, key, parse_blocked);
				have_blocked = true;
			}
			else if (strcmp(key, "max_degree") == 0)
			{
				foreach_member(rules, &v, key, parse_max_degree);
				have_max_degree = true;
			}
			else if (strcmp(key, "max_profile_size") == 0)
			{
				/* null means no cap, as cdp.stitch_rules() prints it */
				rules->max_profile_size = (v.type == jbvNull) ? 0 :
					jbv_positive_int(&v, key);
			}
			else if (strcmp(key, "priority") == 0)
			{
				JsonbIterator *ait;
				JsonbValue	e;
				int			i = 0;

				if (v.type != jbvBinary || !JsonContainerIsArray(v.val.binary.data))
					rule_error(key, psprintf("The value is %s, not an array.", jbv_type_name(&v)),
							   "Write the kinds from highest to lowest priority, for example [\"user_id\", \"email\"].");
				ait = JsonbIteratorInit(v.val.binary.data);
				while ((tok = JsonbIteratorNext(&ait, &e, true)) != WJB_DONE)
				{
					char	   *kind;
					ListCell   *lc;

					if (tok != WJB_ELEM)
						continue;
					if (e.type != jbvString || e.val.string.len == 0)
						rule_error(psprintf("priority[%d]", i),
								   psprintf("The element is %s, not a kind name.", jbv_type_name(&e)),
								   "Write kind names as strings.");
					kind = jbv_string(&e);
					foreach(lc, rules->priority)
						if (strcmp(lfirst(lc), kind) == 0)
							rule_error(psprintf("priority[%d]", i),
									   psprintf("Kind \"%s\" is listed twice.", kind), NULL);
					rules->priority = lappend(rules->priority, kind);
					i++;
				}
			}
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unknown stitching rule \"%s\"", key),
						 errhint("Valid keys are \"limits\", \"blocked\", \"max_degree\", \"max_profile_size\" and \"priority\".")));
		}
	}
	if (!have_blocked)
		parse_blocked_json(rules, DEFAULT_BLOCKED_JSON);
	if (!have_max_degree)
		rules_kind(rules, "*")->max_degree = DEFAULT_MAX_DEGREE;
	return rules;
}

static void
json_kind_ints(StringInfo buf, const StitchRules *rules, const char *name, bool limit)
{
	ListCell   *lc;
	bool		first = true;

	appendStringInfo(buf, ", \"%s\": {", name);
	foreach(lc, rules->kinds)
	{
		KindRule   *kr = lfirst(lc);
		int			n = limit ? kr->limit : kr->max_degree;

		if (n == 0)
			continue;
		if (!first)
			appendStringInfoString(buf, ", ");
		escape_json(buf, kr->kind);
		appendStringInfo(buf, ": %d", n);
		first = false;
	}
	appendStringInfoChar(buf, '}');
}

Jsonb *
stitch_rules_jsonb(const StitchRules *rules)
{
	StringInfoData buf;
	ListCell   *lc;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"priority\": [");
	foreach(lc, rules->priority)
	{
		if (lc != list_head(rules->priority))
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, lfirst(lc));
	}
	appendStringInfoChar(&buf, ']');
	json_kind_ints(&buf, rules, "limits", true);
	json_kind_ints(&buf, rules, "max_degree", false);
	appendStringInfoString(&buf, ", \"blocked\": {");
	foreach(lc, rules->kinds)
	{
		KindRule   *kr = lfirst(lc);
		ListCell   *bc;

		if (kr->blocked == NIL)
			continue;
		if (!first)
			appendStringInfoString(&buf, ", ");
		first = false;
		escape_json(&buf, kr->kind);
		appendStringInfoString(&buf, ": [");
		foreach(bc, kr->blocked)
		{
			BlockEntry *be = lfirst(bc);

			if (bc != list_head(kr->blocked))
				appendStringInfoString(&buf, ", ");
			if (be->is_regex)
				appendStringInfoString(&buf, "{\"regex\": ");
			escape_json(&buf, be->str);
			if (be->is_regex)
				appendStringInfoChar(&buf, '}');
		}
		appendStringInfoChar(&buf, ']');
	}
	appendStringInfoChar(&buf, '}');
	if (rules->max_profile_size > 0)
		appendStringInfo(&buf, ", \"max_profile_size\": %d", rules->max_profile_size);
	else
		appendStringInfoString(&buf, ", \"max_profile_size\": null");
	appendStringInfoChar(&buf, '}');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/* --------------------------------------------------------------- engine */

#define NODE_BLOCKED	0x01
#define NODE_SUPPRESSED 0x02
#define NODE_HUB		0x04
#define NODE_EXCLUDED	(NODE_BLOCKED | NODE_SUPPRESSED)

typedef struct StitchNode
{
	const char *str;			/* in the arena */
	uint32		len;
	uint16		kind;
	uint8		flags;
} StitchNode;					/* 16 bytes: the hash lives in the table */

typedef struct StitchKind
{
	char	   *name;
	int			limit;
	int			limit_slot;		/* counter index, -1 if not limited */
	int			max_degree;
	List	   *blocked;		/* BlockEntry *, the kind's and "*"'s */
} StitchKind;

/* A stored row: n node ids at pool[off], sorted by (kind, value). */
typedef struct StoredRow
{
	TimestampTz at;
	uint64		off;
	uint16		n;
	bool		at_null;
} StoredRow;

typedef struct Demotion
{
	uint32		node;
	uint32		other;
	TimestampTz at;
	int64		observed;
	int16		limit_kind;
	uint8		reason;
	bool		has_at;
} Demotion;

typedef struct IdentEntry
{
	uint32		node;
	uint32		hash;
	char		status;
} IdentEntry;

typedef struct EdgeEntry
{
	uint64		key;
	char		status;
} EdgeEntry;

struct StitchEngine
{
	MemoryContext mcxt;
	MemoryContext tmpcxt;		/* per row / per comparison scratch */
	const StitchRules *rules;

	StitchKind *kinds;
	int			nkinds;
	int			maxkinds;

	CdpMapStats mapped;			/* the engine's large arrays (hugemem.h) */
	CdpMapping *nodes_map;
	StitchNode *nodes;			/* node id -> identifier */
	uint32		nnodes;
	uint32		nodecap;
	uint32		probe_hash;		/* hash of the key being looked up */
	uint32	   *last;			/* per row position: last node seen there */
	int			nlast;
	CdpMapping *degree_map;
	uint32	   *degree;			/* distinct neighbours, if any max_degree */
	struct ident_hash *idents;
	struct edge_hash *edges;
	CdpMapping *table_maps[4];	/* hash tables' arrays (two while growing) */
	UnionFind  *uf;

	char	   *arena;
	Size		arena_left;
	Size		arena_chunk;	/* size of the last chunk */

	bool		ordered;		/* limits or max_profile_size */
	bool		any_max_degree;
	int			nlimits;

	CdpMapping *rows_map;
	StoredRow  *rows;
	uint64		nrows;
	uint64		rowcap;
	CdpMapping *pool_map;
	uint32	   *pool;
	uint64		npool;
	uint64		poolcap;

	CdpMapping *demotions_map;
	Demotion   *demotions;
	uint64		ndemotions;
	uint64		demcap;

	uint32	   *rowbuf;
	int			rowbufcap;
	uint32	   *prevrow;		/* the previous linking row's nodes */
	int			nprev;

	uint32	   *profile;		/* after finish: per root, profile id */
	int64		nprofiles;
	int64		largest;
	int64		nblocked;
	int64		nhubs;
	int64		nidentifiers;
	int64		rows_read;
	uint64		value_bytes;	/* after finish: bytes of surviving values */
	uint32		max_len;		/* after finish: longest surviving value */
	Size		peak;
	bool		finished;

	StitchFilter filter;
	void	   *filter_arg;
};

static inline uint32 ident_hash_of(StitchEngine *e, uint32 node);
static inline bool ident_equal(StitchEngine *e, uint32 a, uint32 b);

#define SH_PREFIX ident
#define SH_USE_NONDEFAULT_ALLOCATOR
#define SH_ELEMENT_TYPE IdentEntry
#define SH_KEY_TYPE uint32
#define SH_KEY node
#define SH_HASH_KEY(tb, key) ident_hash_of((StitchEngine *) (tb)->private_data, key)
#define SH_EQUAL(tb, a, b) ident_equal((StitchEngine *) (tb)->private_data, a, b)
#define SH_SCOPE static inline
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) ((a)->hash)
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

#define SH_PREFIX edge
#define SH_USE_NONDEFAULT_ALLOCATOR
#define SH_ELEMENT_TYPE EdgeEntry
#define SH_KEY_TYPE uint64
#define SH_KEY key
#define SH_HASH_KEY(tb, key) \
	hash_combine(murmurhash32((uint32) ((key) >> 32)), murmurhash32((uint32) (key)))
#define SH_EQUAL(tb, a, b) ((a) == (b))
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/*
 * Hash table arrays: small ones palloc'd, large ones in mappings of their
 * own, which come zero-filled (simplehash wants them zeroed).
 */
static void *
table_alloc(StitchEngine *e, MemoryContext cxt, Size size)
{
	if (size < CDP_HUGE_PAGE)
		return MemoryContextAllocZero(cxt, size);
	for (int i = 0; i < lengthof(e->table_maps); i++)
		if (e->table_maps[i] == NULL)
		{
			e->table_maps[i] = cdp_map(cxt, size, &e->mapped);
			return e->table_maps[i]->addr;
		}
	elog(ERROR, "too many stitching hash table arrays");
	return NULL;				/* keep compiler quiet */
}

static void
table_free(StitchEngine *e, void *p)
{
	for (int i = 0; i < lengthof(e->table_maps); i++)
		if (e->table_maps[i] != NULL && e->table_maps[i]->addr == p)
		{
			cdp_unmap(e->table_maps[i]);
			e->table_maps[i] = NULL;
			return;
		}
	pfree(p);
}

static inline void *
ident_allocate(ident_hash *tb, Size size)
{
	return table_alloc((StitchEngine *) tb->private_data, tb->ctx, size);
}

static inline void
ident_free(ident_hash *tb, void *p)
{
	table_free((StitchEngine *) tb->private_data, p);
}

static inline void *
edge_allocate(edge_hash *tb, Size size)
{
	return table_alloc((StitchEngine *) tb->private_data, tb->ctx, size);
}

static inline void
edge_free(edge_hash *tb, void *p)
{
	table_free((StitchEngine *) tb->private_data, p);
}

/*
 * simplehash hashes a key only to look it up (it keeps the hash of stored
 * entries), and the key looked up is always the probe slot.
 */
static inline uint32
ident_hash_of(StitchEngine *e, uint32 node)
{
	Assert(node == e->nnodes);
	return e->probe_hash;
}

static inline bool
ident_equal(StitchEngine *e, uint32 a, uint32 b)
{
	StitchNode *na = &e->nodes[a];
	StitchNode *nb = &e->nodes[b];

	return na->kind == nb->kind && na->len == nb->len &&
		memcmp(na->str, nb->str, na->len) == 0;
}

/* Canonical order of identifiers: kind priority, then bytes. */
static inline int
node_cmp(const StitchEngine *e, uint32 a, uint32 b)
{
	const StitchNode *na = &e->nodes[a];
	const StitchNode *nb = &e->nodes[b];
	int			c;

	if (na->kind != nb->kind)
		return na->kind < nb->kind ? -1 : 1;
	c = memcmp(na->str, nb->str, Min(na->len, nb->len));
	if (c != 0)
		return c;
	return na->len < nb->len ? -1 : (na->len > nb->len ? 1 : 0);
}

StitchEngine *
stitch_create(const StitchRules *rules)
{
	MemoryContext mcxt = AllocSetContextCreate(CurrentMemoryContext,
											   "cdp stitch",
											   ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(mcxt);
	StitchEngine *e = palloc0(sizeof(StitchEngine));
	ListCell   *lc;

	e->mcxt = mcxt;
	e->tmpcxt = AllocSetContextCreate(mcxt, "cdp stitch scratch",
									  ALLOCSET_DEFAULT_SIZES);
	e->rules = rules;
	e->nlimits = rules->nlimits;
	e->ordered = rules->nlimits > 0 || rules->max_profile_size > 0;
	foreach(lc, rules->kinds)
		if (((KindRule *) lfirst(lc))->max_degree > 0)
			e->any_max_degree = true;

	e->maxkinds = 16;
	e->kinds = palloc0(sizeof(StitchKind) * e->maxkinds);
	e->nodecap = 1024;
	e->nodes_map = cdp_map(mcxt, sizeof(StitchNode) * (Size) e->nodecap, &e->mapped);
	e->nodes = e->nodes_map->addr;
	if (e->any_max_degree)
	{
		e->degree_map = cdp_map(mcxt, sizeof(uint32) * (Size) e->nodecap, &e->mapped);
		e->degree = e->degree_map->addr;
		e->edges = edge_create(mcxt, 1024, e);
	}
	e->idents = ident_create(mcxt, 1024, e);
	e->uf = uf_create(e->nodecap, e->nlimits, &e->mapped);
	e->rowbufcap = 16;
	e->rowbuf = palloc(sizeof(uint32) * e->rowbufcap);
	e->prevrow = palloc(sizeof(uint32) * e->rowbufcap);

	/* kinds named in priority come first, in that order */
	foreach(lc, rules->priority)
		(void) stitch_kind(e, lfirst(lc));
	MemoryContextSwitchTo(old);
	return e;
}

void
stitch_set_filter(StitchEngine *e, StitchFilter filter, void *arg)
{
	e->filter = filter;
	e->filter_arg = arg;
}

int
stitch_kind(StitchEngine *e, const char *name)
{
	MemoryContext old;
	StitchKind *k;
	ListCell   *lc;
	int			i;
	int			slot = 0;

	for (i = 0; i < e->nkinds; i++)
		if (strcmp(e->kinds[i].name, name) == 0)
			return i;
	if (e->nkinds >= PG_UINT16_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many identifier kinds")));
	old = MemoryContextSwitchTo(e->mcxt);
	if (e->nkinds == e->maxkinds)
	{
		e->maxkinds *= 2;
		e->kinds = repalloc(e->kinds, sizeof(StitchKind) * e->maxkinds);
	}
	k = &e->kinds[e->nkinds];
	memset(k, 0, sizeof(StitchKind));
	k->name = pstrdup(name);
	k->limit_slot = -1;
	foreach(lc, e->rules->kinds)
	{
		KindRule   *kr = lfirst(lc);
		bool		star = strcmp(kr->kind, "*") == 0;

		if (star || strcmp(kr->kind, name) == 0)
		{
			if (!star && kr->limit > 0)
			{
				k->limit = kr->limit;
				k->limit_slot = slot;
			}
			if (kr->max_degree > 0 && (!star || k->max_degree == 0))
				k->max_degree = kr->max_degree;
			k->blocked = list_concat(k->blocked, kr->blocked);
		}
		if (!star && kr->limit > 0)
			slot++;
	}
	/* a kind's own max_degree wins over "*" whatever the order */
	foreach(lc, e->rules->kinds)
	{
		KindRule   *kr = lfirst(lc);

		if (strcmp(kr->kind, name) == 0 && kr->max_degree > 0)
			k->max_degree = kr->max_degree;
	}
	MemoryContextSwitchTo(old);
	return e->nkinds++;
}

static bool
match_zeros(const char *s, uint32 len)
{
	uint32		i;

	for (i = 0; i < len; i++)
		if (s[i] != '0' && s[i] != '-')
			return false;
	return len > 0;
}

static bool
match_placeholder(const char *s, uint32 len)
{
	static const char *const words[] = {
		"null", "nil", "none", "undefined", "unknown", "anonymous", "n/a"
	};
	int			i;

	if (len < 3 || len > 9)
		return false;
	for (i = 0; i < lengthof(words); i++)
		if (strlen(words[i]) == len && pg_strncasecmp(words[i], s, len) == 0)
			return true;
	return false;
}

/* The first block-list entry matching a value, or NULL. */
static BlockEntry *
blocked_by(StitchEngine *e, const StitchNode *n)
{
	ListCell   *lc;

	foreach(lc, e->kinds[n->kind].blocked)
	{
		BlockEntry *be = lfirst(lc);
		bool		match = false;

		switch (be->matcher)
		{
			case BLOCK_EXACT:
				match = be->len == (int) n->len && memcmp(be->str, n->str, n->len) == 0;
				break;
			case BLOCK_ZEROS:
				match = match_zeros(n->str, n->len);
				break;
			case BLOCK_PLACEHOLDER:
				match = match_placeholder(n->str, n->len);
				break;
			case BLOCK_REGEX:
				match = RE_compile_and_execute(be->regex, (char *) n->str, n->len,
											   REG_ADVANCED, C_COLLATION_OID, 0, NULL);
				break;
		}
		if (match)
			return be;
	}
	return NULL;
}

static void
grow_nodes(StitchEngine *e)
{
	Size		newcap = (Size) e->nodecap * 2;

	if (newcap > PG_UINT32_MAX - 1)
		newcap = PG_UINT32_MAX - 1;
	if (newcap <= e->nodecap)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many distinct identifiers")));
	cdp_remap(e->nodes_map, sizeof(StitchNode) * newcap);
	e->nodes = e->nodes_map->addr;
	if (e->degree)
	{
		cdp_remap(e->degree_map, sizeof(uint32) * newcap);
		e->degree = e->degree_map->addr;
	}
	e->nodecap = (uint32) newcap;
}

static const char *
arena_copy(StitchEngine *e, const char *s, uint32 len)
{
	char	   *p;

	if (len > ARENA_CHUNK / 8)
		return memcpy(MemoryContextAllocHuge(e->mcxt, len + 1), s, len);
	if (e->arena_left < len)
	{
		/*
		 * Chunks grow with the arena and are mappings of their own, so a
		 * large input's strings lie on huge pages from end to end.
		 */
		e->arena_chunk = Min(Max(e->arena_chunk * 2, ARENA_CHUNK), ARENA_CHUNK_MAX);
		e->arena = cdp_map(e->mcxt, e->arena_chunk, &e->mapped)->addr;
		e->arena_left = e->arena_chunk;
	}
	p = e->arena;
	memcpy(p, s, len);
	e->arena += len;
	e->arena_left -= len;
	return p;
}

static inline uint32
ident_hash_value(int kind, const char *str, uint32 len)
{
	return hash_combine(hash_bytes((const unsigned char *) str, len), (uint32) kind);
}

/* Ask for the hash bucket a value will be looked up in. */
static inline void
ident_prefetch(StitchEngine *e, uint32 hash)
{
	cdp_prefetch(&e->idents->data[hash & e->idents->sizemask]);
}

/* Node id of (kind, value) with the given hash, interning it on first sight. */
static uint32
intern(StitchEngine *e, int kind, const char *str, uint32 len, uint32 hash)
{
	StitchNode *probe;
	IdentEntry *entry;
	bool		found;
	uint32		node;

	if (e->nnodes >= e->nodecap)
		grow_nodes(e);
	/* the next free slot doubles as the lookup key */
	probe = &e->nodes[e->nnodes];
	probe->str = str;
	probe->len = len;
	probe->kind = (uint16) kind;
	e->probe_hash = hash;
	entry = ident_insert(e->idents, e->nnodes, &found);
	if (found)
		return entry->node;

	probe->str = arena_copy(e, str, len);
	probe->flags = 0;
	node = uf_add(e->uf);
	Assert(node == e->nnodes);
	e->nnodes++;
	if (e->kinds[kind].limit_slot >= 0)
		uf_counters(e->uf, node)[e->kinds[kind].limit_slot] = 1;
	if (e->degree)
		e->degree[node] = 0;
	if (e->filter && e->filter(e->kinds[kind].name, probe->str, len, e->filter_arg))
		probe->flags |= NODE_SUPPRESSED;
	else if (e->kinds[kind].blocked != NIL && blocked_by(e, probe) != NULL)
		probe->flags |= NODE_BLOCKED;
	return node;
}

static inline bool
restricted(StitchEngine *e, uint32 node)
{
	return e->kinds[e->nodes[node].kind].max_degree > 0;
}

static void
add_edge(StitchEngine *e, uint32 a, uint32 b)
{
	uint64		key = a < b ? ((uint64) a << 32) | b : ((uint64) b << 32) | a;
	bool		found;

	(void) edge_insert(e->edges, key, &found);
	if (!found)
	{
		if (e->degree[a] < PG_UINT32_MAX)
			e->degree[a]++;
		if (e->degree[b] < PG_UINT32_MAX)
			e->degree[b]++;
	}
}

static void
store_row(StitchEngine *e, const uint32 *ids, int n, TimestampTz at, bool at_null)
{
	StoredRow  *r;
	int			i,
				j;

	if (n > PG_UINT16_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a stitching row holds %d identifiers", n),
				 errdetail("With limits or max_profile_size, a row can hold at most %d identifiers.",
						   PG_UINT16_MAX)));
	if (e->nrows == e->rowcap)
	{
		e->rowcap = Max(e->rowcap * 2, 1024);
		e->rows = cdp_map_grow(&e->rows_map, e->mcxt,
							   sizeof(StoredRow) * e->rowcap, &e->mapped);
	}
	while (e->npool + n > e->poolcap)
	{
		e->poolcap = Max(e->poolcap * 2, 4096);
		e->pool = cdp_map_grow(&e->pool_map, e->mcxt,
							   sizeof(uint32) * e->poolcap, &e->mapped);
	}
	r = &e->rows[e->nrows++];
	r->at = at;
	r->at_null = at_null;
	r->n = (uint16) n;
	r->off = e->npool;
	/* insertion sort into canonical order; rows are short */
	for (i = 0; i < n; i++)
	{
		uint32		x = ids[i];

		for (j = i; j > 0 && node_cmp(e, e->pool[r->off + j - 1], x) > 0; j--)
			e->pool[r->off + j] = e->pool[r->off + j - 1];
		e->pool[r->off + j] = x;
	}
	e->npool += n;
}

/* stitch_add_row, with the values' hashes when the caller has them */
static void
add_row(StitchEngine *e, int n, const int *kinds,
		const char *const *values, const int *lens, const uint32 *hashes,
		TimestampTz at, bool at_null)
{
	MemoryContext old;
	int			m = 0;
	int			i,
				j;

	Assert(!e->finished);
	old = MemoryContextSwitchTo(e->mcxt);
	e->rows_read++;
	if (n > e->rowbufcap)
	{
		e->rowbufcap = Max(n, e->rowbufcap * 2);
		e->rowbuf = repalloc(e->rowbuf, sizeof(uint32) * e->rowbufcap);
		e->prevrow = repalloc(e->prevrow, sizeof(uint32) * e->rowbufcap);
	}
	if (n > e->nlast)
	{
		int			k;

		e->last = e->last ? repalloc(e->last, sizeof(uint32) * n)
			: palloc(sizeof(uint32) * n);
		for (k = e->nlast; k < n; k++)
			e->last[k] = NO_NODE;
		e->nlast = n;
	}
	for (i = 0; i < n; i++)
	{
		uint32		node = e->last[i];
		const StitchNode *ln;

		if (lens[i] < 0)
			elog(ERROR, "negative identifier length");
		/* runs of one value in a column (rows clustered by person) */
		ln = &e->nodes[node == NO_NODE ? 0 : node];
		if (node == NO_NODE || ln->kind != kinds[i] || ln->len != (uint32) lens[i] ||
			memcmp(ln->str, values[i], lens[i]) != 0)
		{
			node = intern(e, kinds[i], values[i], (uint32) lens[i],
						  hashes ? hashes[i] :
						  ident_hash_value(kinds[i], values[i], (uint32) lens[i]));
			e->last[i] = node;
		}
		if (e->nodes[node].flags & NODE_EXCLUDED)
			continue;
		for (j = 0; j < m; j++)
			if (e->rowbuf[j] == node)
				break;
		if (j == m)
			e->rowbuf[m++] = node;
	}
	if (m >= 2)
	{
		if (e->ordered)
		{
			store_row(e, e->rowbuf, m, at, at_null);
			if (e->any_max_degree)
				for (i = 0; i < m; i++)
					for (j = i + 1; j < m; j++)
						if (restricted(e, e->rowbuf[i]) || restricted(e, e->rowbuf[j]))
							add_edge(e, e->rowbuf[i], e->rowbuf[j]);
		}
		else if (m == e->nprev && memcmp(e->rowbuf, e->prevrow, sizeof(uint32) * m) == 0)
		{
			/* the same links as the row before: nothing new without order */
		}
		else if (e->any_max_degree)
		{
			/* links to kinds with max_degree wait until degrees are known */
			for (i = 0; i < m; i++)
				for (j = i + 1; j < m; j++)
				{
					if (restricted(e, e->rowbuf[i]) || restricted(e, e->rowbuf[j]))
						add_edge(e, e->rowbuf[i], e->rowbuf[j]);
					else
						uf_union(e->uf, e->rowbuf[i], e->rowbuf[j]);
				}
		}
		else
		{
			for (i = 1; i < m; i++)
				uf_union(e->uf, e->rowbuf[0], e->rowbuf[i]);
		}
		memcpy(e->prevrow, e->rowbuf, sizeof(uint32) * m);
		e->nprev = m;
	}
	MemoryContextSwitchTo(old);
}

/* Row order for ordered rules: at (NULL last), then content. */
void
stitch_add_row(StitchEngine *e, int n, const int *kinds,
			   const char *const *values, const int *lens,
			   TimestampTz at, bool at_null)
{
	add_row(e, n, kinds, values, lens, NULL, at, at_null);
}

static int
row_cmp(const void *pa, const void *pb, void *arg)
{
	const StoredRow *a = pa;
	const StoredRow *b = pb;
	StitchEngine *e = arg;
	int			i;

	if (a->at_null != b->at_null)
		return a->at_null ? 1 : -1;
	if (!a->at_null && a->at != b->at)
		return a->at < b->at ? -1 : 1;
	for (i = 0; i < a->n && i < b->n; i++)
	{
		uint32		x = e->pool[a->off + i];
		uint32		y = e->pool[b->off + i];
		if (x == y)
			continue;
		return node_cmp(e, x, y);
	}
	return a->n < b->n ? -1 : (a->n > b->n ? 1 : 0);
}

static void
add_demotion(StitchEngine *e, uint32 node, uint32 other, const StoredRow *r,
			 StitchReason reason, int limit_kind, int64 observed)
{
	Demotion   *d;

	if (e->ndemotions == e->demcap)
	{
		e->demcap = Max(e->demcap * 2, 256);
		e->demotions = cdp_map_grow(&e->demotions_map, e->mcxt,
									sizeof(Demotion) * e->demcap, &e->mapped);
	}
	d = &e->demotions[e->ndemotions++];
	d->node = node;
	d->other = other;
	d->at = r->at;
	d->has_at = !r->at_null;
	d->reason = (uint8) reason;
	d->limit_kind = (int16) limit_kind;
	d->observed = observed;
}

/*
 * Apply one stored row: link its identifiers unless that breaks a limit or
 * max_profile_size; then drop the lowest-priority identifier and retry.
 */
static void
apply_row(StitchEngine *e, const StoredRow *r, uint32 *buf, uint32 *roots,
		  int64 *sums)
{
	int			m = 0;
	int			i,
				j;
	int			nslots = e->nlimits;

	for (i = 0; i < r->n; i++)
	{
		uint32		x = e->pool[r->off + i];

		if (!(e->nodes[x].flags & NODE_HUB))
			buf[m++] = x;
	}
	while (m >= 2)
	{
		int			nroots = 0;
		int64		size = 0;
		int			bad_kind = -1;
		int64		observed = 0;
		StitchReason reason = STITCH_LIMIT;
		uint32		demoted;
		uint32		droot;

		for (i = 0; i < nslots; i++)
			sums[i] = 0;
		for (i = 0; i < m; i++)
		{
			uint32		rt = uf_find(e->uf, buf[i]);

			for (j = 0; j < nroots; j++)
				if (roots[j] == rt)
					break;
			if (j < nroots)
				continue;
			roots[nroots++] = rt;
			size += e->uf->size[rt];
			for (j = 0; j < nslots; j++)
				sums[j] += uf_counters(e->uf, rt)[j];
		}
		if (nroots == 1)
			return;
		/* the first broken limit in priority order */
		for (i = 0; i < e->nkinds && bad_kind < 0; i++)
		{
			int			slot = e->kinds[i].limit_slot;

			if (slot >= 0 && sums[slot] > e->kinds[i].limit)
			{
				bad_kind = i;
				observed = sums[slot];
			}
		}
		if (bad_kind < 0 && e->rules->max_profile_size > 0 &&
			size > e->rules->max_profile_size)
		{
			reason = STITCH_MAX_PROFILE_SIZE;
			observed = size;
		}
		else if (bad_kind < 0)
		{
			for (i = 1; i < nroots; i++)
				uf_union(e->uf, roots[0], roots[i]);
			return;
		}
		demoted = buf[--m];
		droot = uf_find(e->uf, demoted);
		/* report it unless it is already in the profile it was refused */
		for (i = 0; i < m; i++)
			if (uf_find(e->uf, buf[i]) == droot)
				break;
		if (i == m)
			add_demotion(e, demoted, buf[0], r, reason, bad_kind, observed);
	}
}

/*
 * A profile's canonical member with the first bytes of its value, so that
 * sorting profiles compares integers and reads a value only on a tie.
 */
typedef struct RepKey
{
	uint64		prefix[2];		/* first 16 bytes, big-endian, zero-padded */
	uint32		node;
	uint16		kind;
} RepKey;

/*
 * node_cmp's order: zero padding cannot contradict it (a value that ends
 * first sorts first), and equal prefixes fall back to it.
 */
static inline int
rep_key_cmp(const RepKey *a, const RepKey *b, StitchEngine *e)
{
	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	if (a->prefix[0] != b->prefix[0])
		return a->prefix[0] < b->prefix[0] ? -1 : 1;
	if (a->prefix[1] != b->prefix[1])
		return a->prefix[1] < b->prefix[1] ? -1 : 1;
	return node_cmp(e, a->node, b->node);
}

#define ST_SORT sort_rep_keys
#define ST_ELEMENT_TYPE RepKey
#define ST_COMPARE(a, b, arg) rep_key_cmp(a, b, arg)
#define ST_COMPARE_ARG_TYPE StitchEngine
#define ST_SCOPE static
#define ST_DECLARE
#define ST_DEFINE
#include "lib/sort_template.h"

static inline RepKey
rep_key(const StitchEngine *e, uint32 node)
{
	const StitchNode *n = &e->nodes[node];
	uint64		v[2] = {0, 0};
	RepKey		k;

	memcpy(v, n->str, Min(n->len, sizeof(v)));
	k.prefix[0] = pg_ntoh64(v[0]);
	k.prefix[1] = pg_ntoh64(v[1]);
	k.node = node;
	k.kind = n->kind;
	return k;
}

void
stitch_finish(StitchEngine *e)
{
	MemoryContext old = MemoryContextSwitchTo(e->mcxt);
	CdpMapping *reps_map;
	RepKey	   *reps;
	uint64		nreps = 0;
	uint32		i;

	Assert(!e->finished);

	/* hubs: more distinct neighbours than their kind's max_degree */
	if (e->any_max_degree)
	{
		for (i = 0; i < e->nnodes; i++)
		{
			int			md = e->kinds[e->nodes[i].kind].max_degree;

			if (md > 0 && e->degree[i] > (uint32) md &&
				!(e->nodes[i].flags & NODE_EXCLUDED))
			{
				e->nodes[i].flags |= NODE_HUB;
				e->nhubs++;
			}
		}
		if (!e->ordered)
		{
			edge_iterator it;
			EdgeEntry  *ee;

			edge_start_iterate(e->edges, &it);
			while ((ee = edge_iterate(e->edges, &it)) != NULL)
			{
				uint32		a = (uint32) (ee->key >> 32);
				uint32		b = (uint32) ee->key;

				if (!((e->nodes[a].flags | e->nodes[b].flags) & NODE_HUB))
					uf_union(e->uf, a, b);
			}
		}
	}

	if (e->ordered && e->nrows > 0)
	{
		uint32	   *buf = palloc(sizeof(uint32) * PG_UINT16_MAX);
		uint32	   *roots = palloc(sizeof(uint32) * PG_UINT16_MAX);
		int64	   *sums = palloc(sizeof(int64) * Max(e->nlimits, 1));
		uint64		r;

		qsort_arg(e->rows, e->nrows, sizeof(StoredRow), row_cmp, e);
		for (r = 0; r < e->nrows; r++)
		{
			apply_row(e, &e->rows[r], buf, roots, sums);
			CHECK_FOR_INTERRUPTS();
		}
	}

	/* canonical member of each profile, then number profiles by it */
	e->profile = cdp_map(e->mcxt, sizeof(uint32) * Max(e->nnodes, 1), &e->mapped)->addr;
	memset(e->profile, 0xFF, sizeof(uint32) * (Size) e->nnodes);
	for (i = 0; i < e->nnodes; i++)
	{
		uint32		rt;

		if (e->nodes[i].flags & NODE_EXCLUDED)
		{
			e->nblocked++;
			continue;
		}
		e->nidentifiers++;
		e->value_bytes += e->nodes[i].len;
		e->max_len = Max(e->max_len, e->nodes[i].len);
		rt = uf_find(e->uf, i);
		if (e->profile[rt] == NO_NODE)
		{
			e->profile[rt] = i;
			nreps++;
		}
		else if (node_cmp(e, i, e->profile[rt]) < 0)
			e->profile[rt] = i;
	}
	reps_map = cdp_map(e->mcxt, sizeof(RepKey) * Max(nreps, 1), &e->mapped);
	reps = reps_map->addr;
	nreps = 0;
	for (i = 0; i < e->nnodes; i++)
		if (!(e->nodes[i].flags & NODE_EXCLUDED) && e->uf->parent[i] == i)
			reps[nreps++] = rep_key(e, e->profile[i]);
	sort_rep_keys(reps, nreps, e);
	for (i = 0; i < nreps; i++)
	{
		uint32		rt = uf_find(e->uf, reps[i].node);

		e->profile[rt] = i + 1;
		if (e->uf->size[rt] > e->largest)
			e->largest = e->uf->size[rt];
	}
	e->nprofiles = nreps;
	e->peak = MemoryContextMemAllocated(e->mcxt, true) + e->mapped.peak;
	cdp_unmap(reps_map);
	e->finished = true;
	MemoryContextSwitchTo(old);
}

void
stitch_foreach_identifier(StitchEngine *e, StitchIdentifierCallback callback,
						  void *arg)
{
	uint32		i;

	Assert(e->finished);
	for (i = 0; i < e->nnodes; i++)
	{
		const StitchNode *n = &e->nodes[i];

		if (n->flags & NODE_EXCLUDED)
			continue;
		callback(e->kinds[n->kind].name, n->str, n->len,
				 (int64) e->profile[uf_find(e->uf, i)], arg);
	}
}

void
stitch_foreach_refusal(StitchEngine *e, StitchRefusalCallback callback, void *arg)
{
	StitchRefusal r;
	uint32		i;
	uint64		d;

	Assert(e->finished);
	for (i = 0; i < e->nnodes; i++)
	{
		const StitchNode *n = &e->nodes[i];

		if (!(n->flags & (NODE_EXCLUDED | NODE_HUB)))
			continue;
		memset(&r, 0, sizeof(r));
		r.kind = e->kinds[n->kind].name;
		r.value = n->str;
		r.len = n->len;
		if (n->flags & NODE_SUPPRESSED)
			r.reason = STITCH_SUPPRESSED;
		else if (n->flags & NODE_BLOCKED)
		{
			BlockEntry *be = blocked_by(e, n);

			r.reason = STITCH_BLOCKED;
			if (be)
			{
				r.pattern = be->str;
				r.pattern_is_regex = be->is_regex;
			}
		}
		else
		{
			r.reason = STITCH_HUB;
			r.observed = e->degree[i];
			r.bound = e->kinds[n->kind].max_degree;
		}
		callback(&r, arg);
	}
	for (d = 0; d < e->ndemotions; d++)
	{
		const Demotion *dm = &e->demotions[d];
		const StitchNode *n = &e->nodes[dm->node];
		const StitchNode *o = &e->nodes[dm->other];

		memset(&r, 0, sizeof(r));
		r.reason = (StitchReason) dm->reason;
		r.kind = e->kinds[n->kind].name;
		r.value = n->str;
		r.len = n->len;
		r.linked_kind = e->kinds[o->kind].name;
		r.linked_value = o->str;
		r.linked_len = o->len;
		r.has_at = dm->has_at;
		r.at = dm->at;
		r.observed = dm->observed;
		if (r.reason == STITCH_LIMIT)
		{
			r.limit_kind = e->kinds[dm->limit_kind].name;
			r.bound = e->kinds[dm->limit_kind].limit;
		}
		else
			r.bound = e->rules->max_profile_size;
		callback(&r, arg);
	}
}

void
stitch_get_stats(StitchEngine *e, StitchStats *stats)
{
	Assert(e->finished);
	stats->rows_read = e->rows_read;
	stats->identifiers = e->nidentifiers;
	stats->blocked = e->nblocked;
	stats->hubs = e->nhubs;
	stats->refused_links = (int64) e->ndemotions;
	stats->profiles = e->nprofiles;
	stats->largest_profile = e->largest;
	stats->memory_bytes = (int64) e->peak;
}

void
stitch_destroy(StitchEngine *e)
{
	MemoryContextDelete(e->mcxt);
}

const char *
stitch_reason_name(StitchReason reason, const char *limit_kind, char *buf, Size buflen)
{
	switch (reason)
	{
		case STITCH_BLOCKED:
			return "blocked";
		case STITCH_SUPPRESSED:
			return "suppressed";
		case STITCH_HUB:
			return "hub";
		case STITCH_LIMIT:
			snprintf(buf, buflen, "limit:%s", limit_kind);
			return buf;
		case STITCH_MAX_PROFILE_SIZE:
			return "max_profile_size";
	}
	return "unknown";
}

/* ---------------------------------------------------------- SPI source */

/*
 * A row read from the query, its values copied: each row is held back
 * until the next one has been read, so that the hash buckets of its values,
 * asked for when it arrived, are in cache when it is added.
 */
typedef struct PendingRow
{
	int			n;
	int		   *kinds;
	const char **vals;
	int		   *lens;
	uint32	   *hashes;
	StringInfoData bytes;
	TimestampTz at;
	bool		at_null;
} PendingRow;

typedef struct StitchReceiver
{
	DestReceiver pub;
	StitchEngine *engine;
	int			natts;
	int			at_col;			/* -1: none */
	int			nids;
	int		   *cols;			/* identifier columns */
	int		   *kinds;
	bool	   *fast;			/* text/varchar: bytes as they are */
	FmgrInfo   *outfn;
	const char **vals;
	int		   *lens;
	int		   *rowkinds;
	MemoryContext tmpcxt;
	PendingRow	pend[2];
	int			cur;			/* the row being read goes into pend[cur] */
	bool		has_pending;	/* pend[1 - cur] waits to be added */
} StitchReceiver;

static void
add_pending(StitchReceiver *rc)
{
	PendingRow *q = &rc->pend[1 - rc->cur];

	if (!rc->has_pending)
		return;
	add_row(rc->engine, q->n, q->kinds, q->vals, q->lens, q->hashes,
			q->at, q->at_null);
	rc->has_pending = false;
}

static bool
stitch_receive(TupleTableSlot *slot, DestReceiver *self)
{
	StitchReceiver *rc = (StitchReceiver *) self;
	MemoryContext old = MemoryContextSwitchTo(rc->tmpcxt);
	TimestampTz at = 0;
	bool		at_null = true;
	int			n = 0;
	int			i;
	int			total = 0;
	PendingRow *p;

	slot_getallattrs(slot);
	if (rc->at_col >= 0 && !slot->tts_isnull[rc->at_col])
	{
		at = DatumGetTimestampTz(slot->tts_values[rc->at_col]);
		at_null = false;
	}
	for (i = 0; i < rc->nids; i++)
	{
		int			c = rc->cols[i];
		Datum		d;

		if (slot->tts_isnull[c])
			continue;
		d = slot->tts_values[c];
		if (rc->fast[i])
		{
			text	   *t = (text *) DatumGetPointer(d);

			if (VARATT_IS_EXTENDED(t))
				t = pg_detoast_datum_packed(t);
			rc->vals[n] = VARDATA_ANY(t);
			rc->lens[n] = VARSIZE_ANY_EXHDR(t);
		}
		else
		{
			char	   *s = OutputFunctionCall(&rc->outfn[i], d);

			rc->vals[n] = s;
			rc->lens[n] = strlen(s);
		}
		rc->rowkinds[n] = rc->kinds[i];
		n++;
	}

	/* copy this row and ask for its buckets, then add the row before it */
	p = &rc->pend[rc->cur];
	for (i = 0; i < n; i++)
		total += rc->lens[i];
	resetStringInfo(&p->bytes);
	enlargeStringInfo(&p->bytes, total);
	for (i = 0; i < n; i++)
	{
		char	   *copy = p->bytes.data + p->bytes.len;

		memcpy(copy, rc->vals[i], rc->lens[i]);
		p->bytes.len += rc->lens[i];
		p->vals[i] = copy;
		p->lens[i] = rc->lens[i];
		p->kinds[i] = rc->rowkinds[i];
		p->hashes[i] = ident_hash_value(p->kinds[i], copy, (uint32) p->lens[i]);
		ident_prefetch(rc->engine, p->hashes[i]);
	}
	p->n = n;
	p->at = at;
	p->at_null = at_null;
	MemoryContextSwitchTo(old);
	MemoryContextReset(rc->tmpcxt);
	add_pending(rc);
	rc->has_pending = true;
	rc->cur = 1 - rc->cur;
	return true;
}

static void
stitch_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	StitchReceiver *rc = (StitchReceiver *) self;

	if (typeinfo->natts != rc->natts)
		elog(ERROR, "stitching query changed its result type");
}

static void
stitch_shutdown(DestReceiver *self)
{
}

static void
stitch_dest_destroy(DestReceiver *self)
{
}

uint64
stitch_add_query(StitchEngine *e, const char *query)
{
	SPIPlanPtr	plan;
	List	   *sources;
	CachedPlanSource *ps;
	ListCell   *lc;
	TupleDesc	desc;
	StitchReceiver *rc;
	SPIExecuteOptions opts;
	MemoryContext old;
	int			i;
	int			ret;

	/* the rows are read to the end at once, so parallel workers may help */
	plan = SPI_prepare_cursor(query, 0, NULL, CURSOR_OPT_PARALLEL_OK);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	sources = SPI_plan_get_plan_sources(plan);
	if (list_length(sources) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stitching query must be a single SELECT statement"),
				 errdetail("The query holds %d statements.", list_length(sources))));
	ps = linitial(sources);
	if (ps->commandTag != CMDTAG_SELECT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stitching query must be a SELECT statement"),
				 errdetail("The statement is %s.", GetCommandTagName(ps->commandTag)),
				 errhint("Pass a query that returns one column per identifier kind.")));
	if (ps->resultDesc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stitching query must return rows"),
				 errdetail("SELECT INTO creates a table instead of returning rows."),
				 errhint("Pass a query that returns one column per identifier kind.")));
	foreach(lc, ps->query_list)
	{
		Query	   *q = lfirst_node(Query, lc);

		if (q->commandType != CMD_SELECT || q->utilityStmt != NULL || q->hasModifyingCTE)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stitching query must be a read-only SELECT statement"),
					 errdetail("The query creates a table or modifies data.")));
	}
	desc = ps->resultDesc;

	old = MemoryContextSwitchTo(e->mcxt);
	rc = palloc0(sizeof(StitchReceiver));
	rc->pub.receiveSlot = stitch_receive;
	rc->pub.rStartup = stitch_startup;
	rc->pub.rShutdown = stitch_shutdown;
	rc->pub.rDestroy = stitch_dest_destroy;
	rc->pub.mydest = DestNone;
	rc->engine = e;
	rc->natts = desc->natts;
	rc->at_col = -1;
	rc->cols = palloc(sizeof(int) * desc->natts);
	rc->kinds = palloc(sizeof(int) * desc->natts);
	rc->fast = palloc(sizeof(bool) * desc->natts);
	rc->outfn = palloc0(sizeof(FmgrInfo) * desc->natts);
	rc->vals = palloc(sizeof(char *) * desc->natts);
	rc->lens = palloc(sizeof(int) * desc->natts);
	rc->rowkinds = palloc(sizeof(int) * desc->natts);
	rc->tmpcxt = e->tmpcxt;
	for (i = 0; i < 2; i++)
	{
		rc->pend[i].kinds = palloc(sizeof(int) * desc->natts);
		rc->pend[i].vals = palloc(sizeof(char *) * desc->natts);
		rc->pend[i].lens = palloc(sizeof(int) * desc->natts);
		rc->pend[i].hashes = palloc(sizeof(uint32) * desc->natts);
		initStringInfo(&rc->pend[i].bytes);
	}
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *name = NameStr(att->attname);
		Oid			outfunc;
		bool		isvarlena;

		if (att->attisdropped)
			continue;
		if (strcmp(name, "at") == 0)
		{
			if (rc->at_col >= 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_COLUMN),
						 errmsg("stitching query has more than one column named \"at\"")));
			if (att->atttypid != TIMESTAMPTZOID)
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("column \"at\" of the stitching query is of type %s, not timestamp with time zone",
								format_type_be(att->atttypid)),
						 errdetail("The column \"at\" orders the rows and is not an identifier."),
						 errhint("Cast it, for example updated_at::timestamptz AS at.")));
			rc->at_col = i;
			continue;
		}
		if (strcmp(name, "?column?") == 0 || name[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column %d of the stitching query has no name", i + 1),
					 errdetail("Column names are the identifier kinds."),
					 errhint("Name every column, for example lower(email) AS email.")));
		getTypeOutputInfo(att->atttypid, &outfunc, &isvarlena);
		rc->cols[rc->nids] = i;
		rc->kinds[rc->nids] = stitch_kind(e, name);
		rc->fast[rc->nids] = (outfunc == F_TEXTOUT || outfunc == F_VARCHAROUT);
		if (!rc->fast[rc->nids])
			fmgr_info_cxt(outfunc, &rc->outfn[rc->nids], e->mcxt);
		rc->nids++;
	}
	MemoryContextSwitchTo(old);
	if (rc->nids == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stitching query returns no identifier column"),
				 errhint("Return one column per identifier kind, named by the kind, for example SELECT user_id, email FROM crm_contacts.")));

	memset(&opts, 0, sizeof(opts));
	opts.dest = (DestReceiver *) rc;
	opts.read_only = false;
	ret = SPI_execute_plan_extended(plan, &opts);
	if (ret < 0)
		elog(ERROR, "SPI_execute_plan_extended failed: %s", SPI_result_code_string(ret));
	add_pending(rc);
	SPI_freeplan(plan);
	return (uint64) e->rows_read;
}

/* -------------------------------------------------------- SQL functions */

static StitchEngine *
run_stitch(FunctionCallInfo fcinfo)
{
	StitchRules *rules;
	StitchEngine *e;
	char	   *query;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stitching query must not be null")));
	rules = stitch_rules_parse(PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1));
	query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	e = stitch_create(rules);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	stitch_add_query(e, query);
	SPI_finish();
	stitch_finish(e);
	return e;
}

typedef struct OutputState
{
	ReturnSetInfo *rsinfo;
	MemoryContext tmpcxt;
} OutputState;

/*
 * Bytes a tuplestore row of (kind, value, profile_id) takes at least: the
 * minimal tuple's header and int8, two short varlena headers, the memory
 * chunk's header and the pointer to it.
 */
#define OUTPUT_ROW_OVERHEAD 48

/*
 * Write every surviving identifier into a tuplestore.
 *
 * When the rows cannot fit in work_mem anyway, the tuplestore writes them
 * to its file from the first row on: it would otherwise fill work_mem with
 * tuples first, only to write them all out when it runs full, and filling
 * that much fresh memory costs more than the file.  Values are copied into
 * one reused text buffer, and each kind's text is made once.
 */
static void
emit_identifiers(StitchEngine *e, FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Tuplestorestate *store;
	TupleDesc	desc;
	uint64		row_bytes;
	Datum	   *kind_text;
	text	   *value;
	uint32		i;

	InitMaterializedSRF(fcinfo, 0);
	row_bytes = e->value_bytes + (uint64) e->nidentifiers * OUTPUT_ROW_OVERHEAD;
	if (row_bytes > (uint64) work_mem * 1024)
	{
		/* the same tuplestore, with no memory budget */
		MemoryContext old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);

		tuplestore_end(rsinfo->setResult);
		rsinfo->setResult =
			tuplestore_begin_heap((rsinfo->allowedModes & SFRM_Materialize_Random) != 0,
								  false, 0);
		MemoryContextSwitchTo(old);
	}
	store = rsinfo->setResult;
	desc = rsinfo->setDesc;

	kind_text = palloc0(sizeof(Datum) * Max(e->nkinds, 1));
	value = palloc(VARHDRSZ + e->max_len);
	for (i = 0; i < e->nnodes; i++)
	{
		const StitchNode *n = &e->nodes[i];
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		if (n->flags & NODE_EXCLUDED)
			continue;
		if (kind_text[n->kind] == (Datum) 0)
			kind_text[n->kind] = PointerGetDatum(cstring_to_text(e->kinds[n->kind].name));
		SET_VARSIZE(value, VARHDRSZ + n->len);
		memcpy(VARDATA(value), n->str, n->len);
		values[0] = kind_text[n->kind];
		values[1] = PointerGetDatum(value);
		values[2] = Int64GetDatum((int64) e->profile[uf_find(e->uf, i)]);
		tuplestore_putvalues(store, desc, values, nulls);
	}
	pfree(value);
}

/* cdp.stitch(query text, rules jsonb): (kind, value, profile_id) */
PG_FUNCTION_INFO_V1(cdp_stitch);
Datum
cdp_stitch(PG_FUNCTION_ARGS)
{
	StitchEngine *e = run_stitch(fcinfo);

	emit_identifiers(e, fcinfo);
	stitch_destroy(e);
	return (Datum) 0;
}

static void
emit_refusal(const StitchRefusal *r, void *arg)
{
	OutputState *os = arg;
	Datum		values[7];
	bool		nulls[7] = {false, false, false, true, true, true, false};
	char		buf[NAMEDATALEN + 16];
	char	   *reason;
	char	   *detail = NULL;
	MemoryContext old = MemoryContextSwitchTo(os->tmpcxt);

	reason = psprintf("%s", stitch_reason_name(r->reason, r->limit_kind, buf, sizeof(buf)));
	switch (r->reason)
	{
		case STITCH_BLOCKED:
			detail = r->pattern_is_regex
				? psprintf("matches blocked pattern \"%s\"", r->pattern)
				: psprintf("matches blocked value \"%s\"", r->pattern ? r->pattern : "");
			break;
		case STITCH_SUPPRESSED:
			detail = pstrdup("suppressed");
			break;
		case STITCH_HUB:
			detail = psprintf("linked with " INT64_FORMAT " distinct identifiers (max_degree " INT64_FORMAT ")",
							  r->observed, r->bound);
			break;
		case STITCH_LIMIT:
			detail = psprintf("the profile would hold " INT64_FORMAT " %s values (limit " INT64_FORMAT ")",
							  r->observed, r->limit_kind, r->bound);
			break;
		case STITCH_MAX_PROFILE_SIZE:
			detail = psprintf("the profile would hold " INT64_FORMAT " identifiers (max_profile_size " INT64_FORMAT ")",
							  r->observed, r->bound);
			break;
	}
	values[0] = PointerGetDatum(cstring_to_text(reason));
	values[1] = PointerGetDatum(cstring_to_text(r->kind));
	values[2] = PointerGetDatum(cstring_to_text_with_len(r->value, r->len));
	if (r->linked_kind)
	{
		values[3] = PointerGetDatum(cstring_to_text(r->linked_kind));
		values[4] = PointerGetDatum(cstring_to_text_with_len(r->linked_value, r->linked_len));
		nulls[3] = nulls[4] = false;
	}
	if (r->has_at)
	{
		values[5] = TimestampTzGetDatum(r->at);
		nulls[5] = false;
	}
	values[6] = PointerGetDatum(cstring_to_text(detail));
	tuplestore_putvalues(os->rsinfo->setResult, os->rsinfo->setDesc, values, nulls);
	MemoryContextSwitchTo(old);
	MemoryContextReset(os->tmpcxt);
}

/* cdp.stitch_report(query text, rules jsonb): what the rules refused */
PG_FUNCTION_INFO_V1(cdp_stitch_report);
Datum
cdp_stitch_report(PG_FUNCTION_ARGS)
{
	StitchEngine *e = run_stitch(fcinfo);
	OutputState os;

	InitMaterializedSRF(fcinfo, 0);
	os.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	os.tmpcxt = AllocSetContextCreate(CurrentMemoryContext, "cdp stitch output",
									  ALLOCSET_SMALL_SIZES);
	stitch_foreach_refusal(e, emit_refusal, &os);
	MemoryContextDelete(os.tmpcxt);
	stitch_destroy(e);
	return (Datum) 0;
}

/* cdp.stitch_stats(query text, rules jsonb): one row of counts */
PG_FUNCTION_INFO_V1(cdp_stitch_stats);
Datum
cdp_stitch_stats(PG_FUNCTION_ARGS)
{
	StitchEngine *e = run_stitch(fcinfo);
	StitchStats st;
	TupleDesc	desc;
	Datum		values[8];
	bool		nulls[8] = {0};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	stitch_get_stats(e, &st);
	stitch_destroy(e);
	values[0] = Int64GetDatum(st.rows_read);
	values[1] = Int64GetDatum(st.identifiers);
	values[2] = Int64GetDatum(st.profiles);
	values[3] = Int64GetDatum(st.largest_profile);
	values[4] = Int64GetDatum(st.blocked);
	values[5] = Int64GetDatum(st.hubs);
	values[6] = Int64GetDatum(st.refused_links);
	values[7] = Int64GetDatum(st.memory_bytes);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* cdp.stitch_rules(rules jsonb): the effective rules, defaults expanded */
PG_FUNCTION_INFO_V1(cdp_stitch_rules);
Datum
cdp_stitch_rules(PG_FUNCTION_ARGS)
{
	StitchRules *rules = stitch_rules_parse(PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0));

	PG_RETURN_JSONB_P(stitch_rules_jsonb(rules));
}
