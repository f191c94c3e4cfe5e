// SPDX-License-Identifier: GPL-2.0-only
/*
 * Stress tests for VFIO dma-buf mappings: what user space does to them
 * while they fault, and what the device does meanwhile.
 *
 * Threads read and write random pages of dma-buf mmaps while the main
 * thread turns memory decode off and on through config space, resets the
 * device, imports the dma-buf into iommufd, exports and closes others,
 * closes the dma-buf's fd or the device's, and revokes it. The promise
 * checked: once a revocation has returned, and until it ends, no access
 * through a mapping succeeds (each access is bracketed by a generation
 * count that the main thread makes odd while the memory is revoked), and
 * no write made after a permanent revocation reaches the BAR (read back
 * through the device's own BAR mapping; the host can check its file for
 * LATE_MAGIC too). Meanwhile parts of a mapping are replaced, unmapped
 * for a moment or made read-only. Also: mappings that a fork, mremap,
 * mprotect, partial munmap or MADV_DONTNEED made, and get_user_pages users
 * (vmsplice, process_vm_readv, /proc/PID/mem of this process and of
 * another, O_DIRECT I/O to and from a RAM disk), before and after a revoke.
 *
 * $VFIO_DMABUF_STRESS_SEED seeds the random choices (default: from the
 * clock; printed), $VFIO_DMABUF_STRESS_SECONDS bounds each racing test
 * (default 4). The device is given as for the other VFIO selftests.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <linux/compiler.h>
#include <linux/pci_regs.h>
#include <linux/sizes.h>
#include <linux/vfio.h>

#include <libvfio.h>

#include "kselftest_harness.h"

static const char *device_bdf;

/* Written through dma-buf mappings only after they are revoked for good. */
#define LATE_MAGIC	0x4554414c46554244ULL	/* "DBUFLATE" */
#define STRESS_IOVA	SZ_4G
#define NR_ACCESSORS	3

static __u64 env_u64(const char *name, __u64 def)
{
	const char *v = getenv(name);

	return v && *v ? strtoull(v, NULL, 0) : def;
}

