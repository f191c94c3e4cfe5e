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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/ioctl.h>
#include <sys/mman.h>

#include <linux/compiler.h>
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

/*
 * Issue VFIO_DEVICE_FEATURE with a DMA_BUF payload. @argsz_delta is added to
 * the correct argsz. Returns the new fd, or -errno.
 */
static int __dmabuf_feature(int device_fd, __u32 feature_flags, __u32 region,
			    __u32 open_flags, __u32 flags,
			    const struct vfio_region_dma_range *ranges,
			    __u32 nr_ranges, long argsz_delta)
{
	struct vfio_device_feature_dma_buf *get;
	struct vfio_device_feature *feature;
	size_t argsz;
	int ret;

	argsz = sizeof(*feature) + sizeof(*get) + nr_ranges * sizeof(*ranges);
	feature = calloc(1, argsz);
	if (!feature)
		return -ENOMEM;

	feature->argsz = argsz + argsz_delta;
	feature->flags = feature_flags;
	get = (struct vfio_device_feature_dma_buf *)feature->data;
	get->region_index = region;
	get->open_flags = open_flags;
	get->flags = flags;
	get->nr_ranges = nr_ranges;
	if (nr_ranges)
		memcpy(get->dma_ranges, ranges, nr_ranges * sizeof(*ranges));

	ret = ioctl(device_fd, VFIO_DEVICE_FEATURE, feature);
	if (ret < 0)
		ret = -errno;
	free(feature);
	return ret;
}

static int dmabuf_export(int device_fd, __u32 region,
			 const struct vfio_region_dma_range *ranges,
			 __u32 nr_ranges)
{
	return __dmabuf_feature(device_fd,
				VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF,
				region, O_RDWR | O_CLOEXEC, 0, ranges, nr_ranges, 0);
}

/* Number of open file descriptors of this process. */
static int count_fds(void)
{
	int fd, n = 0;

	for (fd = 0; fd < 1024; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	}
	return n;
}

/* Read "key:\t<value>" from /proc/self/fdinfo/<fd> into @val. */
static int fdinfo_get(int fd, const char *key, char *val, size_t len)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	int ret = -ENOENT;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) || line[klen] != ':')
			continue;
		snprintf(val, len, "%s", line + klen + 1 + strspn(line + klen + 1, " \t"));
		val[strcspn(val, "\n")] = '\0';
		ret = 0;
		break;
	}
	fclose(f);
	return ret;
}

static __u64 fdinfo_size(int fd)
{
	char val[64];

	if (fdinfo_get(fd, "size", val, sizeof(val)))
		return 0;
	return strtoull(val, NULL, 0);
}

#define TEST_IOVA	SZ_4G

/* IOMMU_IOAS_MAP_FILE of [start, start + length) of a dma-buf at @iova. */
static int ioas_map_file(struct iommu *iommu, int fd, __u64 start,
			 __u64 length, __u64 iova)
{
	struct iommu_ioas_map_file map = {
		.size = sizeof(map),
		.flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE |
			 IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = iommu->ioas_id,
		.fd = fd,
		.start = start,
		.length = length,
		.iova = iova,
	};

	return ioctl(iommu->iommufd, IOMMU_IOAS_MAP_FILE, &map) ? -errno : 0;
}

static int ioas_unmap(struct iommu *iommu, __u64 iova, __u64 length)
{
	struct iommu_ioas_unmap unmap = {
		.size = sizeof(unmap),
		.ioas_id = iommu->ioas_id,
		.iova = iova,
		.length = length,
	};

	return ioctl(iommu->iommufd, IOMMU_IOAS_UNMAP, &unmap) ? -errno : 0;
}

/*
 * Physical address an IOVA translates to, with IOMMU_IOAS_NOIOMMU_GET_PA.
 * Only for devices in no-IOMMU mode: -EOPNOTSUPP (or -ENOTTY) otherwise.
 */
static int ioas_get_pa(struct iommu *iommu, __u64 iova, __u64 *pa)
{
	struct iommu_ioas_noiommu_get_pa get = {
		.size = sizeof(get),
		.ioas_id = iommu->ioas_id,
		.iova = iova,
		.length = getpagesize(),
	};

	if (ioctl(iommu->iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &get))
		return -errno;
	*pa = get.out_phys;
	return 0;
}

