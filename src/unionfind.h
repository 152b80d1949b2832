/*-------------------------------------------------------------------------
 *
 * unionfind.h
 *	  Disjoint sets over dense node ids 0..n-1: union by size, path halving,
 *	  and optional per-root counters that are summed when sets merge.
 *
 * Pure algorithm: no fmgr, no catalog access; memory comes from the
 * context that was current at uf_create().
 *
 *-------------------------------------------------------------------------
 */
#ifndef CDP_UNIONFIND_H
#define CDP_UNIONFIND_H

#include "hugemem.h"

typedef struct UnionFind
{
	uint32	   *parent;			/* parent[x] == x for roots */
	uint32	   *size;			/* set size, valid at roots */
	int32	   *counters;		/* ncounters per node, valid at roots */
	int			ncounters;
	uint32		n;				/* nodes in use */
	uint32		capacity;
	CdpMapping *parent_map;
	CdpMapping *size_map;
	CdpMapping *counters_map;
} UnionFind;

extern UnionFind *uf_create(uint32 capacity, int ncounters, CdpMapStats *stats);

/* Add a singleton node; returns its id (== previous n). */
extern uint32 uf_add(UnionFind *uf);

/* Root of x, halving the path on the way. */
static inline uint32
uf_find(UnionFind *uf, uint32 x)
{
	uint32	   *parent = uf->parent;

	while (parent[x] != x)
	{
		parent[x] = parent[parent[x]];
		x = parent[x];
	}
	return x;
}

/* Merge the sets of a and b; returns the surviving root. */
extern uint32 uf_union(UnionFind *uf, uint32 a, uint32 b);

/* Counter c of the set whose root is r. */
static inline int32 *
uf_counters(UnionFind *uf, uint32 r)
{
	return uf->counters + (Size) r * uf->ncounters;
}

/* Bytes held by the structure. */
extern Size uf_memory(const UnionFind *uf);

#endif							/* CDP_UNIONFIND_H */
