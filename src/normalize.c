/*-------------------------------------------------------------------------
 *
 * normalize.c
 *	  Identifier normalization: e-mail addresses, phone numbers (E.164) and
 *	  the SHA-256 form that ad platforms' customer-match uploads expect.
 *
 * Bulk pipelines run these over millions of rows, so a value that cannot be
 * normalized gives NULL instead of an error.  Everything works on bytes in a
 * single pass; only ASCII is case-folded, so results do not depend on the
 * database locale.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "normalize.h"

#define IS_WS(c)	((c) == ' ' || (c) == '\t' || (c) == '\n' || \
					 (c) == '\r' || (c) == '\f' || (c) == '\v')
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')
#define IS_ALPHA(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define TO_LOWER(c) (((c) >= 'A' && (c) <= 'Z') ? (c) + ('a' - 'A') : (c))

/* Trim ASCII white space from both ends of [*start, *start + *len). */
static inline void
trim_ws(const char **start, int *len)
{
	const char *s = *start;
	int			n = *len;

	while (n > 0 && IS_WS((unsigned char) s[0]))
	{
		s++;
		n--;
	}
	while (n > 0 && IS_WS((unsigned char) s[n - 1]))
		n--;
	*start = s;
	*len = n;
}

/* Characters RFC 5322 allows unquoted in a local part, besides alnum. */
static inline bool
is_local_special(unsigned char c)
{
	return strchr("!#$%&'*+/=?^_`{|}~-.", c) != NULL && c != '\0';
}

/*
 * Providers whose mailboxes ignore "+tag" suffixes; the first two also
 * ignore dots in the local part and are the same service.
 */
typedef struct AliasProvider
{
	const char *domain;
	bool		ignores_dots;
	const char *canonical;
} AliasProvider;

static const AliasProvider alias_providers[] = {
	{"gmail.com", true, "gmail.com"},
	{"googlemail.com", true, "gmail.com"},
	{"outlook.com", false, NULL},
	{"hotmail.com", false, NULL},
	{"live.com", false, NULL},
	{"icloud.com", false, NULL},
	{"me.com", false, NULL},
	{"fastmail.com", false, NULL},
	{"protonmail.com", false, NULL},
	{"proton.me", false, NULL},
};

int
cdp_normalize_email_buf(const char *in, int len, bool fold_aliases, char *out)
{
	const char *at = NULL;
	int			local_len;
	int			domain_len;
	int			i;
	int			label_len;
	bool		label_all_digits;
	char	   *o;
	unsigned char prev;

	trim_ws(&in, &len);
	if (len < 3 || len > 320)
		return -1;

	/* exactly one '@'; quoted local parts are not supported */
	for (i = 0; i < len; i++)
	{
		if (in[i] == '@')
		{
			if (at != NULL)
				return -1;
			at = in + i;
		}
	}
	if (at == NULL)
		return -1;
	local_len = at - in;
	domain_len = len - local_len - 1;
	if (local_len < 1 || local_len > 64 || domain_len < 3 || domain_len > 253)
		return -1;

	/* local part: atext and dots, no leading, trailing or doubled dot */
	o = out;
	prev = '.';
	for (i = 0; i < local_len; i++)
	{
		unsigned char c = (unsigned char) in[i];

		if (c >= 0x80 || IS_DIGIT(c) || IS_ALPHA(c) || is_local_special(c))
		{
			if (c == '.' && prev == '.')
				return -1;
			*o++ = TO_LOWER(c);
			prev = c;
		}
		else
			return -1;
	}
	if (prev == '.')
		return -1;
	*o++ = '@';

	/* domain: dot-separated labels of letters, digits and inner hyphens */
	label_len = 0;
	label_all_digits = true;
	prev = '.';
	for (i = local_len + 1; i < len; i++)
	{
		unsigned char c = (unsigned char) in[i];

		if (c == '.')
		{
			if (label_len == 0 || prev == '-')
				return -1;
			label_len = 0;
			label_all_digits = true;
		}
		else if (c >= 0x80 || IS_DIGIT(c) || IS_ALPHA(c) || c == '-')
		{
			if (c == '-' && label_len == 0)
				return -1;
			if (++label_len > 63)
				return -1;
			if (!IS_DIGIT(c))
				label_all_digits = false;
		}
		else
			return -1;
		*o++ = TO_LOWER(c);
		prev = c;
	}
	/* the last label (top-level domain) must exist and not be numeric */
	if (label_len == 0 || prev == '-' || label_all_digits)
		return -1;
	if (memchr(out + local_len + 1, '.', domain_len) == NULL)
		return -1;

	if (fold_aliases)
	{
		const char *domain = out + local_len + 1;

		for (i = 0; i < lengthof(alias_providers); i++)
		{
			const AliasProvider *p = &alias_providers[i];
			int			plen = strlen(p->domain);
			const char *canon;
			int			clen;
			int			j;
			int			k;

			if (plen != domain_len || memcmp(domain, p->domain, plen) != 0)
				continue;

			/* rewrite the local part in place: drop "+tag", maybe dots */
			k = 0;
			for (j = 0; j < local_len; j++)
			{
				char		c = out[j];

				if (c == '+')
					break;
				if (c == '.' && p->ignores_dots)
					continue;
				out[k++] = c;
			}
			if (k == 0)
				return -1;
			canon = p->canonical ? p->canonical : p->domain;
			clen = strlen(canon);
			out[k++] = '@';
			memcpy(out + k, canon, clen);
			return k + clen;
		}
	}
	return o - out;
}