/* splitmix64, one state per thread */
static __u64 rnd(__u64 *state)
{
	__u64 z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/*
 * Accesses that may raise SIGBUS (or SIGSEGV, where the racing test
 * unmaps or write-protects part of a mapping), from any thread: the
 * handler jumps back to the access of the thread that took the signal,
 * found by its tid.
 */
static struct {
	pid_t tid;
	sigjmp_buf *env;
} bus_jmps[NR_ACCESSORS + 1];

static void on_sigbus(int sig)
{
	pid_t tid = gettid();
	int i;

	for (i = 0; i < NR_ACCESSORS + 1; i++) {
		if (bus_jmps[i].tid == tid && bus_jmps[i].env)
			siglongjmp(*bus_jmps[i].env, sig);
	}
	abort();
}

/*
 * *p = val if @write, else val = *p. Returns 0, or the signal the access
 * raised. @slot is the caller's own: 0 for the main thread (and a child),
 * 1 + i for accessor i.
 */
static int access_sig(int slot, __u64 *p, __u64 *val, bool write)
{
	sigjmp_buf env;
	int sig;

	bus_jmps[slot].tid = gettid();
	sig = sigsetjmp(env, 1);
	if (sig) {
		WRITE_ONCE(bus_jmps[slot].env, NULL);
		return sig;
	}
	WRITE_ONCE(bus_jmps[slot].env, &env);
	if (write)
		WRITE_ONCE(*p, *val);
	else
		*val = READ_ONCE(*p);
	WRITE_ONCE(bus_jmps[slot].env, NULL);
	return 0;
}

/* As access_sig(): false on SIGBUS; a SIGSEGV here is a bug of the test. */
static bool try_access(int slot, __u64 *p, __u64 *val, bool write)
{
	int sig = access_sig(slot, p, val, write);

	if (sig == SIGSEGV) {
		fprintf(stderr, "SIGSEGV at %p\n", p);
		abort();
	}
	return !sig;
}

/*
 * What the accessor threads share with the main thread. @gen is odd while
 * the dma-buf is known to be revoked: the main thread makes it odd after a
 * revocation returned, and even before the revocation ends.
 */
struct race {
	char *maps[2];		/* two mappings of the dma-buf */
	__u64 size;
	__u64 seed;
	int gen;
	int stop;
	int late;		/* revoked for good: write LATE_MAGIC */
	bool strict;		/* no SIGBUS while @gen is even ... */
	int closing;		/* ... and the device is not being closed */
	/* counted by the accessors */
	long ok, bus, segv, violations, spurious;
	long first_violation_gen;
};

struct accessor {
	struct race *race;
	int slot;
};

static void *accessor(void *arg)
{
	struct race *race = ((struct accessor *)arg)->race;
	int slot = ((struct accessor *)arg)->slot;
	const __u64 pg = getpagesize();
	__u64 state = race->seed ^ (__u64)pthread_self();
	long ok = 0, bus = 0, segv = 0, bad = 0, spurious = 0;

	while (!__atomic_load_n(&race->stop, __ATOMIC_ACQUIRE)) {
		__u64 r = rnd(&state), page = (r >> 8) % (race->size / pg), val;
		char *base = race->maps[r & 1];
		bool write = (r & 6) == 0;
		int g1, g2, sig;

		g1 = __atomic_load_n(&race->gen, __ATOMIC_ACQUIRE);
		val = __atomic_load_n(&race->late, __ATOMIC_ACQUIRE) ?
		      LATE_MAGIC : (__u64)g1 << 32 | page;
		sig = access_sig(slot, (__u64 *)(base + page * pg + 8), &val, write);
		g2 = __atomic_load_n(&race->gen, __ATOMIC_ACQUIRE);
		if (sig == SIGSEGV) {
			/* a hole or a read-only part the main thread made */
			segv++;
			continue;
		}
		if (sig) {
			bus++;
			/* the whole access ran while the memory was there */
			spurious += race->strict && g1 == g2 && !(g1 & 1) &&
				    !__atomic_load_n(&race->closing, __ATOMIC_ACQUIRE);
			continue;
		}
		ok++;
		/* the whole access ran while the memory was revoked */
		if (g1 == g2 && (g1 & 1)) {
			if (!bad++)
				__atomic_store_n(&race->first_violation_gen, g1, __ATOMIC_RELAXED);
		}
	}
	__atomic_fetch_add(&race->ok, ok, __ATOMIC_RELAXED);
	__atomic_fetch_add(&race->bus, bus, __ATOMIC_RELAXED);
	__atomic_fetch_add(&race->segv, segv, __ATOMIC_RELAXED);
	__atomic_fetch_add(&race->violations, bad, __ATOMIC_RELAXED);
	__atomic_fetch_add(&race->spurious, spurious, __ATOMIC_RELAXED);
	return NULL;
}

static void gen_step(struct race *race)
{
	__atomic_fetch_add(&race->gen, 1, __ATOMIC_ACQ_REL);
}

static void sleep_us(long us)
{
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = us % 1000000 * 1000 };

	nanosleep(&ts, NULL);
}

FIXTURE(dmabuf_stress) {
	struct iommu *iommu;
	struct vfio_pci_device *device;
	int bar;
	__u64 bar_size, pg, seed;
	int seconds;
};

