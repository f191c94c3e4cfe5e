// SPDX-License-Identifier: GPL-2.0
/*
 * Tests of the Rust dma-buf exporter sample (samples/rust/rust_dma_buf_exporter.rs):
 * export through its misc device, mmap() of the dma-buf, read-only exports, the errors of
 * bad requests, and an import by a real importer, DRM's vgem, checked in debugfs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <drm/drm.h>
#include <linux/dma-buf.h>
#include <linux/types.h>

#include "../../kselftest_harness.h"

#define DEVICE "/dev/rust-dma-buf-exporter"

struct rust_dma_buf_export {
	__u64 size;
	__u32 flags;
	__s32 fd;
};

#define RUST_DMA_BUF_EXPORT _IOWR('|', 0x90, struct rust_dma_buf_export)
#define RUST_DMA_BUF_EXPORT_READ_ONLY 1

#define BUFINFO "/sys/kernel/debug/dma_buf/bufinfo"

#define MAX_SIZE (16UL << 20)

static long page_size;

static int export(int dev, __u64 size, __u32 flags)
{
	struct rust_dma_buf_export arg = { .size = size, .flags = flags, .fd = -1 };

	if (ioctl(dev, RUST_DMA_BUF_EXPORT, &arg))
		return -errno;
	return arg.fd;
}

/* Number of open file descriptors of this process. */
static int nr_fds(void)
{
	int n = 0, fd;

	for (fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) != -1)
			n++;
	return n;
}

static void fill(unsigned char *p, size_t len, unsigned int seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 7 + seed + (i >> 12));
}

static int check(const unsigned char *p, size_t len, unsigned int seed, size_t from)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] != (unsigned char)((i + from) * 7 + seed + ((i + from) >> 12)))
			return -1;
	return 0;
}

/* Opens the DRM device of vgem, or returns -1. */
static int open_vgem(void)
{
	char path[32], name[16];
	int i, fd;

	for (i = 0; i < 16; i++) {
		struct drm_version v = { .name = name, .name_len = sizeof(name) - 1 };

		snprintf(path, sizeof(path), "/dev/dri/card%d", i);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		memset(name, 0, sizeof(name));
		if (!ioctl(fd, DRM_IOCTL_VERSION, &v) && !strcmp(name, "vgem"))
			return fd;
		close(fd);
	}
	return -1;
}

/*
 * Counts the attachments of device @dev with mapping type @type that debugfs lists for the
 * dma-buf of inode @ino. Returns -1 if the dma-buf is not listed, -2 if debugfs is missing.
 */
static int attachments(unsigned long ino, const char *dev, const char *type)
{
	char line[256], want[64], size[32], flags[32], mode[32], count[32], exp[64];
	unsigned long i;
	int n = -1;
	FILE *f;

	f = fopen(BUFINFO, "r");
	if (!f)
		return -2;
	snprintf(want, sizeof(want), "\t%s\t%s\n", dev, type);
	while (fgets(line, sizeof(line), f)) {
		if (n < 0) {
			if (sscanf(line, "%31s %31s %31s %31s %63s %lu", size, flags, mode, count,
				   exp, &i) == 6 && i == ino)
				n = 0;
			continue;
		}
		if (!strncmp(line, "Total", 5))
			break;
		if (!strcmp(line, want))
			n++;
	}
	fclose(f);
	return n;
}

/* Writes @val to the fault-injection attribute @attr of @which in debugfs. */
static int fault_attr(const char *which, const char *attr, const char *val)
{
	char path[128];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/sys/kernel/debug/%s/%s", which, attr);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	n = write(fd, val, strlen(val));
	close(fd);
	return n < 0 ? -1 : 0;
}

/*
 * Through @fd, /proc/thread-self/fail-nth opened beforehand (opening it
 * allocates), makes the @nth fault-injection point this thread passes fail
 * (0: none), or, with @nth < 0, returns how many points are left before it:
 * 0 once the failure was injected. Neither allocates.
 */
static int fail_nth(int fd, int nth)
{
	char buf[16] = "";

	if (nth >= 0) {
		snprintf(buf, sizeof(buf), "%d", nth);
		return pwrite(fd, buf, strlen(buf), 0) < 0 ? -1 : 0;
	}
	return pread(fd, buf, sizeof(buf) - 1, 0) < 0 ? -1 : atoi(buf);
}

