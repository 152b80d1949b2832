/*-------------------------------------------------------------------------
 *
 * identity_graph.c
 *	  Recomputing profiles of the managed identity graph with stable ids:
 *	  cdp.identity_recompute().
 *
 * The stored graph is cdp.identifiers (nodes, with their current profile)
 * and cdp.identity_links (pairs seen in one source row).  A refresh only
 * re-stitches the profiles its new links reach:
 *
 *	1. Load the touched identifiers, every identifier of their profiles, all
 *	   links touching them and, as "external" nodes, the far ends of links
 *	   that leave the set (refused links: hubs, limits; a hub's full degree
 *	   is therefore known).
 *	2. Run the stitching engine (stitch.c) over them with the stored rules:
 *	   one row per link, ordered by the link's first_seen, so limits demote
 *	   as they would in a full run.  Overrides: "apart" pairs become a
 *	   synthetic kind with limit 1 attached to both ends before any link,
 *	   so no link can join them; "together" pairs merge the engine's
 *	   components afterwards, so they win over every rule.
 *	3. If an external node ended up in a component with loaded nodes, the
 *	   partial view was not enough (a link refused before is accepted now):
 *	   its profile joins the set, only it and its links are loaded, and the
 *	   engine runs again.
 *	4. Map components onto stable ids: each old profile claims the component
 *	   holding most of its identifiers; a component takes the smallest id
 *	   that claims it (the others are recorded as merged into it); parts
 *	   nobody claims get new ids (recorded as splits of the profiles they
 *	   came from).
 *
 * With NULL arrays everything is loaded at once: a full rebuild.
 *
 * A refresh (staged = true) first folds the rows its sources returned into
 * the graph (see "the stage" below); new identifiers take part in the
 * recomputation from memory and are written once, with their profile id.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "portability/instr_time.h"
#include "storage/bufmgr.h"
#include "storage/itemptr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "normalize.h"
#include "stitch.h"

#define FETCH_BATCH 50000
#define APART_PREFIX "cdp.apart."
#define MAX_ROUNDS 1000

/* -------------------------------------------------------- int64 hash map */

typedef struct I64Entry
{
	int64		key;
	int32		val;
	char		status;
} I64Entry;

#define SH_PREFIX i64map
#define SH_ELEMENT_TYPE I64Entry
#define SH_KEY_TYPE int64
#define SH_KEY key
/* both halves mixed: stage link keys are (node << 32 | node) pairs */
#define SH_HASH_KEY(tb, key) hash_combine(murmurhash32((uint32) (key)), \
										  murmurhash32((uint32) ((uint64) (key) >> 32)))
#define SH_EQUAL(tb, a, b) ((a) == (b))
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/*
 * DEBUG1 lines with the time each phase of a recomputation took, for
 * finding where a slow refresh spends it (SET client_min_messages = debug1).
 */
static instr_time phase_start;

static void
phase_done(const char *what)
{
	instr_time	now;

	if (!message_level_is_interesting(DEBUG1))
		return;
	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, phase_start);
	elog(DEBUG1, "cdp identity: %s: %.1f ms", what, INSTR_TIME_GET_MILLISEC(now));
	INSTR_TIME_SET_CURRENT(phase_start);
}

/* ---------------------------------------------------------------- nodes */

typedef struct GNode
{
	int64		id;
	int64		old_profile;	/* 0: none */
	const char *value;
	int			len;
	int			kind;			/* index into Graph.kinds */
	uint32		hash;
	int32		comp;			/* component after the run; 0: refused */
	int32		pending;		/* new identifier: its Stage node; else -1 */
	int32		since;			/* round it became internal; -1: external */
	bool		internal;		/* recomputed (else: far end of a link) */
} GNode;

typedef struct GLink
{
	uint32		a;
	uint32		b;
	TimestampTz first_seen;
} GLink;

typedef struct GOverride
{
	bool		together;
	int64		a;
	int64		b;
} GOverride;

typedef struct GRefusal
{
	uint32		node;
	const char *reason;
	char	   *linked_kind;
	char	   *linked_value;
	bool		has_at;
	TimestampTz at;
	char	   *detail;
} GRefusal;

typedef struct Graph
{
	MemoryContext mcxt;			/* one round's data */
	int			nkinds;
	char	  **kinds;			/* by priority */
	int		   *engine_kind;	/* per kind, in the current engine */
	GNode	   *nodes;
	uint32		nnodes;
	uint32		cap;
	GLink	   *links;
	uint64		nlinks;
	uint64		linkcap;
	i64map_hash *byid;
	struct kv_hash *byvalue;
	GRefusal   *refusals;
	int			nrefusals;
	int			refcap;
	int			lastkind;		/* lookup cache */
	const char *lastkindname;
	int			round;			/* widening round being loaded */
} Graph;

typedef struct KvEntry
{
	uint32		node;
	char		status;
} KvEntry;

static inline uint32 kv_hash_of(Graph *g, uint32 node);
static inline bool kv_equal(Graph *g, uint32 a, uint32 b);

#define SH_PREFIX kv
#define SH_ELEMENT_TYPE KvEntry
#define SH_KEY_TYPE uint32
#define SH_KEY node
#define SH_HASH_KEY(tb, key) kv_hash_of((Graph *) (tb)->private_data, key)
#define SH_EQUAL(tb, a, b) kv_equal((Graph *) (tb)->private_data, a, b)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

static inline uint32
kv_hash_of(Graph *g, uint32 node)
{
	return g->nodes[node].hash;
}

static inline bool
kv_equal(Graph *g, uint32 a, uint32 b)
{
	const GNode *x = &g->nodes[a];
	const GNode *y = &g->nodes[b];

	return x->kind == y->kind && x->len == y->len &&
		memcmp(x->value, y->value, x->len) == 0;
}

static int	kind_index(Graph *g, const char *name, bool missing_ok);

/* For the engine's kind names, whose pointers stay put while it lives. */
static int
engine_kind_index(Graph *g, const char *name)
{
	if (g->lastkindname != name)
	{
		g->lastkind = kind_index(g, name, true);
		g->lastkindname = name;
	}
	return g->lastkind;
}

static int
kind_index(Graph *g, const char *name, bool missing_ok)
{
	int			i;

	for (i = 0; i < g->nkinds; i++)
		if (strcmp(g->kinds[i], name) == 0)
			return i;
	if (missing_ok)
		return -1;
	/* a kind that lost its cdp.identity_kinds row: lowest priority */
	g->kinds = repalloc(g->kinds, sizeof(char *) * (g->nkinds + 1));
	g->kinds[g->nkinds] = MemoryContextStrdup(GetMemoryChunkContext(g->kinds), name);
	return g->nkinds++;
}

/* Add a node; returns its index, or the existing one. */
static uint32
add_node(Graph *g, int64 id, const char *kind, const char *value, int len,
		 int64 profile, bool internal)
{
	bool		found;
	I64Entry   *e;
	GNode	   *n;

	e = i64map_insert(g->byid, id, &found);
	if (found)
	{
		n = &g->nodes[e->val];
		if (internal && !n->internal)
		{
			n->internal = true;
			n->since = g->round;
		}
		return (uint32) e->val;
	}
	if (g->nnodes == g->cap)
	{
		g->cap *= 2;
		g->nodes = repalloc_huge(g->nodes, sizeof(GNode) * (Size) g->cap);
	}
	e->val = (int32) g->nnodes;
	n = &g->nodes[g->nnodes];
	n->id = id;
	n->old_profile = profile;
	n->value = value;
	n->len = len;
	n->kind = kind_index(g, kind, false);
	n->hash = (uint32) hash_bytes_extended((const unsigned char *) value, len, n->kind);
	n->comp = 0;
	n->pending = -1;
	n->since = internal ? g->round : -1;
	n->internal = internal;
	(void) kv_insert(g->byvalue, g->nnodes, &found);
	Assert(!found);
	return g->nnodes++;
}

/* Node of (kind, value), or -1.  The slot after the last node is the probe. */
static int64
find_node(Graph *g, int kind, const char *value, int len)
{
	GNode	   *probe;
	KvEntry    *e;

	if (g->nnodes == g->cap)
	{
		g->cap *= 2;
		g->nodes = repalloc_huge(g->nodes, sizeof(GNode) * (Size) g->cap);
	}
	probe = &g->nodes[g->nnodes];
	probe->kind = kind;
	probe->value = value;
	probe->len = len;
	probe->hash = (uint32) hash_bytes_extended((const unsigned char *) value, len, kind);
	e = kv_lookup(g->byvalue, g->nnodes);
	return e ? (int64) e->node : -1;
}

