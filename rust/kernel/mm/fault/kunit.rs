// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of fault handlers on real device memory.
//!
//! They map BAR 2 of QEMU's `ivshmem-plain` device (RAM on the host side, 2 MiB aligned), which
//! no driver has bound while the built-in tests run at boot, into an mm of the test's own (the
//! one KUnit attaches for user copies), through a file whose `mmap()` installs [`VmOperations`],
//! and count the faults of the test task as `getrusage()` would. Without the device the tests are
//! skipped.

use super::*;
use crate::{
    c_str, current,
    error::{from_err_ptr, to_result},
    kunit::skip,
    mm::virt::VmaNew,
    sync::atomic::{Atomic, Relaxed},
    uaccess::{UserPtr, UserSlice},
};

const MIB: usize = 1 << 20;
// From `include/uapi/asm-generic/mman-common.h`, which x86 uses.
const PROT_READ: c_ulong = 0x1;
const PROT_WRITE: c_ulong = 0x2;
const MAP_SHARED: c_ulong = 0x01;
const MAP_FIXED: c_ulong = 0x10;
const IVSHMEM: (u32, u32) = (0x1af4, 0x1110);
/// Where the tests map: a fresh mm has nothing there, and it is 1 GiB aligned.
const BASE: usize = 0x4000_0000;

struct Counts {
    faults: Atomic<u32>,
    huge_faults: Atomic<u32>,
    opens: Atomic<u32>,
    closes: Atomic<u32>,
    drops: Atomic<u32>,
}

/// The data of the test VMAs: the page frames they map, from file page 0 on.
struct BarMap {
    start_pfn: usize,
    pages: usize,
    counts: Arc<Counts>,
}

impl BarMap {
    fn range(&self) -> IoPfnRange<'_> {
        // SAFETY: The page frames are BAR 2 of ivshmem, MMIO; the tests unmap every VMA before
        // they let go of the device.
        unsafe { IoPfnRange::new(self.start_pfn, self.pages) }
    }
}

impl Drop for BarMap {
    fn drop(&mut self) {
        self.counts.drops.fetch_add(1, Relaxed);
    }
}

#[vtable]
impl VmOperations for BarMap {
    fn fault(this: ArcBorrow<'_, Self>, vmf: &mut VmFault<'_>) -> VmFaultReason {
        this.counts.faults.fetch_add(1, Relaxed);
        vmf.insert_io(&this.range(), 0)
    }

    fn huge_fault(this: ArcBorrow<'_, Self>, vmf: &mut VmFault<'_>) -> VmFaultReason {
        this.counts.huge_faults.fetch_add(1, Relaxed);
        vmf.insert_io(&this.range(), 0)
    }

    fn open(this: ArcBorrow<'_, Self>, _vma: &VmaRef) {
        this.counts.opens.fetch_add(1, Relaxed);
    }

    fn close(this: ArcBorrow<'_, Self>, _vma: &VmaRef) {
        this.counts.closes.fetch_add(1, Relaxed);
    }
}

/// What the test file's `mmap()` does.
struct Setup {
    start_pfn: usize,
    pages: usize,
    counts: Arc<Counts>,
    /// Fail after installing the operations.
    fail: bool,
}

