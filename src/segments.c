/*-------------------------------------------------------------------------
 *
 * segments.c
 *	  Segment definitions and their refresh: predicate validation, evaluation
 *	  with the privileges of the segment's owner, one subtransaction per
 *	  segment.
 *
 * A predicate is a boolean expression over the columns of the configured
 * profile relation.  It is stored as text and embedded in
 *		SELECT cdp.audience_agg(profile_id) FROM <relation> WHERE (<predicate>
 *		)
 * which is only safe because the text was proven, by the raw grammar, to be
 * exactly one expression: "SELECT <predicate>" must parse as one statement
 * with one unnamed target and no other clause.  Such a text has balanced
 * parentheses, closed quotes and comments, and no semicolon, so it cannot
 * leave the parentheses it is put in.  The check is repeated before every
 * evaluation under the same pinned settings (search_path,
 * standard_conforming_strings), so a text that lexes differently under other
 * settings is never run.
 *
 * Like REFRESH MATERIALIZED VIEW, the predicate runs as the segment's owner
 * in a security-restricted operation with a pinned search_path; the
 * bookkeeping (the extension's tables) runs as the owner of those tables,
 * which no other role may write.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "run_as.h"

/* the evaluation and validation texts all start with this */
#define PREDICATE_PREFIX	"SELECT ("
#define PREDICATE_SUFFIX	"\n)"

/* A role switch with pinned settings, undone by restore_role or by abort. */
typedef CdpRoleSwitch RoleSwitch;

/* Where a predicate's error positions point. */
typedef struct PredicateErrorContext
{
	const char *predicate;
	const char *sql;			/* the text the parser saw */
	int			prefix_chars;	/* characters before the predicate in sql */
	const char *what;			/* for the CONTEXT line */
} PredicateErrorContext;

static void
switch_role(RoleSwitch *rs, Oid role, bool restricted)
{
	cdp_switch_role(rs, role, restricted, "pg_catalog, cdp, pg_temp");
	cdp_set_local_guc("standard_conforming_strings", "on");
}

static void
restore_role(RoleSwitch *rs)
{
	cdp_restore_role(rs);
}

/* Owner of the extension's tables: the role bookkeeping runs as. */
static Oid
catalog_owner(void)
{
	Oid			nsp = get_namespace_oid("cdp", false);
	Oid			relid = get_relname_relid("segments", nsp);
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(relid))
		elog(ERROR, "table cdp.segments does not exist");
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/* Runs one statement as the catalog owner; SPI must be connected. */
static int
run_as_catalog_owner(const char *sql, int nargs, Oid *types, Datum *values,
					 const char *nulls, bool read_only)
{
	RoleSwitch	rs;
	int			ret;

	switch_role(&rs, catalog_owner(), false);
	ret = SPI_execute_with_args(sql, nargs, types, values, nulls, read_only, 0);
	restore_role(&rs);
	if (ret < 0)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(ret));
	return ret;
}

/*
 * The configured profile relation as a quoted, qualified name, after
 * checking it exists and has a profile_id column of an integer type.
 */
static char *
profile_relation_name(Oid *relid_out)
{
	Oid			relid;
	bool		isnull;
	char	   *relname;
	char	   *nspname;
	AttrNumber	attnum;
	Oid			atttype;

	run_as_catalog_owner("SELECT profile_relation::oid FROM cdp.segment_settings",
						 0, NULL, NULL, NULL, true);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cdp.segment_settings must hold exactly one row"),
				 errhint("Restore it with INSERT INTO cdp.segment_settings DEFAULT VALUES.")));
	relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	relname = get_rel_name(relid);
	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the profile relation of segments no longer exists"),
				 errdetail("The setting names relation OID %u.", relid),
				 errhint("Point segments at an existing relation with cdp.set_profile_relation().")));
	nspname = get_namespace_name(get_rel_namespace(relid));
	attnum = get_attnum(relid, "profile_id");
	atttype = attnum == InvalidAttrNumber ? InvalidOid : get_atttype(relid, attnum);
	if (atttype != INT8OID && atttype != INT4OID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("profile relation \"%s.%s\" has no column profile_id of type bigint",
						nspname, relname),
				 errhint("Point segments at a relation keyed by a bigint profile_id with cdp.set_profile_relation().")));
	if (relid_out)
		*relid_out = relid;
	return quote_qualified_identifier(nspname, relname);
}

