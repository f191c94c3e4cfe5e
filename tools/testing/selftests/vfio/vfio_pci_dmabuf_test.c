// SPDX-License-Identifier: GPL-2.0-only
/*
 * Tests for VFIO_DEVICE_FEATURE_DMA_BUF: export of BAR slices as dma-bufs.
 *
 * The device under test is given as for the other VFIO selftests (BDF on the
 * command line or in $VFIO_SELFTESTS_BDF). Its largest mmap-able BAR is used;
 * it must be at least 2 MiB. A RAM-backed BAR, e.g. QEMU's ivshmem-plain with
 * a memory-backend-file, lets the data tests check what was written.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/wait.h>

#include <linux/compiler.h>
#include <linux/dma-buf.h>
#include <linux/iommufd.h>
#include <linux/limits.h>
#include <linux/pci_regs.h>
#include <linux/sizes.h>
#include <linux/vfio.h>

#include <libvfio.h>

#include "kselftest_harness.h"

static const char *device_bdf;

/*
 * The data tests fill BAR offset [PATTERN_OFFSET, PATTERN_OFFSET + PATTERN_SIZE)
 * with pattern_word(i) at byte offset 8 * i, so whoever owns the BAR's backing
 * memory (e.g. the VMM) can verify the bytes from outside.
 */
#define PATTERN_OFFSET	SZ_1M
#define PATTERN_SIZE	SZ_64K
#define PATTERN_MAGIC	0x564649444d414255ULL	/* "UBAMDIFV" */

static inline __u64 pattern_word(__u64 i)
{
	return PATTERN_MAGIC ^ (i * 0x9e3779b97f4a7c15ULL);
}

#define TEST_IOVA	SZ_4G

FIXTURE(vfio_pci_dmabuf) {
	struct iommu *iommu;
	struct vfio_pci_device *device;
	int bar;		/* index of the BAR under test */
	__u64 bar_size;
	int absent_bar;		/* a BAR index with no resource, or -1 */
	int nfds;		/* open fds after setup */
};

FIXTURE_SETUP(vfio_pci_dmabuf)
{
	int i;

	self->iommu = iommu_init(default_iommu_mode);
	self->device = vfio_pci_device_init(device_bdf, self->iommu);

	self->bar = -1;
	self->absent_bar = -1;
	for (i = 0; i < PCI_STD_NUM_BARS; i++) {
		struct vfio_pci_bar *bar = &self->device->bars[i];

		if (!bar->info.size) {
			if (self->absent_bar < 0)
				self->absent_bar = i;
			continue;
		}
		if (!bar->vaddr || bar->info.size <= self->bar_size)
			continue;
		self->bar = i;
		self->bar_size = bar->info.size;
	}
	self->nfds = count_fds();
	if (self->bar < 0 || self->bar_size < 2 * PATTERN_OFFSET)
		SKIP(return, "%s: no mmap-able BAR of at least 2 MiB", device_bdf);
}

FIXTURE_TEARDOWN(vfio_pci_dmabuf)
{
	/* Whatever a test did, it must not have leaked a file descriptor. */
	EXPECT_EQ(self->nfds, count_fds());
	if (self->device)
		vfio_pci_device_cleanup(self->device);
	iommu_cleanup(self->iommu);
}

TEST_F(vfio_pci_dmabuf, export_one_range)
{
	struct vfio_region_dma_range r = { .offset = SZ_1M, .length = SZ_64K };
	char name[64];
	int fd;

	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0) TH_LOG("export: %s", strerror(-fd));

	/*
	 * It is a dma-buf of the requested size, exported by vfio-pci: by
	 * the exporter VFIO_DMABUF_EXPORTER names (vfio_pci_core for the C
	 * one, vfio_pci_core_rust), if set.
	 */
	ASSERT_EQ(0, fdinfo_get(fd, "exp_name", name, sizeof(name)));
	EXPECT_EQ(0, strncmp(name, "vfio_pci", strlen("vfio_pci"))) TH_LOG("exp_name %s", name);
	if (getenv("VFIO_DMABUF_EXPORTER"))
		EXPECT_STREQ(getenv("VFIO_DMABUF_EXPORTER"), name);
	EXPECT_EQ(SZ_64K, fdinfo_size(fd));
	EXPECT_EQ(SZ_64K, lseek(fd, 0, SEEK_END));

	/* open_flags: O_CLOEXEC reaches the new fd */
	EXPECT_EQ(FD_CLOEXEC, fcntl(fd, F_GETFD) & FD_CLOEXEC);
	EXPECT_EQ(O_RDWR, fcntl(fd, F_GETFL) & O_ACCMODE);
	ASSERT_EQ(0, close(fd));
}

TEST_F(vfio_pci_dmabuf, export_without_cloexec)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = getpagesize() };
	int fd;

	fd = dmabuf_feature(self->device->fd,
			    VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF,
			    self->bar, O_RDONLY, 0, &r, 1, 0);
	ASSERT_GE(fd, 0);
	EXPECT_EQ(0, fcntl(fd, F_GETFD) & FD_CLOEXEC);
	EXPECT_EQ(O_RDONLY, fcntl(fd, F_GETFL) & O_ACCMODE);
	ASSERT_EQ(0, close(fd));
}

TEST_F(vfio_pci_dmabuf, export_several_ranges)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r[] = {
		/* out of order, overlapping and adjacent ranges are all fine */
		{ .offset = self->bar_size - 4 * pg, .length = 4 * pg },
		{ .offset = 0, .length = pg },
		{ .offset = 0, .length = 2 * pg },
		{ .offset = 2 * pg, .length = 8 * pg },
	};
	int fd;

	fd = dmabuf_export(self->device->fd, self->bar, r, ARRAY_SIZE(r));
	ASSERT_GE(fd, 0) TH_LOG("export: %s", strerror(-fd));
	EXPECT_EQ(15 * pg, fdinfo_size(fd));
	ASSERT_EQ(0, close(fd));
}

TEST_F(vfio_pci_dmabuf, export_whole_bar_many_times)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = self->bar_size };
	int fds[64], i;

	/* Many dma-bufs over the same range coexist; all go away on close */
	for (i = 0; i < ARRAY_SIZE(fds); i++) {
		fds[i] = dmabuf_export(self->device->fd, self->bar, &r, 1);
		ASSERT_GE(fds[i], 0) TH_LOG("export %d: %s", i, strerror(-fds[i]));
		EXPECT_EQ(self->bar_size, fdinfo_size(fds[i]));
	}
	for (i = 0; i < ARRAY_SIZE(fds); i++)
		ASSERT_EQ(0, close(fds[i]));
}

TEST_F(vfio_pci_dmabuf, probe)
{
	/* PROBE for GET succeeds and creates nothing */
	ASSERT_EQ(0, dmabuf_feature(self->device->fd,
				    VFIO_DEVICE_FEATURE_PROBE |
				    VFIO_DEVICE_FEATURE_GET |
				    VFIO_DEVICE_FEATURE_DMA_BUF,
				    0, 0, 0, NULL, 0, 0));
	/* SET is not supported */
	ASSERT_EQ(-EINVAL, dmabuf_feature(self->device->fd,
					  VFIO_DEVICE_FEATURE_PROBE |
					  VFIO_DEVICE_FEATURE_SET |
					  VFIO_DEVICE_FEATURE_DMA_BUF,
					  0, 0, 0, NULL, 0, 0));
}

TEST_F(vfio_pci_dmabuf, bad_feature_flags)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = getpagesize() };
	int fd = self->device->fd;

	/* SET instead of GET */
	EXPECT_EQ(-EINVAL, dmabuf_feature(fd, VFIO_DEVICE_FEATURE_SET |
					  VFIO_DEVICE_FEATURE_DMA_BUF,
					  self->bar, O_RDWR, 0, &r, 1, 0));
	/* neither GET nor SET */
	EXPECT_EQ(-EINVAL, dmabuf_feature(fd, VFIO_DEVICE_FEATURE_DMA_BUF,
					  self->bar, O_RDWR, 0, &r, 1, 0));
	/* both GET and SET */
	EXPECT_EQ(-EINVAL, dmabuf_feature(fd, VFIO_DEVICE_FEATURE_GET |
					  VFIO_DEVICE_FEATURE_SET |
					  VFIO_DEVICE_FEATURE_DMA_BUF,
					  self->bar, O_RDWR, 0, &r, 1, 0));
	/* an unknown flag bit */
	EXPECT_EQ(-EINVAL, dmabuf_feature(fd, VFIO_DEVICE_FEATURE_GET |
					  VFIO_DEVICE_FEATURE_DMA_BUF | (1u << 20),
					  self->bar, O_RDWR, 0, &r, 1, 0));
}

TEST_F(vfio_pci_dmabuf, argsz_too_small)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = getpagesize() };
	long short_by = sizeof(struct vfio_device_feature_dma_buf) + sizeof(r);

	/* argsz must cover struct vfio_device_feature_dma_buf */
	EXPECT_EQ(-EINVAL, dmabuf_feature(self->device->fd,
					  VFIO_DEVICE_FEATURE_GET |
					  VFIO_DEVICE_FEATURE_DMA_BUF,
					  self->bar, O_RDWR, 0, &r, 1, -short_by));
}

