// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit tests for dma-buf mapping types: the negotiation contract, the SGT
 * type with legacy exporters and importers, and the PAL type.
 */

#include <kunit/device.h>
#include <kunit/test.h>
#include <linux/dma-buf.h>
#include <linux/dma-buf-mapping.h>
#include <linux/dma-resv.h>
#include <linux/file.h>
#include <linux/module.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>

MODULE_IMPORT_NS("DMA_BUF");

#define TEST_SIZE	(4 * PAGE_SIZE)

/* Test mapping types: only their identity and match result matter */
struct test_ctx;
static struct test_ctx *ctx_of(struct dma_buf_attachment *attach);

static int test_type_match(struct dma_buf_attachment *attach,
			   const struct dma_buf_mapping_match *exp,
			   const struct dma_buf_mapping_match *imp);
static void test_type_finish(struct dma_buf_attachment *attach,
			     const struct dma_buf_mapping_match *exp,
			     const struct dma_buf_mapping_match *imp);

static const struct dma_buf_mapping_type test_type_a = {
	.name = "test-a",
	.match = test_type_match,
	.finish_match = test_type_finish,
};

static const struct dma_buf_mapping_type test_type_b = {
	.name = "test-b",
	.match = test_type_match,
	.finish_match = test_type_finish,
};

/* A type without callbacks: any two entries match, exp is copied */
static const struct dma_buf_mapping_type test_type_plain = {
	.name = "test-plain",
};

#define MAX_ENTRIES 4

struct test_ctx {
	struct kunit *test;
	struct device *dev;
	struct dma_buf *dmabuf;

	/* what the exporter offers, in match_mapping */
	struct dma_buf_mapping_match exp[MAX_ENTRIES];
	size_t nr_exp;
	/* per exporter entry: what test_type_match returns for it */
	int match_ret[MAX_ENTRIES];
	/* per importer entry: -EOPNOTSUPP to refuse it */
	int imp_ret[MAX_ENTRIES];
	const struct dma_buf_mapping_match *imp_base;

	/* observations */
	int match_calls;
	int match_mapping_calls;
	int matched_exp, matched_imp;
	bool locked_in_match;
	int attach_calls;
	bool type_set_in_attach;
	int sgt_maps, sgt_unmaps, legacy_maps, legacy_unmaps;
	int pal_maps, pal_unmaps;
	bool locked_in_map;
	int invalidates;
	bool locked_in_invalidate;
	int releases;

	/* PAL exporter state */
	bool revoked;
	int bad_list;		/* which kind of invalid list to return */
	struct p2pdma_provider provider;
};

static struct test_ctx *ctx_of(struct dma_buf_attachment *attach)
{
	return attach->dmabuf->priv;
}

static int test_type_match(struct dma_buf_attachment *attach,
			   const struct dma_buf_mapping_match *exp,
			   const struct dma_buf_mapping_match *imp)
{
	struct test_ctx *ctx = ctx_of(attach);
	int e = exp - ctx->exp, i = imp - ctx->imp_base;

	ctx->match_calls++;
	ctx->locked_in_match |= dma_resv_is_locked(attach->dmabuf->resv);
	if (ctx->match_ret[e])
		return ctx->match_ret[e];
	return ctx->imp_ret[i];
}

static void test_type_finish(struct dma_buf_attachment *attach,
			     const struct dma_buf_mapping_match *exp,
			     const struct dma_buf_mapping_match *imp)
{
	struct test_ctx *ctx = ctx_of(attach);

	ctx->matched_exp = exp - ctx->exp;
	ctx->matched_imp = imp - ctx->imp_base;
	attach->map_type = *exp;
}

static int test_match_mapping(struct dma_buf_match_args *args)
{
	struct test_ctx *ctx = ctx_of(args->attach);

	ctx->match_mapping_calls++;
	ctx->imp_base = args->imp;
	return dma_buf_match_mapping(args, ctx->exp, ctx->nr_exp);
}

static int test_attach(struct dma_buf *dmabuf, struct dma_buf_attachment *attach)
{
	struct test_ctx *ctx = dmabuf->priv;

	ctx->attach_calls++;
	ctx->type_set_in_attach = !!attach->map_type.type;
	return 0;
}

static void test_release(struct dma_buf *dmabuf)
{
	struct test_ctx *ctx = dmabuf->priv;

	ctx->releases++;
}