static Datum
int8_array(const int64 *vals, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		d[i] = Int64GetDatum(vals[i]);
	return PointerGetDatum(construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

static Datum
text_array(char **vals, bool *nulls, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			i;

	for (i = 0; i < n; i++)
		d[i] = nulls && nulls[i] ? (Datum) 0 : CStringGetTextDatum(vals[i]);
	return PointerGetDatum(construct_md_array(d, nulls, 1, dims, lbs, TEXTOID, -1,
											  false, TYPALIGN_INT));
}

static int64 *
set_to_array(i64map_hash *set, int *n)
{
	i64map_iterator it;
	I64Entry   *e;
	int64	   *out = palloc(sizeof(int64) * Max(set->members, 1));
	int			k = 0;

	i64map_start_iterate(set, &it);
	while ((e = i64map_iterate(set, &it)) != NULL)
		out[k++] = e->key;
	*n = k;
	return out;
}

/* Run a query through a cursor, calling fn on every row. */
typedef void (*RowFn) (Graph *g, HeapTuple tup, TupleDesc desc, void *arg);

static void
for_each_row(Graph *g, const char *sql, int nargs, Oid *argtypes, Datum *values,
			 RowFn fn, void *arg)
{
	Portal		portal;

	/* not read-only: a refresh reads rows it wrote earlier in this call */
	portal = SPI_cursor_open_with_args(NULL, sql, nargs, argtypes, values, NULL, false, 0);
	for (;;)
	{
		uint64		i;

		SPI_cursor_fetch(portal, true, FETCH_BATCH);
		if (SPI_processed == 0)
			break;
		for (i = 0; i < SPI_processed; i++)
			fn(g, SPI_tuptable->vals[i], SPI_tuptable->tupdesc, arg);
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
}

static void
node_row(Graph *g, HeapTuple tup, TupleDesc desc, void *arg)
{
	bool		internal = *(bool *) arg;
	bool		isnull;
	int64		id = DatumGetInt64(heap_getattr(tup, 1, desc, &isnull));
	text	   *kind = DatumGetTextPP(heap_getattr(tup, 2, desc, &isnull));
	text	   *value = DatumGetTextPP(heap_getattr(tup, 3, desc, &isnull));
	Datum		p = heap_getattr(tup, 4, desc, &isnull);
	MemoryContext old = MemoryContextSwitchTo(g->mcxt);
	char	   *k = text_to_cstring(kind);
	int			len = VARSIZE_ANY_EXHDR(value);
	char	   *v = palloc(len + 1);

	memcpy(v, VARDATA_ANY(value), len);
	v[len] = '\0';
	(void) add_node(g, id, k, v, len, isnull ? 0 : DatumGetInt64(p), internal);
	pfree(k);
	MemoryContextSwitchTo(old);
}

typedef struct LinkArg
{
	i64map_hash *missing;		/* far ends not loaded yet */
	bool		collect;		/* buffer rows until the far ends are in */
	bool		sided;			/* rows say which end was looked up */
	int64	   *a;
	int64	   *b;
	TimestampTz *at;
	uint64		n;
	uint64		cap;
} LinkArg;

static void
add_link(Graph *g, int64 a, int64 b, TimestampTz at)
{
	I64Entry   *ea = i64map_lookup(g->byid, a);
	I64Entry   *eb = i64map_lookup(g->byid, b);
	GLink	   *l;

	if (ea == NULL || eb == NULL)
		elog(ERROR, "identity link (" INT64_FORMAT ", " INT64_FORMAT ") has a missing end", a, b);
	/* widening: links of nodes recomputed in an earlier round are in */
	if (g->round > 0)
	{
		GNode	   *x = &g->nodes[ea->val];
		GNode	   *y = &g->nodes[eb->val];

		if ((x->internal && x->since < g->round) || (y->internal && y->since < g->round))
			return;
	}
	if (g->nlinks == g->linkcap)
	{
		g->linkcap *= 2;
		g->links = repalloc_huge(g->links, sizeof(GLink) * (Size) g->linkcap);
	}
	l = &g->links[g->nlinks++];
	l->a = (uint32) ea->val;
	l->b = (uint32) eb->val;
	l->first_seen = at;
}

static void collect_link(Graph *g, LinkArg *la, int64 a, int64 b, TimestampTz at);

static void
link_row(Graph *g, HeapTuple tup, TupleDesc desc, void *arg)
{
	LinkArg    *la = arg;
	bool		isnull;
	int64		a = DatumGetInt64(heap_getattr(tup, 1, desc, &isnull));
	int64		b = DatumGetInt64(heap_getattr(tup, 2, desc, &isnull));
	TimestampTz at = DatumGetTimestampTz(heap_getattr(tup, 3, desc, &isnull));

	/* found from its b end: drop it if its a end was looked up as well */
	if (la->sided && DatumGetInt32(heap_getattr(tup, 4, desc, &isnull)) == 2)
	{
		I64Entry   *e = i64map_lookup(g->byid, a);

		if (e && g->nodes[e->val].internal && g->nodes[e->val].since == g->round &&
			g->nodes[e->val].pending < 0)
			return;
	}
	collect_link(g, la, a, b, at);
}

/* Take a link in, or keep it until its far end is loaded. */
static void
collect_link(Graph *g, LinkArg *la, int64 a, int64 b, TimestampTz at)
{
	if (la->collect)
	{
		bool		found;

		if (i64map_lookup(g->byid, a) == NULL)
			(void) i64map_insert(la->missing, a, &found);
		if (i64map_lookup(g->byid, b) == NULL)
			(void) i64map_insert(la->missing, b, &found);
		if (la->n == la->cap)
		{
			la->cap = Max(la->cap * 2, 1024);
			la->a = la->a ? repalloc_huge(la->a, sizeof(int64) * la->cap)
				: MemoryContextAllocHuge(g->mcxt, sizeof(int64) * la->cap);
			la->b = la->b ? repalloc_huge(la->b, sizeof(int64) * la->cap)
				: MemoryContextAllocHuge(g->mcxt, sizeof(int64) * la->cap);
			la->at = la->at ? repalloc_huge(la->at, sizeof(TimestampTz) * la->cap)
				: MemoryContextAllocHuge(g->mcxt, sizeof(TimestampTz) * la->cap);
		}
		la->a[la->n] = a;
		la->b[la->n] = b;
		la->at[la->n] = at;
		la->n++;
		return;
	}
	add_link(g, a, b, at);
}

/* ------------------------------------------------------ engine callbacks */

static bool
suppress_filter(const char *kind, const char *value, int len, void *arg)
{
	HTAB	   *h = arg;
	char		key[NAMEDATALEN + 66];
	char		hex[65];

	cdp_sha256_hex(value, len, hex);
	snprintf(key, sizeof(key), "%s:%s", kind, hex);
	return hash_search(h, key, HASH_FIND, NULL) != NULL;
}

static void
identifier_cb(const char *kind, const char *value, int len, int64 profile_id, void *arg)
{
	Graph	   *g = arg;
	int			k;
	int64		node;

	if (strncmp(kind, APART_PREFIX, strlen(APART_PREFIX)) == 0)
		return;
	k = engine_kind_index(g, kind);
	node = k < 0 ? -1 : find_node(g, k, value, len);
	if (node < 0)
		elog(ERROR, "stitching returned an identifier that was not loaded");
	g->nodes[node].comp = (int32) profile_id;
}

static void
refusal_cb(const StitchRefusal *r, void *arg)
{
	Graph	   *g = arg;
	GRefusal   *out;
	int64		node;
	int			k;
	char		buf[NAMEDATALEN + 16];
	const char *reason;

	if (strncmp(r->kind, APART_PREFIX, strlen(APART_PREFIX)) == 0)
		return;
	k = engine_kind_index(g, r->kind);
	node = k < 0 ? -1 : find_node(g, k, r->value, r->len);
	if (node < 0 || !g->nodes[node].internal)
		return;
	if (g->nrefusals == g->refcap)
	{
		g->refcap = Max(g->refcap * 2, 64);
		g->refusals = g->refusals ? repalloc(g->refusals, sizeof(GRefusal) * g->refcap)
			: MemoryContextAlloc(g->mcxt, sizeof(GRefusal) * g->refcap);
	}
	out = &g->refusals[g->nrefusals++];
	memset(out, 0, sizeof(GRefusal));
	out->node = (uint32) node;
	if (r->reason == STITCH_LIMIT && strncmp(r->limit_kind, APART_PREFIX, strlen(APART_PREFIX)) == 0)
		reason = "override:apart";
	else
		reason = stitch_reason_name(r->reason, r->limit_kind, buf, sizeof(buf));
	out->reason = MemoryContextStrdup(g->mcxt, reason);
	if (r->linked_kind)
	{
		out->linked_kind = MemoryContextStrdup(g->mcxt, r->linked_kind);
		out->linked_value = MemoryContextAlloc(g->mcxt, r->linked_len + 1);
		memcpy(out->linked_value, r->linked_value, r->linked_len);
		out->linked_value[r->linked_len] = '\0';
	}
	out->has_at = r->has_at;
	out->at = r->at;
	switch (r->reason)
	{
		case STITCH_BLOCKED:
			if (r->pattern)
				out->detail = MemoryContextStrdup(g->mcxt,
												  psprintf(r->pattern_is_regex ? "matches regex %s" : "blocked value \"%s\"",
														   r->pattern));
			break;
		case STITCH_SUPPRESSED:
			out->detail = MemoryContextStrdup(g->mcxt, "erased by cdp.forget()");
			break;
		case STITCH_HUB:
			out->detail = MemoryContextStrdup(g->mcxt,
											  psprintf(INT64_FORMAT " distinct neighbours, max_degree " INT64_FORMAT,
													   r->observed, r->bound));
			break;
		case STITCH_LIMIT:
			if (strcmp(reason, "override:apart") == 0)
				out->detail = MemoryContextStrdup(g->mcxt, "kept apart by cdp.force_apart()");
			else
				out->detail = MemoryContextStrdup(g->mcxt,
												  psprintf("would make " INT64_FORMAT " values of %s, limit " INT64_FORMAT,
														   r->observed, r->limit_kind, r->bound));
			break;
		case STITCH_MAX_PROFILE_SIZE:
			out->detail = MemoryContextStrdup(g->mcxt,
											  psprintf("would make " INT64_FORMAT " identifiers, max_profile_size " INT64_FORMAT,
													   r->observed, r->bound));
			break;
	}
}

/* ------------------------------------------------------------- mapping */

typedef struct Pair
{
	int64		profile;
	int32		comp;
	int32		count;
} Pair;

static int
pair_cmp(const void *a, const void *b)
{
	const Pair *x = a;
	const Pair *y = b;

	if (x->profile != y->profile)
		return x->profile < y->profile ? -1 : 1;
	return x->comp < y->comp ? -1 : (x->comp > y->comp ? 1 : 0);
}

typedef struct Event
{
	const char *event;
	int64		old_id;
	int64		new_id;			/* 0: none */
	int64		link_a;
	int64		link_b;
	TimestampTz link_at;
} Event;

static int32
comp_find(int32 *parent, int32 x)
{
	while (parent[x] != x)
	{
		parent[x] = parent[parent[x]];
		x = parent[x];
	}
	return x;
}

/* ------------------------------------------------------------ the stage */

/*
 * A refresh leaves its sources' rows in pg_temp.cdp_stage (identifier
 * pairs).  They are folded here into distinct identifiers and links and
 * looked up in the graph with one indexed join per batch.  Known rows only
 * get first_seen/last_seen moved (when they move); new links are inserted
 * before the recomputation, new identifiers after it, with their profile id
 * (so no new row is written twice).  Time-to-live is applied in between, as
 * it needs the moved last_seen.
 */
#define WRITE_BATCH 100000

typedef struct StageLink
{
	uint32		a;				/* Stage nodes */
	uint32		b;
	TimestampTz first_seen;
	TimestampTz last_seen;
	const char *source;
	bool		existed;
	bool		inserted;		/* new, written before the recomputation */
} StageLink;

typedef struct Stage
{
	Graph	   *g;				/* distinct identifiers; id 0 until known */
	TimestampTz *first_seen;	/* per node */
	TimestampTz *last_seen;
	bool	   *existed;
	bool	   *dead;			/* new, and already past its kind's ttl */
	uint32		fcap;
	StageLink  *links;
	uint32		nlinks;
	uint32		linkcap;
	i64map_hash *bypair;
	char	  **sources;
	int			nsources;
	MemoryContext tmp;			/* one batch */
	int64		identifiers_added;
	int64		links_added;
	int64		identifiers_expired;
	int64		links_expired;
} Stage;

static Graph *
graph_create(MemoryContext parent, char **kinds, int nkinds)
{
	Graph	   *g = MemoryContextAllocZero(parent, sizeof(Graph));
	MemoryContext old;

	g->mcxt = AllocSetContextCreate(parent, "cdp identity graph", ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(g->mcxt);
	g->kinds = palloc(sizeof(char *) * (nkinds + 1));
	memcpy(g->kinds, kinds, sizeof(char *) * nkinds);
	g->nkinds = nkinds;
	g->lastkind = -1;
	g->cap = 1024;
	g->nodes = MemoryContextAllocHuge(g->mcxt, sizeof(GNode) * (Size) g->cap);
	g->linkcap = 1024;
	g->links = MemoryContextAllocHuge(g->mcxt, sizeof(GLink) * (Size) g->linkcap);
	g->byid = i64map_create(g->mcxt, 1024, NULL);
	g->byvalue = kv_create(g->mcxt, 1024, g);
	MemoryContextSwitchTo(old);
	return g;
}

static Datum
ts_array(const TimestampTz *vals, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		d[i] = TimestampTzGetDatum(vals[i]);
	return PointerGetDatum(construct_array(d, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
}

/* Kind index of a kind given as text, without allocating when known. */
static int
stage_kind(Graph *g, text *kind)
{
	const char *p = VARDATA_ANY(kind);
	int			len = VARSIZE_ANY_EXHDR(kind);
	int			i;

	for (i = 0; i < g->nkinds; i++)
		if (strncmp(g->kinds[i], p, len) == 0 && g->kinds[i][len] == '\0')
			return i;
	return kind_index(g, MemoryContextStrdup(g->mcxt, text_to_cstring(kind)), false);
}

static uint32
stage_node(Stage *st, text *kind, text *value, TimestampTz at)
{
	Graph	   *g = st->g;
	int			k = stage_kind(g, kind);
	int			len = VARSIZE_ANY_EXHDR(value);
	int64		node = find_node(g, k, VARDATA_ANY(value), len);

	if (node < 0)
	{
		GNode	   *n = &g->nodes[g->nnodes];	/* the probe find_node filled */
		char	   *v = MemoryContextAlloc(g->mcxt, len + 1);
		bool		found;

		memcpy(v, VARDATA_ANY(value), len);
		v[len] = '\0';
		n->value = v;
		n->id = 0;
		n->old_profile = 0;
		n->comp = 0;
		n->pending = -1;
		n->internal = false;
		if (g->nnodes == st->fcap)
		{
			st->fcap *= 2;
			st->first_seen = repalloc_huge(st->first_seen, sizeof(TimestampTz) * st->fcap);
			st->last_seen = repalloc_huge(st->last_seen, sizeof(TimestampTz) * st->fcap);
		}
		st->first_seen[g->nnodes] = at;
		st->last_seen[g->nnodes] = at;
		(void) kv_insert(g->byvalue, g->nnodes, &found);
		return g->nnodes++;
	}
	if (at < st->first_seen[node])
		st->first_seen[node] = at;
	if (at > st->last_seen[node])
		st->last_seen[node] = at;
	return (uint32) node;
}

/* A cdp_stage row: source, kind1, value1, kind2, value2, at (not null) */
static void
stage_row(Graph *g, HeapTuple tup, TupleDesc desc, void *arg)
{
	Stage	   *st = arg;
	bool		isnull;
	text	   *src = DatumGetTextPP(heap_getattr(tup, 1, desc, &isnull));
	TimestampTz at = DatumGetTimestampTz(heap_getattr(tup, 6, desc, &isnull));
	bool		k2null;
	Datum		k2 = heap_getattr(tup, 4, desc, &k2null);
	uint32		n1,
				n2;
	const char *source = NULL;
	int			i;

	n1 = stage_node(st, DatumGetTextPP(heap_getattr(tup, 2, desc, &isnull)),
					DatumGetTextPP(heap_getattr(tup, 3, desc, &isnull)), at);
	if (k2null)
		return;
	n2 = stage_node(st, DatumGetTextPP(k2),
					DatumGetTextPP(heap_getattr(tup, 5, desc, &isnull)), at);
	if (n1 == n2)
		return;
	for (i = 0; i < st->nsources; i++)
		if (strncmp(st->sources[i], VARDATA_ANY(src), VARSIZE_ANY_EXHDR(src)) == 0 &&
			st->sources[i][VARSIZE_ANY_EXHDR(src)] == '\0')
			source = st->sources[i];
	if (source == NULL)
	{
		st->sources = repalloc(st->sources, sizeof(char *) * (st->nsources + 1));
		source = st->sources[st->nsources++] =
			MemoryContextStrdup(g->mcxt, text_to_cstring(src));
	}
	{
		uint32		lo = Min(n1, n2);
		uint32		hi = Max(n1, n2);
		bool		found;
		I64Entry   *e = i64map_insert(st->bypair, (int64) (((uint64) lo << 32) | hi), &found);
		StageLink  *l;

		if (!found)
		{
			if (st->nlinks == st->linkcap)
			{
				st->linkcap *= 2;
				st->links = repalloc_huge(st->links, sizeof(StageLink) * st->linkcap);
			}
			e->val = (int32) st->nlinks;
			l = &st->links[st->nlinks++];
			memset(l, 0, sizeof(StageLink));
			l->a = lo;
			l->b = hi;
			l->first_seen = at;
			l->last_seen = at;
			l->source = source;
			return;
		}
		l = &st->links[e->val];
		if (at < l->first_seen)
			l->first_seen = at;
		if (at > l->last_seen)
			l->last_seen = at;
		/* the smallest source name, as min(source) would give */
		if (strcmp(source, l->source) < 0)
			l->source = source;
	}
}

typedef struct NewLink
{
	int64		a;
	int64		b;
	uint32		link;			/* StageLink */
} NewLink;

/* A staged link as its primary key: ids in order, a < b. */
static inline void
newlink_set(NewLink *nl, int64 x, int64 y, uint32 link)
{
	nl->a = Min(x, y);
	nl->b = Max(x, y);
	nl->link = link;
}

static int
newlink_cmp(const void *pa, const void *pb)
{
	const NewLink *x = pa;
	const NewLink *y = pb;

	if (x->a != y->a)
		return x->a < y->a ? -1 : 1;
	return x->b < y->b ? -1 : (x->b > y->b ? 1 : 0);
}

/* (kind, value) order of cdp.identifiers' unique index ("C" collation) */
static int
node_value_cmp(const void *pa, const void *pb, void *arg)
{
	Graph	   *g = arg;
	const GNode *x = &g->nodes[*(const uint32 *) pa];
	const GNode *y = &g->nodes[*(const uint32 *) pb];
	int			c;

	if (x->kind != y->kind)
	{
		c = strcmp(g->kinds[x->kind], g->kinds[y->kind]);
		if (c != 0)
			return c;
	}
	c = memcmp(x->value, y->value, Min(x->len, y->len));
	if (c != 0)
		return c;
	return x->len < y->len ? -1 : (x->len > y->len ? 1 : 0);
}

/* Rows of a statement over batches of unnest() arrays must all be written. */
static void
exec_batch(const char *sql, int nargs, Oid *argtypes, Datum *values, int expect)
{
	if (SPI_execute_with_args(sql, nargs, argtypes, values, NULL, false, 0) != expect)
		elog(ERROR, "could not run \"%s\"", sql);
}

/* A stored row whose first_seen/last_seen moves: where it is and its range */
typedef struct SeenMove
{
	ItemPointerData tid;
	int64		a;				/* identifier_id, or the link's a */
	int64		b;				/* the link's b */
	TimestampTz f;
	TimestampTz l;
} SeenMove;

/*
 * Do new rows seen from f to l widen a stored range [sf, sl] by more than
 * the granularity?
 */
static inline bool
seen_widens(TimestampTz f, TimestampTz l, TimestampTz sf, TimestampTz sl, int64 grain)
{
	int64		lo;
	int64		hi;

	if (pg_sub_s64_overflow(sf, grain, &lo))
		lo = PG_INT64_MIN;
	if (pg_add_s64_overflow(sl, grain, &hi))
		hi = PG_INT64_MAX;
	return f < lo || l > hi;
}

static int
seenmove_cmp(const void *pa, const void *pb)
{
	const SeenMove *x = pa;
	const SeenMove *y = pb;

	return ItemPointerCompare((ItemPointer) &x->tid, (ItemPointer) &y->tid);
}

/*
 * Move first_seen/last_seen of the rows found by the lookup, in heap order:
 * a tid join fetches each row without an index probe, and consecutive rows
 * of one page are updated together.  The key is checked too; should a row
 * have moved since the lookup (only cdp's functions write these tables,
 * under the advisory lock, so it does not), the batch is redone by key
 * (least/greatest make either statement idempotent).
 */
static void
write_moves(SeenMove *moves, int n, bool links, MemoryContext tmp)
{
	int			j;

	if (n == 0)
		return;
	qsort(moves, n, sizeof(SeenMove), seenmove_cmp);
	for (j = 0; j < n; j += WRITE_BATCH)
	{
		int			nb = Min(WRITE_BATCH, n - j);
		Datum	   *tids;
		int64	   *a;
		int64	   *b;
		TimestampTz *fs;
		TimestampTz *ls;
		int			m;
		Oid			argtypes[5] = {TIDARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
		TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID};
		Datum		values[5];
		MemoryContext old = MemoryContextSwitchTo(tmp);
		int			guc_level;

		tids = palloc(sizeof(Datum) * nb);
		a = palloc(sizeof(int64) * nb);
		b = palloc(sizeof(int64) * nb);
		fs = palloc(sizeof(TimestampTz) * nb);
		ls = palloc(sizeof(TimestampTz) * nb);
		for (m = 0; m < nb; m++)
		{
			SeenMove   *mv = &moves[j + m];

			tids[m] = PointerGetDatum(&mv->tid);
			a[m] = mv->a;
			b[m] = mv->b;
			fs[m] = mv->f;
			ls[m] = mv->l;
		}
		values[0] = PointerGetDatum(construct_array(tids, nb, TIDOID, sizeof(ItemPointerData),
													false, TYPALIGN_SHORT));
		values[1] = int8_array(a, nb);
		values[2] = int8_array(b, nb);
		values[3] = ts_array(fs, nb);
		values[4] = ts_array(ls, nb);
		/* the key's index would look cheaper than the tid to the planner */
		guc_level = NewGUCNestLevel();
		(void) set_config_option("enable_indexscan", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		exec_batch(links ?
				   "UPDATE cdp.identity_links l"
				   " SET first_seen = least(l.first_seen, u.f), last_seen = greatest(l.last_seen, u.l)"
				   " FROM unnest($1::tid[], $2::int8[], $3::int8[], $4::timestamptz[],"
				   " $5::timestamptz[]) AS u(t, a, b, f, l)"
				   " WHERE l.ctid = u.t AND l.a = u.a AND l.b = u.b" :
				   "UPDATE cdp.identifiers i"
				   " SET first_seen = least(i.first_seen, u.f), last_seen = greatest(i.last_seen, u.l)"
				   " FROM unnest($1::tid[], $2::int8[], $3::int8[], $4::timestamptz[],"
				   " $5::timestamptz[]) AS u(t, id, x, f, l)"
				   " WHERE i.ctid = u.t AND i.identifier_id = u.id",
				   5, argtypes, values, SPI_OK_UPDATE);
		AtEOXact_GUC(true, guc_level);
		if (SPI_processed != (uint64) nb)
			exec_batch(links ?
					   "UPDATE cdp.identity_links l"
					   " SET first_seen = least(l.first_seen, u.f), last_seen = greatest(l.last_seen, u.l)"
					   " FROM unnest($1::tid[], $2::int8[], $3::int8[], $4::timestamptz[],"
					   " $5::timestamptz[]) AS u(t, a, b, f, l)"
					   " WHERE l.a = u.a AND l.b = u.b" :
					   "UPDATE cdp.identifiers i"
					   " SET first_seen = least(i.first_seen, u.f), last_seen = greatest(i.last_seen, u.l)"
					   " FROM unnest($1::tid[], $2::int8[], $3::int8[], $4::timestamptz[],"
					   " $5::timestamptz[]) AS u(t, id, x, f, l)"
					   " WHERE i.identifier_id = u.id",
					   5, argtypes, values, SPI_OK_UPDATE);
		MemoryContextSwitchTo(old);
		MemoryContextReset(tmp);
	}
}

/*
 * SPI arguments for a batch of stage nodes (in the caller's memory context):
 * their kinds and values, and with seen, the range the new rows saw them in.
 */
static void
node_batch_args(Stage *st, const uint32 *nodes, int nb, bool seen, Datum *values)
{
	Graph	   *g = st->g;
	char	  **k = palloc(sizeof(char *) * nb);
	char	  **v = palloc(sizeof(char *) * nb);
	TimestampTz *fs = seen ? palloc(sizeof(TimestampTz) * nb) : NULL;
	TimestampTz *ls = seen ? palloc(sizeof(TimestampTz) * nb) : NULL;
	int			j;

	for (j = 0; j < nb; j++)
	{
		uint32		x = nodes[j];

		k[j] = g->kinds[g->nodes[x].kind];
		v[j] = (char *) g->nodes[x].value;
		if (seen)
		{
			fs[j] = st->first_seen[x];
			ls[j] = st->last_seen[x];
		}
	}
	values[0] = text_array(k, NULL, nb);
	values[1] = text_array(v, NULL, nb);
	if (seen)
	{
		values[2] = ts_array(fs, nb);
		values[3] = ts_array(ls, nb);
	}
}

/* The same for a batch of known links: their ends and, with seen, range */
static void
link_batch_args(Stage *st, const NewLink *links, int nb, bool seen, Datum *values)
{
	int64	   *a = palloc(sizeof(int64) * nb);
	int64	   *b = palloc(sizeof(int64) * nb);
	TimestampTz *fs = seen ? palloc(sizeof(TimestampTz) * nb) : NULL;
	TimestampTz *ls = seen ? palloc(sizeof(TimestampTz) * nb) : NULL;
	int			m;

	for (m = 0; m < nb; m++)
	{
		a[m] = links[m].a;
		b[m] = links[m].b;
		if (seen)
		{
			fs[m] = st->links[links[m].link].first_seen;
			ls[m] = st->links[links[m].link].last_seen;
		}
	}
	values[0] = int8_array(a, nb);
	values[1] = int8_array(b, nb);
	if (seen)
	{
		values[2] = ts_array(fs, nb);
		values[3] = ts_array(ls, nb);
	}
}

/*
 * Fold cdp_stage, write what can be written before the recomputation and
 * fill T (identifiers to recompute) and S/given (profiles).
 */
static Stage *
stage_prepare(MemoryContext keep, char **kinds, int nkinds, int64 run_id,
			  i64map_hash *T, i64map_hash *S, i64map_hash *given)
{
	Stage	   *st = MemoryContextAllocZero(keep, sizeof(Stage));
	Graph	   *g;
	MemoryContext old = CurrentMemoryContext;
	bool		graph_empty;
	double		total;
	bool		isnull;
	bool		found;
	uint32		i;
	int			guc_level = 0;
	uint32	   *byvalue;
	TimestampTz *cutoff;
	bool	   *has_cutoff;
	bool		any_ttl = false;
	int			n;
	SeenMove   *moves;
	int			nmoves;
	int64		grain = 0;		/* cdp.set_seen_granularity(), microseconds */
	uint32		nlookup;

	st->g = g = graph_create(keep, kinds, nkinds);
	MemoryContextSwitchTo(g->mcxt);
	st->fcap = 1024;
	st->first_seen = MemoryContextAllocHuge(g->mcxt, sizeof(TimestampTz) * st->fcap);
	st->last_seen = MemoryContextAllocHuge(g->mcxt, sizeof(TimestampTz) * st->fcap);
	st->linkcap = 1024;
	st->links = MemoryContextAllocHuge(g->mcxt, sizeof(StageLink) * st->linkcap);
	st->bypair = i64map_create(g->mcxt, 1024, NULL);
	st->sources = palloc(sizeof(char *));
	st->tmp = AllocSetContextCreate(keep, "cdp identity batch", ALLOCSET_DEFAULT_SIZES);

	for_each_row(g, "SELECT source, kind1, value1, kind2, value2, coalesce(at, now())"
				 " FROM pg_temp.cdp_stage", 0, NULL, NULL, stage_row, st);
	phase_done("fold the staged rows");
	st->existed = MemoryContextAllocHuge(g->mcxt, sizeof(bool) * Max(g->nnodes, 1));
	st->dead = MemoryContextAllocHuge(g->mcxt, sizeof(bool) * Max(g->nnodes, 1));
	memset(st->existed, 0, sizeof(bool) * g->nnodes);
	memset(st->dead, 0, sizeof(bool) * g->nnodes);

	if (SPI_execute("SELECT (extract(epoch FROM seen_granularity) * 1000000)::int8"
					" FROM cdp.identity_settings", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read cdp.identity_settings");
	if (SPI_processed > 0)
		grain = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
											&isnull));

	/* never analyzed (e.g. right after the first refresh): guess from its size */
	if (SPI_execute("SELECT NOT EXISTS (SELECT FROM cdp.identifiers),"
					" (CASE WHEN c.reltuples >= 0 THEN c.reltuples"
					" ELSE pg_catalog.pg_relation_size(c.oid) / 100 END)::float8"
					" FROM pg_catalog.pg_class c"
					" WHERE c.oid = 'cdp.identifiers'::pg_catalog.regclass",
					false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not count cdp.identifiers");
	graph_empty = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	total = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));

	/* a small batch against a large graph: index probes, never scans */
	if ((double) g->nnodes * 5 < total)
	{
		guc_level = NewGUCNestLevel();
		(void) set_config_option("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		(void) set_config_option("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		(void) set_config_option("enable_memoize", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}

	/*
	 * Known identifiers: look up their ids (and where their rows are), then
	 * move first_seen/last_seen of those whose range the new rows widen.
	 * Probes in index order touch each index page once; the updates go in
	 * heap order, by tid, without a second index probe.
	 */
	byvalue = palloc(sizeof(uint32) * Max(g->nnodes, 1));
	for (i = 0; i < g->nnodes; i++)
		byvalue[i] = i;
	if (!graph_empty)
		qsort_arg(byvalue, g->nnodes, sizeof(uint32), node_value_cmp, g);
	nlookup = g->nnodes;

	/*
	 * With exact first_seen/last_seen nearly every known identifier the new
	 * rows name moves, so they are moved first by key, each row updated
	 * where the probe finds it (one visit of its page instead of two), and
	 * only the identifiers left (new ones, and the few the rows do not
	 * widen) are looked up after.
	 */
	if (!graph_empty && grain == 0)
	{
		nlookup = 0;
		for (i = 0; i < g->nnodes; i += WRITE_BATCH)
		{
			int			nb = Min(WRITE_BATCH, g->nnodes - i);
			int			j;
			uint64		r;
			Oid			argtypes[4] = {TEXTARRAYOID, TEXTARRAYOID,
			TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID};
			Datum		values[4];

			MemoryContextSwitchTo(st->tmp);
			node_batch_args(st, byvalue + i, nb, true, values);
			if (SPI_execute_with_args("UPDATE cdp.identifiers i"
									  " SET first_seen = least(i.first_seen, u.f),"
									  " last_seen = greatest(i.last_seen, u.l)"
									  " FROM unnest($1::text[], $2::text[], $3::timestamptz[],"
									  " $4::timestamptz[]) WITH ORDINALITY AS u(k, v, f, l, ord)"
									  " WHERE i.kind = u.k COLLATE \"C\" AND i.value = u.v COLLATE \"C\""
									  " AND (u.f < i.first_seen OR u.l > i.last_seen)"
									  " RETURNING u.ord, i.identifier_id, i.profile_id",
									  4, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
				elog(ERROR, "could not update cdp.identifiers");
			for (r = 0; r < SPI_processed; r++)
			{
				HeapTuple	tup = SPI_tuptable->vals[r];
				TupleDesc	desc = SPI_tuptable->tupdesc;
				uint32		x = byvalue[i + (uint32) DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull)) - 1];
				Datum		p;

				g->nodes[x].id = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
				p = SPI_getbinval(tup, desc, 3, &isnull);
				g->nodes[x].old_profile = isnull ? 0 : DatumGetInt64(p);
				st->existed[x] = true;
			}
			SPI_freetuptable(SPI_tuptable);
			/* what is left keeps its order, in the same array */
			for (j = 0; j < nb; j++)
				if (!st->existed[byvalue[i + j]])
					byvalue[nlookup++] = byvalue[i + j];
			MemoryContextSwitchTo(g->mcxt);
			MemoryContextReset(st->tmp);
		}
		phase_done("move first_seen/last_seen of identifiers by key");
	}
	moves = MemoryContextAllocHuge(g->mcxt, sizeof(SeenMove) * Max(g->nnodes, 1));
	nmoves = 0;
	for (i = 0; !graph_empty && i < nlookup; i += WRITE_BATCH)
	{
		int			nb = Min(WRITE_BATCH, nlookup - i);
		uint64		r;
		Oid			argtypes[2] = {TEXTARRAYOID, TEXTARRAYOID};
		Datum		values[2];

		MemoryContextSwitchTo(st->tmp);
		node_batch_args(st, byvalue + i, nb, false, values);
		if (SPI_execute_with_args("SELECT u.ord, i.identifier_id, i.ctid, i.first_seen, i.last_seen,"
								  " i.profile_id"
								  " FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(k, v, ord)"
								  " JOIN cdp.identifiers i"
								  " ON i.kind = u.k COLLATE \"C\" AND i.value = u.v COLLATE \"C\"",
								  2, argtypes, values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read cdp.identifiers");
		for (r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			uint32		x = byvalue[i + (uint32) DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull)) - 1];
			TimestampTz f = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
			TimestampTz l = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
			Datum		p = SPI_getbinval(tup, desc, 6, &isnull);

			g->nodes[x].old_profile = isnull ? 0 : DatumGetInt64(p);
			g->nodes[x].id = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
			st->existed[x] = true;
			if (seen_widens(st->first_seen[x], st->last_seen[x], f, l, grain))
			{
				SeenMove   *m = &moves[nmoves++];

				ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 3, &isnull)),
								&m->tid);
				m->a = g->nodes[x].id;
				m->b = 0;
				m->f = Min(st->first_seen[x], f);
				m->l = Max(st->last_seen[x], l);
			}
		}
		SPI_freetuptable(SPI_tuptable);
		MemoryContextSwitchTo(g->mcxt);
		MemoryContextReset(st->tmp);
	}
	phase_done("look up identifiers");
	write_moves(moves, nmoves, false, st->tmp);
	phase_done("move first_seen/last_seen of identifiers");

	/* new identifiers: ids in the order the sources returned them */
	for (i = 0, n = 0; i < g->nnodes; i++)
		if (!st->existed[i])
			n++;
	st->identifiers_added = n;
	if (n > 0)
	{
		uint32		next = 0;
		int			done;

		for (done = 0; done < n; done += WRITE_BATCH)
		{
			Oid			argtypes[1] = {INT4OID};
			Datum		values[1] = {Int32GetDatum(Min(WRITE_BATCH, n - done))};
			uint64		r;

			if (SPI_execute_with_args("SELECT nextval('cdp.identifier_id_seq') FROM generate_series(1, $1)",
									  1, argtypes, values, NULL, false, 0) != SPI_OK_SELECT ||
				SPI_processed != (uint64) Min(WRITE_BATCH, n - done))
				elog(ERROR, "could not allocate identifier ids");
			for (r = 0; r < SPI_processed; r++)
			{
				while (st->existed[next])
					next++;
				g->nodes[next++].id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
																  SPI_tuptable->tupdesc, 1, &isnull));
			}
			SPI_freetuptable(SPI_tuptable);
		}
	}
	for (i = 0; i < g->nnodes; i++)
		i64map_insert(g->byid, g->nodes[i].id, &found)->val = (int32) i;
	phase_done("ids of new identifiers");

	/*
	 * Known links, in primary key order: look them up, then move
	 * first_seen/last_seen where the new rows widen them, in heap order.
	 */
	{
		NewLink    *kn = palloc(sizeof(NewLink) * Max(st->nlinks, 1));
		int			nk = 0;
		int			j;

		for (i = 0; i < st->nlinks; i++)
		{
			StageLink  *sl = &st->links[i];
			int64		x = g->nodes[sl->a].id;
			int64		y = g->nodes[sl->b].id;

			if (!st->existed[sl->a] || !st->existed[sl->b])
				continue;
			newlink_set(&kn[nk++], x, y, i);
		}
		qsort(kn, nk, sizeof(NewLink), newlink_cmp);

		/* as for identifiers: moved first by key, the rest looked up */
		if (grain == 0)
		{
			int			left = 0;

			for (j = 0; j < nk; j += WRITE_BATCH)
			{
				int			nb = Min(WRITE_BATCH, nk - j);
				int			m;
				uint64		r;
				Oid			argtypes[4] = {INT8ARRAYOID, INT8ARRAYOID,
				TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID};
				Datum		values[4];

				MemoryContextSwitchTo(st->tmp);
				link_batch_args(st, kn + j, nb, true, values);
				if (SPI_execute_with_args("UPDATE cdp.identity_links l"
										  " SET first_seen = least(l.first_seen, u.f),"
										  " last_seen = greatest(l.last_seen, u.l)"
										  " FROM unnest($1::int8[], $2::int8[], $3::timestamptz[],"
										  " $4::timestamptz[]) WITH ORDINALITY AS u(a, b, f, l, ord)"
										  " WHERE l.a = u.a AND l.b = u.b"
										  " AND (u.f < l.first_seen OR u.l > l.last_seen)"
										  " RETURNING u.ord",
										  4, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
					elog(ERROR, "could not update cdp.identity_links");
				for (r = 0; r < SPI_processed; r++)
				{
					int64		ord = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
																  SPI_tuptable->tupdesc, 1, &isnull));

					st->links[kn[j + ord - 1].link].existed = true;
				}
				SPI_freetuptable(SPI_tuptable);
				for (m = 0; m < nb; m++)
					if (!st->links[kn[j + m].link].existed)
						kn[left++] = kn[j + m];
				MemoryContextSwitchTo(g->mcxt);
				MemoryContextReset(st->tmp);
			}
			nk = left;
			phase_done("move first_seen/last_seen of links by key");
		}
		if ((uint32) nk > Max(g->nnodes, 1))
			moves = repalloc_huge(moves, sizeof(SeenMove) * nk);
		nmoves = 0;
		for (j = 0; j < nk; j += WRITE_BATCH)
		{
			int			nb = Min(WRITE_BATCH, nk - j);
			uint64		r;
			Oid			argtypes[2] = {INT8ARRAYOID, INT8ARRAYOID};
			Datum		values[2];

			MemoryContextSwitchTo(st->tmp);
			link_batch_args(st, kn + j, nb, false, values);
			if (SPI_execute_with_args("SELECT u.ord, l.ctid, l.first_seen, l.last_seen"
									  " FROM unnest($1::int8[], $2::int8[]) WITH ORDINALITY AS u(a, b, ord)"
									  " JOIN cdp.identity_links l ON l.a = u.a AND l.b = u.b",
									  2, argtypes, values, NULL, false, 0) != SPI_OK_SELECT)
				elog(ERROR, "could not read cdp.identity_links");
			for (r = 0; r < SPI_processed; r++)
			{
				HeapTuple	tup = SPI_tuptable->vals[r];
				TupleDesc	desc = SPI_tuptable->tupdesc;
				NewLink    *nl = &kn[j + DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull)) - 1];
				StageLink  *sl = &st->links[nl->link];
				TimestampTz f = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
				TimestampTz l = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));

				sl->existed = true;
				if (seen_widens(sl->first_seen, sl->last_seen, f, l, grain))
				{
					SeenMove   *mv = &moves[nmoves++];

					ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 2, &isnull)),
									&mv->tid);
					mv->a = nl->a;
					mv->b = nl->b;
					mv->f = Min(sl->first_seen, f);
					mv->l = Max(sl->last_seen, l);
				}
			}
			SPI_freetuptable(SPI_tuptable);
			MemoryContextSwitchTo(g->mcxt);
			MemoryContextReset(st->tmp);
		}
		phase_done("look up links");
		write_moves(moves, nmoves, true, st->tmp);
		pfree(kn);
	}
	phase_done("move first_seen/last_seen of links");
	if (guc_level)
		AtEOXact_GUC(true, guc_level);

	/* time-to-live, by kind */
	cutoff = palloc0(sizeof(TimestampTz) * (g->nkinds + 1));
	has_cutoff = palloc0(sizeof(bool) * (g->nkinds + 1));
	if (SPI_execute("SELECT kind, now() - ttl FROM cdp.identity_kinds WHERE ttl IS NOT NULL",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read cdp.identity_kinds");
	for (i = 0; i < SPI_processed; i++)
	{
		int			k = kind_index(g, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1), true);

		any_ttl = true;
		if (k < 0)
			continue;
		has_cutoff[k] = true;
		cutoff[k] = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[i],
													  SPI_tuptable->tupdesc, 2, &isnull));
	}
	if (any_ttl)
	{
		uint64		r;

		/* known links, then known identifiers, not seen within the ttl */
		if (SPI_execute("DELETE FROM cdp.identity_links l"
						" USING cdp.identifiers ia, cdp.identifiers ib"
						" WHERE l.last_seen < now() - (SELECT min(ttl) FROM cdp.identity_kinds)"
						" AND ia.identifier_id = l.a AND ib.identifier_id = l.b"
						" AND l.last_seen < now() - (SELECT min(k.ttl) FROM cdp.identity_kinds k"
						" WHERE k.kind IN (ia.kind, ib.kind))"
						" RETURNING l.a, l.b", false, 0) != SPI_OK_DELETE_RETURNING)
			elog(ERROR, "could not expire cdp.identity_links");
		st->links_expired += SPI_processed;
		for (r = 0; r < SPI_processed; r++)
		{
			(void) i64map_insert(T, DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
																SPI_tuptable->tupdesc, 1, &isnull)), &found);
			(void) i64map_insert(T, DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
																SPI_tuptable->tupdesc, 2, &isnull)), &found);
		}
		SPI_freetuptable(SPI_tuptable);
		if (SPI_execute("SELECT i.identifier_id, i.profile_id FROM cdp.identifiers i"
						" JOIN cdp.identity_kinds k ON k.kind = i.kind"
						" WHERE i.last_seen < now() - (SELECT min(ttl) FROM cdp.identity_kinds)"
						" AND i.last_seen < now() - k.ttl", false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not expire cdp.identifiers");
		if (SPI_processed > 0)
		{
			int64	   *dead = palloc(sizeof(int64) * SPI_processed);
			int			ndead = (int) SPI_processed;
			Oid			argtypes[1] = {INT8ARRAYOID};
			Datum		values[1];

			for (r = 0; r < SPI_processed; r++)
			{
				Datum		p = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull);

				dead[r] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
													  SPI_tuptable->tupdesc, 1, &isnull));
				if (!isnull)
				{
					(void) i64map_insert(S, DatumGetInt64(p), &found);
					(void) i64map_insert(given, DatumGetInt64(p), &found);
				}
			}
			SPI_freetuptable(SPI_tuptable);
			st->identifiers_expired += ndead;
			values[0] = int8_array(dead, ndead);
			/* their neighbours are recomputed */
			exec_batch("DELETE FROM cdp.identity_links l USING unnest($1::int8[]) AS d(id)"
					   " WHERE l.a = d.id RETURNING l.b",
					   1, argtypes, values, SPI_OK_DELETE_RETURNING);
			for (r = 0; r < SPI_processed; r++)
				(void) i64map_insert(T, DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
																	SPI_tuptable->tupdesc, 1, &isnull)), &found);
			exec_batch("DELETE FROM cdp.identity_links l USING unnest($1::int8[]) AS d(id)"
					   " WHERE l.b = d.id RETURNING l.a",
					   1, argtypes, values, SPI_OK_DELETE_RETURNING);
			for (r = 0; r < SPI_processed; r++)
				(void) i64map_insert(T, DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
																	SPI_tuptable->tupdesc, 1, &isnull)), &found);
			exec_batch("DELETE FROM cdp.identity_refusals x USING unnest($1::int8[]) AS d(id)"
					   " WHERE x.identifier_id = d.id",
					   1, argtypes, values, SPI_OK_DELETE);
			exec_batch("DELETE FROM cdp.identifiers i USING unnest($1::int8[]) AS d(id)"
					   " WHERE i.identifier_id = d.id",
					   1, argtypes, values, SPI_OK_DELETE);
		}
		else
			SPI_freetuptable(SPI_tuptable);

		/* new identifiers already past their ttl are never written */
		for (i = 0; i < g->nnodes; i++)
			if (!st->existed[i] && has_cutoff[g->nodes[i].kind] &&
				st->last_seen[i] < cutoff[g->nodes[i].kind])
			{
				st->dead[i] = true;
				st->identifiers_expired++;
			}
	}
	phase_done("time-to-live");
	for (i = 0; i < g->nnodes; i++)
		if (!st->existed[i] && !st->dead[i])
			(void) i64map_insert(T, g->nodes[i].id, &found);

	/* new links: their ends are recomputed */
	{
		NewLink    *nl = palloc(sizeof(NewLink) * Max(st->nlinks, 1));
		int			np = 0;
		int			j;

		for (i = 0; i < st->nlinks; i++)
		{
			StageLink  *sl = &st->links[i];
			int			ka = g->nodes[sl->a].kind;
			int			kb = g->nodes[sl->b].kind;
			int64		x = g->nodes[sl->a].id;
			int64		y = g->nodes[sl->b].id;

			if (sl->existed)
				continue;
			st->links_added++;
			(void) i64map_insert(T, x, &found);
			(void) i64map_insert(T, y, &found);
			if ((has_cutoff[ka] && sl->last_seen < cutoff[ka]) ||
				(has_cutoff[kb] && sl->last_seen < cutoff[kb]))
			{
				st->links_expired++;
				continue;
			}
			if (st->dead[sl->a] || st->dead[sl->b])
				continue;
			sl->inserted = true;
			newlink_set(&nl[np++], x, y, i);
		}
		/* in (a, b) order: the primary key fills in order */
		qsort(nl, np, sizeof(NewLink), newlink_cmp);
		for (j = 0; j < np; j += WRITE_BATCH)
		{
			int			nb = Min(WRITE_BATCH, np - j);
			int64	   *a;
			int64	   *b;
			TimestampTz *fs;
			TimestampTz *ls;
			char	  **srcs;
			int			m;
			Oid			argtypes[5] = {INT8ARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID,
			TIMESTAMPTZARRAYOID, TEXTARRAYOID};
			Datum		values[5];

			MemoryContextSwitchTo(st->tmp);
			a = palloc(sizeof(int64) * nb);
			b = palloc(sizeof(int64) * nb);
			fs = palloc(sizeof(TimestampTz) * nb);
			ls = palloc(sizeof(TimestampTz) * nb);
			srcs = palloc(sizeof(char *) * nb);
			for (m = 0; m < nb; m++)
			{
				StageLink  *sl = &st->links[nl[j + m].link];

				a[m] = nl[j + m].a;
				b[m] = nl[j + m].b;
				fs[m] = sl->first_seen;
				ls[m] = sl->last_seen;
				srcs[m] = (char *) sl->source;
			}
			values[0] = int8_array(a, nb);
			values[1] = int8_array(b, nb);
			values[2] = ts_array(fs, nb);
			values[3] = ts_array(ls, nb);
			values[4] = text_array(srcs, NULL, nb);
			exec_batch("INSERT INTO cdp.identity_links (a, b, first_seen, last_seen, source)"
					   " SELECT * FROM unnest($1::int8[], $2::int8[], $3::timestamptz[],"
					   " $4::timestamptz[], $5::text[])",
					   5, argtypes, values, SPI_OK_INSERT);
			MemoryContextSwitchTo(g->mcxt);
			MemoryContextReset(st->tmp);
		}
		pfree(nl);
	}

	phase_done("insert new links");
	/* the run's counts */
	{
		Oid			argtypes[5] = {INT8OID, INT8OID, INT8OID, INT8OID, INT8OID};
		Datum		values[5] = {Int64GetDatum(run_id), Int64GetDatum(st->identifiers_added),
			Int64GetDatum(st->links_added), Int64GetDatum(st->identifiers_expired),
		Int64GetDatum(st->links_expired)};

		exec_batch("UPDATE cdp.identity_runs SET identifiers_added = $2, links_added = $3,"
				   " identifiers_expired = $4, links_expired = $5 WHERE run_id = $1",
				   5, argtypes, values, SPI_OK_UPDATE);
	}
	MemoryContextSwitchTo(old);
	return st;
}