/* argsz must cover the ranges too: nr_ranges cannot reach past it */
TEST_F(vfio_pci_dmabuf, argsz_short_of_ranges)
{
	struct vfio_region_dma_range r[] = {
		{ .offset = 0, .length = getpagesize() },
		{ .offset = 2 * getpagesize(), .length = getpagesize() },
	};

	EXPECT_EQ(-EINVAL, dmabuf_feature(self->device->fd,
					  VFIO_DEVICE_FEATURE_GET |
					  VFIO_DEVICE_FEATURE_DMA_BUF,
					  self->bar, O_RDWR, 0, r, 2, -1));
	EXPECT_EQ(-EINVAL, dmabuf_feature(self->device->fd,
					  VFIO_DEVICE_FEATURE_GET |
					  VFIO_DEVICE_FEATURE_DMA_BUF,
					  self->bar, O_RDWR, 0, r, 2, -(long)sizeof(r[0])));
	/* with argsz covering both, the same request works */
	ASSERT_EQ(0, close(dmabuf_export(self->device->fd, self->bar, r, 2)));
}

TEST_F(vfio_pci_dmabuf, nonzero_flags)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = getpagesize() };

	EXPECT_EQ(-EINVAL, dmabuf_feature(self->device->fd,
					  VFIO_DEVICE_FEATURE_GET |
					  VFIO_DEVICE_FEATURE_DMA_BUF,
					  self->bar, O_RDWR, 1, &r, 1, 0));
	EXPECT_EQ(-EINVAL, dmabuf_feature(self->device->fd,
					  VFIO_DEVICE_FEATURE_GET |
					  VFIO_DEVICE_FEATURE_DMA_BUF,
					  self->bar, O_RDWR, 1u << 31, &r, 1, 0));
}

TEST_F(vfio_pci_dmabuf, zero_ranges)
{
	EXPECT_EQ(-EINVAL, dmabuf_export(self->device->fd, self->bar, NULL, 0));
}

TEST_F(vfio_pci_dmabuf, zero_length)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r[] = {
		{ .offset = 0, .length = pg },
		{ .offset = pg, .length = 0 },
	};

	EXPECT_EQ(-EINVAL, dmabuf_export(self->device->fd, self->bar, &r[1], 1));
	/* a zero-length range anywhere in the list fails the export */
	EXPECT_EQ(-EINVAL, dmabuf_export(self->device->fd, self->bar, r, 2));
}

TEST_F(vfio_pci_dmabuf, unaligned_offset)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = pg / 2, .length = pg };

	EXPECT_EQ(-EINVAL, dmabuf_export(self->device->fd, self->bar, &r, 1));
	r.offset = 8;
	EXPECT_EQ(-EINVAL, dmabuf_export(self->device->fd, self->bar, &r, 1));
}

TEST_F(vfio_pci_dmabuf, unaligned_length)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = 0, .length = pg + 8 };

	EXPECT_EQ(-EINVAL, dmabuf_export(self->device->fd, self->bar, &r, 1));
	r.length = pg / 2;
	EXPECT_EQ(-EINVAL, dmabuf_export(self->device->fd, self->bar, &r, 1));
}

TEST_F(vfio_pci_dmabuf, past_bar_end)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r[] = {
		{ .offset = 0, .length = self->bar_size + pg },
		{ .offset = self->bar_size - pg, .length = 2 * pg },
		{ .offset = self->bar_size, .length = pg },
	};
	struct vfio_region_dma_range last = { .offset = self->bar_size - pg, .length = pg };
	int i, fd;

	for (i = 0; i < ARRAY_SIZE(r); i++)
		EXPECT_EQ(-EINVAL, dmabuf_export(self->device->fd, self->bar, &r[i], 1))
			TH_LOG("range %d", i);

	/* the last page of the BAR is fine */
	fd = dmabuf_export(self->device->fd, self->bar, &last, 1);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, close(fd));
}

TEST_F(vfio_pci_dmabuf, offset_overflow)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = -pg, .length = pg };

	/* BAR start + offset wraps around */
	EXPECT_EQ(-EOVERFLOW, dmabuf_export(self->device->fd, self->bar, &r, 1));
}

/*
 * A memory BAR smaller than a page (ivshmem's registers) can have no dma-buf,
 * and says so as any BAR would: a range past its end is EINVAL, one whose end
 * wraps around is EOVERFLOW.
 */
TEST_F(vfio_pci_dmabuf, small_bar)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = 0, .length = pg };
	__u64 start, flags;
	int i;

	for (i = 0; i < PCI_STD_NUM_BARS; i++) {
		bar_resource(device_bdf, i, &start, &flags);
		if (start && (flags & 0x200 /* IORESOURCE_MEM */) &&
		    self->device->bars[i].info.size < pg)
			break;
	}
	if (i == PCI_STD_NUM_BARS)
		SKIP(return, "%s has no memory BAR smaller than a page", device_bdf);

	EXPECT_EQ(-EINVAL, dmabuf_export(self->device->fd, i, &r, 1));
	r.offset = -pg;
	EXPECT_EQ(-EOVERFLOW, dmabuf_export(self->device->fd, i, &r, 1));
}

TEST_F(vfio_pci_dmabuf, total_length_overflow)
{
	struct vfio_region_dma_range r[] = {
		{ .offset = 0, .length = 1ULL << 63 },
		{ .offset = 0, .length = 1ULL << 63 },
	};

	/* the sum of the lengths does not fit in 64 bits */
	EXPECT_EQ(-EINVAL, dmabuf_export(self->device->fd, self->bar, r, 2));
	/* nor a single length that a DMA IOVA cannot describe */
	EXPECT_EQ(-EINVAL, dmabuf_export(self->device->fd, self->bar, r, 1));
}

TEST_F(vfio_pci_dmabuf, bad_region_index)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = getpagesize() };
	__u32 bad[] = { VFIO_PCI_ROM_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX,
			VFIO_PCI_NUM_REGIONS, 0xffffffff };
	int i;

	for (i = 0; i < ARRAY_SIZE(bad); i++)
		EXPECT_EQ(-ENODEV, dmabuf_export(self->device->fd, bad[i], &r, 1))
			TH_LOG("region %u", bad[i]);

	/* a BAR the device does not implement */
	if (self->absent_bar >= 0)
		EXPECT_EQ(-ENODEV, dmabuf_export(self->device->fd, self->absent_bar, &r, 1));
}

/* Data written through the BAR mmap is in the memory the dma-buf covers. */
TEST_F(vfio_pci_dmabuf, bar_write_readback)
{
	struct vfio_region_dma_range r = { .offset = PATTERN_OFFSET, .length = PATTERN_SIZE };
	struct vfio_pci_bar *bar = &self->device->bars[self->bar];
	__u64 *p = bar->vaddr + PATTERN_OFFSET;
	__u64 *buf, i, n = PATTERN_SIZE / sizeof(__u64);
	int fd;

	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);

	for (i = 0; i < n; i++)
		WRITE_ONCE(p[i], pattern_word(i));

	/* read back through the mmap and through the region's read() path */
	for (i = 0; i < n; i++)
		ASSERT_EQ(pattern_word(i), READ_ONCE(p[i])) TH_LOG("mmap word %llu", i);

	buf = malloc(PATTERN_SIZE);
	ASSERT_NE(NULL, buf);
	ASSERT_EQ(PATTERN_SIZE, pread(self->device->fd, buf, PATTERN_SIZE,
				      bar->info.offset + PATTERN_OFFSET));
	for (i = 0; i < n; i++)
		ASSERT_EQ(pattern_word(i), buf[i]) TH_LOG("pread word %llu", i);
	free(buf);

	/* the dma-buf still describes the range after the writes */
	EXPECT_EQ(PATTERN_SIZE, fdinfo_size(fd));
	ASSERT_EQ(0, close(fd));
}

/* A dma-buf stays valid after the device it came from is closed. */
TEST_F(vfio_pci_dmabuf, outlives_device_fd)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = SZ_64K };
	int fd, dfd;

	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);

	/* close the device under the fixture's feet and reopen it */
	dfd = self->device->fd;
	vfio_pci_device_cleanup(self->device);
	EXPECT_EQ(-1, fcntl(dfd, F_GETFD));
	EXPECT_EQ(SZ_64K, fdinfo_size(fd));
	ASSERT_EQ(0, close(fd));
	self->device = vfio_pci_device_init(device_bdf, self->iommu);
}

/*
 * An O_PATH fd of /proc/self/fd/N holds the dentry of a dma-buf, not its
 * file: after close(N) the file is freed (after an RCU grace period) while
 * the dma-buf and the exporter's state for it live on. Open one and return
 * it, with the dma-buf's own fd closed and its file freed.
 */
static int dmabuf_opath_only(int fd)
{
	char path[64];
	int opath;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	opath = open(path, O_PATH | O_CLOEXEC);
	if (opath < 0)
		return -errno;
	close(fd);
	/* struct file is freed one grace period after close() */
	usleep(500 * 1000);
	return opath;
}

/*
 * The device's walks over its dma-bufs (memory disable and enable, reset,
 * close) must not touch the freed file of such a dma-buf. What they would
 * touch is freed memory: the debug kernel's KASAN (with SLUB_RCU_DEBUG)
 * reports it, and the boot test fails on the report.
 */
TEST_F(vfio_pci_dmabuf, opath_survives_device_walks)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = SZ_64K };
	int fd, opath;

	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);
	opath = dmabuf_opath_only(fd);
	ASSERT_GE(opath, 0) TH_LOG("O_PATH open: %s", strerror(-opath));

	vfio_pci_cmd_clear(self->device, PCI_COMMAND_MEMORY);
	vfio_pci_cmd_set(self->device, PCI_COMMAND_MEMORY);
	if (!(self->device->info.flags & VFIO_DEVICE_FLAGS_RESET))
		TH_LOG("%s has no reset: memory disable and close only", device_bdf);
	else
		EXPECT_EQ(0, __vfio_pci_device_reset(self->device));
	vfio_pci_device_cleanup(self->device);
	self->device = NULL;

	ASSERT_EQ(0, close(opath));
	self->device = vfio_pci_device_init(device_bdf, self->iommu);
}

