/*-------------------------------------------------------------------------
 *
 * normalize.h
 *	  Identifier normalization shared by the SQL functions, stitching and
 *	  exports.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CDP_NORMALIZE_H
#define CDP_NORMALIZE_H

/* Longest E.164 number: "+" and 15 digits. */
#define CDP_E164_MAXLEN 16

/*
 * Normalize an e-mail address of len bytes into out, which must have room
 * for len bytes.  Returns the length written, or -1 when the input is not an
 * address.
 */
extern int	cdp_normalize_email_buf(const char *in, int len, bool fold_aliases,
									char *out);

/*
 * Normalize a written phone number into E.164.  default_cc is the country
 * calling code (digits only, already validated) used for national numbers,
 * or NULL.  out must have room for CDP_E164_MAXLEN bytes.  Returns the length
 * written, or -1 when no E.164 number can be made.
 */
extern int	cdp_normalize_phone_buf(const char *in, int len,
									const char *default_cc, char *out);

/* Lowercase hex SHA-256 of len bytes; out must have room for 65 bytes. */
extern void cdp_sha256_hex(const char *in, size_t len, char *out);

#endif							/* CDP_NORMALIZE_H */