FIXTURE_SETUP(dmabuf_stress)
{
	struct sigaction sa = { .sa_handler = on_sigbus };
	int i;

	self->pg = getpagesize();
	self->iommu = iommu_init(default_iommu_mode);
	self->device = vfio_pci_device_init(device_bdf, self->iommu);
	self->bar = -1;
	for (i = 0; i < PCI_STD_NUM_BARS; i++) {
		struct vfio_pci_bar *bar = &self->device->bars[i];

		if (bar->vaddr && bar->info.size >= SZ_8M && bar->info.size > self->bar_size) {
			self->bar = i;
			self->bar_size = bar->info.size;
		}
	}
	if (self->bar < 0)
		SKIP(return, "%s: no mmap-able BAR of at least 8 MiB", device_bdf);
	ASSERT_EQ(0, sigaction(SIGBUS, &sa, NULL));
	ASSERT_EQ(0, sigaction(SIGSEGV, &sa, NULL));
	self->seed = env_u64("VFIO_DMABUF_STRESS_SEED", time(NULL) ^ getpid());
	self->seconds = env_u64("VFIO_DMABUF_STRESS_SECONDS", 4);
	TH_LOG("seed %#llx (VFIO_DMABUF_STRESS_SEED), %d s",
	       (unsigned long long)self->seed, self->seconds);
}

FIXTURE_TEARDOWN(dmabuf_stress)
{
	if (self->device)
		vfio_pci_device_cleanup(self->device);
	iommu_cleanup(self->iommu);
}

/* 4 MiB at 4 MiB into the BAR, mapped 2 MiB aligned and one page off */
static int race_setup(struct vfio_pci_device *device, int bar_index, __u64 seed,
		      struct race *race)
{
	const __u64 pg = getpagesize();
	struct vfio_region_dma_range r = { .offset = SZ_4M, .length = SZ_4M };
	void *bar = device->bars[bar_index].vaddr;
	__u64 off;
	int fd;

	/* nothing LATE_MAGIC in the range before */
	for (off = r.offset; off < r.offset + r.length; off += pg)
		WRITE_ONCE(*(__u64 *)(bar + off + 8), 0);
	memset(race, 0, sizeof(*race));
	race->seed = seed;
	race->size = r.length;
	fd = dmabuf_export(device->fd, bar_index, &r, 1);
	if (fd < 0)
		return fd;
	race->maps[0] = mmap_reserve(r.length, SZ_2M, 0);
	race->maps[1] = mmap_reserve(r.length, SZ_2M, pg);
	for (int i = 0; i < 2; i++) {
		if (mmap(race->maps[i], r.length, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED, fd, 0) != race->maps[i])
			return -errno;
	}
	return fd;
}

/*
 * No word written after the permanent revoke is in the BAR: the accessors
 * write LATE_MAGIC at offset 8 of pages of the dma-buf's range only then.
 */
static int late_writes_in_bar(struct vfio_pci_device *device, int bar_index)
{
	void *bar = device->bars[bar_index].vaddr;
	int n = 0;
	__u64 off;

	for (off = SZ_4M; off < SZ_8M; off += getpagesize())
		n += READ_ONCE(*(__u64 *)(bar + off + 8)) == LATE_MAGIC;
	return n;
}

static void race_run(struct __test_metadata *_metadata, struct race *race,
		     pthread_t *threads)
{
	static struct accessor args[NR_ACCESSORS];

	for (int i = 0; i < NR_ACCESSORS; i++) {
		args[i] = (struct accessor){ .race = race, .slot = 1 + i };
		ASSERT_EQ(0, pthread_create(&threads[i], NULL, accessor, &args[i]));
	}
}

static void race_stop(struct race *race, pthread_t *threads)
{
	__atomic_store_n(&race->stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < NR_ACCESSORS; i++)
		pthread_join(threads[i], NULL);
}

/*
 * Changes pages [@first, @first + @n) of mapping @map under the accessors
 * (splitting the PMD entries of the first): replaced by a new mapping of
 * the same pages in one step, unmapped and mapped again after a moment,
 * or write-protected for a moment. Returns 0 or -errno.
 */
