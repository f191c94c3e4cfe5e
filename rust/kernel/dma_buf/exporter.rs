// SPDX-License-Identifier: GPL-2.0

//! Exporting dma-bufs.
//!
//! C header: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h)
//!
//! An exporter implements [`Exporter`] and creates buffers with [`DmaBuf::export`] or
//! [`DmaBuf::export_with`]. Each buffer owns the exporter's private data ([`Exporter::Data`])
//! from the export until the last reference to the buffer is gone; the data is dropped then, in
//! the `release` callback, and never earlier. The callbacks borrow it, and so does the typed
//! handle the export returns, [`Exported`]. An exporter that must find its buffers again, to
//! revoke or move them, keeps [`WeakDmaBuf`]s: they do not keep the buffers alive, so the
//! exporter's own data can hold them without a reference cycle.
//!
//! Each attachment can have exporter data too ([`Exporter::AttachData`]), made by
//! [`Exporter::attach`] and dropped after the detach.
//!
//! The exporter lists the mapping types it offers in [`Exporter::MAPPING_TYPES`] and implements
//! the map function of each: [`Exporter::map_sgt`] for [`ExportType::Sgt`],
//! [`Exporter::map_pal`] for [`ExportType::Pal`]. What a map function returns is given back, and
//! dropped, when the importer unmaps.
//!
//! # Examples
//!
//! An exporter of page-backed buffers that offers the SGT mapping type:
//!
//! ```
//! use kernel::{
//!     dma::DataDirection,
//!     dma_buf::{DmaBuf, ExportType, Exporter, ExporterAttachment, SgtExport},
//!     page::{Page, PAGE_SIZE},
//!     prelude::*,
//!     sync::{Arc, ArcBorrow},
//! };
//!
//! struct Pages;
//!
//! #[vtable]
//! impl Exporter for Pages {
//!     // Dropped when the last reference to the buffer goes away.
//!     type Data = Arc<KVec<Page>>;
//!     type AttachData = ();
//!     const MAPPING_TYPES: &'static [ExportType] = &[ExportType::Sgt { p2p: false }];
//!
//!     fn map_sgt<'a>(
//!         pages: ArcBorrow<'_, KVec<Page>>,
//!         attach: &'a ExporterAttachment<Self>,
//!         dir: DataDirection,
//!     ) -> Result<SgtExport<'a>> {
//!         // The table holds a reference to the pages until the importer unmaps it.
//!         SgtExport::from_pages(attach, &pages.into(), dir)
//!     }
//! }
//!
//! let mut pages = KVec::new();
//! for _ in 0..4 {
//!     pages.push(Page::alloc_page(GFP_KERNEL)?, GFP_KERNEL)?;
//! }
//! let buf = DmaBuf::export::<Pages>(Arc::new(pages, GFP_KERNEL)?, 4 * PAGE_SIZE)?;
//! assert_eq!(buf.size(), 4 * PAGE_SIZE);
//! assert_eq!(buf.data().len(), 4);
//!
//! // A weak handle does not keep the buffer alive.
//! let weak = buf.downgrade();
//! assert!(weak.upgrade().is_some());
//! drop(buf);
//! # // Kernel threads release files from a work item.
//! # // SAFETY: Flushing delayed file releases has no requirements.
//! # unsafe { kernel::bindings::flush_delayed_fput() };
//! assert!(weak.upgrade().is_none());
//! # Ok::<(), Error>(())
//! ```

use super::{
    mapping::{self, ExportType, MappingType},
    DmaBuf, DmaResv, DmaResvLocked, PalExport, SgtExport,
};
use crate::{
    bindings,
    device::Device,
    dma::DataDirection,
    error::{from_result, VTABLE_DEFAULT_ERROR},
    fs::file,
    mm::{fault::HUGE_ORDERS, virt::VmaNew},
    module::{this_module, ModuleMetadata},
    new_spinlock,
    prelude::*,
    sync::{
        aref::{ARef, AlwaysRefCounted},
        Arc, SpinLock,
    },
    types::{ForeignOwnable, Opaque},
};
use core::{ffi::c_void, marker::PhantomData, ops::Deref, ptr::NonNull};

/// The exporter's data of a buffer, as borrowed by the callbacks.
pub type DataRef<'a, T> = <<T as Exporter>::Data as ForeignOwnable>::Borrowed<'a>;

/// The exporter's data of an attachment, as borrowed by the callbacks.
pub type AttachDataRef<'a, T> = <<T as Exporter>::AttachData as ForeignOwnable>::Borrowed<'a>;

