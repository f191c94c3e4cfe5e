// SPDX-License-Identifier: GPL-2.0

//! VMA operations and page fault handlers.
//!
//! C header: [`include/linux/mm.h`](srctree/include/linux/mm.h)
//!
//! A driver whose mappings are filled at fault time implements [`VmOperations`] on the data its
//! VMAs need and installs it from its `mmap()` callback with [`VmaNew::set_ops`]. Each VMA, and
//! each copy of it that a split, `mremap()` or `fork()` makes, holds a reference on that data
//! until the VMA is closed.
//!
//! Device memory is mapped with [`VmFault::insert_io`], from an [`IoPfnRange`]: the page frames
//! of an MMIO range that the caller owns, which the bus abstractions hand out (for example
//! `pci::BarRange`). The abstraction decides, once for every driver, where a fault may use a
//! PMD or PUD sized entry: the entry must lie within the VMA and within the range, and the page
//! frame must be aligned to its size. Anything else falls back to a smaller size, which the core
//! retries, down to a single page.
//!
//! Mappings filled by faults are torn down by zapping their page table entries, for example with
//! [`AddressSpace::unmap_range`] over a file's mapping, after which new accesses fault again.
//!
//! [`VmaNew::set_ops`]: crate::mm::virt::VmaNew::set_ops

use crate::{
    bindings,
    error::{Error, VTABLE_DEFAULT_ERROR},
    mm::virt::{flags, vm_flags_t, VmaRef},
    page::{PAGE_SHIFT, PAGE_SIZE},
    prelude::*,
    sync::{Arc, ArcBorrow},
    types::{ForeignOwnable, Opaque},
};
use core::marker::PhantomData;

/// The outcome of a page fault handler: the C `vm_fault_t`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VmFaultReason(bindings::vm_fault_t);

impl VmFaultReason {
    /// The handler installed the page table entry itself.
    pub const NOPAGE: Self = Self(bindings::vm_fault_reason_VM_FAULT_NOPAGE);

    /// The access is not allowed or the memory is gone: the task gets `SIGBUS`.
    pub const SIGBUS: Self = Self(bindings::vm_fault_reason_VM_FAULT_SIGBUS);

    /// Out of memory.
    pub const OOM: Self = Self(bindings::vm_fault_reason_VM_FAULT_OOM);

    /// A huge fault cannot be served at its size: the core retries with a smaller one.
    pub const FALLBACK: Self = Self(bindings::vm_fault_reason_VM_FAULT_FALLBACK);

    /// Returns the outcome for an error: [`OOM`](Self::OOM) for [`ENOMEM`], else
    /// [`SIGBUS`](Self::SIGBUS), as the C `vmf_error()`.
    pub fn from_error(err: Error) -> Self {
        if err == ENOMEM {
            Self::OOM
        } else {
            Self::SIGBUS
        }
    }

    /// Returns the raw `vm_fault_t`.
    #[inline]
    pub fn as_raw(self) -> bindings::vm_fault_t {
        self.0
    }
}

/// A range of page frames of device memory (MMIO) that may be mapped into user space.
///
/// Built only inside the kernel crate, by the owners of device memory that zap every entry made
/// from it before their driver lets go of the device: `kernel::dma_buf::BarMemory` for PCI BARs,
/// whose ranges `pci::Device::bar_range()` checks against the memory resources of the device.
/// Page frames of RAM are never in one: mapping them through `VM_PFNMAP` would bypass the
/// reference counts of their pages.
///
/// # Invariants
///
/// The `pages` page frames from `start_pfn` are MMIO of a device the owner of `'a` has bound, not
/// RAM, and are not handed to another device during `'a`.
#[derive(Clone, Copy, Debug)]
pub struct IoPfnRange<'a> {
    start_pfn: usize,
    pages: usize,
    _owner: PhantomData<&'a ()>,
}

impl<'a> IoPfnRange<'a> {
    /// Creates the range of `pages` page frames from `start_pfn`.
    ///
    /// # Safety
    ///
    /// The page frames are MMIO of a device the caller has bound for `'a` (not RAM), and the
    /// caller zaps every entry that [`VmFault::insert_io`] makes from them before it lets go of
    /// the device.
    pub(crate) unsafe fn new(start_pfn: usize, pages: usize) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self {
            start_pfn,
            pages,
            _owner: PhantomData,
        }
    }

    /// Returns the first page frame of the range.
    #[inline]
    pub fn start_pfn(&self) -> usize {
        self.start_pfn
    }

    /// Returns the number of page frames in the range.
    #[inline]
    pub fn pages(&self) -> usize {
        self.pages
    }
}

