/*-------------------------------------------------------------------------
 *
 * activity.c
 *	  The cdp.activity type: text and binary I/O, validation, and the
 *	  accessors segment predicates are written with.
 *
 * The format is described in activity.h.  Input and receive build a value
 * and then validate every offset, length and invariant of the packed bytes,
 * so a stored value is well formed.  Accessors trust the invariants (like
 * other types trust their stored bytes) but still bound every read by the
 * header's section sizes, so altered bytes on disk can give odd figures but
 * never a read outside the value.
 *
 * Windows are half-open [since, until) at UTC-day granularity: a day bucket
 * counts when any part of its UTC day lies inside the window.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "common/shortest_dec.h"
#include "fmgr.h"
#include "funcapi.h"
#include "libpq/pqformat.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "activity.h"

#define ACT_TS_MAXLEN 40

/* version byte of the binary (send/receive) form, not the stored one */
#define ACTIVITY_BINARY_VERSION 1

/* ---------------------------------------------------------------- days */

/* 0001-01-01 and 9999-12-31 as UTC day numbers (days since 2000-01-01) */
#define ACT_MIN_DAY		(-730119)
#define ACT_MAX_DAY		2921939

int32
activity_min_day(void)
{
	Assert(ACT_MIN_DAY == date2j(1, 1, 1) - POSTGRES_EPOCH_JDATE);
	return ACT_MIN_DAY;
}

int32
activity_max_day(void)
{
	Assert(ACT_MAX_DAY == date2j(9999, 12, 31) - POSTGRES_EPOCH_JDATE);
	return ACT_MAX_DAY;
}

/* UTC day number (days since 2000-01-01) of a finite timestamp. */
int32
activity_day_of(TimestampTz ts)
{
	int64		d = ts / USECS_PER_DAY;

	if (ts < 0 && d * USECS_PER_DAY != ts)
		d--;
	return (int32) d;
}

/* Events outside years 1-9999 (and infinities) have no day bucket. */
void
activity_check_timestamp(TimestampTz ts)
{
	/* [first microsecond of 0001-01-01, first of 10000-01-01) UTC */
	static TimestampTz lo = 0,
				hi = 0;

	if (TIMESTAMP_NOT_FINITE(ts))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("infinite timestamp is not allowed in cdp.activity"),
				 errhint("Filter out events without a real time stamp.")));
	if (hi == 0)
	{
		lo = (TimestampTz) activity_min_day() * USECS_PER_DAY;
		hi = ((TimestampTz) activity_max_day() + 1) * USECS_PER_DAY;
	}
	if (ts < lo || ts >= hi)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp \"%s\" is out of range for cdp.activity",
						timestamptz_to_str(ts)),
				 errdetail("Events must lie between 0001-01-01 and 9999-12-31 UTC.")));
}

/* First day of the window [since, ...): the UTC day containing since. */
static int32
window_lo(TimestampTz since)
{
	if (TIMESTAMP_IS_NOBEGIN(since))
		return PG_INT32_MIN;
	if (TIMESTAMP_IS_NOEND(since))
		return PG_INT32_MAX;
	return activity_day_of(since);
}

/* End day (exclusive) of [..., until): days that start before until. */
static int32
window_hi(TimestampTz until)
{
	if (TIMESTAMP_IS_NOBEGIN(until))
		return PG_INT32_MIN;
	if (TIMESTAMP_IS_NOEND(until))
		return PG_INT32_MAX;
	return activity_day_of(until - 1) + 1;
}

static void
append_day(StringInfo buf, int32 day)
{
	int			y,
				m,
				d;

	j2date(day + POSTGRES_EPOCH_JDATE, &y, &m, &d);
	appendStringInfo(buf, "\"%04d-%02d-%02d\"", y, m, d);
}

/* Always UTC and ISO 8601, whatever DateStyle and TimeZone say. */
static void
append_timestamp(StringInfo buf, TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "timestamp out of range in cdp.activity");
	appendStringInfo(buf, "\"%04d-%02d-%02dT%02d:%02d:%02d",
					 tm.tm_year, tm.tm_mon, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (fsec != 0)
	{
		char		frac[8];
		int			n = 6;

		snprintf(frac, sizeof(frac), "%06d", (int) fsec);
		while (frac[n - 1] == '0')
			n--;
		appendStringInfo(buf, ".%.*s", n, frac);
	}
	appendStringInfoString(buf, "Z\"");
}

static void
append_float(StringInfo buf, float8 v)
{
	char		tmp[DOUBLE_SHORTEST_DECIMAL_LEN];

	/* shortest exact form: the text round-trips to the same float8 */
	double_to_shortest_decimal_buf(v + 0.0, tmp);
	appendStringInfoString(buf, tmp);
}

/* Parse n decimal digits at s, or -1. */
static int
parse_digits(const char *s, int n)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* "YYYY-MM-DD" at s: fills y, m, d; false if not a valid date. */
static bool
parse_date(const char *s, int len, int *y, int *m, int *d)
{
	if (len < 10 || s[4] != '-' || s[7] != '-')
		return false;
	*y = parse_digits(s, 4);
	*m = parse_digits(s + 5, 2);
	*d = parse_digits(s + 8, 2);
	if (*y < 1 || *m < 1 || *m > 12 || *d < 1 ||
		*d > day_tab[isleap(*y)][*m - 1])
		return false;
	return true;
}

static void
bad_text(const char *input, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid input syntax for type cdp.activity: \"%s\"", input),
			 errdetail("%s", detail),
			 errhint("Use the form the type prints: {\"event\": {\"count\": 1, \"sum\": 0, \"first\": \"2025-01-01T10:00:00Z\", \"last\": \"2025-01-01T10:00:00Z\", \"days\": {\"2025-01-01\": [1, 0]}}}.")));
}

static int32
parse_day_string(const char *input, const char *s, int len)
{
	int			y,
				m,
				d;

	/* the trim day of a summary trimmed at 'infinity' */
	if (len == 11 && memcmp(s, "10000-01-01", 11) == 0)
		return activity_max_day() + 1;
	if (len != 10 || !parse_date(s, len, &y, &m, &d))
		bad_text(input, psprintf("\"%.*s\" is not a day of the form YYYY-MM-DD.", len, s));
	return date2j(y, m, d) - POSTGRES_EPOCH_JDATE;
}

/* "YYYY-MM-DDTHH:MM:SS[.ffffff]Z", exactly as append_timestamp writes it */
static TimestampTz
parse_timestamp_string(const char *input, const char *s, int len)
{
	struct pg_tm tm;
	fsec_t		fsec = 0;
	TimestampTz ts;
	int			i;
	int			scale = 100000;

	memset(&tm, 0, sizeof(tm));
	if (len < 20 || !parse_date(s, len, &tm.tm_year, &tm.tm_mon, &tm.tm_mday) ||
		s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
		(tm.tm_hour = parse_digits(s + 11, 2)) < 0 || tm.tm_hour > 23 ||
		(tm.tm_min = parse_digits(s + 14, 2)) < 0 || tm.tm_min > 59 ||
		(tm.tm_sec = parse_digits(s + 17, 2)) < 0 || tm.tm_sec > 59)
		goto bad;
	i = 19;
	if (s[i] == '.')
	{
		i++;
		if (i >= len - 1)
			goto bad;
		for (; i < len - 1 && scale > 0; i++, scale /= 10)
		{
			if (s[i] < '0' || s[i] > '9')
				goto bad;
			fsec += (s[i] - '0') * scale;
		}
	}
	if (i != len - 1 || s[i] != 'Z')
		goto bad;
	if (tm2timestamp(&tm, fsec, NULL, &ts) != 0)
		goto bad;
	return ts;

bad:
	bad_text(input, psprintf("\"%.*s\" is not a UTC time stamp of the form YYYY-MM-DDTHH:MM:SS[.ffffff]Z.", len, s));
	return 0;					/* keep compiler quiet */
}

/* ---------------------------------------------------------------- packing */

#define ST_SORT			sort_build_events
#define ST_ELEMENT_TYPE ActivityBuildEvent
#define ST_COMPARE(a, b)	activity_build_event_cmp(a, b)
#define ST_SCOPE		static
#define ST_DECLARE
#define ST_DEFINE
#include "lib/sort_template.h"

static bool
has_nonzero(const float8 *v, int n)
{
	if (v == NULL)
		return false;
	for (int i = 0; i < n; i++)
		if (v[i] != 0.0)
			return true;
	return false;
}

static inline uint64
zigzag(int64 v)
{
	return ((uint64) v << 1) ^ (uint64) (v >> 63);
}

static inline int64
unzigzag(uint64 v)
{
	return (int64) (v >> 1) ^ -(int64) (v & 1);
}

static inline char *
put_varint(char *p, uint64 v)
{
	while (v >= 0x80)
	{
		*p++ = (char) (v | 0x80);
		v >>= 7;
	}
	*p++ = (char) v;
	return p;
}

static inline char *
put_float8(char *p, float8 v)
{
	v += 0.0;					/* no negative zero */
	memcpy(p, &v, sizeof(float8));
	return p + sizeof(float8);
}

