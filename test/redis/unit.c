// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Redis store internals without a server: CRC16 and key slots against the
 * cluster specification's vectors, URL parsing, RESP encoding, and the
 * store's options checks.
 */
#include "harness.h"
#include "redis-cluster.h"

static int t_crc16(void *arg)
{
	(void)arg;
	/* The cluster spec's reference: CRC16/XMODEM of "123456789" is 0x31C3. */
	T_ASSERT_EQ(fl__crc16("123456789", 9), 0x31C3);
	T_ASSERT_EQ(fl__crc16("", 0), 0);
	T_ASSERT_EQ(fl__crc16("A", 1), 0x58E5);
	return T_PASS;
}

static unsigned slot(const char *key)
{
	return fl__cluster_keyslot(key, strlen(key));
}

static int t_keyslot(void *arg)
{
	(void)arg;
	/* Values as CLUSTER KEYSLOT gives them (checked against redis-server 7.0). */
	T_ASSERT_EQ(slot("foo"), 12182);
	T_ASSERT_EQ(slot("bar"), 5061);
	T_ASSERT_EQ(slot("hello"), 866);
	T_ASSERT_EQ(slot("somekey"), 11058);
	T_ASSERT_EQ(slot("123456789"), 0x31C3 & 16383);
	/* Hash tags, as in the spec's examples. */
	T_ASSERT_EQ(slot("{user1000}.following"), slot("user1000"));
	T_ASSERT_EQ(slot("{user1000}.followers"), slot("{user1000}.following"));
	T_ASSERT_EQ(slot("{user1000}.following"), 3443);
	T_ASSERT_EQ(slot("foo{}{bar}"), fl__crc16("foo{}{bar}", 10) & 16383);	/* empty tag: whole key */
	T_ASSERT_EQ(slot("foo{{bar}}zap"), slot("{bar"));			/* tag is "{bar" */
	T_ASSERT_EQ(slot("foo{bar}{zap}"), slot("bar"));			/* first tag only */
	T_ASSERT_EQ(slot("{}"), fl__crc16("{}", 2) & 16383);
	T_ASSERT_EQ(slot("no-closing{tag"), fl__crc16("no-closing{tag", 14) & 16383);
	/* A binary key with a NUL before the tag. */
	T_ASSERT_EQ(fl__cluster_keyslot("a\0{x}", 5), slot("x"));
	/* Every page of a 2 MiB chunk shares one slot. */
	T_ASSERT_EQ(slot("p:{0123456789abcdef0123456789abcdef:0:7}:3584"),
		    slot("p:{0123456789abcdef0123456789abcdef:0:7}:4095"));
	return T_PASS;
}

static int t_url(void *arg)
{
	char host[256], prefix[130];
	int port = 0;
	(void)arg;

	T_OK(fl__redis_url_parse("redis://127.0.0.1:7000/vm1", host, sizeof(host), &port, prefix, sizeof(prefix)));
	T_ASSERT(strcmp(host, "127.0.0.1") == 0 && port == 7000 && strcmp(prefix, "vm1") == 0);
	T_OK(fl__redis_url_parse("redis://cache.example", host, sizeof(host), &port, prefix, sizeof(prefix)));
	T_ASSERT(strcmp(host, "cache.example") == 0 && port == 6379 && strcmp(prefix, "faultline") == 0);
	T_OK(fl__redis_url_parse("redis://h/", host, sizeof(host), &port, prefix, sizeof(prefix)));
	T_ASSERT(strcmp(prefix, "faultline") == 0);
	T_OK(fl__redis_url_parse("redis://[::1]:6380/a:b/c", host, sizeof(host), &port, prefix, sizeof(prefix)));
	T_ASSERT(strcmp(host, "::1") == 0 && port == 6380 && strcmp(prefix, "a:b/c") == 0);

	static const char *const bad[] = {
		"http://h:1/p", "redis://", "redis://:6379/p", "redis://h:0/p", "redis://h:65536/p",
		"redis://h:x/p", "redis://h:12x/p", "redis://user:pw@h/p", "redis://h/p{tag}",
		"redis://h/a b", "redis://[::1/p", "redis://h/p?x=1", "rediss://h/p", NULL,
	};
	for (int i = 0; bad[i]; i++)
		T_ASSERT(fl__redis_url_parse(bad[i], host, sizeof(host), &port, prefix, sizeof(prefix)) == -EINVAL,
			 "%s accepted", bad[i]);
	T_ASSERT(fl__redis_url_parse(NULL, host, sizeof(host), &port, prefix, sizeof(prefix)) == -EINVAL);
	{
		char longp[200] = "redis://h/";
		memset(longp + 10, 'x', 150);
		longp[160] = '\0';
		T_ASSERT(fl__redis_url_parse(longp, host, sizeof(host), &port, prefix, sizeof(prefix)) == -EINVAL);
	}
	return T_PASS;
}