/// Where a fault lands in a range of page frames.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Placement {
    /// Map the entry of the fault's size at `addr` to `pfn`.
    Map { addr: usize, pfn: usize },
    /// The entry of the fault's size does not fit: retry smaller.
    Fallback,
    /// The faulting page is not in the range at all.
    SigBus,
}

/// The VMA a fault happens in, as far as [`place`] needs it.
#[derive(Clone, Copy)]
pub(crate) struct VmaSpan {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) pgoff: usize,
}

/// Decides how a fault of `order` at the page-aligned `address` of `vma` is served from the
/// `pages` page frames from `start_pfn`, which the VMA maps from file page `range_pgoff` on.
///
/// An entry of order `order` is used only if it lies within the VMA and within the range and its
/// page frame is aligned to its size; otherwise a huge fault falls back.
pub(crate) fn place(
    order: u32,
    address: usize,
    vma: VmaSpan,
    range_pgoff: usize,
    start_pfn: usize,
    pages: usize,
) -> Placement {
    if address < vma.start || address >= vma.end {
        return Placement::SigBus;
    }
    let Some(page) = vma.pgoff.checked_add((address - vma.start) >> PAGE_SHIFT) else {
        return Placement::SigBus;
    };
    let Some(index) = page.checked_sub(range_pgoff) else {
        return Placement::SigBus;
    };
    if index >= pages {
        return Placement::SigBus;
    }
    // Orders come from the core (PMD or PUD); anything that does not fit a word falls back.
    let Some(size) = PAGE_SIZE.checked_shl(order).filter(|s| *s != 0) else {
        return Placement::Fallback;
    };
    let span = size >> PAGE_SHIFT;
    let addr = address & !(size - 1);
    if addr < vma.start || addr.checked_add(size).is_none_or(|end| end > vma.end) {
        return Placement::Fallback;
    }
    // The entry's first page in the range: it must not start before the range, nor end after it
    // (`first <= index < pages`).
    let Some(first) = index.checked_sub((address - addr) >> PAGE_SHIFT) else {
        return Placement::Fallback;
    };
    if pages - first < span {
        return Placement::Fallback;
    }
    let Some(pfn) = start_pfn.checked_add(first) else {
        return Placement::SigBus;
    };
    if pfn & (span - 1) != 0 {
        return Placement::Fallback;
    }
    Placement::Map { addr, pfn }
}

/// The orders of the huge entries [`VmFault::insert_io`] can map, largest first.
pub(crate) const HUGE_ORDERS: &[u32] = &[
    #[cfg(CONFIG_ARCH_SUPPORTS_PUD_PFNMAP)]
    bindings::PUD_ORDER,
    #[cfg(CONFIG_ARCH_SUPPORTS_PMD_PFNMAP)]
    bindings::PMD_ORDER,
];

/// Returns the largest order of the entries [`VmFault::insert_io`] can map the `pages` page
/// frames from `start_pfn` with, which a file maps from its page `range_pgoff` on, in a mapping
/// of `len` pages from file page `pgoff` whose addresses are congruent to the file offsets modulo
/// the entry size; 0 if only pages fit. Every argument counts pages.
///
/// This is what a file whose faults map such a range tells `get_unmapped_area()`, for example
/// as [`Exporter::mmap_order`]: an `mmap()` without `MAP_FIXED` is then placed so, where there
/// is room, and the first access to each block of the range that one entry covers faults once
/// rather than once per page.
///
/// [`Exporter::mmap_order`]: crate::dma_buf::Exporter::mmap_order
pub fn io_mapping_order(
    start_pfn: usize,
    pages: usize,
    range_pgoff: usize,
    pgoff: usize,
    len: usize,
) -> u32 {
    mapping_order(HUGE_ORDERS, start_pfn, pages, range_pgoff, pgoff, len)
}