static int sysfs_write(const char *path, const char *val)
{
	int fd, ret = 0;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

/*
 * Such a dma-buf has no users left, so it must not keep a closed device
 * registered: unbinding the device from vfio-pci completes while the
 * O_PATH fd is still open.
 */
TEST_F(vfio_pci_dmabuf, opath_does_not_pin_device)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = SZ_64K };
	char unbind[128];
	int fd, opath, status, i;
	pid_t pid, done = 0;

	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);
	opath = dmabuf_opath_only(fd);
	ASSERT_GE(opath, 0) TH_LOG("O_PATH open: %s", strerror(-opath));
	vfio_pci_device_cleanup(self->device);
	self->device = NULL;

	/* unbind in a child: a kernel with the bug blocks it */
	snprintf(unbind, sizeof(unbind), "/sys/bus/pci/devices/%s/driver/unbind",
		 device_bdf);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		close(opath);
		_exit(sysfs_write(unbind, device_bdf) ? 1 : 0);
	}
	for (i = 0; i < 100 && !done; i++) {
		done = waitpid(pid, &status, WNOHANG);
		if (!done)
			usleep(100 * 1000);
	}
	EXPECT_EQ(pid, done) TH_LOG("unbind still blocked after 10 s");

	/* closing the O_PATH fd releases the dma-buf and unblocks it */
	ASSERT_EQ(0, close(opath));
	if (done != pid)
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));

	/* driver_override still names vfio-pci: bind it again */
	ASSERT_EQ(0, sysfs_write("/sys/bus/pci/drivers_probe", device_bdf));
	self->device = vfio_pci_device_init(device_bdf, self->iommu);
}

/*
 * iommufd imports a dma-buf of several ranges (IOMMU_IOAS_MAP_FILE), whole
 * or from an offset. In no-IOMMU mode, each IOVA page is checked to
 * translate to the right page of the BAR.
 */
TEST_F(vfio_pci_dmabuf, iommufd_map_several_ranges)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r[] = {
		{ .offset = 2 * pg, .length = 2 * pg },
		{ .offset = 8 * pg, .length = 3 * pg },
		{ .offset = 0, .length = pg },
	};
	const struct { __u64 start, length; } maps[] = {
		{ 0, 6 * pg },		/* all of it */
		{ pg, 4 * pg },		/* across the first two ranges */
		{ 5 * pg, pg },		/* the last range only */
	};
	__u64 base = bar_phys(device_bdf, self->bar), pa, i;
	bool check_pa = true;
	int fd, m, ret;

	ASSERT_NE(0, base);
	fd = dmabuf_export(self->device->fd, self->bar, r, ARRAY_SIZE(r));
	ASSERT_GE(fd, 0);

	for (m = 0; m < ARRAY_SIZE(maps); m++) {
		ret = ioas_map_file(self->iommu, fd, maps[m].start, maps[m].length,
				    TEST_IOVA);
		ASSERT_EQ(0, ret) TH_LOG("map %d: %s", m, strerror(-ret));

		for (i = 0; check_pa && i < maps[m].length; i += pg) {
			ret = ioas_get_pa(self->iommu, TEST_IOVA + i, &pa);
			if (ret == -EOPNOTSUPP || ret == -ENOTTY) {
				TH_LOG("not in no-IOMMU mode: translations not checked");
				check_pa = false;
				break;
			}
			ASSERT_EQ(0, ret);
			EXPECT_EQ(base + dmabuf_to_bar(r, ARRAY_SIZE(r),
						       maps[m].start + i), pa)
				TH_LOG("map %d, page %llu", m, i / pg);
		}
		ASSERT_EQ(0, ioas_unmap(self->iommu, TEST_IOVA, maps[m].length));
	}
	ASSERT_EQ(0, close(fd));
}

/*
 * Disabling memory decode revokes the iommufd import: the IOVAs no longer
 * translate and new imports fail until memory is enabled again. The
 * revoked import is not restored by re-enabling; it can still be unmapped.
 */
TEST_F(vfio_pci_dmabuf, iommufd_revoke_on_memory_disable)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r[] = {
		{ .offset = 4 * pg, .length = pg },
		{ .offset = 0, .length = 2 * pg },
	};
	__u64 pa, len = 3 * pg;
	bool noiommu;
	int fd, ret;

	fd = dmabuf_export(self->device->fd, self->bar, r, ARRAY_SIZE(r));
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, ioas_map_file(self->iommu, fd, 0, len, TEST_IOVA));
	ret = ioas_get_pa(self->iommu, TEST_IOVA, &pa);
	noiommu = ret != -EOPNOTSUPP && ret != -ENOTTY;
	if (noiommu)
		ASSERT_EQ(0, ret);

	vfio_pci_cmd_clear(self->device, PCI_COMMAND_MEMORY);

	if (noiommu)
		EXPECT_EQ(-EINVAL, ioas_get_pa(self->iommu, TEST_IOVA, &pa));
	EXPECT_EQ(-ENODEV, ioas_map_file(self->iommu, fd, 0, len, TEST_IOVA + len));

	vfio_pci_cmd_set(self->device, PCI_COMMAND_MEMORY);

	/* the old import stays revoked, a new one works */
	if (noiommu)
		EXPECT_EQ(-EINVAL, ioas_get_pa(self->iommu, TEST_IOVA, &pa));
	ASSERT_EQ(0, ioas_map_file(self->iommu, fd, 0, len, TEST_IOVA + len));
	if (noiommu) {
		ASSERT_EQ(0, ioas_get_pa(self->iommu, TEST_IOVA + len, &pa));
		EXPECT_EQ(bar_phys(device_bdf, self->bar) + 4 * pg, pa);
	}

	EXPECT_EQ(0, ioas_unmap(self->iommu, TEST_IOVA, len));
	EXPECT_EQ(0, ioas_unmap(self->iommu, TEST_IOVA + len, len));
	ASSERT_EQ(0, close(fd));
}

/*
 * A dma-buf of many single-page ranges in reverse order: iommufd reads it
 * in several batches (no two PFNs merge), each starting in the middle of
 * the range list. Every IOVA page must still land on the right BAR page.
 */
TEST_F(vfio_pci_dmabuf, iommufd_map_many_ranges)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range *r;
	__u64 bar = bar_phys(device_bdf, self->bar), pa;
	int fd, i, n, ret;

	n = self->bar_size / pg;
	if (n > 2048)
		n = 2048;
	r = calloc(n, sizeof(*r));
	ASSERT_NE(NULL, r);
	for (i = 0; i < n; i++) {
		r[i].offset = (n - 1 - i) * pg;
		r[i].length = pg;
	}
	fd = dmabuf_export(self->device->fd, self->bar, r, n);
	ASSERT_GE(fd, 0) TH_LOG("export of %d ranges: %s", n, strerror(-fd));
	ASSERT_EQ(0, ioas_map_file(self->iommu, fd, 0, n * pg, TEST_IOVA));

	ret = ioas_get_pa(self->iommu, TEST_IOVA, &pa);
	if (ret != -EOPNOTSUPP && ret != -ENOTTY) {
		for (i = 0; i < n; i++) {
			ASSERT_EQ(0, ioas_get_pa(self->iommu, TEST_IOVA + i * pg, &pa));
			ASSERT_EQ(bar + r[i].offset, pa) TH_LOG("IOVA page %d", i);
		}
	}
	EXPECT_EQ(0, ioas_unmap(self->iommu, TEST_IOVA, n * pg));
	ASSERT_EQ(0, close(fd));
	free(r);
}

/* iommufd cannot import more than the dma-buf holds. */
TEST_F(vfio_pci_dmabuf, iommufd_map_past_end)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = 0, .length = 2 * pg };
	int fd;

	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);
	EXPECT_EQ(-EINVAL, ioas_map_file(self->iommu, fd, pg, 2 * pg, TEST_IOVA));
	EXPECT_EQ(-EINVAL, ioas_map_file(self->iommu, fd, 0, 3 * pg, TEST_IOVA));
	ASSERT_EQ(0, close(fd));
}

/* Ranges of the BAR, out of order, each a distinct pattern per page. */
static void fill_pages(struct vfio_pci_bar *bar, __u64 off, __u64 len, __u64 tag)
{
	const __u64 pg = getpagesize();
	__u64 i;

	for (i = 0; i < len; i += pg)
		WRITE_ONCE(*(__u64 *)(bar->vaddr + off + i), tag + off + i);
}

/*
 * mmap() of a dma-buf of several ranges, whole and from offsets: every page
 * shows the BAR page the dma-buf's layout puts there.
 */
