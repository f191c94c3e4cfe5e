#!/usr/bin/env python3
"""tools/bench.py IN_DIR OUT_DIR: the report of one tools/bench boot.

IN_DIR has the guest's bench.tsv (rows of dmabuf_bench -o) and env.txt.
OUT_DIR gets bench.tsv (the rows, as measured), summary.tsv (medians and
ratios), bench.md (the tables the README quotes) and bench.png (the plot).

Every figure is a count or a ratio of two times measured in the same
repetition of the same boot: the median of the per-repetition ratios,
with their quartiles. No time is reported on its own: under TCG it says
little about hardware, the ratios say how the paths compare.
"""
import csv
import re
import shutil
import statistics
import sys
from collections import defaultdict
from pathlib import Path

WHO = {"bar": "BAR mmap", "c": "C exporter", "rust": "Rust exporter"}


def size_str(n):
    n = int(n)
    return f"{n >> 30} GiB" if n >= 1 << 30 else f"{n >> 20} MiB"


def load(path):
    # t[(bench, variant, param, who)][rep] = ns; f[...][rep] = faults
    t, f = defaultdict(dict), defaultdict(dict)
    with open(path) as fh:
        for r in csv.DictReader(fh, delimiter="\t"):
            k = (r["bench"], r["variant"], int(r["param"]), r["who"])
            t[k][int(r["rep"])] = float(r["ns"])
            f[k][int(r["rep"])] = int(r["faults"])
    return t, f


def ratio(t, a, b):
    """Median and quartiles of t[a][rep] / t[b][rep] over the repetitions."""
    q = [t[a][r] / t[b][r] for r in t[a] if r in t[b] and t[b][r] > 0]
    if not q:
        return None
    if len(q) < 4:
        return statistics.median(q), min(q), max(q)
    q1, q2, q3 = statistics.quantiles(q, n=4)
    return q2, q1, q3


def cases(t, bench, sizes, variants):
    """(size, variant, {who: key}) of each measurement of bench that was taken."""
    for s in sizes:
        for v in variants:
            k = {w: (bench, v, s, w) for w in WHO}
            if k["bar"] in t:
                yield s, v, k


def fmt(x):
    if x is None:
        return "-"
    m, lo, hi = x
    return f"{m:.2f} ({lo:.2f}-{hi:.2f})"


def faults(f, k):
    v = sorted(set(f[k].values()))
    return "/".join(str(x) for x in v) if v else "-"