/*
 * Length of the ITU-T E.164 country calling code that starts digits, or 0
 * when no country code starts with them.  World zones 1 and 7 have one
 * digit; the two-digit codes are listed; the rest of zones 2 to 9 use three
 * digits, except the spare prefixes 28, 83 and 89.
 */
static int
country_code_length(const char *d, int n)
{
	static const char *const two_digit =
		"20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 "
		"51 52 53 54 55 56 57 58 60 61 62 63 64 65 66 81 82 84 86 "
		"90 91 92 93 94 95 98 ";
	char		pair[4];

	if (n < 1 || d[0] == '0')
		return 0;
	if (d[0] == '1' || d[0] == '7')
		return 1;
	if (n < 2)
		return 0;
	pair[0] = d[0];
	pair[1] = d[1];
	pair[2] = ' ';
	pair[3] = '\0';
	if (strstr(two_digit, pair) != NULL)
		return 2;
	if ((d[0] == '2' && d[1] == '8') || (d[0] == '8' && d[1] == '3') ||
		(d[0] == '8' && d[1] == '9'))
		return 0;
	return n >= 3 ? 3 : 0;
}

/* Countries whose national significant numbers may start with 0. */
static bool
keeps_leading_zero(const char *cc, int cclen)
{
	return (cclen == 2 && memcmp(cc, "39", 2) == 0) ||
		(cclen == 3 && (memcmp(cc, "225", 3) == 0 ||
						memcmp(cc, "242", 3) == 0 ||
						memcmp(cc, "378", 3) == 0 ||
						memcmp(cc, "379", 3) == 0));
}

/* Does s (of n bytes) start with word, ignoring ASCII case? */
static inline bool
starts_with_ci(const char *s, int n, const char *word)
{
	int			wl = strlen(word);

	return n >= wl && pg_strncasecmp(s, word, wl) == 0;
}