TEST_F(vfio_pci_dmabuf, mmap_several_ranges)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r[] = {
		{ .offset = 4 * pg, .length = 2 * pg },
		{ .offset = 0, .length = pg },
		{ .offset = 8 * pg, .length = 3 * pg },
	};
	struct vfio_pci_bar *bar = &self->device->bars[self->bar];
	const __u64 tag = 0x7a9e000000000000ULL, len = 6 * pg;
	__u64 *p, off;
	int fd, i;

	for (i = 0; i < ARRAY_SIZE(r); i++)
		fill_pages(bar, r[i].offset, r[i].length, tag);
	fd = dmabuf_export(self->device->fd, self->bar, r, ARRAY_SIZE(r));
	ASSERT_GE(fd, 0);

	p = dmabuf_mmap(fd, len, 0);
	ASSERT_NE(MAP_FAILED, p);
	for (off = 0; off < len; off += pg)
		EXPECT_EQ(tag + dmabuf_to_bar(r, 3, off), READ_ONCE(p[off / 8]))
			TH_LOG("dma-buf page %llu", off / pg);
	ASSERT_EQ(0, munmap(p, len));

	/* from the second page of the first range into the third range */
	p = dmabuf_mmap(fd, 3 * pg, pg);
	ASSERT_NE(MAP_FAILED, p);
	for (off = 0; off < 3 * pg; off += pg)
		EXPECT_EQ(tag + dmabuf_to_bar(r, 3, pg + off), READ_ONCE(p[off / 8]));
	ASSERT_EQ(0, munmap(p, 3 * pg));

	/* the last page alone */
	p = dmabuf_mmap(fd, pg, len - pg);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(tag + 10 * pg, READ_ONCE(*p));
	ASSERT_EQ(0, munmap(p, pg));
	ASSERT_EQ(0, close(fd));
}

/* Writes through a dma-buf mmap land in the BAR, seen through its mmap. */
TEST_F(vfio_pci_dmabuf, mmap_write_bar_readback)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r[] = {
		{ .offset = 3 * pg, .length = pg },
		{ .offset = 12 * pg, .length = 2 * pg },
	};
	struct vfio_pci_bar *bar = &self->device->bars[self->bar];
	__u64 *p, i, n = 3 * pg / 8;
	int fd;

	fd = dmabuf_export(self->device->fd, self->bar, r, ARRAY_SIZE(r));
	ASSERT_GE(fd, 0);
	p = dmabuf_mmap(fd, 3 * pg, 0);
	ASSERT_NE(MAP_FAILED, p);
	for (i = 0; i < n; i++)
		WRITE_ONCE(p[i], pattern_word(i) ^ 0x5a5a);
	for (i = 0; i < n; i++)
		ASSERT_EQ(pattern_word(i) ^ 0x5a5a,
			  READ_ONCE(*(__u64 *)(bar->vaddr + dmabuf_to_bar(r, 2, 8 * i))))
			TH_LOG("word %llu", i);
	ASSERT_EQ(0, munmap(p, 3 * pg));
	ASSERT_EQ(0, close(fd));
}

/* Two mmaps of one dma-buf, and one of a second dma-buf of the same range. */
TEST_F(vfio_pci_dmabuf, mmap_aliases)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = 16 * pg, .length = 2 * pg };
	__u64 *a, *b, *c;
	int fd, fd2;

	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);
	fd2 = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd2, 0);
	a = dmabuf_mmap(fd, 2 * pg, 0);
	b = dmabuf_mmap(fd, 2 * pg, 0);
	c = dmabuf_mmap(fd2, 2 * pg, 0);
	ASSERT_NE(MAP_FAILED, a);
	ASSERT_NE(MAP_FAILED, b);
	ASSERT_NE(MAP_FAILED, c);

	WRITE_ONCE(a[pg / 8 + 3], 0x1122334455667788ULL);
	EXPECT_EQ(0x1122334455667788ULL, READ_ONCE(b[pg / 8 + 3]));
	EXPECT_EQ(0x1122334455667788ULL, READ_ONCE(c[pg / 8 + 3]));
	WRITE_ONCE(c[1], 0x8877665544332211ULL);
	EXPECT_EQ(0x8877665544332211ULL, READ_ONCE(a[1]));

	/* revoking one dma-buf leaves the other's mapping alone */
	ASSERT_EQ(0, dmabuf_revoke(self->device->fd, fd));
	EXPECT_TRUE(sigbus(&a[1]));
	EXPECT_TRUE(sigbus(&b[1]));
	EXPECT_FALSE(sigbus(&c[1]));

	munmap(a, 2 * pg);
	munmap(b, 2 * pg);
	munmap(c, 2 * pg);
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, close(fd2));
}

TEST_F(vfio_pci_dmabuf, mmap_bad_requests)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = 0, .length = 2 * pg };
	int fd;

	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);
	/* private mappings */
	EXPECT_EQ(MAP_FAILED, mmap(NULL, pg, PROT_READ, MAP_PRIVATE, fd, 0));
	EXPECT_EQ(EINVAL, errno);
	/* beyond the end, from the start and from an offset */
	EXPECT_EQ(MAP_FAILED, dmabuf_mmap(fd, 3 * pg, 0));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(MAP_FAILED, dmabuf_mmap(fd, 2 * pg, pg));
	EXPECT_EQ(EINVAL, errno);
	ASSERT_EQ(0, close(fd));
}

/*
 * A dma-buf exported O_RDONLY, as VMMs hand them out, maps shared for
 * reading (the core clears VM_SHARED of such a mapping, leaving only
 * VM_MAYSHARE) and never for writing.
 */
TEST_F(vfio_pci_dmabuf, mmap_read_only)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = 40 * pg, .length = pg };
	__u64 *bar = self->device->bars[self->bar].vaddr + r.offset;
	__u64 *p, val;
	int fd;

	fd = dmabuf_feature(self->device->fd,
			    VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF,
			    self->bar, O_RDONLY | O_CLOEXEC, 0, &r, 1, 0);
	ASSERT_GE(fd, 0);
	WRITE_ONCE(bar[3], 0x5eadULL);

	p = mmap(NULL, pg, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p) TH_LOG("PROT_READ MAP_SHARED: %s", strerror(errno));
	ASSERT_FALSE(read_sigbus(&p[3], &val));
	EXPECT_EQ(0x5eadULL, val);
	/* no way to write: not at mmap() time, not with mprotect() */
	EXPECT_EQ(-1, mprotect(p, pg, PROT_READ | PROT_WRITE));
	EXPECT_EQ(EACCES, errno);
	EXPECT_EQ(MAP_FAILED, dmabuf_mmap(fd, pg, 0));
	EXPECT_EQ(EACCES, errno);
	/* private (copy-on-write) mappings stay refused */
	EXPECT_EQ(MAP_FAILED, mmap(NULL, pg, PROT_READ, MAP_PRIVATE, fd, 0));
	EXPECT_EQ(EINVAL, errno);

	munmap(p, pg);
	ASSERT_EQ(0, close(fd));
}

/*
 * A 2 MiB aligned dma-buf of 4 MiB, mapped 2 MiB aligned, faults in PMD
 * sized pieces: one fault per 2 MiB, not per page.
 */
TEST_F(vfio_pci_dmabuf, mmap_huge_faults)
{
	struct vfio_region_dma_range r = { .offset = SZ_4M, .length = SZ_4M };
	const __u64 pg = getpagesize();
	char *area, *p;
	long faults;
	__u64 off;
	int fd;

	if (self->bar_size < SZ_8M || bar_phys(device_bdf, self->bar) % SZ_2M)
		SKIP(return, "needs a 2 MiB aligned BAR of at least 8 MiB");
	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);

	/* reserve, then map at a 2 MiB aligned address inside */
	area = mmap(NULL, SZ_4M + SZ_2M, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, area);
	p = (char *)(((unsigned long)area + SZ_2M - 1) & ~(SZ_2M - 1UL));
	ASSERT_EQ(p, mmap(p, SZ_4M, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0));

	faults = minor_faults();
	for (off = 0; off < SZ_4M; off += pg)
		READ_ONCE(*(__u64 *)(p + off));
	faults = minor_faults() - faults;
	TH_LOG("%ld faults for 4 MiB", faults);
	EXPECT_LE(faults, 2);
	EXPECT_GE(faults, 1);

	munmap(area, SZ_4M + SZ_2M);
	ASSERT_EQ(0, close(fd));
}

/*
 * Mappings that a huge entry cannot cover fault in pages: a 2 MiB dma-buf
 * mapped one page off 2 MiB alignment, and a small one mapped just after a
 * 2 MiB boundary (the huge fault sees an address below the VMA).
 */
TEST_F(vfio_pci_dmabuf, mmap_unaligned)
{
	struct vfio_region_dma_range big = { .offset = SZ_4M, .length = SZ_2M };
	struct vfio_region_dma_range small = { .offset = SZ_8M, .length = SZ_64K };
	const __u64 pg = getpagesize();
	char *area, *base, *p;
	int fd, fd2;
	long faults;
	__u64 off;

	if (self->bar_size < SZ_16M)
		SKIP(return, "needs a BAR of at least 16 MiB");
	fd = dmabuf_export(self->device->fd, self->bar, &big, 1);
	ASSERT_GE(fd, 0);
	fd2 = dmabuf_export(self->device->fd, self->bar, &small, 1);
	ASSERT_GE(fd2, 0);
	area = mmap(NULL, 3 * SZ_2M + SZ_4M, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, area);
	base = (char *)(((unsigned long)area + SZ_2M - 1) & ~(SZ_2M - 1UL));

	p = base + pg;
	ASSERT_EQ(p, mmap(p, SZ_2M, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0));
	faults = minor_faults();
	for (off = 0; off < SZ_2M; off += pg)
		WRITE_ONCE(*(__u64 *)(p + off), off);
	faults = minor_faults() - faults;
	EXPECT_GE(faults, SZ_2M / pg);
	for (off = 0; off < SZ_2M; off += pg)
		ASSERT_EQ(off, READ_ONCE(*(__u64 *)(p + off)));

	p = base + SZ_4M + SZ_64K;
	ASSERT_EQ(p, mmap(p, SZ_64K, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd2, 0));
	for (off = 0; off < SZ_64K; off += pg)
		EXPECT_FALSE(sigbus((__u64 *)(p + off))) TH_LOG("page %llu", off / pg);

	munmap(area, 3 * SZ_2M + SZ_4M);
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, close(fd2));
}

