-- Segments: definitions, scheduled refresh, enter/exit changes and
-- activation lists (src/segments.c)
--
-- The tables below are written only by the extension's functions, which run
-- their bookkeeping as the owner of these tables; nothing is granted to
-- PUBLIC.  A segment's predicate is evaluated with the privileges of the
-- role that defined it.

-- The default profile relation: two plain tables, filled from golden
-- records and activity summaries, and a view joining them.
CREATE TABLE cdp.profile_traits (
  profile_id bigint PRIMARY KEY,
  traits jsonb NOT NULL DEFAULT '{}',
  updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cdp.profile_traits IS
  'golden-record traits per profile, read by segments through cdp.profile_view';
SELECT pg_catalog.pg_extension_config_dump('cdp.profile_traits', '');

CREATE TABLE cdp.profile_activity (
  profile_id bigint PRIMARY KEY,
  activity cdp.activity NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cdp.profile_activity IS
  'behavioural summary per profile, read by segments through cdp.profile_view';
SELECT pg_catalog.pg_extension_config_dump('cdp.profile_activity', '');

CREATE VIEW cdp.profile_view AS
  SELECT profile_id,
         COALESCE(t.traits, '{}'::jsonb) AS traits,
         COALESCE(a.activity, '{}'::cdp.activity) AS activity
  FROM cdp.profile_traits t FULL JOIN cdp.profile_activity a USING (profile_id);
COMMENT ON VIEW cdp.profile_view IS
  'default profile relation of segments: profile_id, traits jsonb, activity cdp.activity (empty when missing)';

-- Merges of profiles (old id -> surviving id), until the identity graph's
-- lineage feeds cdp.profile_merge_map().
CREATE TABLE cdp.profile_merges (
  old_profile_id bigint PRIMARY KEY,
  surviving_profile_id bigint NOT NULL,
  merged_at timestamptz NOT NULL DEFAULT now(),
  CHECK (old_profile_id <> surviving_profile_id)
);
COMMENT ON TABLE cdp.profile_merges IS
  'profile merges (old id -> surviving id) that segment refreshes follow so merged members do not exit and re-enter';
SELECT pg_catalog.pg_extension_config_dump('cdp.profile_merges', '');

-- Identifiers of profiles, used by exports when the identity graph's
-- cdp.identifiers table does not exist.
CREATE TABLE cdp.profile_identifier_map (
  kind text NOT NULL,
  value text NOT NULL,
  profile_id bigint NOT NULL,
  PRIMARY KEY (kind, value)
);
CREATE INDEX ON cdp.profile_identifier_map (profile_id);
COMMENT ON TABLE cdp.profile_identifier_map IS
  'identifiers (kind, value) of profiles for segment exports, used when cdp.identifiers does not exist';
SELECT pg_catalog.pg_extension_config_dump('cdp.profile_identifier_map', '');

-- Settings: a single row.
CREATE TABLE cdp.segment_settings (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  profile_relation regclass NOT NULL DEFAULT 'cdp.profile_view',
  identifier_relation regclass
);
INSERT INTO cdp.segment_settings DEFAULT VALUES;
COMMENT ON TABLE cdp.segment_settings IS
  'segment settings: the profile relation predicates read, and the identifier relation exports read (NULL: default)';
SELECT pg_catalog.pg_extension_config_dump('cdp.segment_settings', '');

-- Consent: per purpose, an expression over the profile relation that is
-- true for profiles that opted out.
CREATE TABLE cdp.consent_rules (
  purpose text PRIMARY KEY CHECK (length(purpose) BETWEEN 1 AND 128),
  opted_out text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE cdp.consent_rules IS
  'per purpose, a boolean expression over the profile relation that is true for profiles that opted out';
SELECT pg_catalog.pg_extension_config_dump('cdp.consent_rules', '');

CREATE TABLE cdp.segments (
  segment_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 128),
  predicate text NOT NULL,
  description text,
  owner regrole NOT NULL,
  paused boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  members cdp.audience,
  refreshed_at timestamptz,
  last_refresh_id bigint,
  status text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'ok', 'failed')),
  error text
);
COMMENT ON TABLE cdp.segments IS
  'segments: definition, owner (whose privileges evaluate the predicate), current members and last refresh outcome';
