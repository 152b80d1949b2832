/*-------------------------------------------------------------------------
 *
 * hugemem.h
 *	  Large working arrays on transparent huge pages, where the kernel
 *	  offers them.
 *
 * Stitching keeps arrays of hundreds of megabytes that are filled once and
 * then read at random.  With 4 kB pages every first touch is a page fault
 * and random reads miss the TLB; asking for 2 MB pages (MADV_HUGEPAGE)
 * cuts both.  Only whole 2 MB ranges inside an allocation are advised, so
 * neighbouring memory is unaffected, and the advice is a no-op where
 * transparent huge pages are off or unsupported.  Advise before the first
 * touch: pages already faulted in stay small.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CDP_HUGEMEM_H
#define CDP_HUGEMEM_H

#include <sys/mman.h>

#define CDP_HUGE_PAGE	((Size) 2 * 1024 * 1024)

/* Ask for the cache line at p before it is read, or written. */
#if defined(__GNUC__) || defined(__clang__)
#define cdp_prefetch(p) __builtin_prefetch(p)
#define cdp_prefetch_write(p) __builtin_prefetch((p), 1)
#else
#define cdp_prefetch(p) ((void) 0)
#define cdp_prefetch_write(p) ((void) 0)
#endif

static inline void
cdp_advise_huge(void *p, Size size)
{
#ifdef MADV_HUGEPAGE
	uintptr_t	lo = TYPEALIGN(CDP_HUGE_PAGE, (uintptr_t) p);
	uintptr_t	hi = TYPEALIGN_DOWN(CDP_HUGE_PAGE, (uintptr_t) p + size);

	if (hi > lo)
		(void) madvise((void *) lo, hi - lo, MADV_HUGEPAGE);
#endif
}

/* MemoryContextAllocHuge, advised */
static inline void *
cdp_alloc_huge(MemoryContext cxt, Size size)
{
	void	   *p = MemoryContextAllocHuge(cxt, size);

	cdp_advise_huge(p, size);
	return p;
}


/*
 * A large array in an anonymous mapping of its own.  The kernel hands it out
 * zero-filled and page by page as it is touched (no memset over memory that
 * is already zero), it grows with mremap (its pages move instead of being
 * copied), and it is unmapped when the memory context it was made in is
 * reset or deleted, so an error cannot leak it.
 */
typedef struct CdpMapStats
{
	Size		current;		/* bytes mapped now */
	Size		peak;			/* most bytes mapped at once */
} CdpMapStats;

typedef struct CdpMapping
{
	void	   *addr;			/* NULL once unmapped */
	Size		size;
	CdpMapStats *stats;			/* may be NULL */
	MemoryContextCallback cb;
} CdpMapping;

extern CdpMapping *cdp_map(MemoryContext cxt, Size size, CdpMapStats *stats);
extern void cdp_remap(CdpMapping *m, Size size);
extern void *cdp_map_grow(CdpMapping **m, MemoryContext cxt, Size size,
						  CdpMapStats *stats);
extern void cdp_unmap(CdpMapping *m);

#endif							/* CDP_HUGEMEM_H */