/*
 * A sum: a varint whose low 3 bits are a scale s, the rest k zigzagged,
 * for the value k / 10^s when that division gives it back exactly (prices
 * and counts mostly; the smallest s is taken, so the form is canonical),
 * else the varint ACT_SUM_RAW and the float8.
 */
#define ACT_SUM_RAW		7
static const double act_pow10[ACT_SUM_RAW] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};

static inline char *
put_sum(char *p, float8 v)
{
	v += 0.0;					/* no negative zero */
	for (int s = 0; s < ACT_SUM_RAW; s++)
	{
		double		k = rint(v * act_pow10[s]);

		/* k / 10^s is exact when k is: the division rounds once */
		if (fabs(k) <= (double) (INT64CONST(1) << 53) && k / act_pow10[s] == v)
			return put_varint(p, zigzag((int64) k) << 3 | (uint64) s);
	}
	*p++ = ACT_SUM_RAW;
	return put_float8(p, v);
}

/* ---------------------------------------------------------------- names */

/*
 * Alphabets of packed names, one character per code: every code decodes,
 * so only the length can be wrong in a stored name.
 */
static const char act_alphabet5[32 + 1] = "_abcdefghijklmnopqrstuvwxyz -./:";
static const char act_alphabet6[64 + 1] =
"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz ";

/*
 * Well-known event names, stored as their index in this list
 * (ACT_NAME_KNOWN), as HPACK does with common HTTP headers: the standard
 * events of the Segment specs (e-commerce, B2B SaaS, email, mobile) in
 * snake_case and in their Title Case spelling, then the automatically
 * collected and recommended events of Google Analytics 4.  The first 32
 * take one byte, the others two.  The list is part of the stored format:
 * entries may only be appended.
 */
static const char *const act_known_names[] = {
	"page_viewed", "Page Viewed", "product_viewed", "Product Viewed",
	"product_added", "Product Added", "product_removed", "Product Removed",
	"product_list_viewed", "Product List Viewed", "products_searched",
	"Products Searched", "cart_viewed", "Cart Viewed", "checkout_started",
	"Checkout Started", "payment_info_entered", "Payment Info Entered",
	"order_completed", "Order Completed", "order_refunded", "Order Refunded",
	"coupon_applied", "Coupon Applied", "signed_in", "Signed In",
	"signed_up", "Signed Up", "signed_out", "Signed Out", "screen_viewed",
	"Screen Viewed", "product_clicked", "Product Clicked",
	"product_list_filtered", "Product List Filtered", "promotion_viewed",
	"Promotion Viewed", "promotion_clicked", "Promotion Clicked",
	"checkout_step_viewed", "Checkout Step Viewed",
	"checkout_step_completed", "Checkout Step Completed", "order_updated",
	"Order Updated", "order_cancelled", "Order Cancelled", "coupon_entered",
	"Coupon Entered", "coupon_denied", "Coupon Denied", "coupon_removed",
	"Coupon Removed", "product_added_to_wishlist",
	"Product Added to Wishlist", "product_removed_from_wishlist",
	"Product Removed from Wishlist", "wishlist_product_added_to_cart",
	"Wishlist Product Added to Cart", "product_shared", "Product Shared",
	"cart_shared", "Cart Shared", "product_reviewed", "Product Reviewed",
	"account_created", "Account Created", "account_deleted",
	"Account Deleted", "trial_started", "Trial Started", "trial_ended",
	"Trial Ended", "invite_sent", "Invite Sent", "account_added_user",
	"Account Added User", "account_removed_user", "Account Removed User",
	"email_delivered", "Email Delivered", "email_opened", "Email Opened",
	"email_link_clicked", "Email Link Clicked", "email_bounced",
	"Email Bounced", "email_marked_as_spam", "Email Marked as Spam",
	"unsubscribed", "Unsubscribed", "application_installed",
	"Application Installed", "application_opened", "Application Opened",
	"application_updated", "Application Updated", "application_backgrounded",
	"Application Backgrounded", "application_uninstalled",
	"Application Uninstalled", "page_view", "screen_view", "session_start",
	"first_visit", "user_engagement", "scroll", "click", "file_download",
	"form_start", "form_submit", "video_start", "video_progress",
	"video_complete", "view_search_results", "purchase", "refund",
	"add_to_cart", "remove_from_cart", "view_item", "view_item_list",
	"select_item", "view_cart", "begin_checkout", "add_payment_info",
	"add_shipping_info", "add_to_wishlist", "login", "sign_up", "search",
	"share", "generate_lead", "view_promotion", "select_promotion",
	"select_content"
};

#define ACT_NKNOWN		lengthof(act_known_names)
#define ACT_KNOWN_SLOTS 512		/* open-addressing table, a power of 2 */

/* code of each byte in the alphabets, -1 when it has none */
static int8 act_code5[256];
static int8 act_code6[256];
static uint8 act_known_len[ACT_NKNOWN];
static int16 act_known_slot[ACT_KNOWN_SLOTS];	/* index + 1, 0 if empty */
static bool act_codes_ready = false;

static inline uint32
known_hash(const char *name, int len)
{
	return hash_bytes((const unsigned char *) name, len) & (ACT_KNOWN_SLOTS - 1);
}

static void
init_name_codes(void)
{
	StaticAssertStmt(ACT_NKNOWN < ACT_KNOWN_SLOTS / 2, "too many well-known names");
	memset(act_code5, -1, sizeof(act_code5));
	memset(act_code6, -1, sizeof(act_code6));
	for (int i = 0; i < 32; i++)
		act_code5[(uint8) act_alphabet5[i]] = (int8) i;
	for (int i = 0; i < 64; i++)
		act_code6[(uint8) act_alphabet6[i]] = (int8) i;
	memset(act_known_slot, 0, sizeof(act_known_slot));
	for (int i = 0; i < (int) ACT_NKNOWN; i++)
	{
		int			len = (int) strlen(act_known_names[i]);
		uint32		h = known_hash(act_known_names[i], len);

		Assert(len <= 32);
		act_known_len[i] = (uint8) len;
		while (act_known_slot[h] != 0)
			h = (h + 1) & (ACT_KNOWN_SLOTS - 1);
		act_known_slot[h] = (int16) (i + 1);
	}
	act_codes_ready = true;
}

/* Index of a well-known name, or -1. */
static int
known_index(const char *name, int len)
{
	uint32		h;

	if (unlikely(!act_codes_ready))
		init_name_codes();
	if (len > 32)
		return -1;
	for (h = known_hash(name, len); act_known_slot[h] != 0;
		 h = (h + 1) & (ACT_KNOWN_SLOTS - 1))
	{
		int			i = act_known_slot[h] - 1;

		if (act_known_len[i] == len && memcmp(act_known_names[i], name, len) == 0)
			return i;
	}
	return -1;
}

/* How a name is stored: the smallest alphabet holding all its bytes. */
static int
name_code(const char *name, int len)
{
	bool		five = true,
				six = true;

	if (unlikely(!act_codes_ready))
		init_name_codes();
	for (int i = 0; i < len && (five || six); i++)
	{
		uint8		c = (uint8) name[i];

		five &= act_code5[c] >= 0;
		six &= act_code6[c] >= 0;
	}
	return five ? ACT_NAME_5BIT : six ? ACT_NAME_6BIT : ACT_NAME_RAW;
}

static inline int
name_bits(int code)
{
	return code == ACT_NAME_5BIT ? 5 : code == ACT_NAME_6BIT ? 6 : 8;
}

/* Bytes a name of len characters takes when stored with code. */
static inline uint64
name_stored_len(uint64 len, int code)
{
	if (code == ACT_NAME_KNOWN)
		return 0;
	return (len * name_bits(code) + 7) / 8;
}

/*
 * The varint in front of a stored name: its index with ACT_NAME_KNOWN,
 * else its length and code.  Equal names, and only they, have equal
 * headers and stored bytes.
 */
static uint64
name_head(const char *name, int len, int *code)
{
	int			k = known_index(name, len);

	if (k >= 0)
	{
		*code = ACT_NAME_KNOWN;
		return (uint64) k << 2 | ACT_NAME_KNOWN;
	}
	*code = name_code(name, len);
	return (uint64) len << 2 | (uint64) *code;
}

/* The stored bytes of a name (no length): as is, or packed. */
static char *
put_name_bytes(char *p, const char *name, int len, int code)
{
	const int8 *map = code == ACT_NAME_5BIT ? act_code5 : act_code6;
	int			bits = name_bits(code);
	uint32		acc = 0;
	int			nacc = 0;

	if (code == ACT_NAME_KNOWN)
		return p;
	if (code == ACT_NAME_RAW)
	{
		memcpy(p, name, len);
		return p + len;
	}
	for (int i = 0; i < len; i++)
	{
		acc |= (uint32) map[(uint8) name[i]] << nacc;
		nacc += bits;
		while (nacc >= 8)
		{
			*p++ = (char) (acc & 0xff);
			acc >>= 8;
			nacc -= 8;
		}
	}
	if (nacc > 0)
		*p++ = (char) acc;
	return p;
}