/// A dma-buf exporter.
///
/// The callbacks of `struct dma_buf_ops`. Every callback gets the buffer's [`Exporter::Data`];
/// the optional ones are left out of the ops table unless implemented.
#[vtable]
pub trait Exporter: Sized + 'static {
    /// The exporter's data of a buffer: owned by the buffer, dropped when it is released.
    type Data: ForeignOwnable + Send + Sync;

    /// The exporter's data of an attachment: made by [`Exporter::attach`], dropped after the
    /// detach. Use `()` for none.
    type AttachData: ForeignOwnable + Send + Sync;

    /// The mapping types the exporter offers, best first.
    ///
    /// One or two entries, each type at most once; each type needs its map function
    /// implemented ([`Exporter::map_sgt`], [`Exporter::map_pal`]). Checked at build time.
    const MAPPING_TYPES: &'static [ExportType];

    /// Called when an importer attaches, after the mapping type is negotiated.
    ///
    /// Returns the attachment's data, which [`ExporterAttachment::data`] borrows until the
    /// attachment is detached. Returning an error fails the attach with it.
    fn attach(
        _data: DataRef<'_, Self>,
        _attach: &ExporterAttachment<Self>,
    ) -> Result<Self::AttachData> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called when an importer detaches, after its last unmap. The attachment's data is dropped
    /// after this returns.
    fn detach(_data: DataRef<'_, Self>, _attach: &ExporterAttachment<Self>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Maps the buffer for an SGT attachment.
    ///
    /// Called with the reservation lock held. The returned table is dropped when the importer
    /// unmaps it; it cannot outlive the attachment. Return [`ENODEV`] if the buffer is revoked.
    fn map_sgt<'a>(
        _data: DataRef<'_, Self>,
        _attach: &'a ExporterAttachment<Self>,
        _dir: DataDirection,
    ) -> Result<SgtExport<'a>> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Unmaps a table from [`Exporter::map_sgt`], when the importer is done with it.
    ///
    /// Called with the reservation lock held. Without this callback the table is just dropped.
    fn unmap_sgt(
        _data: DataRef<'_, Self>,
        _attach: &ExporterAttachment<Self>,
        _sgt: SgtExport<'_>,
    ) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Returns the physical address list of the buffer for a PAL attachment.
    ///
    /// Called with the reservation lock held. The returned list is dropped when the importer
    /// gives it back. Return [`ENODEV`] if the buffer is revoked.
    fn map_pal(_data: DataRef<'_, Self>, _attach: &ExporterAttachment<Self>) -> Result<PalExport> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Takes back a list from [`Exporter::map_pal`], when the importer is done with it.
    ///
    /// Called with the reservation lock held. Without this callback the list is just dropped.
    fn unmap_pal(_data: DataRef<'_, Self>, _attach: &ExporterAttachment<Self>, _phys: PalExport) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Maps the buffer into user space.
    ///
    /// The core has checked that the offset and size of `vma` are within the buffer; the offset
    /// is `vma.pgoff()` pages.
    fn mmap(_data: DataRef<'_, Self>, _buf: &Exported<Self>, _vma: &VmaNew) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Returns the largest order of the page table entries that the faults of a mapping of
    /// `len` bytes from page `pgoff` of the buffer can be served with, when the mapping's
    /// addresses are congruent to the buffer's offsets modulo the entry size; 0 if only pages.
    ///
    /// An `mmap()` without `MAP_FIXED`, and an `mremap()` that moves a mapping, place it so,
    /// where there is room. Called with the mmap lock of the task held for writing (so it must
    /// not take locks held around page faults), before [`Exporter::mmap`], for any `pgoff` and
    /// `len`: a mapping placed elsewhere must still work. Orders other than those of the PMD
    /// and PUD entries the architecture can map count as 0. [`io_mapping_order`] answers it for
    /// a range of MMIO.
    ///
    /// [`io_mapping_order`]: crate::mm::fault::io_mapping_order
    fn mmap_order(_data: DataRef<'_, Self>, _pgoff: usize, _len: usize) -> u32 {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Prepares the buffer for CPU access in direction `dir`, for `DMA_BUF_IOCTL_SYNC`.
    fn begin_cpu_access(
        _data: DataRef<'_, Self>,
        _buf: &Exported<Self>,
        _dir: DataDirection,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Ends CPU access to the buffer in direction `dir`, for `DMA_BUF_IOCTL_SYNC`.
    fn end_cpu_access(
        _data: DataRef<'_, Self>,
        _buf: &Exported<Self>,
        _dir: DataDirection,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// An attachment as the exporter `T` sees it.
///
/// Wraps the C `struct dma_buf_attachment`; exporter callbacks get a reference.
///
/// # Invariants
///
/// The attachment is valid, its buffer (exported by [`DmaBuf::export_with::<T>`]) and device are
/// set, and its mapping type is negotiated. Its `priv` is NULL or holds the
/// [`Exporter::AttachData`] that [`Exporter::attach`] returned, until the detach.
#[repr(transparent)]
pub struct ExporterAttachment<T: Exporter>(Opaque<bindings::dma_buf_attachment>, PhantomData<T>);

impl<T: Exporter> ExporterAttachment<T> {
    /// Creates a reference to an attachment from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to an attachment of a buffer exported by [`DmaBuf::export_with::<T>`],
    /// with a negotiated mapping type, that stays alive for `'a`. Its `priv` is NULL or set by
    /// the attach callback of `T`.
    #[inline]
    unsafe fn from_raw<'a>(ptr: *mut bindings::dma_buf_attachment) -> &'a Self {
        // SAFETY: `ExporterAttachment` is `repr(transparent)` over the C struct, and the caller
        // guarantees it is valid for `'a`.
        unsafe { &*ptr.cast() }
    }

    #[inline]
    pub(crate) fn as_raw(&self) -> *mut bindings::dma_buf_attachment {
        self.0.get()
    }

    /// Returns the buffer the importer attached to.
    #[inline]
    pub fn buf(&self) -> &Exported<T> {
        // SAFETY: By the type invariants, `dmabuf` is set, exported by `T`, and outlives its
        // attachments.
        unsafe { Exported::from_raw((*self.as_raw()).dmabuf) }
    }

    /// Returns the importer's device: for SGT attachments, the device to DMA map tables for.
    #[inline]
    pub fn dev(&self) -> &Device {
        // SAFETY: By the type invariants, `dev` is set; importers keep it alive while attached.
        unsafe { Device::from_raw((*self.as_raw()).dev) }
    }

    /// Returns whether the importer can use peer-to-peer addresses.
    #[inline]
    pub fn peer2peer(&self) -> bool {
        // SAFETY: By the type invariants, the attachment is valid; `peer2peer` is constant.
        unsafe { (*self.as_raw()).peer2peer }
    }

    /// Returns whether the importer honours invalidation, so the exporter can revoke its
    /// mappings.
    #[inline]
    pub fn is_revocable(&self) -> bool {
        // SAFETY: By the type invariants, the attachment is valid.
        unsafe { bindings::dma_buf_attach_revocable(self.as_raw()) }
    }

    /// Returns whether the attachment was negotiated to the mapping type `M`.
    #[inline]
    pub fn is_type<M: MappingType>(&self) -> bool {
        // SAFETY: By the type invariants, the attachment is valid; its type is constant.
        mapping::is_type::<M>(unsafe { (*self.as_raw()).map_type.type_ })
    }

    /// Returns the exporter's data of the attachment, or `None` before [`Exporter::attach`] has
    /// returned or if the exporter does not implement it.
    #[inline]
    pub fn data(&self) -> Option<AttachDataRef<'_, T>> {
        // SAFETY: By the type invariants, `priv` is NULL or holds the attachment data, which is
        // dropped only after the detach, so it outlives the borrow of `self`.
        let priv_ = unsafe { (*self.as_raw()).priv_ };
        if priv_.is_null() {
            None
        } else {
            // SAFETY: As above; `priv_` came from `into_foreign` in the attach callback.
            Some(unsafe { T::AttachData::borrow(priv_) })
        }
    }
}

/// An owner of a reservation object that buffers can share, see [`ExportOptions::shared_resv`].
///
/// # Safety
///
/// [`ResvOwner::resv`] returns the same reservation object every time, and it stays initialized as
/// long as the owner exists, wherever the owner is moved.
pub unsafe trait ResvOwner: Send + Sync + 'static {
    /// Returns the reservation object.
    fn resv(&self) -> &DmaResv;
}

// SAFETY: The reservation object of a buffer is constant and lives as long as the buffer, which
// the reference keeps alive; moving the reference does not move the buffer.
unsafe impl ResvOwner for ARef<DmaBuf> {
    fn resv(&self) -> &DmaResv {
        DmaBuf::resv(self)
    }
}

/// Options of a new buffer, for [`DmaBuf::export_with`].
#[derive(Default)]
pub struct ExportOptions {
    read_only: bool,
    flags: Option<u32>,
    resv: Option<KBox<dyn ResvOwner>>,
}

impl ExportOptions {
    /// Returns the default options: a read-write file and a reservation object of its own.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens the buffer's file read-only: user space can only map it for reading.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Opens the buffer's file with `flags`, as `open()` takes them (`O_RDWR` or `O_RDONLY`, and
    /// more), for exporters whose user space passes them on; this overrides
    /// [`ExportOptions::read_only`].
    pub fn open_flags(mut self, flags: u32) -> Self {
        self.flags = Some(flags);
        self
    }

    /// Shares the reservation object of `owner` instead of giving the buffer one of its own.
    ///
    /// The buffer keeps `owner` until it is released. Buffers that share a reservation object
    /// are locked together, as DRM does for the buffers of one GEM object.
    pub fn shared_resv(mut self, owner: impl ResvOwner) -> Result<Self> {
        self.resv = Some(KBox::new(owner, GFP_KERNEL)?);
        Ok(self)
    }
}

/// Where a [`WeakDmaBuf`] finds its buffer.
///
/// # Invariants
///
/// `buf` is `None` or points to a buffer exported by [`DmaBuf::export_with`] whose `release` has
/// not cleared it yet; release clears it, under the lock, before the buffer is freed.
#[pin_data]
struct WeakSlot {
    #[pin]
    buf: SpinLock<Option<RawBuf>>,
}

impl WeakSlot {
    /// Allocates an empty slot.
    ///
    /// Not generic, unlike its caller: the lock class key of the spinlock is a static of this
    /// function, and lockdep wants one name for it, not one per crate that instantiates the
    /// caller.
    fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(WeakSlot {
                buf <- new_spinlock!(None, "dma_buf_weak"),
            }),
            GFP_KERNEL,
        )
    }
}

/// A pointer to a buffer, for [`WeakSlot`].
struct RawBuf(NonNull<bindings::dma_buf>);

// SAFETY: The pointer is only dereferenced under the lock of the slot, which keeps the buffer
// from being freed; a `struct dma_buf` is not tied to a task.
unsafe impl Send for RawBuf {}

/// What the buffer of the exporter `T` points to as its private data.
///
/// # Invariants
///
/// `data` came from [`ForeignOwnable::into_foreign`] of a `T::Data` and is owned by this value.
struct ExportPriv<T: Exporter> {
    data: *mut c_void,
    weak: Arc<WeakSlot>,
    _resv: Option<KBox<dyn ResvOwner>>,
    _type: PhantomData<T>,
}

impl<T: Exporter> Drop for ExportPriv<T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, `data` came from `into_foreign` and is reclaimed only
        // here, once.
        drop(unsafe { T::Data::from_foreign(self.data) });
    }
}

