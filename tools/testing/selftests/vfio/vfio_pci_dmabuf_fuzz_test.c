// SPDX-License-Identifier: GPL-2.0-only
/*
 * A bounded, seeded fuzzer for VFIO's dma-buf uAPI: VFIO_DEVICE_FEATURE_DMA_BUF,
 * _DMA_BUF_REVOKE and _DMA_BUF_MEMATTR with random argsz, flags, feature
 * numbers, regions, ranges and fds, mmap() of the dma-bufs with random offsets,
 * lengths, protections and flags, accesses through the mappings, iommufd
 * imports and closes.
 *
 * Every call must give a documented errno, or a dma-buf whose size is the
 * sum of its ranges and whose mappings read what the BAR holds where the
 * ranges put it, or SIGBUS once it is revoked. vfio-pci-core has two
 * exporters, picked by the vfio_pci_core.dmabuf_rust parameter: the same
 * calls run against each, and each call must get the same answer from both.
 * At the end the device still exports and maps.
 *
 * $VFIO_DMABUF_FUZZ_SEED picks the seed (default: from the clock; it is
 * printed, and the run is reproducible from it), $VFIO_DMABUF_FUZZ_ITERATIONS
 * the number of calls (default 3000) and $VFIO_DMABUF_FUZZ_SECONDS a bound
 * on the time the first exporter's run takes (default 60); the other runs as
 * many calls as the first did. The device is given as for the other VFIO
 * selftests.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <linux/compiler.h>
#include <linux/iommufd.h>
#include <linux/sizes.h>
#include <linux/vfio.h>

#include <libvfio.h>

#include "kselftest_harness.h"

static const char *device_bdf;

#define RUST_PARAM	"/sys/module/vfio_pci_core/parameters/dmabuf_rust"
#define TAG_MAGIC	0x7a7a5646554d4244ULL	/* "DBMUFVzz" */
#define FUZZ_IOVA	SZ_4G
#define MAX_BUFS	8
#define MAX_MAPS	16
#define MAX_RANGES	576	/* the most a call has, all kept for the oracle */
#define MAX_CHECKED	64	/* pages read of a new or revoked mapping */
#define DESC_LEN	160

/* What the first u64 of each page of the BAR holds during the fuzzing. */
static __u64 tag(__u64 bar_offset)
{
	return TAG_MAGIC ^ bar_offset;
}

/* splitmix64: small, and the same sequence everywhere for a seed */
static __u64 rnd_state;

