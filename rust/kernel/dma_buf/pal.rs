// SPDX-License-Identifier: GPL-2.0

//! The PAL mapping type: the physical address list of a buffer.
//!
//! C header: [`include/linux/dma-buf-mapping.h`](srctree/include/linux/dma-buf-mapping.h)
//!
//! Importers that program an IOMMU themselves map an [`Attachment<Pal, _>`] into a
//! [`PalMapping`]: the CPU physical ranges of the buffer and the peer-to-peer provider they belong
//! to. Exporters hand out a [`PalExport`] from [`Exporter::map_pal`].
//!
//! Physical addresses bypass every check the DMA API makes, so building a [`PalExport`] is
//! `unsafe`: the exporter vouches that the ranges are its memory and stay so until the importer
//! gives them back or the exporter invalidates the mappings. The core checks the shape of the
//! list (page aligned, not empty, exactly the size of the buffer) before an importer sees it.
//!
//! [`Exporter::map_pal`]: super::Exporter::map_pal

use super::{mapping::Pal, Attachment, Importer, ResvGuard};
use crate::{bindings, error::from_err_ptr, prelude::*, types::Opaque};
use core::{marker::PhantomData, ptr::NonNull};

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
    pub const fn new(addr: bindings::phys_addr_t, len: usize) -> Self {
        Self(bindings::phys_vec { paddr: addr, len })
    }

    /// Returns the physical address the range starts at.
    #[inline]
    pub const fn addr(&self) -> bindings::phys_addr_t {
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

/// Gets the physical address list of a PAL attachment.
///
/// Not generic, so that the call to the module-restricted `dma_buf_pal_map()` is compiled into the
/// kernel crate, not into the importer's module.
///
/// # Safety
///
/// `attach` is a live attachment of the PAL type, and the reservation lock of its buffer is held.
#[inline(never)]
unsafe fn pal_map(
    attach: *mut bindings::dma_buf_attachment,
) -> Result<NonNull<bindings::dma_buf_phys_list>> {
    // SAFETY: Guaranteed by the safety requirements.
    let phys = from_err_ptr(unsafe { bindings::dma_buf_pal_map(attach) })?;
    NonNull::new(phys).ok_or(EINVAL)
}

impl<I: Importer> Attachment<Pal, I> {
    /// Gets the physical address list of the buffer.
    ///
    /// `resv` must hold the reservation lock of the buffer; the mapping borrows it, so the buffer
    /// cannot be revoked or moved while the mapping exists. Returns [`EINVAL`] if `resv` locks
    /// another buffer or the exporter's list is malformed, [`ENODEV`] if the exporter revoked the
    /// buffer, or the exporter's error.
    pub fn map<'a>(&'a self, resv: &'a ResvGuard<'_>) -> Result<PalMapping<'a>> {
        self.check_locked(resv)?;
        // SAFETY: By the type invariants of `Attachment`, the attachment is live and of the PAL
        // type, and the reservation lock of its buffer is held (checked above).
        let phys = unsafe { pal_map(self.as_raw()) }?;
        // INVARIANT: `phys` was just mapped from `attach`, and checked by the core.
        Ok(PalMapping {
            attach: self.as_raw(),
            phys,
            _borrow: PhantomData,
        })
    }
}

/// The physical address list of a PAL attachment.
///
/// Given back to the exporter when dropped, with the reservation lock still held.
///
/// # Invariants
///
/// `phys` was returned by `dma_buf_pal_map(attach)`, passed the core's checks, and is not given
/// back yet; `attach` stays attached and the reservation lock of its buffer stays held for `'a`.
pub struct PalMapping<'a> {
    attach: *mut bindings::dma_buf_attachment,
    phys: NonNull<bindings::dma_buf_phys_list>,
    _borrow: PhantomData<&'a ResvGuard<'a>>,
}

impl PalMapping<'_> {
    /// Returns the physical ranges, in the order they make up the buffer.
    pub fn ranges(&self) -> &[PhysRange] {
        let phys = self.phys.as_ptr();
        // SAFETY: By the type invariants, the list is valid and holds `nr_ranges` ranges, which
        // the exporter does not change while they are mapped. `PhysRange` is
        // `repr(transparent)` over `struct phys_vec`.
        unsafe {
            core::slice::from_raw_parts(
                (&raw const (*phys).ranges).cast::<PhysRange>(),
                (*phys).nr_ranges,
            )
        }
    }

    /// Returns the provider the ranges belong to.
    pub fn provider(&self) -> &P2pProvider {
        // SAFETY: By the type invariants, the list is valid; the core checked that `provider` is
        // set, and the exporter keeps it alive while the list is mapped.
        unsafe { P2pProvider::from_raw((*self.phys.as_ptr()).provider) }
    }
}

impl Drop for PalMapping<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, `phys` was mapped from `attach` and is given back only
        // here, with the reservation lock held.
        unsafe { bindings::dma_buf_pal_unmap(self.attach, self.phys.as_ptr()) };
    }
}

/// A physical address list an exporter hands out for a PAL attachment.
///
/// Returned from [`Exporter::map_pal`](super::Exporter::map_pal); freed when the importer gives
/// it back.
///
/// # Invariants
///
/// `phys` was allocated by `dma_buf_phys_list_alloc()` and is owned by this value.
pub struct PalExport {
    phys: NonNull<bindings::dma_buf_phys_list>,
}

// SAFETY: The list is plain data owned by this value.
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
    ///   [`ResvGuard::invalidate_mappings`](super::ResvGuard::invalidate_mappings) and waits until
    ///   every list it handed out is dropped.
    pub unsafe fn new(provider: &P2pProvider, ranges: &[PhysRange]) -> Result<Self> {
        if ranges.is_empty() {
            return Err(EINVAL);
        }
        // SAFETY: `dma_buf_phys_list_alloc()` accepts any non-zero number of ranges.
        let phys = unsafe { bindings::dma_buf_phys_list_alloc(ranges.len()) };
        let phys = NonNull::new(phys).ok_or(ENOMEM)?;
        let raw = phys.as_ptr();
        // SAFETY: `raw` is a new list with room for `ranges.len()` ranges, exclusively ours.
        unsafe {
            (*raw).provider = provider.as_raw();
            let dst = (&raw mut (*raw).ranges).cast::<PhysRange>();
            core::ptr::copy_nonoverlapping(ranges.as_ptr(), dst, ranges.len());
        }
        // INVARIANT: `phys` was allocated above and is owned by the new value.
        Ok(Self { phys })
    }

    /// Hands the list over to C, for `map_phys`.
    pub(crate) fn into_raw(self) -> *mut bindings::dma_buf_phys_list {
        let phys = self.phys.as_ptr();
        core::mem::forget(self);
        phys
    }

    /// Takes back a list handed over by [`PalExport::into_raw`].
    ///
    /// # Safety
    ///
    /// `phys` was returned by [`PalExport::into_raw`] and is not used by C any more.
    pub(crate) unsafe fn from_raw(phys: *mut bindings::dma_buf_phys_list) -> Self {
        // INVARIANT: By the safety requirements, `phys` is a list allocated by
        // `dma_buf_phys_list_alloc()` whose ownership comes back here.
        Self {
            // SAFETY: `into_raw` returned a non-NULL pointer.
            phys: unsafe { NonNull::new_unchecked(phys) },
        }
    }
}

impl Drop for PalExport {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, the list is ours and allocated by
        // `dma_buf_phys_list_alloc()`.
        unsafe { bindings::dma_buf_phys_list_free(self.phys.as_ptr()) };
    }
}
