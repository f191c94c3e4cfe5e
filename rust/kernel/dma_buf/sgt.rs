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
use core::{ops::Deref, ptr::NonNull};

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
/// `table` is an initialized `struct sg_table` whose entries point into `pages`. If `mapped`, it
/// is DMA mapped for `dev` with `dir`.
#[repr(C)]
#[pin_data(PinnedDrop)]
struct SgtExportInner {
    // First field: the `struct sg_table` pointer handed to C is the pointer to this struct.
    #[pin]
    table: Opaque<bindings::sg_table>,
    dev: ARef<Device>,
    dir: DataDirection,
    mapped: bool,
    _pages: Arc<KVec<Page>>,
}

#[pinned_drop]
impl PinnedDrop for SgtExportInner {
    fn drop(self: Pin<&mut Self>) {
        if self.mapped {
            // SAFETY: By the type invariants, the table is DMA mapped for `dev` with `dir`.
            unsafe {
                bindings::dma_unmap_sgtable(self.dev.as_raw(), self.table.get(), self.dir.into(), 0)
            };
        }
        // SAFETY: By the type invariants, the table is initialized and no longer mapped.
        unsafe { bindings::sg_free_table(self.table.get()) };
    }
}

/// A scatter-gather table an exporter hands out for an SGT attachment.
///
/// Returned from [`Exporter::map_sgt`](super::Exporter::map_sgt). It owns a reference to the
/// pages it describes, so they stay allocated until the importer unmaps, and undoes its DMA
/// mapping when dropped.
pub struct SgtExport(Pin<KBox<SgtExportInner>>);

impl SgtExport {
    /// Builds a table of `pages`, DMA mapped for the importer's DMA device of `attach`.
    ///
    /// The table covers every page of `pages`, in order; it must be the size of the buffer. No
    /// entry is longer than the device's DMA segment and mapping limits, or a page if those are
    /// smaller; like the C helpers, the table does not honour a segment boundary mask. Returns
    /// [`EINVAL`] if `attach` is not of the SGT type, `dir` is [`DataDirection::None`] or
    /// `pages` not the size of the buffer, or the error of the DMA mapping.
    pub fn from_pages<T: Exporter>(
        attach: &ExporterAttachment<T>,
        pages: &Arc<KVec<Page>>,
        dir: DataDirection,
    ) -> Result<Self> {
        Self::build(attach, pages, dir, true)
    }

    /// Builds a table of `pages` without DMA mapping it, for tests on machines without DMA.
    #[cfg(CONFIG_RUST_DMA_BUF_KUNIT_TEST)]
    pub(crate) fn from_pages_unmapped<T: Exporter>(
        attach: &ExporterAttachment<T>,
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
        attach: &ExporterAttachment<T>,
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
                dev: dev.into(),
                dir,
                mapped: false,
                _pages: pages.clone(),
            }),
            GFP_KERNEL,
        )?;

        if !dma_map {
            return Ok(Self(inner));
        }
        // SAFETY: The table was initialized above, and `dev` is valid: the table holds a
        // reference to it until it is unmapped again, in the drop.
        to_result(unsafe {
            bindings::dma_map_sgtable(inner.dev.as_raw(), inner.table.get(), dir.into(), 0)
        })?;
        // SAFETY: `mapped` is not structurally pinned.
        // INVARIANT: The table was DMA mapped above.
        unsafe { inner.as_mut().get_unchecked_mut() }.mapped = true;
        Ok(Self(inner))
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
        Self(unsafe { Pin::new_unchecked(inner) })
    }
}
