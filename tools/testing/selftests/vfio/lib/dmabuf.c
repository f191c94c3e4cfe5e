// SPDX-License-Identifier: GPL-2.0-only
/*
 * Helpers for the tests of VFIO's dma-buf export (VFIO_DEVICE_FEATURE_DMA_BUF
 * and the features that take a dma-buf fd), and of what can be done with the
 * dma-bufs: iommufd import, mmap().
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <linux/compiler.h>
#include <linux/iommufd.h>
#include <linux/limits.h>
#include <linux/udmabuf.h>
#include <linux/vfio.h>

#include <libvfio.h>

/*
 * Issue VFIO_DEVICE_FEATURE with a DMA_BUF payload. @argsz_delta is added to
 * the correct argsz. Returns the new fd, or -errno.
 */
int dmabuf_feature(int device_fd, __u32 feature_flags, __u32 region,
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

int dmabuf_export(int device_fd, __u32 region,
		  const struct vfio_region_dma_range *ranges,
		  __u32 nr_ranges)
{
	return dmabuf_feature(device_fd,
			      VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF,
			      region, O_RDWR | O_CLOEXEC, 0, ranges, nr_ranges, 0);
}

/* Number of open file descriptors of this process. */
int count_fds(void)
{
	int fd, n = 0;

	for (fd = 0; fd < 1024; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	}
	return n;
}

/* Read "key:\t<value>" from /proc/self/fdinfo/<fd> into @val. */
int fdinfo_get(int fd, const char *key, char *val, size_t len)
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

__u64 fdinfo_size(int fd)
{
	char val[64];

	if (fdinfo_get(fd, "size", val, sizeof(val)))
		return 0;
	return strtoull(val, NULL, 0);
}

/* IOMMU_IOAS_MAP_FILE of [start, start + length) of a dma-buf at @iova. */
int ioas_map_file(struct iommu *iommu, int fd, __u64 start,
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

int ioas_unmap(struct iommu *iommu, __u64 iova, __u64 length)
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
int ioas_get_pa(struct iommu *iommu, __u64 iova, __u64 *pa)
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

/*
 * Start address and IORESOURCE_* flags of a BAR, from sysfs; both 0 if
 * there is no such line.
 */
void bar_resource(const char *bdf, int bar, __u64 *start, __u64 *flags)
{
	unsigned long long s = 0, end, fl = 0;
	char path[PATH_MAX];
	FILE *f;
	int i;

	*start = 0;
	*flags = 0;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource", bdf);
	f = fopen(path, "r");
	if (!f)
		return;
	for (i = 0; i <= bar; i++) {
		if (fscanf(f, "%llx %llx %llx", &s, &end, &fl) != 3) {
			s = 0;
			fl = 0;
			break;
		}
	}
	fclose(f);
	*start = s;
	*flags = fl;
}

/* Bus address of a BAR, from sysfs. */
__u64 bar_phys(const char *bdf, int bar)
{
	__u64 start, flags;

	bar_resource(bdf, bar, &start, &flags);
	return start;
}

/* Byte offset in the BAR of byte @off of a dma-buf made of @r. */
__u64 dmabuf_to_bar(const struct vfio_region_dma_range *r, int n, __u64 off)
{
	int i;

	for (i = 0; i < n; i++) {
		if (off < r[i].length)
			return r[i].offset + off;
		off -= r[i].length;
	}
	return ~0ULL;
}

/* Device features that take a dma-buf fd. Return 0 or -errno. */
int dmabuf_set_feature(int device_fd, __u32 feature_flags,
		       const void *data, size_t size, long argsz_delta)
{
	char buf[sizeof(struct vfio_device_feature) + 16] = {};
	struct vfio_device_feature *feature = (void *)buf;

	feature->argsz = sizeof(*feature) + size + argsz_delta;
	feature->flags = feature_flags;
	memcpy(feature->data, data, size);
	return ioctl(device_fd, VFIO_DEVICE_FEATURE, feature) ? -errno : 0;
}

int dmabuf_revoke(int device_fd, int fd)
{
	struct vfio_device_feature_dma_buf_revoke revoke = { .dmabuf_fd = fd };

	return dmabuf_set_feature(device_fd, VFIO_DEVICE_FEATURE_SET |
				  VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE,
				  &revoke, sizeof(revoke), 0);
}

int dmabuf_memattr(int device_fd, int fd, __u32 memattr)
{
	struct vfio_device_feature_dma_buf_memattr attr = {
		.dmabuf_fd = fd, .memattr = memattr,
	};

	return dmabuf_set_feature(device_fd, VFIO_DEVICE_FEATURE_SET |
				  VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR,
				  &attr, sizeof(attr), 0);
}

void *dmabuf_mmap(int fd, size_t len, off_t off)
{
	return mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
}

static sigjmp_buf sigbus_jmp;

static void sigbus_handler(int sig)
{
	siglongjmp(sigbus_jmp, 1);
}

/* Reads *@p into @val; returns true if that raised SIGBUS instead. */
bool read_sigbus(__u64 *p, __u64 *val)
{
	struct sigaction sa = { .sa_handler = sigbus_handler }, old;
	bool bus = false;

	sigaction(SIGBUS, &sa, &old);
	if (sigsetjmp(sigbus_jmp, 1) == 0)
		*val = READ_ONCE(*p);
	else
		bus = true;
	sigaction(SIGBUS, &old, NULL);
	return bus;
}

bool sigbus(__u64 *p)
{
	__u64 val;

	return read_sigbus(p, &val);
}

long minor_faults(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

/* A dma-buf of another exporter: a udmabuf of one page, or -errno. */
int other_dmabuf(void)
{
	struct udmabuf_create create = { .flags = UDMABUF_FLAGS_CLOEXEC };
	int memfd, dev, fd;

	dev = open("/dev/udmabuf", O_RDWR);
	if (dev < 0)
		return -errno;
	memfd = memfd_create("other", MFD_ALLOW_SEALING);
	if (memfd < 0 || ftruncate(memfd, getpagesize()) ||
	    fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK)) {
		fd = -errno;
		goto out;
	}
	create.memfd = memfd;
	create.size = getpagesize();
	fd = ioctl(dev, UDMABUF_CREATE, &create);
	if (fd < 0)
		fd = -errno;
out:
	if (memfd >= 0)
		close(memfd);
	close(dev);
	return fd;
}