/* Whether faults can map 2 MiB entries: 4 KiB pages and PMD-sized THP */
static bool pmd_is_2m(void)
{
	char buf[32] = "";
	FILE *f;

	if (getpagesize() != 4096)
		return false;
	f = fopen("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", "r");
	if (!f)
		return false;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	return strtoul(buf, NULL, 0) == SZ_2M;
}

/* Reads every page of [@p, @p + @len); returns the faults it took. */
static long touch_pages(char *p, __u64 len)
{
	long faults = minor_faults();
	__u64 off;

	for (off = 0; off < len; off += getpagesize())
		READ_ONCE(*(__u64 *)(p + off));
	return minor_faults() - faults;
}

/*
 * Reads the first and the last page of each @block of [@p, @p + @len);
 * returns the faults it took: one per block mapped with entries of
 * @block or more, two per block mapped with pages.
 */
static long touch_blocks(char *p, __u64 len, __u64 block)
{
	long faults = minor_faults();
	__u64 off;

	for (off = 0; off < len; off += block) {
		READ_ONCE(*(__u64 *)(p + off));
		READ_ONCE(*(__u64 *)(p + off + block - getpagesize()));
	}
	return minor_faults() - faults;
}

/*
 * Whether @faults is what touch_blocks(@p, @size, SZ_2M) takes over a
 * mapping of a whole BAR of @size bytes placed for huge entries: one per
 * 2 MiB, or one per 1 GiB where the mapping is 1 GiB aligned and the
 * architecture maps MMIO with PUD entries (x86-64 does).
 */
static bool huge_faults_ok(char *p, __u64 size, long faults)
{
	if (size < SZ_1G || (unsigned long)p % SZ_1G)
		return faults == size / SZ_2M;
#ifdef __x86_64__
	return faults == size / SZ_1G;
#else
	return faults == size / SZ_1G || faults == size / SZ_2M;
#endif
}

/*
 * mmap(NULL), as users call it, places a dma-buf mapping where its faults
 * can be PMD sized: 4 MiB at offset 0 of a 2 MiB aligned range takes two
 * faults. A mapping from one page in lies one page off 2 MiB alignment,
 * so that its second block still takes one fault, and an odd length only
 * adds pages at the end. Of two ranges, the second one aligned as its
 * offset in the dma-buf is, the second gets PMD entries. A range one page
 * off 2 MiB alignment in the BAR is placed for nothing in particular, and
 * reads the BAR. A mapping of the whole BAR takes one fault per 2 MiB, or
 * per 1 GiB where the BAR is that big and PUD entries map MMIO.
 */
TEST_F(vfio_pci_dmabuf, mmap_null_placement)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = SZ_4M, .length = SZ_4M + pg };
	struct vfio_region_dma_range two[] = {
		{ .offset = SZ_8M + pg, .length = SZ_2M },
		{ .offset = SZ_4M, .length = SZ_4M },
	};
	struct vfio_region_dma_range odd = { .offset = SZ_8M + pg, .length = SZ_4M };
	void *bar = self->device->bars[self->bar].vaddr;
	char *p;
	__u64 off;
	long faults;
	int fd;

	if (self->bar_size < SZ_16M || bar_phys(device_bdf, self->bar) % SZ_2M)
		SKIP(return, "needs a 2 MiB aligned BAR of at least 16 MiB");
	if (!pmd_is_2m())
		SKIP(return, "needs 4 KiB pages and 2 MiB PMD entries");
	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);

	p = mmap(NULL, SZ_4M, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(0, (unsigned long)p % SZ_2M) TH_LOG("placed at %p", p);
	EXPECT_EQ(2, touch_pages(p, SZ_4M));
	ASSERT_EQ(0, munmap(p, SZ_4M));

	p = mmap(NULL, SZ_4M - pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, pg);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(pg, (unsigned long)p % SZ_2M) TH_LOG("placed at %p", p);
	EXPECT_EQ(SZ_2M / pg, touch_pages(p, SZ_4M - pg));
	ASSERT_EQ(0, munmap(p, SZ_4M - pg));

	p = mmap(NULL, SZ_4M + pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(0, (unsigned long)p % SZ_2M) TH_LOG("placed at %p", p);
	EXPECT_EQ(3, touch_pages(p, SZ_4M + pg));
	ASSERT_EQ(0, munmap(p, SZ_4M + pg));
	ASSERT_EQ(0, close(fd));

	/* 512 pages of the first range, two PMD entries of the second */
	fd = dmabuf_export(self->device->fd, self->bar, two, 2);
	ASSERT_GE(fd, 0);
	p = mmap(NULL, SZ_2M + SZ_4M, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(0, (unsigned long)p % SZ_2M) TH_LOG("placed at %p", p);
	EXPECT_EQ(SZ_2M / pg + 2, touch_pages(p, SZ_2M + SZ_4M));
	ASSERT_EQ(0, munmap(p, SZ_2M + SZ_4M));
	ASSERT_EQ(0, close(fd));

	fd = dmabuf_export(self->device->fd, self->bar, &odd, 1);
	ASSERT_GE(fd, 0);
	p = mmap(NULL, SZ_4M, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	for (off = 0; off < SZ_4M; off += pg)
		WRITE_ONCE(*(__u64 *)(bar + odd.offset + off), off ^ PATTERN_MAGIC);
	faults = minor_faults();
	for (off = 0; off < SZ_4M; off += pg)
		ASSERT_EQ(off ^ PATTERN_MAGIC, READ_ONCE(*(__u64 *)(p + off)));
	faults = minor_faults() - faults;
	/* pages, unless chance put it one page off 2 MiB alignment too */
	if (((unsigned long)p - pg) % SZ_2M)
		EXPECT_EQ(SZ_4M / pg, faults);
	ASSERT_EQ(0, munmap(p, SZ_4M));
	ASSERT_EQ(0, close(fd));

	/* the whole BAR: PMD entries, or PUD entries where it is 1 GiB */
	r.offset = 0;
	r.length = self->bar_size;
	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);
	p = mmap(NULL, r.length, PROT_READ, MAP_SHARED, fd, 0);
	ASSERT_NE(MAP_FAILED, p);
	faults = touch_blocks(p, r.length, SZ_2M);
	EXPECT_TRUE(huge_faults_ok(p, r.length, faults))
		TH_LOG("%ld faults at %p", faults, p);
	ASSERT_EQ(0, munmap(p, r.length));
	ASSERT_EQ(0, close(fd));
}

/*
 * mmap(NULL) of a BAR through the device fd is placed as a dma-buf's is:
 * 4 MiB from a 2 MiB aligned offset takes two faults, also when mapped
 * again right below the first mapping and a page (where a page-aligned
 * placement would put it one page off); from one page in, 512; the whole
 * BAR one per 2 MiB, or per 1 GiB where the mapping got 1 GiB aligned
 * and the architecture maps MMIO with PUD entries (x86-64 does).
 */
TEST_F(vfio_pci_dmabuf, bar_mmap_null_placement)
{
	const __u64 pg = getpagesize();
	const __u64 region = self->device->bars[self->bar].info.offset;
	const int dev = self->device->fd;
	char *p, *q, *gap;
	long faults;

	if (self->bar_size < SZ_16M || bar_phys(device_bdf, self->bar) % SZ_2M)
		SKIP(return, "needs a 2 MiB aligned BAR of at least 16 MiB");
	if (!pmd_is_2m())
		SKIP(return, "needs 4 KiB pages and 2 MiB PMD entries");

	p = mmap(NULL, SZ_4M, PROT_READ | PROT_WRITE, MAP_SHARED, dev,
		 region + SZ_4M);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(0, (unsigned long)p % SZ_2M) TH_LOG("placed at %p", p);
	EXPECT_EQ(2, touch_pages(p, SZ_4M));
	/* a page right below it, so that the next search starts off alignment */
	gap = mmap(p - pg, pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS |
		   MAP_FIXED_NOREPLACE, -1, 0);
	q = mmap(NULL, SZ_4M, PROT_READ | PROT_WRITE, MAP_SHARED, dev,
		 region + SZ_4M);
	ASSERT_NE(MAP_FAILED, q);
	EXPECT_EQ(0, (unsigned long)q % SZ_2M) TH_LOG("placed at %p", q);
	EXPECT_EQ(2, touch_pages(q, SZ_4M));
	ASSERT_EQ(0, munmap(q, SZ_4M));
	if (gap != MAP_FAILED)
		ASSERT_EQ(0, munmap(gap, pg));
	ASSERT_EQ(0, munmap(p, SZ_4M));

	p = mmap(NULL, SZ_4M - pg, PROT_READ | PROT_WRITE, MAP_SHARED, dev,
		 region + SZ_4M + pg);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(pg, (unsigned long)p % SZ_2M) TH_LOG("placed at %p", p);
	EXPECT_EQ(SZ_2M / pg, touch_pages(p, SZ_4M - pg));
	ASSERT_EQ(0, munmap(p, SZ_4M - pg));

	p = mmap(NULL, self->bar_size, PROT_READ | PROT_WRITE, MAP_SHARED, dev,
		 region);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(0, (unsigned long)p % SZ_2M) TH_LOG("placed at %p", p);
	faults = touch_blocks(p, self->bar_size, SZ_2M);
	EXPECT_TRUE(huge_faults_ok(p, self->bar_size, faults))
		TH_LOG("%ld faults at %p", faults, p);
	ASSERT_EQ(0, munmap(p, self->bar_size));
}

/*
 * Revoke zaps every mapping for good: accesses raise SIGBUS, new mmaps,
 * imports and a second revoke fail, also after memory decode comes back.
 */
TEST_F(vfio_pci_dmabuf, revoke_is_permanent)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = 20 * pg, .length = 2 * pg };
	__u64 *p, *q;
	int fd;

	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);
	p = dmabuf_mmap(fd, 2 * pg, 0);
	q = dmabuf_mmap(fd, pg, pg);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_NE(MAP_FAILED, q);
	WRITE_ONCE(p[0], 42);
	WRITE_ONCE(q[0], 43);
	EXPECT_FALSE(sigbus(&p[0]));

	ASSERT_EQ(0, dmabuf_revoke(self->device->fd, fd));
	/* mapped pages and not yet faulted ones alike */
	EXPECT_TRUE(sigbus(&p[0]));
	EXPECT_TRUE(sigbus(&p[pg / 8]));
	EXPECT_TRUE(sigbus(&q[0]));
	EXPECT_EQ(MAP_FAILED, dmabuf_mmap(fd, pg, 0));
	EXPECT_EQ(ENODEV, errno);
	EXPECT_EQ(-ENODEV, ioas_map_file(self->iommu, fd, 0, 2 * pg, TEST_IOVA));
	EXPECT_EQ(-EBADFD, dmabuf_revoke(self->device->fd, fd));

	/* a temporary revoke ending does not bring it back */
	vfio_pci_cmd_clear(self->device, PCI_COMMAND_MEMORY);
	vfio_pci_cmd_set(self->device, PCI_COMMAND_MEMORY);
	EXPECT_TRUE(sigbus(&p[0]));
	EXPECT_EQ(MAP_FAILED, dmabuf_mmap(fd, pg, 0));

	/* the memory is still there for a new dma-buf */
	munmap(p, 2 * pg);
	munmap(q, pg);
	ASSERT_EQ(0, close(fd));
	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);
	p = dmabuf_mmap(fd, 2 * pg, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(42, READ_ONCE(p[0]));
	EXPECT_EQ(43, READ_ONCE(p[pg / 8]));
	munmap(p, 2 * pg);
	ASSERT_EQ(0, close(fd));
}