/* New identifiers of the stage join every round as recomputed nodes. */
static void
stage_inject(Graph *g, Stage *st)
{
	uint32		i;

	if (st == NULL)
		return;
	for (i = 0; i < st->g->nnodes; i++)
	{
		GNode	   *sn = &st->g->nodes[i];
		uint32		x;

		if (st->existed[i] || st->dead[i])
			continue;
		x = add_node(g, sn->id, st->g->kinds[sn->kind], sn->value, sn->len, 0, true);
		g->nodes[x].pending = (int32) i;
	}
}

/* (kind, value) order of new identifiers, by their Stage nodes */
static int
pending_value_cmp(const void *pa, const void *pb, void *arg)
{
	Graph	  **gs = arg;
	uint32		x = (uint32) gs[0]->nodes[*(const uint32 *) pa].pending;
	uint32		y = (uint32) gs[0]->nodes[*(const uint32 *) pb].pending;

	return node_value_cmp(&x, &y, gs[1]);
}

/*
 * Insert the stage's new identifiers with the profile they ended up in, in
 * (kind, value) order: the unique index then takes them leaf by leaf (an
 * index built from empty is appended to) instead of at random leaves.
 */
static void
stage_write_identifiers(Stage *st, Graph *g, const int64 *comp_id)
{
	uint32	   *order = palloc(sizeof(uint32) * Max(g->nnodes, 1));
	uint32		norder = 0;
	uint32		i = 0;
	Graph	   *gs[2] = {g, st->g};

	for (i = 0; i < g->nnodes; i++)
		if (g->nodes[i].pending >= 0)
			order[norder++] = i;
	qsort_arg(order, norder, sizeof(uint32), pending_value_cmp, gs);
	i = 0;
	while (i < norder)
	{
		int64	   *ids;
		int64	   *profs;
		char	  **k;
		char	  **v;
		TimestampTz *fs;
		TimestampTz *ls;
		int			n = 0;
		Oid			argtypes[6] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID,
		TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID};
		Datum		values[6];
		MemoryContext old = MemoryContextSwitchTo(st->tmp);

		ids = palloc(sizeof(int64) * WRITE_BATCH);
		profs = palloc(sizeof(int64) * WRITE_BATCH);
		k = palloc(sizeof(char *) * WRITE_BATCH);
		v = palloc(sizeof(char *) * WRITE_BATCH);
		fs = palloc(sizeof(TimestampTz) * WRITE_BATCH);
		ls = palloc(sizeof(TimestampTz) * WRITE_BATCH);
		for (; i < norder && n < WRITE_BATCH; i++)
		{
			GNode	   *nd = &g->nodes[order[i]];

			ids[n] = nd->id;
			profs[n] = nd->comp ? comp_id[nd->comp] : 0;
			k[n] = g->kinds[nd->kind];
			v[n] = (char *) nd->value;
			fs[n] = st->first_seen[nd->pending];
			ls[n] = st->last_seen[nd->pending];
			n++;
		}
		if (n > 0)
		{
			values[0] = int8_array(ids, n);
			values[1] = text_array(k, NULL, n);
			values[2] = text_array(v, NULL, n);
			values[3] = int8_array(profs, n);
			values[4] = ts_array(fs, n);
			values[5] = ts_array(ls, n);
			exec_batch("INSERT INTO cdp.identifiers"
					   " (identifier_id, kind, value, profile_id, first_seen, last_seen)"
					   " SELECT u.i, u.k, u.v, nullif(u.p, 0), u.f, u.l"
					   " FROM unnest($1::int8[], $2::text[], $3::text[], $4::int8[],"
					   " $5::timestamptz[], $6::timestamptz[]) AS u(i, k, v, p, f, l)",
					   6, argtypes, values, SPI_OK_INSERT);
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(st->tmp);
	}
	pfree(order);
}

