/* Request heads: the byte-level scan and the llhttp glue. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "http.h"

/*
 * The bytes the scan must look at: controls (CR, LF and HT among them) and
 * DEL.  Everything else, space and obs-text included, is skipped in words:
 * a space matters only straight after an LF, where the LF's handling looks.
 */
static inline bool
special_byte(unsigned char ch)
{
	return ch < 0x20 || ch == 0x7f;
}

#define ONES  0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/*
 * A mark (0x80) in the byte of w that is a control (< 0x20) or DEL, 0 when
 * none is.  A byte above a marked one may be marked without being special
 * (the borrow of the subtraction), so only the lowest mark is exact; bytes
 * of 0x80 and above are never marked.
 */
static inline uint64_t
special_mask(uint64_t w)
{
	uint64_t del = w ^ (0x7f * ONES);

	return ((w - 0x20 * ONES) | (del - ONES)) & ~w & HIGHS;
}

/*
 * The index of the first special byte of b[i..len), or len: sixteen bytes
 * at a time where SSE2 is (every x86-64), the last ones in the sixteen that
 * end at len; otherwise eight at a time (SWAR on a uint64_t), then one.
 * Reads nothing outside b[0..len).
 */
static inline size_t
next_special(const unsigned char *b, size_t i, size_t len)
{
#ifdef __SSE2__
	const __m128i ctl = _mm_set1_epi8(0x1f), del = _mm_set1_epi8(0x7f);
	__m128i x;
	unsigned bits;

	for (; i + 16 <= len; i += 16) {
		x = _mm_loadu_si128((const __m128i *)(const void *)(b + i));
		bits = (unsigned)_mm_movemask_epi8(_mm_or_si128(
		    _mm_cmpeq_epi8(_mm_min_epu8(x, ctl), x), _mm_cmpeq_epi8(x, del)));
		if (bits != 0)
			return i + (size_t)__builtin_ctz(bits);
	}
	if (i < len && len >= 16) {
		/* The last bytes: the sixteen that end at len, less those before i. */
		x = _mm_loadu_si128((const __m128i *)(const void *)(b + len - 16));
		bits = (unsigned)_mm_movemask_epi8(_mm_or_si128(
		    _mm_cmpeq_epi8(_mm_min_epu8(x, ctl), x), _mm_cmpeq_epi8(x, del)));
		bits >>= 16 - (len - i);
		return bits != 0 ? i + (size_t)__builtin_ctz(bits) : len;
	}
#endif
	for (; i + 8 <= len; i += 8) {
		uint64_t w, m;

		memcpy(&w, b + i, sizeof(w));
		m = special_mask(w);
		if (m != 0) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			return i + (size_t)__builtin_ctzll(m) / 8;
#else
			break;		/* the mark's byte is not the first: look bytewise */
#endif
		}
	}
	while (i < len && !special_byte(b[i]))
		i++;
	return i;
}

ssize_t
fdh_http_head_end(const char *buf, size_t len, size_t *scan)
{
	const unsigned char *b = (const unsigned char *)buf;
	size_t i = *scan;

	if (i >= len) {
		*scan = i;
		return 0;
	}
	/* The scan stops on a CR, never on an LF; a cursor on one is taken as it is. */
	if (b[i] == '\n') {
		if (i == 0 || b[i - 1] != '\r' || i == 1)
			return -EBADMSG;
		if (i >= 3 && b[i - 2] == '\n') {
			*scan = i + 1;
			return (ssize_t)(i + 1);
		}
		i++;
	} else if (i > 0 && b[i - 1] != '\n') {
		goto in_line;
	}
	for (;;) {
		/* i starts a line: the request line (i == 0), or one after an LF. */
		if (i >= len)
			break;
		if (b[i] == '\r') {
			if (i + 1 == len)
				break;		/* decide once the next byte is here */
			if (b[i + 1] != '\n')
				return -EBADMSG;	/* a bare CR */
			if (i == 0)
				return -EBADMSG;	/* an empty line where the request line goes */
			if (i >= 2) {
				*scan = i + 2;
				return (ssize_t)(i + 2);	/* the blank line that ends the head */
			}
			i += 2;		/* only from a cursor on the line after an LF at 0 */
			continue;
		}
		/* A line that starts with whitespace continues the previous one (obs-fold). */
		if (i > 0 && (b[i] == ' ' || b[i] == '\t'))
			return -EBADMSG;
in_line:
		/* Within a line: ordinary bytes and tabs, up to its CRLF. */
		for (;;) {
			i = next_special(b, i, len);
			if (i >= len || b[i] != '\t')
				break;
			i++;
		}
		if (i >= len)
			break;
		/* HTTP wants CRLF; a bare LF ends lines for some parsers and not others. */
		if (b[i] != '\r')
			return -EBADMSG;	/* a bare LF, NUL, another control or DEL */
		if (i + 1 == len)
			break;			/* decide once the next byte is here */
		if (b[i + 1] != '\n')
			return -EBADMSG;	/* a bare CR */
		i += 2;
	}
	*scan = i;
	return 0;
}