static int t_resp(void *arg)
{
	struct fl__resp b = { 0 };
	size_t off;
	(void)arg;

	fl__resp_array(&b, 3);
	fl__resp_arg(&b, "SET", 3);
	fl__resp_arg(&b, "k", 1);
	off = fl__resp_arg_reserve(&b, 4);
	memcpy(b.buf + off, "a\0\r\n", 4);
	T_OK(b.err);
	T_ASSERT_EQ(b.len, 30);
	T_ASSERT(memcmp(b.buf, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\0\r\n\r\n", 30) == 0);
	fl__resp_free(&b);
	return T_PASS;
}

static int t_bad_opts(void *arg)
{
	struct fl_redis_opts o = { .sz = sizeof(o), .url = "redis://127.0.0.1:1/x" };
	struct fl_store *st = NULL;
	(void)arg;

	T_ASSERT(fl_store_redis_new(NULL, &st) == -EINVAL);
	T_ASSERT(fl_store_redis_new(&o, NULL) == -EINVAL);
	o.url = NULL;
	T_ASSERT(fl_store_redis_new(&o, &st) == -EINVAL);
	o.url = "redis://h/{x}";
	T_ASSERT(fl_store_redis_new(&o, &st) == -EINVAL);
	o.url = "redis://127.0.0.1:1/x";
	o.sz = 4;
	T_ASSERT(fl_store_redis_new(&o, &st) == -EINVAL);
	T_ASSERT(fl_redis_push(NULL, &o, NULL, NULL) == -EINVAL);
	o.sz = sizeof(o);
	T_ASSERT(fl_redis_regions(&o, NULL, 1, NULL) == -EINVAL);
	T_ASSERT(st == NULL);
	return T_PASS;
}

/* Nothing listens on port 1: creation fails after the timeout, not before, not forever. */
static int t_unreachable(void *arg)
{
	struct fl_redis_opts o = { .sz = sizeof(o), .url = "redis://127.0.0.1:1/x", .timeout_ms = t_scaled_ms(300) };
	struct fl_store *st = NULL;
	uint64_t t0 = t_now_ns(), ms;
	int r;
	(void)arg;

	r = fl_store_redis_new(&o, &st);
	ms = (t_now_ns() - t0) / 1000000;
	T_ASSERT(r == -ETIMEDOUT, "fl_store_redis_new: %d", r);
	T_ASSERT(ms >= (uint64_t)o.timeout_ms * 5 / 6 && ms < o.timeout_ms + t_scaled_ms(2700),
		 "gave up after %llu ms (timeout %u ms)", (unsigned long long)ms, o.timeout_ms);
	T_ASSERT(st == NULL);
	return T_PASS;
}

static const struct t_case cases[] = {
	{ "crc16", t_crc16, NULL, 0 },
	{ "keyslot", t_keyslot, NULL, 0 },
	{ "url", t_url, NULL, 0 },
	{ "resp", t_resp, NULL, 0 },
	{ "bad-opts", t_bad_opts, NULL, 0 },
	{ "unreachable", t_unreachable, NULL, 0 },
};

int main(int argc, char **argv)
{
	return t_main(argc, argv, cases, sizeof(cases) / sizeof(cases[0]));
}