/* ------------------------------------------------ one pass over the links */

/*
 * Loading the links of many recomputed identifiers probes two indexes per
 * identifier, each probe a few random index and heap pages.  One pass over
 * the table costs about the same whatever it finds: at 1M persons (3.4M
 * links) 1.1-1.4 s in a new backend, about 0.35 us a row, against 6-10 us
 * a probe, so it pays once the probes reach about 5% of the links (a 1%
 * refresh there loads the links of 98K identifiers, 196K probes, 5.8%).
 */
#define LINK_SCAN_SHARE 0.05

/* Rows of cdp.identity_links as last analyzed, or guessed from its size. */
static double
link_rows(void)
{
	Relation	rel = table_openrv(makeRangeVar("cdp", "identity_links", -1),
								   AccessShareLock);
	double		rows = rel->rd_rel->reltuples;

	if (rows < 0)
		rows = (double) RelationGetNumberOfBlocks(rel) * (BLCKSZ / 64);
	table_close(rel, NoLock);
	return rows;
}

/* Did this identifier join the recomputed set in this round (known, not new)? */
static inline bool
joined_now(Graph *g, int64 id)
{
	I64Entry   *e = i64map_lookup(g->byid, id);

	return e && g->nodes[e->val].internal && g->nodes[e->val].since == g->round &&
		g->nodes[e->val].pending < 0;
}

