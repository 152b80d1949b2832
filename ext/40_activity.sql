-- Behavioural summaries (src/activity.c, src/activity_agg.c)

CREATE TYPE cdp.activity;

CREATE FUNCTION cdp.activity_in(cstring)
RETURNS cdp.activity
AS 'MODULE_PATHNAME', 'cdp_activity_in'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.activity_in(cstring) IS
  'text input of cdp.activity: the JSON form cdp.activity_out writes';

CREATE FUNCTION cdp.activity_out(cdp.activity)
RETURNS cstring
AS 'MODULE_PATHNAME', 'cdp_activity_out'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.activity_out(cdp.activity) IS
  'text output of cdp.activity: JSON keyed by event name, UTC time stamps';

CREATE FUNCTION cdp.activity_recv(internal)
RETURNS cdp.activity
AS 'MODULE_PATHNAME', 'cdp_activity_recv'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.activity_recv(internal) IS
  'binary input of cdp.activity';

CREATE FUNCTION cdp.activity_send(cdp.activity)
RETURNS bytea
AS 'MODULE_PATHNAME', 'cdp_activity_send'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.activity_send(cdp.activity) IS
  'binary output of cdp.activity';

CREATE TYPE cdp.activity (
  INTERNALLENGTH = VARIABLE,
  INPUT = cdp.activity_in,
  OUTPUT = cdp.activity_out,
  RECEIVE = cdp.activity_recv,
  SEND = cdp.activity_send,
  ALIGNMENT = int4,
  STORAGE = extended
);
COMMENT ON TYPE cdp.activity IS
  'behavioural summary of one profile: per event name count, sum, first/last time stamp and per-UTC-day counts and sums';

-- the text form is JSON
CREATE CAST (cdp.activity AS jsonb) WITH INOUT;
COMMENT ON CAST (cdp.activity AS jsonb) IS
  'the summary as jsonb (its text form)';

------------------------------------------------------------------ building

CREATE FUNCTION cdp.activity_agg_trans(internal, text, timestamptz)
RETURNS internal
AS 'MODULE_PATHNAME', 'cdp_activity_agg_trans'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.activity_agg_trans(internal, text, timestamptz) IS
  'transition function of cdp.activity_agg(text, timestamptz)';

CREATE FUNCTION cdp.activity_agg_trans(internal, text, timestamptz, float8)
RETURNS internal
AS 'MODULE_PATHNAME', 'cdp_activity_agg_trans'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.activity_agg_trans(internal, text, timestamptz, float8) IS
  'transition function of cdp.activity_agg(text, timestamptz, float8)';

CREATE FUNCTION cdp.activity_agg_final(internal)
RETURNS cdp.activity
AS 'MODULE_PATHNAME', 'cdp_activity_agg_final'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.activity_agg_final(internal) IS
  'final function of cdp.activity_agg: sorts and packs the summary';

CREATE FUNCTION cdp.activity_agg_combine(internal, internal)
RETURNS internal
AS 'MODULE_PATHNAME', 'cdp_activity_agg_combine'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.activity_agg_combine(internal, internal) IS
  'combine function of cdp.activity_agg';

CREATE FUNCTION cdp.activity_agg_serialize(internal)
RETURNS bytea
AS 'MODULE_PATHNAME', 'cdp_activity_agg_serialize'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.activity_agg_serialize(internal) IS
  'serial function of cdp.activity_agg: the state in the on-disk format';

CREATE FUNCTION cdp.activity_agg_deserialize(bytea, internal)
RETURNS internal
AS 'MODULE_PATHNAME', 'cdp_activity_agg_deserialize'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.activity_agg_deserialize(bytea, internal) IS
  'deserial function of cdp.activity_agg';