static struct sg_table *test_sgt_alloc(struct test_ctx *ctx)
{
	struct sg_table *sgt = kzalloc_obj(*sgt);

	if (!sgt)
		return ERR_PTR(-ENOMEM);
	if (sg_alloc_table(sgt, 1, GFP_KERNEL)) {
		kfree(sgt);
		return ERR_PTR(-ENOMEM);
	}
	sg_set_page(sgt->sgl, NULL, 0, 0);
	sg_dma_address(sgt->sgl) = 0x100000;
	sg_dma_len(sgt->sgl) = TEST_SIZE;
	return sgt;
}

static void test_sgt_free(struct sg_table *sgt)
{
	sg_free_table(sgt);
	kfree(sgt);
}

static struct sg_table *test_sgt_map(struct dma_buf_attachment *attach,
				     enum dma_data_direction dir)
{
	struct test_ctx *ctx = ctx_of(attach);

	ctx->sgt_maps++;
	ctx->locked_in_map = dma_resv_is_locked(attach->dmabuf->resv);
	return test_sgt_alloc(ctx);
}

static void test_sgt_unmap(struct dma_buf_attachment *attach,
			   struct sg_table *sgt, enum dma_data_direction dir)
{
	ctx_of(attach)->sgt_unmaps++;
	test_sgt_free(sgt);
}

static const struct dma_buf_sgt_exp_ops test_sgt_ops = {
	.map_dma_buf = test_sgt_map,
	.unmap_dma_buf = test_sgt_unmap,
};

static struct sg_table *test_legacy_map(struct dma_buf_attachment *attach,
					enum dma_data_direction dir)
{
	struct test_ctx *ctx = ctx_of(attach);

	ctx->legacy_maps++;
	ctx->locked_in_map = dma_resv_is_locked(attach->dmabuf->resv);
	return test_sgt_alloc(ctx);
}

static void test_legacy_unmap(struct dma_buf_attachment *attach,
			      struct sg_table *sgt, enum dma_data_direction dir)
{
	ctx_of(attach)->legacy_unmaps++;
	test_sgt_free(sgt);
}

/* Kinds of invalid physical address lists the test exporter can return */
enum {
	BAD_NONE,
	BAD_ZERO_LEN,
	BAD_UNALIGNED,
	BAD_WRAP,
	BAD_SHORT,
	BAD_LONG,
	BAD_NO_PROVIDER,
	BAD_COUNT
};

static struct dma_buf_phys_list *test_map_phys(struct dma_buf_attachment *attach)
{
	struct test_ctx *ctx = ctx_of(attach);
	struct dma_buf_phys_list *phys;

	ctx->locked_in_map = dma_resv_is_locked(attach->dmabuf->resv);
	if (ctx->revoked)
		return ERR_PTR(-ENODEV);

	phys = dma_buf_phys_list_alloc(2);
	if (!phys)
		return ERR_PTR(-ENOMEM);
	phys->provider = &ctx->provider;
	phys->ranges[0].paddr = 0x40000000;
	phys->ranges[0].len = PAGE_SIZE;
	phys->ranges[1].paddr = 0x80000000;
	phys->ranges[1].len = TEST_SIZE - PAGE_SIZE;

	switch (ctx->bad_list) {
	case BAD_ZERO_LEN:
		phys->ranges[1].len = 0;
		break;
	case BAD_UNALIGNED:
		phys->ranges[1].paddr += 8;
		break;
	case BAD_WRAP:
		phys->ranges[1].paddr = (phys_addr_t)-PAGE_SIZE;
		break;
	case BAD_SHORT:
		phys->ranges[1].len -= PAGE_SIZE;
		break;
	case BAD_LONG:
		phys->ranges[1].len += PAGE_SIZE;
		break;
	case BAD_NO_PROVIDER:
		phys->provider = NULL;
		break;
	}
	ctx->pal_maps++;
	return phys;
}

static void test_unmap_phys(struct dma_buf_attachment *attach,
			    struct dma_buf_phys_list *phys)
{
	ctx_of(attach)->pal_unmaps++;
	dma_buf_phys_list_free(phys);
}

static const struct dma_buf_pal_exp_ops test_pal_ops = {
	.map_phys = test_map_phys,
	.unmap_phys = test_unmap_phys,
};

static const struct dma_buf_ops test_mapping_ops = {
	.match_mapping = test_match_mapping,
	.attach = test_attach,
	.release = test_release,
};

