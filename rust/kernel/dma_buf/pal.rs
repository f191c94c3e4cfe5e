// SPDX-License-Identifier: GPL-2.0

//! The PAL mapping type: the physical address list of a buffer.
//!
//! C header: [`include/linux/dma-buf-mapping.h`](srctree/include/linux/dma-buf-mapping.h)
//!
//! Exporters hand out a [`PalExport`] from [`Exporter::map_pal`]: the CPU physical ranges of the
//! buffer and the peer-to-peer provider they belong to. Only the importers that program an IOMMU
//! themselves (iommufd) can map a PAL attachment, through C functions exported to them alone;
//! the Rust abstractions have no PAL importer.
//!
//! Physical addresses bypass every check the DMA API makes, so building a [`PalExport`] is
//! `unsafe`: the exporter vouches that the ranges are its memory and stay so until the importer
//! gives them back or the exporter invalidates the mappings. The core checks the shape of the
//! list (page aligned, not empty, exactly the size of the buffer) before an importer sees it.
//!
//! [`Exporter::map_pal`]: super::Exporter::map_pal

use super::lease::Lease;
use crate::{
    alloc::{allocator::KVmalloc, Allocator, NumaNode},
    bindings,
    io::PhysAddr,
    prelude::*,
    types::Opaque,
};
use core::{alloc::Layout, ptr::NonNull};

/// A peer-to-peer DMA provider: the PCI device whose MMIO a physical address list points into.
///
/// Wraps the C `struct p2pdma_provider`.
///
/// # Invariants
///
/// References to a `P2pProvider` point to a valid `struct p2pdma_provider` for their lifetime.
#[repr(transparent)]
pub struct P2pProvider(Opaque<bindings::p2pdma_provider>);

impl P2pProvider {
    /// Creates a reference to a provider from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct p2pdma_provider` that stays alive for `'a`.
    #[inline]
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::p2pdma_provider) -> &'a Self {
        // SAFETY: `P2pProvider` is `repr(transparent)` over `Opaque<p2pdma_provider>`, and the
        // caller guarantees the provider is valid for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Returns the raw `struct p2pdma_provider` pointer.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::p2pdma_provider {
        self.0.get()
    }
}

/// A range of physical addresses.
///
/// Wraps the C `struct phys_vec`.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct PhysRange(bindings::phys_vec);

impl PartialEq for PhysRange {
    fn eq(&self, other: &Self) -> bool {
        self.addr() == other.addr() && self.len() == other.len()
    }
}

impl Eq for PhysRange {}

impl core::fmt::Debug for PhysRange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:#x}+{:#x}", self.addr(), self.len())
    }
}

impl PhysRange {
    /// Creates the range of `len` bytes that starts at the physical address `addr`.
    #[inline]
    pub const fn new(addr: PhysAddr, len: usize) -> Self {
        Self(bindings::phys_vec { paddr: addr, len })
    }

    /// Returns the physical address the range starts at.
    #[inline]
    pub const fn addr(&self) -> PhysAddr {
        self.0.paddr
    }

    /// Returns the length of the range in bytes.
    #[inline]
    pub const fn len(&self) -> usize {
        self.0.len
    }

    /// Returns whether the range is empty.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.0.len == 0
    }
}

/// The allocation of a [`PalExport`]: the C list, with what the exporter keeps until it comes
/// back in front of it.
#[repr(C)]
struct PalAlloc {
    lease: Option<Lease>,
    // Last: `struct dma_buf_phys_list` ends in its flexible array of ranges.
    list: bindings::dma_buf_phys_list,
}

impl PalAlloc {
    /// Returns the layout of an allocation with `nr_ranges` ranges.
    fn layout(nr_ranges: usize) -> Result<Layout> {
        let ranges = Layout::array::<bindings::phys_vec>(nr_ranges).map_err(|_| ENOMEM)?;
        let (layout, _) = Layout::new::<Self>().extend(ranges).map_err(|_| ENOMEM)?;
        Ok(layout.pad_to_align())
    }
}

/// A physical address list an exporter hands out for a PAL attachment.
///
/// Returned from [`Exporter::map_pal`](super::Exporter::map_pal); freed when the importer gives
/// it back.
///
/// # Invariants
///
/// `alloc` was allocated with [`KVmalloc`] with the layout [`PalAlloc::layout`] of
/// `list.nr_ranges`, is initialised (the `struct phys_vec` ranges follow `list`) and is owned by
/// this value.
pub struct PalExport {
    alloc: NonNull<PalAlloc>,
}

// SAFETY: The list is plain data owned by this value; the lease may be dropped by any task.
unsafe impl Send for PalExport {}