/* Characters of a packed name, read from its stored (bounds-checked) bytes. */
static char *
unpack_name(const uint8 *data, int len, int code)
{
	const char *alphabet = code == ACT_NAME_5BIT ? act_alphabet5 : act_alphabet6;
	int			bits = name_bits(code);
	uint32		mask = (1U << bits) - 1;
	uint32		acc = 0;
	int			nacc = 0;
	char	   *out = palloc(len + 1);

	for (int i = 0; i < len; i++)
	{
		if (nacc < bits)
		{
			acc |= (uint32) *data++ << nacc;
			nacc += 8;
		}
		out[i] = alphabet[acc & mask];
		acc >>= bits;
		nacc -= bits;
	}
	out[len] = '\0';
	return out;
}

/* Most bytes one event can take: name, varints, times, sum, buckets. */
static uint64
event_max_bytes(const ActivityBuildEvent *e)
{
	return (uint64) e->name_len + 8 * 10 + 1 + 2 * ACT_TIME_BYTES + 9 +
		(uint64) e->ndays * (10 + 5 + 9);
}

/*
 * Whether an event's only day bucket follows from its totals: never
 * trimmed, one day, and the bucket's sum equal to the event's (rounding
 * in another order can make them differ).
 */
static bool
bucket_implied(const ActivityBuildEvent *e)
{
	return e->trim_day == ACTIVITY_NO_TRIM && e->ndays == 1 &&
		e->days[0] == activity_day_of(e->first_at) &&
		e->days[0] == activity_day_of(e->last_at) &&
		e->counts[0] == e->count &&
		(e->sums ? e->sums[0] : 0.0) == e->sum;
}

/*
 * A time stamp as a day offset (varint of all but its low 3 bits) and a
 * "time" (microseconds of the day, the offset's low 3 bits above them);
 * the time alone when the offset is left out.
 */
static inline char *
put_time(char *p, TimestampTz ts, int64 from_day, bool with_offset)
{
	int64		day = activity_day_of(ts);
	uint64		offset = (uint64) day - (uint64) from_day;
	uint64		t = (uint64) (ts - day * USECS_PER_DAY);

	if (with_offset)
	{
		p = put_varint(p, offset >> 3);
		t |= (offset & 7) << ACT_TIME_BITS;
	}
	for (int i = 0; i < ACT_TIME_BYTES; i++)
	{
		*p++ = (char) (t & 0xff);
		t >>= 8;
	}
	return p;
}

/* An event from its flags byte on, its buckets after their length. */
static char *
put_event_body(char *p, const ActivityBuildEvent *e, int32 base_day)
{
	uint8		flags = 0;
	bool		day_sums = has_nonzero(e->sums, e->ndays);
	bool		trimmed = e->trim_day != ACTIVITY_NO_TRIM;
	int			ndays = bucket_implied(e) ? 0 : e->ndays;
	int64		first_day = activity_day_of(e->first_at);
	int64		prev;
	char	   *b;
	char	   *bend;

	if (e->sum != 0.0)
		flags |= ACT_F_SUM;
	if (trimmed)
		flags |= ACT_F_TRIMMED;
	if (day_sums)
		flags |= ACT_F_DAY_SUMS;
	if (e->count == 1 && e->first_at == e->last_at)
		flags |= ACT_F_ONE;
	*p++ = (char) (flags | Min(ndays, ACT_NDAYS_MORE) << ACT_NDAYS_SHIFT);
	p = put_time(p, e->first_at, base_day, true);
	if (!(flags & ACT_F_ONE))
	{
		p = put_varint(p, (uint64) e->count);
		/* never trimmed and no buckets stored: all on the first day */
		p = put_time(p, e->last_at, first_day, trimmed || ndays > 0);
	}
	if (trimmed)
		p = put_varint(p, (uint64) e->trim_day - (uint64) first_day - 1);
	if (flags & ACT_F_SUM)
		p = put_sum(p, e->sum);
	if (ndays >= ACT_NDAYS_MORE)
		p = put_varint(p, (uint64) (ndays - ACT_NDAYS_MORE));
	if (ndays == 0)
		return p;

	/*
	 * The buckets' length goes in front of them: write them past room for
	 * the longest length varint, then move them down.
	 */
	b = bend = p + 10;
	prev = first_day;
	for (int j = 0; j < ndays; j++)
	{
		bool		last = j == ndays - 1;

		/* days ascend from the first day (validated) */
		if (trimmed || (j > 0 && !last))
			bend = put_varint(bend, (uint64) ((int64) e->days[j] - prev));
		prev = e->days[j];
		if (trimmed || !last)
			bend = put_varint(bend, (uint64) (uint32) e->counts[j]);
		if (day_sums)
			bend = put_sum(bend, e->sums[j]);
	}
	p = put_varint(p, bend - b);
	memmove(p, b, bend - b);
	return p + (bend - b);
}

/*
 * Pack events into a new value, sorting them by name first.  Trusts the
 * per-event data; callers validate the result when it came from outside.
 */
struct varlena *
activity_pack(ActivityBuildEvent *ev, int nevents)
{
	if (nevents > 1)
		sort_build_events(ev, nevents);
	return activity_pack_sorted(ev, nevents);
}

/* Pack events already sorted by name (bytewise), as merge and trim have them. */
struct varlena *
activity_pack_sorted(const ActivityBuildEvent *ev, int nevents)
{
	uint64		bound = VARHDRSZ + 1 + 2 * 10;
	int32		base_day = PG_INT32_MAX;
	char	   *start;
	char	   *p;

	for (int i = 0; i < nevents; i++)
	{
		bound += event_max_bytes(&ev[i]);
		base_day = Min(base_day, activity_day_of(ev[i].first_at));
	}
	if (bound > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cdp.activity value would be too large (up to %llu bytes)",
						(unsigned long long) bound),
				 errhint("Fold old day buckets with cdp.activity_trim.")));

	start = palloc(bound);
	p = start + VARHDRSZ;
	*p++ = ACTIVITY_VERSION;
	p = put_varint(p, (uint64) nevents);
	if (nevents > 0)
		p = put_varint(p, zigzag(base_day));
	for (int i = 0; i < nevents; i++)
	{
		const ActivityBuildEvent *e = &ev[i];
		int			code;

		p = put_varint(p, name_head(e->name, e->name_len, &code));
		p = put_name_bytes(p, e->name, e->name_len, code);
		p = put_event_body(p, e, base_day);
	}
	SET_VARSIZE(start, p - start);
	return (struct varlena *) start;
}

/* ---------------------------------------------------------------- reading */

static void pg_attribute_noreturn()
truncated(int sqlstate)
{
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("invalid cdp.activity value"),
			 errdetail("The value ends in the middle of an event or holds a malformed number."),
			 errhint("The value was altered, truncated or not made by cdp; rebuild it with cdp.activity_agg.")));
}

static inline uint64
get_varint(const uint8 **pp, const uint8 *end, int sqlstate)
{
	const uint8 *p = *pp;
	uint64		v = 0;
	int			shift = 0;

	/* most numbers take one byte */
	if (likely(p < end && *p < 0x80))
	{
		*pp = p + 1;
		return *p;
	}
	for (;;)
	{
		uint8		b;

		if (p >= end || shift > 63)
			truncated(sqlstate);
		b = *p++;
		if (shift == 63 && b > 1)
			truncated(sqlstate);
		v |= (uint64) (b & 0x7f) << shift;
		if (b < 0x80)
			break;
		shift += 7;
	}
	*pp = p;
	return v;
}

/* A varint, clamped to max (bad values then fail later checks). */
static inline uint64
get_varint_max(const uint8 **pp, const uint8 *end, int sqlstate, uint64 max)
{
	uint64		v = get_varint(pp, end, sqlstate);

	return Min(v, max);
}

static inline float8
get_float8(const uint8 **pp, const uint8 *end, int sqlstate)
{
	float8		v;

	if (end - *pp < (ptrdiff_t) sizeof(float8))
		truncated(sqlstate);
	memcpy(&v, *pp, sizeof(float8));
	*pp += sizeof(float8);
	return v;
}

/* A "time" (see activity.h): microseconds of the day, low offset bits. */
static inline uint64
get_time(const uint8 **pp, const uint8 *end, int sqlstate)
{
	const uint8 *p = *pp;
	uint64		t = 0;

	if (end - p < ACT_TIME_BYTES)
		truncated(sqlstate);
	for (int i = ACT_TIME_BYTES - 1; i >= 0; i--)
		t = t << 8 | p[i];
	*pp = p + ACT_TIME_BYTES;
	return t;
}

/*
 * A time stamp stored as a day offset from from_day and a time.  Days are
 * clamped to just past the accepted range, so altered bytes give time
 * stamps validation rejects, never an overflow.
 */
