/*-------------------------------------------------------------------------
 *
 * audience.h
 *	  The cdp.audience type: a set of profile ids held as a CRoaring bitmap.
 *
 * CRoaring allocates with malloc, so every live bitmap is wrapped in an
 * AudienceBitmap whose memory-context reset callback frees it: an error
 * raised halfway through a query leaks nothing.  Code that is done with a
 * bitmap frees it early with audience_bitmap_free(); the callback then has
 * nothing left to do.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CDP_AUDIENCE_H
#define CDP_AUDIENCE_H

#include "fmgr.h"
#include "utils/palloc.h"

#include <roaring/roaring.h>

/*
 * Stored form: varlena header, this version byte, then CRoaring's portable
 * serialization of a run-optimized bitmap.
 */
#define AUDIENCE_VERSION	1

/* Largest profile id an audience can hold (CRoaring bitmaps are 32-bit). */
#define AUDIENCE_MAX_ID		((int64) PG_UINT32_MAX)

typedef struct AudienceBitmap
{
	roaring_bitmap_t *r;		/* NULL once freed */
	MemoryContextCallback cb;
} AudienceBitmap;

/* A new, empty bitmap owned by memory context cxt. */
extern AudienceBitmap *audience_bitmap_create(MemoryContext cxt);

/*
 * An empty holder (r = NULL) owned by cxt, its callback registered: assign
 * b->r = roaring_...() right away, then call audience_bitmap_check(b).
 */
extern AudienceBitmap *audience_bitmap_holder(MemoryContext cxt);

/* Raise "out of memory" when CRoaring returned NULL into b->r. */
extern void audience_bitmap_check(AudienceBitmap *b);

/* Free the CRoaring memory now instead of at the context reset. */
extern void audience_bitmap_free(AudienceBitmap *b);

/* Check an id and narrow it to 32 bits, or raise an error naming what. */
extern uint32 audience_check_id(int64 id, const char *what);

/*
 * Validate CRoaring's portable serialization in buf[0..len) completely
 * (every count, key, value and run against the bytes present) and return a
 * bitmap owned by cxt.  Raises ERRCODE_INVALID_BINARY_REPRESENTATION, or
 * ERRCODE_DATA_CORRUPTED for stored data.
 */
extern AudienceBitmap *audience_from_portable(MemoryContext cxt,
											  const char *buf, size_t len,
											  bool stored);

/* Deserialize a cdp.audience datum into a bitmap owned by cxt. */
extern AudienceBitmap *audience_from_datum(MemoryContext cxt, Datum d);

/*
 * Run-optimize and serialize into a new cdp.audience varlena (palloc'd in
 * CurrentMemoryContext).  The bitmap stays valid.
 */
extern struct varlena *audience_to_varlena(AudienceBitmap *b);

#endif							/* CDP_AUDIENCE_H */
