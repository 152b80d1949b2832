/*-------------------------------------------------------------------------
 *
 * merge_agg.h
 *	  Shared parts of the survivorship aggregates (merge_agg.c) and the
 *	  whole-record merge (merge_profile.c): type information of a
 *	  polymorphic input, serialized-state reading and writing, and the
 *	  value -> count table behind most_frequent, unique_values and union.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CDP_MERGE_AGG_H
#define CDP_MERGE_AGG_H

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/timestamp.h"

/* First byte of every serialized state. */
#define CDP_MERGE_STATE_VERSION 1

/* Priority of a row whose priority is NULL: below every real priority. */
#define CDP_PRIORITY_NULL PG_INT64_MIN

/* What the aggregates need to know about the value type. */
typedef struct CdpTypeInfo
{
	Oid			typid;
	Oid			collation;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	FmgrInfo   *cmp;			/* default btree comparison (typcache) */
	FmgrInfo   *hash;			/* default hash function, or NULL */
	bool		image_eq;		/* equal values have equal binary images */
} CdpTypeInfo;

/* Cursor over a serialized state; every read checks the bytes left. */
typedef struct CdpReader
{
	const char *data;
	int			len;
	int			pos;
} CdpReader;

/* value -> (count, latest at) table, see merge_agg.c */
typedef struct CdpFreqTable CdpFreqTable;

/* One distinct value of a CdpFreqTable, as handed out by cdp_freq_entries. */
typedef struct CdpFreqItem
{
	Datum		value;
	int64		count;
	TimestampTz at;				/* latest at seen with the value */
} CdpFreqItem;

extern void cdp_typeinfo_init(CdpTypeInfo *ti, Oid typid, Oid collation);
extern int	cdp_value_cmp(const CdpTypeInfo *ti, Datum a, Datum b);
extern int	cdp_image_cmp(const CdpTypeInfo *ti, Datum a, Datum b);
extern Datum cdp_value_copy(const CdpTypeInfo *ti, Datum value);

extern void cdp_state_corrupted(const char *what) pg_attribute_noreturn();
extern void cdp_write_bytes(StringInfo buf, const void *p, int len);
extern void cdp_write_typeinfo(StringInfo buf, const CdpTypeInfo *ti);
extern void cdp_write_value(StringInfo buf, const CdpTypeInfo *ti, Datum value);
extern void cdp_reader_init(CdpReader *r, bytea *b);
extern const char *cdp_read_bytes(CdpReader *r, int len);
extern uint8 cdp_read_uint8(CdpReader *r);
extern int32 cdp_read_int32(CdpReader *r);
extern int64 cdp_read_int64(CdpReader *r);
extern void cdp_read_typeinfo(CdpReader *r, CdpTypeInfo *ti);
extern Datum cdp_read_value(CdpReader *r, const CdpTypeInfo *ti);
extern void cdp_reader_end(CdpReader *r);

extern const CdpTypeInfo *cdp_freq_typeinfo(CdpFreqTable *ft);
extern CdpFreqTable *cdp_freq_create(MemoryContext cxt, const CdpTypeInfo *ti);
extern void cdp_freq_free(CdpFreqTable *ft);
extern void cdp_freq_add(CdpFreqTable *ft, Datum value, int64 count,
						 TimestampTz at);
extern void cdp_freq_merge(CdpFreqTable *dst, CdpFreqTable *src);
extern uint32 cdp_freq_size(CdpFreqTable *ft);
extern CdpFreqItem *cdp_freq_entries(CdpFreqTable *ft, int *n);
extern void cdp_freq_keep(CdpFreqTable *ft, int keep, bool by_recency);
extern void cdp_freq_write(StringInfo buf, CdpFreqTable *ft);
extern CdpFreqTable *cdp_freq_read(CdpReader *r, MemoryContext cxt,
								   const CdpTypeInfo *ti);
extern int	cdp_freq_best(CdpFreqItem *items, int n, const CdpTypeInfo *ti,
						  bool by_recency);
extern void cdp_freq_sort(CdpFreqItem *items, int n, const CdpTypeInfo *ti,
						  bool by_recency);

#endif							/* CDP_MERGE_AGG_H */
