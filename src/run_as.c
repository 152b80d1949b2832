/*-------------------------------------------------------------------------
 *
 * run_as.c
 *	  Switch to another role around SQL run on its behalf.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"

#include "run_as.h"

void
cdp_switch_role(CdpRoleSwitch *rs, Oid role, bool restricted,
				const char *search_path)
{
	GetUserIdAndSecContext(&rs->save_userid, &rs->save_sec_context);
	SetUserIdAndSecContext(role,
						   rs->save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   (restricted ? SECURITY_RESTRICTED_OPERATION : 0));
	rs->save_nestlevel = NewGUCNestLevel();
	cdp_set_local_guc("search_path", search_path);
}

void
cdp_restore_role(CdpRoleSwitch *rs)
{
	AtEOXact_GUC(false, rs->save_nestlevel);
	SetUserIdAndSecContext(rs->save_userid, rs->save_sec_context);
}

void
cdp_set_local_guc(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}