/* Error positions in the parsed text are moved onto the predicate. */
static void
predicate_error_callback(void *arg)
{
	PredicateErrorContext *ctx = (PredicateErrorContext *) arg;
	int			pos = geterrposition();

	if (pos > 0)
	{
		int			predlen = pg_mbstrlen(ctx->predicate);
		int			p = pos - ctx->prefix_chars;

		errposition(0);
		internalerrposition(Max(1, Min(p, predlen + 1)));
		internalerrquery(ctx->predicate);
	}
	errcontext("%s", ctx->what);
}

/* Rejects sub-statements and parameters inside a raw expression. */
static bool
predicate_raw_walker(Node *node, void *context)
{
	const char *sql = (const char *) context;

	if (node == NULL)
		return false;
	if (IsA(node, SubLink))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("subqueries are not allowed in segment predicates"),
				 errdetail("A predicate is evaluated per profile over the profile relation's columns."),
				 errhint("Join the data into the profile relation, or wrap it in a STABLE function."),
				 errposition(pg_mbstrlen_with_len(sql, ((SubLink *) node)->location) + 1)));
	if (IsA(node, ParamRef))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("parameters are not allowed in segment predicates"),
				 errposition(pg_mbstrlen_with_len(sql, ((ParamRef *) node)->location) + 1)));
	if (IsA(node, ColumnRef) &&
		IsA(llast(((ColumnRef *) node)->fields), A_Star))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("\"*\" is not allowed in segment predicates"),
				 errposition(pg_mbstrlen_with_len(sql, ((ColumnRef *) node)->location) + 1)));
	return raw_expression_tree_walker(node, predicate_raw_walker, context);
}

static void
reject_clause(bool present, const char *clause)
{
	if (present)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("a segment predicate must be a single expression, not a query with %s", clause),
				 errhint("Write only the boolean condition, as in a WHERE clause.")));
}

/*
 * Proves the text is exactly one expression: "SELECT <predicate>" must be
 * one statement, without a semicolon, with one unnamed target and nothing
 * else.  Returns the expression's raw tree.
 */
static Node *
check_predicate_syntax(const char *predicate, const char *what)
{
	PredicateErrorContext ctx;
	ErrorContextCallback errcb;
	List	   *raw;
	RawStmt    *rs;
	SelectStmt *sel;
	ResTarget  *rt;
	const char *p;

	for (p = predicate; *p; p++)
		if (!isspace((unsigned char) *p))
			break;
	if (*p == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a segment predicate must not be empty"),
				 errhint("Write a boolean condition such as traits->>'country' = 'NL'.")));

	ctx.predicate = predicate;
	ctx.sql = psprintf("SELECT %s", predicate);
	ctx.prefix_chars = strlen("SELECT ");
	ctx.what = what;
	errcb.callback = predicate_error_callback;
	errcb.arg = &ctx;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	raw = raw_parser(ctx.sql, RAW_PARSE_DEFAULT);
	if (list_length(raw) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("a segment predicate must be a single expression"),
				 errdetail("The text holds %d statements.", list_length(raw)),
				 errhint("Remove the semicolons.")));
	rs = linitial_node(RawStmt, raw);
	if (rs->stmt_len != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("a segment predicate must not contain a semicolon"),
				 errhint("Remove the semicolon.")));
	if (!IsA(rs->stmt, SelectStmt))
		elog(ERROR, "unexpected statement type %d", (int) nodeTag(rs->stmt));
	sel = (SelectStmt *) rs->stmt;
	reject_clause(sel->op != SETOP_NONE, "a set operation");
	reject_clause(sel->withClause != NULL, "WITH");
	reject_clause(sel->distinctClause != NIL, "DISTINCT");
	reject_clause(sel->intoClause != NULL, "INTO");
	reject_clause(sel->fromClause != NIL, "FROM");
	reject_clause(sel->whereClause != NULL, "WHERE");
	reject_clause(sel->groupClause != NIL || sel->groupDistinct, "GROUP BY");
	reject_clause(sel->havingClause != NULL, "HAVING");
	reject_clause(sel->windowClause != NIL, "WINDOW");
	reject_clause(sel->valuesLists != NIL, "VALUES");
	reject_clause(sel->sortClause != NIL, "ORDER BY");
	reject_clause(sel->limitOffset != NULL || sel->limitCount != NULL, "LIMIT or OFFSET");
	reject_clause(sel->lockingClause != NIL, "FOR UPDATE");
	if (list_length(sel->targetList) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("a segment predicate must be a single expression, not a list of %d",
						list_length(sel->targetList)),
				 errhint("Combine conditions with AND or OR.")));
	rt = linitial_node(ResTarget, sel->targetList);
	if (rt->name != NULL || rt->indirection != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("a segment predicate must not name its result"),
				 errhint("Remove the alias after the expression."),
				 errposition(pg_mbstrlen_with_len(ctx.sql, rt->location) + 1)));
	(void) predicate_raw_walker(rt->val, (void *) ctx.sql);

	error_context_stack = errcb.previous;
	return rt->val;
}