// SAFETY: `PalExport` has no interior mutability.
unsafe impl Sync for PalExport {}

impl PalExport {
    /// Builds the list of `ranges` of `provider`.
    ///
    /// Returns [`EINVAL`] if `ranges` is empty.
    ///
    /// # Safety
    ///
    /// - Every range of `ranges` is memory of `provider` that the exporter owns.
    /// - The ranges and `provider` stay valid until the list is dropped (the importer gave it
    ///   back), unless the exporter first calls
    ///   [`Exported::invalidate_mappings`](super::Exported::invalidate_mappings) and waits until
    ///   every list it handed out is dropped.
    pub unsafe fn new(provider: &P2pProvider, ranges: &[PhysRange]) -> Result<Self> {
        // SAFETY: As for this function.
        unsafe { Self::with_lease(provider, ranges, None) }
    }

    /// Builds the list of `ranges` of `provider`, which drops `lease` when it is dropped.
    ///
    /// # Safety
    ///
    /// As for [`PalExport::new`].
    pub(crate) unsafe fn with_lease(
        provider: &P2pProvider,
        ranges: &[PhysRange],
        lease: Option<Lease>,
    ) -> Result<Self> {
        if ranges.is_empty() {
            return Err(EINVAL);
        }
        let layout = PalAlloc::layout(ranges.len())?;
        let alloc = KVmalloc::alloc(layout, GFP_KERNEL, NumaNode::NO_NODE)?.cast::<PalAlloc>();
        let raw = alloc.as_ptr();
        // SAFETY: `raw` is a new allocation of `layout`, exclusively ours: room for the header and
        // `ranges.len()` ranges after it. `PhysRange` is `repr(transparent)` over
        // `struct phys_vec`.
        unsafe {
            (&raw mut (*raw).lease).write(lease);
            (&raw mut (*raw).list).write(bindings::dma_buf_phys_list {
                provider: provider.as_raw(),
                nr_ranges: ranges.len(),
                ..Default::default()
            });
            let dst = (&raw mut (*raw).list.ranges).cast::<PhysRange>();
            core::ptr::copy_nonoverlapping(ranges.as_ptr(), dst, ranges.len());
        }
        // INVARIANT: `alloc` was allocated and initialised above, and is owned by the new value.
        Ok(Self { alloc })
    }