static const struct dma_buf_ops test_legacy_ops = {
	.attach = test_attach,
	.map_dma_buf = test_legacy_map,
	.unmap_dma_buf = test_legacy_unmap,
	.release = test_release,
};

static void test_invalidate(struct dma_buf_attachment *attach)
{
	struct test_ctx *ctx = ctx_of(attach);

	ctx->invalidates++;
	ctx->locked_in_invalidate = dma_resv_is_locked(attach->dmabuf->resv);
}

static const struct dma_buf_attach_ops test_revocable_importer = {
	.allow_peer2peer = true,
	.invalidate_mappings = test_invalidate,
};

/* A dynamic importer that cannot be revoked */
static const struct dma_buf_attach_ops test_pinned_importer = {
	.allow_peer2peer = true,
};

static int dma_mapping_test_init(struct kunit *test)
{
	struct test_ctx *ctx;

	ctx = kunit_kzalloc(test, sizeof(*ctx), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, ctx);
	ctx->test = test;
	ctx->dev = kunit_device_register(test, "dma-mapping-test");
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, ctx->dev);
	ctx->provider.owner = ctx->dev;
	ctx->matched_exp = -1;
	ctx->matched_imp = -1;
	test->priv = ctx;
	return 0;
}

/* Drops the buffer if a test ended before test_done(), e.g. on an assert */
static void test_put_action(void *data)
{
	struct test_ctx *ctx = data;

	if (!ctx->dmabuf)
		return;
	dma_buf_put(ctx->dmabuf);
	flush_delayed_fput();
}

static struct dma_buf *test_export(struct kunit *test, const struct dma_buf_ops *ops)
{
	struct test_ctx *ctx = test->priv;
	DEFINE_DMA_BUF_EXPORT_INFO(exp_info);

	exp_info.ops = ops;
	exp_info.size = TEST_SIZE;
	exp_info.flags = O_RDWR;
	exp_info.priv = ctx;
	ctx->dmabuf = dma_buf_export(&exp_info);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, ctx->dmabuf);
	KUNIT_ASSERT_EQ(test, 0, kunit_add_action_or_reset(test, test_put_action, ctx));
	return ctx->dmabuf;
}

/*
 * Exports a buffer whose exporter offers PAL first and then, if @sgt, SGT
 * (peer-to-peer only if @p2p).
 */
static void test_export_pal(struct kunit *test, bool sgt, bool p2p)
{
	struct test_ctx *ctx = test->priv;

	test_export(test, &test_mapping_ops);
	ctx->exp[0] = (struct dma_buf_mapping_match)DMA_BUF_EMAPPING_PAL(&test_pal_ops);
	ctx->nr_exp = 1;
	if (sgt)
		ctx->exp[ctx->nr_exp++] =
			(struct dma_buf_mapping_match)DMA_BUF_EMAPPING_SGT(&test_sgt_ops, p2p);
}

/* Detach, drop the buffer, and check that nothing was left behind. */
static void test_done(struct kunit *test, struct dma_buf_attachment *attach)
{
	struct test_ctx *ctx = test->priv;

	if (attach)
		dma_buf_detach(ctx->dmabuf, attach);
	dma_resv_lock(ctx->dmabuf->resv, NULL);
	KUNIT_EXPECT_TRUE(test, list_empty(&ctx->dmabuf->attachments));
	dma_resv_unlock(ctx->dmabuf->resv);
	/*
	 * dma_buf_put() from a kthread defers the release to a workqueue:
	 * wait for it, it uses ctx.
	 */
	dma_buf_put(ctx->dmabuf);
	flush_delayed_fput();
	ctx->dmabuf = NULL;
	KUNIT_EXPECT_EQ(test, ctx->releases, 1);
	KUNIT_EXPECT_EQ(test, ctx->sgt_maps, ctx->sgt_unmaps);
	KUNIT_EXPECT_EQ(test, ctx->legacy_maps, ctx->legacy_unmaps);
	KUNIT_EXPECT_EQ(test, ctx->pal_maps, ctx->pal_unmaps);
}

static void set_exp(struct test_ctx *ctx, size_t i, const struct dma_buf_mapping_type *type)
{
	ctx->exp[i] = (struct dma_buf_mapping_match){ .type = type };
	ctx->nr_exp = max(ctx->nr_exp, i + 1);
}