/// [`io_mapping_order`] for entries of the orders `orders`, largest first.
pub(crate) fn mapping_order(
    orders: &[u32],
    start_pfn: usize,
    pages: usize,
    range_pgoff: usize,
    pgoff: usize,
    len: usize,
) -> u32 {
    let (Some(range_end), Some(end)) = (range_pgoff.checked_add(pages), pgoff.checked_add(len))
    else {
        return 0;
    };
    // The file pages that both the range and the mapping have.
    let (from, to) = (pgoff.max(range_pgoff), end.min(range_end));
    for &order in orders {
        let Some(span) = 1usize.checked_shl(order) else {
            continue;
        };
        // At a congruent address, file page `p` is mapped at an address aligned as `p` is, from
        // the page frame `start_pfn - range_pgoff + p`: the blocks of both are aligned alike
        // only if that difference is aligned.
        if start_pfn.wrapping_sub(range_pgoff) & (span - 1) != 0 {
            continue;
        }
        // And one whole aligned block lies within the range and the mapping.
        if let Some(first) = from.checked_next_multiple_of(span) {
            if first < to && to - first >= span {
                return order;
            }
        }
    }
    0
}

/// A page fault in a VMA whose [`VmOperations`] handle it.
///
/// # Invariants
///
/// `vmf` points to the `struct vm_fault` of a fault being handled, with the mmap lock or the VMA
/// lock held, for `'a`; `order` is the order of the entry the core asks for (0 for a page).
pub struct VmFault<'a> {
    vmf: *mut bindings::vm_fault,
    order: u32,
    _p: PhantomData<&'a mut bindings::vm_fault>,
}

impl<'a> VmFault<'a> {
    /// # Safety
    ///
    /// `vmf` is the fault being handled by the caller, for `'a`, asking for an entry of `order`.
    unsafe fn from_raw(vmf: *mut bindings::vm_fault, order: u32) -> Self {
        // INVARIANT: Guaranteed by the caller.
        Self {
            vmf,
            order,
            _p: PhantomData,
        }
    }

    /// Returns the VMA of the fault.
    #[inline]
    pub fn vma(&self) -> &VmaRef {
        // SAFETY: By the type invariants, the fault holds the mmap or the VMA lock, which is what
        // `VmaRef` needs, for as long as `self` exists.
        unsafe { VmaRef::from_raw((*self.vmf).__bindgen_anon_1.vma) }
    }

    /// Returns the page-aligned address of the fault.
    #[inline]
    pub fn address(&self) -> usize {
        // SAFETY: By the type invariants, `vmf` is valid; the field does not change.
        unsafe { (*self.vmf).__bindgen_anon_1.address }
    }

    /// Returns the page offset in the file of the faulting page (`vm_pgoff` plus its page index
    /// in the VMA).
    #[inline]
    pub fn pgoff(&self) -> usize {
        // SAFETY: By the type invariants, `vmf` is valid; the field does not change.
        unsafe { (*self.vmf).__bindgen_anon_1.pgoff }
    }

    /// Returns the order of the entry asked for: 0 for a page, else a PMD or PUD order.
    #[inline]
    pub fn order(&self) -> u32 {
        self.order
    }

    /// Returns whether the access is a write.
    #[inline]
    pub fn is_write(&self) -> bool {
        // SAFETY: By the type invariants, `vmf` is valid; the field does not change.
        let flags = unsafe { (*self.vmf).flags };
        flags & bindings::fault_flag_FAULT_FLAG_WRITE != 0
    }