/// A buffer of the exporter `T`: a [`DmaBuf`] whose exporter data is known.
///
/// Returned by [`DmaBuf::export_with`] and [`WeakDmaBuf::upgrade`], and by
/// [`ExporterAttachment::buf`]. Dereferences to the [`DmaBuf`]. Only the exporter has this handle,
/// so only it can invalidate the mappings of the buffer.
///
/// # Invariants
///
/// The buffer was exported by [`DmaBuf::export_with::<T>`]: its `priv` is an `ExportPriv<T>`
/// until it is released.
#[repr(transparent)]
pub struct Exported<T: Exporter>(DmaBuf, PhantomData<fn() -> T>);

// SAFETY: `Exported<T>` is a `DmaBuf`, which is always reference counted.
unsafe impl<T: Exporter> AlwaysRefCounted for Exported<T> {
    #[inline]
    fn inc_ref(&self) {
        self.0.inc_ref();
    }

    #[inline]
    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: `Exported<T>` is `repr(transparent)` over `DmaBuf`; the caller gives up its
        // reference.
        unsafe { DmaBuf::dec_ref(obj.cast()) };
    }
}

impl<T: Exporter> Exported<T> {
    /// Creates a reference to a buffer of `T` from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` points to a buffer exported by [`DmaBuf::export_with::<T>`] that stays alive for
    /// `'a`.
    #[inline]
    unsafe fn from_raw<'a>(ptr: *mut bindings::dma_buf) -> &'a Self {
        // SAFETY: `Exported<T>` is `repr(transparent)` over `DmaBuf`, itself over the C struct,
        // and the caller guarantees the buffer is valid for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Returns the private data of the buffer.
    #[inline]
    fn export_priv(&self) -> &ExportPriv<T> {
        // SAFETY: By the type invariants, `priv_` is an `ExportPriv<T>`, which lives until the
        // buffer is released, after the last reference (such as `self`) is gone.
        unsafe { &*(*self.0.as_raw()).priv_.cast::<ExportPriv<T>>() }
    }

    /// Returns the exporter's data of the buffer.
    #[inline]
    pub fn data(&self) -> DataRef<'_, T> {
        // SAFETY: The data came from `into_foreign` and is reclaimed only when the buffer is
        // released, after the borrow of `self` ends.
        unsafe { T::Data::borrow(self.export_priv().data) }
    }

