#!/usr/bin/env python3
"""Collect test results into one record per test case.

Every test stage appends lines "STAGE<TAB>NAME<TAB>pass|fail|skip" to a
results file; `summary` prints the failures and ends with the line
"N passed, N failed" over everything that ran.

  results.py tap RESULTS STAGE FILE...     kselftest TAP output (one per binary)
  results.py kunit RESULTS STAGE JSON      kunit.py --json output
  results.py dmesg RESULTS STAGE FILE      kernel log: WARNING/BUG/lockdep/KASAN/UBSAN
  results.py kmemleak RESULTS STAGE FILE CONFIG  kmemleak report, if CONFIG has it
  results.py check RESULTS STAGE NAME OK   one named check, OK = 0 (pass) or not
  results.py late FILE                      exit 0 if FILE has no word written through a
                                           dma-buf mapping after its revocation
                                           (LATE_MAGIC, vfio_pci_dmabuf_stress_test)
  results.py summary RESULTS               the final line; exit 1 on a failure
  results.py pattern FILE                  exit 0 if FILE holds, at 1 MiB, the
                                           64 KiB pattern vfio_pci_dmabuf_test
                                           writes through the BAR
"""
import json
import re
import sys


def record(results, stage, name, result):
    with open(results, "a") as f:
        f.write(f"{stage}\t{name}\t{result}\n")


def parse_tap(results, stage, files):
    """kselftest_harness TAP: 'ok N name', 'not ok N name', '# SKIP'."""
    for path in files:
        binary = path.rsplit("/", 1)[-1].removesuffix(".tap")
        seen = 0
        planned = None
        status = None
        for line in open(path, errors="replace"):
            line = line.rstrip("\n")
            m = re.match(r"^1\.\.(\d+)$", line)
            if m:
                planned = int(m.group(1))
                continue
            m = re.match(r"^# exit status: (\d+)$", line)
            if m:
                status = int(m.group(1))
                continue
            m = re.match(r"^(not ok|ok) \d+ (.*?)(\s+#\s*(SKIP|skip|XFAIL).*)?$", line)
            if not m:
                continue
            seen += 1
            name = m.group(2).strip()
            if m.group(4) and m.group(4).upper() == "SKIP":
                res = "skip"
            elif m.group(1) == "ok":
                res = "pass"
            else:
                res = "fail"
            record(results, stage, f"{binary}.{name}", res)
        # A binary that crashed or was cut short is a failure of its own,
        # and so is one that had nothing to run (a filter matching none).
        if planned == 0:
            record(results, stage, f"{binary}: planned no tests", "fail")
        elif planned is None or seen != planned:
            record(results, stage, f"{binary}: ran {seen} of {planned} planned tests", "fail")
        elif status not in (0, 4):  # 4 = KSFT_SKIP
            record(results, stage, f"{binary}: exit status {status}", "fail")


def parse_kunit(results, stage, path):
    """kunit.py --json (KernelCI-like): test_cases nested in sub_groups."""
    data = json.load(open(path))

    def walk(group, prefix):
        for case in group.get("test_cases", []):
            status = case.get("status", "FAIL")
            res = {"PASS": "pass", "SKIP": "skip"}.get(status, "fail")
            record(results, stage, f"{prefix}{case['name']}", res)
        for sub in group.get("sub_groups", []):
            walk(sub, f"{prefix}{sub['name']}.")

    walk(data, "")
    if not data.get("sub_groups") and not data.get("test_cases"):
        record(results, stage, "no KUnit results", "fail")


# Reports that fail a boot whatever the tests said. Lockdep reports all
# start with "WARNING: ..." or "BUG: ..." (or the INFO line below); plain
# mentions such as "RCU lockdep checking is enabled" are not reports.
BAD = re.compile(
    r"(WARNING:|BUG:|Kernel panic|Oops|general protection fault|"
    r"INFO: trying to register non-static key|DEBUG_LOCKS_WARN_ON|"
    r"KASAN:|UBSAN:|kmemleak: .* new suspected memory leaks|"
    r"INFO: task .* blocked|rcu_sched self-detected stall|"
    r"refcount_t:|list_(add|del) corruption)"
)


# Reports of the base kernel that are not the series' and that a boot
# cannot avoid, matched by their first line, frames that must all be in
# the report, and the latest time (s) they can come at. Each is shown and
# recorded as a skipped check, never as a pass; any other report fails.
KNOWN = [
    # An edge interrupt during identify_cpu(), long before any driver of
    # the series runs: KASAN flags the irq_desc lock in handle_edge_irq().
    # Seen once in about ten boots with the emulated VT-d under TCG.
    (re.compile(r"BUG: KASAN: wild-memory-access in do_raw_spin_lock"),
     ("handle_edge_irq", "identify_cpu", "start_kernel"), 1.0,
     "early-boot edge IRQ in identify_cpu() (base kernel, TCG)"),
]
TIME = re.compile(r"^\[\s*(\d+\.\d+)\]")


