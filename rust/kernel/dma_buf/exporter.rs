// SPDX-License-Identifier: GPL-2.0

//! Exporting dma-bufs.
//!
//! C header: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h)
//!
//! An exporter implements [`Exporter`] and creates buffers with [`DmaBuf::export`]. Each buffer
//! owns the exporter's private data ([`Exporter::Data`]) from the export until the last reference
//! to the buffer is gone; the data is dropped then, in the `release` callback, and never earlier.
//! The callbacks borrow it.
//!
//! The exporter lists the mapping types it offers in [`Exporter::MAPPING_TYPES`] and implements
//! the map function of each: [`Exporter::map_sgt`] for [`ExportType::Sgt`],
//! [`Exporter::map_pal`] for [`ExportType::Pal`]. What a map function returns is given back, and
//! dropped, when the importer unmaps.

use super::{
    mapping::{self, ExportType, MappingType},
    DmaBuf, PalExport, SgtExport,
};
use crate::{
    bindings,
    device::Device,
    dma::DataDirection,
    error::{from_result, VTABLE_DEFAULT_ERROR},
    fs::file,
    mm::virt::VmaNew,
    module::{this_module, ModuleMetadata},
    prelude::*,
    sync::aref::ARef,
    types::{ForeignOwnable, Opaque},
};
use core::{ffi::c_int, marker::PhantomData, ptr::NonNull};

/// The exporter's data of a buffer, as borrowed by the callbacks.
pub type DataRef<'a, T> = <<T as Exporter>::Data as ForeignOwnable>::Borrowed<'a>;

