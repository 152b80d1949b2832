/*-------------------------------------------------------------------------
 *
 * activity.h
 *	  On-disk format of cdp.activity, a per-profile behavioural summary.
 *
 * A value is one varlena holding a byte stream; nothing in it is aligned,
 * so accessors read even a short (1-byte header) value in place.  Integers
 * are unsigned LEB128 varints, signed ones zigzag-encoded first; float8s
 * are 8 raw bytes; a "time" is 5 bytes, little-endian: the microseconds
 * since its UTC midnight in the low 37 bits, and the low 3 bits of a day
 * offset in the high 3 (the rest of the offset is the varint before it); a
 * "sum" is a varint holding a scale s (0-6) in its low 3 bits and an
 * integer k, zigzagged, above them, for the float8 k / 10^s when that
 * division gives it back exactly (the smallest such s), else the varint 7
 * and the float8.
 *
 *	byte		version (ACTIVITY_VERSION)
 *	varint		number of events
 *	zigzag		base day: the earliest first day of the events (UTC days
 *				since 2000-01-01), only when there are events
 *	per event, sorted by name (bytewise), names unique:
 *	  varint	name length in characters, shifted left by 2, ORed with
 *				the name's code (ACT_NAME_*), then the name: its bytes,
 *				or its characters as 5- or 6-bit codes packed from the
 *				least significant bit up, padded with zero bits to a byte;
 *				for a well-known name (ACT_NAME_KNOWN) its index in the
 *				list of them instead of the length, and nothing after
 *	  byte		flags (ACT_F_*) in the low 4 bits, the number of stored day
 *				buckets in the high 4 (ACT_NDAYS_MORE: 15 or more, the rest
 *				follows the sum)
 *	  varint + time
 *				first time stamp: its day as offset from the base day
 *	  unless ACT_F_ONE (one event: count 1, last = first):
 *	    varint	count
 *	    varint + time, or time alone
 *				last time stamp: its day as offset from the first day;
 *				the time alone (same day as the first) for an event never
 *				trimmed with no stored buckets
 *	  varint	trim day minus first day minus 1, with ACT_F_TRIMMED: count
 *				includes events folded from days before the trim day
 *				(cdp.activity_trim), which lies after the first day
 *	  sum		sum of the values, with ACT_F_SUM (zero otherwise)
 *	  varint	number of stored buckets minus ACT_NDAYS_MORE, only when
 *				the flags byte holds ACT_NDAYS_MORE
 *	  varint	bytes of the buckets, when any are stored (lookups skip
 *				them; an event without stored buckets is skipped by
 *				decoding its fixed part)
 *	  per bucket, days strictly ascending; an event never trimmed stores
 *	  none when its events all lie on one day (its one bucket is then the
 *	  first day, the count and, with ACT_F_DAY_SUMS, the sum):
 *		varint	UTC day, as distance from the previous bucket (from the
 *				first day for the first bucket); never trimmed, the first
 *				bucket's day is the first day and the last one's (of two
 *				or more) the last day, and neither is stored
 *		varint	count; never trimmed, not stored for the last bucket:
 *				the count minus the other buckets'
 *		sum		sum of the values, with ACT_F_DAY_SUMS
 *
 * A name is packed with the smallest alphabet that holds all its
 * characters (ACT_NAME_5BIT, then ACT_NAME_6BIT), else stored as is:
 * event names are much of a summary's bytes, and most are snake_case.
 * Names of the published event specs (Segment's, in snake_case and Title
 * Case, and Google Analytics 4's) are in a fixed list (activity.c) and
 * take no bytes beyond their index; the list only ever grows.
 * Time stamps are most of the rest: the day offsets keep them to 6 bytes
 * where an absolute microsecond count takes 8.
 *
 * The encoding is canonical (input and receive re-encode a value and
 * compare), so equal summaries have equal bytes.  An event's count minus
 * its bucket counts is the number of events folded by cdp.activity_trim,
 * all on days before its trim day.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CDP_ACTIVITY_H
#define CDP_ACTIVITY_H

#include "datatype/timestamp.h"

#define ACTIVITY_VERSION	4

/* event flags */
#define ACT_F_SUM		0x01	/* the event's sum is not zero */
#define ACT_F_TRIMMED	0x02	/* a trim day follows */
#define ACT_F_DAY_SUMS	0x04	/* buckets carry sums (some are not zero) */
#define ACT_F_ONE		0x08	/* count 1, last = first: neither stored */
#define ACT_F_ALL		0x0f
#define ACT_NDAYS_SHIFT	4
#define ACT_NDAYS_MORE	15		/* high bits of the flags byte, all set */