static inline void
get_day_time(const uint8 **pp, const uint8 *end, int sqlstate, bool with_offset,
			 int32 from_day, int32 *day, TimestampTz *ts)
{
	uint64		hi = with_offset ? get_varint_max(pp, end, sqlstate, PG_INT32_MAX) : 0;
	uint64		t = get_time(pp, end, sqlstate);
	int64		d;

	if (with_offset)
		d = (int64) from_day + (int64) (hi << 3 | t >> ACT_TIME_BITS);
	else
		d = from_day;
	d = Min(d, (int64) ACT_MAX_DAY + 1);
	*day = (int32) d;
	*ts = (TimestampTz) d * USECS_PER_DAY +
		(TimestampTz) (t & ((UINT64CONST(1) << ACT_TIME_BITS) - 1));
}

static inline float8
get_sum(const uint8 **pp, const uint8 *end, int sqlstate)
{
	uint64		v = get_varint(pp, end, sqlstate);
	int			s = (int) (v & 7);

	if (s == ACT_SUM_RAW)
		return get_float8(pp, end, sqlstate);
	return (double) unzigzag(v >> 3) / act_pow10[s];
}

void
activity_reader_init(ActivityReader *r, const struct varlena *a, int sqlstate)
{
	const uint8 *p = (const uint8 *) VARDATA_ANY(a);
	const uint8 *end = p + VARSIZE_ANY_EXHDR(a);
	uint64		n;

	r->sqlstate = sqlstate;
	if (unlikely(!act_codes_ready))
		init_name_codes();
	if (p >= end)
		truncated(sqlstate);
	if (*p != ACTIVITY_VERSION)
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg("invalid cdp.activity value"),
				 errdetail("Format version %d is not supported (expected %d).",
						   *p, ACTIVITY_VERSION),
				 errhint("Rebuild the summary with cdp.activity_agg.")));
	p++;
	n = get_varint(&p, end, sqlstate);
	r->base_day = 0;
	if (n > 0)
	{
		int64		base = unzigzag(get_varint(&p, end, sqlstate));

		r->base_day = (int32) Max(Min(base, ACT_MAX_DAY), ACT_MIN_DAY);
	}
	/* every event takes at least 8 bytes */
	if (n > (uint64) (end - p) / 8)
		truncated(sqlstate);
	r->p = p;
	r->end = end;
	r->nevents = (int32) n;
	r->next = 0;
}

/* Name bounds of the next event; false after the last. */
static inline bool
next_event_name(ActivityReader *r, ActivityEventRef *e)
{
	const uint8 *p = r->p;
	uint64		len;
	uint64		stored;

	if (r->next >= r->nevents)
		return false;
	len = get_varint(&p, r->end, r->sqlstate);
	e->name_head = len;
	e->name_code = (uint8) (len & 3);
	len >>= 2;
	if (e->name_code == ACT_NAME_KNOWN)
	{
		if (len >= ACT_NKNOWN)
			truncated(r->sqlstate);
		e->name_data = (const uint8 *) act_known_names[len];
		e->name_len = act_known_len[len];
		e->name_text = act_known_names[len];
		r->p = p;
		r->next++;
		return true;
	}
	/* a name takes at least 5 bits a character */
	if (len > (uint64) (r->end - p) * 2)
		truncated(r->sqlstate);
	stored = name_stored_len(len, e->name_code);
	if (stored > (uint64) (r->end - p))
		truncated(r->sqlstate);
	e->name_data = p;
	e->name_len = (int) len;
	e->name_text = NULL;
	r->p = p + stored;
	r->next++;
	return true;
}

/*
 * Decode an event from its flags byte up to its buckets, and move the
 * reader past the event.
 */
static inline void
event_body(ActivityReader *r, ActivityEventRef *e)
{
	const uint8 *p = r->p;
	const uint8 *end = r->end;
	int			sqlstate = r->sqlstate;
	uint64		v;
	int			nd;
	bool		trimmed;

	if (p >= end)
		truncated(sqlstate);
	e->flags = *p & ACT_F_ALL;
	nd = *p++ >> ACT_NDAYS_SHIFT;
	trimmed = (e->flags & ACT_F_TRIMMED) != 0;
	get_day_time(&p, end, sqlstate, true, r->base_day, &e->first_day, &e->first_at);
	if (e->flags & ACT_F_ONE)
	{
		e->count = 1;
		e->last_day = e->first_day;
		e->last_at = e->first_at;
	}
	else
	{
		v = get_varint(&p, end, sqlstate);
		e->count = (int64) Min(v, (uint64) PG_INT64_MAX);
		get_day_time(&p, end, sqlstate, trimmed || nd > 0, e->first_day,
					 &e->last_day, &e->last_at);
	}
	e->trim_day = ACTIVITY_NO_TRIM;
	if (trimmed)
	{
		v = get_varint_max(&p, end, sqlstate, PG_INT32_MAX);
		e->trim_day = (int32) Min((int64) e->first_day + 1 + (int64) v,
								  (int64) ACT_MAX_DAY + 2);
	}
	e->sum = (e->flags & ACT_F_SUM) ? get_sum(&p, end, sqlstate) : 0.0;
	v = nd;
	if (nd == ACT_NDAYS_MORE)
	{
		v = get_varint(&p, end, sqlstate);
		v = Min(v, (uint64) PG_INT32_MAX - ACT_NDAYS_MORE) + ACT_NDAYS_MORE;
	}
	e->ndays = (int32) v;
	/* an event never trimmed has buckets: none stored means one implied */
	e->bucket_implied = v == 0 && !trimmed;
	if (e->bucket_implied)
		e->ndays = 1;
	if (v > 0)
	{
		uint64		len = get_varint(&p, end, sqlstate);

		/* a bucket takes at least 1 byte, but for the last one */
		if (len > (uint64) (end - p) || v > len + 1)
			truncated(sqlstate);
		e->buckets = p;
		e->end = p + len;
	}
	else
		e->buckets = e->end = p;
	r->p = e->end;
}

/* Step over a varint. */
static inline const uint8 *
skip_varint(const uint8 *p, const uint8 *end, int sqlstate)
{
	while (p < end && (*p & 0x80))
		p++;
	if (p >= end)
		truncated(sqlstate);
	return p + 1;
}

/* Step over bytes. */
static inline const uint8 *
skip_bytes(const uint8 *p, const uint8 *end, int sqlstate, uint64 n)
{
	if ((uint64) (end - p) < n)
		truncated(sqlstate);
	return p + n;
}

/* Step over a sum (a varint, and the float8 after ACT_SUM_RAW). */
static inline const uint8 *
skip_sum(const uint8 *p, const uint8 *end, int sqlstate)
{
	if (p < end && *p == ACT_SUM_RAW)
		return skip_bytes(p + 1, end, sqlstate, sizeof(float8));
	return skip_varint(p, end, sqlstate);
}

/*
 * Move the reader past an event whose name did not match: the lengths of
 * event_body's fields, without their values.
 */
static inline void
skip_event_body(ActivityReader *r)
{
	const uint8 *p = r->p;
	const uint8 *end = r->end;
	int			sqlstate = r->sqlstate;
	uint8		flags;
	int			nd;

	if (p >= end)
		truncated(sqlstate);
	flags = *p & ACT_F_ALL;
	nd = *p++ >> ACT_NDAYS_SHIFT;
	p = skip_varint(p, end, sqlstate);
	p = skip_bytes(p, end, sqlstate, ACT_TIME_BYTES);
	if (!(flags & ACT_F_ONE))
	{
		p = skip_varint(p, end, sqlstate);
		if ((flags & ACT_F_TRIMMED) || nd > 0)
			p = skip_varint(p, end, sqlstate);
		p = skip_bytes(p, end, sqlstate, ACT_TIME_BYTES);
	}
	if (flags & ACT_F_TRIMMED)
		p = skip_varint(p, end, sqlstate);
	if (flags & ACT_F_SUM)
		p = skip_sum(p, end, sqlstate);
	if (nd == ACT_NDAYS_MORE)
		p = skip_varint(p, end, sqlstate);
	if (nd > 0)
	{
		uint64		len = get_varint(&p, end, sqlstate);

		p = skip_bytes(p, end, sqlstate, len);
	}
	r->p = p;
}

/* An event's name (not terminated), unpacked on first use. */
const char *
activity_event_name(ActivityEventRef *e)
{
	if (e->name_text == NULL)
		e->name_text = e->name_code == ACT_NAME_RAW ? (const char *) e->name_data :
			unpack_name(e->name_data, e->name_len, e->name_code);
	return e->name_text;
}

/* The next event, its buckets still encoded; false after the last. */
bool
activity_next_event(ActivityReader *r, ActivityEventRef *e)
{
	if (!next_event_name(r, e))
		return false;
	event_body(r, e);
	return true;
}

/* Make k the packed form of name, unless it is already. */
void
activity_key_set(ActivityKey *k, const char *name, int len, MemoryContext cxt)
{
	if (k->name != NULL && k->len == len && memcmp(k->name, name, len) == 0)
		return;
	if (k->name == NULL || len > k->cap)
	{
		if (k->name != NULL)
		{
			pfree(k->name);
			pfree(k->packed);
		}
		k->cap = Max(len, 64);
		k->name = MemoryContextAlloc(cxt, k->cap);
		k->packed = MemoryContextAlloc(cxt, k->cap);
	}
	memcpy(k->name, name, len);
	k->len = len;
	k->head = name_head(name, len, &k->code);
	k->stored = (int) name_stored_len(len, k->code);
	put_name_bytes(k->packed, name, len, k->code);
}