static __u64 rnd(void)
{
	__u64 z = (rnd_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* a number in [0, n), or 0 if n is 0 */
static __u64 below(__u64 n)
{
	__u64 x = rnd();

	return n ? x % n : 0;
}

/* true with a chance of @pct percent */
static bool chance(int pct)
{
	return below(100) < (__u64)pct;
}

struct buf {
	int fd;			/* -1: free slot */
	__u64 size;
	bool revoked;		/* by DMA_BUF_REVOKE */
	bool read_only;
	bool unreadable;	/* neither O_RDONLY nor O_RDWR: no mmap at all */
	bool imported;		/* mapped in the IOAS at iova(slot) */
	__u64 import_len;
	int nr;
	struct vfio_region_dma_range r[MAX_RANGES];
};

struct map {
	char *p;		/* NULL: free slot */
	size_t len;
	__u64 off;		/* offset in the dma-buf */
	int buf;		/* slot of the dma-buf */
	bool readable;
};

/* One run of the fuzzer against one exporter. */
struct run {
	struct __test_metadata *_metadata;
	struct vfio_pci_device *device;
	struct iommu *iommu;
	int bar;
	__u64 bar_size, pg;
	const char *exporter;	/* expected exp_name, or NULL */
	struct buf bufs[MAX_BUFS];
	struct map maps[MAX_MAPS];
	int spare_fds[3];	/* a udmabuf (or -errno), an eventfd, an O_PATH fd */
	long long *res;		/* per call: its answer */
	char (*desc)[DESC_LEN];	/* per call: what it was */
	int oracle_failures;
	long calls[8], errors[8];
};

enum { OP_EXPORT, OP_MMAP, OP_ACCESS, OP_REVOKE, OP_MEMATTR, OP_IMPORT, OP_CLOSE, NR_OPS };
static const char *const op_name[NR_OPS] = {
	"export", "mmap", "access", "revoke", "memattr", "import", "close",
};

/*
 * The oracle of call @i: @cond must hold. The first failures are logged
 * with the call; all are counted.
 */
static void __printf(4, 5)
oracle(struct run *run, int i, bool cond, const char *fmt, ...)
{
	struct __test_metadata *_metadata = run->_metadata;
	char msg[256];
	va_list ap;

	if (cond)
		return;
	if (++run->oracle_failures > 10)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	TH_LOG("call %d (%s): %s", i, run->desc[i], msg);
}

static bool errno_in(int err, const int *set)
{
	for (; *set; set++) {
		if (err == *set)
			return true;
	}
	return false;
}

/*
 * About a third of the calls are "bad": each of their arguments is then
 * wrong with a chance of a third; the others are well-formed, so that the
 * fuzzing goes past the argument checks often.
 */
static bool bad_call;

static bool mutate(void)
{
	return bad_call && chance(35);
}

/* a range of the BAR, mostly valid, else one that a check must catch */
static void rnd_range(struct run *run, struct vfio_region_dma_range *r)
{
	if (chance(10)) {
		/* huge: 2 or 4 MiB at a 2 MiB boundary, for PMD faults */
		r->length = (1 + below(2)) * SZ_2M;
		r->offset = below((run->bar_size - r->length) / SZ_2M + 1) * SZ_2M;
	} else {
		r->length = (1 + below(16)) * run->pg;
		r->offset = below((run->bar_size - r->length) / run->pg + 1) * run->pg;
	}
	if (mutate()) {
		switch (below(6)) {
		case 0:
			r->offset = run->bar_size - run->pg;
			break;
		case 1:
			r->offset = run->bar_size;
			break;
		case 2:
			r->offset += 1 + below(run->pg - 1);
			break;
		case 3:
			r->offset = ~0ULL - run->pg + 1;
			break;
		case 4:
			r->offset = rnd();
			break;
		default:
			r->offset = 0;
			break;
		}
	}
	if (mutate()) {
		switch (below(6)) {
		case 0:
			r->length = 0;
			break;
		case 1:
			r->length = run->bar_size;
			break;
		case 2:
			r->length = run->bar_size + run->pg;
			break;
		case 3:
			r->length -= 1 + below(run->pg - 1);
			break;
		case 4:
			r->length = ~0ULL - run->pg + 1;
			break;
		default:
			r->length = rnd();
			break;
		}
	}
}

/* an offset into a dma-buf (or its size, or junk) */
static __u64 rnd_offset(struct run *run, __u64 size)
{
	if (!mutate())
		return below(size / run->pg) * run->pg;
	switch (below(4)) {
	case 0:
		return size;
	case 1:
		return below(size) | 1;
	case 2:
		return ~0ULL - run->pg + 1;
	default:
		return rnd();
	}
}

/* a length from @off to at most the end of a dma-buf (or past it, or junk) */
static __u64 rnd_length(struct run *run, __u64 size, __u64 off)
{
	__u64 left = off < size ? (size - off) / run->pg : 1;

	if (!mutate())
		return (1 + below(left)) * run->pg;
	switch (below(4)) {
	case 0:
		return 0;
	case 1:
		return (left + 1 + below(4)) * run->pg;
	case 2:
		return below(size) | 1;
	default:
		return rnd() % (size + 4 * run->pg);
	}
}

/*
 * An fd for the features that take one, what it is, and the errno that
 * REVOKE and MEMATTR document for it (0 for a dma-buf of the device).
 */
static int rnd_fd(struct run *run, const char **what, int *slot, int *err)
{
	int i, live[MAX_BUFS], n = 0, fd;

	*slot = -1;
	*err = 0;
	for (i = 0; i < MAX_BUFS; i++) {
		if (run->bufs[i].fd >= 0)
			live[n++] = i;
	}
	if (n && !mutate()) {
		*slot = live[below(n)];
		*what = run->bufs[*slot].revoked ? "revoked dma-buf" : "dma-buf";
		return run->bufs[*slot].fd;
	}
	switch (below(6)) {
	case 0:
		*what = "udmabuf";
		*err = ENODEV;
		if (run->spare_fds[0] >= 0)
			return run->spare_fds[0];
		*what = "-1 (no udmabuf)";
		*err = EBADF;
		return -1;
	case 1:
		*what = "eventfd";
		*err = EINVAL;
		return run->spare_fds[1];
	case 2:
		*what = "O_PATH fd of a dma-buf";
		*err = EBADF;
		return run->spare_fds[2];
	case 3:
		/* a number no fd has */
		for (fd = 900 + below(50); fcntl(fd, F_GETFD) >= 0; fd++)
			;
		*what = "closed fd";
		*err = EBADF;
		return fd;
	case 4:
		*what = "-1";
		*err = EBADF;
		return -1;
	default:
		*what = "device fd";
		*err = EINVAL;
		return run->device->fd;
	}
}

/* feature flags: mostly right, sometimes another feature, direction or junk */
static __u32 rnd_feature_flags(__u32 feature, __u32 dir)
{
	/*
	 * Not another dma-buf feature (the model would not know what it
	 * did) nor an older one (0, SR-IOV's VF token, changes the device).
	 */
	static const __u32 features[] = { 11, 16, 17, 31, 0xffff };

	if (!mutate())
		return dir | feature;
	switch (below(4)) {
	case 0:
		return VFIO_DEVICE_FEATURE_PROBE | dir | feature;
	case 1:
		return (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET) | feature;
	case 2:
		return dir | features[below(ARRAY_SIZE(features))];
	default:
		return dir | feature | (1u << (20 + below(12)));
	}
}

/*
 * Off by how much argsz is: mostly not; else short by up to @payload (the
 * feature's argument) or long by up to @room (what the buffer has past it).
 */
static long rnd_argsz_delta(size_t payload, size_t room)
{
	if (!mutate())
		return 0;
	if (room && chance(50))
		return 1 + below(room);
	return -(long)(1 + below(payload + sizeof(struct vfio_device_feature)));
}

static __u64 iova(int slot)
{
	return FUZZ_IOVA + (__u64)slot * SZ_1G;
}

/* Unmaps the mappings of a dma-buf slot and closes its fd, if open. */
static void buf_close(struct run *run, int slot)
{
	int i;

	for (i = 0; i < MAX_MAPS; i++) {
		if (run->maps[i].p && run->maps[i].buf == slot) {
			munmap(run->maps[i].p, run->maps[i].len);
			run->maps[i].p = NULL;
		}
	}
	if (run->bufs[slot].imported)
		ioas_unmap(run->iommu, iova(slot), run->bufs[slot].import_len);
	run->bufs[slot].imported = false;
	if (run->bufs[slot].fd >= 0)
		close(run->bufs[slot].fd);
	run->bufs[slot].fd = -1;
}

static long long op_export(struct run *run, int i)
{
	static const __u32 open_flags[] = {
		O_RDWR | O_CLOEXEC, O_RDWR, O_RDONLY | O_CLOEXEC, O_WRONLY,
		O_RDWR | O_NONBLOCK, O_RDWR | O_CREAT, 0x7fffffff,
	};
	static const int errnos[] = { EINVAL, ENOTTY, EOPNOTSUPP, ENODEV, EOVERFLOW,
				      ENOMEM, E2BIG, EMFILE, 0 };
	static struct vfio_region_dma_range keep[MAX_RANGES];
	struct vfio_region_dma_range *r;
	struct vfio_device_feature_dma_buf *get;
	struct vfio_device_feature *req;
	__u32 nr, held, oflags, fflags;
	size_t argsz;
	__u64 sum = 0;
	bool wrap = false;
	long delta;
	int fd, k, slot, region;
	char name[64] = "";

	/* mostly a few ranges; sometimes none, hundreds, or more than argsz holds */
	nr = !mutate() ? 1 + below(4) :
	     chance(40) ? 0 : chance(60) ? 64 + below(512) : 1u << (12 + below(20));
	held = nr < 1024 ? nr : 1;
	/* room for an argsz up to 64 bytes longer than the request */
	req = calloc(1, sizeof(*req) + sizeof(*get) + (held ? held : 1) * sizeof(*r) + 64);
	if (!req)
		return -ENOMEM;
	get = (void *)req->data;
	r = get->dma_ranges;
	for (k = 0; k < (int)held; k++) {
		if (nr > 4) {	/* many ranges: valid ones */
			r[k].offset = below(run->bar_size / run->pg) * run->pg;
			r[k].length = run->pg;
		} else {
			rnd_range(run, &r[k]);
		}
		wrap |= sum + r[k].length < sum;
		sum += r[k].length;
	}
	get->region_index = !mutate() ? run->bar : (chance(50) ? below(10) : (__u32)rnd());
	oflags = open_flags[!mutate() ? below(3) : below(ARRAY_SIZE(open_flags))];
	get->open_flags = oflags;
	get->flags = !mutate() ? 0 : (__u32)rnd();
	get->nr_ranges = nr;
	req->flags = rnd_feature_flags(VFIO_DEVICE_FEATURE_DMA_BUF, VFIO_DEVICE_FEATURE_GET);
	/* argsz never claims more than the buffer has */
	argsz = sizeof(*req) + sizeof(*get) + held * sizeof(*r);
	delta = rnd_argsz_delta(argsz - sizeof(*req), 64);
	req->argsz = argsz + delta;
	snprintf(run->desc[i], DESC_LEN,
		 "export flags %#x region %u open_flags %#x flags %#x nr %u argsz %u of %zu, r0 %#llx+%#llx",
		 req->flags, get->region_index, oflags, get->flags, nr, req->argsz, argsz,
		 (unsigned long long)r[0].offset, (unsigned long long)r[0].length);
	fd = ioctl(run->device->fd, VFIO_DEVICE_FEATURE, req);
	if (fd < 0)
		fd = -errno;
	fflags = req->flags;
	region = get->region_index;
	if (fd >= 0)
		memcpy(keep, r, (held < MAX_RANGES ? held : MAX_RANGES) * sizeof(*r));
	free(req);
	if (fd < 0) {
		oracle(run, i, errno_in(-fd, errnos), "errno %d", -fd);
		oracle(run, i, bad_call, "a well-formed export failed: errno %d", -fd);
		return fd;
	}
	/* a PROBE answers 0, which is stdin, not a dma-buf */
	if (fd == 0 && (fflags & VFIO_DEVICE_FEATURE_PROBE))
		return 0;
	oracle(run, i, fflags == (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF),
	       "a dma-buf for feature flags %#x", fflags);
	oracle(run, i, !wrap && fdinfo_size(fd) == sum, "size %llu, ranges sum to %llu",
	       (unsigned long long)fdinfo_size(fd), (unsigned long long)sum);
	if (run->exporter)
		oracle(run, i, !fdinfo_get(fd, "exp_name", name, sizeof(name)) &&
		       !strcmp(name, run->exporter), "exp_name %s", name);
	oracle(run, i, (fcntl(fd, F_GETFD) & FD_CLOEXEC) == !!(oflags & O_CLOEXEC),
	       "FD_CLOEXEC does not follow open_flags");
	/* another BAR (of another device than ivshmem): its contents are not known */
	if (region != run->bar) {
		close(fd);
		return 2000000 + (long long)(sum / run->pg);
	}

	slot = below(MAX_BUFS);
	buf_close(run, slot);
	run->bufs[slot] = (struct buf){
		.fd = fd, .size = sum, .nr = nr,
		.read_only = (oflags & O_ACCMODE) == O_RDONLY,
		.unreadable = (oflags & O_ACCMODE) != O_RDONLY && (oflags & O_ACCMODE) != O_RDWR,
	};
	memcpy(run->bufs[slot].r, keep, sizeof(keep));
	return 1000000 + (long long)(sum / run->pg);
}

/*
 * Reads the first u64 of page @page of mapping @m: 1 if it holds what the
 * BAR holds there, 2 on SIGBUS; anything else is an oracle failure.
 */
static long long access_page(struct run *run, int i, struct map *m, __u64 page)
{
	struct buf *b = &run->bufs[m->buf];
	__u64 off = m->off + page * run->pg, bar_off, val;

	if (read_sigbus((__u64 *)(m->p + page * run->pg), &val)) {
		oracle(run, i, b->revoked, "SIGBUS at dma-buf offset %#llx, not revoked",
		       (unsigned long long)off);
		return 2;
	}
	oracle(run, i, !b->revoked, "read dma-buf offset %#llx after its revoke",
	       (unsigned long long)off);
	if (b->nr > MAX_RANGES)
		return 1;
	bar_off = dmabuf_to_bar(b->r, b->nr, off);
	oracle(run, i, val == tag(bar_off),
	       "dma-buf offset %#llx: %#llx, BAR offset %#llx holds %#llx",
	       (unsigned long long)off, (unsigned long long)val,
	       (unsigned long long)bar_off, (unsigned long long)tag(bar_off));
	return 1;
}

/*
 * Reads every page of mapping @m (at most MAX_CHECKED of them, spread
 * over it) through access_page(); returns pages read + 1000 * SIGBUS.
 */
static long long check_mapping(struct run *run, int i, struct map *m)
{
	__u64 pages = (m->len + run->pg - 1) / run->pg, step, page;
	long long ret = 0;

	if (!m->readable)
		return 0;
	step = pages > MAX_CHECKED ? pages / MAX_CHECKED : 1;
	for (page = 0; page < pages; page += step)
		ret += access_page(run, i, m, page) == 2 ? 1000 : 1;
	return ret;
}

static long long op_mmap(struct run *run, int i)
{
	static const int prots[] = { PROT_READ, PROT_READ | PROT_WRITE, PROT_WRITE,
				     PROT_NONE, PROT_READ | PROT_EXEC };
	static const int flagss[] = { MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE,
				      MAP_SHARED | MAP_POPULATE };
	static const int errnos[] = { EINVAL, EACCES, ENODEV, ENOMEM, EBADF,
				      EOVERFLOW, EPERM, 0 };
	int slot, m, prot, flags, fd, err, expect = -1;
	const __u64 pg = run->pg;
	bool in_range, shared;
	__u64 off, len, size;
	const char *what;
	struct buf *b;
	char *p;

	fd = rnd_fd(run, &what, &slot, &err);
	b = slot >= 0 ? &run->bufs[slot] : NULL;
	size = b ? b->size : 16 * pg;
	off = rnd_offset(run, size);
	len = rnd_length(run, size, off);
	prot = !mutate() ? (b && b->read_only ? PROT_READ : PROT_READ | PROT_WRITE) :
			   prots[below(ARRAY_SIZE(prots))];
	flags = !mutate() ? MAP_SHARED : flagss[below(ARRAY_SIZE(flagss))];
	snprintf(run->desc[i], DESC_LEN, "mmap of %s: off %#llx len %#llx prot %#x flags %#x",
		 what, (unsigned long long)off, (unsigned long long)len, prot, flags);

	/* what the uAPI says of a mapping of a dma-buf of the device */
	in_range = !(off % pg) && len && !(len % pg) && off <= size && len <= size - off;
	shared = flags != MAP_PRIVATE;
	if (b && in_range && !(prot & PROT_EXEC)) {
		if (b->unreadable)
			expect = EACCES;
		else if (!shared)
			expect = EINVAL;
		else if (b->read_only && (prot & PROT_WRITE))
			expect = EACCES;
		else if (b->revoked)
			expect = ENODEV;
		else
			expect = 0;
	}

	p = mmap(NULL, len, prot, flags, fd, off);
	if (p == MAP_FAILED) {
		err = errno;
		oracle(run, i, errno_in(err, errnos), "errno %d", err);
		oracle(run, i, expect < 0 || expect == err, "errno %d, not %d", err, expect);
		return -err;
	}
	oracle(run, i, expect <= 0, "mapped, where errno %d was due", expect);
	if (!b) {
		munmap(p, len);
		return 0;
	}
	oracle(run, i, shared, "a MAP_PRIVATE mapping");
	oracle(run, i, !b->read_only || !(prot & PROT_WRITE), "PROT_WRITE of a read-only dma-buf");
	oracle(run, i, !b->revoked, "a mapping of a revoked dma-buf");
	oracle(run, i, off <= size && len <= size - off, "a mapping past the end");
	m = below(MAX_MAPS);
	if (run->maps[m].p)
		munmap(run->maps[m].p, run->maps[m].len);
	run->maps[m] = (struct map){
		.p = p, .len = len, .off = off, .buf = slot,
		.readable = prot & PROT_READ,
	};
	return check_mapping(run, i, &run->maps[m]);
}

static long long op_access(struct run *run, int i)
{
	struct map *m = &run->maps[below(MAX_MAPS)];
	__u64 page;

	if (!m->p || !m->readable) {
		snprintf(run->desc[i], DESC_LEN, "access: no readable mapping there");
		return 0;
	}
	page = below((m->len + run->pg - 1) / run->pg);
	snprintf(run->desc[i], DESC_LEN, "access page %llu of a mapping at dma-buf offset %#llx",
		 (unsigned long long)page, (unsigned long long)m->off);
	return access_page(run, i, m, page);
}

static long long op_revoke(struct run *run, int i)
{
	static const int errnos[] = { EBADF, EINVAL, ENODEV, EBADFD, EOPNOTSUPP, ENOTTY, 0 };
	const __u32 good = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE;
	struct vfio_device_feature_dma_buf_revoke rev = {};
	/* the library's buffer has 16 bytes for the argument */
	long delta = rnd_argsz_delta(sizeof(rev), 16 - sizeof(rev));
	__u32 fflags = rnd_feature_flags(VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE,
					 VFIO_DEVICE_FEATURE_SET);
	int slot, ret, k, err, expect = -1;
	const char *what;

	rev.dmabuf_fd = rnd_fd(run, &what, &slot, &err);
	snprintf(run->desc[i], DESC_LEN, "revoke of %s: flags %#x argsz%+ld", what, fflags, delta);
	if (fflags == good && delta >= 0)
		expect = slot < 0 ? err : run->bufs[slot].revoked ? EBADFD : 0;
	ret = dmabuf_set_feature(run->device->fd, fflags, &rev, sizeof(rev), delta);
	oracle(run, i, !ret || errno_in(-ret, errnos), "errno %d", -ret);
	oracle(run, i, expect < 0 || expect == -ret, "errno %d, not %d", -ret, expect);
	if (ret || fflags != good)
		return ret;
	if (slot < 0)
		return 0;
	run->bufs[slot].revoked = true;
	/* Every mapping of it faults now, whether it was touched before or not. */
	for (k = 0; k < MAX_MAPS; k++) {
		if (run->maps[k].p && run->maps[k].buf == slot)
			check_mapping(run, i, &run->maps[k]);
	}
	/* an import it had is invalidated, and can still be unmapped */
	if (run->bufs[slot].imported) {
		ret = ioas_unmap(run->iommu, iova(slot), run->bufs[slot].import_len);
		oracle(run, i, !ret, "unmap of the import after the revoke: errno %d", -ret);
		run->bufs[slot].imported = false;
	}
	return 0;
}

static long long op_memattr(struct run *run, int i)
{
	static const int errnos[] = { EBADF, EINVAL, ENODEV, ENOENT, EOPNOTSUPP, ENOTTY, 0 };
	static const __u32 attrs[] = { VFIO_DEVICE_DMA_BUF_MEMATTR_NC,
				       VFIO_DEVICE_DMA_BUF_MEMATTR_WC, 2, 0xffffffff };
	const __u32 good = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR;
	struct vfio_device_feature_dma_buf_memattr attr = {};
	long delta = rnd_argsz_delta(sizeof(attr), 16 - sizeof(attr));
	__u32 fflags = rnd_feature_flags(VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR,
					 VFIO_DEVICE_FEATURE_SET);
	int slot, ret, err, expect = -1;
	const char *what;

	attr.dmabuf_fd = rnd_fd(run, &what, &slot, &err);
	attr.memattr = attrs[mutate() ? below(ARRAY_SIZE(attrs)) : below(2)];
	snprintf(run->desc[i], DESC_LEN, "memattr %u of %s: flags %#x argsz%+ld",
		 attr.memattr, what, fflags, delta);
	if (fflags == good && delta >= 0) {
		if (attr.memattr > VFIO_DEVICE_DMA_BUF_MEMATTR_WC)
			expect = ENOENT;
		else if (slot < 0)
			expect = err;
		else if (attr.memattr == VFIO_DEVICE_DMA_BUF_MEMATTR_NC)
			expect = 0;
	}
	ret = dmabuf_set_feature(run->device->fd, fflags, &attr, sizeof(attr), delta);
	oracle(run, i, !ret || errno_in(-ret, errnos), "errno %d", -ret);
	oracle(run, i, expect < 0 || expect == -ret, "errno %d, not %d", -ret, expect);
	return ret;
}

/*
 * IOMMU_IOAS_MAP_FILE of (part of) an fd; a dma-buf of the device stays
 * imported half of the time, until it is closed, revoked or imported again.
 */
static long long op_import(struct run *run, int i)
{
	static const int errnos[] = { EBADF, EINVAL, ENODEV, EOVERFLOW, ENOMEM,
				      EOPNOTSUPP, ERANGE, ENOENT, 0 };
	const __u64 pg = run->pg;
	int slot, fd, ret, err, expect = -1;
	__u64 start, len, size, at;
	const char *what;
	struct buf *b;

	fd = rnd_fd(run, &what, &slot, &err);
	b = slot >= 0 ? &run->bufs[slot] : NULL;
	size = b ? b->size : 16 * pg;
	start = rnd_offset(run, size);
	len = rnd_length(run, size, start);
	at = iova(b ? slot : MAX_BUFS);
	snprintf(run->desc[i], DESC_LEN, "iommufd import of %s: start %#llx length %#llx",
		 what, (unsigned long long)start, (unsigned long long)len);
	if (b && b->imported) {
		ret = ioas_unmap(run->iommu, at, b->import_len);
		oracle(run, i, !ret, "unmap of the last import: errno %d", -ret);
		b->imported = false;
	}
	if (b && !(start % pg) && len && !(len % pg) && start <= size && len <= size - start)
		expect = b->revoked ? ENODEV : 0;
	ret = ioas_map_file(run->iommu, fd, start, len, at);
	oracle(run, i, !ret || errno_in(-ret, errnos), "errno %d", -ret);
	oracle(run, i, expect < 0 || expect == -ret, "errno %d, not %d", -ret, expect);
	if (ret)
		return ret;
	oracle(run, i, b && !b->revoked && len && start <= size && len <= size - start,
	       "import succeeded");
	if (b && chance(50)) {
		b->imported = true;
		b->import_len = len;
		return 0;
	}
	ret = ioas_unmap(run->iommu, at, len);
	oracle(run, i, !ret, "unmap: errno %d", -ret);
	return 0;
}

static long long op_close(struct run *run, int i)
{
	int slot = below(MAX_BUFS), m = below(MAX_MAPS);

	if (chance(50) && run->maps[m].p) {
		snprintf(run->desc[i], DESC_LEN, "munmap of mapping %d", m);
		munmap(run->maps[m].p, run->maps[m].len);
		run->maps[m].p = NULL;
		return 1;
	}
	snprintf(run->desc[i], DESC_LEN, "close of slot %d (mappings stay)", slot);
	if (run->bufs[slot].fd < 0)
		return 0;
	/* The mappings outlive the fd: they keep the dma-buf. */
	close(run->bufs[slot].fd);
	run->bufs[slot].fd = -1;
	return 2;
}

static long long (*const ops[NR_OPS])(struct run *, int) = {
	op_export, op_mmap, op_access, op_revoke, op_memattr, op_import, op_close,
};

static const int weights[NR_OPS] = { 30, 20, 15, 8, 8, 10, 9 };

static int pick_op(void)
{
	int w = below(100), op;

	for (op = 0; op < NR_OPS - 1; op++) {
		if (w < weights[op])
			break;
		w -= weights[op];
	}
	return op;
}

/*
 * Runs @n calls from @seed (or until @seconds have passed, if nonzero);
 * returns the number run. Every dma-buf and mapping is gone afterwards.
 */
static int fuzz(struct run *run, __u64 seed, int n, int seconds)
{
	time_t end = time(NULL) + seconds;
	int i, k, op;

	for (k = 0; k < MAX_BUFS; k++)
		run->bufs[k] = (struct buf){ .fd = -1 };
	memset(run->maps, 0, sizeof(run->maps));
	for (i = 0; i < n && (!seconds || time(NULL) < end); i++) {
		/*
		 * Each call from its own seed: a call does not depend on how
		 * many numbers the calls before it drew, which depends on the
		 * answers they got.
		 */
		rnd_state = seed ^ ((__u64)i * 0xd1342543de82ef95ULL);
		rnd();
		op = pick_op();
		bad_call = chance(35);
		run->desc[i][0] = '\0';
		run->res[i] = ops[op](run, i) * NR_OPS + op;
		run->calls[op]++;
		run->errors[op] += run->res[i] < 0;
	}
	for (k = 0; k < MAX_MAPS; k++) {
		if (run->maps[k].p)
			munmap(run->maps[k].p, run->maps[k].len);
	}
	memset(run->maps, 0, sizeof(run->maps));
	for (k = 0; k < MAX_BUFS; k++)
		buf_close(run, k);
	return i;
}

FIXTURE(vfio_pci_dmabuf_fuzz) {
	struct iommu *iommu;
	struct vfio_pci_device *device;
	int bar;
	__u64 bar_size;
	__u64 *saved;		/* the first u64 of each BAR page, as found */
	char rust_param;	/* vfio_pci_core.dmabuf_rust as found, or 0 */
};

/* Sets vfio_pci_core.dmabuf_rust to @val ('Y' or 'N'); false if it cannot. */
static bool set_rust_param(char val)
{
	int fd = open(RUST_PARAM, O_WRONLY);
	bool ok;

	if (fd < 0)
		return false;
	ok = write(fd, &val, 1) == 1;
	close(fd);
	return ok;
}

FIXTURE_SETUP(vfio_pci_dmabuf_fuzz)
{
	const __u64 pg = getpagesize();
	struct vfio_pci_bar *bar;
	__u64 off;
	int i;

	self->iommu = iommu_init(default_iommu_mode);
	self->device = vfio_pci_device_init(device_bdf, self->iommu);
	self->bar = -1;
	for (i = 0; i < PCI_STD_NUM_BARS; i++) {
		bar = &self->device->bars[i];
		if (bar->vaddr && bar->info.size >= SZ_2M && bar->info.size > self->bar_size) {
			self->bar = i;
			self->bar_size = bar->info.size;
		}
	}
	if (self->bar < 0)
		SKIP(return, "%s: no mmap-able BAR of at least 2 MiB", device_bdf);
	/* Tag every page, and put back what was there at the end. */
	bar = &self->device->bars[self->bar];
	self->saved = calloc(self->bar_size / pg, sizeof(__u64));
	ASSERT_NE(NULL, self->saved);
	for (off = 0; off < self->bar_size; off += pg) {
		self->saved[off / pg] = READ_ONCE(*(__u64 *)(bar->vaddr + off));
		WRITE_ONCE(*(__u64 *)(bar->vaddr + off), tag(off));
	}
	/* Only memory holds what was written: registers need not. */
	for (off = 0; off < self->bar_size; off += pg) {
		if (READ_ONCE(*(__u64 *)(bar->vaddr + off)) != tag(off))
			SKIP(return, "%s: BAR%d does not read back what was written at %#llx",
			     device_bdf, self->bar, (unsigned long long)off);
	}
	{
		char val = 0;
		int fd = open(RUST_PARAM, O_RDONLY);

		if (fd >= 0 && read(fd, &val, 1) == 1)
			self->rust_param = val;
		if (fd >= 0)
			close(fd);
	}
}

FIXTURE_TEARDOWN(vfio_pci_dmabuf_fuzz)
{
	const __u64 pg = getpagesize();
	__u64 off;

	if (self->rust_param)
		set_rust_param(self->rust_param);
	if (self->saved) {
		for (off = 0; off < self->bar_size; off += pg)
			WRITE_ONCE(*(__u64 *)(self->device->bars[self->bar].vaddr + off),
				   self->saved[off / pg]);
		free(self->saved);
	}
	vfio_pci_device_cleanup(self->device);
	iommu_cleanup(self->iommu);
}

static __u64 env_u64(const char *name, __u64 def)
{
	const char *v = getenv(name);

	return v && *v ? strtoull(v, NULL, 0) : def;
}

/* After the fuzzing: a new dma-buf of a page still exports and maps. */
static void check_still_works(struct __test_metadata *_metadata, struct run *run)
{
	struct vfio_region_dma_range r = { .offset = run->bar_size / 2, .length = run->pg };
	__u64 *p, val;
	int fd;

	fd = dmabuf_export(run->device->fd, run->bar, &r, 1);
	ASSERT_GE(fd, 0);
	p = dmabuf_mmap(fd, run->pg, 0);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_FALSE(read_sigbus(p, &val));
	EXPECT_EQ(tag(r.offset), val);
	munmap(p, run->pg);
	ASSERT_EQ(0, close(fd));
}

/*
 * Whether the device's dma-bufs come from the Rust exporter when the
 * parameter says so (not for a variant driver's own get_dmabuf_phys()).
 */
static bool rust_exports(struct vfio_pci_device *device, int bar)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = getpagesize() };
	char name[64] = "";
	int fd;

	if (!set_rust_param('Y'))
		return false;
	fd = dmabuf_export(device->fd, bar, &r, 1);
	if (fd >= 0) {
		fdinfo_get(fd, "exp_name", name, sizeof(name));
		close(fd);
	}
	return !strcmp(name, "vfio_pci_core_rust");
}

