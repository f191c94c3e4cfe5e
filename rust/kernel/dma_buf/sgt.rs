// SPDX-License-Identifier: GPL-2.0

//! The SGT mapping type: DMA-mapped scatter-gather tables.
//!
//! C header: [`include/linux/dma-buf-mapping.h`](srctree/include/linux/dma-buf-mapping.h)
//!
//! Importers map an [`Attachment<Sgt, _>`] into an [`SgtMapping`], which the attachment owns.
//! Exporters hand out an [`SgtExport`] from [`Exporter::map_sgt`]: a table they built for the
//! importer's DMA device, which the core gives back and drops when the importer unmaps.
//!
//! [`Attachment<Sgt, _>`]: super::Attachment
//! [`Attachment`]: super::Attachment
//! [`Attachment::map`]: super::Attachment::map
//! [`Attachment::mapping`]: super::Attachment::mapping
//! [`Exporter::map_sgt`]: super::Exporter::map_sgt

#[cfg(CONFIG_PCI)]
use super::lease::Lease;
use super::{Exporter, ExporterAttachment, Sgt};
use crate::{
    bindings,
    device::Device,
    dma::DataDirection,
    error::to_result,
    page::{Page, PAGE_SIZE},
    prelude::*,
    scatterlist::SGTable,
    sync::{aref::ARef, Arc},
    types::Opaque,
};
use core::{marker::PhantomData, ops::Deref, ptr::NonNull};

/// A scatter-gather table mapped from an SGT attachment.
///
/// Owned by its [`Attachment`], which hands out references to it under the reservation lock
/// ([`Attachment::map`], [`Attachment::mapping`]). Dereferences to the [`SGTable`] the exporter
/// handed out. Unmapped when the importer unmaps the attachment, the exporter invalidates it or
/// the attachment is dropped, always with the reservation lock held.
///
/// [`Attachment`]: super::Attachment
/// [`Attachment::map`]: super::Attachment::map
/// [`Attachment::mapping`]: super::Attachment::mapping
///
/// # Invariants
///
/// `sgt` was returned by `dma_buf_map_attachment(attach, dir)` and is not unmapped yet; `attach`
/// stays attached while the mapping exists, and the mapping is dropped with the reservation lock
/// of its buffer held.
pub struct SgtMapping {
    attach: NonNull<bindings::dma_buf_attachment>,
    sgt: NonNull<bindings::sg_table>,
    dir: DataDirection,
}

// SAFETY: The table is not tied to a task, and the abstraction unmaps it from any task that holds
// the reservation lock.
unsafe impl Send for SgtMapping {}

// SAFETY: Shared references only read the table, which the exporter does not change while it is
// mapped.
unsafe impl Sync for SgtMapping {}

impl SgtMapping {
    /// Takes over a table mapped from an attachment.
    ///
    /// # Safety
    ///
    /// `sgt` was returned by `dma_buf_map_attachment(attach, dir)`, is unmapped only by dropping
    /// the new value, which happens with the reservation lock held and before `attach` is
    /// detached.
    pub(crate) unsafe fn new(
        attach: *mut bindings::dma_buf_attachment,
        sgt: NonNull<bindings::sg_table>,
        dir: DataDirection,
    ) -> Self {
        // INVARIANT: By the safety requirements.
        Self {
            // SAFETY: `dma_buf_map_attachment()` succeeded for `attach`, which is not NULL.
            attach: unsafe { NonNull::new_unchecked(attach) },
            sgt,
            dir,
        }
    }

    /// Returns the direction the table was mapped with.
    #[inline]
    pub fn dir(&self) -> DataDirection {
        self.dir
    }
}

impl Deref for SgtMapping {
    type Target = SGTable;

    #[inline]
    fn deref(&self) -> &SGTable {
        // SAFETY: By the type invariants, `sgt` is a valid, DMA-mapped table until the mapping is
        // dropped; the exporter does not change it while it is mapped.
        unsafe { SGTable::from_raw(self.sgt.as_ptr()) }
    }
}

impl Drop for SgtMapping {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, `sgt` was mapped from `attach` with `dir` and is
        // unmapped only here, with the reservation lock held.
        unsafe {
            bindings::dma_buf_unmap_attachment(
                self.attach.as_ptr(),
                self.sgt.as_ptr(),
                self.dir.into(),
            )
        };
    }
}

