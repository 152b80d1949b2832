/*-------------------------------------------------------------------------
 *
 * activity.h
 *	  On-disk format of cdp.activity, a per-profile behavioural summary.
 *
 * A value is one varlena, position-independent (offsets, never pointers),
 * laid out in five consecutive sections after a fixed header:
 *
 *	ActivityHeader		version, section sizes
 *	ActivityEvent[n]	per event name, sorted by name (bytewise): totals,
 *						first/last timestamps and where its data lie
 *	float8 sums[nsums]	per-day sums, only for events with non-zero sums
 *	int32 days[ndays]	UTC day numbers (days since 2000-01-01), each
 *						event's run strictly ascending
 *	int32 counts[ndays] per-day counts, parallel to days
 *	char names[]		event names, not terminated, in event order
 *
 * Every section starts 8-byte aligned (the type has double alignment), so
 * accessors read the detoasted bytes in place and binary-search the days.
 * cdp.activity_trim folds old day buckets into the totals: an event's count
 * minus its bucket counts is the number of events folded that way, all on
 * days before the event's trim_day (ACTIVITY_NO_TRIM when none were).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CDP_ACTIVITY_H
#define CDP_ACTIVITY_H

#include "datatype/timestamp.h"

#define ACTIVITY_VERSION	1

/* trim_day of a summary that was never trimmed */
#define ACTIVITY_NO_TRIM	PG_INT32_MIN
/* sum_start of an event without per-day sums (all zero) */
#define ACTIVITY_NO_SUMS	PG_UINT32_MAX

typedef struct ActivityHeader
{
	int32		vl_len_;		/* varlena header (do not touch directly!) */
	uint8		version;		/* ACTIVITY_VERSION */
	uint8		flags;			/* reserved, 0 */
	uint16		reserved;		/* 0 */
	int32		nevents;
	int32		ndays;			/* day buckets over all events */
	int32		nsums;			/* per-day sums over all events */
	int32		name_bytes;
} ActivityHeader;

typedef struct ActivityEvent
{
	int64		count;			/* all events, folded ones included */
	float8		sum;			/* sum of their values */
	TimestampTz first_at;
	TimestampTz last_at;
	uint32		name_off;		/* into names[] */
	uint32		name_len;
	uint32		day_start;		/* index of the first bucket in days[] */
	uint32		ndays;
	uint32		sum_start;		/* index into sums[] or ACTIVITY_NO_SUMS */
	int32		trim_day;		/* ACTIVITY_NO_TRIM, or: count includes
								 * events folded from days before it */
} ActivityEvent;

StaticAssertDecl(sizeof(ActivityHeader) == 24, "ActivityHeader must be 24 bytes");
StaticAssertDecl(sizeof(ActivityEvent) == 56, "ActivityEvent must be 56 bytes");

#define ACT_EVENTS(a)	((ActivityEvent *) ((char *) (a) + sizeof(ActivityHeader)))
#define ACT_SUMS(a)		((float8 *) (ACT_EVENTS(a) + (a)->nevents))
#define ACT_DAYS(a)		((int32 *) (ACT_SUMS(a) + (a)->nsums))
#define ACT_COUNTS(a)	(ACT_DAYS(a) + (a)->ndays)
#define ACT_NAMES(a)	((char *) (ACT_COUNTS(a) + (a)->ndays))

#define DatumGetActivityP(X)	((ActivityHeader *) PG_DETOAST_DATUM(X))
#define PG_GETARG_ACTIVITY_P(n) DatumGetActivityP(PG_GETARG_DATUM(n))
#define PG_RETURN_ACTIVITY_P(x) PG_RETURN_POINTER(x)

/*
 * One event's data while a value is built (input, receive, aggregate,
 * merge, trim); sums is NULL when every per-day sum is zero.
 */
typedef struct ActivityBuildEvent
{
	const char *name;
	int			name_len;
	int64		count;
	float8		sum;
	TimestampTz first_at;
	TimestampTz last_at;
	int32		trim_day;
	int			ndays;
	int32	   *days;
	int32	   *counts;
	float8	   *sums;
} ActivityBuildEvent;

/* Day range accepted: 0001-01-01 to 9999-12-31 (UTC). */
extern int32 activity_min_day(void);
extern int32 activity_max_day(void);

extern int32 activity_day_of(TimestampTz ts);
extern void activity_check_timestamp(TimestampTz ts);
extern ActivityHeader *activity_pack(ActivityBuildEvent *ev, int nevents);
extern ActivityHeader *activity_pack_sorted(const ActivityBuildEvent *ev,
											int nevents);
extern void activity_validate(const ActivityHeader *a, Size size, int sqlstate);
extern void activity_check_header(const ActivityHeader *a);
extern void activity_unpack_event(const ActivityHeader *a, int i,
								  ActivityBuildEvent *out);
extern int	activity_find_event(const ActivityHeader *a, const char *name,
								int len);

#endif							/* CDP_ACTIVITY_H */