static int remap_part(struct race *race, int fd, int map, __u64 first, __u64 n,
		      __u64 r)
{
	const __u64 pg = getpagesize();
	char *addr = race->maps[map] + first * pg;
	int prot = PROT_READ | PROT_WRITE;

	switch (r % 3) {
	case 0:
		if (mmap(addr, n * pg, prot, MAP_SHARED | MAP_FIXED, fd,
			 first * pg) != addr)
			return -errno;
		return 0;
	case 1:
		if (munmap(addr, n * pg))
			return -errno;
		sleep_us(r % 500);
		/* nothing else may have taken the hole */
		if (mmap(addr, n * pg, prot, MAP_SHARED | MAP_FIXED_NOREPLACE, fd,
			 first * pg) != addr)
			return -errno;
		return 0;
	default:
		if (mprotect(addr, n * pg, PROT_READ))
			return -errno;
		sleep_us(r % 500);
		return mprotect(addr, n * pg, prot) ? -errno : 0;
	}
}

/*
 * Faults race memory decode toggles, device resets, iommufd imports,
 * other dma-bufs' exports and changes to the mapping (split, replaced,
 * unmapped for a moment), then a permanent REVOKE: no access while
 * revoked, none after, no late write in the BAR.
 */
TEST_F_TIMEOUT(dmabuf_stress, faults_race_revocations, 300)
{
	struct vfio_region_dma_range other = { .offset = 0, .length = SZ_2M };
	long toggles = 0, resets = 0, imports = 0, exports = 0, import_errs = 0;
	long remaps = 0;
	pthread_t threads[NR_ACCESSORS];
	__u64 state = self->seed;
	struct race race;
	time_t end;
	int fd, ret;

	fd = race_setup(self->device, self->bar, self->seed, &race);
	ASSERT_GE(fd, 0);
	race_run(_metadata, &race, threads);

	end = time(NULL) + self->seconds;
	while (time(NULL) < end) {
		__u64 r = rnd(&state), first, n;

		switch (r % 5) {
		case 0:
			vfio_pci_cmd_clear(self->device, PCI_COMMAND_MEMORY);
			gen_step(&race);
			sleep_us(rnd(&state) % 2000);
			gen_step(&race);
			vfio_pci_cmd_set(self->device, PCI_COMMAND_MEMORY);
			toggles++;
			break;
		case 1:
			/* the revocation is inside the ioctl: no window to mark */
			ASSERT_EQ(0, __vfio_pci_device_reset(self->device));
			resets++;
			break;
		case 2:
			ret = ioas_map_file(self->iommu, fd, 0, race.size, STRESS_IOVA);
			if (ret)
				import_errs++;
			else
				EXPECT_EQ(0, ioas_unmap(self->iommu, STRESS_IOVA, race.size));
			imports++;
			break;
		case 3:
			ret = dmabuf_export(self->device->fd, self->bar, &other, 1);
			ASSERT_GE(ret, 0);
			close(ret);
			exports++;
			break;
		default:
			/* up to 1 MiB anywhere in either mapping */
			first = (r >> 8) % (race.size / self->pg);
			n = 1 + (r >> 32) % (SZ_1M / self->pg);
			n = n < race.size / self->pg - first ? n : race.size / self->pg - first;
			ASSERT_EQ(0, remap_part(&race, fd, (r >> 62) & 1, first, n, r >> 4));
			remaps++;
			break;
		}
		sleep_us(rnd(&state) % 1000);
	}

	/* for good now: every access from here on fails */
	ASSERT_EQ(0, dmabuf_revoke(self->device->fd, fd));
	gen_step(&race);
	__atomic_store_n(&race.late, 1, __ATOMIC_RELEASE);
	sleep_us(200000);
	race_stop(&race, threads);

	TH_LOG("%ld memory toggles, %ld resets, %ld imports (%ld refused), %ld exports, %ld remaps",
	       toggles, resets, imports, import_errs, exports, remaps);
	TH_LOG("%ld accesses, %ld SIGBUS, %ld SIGSEGV, %ld while revoked (first in generation %ld)",
	       race.ok, race.bus, race.segv, race.violations, race.first_violation_gen);
	EXPECT_EQ(0, race.violations);
	EXPECT_GT(race.ok, 0);
	EXPECT_GT(race.bus, 0);
	EXPECT_EQ(0, late_writes_in_bar(self->device, self->bar));
	munmap(race.maps[0], race.size);
	munmap(race.maps[1], race.size);
	ASSERT_EQ(0, close(fd));
}