FIXTURE(exporter) {
	int dev;
};

FIXTURE_SETUP(exporter)
{
	page_size = sysconf(_SC_PAGESIZE);
	self->dev = open(DEVICE, O_RDWR);
	if (self->dev < 0)
		SKIP(return, DEVICE " not available (CONFIG_SAMPLE_RUST_DMA_BUF_EXPORTER)");
}

FIXTURE_TEARDOWN(exporter)
{
	if (self->dev >= 0)
		close(self->dev);
}

TEST_F(exporter, export_size)
{
	size_t size = 5 * page_size;
	int fd = export(self->dev, size, 0);

	ASSERT_GE(fd, 0);
	/* The dma-buf core reports the size through lseek(). */
	EXPECT_EQ(size, lseek(fd, 0, SEEK_END));
	/* Exported close-on-exec. */
	EXPECT_EQ(FD_CLOEXEC, fcntl(fd, F_GETFD) & FD_CLOEXEC);
	EXPECT_EQ(0, close(fd));
}

TEST_F(exporter, mmap_zeroed_write_read)
{
	size_t size = 8 * page_size;
	unsigned char *p, *q;
	int fd = export(self->dev, size, 0);

	ASSERT_GE(fd, 0);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	/* New buffers are zeroed. */
	for (size_t i = 0; i < size; i++)
		ASSERT_EQ(0, p[i]);
	fill(p, size, 3);
	ASSERT_EQ(0, munmap(p, size));

	/* A new mapping shows the same pages. */
	q = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, q);
	EXPECT_EQ(0, check(q, size, 3, 0));
	ASSERT_EQ(0, munmap(q, size));
	close(fd);
}

TEST_F(exporter, mmap_offset)
{
	size_t size = 6 * page_size;
	unsigned char *p, *q;
	int fd = export(self->dev, size, 0);

	ASSERT_GE(fd, 0);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	fill(p, size, 11);

	/* Pages 2..4 of the buffer, mapped from offset 2 pages. */
	q = mmap(NULL, 3 * page_size, PROT_READ, MAP_SHARED, fd, 2 * page_size);
	ASSERT_NE(MAP_FAILED, q);
	EXPECT_EQ(0, check(q, 3 * page_size, 11, 2 * page_size));
	ASSERT_EQ(0, munmap(q, 3 * page_size));

	/* The last page alone. */
	q = mmap(NULL, page_size, PROT_READ, MAP_SHARED, fd, 5 * page_size);
	ASSERT_NE(MAP_FAILED, q);
	EXPECT_EQ(0, check(q, page_size, 11, 5 * page_size));
	ASSERT_EQ(0, munmap(q, page_size));
	ASSERT_EQ(0, munmap(p, size));
	close(fd);
}

TEST_F(exporter, mmap_aliases)
{
	size_t size = 4 * page_size;
	unsigned char *a, *b;
	int fd = export(self->dev, size, 0), fd2;

	ASSERT_GE(fd, 0);
	fd2 = dup(fd);
	ASSERT_GE(fd2, 0);
	a = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, a);
	b = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
	ASSERT_NE(MAP_FAILED, b);
	ASSERT_NE(a, b);
	a[page_size + 5] = 0x5a;
	EXPECT_EQ(0x5a, b[page_size + 5]);
	b[3 * page_size] = 0xa5;
	EXPECT_EQ(0xa5, a[3 * page_size]);
	munmap(a, size);
	munmap(b, size);
	close(fd);
	close(fd2);
}

TEST_F(exporter, mapping_outlives_fd)
{
	size_t size = 2 * page_size;
	unsigned char *p;
	int fd = export(self->dev, size, 0);

	ASSERT_GE(fd, 0);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_EQ(0, close(fd));
	/* The mapping holds the buffer. */
	fill(p, size, 23);
	EXPECT_EQ(0, check(p, size, 23, 0));
	ASSERT_EQ(0, munmap(p, size));
}

TEST_F(exporter, buffers_are_distinct)
{
	size_t size = page_size;
	unsigned char *a, *b;
	int fa = export(self->dev, size, 0), fb = export(self->dev, size, 0);

	ASSERT_GE(fa, 0);
	ASSERT_GE(fb, 0);
	a = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fa, 0);
	b = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fb, 0);
	ASSERT_NE(MAP_FAILED, a);
	ASSERT_NE(MAP_FAILED, b);
	a[0] = 1;
	EXPECT_EQ(0, b[0]);
	munmap(a, size);
	munmap(b, size);
	close(fa);
	close(fb);
}