TEST_F_TIMEOUT(vfio_pci_dmabuf_fuzz, same_answers, 300)
{
	static const char *const exporters[] = { "vfio_pci_core", "vfio_pci_core_rust" };
	__u64 seed = env_u64("VFIO_DMABUF_FUZZ_SEED", time(NULL) ^ getpid());
	int n = env_u64("VFIO_DMABUF_FUZZ_ITERATIONS", 3000);
	int seconds = env_u64("VFIO_DMABUF_FUZZ_SECONDS", 60);
	bool have_rust = rust_exports(self->device, self->bar);
	int nfds = count_fds(), e, i, op, ran = n;
	struct run runs[2];

	TH_LOG("seed %#llx (VFIO_DMABUF_FUZZ_SEED), at most %d calls or %d s",
	       (unsigned long long)seed, n, seconds);
	for (e = 0; e < (have_rust ? 2 : 1); e++) {
		struct run *run = &runs[e];

		*run = (struct run){
			._metadata = _metadata,
			.device = self->device,
			.iommu = self->iommu,
			.bar = self->bar,
			.bar_size = self->bar_size,
			.pg = getpagesize(),
			.exporter = have_rust ? exporters[e] : NULL,
		};
		if (have_rust)
			ASSERT_TRUE(set_rust_param(e ? 'Y' : 'N'));
		run->res = calloc(n, sizeof(*run->res));
		run->desc = calloc(n, sizeof(*run->desc));
		ASSERT_NE(NULL, run->res);
		ASSERT_NE(NULL, run->desc);
		run->spare_fds[0] = other_dmabuf();
		run->spare_fds[1] = eventfd(0, EFD_CLOEXEC);
		{
			struct vfio_region_dma_range r = { .offset = 0, .length = run->pg };
			int fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
			char path[64];

			ASSERT_GE(fd, 0);
			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
			run->spare_fds[2] = open(path, O_PATH | O_CLOEXEC);
			ASSERT_GE(run->spare_fds[2], 0);
			ASSERT_EQ(0, close(fd));
		}

		ran = fuzz(run, seed, ran, e ? 0 : seconds);
		TH_LOG("%s: %d calls (VFIO_DMABUF_FUZZ_ITERATIONS=%d); oracle failures: %d",
		       exporters[e], ran, ran, run->oracle_failures);
		for (op = 0; op < NR_OPS; op++)
			TH_LOG("  %-8s %5ld calls, %5ld errors", op_name[op],
			       run->calls[op], run->errors[op]);
		EXPECT_EQ(0, run->oracle_failures);
		for (i = 0; i < 3; i++) {
			if (run->spare_fds[i] >= 0)
				close(run->spare_fds[i]);
		}
		check_still_works(_metadata, run);
	}
	if (have_rust) {
		/* After the first difference, the two runs are in different states. */
		for (i = 0; i < ran && runs[0].res[i] == runs[1].res[i]; i++)
			;
		if (i < ran) {
			TH_LOG("call %d: C answered %lld to %s", i, runs[0].res[i],
			       runs[0].desc[i]);
			TH_LOG("call %d: Rust answered %lld to %s", i, runs[1].res[i],
			       runs[1].desc[i]);
			TH_LOG("(answer * %d + op)", NR_OPS);
		}
		EXPECT_EQ(ran, i);
	} else {
		TH_LOG("no %s: one exporter, nothing to compare", RUST_PARAM);
	}
	for (e = 0; e < (have_rust ? 2 : 1); e++) {
		free(runs[e].res);
		free(runs[e].desc);
	}
	EXPECT_EQ(nfds, count_fds());
}

int main(int argc, char *argv[])
{
	device_bdf = vfio_selftests_get_bdf(&argc, argv);
	return test_harness_run(argc, argv);
}