    /// Returns a weak handle to the buffer, which does not keep it alive.
    #[must_use]
    pub fn downgrade(&self) -> WeakDmaBuf<T> {
        WeakDmaBuf {
            slot: self.export_priv().weak.clone(),
            _type: PhantomData,
        }
    }

    /// Tells every dynamic importer of the buffer to give its mappings back.
    ///
    /// For exporters that move or revoke the memory of the buffer: mark the buffer so that new
    /// mappings fail or go to the new place, then call this. Each dynamic importer's invalidate
    /// callback runs before this returns, with the lock held; Rust importers' mappings are
    /// unmapped then. C importers may still have device accesses in flight: wait for the fences
    /// of the reservation object ([`DmaResv::wait`] with [`DmaResvUsage::Bookkeep`]) before the
    /// memory goes away.
    ///
    /// `locked` must be the proof of the buffer's reservation lock; taking it (rather than a
    /// shared guard) makes sure no importer of this task holds a reference to a mapping that
    /// goes away. Returns [`EINVAL`] if it is the proof of another lock.
    ///
    /// [`DmaResvUsage::Bookkeep`]: super::DmaResvUsage::Bookkeep
    pub fn invalidate_mappings(&self, locked: DmaResvLocked<'_>) -> Result {
        if !locked.holds(self.resv()) {
            return Err(EINVAL);
        }
        // SAFETY: By the type invariants, the buffer is valid, and its reservation lock is held
        // (checked above), as `dma_buf_invalidate_mappings()` requires.
        unsafe { bindings::dma_buf_invalidate_mappings(self.0.as_raw()) };
        Ok(())
    }
}