static struct dma_buf_attachment *attach_types(struct test_ctx *ctx,
					       const struct dma_buf_mapping_type **types,
					       size_t n)
{
	struct dma_buf_mapping_match imp[MAX_ENTRIES] = {};
	size_t i;

	for (i = 0; i < n; i++)
		imp[i].type = types[i];
	return dma_buf_mapping_attach(ctx->dmabuf, ctx->dev, imp, n,
				      &test_revocable_importer, ctx);
}

/* The exporter's order wins over the importer's. */
static void test_exporter_order_wins(struct kunit *test)
{
	const struct dma_buf_mapping_type *imp[] = { &test_type_b, &test_type_a };
	struct test_ctx *ctx = test->priv;
	struct dma_buf_attachment *attach;

	test_export(test, &test_mapping_ops);
	set_exp(ctx, 0, &test_type_a);
	set_exp(ctx, 1, &test_type_b);

	attach = attach_types(ctx, imp, ARRAY_SIZE(imp));
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, attach);
	KUNIT_EXPECT_PTR_EQ(test, attach->map_type.type, &test_type_a);
	KUNIT_EXPECT_EQ(test, ctx->matched_exp, 0);
	KUNIT_EXPECT_EQ(test, ctx->matched_imp, 1);
	/* the match ran unlocked, and before ops->attach */
	KUNIT_EXPECT_FALSE(test, ctx->locked_in_match);
	KUNIT_EXPECT_EQ(test, ctx->attach_calls, 1);
	KUNIT_EXPECT_TRUE(test, ctx->type_set_in_attach);
	test_done(test, attach);
}

/* Among importer entries for the same exporter entry, the importer's order. */
static void test_importer_order_breaks_ties(struct kunit *test)
{
	const struct dma_buf_mapping_type *imp[] = {
		&test_type_b, &test_type_a, &test_type_a,
	};
	struct test_ctx *ctx = test->priv;
	struct dma_buf_attachment *attach;

	test_export(test, &test_mapping_ops);
	set_exp(ctx, 0, &test_type_a);

	attach = attach_types(ctx, imp, ARRAY_SIZE(imp));
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, attach);
	KUNIT_EXPECT_EQ(test, ctx->matched_imp, 1);
	dma_buf_detach(ctx->dmabuf, attach);

	/* the first one refused by the type: the next one of the importer's */
	ctx->imp_ret[1] = -EOPNOTSUPP;
	attach = attach_types(ctx, imp, ARRAY_SIZE(imp));
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, attach);
	KUNIT_EXPECT_EQ(test, ctx->matched_imp, 2);
	test_done(test, attach);
}

/* -EOPNOTSUPP from a type's match skips that pair only. */
static void test_eopnotsupp_skips(struct kunit *test)
{
	const struct dma_buf_mapping_type *imp[] = { &test_type_a, &test_type_b };
	struct test_ctx *ctx = test->priv;
	struct dma_buf_attachment *attach;

	test_export(test, &test_mapping_ops);
	set_exp(ctx, 0, &test_type_a);
	set_exp(ctx, 1, &test_type_b);
	ctx->match_ret[0] = -EOPNOTSUPP;

	attach = attach_types(ctx, imp, ARRAY_SIZE(imp));
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, attach);
	KUNIT_EXPECT_PTR_EQ(test, attach->map_type.type, &test_type_b);
	KUNIT_EXPECT_EQ(test, ctx->matched_exp, 1);
	KUNIT_EXPECT_EQ(test, ctx->match_calls, 2);
	test_done(test, attach);
}

/* Any other error from a type's match fails the attach with it. */
static void test_error_aborts(struct kunit *test)
{
	const struct dma_buf_mapping_type *imp[] = { &test_type_a, &test_type_b };
	struct test_ctx *ctx = test->priv;
	struct dma_buf_attachment *attach;

	test_export(test, &test_mapping_ops);
	set_exp(ctx, 0, &test_type_a);
	set_exp(ctx, 1, &test_type_b);
	ctx->match_ret[0] = -ENOSPC;

	attach = attach_types(ctx, imp, ARRAY_SIZE(imp));
	KUNIT_EXPECT_EQ(test, PTR_ERR(attach), -ENOSPC);
	/* type b was never tried, and the exporter never saw an attach */
	KUNIT_EXPECT_EQ(test, ctx->match_calls, 1);
	KUNIT_EXPECT_EQ(test, ctx->attach_calls, 0);
	test_done(test, NULL);
}

