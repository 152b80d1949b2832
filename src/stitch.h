/*-------------------------------------------------------------------------
 *
 * stitch.h
 *	  Identity stitching engine: which identifiers belong to one person.
 *
 * The engine is usable from C without the SQL functions, so that other
 * parts of cdp (the managed identity graph) stitch with the same rules and
 * the same code:
 *
 *		rules = stitch_rules_parse(jsonb_or_NULL);		-- validated once
 *		engine = stitch_create(rules);				-- own memory context
 *		stitch_add_query(engine, "SELECT ...");		-- inside SPI_connect()
 *		stitch_add_row(engine, ...);				-- or rows fed directly
 *		stitch_finish(engine);
 *		stitch_foreach_identifier(engine, cb, arg);	-- (kind, value, profile)
 *		stitch_foreach_refusal(engine, cb, arg);	-- what the rules refused
 *		stitch_destroy(engine);
 *
 * Everything the engine allocates lives in one memory context below the
 * context current at stitch_create(), so an error anywhere frees it all.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CDP_STITCH_H
#define CDP_STITCH_H

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

/* Parsed and validated rules; opaque. */
typedef struct StitchRules StitchRules;

/* The engine; opaque. */
typedef struct StitchEngine StitchEngine;

typedef enum StitchReason
{
	STITCH_BLOCKED,				/* value on the block list */
	STITCH_SUPPRESSED,			/* rejected by the caller's filter */
	STITCH_HUB,					/* more distinct neighbours than max_degree */
	STITCH_LIMIT,				/* a link would break limits.<kind> */
	STITCH_MAX_PROFILE_SIZE		/* a link would break max_profile_size */
} StitchReason;

/* One refusal, as handed to stitch_foreach_refusal()'s callback. */
typedef struct StitchRefusal
{
	StitchReason reason;
	const char *kind;			/* the refused identifier */
	const char *value;
	int			len;
	const char *linked_kind;	/* limits: the row's highest-priority */
	const char *linked_value;	/* identifier, else NULL */
	int			linked_len;
	bool		has_at;			/* limits: the row's "at" */
	TimestampTz at;
	const char *limit_kind;		/* STITCH_LIMIT: the limited kind */
	int64		observed;		/* degree / values / size that was refused */
	int64		bound;			/* the rule's bound */
	const char *pattern;		/* STITCH_BLOCKED: the matching entry */
	bool		pattern_is_regex;
} StitchRefusal;

typedef struct StitchStats
{
	int64		rows_read;
	int64		identifiers;	/* distinct identifiers that got a profile */
	int64		blocked;		/* distinct blocked or suppressed values */
	int64		hubs;
	int64		refused_links;	/* demotions by limits / max_profile_size */
	int64		profiles;
	int64		largest_profile;
	int64		memory_bytes;	/* peak bytes held by the engine's context */
} StitchStats;

/*
 * Called once per new distinct identifier; returning true suppresses it
 * (reason STITCH_SUPPRESSED), e.g. for erased identifiers.
 */
typedef bool (*StitchFilter) (const char *kind, const char *value, int len,
							  void *arg);
typedef void (*StitchIdentifierCallback) (const char *kind, const char *value,
										  int len, int64 profile_id, void *arg);
typedef void (*StitchRefusalCallback) (const StitchRefusal *refusal, void *arg);

/* NULL means the default rules.  Errors name the offending key. */
extern StitchRules *stitch_rules_parse(Jsonb *rules);

/* The effective rules, defaults expanded, as jsonb. */
extern Jsonb *stitch_rules_jsonb(const StitchRules *rules);

extern StitchEngine *stitch_create(const StitchRules *rules);
extern void stitch_set_filter(StitchEngine *engine, StitchFilter filter,
							  void *arg);

/*
 * Kind id of a kind name, registering it on first use.  Priority is the
 * order of rules.priority, then the order in which kinds are first
 * registered (for a query: its column order).
 */
extern int	stitch_kind(StitchEngine *engine, const char *name);

/*
 * Feed one row: n identifiers (kind ids from stitch_kind(), values of lens
 * bytes, not necessarily NUL-terminated) that appear together, and the
 * row's ordering key.  Values are copied.
 */
extern void stitch_add_row(StitchEngine *engine, int n, const int *kinds,
						   const char *const *values, const int *lens,
						   TimestampTz at, bool at_null);

/*
 * Run a SELECT (caller must be connected to SPI) and feed its rows: each
 * column is a kind named by the column name, except "at" (timestamptz),
 * the ordering key.  Returns the number of rows read.
 */
extern uint64 stitch_add_query(StitchEngine *engine, const char *query);

/* Apply the rules and number the profiles (dense, deterministic). */
extern void stitch_finish(StitchEngine *engine);

extern void stitch_foreach_identifier(StitchEngine *engine,
									  StitchIdentifierCallback callback,
									  void *arg);
extern void stitch_foreach_refusal(StitchEngine *engine,
								   StitchRefusalCallback callback, void *arg);
extern void stitch_get_stats(StitchEngine *engine, StitchStats *stats);
extern void stitch_destroy(StitchEngine *engine);

extern const char *stitch_reason_name(StitchReason reason, const char *limit_kind,
									  char *buf, Size buflen);

#endif							/* CDP_STITCH_H */