/*
 * The dma-buf's fd is closed under faults (the mappings keep it: no
 * SIGBUS), then the device's (every mapping is revoked for good).
 */
TEST_F_TIMEOUT(dmabuf_stress, faults_race_closes, 300)
{
	pthread_t threads[NR_ACCESSORS];
	struct race race;
	long bus_before;
	int fd;

	fd = race_setup(self->device, self->bar, self->seed, &race);
	ASSERT_GE(fd, 0);
	race.strict = true;
	race_run(_metadata, &race, threads);
	sleep_us(self->seconds * 250000);
	ASSERT_EQ(0, close(fd));
	sleep_us(self->seconds * 250000);

	/* the device's fd goes: its dma-bufs are revoked */
	__atomic_store_n(&race.closing, 1, __ATOMIC_RELEASE);
	vfio_pci_device_cleanup(self->device);
	self->device = NULL;
	gen_step(&race);
	__atomic_store_n(&race.late, 1, __ATOMIC_RELEASE);
	sleep_us(200000);
	race_stop(&race, threads);
	bus_before = race.bus;

	TH_LOG("%ld accesses, %ld SIGBUS (%ld before the device was closed), %ld after it",
	       race.ok, race.bus, race.spurious, race.violations);
	EXPECT_EQ(0, race.violations);
	EXPECT_EQ(0, race.spurious);
	EXPECT_GT(race.ok, 0);
	EXPECT_GT(bus_before, 0);
	munmap(race.maps[0], race.size);
	munmap(race.maps[1], race.size);
	self->device = vfio_pci_device_init(device_bdf, self->iommu);
	EXPECT_EQ(0, late_writes_in_bar(self->device, self->bar));
}

/* A child's copy of a mapping is revoked with the parent's. */
TEST_F(dmabuf_stress, fork_then_revoke)
{
	struct vfio_region_dma_range r = { .offset = SZ_2M, .length = 4 * self->pg };
	int fd, to_child[2], to_parent[2], status;
	__u64 *p, val;
	pid_t pid;
	char c;

	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);
	p = dmabuf_mmap(fd, r.length, 0);
	ASSERT_NE(MAP_FAILED, p);
	val = 0x1234;
	ASSERT_TRUE(try_access(0, p, &val, true));
	ASSERT_EQ(0, pipe(to_child));
	ASSERT_EQ(0, pipe(to_parent));

	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		/* 1, 4, 5: the copy did not work; 2: it still works after the revoke */
		if (!try_access(0, p, &val, false))
			_exit(1);
		if (val != 0x1234)
			_exit(4);
		if (!try_access(0, p + self->pg / 8, &val, false))
			_exit(5);
		/* now the parent revokes */
		if (write(to_parent[1], "c", 1) != 1 || read(to_child[0], &c, 1) != 1)
			_exit(3);
		if (try_access(0, p, &val, false) ||
		    try_access(0, p + 2 * self->pg / 8, &val, false))
			_exit(2);
		val = LATE_MAGIC;
		try_access(0, p + 3 * self->pg / 8, &val, true);
		_exit(0);
	}
	ASSERT_EQ(1, read(to_parent[0], &c, 1));
	ASSERT_EQ(0, dmabuf_revoke(self->device->fd, fd));
	ASSERT_EQ(1, write(to_child[1], "r", 1));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	EXPECT_FALSE(try_access(0, p, &val, false));
	EXPECT_NE(LATE_MAGIC, READ_ONCE(*(__u64 *)(self->device->bars[self->bar].vaddr +
						   r.offset + 3 * self->pg)));
	close(to_child[0]);
	close(to_child[1]);
	close(to_parent[0]);
	close(to_parent[1]);
	munmap(p, r.length);
	ASSERT_EQ(0, close(fd));
}

