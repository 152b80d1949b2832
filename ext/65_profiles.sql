-- Maintained profile view: trait and event feeds resolved through the
-- identity graph into cdp.profile_traits and cdp.profile_activity, the
-- tables behind cdp.profile_view (src/profile_feed.c)
--
-- A feed query runs as the role that registered it, with the search_path it
-- was registered with.  cdp.refresh_profiles() recomputes both tables in
-- full, in one transaction.

CREATE TABLE cdp.profile_feeds (
  name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 128),
  feed text NOT NULL CHECK (feed IN ('traits', 'events')),
  query text NOT NULL,
  search_path text NOT NULL,
  owner regrole NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  last_read_at timestamptz,
  last_rows_read bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE cdp.profile_feeds IS
  'registered trait and event feeds of the profile view: a SELECT read as its owner with the search_path it was registered with';
SELECT pg_catalog.pg_extension_config_dump('cdp.profile_feeds', '');

CREATE TABLE cdp.profile_settings (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  trait_rules jsonb,
  updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cdp.profile_settings IS
  'the cdp.merge_profile rules golden-record traits are merged with (one row; none or NULL: latest wins for every attribute); set with cdp.set_trait_rules()';
SELECT pg_catalog.pg_extension_config_dump('cdp.profile_settings', '');

-- ------------------------------------------------------------ C internals

CREATE FUNCTION cdp.profile_read_feed(feed text)
RETURNS TABLE(kind text, value text, attributes jsonb, at timestamptz, priority integer,
              event text, amount float8)
AS 'MODULE_PATHNAME', 'cdp_profile_read_feed'
-- Feeds are large (every event of every profile): the default estimate of
-- 1000 rows would join them to cdp.identifiers by millions of index probes
-- instead of one hash join.
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE ROWS 10000000;
COMMENT ON FUNCTION cdp.profile_read_feed(text) IS
  'internal: the rows of a profile feed, read as the feed''s owner (columns a feed does not have are NULL)';

CREATE FUNCTION cdp.profile_check_feed(feed text)
RETURNS void
AS 'MODULE_PATHNAME', 'cdp_profile_check_feed'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION cdp.profile_check_feed(text) IS
  'internal: plan a profile feed as its owner and check its columns, without reading it';

-- reading a feed as its owner must not be open to everyone
REVOKE ALL ON FUNCTION cdp.profile_read_feed(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdp.profile_check_feed(text) FROM PUBLIC;

-- ------------------------------------------------------------------ feeds

CREATE FUNCTION cdp.profile_add_feed(name text, feed text, query text, search_path text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, cdp, pg_temp
AS $$
BEGIN
  IF profile_add_feed.query IS NULL THEN
    RAISE EXCEPTION 'query of profile feed "%" is NULL', profile_add_feed.name
      USING ERRCODE = 'null_value_not_allowed';
  END IF;
  IF EXISTS (SELECT FROM cdp.profile_feeds f WHERE f.name = profile_add_feed.name) THEN
    RAISE EXCEPTION 'profile feed "%" already exists', profile_add_feed.name
      USING ERRCODE = 'duplicate_object', HINT = 'Drop it first with cdp.drop_feed().';
  END IF;
  INSERT INTO cdp.profile_feeds (name, feed, query, search_path, owner)
  VALUES (profile_add_feed.name, profile_add_feed.feed, profile_add_feed.query,
          profile_add_feed.search_path, current_user::regrole);
  -- planned as the caller (its owner): errors roll the row back
  PERFORM cdp.profile_check_feed(profile_add_feed.name);
END
$$;
COMMENT ON FUNCTION cdp.profile_add_feed(text, text, text, text) IS
  'internal: register a profile feed with the search_path its query will run with';
REVOKE ALL ON FUNCTION cdp.profile_add_feed(text, text, text, text) FROM PUBLIC;

-- Not SECURITY DEFINER and deliberately without a pinned search_path: they
-- record the caller's role and search_path (every name they use is
-- qualified), as cdp.add_source does.
CREATE FUNCTION cdp.add_trait_feed(name text, query text)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$ SELECT cdp.profile_add_feed($1, 'traits', $2, pg_catalog.current_setting('search_path')) $$;
COMMENT ON FUNCTION cdp.add_trait_feed(text, text) IS
  'register a trait feed: a SELECT returning kind text, value text, attributes jsonb, at timestamptz [, priority integer]; it runs as the registering role with its search_path';

CREATE FUNCTION cdp.add_event_feed(name text, query text)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$ SELECT cdp.profile_add_feed($1, 'events', $2, pg_catalog.current_setting('search_path')) $$;
COMMENT ON FUNCTION cdp.add_event_feed(text, text) IS
  'register an event feed: a SELECT returning kind text, value text, event text, at timestamptz [, amount float8]; it runs as the registering role with its search_path';

CREATE FUNCTION cdp.drop_feed(name text)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, cdp, pg_temp
AS $$
BEGIN
  DELETE FROM cdp.profile_feeds f WHERE f.name = drop_feed.name;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'profile feed "%" does not exist', drop_feed.name
      USING ERRCODE = 'undefined_object';
  END IF;
END
$$;
COMMENT ON FUNCTION cdp.drop_feed(text) IS
  'stop reading a trait or event feed; its data leaves the profile tables at the next cdp.refresh_profiles()';

CREATE FUNCTION cdp.set_trait_rules(rules jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, cdp, pg_temp
AS $$
BEGIN
  IF rules IS NOT NULL THEN
    -- one dummy row makes cdp.merge_profile parse the rules: errors name the bad key
    PERFORM cdp.merge_profile(v.a, v.at, 0, rules) FROM (VALUES ('{"x": 1}'::jsonb, now())) v(a, at);
  END IF;
  INSERT INTO cdp.profile_settings AS s (trait_rules, updated_at) VALUES (rules, now())
  ON CONFLICT (singleton) DO UPDATE SET trait_rules = excluded.trait_rules, updated_at = excluded.updated_at;
  RETURN rules;
END
$$;
COMMENT ON FUNCTION cdp.set_trait_rules(jsonb) IS
  'store the cdp.merge_profile rules (checked once) that golden-record traits are merged with (NULL: latest wins everywhere); they apply at the next cdp.refresh_profiles()';

-- ---------------------------------------------------------------- refresh

CREATE FUNCTION cdp.refresh_profiles(OUT profiles bigint, OUT trait_rows bigint,
                                     OUT event_rows bigint, OUT unresolved_rows bigint,
                                     OUT traits_changed bigint, OUT activity_changed bigint,
                                     OUT traits_removed bigint, OUT activity_removed bigint)
RETURNS record
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, cdp, pg_temp
AS $$
DECLARE
  rules jsonb := (SELECT s.trait_rules FROM cdp.profile_settings s);
BEGIN
  -- one refresh at a time; a second waits and then recomputes again
  PERFORM pg_advisory_xact_lock(1667526768, 65);

  -- Each feed is read once, straight into its aggregate: no feed row is
  -- staged.  Rows whose identifier the graph does not know (or refuses)
  -- form the group of profile NULL, which only counts them.
  CREATE TEMP TABLE cdp_feed_traits ON COMMIT DROP AS
    SELECT i.profile_id, count(*) AS nrows,
           cdp.merge_profile(r.attributes, r.at, r.priority, rules) FILTER (WHERE i.profile_id IS NOT NULL) AS traits
    FROM cdp.profile_feeds f
    CROSS JOIN LATERAL cdp.profile_read_feed(f.name) r
    LEFT JOIN cdp.identifiers i ON i.kind = r.kind COLLATE "C" AND i.value = r.value COLLATE "C"
    WHERE f.feed = 'traits'
    GROUP BY i.profile_id;
  CREATE TEMP TABLE cdp_feed_activity ON COMMIT DROP AS
    SELECT i.profile_id, count(*) AS nrows,
           cdp.activity_agg(r.event, r.at, r.amount) FILTER (WHERE i.profile_id IS NOT NULL) AS activity
    FROM cdp.profile_feeds f
    CROSS JOIN LATERAL cdp.profile_read_feed(f.name) r
    LEFT JOIN cdp.identifiers i ON i.kind = r.kind COLLATE "C" AND i.value = r.value COLLATE "C"
    WHERE f.feed = 'events'
    GROUP BY i.profile_id;
  SELECT coalesce(sum(x.nrows), 0), coalesce(sum(x.nrows) FILTER (WHERE x.profile_id IS NULL), 0)
    INTO trait_rows, unresolved_rows
  FROM cdp_feed_traits x;
  SELECT coalesce(sum(x.nrows), 0), unresolved_rows + coalesce(sum(x.nrows) FILTER (WHERE x.profile_id IS NULL), 0)
    INTO event_rows, unresolved_rows
  FROM cdp_feed_activity x;
  DELETE FROM cdp_feed_traits x WHERE x.profile_id IS NULL;
  DELETE FROM cdp_feed_activity x WHERE x.profile_id IS NULL OR x.activity IS NULL;
  CREATE UNIQUE INDEX ON cdp_feed_activity (profile_id);
  ANALYZE cdp_feed_traits, cdp_feed_activity;

  -- traits: one row per current profile ('{}' without observations)
  WITH up AS (
    INSERT INTO cdp.profile_traits AS t (profile_id, traits, updated_at)
    SELECT p.profile_id, coalesce(m.traits, '{}'), now()
    FROM cdp.profiles p LEFT JOIN cdp_feed_traits m USING (profile_id)
    ON CONFLICT (profile_id) DO UPDATE
      SET traits = excluded.traits, updated_at = excluded.updated_at
      WHERE t.traits IS DISTINCT FROM excluded.traits
    RETURNING 1
  )
  SELECT count(*) INTO traits_changed FROM up;
  DELETE FROM cdp.profile_traits t
  WHERE NOT EXISTS (SELECT FROM cdp.profiles p WHERE p.profile_id = t.profile_id);
  GET DIAGNOSTICS traits_removed = ROW_COUNT;

  -- activity: one summary per profile with events
  WITH up AS (
    INSERT INTO cdp.profile_activity AS t (profile_id, activity, updated_at)
    SELECT x.profile_id, x.activity, now() FROM cdp_feed_activity x
    ON CONFLICT (profile_id) DO UPDATE
      SET activity = excluded.activity, updated_at = excluded.updated_at
      -- cdp.activity has no equality operator; its binary form is
      -- canonical, and much cheaper to produce than its text
      WHERE cdp.activity_send(t.activity) IS DISTINCT FROM cdp.activity_send(excluded.activity)
    RETURNING 1
  )
  SELECT count(*) INTO activity_changed FROM up;
  DELETE FROM cdp.profile_activity t
  WHERE NOT EXISTS (SELECT FROM cdp_feed_activity x WHERE x.profile_id = t.profile_id);
  GET DIAGNOSTICS activity_removed = ROW_COUNT;

  SELECT count(*) INTO profiles FROM cdp.profiles;
  DROP TABLE cdp_feed_traits, cdp_feed_activity;
END
$$;
COMMENT ON FUNCTION cdp.refresh_profiles() IS
  'recompute cdp.profile_traits (merged traits of every current profile) and cdp.profile_activity (activity summaries) from the feeds through the identity graph, in full and in one transaction; returns counts';