def known_report(lines, i):
    """(reason, end) if the report starting at lines[i] is in KNOWN."""
    m = TIME.match(lines[i])
    t = float(m.group(1)) if m else None
    end = i + 1
    while end < len(lines) and "=====" not in lines[end]:
        end += 1
    block = "\n".join(lines[i:end])
    for first, frames, before, reason in KNOWN:
        if first.search(lines[i]) and t is not None and t < before and \
           all(f in block for f in frames):
            return reason, end
    return None, i + 1


def parse_dmesg(results, stage, path):
    try:
        lines = open(path, errors="replace").read().splitlines()
    except OSError:
        record(results, stage, f"kernel log {path} missing", "fail")
        return
    hits, i = [], 0
    while i < len(lines):
        if not BAD.search(lines[i]):
            i += 1
            continue
        reason, end = known_report(lines, i)
        if reason:
            print(f"{stage}: known kernel report ({reason}): {lines[i]}", file=sys.stderr)
            record(results, stage, f"known base-kernel report: {reason}", "skip")
            i = end
            continue
        hits.append(lines[i])
        i += 1
    for l in hits[:20]:
        print(f"{stage}: kernel log: {l}", file=sys.stderr)
    record(results, stage, "kernel log clean (no WARNING/BUG/lockdep/KASAN/UBSAN)",
           "fail" if hits else "pass")


def parse_kmemleak(results, stage, path, config):
    """kmemleak's report after the guest's explicit scans: must be empty.
    A kernel built with kmemleak must have left the report."""
    try:
        has = "CONFIG_DEBUG_KMEMLEAK=y\n" in open(config).read()
    except OSError:
        has = False
    try:
        text = open(path, errors="replace").read()
    except OSError:
        if has:
            record(results, stage, f"kmemleak report {path} missing", "fail")
        return
    leaks = [l for l in text.splitlines() if l.startswith("unreferenced object")]
    for l in text.splitlines()[:40]:
        print(f"{stage}: kmemleak: {l}", file=sys.stderr)
    record(results, stage, f"kmemleak: no suspected leaks ({len(leaks)} found)",
           "fail" if leaks else "pass")


def summary(results):
    passed = failed = skipped = 0
    try:
        rows = [l.rstrip("\n").split("\t") for l in open(results)]
    except FileNotFoundError:
        rows = []
    for stage, name, res in rows:
        if res == "pass":
            passed += 1
        elif res == "skip":
            skipped += 1
        else:
            failed += 1
            print(f"FAIL {stage}: {name}")
    stages = {}
    for stage, _, res in rows:
        s = stages.setdefault(stage, [0, 0, 0])
        s[{"pass": 0, "fail": 1, "skip": 2}.get(res, 1)] += 1
    for stage, (p, f, s) in stages.items():
        print(f"  {stage}: {p} passed, {f} failed, {s} skipped")
    if skipped:
        print(f"({skipped} skipped)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not rows else 0


# Must match PATTERN_* and pattern_word() in vfio_pci_dmabuf_test.c.
PATTERN_OFFSET, PATTERN_SIZE, PATTERN_MAGIC = 1 << 20, 64 << 10, 0x564649444D414255


def pattern_ok(path):
    import struct
    with open(path, "rb") as f:
        f.seek(PATTERN_OFFSET)
        data = f.read(PATTERN_SIZE)
    want = b"".join(struct.pack("<Q", PATTERN_MAGIC ^ ((i * 0x9E3779B97F4A7C15) % 2**64))
                    for i in range(PATTERN_SIZE // 8))
    return data == want


# Must match LATE_MAGIC in vfio_pci_dmabuf_stress_test.c.
LATE_MAGIC = 0x4554414C46554244


def late_writes(path):
    """Offsets of the 8-byte-aligned LATE_MAGIC words in FILE."""
    import struct
    word = struct.pack("<Q", LATE_MAGIC)
    with open(path, "rb") as f:
        data = f.read()
    return [i for i in range(0, len(data), 8) if data[i:i + 8] == word]


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "tap":
        parse_tap(argv[2], argv[3], argv[4:])
    elif cmd == "kmemleak":
        parse_kmemleak(argv[2], argv[3], argv[4], argv[5])
    elif cmd == "kunit":
        parse_kunit(argv[2], argv[3], argv[4])
    elif cmd == "dmesg":
        parse_dmesg(argv[2], argv[3], argv[4])
    elif cmd == "check":
        record(argv[2], argv[3], argv[4], "pass" if argv[5] == "0" else "fail")
    elif cmd == "pattern":
        ok = pattern_ok(argv[2])
        print(f"host: {PATTERN_SIZE >> 10} KiB at BAR offset {PATTERN_OFFSET >> 20} MiB "
              f"{'match' if ok else 'do NOT match'} the guest's pattern")
        return 0 if ok else 1
    elif cmd == "late":
        found = late_writes(argv[2])
        print(f"host: {len(found)} words written through a dma-buf mapping after its "
              f"revocation in the BAR file" + (f", first at {found[0]:#x}" if found else ""))
        return 1 if found else 0
    elif cmd == "summary":
        return summary(argv[2])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