/*
 * Find an event by name, stepping over the others field by field; names
 * are compared in their packed form, which is unique.
 */
bool
activity_find_key(ActivityReader *r, const ActivityKey *k, ActivityEventRef *e)
{
	while (next_event_name(r, e))
	{
		/* a well-known name stores nothing: its header says it all */
		if (e->name_head == k->head &&
			(k->stored == 0 || memcmp(e->name_data, k->packed, k->stored) == 0))
		{
			event_body(r, e);
			return true;
		}
		skip_event_body(r);
	}
	return false;
}

/*
 * Walking an event's stored buckets (see activity.h): never trimmed, the
 * first bucket is on the first day and the last (of two or more) on the
 * last day, and the last one's count is what the others leave.
 */
typedef struct BucketCursor
{
	const uint8 *p;
	const uint8 *end;
	int			sqlstate;
	int32		j;
	int32		n;
	bool		trimmed;
	bool		day_sums;
	int64		day;
	int64		last_day;
	int64		left;			/* count not yet in a bucket */
} BucketCursor;

static inline void
bucket_start(BucketCursor *c, const ActivityEventRef *e, int sqlstate)
{
	c->p = e->buckets;
	c->end = e->end;
	c->sqlstate = sqlstate;
	c->j = 0;
	c->n = e->ndays;
	c->trimmed = (e->flags & ACT_F_TRIMMED) != 0;
	c->day_sums = (e->flags & ACT_F_DAY_SUMS) != 0;
	c->day = e->first_day;
	c->last_day = e->last_day;
	c->left = e->count;
}

/* Day of the next bucket (call once per bucket, before bucket_rest). */
static inline int64
bucket_day(BucketCursor *c)
{
	if (c->trimmed || (c->j > 0 && c->j < c->n - 1))
		c->day += (int64) get_varint_max(&c->p, c->end, c->sqlstate, PG_INT32_MAX);
	else if (c->j > 0)
		c->day = c->last_day;
	return c->day;
}

/* Count and sum of the bucket whose day bucket_day gave. */
static inline void
bucket_rest(BucketCursor *c, int64 *count, float8 *sum)
{
	int64		n;

	if (c->trimmed || c->j < c->n - 1)
	{
		n = (int64) get_varint_max(&c->p, c->end, c->sqlstate, PG_INT32_MAX);
		c->left -= n;
	}
	else
		n = c->left;
	*sum = c->day_sums ? get_sum(&c->p, c->end, c->sqlstate) : 0.0;
	*count = n;
	c->j++;
}

/* Every bucket of an event, into fresh arrays (CurrentMemoryContext). */
void
activity_event_unpack(ActivityEventRef *e, int sqlstate,
					  ActivityBuildEvent *out)
{
	bool		day_sums = (e->flags & ACT_F_DAY_SUMS) != 0;
	BucketCursor c;

	out->name = activity_event_name(e);
	out->name_len = e->name_len;
	out->count = e->count;
	out->sum = e->sum;
	out->first_at = e->first_at;
	out->last_at = e->last_at;
	out->trim_day = e->trim_day;
	out->ndays = e->ndays;
	out->days = palloc(Max(e->ndays, 1) * sizeof(int32));
	out->counts = palloc(Max(e->ndays, 1) * sizeof(int32));
	out->sums = day_sums ? palloc(Max(e->ndays, 1) * sizeof(float8)) : NULL;
	if (e->bucket_implied)
	{
		out->days[0] = e->first_day;
		out->counts[0] = (int32) Min(e->count, PG_INT32_MAX);
		if (day_sums)
			out->sums[0] = e->sum;
		return;
	}
	bucket_start(&c, e, sqlstate);
	for (int j = 0; j < e->ndays; j++)
	{
		int64		day = bucket_day(&c);
		int64		n;
		float8		s;

		bucket_rest(&c, &n, &s);
		out->days[j] = (int32) Max(Min(day, PG_INT32_MAX), PG_INT32_MIN);
		out->counts[j] = (int32) Max(Min(n, PG_INT32_MAX), 0);
		if (day_sums)
			out->sums[j] = s;
	}
	if (c.p != e->end)
		truncated(sqlstate);
}

/* ---------------------------------------------------------------- validation */

#define CORRUPT(...) \
	ereport(ERROR, \
			(errcode(sqlstate), \
			 errmsg("invalid cdp.activity value"), \
			 errdetail(__VA_ARGS__), \
			 sqlstate == ERRCODE_INVALID_TEXT_REPRESENTATION ? \
			 errhint("An event's day counts must add up to its count (unless it has trimmed_before), and its days must lie between its first and last time stamps.") : \
			 errhint("The value was altered, truncated or not made by cdp; rebuild it with cdp.activity_agg.")))

/*
 * The invariants of one event, checked on what input and receive are about
 * to pack (the format leaves out what follows from them: the first and
 * last days of an event's buckets, the last bucket's count) and again on
 * what validation decodes.
 */
static void
check_event(const ActivityBuildEvent *e, int sqlstate)
{
	int32		min_day = activity_min_day(),
				max_day = activity_max_day();
	TimestampTz lo_ts = (TimestampTz) min_day * USECS_PER_DAY,
				hi_ts = ((TimestampTz) max_day + 1) * USECS_PER_DAY;
	int64		bucket_total = 0;
	int32		first_day,
				last_day;

	if (e->first_at > e->last_at)
		CORRUPT("Event \"%.*s\" has first and last time stamps out of order.",
				e->name_len, e->name);
	if (e->ndays == 0 && e->trim_day == ACTIVITY_NO_TRIM)
		CORRUPT("Event \"%.*s\" has day buckets that do not match its first and last time stamps.",
				e->name_len, e->name);
	if (e->first_at < lo_ts || e->last_at >= hi_ts)
		CORRUPT("Event \"%.*s\" has time stamps outside years 1-9999.",
				e->name_len, e->name);
	if (e->trim_day != ACTIVITY_NO_TRIM &&
		(e->trim_day < min_day || e->trim_day > max_day + 1))
		CORRUPT("Event \"%.*s\" has a trim day outside years 1-9999.",
				e->name_len, e->name);
	if (e->count < 1)
		CORRUPT("Event \"%.*s\" has count " INT64_FORMAT ".",
				e->name_len, e->name, e->count);
	if (!isfinite(e->sum))
		CORRUPT("Event \"%.*s\" has a sum that is not finite.",
				e->name_len, e->name);
	first_day = activity_day_of(e->first_at);
	last_day = activity_day_of(e->last_at);
	for (int j = 0; j < e->ndays; j++)
	{
		int32		d = e->days[j];

		if (d < first_day || d > last_day || (j > 0 && d <= e->days[j - 1]))
			CORRUPT("Event \"%.*s\" has day buckets out of order or outside its first and last time stamps.",
					e->name_len, e->name);
		if (e->counts[j] < 1)
			CORRUPT("Event \"%.*s\" has a day bucket with count %d.",
					e->name_len, e->name, e->counts[j]);
		if (e->sums && !isfinite(e->sums[j]))
			CORRUPT("Event \"%.*s\" has a day sum that is not finite.",
					e->name_len, e->name);
		bucket_total += e->counts[j];
	}
	if (bucket_total > e->count)
		CORRUPT("Event \"%.*s\" has more events in its day buckets than in total.",
				e->name_len, e->name);
	if (bucket_total == e->count)
	{
		/* nothing folded: the buckets span exactly first to last */
		if (e->trim_day != ACTIVITY_NO_TRIM || e->ndays == 0 ||
			e->days[0] != first_day || e->days[e->ndays - 1] != last_day)
			CORRUPT("Event \"%.*s\" has day buckets that do not match its first and last time stamps.",
					e->name_len, e->name);
	}
	else
	{
		/* folded events lie before trim_day */
		if (e->trim_day == ACTIVITY_NO_TRIM || first_day >= e->trim_day ||
			(last_day >= e->trim_day &&
			 (e->ndays == 0 || e->days[e->ndays - 1] != last_day)))
			CORRUPT("Event \"%.*s\" has folded events that do not lie before its trim day.",
					e->name_len, e->name);
	}
}

/* Every event of what input or receive is about to pack. */
static void
check_events(const ActivityBuildEvent *ev, int n, int sqlstate)
{
	for (int i = 0; i < n; i++)
		check_event(&ev[i], sqlstate);
}

/*
 * Full check of a value that came from outside (text input, receive):
 * every invariant the accessors rely on, and that the bytes are exactly
 * the canonical encoding of what they hold.
 */