/*
 * Full validation as the current role, over the given relation: the
 * structure, then parse analysis of "SELECT (<predicate>) FROM relation"
 * (unknown columns, types), the kind of expression, and finally an
 * execution with LIMIT 0 so the plan is built and every privilege the
 * predicate needs is checked.  SPI must be connected.
 */
static void
validate_predicate(const char *predicate, const char *relation, const char *what)
{
	PredicateErrorContext ctx;
	ErrorContextCallback errcb;
	List	   *raw;
	Query	   *query;
	TargetEntry *tle;
	Oid			type;
	char	   *sql;
	int			ret;

	(void) check_predicate_syntax(predicate, what);

	sql = psprintf(PREDICATE_PREFIX "%s" PREDICATE_SUFFIX " FROM %s", predicate, relation);
	ctx.predicate = predicate;
	ctx.sql = sql;
	ctx.prefix_chars = strlen(PREDICATE_PREFIX);
	ctx.what = what;
	errcb.callback = predicate_error_callback;
	errcb.arg = &ctx;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	if (list_length(raw) != 1)
		elog(ERROR, "segment predicate did not stay a single expression");
	query = parse_analyze_fixedparams(linitial_node(RawStmt, raw), sql, NULL, 0, NULL);
	if (query->hasAggs)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("aggregate functions are not allowed in segment predicates"),
				 errhint("Precompute the aggregate in the profile relation.")));
	if (query->hasWindowFuncs)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("window functions are not allowed in segment predicates")));
	if (query->hasTargetSRFs)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("set-returning functions are not allowed in segment predicates")));
	if (query->hasSubLinks || query->hasModifyingCTE || query->cteList != NIL ||
		list_length(query->targetList) != 1)
		elog(ERROR, "segment predicate did not stay a single expression");
	tle = linitial_node(TargetEntry, query->targetList);
	type = exprType((Node *) tle->expr);
	if (type != BOOLOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("a segment predicate must be of type boolean, not type %s",
						format_type_be(type)),
				 errhint("Compare the value, e.g. ... = 'yes' or ... > 0.")));
	if (contain_volatile_functions((Node *) tle->expr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("volatile functions are not allowed in segment predicates"),
				 errdetail("Membership must depend only on the profile and the time of the refresh."),
				 errhint("Mark the function STABLE or IMMUTABLE if that is what it is.")));

	ret = SPI_execute(psprintf("%s LIMIT 0", sql), true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(ret));

	error_context_stack = errcb.previous;
}

/* Validation with the current role's privileges and pinned settings. */
static void
validate_as_current_user(const char *predicate, const char *what)
{
	RoleSwitch	rs;
	char	   *relation = profile_relation_name(NULL);

	switch_role(&rs, GetUserId(), true);
	validate_predicate(predicate, relation, what);
	restore_role(&rs);
}

/* validate a predicate against the profile relation as the current role */
PG_FUNCTION_INFO_V1(cdp_validate_predicate);
Datum
cdp_validate_predicate(PG_FUNCTION_ARGS)
{
	char	   *predicate = text_to_cstring(PG_GETARG_TEXT_PP(0));

	SPI_connect();
	validate_as_current_user(predicate, "predicate");
	SPI_finish();
	PG_RETURN_VOID();
}

static void
check_segment_name(const char *name)
{
	int			len = strlen(name);
	const char *p;

	if (len == 0 || len > 128)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid segment name \"%s\"", name),
				 errdetail("A segment name has 1 to 128 bytes.")));
	for (p = name; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7f)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("invalid segment name \"%s\"", name),
					 errdetail("A segment name cannot contain control characters.")));
}

