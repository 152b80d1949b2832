/*-------------------------------------------------------------------------
 *
 * identity_source.c
 *	  Reading the sources of the managed identity graph:
 *	  cdp.identity_read_source() and cdp.identity_source_kinds().
 *
 * A source query runs with the privileges of the role that registered it
 * and the search_path it was registered with, not those of whoever runs
 * the refresh (a scheduled job usually runs as a superuser).  As REFRESH
 * MATERIALIZED VIEW does, the user id is switched with
 * SECURITY_RESTRICTED_OPERATION and the GUC changes live in their own nest
 * level; an error restores both through transaction (or subtransaction)
 * abort.
 *
 * The user's query is wrapped as a subquery; only rows past the stored
 * watermark are read, with the watermark passed as a typed parameter.
 * Erased identifiers (their SHA-256 in cdp.identity_suppressed) are dropped
 * here, before they reach any table.
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
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/tuplestore.h"
#include "utils/typcache.h"

#include "normalize.h"
#include "run_as.h"

#define FETCH_BATCH 10000
#define SUPPRESS_KEYLEN (NAMEDATALEN + 1 + 64 + 1)

typedef struct Source
{
	char	   *name;
	char	   *query;
	char	   *watermark;		/* column name, or NULL */
	char	   *watermark_value;	/* text, or NULL before the first read */
	char	   *search_path;
	Oid			owner;
} Source;

typedef struct SourceShape
{
	TupleDesc	desc;
	int			at_col;			/* -1: none */
	int			wm_col;			/* -1: none */
	int			nids;
	int		   *cols;
	char	  **kinds;
	FmgrInfo   *outfn;
	bool	   *is_text;
} SourceShape;

typedef CdpRoleSwitch SourceRun;

static void
source_error_callback(void *arg)
{
	errcontext("identity source \"%s\"", ((Source *) arg)->name);
}

