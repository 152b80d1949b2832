-- The extension installs, drops and reinstalls cleanly in a fresh database,
-- and keeps every object in schema cdp.
\set origdb :DBNAME
CREATE DATABASE cdp_extension_check;
\c cdp_extension_check
SET client_min_messages = warning;

-- CASCADE installs nothing but cdp
CREATE EXTENSION cdp CASCADE;
SELECT extname, extversion, extnamespace::regnamespace, extrelocatable FROM pg_extension ORDER BY 1;

-- every member object lives in schema cdp and carries a comment
SELECT count(*) AS objects_outside_cdp
FROM pg_depend d
JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
WHERE d.refclassid = 'pg_extension'::regclass
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'cdp')
  AND p.pronamespace <> 'cdp'::regnamespace;
SELECT p.oid::regprocedure AS uncommented_function
FROM pg_proc p
WHERE p.pronamespace = 'cdp'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL
ORDER BY 1::text;
SELECT c.oid::regclass AS uncommented_relation
FROM pg_class c
WHERE c.relnamespace = 'cdp'::regnamespace AND c.relkind IN ('r', 'v', 'm')
  AND obj_description(c.oid, 'pg_class') IS NULL
ORDER BY 1::text;

-- drop leaves nothing behind; reinstall works
DROP EXTENSION cdp;
-- (the schema named in cdp.control is not an extension member: it stays,
-- empty, and a reinstall reuses it)
SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = 'cdp'::regnamespace)
     + (SELECT count(*) FROM pg_proc WHERE pronamespace = 'cdp'::regnamespace)
     + (SELECT count(*) FROM pg_type WHERE typnamespace = 'cdp'::regnamespace)
     + (SELECT count(*) FROM pg_operator WHERE oprnamespace = 'cdp'::regnamespace) AS leftover_objects;
CREATE EXTENSION cdp;
SELECT cdp.normalize_email(' X@Y.ORG ');
DROP EXTENSION cdp;
DROP SCHEMA cdp;
CREATE EXTENSION cdp;
SELECT cdp.hash_identifier('x') IS NOT NULL AS works_after_reinstall;
DROP EXTENSION cdp;

\c :origdb
DROP DATABASE cdp_extension_check;