/*
 * Looks up a segment (locking its row) and checks the current role may
 * change it.  Returns its id, or -1 when it does not exist and missing_ok.
 */
static int32
lock_own_segment(const char *name, bool missing_ok)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	int32		id;
	Oid			owner;

	values[0] = CStringGetTextDatum(name);
	run_as_catalog_owner("SELECT segment_id, owner::oid FROM cdp.segments WHERE name = $1 FOR UPDATE",
						 1, types, values, NULL, false);
	if (SPI_processed == 0)
	{
		if (missing_ok)
			return -1;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("segment \"%s\" does not exist", name)));
	}
	id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of segment \"%s\"", name),
				 errdetail("Segment \"%s\" is owned by role \"%s\".", name,
						   GetUserNameFromId(owner, true) ? GetUserNameFromId(owner, true) : "?")));
	return id;
}

/* create or redefine a segment */
PG_FUNCTION_INFO_V1(cdp_define_segment);
Datum
cdp_define_segment(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *predicate;
	char	   *what;
	int32		id;
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, OIDOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		isnull;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("segment name must not be NULL")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("segment predicate must not be NULL"),
				 errhint("Use cdp.drop_segment() to remove a segment.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	predicate = text_to_cstring(PG_GETARG_TEXT_PP(1));
	check_segment_name(name);
	what = psprintf("predicate of segment \"%s\"", name);

	SPI_connect();
	validate_as_current_user(predicate, what);

	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(predicate);
	if (PG_ARGISNULL(2))
		nulls[2] = 'n';
	else
		values[2] = PG_GETARG_DATUM(2);
	values[3] = ObjectIdGetDatum(GetUserId());

	id = lock_own_segment(name, true);
	if (id < 0)
		run_as_catalog_owner("INSERT INTO cdp.segments (name, predicate, description, owner) "
							 "VALUES ($1, $2, $3, $4::regrole) RETURNING segment_id",
							 4, types, values, nulls, false);
	else
		run_as_catalog_owner("UPDATE cdp.segments SET predicate = $2, "
							 "description = COALESCE($3, description), owner = $4::regrole, "
							 "updated_at = now() WHERE name = $1 RETURNING segment_id",
							 4, types, values, nulls, false);
	id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	PG_RETURN_INT32(id);
}

/* rename a segment */
PG_FUNCTION_INFO_V1(cdp_rename_segment);
Datum
cdp_rename_segment(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *new_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	check_segment_name(new_name);
	SPI_connect();
	(void) lock_own_segment(name, false);
	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(new_name);
	run_as_catalog_owner("SELECT 1 FROM cdp.segments WHERE name = $2", 2, types, values, NULL, false);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("segment \"%s\" already exists", new_name)));
	run_as_catalog_owner("UPDATE cdp.segments SET name = $2, updated_at = now() WHERE name = $1",
						 2, types, values, NULL, false);
	SPI_finish();
	PG_RETURN_VOID();
}

static void
set_paused(FunctionCallInfo fcinfo, bool paused)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			types[2] = {TEXTOID, BOOLOID};
	Datum		values[2];

	SPI_connect();
	(void) lock_own_segment(name, false);
	values[0] = CStringGetTextDatum(name);
	values[1] = BoolGetDatum(paused);
	run_as_catalog_owner("UPDATE cdp.segments SET paused = $2, updated_at = now() WHERE name = $1",
						 2, types, values, NULL, false);
	SPI_finish();
}

/* stop refreshing a segment */
PG_FUNCTION_INFO_V1(cdp_pause_segment);
Datum
cdp_pause_segment(PG_FUNCTION_ARGS)
{
	set_paused(fcinfo, true);
	PG_RETURN_VOID();
}

/* refresh a paused segment again */
PG_FUNCTION_INFO_V1(cdp_resume_segment);
Datum
cdp_resume_segment(PG_FUNCTION_ARGS)
{
	set_paused(fcinfo, false);
	PG_RETURN_VOID();
}

/* drop a segment and its history */
PG_FUNCTION_INFO_V1(cdp_drop_segment);
Datum
cdp_drop_segment(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	SPI_connect();
	(void) lock_own_segment(name, false);
	values[0] = CStringGetTextDatum(name);
	run_as_catalog_owner("DELETE FROM cdp.segments WHERE name = $1", 1, types, values, NULL, false);
	SPI_finish();
	PG_RETURN_VOID();
}

