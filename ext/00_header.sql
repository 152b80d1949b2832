/* cdp: a Customer Data Platform inside PostgreSQL */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION cdp" to load this file. \quit

-- The extension's schema (cdp.control: schema = cdp) is created by
-- CREATE EXTENSION; every object below lives in it.
COMMENT ON SCHEMA cdp IS 'cdp: identity stitching, golden records, behavioural segments, audiences and predictions';
