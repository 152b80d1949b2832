-- Audience bitmaps (src/audience.c, src/audience_agg.c)

CREATE TYPE cdp.audience;

CREATE FUNCTION cdp.audience_in(cstring) RETURNS cdp.audience
AS 'MODULE_PATHNAME', 'cdp_audience_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_in(cstring) IS
  'text input of cdp.audience: {1,2,3}, ranges as {1..100}';

CREATE FUNCTION cdp.audience_out(cdp.audience) RETURNS cstring
AS 'MODULE_PATHNAME', 'cdp_audience_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_out(cdp.audience) IS
  'text output of cdp.audience: ascending ids, runs of 3 or more as lo..hi';

CREATE FUNCTION cdp.audience_recv(internal) RETURNS cdp.audience
AS 'MODULE_PATHNAME', 'cdp_audience_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_recv(internal) IS
  'binary input of cdp.audience: a portable roaring bitmap, validated';

CREATE FUNCTION cdp.audience_send(cdp.audience) RETURNS bytea
AS 'MODULE_PATHNAME', 'cdp_audience_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_send(cdp.audience) IS
  'binary output of cdp.audience: a portable roaring bitmap';

CREATE TYPE cdp.audience (
  INPUT = cdp.audience_in,
  OUTPUT = cdp.audience_out,
  RECEIVE = cdp.audience_recv,
  SEND = cdp.audience_send,
  INTERNALLENGTH = VARIABLE,
  STORAGE = extended
);
COMMENT ON TYPE cdp.audience IS
  'set of profile ids from 0 to 4294967295, stored as a compressed roaring bitmap';

-- Construction and conversion

CREATE FUNCTION cdp.audience(ids bigint[]) RETURNS cdp.audience
AS 'MODULE_PATHNAME', 'cdp_audience' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience(bigint[]) IS
  'audience of the ids in the array (NULL elements are skipped)';

CREATE FUNCTION cdp.audience_from_roaring(bitmap bytea) RETURNS cdp.audience
AS 'MODULE_PATHNAME', 'cdp_audience_from_roaring' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_from_roaring(bytea) IS
  'audience from a 32-bit roaring bitmap in the portable format (CRoaring, Java, Go), validated';

CREATE FUNCTION cdp.to_roaring(a cdp.audience) RETURNS bytea
AS 'MODULE_PATHNAME', 'cdp_to_roaring' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.to_roaring(cdp.audience) IS
  'the audience as a portable roaring bitmap (readable by CRoaring, Java and Go roaring)';

-- Set algebra

CREATE FUNCTION cdp.audience_union(a cdp.audience, b cdp.audience) RETURNS cdp.audience
AS 'MODULE_PATHNAME', 'cdp_audience_union' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_union(cdp.audience, cdp.audience) IS 'members of a or b (operator |)';

CREATE FUNCTION cdp.audience_intersection(a cdp.audience, b cdp.audience) RETURNS cdp.audience
AS 'MODULE_PATHNAME', 'cdp_audience_intersection' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_intersection(cdp.audience, cdp.audience) IS 'members of both a and b (operator &)';

CREATE FUNCTION cdp.audience_difference(a cdp.audience, b cdp.audience) RETURNS cdp.audience
AS 'MODULE_PATHNAME', 'cdp_audience_difference' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_difference(cdp.audience, cdp.audience) IS 'members of a not in b (operator -)';

CREATE FUNCTION cdp.audience_symmetric_difference(a cdp.audience, b cdp.audience) RETURNS cdp.audience
AS 'MODULE_PATHNAME', 'cdp_audience_symmetric_difference' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_symmetric_difference(cdp.audience, cdp.audience) IS
  'members of exactly one of a and b (operator #)';

CREATE FUNCTION cdp.audience_eq(a cdp.audience, b cdp.audience) RETURNS boolean
AS 'MODULE_PATHNAME', 'cdp_audience_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_eq(cdp.audience, cdp.audience) IS 'a and b have the same members (operator =)';

