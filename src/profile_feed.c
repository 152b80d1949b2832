/*-------------------------------------------------------------------------
 *
 * profile_feed.c
 *	  Reading the trait and event feeds of the maintained profile view:
 *	  cdp.profile_read_feed() and cdp.profile_check_feed().
 *
 * A feed query runs with the privileges of the role that registered it
 * and the search_path it was registered with, never those of whoever runs
 * cdp.refresh_profiles() (a scheduled job usually runs as a superuser).
 * As REFRESH MATERIALIZED VIEW and the identity graph's sources do, the
 * user id is switched with SECURITY_RESTRICTED_OPERATION and search_path
 * lives in its own GUC nest level; an error restores both through
 * (sub)transaction abort.
 *
 * Columns are matched by name; a feed of kind "traits" returns (kind,
 * value, attributes jsonb, at timestamptz [, priority int]), one of kind
 * "events" returns (kind, value, event, at timestamptz [, amount float8]).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/portal.h"
#include "utils/tuplestore.h"

#include "run_as.h"

/* output columns of cdp.profile_read_feed() */
enum
{
	OUT_KIND,
	OUT_VALUE,
	OUT_ATTRIBUTES,
	OUT_AT,
	OUT_PRIORITY,
	OUT_EVENT,
	OUT_AMOUNT,
	OUT_NCOLS
};

typedef struct FeedColumn
{
	const char *name;
	Oid			type;			/* TEXTOID also accepts varchar */
	const char *type_name;
	bool		traits;			/* part of a traits feed */
	bool		events;			/* part of an events feed */
	bool		required;
} FeedColumn;

static const FeedColumn feed_columns[OUT_NCOLS] = {
	{"kind", TEXTOID, "text", true, true, true},
	{"value", TEXTOID, "text", true, true, true},
	{"attributes", JSONBOID, "jsonb", true, false, true},
	{"at", TIMESTAMPTZOID, "timestamp with time zone", true, true, true},
	{"priority", INT4OID, "integer", true, false, false},
	{"event", TEXTOID, "text", false, true, true},
	{"amount", FLOAT8OID, "double precision", false, true, false},
};

typedef struct Feed
{
	char	   *name;
	bool		traits;
	char	   *query;
	char	   *search_path;
	Oid			owner;
	int			col[OUT_NCOLS]; /* 0-based column of the result, -1: none */
} Feed;

static void
feed_error_callback(void *arg)
{
	errcontext("profile feed \"%s\"", ((Feed *) arg)->name);
}

/* The registered feed, read through SPI (caller is connected). */
static Feed *
load_feed(const char *name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	HeapTuple	tup;
	TupleDesc	desc;
	Feed	   *f;
	bool		isnull;

	values[0] = CStringGetTextDatum(name);
	if (SPI_execute_with_args("SELECT feed, query, search_path, owner::oid"
							  " FROM cdp.profile_feeds WHERE name = $1",
							  1, argtypes, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read cdp.profile_feeds");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("profile feed \"%s\" does not exist", name),
				 errhint("Register it with cdp.add_trait_feed() or cdp.add_event_feed().")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	f = palloc0(sizeof(Feed));
	f->name = pstrdup(name);
	f->traits = strcmp(SPI_getvalue(tup, desc, 1), "traits") == 0;
	f->query = SPI_getvalue(tup, desc, 2);
	f->search_path = SPI_getvalue(tup, desc, 3);
	f->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
	return f;
}

/*
 * Open the feed's query as a read-only cursor as its owner, and match its
 * columns.  The caller ends the owner's context with cdp_restore_role().
 */
static char *
feed_sql(Feed *f)
{
	return psprintf("SELECT * FROM (%s\n) AS cdp_feed", f->query);
}

/* Match the feed's result columns to the output columns, by name. */
static void
match_columns(Feed *f, TupleDesc desc)
{
	int			i;

	if (desc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("profile feed \"%s\" does not return rows", f->name),
				 errhint("Write a SELECT.")));

	for (i = 0; i < OUT_NCOLS; i++)
		f->col[i] = -1;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *name = NameStr(att->attname);
		int			c;

		if (att->attisdropped)
			continue;
		for (c = 0; c < OUT_NCOLS; c++)
			if (strcmp(name, feed_columns[c].name) == 0 &&
				(f->traits ? feed_columns[c].traits : feed_columns[c].events))
				break;
		if (c == OUT_NCOLS)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of profile feed \"%s\" is not a column of %s feeds",
							name, f->name, f->traits ? "trait" : "event"),
					 errhint("%s", f->traits ?
							 "A trait feed returns kind text, value text, attributes jsonb, at timestamptz and optionally priority integer." :
							 "An event feed returns kind text, value text, event text, at timestamptz and optionally amount double precision.")));
		if (f->col[c] >= 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_COLUMN),
					 errmsg("column \"%s\" appears twice in profile feed \"%s\"",
							name, f->name)));
		if (att->atttypid != feed_columns[c].type &&
			!(feed_columns[c].type == TEXTOID && att->atttypid == VARCHAROID))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" of profile feed \"%s\" is of type %s, not %s",
							name, f->name, format_type_be(att->atttypid),
							feed_columns[c].type_name),
					 errhint("Cast it in the query: ... AS %s must be %s.",
							 name, feed_columns[c].type_name)));
		f->col[c] = i;
	}
	for (i = 0; i < OUT_NCOLS; i++)
		if (f->col[i] < 0 && feed_columns[i].required &&
			(f->traits ? feed_columns[i].traits : feed_columns[i].events))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("profile feed \"%s\" has no column \"%s\"",
							f->name, feed_columns[i].name),
					 errhint("Return a column named \"%s\" of type %s.",
							 feed_columns[i].name, feed_columns[i].type_name)));
}

