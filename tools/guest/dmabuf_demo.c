// SPDX-License-Identifier: GPL-2.0
/*
 * tools/demo, in the guest: the life of one VFIO dma-buf, told in a few
 * lines. Exports 64 KiB of BAR2 of the ivshmem device at OFFSET as a
 * dma-buf, writes MESSAGE through the dma-buf's own mmap (the host then
 * finds it in the BAR's backing file), imports it into iommufd, revokes
 * it with VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE and touches the mapping
 * again, which must raise SIGBUS.
 *
 *   dmabuf_demo BDF OFFSET MESSAGE
 *
 * Built by tools/selftests against the VFIO selftests' libvfio.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/iommufd.h>
#include <linux/vfio.h>
#include <libvfio.h>

#define LEN	(64 << 10)
#define BAR	2
#define IOVA	(1ULL << 32)

static sigjmp_buf env;

static void on_sigbus(int sig)
{
	siglongjmp(env, 1);
}

static void die(const char *what, int err)
{
	printf("  %s: %s\n", what, strerror(err));
	exit(1);
}

static void exp_name(int fd, char *name, size_t len)
{
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	snprintf(name, len, "?");
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "exp_name:", 9)) {
			snprintf(name, len, "%s", line + 9 + strspn(line + 9, " \t"));
			name[strcspn(name, "\n")] = '\0';
		}
	}
	if (f)
		fclose(f);
}

int main(int argc, char **argv)
{
	struct {
		struct vfio_device_feature hdr;
		struct vfio_device_feature_dma_buf get;
		struct vfio_region_dma_range range;
	} req = {};
	struct {
		struct vfio_device_feature hdr;
		struct vfio_device_feature_dma_buf_revoke revoke;
	} rev = {};
	struct vfio_pci_device *device;
	struct iommu *iommu;
	char name[64];
	volatile char *p;
	int fd, ret;

	if (argc != 4) {
		fprintf(stderr, "usage: %s BDF OFFSET MESSAGE\n", argv[0]);
		return 2;
	}
	iommu = iommu_init(default_iommu_mode);
	device = vfio_pci_device_init(argv[1], iommu);

	req.hdr.argsz = sizeof(req);
	req.hdr.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF;
	req.get.region_index = BAR;
	req.get.open_flags = O_RDWR | O_CLOEXEC;
	req.get.nr_ranges = 1;
	req.range.offset = strtoull(argv[2], NULL, 0);
	req.range.length = LEN;
	fd = ioctl(device->fd, VFIO_DEVICE_FEATURE, &req);
	if (fd < 0)
		die("export", errno);
	exp_name(fd, name, sizeof(name));
	printf("  exported BAR%d [%#llx, +64 KiB) as dma-buf fd %d, exp_name %s\n",
	       BAR, (unsigned long long)req.range.offset, fd, name);

	p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap of the dma-buf", errno);
	strcpy((char *)p, argv[3]);
	printf("  wrote \"%s\" through the dma-buf's mmap\n", (char *)p);

	ret = ioas_map_file(iommu, fd, 0, LEN, IOVA);
	if (ret)
		die("iommufd import", -ret);
	printf("  imported into iommufd at IOVA %#llx\n", IOVA);
	ret = ioas_unmap(iommu, IOVA, LEN);
	if (ret)
		die("iommufd unmap", -ret);

	rev.hdr.argsz = sizeof(rev);
	rev.hdr.flags = VFIO_DEVICE_FEATURE_SET |
			VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE;
	rev.revoke.dmabuf_fd = fd;
	if (ioctl(device->fd, VFIO_DEVICE_FEATURE, &rev))
		die("revoke", errno);
	printf("  revoked with VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE\n");

	signal(SIGBUS, on_sigbus);
	if (!sigsetjmp(env, 1)) {
		(void)p[0];
		printf("  access after the revoke: NOT caught\n");
		return 1;
	}
	printf("  access after the revoke: SIGBUS, as it must\n");

	munmap((void *)p, LEN);
	close(fd);
	vfio_pci_device_cleanup(device);
	iommu_cleanup(iommu);
	return 0;
}
