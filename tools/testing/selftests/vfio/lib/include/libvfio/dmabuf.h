/* SPDX-License-Identifier: GPL-2.0-only */
#ifndef SELFTESTS_VFIO_LIB_INCLUDE_LIBVFIO_DMABUF_H
#define SELFTESTS_VFIO_LIB_INCLUDE_LIBVFIO_DMABUF_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <linux/types.h>
#include <linux/vfio.h>

#include <libvfio/iommu.h>

/* VFIO_DEVICE_FEATURE_DMA_BUF and the features that take a dma-buf fd */
int dmabuf_feature(int device_fd, __u32 feature_flags, __u32 region,
		   __u32 open_flags, __u32 flags,
		   const struct vfio_region_dma_range *ranges,
		   __u32 nr_ranges, long argsz_delta);
int dmabuf_export(int device_fd, __u32 region,
		  const struct vfio_region_dma_range *ranges, __u32 nr_ranges);
int dmabuf_set_feature(int device_fd, __u32 feature_flags,
		       const void *data, size_t size, long argsz_delta);
int dmabuf_revoke(int device_fd, int fd);
int dmabuf_memattr(int device_fd, int fd, __u32 memattr);

/* A dma-buf's fdinfo, and this process' open fds */
int fdinfo_get(int fd, const char *key, char *val, size_t len);
__u64 fdinfo_size(int fd);
int count_fds(void);

/* A dma-buf of another exporter (udmabuf) */
int other_dmabuf(void);

/* iommufd import of a dma-buf */
int ioas_map_file(struct iommu *iommu, int fd, __u64 start, __u64 length,
		  __u64 iova);
int ioas_unmap(struct iommu *iommu, __u64 iova, __u64 length);
int ioas_get_pa(struct iommu *iommu, __u64 iova, __u64 *pa);

/* BARs, from sysfs, and where a dma-buf's bytes are in its BAR */
void bar_resource(const char *bdf, int bar, __u64 *start, __u64 *flags);
__u64 bar_phys(const char *bdf, int bar);
__u64 dmabuf_to_bar(const struct vfio_region_dma_range *r, int n, __u64 off);

/* mmap() of a dma-buf, and accesses that may raise SIGBUS */
void *dmabuf_mmap(int fd, size_t len, off_t off);
bool read_sigbus(__u64 *p, __u64 *val);
bool sigbus(__u64 *p);
long minor_faults(void);

#endif /* SELFTESTS_VFIO_LIB_INCLUDE_LIBVFIO_DMABUF_H */