CREATE FUNCTION cdp.audience_ne(a cdp.audience, b cdp.audience) RETURNS boolean
AS 'MODULE_PATHNAME', 'cdp_audience_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_ne(cdp.audience, cdp.audience) IS 'a and b differ (operator <>)';

CREATE FUNCTION cdp.audience_contains(a cdp.audience, b cdp.audience) RETURNS boolean
AS 'MODULE_PATHNAME', 'cdp_audience_contains' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_contains(cdp.audience, cdp.audience) IS 'every member of b is in a (operator @>)';

CREATE FUNCTION cdp.audience_contained(a cdp.audience, b cdp.audience) RETURNS boolean
AS 'MODULE_PATHNAME', 'cdp_audience_contained' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_contained(cdp.audience, cdp.audience) IS 'every member of a is in b (operator <@)';

CREATE FUNCTION cdp.audience_contains_id(a cdp.audience, id bigint) RETURNS boolean
AS 'MODULE_PATHNAME', 'cdp_audience_contains_id' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_contains_id(cdp.audience, bigint) IS 'id is a member of a (operator @>)';

CREATE FUNCTION cdp.id_contained(id bigint, a cdp.audience) RETURNS boolean
AS 'MODULE_PATHNAME', 'cdp_id_contained' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.id_contained(bigint, cdp.audience) IS 'id is a member of a (operator <@)';

CREATE FUNCTION cdp.audience_overlaps(a cdp.audience, b cdp.audience) RETURNS boolean
AS 'MODULE_PATHNAME', 'cdp_audience_overlaps' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_overlaps(cdp.audience, cdp.audience) IS 'a and b share a member (operator &&)';

CREATE OPERATOR cdp.| (LEFTARG = cdp.audience, RIGHTARG = cdp.audience,
  FUNCTION = cdp.audience_union, COMMUTATOR = OPERATOR(cdp.|));
COMMENT ON OPERATOR cdp.| (cdp.audience, cdp.audience) IS 'union';

CREATE OPERATOR cdp.& (LEFTARG = cdp.audience, RIGHTARG = cdp.audience,
  FUNCTION = cdp.audience_intersection, COMMUTATOR = OPERATOR(cdp.&));
COMMENT ON OPERATOR cdp.& (cdp.audience, cdp.audience) IS 'intersection';

CREATE OPERATOR cdp.- (LEFTARG = cdp.audience, RIGHTARG = cdp.audience,
  FUNCTION = cdp.audience_difference);
COMMENT ON OPERATOR cdp.- (cdp.audience, cdp.audience) IS 'difference';