/* The registered source, read through SPI (caller is connected). */
static Source *
load_source(const char *name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	HeapTuple	tup;
	TupleDesc	desc;
	Source	   *s;
	bool		isnull;

	values[0] = CStringGetTextDatum(name);
	if (SPI_execute_with_args("SELECT query, watermark, watermark_value, search_path, owner::oid"
							  " FROM cdp.identity_sources WHERE name = $1",
							  1, argtypes, values, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read cdp.identity_sources");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("identity source \"%s\" does not exist", name),
				 errhint("Register it with cdp.add_source().")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	s = palloc0(sizeof(Source));
	s->name = pstrdup(name);
	s->query = SPI_getvalue(tup, desc, 1);
	s->watermark = SPI_getvalue(tup, desc, 2);
	s->watermark_value = SPI_getvalue(tup, desc, 3);
	s->search_path = SPI_getvalue(tup, desc, 4);
	s->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
	return s;
}

/* Become the source's owner, with its search_path, until end_as_owner(). */
static void
begin_as_owner(Source *s, SourceRun *run)
{
	cdp_switch_role(run, s->owner, true, s->search_path);
	/* the stored watermark is text: write and read it in one fixed style */
	cdp_set_local_guc("datestyle", "ISO, MDY");
	cdp_set_local_guc("intervalstyle", "postgres");
	cdp_set_local_guc("extra_float_digits", "3");
}

static void
end_as_owner(SourceRun *run)
{
	cdp_restore_role(run);
}

/*
 * Open the source's query as a read-only cursor: whole, or only past the
 * watermark when one is known.  Checks the shape of its result.
 */
static Portal
open_source(Source *s, SourceShape *shape, bool filtered)
{
	char	   *sql = psprintf("SELECT * FROM (%s\n) AS cdp_source", s->query);
	Portal		portal;
	TupleDesc	desc;
	int			i;

	portal = SPI_cursor_open_with_args(NULL, sql, 0, NULL, NULL, NULL, true, 0);
	desc = portal->tupDesc;
	if (desc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("identity source \"%s\" does not return rows", s->name),
				 errhint("Write a SELECT whose columns are identifier kinds.")));

	memset(shape, 0, sizeof(SourceShape));
	shape->desc = CreateTupleDescCopy(desc);
	shape->at_col = -1;
	shape->wm_col = -1;
	shape->cols = palloc(sizeof(int) * desc->natts);
	shape->kinds = palloc(sizeof(char *) * desc->natts);
	shape->outfn = palloc(sizeof(FmgrInfo) * desc->natts);
	shape->is_text = palloc(sizeof(bool) * desc->natts);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *name = NameStr(att->attname);

		if (att->attisdropped)
			continue;
		if (s->watermark && strcmp(name, s->watermark) == 0)
		{
			if (shape->wm_col >= 0)
				ereport(ERROR,
						(errcode(ERRCODE_AMBIGUOUS_COLUMN),
						 errmsg("watermark column \"%s\" of identity source \"%s\" is ambiguous",
								name, s->name)));
			shape->wm_col = i;
			if (strcmp(name, "at") != 0)
				continue;
		}
		if (strcmp(name, "at") == 0)
		{
			if (att->atttypid != TIMESTAMPTZOID)
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("column \"at\" of identity source \"%s\" is of type %s, not timestamp with time zone",
								s->name, format_type_be(att->atttypid)),
						 errhint("Cast it: ... AS at must be timestamptz.")));
			shape->at_col = i;
			continue;
		}
		if (strncmp(name, "cdp.", 4) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_RESERVED_NAME),
					 errmsg("identifier kind \"%s\" of identity source \"%s\" is reserved",
							name, s->name),
					 errdetail("Kinds starting with \"cdp.\" are used internally.")));
		{
			Oid			outfunc;
			bool		varlena;

			getTypeOutputInfo(att->atttypid, &outfunc, &varlena);
			fmgr_info(outfunc, &shape->outfn[shape->nids]);
		}
		shape->is_text[shape->nids] = att->atttypid == TEXTOID ||
			att->atttypid == VARCHAROID;
		shape->kinds[shape->nids] = pstrdup(name);
		shape->cols[shape->nids++] = i;
	}
	if (s->watermark && shape->wm_col < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("watermark column \"%s\" is not a column of identity source \"%s\"",
						s->watermark, s->name),
				 errdetail("The watermark names a column of the query's result."),
				 errhint("Add the column to the query's select list, for example \"SELECT ..., updated_at AS at\" with watermark => 'at'.")));
	if (shape->nids == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("identity source \"%s\" has no identifier column", s->name),
				 errhint("Return one column per identifier kind, named by the kind.")));
	if (shape->wm_col >= 0)
	{
		Oid			typ = TupleDescAttr(desc, shape->wm_col)->atttypid;
		TypeCacheEntry *tce = lookup_type_cache(typ, TYPECACHE_CMP_PROC_FINFO);

		if (!OidIsValid(tce->cmp_proc))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("watermark column \"%s\" of identity source \"%s\" has type %s, which has no ordering",
							s->watermark, s->name, format_type_be(typ))));
	}

	if (filtered && shape->wm_col >= 0 && s->watermark_value != NULL)
	{
		Oid			typ = TupleDescAttr(desc, shape->wm_col)->atttypid;
		Oid			typinput;
		Oid			typioparam;
		Datum		value;
		Oid			argtypes[1];

		SPI_cursor_close(portal);
		getTypeInputInfo(typ, &typinput, &typioparam);
		value = OidInputFunctionCall(typinput, s->watermark_value, typioparam, -1);
		argtypes[0] = typ;
		sql = psprintf("SELECT * FROM (%s\n) AS cdp_source WHERE cdp_source.%s > $1",
					   s->query, quote_identifier(s->watermark));
		portal = SPI_cursor_open_with_args(NULL, sql, 1, argtypes, &value, NULL, true, 0);
	}
	return portal;
}

/* ------------------------------------------------------------ suppression */

typedef struct SuppressEntry
{
	char		key[SUPPRESS_KEYLEN];
} SuppressEntry;