CREATE AGGREGATE cdp.activity_agg(event text, at timestamptz) (
  SFUNC = cdp.activity_agg_trans,
  STYPE = internal,
  SSPACE = 192,  -- 16 bytes per event (32 with a value); about ten events a group
  FINALFUNC = cdp.activity_agg_final,
  COMBINEFUNC = cdp.activity_agg_combine,
  SERIALFUNC = cdp.activity_agg_serialize,
  DESERIALFUNC = cdp.activity_agg_deserialize,
  PARALLEL = SAFE
);
COMMENT ON AGGREGATE cdp.activity_agg(text, timestamptz) IS
  'behavioural summary of the events (name, time); rows with a NULL name or time are skipped';

CREATE AGGREGATE cdp.activity_agg(event text, at timestamptz, value float8) (
  SFUNC = cdp.activity_agg_trans,
  STYPE = internal,
  SSPACE = 192,  -- 16 bytes per event (32 with a value); about ten events a group
  FINALFUNC = cdp.activity_agg_final,
  COMBINEFUNC = cdp.activity_agg_combine,
  SERIALFUNC = cdp.activity_agg_serialize,
  DESERIALFUNC = cdp.activity_agg_deserialize,
  PARALLEL = SAFE
);
COMMENT ON AGGREGATE cdp.activity_agg(text, timestamptz, float8) IS
  'behavioural summary of the events (name, time, value); a NULL value counts the event and adds nothing to the sum';

-- Not STRICT: NULL is the empty summary, so merging into a NULL column works.
CREATE FUNCTION cdp.activity_merge(a cdp.activity, b cdp.activity)
RETURNS cdp.activity
AS 'MODULE_PATHNAME', 'cdp_activity_merge'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.activity_merge(cdp.activity, cdp.activity) IS
  'exact merge of two summaries (associative, commutative; NULL is the empty summary)';

CREATE FUNCTION cdp.activity_trim(a cdp.activity, before timestamptz)
RETURNS cdp.activity
AS 'MODULE_PATHNAME', 'cdp_activity_trim'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.activity_trim(cdp.activity, timestamptz) IS
  'folds the day buckets of UTC days that end at or before "before" into the totals';

------------------------------------------------------------------ accessors

