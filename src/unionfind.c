/*-------------------------------------------------------------------------
 *
 * unionfind.c
 *	  Disjoint-set forest over dense node ids (see unionfind.h).
 *
 * Union by size keeps trees shallow and path halving flattens them as they
 * are walked, so a sequence of m operations on n nodes costs
 * O(m * alpha(n)).  The arrays are mappings of their own (hugemem.h) that
 * grow by doubling without copying; a graph of a few hundred million
 * identifiers needs more than 1 GB.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "hugemem.h"
#include "unionfind.h"

/* A forest of capacity nodes to start with, in CurrentMemoryContext. */
UnionFind *
uf_create(uint32 capacity, int ncounters, CdpMapStats *stats)
{
	UnionFind  *uf = palloc0(sizeof(UnionFind));

	uf->capacity = Max(capacity, 1024);
	uf->ncounters = ncounters;
	uf->parent_map = cdp_map(CurrentMemoryContext, sizeof(uint32) * (Size) uf->capacity, stats);
	uf->parent = uf->parent_map->addr;
	uf->size_map = cdp_map(CurrentMemoryContext, sizeof(uint32) * (Size) uf->capacity, stats);
	uf->size = uf->size_map->addr;
	if (ncounters > 0)
	{
		uf->counters_map = cdp_map(CurrentMemoryContext,
								   sizeof(int32) * (Size) uf->capacity * ncounters, stats);
		uf->counters = uf->counters_map->addr;
	}
	return uf;
}

uint32
uf_add(UnionFind *uf)
{
	uint32		x;

	if (uf->n == uf->capacity)
	{
		Size		newcap = (Size) uf->capacity * 2;

		if (newcap > PG_UINT32_MAX)
			newcap = PG_UINT32_MAX;
		if (newcap <= uf->capacity)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many distinct identifiers"),
					 errdetail("At most %u distinct identifiers can be stitched at once.",
							   PG_UINT32_MAX - 1)));
		cdp_remap(uf->parent_map, sizeof(uint32) * newcap);
		uf->parent = uf->parent_map->addr;
		cdp_remap(uf->size_map, sizeof(uint32) * newcap);
		uf->size = uf->size_map->addr;
		if (uf->ncounters > 0)
		{
			cdp_remap(uf->counters_map, sizeof(int32) * newcap * uf->ncounters);
			uf->counters = uf->counters_map->addr;
		}
		uf->capacity = (uint32) newcap;
	}
	x = uf->n++;
	uf->parent[x] = x;
	uf->size[x] = 1;
	if (uf->ncounters > 0)
		memset(uf_counters(uf, x), 0, sizeof(int32) * uf->ncounters);
	return x;
}

uint32
uf_union(UnionFind *uf, uint32 a, uint32 b)
{
	uint32		ra = uf_find(uf, a);
	uint32		rb = uf_find(uf, b);

	if (ra == rb)
		return ra;
	/* attach the smaller tree under the larger one */
	if (uf->size[ra] < uf->size[rb])
	{
		uint32		t = ra;

		ra = rb;
		rb = t;
	}
	uf->parent[rb] = ra;
	uf->size[ra] += uf->size[rb];
	if (uf->ncounters > 0)
	{
		int32	   *ca = uf_counters(uf, ra);
		int32	   *cb = uf_counters(uf, rb);
		int			i;

		for (i = 0; i < uf->ncounters; i++)
			ca[i] += cb[i];
	}
	return ra;
}

Size
uf_memory(const UnionFind *uf)
{
	return (Size) uf->capacity * (2 * sizeof(uint32) + sizeof(int32) * uf->ncounters);
}