int
cdp_normalize_phone_buf(const char *in, int len, const char *default_cc,
						char *out)
{
	char		digits[32];
	int			nd = 0;
	bool		plus = false;
	const char *intl;
	int			nintl;
	char		national[32];
	int			i;
	int			cclen;

	trim_ws(&in, &len);
	if (starts_with_ci(in, len, "tel:"))
	{
		in += 4;
		len -= 4;
		trim_ws(&in, &len);
	}
	if (len == 0 || len > 64)
		return -1;

	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) in[i];

		if (IS_DIGIT(c))
		{
			if (nd >= (int) sizeof(digits))
				return -1;
			digits[nd++] = c;
		}
		else if (c == '+')
		{
			/* only as the very first significant character */
			if (plus || nd > 0)
				return -1;
			plus = true;
		}
		else if (c == '(' && i + 2 < len && in[i + 1] == '0' &&
				 in[i + 2] == ')' && nd > 0)
		{
			/* "+31 (0)6 ...": a trunk prefix written in brackets */
			i += 2;
		}
		else if (c == ' ' || c == '-' || c == '.' || c == '/' ||
				 c == '(' || c == ')' || c == '\t')
			continue;
		else if (nd > 0 && (c == '#' || c == ';' || c == ',' ||
							starts_with_ci(in + i, len - i, "ext") ||
							starts_with_ci(in + i, len - i, "x")))
		{
			/* an extension: E.164 has no room for it */
			break;
		}
		else
			return -1;
	}
	if (nd == 0)
		return -1;

	if (plus)
	{
		intl = digits;
		nintl = nd;
	}
	else if (nd > 2 && digits[0] == '0' && digits[1] == '0')
	{
		intl = digits + 2;
		nintl = nd - 2;
	}
	else if (nd > 3 && default_cc != NULL && strcmp(default_cc, "1") == 0 &&
			 memcmp(digits, "011", 3) == 0)
	{
		intl = digits + 3;
		nintl = nd - 3;
	}
	else
	{
		/* a national number: needs the default country code */
		const char *nat = digits;
		int			nn = nd;
		int			dcl;

		if (default_cc == NULL)
			return -1;
		dcl = strlen(default_cc);
		if (strcmp(default_cc, "1") == 0)
		{
			/* NANP: optional trunk 1, then ten digits */
			if (nn == 11 && nat[0] == '1')
			{
				nat++;
				nn--;
			}
			if (nn != 10)
				return -1;
		}
		else if (strcmp(default_cc, "7") == 0 && nn == 11 && nat[0] == '8')
		{
			nat++;
			nn--;
		}
		else if (nat[0] == '0' && !keeps_leading_zero(default_cc, dcl))
		{
			nat++;
			nn--;
		}
		if (nn == 0 || dcl + nn > (int) sizeof(national))
			return -1;
		memcpy(national, default_cc, dcl);
		memcpy(national + dcl, nat, nn);
		intl = national;
		nintl = dcl + nn;
	}

	cclen = country_code_length(intl, nintl);
	if (cclen == 0 || nintl <= cclen)
		return -1;

	out[0] = '+';
	memcpy(out + 1, intl, cclen);
	i = 1 + cclen;
	{
		const char *rest = intl + cclen;
		int			nrest = nintl - cclen;

		/* "+31 06 ...": a trunk 0 written after the country code */
		if (rest[0] == '0' && !keeps_leading_zero(intl, cclen))
		{
			rest++;
			nrest--;
			/* no national significant number starts with 0 there */
			if (nrest > 0 && rest[0] == '0')
				return -1;
		}
		if (nrest < 1 || cclen + nrest < 7 || cclen + nrest > 15)
			return -1;
		/* NANP: ten digits, area code and exchange start with 2-9 */
		if (cclen == 1 && intl[0] == '1' &&
			(nrest != 10 || rest[0] < '2' || rest[3] < '2'))
			return -1;
		memcpy(out + i, rest, nrest);
		i += nrest;
	}
	return i;
}

void
cdp_sha256_hex(const char *in, size_t len, char *out)
{
	static const char hex[] = "0123456789abcdef";
	pg_cryptohash_ctx *ctx;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	int			i;

	ctx = pg_cryptohash_create(PG_SHA256);
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) in, len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
	{
		pg_cryptohash_free(ctx);
		elog(ERROR, "could not compute SHA-256 hash");
	}
	pg_cryptohash_free(ctx);

	for (i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
	{
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 0x0f];
	}
	out[64] = '\0';
}

/* Build a text datum of len bytes whose data the caller writes into. */
static inline text *
text_alloc(int len)
{
	text	   *t = (text *) palloc(VARHDRSZ + len);

	SET_VARSIZE(t, VARHDRSZ + len);
	return t;
}