/* The erased identifiers, or NULL when there are none. */
static HTAB *
load_suppressed(void)
{
	HASHCTL		ctl;
	HTAB	   *h;
	uint64		i;

	if (SPI_execute("SELECT kind, value_sha256 FROM cdp.identity_suppressed",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read cdp.identity_suppressed");
	if (SPI_processed == 0)
		return NULL;
	ctl.keysize = SUPPRESS_KEYLEN;
	ctl.entrysize = sizeof(SuppressEntry);
	ctl.hcxt = CurrentMemoryContext;
	h = hash_create("cdp suppressed identifiers", SPI_processed, &ctl,
					HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *kind = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *hex = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		char		key[SUPPRESS_KEYLEN];

		snprintf(key, sizeof(key), "%s:%s", kind, hex);
		(void) hash_search(h, key, HASH_ENTER, NULL);
	}
	return h;
}

static bool
is_suppressed(HTAB *h, const char *kind, const char *value, int len)
{
	char		key[SUPPRESS_KEYLEN];
	char		hex[65];

	if (h == NULL)
		return false;
	cdp_sha256_hex(value, len, hex);
	snprintf(key, sizeof(key), "%s:%s", kind, hex);
	return hash_search(h, key, HASH_FIND, NULL) != NULL;
}

/* ------------------------------------------------------------ SQL functions */

/* cdp.identity_read_source(source): identifier pairs of the new rows */
PG_FUNCTION_INFO_V1(cdp_identity_read_source);
Datum
cdp_identity_read_source(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Source	   *s;
	SourceShape shape;
	SourceRun	run;
	Portal		portal;
	HTAB	   *suppressed;
	ErrorContextCallback errcb;
	MemoryContext rowcxt;
	MemoryContext outer = CurrentMemoryContext;
	TypeCacheEntry *wm_tce = NULL;
	Datum		wm_max = (Datum) 0;
	bool		have_max = false;
	char	   *wm_text = NULL;
	uint64		rows = 0;
	const char **vals;
	int		   *lens;
	int		   *kinds;

	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	s = load_source(name);
	suppressed = load_suppressed();

	errcb.callback = source_error_callback;
	errcb.arg = s;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	rowcxt = AllocSetContextCreate(outer, "cdp source row", ALLOCSET_DEFAULT_SIZES);
	begin_as_owner(s, &run);
	portal = open_source(s, &shape, true);
	vals = palloc(sizeof(char *) * shape.nids);
	lens = palloc(sizeof(int) * shape.nids);
	kinds = palloc(sizeof(int) * shape.nids);
	if (shape.wm_col >= 0)
		wm_tce = lookup_type_cache(TupleDescAttr(shape.desc, shape.wm_col)->atttypid,
								   TYPECACHE_CMP_PROC_FINFO);

	for (;;)
	{
		uint64		i;

		SPI_cursor_fetch(portal, true, FETCH_BATCH);
		if (SPI_processed == 0)
			break;
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			MemoryContext old = MemoryContextSwitchTo(rowcxt);
			Datum		at = (Datum) 0;
			bool		at_null = true;
			bool		isnull;
			int			n = 0;
			int			a,
						b;
			int			j;

			rows++;
			if (shape.at_col >= 0)
				at = heap_getattr(tup, shape.at_col + 1, desc, &at_null);
			if (shape.wm_col >= 0)
			{
				Datum		wm = heap_getattr(tup, shape.wm_col + 1, desc, &isnull);

				if (!isnull &&
					(!have_max ||
					 DatumGetInt32(FunctionCall2Coll(&wm_tce->cmp_proc_finfo,
													 TupleDescAttr(desc, shape.wm_col)->attcollation,
													 wm, wm_max)) > 0))
				{
					Form_pg_attribute att = TupleDescAttr(desc, shape.wm_col);

					MemoryContextSwitchTo(outer);
					if (have_max && !att->attbyval)
						pfree(DatumGetPointer(wm_max));
					wm_max = datumCopy(wm, att->attbyval, att->attlen);
					have_max = true;
					MemoryContextSwitchTo(rowcxt);
				}
			}
			for (j = 0; j < shape.nids; j++)
			{
				Datum		d = heap_getattr(tup, shape.cols[j] + 1, desc, &isnull);
				int			k;

				if (isnull)
					continue;
				if (shape.is_text[j])
				{
					text	   *t = DatumGetTextPP(d);

					vals[n] = VARDATA_ANY(t);
					lens[n] = VARSIZE_ANY_EXHDR(t);
				}
				else
				{
					vals[n] = OutputFunctionCall(&shape.outfn[j], d);
					lens[n] = strlen(vals[n]);
				}
				if (is_suppressed(suppressed, shape.kinds[j], vals[n], lens[n]))
					continue;
				/* the same identifier twice in one row counts once */
				for (k = 0; k < n; k++)
					if (lens[k] == lens[n] && memcmp(vals[k], vals[n], lens[n]) == 0 &&
						strcmp(shape.kinds[kinds[k]], shape.kinds[j]) == 0)
						break;
				if (k < n)
					continue;
				kinds[n++] = j;
			}

			/* every pair of the row's identifiers; a lone one on its own */
			for (a = 0; a < n; a++)
				for (b = (n == 1 ? a : a + 1); b < n; b++)
				{
					Datum		out[5];
					bool		nulls[5] = {false, false, false, false, false};

					out[0] = CStringGetTextDatum(shape.kinds[kinds[a]]);
					out[1] = PointerGetDatum(cstring_to_text_with_len(vals[a], lens[a]));
					if (n == 1)
						nulls[2] = nulls[3] = true;
					else
					{
						out[2] = CStringGetTextDatum(shape.kinds[kinds[b]]);
						out[3] = PointerGetDatum(cstring_to_text_with_len(vals[b], lens[b]));
					}
					out[4] = at;
					nulls[4] = at_null;
					tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, nulls);
				}
			MemoryContextSwitchTo(old);
			MemoryContextReset(rowcxt);
		}
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	if (have_max)
	{
		Form_pg_attribute att = TupleDescAttr(shape.desc, shape.wm_col);
		Oid			outfunc;
		bool		varlena;

		/* still under the fixed date style */
		getTypeOutputInfo(att->atttypid, &outfunc, &varlena);
		wm_text = MemoryContextStrdup(outer, OidOutputFunctionCall(outfunc, wm_max));
	}
	end_as_owner(&run);
	error_context_stack = errcb.previous;

	/* advance the watermark, as the refresh's own role */
	{
		Oid			argtypes[3] = {TEXTOID, INT8OID, TEXTOID};
		Datum		values[3];
		char		nulls[3] = {' ', ' ', ' '};

		if (wm_text)
			values[0] = CStringGetTextDatum(wm_text);
		else
			nulls[0] = 'n';
		values[1] = Int64GetDatum((int64) rows);
		values[2] = CStringGetTextDatum(name);
		if (SPI_execute_with_args("UPDATE cdp.identity_sources"
								  " SET watermark_value = coalesce($1, watermark_value),"
								  " last_read_at = now(), last_rows_read = $2,"
								  " rows_read = rows_read + $2 WHERE name = $3",
								  3, argtypes, values, nulls, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update cdp.identity_sources");
	}
	SPI_finish();
	MemoryContextDelete(rowcxt);
	return (Datum) 0;
}

/* cdp.identity_source_kinds(source): its identifier kinds, checked */
PG_FUNCTION_INFO_V1(cdp_identity_source_kinds);
Datum
cdp_identity_source_kinds(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MemoryContext outer = CurrentMemoryContext;
	Source	   *s;
	SourceShape shape;
	SourceRun	run;
	Portal		portal;
	ErrorContextCallback errcb;
	Datum	   *elems;
	ArrayType  *result;
	int			i;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	s = load_source(name);
	errcb.callback = source_error_callback;
	errcb.arg = s;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	begin_as_owner(s, &run);
	/* planned and started (privileges checked) but not run */
	portal = open_source(s, &shape, false);
	SPI_cursor_close(portal);
	end_as_owner(&run);
	error_context_stack = errcb.previous;

	MemoryContextSwitchTo(outer);
	elems = palloc(sizeof(Datum) * shape.nids);
	for (i = 0; i < shape.nids; i++)
		elems[i] = CStringGetTextDatum(shape.kinds[i]);
	result = construct_array(elems, shape.nids, TEXTOID, -1, false, TYPALIGN_INT);
	SPI_finish();
	PG_RETURN_ARRAYTYPE_P(result);
}