static struct fdh_http_parser *
parser_of(llhttp_t *l)
{
	return l->data;
}

static int
on_url(llhttp_t *l, const char *at, size_t len)
{
	struct fdh_head *h = parser_of(l)->head;

	if (h->path == NULL)
		h->path = (char *)(uintptr_t)at;
	h->path_len += (uint32_t)len;
	return 0;
}

/*
 * llhttp hands each span in one piece (a head is parsed in one call), but
 * the lengths add up all the same.
 */
static int
on_header_field(llhttp_t *l, const char *at, size_t len)
{
	struct fdh_http_parser *p = parser_of(l);
	struct fdh_req_hdr *hdr;

	if (!p->in_value) {
		p->hdr->name_len += (uint32_t)len;
		return 0;
	}
	hdr = p->next;
	if (hdr == p->hdrs_end) {
		p->too_many = true;
		return -1;
	}
	p->next = hdr + 1;
	hdr->name = (char *)(uintptr_t)at;
	hdr->name_len = (uint32_t)len;
	hdr->value = NULL;
	hdr->value_len = 0;
	p->hdr = hdr;
	p->in_value = false;
	return 0;
}

static int
on_header_value(llhttp_t *l, const char *at, size_t len)
{
	struct fdh_http_parser *p = parser_of(l);
	struct fdh_req_hdr *hdr = p->hdr;

	/* llhttp reports an empty value at the next line's start: not ours to end. */
	if (len == 0)
		return 0;
	if (hdr->value == NULL)
		hdr->value = (char *)(uintptr_t)at;
	hdr->value_len += (uint32_t)len;
	p->in_value = true;
	return 0;
}

/*
 * Whether the n bytes at s spell lit in any case.  lit holds lowercase
 * letters, digits and '-'; each word of s has 0x20 (the case bit) set in
 * the places where lit has a letter (the 0x40 bit of a byte tells), and
 * nowhere else, before it is compared: exact, and a few instructions for
 * a name of up to 24 bytes.  n is a constant of 4 or more where inlined.
 */
static inline bool
fold_eq32(const char *s, const char *lit)
{
	uint32_t a, b;

	memcpy(&a, s, sizeof(a));
	memcpy(&b, lit, sizeof(b));
	return (a | ((b >> 1) & 0x20202020U)) == b;
}

static inline bool
fold_eq64(const char *s, const char *lit)
{
	uint64_t a, b;

	memcpy(&a, s, sizeof(a));
	memcpy(&b, lit, sizeof(b));
	return (a | ((b >> 1) & 0x2020202020202020ULL)) == b;
}

static inline bool
fold_eq(const char *s, const char *lit, size_t n)
{
	size_t i;

	if (n < 8)
		return fold_eq32(s, lit) && fold_eq32(s + (n - 4), lit + (n - 4));
	for (i = 0; i + 8 < n; i += 8)
		if (!fold_eq64(s + i, lit + i))
			return false;
	return fold_eq64(s + (n - 8), lit + (n - 8));
}

static int
on_header_value_complete(llhttp_t *l)
{
	struct fdh_http_parser *p = parser_of(l);
	struct fdh_head *h = p->head;
	struct fdh_req_hdr *hdr = p->hdr;
	const char *v;
	uint32_t vlen;

	p->in_value = true;
	if (hdr->name_len == 0) {
		p->empty_name = true;
		return -1;
	}
	if (hdr->value == NULL)
		hdr->value = hdr->name + hdr->name_len;	/* empty: the NUL lands on the colon */
	v = hdr->value;
	vlen = hdr->value_len;
	while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	hdr->value_len = vlen;

	/* The names the framework reads, told apart by their length first. */
	switch (hdr->name_len) {
	case 4:
		if (fold_eq(hdr->name, "x-fd", 4)) {
			p->nxfd++;
			h->xfd_hdr = (int)(hdr - h->hdrs);
		}
		break;
	case 6:
		if (fold_eq(hdr->name, "expect", 6)) {
			if (vlen == 12 && fold_eq(v, "100-continue", 12))
				h->expect_continue = true;
			else
				p->bad_expect = true;
		}
		break;
	case 14:
		if (fold_eq(hdr->name, "content-length", 14))
			p->ncl++;
		break;
	case 17:
		if (fold_eq(hdr->name, "transfer-encoding", 17))
			p->nte++;
		break;
	default:
		break;
	}
	return 0;
}

