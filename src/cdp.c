/*-------------------------------------------------------------------------
 *
 * cdp.c
 *	  Module entry point of the cdp extension.
 *
 * Each capability lives in its own file under src/; this one only carries
 * the module magic block.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

PG_MODULE_MAGIC;