/// The backing of an [`SgtExport`].
///
/// # Invariants
///
/// `table` is an initialized `struct sg_table`, as `backing` says.
#[repr(C)]
#[pin_data(PinnedDrop)]
struct SgtExportInner {
    // First field: the `struct sg_table` pointer handed to C is the pointer to this struct.
    #[pin]
    table: Opaque<bindings::sg_table>,
    backing: Backing,
}

/// What an [`SgtExport`] describes, and what to undo when it goes.
enum Backing {
    /// `table` is ours; its entries point into `pages`. If `mapped`, it is DMA mapped for `dev`
    /// with `dir`.
    Pages {
        dev: ARef<Device>,
        dir: DataDirection,
        mapped: bool,
        _pages: Arc<KVec<Page>>,
    },
    /// `table` is a copy of the header of `sgt`, which `dma_buf_phys_vec_to_sgt()` built and
    /// mapped for `attach` with `dir`; the entries are those of `sgt`. `attach` outlives the
    /// export (its lifetime parameter).
    #[cfg(CONFIG_PCI)]
    Phys {
        attach: NonNull<bindings::dma_buf_attachment>,
        sgt: NonNull<bindings::sg_table>,
        dir: DataDirection,
        _lease: Option<Lease>,
    },
}

#[pinned_drop]
impl PinnedDrop for SgtExportInner {
    fn drop(self: Pin<&mut Self>) {
        match &self.backing {
            Backing::Pages {
                dev, dir, mapped, ..
            } => {
                if *mapped {
                    // SAFETY: By the type invariants, the table is DMA mapped for `dev` with
                    // `dir`.
                    unsafe {
                        bindings::dma_unmap_sgtable(
                            dev.as_raw(),
                            self.table.get(),
                            (*dir).into(),
                            0,
                        )
                    };
                }
                // SAFETY: By the type invariants, the table is initialized and no longer mapped.
                unsafe { bindings::sg_free_table(self.table.get()) };
            }
            #[cfg(CONFIG_PCI)]
            Backing::Phys {
                attach, sgt, dir, ..
            } => {
                // SAFETY: By the type invariants, `sgt` came from `dma_buf_phys_vec_to_sgt()` for
                // `attach`, which is still attached, with `dir`; it is freed once, here. The
                // copy in `table` owns nothing.
                unsafe { bindings::dma_buf_free_sgt(attach.as_ptr(), sgt.as_ptr(), (*dir).into()) };
            }
        }
    }
}

/// A scatter-gather table an exporter hands out for an SGT attachment.
///
/// Returned from [`Exporter::map_sgt`](super::Exporter::map_sgt). A table of pages owns a
/// reference to the pages it describes, so they stay allocated until the importer unmaps, and
/// undoes its DMA mapping when dropped; a table of device memory undoes its mapping for the
/// attachment it was made for, which it cannot outlive (`'a`).
pub struct SgtExport<'a>(Pin<KBox<SgtExportInner>>, PhantomData<&'a ()>);

impl<'a> SgtExport<'a> {
    /// Builds a table of `pages`, DMA mapped for the importer's DMA device of `attach`.
    ///
    /// The table covers every page of `pages`, in order; it must be the size of the buffer. No
    /// entry is longer than the device's DMA segment and mapping limits, or a page if those are
    /// smaller; like the C helpers, the table does not honour a segment boundary mask. Returns
    /// [`EINVAL`] if `attach` is not of the SGT type, `dir` is [`DataDirection::None`] or
    /// `pages` not the size of the buffer, or the error of the DMA mapping.
    pub fn from_pages<T: Exporter>(
        attach: &'a ExporterAttachment<T>,
        pages: &Arc<KVec<Page>>,
        dir: DataDirection,
    ) -> Result<Self> {
        Self::build(attach, pages, dir, true)
    }

    /// Builds a table of `pages` without DMA mapping it, for tests on machines without DMA.
    #[cfg(CONFIG_RUST_DMA_BUF_KUNIT_TEST)]
    pub(crate) fn from_pages_unmapped<T: Exporter>(
        attach: &'a ExporterAttachment<T>,
        pages: &Arc<KVec<Page>>,
        dir: DataDirection,
    ) -> Result<Self> {
        Self::build(attach, pages, dir, false)
    }