/* sw_sync (CONFIG_SW_SYNC, in debugfs): fences that userspace signals */
struct sw_sync_create_fence_data {
	__u32 value;
	char name[32];
	__s32 fence;
};

#define SW_SYNC_IOC_CREATE_FENCE	_IOWR('W', 0, struct sw_sync_create_fence_data)
#define SW_SYNC_IOC_INC			_IOW('W', 1, __u32)

struct slow_revoke {
	int device_fd, fd, timeline;
	pid_t tid;		/* of the revoking thread */
	int ret;		/* of the revoke */
	int signalled;		/* set just before the fence is signalled */
	int signalled_at_return;
};

static void *slow_revoke_thread(void *arg)
{
	struct slow_revoke *w = arg;

	WRITE_ONCE(w->tid, gettid());
	w->ret = dmabuf_revoke(w->device_fd, w->fd);
	w->signalled_at_return = READ_ONCE(w->signalled);
	return NULL;
}

static void *fence_signal_thread(void *arg)
{
	struct slow_revoke *w = arg;
	__u32 one = 1;

	sleep(2);
	WRITE_ONCE(w->signalled, 1);
	ioctl(w->timeline, SW_SYNC_IOC_INC, &one);
	return NULL;
}

/* Whether thread @tid of this process sleeps uninterruptibly. */
static bool task_in_d_state(pid_t tid)
{
	char path[64], buf[256], *p;
	bool d = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	f = fopen(path, "r");
	if (!f)
		return false;
	if (fgets(buf, sizeof(buf), f)) {
		p = strrchr(buf, ')');
		d = p && p[1] == ' ' && p[2] == 'D';
	}
	fclose(f);
	return d;
}

/*
 * REVOKE waits for the importers, here for a fence that userspace holds
 * back, but not with the device's memory_lock held: a fault on the BAR
 * mmap (which takes that lock) completes while the revoke still waits.
 * The dma-buf's own mmap is gone at once. Taking the device away (memory
 * disable) waits for the importers, which may still be at work.
 */
TEST_F(vfio_pci_dmabuf, revoke_waits_without_stalling_device)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = 0, .length = pg };
	struct sw_sync_create_fence_data fence = { .value = 1, .name = "revoke" };
	struct dma_buf_import_sync_file import = { .flags = DMA_BUF_SYNC_WRITE };
	struct slow_revoke w = { .device_fd = self->device->fd };
	__u64 *bar = self->device->bars[self->bar].vaddr + 60 * pg;
	pthread_t revoker, signaller;
	__u64 *p;
	int i;

	w.timeline = open("/sys/kernel/debug/sync/sw_sync", O_RDWR | O_CLOEXEC);
	if (w.timeline < 0)
		SKIP(return, "no sw_sync timeline (CONFIG_SW_SYNC, debugfs)");
	w.fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(w.fd, 0);
	ASSERT_EQ(0, ioctl(w.timeline, SW_SYNC_IOC_CREATE_FENCE, &fence));
	import.fd = fence.fence;
	ASSERT_EQ(0, ioctl(w.fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &import));
	ASSERT_EQ(0, close(fence.fence));
	p = dmabuf_mmap(w.fd, pg, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_FALSE(sigbus(p));

	ASSERT_EQ(0, pthread_create(&revoker, NULL, slow_revoke_thread, &w));
	for (i = 0; i < 100 && !(READ_ONCE(w.tid) && task_in_d_state(w.tid)); i++)
		usleep(50 * 1000);
	ASSERT_TRUE(task_in_d_state(w.tid)) TH_LOG("the revoke does not wait");
	ASSERT_EQ(0, pthread_create(&signaller, NULL, fence_signal_thread, &w));

	/* the first access to this BAR page faults, under memory_lock */
	WRITE_ONCE(bar[0], 0x1dULL);
	EXPECT_EQ(0, READ_ONCE(w.signalled)) TH_LOG("the BAR fault waited for the revoke");
	/* the dma-buf's mmap is zapped already */
	EXPECT_TRUE(sigbus(p));
	EXPECT_EQ(0, READ_ONCE(w.signalled));
	/* memory disable waits for the revoke's importers */
	vfio_pci_cmd_clear(self->device, PCI_COMMAND_MEMORY);
	EXPECT_EQ(1, READ_ONCE(w.signalled)) TH_LOG("memory disable did not wait");
	vfio_pci_cmd_set(self->device, PCI_COMMAND_MEMORY);

	pthread_join(signaller, NULL);
	pthread_join(revoker, NULL);
	EXPECT_EQ(0, w.ret);
	/* and the revoke did wait for the fence */
	EXPECT_EQ(1, w.signalled_at_return);
	EXPECT_EQ(0x1dULL, READ_ONCE(bar[0]));
	munmap(p, pg);
	ASSERT_EQ(0, close(w.fd));
	ASSERT_EQ(0, close(w.timeline));
}

/*
 * VFIO type1 would map the PFNs of a dma-buf's mmap into the IOMMU with no
 * way to take them back: a client with the dma-buf fd and a device of its
 * own would keep DMA access to the BAR after a revoke. It must refuse, and
 * still map a BAR mmap (P2P between the devices of a container).
 * $VFIO_DMABUF_TYPE1_BDF names that other device, bound to vfio-pci.
 */
TEST_F(vfio_pci_dmabuf, type1_refuses_dmabuf_mmap)
{
	const char *bdf2 = getenv("VFIO_DMABUF_TYPE1_BDF");
	struct vfio_region_dma_range r = { .offset = 0, .length = SZ_2M };
	struct dma_region region = { .iova = SZ_4G, .size = SZ_2M };
	struct dma_region bar = { .iova = 2 * SZ_4G, .size = SZ_2M };
	struct vfio_pci_device *device2;
	struct iommu *type1;
	void *p;
	int fd;

	if (!bdf2)
		SKIP(return, "no second device in $VFIO_DMABUF_TYPE1_BDF");
	type1 = iommu_init("vfio_type1_iommu");
	device2 = vfio_pci_device_init(bdf2, type1);
	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);
	p = dmabuf_mmap(fd, SZ_2M, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_FALSE(sigbus(p));

	region.vaddr = p;
	EXPECT_EQ(-EFAULT, __iommu_map(type1, &region));
	/* the device's own BAR mmap, the same memory, still maps */
	bar.vaddr = self->device->bars[self->bar].vaddr;
	EXPECT_EQ(0, __iommu_map(type1, &bar));
	EXPECT_EQ(0, __iommu_unmap_all(type1, NULL));

	munmap(p, SZ_2M);
	ASSERT_EQ(0, close(fd));
	vfio_pci_device_cleanup(device2);
	iommu_cleanup(type1);
}

/* Revoke reaches importers: iommufd's import of the dma-buf stops working. */
TEST_F(vfio_pci_dmabuf, revoke_invalidates_import)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = 0, .length = 2 * pg };
	__u64 pa;
	int fd, ret;

	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(0, ioas_map_file(self->iommu, fd, 0, 2 * pg, TEST_IOVA));
	ret = ioas_get_pa(self->iommu, TEST_IOVA, &pa);
	if (ret != -EOPNOTSUPP && ret != -ENOTTY) {
		ASSERT_EQ(0, ret);
		ASSERT_EQ(0, dmabuf_revoke(self->device->fd, fd));
		EXPECT_EQ(-EINVAL, ioas_get_pa(self->iommu, TEST_IOVA, &pa));
	} else {
		ASSERT_EQ(0, dmabuf_revoke(self->device->fd, fd));
	}
	EXPECT_EQ(-ENODEV, ioas_map_file(self->iommu, fd, 0, 2 * pg, TEST_IOVA + SZ_1M));
	EXPECT_EQ(0, ioas_unmap(self->iommu, TEST_IOVA, 2 * pg));
	ASSERT_EQ(0, close(fd));
}