    /// Builds the list of `ranges`, slices of one memory BAR of a bound PCI device, with the
    /// device's P2P provider for that BAR; the list drops `lease` when it is dropped.
    ///
    /// Returns [`EINVAL`] if `ranges` is empty or its ranges are not all of the same device and
    /// BAR, [`EOPNOTSUPP`] if the device has no P2P provider for the BAR (P2P DMA is not
    /// configured, or the driver did not set it up with `pcim_p2pdma_init()`).
    ///
    /// # Safety
    ///
    /// The exporter invalidates the mappings of its buffer and waits until every list it handed
    /// out came back before the driver lets go of the device: the provider is released with the
    /// binding, and the BAR may belong to another driver afterwards. Drivers use
    /// [`BarMemory`](super::BarMemory), which does.
    #[cfg(CONFIG_PCI)]
    pub(crate) unsafe fn from_bar_ranges(
        ranges: &[crate::pci::BarRange<'_>],
        lease: Option<Lease>,
    ) -> Result<Self> {
        let (provider, phys) = bar_phys(ranges)?;
        // SAFETY: By `bar_phys`, every range is MMIO within one BAR of a device bound to the
        // caller and `provider` is the provider of that BAR; the caller guarantees that the list
        // comes back before the device is let go of, which keeps both valid meanwhile.
        unsafe { Self::with_lease(provider, &phys, lease) }
    }

    /// Returns the P2P provider of the list.
    pub fn provider(&self) -> &P2pProvider {
        // SAFETY: By the type invariants, the list is initialised; its provider is valid for as
        // long as the list exists (by the safety requirements of the constructors).
        unsafe { P2pProvider::from_raw(self.list().provider) }
    }

    /// Returns the ranges of the list.
    pub fn ranges(&self) -> &[PhysRange] {
        let list = self.list();
        // SAFETY: By the type invariants, `nr_ranges` initialised ranges follow the header.
        // `PhysRange` is `repr(transparent)` over `struct phys_vec`.
        unsafe { core::slice::from_raw_parts(list.ranges.as_ptr().cast(), list.nr_ranges) }
    }

    fn list(&self) -> &bindings::dma_buf_phys_list {
        // SAFETY: By the type invariants, the allocation is initialised and ours.
        unsafe { &(*self.alloc.as_ptr()).list }
    }

    /// Hands the list over to C, for `map_phys`.
    pub(crate) fn into_raw(self) -> *mut bindings::dma_buf_phys_list {
        let alloc = self.alloc.as_ptr();
        core::mem::forget(self);
        // SAFETY: `alloc` is valid; C gets the address of the list in it.
        unsafe { &raw mut (*alloc).list }
    }

    /// Takes back a list handed over by [`PalExport::into_raw`].
    ///
    /// # Safety
    ///
    /// `phys` was returned by [`PalExport::into_raw`] and is not used by C any more.
    pub(crate) unsafe fn from_raw(phys: *mut bindings::dma_buf_phys_list) -> Self {
        // SAFETY: By the safety requirements, `phys` is the `list` field of a `PalAlloc`.
        let alloc = unsafe { crate::container_of!(phys, PalAlloc, list) };
        // INVARIANT: By the safety requirements, the allocation comes back here.
        Self {
            // SAFETY: `into_raw` returned a pointer into a valid allocation.
            alloc: unsafe { NonNull::new_unchecked(alloc) },
        }
    }
}

impl Drop for PalExport {
    fn drop(&mut self) {
        let raw = self.alloc.as_ptr();
        // SAFETY: By the type invariants, the allocation is ours and initialised; the lease is
        // dropped once, here, and not used afterwards.
        let nr_ranges = unsafe {
            core::ptr::drop_in_place(&raw mut (*raw).lease);
            (*raw).list.nr_ranges
        };
        // The layout was computed for this number of ranges at the allocation, so it is `Ok`.
        if let Ok(layout) = PalAlloc::layout(nr_ranges) {
            // SAFETY: By the type invariants, the allocation was made by `KVmalloc` with this
            // layout; it is freed once, here.
            unsafe { KVmalloc::free(self.alloc.cast(), layout) };
        }
    }
}

/// Returns the physical ranges of `ranges`, slices of one memory BAR of one bound PCI device, and
/// the device's P2P provider for that BAR.
///
/// Returns [`EINVAL`] if `ranges` is empty or its ranges are not all of the same device and BAR,
/// [`EOPNOTSUPP`] if the device has no P2P provider for the BAR.
#[cfg(CONFIG_PCI)]
pub(crate) fn bar_phys<'a>(
    ranges: &[crate::pci::BarRange<'a>],
) -> Result<(&'a P2pProvider, KVec<PhysRange>)> {
    let first = ranges.first().ok_or(EINVAL)?;
    let (dev, bar) = (first.dev(), first.bar());
    if ranges
        .iter()
        .any(|r| !core::ptr::eq(r.dev(), dev) || r.bar() != bar)
    {
        return Err(EINVAL);
    }
    let provider = bar_provider(dev, bar)?;
    let mut phys = KVec::with_capacity(ranges.len(), GFP_KERNEL)?;
    for r in ranges {
        let len = usize::try_from(r.len()).map_err(|_| EOVERFLOW)?;
        phys.push(PhysRange::new(r.start(), len), GFP_KERNEL)?;
    }
    Ok((provider, phys))
}

/// Returns the P2P provider of BAR `bar` of `dev`.
#[cfg(CONFIG_PCI)]
fn bar_provider<'a>(
    dev: &'a crate::pci::Device<crate::device::Bound>,
    bar: u32,
) -> Result<&'a P2pProvider> {
    #[cfg(CONFIG_PCI_P2PDMA)]
    {
        // `pcim_p2pdma_provider()` WARNs on a device whose driver did not call
        // `pcim_p2pdma_init()`: answer for it first.
        // SAFETY: `dev` is a valid PCI device; a racy test for NULL of an RCU pointer that only
        // its driver sets (once, at probe) is enough here.
        if unsafe { core::ptr::read_volatile(&raw const (*dev.as_raw()).p2pdma) }.is_null() {
            return Err(EOPNOTSUPP);
        }
        // SAFETY: `dev` is a valid PCI device, bound, with P2P DMA set up; `bar` is a standard
        // BAR (`bar_phys` takes it from a `BarRange`), which the provider array covers.
        let p = unsafe { bindings::pcim_p2pdma_provider(dev.as_raw(), bar.try_into()?) };
        if p.is_null() {
            return Err(EOPNOTSUPP);
        }
        // SAFETY: The provider is device-managed: it lives while `dev` is bound, which is at
        // least as long as the borrow of `dev`.
        Ok(unsafe { P2pProvider::from_raw(p) })
    }
    #[cfg(not(CONFIG_PCI_P2PDMA))]
    {
        let _ = (dev, bar);
        Err(EOPNOTSUPP)
    }
}