/*
 * Mappings made from a mapping: moved by mremap(), split by mprotect() and
 * a partial munmap(), emptied by MADV_DONTNEED. They read what the dma-buf
 * holds, cannot grow past it, and all are revoked with it.
 */
TEST_F(dmabuf_stress, vma_operations)
{
	struct vfio_region_dma_range r = { .offset = SZ_4M, .length = 8 * self->pg };
	const __u64 pg = self->pg, words = pg / 8;
	__u64 *p, *q, *grown, *moved, val, i;
	int fd, rofd;

	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);
	p = dmabuf_mmap(fd, r.length, 0);
	ASSERT_NE(MAP_FAILED, p);
	for (i = 0; i < 8; i++) {
		val = 0xd0d0 + i;
		ASSERT_TRUE(try_access(0, p + i * words, &val, true));
	}

	/*
	 * MADV_DONTNEED is refused for a PFN map, as for a BAR's mmap; were
	 * it not, the next access would fault the entries back.
	 */
	if (madvise(p, r.length, MADV_DONTNEED))
		EXPECT_EQ(EINVAL, errno);
	ASSERT_TRUE(try_access(0, p + 5 * words, &val, false));
	EXPECT_EQ(0xd0d5, val);

	/* moved: the new place reads the same pages */
	q = mremap(p, r.length, r.length, MREMAP_MAYMOVE | MREMAP_FIXED,
		   mmap_reserve(r.length, SZ_2M, pg));
	ASSERT_NE(MAP_FAILED, q);
	ASSERT_TRUE(try_access(0, q + 7 * words, &val, false));
	EXPECT_EQ(0xd0d7, val);

	/* split in three by mprotect(), then back: PFN maps do not merge */
	ASSERT_EQ(0, mprotect(q + 2 * words, pg, PROT_READ));
	ASSERT_TRUE(try_access(0, q + 2 * words, &val, false));
	EXPECT_EQ(0xd0d2, val);
	ASSERT_EQ(0, mprotect(q + 2 * words, pg, PROT_READ | PROT_WRITE));

	/*
	 * The three moved at once, or EFAULT where the dma-buf's file places
	 * its mappings: mremap() moves several VMAs of such a file only one
	 * at a time.
	 */
	moved = mremap(q, r.length, r.length, MREMAP_MAYMOVE | MREMAP_FIXED,
		       mmap_reserve(r.length, SZ_2M, pg));
	if (moved == MAP_FAILED) {
		EXPECT_EQ(EFAULT, errno);
		TH_LOG("mremap() of three VMAs: %s", strerror(errno));
	} else {
		q = moved;
	}
	ASSERT_TRUE(try_access(0, q + 2 * words, &val, false));
	EXPECT_EQ(0xd0d2, val);

	/* growing past the dma-buf either fails or faults, never reads on */
	grown = mremap(q, r.length, 2 * r.length, MREMAP_MAYMOVE);
	if (grown == MAP_FAILED) {
		TH_LOG("mremap() cannot grow the mapping: %s", strerror(errno));
	} else {
		q = grown;
		EXPECT_FALSE(try_access(0, q + 8 * words, &val, false));
		ASSERT_EQ(0, munmap(q + 8 * words, r.length));
	}

	/* a hole in the middle; both pieces still work, then neither */
	ASSERT_EQ(0, munmap(q + 3 * words, 2 * pg));
	ASSERT_TRUE(try_access(0, q + 2 * words, &val, false));
	ASSERT_TRUE(try_access(0, q + 6 * words, &val, false));
	ASSERT_EQ(0, dmabuf_revoke(self->device->fd, fd));
	for (i = 0; i < 8; i++) {
		if (i == 3 || i == 4)
			continue;
		EXPECT_FALSE(try_access(0, q + i * words, &val, false)) TH_LOG("page %llu", i);
	}
	munmap(q, r.length);
	ASSERT_EQ(0, close(fd));

	/* a read-only dma-buf's mapping cannot be made writable */
	rofd = dmabuf_feature(self->device->fd,
			      VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF,
			      self->bar, O_RDONLY | O_CLOEXEC, 0, &r, 1, 0);
	ASSERT_GE(rofd, 0);
	p = mmap(NULL, pg, PROT_READ, MAP_SHARED, rofd, 0);
	ASSERT_NE(MAP_FAILED, p);
	EXPECT_EQ(-1, mprotect(p, pg, PROT_READ | PROT_WRITE));
	EXPECT_EQ(EACCES, errno);
	munmap(p, pg);
	ASSERT_EQ(0, close(rofd));
}