TEST_F(vfio_pci_dmabuf, revoke_bad_fds)
{
	int fd = eventfd(0, EFD_CLOEXEC), other;

	ASSERT_GE(fd, 0);
	EXPECT_EQ(-EINVAL, dmabuf_revoke(self->device->fd, fd));
	EXPECT_EQ(-EINVAL, dmabuf_memattr(self->device->fd, fd,
					  VFIO_DEVICE_DMA_BUF_MEMATTR_WC));
	ASSERT_EQ(0, close(fd));
	/* closed and negative fds */
	EXPECT_EQ(-EBADF, dmabuf_revoke(self->device->fd, fd));
	EXPECT_EQ(-EBADF, dmabuf_revoke(self->device->fd, -1));

	/* a dma-buf, but not one of this device */
	other = other_dmabuf();
	if (other == -ENOENT)
		SKIP(return, "no /dev/udmabuf for a dma-buf of another exporter");
	ASSERT_GE(other, 0) TH_LOG("udmabuf: %s", strerror(-other));
	EXPECT_EQ(-ENODEV, dmabuf_revoke(self->device->fd, other));
	EXPECT_EQ(-ENODEV, dmabuf_memattr(self->device->fd, other,
					  VFIO_DEVICE_DMA_BUF_MEMATTR_NC));
	ASSERT_EQ(0, close(other));
}

TEST_F(vfio_pci_dmabuf, revoke_feature_flags)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = getpagesize() };
	struct vfio_device_feature_dma_buf_revoke revoke = {};
	int fd;

	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);
	revoke.dmabuf_fd = fd;
	/* PROBE for SET succeeds and does nothing */
	EXPECT_EQ(0, dmabuf_set_feature(self->device->fd, VFIO_DEVICE_FEATURE_PROBE |
					VFIO_DEVICE_FEATURE_SET |
					VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE,
					&revoke, sizeof(revoke), 0));
	/* GET is not supported, a short argument is rejected */
	EXPECT_EQ(-EINVAL, dmabuf_set_feature(self->device->fd, VFIO_DEVICE_FEATURE_GET |
					      VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE,
					      &revoke, sizeof(revoke), 0));
	EXPECT_EQ(-EINVAL, dmabuf_set_feature(self->device->fd, VFIO_DEVICE_FEATURE_SET |
					      VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE,
					      &revoke, sizeof(revoke), -1));
	/* none of that revoked it */
	EXPECT_EQ(0, dmabuf_revoke(self->device->fd, fd));
	ASSERT_EQ(0, close(fd));
}

/* Memory decode off zaps the mmaps; on again, they work and the data is there. */
TEST_F(vfio_pci_dmabuf, memory_disable_zaps_and_restores)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = 24 * pg, .length = pg };
	__u64 *p, val;
	int fd;

	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);
	p = dmabuf_mmap(fd, pg, 0);
	ASSERT_NE(MAP_FAILED, p);
	WRITE_ONCE(p[2], 0xfeedULL);

	vfio_pci_cmd_clear(self->device, PCI_COMMAND_MEMORY);
	EXPECT_TRUE(sigbus(&p[2]));
	/* mmap still works; its accesses fail for now */
	EXPECT_NE(MAP_FAILED, dmabuf_mmap(fd, pg, 0));
	vfio_pci_cmd_set(self->device, PCI_COMMAND_MEMORY);

	ASSERT_FALSE(read_sigbus(&p[2], &val));
	EXPECT_EQ(0xfeedULL, val);
	munmap(p, pg);
	ASSERT_EQ(0, close(fd));
}

/* VFIO_DEVICE_RESET; 0 or -errno. */
static int device_reset(struct vfio_pci_device *device)
{
	return __vfio_pci_device_reset(device);
}

/* Whether @device was opened through its group (else through its cdev). */
static bool group_opened(struct vfio_pci_device *device)
{
	return device->iommu->mode->container_path;
}

/*
 * VFIO_DEVICE_PCI_HOT_RESET of the slot or bus, which only @device is on
 * (as ivshmem behind its own root port); 0 or -errno. A cdev-opened device
 * passes no group fds, a group-opened one its group's.
 */
static int hot_reset(struct vfio_pci_device *device)
{
	size_t argsz = sizeof(struct vfio_pci_hot_reset) + sizeof(__s32);
	struct vfio_pci_hot_reset *reset = calloc(1, argsz);
	int ret = 0;

	if (!reset)
		return -ENOMEM;
	reset->argsz = sizeof(*reset);
	if (group_opened(device)) {
		reset->argsz = argsz;
		reset->count = 1;
		reset->group_fds[0] = device->group_fd;
	}
	if (ioctl(device->fd, VFIO_DEVICE_PCI_HOT_RESET, reset))
		ret = -errno;
	free(reset);
	return ret;
}

/*
 * Why @device cannot be hot reset by this process, or NULL if it can:
 * the devices the reset affects, from VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
 * must all be this device and owned by us.
 */
static const char *hot_reset_refused(struct vfio_pci_device *device)
{
	size_t argsz = sizeof(struct vfio_pci_hot_reset_info) +
		       sizeof(struct vfio_pci_dependent_device);
	struct vfio_pci_hot_reset_info *info = calloc(1, argsz);
	const char *why = NULL;

	if (!info)
		return "out of memory";
	info->argsz = argsz;
	if (ioctl(device->fd, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, info)) {
		if (errno == ENODEV)
			why = "no slot or bus reset";
		else if (errno == ENOSPC)
			why = "the reset would take other devices along";
		else
			why = "no hot reset info";
	} else if (info->count != 1) {
		why = "the reset would take other devices along";
	} else if (!group_opened(device) &&
		   !(info->flags & VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED)) {
		why = "the device is not owned by an iommufd context (no-IOMMU)";
	}
	free(info);
	return why;
}

/*
 * A reset takes the device away for a moment: the dma-buf's mappings are
 * zapped, and fault in again once it is back. A dma-buf revoked for good
 * stays revoked across it.
 */
static void check_reset_zaps_and_restores(struct __test_metadata *_metadata,
					  struct vfio_pci_device *device, int bar,
					  int (*reset)(struct vfio_pci_device *),
					  __u64 first_page)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = first_page * pg, .length = 2 * pg };
	__u64 *p, *q, val;
	long before, base;
	int fd, fd2;

	fd = dmabuf_export(device->fd, bar, &r, 1);
	ASSERT_GE(fd, 0);
	fd2 = dmabuf_export(device->fd, bar, &r, 1);
	ASSERT_GE(fd2, 0);
	p = dmabuf_mmap(fd, 2 * pg, 0);
	ASSERT_NE(MAP_FAILED, p);
	q = dmabuf_mmap(fd2, pg, 0);
	ASSERT_NE(MAP_FAILED, q);
	WRITE_ONCE(p[1], 0xabcdULL ^ first_page);
	EXPECT_FALSE(sigbus(q));
	ASSERT_EQ(0, dmabuf_revoke(device->fd, fd2));
	/* the faults that reading a mapped page costs: none, or incidental */
	before = minor_faults();
	ASSERT_FALSE(read_sigbus(&p[1], &val));
	base = minor_faults() - before;

	ASSERT_EQ(0, reset(device));

	/* usable again, through a new fault: the reset zapped the PTE */
	before = minor_faults();
	ASSERT_FALSE(read_sigbus(&p[1], &val));
	EXPECT_LT(base, minor_faults() - before);
	/* ivshmem's BAR2 is RAM: the data survives the reset */
	EXPECT_EQ(0xabcdULL ^ first_page, val);
	/* the one revoked for good did not come back */
	EXPECT_TRUE(sigbus(q));
	EXPECT_EQ(MAP_FAILED, dmabuf_mmap(fd2, pg, 0));
	EXPECT_EQ(ENODEV, errno);

	munmap(p, 2 * pg);
	munmap(q, pg);
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, close(fd2));
}

/* VFIO_DEVICE_RESET (here a secondary bus reset of ivshmem's root port) */
TEST_F(vfio_pci_dmabuf, reset_zaps_and_restores)
{
	if (!(self->device->info.flags & VFIO_DEVICE_FLAGS_RESET))
		SKIP(return, "%s cannot be reset", device_bdf);
	check_reset_zaps_and_restores(_metadata, self->device, self->bar, device_reset, 44);
}

/* VFIO_DEVICE_PCI_HOT_RESET, the reset of the whole slot or bus */
TEST_F(vfio_pci_dmabuf, hot_reset_zaps_and_restores)
{
	const char *why = hot_reset_refused(self->device);

	if (why)
		SKIP(return, "%s: %s", device_bdf, why);
	check_reset_zaps_and_restores(_metadata, self->device, self->bar, hot_reset, 52);
}

/* Whether the runtime PM status of device @bdf is "suspended". */
static bool runtime_suspended(const char *bdf)
{
	char path[128], status[32] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/power/runtime_status", bdf);
	f = fopen(path, "r");
	if (!f)
		return false;
	if (!fgets(status, sizeof(status), f))
		status[0] = '\0';
	fclose(f);
	return !strncmp(status, "suspended", 9);
}