impl<T: Exporter> Deref for Exported<T> {
    type Target = DmaBuf;

    #[inline]
    fn deref(&self) -> &DmaBuf {
        &self.0
    }
}

/// A weak handle to a buffer of the exporter `T`.
///
/// From [`Exported::downgrade`]. It does not keep the buffer alive: [`WeakDmaBuf::upgrade`]
/// returns a reference while the buffer is in use, `None` once its file is gone.
pub struct WeakDmaBuf<T: Exporter> {
    slot: Arc<WeakSlot>,
    _type: PhantomData<fn() -> T>,
}

impl<T: Exporter> Clone for WeakDmaBuf<T> {
    fn clone(&self) -> Self {
        Self {
            slot: self.slot.clone(),
            _type: PhantomData,
        }
    }
}

impl<T: Exporter> WeakDmaBuf<T> {
    /// Returns a reference to the buffer, or `None` if it is being released or gone.
    #[must_use]
    pub fn upgrade(&self) -> Option<ARef<Exported<T>>> {
        let buf = self.slot.buf.lock();
        let raw = buf.as_ref()?.0;
        // SAFETY: By the type invariants of `WeakSlot`, the buffer is not freed while the lock is
        // held and the slot points to it.
        let got = unsafe { bindings::dma_buf_get_active(raw.as_ptr()) };
        let got = NonNull::new(got)?;
        // SAFETY: `dma_buf_get_active()` took a reference to the buffer, exported by `T` (slots
        // are only handed out by `Exported<T>`), which the `ARef` takes over.
        Some(unsafe { ARef::from_raw(got.cast()) })
    }

    /// Returns whether `file` is the file of the buffer of this handle, while it is in use.
    pub(crate) fn has_file(&self, file: *const bindings::file) -> bool {
        let slot = self.slot.buf.lock();
        slot.as_ref().is_some_and(|raw| {
            // SAFETY: By the type invariants of `WeakSlot`, the buffer is not freed while the
            // lock is held and the slot points to it. Its `file` is set at the export and cleared
            // when the file is released, concurrently with this: read it once, with `READ_ONCE()`
            // semantics; either value compares right, as a released file has no VMAs to fault.
            let current = unsafe { core::ptr::read_volatile(&raw const (*raw.0.as_ptr()).file) };
            core::ptr::eq(current.cast_const(), file)
        })
    }

    /// Returns whether `buf` is the buffer of this handle.
    pub fn is(&self, buf: &DmaBuf) -> bool {
        let slot = self.slot.buf.lock();
        slot.as_ref()
            .is_some_and(|raw| core::ptr::eq(raw.0.as_ptr(), buf.as_raw()))
    }
}

impl DmaBuf {
    /// Exports a new buffer of `size` bytes with the exporter `T`, with the default options.
    ///
    /// See [`DmaBuf::export_with`].
    pub fn export<T: Exporter>(data: T::Data, size: usize) -> Result<ARef<Exported<T>>> {
        Self::export_with::<T>(data, size, ExportOptions::new())
    }

    /// Exports a new buffer of `size` bytes with the exporter `T` and the options `opts`.
    ///
    /// `data` becomes the buffer's exporter data; it is dropped when the last reference to the
    /// buffer goes away, or here if the export fails. Hand the buffer to user space with
    /// [`DmaBuf::fd_install`].
    ///
    /// Returns [`EINVAL`] for a size of 0, or the error of the C export.
    pub fn export_with<T: Exporter>(
        data: T::Data,
        size: usize,
        opts: ExportOptions,
    ) -> Result<ARef<Exported<T>>> {
        if size == 0 {
            return Err(EINVAL);
        }
        let weak = WeakSlot::new()?;
        let resv = opts
            .resv
            .as_ref()
            .map_or(core::ptr::null_mut(), |r| r.resv().as_raw());
        // INVARIANT: `data` comes from `into_foreign` and is owned by the new value.
        let export_priv = KBox::new(
            ExportPriv::<T> {
                data: data.into_foreign(),
                weak,
                _resv: opts.resv,
                _type: PhantomData,
            },
            GFP_KERNEL,
        )?;
        let weak = export_priv.weak.clone();
        let priv_ = KBox::into_raw(export_priv);
        let flags = match (opts.flags, opts.read_only) {
            (Some(flags), _) => flags,
            (None, true) => file::flags::O_RDONLY,
            (None, false) => file::flags::O_RDWR,
        };
        let info = bindings::dma_buf_export_info {
            exp_name: <T::OwnerModule as ModuleMetadata>::NAME.as_char_ptr(),
            owner: this_module::<T::OwnerModule>().as_ptr(),
            ops: ExporterVTable::<T>::build(),
            size,
            flags: flags as c_int,
            resv,
            priv_: priv_.cast(),
        };
        // SAFETY: `info` is fully initialized; `ops` is a static table whose callbacks match the
        // `ExportPriv<T>` in `priv_`. A shared `resv` stays initialized as long as its owner, which
        // `priv_` keeps until the release, after the last use of `resv` by the buffer.
        let ptr = unsafe { bindings::dma_buf_export(&info) };
        match crate::error::from_err_ptr(ptr) {
            Ok(ptr) => {
                // SAFETY: `dma_buf_export()` returned a valid buffer, not NULL.
                let raw = unsafe { NonNull::new_unchecked(ptr) };
                // INVARIANT: The buffer is exported and its release clears the slot.
                *weak.buf.lock() = Some(RawBuf(raw));
                // INVARIANT: The buffer was exported by `T` with an `ExportPriv<T>`.
                // SAFETY: `dma_buf_export()` returns a buffer with one reference, which the
                // `ARef` takes over. From now on the buffer owns `priv_`.
                Ok(unsafe { ARef::from_raw(raw.cast()) })
            }
            Err(e) => {
                // SAFETY: The export failed, so `priv_` was not taken over; it came from
                // `KBox::into_raw` above and is reclaimed only here.
                drop(unsafe { KBox::from_raw(priv_) });
                Err(e)
            }
        }
    }
}