    /// Returns the longest entry a table for `dev` may have: a whole number of pages within the
    /// device's DMA segment and mapping limits.
    pub(crate) fn max_segment(dev: &Device) -> u32 {
        // SAFETY: `dev` is a valid device.
        let seg = unsafe { bindings::dma_get_max_seg_size(dev.as_raw()) };
        // SAFETY: `dev` is a valid device. Without DMA support this is 0: no limit.
        let map = unsafe { bindings::dma_max_mapping_size(dev.as_raw()) };
        let map = u32::try_from(map).unwrap_or(u32::MAX);
        let max = if map == 0 { seg } else { seg.min(map) };
        // Entries are whole pages, and at least one.
        (max & !(PAGE_SIZE as u32 - 1)).max(PAGE_SIZE as u32)
    }

    fn build<T: Exporter>(
        attach: &'a ExporterAttachment<T>,
        pages: &Arc<KVec<Page>>,
        dir: DataDirection,
        dma_map: bool,
    ) -> Result<Self> {
        if !attach.is_type::<Sgt>() || dir == DataDirection::None {
            return Err(EINVAL);
        }
        let dev = attach.dev();
        let max_segment = Self::max_segment(dev);
        let size = pages.len().checked_mul(PAGE_SIZE).ok_or(EINVAL)?;
        if pages.is_empty() || size != attach.buf().size() {
            return Err(EINVAL);
        }
        let nr_pages = u32::try_from(pages.len()).map_err(|_| EINVAL)?;
        let mut raw_pages = KVec::with_capacity(pages.len(), GFP_KERNEL)?;
        for page in pages.iter() {
            raw_pages.push(page.as_ptr(), GFP_KERNEL)?;
        }

        let mut inner = KBox::pin_init(
            try_pin_init!(SgtExportInner {
                table <- Opaque::try_ffi_init(|table: *mut bindings::sg_table| {
                    // SAFETY: `table` is valid for writes; `raw_pages` holds `nr_pages` valid
                    // pages, which `_pages` keeps allocated as long as the table exists.
                    to_result(unsafe {
                        bindings::sg_alloc_table_from_pages_segment(
                            table,
                            raw_pages.as_mut_ptr(),
                            nr_pages,
                            0,
                            size,
                            max_segment,
                            GFP_KERNEL.as_raw(),
                        )
                    })
                }),
                backing: Backing::Pages {
                    dev: dev.into(),
                    dir,
                    mapped: false,
                    _pages: pages.clone(),
                },
            }),
            GFP_KERNEL,
        )?;

        if !dma_map {
            return Ok(Self(inner, PhantomData));
        }
        // SAFETY: The table was initialized above, and `dev` is valid: the table holds a
        // reference to it until it is unmapped again, in the drop.
        to_result(unsafe {
            bindings::dma_map_sgtable(dev.as_raw(), inner.table.get(), dir.into(), 0)
        })?;
        // SAFETY: `backing` is not structurally pinned.
        let unpinned = unsafe { inner.as_mut().get_unchecked_mut() };
        if let Backing::Pages { mapped, .. } = &mut unpinned.backing {
            // INVARIANT: The table was DMA mapped above.
            *mapped = true;
        }
        Ok(Self(inner, PhantomData))
    }