/*
 * The links of the identifiers that joined in this round, in one pass over
 * cdp.identity_links: each link comes once, whichever of its ends joined.
 * Returns false, having read nothing, when row-level security applies to
 * the table (the SQL path then reads it as any query would).
 */
static bool
scan_round_links(Graph *g, LinkArg *la)
{
	Oid			relid = RangeVarGetRelid(makeRangeVar("cdp", "identity_links", -1),
										 AccessShareLock, false);
	AclResult	acl = pg_class_aclcheck(relid, GetUserId(), ACL_SELECT);
	Relation	rel;
	AttrNumber	a_a,
				a_b,
				a_first;
	Snapshot	snap;
	TableScanDesc scan;
	TupleTableSlot *slot;

	if (acl != ACLCHECK_OK)
		aclcheck_error(acl, OBJECT_TABLE, get_rel_name(relid));
	if (check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED)
		return false;
	a_a = get_attnum(relid, "a");
	a_b = get_attnum(relid, "b");
	a_first = get_attnum(relid, "first_seen");
	if (a_a == InvalidAttrNumber || a_b == InvalidAttrNumber || a_first == InvalidAttrNumber)
		elog(ERROR, "cdp.identity_links lacks a column of a link");
	rel = table_open(relid, NoLock);
	/* what a statement run here would see: this call's inserts included */
	CommandCounterIncrement();
	snap = RegisterSnapshot(GetTransactionSnapshot());
	slot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, snap, 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		int64		a = DatumGetInt64(slot_getattr(slot, a_a, &isnull));
		int64		b = DatumGetInt64(slot_getattr(slot, a_b, &isnull));

		CHECK_FOR_INTERRUPTS();
		if (!joined_now(g, a) && !joined_now(g, b))
			continue;
		collect_link(g, la, a, b, DatumGetTimestampTz(slot_getattr(slot, a_first, &isnull)));
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snap);
	table_close(rel, NoLock);
	return true;
}