/// A dma-buf exporter.
///
/// The callbacks of `struct dma_buf_ops`. Every callback gets the buffer's [`Exporter::Data`];
/// the optional ones are left out of the ops table unless implemented.
#[vtable]
pub trait Exporter: Sized + 'static {
    /// The exporter's data of a buffer: owned by the buffer, dropped when it is released.
    type Data: ForeignOwnable + Send + Sync;

    /// The mapping types the exporter offers, best first.
    ///
    /// One or two entries, each type at most once; each type needs its map function
    /// implemented ([`Exporter::map_sgt`], [`Exporter::map_pal`]). Checked at build time.
    const MAPPING_TYPES: &'static [ExportType];

    /// Called when an importer attaches, after the mapping type is negotiated.
    ///
    /// Returning an error fails the attach with it.
    fn attach(_data: DataRef<'_, Self>, _attach: &ExporterAttachment) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called when an importer detaches, after its last unmap.
    fn detach(_data: DataRef<'_, Self>, _attach: &ExporterAttachment) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Maps the buffer for an SGT attachment.
    ///
    /// Called with the reservation lock held. The returned table is dropped when the importer
    /// unmaps it. Return [`ENODEV`] if the buffer is revoked.
    fn map_sgt(
        _data: DataRef<'_, Self>,
        _attach: &ExporterAttachment,
        _dir: DataDirection,
    ) -> Result<SgtExport> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Unmaps a table from [`Exporter::map_sgt`], when the importer is done with it.
    ///
    /// Called with the reservation lock held. Without this callback the table is just dropped.
    fn unmap_sgt(_data: DataRef<'_, Self>, _attach: &ExporterAttachment, _sgt: SgtExport) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Returns the physical address list of the buffer for a PAL attachment.
    ///
    /// Called with the reservation lock held. The returned list is dropped when the importer
    /// gives it back. Return [`ENODEV`] if the buffer is revoked.
    fn map_pal(_data: DataRef<'_, Self>, _attach: &ExporterAttachment) -> Result<PalExport> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Takes back a list from [`Exporter::map_pal`], when the importer is done with it.
    ///
    /// Called with the reservation lock held. Without this callback the list is just dropped.
    fn unmap_pal(_data: DataRef<'_, Self>, _attach: &ExporterAttachment, _phys: PalExport) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Maps the buffer into user space.
    ///
    /// The core has checked that the offset and size of `vma` are within the buffer; the offset
    /// is `vma.pgoff()` pages.
    fn mmap(_data: DataRef<'_, Self>, _buf: &DmaBuf, _vma: &VmaNew) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Prepares the buffer for CPU access in direction `dir`, for `DMA_BUF_IOCTL_SYNC`.
    fn begin_cpu_access(_data: DataRef<'_, Self>, _buf: &DmaBuf, _dir: DataDirection) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Ends CPU access to the buffer in direction `dir`, for `DMA_BUF_IOCTL_SYNC`.
    fn end_cpu_access(_data: DataRef<'_, Self>, _buf: &DmaBuf, _dir: DataDirection) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// An attachment as the exporter sees it.
///
/// Wraps the C `struct dma_buf_attachment`; exporter callbacks get a reference.
///
/// # Invariants
///
/// The attachment is valid, its buffer and device are set, and its mapping type is negotiated.
#[repr(transparent)]
pub struct ExporterAttachment(Opaque<bindings::dma_buf_attachment>);

impl ExporterAttachment {
    /// Creates a reference to an attachment from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid attachment with a negotiated mapping type that stays alive for
    /// `'a`.
    #[inline]
    unsafe fn from_raw<'a>(ptr: *mut bindings::dma_buf_attachment) -> &'a Self {
        // SAFETY: `ExporterAttachment` is `repr(transparent)` over the C struct, and the caller
        // guarantees it is valid for `'a`.
        unsafe { &*ptr.cast() }
    }

    #[inline]
    fn as_raw(&self) -> *mut bindings::dma_buf_attachment {
        self.0.get()
    }

    /// Returns the buffer the importer attached to.
    #[inline]
    pub fn buf(&self) -> &DmaBuf {
        // SAFETY: By the type invariants, `dmabuf` is set; the buffer outlives its attachments.
        unsafe { DmaBuf::from_raw((*self.as_raw()).dmabuf) }
    }

    /// Returns the importer's device.
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
}

impl DmaBuf {
    /// Exports a new buffer of `size` bytes with the exporter `T`.
    ///
    /// `data` becomes the buffer's exporter data; it is dropped when the last reference to the
    /// buffer goes away (or here, if the export fails). The buffer's file is opened read-write.
    /// Hand it to user space with [`DmaBuf::fd_install`].
    pub fn export<T: Exporter>(data: T::Data, size: usize) -> Result<ARef<DmaBuf>> {
        if size == 0 {
            return Err(EINVAL);
        }
        let priv_ = data.into_foreign();
        let info = bindings::dma_buf_export_info {
            exp_name: <T::OwnerModule as ModuleMetadata>::NAME.as_char_ptr(),
            owner: this_module::<T::OwnerModule>().as_ptr(),
            ops: ExporterVTable::<T>::build(),
            size,
            flags: file::flags::O_RDWR as c_int,
            resv: core::ptr::null_mut(),
            priv_,
        };
        // SAFETY: `info` is fully initialized; `ops` is a static table whose callbacks match the
        // exporter data in `priv_`.
        let ptr = unsafe { bindings::dma_buf_export(&info) };
        match crate::error::from_err_ptr(ptr) {
            // SAFETY: `dma_buf_export()` returns a valid buffer with one reference on success,
            // which the `ARef` takes over. From now on the buffer owns `priv_`.
            Ok(ptr) => Ok(unsafe { ARef::from_raw(NonNull::new_unchecked(ptr.cast())) }),
            Err(e) => {
                // SAFETY: The export failed, so `priv_` was not taken over; it came from
                // `into_foreign` above and is reclaimed only here.
                drop(unsafe { T::Data::from_foreign(priv_) });
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
        detach: if T::HAS_DETACH {
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
        // SAFETY: All-zeroes is valid for the remaining fields: NULL callbacks.
        ..unsafe { core::mem::zeroed() }
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
    /// `dmabuf` is a buffer exported by [`DmaBuf::export::<T>`], not yet released, and stays so
    /// for `'a`.
    unsafe fn data<'a>(dmabuf: *mut bindings::dma_buf) -> DataRef<'a, T> {
        // SAFETY: By the safety requirements, `priv_` holds the `T::Data` from `into_foreign` in
        // `export`, reclaimed only in `release`, after `'a`.
        unsafe { T::Data::borrow((*dmabuf).priv_) }
    }

    /// Borrows an attachment and the exporter data of its buffer, for the map callbacks.
    ///
    /// # Safety
    ///
    /// `attach` is an attachment of a buffer exported by [`DmaBuf::export::<T>`], valid for
    /// `'a`.
    unsafe fn attachment<'a>(
        attach: *mut bindings::dma_buf_attachment,
    ) -> (&'a ExporterAttachment, DataRef<'a, T>) {
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
    /// `dmabuf` is a buffer exported by [`DmaBuf::export::<T>`].
    unsafe fn cpu_access(
        dmabuf: *mut bindings::dma_buf,
        dir: bindings::dma_data_direction,
        callback: fn(DataRef<'_, T>, &DmaBuf, DataDirection) -> Result,
    ) -> c_int {
        // SAFETY: The buffer is alive: the caller holds a reference.
        let data = unsafe { Self::data(dmabuf) };
        // SAFETY: The buffer is alive and exported.
        let buf = unsafe { DmaBuf::from_raw(dmabuf) };
        from_result(|| {
            callback(data, buf, DataDirection::try_from(dir)?)?;
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// `args` is the match state of an attach to a buffer exported by [`DmaBuf::export::<T>`].
    unsafe extern "C" fn match_mapping(args: *mut bindings::dma_buf_match_args) -> c_int {
        let types = Self::CHECKED_TYPES;
        // SAFETY: All-zeroes is a valid `struct dma_buf_mapping_match`.
        let mut exp: [bindings::dma_buf_mapping_match; 2] = unsafe { core::mem::zeroed() };
        for (entry, ty) in exp.iter_mut().zip(types) {
            *entry = ty.to_raw(&Self::SGT_OPS, &Self::PAL_OPS);
        }
        // SAFETY: `args` is valid by the safety requirements, and the first `types.len()` entries
        // of `exp` are initialized, with ops tables that live forever.
        unsafe { bindings::dma_buf_match_mapping(args, exp.as_ptr(), types.len()) }
    }

    /// # Safety
    ///
    /// `dmabuf` is a buffer exported by [`DmaBuf::export::<T>`], and `attach` a new attachment
    /// of it with a negotiated mapping type.
    unsafe extern "C" fn attach(
        dmabuf: *mut bindings::dma_buf,
        attach: *mut bindings::dma_buf_attachment,
    ) -> c_int {
        // SAFETY: The buffer is not released while an importer attaches to it.
        let data = unsafe { Self::data(dmabuf) };
        // SAFETY: `attach` is valid for the duration of the callback.
        let attach = unsafe { ExporterAttachment::from_raw(attach) };
        from_result(|| T::attach(data, attach).map(|()| 0))
    }

    /// # Safety
    ///
    /// `dmabuf` is a buffer exported by [`DmaBuf::export::<T>`], and `attach` an attachment of
    /// it that is being detached.
    unsafe extern "C" fn detach(
        dmabuf: *mut bindings::dma_buf,
        attach: *mut bindings::dma_buf_attachment,
    ) {
        // SAFETY: The buffer is not released while an importer detaches from it.
        let data = unsafe { Self::data(dmabuf) };
        // SAFETY: `attach` is valid for the duration of the callback.
        let attach = unsafe { ExporterAttachment::from_raw(attach) };
        T::detach(data, attach);
    }

    /// # Safety
    ///
    /// `dmabuf` is a buffer exported by [`DmaBuf::export::<T>`] whose last reference is gone.
    unsafe extern "C" fn release(dmabuf: *mut bindings::dma_buf) {
        // SAFETY: `priv_` holds the `T::Data` from `into_foreign` in `export`; this is the one
        // place that reclaims it, and no callback can run after `release`.
        drop(unsafe { T::Data::from_foreign((*dmabuf).priv_) });
    }

    /// # Safety
    ///
    /// `attach` is an SGT attachment of a buffer exported by [`DmaBuf::export::<T>`], and the
    /// reservation lock of the buffer is held.
    unsafe extern "C" fn map_dma_buf(
        attach: *mut bindings::dma_buf_attachment,
        dir: bindings::dma_data_direction,
    ) -> *mut bindings::sg_table {
        // SAFETY: `attach` is valid for the duration of the callback.
        let (attach, data) = unsafe { Self::attachment(attach) };
        let result = DataDirection::try_from(dir).and_then(|dir| T::map_sgt(data, attach, dir));
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
    /// `attach` is a PAL attachment of a buffer exported by [`DmaBuf::export::<T>`], and the
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
    /// `dmabuf` is a buffer exported by [`DmaBuf::export::<T>`], and `vma` is being set up by
    /// `mmap(2)`.
    unsafe extern "C" fn mmap(
        dmabuf: *mut bindings::dma_buf,
        vma: *mut bindings::vm_area_struct,
    ) -> c_int {
        // SAFETY: The buffer is alive: the file being mapped holds a reference.
        let data = unsafe { Self::data(dmabuf) };
        // SAFETY: The buffer is alive and exported.
        let buf = unsafe { DmaBuf::from_raw(dmabuf) };
        // SAFETY: The caller provides a vma that is undergoing initial VMA setup.
        let vma = unsafe { VmaNew::from_raw(vma) };
        from_result(|| T::mmap(data, buf, vma).map(|()| 0))
    }

    /// # Safety
    ///
    /// `dmabuf` is a buffer exported by [`DmaBuf::export::<T>`].
    unsafe extern "C" fn begin_cpu_access(
        dmabuf: *mut bindings::dma_buf,
        dir: bindings::dma_data_direction,
    ) -> c_int {
        // SAFETY: Guaranteed by the safety requirements.
        unsafe { Self::cpu_access(dmabuf, dir, T::begin_cpu_access) }
    }

    /// # Safety
    ///
    /// `dmabuf` is a buffer exported by [`DmaBuf::export::<T>`].
    unsafe extern "C" fn end_cpu_access(
        dmabuf: *mut bindings::dma_buf,
        dir: bindings::dma_data_direction,
    ) -> c_int {
        // SAFETY: Guaranteed by the safety requirements.
        unsafe { Self::cpu_access(dmabuf, dir, T::end_cpu_access) }
    }
}