static int
on_headers_complete(llhttp_t *l)
{
	(void)l;
	return HPE_PAUSED;	/* the body is framed by Content-Length alone, without llhttp */
}

/* Only what the framework reads: llhttp skips the callbacks left NULL. */
static const llhttp_settings_t settings = {
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_header_value_complete = on_header_value_complete,
	.on_headers_complete = on_headers_complete,
};

void
fdh_http_parser_init(struct fdh_http_parser *p, const struct fdh_limits *limits)
{
	memset(p, 0, sizeof(*p));
	p->limits = limits;
	/* Strict: no lenient flag is set, ever. */
	llhttp_init(&p->fresh, HTTP_REQUEST, &settings);
}

static int
fail(struct fdh_http_error *err, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
fail(struct fdh_http_error *err, int status, const char *fmt, ...)
{
	va_list ap;

	err->status = status;
	va_start(ap, fmt);
	vsnprintf(err->text, sizeof(err->text), fmt, ap);
	va_end(ap);
	return -EBADMSG;
}

/*
 * Whether the head in b[0..len), whose lines all end in CRLF (the scan saw
 * to that), has a field called name (lower case, with its colon).
 */
static bool
has_field(const char *b, size_t len, const char *name)
{
	size_t nlen = strlen(name);
	const char *end = b + len, *eol;

	while ((eol = memchr(b, '\n', (size_t)(end - b))) != NULL) {
		b = eol + 1;
		if ((size_t)(end - b) > nlen && fold_eq(b, name, nlen))
			return true;
	}
	return false;
}

/* Whether the request line in b[0..len) ends in a well-formed " HTTP/D.D". */
static bool
has_version_token(const char *b, size_t len)
{
	const char *eol = memchr(b, '\r', len);
	const char *v;

	if (!eol || eol - b < 9)
		return false;
	v = eol - 9;
	return v[0] == ' ' && memcmp(v + 1, "HTTP/", 5) == 0 && v[6] >= '0' && v[6] <= '9' &&
	    v[7] == '.' && v[8] >= '0' && v[8] <= '9';
}

/*
 * The status and text for a head llhttp stopped on.  Out of line: a
 * well-formed request never runs it.  Two of llhttp's refusals are more
 * precise than a 400: a version it does not know but that is well-formed,
 * or HTTP/2's preface, is one the server does not serve (505), and a Transfer-Encoding llhttp
 * finds invalid (chunked not last, or twice) is still a framing the
 * server does not implement (501), unless a Content-Length is there too,
 * which makes it the smuggling vector of section 2 (400).
 */
static __attribute__((noinline, cold)) int
refuse(struct fdh_http_parser *p, const char *buf, size_t len, llhttp_errno_t e,
    struct fdh_http_error *err)
{
	if (p->too_many)
		return fail(err, 431, "request has more than %u header fields",
		    p->limits->max_headers);
	if (p->empty_name)
		return fail(err, 400, "malformed request head: empty header name");
	/* HTTP/2's preface, PRI * HTTP/2.0, leaves llhttp waiting for its "SM". */
	if ((e == HPE_INVALID_VERSION && has_version_token(buf, len)) ||
	    llhttp_get_method(&p->llhttp) == HTTP_PRI)
		return fail(err, 505, "only HTTP/1.0 and HTTP/1.1 are served");
	if (e == HPE_OK)
		return fail(err, 400, "malformed request head: incomplete");
	if (e == HPE_INVALID_TRANSFER_ENCODING) {
		if (has_field(buf, len, "content-length:"))
			return fail(err, 400, "Content-Length together with Transfer-Encoding");
		return fail(err, 501, "Transfer-Encoding is not supported; send Content-Length");
	}
	return fail(err, 400, "malformed request head: %s", llhttp_get_error_reason(&p->llhttp));
}

/* Origin-form "/p?q", or absolute-form "http://authority/p?q", which servers must accept. */
static int
split_target(struct fdh_head *h)
{
	char *t = h->path, *end = h->path + h->path_len, *q;

	if (h->path_len > 7 && *t != '/' && fold_eq(t, "http://", 7)) {
		t += 7;
		while (t < end && *t != '/' && *t != '?')
			t++;
		if (t == end || *t != '/')
			return -1;
	}
	if (t == end || *t != '/')
		return -1;		/* asterisk- and authority-form: nothing here serves them */
	q = memchr(t, '?', (size_t)(end - t));
	h->path = t;
	if (q) {
		h->path_len = (uint32_t)(q - t);
		h->query = q + 1;
		h->query_len = (uint32_t)(end - q - 1);
	} else {
		h->path_len = (uint32_t)(end - t);
	}
	return 0;
}

int
fdh_http_parse(struct fdh_http_parser *p, char *buf, size_t len, struct fdh_head *head,
    struct fdh_http_error *ret_err)
{
	llhttp_errno_t e;

	head->path = NULL;
	head->path_len = 0;
	head->query = NULL;
	head->query_len = 0;
	head->xfd_hdr = -1;
	head->nfd_names = 0;
	head->content_length = 0;
	head->expect_continue = false;
	p->head = head;
	p->hdr = NULL;
	p->next = head->hdrs;
	p->hdrs_end = head->hdrs + p->limits->max_headers;
	p->ncl = p->nte = p->nxfd = 0;
	p->in_value = true;
	p->too_many = p->bad_expect = p->empty_name = false;
	/* What llhttp_init() would do again, a copy of its result. */
	p->llhttp = p->fresh;
	p->llhttp.data = p;

	e = llhttp_execute(&p->llhttp, buf, len);
	head->nhdrs = (unsigned)(p->next - head->hdrs);
	/* Known as soon as the request line is: a refused HEAD is answered without a body. */
	head->method_id = (uint8_t)llhttp_get_method(&p->llhttp);
	if (e != HPE_PAUSED)
		return refuse(p, buf, len, e, ret_err);
	if (llhttp_get_error_pos(&p->llhttp) != buf + len)
		return fail(ret_err, 400, "malformed request head: bytes after the head");
	if (p->llhttp.http_major != 1)
		return fail(ret_err, 505, "only HTTP/1.0 and HTTP/1.1 are served");
	/* Two framings, or two lengths, are how requests get smuggled past proxies. */
	if (p->ncl > 1)
		return fail(ret_err, 400, "more than one Content-Length header");
	if (p->nte > 0 && p->ncl > 0)
		return fail(ret_err, 400, "Content-Length together with Transfer-Encoding");
	if (p->nte > 0)
		return fail(ret_err, 501, "Transfer-Encoding is not supported; send Content-Length");
	if (p->bad_expect)
		return fail(ret_err, 417, "only Expect: 100-continue is supported");
	if (p->nxfd > 1)
		return fail(ret_err, 400, "more than one X-FD header");
	if (head->path == NULL || split_target(head) == -1)
		return fail(ret_err, 400, "request target must be a path (/...) or http://host/path");

	head->http_minor = (uint8_t)p->llhttp.http_minor;
	/*
	 * llhttp's answer for HTTP/1.0 looks at keep-alive alone; "close"
	 * wins over it wherever both are named (RFC 9112 9.3).
	 */
	head->keep_alive = llhttp_should_keep_alive(&p->llhttp) != 0 &&
	    !(p->llhttp.flags & F_CONNECTION_CLOSE);
	/* An HTTP/1.0 client cannot know 100 Continue: RFC 9110 10.1.1 has it ignored. */
	if (head->http_minor == 0)
		head->expect_continue = false;
	if (p->llhttp.flags & F_CONTENT_LENGTH)
		head->content_length = p->llhttp.content_length;
	if (head->content_length > p->limits->max_body)
		return fail(ret_err, 413, "request body is larger than %zu bytes",
		    p->limits->max_body);

	if (head->xfd_hdr >= 0) {
		const struct fdh_req_hdr *x = &head->hdrs[head->xfd_hdr];
		int n = fdh_xfd_parse(x->value, x->value_len, head->fd_names,
		    p->limits->max_fds);

		if (n == -E2BIG)
			return fail(ret_err, 400, "X-FD names more than %u fds",
			    p->limits->max_fds);
		if (n < 0)
			return fail(ret_err, 400,
			    "X-FD must list unique names of 1-64 characters from [A-Za-z0-9._-]");
		head->nfd_names = (unsigned)n;
	}
	return 0;
}

void
fdh_http_terminate(struct fdh_head *h)
{
	struct fdh_req_hdr *hdr = h->hdrs, *end = h->hdrs + h->nhdrs;

	/* Each terminator lands on a delimiter already parsed: ' ', '?', ':', CR or OWS. */
	h->path[h->path_len] = '\0';
	if (h->query)
		h->query[h->query_len] = '\0';
	for (; hdr < end; hdr++) {
		char *name = hdr->name, *value = hdr->value;	/* read before either store */

		name[hdr->name_len] = '\0';
		value[hdr->value_len] = '\0';
	}
}