SELECT pg_catalog.pg_extension_config_dump('cdp.segments', '');

CREATE SEQUENCE cdp.segment_refresh_id_seq;
COMMENT ON SEQUENCE cdp.segment_refresh_id_seq IS 'ids of cdp.refresh_segments() calls';
SELECT pg_catalog.pg_extension_config_dump('cdp.segment_refresh_id_seq', '');

CREATE TABLE cdp.segment_change_log (
  segment_id integer NOT NULL REFERENCES cdp.segments ON DELETE CASCADE,
  refresh_id bigint NOT NULL,
  profile_id bigint NOT NULL,
  change text NOT NULL CHECK (change IN ('enter', 'exit')),
  at timestamptz NOT NULL
);
CREATE INDEX ON cdp.segment_change_log (segment_id, refresh_id);
COMMENT ON TABLE cdp.segment_change_log IS
  'one row per profile that entered or exited a segment at a refresh (read it through cdp.segment_changes)';
SELECT pg_catalog.pg_extension_config_dump('cdp.segment_change_log', '');

CREATE TABLE cdp.segment_refresh_log (
  refresh_id bigint NOT NULL,
  segment_id integer NOT NULL REFERENCES cdp.segments ON DELETE CASCADE,
  refreshed_at timestamptz NOT NULL,
  status text NOT NULL CHECK (status IN ('ok', 'failed')),
  members bigint,
  entered bigint,
  exited bigint,
  duration interval NOT NULL,
  error text,
  PRIMARY KEY (segment_id, refresh_id)
);
COMMENT ON TABLE cdp.segment_refresh_log IS
  'one row per segment per refresh: outcome, size, changes and duration (read it through cdp.segment_sizes)';
SELECT pg_catalog.pg_extension_config_dump('cdp.segment_refresh_log', '');

-- Views for BI tools

CREATE VIEW cdp.segment_definitions AS
  SELECT segment_id, name, description, predicate, owner::text AS owner, paused,
         created_at, updated_at, refreshed_at, last_refresh_id, status, error,
         cdp.size(members) AS members
  FROM cdp.segments;
COMMENT ON VIEW cdp.segment_definitions IS
  'segment definitions and last refresh outcome, without the bitmap';

CREATE VIEW cdp.segment_sizes AS
  SELECT s.name AS segment, l.segment_id, l.refresh_id, l.refreshed_at, l.status,
         l.members, l.entered, l.exited, l.duration, l.error
  FROM cdp.segment_refresh_log l JOIN cdp.segments s USING (segment_id);
COMMENT ON VIEW cdp.segment_sizes IS
  'segment sizes over time: one row per segment per refresh';

CREATE VIEW cdp.segment_changes AS
  SELECT s.name AS segment, c.segment_id, c.profile_id, c.change, c.at, c.refresh_id
  FROM cdp.segment_change_log c JOIN cdp.segments s USING (segment_id);
COMMENT ON VIEW cdp.segment_changes IS
  'profiles that entered or exited segments: segment, profile_id, change (enter/exit), at, refresh_id';

CREATE VIEW cdp.segment_members AS
  SELECT s.name AS segment, m.profile_id
  FROM cdp.segments s CROSS JOIN LATERAL cdp.members(s.members) AS m(profile_id);
COMMENT ON VIEW cdp.segment_members IS
  'segment membership as rows (segment, profile_id), for tools that cannot read cdp.audience';

-- Wiring points

-- The one place that says where merges come from: the extension's
-- cdp.profile_merges, plus the identity graph's merge lineage when that
-- table exists.  Chains (a -> b -> c) are followed to the last survivor.
CREATE FUNCTION cdp.profile_merge_map()
RETURNS TABLE(old_profile_id bigint, surviving_profile_id bigint)
LANGUAGE plpgsql STABLE PARALLEL SAFE
SET search_path = pg_catalog, cdp, pg_temp
AS $$
DECLARE
  edges text := 'SELECT m.old_profile_id AS old_id, m.surviving_profile_id AS new_id FROM cdp.profile_merges m';