void
activity_validate(const struct varlena *a, int sqlstate)
{
	ActivityReader r;
	ActivityEventRef ref;
	ActivityBuildEvent *ev;
	ActivityBuildEvent prev = {0};
	struct varlena *again;
	int			n = 0;

	activity_reader_init(&r, a, sqlstate);
	ev = palloc(Max(r.nevents, 1) * sizeof(ActivityBuildEvent));
	while (activity_next_event(&r, &ref))
	{
		ActivityBuildEvent *e = &ev[n];

		/*
		 * The reader's decoding, then the checks; what its clamping lets
		 * through differs from the re-encoding compared at the end.
		 */
		activity_event_unpack(&ref, sqlstate, e);
		if (n > 0 && activity_build_event_cmp(&prev, e) >= 0)
			CORRUPT("Event names are not unique and sorted at event %d.", n);
		prev = *e;
		check_event(e, sqlstate);
		n++;
	}
	if (r.p != r.end)
		CORRUPT("%d bytes follow the last event.", (int) (r.end - r.p));

	/* one encoding per summary: re-encode and compare */
	again = activity_pack_sorted(ev, n);
	if (VARSIZE(again) - VARHDRSZ != VARSIZE_ANY_EXHDR(a) ||
		memcmp(VARDATA(again), VARDATA_ANY(a), VARSIZE_ANY_EXHDR(a)) != 0)
		CORRUPT("The value is not in canonical form.");
	pfree(again);
}

/* ---------------------------------------------------------------- text I/O */

/* Integer JSON number as int64, or an input error. */
static int64
json_int(const char *input, const JsonbValue *v, const char *what, int64 min, int64 max)
{
	char	   *s,
			   *end;
	long long	r;

	if (v->type != jbvNumeric)
		bad_text(input, psprintf("%s must be a number.", what));
	s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	errno = 0;
	r = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || r < min || r > max)
		bad_text(input, psprintf("%s must be an integer between " INT64_FORMAT " and " INT64_FORMAT ", not %s.",
								 what, min, max, s));
	return (int64) r;
}

static float8
json_float(const char *input, const JsonbValue *v, const char *what)
{
	char	   *s,
			   *end;
	double		r;

	if (v->type != jbvNumeric)
		bad_text(input, psprintf("%s must be a number.", what));
	s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	errno = 0;
	r = strtod(s, &end);
	if (*end != '\0' || !isfinite(r))
		bad_text(input, psprintf("%s is out of range for float8.", what));
	return r;
}

static JsonbValue *
json_key(JsonbContainer *c, const char *key, JsonbValue *res)
{
	return getKeyJsonValueFromContainer(c, key, strlen(key), res);
}

static void
parse_event_object(const char *input, JsonbValue *val, ActivityBuildEvent *e)
{
	JsonbContainer *c;
	JsonbValue	v;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	int			nkeys = 5;
	int			cap = 8;
	char	   *what = psprintf("Event \"%.*s\"", e->name_len, e->name);

	if (val->type != jbvBinary || !JsonContainerIsObject(val->val.binary.data))
		bad_text(input, psprintf("%s must map to an object.", what));
	c = val->val.binary.data;

	if (!json_key(c, "count", &v))
		bad_text(input, psprintf("%s has no \"count\".", what));
	e->count = json_int(input, &v, "\"count\"", 1, PG_INT64_MAX);
	if (!json_key(c, "sum", &v))
		bad_text(input, psprintf("%s has no \"sum\".", what));
	e->sum = json_float(input, &v, "\"sum\"");
	if (!json_key(c, "first", &v) || v.type != jbvString)
		bad_text(input, psprintf("%s has no \"first\" time stamp string.", what));
	e->first_at = parse_timestamp_string(input, v.val.string.val, v.val.string.len);
	if (!json_key(c, "last", &v) || v.type != jbvString)
		bad_text(input, psprintf("%s has no \"last\" time stamp string.", what));
	e->last_at = parse_timestamp_string(input, v.val.string.val, v.val.string.len);
	e->trim_day = ACTIVITY_NO_TRIM;
	if (json_key(c, "trimmed_before", &v))
	{
		if (v.type != jbvString)
			bad_text(input, psprintf("%s has a \"trimmed_before\" that is not a day string.", what));
		e->trim_day = parse_day_string(input, v.val.string.val, v.val.string.len);
		nkeys++;
	}
	if (!json_key(c, "days", &v) || v.type != jbvBinary ||
		!JsonContainerIsObject(v.val.binary.data))
		bad_text(input, psprintf("%s has no \"days\" object.", what));
	if (JsonContainerSize(c) != nkeys)
		bad_text(input, psprintf("%s has keys other than count, sum, first, last, trimmed_before and days.", what));

	e->ndays = 0;
	e->days = palloc(cap * sizeof(int32));
	e->counts = palloc(cap * sizeof(int32));
	e->sums = palloc(cap * sizeof(float8));
	it = JsonbIteratorInit(v.val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbValue *cv,
				   *sv;

		if (tok != WJB_KEY)
			continue;
		if (e->ndays == cap)
		{
			cap *= 2;
			e->days = repalloc(e->days, cap * sizeof(int32));
			e->counts = repalloc(e->counts, cap * sizeof(int32));
			e->sums = repalloc(e->sums, cap * sizeof(float8));
		}
		/* jsonb keeps keys of equal length in byte order: days ascend */
		e->days[e->ndays] = parse_day_string(input, v.val.string.val, v.val.string.len);
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		if (v.type != jbvBinary || !JsonContainerIsArray(v.val.binary.data) ||
			JsonContainerSize(v.val.binary.data) != 2)
			bad_text(input, psprintf("%s: a day must map to [count, sum].", what));
		cv = getIthJsonbValueFromContainer(v.val.binary.data, 0);
		sv = getIthJsonbValueFromContainer(v.val.binary.data, 1);
		e->counts[e->ndays] = (int32) json_int(input, cv, "A day's count", 1, PG_INT32_MAX);
		e->sums[e->ndays] = json_float(input, sv, "A day's sum");
		e->ndays++;
	}
}

/* cdp.activity text input: the JSON form activity_out writes */
PG_FUNCTION_INFO_V1(cdp_activity_in);
Datum
cdp_activity_in(PG_FUNCTION_ARGS)
{
	char	   *input = PG_GETARG_CSTRING(0);
	Jsonb	   *jb;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	v;
	ActivityBuildEvent *ev;
	int			n = 0;
	struct varlena *a;

	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(input)));
	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_IS_SCALAR(jb))
		bad_text(input, "The value must be a JSON object keyed by event name.");
	ev = palloc0(Max(1, JB_ROOT_COUNT(jb)) * sizeof(ActivityBuildEvent));

	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		ev[n].name = v.val.string.val;
		ev[n].name_len = v.val.string.len;
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		parse_event_object(input, &v, &ev[n]);
		n++;
	}
	check_events(ev, n, ERRCODE_INVALID_TEXT_REPRESENTATION);
	a = activity_pack(ev, n);
	activity_validate(a, ERRCODE_INVALID_TEXT_REPRESENTATION);
	PG_RETURN_ACTIVITY_P(a);
}

/* cdp.activity text output: JSON, UTC time stamps, exact float8 sums */
PG_FUNCTION_INFO_V1(cdp_activity_out);
Datum
cdp_activity_out(PG_FUNCTION_ARGS)
{
	struct varlena *a = PG_GETARG_ACTIVITY_P(0);
	StringInfoData buf;
	ActivityReader r;
	ActivityEventRef ref;

	activity_reader_init(&r, a, ERRCODE_DATA_CORRUPTED);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	while (activity_next_event(&r, &ref))
	{
		ActivityBuildEvent e;

		activity_event_unpack(&ref, ERRCODE_DATA_CORRUPTED, &e);
		if (r.next > 1)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, pnstrdup(e.name, e.name_len));
		appendStringInfo(&buf, ": {\"count\": " INT64_FORMAT ", \"sum\": ", e.count);
		append_float(&buf, e.sum);
		appendStringInfoString(&buf, ", \"first\": ");
		append_timestamp(&buf, e.first_at);
		appendStringInfoString(&buf, ", \"last\": ");
		append_timestamp(&buf, e.last_at);
		if (e.trim_day != ACTIVITY_NO_TRIM)
		{
			appendStringInfoString(&buf, ", \"trimmed_before\": ");
			append_day(&buf, e.trim_day);
		}
		appendStringInfoString(&buf, ", \"days\": {");
		for (int j = 0; j < e.ndays; j++)
		{
			if (j > 0)
				appendStringInfoString(&buf, ", ");
			append_day(&buf, e.days[j]);
			appendStringInfo(&buf, ": [%d, ", e.counts[j]);
			append_float(&buf, e.sums ? e.sums[j] : 0.0);
			appendStringInfoChar(&buf, ']');
		}
		appendStringInfoString(&buf, "}}");
	}
	appendStringInfoChar(&buf, '}');
	PG_RETURN_CSTRING(buf.data);
}

/* ---------------------------------------------------------------- binary I/O */

/*
 * Binary form (network byte order): version byte, int32 event count; per
 * event: int32 name length and name, int64 count, float8 sum, int64 first
 * and last, int32 trim day, int32 day count, byte "has sums"; per day:
 * int32 day, int32 count and, with sums, float8 sum.
 */