/*
 * Low power revokes the dma-bufs for the time being. A wakeup (here: any
 * ioctl on the device) ends low power, and LOW_POWER_EXIT is optional
 * after one: the dma-bufs work again without it.
 */
TEST_F(vfio_pci_dmabuf, runtime_pm_wakeup_restores)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = 48 * pg, .length = pg };
	struct vfio_device_low_power_entry_with_wakeup entry = {};
	struct vfio_device_info info = { .argsz = sizeof(info) };
	__u64 *p, val, count;
	int fd, efd, ret, i;

	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);
	p = dmabuf_mmap(fd, pg, 0);
	ASSERT_NE(MAP_FAILED, p);
	WRITE_ONCE(p[0], 0x77ULL);
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ASSERT_GE(efd, 0);
	entry.wakeup_eventfd = efd;

	ret = dmabuf_set_feature(self->device->fd, VFIO_DEVICE_FEATURE_SET |
				 VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP,
				 &entry, sizeof(entry), 0);
	if (ret == -ENOTTY || ret == -EOPNOTSUPP) {
		munmap(p, pg);
		close(efd);
		close(fd);
		SKIP(return, "no runtime PM: %s", strerror(-ret));
	}
	ASSERT_EQ(0, ret);
	EXPECT_TRUE(sigbus(p));
	/*
	 * The entry lets the device suspend asynchronously: only a device
	 * that did can be woken up.
	 */
	for (i = 0; i < 100 && !runtime_suspended(device_bdf); i++)
		usleep(50 * 1000);
	if (!runtime_suspended(device_bdf)) {
		munmap(p, pg);
		close(efd);
		close(fd);
		SKIP(return, "%s does not runtime suspend", device_bdf);
	}

	ASSERT_EQ(0, ioctl(self->device->fd, VFIO_DEVICE_GET_INFO, &info));
	EXPECT_EQ(sizeof(count), read(efd, &count, sizeof(count)))
		TH_LOG("the ioctl did not signal a wakeup");
	ASSERT_FALSE(read_sigbus(p, &val)) TH_LOG("the dma-buf stayed revoked after the wakeup");
	EXPECT_EQ(0x77ULL, val);

	munmap(p, pg);
	ASSERT_EQ(0, close(efd));
	ASSERT_EQ(0, close(fd));
}

/* Closing the device revokes its dma-bufs for good, mapped or not. */
TEST_F(vfio_pci_dmabuf, close_device_revokes)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = 0, .length = pg };
	int fd, fd2;
	__u64 *p;

	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);
	fd2 = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd2, 0);
	p = dmabuf_mmap(fd, pg, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_FALSE(sigbus(p));

	vfio_pci_device_cleanup(self->device);
	self->device = NULL;
	EXPECT_TRUE(sigbus(p));
	EXPECT_EQ(MAP_FAILED, dmabuf_mmap(fd2, pg, 0));
	EXPECT_EQ(ENODEV, errno);

	munmap(p, pg);
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, close(fd2));
	self->device = vfio_pci_device_init(device_bdf, self->iommu);
}

#define IORESOURCE_PREFETCH	0x00002000	/* include/linux/ioport.h */

/* The IORESOURCE_* flags of a BAR, from sysfs. */
static __u64 bar_flags(const char *bdf, int bar)
{
	__u64 start, flags;

	bar_resource(bdf, bar, &start, &flags);
	return flags;
}

/*
 * The x86 PAT memory type of physical address @pa ("write-combining",
 * "uncached-minus", ...), which PTEs that vmf_insert_pfn() makes for it
 * inherit: from debugfs, -ENOENT where there is no such list or no entry.
 */
static int pat_memtype(__u64 pa, char *type, size_t len)
{
	unsigned long long start, end;
	char line[256], t[64];
	int ret = -ENOENT;
	FILE *f;

	f = fopen("/sys/kernel/debug/x86/pat_memtype_list", "r");
	if (!f)
		return -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "PAT: [mem 0x%llx-0x%llx] %63s", &start, &end, t) != 3)
			continue;
		if (pa >= start && pa < end) {
			snprintf(type, len, "%s", t);
			ret = 0;
			break;
		}
	}
	fclose(f);
	return ret;
}

/*
 * Write-combining applies to new mmaps, and is granted only where the
 * mappings really get it; unknown attributes are refused.
 */
TEST_F(vfio_pci_dmabuf, memattr)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = 28 * pg, .length = pg };
	bool prefetch, pat;
	char type[64] = "";
	__u64 *nc, *wc;
	int fd, ret;

	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);
	nc = dmabuf_mmap(fd, pg, 0);
	ASSERT_NE(MAP_FAILED, nc);
	EXPECT_EQ(-ENOENT, dmabuf_memattr(self->device->fd, fd, 2));

	prefetch = bar_flags(device_bdf, self->bar) & IORESOURCE_PREFETCH;
	pat = !pat_memtype(bar_phys(device_bdf, self->bar) + r.offset, type, sizeof(type));
	ret = dmabuf_memattr(self->device->fd, fd, VFIO_DEVICE_DMA_BUF_MEMATTR_WC);
	TH_LOG("WC: %s (%sprefetchable BAR, PAT memtype %s)", ret ? strerror(-ret) : "granted",
	       prefetch ? "" : "non-", pat ? type : "unknown");
	if (!ret) {
		/* granted: the mappings are write-combining */
		EXPECT_TRUE(prefetch);
		if (pat)
			EXPECT_STREQ("write-combining", type);
		wc = dmabuf_mmap(fd, pg, 0);
		ASSERT_NE(MAP_FAILED, wc);
		WRITE_ONCE(wc[5], 0xc0ffeeULL);
		__sync_synchronize();
		EXPECT_EQ(0xc0ffeeULL, READ_ONCE(nc[5]));
		munmap(wc, pg);
	} else {
		/* refused, with EOPNOTSUPP, only where WC cannot be had */
		EXPECT_EQ(-EOPNOTSUPP, ret);
		if (prefetch && pat)
			EXPECT_STRNE("write-combining", type);
	}
	ASSERT_EQ(0, dmabuf_memattr(self->device->fd, fd, VFIO_DEVICE_DMA_BUF_MEMATTR_NC));
	munmap(nc, pg);
	ASSERT_EQ(0, close(fd));
}

/*
 * No write-combining for a BAR that is not prefetchable: WC reads
 * speculatively and merges writes, which registers do not take. Needs a
 * device with such a BAR of a page or more (QEMU's edu has one).
 */
TEST(memattr_wc_needs_prefetchable)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = 0, .length = pg };
	struct vfio_pci_device *device;
	struct iommu *iommu;
	int i, fd, tested = 0;

	iommu = iommu_init(default_iommu_mode);
	device = vfio_pci_device_init(device_bdf, iommu);
	for (i = 0; i < PCI_STD_NUM_BARS; i++) {
		if (device->bars[i].info.size < pg ||
		    (bar_flags(device_bdf, i) & IORESOURCE_PREFETCH))
			continue;
		fd = dmabuf_export(device->fd, i, &r, 1);
		EXPECT_LE(0, fd) TH_LOG("BAR %d: export: %s", i, strerror(-fd));
		if (fd < 0)
			continue;
		EXPECT_EQ(-EOPNOTSUPP, dmabuf_memattr(device->fd, fd,
						      VFIO_DEVICE_DMA_BUF_MEMATTR_WC));
		EXPECT_EQ(0, dmabuf_memattr(device->fd, fd, VFIO_DEVICE_DMA_BUF_MEMATTR_NC));
		EXPECT_EQ(0, close(fd));
		tested++;
	}
	vfio_pci_device_cleanup(device);
	iommu_cleanup(iommu);
	if (!tested)
		SKIP(return, "%s: no non-prefetchable BAR of a page or more", device_bdf);
}

/*
 * Last: write the pattern through a dma-buf mmap whose two ranges split the
 * pattern area out of order; read it back through the BAR mmap. The host
 * checks the bytes afterwards.
 */
TEST_F(vfio_pci_dmabuf, mmap_write_host_pattern)
{
	struct vfio_region_dma_range r[] = {
		{ .offset = PATTERN_OFFSET + PATTERN_SIZE / 2, .length = PATTERN_SIZE / 2 },
		{ .offset = PATTERN_OFFSET, .length = PATTERN_SIZE / 2 },
	};
	struct vfio_pci_bar *bar = &self->device->bars[self->bar];
	__u64 *bp = bar->vaddr + PATTERN_OFFSET;
	__u64 *p, i, n = PATTERN_SIZE / sizeof(__u64);
	int fd;

	for (i = 0; i < n; i++)
		WRITE_ONCE(bp[i], 0);
	fd = dmabuf_export(self->device->fd, self->bar, r, ARRAY_SIZE(r));
	ASSERT_GE(fd, 0);
	p = dmabuf_mmap(fd, PATTERN_SIZE, 0);
	ASSERT_NE(MAP_FAILED, p);
	/* dma-buf word j is BAR word (j + n/2) % n */
	for (i = 0; i < n; i++)
		WRITE_ONCE(p[i], pattern_word((i + n / 2) % n));
	for (i = 0; i < n; i++)
		ASSERT_EQ(pattern_word(i), READ_ONCE(bp[i])) TH_LOG("BAR word %llu", i);
	munmap(p, PATTERN_SIZE);
	ASSERT_EQ(0, close(fd));
}

int main(int argc, char *argv[])
{
	device_bdf = vfio_selftests_get_bdf(&argc, argv);
	return test_harness_run(argc, argv);
}
