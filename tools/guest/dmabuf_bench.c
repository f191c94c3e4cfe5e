// SPDX-License-Identifier: GPL-2.0
/*
 * The Rust dma-buf exporter of vfio-pci-core against the C one, and the
 * BAR mmap of the device fd against both, in one boot.
 *
 * In the first form, each measurement runs in ROUNDS rounds that
 * alternate between the exporters (vfio_pci_core.dmabuf_rust), and what
 * is printed is the Rust/C ratio of the median per-operation times, with
 * the range of the per-round ratios, and the page faults each exporter
 * took. Timings are never printed: they mean little on a debug kernel
 * under TCG, their ratio does. The second form writes the times, for
 * tools/bench.py to turn into ratios of the same repetition.
 *
 *   dmabuf_bench BDF
 *   dmabuf_bench -o FILE [-n REPS] [-s MAX_SIZE] BDF
 *
 * The first form is the quick comparison that tools/test runs. Its
 * output is TAP: the ratios as comments, and as tests what must hold
 * whatever the timings: every dma-buf came from the exporter asked for,
 * both exporters took the same number of faults for the same accesses,
 * and a revoked mapping raises SIGBUS.
 *
 * The second form is tools/bench's: one row per measurement to FILE
 * (TSV: bench, variant, parameter, who, repetition, ns, page faults),
 * REPS repetitions (default 18) of every measurement for the BAR mmap of
 * the device fd and for the dma-bufs of both exporters, in an order that
 * rotates between repetitions:
 *   touch/pass  first touch of every page of a mapping of the first N
 *               bytes of the BAR, N from 2 MiB to the whole BAR (or
 *               MAX_SIZE), then a second pass over the mapped pages;
 *               mapped at an address aligned to 1 GiB ("aligned"), one
 *               page off it ("unaligned"), or where mmap(NULL) put it
 *               ("null")
 *   export      export + close of a dma-buf of 1..64 ranges
 *   import      IOMMU_IOAS_MAP_FILE + IOMMU_IOAS_UNMAP of such a dma-buf
 *   revoke      DMA_BUF_REVOKE of a dma-buf with 1..256 live mmaps, or
 *               1..256 iommufd imports
 * tools/bench turns the rows into medians, ratios, a table and a plot.
 *
 * Built by tools/selftests against the VFIO selftests' libvfio; run by
 * tools/guest/run-vfio-tests in the no-IOMMU boot, and by tools/bench.
 */
#include <errno.h>
#include <getopt.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/iommufd.h>
#include <linux/vfio.h>
#include <libvfio.h>

#define BAR		2
#define ROUNDS		8	/* even: each exporter goes first as often */
#define SZ_64K		(64UL << 10)
#define SZ_2M		(2UL << 20)
#define SZ_1G		(1UL << 30)
#define IOVA		(1ULL << 32)
#define RUST_PARAM	"/sys/module/vfio_pci_core/parameters/dmabuf_rust"

static const char *const exporter_name[2] = { "vfio_pci_core", "vfio_pci_core_rust" };
static struct vfio_pci_device *device;
static struct iommu *iommu;
static unsigned long page_size, bar_size;
static int tests, failed;

