// SPDX-License-Identifier: LGPL-2.1-or-later
/* The STATS reply: the daemon, then every session, as one JSON document. */
#include "faultlined.h"
#include "flutil.h"

#include <jansson.h>
#include <stdlib.h>
#include <unistd.h>

static const char *kind_name(enum fld_kind k)
{
	return k == FLD_FIRECRACKER ? "firecracker" : k == FLD_OBSERVER ? "observer" : "client";
}

/* Non-empty histogram buckets as [upper bound in ns, count] pairs. */
static json_t *hist_json(const uint64_t *hist)
{
	json_t *a = json_array();

	for (unsigned b = 0; b < FL_LAT_BUCKETS; b++)
		if (hist[b])
			json_array_append_new(a, json_pack("[I,I]", (json_int_t)fl__hist_bucket_upper(b),
							   (json_int_t)hist[b]));
	return a;
}

static json_t *space_json(struct fld *d, int space)
{
	struct fl_space_stats *st = calloc(1, sizeof(*st));
	json_t *o;

	if (!st)
		return json_null();
	st->sz = sizeof(*st);
	if (space < 0 || fl_engine_space_stats(d->engine, space, st)) {
		free(st);
		return json_null();
	}
	o = json_pack("{s:i,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:o}", "space", space, "dead", st->dead,
		      "regions", (json_int_t)st->regions, "bytes", (json_int_t)st->bytes, "faults",
		      (json_int_t)st->faults, "pages_resolved", (json_int_t)st->pages_resolved, "pages_poisoned",
		      (json_int_t)st->pages_poisoned, "bytes_read", (json_int_t)st->bytes_read, "lat_p50_us",
		      st->lat_p50_ns / 1e3, "lat_p99_us", st->lat_p99_ns / 1e3, "lat_max_us", st->lat_max_ns / 1e3,
		      "blocked_ms", st->blocked_ns / 1e6, "latency_hist_ns", hist_json(st->lat_hist));
	free(st);
	return o;
}

char *fld_stats_json(struct fld *d)
{
	struct fl_engine_stats *es = calloc(1, sizeof(*es));
	json_t *root, *clients = json_array(), *forks = json_array();
	unsigned nclients = 0;
	char *out;

	if (!es)
		return NULL;
	/* The daemon-wide figures are the engine's: every fault served since
	 * the start, by clients that left too, so that the fault count, the
	 * percentiles and the histogram describe the same faults. */
	es->sz = sizeof(*es);
	fl_engine_stats(d->engine, es);
	for (struct fld_session *s = d->sessions; s; s = s->next) {
		json_t *c;
		if (s->closed || s->kind == FLD_OBSERVER)
			continue;
		nclients++;
		c = json_pack("{s:I,s:i,s:i,s:s,s:f,s:i,s:i}", "id", (json_int_t)s->id, "pid", (int)s->pid, "uid",
			      (int)s->uid, "kind", kind_name(s->kind), "age_s",
			      (fl__now_ns() - s->started_ns) / 1e9, "sources", (int)s->nsources, "ranges",
			      (int)s->nranges);
		if (s->parent_id)
			json_object_set_new(c, "forked_from", json_integer((json_int_t)s->parent_id));
		if (s->draining)
			json_object_set_new(c, "draining", json_true());
		json_object_set_new(c, "serving", space_json(d, s->space));
		json_array_append_new(clients, c);
	}
	pthread_mutex_lock(&d->mu);
	for (struct fld_fork *f = d->forks; f; f = f->next) {
		json_t *o = json_pack("{s:I,s:o}", "forked_from", (json_int_t)f->parent_id, "serving",
				      space_json(d, f->space));
		json_array_append_new(forks, o);
	}
	pthread_mutex_unlock(&d->mu);
	{
		uint64_t p50 = es->lat_p50_ns, p99 = es->lat_p99_ns;
		json_t *h = hist_json(es->lat_hist);
		root = json_pack("{s:{s:i,s:s,s:f,s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:o},s:o,s:o}",
				 "daemon", "pid", (int)getpid(), "version", fl_version(), "uptime_s",
				 (fl__now_ns() - d->started_ns) / 1e9, "clients", (int)nclients, "spaces",
				 (json_int_t)es->spaces - 1, "faults", (json_int_t)es->faults, "faults_timed",
				 (json_int_t)es->lat_count, "messages",
				 (json_int_t)es->messages, "events_fork", (json_int_t)es->events_fork, "events_remap",
				 (json_int_t)es->events_remap, "events_remove", (json_int_t)es->events_remove,
				 "events_unmap", (json_int_t)es->events_unmap, "refused", (json_int_t)d->refused,
				 "bad_messages", (json_int_t)d->bad_messages, "resumed", (json_int_t)d->resumed,
				 "lat_p50_us", p50 / 1e3, "lat_p99_us", p99 / 1e3, "latency_hist_ns", h, "clients",
				 clients, "unclaimed_forks", forks);
	}
	free(es);
	out = root ? json_dumps(root, JSON_COMPACT) : NULL;
	json_decref(root);
	return out;
}