def main(src, dst):
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    t, f = load(src / "bench.tsv")
    env = dict(l.rstrip("\n").split("\t", 1) for l in open(src / "env.txt") if "\t" in l)
    shutil.copy(src / "bench.tsv", dst / "bench.tsv")
    reps = len({r for v in t.values() for r in v})
    sizes = sorted({k[2] for k in t if k[0] == "touch"})
    variants = ["aligned", "unaligned", "null"]
    summary = [("bench", "variant", "param", "figure", "median", "q1", "q3")]
    md = []
    md.append("# tools/bench: BAR mmap, C and Rust dma-buf exporters, one boot\n")
    md.append(f"Kernel {env.get('kernel', '?')} without debug options (tools/build bench), "
              f"QEMU TCG, vCPUs: {env.get('cpus', '?')} ({env.get('cpu', '?')}; 1 GiB pages: "
              f"{env.get('pdpe1gb', '?')}), ivshmem BAR2 `{env.get('bar2', '?')}` backed by a "
              f"sparse host file, no-IOMMU mode. {reps} repetitions after a warm-up, the BAR "
              "mmap and the two exporters in turn, in an order rotated every repetition. "
              "Each figure is the median of the per-repetition ratios of two times of the "
              "same repetition, with the first and third quartiles of those ratios in "
              "parentheses, or a count of page faults (the same in every repetition unless "
              "several are given).\n")
    md.append(f"Series: {env.get('series', '?')}.\n")

    taps = sorted(src.glob("placement-*.tap"))
    if taps:
        md.append("## Fault counts asserted in this boot\n")
        md.append("`vfio_pci_dmabuf_test`'s `mmap_null_placement` and `bar_mmap_null_placement`, "
                  f"run against this boot's {env.get('bar2', '?').split()[0]} BAR "
                  "(mmap(NULL) of 4 MiB: 2 faults; one page in: 512; the whole BAR: one "
                  "per 1 GiB where it is placed 1 GiB aligned):\n")
        md.append("| exporter | test | result |")
        md.append("|---|---|---|")
        for tap in taps:
            for line in tap.read_text().splitlines():
                m = re.match(r"(not ok|ok) \d+ (\S+)(.*)", line)
                if m:
                    md.append(f"| {tap.stem.split('-', 1)[1]} | {m.group(2)} | "
                              f"{m.group(1)}{m.group(3)} |")
        md.append("")

    md.append("## Mapping the BAR: first touch of every page\n")
    md.append("`aligned`: `MAP_FIXED` at a 1 GiB aligned address; `unaligned`: one page "
              "off it; `null`: where `mmap(NULL, ...)` puts it. Faults: page faults of the "
              "first pass over the mapping. `C/BAR`, `Rust/BAR`: the dma-buf mmap's time "
              "over the BAR mmap's, same variant; `Rust/C`: the two exporters.\n")
    md.append("| size | variant | faults BAR | faults C | faults Rust | C/BAR | Rust/BAR | Rust/C |")
    md.append("|---|---|---|---|---|---|---|---|")
    for s, v, k in cases(t, "touch", sizes, variants):
        cb, rb, rc = ratio(t, k["c"], k["bar"]), ratio(t, k["rust"], k["bar"]), \
            ratio(t, k["rust"], k["c"])
        md.append(f"| {size_str(s)} | {v} | {faults(f, k['bar'])} | {faults(f, k['c'])} | "
                  f"{faults(f, k['rust'])} | {fmt(cb)} | {fmt(rb)} | {fmt(rc)} |")
        for w in WHO:
            summary.append(("touch", v, s, f"faults {w}", faults(f, k[w]), "", ""))
        for name, x in (("C/BAR", cb), ("Rust/BAR", rb), ("Rust/C", rc)):
            if x:
                summary.append(("touch", v, s, name, *(f"{y:.3f}" for y in x)))
    md.append("")
    md.append("## Mapping the BAR: a second pass, every page mapped\n")
    md.append("| size | variant | C/BAR | Rust/BAR | BAR: first touch/second pass |")
    md.append("|---|---|---|---|---|")
    for s, v, k in cases(t, "pass", sizes, variants):
        cb, rb = ratio(t, k["c"], k["bar"]), ratio(t, k["rust"], k["bar"])
        ft = ratio(t, ("touch", v, s, "bar"), k["bar"])
        md.append(f"| {size_str(s)} | {v} | {fmt(cb)} | {fmt(rb)} | {fmt(ft)} |")
        for name, x in (("C/BAR", cb), ("Rust/BAR", rb), ("BAR touch/pass", ft)):
            if x:
                summary.append(("pass", v, s, name, *(f"{y:.3f}" for y in x)))
    md.append("")

    md.append("## Export, import, revoke\n")
    md.append("`export`: `VFIO_DEVICE_FEATURE_DMA_BUF` + close of a dma-buf of n ranges of "
              "64 KiB; `import`: `IOMMU_IOAS_MAP_FILE` + `IOMMU_IOAS_UNMAP` of it; "
              "`revoke`: `VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE` of a 64 KiB dma-buf with n live "
              "mmaps (each with a page mapped) or n iommufd imports. `x n/1`: the time for n "
              "over the time for 1, same exporter (linear: about n; constant: about 1).\n")
    md.append("| operation | n | Rust/C | C: x n/1 | Rust: x n/1 |")
    md.append("|---|---|---|---|---|")
    ops = [("export", "ranges"), ("import", "ranges"), ("revoke", "mmaps"), ("revoke", "imports")]
    for b, v in ops:
        ns = sorted({k[2] for k in t if k[0] == b and k[1] == v})
        for n in ns:
            rc = ratio(t, (b, v, n, "rust"), (b, v, n, "c"))
            gc = ratio(t, (b, v, n, "c"), (b, v, ns[0], "c"))
            gr = ratio(t, (b, v, n, "rust"), (b, v, ns[0], "rust"))
            md.append(f"| {b} ({v}) | {n} | {fmt(rc)} | {fmt(gc)} | {fmt(gr)} |")
            for name, x in (("Rust/C", rc), ("C x n/1", gc), ("Rust x n/1", gr)):
                if x:
                    summary.append((b, v, n, name, *(f"{y:.3f}" for y in x)))
    md.append("")
    md.append("How revoke grows: the cost of each mmap or import added from n to 4n, "
              "over the cost of a revoke with one (median over the repetitions):\n")
    md.append("| operation | n to 4n | C | Rust |")
    md.append("|---|---|---|---|")
    for b, v in ops[2:]:
        ns = sorted({k[2] for k in t if k[0] == b and k[1] == v})
        for lo, hi in zip(ns, ns[1:]):
            cells = []
            for w in ("c", "rust"):
                one, a, z = t[(b, v, ns[0], w)], t[(b, v, lo, w)], t[(b, v, hi, w)]
                q = [(z[r] - a[r]) / (hi - lo) / one[r] for r in z if r in a and r in one]
                cells.append(f"{statistics.median(q):.3f}" if q else "-")
                if q:
                    summary.append((b, v, hi, f"{w} per added item / one", f"{statistics.median(q):.3f}", "", ""))
            md.append(f"| {b} ({v}) | {lo} to {hi} | {cells[0]} | {cells[1]} |")
    md.append("")
    md.append("![the figures above as plots](bench.png)\n")
    (dst / "bench.md").write_text("\n".join(md))
    with open(dst / "summary.tsv", "w", newline="") as fh:
        csv.writer(fh, delimiter="\t", lineterminator="\n").writerows(summary)
    plot(t, f, sizes, variants, ops, dst / "bench.png", env)