/* cdp.activity binary output */
PG_FUNCTION_INFO_V1(cdp_activity_send);
Datum
cdp_activity_send(PG_FUNCTION_ARGS)
{
	struct varlena *a = PG_GETARG_ACTIVITY_P(0);
	StringInfoData buf;
	ActivityReader r;
	ActivityEventRef ref;

	activity_reader_init(&r, a, ERRCODE_DATA_CORRUPTED);
	pq_begintypsend(&buf);
	pq_sendbyte(&buf, ACTIVITY_BINARY_VERSION);
	pq_sendint32(&buf, r.nevents);
	while (activity_next_event(&r, &ref))
	{
		ActivityBuildEvent e;
		StringInfoData name;

		activity_event_unpack(&ref, ERRCODE_DATA_CORRUPTED, &e);
		/* pq_sendtext converts encoding, so the length goes in front */
		initStringInfo(&name);
		pq_sendtext(&name, e.name, e.name_len);
		pq_sendint32(&buf, name.len);
		pq_sendbytes(&buf, name.data, name.len);
		pq_sendint64(&buf, e.count);
		pq_sendfloat8(&buf, e.sum);
		pq_sendint64(&buf, e.first_at);
		pq_sendint64(&buf, e.last_at);
		pq_sendint32(&buf, e.trim_day);
		pq_sendint32(&buf, e.ndays);
		pq_sendbyte(&buf, e.sums != NULL);
		for (int j = 0; j < e.ndays; j++)
		{
			pq_sendint32(&buf, e.days[j]);
			pq_sendint32(&buf, e.counts[j]);
			if (e.sums)
				pq_sendfloat8(&buf, e.sums[j]);
		}
	}
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

static void
bad_binary(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("invalid binary cdp.activity value"),
			 errdetail("%s", detail)));
}

/* cdp.activity binary input: checks every length against the bytes left */
PG_FUNCTION_INFO_V1(cdp_activity_recv);
Datum
cdp_activity_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int			version;
	int32		n;
	ActivityBuildEvent *ev;
	struct varlena *a;

	if (buf->len - buf->cursor < 5)
		bad_binary("The value is shorter than its 5-byte header.");
	version = pq_getmsgbyte(buf);
	if (version != ACTIVITY_BINARY_VERSION)
		bad_binary(psprintf("Format version %d is not supported (expected %d).",
							version, ACTIVITY_BINARY_VERSION));
	n = pq_getmsgint(buf, 4);
	/* every event takes at least 45 bytes */
	if (n < 0 || n > (buf->len - buf->cursor) / 45)
		bad_binary(psprintf("Event count %d does not fit in the %d bytes left.",
							n, buf->len - buf->cursor));
	ev = palloc0(Max(n, 1) * sizeof(ActivityBuildEvent));
	for (int i = 0; i < n; i++)
	{
		ActivityBuildEvent *e = &ev[i];
		int32		len;
		int			nbytes;
		bool		has_sums;

		if (buf->len - buf->cursor < 4)
			bad_binary(psprintf("Event %d is truncated.", i));
		len = pq_getmsgint(buf, 4);
		if (len < 0 || len > buf->len - buf->cursor)
			bad_binary(psprintf("Name length %d of event %d does not fit in the bytes left.", len, i));
		e->name = pq_getmsgtext(buf, len, &nbytes);
		e->name_len = nbytes;
		if (buf->len - buf->cursor < 41)
			bad_binary(psprintf("Event %d is truncated.", i));
		e->count = pq_getmsgint64(buf);
		e->sum = pq_getmsgfloat8(buf);
		e->first_at = pq_getmsgint64(buf);
		e->last_at = pq_getmsgint64(buf);
		e->trim_day = pq_getmsgint(buf, 4);
		e->ndays = pq_getmsgint(buf, 4);
		has_sums = pq_getmsgbyte(buf) != 0;
		if (e->ndays < 0 ||
			e->ndays > (buf->len - buf->cursor) / (has_sums ? 16 : 8))
			bad_binary(psprintf("Day count %d of event %d does not fit in the bytes left.",
								e->ndays, i));
		e->days = palloc(Max(e->ndays, 1) * sizeof(int32));
		e->counts = palloc(Max(e->ndays, 1) * sizeof(int32));
		e->sums = has_sums ? palloc(Max(e->ndays, 1) * sizeof(float8)) : NULL;
		for (int j = 0; j < e->ndays; j++)
		{
			e->days[j] = pq_getmsgint(buf, 4);
			e->counts[j] = pq_getmsgint(buf, 4);
			if (has_sums)
				e->sums[j] = pq_getmsgfloat8(buf);
		}
	}
	if (buf->cursor != buf->len)
		bad_binary(psprintf("%d bytes of trailing data.", buf->len - buf->cursor));
	check_events(ev, n, ERRCODE_INVALID_BINARY_REPRESENTATION);
	a = activity_pack(ev, n);
	activity_validate(a, ERRCODE_INVALID_BINARY_REPRESENTATION);
	PG_RETURN_ACTIVITY_P(a);
}

/* ---------------------------------------------------------------- accessors */

/*
 * Detoasting keeps short (1-byte header) values in place: the format has
 * no alignment, so they are read where they lie.
 */
static inline void
activity_arg(FunctionCallInfo fcinfo, int argno, ActivityReader *r)
{
	struct varlena *v = PG_GETARG_ACTIVITY_P(argno);

	activity_reader_init(r, v, ERRCODE_DATA_CORRUPTED);
}

static void
folded_error(const ActivityEventRef *e, const char *what)
{
	ActivityEventRef named = *e;

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s of event \"%.*s\" is not known for this window",
					what, e->name_len, activity_event_name(&named)),
			 errdetail("Day buckets before %s were folded into the totals by cdp.activity_trim, and the window covers part of them.",
					   DatumGetCString(DirectFunctionCall1(date_out,
														   DateADTGetDatum(e->trim_day)))),
			 errhint("Start the window at or after the trim day, or before the event's first time stamp.")));
}

/*
 * Count, sum and active days of one event in the day window [lo, hi),
 * decoding its buckets as it goes.  Folded events (cdp.activity_trim)
 * count only when the window covers all days they may lie on; a window
 * covering part of them is an error.
 */
static void
event_window(const ActivityEventRef *e, int32 lo, int32 hi, bool want_days,
			 int64 *count, float8 *sum, int *ndays)
{
	bool		day_sums = (e->flags & ACT_F_DAY_SUMS) != 0;
	bool		folded = false;
	BucketCursor cur;
	int64		c = 0,
				bc = 0;
	float8		s = 0.0,
				bs = 0.0;
	int			nd = 0;

	*count = 0;
	*sum = 0.0;
	*ndays = 0;
	if (lo >= hi)
		return;
	if (e->trim_day != ACTIVITY_NO_TRIM)
	{
		if (hi > e->first_day && lo < e->trim_day)
		{
			if (want_days || lo > e->first_day || hi < e->trim_day)
				folded_error(e, want_days ? "the number of active days" : "the count");
			folded = true;
		}
	}
	if (e->bucket_implied)
	{
		/* every event on the first day */
		if (e->first_day >= lo && e->first_day < hi)
		{
			*count = e->count;
			*sum = day_sums ? e->sum : 0.0;
			*ndays = 1;
		}
		return;
	}
	bucket_start(&cur, e, ERRCODE_DATA_CORRUPTED);
	for (int j = 0; j < e->ndays; j++)
	{
		int64		day = bucket_day(&cur);
		int64		n;
		float8		v;

		/* days ascend: past the window only the folded totals need more */
		if (day >= hi && !folded)
			break;
		bucket_rest(&cur, &n, &v);
		if (day >= lo && day < hi)
		{
			c += n;
			s += v;
			nd++;
		}
		bc += n;
		bs += v;
	}
	if (folded)
	{
		/* the folded events: the total minus what the buckets hold */
		c += e->count - bc;
		s += e->sum - bs;
	}
	*count = c;
	*sum = s;
	*ndays = nd;
}

/*
 * The day window of did/did_not: [as_of - within, as_of), no lower bound
 * when within is NULL.  timestamptz - interval follows the session time
 * zone, so it is computed once per (within, as_of, time zone) and kept in
 * fn_extra: a segment query passes the same constants for every row.
 */
typedef struct DidWindow
{
	bool		valid;
	bool		has_within;
	Interval	within;
	TimestampTz as_of;
	pg_tz	   *tz;
	int32		lo;
	int32		hi;
} DidWindow;

/* What an accessor keeps across the rows of a query, in fn_extra. */
typedef struct AccessorCache
{
	ActivityKey key;
	DidWindow	window;
} AccessorCache;

static AccessorCache *
accessor_cache(FunctionCallInfo fcinfo)
{
	if (fcinfo->flinfo->fn_extra == NULL)
		fcinfo->flinfo->fn_extra =
			MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(AccessorCache));
	return (AccessorCache *) fcinfo->flinfo->fn_extra;
}