TEST_F(exporter, mmap_beyond_size)
{
	size_t size = 2 * page_size;
	int fd = export(self->dev, size, 0);

	ASSERT_GE(fd, 0);
	EXPECT_EQ(MAP_FAILED, mmap(NULL, 3 * page_size, PROT_READ, MAP_SHARED, fd, 0));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(MAP_FAILED, mmap(NULL, page_size, PROT_READ, MAP_SHARED, fd, 2 * page_size));
	EXPECT_EQ(EINVAL, errno);
	close(fd);
}

TEST_F(exporter, mmap_private)
{
	size_t size = page_size;
	int fd = export(self->dev, size, 0);

	ASSERT_GE(fd, 0);
	EXPECT_EQ(MAP_FAILED, mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0));
	EXPECT_EQ(EINVAL, errno);
	close(fd);
}

TEST_F(exporter, dma_buf_sync)
{
	struct dma_buf_sync sync = { .flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW };
	int fd = export(self->dev, page_size, 0);

	ASSERT_GE(fd, 0);
	EXPECT_EQ(0, ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync));
	sync.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW;
	EXPECT_EQ(0, ioctl(fd, DMA_BUF_IOCTL_SYNC, &sync));
	close(fd);
}

TEST_F(exporter, bad_requests)
{
	int before = nr_fds();

	EXPECT_EQ(-EINVAL, export(self->dev, 0, 0));
	EXPECT_EQ(-EINVAL, export(self->dev, page_size + 1, 0));
	EXPECT_EQ(-EINVAL, export(self->dev, page_size, 2));
	EXPECT_EQ(-E2BIG, export(self->dev, MAX_SIZE + page_size, 0));
	EXPECT_EQ(-1, ioctl(self->dev, RUST_DMA_BUF_EXPORT, NULL));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, ioctl(self->dev, _IO('|', 0x91), NULL));
	EXPECT_EQ(ENOTTY, errno);
	/* None of them left a file descriptor behind. */
	EXPECT_EQ(before, nr_fds());
}

TEST_F(exporter, result_not_writable)
{
	struct rust_dma_buf_export *arg;
	int before = nr_fds();

	/* Readable but not writable: the export must be undone. */
	arg = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, arg);
	arg->size = page_size;
	ASSERT_EQ(0, mprotect(arg, page_size, PROT_READ));
	EXPECT_EQ(-1, ioctl(self->dev, RUST_DMA_BUF_EXPORT, arg));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(before, nr_fds());
	munmap(arg, page_size);
}