    /// Builds a table of `ranges`, slices of one memory BAR of a bound PCI device, mapped for
    /// the importer's DMA device of `attach` with `dma_buf_phys_vec_to_sgt()`: peer-to-peer,
    /// through the host bridge or directly, as the PCI topology allows.
    ///
    /// The ranges, in order, must cover the buffer exactly. Returns [`EINVAL`] if `attach` is
    /// not of the SGT type, `dir` is [`DataDirection::None`], the ranges are not all of one
    /// device and BAR or not the size of the buffer; [`EOPNOTSUPP`] if the importer did not
    /// accept peer-to-peer addresses (the table has no pages) or the device has no P2P provider
    /// for the BAR; else the error of the mapping ([`EINVAL`] if the importer's device cannot
    /// reach the BAR).
    ///
    /// Building and dropping the table assert (with lockdep) that the reservation lock of the
    /// buffer is held, as it is in [`Exporter::map_sgt`](super::Exporter::map_sgt) and when the
    /// core unmaps; the lock protects nothing the table shares. The table drops `lease` when it
    /// is dropped.
    ///
    /// # Safety
    ///
    /// The exporter invalidates the mappings of its buffer and waits until every table came back
    /// before the driver lets go of the device. Drivers use [`BarMemory`](super::BarMemory),
    /// which does.
    #[cfg(CONFIG_PCI)]
    pub(crate) unsafe fn from_bar_ranges<T: Exporter>(
        attach: &'a ExporterAttachment<T>,
        ranges: &[crate::pci::BarRange<'_>],
        dir: DataDirection,
        lease: Option<Lease>,
    ) -> Result<Self> {
        if !attach.is_type::<Sgt>() || dir == DataDirection::None {
            return Err(EINVAL);
        }
        // The entries have DMA addresses only: importers that did not say they take
        // peer-to-peer addresses may look for pages.
        if !attach.peer2peer() {
            return Err(EOPNOTSUPP);
        }
        let (provider, mut phys) = super::pal::bar_phys(ranges)?;
        let size = phys
            .iter()
            .try_fold(0usize, |acc, r| acc.checked_add(r.len()))
            .ok_or(EINVAL)?;
        if size != attach.buf().size() {
            return Err(EINVAL);
        }
        // SAFETY: `attach` is a valid SGT attachment for `'a`; `provider` and `phys` describe MMIO
        // of one BAR of a bound device (see `bar_phys`), `size` is their sum; the function copies
        // what it needs. `PhysRange` is `repr(transparent)` over `struct phys_vec`.
        let sgt = unsafe {
            bindings::dma_buf_phys_vec_to_sgt(
                attach.as_raw(),
                provider.as_raw(),
                phys.as_mut_ptr().cast(),
                phys.len(),
                size,
                dir.into(),
            )
        };
        let sgt = NonNull::new(crate::error::from_err_ptr(sgt)?).ok_or(ENOMEM)?;
        let inner = KBox::pin_init(
            pin_init!(SgtExportInner {
                // SAFETY: `sgt` is a valid table; the copy of its header shares its entries,
                // which live until `dma_buf_free_sgt()` in the drop.
                table: Opaque::new(unsafe { sgt.as_ptr().read() }),
                backing: Backing::Phys {
                    attach: NonNull::new(attach.as_raw()).ok_or(EINVAL)?,
                    sgt,
                    dir,
                    _lease: lease,
                },
            }? Error),
            GFP_KERNEL,
        );
        match inner {
            // INVARIANT: The copy is initialized; `attach` outlives `'a`.
            Ok(inner) => Ok(Self(inner, PhantomData)),
            Err(e) => {
                // SAFETY: `sgt` was built above for `attach` with `dir`, and nothing else uses it.
                unsafe { bindings::dma_buf_free_sgt(attach.as_raw(), sgt.as_ptr(), dir.into()) };
                Err(e)
            }
        }
    }

    /// Returns the table.
    #[inline]
    pub fn table(&self) -> &SGTable {
        // SAFETY: By the type invariants of `SgtExportInner`, the table is initialized, and it is
        // not modified while `self` exists.
        unsafe { SGTable::from_raw(self.0.table.get()) }
    }

    /// Hands the table over to C, for `map_dma_buf`.
    pub(crate) fn into_raw(self) -> *mut bindings::sg_table {
        // SAFETY: The inner value is not moved: C only keeps the pointer, and `from_raw` rebuilds
        // the same pinned box.
        let inner = unsafe { Pin::into_inner_unchecked(self.0) };
        // `table` is the first field of the `repr(C)` inner struct.
        KBox::into_raw(inner).cast()
    }

    /// Takes back a table handed over by [`SgtExport::into_raw`].
    ///
    /// # Safety
    ///
    /// `sgt` was returned by [`SgtExport::into_raw`] and is not used by C any more.
    pub(crate) unsafe fn from_raw(sgt: *mut bindings::sg_table) -> Self {
        // SAFETY: By the safety requirements, `sgt` is the pointer of a box leaked by `into_raw`,
        // at the address of its first field.
        let inner = unsafe { KBox::from_raw(sgt.cast::<SgtExportInner>()) };
        // SAFETY: The box was pinned before it was leaked.
        Self(unsafe { Pin::new_unchecked(inner) }, PhantomData)
    }
}