/* Bus address of a BAR, from sysfs. */
static __u64 bar_phys(const char *bdf, int bar)
{
	unsigned long long start = 0, end, flags;
	char path[PATH_MAX];
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource", bdf);
	f = fopen(path, "r");
	if (!f)
		return 0;
	for (i = 0; i <= bar; i++) {
		if (fscanf(f, "%llx %llx %llx", &start, &end, &flags) != 3) {
			start = 0;
			break;
		}
	}
	fclose(f);
	return start;
}

/* Byte offset in the BAR of byte @off of a dma-buf made of @r. */
static __u64 dmabuf_to_bar(const struct vfio_region_dma_range *r, int n, __u64 off)
{
	int i;

	for (i = 0; i < n; i++) {
		if (off < r[i].length)
			return r[i].offset + off;
		off -= r[i].length;
	}
	return ~0ULL;
}

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

	/* It is a dma-buf of the requested size, exported by vfio-pci */
	ASSERT_EQ(0, fdinfo_get(fd, "exp_name", name, sizeof(name)));
	EXPECT_EQ(0, strncmp(name, "vfio_pci", strlen("vfio_pci"))) TH_LOG("exp_name %s", name);
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

	fd = __dmabuf_feature(self->device->fd,
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
	ASSERT_EQ(0, __dmabuf_feature(self->device->fd,
				      VFIO_DEVICE_FEATURE_PROBE |
				      VFIO_DEVICE_FEATURE_GET |
				      VFIO_DEVICE_FEATURE_DMA_BUF,
				      0, 0, 0, NULL, 0, 0));
	/* SET is not supported */
	ASSERT_EQ(-EINVAL, __dmabuf_feature(self->device->fd,
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
	EXPECT_EQ(-EINVAL, __dmabuf_feature(fd, VFIO_DEVICE_FEATURE_SET |
					    VFIO_DEVICE_FEATURE_DMA_BUF,
					    self->bar, O_RDWR, 0, &r, 1, 0));
	/* neither GET nor SET */
	EXPECT_EQ(-EINVAL, __dmabuf_feature(fd, VFIO_DEVICE_FEATURE_DMA_BUF,
					    self->bar, O_RDWR, 0, &r, 1, 0));
	/* both GET and SET */
	EXPECT_EQ(-EINVAL, __dmabuf_feature(fd, VFIO_DEVICE_FEATURE_GET |
					    VFIO_DEVICE_FEATURE_SET |
					    VFIO_DEVICE_FEATURE_DMA_BUF,
					    self->bar, O_RDWR, 0, &r, 1, 0));
	/* an unknown flag bit */
	EXPECT_EQ(-EINVAL, __dmabuf_feature(fd, VFIO_DEVICE_FEATURE_GET |
					    VFIO_DEVICE_FEATURE_DMA_BUF | (1u << 20),
					    self->bar, O_RDWR, 0, &r, 1, 0));
}

TEST_F(vfio_pci_dmabuf, argsz_too_small)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = getpagesize() };
	long short_by = sizeof(struct vfio_device_feature_dma_buf) + sizeof(r);

	/* argsz must cover struct vfio_device_feature_dma_buf */
	EXPECT_EQ(-EINVAL, __dmabuf_feature(self->device->fd,
					    VFIO_DEVICE_FEATURE_GET |
					    VFIO_DEVICE_FEATURE_DMA_BUF,
					    self->bar, O_RDWR, 0, &r, 1, -short_by));
}

TEST_F(vfio_pci_dmabuf, nonzero_flags)
{
	struct vfio_region_dma_range r = { .offset = 0, .length = getpagesize() };

	EXPECT_EQ(-EINVAL, __dmabuf_feature(self->device->fd,
					    VFIO_DEVICE_FEATURE_GET |
					    VFIO_DEVICE_FEATURE_DMA_BUF,
					    self->bar, O_RDWR, 1, &r, 1, 0));
	EXPECT_EQ(-EINVAL, __dmabuf_feature(self->device->fd,
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

int main(int argc, char *argv[])
{
	device_bdf = vfio_selftests_get_bdf(&argc, argv);
	return test_harness_run(argc, argv);
}