TEST_F(exporter, max_size)
{
	int fd = export(self->dev, MAX_SIZE, 0);
	unsigned char *p;

	ASSERT_GE(fd, 0);
	p = mmap(NULL, MAX_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	p[MAX_SIZE - 1] = 0x77;
	EXPECT_EQ(0x77, p[MAX_SIZE - 1]);
	munmap(p, MAX_SIZE);
	close(fd);
}

TEST_F(exporter, read_only)
{
	size_t size = 2 * page_size;
	int fd = export(self->dev, size, RUST_DMA_BUF_EXPORT_READ_ONLY), rw;
	unsigned char *p, *q;

	ASSERT_GE(fd, 0);
	EXPECT_EQ(O_RDONLY, fcntl(fd, F_GETFL) & O_ACCMODE);
	/* Shared writable mappings need a writable file. */
	EXPECT_EQ(MAP_FAILED, mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
	EXPECT_EQ(EACCES, errno);
	p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(0, p[size - 1]);
	/* ... and cannot become writable later. */
	EXPECT_EQ(-1, mprotect(p, size, PROT_READ | PROT_WRITE));
	EXPECT_EQ(EACCES, errno);

	/* Without the flag, the file is read-write. */
	rw = export(self->dev, size, 0);
	ASSERT_GE(rw, 0);
	EXPECT_EQ(O_RDWR, fcntl(rw, F_GETFL) & O_ACCMODE);
	q = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0);
	ASSERT_NE(MAP_FAILED, q);
	munmap(q, size);
	munmap(p, size);
	close(rw);
	close(fd);
}

/*
 * A real importer: vgem imports the dma-buf through the SGT mapping type (its PRIME import
 * attaches, it does not map) and holds it until its GEM handle is closed.
 */
TEST_F(exporter, vgem_import)
{
	struct drm_prime_handle prime = { .flags = 0 }, back = { .flags = DRM_CLOEXEC };
	struct drm_gem_close gem_close = { 0 };
	struct stat st, st2;
	int drm, fd;

	drm = open_vgem();
	if (drm < 0)
		SKIP(return, "no vgem device (CONFIG_DRM_VGEM)");
	fd = export(self->dev, 4 * page_size, 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, fstat(fd, &st));
	if (attachments(st.st_ino, "vgem", "sgt") == -2)
		SKIP(close(fd); close(drm); return, BUFINFO " not available");
	EXPECT_EQ(0, attachments(st.st_ino, "vgem", "sgt"));

	prime.fd = fd;
	ASSERT_EQ(0, ioctl(drm, DRM_IOCTL_PRIME_FD_TO_HANDLE, &prime));
	EXPECT_EQ(1, attachments(st.st_ino, "vgem", "sgt"));

	/* vgem holds this very dma-buf: exporting its handle gives it back. */
	back.handle = prime.handle;
	ASSERT_EQ(0, ioctl(drm, DRM_IOCTL_PRIME_HANDLE_TO_FD, &back));
	ASSERT_EQ(0, fstat(back.fd, &st2));
	EXPECT_EQ(st.st_ino, st2.st_ino);
	close(back.fd);

	/* The import keeps the buffer after its last file descriptor is closed ... */
	close(fd);
	EXPECT_EQ(1, attachments(st.st_ino, "vgem", "sgt"));
	/* ... until the GEM handle goes: then vgem detaches and the buffer is released. */
	gem_close.handle = prime.handle;
	ASSERT_EQ(0, ioctl(drm, DRM_IOCTL_GEM_CLOSE, &gem_close));
	EXPECT_EQ(-1, attachments(st.st_ino, "vgem", "sgt"));
	close(drm);
}

/*
 * Every allocation an export makes fails in turn: the pages, the Rust
 * abstractions' and the sample's data, and the C core's in dma_buf_export(),
 * through /proc/thread-self/fail-nth. Each failed export is ENOMEM and leaves
 * no file descriptor behind; KASAN and kmemleak watch the memory it undid.
 */
TEST_F(exporter, export_fails_cleanly)
{
	int before, failed = 0, nth, fd = -1, nthfd;

	nthfd = open("/proc/thread-self/fail-nth", O_RDWR | O_CLOEXEC);
	if (nthfd < 0 || fault_attr("failslab", "ignore-gfp-wait", "N") ||
	    fault_attr("fail_page_alloc", "ignore-gfp-wait", "N") ||
	    fault_attr("fail_page_alloc", "min-order", "0"))
		SKIP(return, "no FAILSLAB, FAIL_PAGE_ALLOC or FAULT_INJECTION_DEBUG_FS");
	fault_attr("failslab", "verbose", "0");
	fault_attr("fail_page_alloc", "verbose", "0");
	before = nr_fds();

	for (nth = 1; nth <= 500 && fd < 0; nth++) {
		struct rust_dma_buf_export arg = { .size = 4 * page_size, .fd = -1 };
		int ret, err, left;

		ASSERT_EQ(0, fail_nth(nthfd, nth));
		ret = ioctl(self->dev, RUST_DMA_BUF_EXPORT, &arg);
		err = errno;
		left = fail_nth(nthfd, -1);
		ASSERT_EQ(0, fail_nth(nthfd, 0));
		if (left) {
			/* The export made fewer allocations: done. */
			ASSERT_EQ(0, ret);
			fd = arg.fd;
			break;
		}
		/* Some allocations may fail without failing the export. */
		if (ret) {
			EXPECT_EQ(ENOMEM, err);
			failed++;
		} else {
			close(arg.fd);
		}
		EXPECT_EQ(before, nr_fds());
	}
	ASSERT_GE(fd, 0);
	/* Four pages, the sample's data, the weak slot and private data, the core's. */
	EXPECT_GE(failed, 8);
	EXPECT_EQ(4 * page_size, lseek(fd, 0, SEEK_END));
	close(fd);
	EXPECT_EQ(before, nr_fds());
	close(nthfd);
}

TEST_HARNESS_MAIN