    /// Maps the part of `range` that serves this fault; the VMA maps `range` from file page
    /// `pgoff` on.
    ///
    /// Uses an entry of the fault's [`order`](Self::order) if it lies within the VMA and within
    /// `range` and its page frame is aligned to its size, else returns
    /// [`VmFaultReason::FALLBACK`]. Returns [`VmFaultReason::SIGBUS`] if the faulting page is not
    /// in `range`, or if the VMA was not set up with [`VmaNew::set_io_pfnmap`].
    ///
    /// [`VmaNew::set_io_pfnmap`]: crate::mm::virt::VmaNew::set_io_pfnmap
    pub fn insert_io(&mut self, range: &IoPfnRange<'_>, pgoff: usize) -> VmFaultReason {
        let vma = self.vma();
        let vflags = vma.flags();
        // Checked here rather than trusted: the core BUG()s on PFNs in anything else.
        if vflags & (flags::PFNMAP | flags::MIXEDMAP) != flags::PFNMAP || is_cow(vflags) {
            return VmFaultReason::SIGBUS;
        }
        let span = VmaSpan {
            start: vma.start(),
            end: vma.end(),
            pgoff: vma.pgoff(),
        };
        let (addr, pfn) = match place(
            self.order,
            self.address(),
            span,
            pgoff,
            range.start_pfn,
            range.pages,
        ) {
            Placement::Map { addr, pfn } => (addr, pfn),
            Placement::Fallback => return VmFaultReason::FALLBACK,
            Placement::SigBus => return VmFaultReason::SIGBUS,
        };
        let raw = vma.as_ptr();
        // For each call: `vmf` is the fault being handled, in a `VM_PFNMAP` VMA that is not a COW
        // mapping; the entry lies within the VMA; the page frames are MMIO, not RAM, by the
        // invariants of `IoPfnRange`.
        let ret = match self.order {
            // SAFETY: See above.
            0 => unsafe { bindings::vmf_insert_pfn(raw, addr, pfn) },
            #[cfg(CONFIG_ARCH_SUPPORTS_PMD_PFNMAP)]
            // SAFETY: See above.
            bindings::PMD_ORDER => unsafe { bindings::vmf_insert_pfn_pmd(self.vmf, pfn, false) },
            #[cfg(CONFIG_ARCH_SUPPORTS_PUD_PFNMAP)]
            // SAFETY: See above.
            bindings::PUD_ORDER => unsafe { bindings::vmf_insert_pfn_pud(self.vmf, pfn, false) },
            _ => return VmFaultReason::FALLBACK,
        };
        VmFaultReason(ret)
    }
}

/// Whether a VMA with `vflags` is a private writable mapping, whose pages copy on write.
pub(crate) fn is_cow(vflags: vm_flags_t) -> bool {
    vflags & (flags::SHARED | flags::MAYWRITE) == flags::MAYWRITE
}

