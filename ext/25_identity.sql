-- Managed identity graph (src/identity_graph.c, src/identity_source.c)
--
-- The graph lives in ordinary tables so BI tools can read it.  Every table is
-- an extension configuration table (pg_extension_config_dump), so pg_dump
-- keeps its rows.  All changes go through the functions below, which take
-- one transaction-level advisory lock: two refreshes never interleave.

CREATE SEQUENCE cdp.identifier_id_seq;
COMMENT ON SEQUENCE cdp.identifier_id_seq IS 'identifier ids of cdp.identifiers';
CREATE SEQUENCE cdp.profile_id_seq;
COMMENT ON SEQUENCE cdp.profile_id_seq IS 'profile ids of cdp.profiles: never reused';
CREATE SEQUENCE cdp.identity_run_id_seq;
COMMENT ON SEQUENCE cdp.identity_run_id_seq IS 'run ids of cdp.identity_runs';
CREATE SEQUENCE cdp.identity_override_id_seq;
COMMENT ON SEQUENCE cdp.identity_override_id_seq IS 'override ids of cdp.identity_overrides';

CREATE TABLE cdp.identity_settings (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  rules jsonb,
  seen_granularity interval NOT NULL DEFAULT interval '0' CHECK (seen_granularity >= interval '0'),
  updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cdp.identity_settings IS
  'the stitching rules of the managed identity graph (one row; none or NULL rules: the engine''s defaults), set with cdp.set_rules(), and the granularity of first_seen/last_seen, set with cdp.set_seen_granularity()';

CREATE TABLE cdp.identity_kinds (
  kind text PRIMARY KEY,
  priority integer NOT NULL UNIQUE,
  ttl interval CHECK (ttl > interval '0'),
  CHECK (kind !~ '^cdp\.')
);
COMMENT ON TABLE cdp.identity_kinds IS
  'identifier kinds in priority order (rules.priority first, then registration order) and their time-to-live (cdp.set_kind_ttl)';

CREATE TABLE cdp.identity_sources (
  name text PRIMARY KEY,
  query text NOT NULL,
  watermark text,
  watermark_value text,
  search_path text NOT NULL,
  owner regrole NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  last_read_at timestamptz,
  last_rows_read bigint NOT NULL DEFAULT 0,
  rows_read bigint NOT NULL DEFAULT 0
);
COMMENT ON TABLE cdp.identity_sources IS
  'registered sources: a SELECT whose columns are identifier kinds (plus "at"), read past watermark_value of its watermark column as its owner with the search_path it was registered with';

CREATE TABLE cdp.identifiers (
  identifier_id bigint PRIMARY KEY DEFAULT nextval('cdp.identifier_id_seq'),
  kind text COLLATE "C" NOT NULL,
  value text COLLATE "C" NOT NULL,
  profile_id bigint,
  first_seen timestamptz NOT NULL,
  last_seen timestamptz NOT NULL,
  UNIQUE (kind, value)
) WITH (fillfactor = 90);
-- no index on last_seen: refreshes move it all the time, and without one
-- those updates stay HOT
CREATE INDEX identifiers_profile_idx ON cdp.identifiers (profile_id);
-- bytewise collation: identifiers are compared as bytes, and the unique
-- index is much cheaper to maintain than under a linguistic collation
COMMENT ON TABLE cdp.identifiers IS
  'every identifier seen by a source, with its current profile (NULL: refused by the rules, see cdp.identity_refusals)';
ALTER SEQUENCE cdp.identifier_id_seq OWNED BY cdp.identifiers.identifier_id;

CREATE TABLE cdp.identity_links (
  a bigint NOT NULL,
  b bigint NOT NULL,
  first_seen timestamptz NOT NULL,
  last_seen timestamptz NOT NULL,
  source text NOT NULL,
  PRIMARY KEY (a, b),
  CHECK (a < b)
) WITH (fillfactor = 90);
CREATE INDEX identity_links_b_idx ON cdp.identity_links (b);
COMMENT ON TABLE cdp.identity_links IS
  'pairs of identifiers (cdp.identifiers ids, a < b) seen in one source row; the graph profiles are computed from, in first_seen order';

CREATE TABLE cdp.profiles (
  profile_id bigint PRIMARY KEY,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  identifier_count integer NOT NULL
) WITH (fillfactor = 90);
-- refreshes rewrite identifier_count and updated_at of the profiles they
-- reach: room on each page keeps those updates HOT (no index entry)
COMMENT ON TABLE cdp.profiles IS
  'current profiles; an id stays with its identifiers (merges keep the smallest, splits keep it on the largest part)';

CREATE TABLE cdp.profile_lineage (
  run_id bigint NOT NULL,
  at timestamptz NOT NULL,
  event text NOT NULL CHECK (event IN ('merge', 'split', 'delete')),
  old_profile_id bigint NOT NULL,
  new_profile_id bigint,
  link_a bigint,
  link_b bigint,
  cause text NOT NULL
);
CREATE INDEX profile_lineage_old_idx ON cdp.profile_lineage (old_profile_id);
COMMENT ON TABLE cdp.profile_lineage IS
  'merges (old id retired into new_profile_id; link_a/link_b: the newest link that joined them), splits (part of old id moved to new_profile_id) and deletions (no identifier left)';

CREATE TABLE cdp.identity_runs (
  run_id bigint PRIMARY KEY,
  operation text NOT NULL,
  started_at timestamptz NOT NULL,
  finished_at timestamptz,
  duration interval,
  rows_read bigint NOT NULL DEFAULT 0,
  identifiers_added bigint NOT NULL DEFAULT 0,
  links_added bigint NOT NULL DEFAULT 0,
  identifiers_expired bigint NOT NULL DEFAULT 0,
  links_expired bigint NOT NULL DEFAULT 0,
  identifiers_recomputed bigint NOT NULL DEFAULT 0,
  profiles_created bigint NOT NULL DEFAULT 0,
  profiles_merged bigint NOT NULL DEFAULT 0,
  profiles_split bigint NOT NULL DEFAULT 0,
  profiles_deleted bigint NOT NULL DEFAULT 0,
  refusals jsonb NOT NULL DEFAULT '{}',
  sources jsonb NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE cdp.identity_runs IS
  'one row per refresh, rebuild, erasure or override: rows read, identifiers and links added or expired, profiles created/merged/split/deleted, refusals by reason';

CREATE TABLE cdp.identity_refusals (
  identifier_id bigint NOT NULL,
  kind text NOT NULL,
  value text NOT NULL,
  reason text NOT NULL,
  linked_kind text,
  linked_value text,
  at timestamptz,
  detail text,
  run_id bigint NOT NULL
);
CREATE INDEX identity_refusals_identifier_idx ON cdp.identity_refusals (identifier_id);
COMMENT ON TABLE cdp.identity_refusals IS
  'what the rules refused at the last recomputation of each identifier''s profile: blocked values, hubs, limit:<kind>, max_profile_size, override';

CREATE TABLE cdp.identity_overrides (
  override_id bigint PRIMARY KEY DEFAULT nextval('cdp.identity_override_id_seq'),
  action text NOT NULL CHECK (action IN ('apart', 'together')),
  kind_a text NOT NULL,
  value_a text NOT NULL,
  kind_b text NOT NULL,
  value_b text NOT NULL,
  note text,
  created_at timestamptz NOT NULL DEFAULT now(),
  created_by name NOT NULL DEFAULT current_user,
  UNIQUE (kind_a, value_a, kind_b, value_b),
  CHECK ((kind_a, value_a) < (kind_b, value_b))
);
COMMENT ON TABLE cdp.identity_overrides IS
  'operator decisions that win over every rule: keep two identifiers apart, or put them in one profile';
ALTER SEQUENCE cdp.identity_override_id_seq OWNED BY cdp.identity_overrides.override_id;

CREATE TABLE cdp.identity_suppressed (
  kind text NOT NULL,
  value_sha256 text NOT NULL,
  forgotten_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (kind, value_sha256)
);
COMMENT ON TABLE cdp.identity_suppressed IS
  'identifiers erased by cdp.forget(), kept only as the SHA-256 of their value, so that sources cannot bring them back';

SELECT pg_catalog.pg_extension_config_dump('cdp.identity_settings', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identity_kinds', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identity_sources', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identifiers', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identity_links', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.profiles', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.profile_lineage', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identity_runs', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identity_refusals', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identity_overrides', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identity_suppressed', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identifier_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.profile_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identity_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdp.identity_override_id_seq', '');

-- ------------------------------------------------------------ C internals

CREATE FUNCTION cdp.identity_read_source(source text)
RETURNS TABLE(kind1 text, value1 text, kind2 text, value2 text, at timestamptz)
AS 'MODULE_PATHNAME', 'cdp_identity_read_source'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION cdp.identity_read_source(text) IS
  'internal: the identifier pairs of a source''s rows past its watermark, read as the source''s owner; advances the watermark';

CREATE FUNCTION cdp.identity_source_kinds(source text)
RETURNS text[]
AS 'MODULE_PATHNAME', 'cdp_identity_source_kinds'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION cdp.identity_source_kinds(text) IS
  'internal: the identifier kinds of a source (its columns but "at" and the watermark), checked by planning its query as its owner';

CREATE FUNCTION cdp.identity_recompute(run_id bigint, cause text, identifier_ids bigint[],
                                       profile_ids bigint[], staged boolean DEFAULT false,
                                       OUT identifiers_recomputed bigint, OUT profiles_created bigint,
                                       OUT profiles_merged bigint, OUT profiles_split bigint,
                                       OUT profiles_deleted bigint, OUT refusals jsonb)
RETURNS record
AS 'MODULE_PATHNAME', 'cdp_identity_recompute'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION cdp.identity_recompute(bigint, text, bigint[], bigint[], boolean) IS
  'internal: re-stitch the profiles of the given identifiers and profiles (NULL arrays: everything) and map the result onto stable ids; staged: first fold in the source rows of pg_temp.cdp_stage (new identifiers and links, first/last seen, time-to-live)';

REVOKE ALL ON FUNCTION cdp.identity_read_source(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdp.identity_source_kinds(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdp.identity_recompute(bigint, text, bigint[], bigint[], boolean) FROM PUBLIC;

-- --------------------------------------------------------------- helpers

CREATE FUNCTION cdp.identity_lock()
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- a snapshot taken before the lock would miss the previous run's rows
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'cdp identity graph changes need isolation level read committed, not %',
                    current_setting('transaction_isolation')
      USING ERRCODE = 'invalid_transaction_state',
            DETAIL = 'A transaction snapshot taken before the graph lock would not see the previous refresh.',
            HINT = 'Call it in its own transaction or with SET TRANSACTION ISOLATION LEVEL READ COMMITTED.';
  END IF;
  -- waits for a concurrent refresh; the lock goes with the transaction
  PERFORM pg_advisory_xact_lock(1667526768, 4);
END
$$;
COMMENT ON FUNCTION cdp.identity_lock() IS
  'internal: the transaction-level advisory lock every change of the identity graph takes (waits for the holder)';

CREATE FUNCTION cdp.identity_start_run(operation text)
RETURNS bigint
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
  INSERT INTO cdp.identity_runs (run_id, operation, started_at)
  VALUES (nextval('cdp.identity_run_id_seq'), operation, clock_timestamp())
  RETURNING run_id
$$;
COMMENT ON FUNCTION cdp.identity_start_run(text) IS 'internal: open a row in cdp.identity_runs';

CREATE FUNCTION cdp.identity_finish_run(run bigint, r record)
RETURNS cdp.identity_runs
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  result cdp.identity_runs;
BEGIN
  UPDATE cdp.identity_runs
     SET identifiers_recomputed = r.identifiers_recomputed,
         profiles_created = r.profiles_created,
         profiles_merged = r.profiles_merged,
         profiles_split = r.profiles_split,
         profiles_deleted = r.profiles_deleted,
         refusals = r.refusals,
         finished_at = clock_timestamp(),
         duration = clock_timestamp() - started_at
   WHERE run_id = run
  RETURNING * INTO result;
  RETURN result;
END
$$;
COMMENT ON FUNCTION cdp.identity_finish_run(bigint, record) IS 'internal: close a row of cdp.identity_runs';

-- -------------------------------------------------------------- settings

CREATE FUNCTION cdp.set_rules(rules jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  effective jsonb;
BEGIN
  PERFORM cdp.identity_lock();
  effective := cdp.stitch_rules(rules);   -- errors name the bad key
  INSERT INTO cdp.identity_settings AS s (rules, updated_at) VALUES (rules, now())
  ON CONFLICT (singleton) DO UPDATE SET rules = excluded.rules, updated_at = excluded.updated_at;
  RETURN effective;
END
$$;
COMMENT ON FUNCTION cdp.set_rules(jsonb) IS
  'store the stitching rules of the identity graph (NULL: defaults); they apply to profiles recomputed from now on, cdp.rebuild_identities() applies them everywhere';

CREATE FUNCTION cdp.get_rules()
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT cdp.stitch_rules((SELECT rules FROM cdp.identity_settings))
$$;
COMMENT ON FUNCTION cdp.get_rules() IS 'the identity graph''s effective stitching rules, defaults filled in';

CREATE FUNCTION cdp.set_kind_ttl(kind text, ttl interval)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM cdp.identity_lock();
  IF ttl IS NOT NULL AND ttl <= interval '0' THEN
    RAISE EXCEPTION 'invalid time-to-live "%" for identifier kind "%"', ttl, kind
      USING ERRCODE = 'invalid_parameter_value', HINT = 'Give a positive interval, or NULL for none.';
  END IF;
  INSERT INTO cdp.identity_kinds AS k (kind, priority, ttl)
  VALUES (kind, (SELECT coalesce(max(priority), 0) + 1 FROM cdp.identity_kinds), ttl)
  ON CONFLICT ON CONSTRAINT identity_kinds_pkey DO UPDATE SET ttl = excluded.ttl;
END
$$;
COMMENT ON FUNCTION cdp.set_kind_ttl(text, interval) IS
  'time-to-live of an identifier kind (NULL: none): at each refresh, links and identifiers of that kind not seen within it are dropped';

CREATE FUNCTION cdp.set_seen_granularity(granularity interval)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM cdp.identity_lock();
  IF granularity < interval '0' THEN
    RAISE EXCEPTION 'invalid granularity "%" for first_seen/last_seen', granularity
      USING ERRCODE = 'invalid_parameter_value', HINT = 'Give an interval of zero or more, or NULL for exact.';
  END IF;
  INSERT INTO cdp.identity_settings AS s (seen_granularity, updated_at)
  VALUES (coalesce(granularity, interval '0'), now())
  ON CONFLICT (singleton) DO UPDATE SET seen_granularity = excluded.seen_granularity,
                                        updated_at = excluded.updated_at;
END
$$;
COMMENT ON FUNCTION cdp.set_seen_granularity(interval) IS
  'a refresh moves first_seen/last_seen of a known identifier or link only when its rows widen them by more than this (NULL or 0: exact); fewer row updates for frequent refreshes, at the price of values up to that much out of date';

-- ---------------------------------------------------------------- sources

CREATE FUNCTION cdp.identity_add_source(name text, query text, watermark text, search_path text)
RETURNS text[]
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  kinds text[];
  k text;
BEGIN
  PERFORM cdp.identity_lock();
  INSERT INTO cdp.identity_sources (name, query, watermark, search_path, owner)
  VALUES (identity_add_source.name, identity_add_source.query, identity_add_source.watermark,
          identity_add_source.search_path, current_user::regrole);
  kinds := cdp.identity_source_kinds(identity_add_source.name);
  FOREACH k IN ARRAY kinds LOOP
    INSERT INTO cdp.identity_kinds AS ik (kind, priority)
    VALUES (k, (SELECT coalesce(max(priority), 0) + 1 FROM cdp.identity_kinds))
    ON CONFLICT ON CONSTRAINT identity_kinds_pkey DO NOTHING;
  END LOOP;
  RETURN kinds;
END
$$;
COMMENT ON FUNCTION cdp.identity_add_source(text, text, text, text) IS
  'internal: register a source with the search_path its query will run with';
REVOKE ALL ON FUNCTION cdp.identity_add_source(text, text, text, text) FROM PUBLIC;

-- Not SECURITY DEFINER and deliberately without a pinned search_path: it
-- records the caller's role and search_path (every name it uses is
-- qualified).
CREATE FUNCTION cdp.add_source(name text, query text, watermark text DEFAULT NULL)
RETURNS text[]
LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$ SELECT cdp.identity_add_source($1, $2, $3, pg_catalog.current_setting('search_path')) $$;
COMMENT ON FUNCTION cdp.add_source(text, text, text) IS
  'register a source query (columns: identifier kinds in priority order, optional "at" timestamptz, the watermark column); it runs as the registering role with its search_path; returns its kinds';

CREATE FUNCTION cdp.drop_source(name text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM cdp.identity_lock();
  DELETE FROM cdp.identity_sources s WHERE s.name = drop_source.name;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'identity source "%" does not exist', drop_source.name
      USING ERRCODE = 'undefined_object';
  END IF;
END
$$;
COMMENT ON FUNCTION cdp.drop_source(text) IS
  'stop reading a source; the identifiers and links it brought stay in the graph';

-- ---------------------------------------------------------------- refresh

CREATE FUNCTION cdp.refresh_identities()
RETURNS cdp.identity_runs
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  run bigint;
  src record;
  n bigint;
  per_source jsonb := '{}';
  r record;
BEGIN
  PERFORM cdp.identity_lock();
  run := cdp.identity_start_run('refresh');

  CREATE TEMP TABLE cdp_stage (source text, kind1 text COLLATE "C", value1 text COLLATE "C",
                               kind2 text COLLATE "C", value2 text COLLATE "C",
                               at timestamptz) ON COMMIT DROP;

  FOR src IN SELECT s.name FROM cdp.identity_sources s ORDER BY s.name LOOP
    INSERT INTO cdp_stage SELECT src.name, x.* FROM cdp.identity_read_source(src.name) x;
    SELECT s.last_rows_read INTO n FROM cdp.identity_sources s WHERE s.name = src.name;
    per_source := per_source || jsonb_build_object(src.name, n);
    UPDATE cdp.identity_runs SET rows_read = rows_read + n WHERE run_id = run;
  END LOOP;
  UPDATE cdp.identity_runs SET sources = per_source WHERE run_id = run;

  -- identifiers and links, time-to-live, and the profiles they reach
  SELECT * INTO r FROM cdp.identity_recompute(run, 'refresh', '{}', '{}', true);
  DROP TABLE cdp_stage;
  RETURN cdp.identity_finish_run(run, r);
END
$$;
COMMENT ON FUNCTION cdp.refresh_identities() IS
  'read every source past its watermark, add identifiers and links, expire by ttl, re-stitch only the profiles reached; one transaction; waits for a running refresh';

CREATE FUNCTION cdp.rebuild_identities()
RETURNS cdp.identity_runs
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  run bigint;
  r record;
BEGIN
  PERFORM cdp.identity_lock();
  run := cdp.identity_start_run('rebuild');
  SELECT * INTO r FROM cdp.identity_recompute(run, 'rebuild', NULL, NULL);
  RETURN cdp.identity_finish_run(run, r);
END
$$;
COMMENT ON FUNCTION cdp.rebuild_identities() IS
  're-stitch every profile from the stored links with the current rules and overrides, keeping ids wherever the same identifiers still form a profile';

-- ---------------------------------------------------------------- erasure

CREATE FUNCTION cdp.forget(kind text, value text,
                           OUT identifiers bigint, OUT links bigint, OUT refusals bigint,
                           OUT overrides bigint, OUT profile_id bigint, OUT profiles_split bigint)
RETURNS record
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  run bigint;
  id bigint;
  neighbours bigint[];
  r record;
BEGIN
  PERFORM cdp.identity_lock();
  INSERT INTO cdp.identity_suppressed (kind, value_sha256)
  VALUES (forget.kind, cdp.hash_identifier(forget.value))
  ON CONFLICT DO NOTHING;

  SELECT i.identifier_id, i.profile_id INTO id, profile_id
  FROM cdp.identifiers i WHERE i.kind = forget.kind AND i.value = forget.value;
  identifiers := CASE WHEN id IS NULL THEN 0 ELSE 1 END;

  WITH d AS (DELETE FROM cdp.identity_links l WHERE l.a = id OR l.b = id RETURNING l.a, l.b)
  SELECT coalesce(array_agg(CASE WHEN d.a = id THEN d.b ELSE d.a END), '{}'), count(*)
    INTO neighbours, links FROM d;
  -- audit rows about it, whichever side it was on
  DELETE FROM cdp.identity_refusals x
  WHERE x.identifier_id = id
     OR (x.kind = forget.kind AND x.value = forget.value)
     OR (x.linked_kind = forget.kind AND x.linked_value = forget.value);
  GET DIAGNOSTICS refusals = ROW_COUNT;
  DELETE FROM cdp.identity_overrides o
  WHERE (o.kind_a = forget.kind AND o.value_a = forget.value)
     OR (o.kind_b = forget.kind AND o.value_b = forget.value);
  GET DIAGNOSTICS overrides = ROW_COUNT;
  DELETE FROM cdp.identifiers i WHERE i.identifier_id = id;

  run := cdp.identity_start_run('forget');
  SELECT * INTO r FROM cdp.identity_recompute(run, 'forget', neighbours,
                                              CASE WHEN profile_id IS NULL THEN '{}'::bigint[]
                                                   ELSE ARRAY[profile_id] END);
  PERFORM cdp.identity_finish_run(run, r);
  profiles_split := r.profiles_split;
END
$$;
COMMENT ON FUNCTION cdp.forget(text, text) IS
  'erase an identifier: delete it, its links, its audit rows and overrides, keep only its SHA-256 so sources cannot bring it back, and split its profile where it was the only bridge';

-- -------------------------------------------------------------- overrides

CREATE FUNCTION cdp.identity_override(action text, kind_a text, value_a text,
                                      kind_b text, value_b text, note text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  ka text := kind_a;
  va text := value_a;
  kb text := kind_b;
  vb text := value_b;
  new_id bigint;
  run bigint;
  r record;
  ids bigint[];
BEGIN
  PERFORM cdp.identity_lock();
  IF (ka, va) = (kb, vb) THEN
    RAISE EXCEPTION 'an override needs two different identifiers, got (%, %) twice', ka, va
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF (ka, va) > (kb, vb) THEN
    SELECT kind_b, value_b, kind_a, value_a INTO ka, va, kb, vb;
  END IF;
  INSERT INTO cdp.identity_overrides AS o (action, kind_a, value_a, kind_b, value_b, note)
  VALUES (identity_override.action, ka, va, kb, vb, identity_override.note)
  ON CONFLICT ON CONSTRAINT identity_overrides_kind_a_value_a_kind_b_value_b_key DO UPDATE
    SET action = excluded.action, note = excluded.note, created_at = excluded.created_at,
        created_by = excluded.created_by
  RETURNING o.override_id INTO new_id;
  SELECT array_agg(i.identifier_id) INTO ids FROM cdp.identifiers i
  WHERE (i.kind, i.value) IN ((ka, va), (kb, vb));
  run := cdp.identity_start_run('override');
  SELECT * INTO r FROM cdp.identity_recompute(run, 'override', coalesce(ids, '{}'), '{}');
  PERFORM cdp.identity_finish_run(run, r);
  RETURN new_id;
END
$$;
COMMENT ON FUNCTION cdp.identity_override(text, text, text, text, text, text) IS
  'internal: store an override and re-stitch the profiles it touches';
REVOKE ALL ON FUNCTION cdp.identity_override(text, text, text, text, text, text) FROM PUBLIC;

CREATE FUNCTION cdp.force_apart(kind_a text, value_a text, kind_b text, value_b text,
                                note text DEFAULT NULL)
RETURNS bigint
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT cdp.identity_override('apart', kind_a, value_a, kind_b, value_b, note) $$;
COMMENT ON FUNCTION cdp.force_apart(text, text, text, text, text) IS
  'never put these two identifiers in one profile, whatever links say; applied at once; returns the override id';

CREATE FUNCTION cdp.force_together(kind_a text, value_a text, kind_b text, value_b text,
                                   note text DEFAULT NULL)
RETURNS bigint
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT cdp.identity_override('together', kind_a, value_a, kind_b, value_b, note) $$;
COMMENT ON FUNCTION cdp.force_together(text, text, text, text, text) IS
  'always put these two identifiers in one profile, whatever the rules say; applied at once; returns the override id';

CREATE FUNCTION cdp.remove_override(override_id bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE STRICT PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  o cdp.identity_overrides;
  run bigint;
  r record;
  ids bigint[];
BEGIN
  PERFORM cdp.identity_lock();
  DELETE FROM cdp.identity_overrides x WHERE x.override_id = remove_override.override_id
  RETURNING * INTO o;
  IF o IS NULL THEN
    RAISE EXCEPTION 'identity override % does not exist', override_id USING ERRCODE = 'undefined_object';
  END IF;
  SELECT array_agg(i.identifier_id) INTO ids FROM cdp.identifiers i
  WHERE (i.kind, i.value) IN ((o.kind_a, o.value_a), (o.kind_b, o.value_b));
  run := cdp.identity_start_run('override');
  SELECT * INTO r FROM cdp.identity_recompute(run, 'override', coalesce(ids, '{}'), '{}');
  PERFORM cdp.identity_finish_run(run, r);
END
$$;
COMMENT ON FUNCTION cdp.remove_override(bigint) IS
  'drop an override and re-stitch the profiles it touched';

REVOKE ALL ON FUNCTION cdp.set_rules(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdp.set_kind_ttl(text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdp.set_seen_granularity(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdp.add_source(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdp.drop_source(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdp.refresh_identities() FROM PUBLIC;
REVOKE ALL ON FUNCTION cdp.rebuild_identities() FROM PUBLIC;
REVOKE ALL ON FUNCTION cdp.forget(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdp.force_apart(text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdp.force_together(text, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdp.remove_override(bigint) FROM PUBLIC;

-- ---------------------------------------------------------------- reading

CREATE FUNCTION cdp.resolve(kind text, value text)
RETURNS bigint
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT i.profile_id FROM cdp.identifiers i WHERE i.kind = $1 AND i.value = $2 $$;
COMMENT ON FUNCTION cdp.resolve(text, text) IS
  'current profile id of an identifier (value as stored: normalize first), or NULL';

CREATE FUNCTION cdp.current_profile_id(profile_id bigint)
RETURNS bigint
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  WITH RECURSIVE chain(id, depth) AS (
    SELECT $1, 0
    UNION ALL
    SELECT l.new_profile_id, c.depth + 1
    FROM chain c JOIN cdp.profile_lineage l ON l.old_profile_id = c.id AND l.event = 'merge'
    WHERE c.depth < 1000
  )
  SELECT c.id FROM chain c JOIN cdp.profiles p ON p.profile_id = c.id
  ORDER BY c.depth DESC LIMIT 1
$$;
COMMENT ON FUNCTION cdp.current_profile_id(bigint) IS
  'the profile an id lives on in now: itself, or the profile it was merged into (following merges); NULL if its identifiers are gone';

CREATE VIEW cdp.profile_aliases AS
  SELECT DISTINCT l.old_profile_id, cdp.current_profile_id(l.old_profile_id) AS profile_id
  FROM cdp.profile_lineage l
  WHERE l.event = 'merge';
COMMENT ON VIEW cdp.profile_aliases IS
  'every retired (merged) profile id and the current profile it maps to; join history keyed by old ids through it';

CREATE FUNCTION cdp.profile_identifiers(profile_id bigint)
RETURNS TABLE(kind text, value text, first_seen timestamptz, last_seen timestamptz)
LANGUAGE sql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT i.kind, i.value, i.first_seen, i.last_seen
  FROM cdp.identifiers i
  WHERE i.profile_id = cdp.current_profile_id($1)
  ORDER BY (SELECT k.priority FROM cdp.identity_kinds k WHERE k.kind = i.kind), i.value
$$;
COMMENT ON FUNCTION cdp.profile_identifiers(bigint) IS
  'identifiers of a profile (an old, merged id is followed to its current profile)';

REVOKE ALL ON FUNCTION cdp.identity_lock() FROM PUBLIC;
REVOKE ALL ON FUNCTION cdp.identity_start_run(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdp.identity_finish_run(bigint, record) FROM PUBLIC;