/* No mutual type: -EOPNOTSUPP, and nothing attached. */
static void test_no_mutual_type(struct kunit *test)
{
	const struct dma_buf_mapping_type *imp[] = { &test_type_b, &test_type_plain };
	struct test_ctx *ctx = test->priv;
	struct dma_buf_attachment *attach;

	test_export(test, &test_mapping_ops);
	set_exp(ctx, 0, &test_type_a);

	attach = attach_types(ctx, imp, ARRAY_SIZE(imp));
	KUNIT_EXPECT_EQ(test, PTR_ERR(attach), -EOPNOTSUPP);
	KUNIT_EXPECT_EQ(test, ctx->match_calls, 0);
	KUNIT_EXPECT_EQ(test, ctx->attach_calls, 0);

	/* all the importer's entries refused by the type: the same */
	set_exp(ctx, 1, &test_type_b);
	ctx->imp_ret[0] = -EOPNOTSUPP;
	attach = attach_types(ctx, imp, 1);
	KUNIT_EXPECT_EQ(test, PTR_ERR(attach), -EOPNOTSUPP);
	KUNIT_EXPECT_EQ(test, ctx->attach_calls, 0);
	test_done(test, NULL);
}

/* A type without callbacks matches any entry of its type and copies exp. */
static void test_plain_type(struct kunit *test)
{
	const struct dma_buf_mapping_type *imp[] = { &test_type_plain };
	struct test_ctx *ctx = test->priv;
	struct dma_buf_attachment *attach;

	test_export(test, &test_mapping_ops);
	set_exp(ctx, 0, &test_type_plain);
	ctx->exp[0].sgt.exp_ops = &test_sgt_ops;	/* any payload */

	attach = attach_types(ctx, imp, ARRAY_SIZE(imp));
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, attach);
	KUNIT_EXPECT_PTR_EQ(test, attach->map_type.type, &test_type_plain);
	KUNIT_EXPECT_PTR_EQ(test, attach->map_type.sgt.exp_ops, &test_sgt_ops);
	test_done(test, attach);
}

/* SGT: a P2P-only exporter entry needs an importer that accepts P2P. */
static void test_sgt_p2p(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	struct dma_buf_attachment *attach;

	test_export(test, &test_mapping_ops);
	ctx->exp[0] = (struct dma_buf_mapping_match)DMA_BUF_EMAPPING_SGT(&test_sgt_ops, true);
	ctx->nr_exp = 1;

	/* dma_buf_attach() does not accept P2P */
	attach = dma_buf_attach(ctx->dmabuf, ctx->dev);
	KUNIT_EXPECT_EQ(test, PTR_ERR(attach), -EOPNOTSUPP);

	/* allow_peer2peer does */
	attach = dma_buf_dynamic_attach(ctx->dmabuf, ctx->dev,
					&test_revocable_importer, ctx);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, attach);
	KUNIT_EXPECT_TRUE(test, attach->peer2peer);
	KUNIT_EXPECT_TRUE(test, attach->map_type.sgt.p2p);
	KUNIT_EXPECT_PTR_EQ(test, attach->dev, ctx->dev);
	dma_buf_detach(ctx->dmabuf, attach);

	/* with a non-P2P offer after it, a non-P2P importer gets that one */
	ctx->exp[1] = (struct dma_buf_mapping_match)DMA_BUF_EMAPPING_SGT(&test_sgt_ops, false);
	ctx->nr_exp = 2;
	attach = dma_buf_attach(ctx->dmabuf, ctx->dev);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, attach);
	KUNIT_EXPECT_FALSE(test, attach->peer2peer);
	KUNIT_EXPECT_PTR_EQ(test, attach->map_type.type, &dma_buf_mapping_sgt_type);
	test_done(test, attach);
}

/*
 * SGT: an exporter with match_mapping must give its SGT entry ops (only the
 * core's implicit entry for legacy exporters has none). The attach fails,
 * with a warning, instead of a NULL call at map time.
 */
static void test_sgt_null_ops(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	struct dma_buf_attachment *attach;

	test_export(test, &test_mapping_ops);
	ctx->exp[0] = (struct dma_buf_mapping_match)DMA_BUF_EMAPPING_SGT(NULL, false);
	ctx->nr_exp = 1;

	kunit_warning_suppress(test) {
		attach = dma_buf_attach(ctx->dmabuf, ctx->dev);
		KUNIT_EXPECT_SUPPRESSED_WARNING_COUNT(test, 1);
	}
	KUNIT_EXPECT_EQ(test, PTR_ERR(attach), -EINVAL);
	KUNIT_EXPECT_EQ(test, ctx->attach_calls, 0);
	test_done(test, NULL);
}