/// The C ops tables of the exporter `T`.
struct ExporterVTable<T: Exporter>(PhantomData<T>);

impl<T: Exporter> ExporterVTable<T> {
    /// Checks [`Exporter::MAPPING_TYPES`] at build time.
    const CHECKED_TYPES: &'static [ExportType] = {
        let types = T::MAPPING_TYPES;
        assert!(
            !types.is_empty() && types.len() <= 2,
            "an exporter offers one or two mapping types"
        );
        let mut sgt = false;
        let mut pal = false;
        let mut i = 0;
        while i < types.len() {
            match types[i] {
                ExportType::Sgt { .. } => {
                    assert!(!sgt, "mapping type listed twice");
                    assert!(T::HAS_MAP_SGT, "ExportType::Sgt needs Exporter::map_sgt");
                    sgt = true;
                }
                ExportType::Pal => {
                    assert!(!pal, "mapping type listed twice");
                    assert!(T::HAS_MAP_PAL, "ExportType::Pal needs Exporter::map_pal");
                    pal = true;
                }
            }
            i += 1;
        }
        types
    };

    const SGT_OPS: bindings::dma_buf_sgt_exp_ops = bindings::dma_buf_sgt_exp_ops {
        map_dma_buf: Some(Self::map_dma_buf),
        unmap_dma_buf: Some(Self::unmap_dma_buf),
    };

    const PAL_OPS: bindings::dma_buf_pal_exp_ops = bindings::dma_buf_pal_exp_ops {
        map_phys: Some(Self::map_phys),
        unmap_phys: Some(Self::unmap_phys),
    };

    const OPS: bindings::dma_buf_ops = bindings::dma_buf_ops {
        attach: if T::HAS_ATTACH {
            Some(Self::attach)
        } else {
            None
        },
        match_mapping: Some(Self::match_mapping),
        // The attachment data is dropped after the detach.
        detach: if T::HAS_DETACH || T::HAS_ATTACH {
            Some(Self::detach)
        } else {
            None
        },
        release: Some(Self::release),
        begin_cpu_access: if T::HAS_BEGIN_CPU_ACCESS {
            Some(Self::begin_cpu_access)
        } else {
            None
        },
        end_cpu_access: if T::HAS_END_CPU_ACCESS {
            Some(Self::end_cpu_access)
        } else {
            None
        },
        mmap: if T::HAS_MMAP { Some(Self::mmap) } else { None },
        mmap_order: if T::HAS_MMAP_ORDER {
            Some(Self::mmap_order)
        } else {
            None
        },
        // The remaining callbacks are not implemented: NULL.
        ..pin_init::zeroed()
    };

    const fn build() -> &'static bindings::dma_buf_ops {
        // Evaluating the checked list makes a bad `MAPPING_TYPES` a build error.
        let _ = Self::CHECKED_TYPES;
        &Self::OPS
    }

    /// Borrows the exporter data of `dmabuf`.
    ///
    /// # Safety
    ///
    /// `dmabuf` is a buffer exported by [`DmaBuf::export_with::<T>`], not yet released, and stays
    /// so for `'a`.
    unsafe fn data<'a>(dmabuf: *mut bindings::dma_buf) -> DataRef<'a, T> {
        // SAFETY: By the safety requirements, the buffer is a valid buffer of `T` for `'a`.
        unsafe { Exported::<T>::from_raw(dmabuf) }.data()
    }

    /// Borrows an attachment and the exporter data of its buffer, for the map callbacks.
    ///
    /// # Safety
    ///
    /// `attach` is an attachment of a buffer exported by [`DmaBuf::export_with::<T>`], valid for
    /// `'a`.
    unsafe fn attachment<'a>(
        attach: *mut bindings::dma_buf_attachment,
    ) -> (&'a ExporterAttachment<T>, DataRef<'a, T>) {
        // SAFETY: `attach` is valid for `'a` by the safety requirements.
        let attach = unsafe { ExporterAttachment::from_raw(attach) };
        // SAFETY: The buffer is not released while it has attachments.
        let data = unsafe { Self::data(attach.buf().as_raw()) };
        (attach, data)
    }

    /// Runs a CPU access callback of `T`, for `begin_cpu_access` and `end_cpu_access`.
    ///
    /// # Safety
    ///
    /// `dmabuf` is a buffer exported by [`DmaBuf::export_with::<T>`].
    unsafe fn cpu_access(
        dmabuf: *mut bindings::dma_buf,
        dir: bindings::dma_data_direction,
        callback: fn(DataRef<'_, T>, &Exported<T>, DataDirection) -> Result,
    ) -> c_int {
        // SAFETY: The buffer is alive: the caller holds a reference.
        let data = unsafe { Self::data(dmabuf) };
        // SAFETY: The buffer is alive and exported by `T`.
        let buf = unsafe { Exported::<T>::from_raw(dmabuf) };
        from_result(|| {
            callback(data, buf, DataDirection::try_from(dir)?)?;
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// `args` is the match state of an attach to a buffer exported by [`DmaBuf::export_with::<T>`].
    unsafe extern "C" fn match_mapping(args: *mut bindings::dma_buf_match_args) -> c_int {
        let types = Self::CHECKED_TYPES;
        let mut exp: [bindings::dma_buf_mapping_match; 2] = pin_init::zeroed();
        for (entry, ty) in exp.iter_mut().zip(types) {
            *entry = ty.to_raw(&Self::SGT_OPS, &Self::PAL_OPS);
        }
        // SAFETY: `args` is valid by the safety requirements, and the first `types.len()` entries
        // of `exp` are initialized, with ops tables that live forever.
        unsafe { bindings::dma_buf_match_mapping(args, exp.as_ptr(), types.len()) }
    }

    /// # Safety
    ///
    /// `dmabuf` is a buffer exported by [`DmaBuf::export_with::<T>`], and `attach` a new attachment
    /// of it with a negotiated mapping type.
    unsafe extern "C" fn attach(
        dmabuf: *mut bindings::dma_buf,
        attach: *mut bindings::dma_buf_attachment,
    ) -> c_int {
        // SAFETY: The buffer is not released while an importer attaches to it.
        let data = unsafe { Self::data(dmabuf) };
        // SAFETY: `attach` is an attachment of `dmabuf`, valid for the duration of the callback,
        // with a NULL `priv`.
        let att = unsafe { ExporterAttachment::<T>::from_raw(attach) };
        from_result(|| {
            let attach_data = T::attach(data, att)?.into_foreign();
            // INVARIANT: `priv` holds the attachment data until the detach callback.
            // SAFETY: `attach` is valid, and not yet visible to anyone else.
            unsafe { (*attach).priv_ = attach_data };
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// `dmabuf` is a buffer exported by [`DmaBuf::export_with::<T>`], and `attach` an attachment of
    /// it that is being detached.
    unsafe extern "C" fn detach(
        dmabuf: *mut bindings::dma_buf,
        attach: *mut bindings::dma_buf_attachment,
    ) {
        if T::HAS_DETACH {
            // SAFETY: The buffer is not released while an importer detaches from it.
            let data = unsafe { Self::data(dmabuf) };
            // SAFETY: `attach` is an attachment of `dmabuf`, valid for the duration of the
            // callback.
            let att = unsafe { ExporterAttachment::<T>::from_raw(attach) };
            T::detach(data, att);
        }
        // SAFETY: `attach` is valid. Its `priv` is NULL or holds the attachment data from the
        // attach callback, reclaimed only here, after the last callback of the attachment.
        drop(unsafe { T::AttachData::try_from_foreign((*attach).priv_) });
    }

    /// # Safety
    ///
    /// `dmabuf` is a buffer exported by [`DmaBuf::export_with::<T>`] whose last reference is gone.
    unsafe extern "C" fn release(dmabuf: *mut bindings::dma_buf) {
        // SAFETY: `priv_` holds the `ExportPriv<T>` from `KBox::into_raw` in `export_with`; this
        // is the one place that reclaims it, and no callback can run after `release`.
        let export_priv = unsafe { KBox::from_raw((*dmabuf).priv_.cast::<ExportPriv<T>>()) };
        // INVARIANT: Weak handles no longer find the buffer, which is freed after this returns.
        *export_priv.weak.buf.lock() = None;
        drop(export_priv);
    }

    /// # Safety
    ///
    /// `attach` is an SGT attachment of a buffer exported by [`DmaBuf::export_with::<T>`], and the
    /// reservation lock of the buffer is held.
    unsafe extern "C" fn map_dma_buf(
        attach: *mut bindings::dma_buf_attachment,
        dir: bindings::dma_data_direction,
    ) -> *mut bindings::sg_table {
        // SAFETY: `attach` is valid for the duration of the callback.
        let (attach, data) = unsafe { Self::attachment(attach) };
        // `DMA_NONE` is no direction to map for.
        let result = match DataDirection::try_from(dir) {
            Ok(DataDirection::None) | Err(_) => Err(EINVAL),
            Ok(dir) => T::map_sgt(data, attach, dir),
        };
        match result {
            Ok(sgt) => sgt.into_raw(),
            Err(e) => e.to_ptr(),
        }
    }

    /// # Safety
    ///
    /// `sgt` was returned by `map_dma_buf` for `attach`, and the reservation lock is held.
    unsafe extern "C" fn unmap_dma_buf(
        attach: *mut bindings::dma_buf_attachment,
        sgt: *mut bindings::sg_table,
        _dir: bindings::dma_data_direction,
    ) {
        // SAFETY: `sgt` came from `SgtExport::into_raw` in `map_dma_buf` and C gives it back.
        let sgt = unsafe { SgtExport::from_raw(sgt) };
        if T::HAS_UNMAP_SGT {
            // SAFETY: `attach` is valid for the duration of the callback.
            let (attach, data) = unsafe { Self::attachment(attach) };
            T::unmap_sgt(data, attach, sgt);
        }
    }

    /// # Safety
    ///
    /// `attach` is a PAL attachment of a buffer exported by [`DmaBuf::export_with::<T>`], and the
    /// reservation lock of the buffer is held.
    unsafe extern "C" fn map_phys(
        attach: *mut bindings::dma_buf_attachment,
    ) -> *mut bindings::dma_buf_phys_list {
        // SAFETY: `attach` is valid for the duration of the callback.
        let (attach, data) = unsafe { Self::attachment(attach) };
        match T::map_pal(data, attach) {
            Ok(phys) => phys.into_raw(),
            Err(e) => e.to_ptr(),
        }
    }

    /// # Safety
    ///
    /// `phys` was returned by `map_phys` for `attach`, and the reservation lock is held.
    unsafe extern "C" fn unmap_phys(
        attach: *mut bindings::dma_buf_attachment,
        phys: *mut bindings::dma_buf_phys_list,
    ) {
        // SAFETY: `phys` came from `PalExport::into_raw` in `map_phys` and C gives it back.
        let phys = unsafe { PalExport::from_raw(phys) };
        if T::HAS_UNMAP_PAL {
            // SAFETY: `attach` is valid for the duration of the callback.
            let (attach, data) = unsafe { Self::attachment(attach) };
            T::unmap_pal(data, attach, phys);
        }
    }

    /// # Safety
    ///
    /// `dmabuf` is a buffer exported by [`DmaBuf::export_with::<T>`], and `vma` is being set up by
    /// `mmap(2)`.
    unsafe extern "C" fn mmap(
        dmabuf: *mut bindings::dma_buf,
        vma: *mut bindings::vm_area_struct,
    ) -> c_int {
        // SAFETY: The buffer is alive: the file being mapped holds a reference.
        let data = unsafe { Self::data(dmabuf) };
        // SAFETY: The buffer is alive and exported by `T`.
        let buf = unsafe { Exported::<T>::from_raw(dmabuf) };
        // SAFETY: The caller provides a vma that is undergoing initial VMA setup.
        let vma = unsafe { VmaNew::from_raw(vma) };
        from_result(|| vma.call_mmap(|vma| T::mmap(data, buf, vma)).map(|()| 0))
    }

    /// # Safety
    ///
    /// `dmabuf` is a buffer exported by [`DmaBuf::export_with::<T>`], whose file is being mapped
    /// by `mmap()` or whose mapping `mremap()` moves.
    unsafe extern "C" fn mmap_order(
        dmabuf: *mut bindings::dma_buf,
        pgoff: c_ulong,
        len: usize,
    ) -> c_uint {
        // SAFETY: The buffer is alive: `mmap()` holds a reference to its file, and so does the
        // VMA that `mremap()` moves.
        let data = unsafe { Self::data(dmabuf) };
        // The core warns about any other order.
        match T::mmap_order(data, pgoff, len) {
            order if HUGE_ORDERS.contains(&order) => order,
            _ => 0,
        }
    }

    /// # Safety
    ///
    /// `dmabuf` is a buffer exported by [`DmaBuf::export_with::<T>`].
    unsafe extern "C" fn begin_cpu_access(
        dmabuf: *mut bindings::dma_buf,
        dir: bindings::dma_data_direction,
    ) -> c_int {
        // SAFETY: Guaranteed by the safety requirements.
        unsafe { Self::cpu_access(dmabuf, dir, T::begin_cpu_access) }
    }

    /// # Safety
    ///
    /// `dmabuf` is a buffer exported by [`DmaBuf::export_with::<T>`].
    unsafe extern "C" fn end_cpu_access(
        dmabuf: *mut bindings::dma_buf,
        dir: bindings::dma_data_direction,
    ) -> c_int {
        // SAFETY: Guaranteed by the safety requirements.
        unsafe { Self::cpu_access(dmabuf, dir, T::end_cpu_access) }
    }
}
