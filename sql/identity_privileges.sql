-- Source queries run as the role that registered them, with its
-- search_path, not as whoever runs the refresh.
SET client_min_messages = warning;
CREATE ROLE regress_cdp_owner;
CREATE ROLE regress_cdp_other;
CREATE SCHEMA regress_cdp_private;
CREATE TABLE regress_cdp_private.secret_contacts (user_id text, email text);
INSERT INTO regress_cdp_private.secret_contacts VALUES ('s1', 'secret@example.com');
ALTER TABLE regress_cdp_private.secret_contacts OWNER TO regress_cdp_owner;
ALTER SCHEMA regress_cdp_private OWNER TO regress_cdp_owner;
-- what an administrator grants to roles that may register sources
GRANT USAGE ON SCHEMA cdp TO regress_cdp_owner, regress_cdp_other;
GRANT EXECUTE ON FUNCTION cdp.add_source(text, text, text), cdp.identity_add_source(text, text, text, text),
      cdp.identity_source_kinds(text), cdp.identity_lock() TO regress_cdp_owner, regress_cdp_other;
GRANT SELECT, INSERT ON cdp.identity_sources, cdp.identity_kinds TO regress_cdp_owner, regress_cdp_other;

-- the owner registers a source with an unqualified name on its own path
SET ROLE regress_cdp_owner;
SET search_path = regress_cdp_private, public;
SELECT cdp.add_source('secret', $$SELECT user_id, email, current_user::text AS reader FROM secret_contacts$$);
RESET search_path;
RESET ROLE;
SELECT name, owner, search_path FROM cdp.identity_sources;

-- another role cannot register a source over a table it may not read
SET ROLE regress_cdp_other;
SELECT cdp.add_source('stolen', $$SELECT user_id, email FROM regress_cdp_private.secret_contacts$$);
-- nor call the reader directly
SELECT * FROM cdp.identity_read_source('secret');
-- it may register one over a table it was granted
RESET ROLE;
CREATE TABLE regress_cdp_open (user_id text);
INSERT INTO regress_cdp_open VALUES ('o1');
GRANT SELECT ON regress_cdp_open TO regress_cdp_other;
SET ROLE regress_cdp_other;
SELECT cdp.add_source('open', $$SELECT user_id, current_user::text AS reader FROM public.regress_cdp_open$$);
RESET ROLE;

-- a superuser refresh: each query ran as its owner (the reader column)
SELECT rows_read, sources FROM cdp.refresh_identities();
SELECT kind, value FROM cdp.identifiers ORDER BY kind, value;

-- the other role loses its right: the refresh fails, even for a superuser,
-- and nothing is applied
REVOKE SELECT ON regress_cdp_open FROM regress_cdp_other;
INSERT INTO regress_cdp_private.secret_contacts VALUES ('s2', 'second@example.com');
SELECT cdp.refresh_identities();
SELECT count(*) AS identifiers FROM cdp.identifiers;
-- a source that tries to write is refused too (read-only, restricted)
SELECT cdp.drop_source('open');
SET ROLE regress_cdp_owner;
CREATE FUNCTION regress_cdp_private.sneaky() RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN CREATE TEMP TABLE regress_cdp_t (x int); RETURN 'x'; END $$;
SELECT cdp.add_source('sneaky', $$SELECT regress_cdp_private.sneaky() AS user_id$$);
RESET ROLE;
SELECT cdp.refresh_identities();
SELECT cdp.drop_source('sneaky');
SELECT rows_read FROM cdp.refresh_identities();
SELECT kind, value FROM cdp.identifiers ORDER BY kind, value;

-- clean up
SELECT cdp.drop_source('secret');
TRUNCATE cdp.identifiers, cdp.identity_links, cdp.profiles, cdp.profile_lineage, cdp.identity_runs,
         cdp.identity_refusals, cdp.identity_overrides, cdp.identity_suppressed, cdp.identity_kinds;
DROP TABLE regress_cdp_open;
DROP SCHEMA regress_cdp_private CASCADE;
REVOKE ALL ON cdp.identity_sources, cdp.identity_kinds FROM regress_cdp_owner, regress_cdp_other;
REVOKE ALL ON FUNCTION cdp.add_source(text, text, text), cdp.identity_add_source(text, text, text, text),
       cdp.identity_source_kinds(text), cdp.identity_lock() FROM regress_cdp_owner, regress_cdp_other;
REVOKE ALL ON SCHEMA cdp FROM regress_cdp_owner, regress_cdp_other;
DROP ROLE regress_cdp_owner;
DROP ROLE regress_cdp_other;
