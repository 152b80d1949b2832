/*-------------------------------------------------------------------------
 *
 * hugemem.c
 *	  Large arrays in anonymous mappings tied to a memory context (see
 *	  hugemem.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/mman.h>
#include <unistd.h>

#include "utils/memutils.h"

#include "hugemem.h"

static void pg_attribute_noreturn()
mapping_failed(Size size)
{
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("out of memory"),
			 errdetail("Failed on a request of size %zu: %m.", size)));
}

/* whole pages; from 2 MB on, whole huge pages */
static Size
mapping_size(Size size)
{
	size = Max(size, 1);
	if (size >= CDP_HUGE_PAGE)
		return TYPEALIGN(CDP_HUGE_PAGE, size);
	return TYPEALIGN(getpagesize(), size);
}

/*
 * Advise a whole mapping, not only its aligned 2 MB ranges: advice on part
 * of it would split it into several kernel mappings, which mremap refuses
 * to grow.
 */
static void
advise_mapping(void *p, Size size)
{
#ifdef MADV_HUGEPAGE
	(void) madvise(p, size, MADV_HUGEPAGE);
#endif
}

static void *
new_mapping(Size size)
{
	void	   *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
						 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		mapping_failed(size);
	advise_mapping(p, size);
	return p;
}

static void
account(CdpMapStats *stats, Size add, Size remove)
{
	if (stats == NULL)
		return;
	stats->current = stats->current + add - remove;
	stats->peak = Max(stats->peak, stats->current);
}

/* memory context reset callback: the mapping goes with its context */
static void
release_mapping(void *arg)
{
	CdpMapping *m = (CdpMapping *) arg;

	if (m->addr != NULL)
	{
		(void) munmap(m->addr, m->size);
		account(m->stats, 0, m->size);
		m->addr = NULL;
	}
}

/* A zero-filled mapping of at least size bytes, released with cxt. */
CdpMapping *
cdp_map(MemoryContext cxt, Size size, CdpMapStats *stats)
{
	CdpMapping *m = MemoryContextAllocZero(cxt, sizeof(CdpMapping));
	void	   *p;

	size = mapping_size(size);
	p = new_mapping(size);
	m->addr = p;
	m->size = size;
	m->stats = stats;
	account(stats, size, 0);
	m->cb.func = release_mapping;
	m->cb.arg = m;
	MemoryContextRegisterResetCallback(cxt, &m->cb);
	return m;
}

/* Grow a mapping to at least size bytes; its address may change. */
void
cdp_remap(CdpMapping *m, Size size)
{
	void	   *p;

	Assert(m->addr != NULL);
	size = mapping_size(size);
	if (size <= m->size)
		return;
	p = MAP_FAILED;
#ifdef MREMAP_MAYMOVE
	p = mremap(m->addr, m->size, size, MREMAP_MAYMOVE);
	if (p != MAP_FAILED)
		advise_mapping(p, size);
#endif
	if (p == MAP_FAILED)
	{
		/* no mremap, or it refused: copy */
		p = new_mapping(size);
		memcpy(p, m->addr, m->size);
		(void) munmap(m->addr, m->size);
	}
	account(m->stats, size, m->size);
	m->addr = p;
	m->size = size;
}

/*
 * A growing array's memory: *m made on first use, grown after; returns the
 * (possibly new) address.
 */
void *
cdp_map_grow(CdpMapping **m, MemoryContext cxt, Size size, CdpMapStats *stats)
{
	if (*m == NULL)
		*m = cdp_map(cxt, size, stats);
	else
		cdp_remap(*m, size);
	return (*m)->addr;
}

/* Unmap now instead of with the context. */
void
cdp_unmap(CdpMapping *m)
{
	release_mapping(m);
}