CREATE FUNCTION cdp.event_count(a cdp.activity, event text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'cdp_event_count'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.event_count(cdp.activity, text) IS
  'number of events of that name (0 if none)';

CREATE FUNCTION cdp.event_count(a cdp.activity, event text, since timestamptz)
RETURNS bigint
AS 'MODULE_PATHNAME', 'cdp_event_count'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.event_count(cdp.activity, text, timestamptz) IS
  'number of events of that name on UTC days from the one containing since';

CREATE FUNCTION cdp.event_count(a cdp.activity, event text, since timestamptz, until timestamptz)
RETURNS bigint
AS 'MODULE_PATHNAME', 'cdp_event_count'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.event_count(cdp.activity, text, timestamptz, timestamptz) IS
  'number of events of that name on UTC days that overlap [since, until)';

CREATE FUNCTION cdp.event_sum(a cdp.activity, event text)
RETURNS float8
AS 'MODULE_PATHNAME', 'cdp_event_sum'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.event_sum(cdp.activity, text) IS
  'sum of the values of events of that name (0 if none)';

CREATE FUNCTION cdp.event_sum(a cdp.activity, event text, since timestamptz)
RETURNS float8
AS 'MODULE_PATHNAME', 'cdp_event_sum'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.event_sum(cdp.activity, text, timestamptz) IS
  'sum of the values of events of that name on UTC days from the one containing since';

CREATE FUNCTION cdp.event_sum(a cdp.activity, event text, since timestamptz, until timestamptz)
RETURNS float8
AS 'MODULE_PATHNAME', 'cdp_event_sum'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.event_sum(cdp.activity, text, timestamptz, timestamptz) IS
  'sum of the values of events of that name on UTC days that overlap [since, until)';

CREATE FUNCTION cdp.first_seen(a cdp.activity)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'cdp_first_seen'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.first_seen(cdp.activity) IS
  'time stamp of the first event (NULL for an empty summary)';

CREATE FUNCTION cdp.first_seen(a cdp.activity, event text)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'cdp_first_seen'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.first_seen(cdp.activity, text) IS
  'time stamp of the first event of that name (NULL if none)';

CREATE FUNCTION cdp.last_seen(a cdp.activity)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'cdp_last_seen'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.last_seen(cdp.activity) IS
  'time stamp of the last event (NULL for an empty summary)';

CREATE FUNCTION cdp.last_seen(a cdp.activity, event text)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'cdp_last_seen'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.last_seen(cdp.activity, text) IS
  'time stamp of the last event of that name (NULL if none)';

CREATE FUNCTION cdp.active_days(a cdp.activity)
RETURNS int
AS 'MODULE_PATHNAME', 'cdp_active_days_any'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.active_days(cdp.activity) IS
  'number of UTC days with any event';

CREATE FUNCTION cdp.active_days(a cdp.activity, since timestamptz)
RETURNS int
AS 'MODULE_PATHNAME', 'cdp_active_days_any'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.active_days(cdp.activity, timestamptz) IS
  'number of UTC days with any event, from the day containing since';

CREATE FUNCTION cdp.active_days(a cdp.activity, since timestamptz, until timestamptz)
RETURNS int
AS 'MODULE_PATHNAME', 'cdp_active_days_any'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.active_days(cdp.activity, timestamptz, timestamptz) IS
  'number of UTC days overlapping [since, until) with any event';

CREATE FUNCTION cdp.active_days(a cdp.activity, event text)
RETURNS int
AS 'MODULE_PATHNAME', 'cdp_active_days'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.active_days(cdp.activity, text) IS
  'number of UTC days with events of that name';

CREATE FUNCTION cdp.active_days(a cdp.activity, event text, since timestamptz)
RETURNS int
AS 'MODULE_PATHNAME', 'cdp_active_days'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.active_days(cdp.activity, text, timestamptz) IS
  'number of UTC days with events of that name, from the day containing since';

CREATE FUNCTION cdp.active_days(a cdp.activity, event text, since timestamptz, until timestamptz)
RETURNS int
AS 'MODULE_PATHNAME', 'cdp_active_days'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.active_days(cdp.activity, text, timestamptz, timestamptz) IS
  'number of UTC days overlapping [since, until) with events of that name';

CREATE FUNCTION cdp.events(a cdp.activity,
                           OUT event text, OUT count bigint, OUT sum float8,
                           OUT first_at timestamptz, OUT last_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'cdp_events'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE ROWS 10;
COMMENT ON FUNCTION cdp.events(cdp.activity) IS
  'one row per event name: count, sum, first and last time stamp';

-- STABLE: the now() default, and timestamptz - interval follows TimeZone.
-- In C, not SQL: the window is computed once per query rather than once per
-- row (a segment query passes the same within and as_of to every row).
-- Not STRICT: a NULL within means no lower bound.
CREATE FUNCTION cdp.did(a cdp.activity, event text, at_least int DEFAULT 1,
                        within interval DEFAULT NULL, as_of timestamptz DEFAULT now())
RETURNS boolean
AS 'MODULE_PATHNAME', 'cdp_did'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.did(cdp.activity, text, int, interval, timestamptz) IS
  'at least at_least events of that name on UTC days overlapping [as_of - within, as_of) (no lower bound when within is NULL)';

CREATE FUNCTION cdp.did_not(a cdp.activity, event text, at_least int DEFAULT 1,
                            within interval DEFAULT NULL, as_of timestamptz DEFAULT now())
RETURNS boolean
AS 'MODULE_PATHNAME', 'cdp_did_not'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.did_not(cdp.activity, text, int, interval, timestamptz) IS
  'negation of cdp.did: fewer than at_least events of that name in the window';