/* One segment to refresh, and what became of it. */
typedef struct SegmentRefresh
{
	int32		segment_id;
	char	   *name;
	char	   *predicate;
	Oid			owner;
	bool		paused;
	const char *status;
	bool		have_counts;
	int64		members;
	int64		entered;
	int64		exited;
	int64		duration_us;
	char	   *error;
	/* set when the segment's owner group was evaluated in one scan */
	bool		evaluated;
	bool		members_null;
	Datum		members_datum;
	Oid			audience_type;
	int64		eval_share_us;
} SegmentRefresh;

static void
check_owner_exists(SegmentRefresh *seg)
{
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(seg->owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the owner of segment \"%s\" (role OID %u) no longer exists",
						seg->name, seg->owner),
				 errhint("Redefine the segment as an existing role.")));
}

/*
 * Evaluates the segments of one owner in a single scan of the profile
 * relation, one filtered cdp.audience_agg per segment, as that owner.  The
 * results are copied into keepcxt.  Errors propagate: the caller then falls
 * back to evaluating the segments one by one.
 */
static void
evaluate_group(List *group, const char *relation, MemoryContext keepcxt)
{
	SegmentRefresh *first = (SegmentRefresh *) linitial(group);
	StringInfoData sql;
	RoleSwitch	rs;
	ListCell   *lc;
	int			ret;
	int			i;

	check_owner_exists(first);
	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	switch_role(&rs, first->owner, true);
	foreach(lc, group)
	{
		SegmentRefresh *seg = (SegmentRefresh *) lfirst(lc);

		/* the stored text must still be a single expression under these settings */
		(void) check_predicate_syntax(seg->predicate,
									  psprintf("predicate of segment \"%s\"", seg->name));
		appendStringInfo(&sql, "%scdp.audience_agg(profile_id) FILTER (WHERE (%s" PREDICATE_SUFFIX ")",
						 foreach_current_index(lc) > 0 ? ", " : "", seg->predicate);
	}
	appendStringInfo(&sql, " FROM %s", relation);
	ret = SPI_execute(sql.data, true, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(ret));
	restore_role(&rs);

	i = 0;
	foreach(lc, group)
	{
		SegmentRefresh *seg = (SegmentRefresh *) lfirst(lc);
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, ++i, &isnull);
		MemoryContext oldcxt = MemoryContextSwitchTo(keepcxt);

		seg->members_null = isnull;
		seg->members_datum = isnull ? (Datum) 0 : datumCopy(d, false, -1);
		seg->audience_type = SPI_gettypeid(SPI_tuptable->tupdesc, i);
		MemoryContextSwitchTo(oldcxt);
	}
	foreach(lc, group)
		((SegmentRefresh *) lfirst(lc))->evaluated = true;
}

/* Evaluates one segment on its own, as its owner. */
static void
evaluate_one(SegmentRefresh *seg, const char *relation)
{
	RoleSwitch	rs;
	char	   *sql;
	int			ret;

	check_owner_exists(seg);
	switch_role(&rs, seg->owner, true);
	(void) check_predicate_syntax(seg->predicate,
								  psprintf("predicate of segment \"%s\"", seg->name));
	sql = psprintf("SELECT cdp.audience_agg(profile_id) FROM %s WHERE (%s" PREDICATE_SUFFIX,
				   relation, seg->predicate);
	ret = SPI_execute(sql, true, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(ret));
	restore_role(&rs);
	/* lives until the end of the caller's subtransaction */
	seg->members_datum = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
									   &seg->members_null);
	seg->audience_type = SPI_gettypeid(SPI_tuptable->tupdesc, 1);
}

/*
 * Evaluates the segment unless its group did, and stores the result as the
 * catalog owner.  Runs inside the caller's subtransaction; errors propagate.
 */
