-- Identifier normalization (src/normalize.c)

CREATE FUNCTION cdp.normalize_email(email text)
RETURNS text
AS 'MODULE_PATHNAME', 'cdp_normalize_email'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.normalize_email(text) IS
  'trimmed, lowercased e-mail address, or NULL when the input is not an address';

CREATE FUNCTION cdp.normalize_email(email text, fold_provider_aliases boolean)
RETURNS text
AS 'MODULE_PATHNAME', 'cdp_normalize_email_fold'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.normalize_email(text, boolean) IS
  'normalized e-mail address; with fold_provider_aliases, dots and +tags are removed where the provider ignores them';

-- Not STRICT: a NULL default_country_code means "international numbers only".
CREATE FUNCTION cdp.normalize_phone(phone text, default_country_code text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'cdp_normalize_phone'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION cdp.normalize_phone(text, text) IS
  'E.164 form (+31612345678) of a written phone number, or NULL when none can be made';

CREATE FUNCTION cdp.hash_identifier(value text)
RETURNS text
AS 'MODULE_PATHNAME', 'cdp_hash_identifier'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION cdp.hash_identifier(text) IS
  'lowercase hex SHA-256 of the value, as customer-match uploads expect (normalize first)';