/* Legacy exporter, legacy importer: the SGT path as it always was. */
static void test_legacy_both(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	struct dma_buf_attachment *attach;
	struct sg_table *sgt;

	test_export(test, &test_legacy_ops);
	attach = dma_buf_attach(ctx->dmabuf, ctx->dev);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, attach);
	KUNIT_EXPECT_PTR_EQ(test, attach->map_type.type, &dma_buf_mapping_sgt_type);
	KUNIT_EXPECT_PTR_EQ(test, attach->dev, ctx->dev);
	KUNIT_EXPECT_FALSE(test, attach->peer2peer);
	KUNIT_EXPECT_TRUE(test, ctx->type_set_in_attach);

	sgt = dma_buf_map_attachment_unlocked(attach, DMA_BIDIRECTIONAL);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, sgt);
	KUNIT_EXPECT_EQ(test, ctx->legacy_maps, 1);
	KUNIT_EXPECT_TRUE(test, ctx->locked_in_map);
	KUNIT_EXPECT_EQ(test, sg_dma_len(sgt->sgl), TEST_SIZE);
	dma_buf_unmap_attachment_unlocked(attach, sgt, DMA_BIDIRECTIONAL);
	KUNIT_EXPECT_EQ(test, ctx->legacy_unmaps, 1);
	test_done(test, attach);
}

/* Legacy importer on an exporter with mapping types: gets its SGT entry. */
static void test_legacy_importer(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	struct dma_buf_attachment *attach;
	struct sg_table *sgt;

	test_export_pal(test, true, false);

	attach = dma_buf_attach(ctx->dmabuf, ctx->dev);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, attach);
	KUNIT_EXPECT_PTR_EQ(test, attach->map_type.type, &dma_buf_mapping_sgt_type);

	dma_resv_lock(ctx->dmabuf->resv, NULL);
	sgt = dma_buf_map_attachment(attach, DMA_TO_DEVICE);
	KUNIT_EXPECT_FALSE(test, IS_ERR_OR_NULL(sgt));
	if (!IS_ERR_OR_NULL(sgt))
		dma_buf_unmap_attachment(attach, sgt, DMA_TO_DEVICE);
	dma_resv_unlock(ctx->dmabuf->resv);
	KUNIT_EXPECT_EQ(test, ctx->sgt_maps, 1);
	KUNIT_EXPECT_EQ(test, ctx->sgt_unmaps, 1);
	KUNIT_EXPECT_EQ(test, ctx->pal_maps, 0);
	test_done(test, attach);
}

static struct dma_buf_attachment *attach_pal(struct test_ctx *ctx,
					     const struct dma_buf_attach_ops *ops)
{
	return dma_buf_pal_attach(ctx->dmabuf, ctx->dev, ops, ctx);
}

/* Importer with mapping types on a legacy exporter: only SGT is there. */
static void test_legacy_exporter(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	const struct dma_buf_mapping_match sgt = DMA_BUF_IMAPPING_SGT(ctx->dev, true);
	struct dma_buf_attachment *attach;

	test_export(test, &test_legacy_ops);

	attach = dma_buf_mapping_attach(ctx->dmabuf, ctx->dev, &sgt, 1,
					&test_revocable_importer, ctx);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, attach);
	KUNIT_EXPECT_PTR_EQ(test, attach->map_type.type, &dma_buf_mapping_sgt_type);
	KUNIT_EXPECT_TRUE(test, attach->peer2peer);
	KUNIT_EXPECT_NULL(test, attach->map_type.sgt.exp_ops);
	dma_buf_detach(ctx->dmabuf, attach);

	/* PAL: nothing in common */
	attach = attach_pal(ctx, &test_revocable_importer);
	KUNIT_EXPECT_EQ(test, PTR_ERR(attach), -EOPNOTSUPP);
	test_done(test, NULL);
}

/*
 * PAL cannot be had through dma_buf_mapping_attach(), whatever else the
 * list holds and whatever the exporter offers: the attach fails before
 * the exporter hears of it, and nothing is left attached.
 */