static void
refresh_one(SegmentRefresh *seg, const char *relation, int64 refresh_id,
			TimestampTz at)
{
	Oid			types[4] = {INT4OID, InvalidOid, INT8OID, TIMESTAMPTZOID};
	Datum		values[4];
	bool		isnull;

	if (!seg->evaluated)
		evaluate_one(seg, relation);

	types[1] = seg->audience_type;
	values[0] = Int32GetDatum(seg->segment_id);
	values[1] = seg->members_datum;
	values[2] = Int64GetDatum(refresh_id);
	values[3] = TimestampTzGetDatum(at);
	if (seg->members_null)
	{
		/* no members: the empty audience */
		Oid			infunc;
		Oid			ioparam;

		getTypeInputInfo(types[1], &infunc, &ioparam);
		values[1] = OidInputFunctionCall(infunc, "{}", ioparam, -1);
	}
	run_as_catalog_owner("SELECT members, entered, exited FROM cdp.segment_store($1, $2, $3, $4)",
						 4, types, values, NULL, false);
	if (SPI_processed != 1)
		elog(ERROR, "cdp.segment_store returned %d rows", (int) SPI_processed);
	seg->members = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	seg->entered = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	seg->exited = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	seg->have_counts = true;
	seg->status = "ok";
}

/*
 * Evaluates an owner group in one scan inside a subtransaction.  On error
 * nothing is marked evaluated, so each segment is then evaluated on its own
 * and only the faulty one fails.
 */
static void
evaluate_group_in_subtransaction(List *group, const char *relation,
								 MemoryContext keepcxt)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	TimestampTz start = GetCurrentTimestamp();
	ListCell   *lc;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		evaluate_group(group, relation, keepcxt);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(keepcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			ReThrowError(edata);
		foreach(lc, group)
			((SegmentRefresh *) lfirst(lc))->evaluated = false;
		FreeErrorData(edata);
	}
	PG_END_TRY();

	/* each segment is charged an equal share of the scan */
	foreach(lc, group)
		((SegmentRefresh *) lfirst(lc))->eval_share_us =
			(GetCurrentTimestamp() - start) / list_length(group);
}

/*
 * Refreshes one segment in its own subtransaction: on error, only that
 * segment's work is rolled back and the error is recorded on it.  A cancel
 * or shutdown is rethrown: it stops the whole refresh.
 */
static void
refresh_in_subtransaction(SegmentRefresh *seg, const char *relation,
						  int64 refresh_id, TimestampTz start,
						  MemoryContext errcxt)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		refresh_one(seg, relation, refresh_id, start);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(errcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			ReThrowError(edata);
		seg->status = "failed";
		seg->have_counts = false;
		seg->error = edata->message;
	}
	PG_END_TRY();
}