/// The operations of the VMAs a driver fills at fault time.
///
/// Implemented on the data the VMAs share, installed with [`VmaNew::set_ops`]. Every VMA holds a
/// reference on the data: copies of it (split, `mremap()`, `fork()`) take one, closing drops it.
///
/// [`VmaNew::set_ops`]: crate::mm::virt::VmaNew::set_ops
#[vtable]
pub trait VmOperations: Send + Sync + Sized + 'static {
    /// Handles a fault of one page.
    ///
    /// Runs with the mmap or the VMA lock held, maybe for reading only.
    fn fault(this: ArcBorrow<'_, Self>, vmf: &mut VmFault<'_>) -> VmFaultReason;

    /// Handles a fault that may be served by a PMD or PUD sized entry, [`VmFault::order`].
    ///
    /// Returning [`VmFaultReason::FALLBACK`] makes the core retry with a smaller size and, in
    /// the end, call [`VmOperations::fault`].
    fn huge_fault(_this: ArcBorrow<'_, Self>, _vmf: &mut VmFault<'_>) -> VmFaultReason {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called when the VMA `vma` is copied from another one (split, `mremap()`, `fork()`).
    fn open(_this: ArcBorrow<'_, Self>, _vma: &VmaRef) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called when the VMA `vma` goes, before its reference on the data is dropped.
    fn close(_this: ArcBorrow<'_, Self>, _vma: &VmaRef) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// The `vm_operations_struct` of `T`.
pub(crate) struct VmOpsTable<T: VmOperations>(PhantomData<T>);

impl<T: VmOperations> VmOpsTable<T> {
    pub(crate) const OPS: bindings::vm_operations_struct = bindings::vm_operations_struct {
        // Both always: the VMAs count their references on the data.
        open: Some(Self::open),
        close: Some(Self::close),
        fault: Some(Self::fault),
        huge_fault: if T::HAS_HUGE_FAULT {
            Some(Self::huge_fault)
        } else {
            None
        },
        ..pin_init::zeroed()
    };

    /// Borrows the data of `vma`.
    ///
    /// # Safety
    ///
    /// `vma` has these operations, is not closed yet, and stays so for `'a`.
    unsafe fn data<'a>(vma: *mut bindings::vm_area_struct) -> ArcBorrow<'a, T> {
        // SAFETY: `VmaNew::set_ops::<T>` stored an `Arc<T>` in the private data, and every VMA
        // with these operations holds a reference on it until `close` (by the caller, later).
        unsafe { <Arc<T> as ForeignOwnable>::borrow((*vma).vm_private_data) }
    }

    /// # Safety
    ///
    /// `vmf` is a fault being handled in a VMA with these operations.
    unsafe extern "C" fn fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
        // SAFETY: The VMA of a fault being handled is not closed before the fault ends.
        let data = unsafe { Self::data((*vmf).__bindgen_anon_1.vma) };
        // SAFETY: `vmf` is the fault being handled, for one page.
        let mut fault = unsafe { VmFault::from_raw(vmf, 0) };
        T::fault(data, &mut fault).as_raw()
    }

    /// # Safety
    ///
    /// `vmf` is a fault being handled in a VMA with these operations, for an entry of `order`.
    unsafe extern "C" fn huge_fault(
        vmf: *mut bindings::vm_fault,
        order: c_uint,
    ) -> bindings::vm_fault_t {
        // SAFETY: The VMA of a fault being handled is not closed before the fault ends.
        let data = unsafe { Self::data((*vmf).__bindgen_anon_1.vma) };
        // SAFETY: `vmf` is the fault being handled, for an entry of `order`.
        let mut fault = unsafe { VmFault::from_raw(vmf, order) };
        T::huge_fault(data, &mut fault).as_raw()
    }

    /// # Safety
    ///
    /// `vma` is a new copy of a VMA with these operations, set up under the mmap write lock.
    unsafe extern "C" fn open(vma: *mut bindings::vm_area_struct) {
        // SAFETY: The copy has the private data of its original, which is not closed.
        let data = unsafe { Self::data(vma) };
        // The copy holds a reference of its own. `Arc::into_foreign` gives back the same pointer,
        // but store it anyway rather than rely on that.
        let copy: Arc<T> = data.into();
        // SAFETY: The mmap write lock is held; the copy is not visible to faults yet.
        unsafe { (*vma).vm_private_data = copy.into_foreign() };
        if T::HAS_OPEN {
            // SAFETY: As above: the data is alive, its reference is now the copy's.
            let data = unsafe { Self::data(vma) };
            // SAFETY: The mmap write lock is held, more than `VmaRef` needs.
            T::open(data, unsafe { VmaRef::from_raw(vma) });
        }
    }

    /// # Safety
    ///
    /// `vma` has these operations and is being closed; nothing uses it afterwards.
    unsafe extern "C" fn close(vma: *mut bindings::vm_area_struct) {
        if T::HAS_CLOSE {
            // SAFETY: The VMA still holds its reference on the data.
            let data = unsafe { Self::data(vma) };
            // SAFETY: Closing runs with the mmap lock held (for reading, after `munmap()`
            // downgrades it), or on an mm nobody else uses: enough for `VmaRef`.
            T::close(data, unsafe { VmaRef::from_raw(vma) });
        }
        // SAFETY: The reference of this VMA, taken by `set_ops` or `open`, is dropped once, here.
        drop(unsafe { <Arc<T> as ForeignOwnable>::from_foreign((*vma).vm_private_data) });
    }
}

/// A file's mapping: the `struct address_space` whose pages and page table entries its mappings
/// share.
///
/// # Invariants
///
/// References point to a valid `struct address_space`.
#[repr(transparent)]
pub struct AddressSpace(Opaque<bindings::address_space>);

impl AddressSpace {
    /// Borrows an address space.
    ///
    /// # Safety
    ///
    /// `ptr` points to a valid `struct address_space` for `'a`.
    #[inline]
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::address_space) -> &'a Self {
        // SAFETY: `AddressSpace` is `repr(transparent)`; the caller guarantees validity for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Zaps the page table entries of every mapping of the `len` bytes from byte `start` of the
    /// file, in every process, private copies included. Nothing if `len` is zero.
    ///
    /// Later accesses fault again.
    pub fn unmap_range(&self, start: u64, len: u64) {
        if len == 0 {
            return;
        }
        // `unmap_mapping_range()` takes signed offsets, and a length of 0 means "to the end":
        // clamp rather than wrap.
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        // SAFETY: By the type invariants, the address space is valid.
        unsafe { bindings::unmap_mapping_range(self.0.get(), clamp(start), clamp(len), 1) };
    }

    /// Zaps the page table entries of every mapping of the file, in every process, private
    /// copies included.
    ///
    /// Later accesses fault again.
    pub fn unmap_all(&self) {
        // SAFETY: By the type invariants, the address space is valid; a length of 0 is the whole
        // file.
        unsafe { bindings::unmap_mapping_range(self.0.get(), 0, 0, 1) };
    }
}

#[cfg(all(CONFIG_PCI, CONFIG_KUNIT = "y"))]
mod kunit;

#[kunit_tests(rust_mm_fault)]
mod tests {
    use super::*;

    /// The orders of 2 MiB and 1 GiB entries: the rules do not depend on the page size.
    const PMD: u32 = 21 - PAGE_SHIFT as u32;
    const PUD: u32 = 30 - PAGE_SHIFT as u32;
    const MIB: usize = 1 << 20;
    const MIB_PAGES: usize = MIB / PAGE_SIZE;

    fn span(start: usize, len: usize, pgoff: usize) -> VmaSpan {
        VmaSpan {
            start,
            end: start + len,
            pgoff,
        }
    }

    /// A 2 MiB entry where VMA, range and page frame all allow it; pages elsewhere.
    #[test]
    fn huge_where_aligned() {
        let vma = span(0x4000_0000, 8 * MIB, 0);
        // 8 MiB of page frames from 16 * MIB_PAGES (2 MiB aligned), mapped from file page 0.
        let pfn = 16 * MIB_PAGES;
        let pages = 8 * MIB / PAGE_SIZE;
        let at = 0x4000_0000 + 3 * MIB + 5 * PAGE_SIZE;
        assert_eq!(
            place(PMD, at, vma, 0, pfn, pages),
            Placement::Map {
                addr: 0x4000_0000 + 2 * MIB,
                pfn: pfn + 2 * MIB_PAGES
            }
        );
        assert_eq!(
            place(0, at, vma, 0, pfn, pages),
            Placement::Map {
                addr: at,
                pfn: pfn + 3 * MIB_PAGES + 5
            }
        );
    }

    /// Every way a huge entry does not fit falls back, and a page still maps.
    #[test]
    fn fallbacks() {
        let pages = 8 * MIB / PAGE_SIZE;
        // VMA at a 4 KiB aligned address: the 2 MiB entry would start before it.
        let vma = span(0x4000_0000 + PAGE_SIZE, 8 * MIB, 0);
        assert_eq!(
            place(PMD, 0x4000_0000 + PAGE_SIZE, vma, 0, 16 * MIB_PAGES, pages),
            Placement::Fallback
        );
        // Aligned address, but the VMA ends within the entry.
        let vma = span(0x4000_0000, MIB, 0);
        assert_eq!(
            place(PMD, 0x4000_0000, vma, 0, 16 * MIB_PAGES, pages),
            Placement::Fallback
        );
        // Aligned address and VMA, but the page frame is not 2 MiB aligned.
        let vma = span(0x4000_0000, 8 * MIB, 0);
        assert_eq!(
            place(PMD, 0x4000_0000, vma, 0, 16 * MIB_PAGES + 1, pages),
            Placement::Fallback
        );
        // The range is shorter than the entry.
        assert_eq!(
            place(PMD, 0x4000_0000, vma, 0, 16 * MIB_PAGES, MIB_PAGES),
            Placement::Fallback
        );
        // The range starts after the entry does (a second range at file page 256).
        assert_eq!(
            place(
                PMD,
                0x4000_0000 + MIB,
                vma,
                MIB_PAGES,
                16 * MIB_PAGES,
                pages
            ),
            Placement::Fallback
        );
        // The same faults as single pages map.
        assert_eq!(
            place(0, 0x4000_0000 + MIB, vma, MIB_PAGES, 16 * MIB_PAGES, pages),
            Placement::Map {
                addr: 0x4000_0000 + MIB,
                pfn: 16 * MIB_PAGES
            }
        );
        // A PUD entry does not fit an 8 MiB VMA.
        assert_eq!(
            place(PUD, 0x4000_0000, vma, 0, 16 * MIB_PAGES, pages),
            Placement::Fallback
        );
        // An order that does not fit a word.
        assert_eq!(
            place(70, 0x4000_0000, vma, 0, 16 * MIB_PAGES, pages),
            Placement::Fallback
        );
    }

    /// The VMA's file offset and the range's file offset both shift the page frame.
    #[test]
    fn offsets() {
        // The VMA maps from file offset 2 MiB on; the range covers the file from 1 MiB on, from
        // the page frame at 1 MiB: offset 2 MiB is the page frame at 2 MiB, aligned.
        let vma = span(0x4000_0000, 4 * MIB, 2 * MIB_PAGES);
        assert_eq!(
            place(PMD, 0x4000_0000, vma, MIB_PAGES, MIB_PAGES, 8 * MIB_PAGES),
            Placement::Map {
                addr: 0x4000_0000,
                pfn: 2 * MIB_PAGES
            }
        );
    }

    /// The order a mapping is placed for: the largest entry that a whole aligned block of the
    /// range, within the mapping, takes, if the range's page frames are aligned as its file
    /// offsets are.
    #[test]
    fn mapping_orders() {
        // In pages: the range's first page frame, its length and file page, the mapping's file
        // page and length.
        let order = |pfn, pages, range_pgoff, pgoff, len| {
            mapping_order(&[PUD, PMD], pfn, pages, range_pgoff, pgoff, len)
        };
        let m = MIB_PAGES;
        let gib = 1024 * m;
        // 4 MiB from a 2 MiB aligned page frame, at file page 0: 2 MiB entries, not 1 GiB.
        assert_eq!(order(16 * m, 4 * m, 0, 0, 4 * m), PMD);
        // 2 GiB from a 1 GiB aligned page frame: 1 GiB entries for a mapping of all of it, 2 MiB
        // ones for a mapping from 1 MiB on that holds no whole aligned GiB.
        assert_eq!(order(gib, 2 * gib, 0, 0, 2 * gib), PUD);
        assert_eq!(order(gib, 2 * gib, 0, m, gib), PMD);
        // The page frame one page off its file offset's alignment: pages only.
        assert_eq!(order(16 * m + 1, 4 * m, 0, 0, 4 * m), 0);
        // A second range, at file page 1 MiB from page frame 17 MiB: aligned alike, and the
        // block at 2 MiB lies within it.
        assert_eq!(order(17 * m, 4 * m, m, 0, 8 * m), PMD);
        // A mapping shorter than an entry, one that ends before the range, and an overflow.
        assert_eq!(order(16 * m, 4 * m, 0, 0, m), 0);
        assert_eq!(order(16 * m, 4 * m, 8 * m, 0, 4 * m), 0);
        assert_eq!(order(0, 4 * m, 0, usize::MAX, 4 * m), 0);
        // An order that does not fit a word.
        assert_eq!(mapping_order(&[70], 0, 4 * m, 0, 0, 4 * m), 0);
    }

    /// Faulting pages outside the range or the VMA are errors at every size.
    #[test]
    fn sigbus() {
        let vma = span(0x4000_0000, 8 * MIB, 0);
        // Before the range (it starts at file page 16).
        assert_eq!(
            place(0, 0x4000_0000, vma, 16, 16 * MIB_PAGES, 16),
            Placement::SigBus
        );
        assert_eq!(
            place(PMD, 0x4000_0000, vma, 16, 16 * MIB_PAGES, 16),
            Placement::SigBus
        );
        // Past its end.
        assert_eq!(
            place(0, 0x4000_0000 + 32 * PAGE_SIZE, vma, 16, 16 * MIB_PAGES, 16),
            Placement::SigBus
        );
        // Outside the VMA.
        assert_eq!(
            place(
                0,
                0x4000_0000 + 8 * MIB,
                vma,
                0,
                16 * MIB_PAGES,
                8 * MIB_PAGES
            ),
            Placement::SigBus
        );
        // A file offset that wraps.
        let vma = span(0x4000_0000, 8 * MIB, usize::MAX);
        assert_eq!(
            place(
                0,
                0x4000_0000 + PAGE_SIZE,
                vma,
                0,
                16 * MIB_PAGES,
                8 * MIB_PAGES
            ),
            Placement::SigBus
        );
    }
}