/* The event named by argument 1, its name packed once per query. */
static inline bool
lookup_event(FunctionCallInfo fcinfo, ActivityEventRef *e)
{
	ActivityReader r;
	text	   *name = PG_GETARG_TEXT_PP(1);
	ActivityKey *k = &accessor_cache(fcinfo)->key;

	activity_key_set(k, VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name),
					 fcinfo->flinfo->fn_mcxt);
	activity_arg(fcinfo, 0, &r);
	return activity_find_key(&r, k, e);
}

/* Window from optional since/until arguments at positions 2 and 3. */
static void
window_args(FunctionCallInfo fcinfo, int first, int32 *lo, int32 *hi)
{
	*lo = PG_NARGS() > first ? window_lo(PG_GETARG_TIMESTAMPTZ(first)) : PG_INT32_MIN;
	*hi = PG_NARGS() > first + 1 ? window_hi(PG_GETARG_TIMESTAMPTZ(first + 1)) : PG_INT32_MAX;
}

/* number of events of one name, optionally in a window */
PG_FUNCTION_INFO_V1(cdp_event_count);
Datum
cdp_event_count(PG_FUNCTION_ARGS)
{
	ActivityEventRef e;
	int32		lo,
				hi;
	int64		c;
	float8		s;
	int			d;

	if (!lookup_event(fcinfo, &e))
		PG_RETURN_INT64(0);
	if (PG_NARGS() == 2)
		PG_RETURN_INT64(e.count);
	window_args(fcinfo, 2, &lo, &hi);
	event_window(&e, lo, hi, false, &c, &s, &d);
	PG_RETURN_INT64(c);
}

/* sum of the values of one event name, optionally in a window */
PG_FUNCTION_INFO_V1(cdp_event_sum);
Datum
cdp_event_sum(PG_FUNCTION_ARGS)
{
	ActivityEventRef e;
	int32		lo,
				hi;
	int64		c;
	float8		s;
	int			d;

	if (!lookup_event(fcinfo, &e))
		PG_RETURN_FLOAT8(0.0);
	if (PG_NARGS() == 2)
		PG_RETURN_FLOAT8(e.sum);
	window_args(fcinfo, 2, &lo, &hi);
	event_window(&e, lo, hi, false, &c, &s, &d);
	PG_RETURN_FLOAT8(s);
}

static Datum
seen(FunctionCallInfo fcinfo, bool last)
{
	ActivityReader r;
	ActivityEventRef e;
	TimestampTz t = 0;

	if (PG_NARGS() > 1)
	{
		if (!lookup_event(fcinfo, &e))
			PG_RETURN_NULL();
		PG_RETURN_TIMESTAMPTZ(last ? e.last_at : e.first_at);
	}
	activity_arg(fcinfo, 0, &r);
	if (r.nevents == 0)
		PG_RETURN_NULL();
	while (activity_next_event(&r, &e))
	{
		TimestampTz x = last ? e.last_at : e.first_at;

		if (r.next == 1 || (last ? x > t : x < t))
			t = x;
	}
	PG_RETURN_TIMESTAMPTZ(t);
}

static DidWindow *
did_window(FunctionCallInfo fcinfo)
{
	DidWindow  *w = &accessor_cache(fcinfo)->window;
	bool		has_within = !PG_ARGISNULL(3);
	Interval   *within = has_within ? PG_GETARG_INTERVAL_P(3) : NULL;
	TimestampTz as_of = PG_GETARG_TIMESTAMPTZ(4);

	if (w->valid && w->as_of == as_of && w->has_within == has_within &&
		w->tz == session_timezone &&
		(!has_within ||
		 (w->within.time == within->time && w->within.day == within->day &&
		  w->within.month == within->month)))
		return w;

	w->valid = false;
	w->lo = has_within
		? window_lo(DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
															TimestampTzGetDatum(as_of),
															IntervalPGetDatum(within))))
		: PG_INT32_MIN;
	w->hi = window_hi(as_of);
	w->has_within = has_within;
	if (has_within)
		w->within = *within;
	w->as_of = as_of;
	w->tz = session_timezone;
	w->valid = true;
	return w;
}

/*
 * did/did_not: at least at_least events in the window (NULL when any
 * argument but within is NULL).
 */
static Datum
did_common(FunctionCallInfo fcinfo, bool negate)
{
	ActivityEventRef e;
	int32		at_least;
	DidWindow  *w;
	int64		c = 0;
	float8		s;
	int			d;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(4))
		PG_RETURN_NULL();
	at_least = PG_GETARG_INT32(2);
	w = did_window(fcinfo);
	if (lookup_event(fcinfo, &e))
	{
		int32		first_day = e.first_day;
		int32		last_day = e.last_day;

		/*
		 * Most profiles are decided by the event's totals alone, without
		 * reading its day buckets: too few events at all, a window that
		 * misses or covers all of its days (folded ones included, which lie
		 * between its first day and its trim day).
		 */
		if (e.count < at_least || w->lo > last_day || w->hi <= first_day)
			c = 0;
		else if (w->lo <= first_day && w->hi > last_day)
			c = e.count;
		else
			event_window(&e, w->lo, w->hi, false, &c, &s, &d);
	}
	PG_RETURN_BOOL((c >= at_least) != negate);
}

/* at least at_least events of one name in [as_of - within, as_of) */
PG_FUNCTION_INFO_V1(cdp_did);
Datum
cdp_did(PG_FUNCTION_ARGS)
{
	return did_common(fcinfo, false);
}

/* fewer than at_least events of one name in [as_of - within, as_of) */
PG_FUNCTION_INFO_V1(cdp_did_not);
Datum
cdp_did_not(PG_FUNCTION_ARGS)
{
	return did_common(fcinfo, true);
}

/* time stamp of the first event (of one name) */
PG_FUNCTION_INFO_V1(cdp_first_seen);
Datum
cdp_first_seen(PG_FUNCTION_ARGS)
{
	return seen(fcinfo, false);
}

/* time stamp of the last event (of one name) */
PG_FUNCTION_INFO_V1(cdp_last_seen);
Datum
cdp_last_seen(PG_FUNCTION_ARGS)
{
	return seen(fcinfo, true);
}

/* number of UTC days with events of one name, optionally in a window */
PG_FUNCTION_INFO_V1(cdp_active_days);
Datum
cdp_active_days(PG_FUNCTION_ARGS)
{
	ActivityEventRef e;
	int32		lo,
				hi;
	int64		c;
	float8		s;
	int			d;

	if (!lookup_event(fcinfo, &e))
		PG_RETURN_INT32(0);
	window_args(fcinfo, 2, &lo, &hi);
	event_window(&e, lo, hi, true, &c, &s, &d);
	PG_RETURN_INT32(d);
}

static int
int32_cmp(const void *a, const void *b)
{
	int32		x = *(const int32 *) a;
	int32		y = *(const int32 *) b;

	return (x > y) - (x < y);
}

/* number of UTC days with any event, optionally in a window */
PG_FUNCTION_INFO_V1(cdp_active_days_any);
Datum
cdp_active_days_any(PG_FUNCTION_ARGS)
{
	ActivityReader r;
	ActivityEventRef ref;
	int32		lo,
				hi;
	int32	   *all = NULL;
	int			cap = 0,
				n = 0,
				distinct = 0;

	activity_arg(fcinfo, 0, &r);
	window_args(fcinfo, 1, &lo, &hi);
	while (activity_next_event(&r, &ref))
	{
		ActivityBuildEvent e;
		int64		c;
		float8		s;
		int			d;

		/* checks the window against folded days */
		event_window(&ref, lo, hi, true, &c, &s, &d);
		if (d == 0)
			continue;
		activity_event_unpack(&ref, ERRCODE_DATA_CORRUPTED, &e);
		if (n + e.ndays > cap)
		{
			cap = Max(cap * 2, n + e.ndays);
			all = all ? repalloc(all, cap * sizeof(int32)) : palloc(cap * sizeof(int32));
		}
		for (int j = 0; j < e.ndays; j++)
			if (e.days[j] >= lo && e.days[j] < hi)
				all[n++] = e.days[j];
	}
	if (r.nevents == 1)
		PG_RETURN_INT32(n);
	qsort(all, n, sizeof(int32), int32_cmp);
	for (int i = 0; i < n; i++)
		if (i == 0 || all[i] != all[i - 1])
			distinct++;
	PG_RETURN_INT32(distinct);
}

/* one row per event name: totals and first/last time stamps */
PG_FUNCTION_INFO_V1(cdp_events);
Datum
cdp_events(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ActivityReader r;
	ActivityEventRef e;

	activity_arg(fcinfo, 0, &r);
	InitMaterializedSRF(fcinfo, 0);
	while (activity_next_event(&r, &e))
	{
		Datum		values[5];
		bool		nulls[5] = {0};

		values[0] = PointerGetDatum(cstring_to_text_with_len(activity_event_name(&e), e.name_len));
		values[1] = Int64GetDatum(e.count);
		values[2] = Float8GetDatum(e.sum);
		values[3] = TimestampTzGetDatum(e.first_at);
		values[4] = TimestampTzGetDatum(e.last_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