BEGIN
  IF (SELECT count(*) FROM pg_attribute
      WHERE attrelid = to_regclass('cdp.profile_lineage') AND NOT attisdropped
        AND attname IN ('event', 'old_profile_id', 'new_profile_id')) = 3 THEN
    edges := edges || ' UNION SELECT l.old_profile_id, l.new_profile_id FROM cdp.profile_lineage l'
                   || ' WHERE l.event = ''merge'' AND l.new_profile_id IS NOT NULL'
                   || ' AND l.new_profile_id <> l.old_profile_id';
  END IF;
  RETURN QUERY EXECUTE format(
    'WITH RECURSIVE edges AS (%s), '
    'chain(old_id, surviving_id, depth) AS ('
    '  SELECT e.old_id, e.new_id, 1 FROM edges e'
    '  UNION ALL'
    '  SELECT c.old_id, e.new_id, c.depth + 1 FROM chain c JOIN edges e ON e.old_id = c.surviving_id'
    '  WHERE c.depth < 64) '
    'SELECT DISTINCT ON (old_id) old_id, surviving_id FROM chain ORDER BY old_id, depth DESC, surviving_id',
    edges);
END
$$;
COMMENT ON FUNCTION cdp.profile_merge_map() IS
  'every merged profile id with the id that finally survived it (cdp.profile_merges, and cdp.profile_lineage merges when present)';

-- The one place that says where exported identifiers come from.
CREATE FUNCTION cdp.segment_identifier_relation()
RETURNS regclass
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, cdp, pg_temp
AS $$
  SELECT COALESCE((SELECT identifier_relation FROM cdp.segment_settings),
                  to_regclass('cdp.identifiers'),
                  'cdp.profile_identifier_map'::regclass)
$$;
COMMENT ON FUNCTION cdp.segment_identifier_relation() IS
  'relation (profile_id, kind, value) exports read: the setting, else cdp.identifiers when it exists, else cdp.profile_identifier_map';

CREATE FUNCTION cdp.segment_profile_relation()
RETURNS regclass
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, cdp, pg_temp
AS $$ SELECT profile_relation FROM cdp.segment_settings $$;
COMMENT ON FUNCTION cdp.segment_profile_relation() IS
  'relation segment predicates and consent rules are evaluated over';

-- Definition

CREATE FUNCTION cdp.validate_predicate(predicate text)
RETURNS void
AS 'MODULE_PATHNAME', 'cdp_validate_predicate'
LANGUAGE C STABLE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION cdp.validate_predicate(text) IS
  'raises an error unless the text is a single boolean expression over the profile relation that the current role can evaluate';

