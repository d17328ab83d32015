/*
 * Connection ids and per-uid counts.  An id is a table index (low half)
 * and that entry's generation (high half): a worker can only report closed
 * a connection it was given, once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor.h"

static struct uid_count *
uid_find(const struct sup *s, uid_t uid)
{
	size_t i;

	/* Linear: the distinct local users with a connection open are few. */
	for (i = 0; i < s->nuids; i++)
		if (s->uids[i].uid == uid)
			return &s->uids[i];
	return NULL;
}

unsigned
conns_uid_count(const struct sup *s, uid_t uid)
{
	const struct uid_count *u = uid_find(s, uid);

	return u ? u->n : 0;
}

static void
uid_put(struct sup *s, uid_t uid)
{
	struct uid_count *u = uid_find(s, uid);

	if (u == NULL || u->n == 0)
		return;
	if (--u->n == 0)
		*u = s->uids[--s->nuids];
}

static int
grow(struct sup *s)
{
	size_t n = s->cconns ? s->cconns * 2 : 256, i;
	struct conn_rec *c;
	uint32_t *f;

	if (n > UINT32_MAX)
		return -ENOMEM;
	c = reallocarray(s->conns, n, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	s->conns = c;
	f = reallocarray(s->free_ids, n, sizeof(*f));
	if (f == NULL)
		return -ENOMEM;
	s->free_ids = f;
	memset(c + s->cconns, 0, (n - s->cconns) * sizeof(*c));
	/* Pushed in reverse so that low indices are used first. */
	for (i = n; i > s->cconns; i--)
		s->free_ids[s->nfree++] = (uint32_t)(i - 1);
	s->cconns = n;
	return 0;
}

int
conns_open(struct sup *s, uid_t uid, uint64_t *ret_id)
{
	struct uid_count *u;
	struct conn_rec *c;
	uint32_t i;

	if (s->nfree == 0 && grow(s) < 0)
		return -ENOMEM;
	u = uid_find(s, uid);
	if (u == NULL) {
		if (s->nuids == s->cuids) {
			size_t n = s->cuids ? s->cuids * 2 : 16;
			struct uid_count *p = reallocarray(s->uids, n, sizeof(*p));

			if (p == NULL)
				return -ENOMEM;
			s->uids = p;
			s->cuids = n;
		}
		u = &s->uids[s->nuids++];
		u->uid = uid;
		u->n = 0;
	}
	u->n++;
	i = s->free_ids[--s->nfree];
	c = &s->conns[i];
	c->used = true;
	c->gen++;
	c->uid = uid;
	c->owner = NULL;
	*ret_id = (uint64_t)c->gen << 32 | i;
	return 0;
}

static struct conn_rec *
lookup(struct sup *s, uint64_t id)
{
	uint32_t i = (uint32_t)id;
	struct conn_rec *c;

	if (i >= s->cconns)
		return NULL;
	c = &s->conns[i];
	if (!c->used || c->gen != (uint32_t)(id >> 32))
		return NULL;
	return c;
}

static void
release(struct sup *s, struct conn_rec *c)
{
	if (c->owner)
		c->owner->nconns--;
	uid_put(s, c->uid);
	c->used = false;
	c->owner = NULL;
	s->free_ids[s->nfree++] = (uint32_t)(c - s->conns);
}

void
conns_assign(struct sup *s, uint64_t id, struct proc *p)
{
	struct conn_rec *c = lookup(s, id);

	if (c == NULL || c->owner != NULL)
		return;
	c->owner = p;
	p->nconns++;
}

int
conns_close(struct sup *s, uint64_t id, const struct proc *p)
{
	struct conn_rec *c = lookup(s, id);

	if (c == NULL || c->owner != p)
		return -ESRCH;	/* not this worker's: a protocol violation */
	release(s, c);
	return 0;
}

void
conns_drop(struct sup *s, uint64_t id)
{
	struct conn_rec *c = lookup(s, id);

	if (c)
		release(s, c);
}

void
conns_release_proc(struct sup *s, struct proc *p)
{
	size_t i;

	if (p->nconns == 0)
		return;
	for (i = 0; i < s->cconns; i++)
		if (s->conns[i].used && s->conns[i].owner == p)
			release(s, &s->conns[i]);
}

void
conns_free(struct sup *s)
{
	free(s->conns);
	free(s->free_ids);
	free(s->uids);
	s->conns = NULL;
	s->free_ids = NULL;
	s->uids = NULL;
	s->cconns = s->nfree = s->nuids = s->cuids = 0;
}