/*
 * Open the feed's query as a read-only cursor as its owner, which plans it
 * and starts its executor (checking privileges) without reading a row.
 * The caller ends the owner's context with cdp_restore_role().
 */
static Portal
open_feed(Feed *f, CdpRoleSwitch *rs)
{
	Portal		portal;

	cdp_switch_role(rs, f->owner, true, f->search_path);
	portal = SPI_cursor_open_with_args(NULL, feed_sql(f), 0, NULL, NULL, NULL, true, 0);
	match_columns(f, portal->tupDesc);
	return portal;
}

/*
 * Rows of a feed go straight from its executor into the function's
 * tuplestore: no SPI tuple table in between, and the feed's plan may use
 * parallel workers since it runs to completion.
 */
typedef struct FeedReceiver
{
	DestReceiver pub;
	Feed	   *feed;
	Tuplestorestate *store;
	TupleDesc	outdesc;
	uint64		rows;
} FeedReceiver;

static bool
feed_receive(TupleTableSlot *slot, DestReceiver *self)
{
	FeedReceiver *rc = (FeedReceiver *) self;
	Feed	   *f = rc->feed;
	Datum		out[OUT_NCOLS];
	bool		nulls[OUT_NCOLS];
	int			c;

	slot_getallattrs(slot);
	/* varchar shares text's representation: no conversion */
	for (c = 0; c < OUT_NCOLS; c++)
	{
		if (f->col[c] < 0)
		{
			out[c] = (Datum) 0;
			nulls[c] = true;
		}
		else
		{
			out[c] = slot->tts_values[f->col[c]];
			nulls[c] = slot->tts_isnull[f->col[c]];
		}
	}
	tuplestore_putvalues(rc->store, rc->outdesc, out, nulls);
	rc->rows++;
	return true;
}

static void
feed_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
feed_shutdown(DestReceiver *self)
{
}

static void
feed_destroy(DestReceiver *self)
{
}

/* Run the feed to completion as its owner into store; returns its rows. */
static uint64
read_feed(Feed *f, Tuplestorestate *store, TupleDesc outdesc)
{
	CdpRoleSwitch rs;
	SPIPlanPtr	plan;
	CachedPlanSource *ps;
	SPIExecuteOptions opts;
	FeedReceiver rc;
	int			ret;

	cdp_switch_role(&rs, f->owner, true, f->search_path);
	plan = SPI_prepare_cursor(feed_sql(f), 0, NULL, CURSOR_OPT_PARALLEL_OK);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	/* the wrapping subquery admits one SELECT only */
	ps = linitial(SPI_plan_get_plan_sources(plan));
	match_columns(f, ps->resultDesc);

	memset(&rc, 0, sizeof(rc));
	rc.pub.receiveSlot = feed_receive;
	rc.pub.rStartup = feed_startup;
	rc.pub.rShutdown = feed_shutdown;
	rc.pub.rDestroy = feed_destroy;
	rc.pub.mydest = DestNone;
	rc.feed = f;
	rc.store = store;
	rc.outdesc = outdesc;

	memset(&opts, 0, sizeof(opts));
	opts.dest = (DestReceiver *) &rc;
	opts.read_only = true;
	ret = SPI_execute_plan_extended(plan, &opts);
	if (ret < 0)
		elog(ERROR, "SPI_execute_plan_extended failed: %s", SPI_result_code_string(ret));
	SPI_freeplan(plan);
	cdp_restore_role(&rs);
	return rc.rows;
}


/* cdp.profile_read_feed(feed): the feed's rows, read as its owner */
PG_FUNCTION_INFO_V1(cdp_profile_read_feed);
Datum
cdp_profile_read_feed(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Feed	   *f;
	ErrorContextCallback errcb;
	uint64		rows;

	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	f = load_feed(name);
	errcb.callback = feed_error_callback;
	errcb.arg = f;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	rows = read_feed(f, rsinfo->setResult, rsinfo->setDesc);
	error_context_stack = errcb.previous;

	/* bookkeeping, as the refresh's own role */
	{
		Oid			argtypes[2] = {INT8OID, TEXTOID};
		Datum		values[2];

		values[0] = Int64GetDatum((int64) rows);
		values[1] = CStringGetTextDatum(name);
		if (SPI_execute_with_args("UPDATE cdp.profile_feeds SET last_read_at = now(),"
								  " last_rows_read = $1 WHERE name = $2",
								  2, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update cdp.profile_feeds");
	}
	SPI_finish();
	return (Datum) 0;
}

/* cdp.profile_check_feed(feed): plan and start the feed as its owner */
PG_FUNCTION_INFO_V1(cdp_profile_check_feed);
Datum
cdp_profile_check_feed(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Feed	   *f;
	Portal		portal;
	ErrorContextCallback errcb;
	CdpRoleSwitch rs;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	f = load_feed(name);
	errcb.callback = feed_error_callback;
	errcb.arg = f;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	/* opening the cursor checks privileges; nothing is fetched */
	portal = open_feed(f, &rs);
	SPI_cursor_close(portal);
	cdp_restore_role(&rs);
	error_context_stack = errcb.previous;
	SPI_finish();
	PG_RETURN_VOID();
}