static void test_pal_not_in_mapping_attach(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	const struct dma_buf_mapping_match pal_sgt[] = {
		DMA_BUF_IMAPPING_SGT(ctx->dev, true),
		{ .type = &dma_buf_mapping_pal_type },
	};
	struct dma_buf_attachment *attach;

	test_export_pal(test, true, true);

	kunit_warning_suppress(test) {
		attach = dma_buf_mapping_attach(ctx->dmabuf, ctx->dev, pal_sgt,
						ARRAY_SIZE(pal_sgt),
						&test_revocable_importer, ctx);
		KUNIT_EXPECT_EQ(test, PTR_ERR(attach), -EINVAL);
		if (!IS_ERR(attach))
			dma_buf_detach(ctx->dmabuf, attach);
		attach = dma_buf_mapping_attach(ctx->dmabuf, ctx->dev, &pal_sgt[1], 1,
						&test_revocable_importer, ctx);
		KUNIT_EXPECT_EQ(test, PTR_ERR(attach), -EINVAL);
		if (!IS_ERR(attach))
			dma_buf_detach(ctx->dmabuf, attach);
		KUNIT_EXPECT_SUPPRESSED_WARNING_COUNT(test, 2);
	}
	/* refused before the exporter's match_mapping or attach ran */
	KUNIT_EXPECT_EQ(test, ctx->match_mapping_calls, 0);
	KUNIT_EXPECT_EQ(test, ctx->attach_calls, 0);

	/* The SGT entry alone still works */
	attach = dma_buf_mapping_attach(ctx->dmabuf, ctx->dev, pal_sgt, 1,
					&test_revocable_importer, ctx);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, attach);
	KUNIT_EXPECT_PTR_EQ(test, attach->map_type.type, &dma_buf_mapping_sgt_type);
	test_done(test, attach);
}

/*
 * A PAL attachment is not an SGT one: dma_buf_map_attachment() refuses it,
 * with a warning, and the exporter is not asked for anything.
 */
static void test_pal_not_sgt_mapped(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	struct dma_buf_attachment *attach;
	struct sg_table *sgt;

	test_export_pal(test, true, false);
	attach = attach_pal(ctx, &test_revocable_importer);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, attach);
	KUNIT_ASSERT_PTR_EQ(test, attach->map_type.type, &dma_buf_mapping_pal_type);

	kunit_warning_suppress(test) {
		sgt = dma_buf_map_attachment_unlocked(attach, DMA_TO_DEVICE);
		KUNIT_EXPECT_SUPPRESSED_WARNING_COUNT(test, 1);
	}
	KUNIT_EXPECT_EQ(test, PTR_ERR(sgt), -EINVAL);
	KUNIT_EXPECT_EQ(test, ctx->sgt_maps + ctx->legacy_maps + ctx->pal_maps, 0);
	test_done(test, attach);
}

/* PAL: map and unmap under the reservation lock. */
static void test_pal_map_unmap(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	struct dma_buf_attachment *attach;
	struct dma_buf_phys_list *phys;

	test_export(test, &test_mapping_ops);
	ctx->exp[0] = (struct dma_buf_mapping_match)DMA_BUF_EMAPPING_SGT(&test_sgt_ops, true);
	ctx->exp[1] = (struct dma_buf_mapping_match)DMA_BUF_EMAPPING_PAL(&test_pal_ops);
	ctx->nr_exp = 2;

	attach = attach_pal(ctx, &test_revocable_importer);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, attach);
	KUNIT_EXPECT_PTR_EQ(test, attach->map_type.type, &dma_buf_mapping_pal_type);

	dma_resv_lock(ctx->dmabuf->resv, NULL);
	phys = dma_buf_pal_map(attach);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, phys);
	KUNIT_EXPECT_TRUE(test, ctx->locked_in_map);
	KUNIT_EXPECT_PTR_EQ(test, phys->provider, &ctx->provider);
	KUNIT_EXPECT_EQ(test, phys->nr_ranges, 2);
	KUNIT_EXPECT_EQ(test, phys->ranges[0].paddr, 0x40000000);
	KUNIT_EXPECT_EQ(test, phys->ranges[0].len, PAGE_SIZE);
	KUNIT_EXPECT_EQ(test, phys->ranges[1].paddr, 0x80000000);
	dma_buf_pal_unmap(attach, phys);
	dma_resv_unlock(ctx->dmabuf->resv);
	KUNIT_EXPECT_EQ(test, ctx->pal_unmaps, 1);
	test_done(test, attach);
}