/* a "time": microseconds of the day, then 3 bits of a day offset */
#define ACT_TIME_BYTES	5
#define ACT_TIME_BITS	37

/* how a name is stored: low 2 bits of its length varint */
#define ACT_NAME_RAW	0		/* its bytes */
#define ACT_NAME_5BIT	1		/* 5-bit codes of ACT_ALPHABET5 */
#define ACT_NAME_6BIT	2		/* 6-bit codes of ACT_ALPHABET6 */
#define ACT_NAME_KNOWN	3		/* an index in the well-known names */

/* trim_day of an event that was never trimmed */
#define ACTIVITY_NO_TRIM	PG_INT32_MIN

#define DatumGetActivityP(X)	((struct varlena *) PG_DETOAST_DATUM_PACKED(X))
#define PG_GETARG_ACTIVITY_P(n) DatumGetActivityP(PG_GETARG_DATUM(n))
#define PG_RETURN_ACTIVITY_P(x) PG_RETURN_POINTER(x)

/*
 * One event's data while a value is built (input, receive, aggregate,
 * merge, trim) or read whole; sums is NULL when every per-day sum is zero.
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

/* Order of events in a value: names bytewise, a prefix first. */
static inline int
activity_build_event_cmp(const ActivityBuildEvent *x, const ActivityBuildEvent *y)
{
	int			r = memcmp(x->name, y->name, Min(x->name_len, y->name_len));

	if (r != 0)
		return r;
	return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/*
 * Reading a value: events in order, each decoded up to its buckets, which
 * stay encoded until someone needs them.  Every read is bounded by the
 * value's (or the event's) end, so altered bytes give an error, never a
 * read outside the value.
 */
typedef struct ActivityReader
{
	const uint8 *p;				/* next event */
	const uint8 *end;
	int32		base_day;		/* the earliest first day */
	int32		nevents;
	int32		next;			/* index of the next event */
	int			sqlstate;		/* of decoding errors */
} ActivityReader;

typedef struct ActivityEventRef
{
	uint64		name_head;		/* the varint in front of the name */
	const uint8 *name_data;		/* stored name, packed or not */
	int			name_len;		/* in characters (bytes) */
	uint8		name_code;		/* ACT_NAME_* */
	const char *name_text;		/* the name, once activity_event_name ran */
	uint8		flags;
	int64		count;
	float8		sum;
	TimestampTz first_at;
	TimestampTz last_at;
	int32		first_day;		/* UTC days of first_at and last_at */
	int32		last_day;
	int32		trim_day;		/* ACTIVITY_NO_TRIM unless ACT_F_TRIMMED */
	int32		ndays;
	bool		bucket_implied; /* one bucket, not stored: the totals' */
	const uint8 *buckets;		/* encoded buckets */
	const uint8 *end;			/* end of the event */
} ActivityEventRef;

/*
 * An event name packed as values store it, kept across rows by accessors
 * whose name argument is the same for every row.
 */
typedef struct ActivityKey
{
	char	   *name;			/* a copy of the name */
	int			len;
	int			code;			/* ACT_NAME_* */
	uint64		head;			/* the varint in front of a stored name */
	int			stored;			/* bytes of the packed form */
	char	   *packed;
	int			cap;			/* bytes allocated for name and for packed */
} ActivityKey;

/* Day range accepted: 0001-01-01 to 9999-12-31 (UTC). */
extern int32 activity_min_day(void);
extern int32 activity_max_day(void);

extern int32 activity_day_of(TimestampTz ts);
extern void activity_check_timestamp(TimestampTz ts);
extern struct varlena *activity_pack(ActivityBuildEvent *ev, int nevents);
extern struct varlena *activity_pack_sorted(const ActivityBuildEvent *ev,
											int nevents);
extern void activity_validate(const struct varlena *a, int sqlstate);
extern void activity_reader_init(ActivityReader *r, const struct varlena *a,
								 int sqlstate);
extern bool activity_next_event(ActivityReader *r, ActivityEventRef *e);
extern void activity_key_set(ActivityKey *k, const char *name, int len,
							 MemoryContext cxt);
extern bool activity_find_key(ActivityReader *r, const ActivityKey *k,
							  ActivityEventRef *e);
extern const char *activity_event_name(ActivityEventRef *e);
extern void activity_event_unpack(ActivityEventRef *e, int sqlstate,
								  ActivityBuildEvent *out);

#endif							/* CDP_ACTIVITY_H */