/* -------------------------------------------------------- the function */

/* cdp.identity_recompute(run_id, cause, identifier_ids, profile_ids) */
PG_FUNCTION_INFO_V1(cdp_identity_recompute);
Datum
cdp_identity_recompute(PG_FUNCTION_ARGS)
{
	int64		run_id = PG_GETARG_INT64(0);
	char	   *cause = text_to_cstring(PG_GETARG_TEXT_PP(1));
	bool		full = PG_ARGISNULL(2) && PG_ARGISNULL(3);
	bool		staged = PG_NARGS() > 4 && !PG_ARGISNULL(4) && PG_GETARG_BOOL(4);
	Stage	   *stage = NULL;
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext keep;
	i64map_hash *S;				/* profiles to recompute */
	i64map_hash *T;				/* identifiers to recompute */
	i64map_hash *given;			/* profiles named by the caller */
	Jsonb	   *base_rules = NULL;
	HTAB	   *suppressed = NULL;
	GOverride  *overrides = NULL;
	int			noverrides = 0;
	char	  **kinds = NULL;
	int			nkinds = 0;
	Graph	   *g = NULL;
	i64map_hash *loaded = NULL;	/* profiles in g */
	StitchEngine *engine = NULL;
	int32	   *parent = NULL;
	int32		ncomps = 0;
	int			round;
	TupleDesc	rdesc;
	Datum		result[6];
	bool		rnulls[6] = {false, false, false, false, false, false};
	int64		n_created = 0,
				n_merged = 0,
				n_split = 0,
				n_deleted = 0,
				n_internal = 0;

	if (get_call_result_type(fcinfo, NULL, &rdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	rdesc = BlessTupleDesc(rdesc);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	INSTR_TIME_SET_CURRENT(phase_start);
	keep = AllocSetContextCreate(outer, "cdp identity recompute", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(keep);
	S = i64map_create(keep, 64, NULL);
	T = i64map_create(keep, 64, NULL);
	given = i64map_create(keep, 64, NULL);

	if (!full)
	{
		int			i;
		bool		found;

		if (!PG_ARGISNULL(2))
		{
			Datum	   *d;
			bool	   *nulls;
			int			n;

			deconstruct_array(PG_GETARG_ARRAYTYPE_P(2), INT8OID, 8, FLOAT8PASSBYVAL,
							  TYPALIGN_DOUBLE, &d, &nulls, &n);
			for (i = 0; i < n; i++)
				if (!nulls[i])
					(void) i64map_insert(T, DatumGetInt64(d[i]), &found);
		}
		if (!PG_ARGISNULL(3))
		{
			Datum	   *d;
			bool	   *nulls;
			int			n;

			deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), INT8OID, 8, FLOAT8PASSBYVAL,
							  TYPALIGN_DOUBLE, &d, &nulls, &n);
			for (i = 0; i < n; i++)
				if (!nulls[i])
				{
					(void) i64map_insert(S, DatumGetInt64(d[i]), &found);
					(void) i64map_insert(given, DatumGetInt64(d[i]), &found);
				}
		}
	}

	/* rules, kinds, erased identifiers, overrides: small, read once */
	if (SPI_execute("SELECT rules FROM cdp.identity_settings", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read cdp.identity_settings");
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			base_rules = DatumGetJsonbPCopy(d);
	}
	if (SPI_execute("SELECT kind FROM cdp.identity_kinds ORDER BY priority", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read cdp.identity_kinds");
	kinds = palloc(sizeof(char *) * (SPI_processed + 1));
	for (nkinds = 0; nkinds < (int) SPI_processed; nkinds++)
		kinds[nkinds] = MemoryContextStrdup(keep, SPI_getvalue(SPI_tuptable->vals[nkinds],
															   SPI_tuptable->tupdesc, 1));
	if (SPI_execute("SELECT kind, value_sha256 FROM cdp.identity_suppressed", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read cdp.identity_suppressed");
	if (SPI_processed > 0)
	{
		HASHCTL		ctl;
		uint64		i;

		ctl.keysize = NAMEDATALEN + 66;
		ctl.entrysize = NAMEDATALEN + 66;
		ctl.hcxt = keep;
		suppressed = hash_create("cdp suppressed identifiers", SPI_processed, &ctl,
								 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		for (i = 0; i < SPI_processed; i++)
		{
			char		key[NAMEDATALEN + 66];

			snprintf(key, sizeof(key), "%s:%s",
					 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1),
					 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));
			(void) hash_search(suppressed, key, HASH_ENTER, NULL);
		}
	}
	phase_done("rules, kinds, suppressed identifiers");
	/* a refresh: fold the staged source rows in first */
	if (staged)
		stage = stage_prepare(keep, kinds, nkinds, run_id, T, S, given);

	if (!full)
	{
		/*
		 * Touching a large part of the graph: one pass over everything is
		 * cheaper than looking up that many ids (and gives the same result).
		 */
		if (T->members + S->members >= 10000)
		{
			double		total;
			bool		isnull;

			if (SPI_execute("SELECT (CASE WHEN c.reltuples >= 0 THEN c.reltuples"
							" ELSE (SELECT count(*) FROM cdp.identifiers) END)::float8"
							" FROM pg_catalog.pg_class c"
							" WHERE c.oid = 'cdp.identifiers'::pg_catalog.regclass",
							false, 1) != SPI_OK_SELECT || SPI_processed != 1)
				elog(ERROR, "could not count cdp.identifiers");
			total = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1, &isnull));
			if ((double) (T->members + 4 * S->members) >= 0.3 * total)
				full = true;
		}
	}

	/* overrides may name identifiers this refresh has not written yet */
	if (SPI_execute("SELECT o.action = 'together', ia.identifier_id, ib.identifier_id,"
					" o.kind_a, o.value_a, o.kind_b, o.value_b"
					" FROM cdp.identity_overrides o"
					" LEFT JOIN cdp.identifiers ia ON ia.kind = o.kind_a AND ia.value = o.value_a"
					" LEFT JOIN cdp.identifiers ib ON ib.kind = o.kind_b AND ib.value = o.value_b"
					" ORDER BY o.override_id", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read cdp.identity_overrides");
	overrides = palloc(sizeof(GOverride) * Max(SPI_processed, 1));
	for (round = 0; round < (int) SPI_processed; round++)
	{
		HeapTuple	tup = SPI_tuptable->vals[round];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int64		ids[2];
		int			side;
		bool		isnull;

		for (side = 0; side < 2; side++)
		{
			Datum		d = SPI_getbinval(tup, desc, 2 + side, &isnull);

			ids[side] = isnull ? 0 : DatumGetInt64(d);
			if (isnull && stage)
			{
				char	   *kind = SPI_getvalue(tup, desc, 4 + 2 * side);
				char	   *value = SPI_getvalue(tup, desc, 5 + 2 * side);
				int			k = kind_index(stage->g, kind, true);
				int64		x = k < 0 ? -1 : find_node(stage->g, k, value, strlen(value));

				if (x >= 0 && !stage->existed[x] && !stage->dead[x])
					ids[side] = stage->g->nodes[x].id;
			}
		}
		if (ids[0] == 0 || ids[1] == 0)
			continue;
		overrides[noverrides].together = DatumGetBool(SPI_getbinval(tup, desc, 1, &isnull));
		overrides[noverrides].a = ids[0];
		overrides[noverrides].b = ids[1];
		noverrides++;
	}

	for (round = 0;; round++)
	{
		bool		expanded = false;
		bool		internal;
		LinkArg		la;
		Jsonb	   *rules = base_rules;
		StringInfoData apart;
		int			napart = 0;
		uint32		i;
		int			o;
		bool		found;
		StitchRules *parsed;
		bool	   *has_internal;
		int			guc_level = 0;
		bool		scanned_links = false;

		if (round >= MAX_ROUNDS)
			elog(ERROR, "identity recomputation did not converge");
		if (engine)
			stitch_destroy(engine);
		engine = NULL;
		/* widening keeps what earlier rounds loaded and adds to it */
		if (g == NULL)
		{
			g = graph_create(keep, kinds, nkinds);
			loaded = i64map_create(keep, 1024, NULL);
		}
		MemoryContextSwitchTo(g->mcxt);
		g->round = round;
		g->nrefusals = 0;
		for (i = 0; i < g->nnodes; i++)
			g->nodes[i].comp = 0;

		/* 1. the identifiers to recompute, then the links touching them */
		internal = true;
		if (full)
		{
			if (round == 0)
				for_each_row(g, "SELECT identifier_id, kind, value, profile_id FROM cdp.identifiers",
							 0, NULL, NULL, node_row, &internal);
		}
		else
		{
			Oid			argtypes[2] = {INT8ARRAYOID, INT8ARRAYOID};
			Datum		values[2];
			int64	   *sarr = palloc(sizeof(int64) * Max(S->members + T->members, 1));
			int64	   *tarr = palloc(sizeof(int64) * Max(T->members, 1));
			int			ns = 0;
			int			nt = 0;
			i64map_iterator it;
			I64Entry   *e;

			/*
			 * A few profiles out of many: index probes, never a scan of the
			 * whole graph (a large share takes the full path above).
			 */
			guc_level = NewGUCNestLevel();
			(void) set_config_option("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);
			(void) set_config_option("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);
			(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);

			i64map_start_iterate(S, &it);
			while ((e = i64map_iterate(S, &it)) != NULL)
				if (i64map_lookup(loaded, e->key) == NULL)
					sarr[ns++] = e->key;
			i64map_start_iterate(T, &it);
			while ((e = i64map_iterate(T, &it)) != NULL)
			{
				I64Entry   *x;

				/* the stage's new identifiers are not written yet */
				if (stage && (x = i64map_lookup(stage->g->byid, e->key)) != NULL)
				{
					int64		p = stage->g->nodes[x->val].old_profile;

					if (!stage->existed[x->val])
						continue;

					/*
					 * The stage looked its profile up: load that, without
					 * probing the identifier again.
					 */
					if (p != 0)
					{
						if (i64map_lookup(loaded, p) == NULL)
						{
							(void) i64map_insert(loaded, p, &found);
							sarr[ns++] = p;
						}
						continue;
					}
				}
				x = i64map_lookup(g->byid, e->key);
				if (x == NULL || !g->nodes[x->val].internal)
					tarr[nt++] = e->key;
			}
			values[0] = int8_array(sarr, ns);
			values[1] = int8_array(tarr, nt);
			/* joins with unnest(): the planner never walks the arrays */
			if (ns + nt > 0)
				for_each_row(g, "WITH t AS MATERIALIZED (SELECT i.identifier_id, i.kind, i.value, i.profile_id"
							 " FROM cdp.identifiers i JOIN unnest($2::int8[]) AS u(id)"
							 " ON i.identifier_id = u.id)"
							 " SELECT i.identifier_id, i.kind, i.value, i.profile_id"
							 " FROM cdp.identifiers i JOIN (SELECT id FROM unnest($1::int8[]) AS u(id)"
							 " UNION SELECT t.profile_id FROM t WHERE t.profile_id IS NOT NULL) p"
							 " ON i.profile_id = p.id"
							 " UNION ALL"
							 " SELECT * FROM t WHERE t.profile_id IS NULL",
							 2, argtypes, values, node_row, &internal);
		}
		phase_done("load identifiers");
		if (round == 0)
			stage_inject(g, stage);
		/* a recomputed identifier's profile is loaded whole */
		for (i = 0; i < g->nnodes; i++)
			if (g->nodes[i].internal && g->nodes[i].old_profile != 0)
			{
				(void) i64map_insert(S, g->nodes[i].old_profile, &found);
				(void) i64map_insert(loaded, g->nodes[i].old_profile, &found);
			}

		la.collect = false;
		la.sided = false;
		la.missing = NULL;
		la.a = la.b = NULL;
		la.at = NULL;
		la.n = la.cap = 0;
		if (full)
		{
			if (round == 0)
				for_each_row(g, "SELECT a, b, first_seen FROM cdp.identity_links",
							 0, NULL, NULL, link_row, &la);
		}
		else
		{
			Oid			argtypes[1] = {INT8ARRAYOID};
			Datum		values[1];
			int64	   *ids = palloc(sizeof(int64) * Max(g->nnodes, 1));
			int			nids = 0;
			uint64		k;

			/*
			 * Only the links of identifiers that joined in this round.  A new
			 * identifier's links are all new: those to a known identifier
			 * are found from that end (recomputed in this round too), those
			 * between two new ones are taken from the stage below.
			 */
			for (i = 0; i < g->nnodes; i++)
				if (g->nodes[i].internal && g->nodes[i].since == round &&
					g->nodes[i].pending < 0)
					ids[nids++] = g->nodes[i].id;
			values[0] = int8_array(ids, nids);
			/* far ends first, so that every link finds both its nodes */
			la.collect = true;
			la.missing = i64map_create(g->mcxt, 1024, NULL);
			/* a link between two of them comes twice: link_row drops one */
			la.sided = true;
			if (nids > 0 && 2.0 * nids >= LINK_SCAN_SHARE * link_rows())
				scanned_links = scan_round_links(g, &la);
			if (nids > 0 && !scanned_links)
				for_each_row(g, "SELECT l.a, l.b, l.first_seen, 1"
							 " FROM cdp.identity_links l JOIN unnest($1::int8[]) AS u(id) ON l.a = u.id"
							 " UNION ALL"
							 " SELECT l.a, l.b, l.first_seen, 2"
							 " FROM cdp.identity_links l JOIN unnest($1::int8[]) AS u(id) ON l.b = u.id",
							 1, argtypes, values, link_row, &la);
			if (la.missing->members > 0)
			{
				Datum		ext[1];
				int64	   *arr;
				int			n;
				bool		external = false;

				arr = set_to_array(la.missing, &n);
				ext[0] = int8_array(arr, n);
				for_each_row(g, "SELECT i.identifier_id, i.kind, i.value, i.profile_id"
							 " FROM cdp.identifiers i JOIN unnest($1::int8[]) AS u(id)"
							 " ON i.identifier_id = u.id",
							 1, argtypes, ext, node_row, &external);
			}
			for (k = 0; k < la.n; k++)
				add_link(g, la.a[k], la.b[k], la.at[k]);
			if (round == 0 && stage)
				for (k = 0; k < stage->nlinks; k++)
				{
					StageLink  *sl = &stage->links[k];

					if (sl->inserted && !stage->existed[sl->a] && !stage->existed[sl->b])
						add_link(g, stage->g->nodes[sl->a].id, stage->g->nodes[sl->b].id,
								 sl->first_seen);
				}
			AtEOXact_GUC(true, guc_level);
		}
		phase_done(scanned_links ? "load links (one pass over the table)" : "load links");
		n_internal = 0;
		for (i = 0; i < g->nnodes; i++)
			if (g->nodes[i].internal)
				n_internal++;

		/* "together" reaching outside the set: take the other profile in */
		for (o = 0; o < noverrides; o++)
		{
			I64Entry   *ea = i64map_lookup(g->byid, overrides[o].a);
			I64Entry   *eb = i64map_lookup(g->byid, overrides[o].b);
			bool		ia = ea && g->nodes[ea->val].internal;
			bool		ib = eb && g->nodes[eb->val].internal;

			if (!overrides[o].together || ia == ib || full)
				continue;
			if (ia && eb && g->nodes[eb->val].old_profile != 0)
				(void) i64map_insert(S, g->nodes[eb->val].old_profile, &found);
			else if (ia)
				(void) i64map_insert(T, overrides[o].b, &found);
			else if (ea && g->nodes[ea->val].old_profile != 0)
				(void) i64map_insert(S, g->nodes[ea->val].old_profile, &found);
			else
				(void) i64map_insert(T, overrides[o].a, &found);
			expanded = true;
		}
		if (expanded)
			continue;

		/* 2. stitch: "apart" pairs get a kind of their own, limit 1 */
		initStringInfo(&apart);
		appendStringInfoChar(&apart, '{');
		for (o = 0; o < noverrides; o++)
			if (!overrides[o].together &&
				i64map_lookup(g->byid, overrides[o].a) &&
				i64map_lookup(g->byid, overrides[o].b))
			{
				if (napart++ > 0)
					appendStringInfoString(&apart, ", ");
				appendStringInfo(&apart, "\"%s%d\": 1", APART_PREFIX, o);
			}
		appendStringInfoChar(&apart, '}');
		if (napart > 0)
		{
			Oid			argtypes[2] = {JSONBOID, TEXTOID};
			Datum		values[2];
			char		nulls[2] = {base_rules ? ' ' : 'n', ' '};
			bool		isnull;

			values[0] = base_rules ? JsonbPGetDatum(base_rules) : (Datum) 0;
			values[1] = CStringGetTextDatum(apart.data);
			if (SPI_execute_with_args("SELECT coalesce($1, '{}') || jsonb_build_object('limits',"
									  " coalesce($1->'limits', '{}') || $2::jsonb)",
									  2, argtypes, values, nulls, true, 1) != SPI_OK_SELECT)
				elog(ERROR, "could not build the override rules");
			rules = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 1, &isnull));
		}
		parsed = stitch_rules_parse(rules);
		engine = stitch_create(parsed);
		if (suppressed)
			stitch_set_filter(engine, suppress_filter, suppressed);
		g->engine_kind = palloc(sizeof(int) * (g->nkinds + 1));
		for (i = 0; i < (uint32) g->nkinds; i++)
			g->engine_kind[i] = stitch_kind(engine, g->kinds[i]);
		for (i = 0; i < g->nnodes; i++)
		{
			const char *v = g->nodes[i].value;
			int			len = g->nodes[i].len;
			int			k = g->engine_kind[g->nodes[i].kind];

			stitch_add_row(engine, 1, &k, &v, &len, 0, true);
		}
		for (o = 0, napart = 0; o < noverrides; o++)
		{
			I64Entry   *ea = i64map_lookup(g->byid, overrides[o].a);
			I64Entry   *eb = i64map_lookup(g->byid, overrides[o].b);
			int			k[2];
			const char *v[2];
			int			len[2];

			if (overrides[o].together || !ea || !eb)
				continue;
			k[1] = stitch_kind(engine, psprintf("%s%d", APART_PREFIX, o));
			len[1] = 1;
			k[0] = g->engine_kind[g->nodes[ea->val].kind];
			v[0] = g->nodes[ea->val].value;
			len[0] = g->nodes[ea->val].len;
			v[1] = "1";
			stitch_add_row(engine, 2, k, v, len, DT_NOBEGIN, false);
			k[0] = g->engine_kind[g->nodes[eb->val].kind];
			v[0] = g->nodes[eb->val].value;
			len[0] = g->nodes[eb->val].len;
			v[1] = "2";
			stitch_add_row(engine, 2, k, v, len, DT_NOBEGIN, false);
		}
		for (i = 0; i < g->nlinks; i++)
		{
			const GNode *a = &g->nodes[g->links[i].a];
			const GNode *b = &g->nodes[g->links[i].b];
			int			k[2] = {g->engine_kind[a->kind], g->engine_kind[b->kind]};
			const char *v[2] = {a->value, b->value};
			int			len[2] = {a->len, b->len};

			stitch_add_row(engine, 2, k, v, len, g->links[i].first_seen, false);
		}
		stitch_finish(engine);
		stitch_foreach_identifier(engine, identifier_cb, g);
		stitch_foreach_refusal(engine, refusal_cb, g);
		phase_done("stitch");
		{
			StitchStats st;

			stitch_get_stats(engine, &st);
			ncomps = (int32) st.profiles;
		}

		/* "together" pairs: merge their components */
		parent = palloc(sizeof(int32) * (ncomps + 1));
		for (i = 0; i <= (uint32) ncomps; i++)
			parent[i] = (int32) i;
		for (o = 0; o < noverrides; o++)
		{
			I64Entry   *ea = i64map_lookup(g->byid, overrides[o].a);
			I64Entry   *eb = i64map_lookup(g->byid, overrides[o].b);
			int32		ca,
						cb;

			if (!overrides[o].together || !ea || !eb)
				continue;
			ca = g->nodes[ea->val].comp;
			cb = g->nodes[eb->val].comp;
			if (ca == 0 || cb == 0)
				continue;
			ca = comp_find(parent, ca);
			cb = comp_find(parent, cb);
			if (ca != cb)
				parent[Max(ca, cb)] = Min(ca, cb);
		}
		for (i = 0; i < g->nnodes; i++)
			if (g->nodes[i].comp != 0)
				g->nodes[i].comp = comp_find(parent, g->nodes[i].comp);

		/* 3. a far end pulled into a recomputed component: widen the set */
		has_internal = palloc0(sizeof(bool) * (ncomps + 1));
		for (i = 0; i < g->nnodes; i++)
			if (g->nodes[i].internal && g->nodes[i].comp != 0)
				has_internal[g->nodes[i].comp] = true;
		for (i = 0; i < g->nnodes; i++)
		{
			GNode	   *n = &g->nodes[i];

			if (n->internal || n->comp == 0 || !has_internal[n->comp])
				continue;
			if (n->old_profile != 0)
				(void) i64map_insert(S, n->old_profile, &found);
			else
				(void) i64map_insert(T, n->id, &found);
			expanded = true;
		}
		if (!expanded)
			break;
	}

	/* 4. stable ids */
	{
		Pair	   *pairs = palloc(sizeof(Pair) * Max(g->nnodes, 1));
		int64		npairs = 0;
		int64	   *comp_id = palloc0(sizeof(int64) * (ncomps + 1));
		int32	   *comp_count = palloc0(sizeof(int32) * (ncomps + 1));
		bool	   *comp_changed = palloc0(sizeof(bool) * (ncomps + 1));
		i64map_hash *claim = i64map_create(g->mcxt, 64, NULL);	/* profile -> comp */
		i64map_hash *merged = i64map_create(g->mcxt, 64, NULL);	/* profile -> event */
		Event	   *events;
		int			nevents = 0;
		int			evcap = 64;
		int64		p,
					q;
		uint32		i;
		bool		found;
		int32		nnew = 0;

		events = palloc(sizeof(Event) * evcap);
		for (i = 0; i < g->nnodes; i++)
		{
			GNode	   *n = &g->nodes[i];

			if (!n->internal)
				continue;
			if (n->comp != 0)
				comp_count[n->comp]++;
			if (n->old_profile != 0 && n->comp != 0)
			{
				pairs[npairs].profile = n->old_profile;
				pairs[npairs].comp = n->comp;
				pairs[npairs].count = 1;
				npairs++;
			}
		}
		qsort(pairs, npairs, sizeof(Pair), pair_cmp);
		/* run-length: one pair per (profile, comp) with its count */
		for (p = 0, q = 0; p < npairs; p++)
		{
			if (q > 0 && pairs[q - 1].profile == pairs[p].profile &&
				pairs[q - 1].comp == pairs[p].comp)
				pairs[q - 1].count++;
			else
				pairs[q++] = pairs[p];
		}
		npairs = q;
		/* each old profile claims the component with most of its members */
		for (p = 0; p < npairs;)
		{
			int64		e = p;
			int64		best = p;

			while (e < npairs && pairs[e].profile == pairs[p].profile)
			{
				if (pairs[e].count > pairs[best].count)
					best = e;
				e++;
			}
			i64map_insert(claim, pairs[p].profile, &found)->val = pairs[best].comp;
			if (comp_id[pairs[best].comp] == 0 || pairs[p].profile < comp_id[pairs[best].comp])
				comp_id[pairs[best].comp] = pairs[p].profile;
			p = e;
		}
		/* components nobody claims: new ids, in the engine's order */
		for (i = 1; i <= (uint32) ncomps; i++)
			if (comp_count[i] > 0 && comp_id[i] == 0)
				nnew++;
		if (nnew > 0)
		{
			Oid			argtypes[1] = {INT4OID};
			Datum		values[1] = {Int32GetDatum(nnew)};
			uint64		k = 0;

			if (SPI_execute_with_args("SELECT nextval('cdp.profile_id_seq') FROM generate_series(1, $1)",
									  1, argtypes, values, NULL, false, 0) != SPI_OK_SELECT ||
				SPI_processed != (uint64) nnew)
				elog(ERROR, "could not allocate profile ids");
			for (i = 1; i <= (uint32) ncomps; i++)
				if (comp_count[i] > 0 && comp_id[i] == 0)
				{
					bool		isnull;

					comp_id[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[k++],
															 SPI_tuptable->tupdesc, 1, &isnull));
					comp_changed[i] = true;
				}
			n_created = nnew;
		}
		/* events: merges into the claimed component, splits elsewhere */
		for (p = 0; p < npairs; p++)
		{
			I64Entry   *c = i64map_lookup(claim, pairs[p].profile);
			int64		target = comp_id[pairs[p].comp];
			Event	   *ev;

			if (target == pairs[p].profile)
				continue;
			comp_changed[pairs[p].comp] = true;
			if (nevents == evcap)
			{
				evcap *= 2;
				events = repalloc(events, sizeof(Event) * evcap);
			}
			ev = &events[nevents];
			memset(ev, 0, sizeof(Event));
			ev->old_id = pairs[p].profile;
			ev->new_id = target;
			if (c->val == pairs[p].comp)
			{
				ev->event = "merge";
				i64map_insert(merged, pairs[p].profile, &found)->val = nevents;
				n_merged++;
			}
			else
			{
				ev->event = "split";
				comp_changed[c->val] = true;
				n_split++;
			}
			nevents++;
		}
		/* profiles left without any identifier */
		{
			i64map_iterator it;
			I64Entry   *e;

			i64map_start_iterate(S, &it);
			while ((e = i64map_iterate(S, &it)) != NULL)
			{
				if (i64map_lookup(claim, e->key) != NULL)
					continue;
				if (nevents == evcap)
				{
					evcap *= 2;
					events = repalloc(events, sizeof(Event) * evcap);
				}
				memset(&events[nevents], 0, sizeof(Event));
				events[nevents].event = "delete";
				events[nevents].old_id = e->key;
				nevents++;
				n_deleted++;
			}
			/* in a full rebuild S is empty: find them in the loaded rows */
			for (i = 0; full && i < g->nnodes; i++)
			{
				int64		op = g->nodes[i].old_profile;

				if (op == 0 || i64map_lookup(claim, op) != NULL)
					continue;
				i64map_insert(claim, op, &found)->val = 0;
				if (nevents == evcap)
				{
					evcap *= 2;
					events = repalloc(events, sizeof(Event) * evcap);
				}
				memset(&events[nevents], 0, sizeof(Event));
				events[nevents].event = "delete";
				events[nevents].old_id = op;
				nevents++;
				n_deleted++;
			}
		}
		/* the newest link that joined a merged profile to its survivor */
		if (merged->members > 0)
			for (i = 0; i < g->nlinks; i++)
			{
				GNode	   *a = &g->nodes[g->links[i].a];
				GNode	   *b = &g->nodes[g->links[i].b];
				int			side;

				if (!a->internal || !b->internal || a->comp == 0 || a->comp != b->comp ||
					a->old_profile == b->old_profile)
					continue;
				for (side = 0; side < 2; side++)
				{
					int64		op = side == 0 ? a->old_profile : b->old_profile;
					I64Entry   *m = op ? i64map_lookup(merged, op) : NULL;
					Event	   *ev;

					if (m == NULL)
						continue;
					ev = &events[m->val];
					if (ev->link_a == 0 || g->links[i].first_seen > ev->link_at)
					{
						ev->link_a = Min(a->id, b->id);
						ev->link_b = Max(a->id, b->id);
						ev->link_at = g->links[i].first_seen;
					}
				}
			}

		phase_done("stable ids");
		/* write: identifiers whose profile changed */
		{
			int64	   *ids = palloc(sizeof(int64) * Max(g->nnodes, 1));
			int64	   *profs = palloc(sizeof(int64) * Max(g->nnodes, 1));
			int			n = 0;

			for (i = 0; i < g->nnodes; i++)
			{
				GNode	   *nd = &g->nodes[i];
				int64		np = nd->comp ? comp_id[nd->comp] : 0;

				if (nd->pending >= 0)
				{
					/* new: inserted below, with its profile */
					if (nd->comp)
						comp_changed[nd->comp] = true;
					continue;
				}
				if (!nd->internal || np == nd->old_profile)
					continue;
				if (nd->comp)
					comp_changed[nd->comp] = true;
				ids[n] = nd->id;
				profs[n] = np;
				n++;
			}
			if (n > 0)
			{
				Oid			argtypes[2] = {INT8ARRAYOID, INT8ARRAYOID};
				Datum		values[2];

				values[0] = int8_array(ids, n);
				values[1] = int8_array(profs, n);
				if (SPI_execute_with_args("UPDATE cdp.identifiers i SET profile_id = nullif(u.p, 0)"
										  " FROM unnest($1::int8[], $2::int8[]) AS u(id, p)"
										  " WHERE i.identifier_id = u.id",
										  2, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE)
					elog(ERROR, "could not update cdp.identifiers");
			}
		}
		phase_done("update profile ids");
		/* write: new identifiers, with their profile */
		if (stage)
			stage_write_identifiers(stage, g, comp_id);
		phase_done("insert new identifiers");
		/* write: profiles */
		{
			int64	   *gone = palloc(sizeof(int64) * Max(nevents, 1));
			int			ngone = 0;
			int64	   *ids = palloc(sizeof(int64) * (ncomps + 1));
			int64	   *counts = palloc(sizeof(int64) * (ncomps + 1));
			int			n = 0;
			int			e;

			for (e = 0; e < nevents; e++)
				if (strcmp(events[e].event, "split") != 0)
					gone[ngone++] = events[e].old_id;
			if (ngone > 0)
			{
				Oid			argtypes[1] = {INT8ARRAYOID};
				Datum		values[1] = {int8_array(gone, ngone)};

				if (SPI_execute_with_args("DELETE FROM cdp.profiles p USING unnest($1::int8[]) AS u(id)"
										  " WHERE p.profile_id = u.id",
										  1, argtypes, values, NULL, false, 0) != SPI_OK_DELETE)
					elog(ERROR, "could not update cdp.profiles");
			}
			for (i = 1; i <= (uint32) ncomps; i++)
				if (comp_count[i] > 0 &&
					(comp_changed[i] || i64map_lookup(given, comp_id[i]) != NULL))
				{
					ids[n] = comp_id[i];
					counts[n] = comp_count[i];
					n++;
				}
			if (n > 0)
			{
				Oid			argtypes[2] = {INT8ARRAYOID, INT8ARRAYOID};
				Datum		values[2];

				values[0] = int8_array(ids, n);
				values[1] = int8_array(counts, n);
				if (SPI_execute_with_args("INSERT INTO cdp.profiles AS p"
										  " (profile_id, created_at, updated_at, identifier_count)"
										  " SELECT u.id, now(), now(), u.n"
										  " FROM unnest($1::int8[], $2::int8[]) AS u(id, n)"
										  " ON CONFLICT (profile_id) DO UPDATE"
										  " SET identifier_count = excluded.identifier_count,"
										  " updated_at = excluded.updated_at",
										  2, argtypes, values, NULL, false, 0) != SPI_OK_INSERT)
					elog(ERROR, "could not update cdp.profiles");
			}
		}
		phase_done("write profiles");
		/* write: lineage */
		if (nevents > 0)
		{
			int64	   *olds = palloc(sizeof(int64) * nevents);
			int64	   *news = palloc(sizeof(int64) * nevents);
			int64	   *la = palloc(sizeof(int64) * nevents);
			int64	   *lb = palloc(sizeof(int64) * nevents);
			char	  **evs = palloc(sizeof(char *) * nevents);
			Oid			argtypes[7] = {INT8OID, TEXTOID, TEXTARRAYOID, INT8ARRAYOID,
			INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
			Datum		values[7];
			int			e;

			for (e = 0; e < nevents; e++)
			{
				evs[e] = (char *) events[e].event;
				olds[e] = events[e].old_id;
				news[e] = events[e].new_id;
				la[e] = events[e].link_a;
				lb[e] = events[e].link_b;
			}
			values[0] = Int64GetDatum(run_id);
			values[1] = CStringGetTextDatum(cause);
			values[2] = text_array(evs, NULL, nevents);
			values[3] = int8_array(olds, nevents);
			values[4] = int8_array(news, nevents);
			values[5] = int8_array(la, nevents);
			values[6] = int8_array(lb, nevents);
			if (SPI_execute_with_args("INSERT INTO cdp.profile_lineage"
									  " (run_id, at, event, old_profile_id, new_profile_id, link_a, link_b, cause)"
									  " SELECT $1, now(), u.e, u.o, nullif(u.n, 0), nullif(u.a, 0), nullif(u.b, 0), $2"
									  " FROM unnest($3::text[], $4::int8[], $5::int8[], $6::int8[], $7::int8[])"
									  " WITH ORDINALITY AS u(e, o, n, a, b, ord) ORDER BY u.ord",
									  7, argtypes, values, NULL, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "could not update cdp.profile_lineage");
		}
		/* write: refusals of the recomputed identifiers */
		{
			Oid			argtypes[1] = {INT8ARRAYOID};
			Datum		values[1];

			if (full)
			{
				if (SPI_execute("DELETE FROM cdp.identity_refusals", false, 0) != SPI_OK_DELETE)
					elog(ERROR, "could not update cdp.identity_refusals");
			}
			else
			{
				int64	   *ids = palloc(sizeof(int64) * Max(g->nnodes, 1));
				int			n = 0;

				for (i = 0; i < g->nnodes; i++)
					if (g->nodes[i].internal)
						ids[n++] = g->nodes[i].id;
				values[0] = int8_array(ids, n);
				if (SPI_execute_with_args("DELETE FROM cdp.identity_refusals r USING unnest($1::int8[]) AS u(id)"
										  " WHERE r.identifier_id = u.id",
										  1, argtypes, values, NULL, false, 0) != SPI_OK_DELETE)
					elog(ERROR, "could not update cdp.identity_refusals");
			}
		}
		if (g->nrefusals > 0)
		{
			int			nr = g->nrefusals;
			int64	   *ids = palloc(sizeof(int64) * nr);
			char	  **k = palloc(sizeof(char *) * nr);
			char	  **v = palloc(sizeof(char *) * nr);
			char	  **reason = palloc(sizeof(char *) * nr);
			char	  **lk = palloc(sizeof(char *) * nr);
			char	  **lv = palloc(sizeof(char *) * nr);
			bool	   *lnull = palloc(sizeof(bool) * nr);
			char	  **at = palloc(sizeof(char *) * nr);
			bool	   *atnull = palloc(sizeof(bool) * nr);
			char	  **detail = palloc(sizeof(char *) * nr);
			bool	   *dnull = palloc(sizeof(bool) * nr);
			Oid			argtypes[9] = {INT8OID, INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
				TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
			Datum		values[9];
			int			r;

			for (r = 0; r < nr; r++)
			{
				GRefusal   *rf = &g->refusals[r];
				GNode	   *nd = &g->nodes[rf->node];

				ids[r] = nd->id;
				k[r] = g->kinds[nd->kind];
				v[r] = (char *) nd->value;
				reason[r] = (char *) rf->reason;
				lk[r] = rf->linked_kind;
				lv[r] = rf->linked_value;
				lnull[r] = rf->linked_kind == NULL;
				at[r] = NULL;
				if (rf->has_at)
					at[r] = DatumGetCString(DirectFunctionCall1(timestamptz_out,
																TimestampTzGetDatum(rf->at)));
				atnull[r] = !rf->has_at;
				detail[r] = rf->detail;
				dnull[r] = rf->detail == NULL;
			}
			values[0] = Int64GetDatum(run_id);
			values[1] = int8_array(ids, nr);
			values[2] = text_array(k, NULL, nr);
			values[3] = text_array(v, NULL, nr);
			values[4] = text_array(reason, NULL, nr);
			values[5] = text_array(lk, lnull, nr);
			values[6] = text_array(lv, lnull, nr);
			values[7] = text_array(at, atnull, nr);
			values[8] = text_array(detail, dnull, nr);
			if (SPI_execute_with_args("INSERT INTO cdp.identity_refusals"
									  " (identifier_id, kind, value, reason, linked_kind, linked_value, at, detail, run_id)"
									  " SELECT u.i, u.k, u.v, u.r, u.lk, u.lv, u.at::timestamptz, u.d, $1"
									  " FROM unnest($2::int8[], $3::text[], $4::text[], $5::text[],"
									  " $6::text[], $7::text[], $8::text[], $9::text[])"
									  " AS u(i, k, v, r, lk, lv, at, d)",
									  9, argtypes, values, NULL, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "could not update cdp.identity_refusals");
		}

		phase_done("write lineage and refusals");
		/* refusals by reason, as jsonb (a handful of distinct reasons) */
		{
			StringInfoData buf;
			const char **names = palloc(sizeof(char *) * Max(g->nrefusals, 1));
			int64	   *counts = palloc0(sizeof(int64) * Max(g->nrefusals, 1));
			int			nnames = 0;
			int			r,
						k;

			for (r = 0; r < g->nrefusals; r++)
			{
				for (k = 0; k < nnames; k++)
					if (strcmp(names[k], g->refusals[r].reason) == 0)
						break;
				if (k == nnames)
					names[nnames++] = g->refusals[r].reason;
				counts[k]++;
			}
			initStringInfo(&buf);
			appendStringInfoChar(&buf, '{');
			for (k = 0; k < nnames; k++)
			{
				if (k > 0)
					appendStringInfoString(&buf, ", ");
				escape_json(&buf, names[k]);
				appendStringInfo(&buf, ": " INT64_FORMAT, counts[k]);
			}
			appendStringInfoChar(&buf, '}');
			MemoryContextSwitchTo(outer);
			result[5] = DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
		}
	}

	MemoryContextSwitchTo(outer);
	result[0] = Int64GetDatum(n_internal);
	result[1] = Int64GetDatum(n_created);
	result[2] = Int64GetDatum(n_merged);
	result[3] = Int64GetDatum(n_split);
	result[4] = Int64GetDatum(n_deleted);
	if (engine)
		stitch_destroy(engine);
	MemoryContextDelete(keep);
	SPI_finish();
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(rdesc, result, rnulls)));
}