/* PAL only matches importers that can be revoked. */
static void test_pal_needs_revocable(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	struct dma_buf_attachment *attach;

	test_export_pal(test, false, false);

	attach = attach_pal(ctx, NULL);
	KUNIT_EXPECT_EQ(test, PTR_ERR(attach), -EOPNOTSUPP);
	attach = attach_pal(ctx, &test_pinned_importer);
	KUNIT_EXPECT_EQ(test, PTR_ERR(attach), -EOPNOTSUPP);
	KUNIT_EXPECT_EQ(test, ctx->attach_calls, 0);
	test_done(test, NULL);
}

static const char * const bad_list_names[] = {
	[BAD_ZERO_LEN] = "zero length",
	[BAD_UNALIGNED] = "unaligned",
	[BAD_WRAP] = "wraps around",
	[BAD_SHORT] = "shorter than the buffer",
	[BAD_LONG] = "longer than the buffer",
	[BAD_NO_PROVIDER] = "no provider",
};

/* PAL: lists that do not describe the buffer are refused and given back. */
static void test_pal_bad_lists(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	struct dma_buf_attachment *attach;
	struct dma_buf_phys_list *phys;
	int bad;

	test_export_pal(test, false, false);
	attach = attach_pal(ctx, &test_revocable_importer);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, attach);

	dma_resv_lock(ctx->dmabuf->resv, NULL);
	for (bad = BAD_ZERO_LEN; bad < BAD_COUNT; bad++) {
		ctx->bad_list = bad;
		phys = dma_buf_pal_map(attach);
		KUNIT_EXPECT_EQ_MSG(test, PTR_ERR(phys), -EINVAL, "%s", bad_list_names[bad]);
		KUNIT_EXPECT_EQ_MSG(test, ctx->pal_maps, ctx->pal_unmaps, "%s",
				    bad_list_names[bad]);
	}
	dma_resv_unlock(ctx->dmabuf->resv);
	KUNIT_EXPECT_EQ(test, ctx->pal_maps, BAD_COUNT - BAD_ZERO_LEN);
	test_done(test, attach);
}

/* PAL: revoke reaches the importer under the lock; later maps fail. */
static void test_pal_revoke(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	struct dma_buf_attachment *attach;
	struct dma_buf_phys_list *phys;

	test_export_pal(test, false, false);
	attach = attach_pal(ctx, &test_revocable_importer);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, attach);

	dma_resv_lock(ctx->dmabuf->resv, NULL);
	phys = dma_buf_pal_map(attach);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, phys);

	/* the exporter revokes */
	ctx->revoked = true;
	dma_buf_invalidate_mappings(ctx->dmabuf);
	KUNIT_EXPECT_EQ(test, ctx->invalidates, 1);
	KUNIT_EXPECT_TRUE(test, ctx->locked_in_invalidate);

	/* the importer unmaps, and cannot map again */
	dma_buf_pal_unmap(attach, phys);
	KUNIT_EXPECT_EQ(test, PTR_ERR(dma_buf_pal_map(attach)), -ENODEV);
	dma_resv_unlock(ctx->dmabuf->resv);
	test_done(test, attach);
}

static struct kunit_case dma_mapping_cases[] = {
	KUNIT_CASE(test_exporter_order_wins),
	KUNIT_CASE(test_importer_order_breaks_ties),
	KUNIT_CASE(test_eopnotsupp_skips),
	KUNIT_CASE(test_error_aborts),
	KUNIT_CASE(test_no_mutual_type),
	KUNIT_CASE(test_plain_type),
	KUNIT_CASE(test_sgt_p2p),
	KUNIT_CASE(test_sgt_null_ops),
	KUNIT_CASE(test_legacy_both),
	KUNIT_CASE(test_legacy_importer),
	KUNIT_CASE(test_legacy_exporter),
	KUNIT_CASE(test_pal_not_in_mapping_attach),
	KUNIT_CASE(test_pal_not_sgt_mapped),
	KUNIT_CASE(test_pal_map_unmap),
	KUNIT_CASE(test_pal_needs_revocable),
	KUNIT_CASE(test_pal_bad_lists),
	KUNIT_CASE(test_pal_revoke),
	{}
};

static struct kunit_suite dma_mapping_test_suite = {
	.name = "dma-buf-mapping",
	.init = dma_mapping_test_init,
	.test_cases = dma_mapping_cases,
};

kunit_test_suite(dma_mapping_test_suite);