static void ok(bool cond, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void ok(bool cond, const char *fmt, ...)
{
	va_list ap;

	printf("%sok %d ", cond ? "" : "not ", ++tests);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	failed += !cond;
}

static void __attribute__((noreturn)) bail(const char *what, int err)
{
	printf("Bail out! %s: %s\n", what, strerror(err));
	exit(1);
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* 0: the C exporter makes the next dma-bufs, 1: the Rust one */
static void use_exporter(int rust)
{
	int fd = open(RUST_PARAM, O_WRONLY);

	if (fd < 0 || write(fd, rust ? "Y" : "N", 1) != 1)
		bail(RUST_PARAM, errno);
	close(fd);
}

static bool made_by(int fd, int rust)
{
	char name[64];

	return !fdinfo_get(fd, "exp_name", name, sizeof(name)) &&
	       !strcmp(name, exporter_name[rust]);
}

/* a dma-buf of [offset, offset + length) of the BAR */
static int export(unsigned long offset, unsigned long length)
{
	struct vfio_region_dma_range r = { .offset = offset, .length = length };
	int fd = dmabuf_export(device->fd, BAR, &r, 1);

	if (fd < 0)
		bail("export", -fd);
	return fd;
}

static void revoke_dmabuf(int fd)
{
	int ret = dmabuf_revoke(device->fd, fd);

	if (ret)
		bail("revoke", -ret);
}

/*
 * One measurement: run() does one round of it for the exporter asked for
 * and returns the time per operation in ns; it counts the page faults of
 * the timed part in *faults and clears *good if a check failed.
 */
struct bench {
	const char *name;
	double (*run)(int rust, long *faults, bool *good);
	/* the page faults of the timed part, if they are counted */
	bool counts_faults;
	/* what they must be, as the selftests promise, or 0 */
	long (*faults_due)(void);
};

/* export a 64 KiB dma-buf and close it */
static double run_export_close(int rust, long *faults, bool *good)
{
	const int n = 64;
	double t;
	int i, fd;

	fd = export(0, SZ_64K);
	*good &= made_by(fd, rust);
	close(fd);
	t = now_ns();
	for (i = 0; i < n; i++)
		close(export(0, SZ_64K));
	return (now_ns() - t) / n;
}

/* IOMMU_IOAS_MAP_FILE of a 2 MiB dma-buf and IOMMU_IOAS_UNMAP of it */
static double run_import_unmap(int rust, long *faults, bool *good)
{
	const int n = 32;
	double t;
	int i, fd, ret;

	fd = export(0, SZ_2M);
	*good &= made_by(fd, rust);
	t = now_ns();
	for (i = 0; i < n; i++) {
		ret = ioas_map_file(iommu, fd, 0, SZ_2M, IOVA);
		if (ret)
			bail("IOMMU_IOAS_MAP_FILE", -ret);
		ret = ioas_unmap(iommu, IOVA, SZ_2M);
		if (ret)
			bail("IOMMU_IOAS_UNMAP", -ret);
	}
	t = (now_ns() - t) / n;
	close(fd);
	return t;
}

/*
 * First touch of every page of a dma-buf of the whole BAR, mapped at a
 * 2 MiB aligned address (PMD faults) or one page off (page faults).
 */
static double first_touch(int rust, long *faults, bool *good, unsigned long skew)
{
	unsigned long off;
	char *area, *p;
	double t;
	int fd;

	fd = export(0, bar_size);
	*good &= made_by(fd, rust);
	area = mmap(NULL, bar_size + 2 * SZ_2M, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		bail("mmap of the reservation", errno);
	p = (char *)(((unsigned long)area + SZ_2M - 1) & ~(SZ_2M - 1)) + skew;
	if (mmap(p, bar_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		 fd, 0) != p)
		bail("mmap of the dma-buf", errno);
	*faults = minor_faults();
	t = now_ns();
	for (off = 0; off < bar_size; off += page_size)
		(void)*(volatile char *)(p + off);
	t = now_ns() - t;
	*faults = minor_faults() - *faults;
	munmap(area, bar_size + 2 * SZ_2M);
	close(fd);
	return t;
}

static double run_touch_aligned(int rust, long *faults, bool *good)
{
	return first_touch(rust, faults, good, 0);
}

static double run_touch_unaligned(int rust, long *faults, bool *good)
{
	return first_touch(rust, faults, good, page_size);
}

/* one fault per 2 MiB of the BAR, mapped aligned; one per page else */
static long pmd_faults(void)
{
	return bar_size / SZ_2M;
}

static long pte_faults(void)
{
	return bar_size / page_size;
}

/* REVOKE of a 64 KiB dma-buf with 256 live mmaps, each touched once */
static double run_revoke_mmaps(int rust, long *faults, bool *good)
{
	enum { N = 256 };
	static char *p[N];
	double t;
	int i, fd;

	fd = export(SZ_2M, SZ_64K);
	*good &= made_by(fd, rust);
	for (i = 0; i < N; i++) {
		p[i] = mmap(NULL, SZ_64K, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p[i] == MAP_FAILED)
			bail("mmap of the dma-buf", errno);
		p[i][(i * page_size) % SZ_64K] = (char)i;
	}
	t = now_ns();
	revoke_dmabuf(fd);
	t = now_ns() - t;
	for (i = 0; i < N; i++) {
		*good &= sigbus((__u64 *)(p[i] + (i * page_size) % SZ_64K));
		munmap(p[i], SZ_64K);
	}
	close(fd);
	return t;
}

static const struct bench benches[] = {
	{ "export+close of 64 KiB", run_export_close, false },
	{ "iommufd map_file+unmap of 2 MiB", run_import_unmap, false },
	{ "first touch of the BAR, 2 MiB aligned", run_touch_aligned, true, pmd_faults },
	{ "first touch of the BAR, 4 KiB aligned", run_touch_unaligned, true, pte_faults },
	{ "revoke with 256 live mmaps", run_revoke_mmaps },
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	double s[ROUNDS];

	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* --- tools/bench: the full measurements, as TSV rows --- */

static FILE *tsv;
static int reps = 18;
static unsigned long max_size;

static void row(const char *bench, const char *variant, unsigned long param,
		const char *who, int rep, double ns, long faults)
{
	fprintf(tsv, "%s\t%s\t%lu\t%s\t%d\t%.0f\t%ld\n", bench, variant, param,
		who, rep, ns, faults);
}

static const char *const who_name[3] = { "c", "rust", "bar" };
#define BAR_MMAP 2

/*
 * Map the first len bytes of the BAR, through the device fd (who ==
 * BAR_MMAP) or a dma-buf fd, at an address aligned to 1 GiB, one page
 * off it, or where mmap(NULL) puts it. Returns the mapping; *res and
 * *res_len are what to munmap().
 */
static char *map_bar(int who, int fd, unsigned long len, const char *variant,
		     char **res, unsigned long *res_len)
{
	off_t off = who == BAR_MMAP ? device->bars[BAR].info.offset : 0;
	char *p;

	if (!strcmp(variant, "null")) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
		if (p == MAP_FAILED)
			bail("mmap(NULL)", errno);
		*res = p;
		*res_len = len;
		return p;
	}
	*res_len = len + SZ_1G + page_size;
	*res = mmap(NULL, *res_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (*res == MAP_FAILED)
		bail("mmap of the reservation", errno);
	p = (char *)(((unsigned long)*res + SZ_1G - 1) & ~(SZ_1G - 1));
	if (!strcmp(variant, "unaligned"))
		p += page_size;
	if (mmap(p, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
		 off) != p)
		bail("mmap", errno);
	return p;
}

/* read one byte of every page: ns, and page faults in *faults */
static double touch(const char *p, unsigned long len, long *faults)
{
	unsigned long off;
	double t;

	*faults = minor_faults();
	t = now_ns();
	for (off = 0; off < len; off += page_size)
		(void)*(const volatile char *)(p + off);
	t = now_ns() - t;
	*faults = minor_faults() - *faults;
	return t;
}

/*
 * Mappings smaller than this are mapped, touched and unmapped again until
 * this much was touched, and the times summed: single passes over a few
 * MiB are too short to time under TCG.
 */
#define TOUCH_MIN	(64UL << 20)

static const char *const variants[] = { "aligned", "unaligned", "null" };

/* first touch and a second pass of the first @len bytes of the BAR */
static void bench_touch(unsigned long len, int v, int who, int rep)
{
	unsigned long n = len < TOUCH_MIN ? TOUCH_MIN / len : 1;
	unsigned long res_len, i;
	double t_first = 0, t_pass = 0;
	long faults = -1, pass_faults = 0, f;
	char *p, *res;
	int fd;

	for (i = 0; i < n; i++) {
		fd = device->fd;
		if (who != BAR_MMAP) {
			fd = export(0, len);
			if (!made_by(fd, who))
				bail("dma-buf of the wrong exporter", EINVAL);
		}
		p = map_bar(who, fd, len, variants[v], &res, &res_len);
		t_first += touch(p, len, &f);
		/* the faults of one mapping: the largest, if they differ */
		faults = f > faults ? f : faults;
		t_pass += touch(p, len, &f);
		pass_faults = f > pass_faults ? f : pass_faults;
		munmap(res, res_len);
		if (who != BAR_MMAP)
			close(fd);
	}
	row("touch", variants[v], len, who_name[who], rep, t_first / n, faults);
	row("pass", variants[v], len, who_name[who], rep, t_pass / n, pass_faults);
}

/* n ranges of 64 KiB, 128 KiB apart: a dma-buf of n discontiguous pieces */
static int export_ranges(int n)
{
	static struct vfio_region_dma_range r[256];
	int i, fd;

	for (i = 0; i < n; i++) {
		r[i].offset = i * 2 * SZ_64K;
		r[i].length = SZ_64K;
	}
	fd = dmabuf_export(device->fd, BAR, r, n);
	if (fd < 0)
		bail("export", -fd);
	return fd;
}

/* the exporter the next dma-bufs come from, for checking that they do */
static int exporter_in_use;

static int export_checked(unsigned long offset, unsigned long length)
{
	int fd = export(offset, length);

	if (!made_by(fd, exporter_in_use))
		bail("dma-buf of the wrong exporter", EINVAL);
	return fd;
}

/* export+close, and iommufd import+unmap, of a dma-buf of @n ranges */
static void bench_export_import(int n, int who, int rep)
{
	const int ops = 32;
	int i, fd, ret;
	double t;

	t = now_ns();
	for (i = 0; i < ops; i++)
		close(export_ranges(n));
	row("export", "ranges", n, who_name[who], rep, (now_ns() - t) / ops, 0);

	fd = export_ranges(n);
	if (!made_by(fd, who))
		bail("dma-buf of the wrong exporter", EINVAL);
	t = now_ns();
	for (i = 0; i < ops; i++) {
		ret = ioas_map_file(iommu, fd, 0, n * SZ_64K, IOVA);
		if (ret)
			bail("IOMMU_IOAS_MAP_FILE", -ret);
		ret = ioas_unmap(iommu, IOVA, n * SZ_64K);
		if (ret)
			bail("IOMMU_IOAS_UNMAP", -ret);
	}
	row("import", "ranges", n, who_name[who], rep, (now_ns() - t) / ops, 0);
	close(fd);
}

/* each revoke measurement is the mean of this many revokes */
#define REVOKES		4

/* revoke of a dma-buf with @n live mmaps, and with @n iommufd imports */
static void bench_revoke(int n, int who, int rep)
{
	static char *p[256];
	double t_mmaps = 0, t_imports = 0, t;
	int i, k, fd, ret;
	bool good = true;

	for (k = 0; k < REVOKES; k++) {
		fd = export_checked(SZ_2M, SZ_64K);
		for (i = 0; i < n; i++) {
			p[i] = mmap(NULL, SZ_64K, PROT_READ | PROT_WRITE,
				    MAP_SHARED, fd, 0);
			if (p[i] == MAP_FAILED)
				bail("mmap of the dma-buf", errno);
			p[i][(i * page_size) % SZ_64K] = (char)i;
		}
		t = now_ns();
		revoke_dmabuf(fd);
		t_mmaps += now_ns() - t;
		for (i = 0; i < n; i++) {
			good &= sigbus((__u64 *)(p[i] + (i * page_size) % SZ_64K));
			munmap(p[i], SZ_64K);
		}
		close(fd);

		fd = export_checked(SZ_2M, SZ_64K);
		for (i = 0; i < n; i++) {
			ret = ioas_map_file(iommu, fd, 0, SZ_64K, IOVA + i * SZ_2M);
			if (ret)
				bail("IOMMU_IOAS_MAP_FILE", -ret);
		}
		t = now_ns();
		revoke_dmabuf(fd);
		t_imports += now_ns() - t;
		for (i = 0; i < n; i++) {
			ret = ioas_unmap(iommu, IOVA + i * SZ_2M, SZ_64K);
			if (ret)
				bail("IOMMU_IOAS_UNMAP after the revoke", -ret);
		}
		close(fd);
	}
	if (!good)
		bail("a revoked mapping did not raise SIGBUS", EINVAL);
	row("revoke", "mmaps", n, who_name[who], rep, t_mmaps / REVOKES, 0);
	row("revoke", "imports", n, who_name[who], rep, t_imports / REVOKES, 0);
}

/* who: the BAR mmap or an exporter, the next dma-bufs of which it makes */
static void use(int who)
{
	if (who != BAR_MMAP) {
		use_exporter(who);
		exporter_in_use = who;
	}
}

/*
 * Repetition -1 warms up and is not written. Each measurement is taken
 * for the BAR mmap and both exporters (or both exporters) back to back,
 * in an order that rotates from one measurement to the next, so that a
 * drift of the machine weighs on all alike and each ratio compares times
 * taken moments apart. The first of a group also warmed up what the
 * group touches first (more of the BAR, new kernel paths): each group is
 * run once unwritten before it is measured.
 */
static FILE *devnull, *out_file;

/* rows go to @out if @yes, nowhere otherwise */
static void written(bool yes, FILE *out)
{
	tsv = yes ? out : devnull;
}

static int run_full(void)
{
	unsigned long len;
	int r, i, v, n, k;

	if (!max_size || max_size > bar_size)
		max_size = bar_size;
	if (max_size < SZ_2M)
		bail("-s: less than 2 MiB", EINVAL);
	out_file = tsv;
	devnull = fopen("/dev/null", "w");
	if (!devnull)
		bail("/dev/null", errno);
	for (r = -1; r < reps; r++) {
		/* the warm-up repetition is not written at all */
		FILE *out = r < 0 ? devnull : out_file;

		k = r + 1;
		for (len = SZ_2M; len <= max_size; len = len * 4 > max_size &&
		     len < max_size ? max_size : len * 4) {
			for (v = 0; v < 3; v++, k++) {
				for (i = 0; i < 6; i++) {
					written(i >= 3, out);
					use((i + k) % 3);
					bench_touch(len, v, (i + k) % 3, r);
				}
			}
		}
		for (n = 1; n <= 64; n *= 4, k++) {
			for (i = 0; i < 4; i++) {
				written(i >= 2, out);
				use((i + k) % 2);
				bench_export_import(n, (i + k) % 2, r);
			}
		}
		for (n = 1; n <= 256; n *= 4, k++) {
			for (i = 0; i < 4; i++) {
				written(i >= 2, out);
				use((i + k) % 2);
				bench_revoke(n, (i + k) % 2, r);
			}
		}
		fflush(out_file);
		if (r >= 0)
			fprintf(stderr, "dmabuf_bench: repetition %d of %d done\n", r + 1, reps);
	}
	tsv = out_file;
	fclose(devnull);
	use_exporter(0);
	return 0;
}

int main(int argc, char **argv)
{
	const int nb = sizeof(benches) / sizeof(benches[0]);
	double t[sizeof(benches) / sizeof(benches[0])][2][ROUNDS];
	long faults[sizeof(benches) / sizeof(benches[0])][2][ROUNDS];
	bool good[sizeof(benches) / sizeof(benches[0])][2];
	int b, r, e, opt, ntests = nb;
	const char *out = NULL;

	while ((opt = getopt(argc, argv, "o:n:s:")) != -1) {
		switch (opt) {
		case 'o':
			out = optarg;
			break;
		case 'n':
			reps = atoi(optarg);
			break;
		case 's':
			max_size = strtoul(optarg, NULL, 0);
			break;
		default:
			argc = 0;
		}
	}
	if (argc != optind + 1 || reps < 1) {
		fprintf(stderr, "usage: %s [-o FILE [-n REPS] [-s MAX_SIZE]] BDF\n",
			argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	page_size = getpagesize();
	if (access(RUST_PARAM, W_OK)) {
		printf("1..0 # SKIP no Rust exporter (%s)\n", RUST_PARAM);
		/* a skip leaves tools/bench nothing to report */
		return out ? 1 : 0;
	}
	iommu = iommu_init(default_iommu_mode);
	device = vfio_pci_device_init(argv[optind], iommu);
	bar_size = device->bars[BAR].info.size;
	if (bar_size < 4 * SZ_2M) {
		printf("1..0 # SKIP BAR%d of %s is smaller than 8 MiB\n", BAR, argv[optind]);
		return out ? 1 : 0;
	}
	if (out) {
		tsv = fopen(out, "w");
		if (!tsv)
			bail(out, errno);
		fprintf(tsv, "bench\tvariant\tparam\twho\trep\tns\tfaults\n");
		run_full();
		fclose(tsv);
		vfio_pci_device_cleanup(device);
		iommu_cleanup(iommu);
		return 0;
	}

	for (b = 0; b < nb; b++)
		ntests += benches[b].counts_faults + !!benches[b].faults_due;
	printf("TAP version 13\n1..%d\n", ntests);
	/*
	 * Round r runs every measurement with one exporter, then with the
	 * other, starting with C in even rounds and with Rust in odd ones,
	 * so that a drift of the machine weighs on both alike. Round -1
	 * warms both up and is not counted.
	 */
	memset(good, 1, sizeof(good));
	for (r = -1; r < ROUNDS; r++) {
		for (int i = 0; i < 2 && r < 0; i++) {
			long f;
			bool g;

			use_exporter(i);
			for (b = 0; b < nb; b++)
				benches[b].run(i, &f, &g);
		}
		if (r < 0)
			continue;
		for (int i = 0; i < 2; i++) {
			e = i ^ (r & 1);
			use_exporter(e);
			for (b = 0; b < nb; b++) {
				faults[b][e][r] = 0;
				t[b][e][r] = benches[b].run(e, &faults[b][e][r], &good[b][e]);
			}
		}
	}
	use_exporter(0);

	printf("# Rust/C exporter time ratios, median of %d alternating rounds (range of the per-round ratios); page faults of a round\n",
	       ROUNDS);
	for (b = 0; b < nb; b++) {
		double lo = 1e9, hi = 0;

		for (r = 0; r < ROUNDS; r++) {
			double q = t[b][1][r] / t[b][0][r];

			lo = q < lo ? q : lo;
			hi = q > hi ? q : hi;
		}
		printf("# bench: %-40s %5.2f (%.2f-%.2f)", benches[b].name,
		       median(t[b][1], ROUNDS) / median(t[b][0], ROUNDS), lo, hi);
		if (benches[b].counts_faults)
			printf("  faults C %ld, Rust %ld", faults[b][0][0], faults[b][1][0]);
		printf("\n");
	}
	for (b = 0; b < nb; b++) {
		bool same = true;

		for (r = 0; r < ROUNDS; r++)
			same &= faults[b][0][r] == faults[b][0][0] &&
				faults[b][1][r] == faults[b][0][0];
		ok(good[b][0] && good[b][1],
		   "%s: every dma-buf from the exporter asked for%s",
		   benches[b].name,
		   benches[b].run == run_revoke_mmaps ? ", SIGBUS on every mapping after the revoke" : "");
		if (benches[b].counts_faults)
			ok(same, "%s: same page faults in every round for both exporters (C %ld, Rust %ld)",
			   benches[b].name, faults[b][0][0], faults[b][1][0]);
		if (benches[b].faults_due)
			ok(same && faults[b][0][0] == benches[b].faults_due(),
			   "%s: %ld page faults, as promised", benches[b].name,
			   benches[b].faults_due());
	}

	vfio_pci_device_cleanup(device);
	iommu_cleanup(iommu);
	return failed ? 1 : 0;
}