static Datum
normalize_email_common(FunctionCallInfo fcinfo, bool fold)
{
	text	   *in = PG_GETARG_TEXT_PP(0);
	int			len = VARSIZE_ANY_EXHDR(in);
	text	   *res = text_alloc(len);
	int			outlen;

	outlen = cdp_normalize_email_buf(VARDATA_ANY(in), len, fold, VARDATA(res));
	if (outlen < 0)
	{
		pfree(res);
		PG_RETURN_NULL();
	}
	SET_VARSIZE(res, VARHDRSZ + outlen);
	PG_RETURN_TEXT_P(res);
}

/* cdp.normalize_email(text): trimmed, lowercased address or NULL */
PG_FUNCTION_INFO_V1(cdp_normalize_email);
Datum
cdp_normalize_email(PG_FUNCTION_ARGS)
{
	return normalize_email_common(fcinfo, false);
}

/* cdp.normalize_email(text, boolean): optionally fold provider aliases */
PG_FUNCTION_INFO_V1(cdp_normalize_email_fold);
Datum
cdp_normalize_email_fold(PG_FUNCTION_ARGS)
{
	return normalize_email_common(fcinfo, PG_GETARG_BOOL(1));
}

/*
 * Validate a default country calling code argument ("31", "+31") and
 * return its digits.  A bad code is the caller's mistake, not bad data, so
 * it is an error rather than NULL for every row.
 */
static char *
parse_country_code(text *cc)
{
	char	   *s = text_to_cstring(cc);
	char	   *d = s;
	int			n;

	while (IS_WS((unsigned char) *d))
		d++;
	if (*d == '+')
		d++;
	n = strspn(d, "0123456789");
	if (n == 0 || n > 3 || strspn(d + n, " \t") != strlen(d + n) ||
		country_code_length(d, n) != n)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid default country code \"%s\"", s),
				 errdetail("A country calling code is one to three digits assigned by ITU-T E.164."),
				 errhint("Pass the code without trunk or international prefix, for example '31' or '+1'.")));
	d[n] = '\0';
	return d;
}

/* cdp.normalize_phone(text, text): E.164 form of a written phone number */
PG_FUNCTION_INFO_V1(cdp_normalize_phone);
Datum
cdp_normalize_phone(PG_FUNCTION_ARGS)
{
	text	   *in;
	const char *cc = NULL;
	char		buf[CDP_E164_MAXLEN + 1];
	int			outlen;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	in = PG_GETARG_TEXT_PP(0);

	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
	{
		/* the code is usually a constant: parse it once per query */
		if (fcinfo->flinfo->fn_extra == NULL ||
			!get_fn_expr_arg_stable(fcinfo->flinfo, 1))
		{
			char	   *parsed = parse_country_code(PG_GETARG_TEXT_PP(1));

			if (!get_fn_expr_arg_stable(fcinfo->flinfo, 1))
				cc = parsed;
			else
				fcinfo->flinfo->fn_extra =
					MemoryContextStrdup(fcinfo->flinfo->fn_mcxt, parsed);
		}
		if (cc == NULL)
			cc = fcinfo->flinfo->fn_extra;
	}

	outlen = cdp_normalize_phone_buf(VARDATA_ANY(in), VARSIZE_ANY_EXHDR(in),
									 cc, buf);
	if (outlen < 0)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf, outlen));
}

/* cdp.hash_identifier(text): lowercase hex SHA-256 */
PG_FUNCTION_INFO_V1(cdp_hash_identifier);
Datum
cdp_hash_identifier(PG_FUNCTION_ARGS)
{
	text	   *in = PG_GETARG_TEXT_PP(0);
	text	   *res = text_alloc(64);
	char		hex[65];

	cdp_sha256_hex(VARDATA_ANY(in), VARSIZE_ANY_EXHDR(in), hex);
	memcpy(VARDATA(res), hex, 64);
	PG_RETURN_TEXT_P(res);
}