def plot(t, f, sizes, variants, ops, out, env):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 2, figsize=(12, 9))
    style = {"aligned": "-", "unaligned": "--", "null": ":"}
    color = {"bar": "black", "c": "tab:blue", "rust": "tab:orange"}
    xs = [s >> 20 for s in sizes]

    a = ax[0][0]
    for v in variants:
        for w in WHO:
            y = [statistics.median(f[("touch", v, s, w)].values()) for s in sizes]
            a.plot(xs, y, style[v], color=color[w], marker="o", label=f"{WHO[w]}, {v}")
    a.set(xscale="log", yscale="log", xlabel="mapping size (MiB)", ylabel="page faults",
          title="Page faults of the first touch")
    a.legend(fontsize=7)

    a = ax[0][1]
    for v in variants:
        for w in ("c", "rust"):
            r = [ratio(t, ("touch", v, s, w), ("touch", v, s, "bar")) for s in sizes]
            a.errorbar(xs, [x[0] for x in r], yerr=[[x[0] - x[1] for x in r],
                       [x[2] - x[0] for x in r]], fmt=style[v], color=color[w],
                       marker="o", capsize=2, label=f"{WHO[w]}/BAR, {v}")
    a.axhline(1.0, color="gray", lw=0.5)
    a.axhline(1.1, color="gray", lw=0.5, ls="--")
    a.set(xscale="log", xlabel="mapping size (MiB)", ylabel="time ratio",
          title="First touch: dma-buf mmap over BAR mmap (median, quartiles)")
    a.legend(fontsize=7)

    a = ax[1][0]
    for b, v in ops[2:]:
        ns = sorted({k[2] for k in t if k[0] == b and k[1] == v})
        for w in ("c", "rust"):
            r = [ratio(t, (b, v, n, w), (b, v, ns[0], w)) for n in ns]
            a.errorbar(ns, [x[0] for x in r], yerr=[[x[0] - x[1] for x in r],
                       [x[2] - x[0] for x in r]], fmt="-" if v == "mmaps" else "--",
                       color=color[w], marker="o", capsize=2, label=f"{WHO[w]}, {v}")
    a.set(xscale="log", yscale="log", xlabel="live mmaps or imports",
          ylabel="revoke time / revoke time with 1", title="Revoke: how it grows")
    a.legend(fontsize=7)

    a = ax[1][1]
    for b, v in ops:
        ns = sorted({k[2] for k in t if k[0] == b and k[1] == v})
        r = [ratio(t, (b, v, n, "rust"), (b, v, n, "c")) for n in ns]
        a.errorbar(ns, [x[0] for x in r], yerr=[[x[0] - x[1] for x in r],
                   [x[2] - x[0] for x in r]], marker="o", capsize=2, label=f"{b} ({v})")
    a.axhline(1.0, color="gray", lw=0.5)
    a.set(xscale="log", xlabel="ranges, mmaps or imports", ylabel="Rust time / C time",
          title="Rust exporter over C exporter")
    a.legend(fontsize=7)
    fig.suptitle(f"tools/bench, one boot: kernel {env.get('kernel', '?')}, TCG, BAR2 "
                 f"{size_str(max(sizes))}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: tools/bench.py IN_DIR OUT_DIR")
    main(sys.argv[1], sys.argv[2])
