-- Audience bitmaps: two audiences of 1M and 500k members drawn from 2M
-- profile ids.  Overlap counted by cdp.overlap and by & against the same
-- count in plain SQL over membership rows (INTERSECT, and a join); building
-- an audience with cdp.audience_agg against count(*) over the same rows.
-- @setup
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench_aud_members, bench_aud, bench_aud_ids, bench_aud_storage;
SELECT setseed(0.25);
CREATE TABLE bench_aud_members AS
  SELECT 1 AS aud_id, id FROM (SELECT id FROM generate_series(0, 1999999) id ORDER BY random() LIMIT 1000000) a
  UNION ALL
  SELECT 2, id FROM (SELECT id FROM generate_series(0, 1999999) id ORDER BY random() LIMIT 500000) b;
CREATE INDEX ON bench_aud_members (aud_id, id);
CREATE TABLE bench_aud_ids AS SELECT id FROM bench_aud_members WHERE aud_id = 1;
CREATE TABLE bench_aud AS
  SELECT aud_id, cdp.audience_agg(id) AS aud FROM bench_aud_members GROUP BY aud_id;
VACUUM ANALYZE bench_aud_members;
VACUUM ANALYZE bench_aud_ids;
VACUUM ANALYZE bench_aud;
-- @floor count(*) over 1M rows
SELECT count(*) FROM bench_aud_ids;
-- @case cdp.audience_agg over 1M rows
SELECT cdp.size(cdp.audience_agg(id)) FROM bench_aud_ids;
-- @case array_agg over 1M rows
SELECT cardinality(array_agg(id)) FROM bench_aud_ids;
-- @case SQL count(*) over INTERSECT
\timing off
SELECT count(*) FROM bench_aud_members WHERE aud_id = 0;
\timing on
SELECT count(*) FROM (SELECT id FROM bench_aud_members WHERE aud_id = 1
                      INTERSECT SELECT id FROM bench_aud_members WHERE aud_id = 2) s;
-- @case SQL count(*) over join
\timing off
SELECT count(*) FROM bench_aud_members WHERE aud_id = 0;
\timing on
SELECT count(*) FROM bench_aud_members a JOIN bench_aud_members b ON a.id = b.id
WHERE a.aud_id = 1 AND b.aud_id = 2;
-- @case cdp.overlap(a, b)
\timing off
SELECT cdp.overlap('{}', '{}'), sum(cdp.size(aud)) FROM bench_aud;
\timing on
SELECT cdp.overlap(a.aud, b.aud) FROM bench_aud a, bench_aud b WHERE a.aud_id = 1 AND b.aud_id = 2;
-- @case cdp.size(a & b)
\timing off
SELECT cdp.overlap('{}', '{}'), sum(cdp.size(aud)) FROM bench_aud;
\timing on
SELECT cdp.size(a.aud OPERATOR(cdp.&) b.aud) FROM bench_aud a, bench_aud b WHERE a.aud_id = 1 AND b.aud_id = 2;
-- @case cdp.jaccard(a, b)
\timing off
SELECT cdp.overlap('{}', '{}'), sum(cdp.size(aud)) FROM bench_aud;
\timing on
SELECT cdp.jaccard(a.aud, b.aud) FROM bench_aud a, bench_aud b WHERE a.aud_id = 1 AND b.aud_id = 2;
-- @case cdp.size(a - b)
\timing off
SELECT cdp.overlap('{}', '{}'), sum(cdp.size(aud)) FROM bench_aud;
\timing on
SELECT cdp.size(a.aud OPERATOR(cdp.-) b.aud) FROM bench_aud a, bench_aud b WHERE a.aud_id = 1 AND b.aud_id = 2;
-- @compare cdp.overlap(a, b) | SQL count(*) over INTERSECT
-- @compare cdp.overlap(a, b) | SQL count(*) over join
-- @compare cdp.size(a & b) | SQL count(*) over INTERSECT
-- @compare cdp.size(a & b) | SQL count(*) over join
-- @compare cdp.audience_agg over 1M rows | count(*) over 1M rows
-- @compare cdp.audience_agg over 1M rows | array_agg over 1M rows
-- @note the two-audience statements are timed in a warmed-up backend (extension library loaded, catalogs, tables and the TOAST relation cached, untimed): a new connection adds tens of milliseconds once
-- @note goals: overlap and & at least 100x faster than SQL; audience_agg within 2x of count(*)
-- @note storage per member (pg_column_size): 1M random of 2M ids 0.25 bytes, 500k random of 2M 0.51, 100k random of 2M 2.0, 1M random of 0..2^32-1 2.5, 1M consecutive ids 0.0002 (235 bytes); a membership row (int, bigint) takes about 40 bytes plus its index entry
-- @setup
DROP TABLE bench_aud_members, bench_aud, bench_aud_ids;