/// # Safety
///
/// `file` is a test file whose private data is a `Setup` that outlives it.
unsafe extern "C" fn test_mmap(
    file: *mut bindings::file,
    vma: *mut bindings::vm_area_struct,
) -> c_int {
    // SAFETY: By the safety requirements, the private data is a live `Setup`.
    let setup = unsafe { &*(*file).private_data.cast::<Setup>() };
    // SAFETY: The core calls `mmap()` with a VMA being set up.
    let vma = unsafe { VmaNew::from_raw(vma) };
    let ret = vma.call_mmap(|vma| {
        vma.set_io_pfnmap(false)?;
        let data = Arc::new(
            BarMap {
                start_pfn: setup.start_pfn,
                pages: setup.pages,
                counts: setup.counts.clone(),
            },
            GFP_KERNEL,
        )?;
        vma.set_ops(data)?;
        if setup.fail {
            return Err(EIO);
        }
        Ok(())
    });
    match ret {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

struct TestFops(bindings::file_operations);

// SAFETY: The table is never written.
unsafe impl Sync for TestFops {}

static FOPS: TestFops = TestFops(bindings::file_operations {
    mmap: Some(test_mmap),
    // SAFETY: All-zeroes is a valid `file_operations`: no callbacks.
    ..unsafe { core::mem::zeroed() }
});

/// The ivshmem device, its BAR 2 enabled for memory decode, and a file to map it through.
struct Fixture {
    pdev: *mut bindings::pci_dev,
    enabled: bool,
    file: *mut bindings::file,
    setup: KBox<Setup>,
}

impl Fixture {
    /// Returns `None` (and marks the test skipped) if there is no ivshmem device.
    fn new(pages: usize, fail: bool) -> Result<Option<Self>> {
        // SAFETY: Looking a device up has no requirements; it comes with a reference.
        let pdev = unsafe { bindings::pci_get_device(IVSHMEM.0, IVSHMEM.1, core::ptr::null_mut()) };
        if pdev.is_null() {
            skip(c_str!("no ivshmem-plain device"));
            return Ok(None);
        }
        // SAFETY: `pdev` is valid; drivers bind from other tasks, but not while the built-in
        // tests run at boot, before user space.
        if !unsafe { (*pdev).driver }.is_null() {
            // SAFETY: The reference of `pci_get_device()`.
            unsafe { bindings::pci_dev_put(pdev) };
            skip(c_str!("ivshmem-plain has a driver"));
            return Ok(None);
        }
        // SAFETY: `pdev` is a valid device; BAR 2 is a standard BAR.
        let (start, len) = unsafe {
            (
                bindings::pci_resource_start(pdev, 2),
                bindings::pci_resource_len(pdev, 2),
            )
        };
        let pages = pages.min((len >> PAGE_SHIFT) as usize);
        let setup = KBox::new(
            Setup {
                start_pfn: (start >> PAGE_SHIFT) as usize,
                pages,
                counts: Arc::new(
                    Counts {
                        faults: Atomic::new(0),
                        huge_faults: Atomic::new(0),
                        opens: Atomic::new(0),
                        closes: Atomic::new(0),
                        drops: Atomic::new(0),
                    },
                    GFP_KERNEL,
                )?,
                fail,
            },
            GFP_KERNEL,
        )?;
        let mut this = Self {
            pdev,
            enabled: false,
            file: core::ptr::null_mut(),
            setup,
        };
        // SAFETY: `pdev` is valid; enabling memory decode is undone in `drop`.
        to_result(unsafe { bindings::pci_enable_device_mem(pdev) })?;
        this.enabled = true;
        // SAFETY: `FOPS` is static, the private data outlives the file (dropped after `fput`),
        // and a new inode is made for the file, so that zapping its mapping touches no other.
        let file = unsafe {
            bindings::anon_inode_create_getfile(
                c_str!("rust_mm_fault").as_char_ptr(),
                &FOPS.0,
                (&raw const *this.setup).cast_mut().cast(),
                bindings::O_RDWR as c_int,
                core::ptr::null(),
            )
        };
        this.file = from_err_ptr(file)?;
        // SAFETY: Attaching an mm to a kthread (KUnit's) has no requirements.
        to_result(unsafe { bindings::kunit_attach_mm() })?;
        Ok(Some(this))
    }

    fn counts(&self) -> &Counts {
        &self.setup.counts
    }

    /// Maps `len` bytes from byte `offset` of the BAR at `addr` (fixed), shared and writable.
    fn map(&self, addr: usize, len: usize, offset: usize) -> Result<usize> {
        // SAFETY: `file` is valid; the mm is the test task's own.
        let ret = unsafe {
            bindings::vm_mmap(
                self.file,
                addr,
                len,
                PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_FIXED,
                offset as c_ulong,
            )
        };
        // `vm_mmap()` returns an address or a negative errno.
        if let Ok(errno) = i32::try_from(ret as isize) {
            if errno < 0 {
                return Err(Error::from_errno(errno));
            }
        }
        Ok(ret)
    }

    fn unmap(&self, addr: usize, len: usize) -> Result {
        // SAFETY: The range is in the test task's own mm.
        to_result(unsafe { bindings::vm_munmap(addr, len) })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if !self.file.is_null() {
            // SAFETY: The file reference of `anon_inode_create_getfile()`.
            unsafe { bindings::fput(self.file) };
        }
        if self.enabled {
            // SAFETY: Enabled in `new`.
            unsafe { bindings::pci_disable_device(self.pdev) };
        }
        // SAFETY: The reference of `pci_get_device()` in `new`.
        unsafe { bindings::pci_dev_put(self.pdev) };
    }
}

/// The minor faults of the current task so far.
fn min_flt() -> usize {
    let task = current!().as_ptr();
    // SAFETY: The current task is valid; reading its own counter races with nothing.
    unsafe { (*task).min_flt }
}

fn read_u32(addr: usize) -> Result<u32> {
    UserSlice::new(UserPtr::from_addr(addr), 4)
        .reader()
        .read::<u32>()
}

fn write_u32(addr: usize, v: u32) -> Result {
    UserSlice::new(UserPtr::from_addr(addr), 4)
        .writer()
        .write(&v)
}

/// Touches every page of `len` bytes at `addr`; returns the faults it took.
fn touch(addr: usize, len: usize) -> Result<usize> {
    let before = min_flt();
    for a in (addr..addr + len).step_by(PAGE_SIZE) {
        read_u32(a)?;
    }
    Ok(min_flt() - before)
}

#[kunit_tests(rust_mm_fault_io)]
mod tests {
    use super::*;

    /// A 2 MiB aligned mapping of a 2 MiB aligned range takes one fault per 2 MiB, and zapping
    /// the file's mapping makes the next access fault again.
    #[test]
    fn pmd_faults() -> Result {
        if !cfg!(CONFIG_ARCH_SUPPORTS_PMD_PFNMAP) || !cfg!(CONFIG_TRANSPARENT_HUGEPAGE) {
            skip(c_str!("no PMD-sized PFN mappings"));
            return Ok(());
        }
        let Some(f) = Fixture::new(4 * MIB / PAGE_SIZE, false)? else {
            return Ok(());
        };
        let addr = f.map(BASE, 4 * MIB, 0)?;
        let first = touch(addr, 4 * MIB)?;
        let again = touch(addr, 4 * MIB)?;
        // SAFETY: `file` is valid.
        let file = unsafe { crate::fs::File::from_raw_file(f.file) };
        file.mapping().unmap_all();
        let after_zap = touch(addr, 4 * MIB)?;
        f.unmap(addr, 4 * MIB)?;
        let huge = f.counts().huge_faults.load(Relaxed);

        let small = f.counts().faults.load(Relaxed);

        assert_eq!(addr, BASE);
        assert_eq!((first, again, after_zap), (2, 0, 2));
        // Every fault was served by `huge_fault`, none by `fault`.
        assert!(huge >= 4);
        assert_eq!(small, 0);
        Ok(())
    }

    /// Where the VMA or the page frame is not aligned, every page faults on its own, and both
    /// mappings show the same memory at the same offsets.
    #[test]
    fn fallback_and_data() -> Result {
        let Some(f) = Fixture::new(4 * MIB / PAGE_SIZE, false)? else {
            return Ok(());
        };
        // Aligned address, but from file page 1: the page frames are not 2 MiB aligned.
        let a = f.map(BASE, 2 * MIB, PAGE_SIZE)?;
        // 4 KiB aligned address only, from file page 0.
        let b = f.map(BASE + 16 * MIB + PAGE_SIZE, 2 * MIB, 0)?;
        let fa = touch(a, 2 * MIB)?;
        let fb = touch(b, 2 * MIB)?;
        // Page 1 of the BAR through each mapping; then restore what was there.
        let old = read_u32(b + PAGE_SIZE)?;
        write_u32(a, 0x5a5a_1234)?;
        let seen = read_u32(b + PAGE_SIZE)?;
        write_u32(a, old)?;
        f.unmap(a, 2 * MIB)?;
        f.unmap(b, 2 * MIB)?;

        assert_eq!((fa, fb), (2 * MIB / PAGE_SIZE, 2 * MIB / PAGE_SIZE));
        assert_eq!(seen, 0x5a5a_1234);
        Ok(())
    }

    /// A page outside the range is an error for the access, not a mapping of something else.
    #[test]
    fn outside_range() -> Result {
        let Some(f) = Fixture::new(1, false)? else {
            return Ok(());
        };
        let addr = f.map(BASE, 2 * PAGE_SIZE, 0)?;
        let inside = read_u32(addr);
        let outside = read_u32(addr + PAGE_SIZE);
        f.unmap(addr, 2 * PAGE_SIZE)?;

        assert!(inside.is_ok());
        assert_eq!(outside, Err(EFAULT));
        Ok(())
    }

    /// Every copy of a VMA holds a reference on the data: the data goes with the last VMA.
    #[test]
    fn references_follow_vmas() -> Result {
        let Some(f) = Fixture::new(16, false)? else {
            return Ok(());
        };
        let addr = f.map(BASE, 4 * PAGE_SIZE, 0)?;
        // Splits the VMA in three and closes the middle one.
        f.unmap(addr + PAGE_SIZE, PAGE_SIZE)?;
        let c = f.counts();
        let mid = (
            c.opens.load(Relaxed),
            c.closes.load(Relaxed),
            c.drops.load(Relaxed),
        );
        f.unmap(addr, 4 * PAGE_SIZE)?;
        let end = (
            c.opens.load(Relaxed),
            c.closes.load(Relaxed),
            c.drops.load(Relaxed),
        );

        assert_eq!(mid, (2, 1, 0));
        assert_eq!(end, (2, 3, 1));
        Ok(())
    }

    /// An `mmap()` callback failing after it installed the operations leaks no reference.
    #[test]
    fn failed_mmap_releases() -> Result {
        let Some(f) = Fixture::new(16, true)? else {
            return Ok(());
        };
        let ret = f.map(BASE, PAGE_SIZE, 0);
        let c = f.counts();

        assert_eq!(ret, Err(EIO));
        assert_eq!((c.closes.load(Relaxed), c.drops.load(Relaxed)), (1, 1));
        Ok(())
    }
}
