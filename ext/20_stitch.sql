-- Identity stitching (src/stitch.c, src/unionfind.c)

-- Not STRICT: a NULL rules argument means the default rules.  VOLATILE and
-- PARALLEL UNSAFE because they run the caller's query (which may itself use
-- parallel workers); search_path is deliberately not pinned, so the query
-- resolves names as the caller would.
CREATE FUNCTION cdp.stitch(query text, rules jsonb DEFAULT NULL)
RETURNS TABLE(kind text, value text, profile_id bigint)
AS 'MODULE_PATHNAME', 'cdp_stitch'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION cdp.stitch(text, jsonb) IS
  'profile id of every identifier in the query''s rows: columns are identifier kinds in priority order, "at" orders the rows';

CREATE FUNCTION cdp.stitch_report(query text, rules jsonb DEFAULT NULL)
RETURNS TABLE(reason text, kind text, value text, linked_kind text, linked_value text,
              at timestamptz, detail text)
AS 'MODULE_PATHNAME', 'cdp_stitch_report'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION cdp.stitch_report(text, jsonb) IS
  'identifiers and links that cdp.stitch() refused with the same query and rules, with the reason (blocked, hub, limit:<kind>, max_profile_size)';

CREATE FUNCTION cdp.stitch_stats(query text, rules jsonb DEFAULT NULL,
                                 OUT rows_read bigint, OUT identifiers bigint, OUT profiles bigint,
                                 OUT largest_profile bigint, OUT blocked bigint, OUT hubs bigint,
                                 OUT refused_links bigint, OUT memory_bytes bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'cdp_stitch_stats'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION cdp.stitch_stats(text, jsonb) IS
  'counts of one stitching run: rows, identifiers, profiles, refusals and the engine''s peak memory';

CREATE FUNCTION cdp.stitch_rules(rules jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'cdp_stitch_rules'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.stitch_rules(jsonb) IS
  'the validated stitching rules with every default filled in';