CREATE OPERATOR cdp.# (LEFTARG = cdp.audience, RIGHTARG = cdp.audience,
  FUNCTION = cdp.audience_symmetric_difference, COMMUTATOR = OPERATOR(cdp.#));
COMMENT ON OPERATOR cdp.# (cdp.audience, cdp.audience) IS 'symmetric difference';

CREATE OPERATOR cdp.= (LEFTARG = cdp.audience, RIGHTARG = cdp.audience,
  FUNCTION = cdp.audience_eq, COMMUTATOR = OPERATOR(cdp.=), NEGATOR = OPERATOR(cdp.<>),
  RESTRICT = eqsel, JOIN = eqjoinsel);
COMMENT ON OPERATOR cdp.= (cdp.audience, cdp.audience) IS 'same members';

CREATE OPERATOR cdp.<> (LEFTARG = cdp.audience, RIGHTARG = cdp.audience,
  FUNCTION = cdp.audience_ne, COMMUTATOR = OPERATOR(cdp.<>), NEGATOR = OPERATOR(cdp.=),
  RESTRICT = neqsel, JOIN = neqjoinsel);
COMMENT ON OPERATOR cdp.<> (cdp.audience, cdp.audience) IS 'different members';

CREATE OPERATOR cdp.@> (LEFTARG = cdp.audience, RIGHTARG = cdp.audience,
  FUNCTION = cdp.audience_contains, COMMUTATOR = OPERATOR(cdp.<@),
  RESTRICT = contsel, JOIN = contjoinsel);
COMMENT ON OPERATOR cdp.@> (cdp.audience, cdp.audience) IS 'contains every member of';

CREATE OPERATOR cdp.<@ (LEFTARG = cdp.audience, RIGHTARG = cdp.audience,
  FUNCTION = cdp.audience_contained, COMMUTATOR = OPERATOR(cdp.@>),
  RESTRICT = contsel, JOIN = contjoinsel);
COMMENT ON OPERATOR cdp.<@ (cdp.audience, cdp.audience) IS 'every member is contained in';

CREATE OPERATOR cdp.@> (LEFTARG = cdp.audience, RIGHTARG = bigint,
  FUNCTION = cdp.audience_contains_id, COMMUTATOR = OPERATOR(cdp.<@),
  RESTRICT = contsel, JOIN = contjoinsel);
COMMENT ON OPERATOR cdp.@> (cdp.audience, bigint) IS 'has the profile id as a member';

CREATE OPERATOR cdp.<@ (LEFTARG = bigint, RIGHTARG = cdp.audience,
  FUNCTION = cdp.id_contained, COMMUTATOR = OPERATOR(cdp.@>),
  RESTRICT = contsel, JOIN = contjoinsel);
COMMENT ON OPERATOR cdp.<@ (bigint, cdp.audience) IS 'profile id is a member of';

CREATE OPERATOR cdp.&& (LEFTARG = cdp.audience, RIGHTARG = cdp.audience,
  FUNCTION = cdp.audience_overlaps, COMMUTATOR = OPERATOR(cdp.&&),
  RESTRICT = contsel, JOIN = contjoinsel);
COMMENT ON OPERATOR cdp.&& (cdp.audience, cdp.audience) IS 'shares a member with';

-- Measures and members

CREATE FUNCTION cdp.size(a cdp.audience) RETURNS bigint
AS 'MODULE_PATHNAME', 'cdp_size' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.size(cdp.audience) IS 'number of members';

CREATE FUNCTION cdp.members(a cdp.audience) RETURNS SETOF bigint
AS 'MODULE_PATHNAME', 'cdp_members' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE ROWS 1000;
COMMENT ON FUNCTION cdp.members(cdp.audience) IS 'the members, one row each, in ascending order';

CREATE FUNCTION cdp.to_array(a cdp.audience) RETURNS bigint[]
AS 'MODULE_PATHNAME', 'cdp_to_array' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.to_array(cdp.audience) IS 'the members as an ascending array';

CREATE FUNCTION cdp.contains(a cdp.audience, id bigint) RETURNS boolean
AS 'MODULE_PATHNAME', 'cdp_contains' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.contains(cdp.audience, bigint) IS 'id is a member of a (same as a @> id)';

CREATE FUNCTION cdp.overlap(a cdp.audience, b cdp.audience) RETURNS bigint
AS 'MODULE_PATHNAME', 'cdp_overlap' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.overlap(cdp.audience, cdp.audience) IS
  'number of members a and b share, counted without building the intersection';

CREATE FUNCTION cdp.jaccard(a cdp.audience, b cdp.audience) RETURNS double precision
AS 'MODULE_PATHNAME', 'cdp_jaccard' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.jaccard(cdp.audience, cdp.audience) IS
  'Jaccard similarity |a & b| / |a | b| (1 for two empty audiences)';

CREATE FUNCTION cdp.sample(a cdp.audience, n bigint, seed bigint DEFAULT 0) RETURNS cdp.audience
AS 'MODULE_PATHNAME', 'cdp_sample' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.sample(cdp.audience, bigint, bigint) IS
  'n members picked by a seeded hash of their ids (deterministic; coordinated across audiences for one seed)';

-- Aggregates

CREATE FUNCTION cdp.audience_agg_trans(internal, bigint) RETURNS internal
AS 'MODULE_PATHNAME', 'cdp_audience_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_agg_trans(internal, bigint) IS 'transition function of cdp.audience_agg';

CREATE FUNCTION cdp.audience_union_agg_trans(internal, cdp.audience) RETURNS internal
AS 'MODULE_PATHNAME', 'cdp_audience_union_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_union_agg_trans(internal, cdp.audience) IS
  'transition function of cdp.audience_union_agg';

CREATE FUNCTION cdp.audience_intersect_agg_trans(internal, cdp.audience) RETURNS internal
AS 'MODULE_PATHNAME', 'cdp_audience_intersect_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_intersect_agg_trans(internal, cdp.audience) IS
  'transition function of cdp.audience_intersect_agg';

CREATE FUNCTION cdp.audience_agg_combine(internal, internal) RETURNS internal
AS 'MODULE_PATHNAME', 'cdp_audience_agg_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_agg_combine(internal, internal) IS
  'combine function of cdp.audience_agg and cdp.audience_union_agg (union)';

CREATE FUNCTION cdp.audience_intersect_agg_combine(internal, internal) RETURNS internal
AS 'MODULE_PATHNAME', 'cdp_audience_intersect_agg_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_intersect_agg_combine(internal, internal) IS
  'combine function of cdp.audience_intersect_agg (intersection)';

CREATE FUNCTION cdp.audience_agg_final(internal) RETURNS cdp.audience
AS 'MODULE_PATHNAME', 'cdp_audience_agg_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_agg_final(internal) IS 'final function of the audience aggregates';

CREATE FUNCTION cdp.audience_agg_serialize(internal) RETURNS bytea
AS 'MODULE_PATHNAME', 'cdp_audience_agg_serialize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_agg_serialize(internal) IS 'serial function of the audience aggregates';

CREATE FUNCTION cdp.audience_agg_deserialize(bytea, internal) RETURNS internal
AS 'MODULE_PATHNAME', 'cdp_audience_agg_deserialize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.audience_agg_deserialize(bytea, internal) IS 'deserial function of the audience aggregates';

CREATE AGGREGATE cdp.audience_agg(bigint) (
  SFUNC = cdp.audience_agg_trans,
  STYPE = internal,
  SSPACE = 16384,
  FINALFUNC = cdp.audience_agg_final,
  COMBINEFUNC = cdp.audience_agg_combine,
  SERIALFUNC = cdp.audience_agg_serialize,
  DESERIALFUNC = cdp.audience_agg_deserialize,
  PARALLEL = SAFE
);
COMMENT ON AGGREGATE cdp.audience_agg(bigint) IS
  'audience of the non-NULL profile ids (NULL when there are none)';

CREATE AGGREGATE cdp.audience_union_agg(cdp.audience) (
  SFUNC = cdp.audience_union_agg_trans,
  STYPE = internal,
  SSPACE = 16384,
  FINALFUNC = cdp.audience_agg_final,
  COMBINEFUNC = cdp.audience_agg_combine,
  SERIALFUNC = cdp.audience_agg_serialize,
  DESERIALFUNC = cdp.audience_agg_deserialize,
  PARALLEL = SAFE
);
COMMENT ON AGGREGATE cdp.audience_union_agg(cdp.audience) IS
  'union of the non-NULL audiences (NULL when there are none)';

CREATE AGGREGATE cdp.audience_intersect_agg(cdp.audience) (
  SFUNC = cdp.audience_intersect_agg_trans,
  STYPE = internal,
  SSPACE = 16384,
  FINALFUNC = cdp.audience_agg_final,
  COMBINEFUNC = cdp.audience_intersect_agg_combine,
  SERIALFUNC = cdp.audience_agg_serialize,
  DESERIALFUNC = cdp.audience_agg_deserialize,
  PARALLEL = SAFE
);
COMMENT ON AGGREGATE cdp.audience_intersect_agg(cdp.audience) IS
  'intersection of the non-NULL audiences (NULL when there are none)';