CREATE FUNCTION cdp.define_segment(name text, predicate text, description text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'cdp_define_segment'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION cdp.define_segment(text, text, text) IS
  'creates or redefines a segment after validating its predicate; the calling role becomes its owner; returns its id';

CREATE FUNCTION cdp.rename_segment(name text, new_name text)
RETURNS void
AS 'MODULE_PATHNAME', 'cdp_rename_segment'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION cdp.rename_segment(text, text) IS
  'renames a segment (its history follows it)';

CREATE FUNCTION cdp.pause_segment(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'cdp_pause_segment'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION cdp.pause_segment(text) IS
  'stops refreshing a segment; its members stay as they were';

CREATE FUNCTION cdp.resume_segment(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'cdp_resume_segment'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION cdp.resume_segment(text) IS
  'refreshes a paused segment again';

CREATE FUNCTION cdp.drop_segment(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'cdp_drop_segment'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION cdp.drop_segment(text) IS
  'drops a segment with its changes and size history';

-- Bookkeeping of one segment's refresh, called by cdp.refresh_segments() as
-- the owner of the tables: follows merges in the previous members, logs
-- who entered and exited, stores the new members.
CREATE FUNCTION cdp.segment_store(segment_id integer, new_members cdp.audience,
                                  refresh_id bigint, at timestamptz,
                                  OUT members bigint, OUT entered bigint, OUT exited bigint)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, cdp, pg_temp
AS $$
DECLARE
  previous cdp.audience;
  carried cdp.audience;
  came cdp.audience;
  went cdp.audience;
BEGIN
  SELECT s.members INTO previous FROM cdp.segments s
  WHERE s.segment_id = segment_store.segment_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'segment % was dropped during its refresh', segment_store.segment_id
      USING ERRCODE = 'undefined_object';
  END IF;
  previous := COALESCE(previous, '{}'::cdp.audience);
  -- merged members are carried over under their surviving ids
  SELECT (previous - COALESCE(cdp.audience_agg(m.old_profile_id), '{}'::cdp.audience))
         | COALESCE(cdp.audience_agg(m.surviving_profile_id), '{}'::cdp.audience)
    INTO carried
  FROM cdp.profile_merge_map() m
  WHERE previous @> m.old_profile_id;
  came := new_members - carried;
  went := carried - new_members;
  INSERT INTO cdp.segment_change_log (segment_id, refresh_id, profile_id, change, at)
  SELECT segment_store.segment_id, segment_store.refresh_id, p, 'enter', segment_store.at
  FROM cdp.members(came) p;
  INSERT INTO cdp.segment_change_log (segment_id, refresh_id, profile_id, change, at)
  SELECT segment_store.segment_id, segment_store.refresh_id, p, 'exit', segment_store.at
  FROM cdp.members(went) p;
  UPDATE cdp.segments s
  SET members = new_members, refreshed_at = segment_store.at,
      last_refresh_id = segment_store.refresh_id, status = 'ok', error = NULL
  WHERE s.segment_id = segment_store.segment_id;
  members := cdp.size(new_members);
  entered := cdp.size(came);
  exited := cdp.size(went);
END
$$;
COMMENT ON FUNCTION cdp.segment_store(integer, cdp.audience, bigint, timestamptz) IS
  'internal: stores a segment''s new members and logs entries and exits (called by cdp.refresh_segments)';
REVOKE ALL ON FUNCTION cdp.segment_store(integer, cdp.audience, bigint, timestamptz) FROM PUBLIC;

CREATE FUNCTION cdp.segment_log(segment_id integer, refresh_id bigint, at timestamptz,
                                status text, members bigint, entered bigint, exited bigint,
                                duration interval, error text)
RETURNS void
LANGUAGE sql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, cdp, pg_temp
AS $$
  UPDATE cdp.segments s SET status = 'failed', error = segment_log.error, refreshed_at = segment_log.at,
                            last_refresh_id = segment_log.refresh_id
  WHERE s.segment_id = segment_log.segment_id AND segment_log.status = 'failed';
  INSERT INTO cdp.segment_refresh_log
  SELECT segment_log.refresh_id, segment_log.segment_id, segment_log.at, segment_log.status,
         segment_log.members, segment_log.entered, segment_log.exited, segment_log.duration,
         segment_log.error
  WHERE EXISTS (SELECT FROM cdp.segments s WHERE s.segment_id = segment_log.segment_id);
$$;
COMMENT ON FUNCTION cdp.segment_log(integer, bigint, timestamptz, text, bigint, bigint, bigint, interval, text) IS
  'internal: records the outcome of one segment''s refresh (called by cdp.refresh_segments)';
REVOKE ALL ON FUNCTION cdp.segment_log(integer, bigint, timestamptz, text, bigint, bigint, bigint, interval, text) FROM PUBLIC;

CREATE FUNCTION cdp.refresh_segments(names text[] DEFAULT NULL)
RETURNS TABLE(segment text, status text, members bigint, entered bigint, exited bigint,
              duration interval, error text, refresh_id bigint)
AS 'MODULE_PATHNAME', 'cdp_refresh_segments'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION cdp.refresh_segments(text[]) IS
  'refreshes every active segment (or the named ones), each atomically and as its owner; one row per segment';

-- Settings

CREATE FUNCTION cdp.set_profile_relation(relation regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, cdp, pg_temp
AS $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_attribute
                 WHERE attrelid = relation AND attname = 'profile_id' AND NOT attisdropped
                   AND atttypid IN ('bigint'::regtype, 'integer'::regtype)) THEN
    RAISE EXCEPTION 'relation "%" has no column profile_id of type bigint', relation
      USING ERRCODE = 'invalid_parameter_value',
            DETAIL = 'Segments read profiles from a relation keyed by profile_id.',
            HINT = 'Add a bigint column profile_id, or point at a view that has one.';
  END IF;
  UPDATE cdp.segment_settings SET profile_relation = relation;
END
$$;
COMMENT ON FUNCTION cdp.set_profile_relation(regclass) IS
  'points segments and consent rules at another per-profile relation (it needs a bigint profile_id column)';

CREATE FUNCTION cdp.set_identifier_relation(relation regclass)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, cdp, pg_temp
AS $$
BEGIN
  IF relation IS NOT NULL AND
     (SELECT count(*) FROM pg_attribute
      WHERE attrelid = relation AND NOT attisdropped
        AND ((attname = 'profile_id' AND atttypid IN ('bigint'::regtype, 'integer'::regtype))
          OR (attname IN ('kind', 'value') AND atttypid = 'text'::regtype))) <> 3 THEN
    RAISE EXCEPTION 'relation "%" does not have the columns profile_id bigint, kind text, value text', relation
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Point at a view that renames its columns to these.';
  END IF;
  UPDATE cdp.segment_settings SET identifier_relation = relation;
END
$$;
COMMENT ON FUNCTION cdp.set_identifier_relation(regclass) IS
  'points exports at a relation (profile_id, kind, value); NULL restores the default';

CREATE FUNCTION cdp.set_consent(purpose text, opted_out text)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
SET search_path = pg_catalog, cdp, pg_temp
AS $$
BEGIN
  IF purpose IS NULL OR length(purpose) NOT BETWEEN 1 AND 128 THEN
    RAISE EXCEPTION 'invalid consent purpose "%"', purpose
      USING ERRCODE = 'invalid_parameter_value', HINT = 'Name the purpose, e.g. ''marketing''.';
  END IF;
  IF opted_out IS NULL THEN
    DELETE FROM cdp.consent_rules r WHERE r.purpose = set_consent.purpose;
    RETURN;
  END IF;
  PERFORM cdp.validate_predicate(opted_out);
  INSERT INTO cdp.consent_rules AS r (purpose, opted_out) VALUES (purpose, opted_out)
  ON CONFLICT ON CONSTRAINT consent_rules_pkey
  DO UPDATE SET opted_out = excluded.opted_out, updated_at = now();
END
$$;
COMMENT ON FUNCTION cdp.set_consent(text, text) IS
  'sets (NULL: removes) the expression over the profile relation that is true for profiles opted out of a purpose';

-- Activation

CREATE FUNCTION cdp.export_value(kind text, value text, hashed boolean DEFAULT true)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT CASE WHEN hashed THEN cdp.hash_identifier(v) ELSE v END
  FROM (SELECT CASE kind
                 WHEN 'email' THEN cdp.normalize_email(value)
                 WHEN 'phone' THEN cdp.normalize_phone(value)
                 ELSE NULLIF(btrim(value), '')
               END AS v) n
$$;
COMMENT ON FUNCTION cdp.export_value(text, text, boolean) IS
  'an identifier as exports send it: e-mail trimmed and lowercased, phone in E.164, then SHA-256 hex when hashed; NULL when unusable';

-- Members of a purpose's (or, with NULL, every purpose's) opt-outs removed.
CREATE FUNCTION cdp.consent_filter(members cdp.audience, purpose text DEFAULT NULL)
RETURNS cdp.audience
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, cdp, pg_temp
SET standard_conforming_strings = on
AS $$
DECLARE
  rule record;
  found_rule boolean := false;
  opted cdp.audience;
BEGIN
  FOR rule IN SELECT r.purpose, r.opted_out FROM cdp.consent_rules r
              WHERE consent_filter.purpose IS NULL OR r.purpose = consent_filter.purpose
              ORDER BY r.purpose
  LOOP
    found_rule := true;
    -- the expression was validated as a single expression by cdp.set_consent
    EXECUTE format('SELECT cdp.audience_agg(profile_id) FROM %s WHERE profile_id <@ $1 AND (%s'
                   || chr(10) || ')', cdp.segment_profile_relation(), rule.opted_out)
      INTO opted USING members;
    members := members - COALESCE(opted, '{}'::cdp.audience);
  END LOOP;
  IF purpose IS NOT NULL AND NOT found_rule THEN
    RAISE EXCEPTION 'no consent rule for purpose "%"', purpose
      USING ERRCODE = 'undefined_object',
            HINT = 'Define it with cdp.set_consent(purpose, opted_out), or pass purpose => NULL to apply every rule.';
  END IF;
  RETURN members;
END
$$;
COMMENT ON FUNCTION cdp.consent_filter(cdp.audience, text) IS
  'the members minus the profiles opted out of the purpose (NULL: of any purpose with a consent rule)';

CREATE FUNCTION cdp.segment_export(segment text, kind text, purpose text DEFAULT NULL,
                                   hashed boolean DEFAULT true)
RETURNS TABLE(profile_id bigint, value text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, cdp, pg_temp
AS $$
DECLARE
  m cdp.audience;
BEGIN
  SELECT s.members INTO m FROM cdp.segments s WHERE s.name = segment_export.segment;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'segment "%" does not exist', segment USING ERRCODE = 'undefined_object';
  END IF;
  m := cdp.consent_filter(COALESCE(m, '{}'::cdp.audience), purpose);
  RETURN QUERY EXECUTE format(
    'SELECT DISTINCT i.profile_id::bigint, v FROM %s i, cdp.export_value(i.kind, i.value, $3) v '
    'WHERE i.kind = $2 AND i.profile_id <@ $1 AND v IS NOT NULL ORDER BY 1, 2',
    cdp.segment_identifier_relation())
    USING m, kind, hashed;
END
$$;
COMMENT ON FUNCTION cdp.segment_export(text, text, text, boolean) IS
  'identifiers of a kind of the segment''s members, normalized and SHA-256 hashed (hashed => false: plain), opted-out profiles excluded';

CREATE FUNCTION cdp.segment_export_changes(segment text, kind text, since_refresh bigint,
                                           purpose text DEFAULT NULL, hashed boolean DEFAULT true)
RETURNS TABLE(change text, profile_id bigint, value text)
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED
SET search_path = pg_catalog, cdp, pg_temp
AS $$
DECLARE
  sid integer;
  added cdp.audience;
  removed cdp.audience;
BEGIN
  SELECT s.segment_id INTO sid FROM cdp.segments s WHERE s.name = segment_export_changes.segment;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'segment "%" does not exist', segment USING ERRCODE = 'undefined_object';
  END IF;
  -- net change per profile after since_refresh: in if it first and last
  -- entered, out if it first and last exited
  SELECT cdp.audience_agg(n.profile_id) FILTER (WHERE n.first = 'enter' AND n.last = 'enter'),
         cdp.audience_agg(n.profile_id) FILTER (WHERE n.first = 'exit' AND n.last = 'exit')
    INTO added, removed
  FROM (SELECT c.profile_id,
               (array_agg(c.change ORDER BY c.refresh_id))[1] AS first,
               (array_agg(c.change ORDER BY c.refresh_id DESC))[1] AS last
        FROM cdp.segment_change_log c
        WHERE c.segment_id = sid AND c.refresh_id > COALESCE(since_refresh, 0)
        GROUP BY c.profile_id) n;
  added := cdp.consent_filter(COALESCE(added, '{}'::cdp.audience), purpose);
  removed := COALESCE(removed, '{}'::cdp.audience);
  RETURN QUERY EXECUTE format(
    'SELECT DISTINCT CASE WHEN i.profile_id <@ $1 THEN ''add'' ELSE ''remove'' END, i.profile_id::bigint, v '
    'FROM %s i, cdp.export_value(i.kind, i.value, $4) v '
    'WHERE i.kind = $3 AND (i.profile_id <@ $1 OR i.profile_id <@ $2) AND v IS NOT NULL ORDER BY 1, 2, 3',
    cdp.segment_identifier_relation())
    USING added, removed, kind, hashed;
END
$$;
COMMENT ON FUNCTION cdp.segment_export_changes(text, text, bigint, text, boolean) IS
  'identifiers to add and to remove at a destination since a given refresh id (0 or NULL: since the first)';