/*
 * O_DIRECT I/O between the RAM disk and @p, one page each way: the disk's
 * second block is written from @p, then @p is read from the first block,
 * which holds @disk_val. Returns how many of the two moved any data, and
 * logs the answers.
 */
static int direct_io(struct __test_metadata *_metadata, int ram, __u64 *p,
		     __u64 val, __u64 disk_val, const char *when)
{
	const size_t pg = getpagesize();
	__u64 *blk;
	ssize_t n;
	int moved = 0;

	ASSERT_EQ(0, posix_memalign((void **)&blk, pg, pg));
	memset(blk, 0, pg);
	blk[0] = disk_val;
	ASSERT_EQ(pg, pwrite(ram, blk, pg, 0));
	memset(blk, 0, pg);
	ASSERT_EQ(pg, pwrite(ram, blk, pg, pg));

	/* DMA from the mapping: get_user_pages() for reading */
	n = pwrite(ram, p, pg, pg);
	TH_LOG("O_DIRECT write from the mapping %s: %zd (%s)", when, n,
	       n < 0 ? strerror(errno) : "ok");
	if (n < 0)
		EXPECT_EQ(EFAULT, errno);
	if (n > 0) {
		moved++;
		ASSERT_EQ(pg, pread(ram, blk, pg, pg));
		EXPECT_EQ(val, blk[0]);
	}

	/* DMA into the mapping: get_user_pages() for writing */
	n = pread(ram, p, pg, 0);
	TH_LOG("O_DIRECT read into the mapping %s: %zd (%s)", when, n,
	       n < 0 ? strerror(errno) : "ok");
	if (n < 0)
		EXPECT_EQ(EFAULT, errno);
	moved += n > 0;
	free(blk);
	return moved;
}

/*
 * get_user_pages() users on a dma-buf mapping: the memory has no struct
 * page, so each either fails with an errno or, through the VMA's access
 * method, reads what the dma-buf holds; after the revoke none reads
 * anything and none writes to the BAR. The users are this process and
 * another one (a child that has the mapping too), and O_DIRECT I/O with
 * a RAM disk (brd, /dev/ram0) when the kernel has one.
 */