/* refresh every active segment, or the named ones, each in its own subtransaction */
PG_FUNCTION_INFO_V1(cdp_refresh_segments);
Datum
cdp_refresh_segments(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext callcxt = CurrentMemoryContext;
	MemoryContext workcxt;
	List	   *segs = NIL;
	ListCell   *lc;
	Oid			argtypes[1] = {TEXTARRAYOID};
	Datum		argvalues[1];
	char		argnulls[1] = {' '};
	int64		refresh_id;
	bool		isnull;
	char	   *relation = NULL;
	ErrorData  *relation_error = NULL;
	uint64		i;

	InitMaterializedSRF(fcinfo, 0);

	SPI_connect();
	workcxt = CurrentMemoryContext;

	argvalues[0] = PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0);
	if (PG_ARGISNULL(0))
		argnulls[0] = 'n';
	else
	{
		run_as_catalog_owner("SELECT n FROM unnest($1) n "
							 "WHERE n IS NULL OR NOT EXISTS (SELECT FROM cdp.segments s WHERE s.name = n) LIMIT 1",
							 1, argtypes, argvalues, argnulls, true);
		if (SPI_processed > 0)
		{
			char	   *missing = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("segment \"%s\" does not exist", missing ? missing : "NULL")));
		}
	}

	run_as_catalog_owner("SELECT nextval('cdp.segment_refresh_id_seq')", 0, NULL, NULL, NULL, false);
	refresh_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	run_as_catalog_owner("SELECT segment_id, name, predicate, owner::oid, paused FROM cdp.segments "
						 "WHERE ($1 IS NULL AND NOT paused) OR name = ANY ($1) ORDER BY name",
						 1, argtypes, argvalues, argnulls, true);
	MemoryContextSwitchTo(callcxt);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		SegmentRefresh *seg = palloc0(sizeof(SegmentRefresh));

		seg->segment_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		seg->name = SPI_getvalue(tup, desc, 2);
		seg->predicate = SPI_getvalue(tup, desc, 3);
		seg->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
		seg->paused = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
		segs = lappend(segs, seg);
	}
	MemoryContextSwitchTo(workcxt);

	/* a missing profile relation fails every segment, not the call */
	{
		ResourceOwner oldowner = CurrentResourceOwner;

		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(workcxt);
		PG_TRY();
		{
			char	   *name = profile_relation_name(NULL);

			relation = MemoryContextStrdup(callcxt, name);
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(workcxt);
			CurrentResourceOwner = oldowner;
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(callcxt);
			relation_error = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(workcxt);
			CurrentResourceOwner = oldowner;
			if (relation_error->sqlerrcode == ERRCODE_QUERY_CANCELED ||
				relation_error->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
				ReThrowError(relation_error);
		}
		PG_END_TRY();
	}

	/*
	 * Segments of the same owner are evaluated together in one scan of the
	 * profile relation; a group of one is left to the per-segment path.
	 */
	if (relation_error == NULL)
	{
		List	   *groups = NIL;
		ListCell   *gc;

		foreach(lc, segs)
		{
			SegmentRefresh *seg = (SegmentRefresh *) lfirst(lc);
			bool		placed = false;

			if (seg->paused)
				continue;
			foreach(gc, groups)
			{
				List	   *group = (List *) lfirst(gc);

				if (((SegmentRefresh *) linitial(group))->owner == seg->owner)
				{
					lfirst(gc) = lappend(group, seg);
					placed = true;
					break;
				}
			}
			if (!placed)
				groups = lappend(groups, list_make1(seg));
		}
		foreach(gc, groups)
		{
			List	   *group = (List *) lfirst(gc);

			if (list_length(group) > 1)
				evaluate_group_in_subtransaction(group, relation, callcxt);
		}
	}

	foreach(lc, segs)
	{
		SegmentRefresh *seg = (SegmentRefresh *) lfirst(lc);
		TimestampTz start;
		TimestampTz end;
		Oid			types[9] = {INT4OID, INT8OID, TIMESTAMPTZOID, TEXTOID,
			INT8OID, INT8OID, INT8OID, INTERVALOID, TEXTOID};
		Datum		values[9];
		char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
		Interval   *duration;

		if (seg->paused)
		{
			seg->status = "paused";
			continue;
		}
		start = GetCurrentTimestamp();
		if (relation_error)
		{
			seg->status = "failed";
			seg->error = relation_error->message;
		}
		else
			refresh_in_subtransaction(seg, relation, refresh_id, start, callcxt);
		end = GetCurrentTimestamp();
		seg->duration_us = end - start + seg->eval_share_us;

		duration = palloc0(sizeof(Interval));
		duration->time = seg->duration_us;
		values[0] = Int32GetDatum(seg->segment_id);
		values[1] = Int64GetDatum(refresh_id);
		values[2] = TimestampTzGetDatum(start);
		values[3] = CStringGetTextDatum(seg->status);
		values[4] = Int64GetDatum(seg->members);
		values[5] = Int64GetDatum(seg->entered);
		values[6] = Int64GetDatum(seg->exited);
		if (!seg->have_counts)
			nulls[4] = nulls[5] = nulls[6] = 'n';
		values[7] = IntervalPGetDatum(duration);
		if (seg->error)
			values[8] = CStringGetTextDatum(seg->error);
		else
			nulls[8] = 'n';
		run_as_catalog_owner("SELECT cdp.segment_log($1, $2, $3, $4, $5, $6, $7, $8, $9)",
							 9, types, values, nulls, false);
	}

	SPI_finish();

	foreach(lc, segs)
	{
		SegmentRefresh *seg = (SegmentRefresh *) lfirst(lc);
		Datum		values[8];
		bool		nulls[8] = {false};

		values[0] = CStringGetTextDatum(seg->name);
		values[1] = CStringGetTextDatum(seg->status);
		values[2] = Int64GetDatum(seg->members);
		values[3] = Int64GetDatum(seg->entered);
		values[4] = Int64GetDatum(seg->exited);
		if (!seg->have_counts)
			nulls[2] = nulls[3] = nulls[4] = true;
		if (seg->paused)
			nulls[5] = true;
		else
		{
			Interval   *duration = palloc0(sizeof(Interval));

			duration->time = seg->duration_us;
			values[5] = IntervalPGetDatum(duration);
		}
		if (seg->error)
			values[6] = CStringGetTextDatum(seg->error);
		else
			nulls[6] = true;
		values[7] = Int64GetDatum(refresh_id);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
