/*-------------------------------------------------------------------------
 *
 * run_as.h
 *	  Run SQL as another role (a source's, feed's or segment's owner), the
 *	  way REFRESH MATERIALIZED VIEW runs a view's query as its owner.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CDP_RUN_AS_H
#define CDP_RUN_AS_H

typedef struct CdpRoleSwitch
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} CdpRoleSwitch;

/*
 * Become role (optionally as a security-restricted operation) with
 * search_path pinned, in a new GUC nest level: settings the caller changes
 * afterwards (GUC_ACTION_SAVE) are undone by cdp_restore_role().  An error
 * in between is undone by transaction or subtransaction abort.
 */
extern void cdp_switch_role(CdpRoleSwitch *rs, Oid role, bool restricted,
							const char *search_path);
extern void cdp_restore_role(CdpRoleSwitch *rs);

/* Set a GUC for the current nest level (undone by cdp_restore_role). */
extern void cdp_set_local_guc(const char *name, const char *value);

#endif							/* CDP_RUN_AS_H */