TEST_F(dmabuf_stress, gup_users)
{
	struct vfio_region_dma_range r = { .offset = SZ_2M + SZ_1M, .length = self->pg };
	__u64 *p, val = 0x6775705f75736572ULL, buf[4];
	__u64 *bar = self->device->bars[self->bar].vaddr + r.offset;
	struct iovec local = { .iov_base = buf, .iov_len = sizeof(buf) };
	int fd, mem, child_mem, pipefd[2], to_child[2], round, ram, status;
	struct iovec remote, iov;
	char path[64];
	pid_t pid;
	ssize_t n;

	fd = dmabuf_export(self->device->fd, self->bar, &r, 1);
	ASSERT_GE(fd, 0);
	p = dmabuf_mmap(fd, r.length, 0);
	ASSERT_NE(MAP_FAILED, p);
	ASSERT_TRUE(try_access(0, p, &val, true));
	remote = (struct iovec){ .iov_base = p, .iov_len = sizeof(buf) };
	iov = remote;
	mem = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
	ASSERT_GE(mem, 0);
	ASSERT_EQ(0, pipe(pipefd));
	ASSERT_EQ(0, pipe(to_child));
	ram = open("/dev/ram0", O_RDWR | O_DIRECT | O_CLOEXEC);
	if (ram < 0)
		TH_LOG("no O_DIRECT I/O: /dev/ram0: %s", strerror(errno));

	/* a process that has the mapping too, and waits */
	pid = fork();
	ASSERT_GE(pid, 0);
	if (!pid) {
		char c;

		_exit(read(to_child[0], &c, 1) == 1 ? 0 : 1);
	}
	snprintf(path, sizeof(path), "/proc/%d/mem", pid);
	child_mem = open(path, O_RDWR | O_CLOEXEC);
	ASSERT_GE(child_mem, 0);

	for (round = 0; round < 2; round++) {
		const char *when = round ? "after the revoke" : "before the revoke";
		__u64 late = LATE_MAGIC;

		memset(buf, 0, sizeof(buf));
		n = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
		TH_LOG("process_vm_readv %s: %zd (%s)", when, n, n < 0 ? strerror(errno) : "ok");
		if (n > 0)
			EXPECT_TRUE(!round && buf[0] == val);

		memset(buf, 0, sizeof(buf));
		n = pread(mem, buf, sizeof(buf), (off_t)(unsigned long)p);
		TH_LOG("/proc/self/mem %s: %zd (%s)", when, n, n < 0 ? strerror(errno) : "ok");
		if (n > 0)
			EXPECT_TRUE(!round && buf[0] == val);

		/* another process's mapping, read and written from here */
		memset(buf, 0, sizeof(buf));
		n = pread(child_mem, buf, sizeof(buf), (off_t)(unsigned long)p);
		TH_LOG("/proc/%d/mem read %s: %zd (%s)", pid, when, n,
		       n < 0 ? strerror(errno) : "ok");
		if (n > 0)
			EXPECT_TRUE(!round && buf[0] == val);
		if (round) {
			n = pwrite(child_mem, &late, sizeof(late),
				   (off_t)(unsigned long)(p + 1));
			TH_LOG("/proc/%d/mem write %s: %zd (%s)", pid, when, n,
			       n < 0 ? strerror(errno) : "ok");
			EXPECT_GT(0, n);
		}

		n = vmsplice(pipefd[1], &iov, 1, 0);
		TH_LOG("vmsplice %s: %zd (%s)", when, n, n < 0 ? strerror(errno) : "ok");
		if (n > 0) {
			EXPECT_EQ(n, read(pipefd[0], buf, n));
			EXPECT_TRUE(!round && buf[0] == val);
		}

		/* the disk's LATE_MAGIC may not reach the BAR after the revoke */
		if (ram >= 0)
			EXPECT_EQ(0, round * direct_io(_metadata, ram, p, val,
						       round ? LATE_MAGIC : val, when));
		if (!round)
			ASSERT_EQ(0, dmabuf_revoke(self->device->fd, fd));
	}
	EXPECT_NE(LATE_MAGIC, READ_ONCE(bar[0]));
	EXPECT_NE(LATE_MAGIC, READ_ONCE(bar[1]));
	ASSERT_EQ(1, write(to_child[1], "x", 1));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status));
	if (ram >= 0)
		close(ram);
	close(child_mem);
	close(to_child[0]);
	close(to_child[1]);
	close(pipefd[0]);
	close(pipefd[1]);
	close(mem);
	munmap(p, r.length);
	ASSERT_EQ(0, close(fd));
}

int main(int argc, char *argv[])
{
	device_bdf = vfio_selftests_get_bdf(&argc, argv);
	return test_harness_run(argc, argv);
}
