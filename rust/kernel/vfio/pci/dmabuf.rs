// SPDX-License-Identifier: GPL-2.0

//! A dma-buf exporter for vfio-pci-core, in Rust: what vfio-pci-core calls.
//!
//! C header: [`drivers/vfio/pci/vfio_pci_priv.h`](srctree/drivers/vfio/pci/vfio_pci_priv.h)
//!
//! vfio-pci-core decodes the uAPI of `VFIO_DEVICE_FEATURE_DMA_BUF`, `_DMA_BUF_REVOKE` and
//! `_DMA_BUF_MEMATTR` (feature flags, argument sizes, the fixed part of the arguments, the region
//! and the dma-buf file descriptor), then hands the request to the exporter chosen for it, C or
//! Rust. It tells both exporters when the device stops or resumes decoding memory and when it is
//! closed. A Rust exporter implements [`DmaBufExporter`] in an object linked into vfio-pci-core
//! and names it with [`vfio_pci_dma_buf_exporter!`](crate::vfio_pci_dma_buf_exporter), which
//! defines the functions C calls.

use super::CoreDevice;
use crate::{
    alloc::flags::__GFP_NOWARN, bindings, dma_buf::DmaBuf, prelude::*, uaccess::UserSlice,
};

/// A request for a dma-buf, `struct vfio_device_feature_dma_buf` without its ranges.
///
/// vfio-pci-core checked the feature flags, that `flags` is zero, that there is at least one range
/// and that the argument covers them, and that the region is a BAR whose resources the device
/// claimed.
#[derive(Clone, Copy, Debug)]
pub struct DmaBufRequest {
    /// The BAR.
    pub bar: u32,
    /// The flags of the dma-buf's file and file descriptor, as `open()` takes them.
    pub open_flags: u32,
    /// The number of ranges.
    pub nr_ranges: u32,
}

/// A range of a [`DmaBufRequest`]: `struct vfio_region_dma_range`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaRange {
    /// The offset in the BAR, in bytes.
    pub offset: u64,
    /// The length in bytes.
    pub length: u64,
}

/// The ranges of a [`DmaBufRequest`], in user memory.
pub struct DmaRanges {
    slice: UserSlice,
    nr_ranges: u32,
}

impl DmaRanges {
    /// Returns the number of ranges.
    pub fn len(&self) -> u32 {
        self.nr_ranges
    }

    /// Returns whether there are no ranges: never, vfio-pci-core checked.
    pub fn is_empty(&self) -> bool {
        self.nr_ranges == 0
    }

    /// Copies the ranges from user space, as `memdup_array_user()` does.
    ///
    /// Returns [`EFAULT`] if user memory cannot be read, [`ENOMEM`] if the copy cannot be
    /// allocated.
    pub fn read_all(self) -> Result<KVec<DmaRange>> {
        let len = usize::try_from(self.nr_ranges).map_err(|_| ENOMEM)?;
        // User space picks the size: no warning when it is too large, as with
        // `memdup_array_user()`.
        let mut ranges = KVec::with_capacity(len, GFP_KERNEL | __GFP_NOWARN)?;
        let mut reader = self.slice.reader();
        for _ in 0..len {
            let offset = reader.read::<u64>()?;
            let length = reader.read::<u64>()?;
            ranges.push(DmaRange { offset, length }, GFP_KERNEL)?;
        }
        Ok(ranges)
    }
}

/// The memory attributes of `VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemAttr {
    /// Uncached, as BAR mmaps.
    NonCached,
    /// Write-combining.
    WriteCombine,
}

/// A dma-buf exporter of vfio-pci-core devices.
///
/// Each function is called by vfio-pci-core for a device it has open (the device is valid for the
/// call) and may sleep.
pub trait DmaBufExporter {
    /// Called once, when vfio-pci-core is initialised, before any other function.
    fn init() -> Result;

    /// Exports the `ranges` of `req` as a new dma-buf; returns its file descriptor.
    fn export(dev: &CoreDevice, req: &DmaBufRequest, ranges: DmaRanges) -> Result<u32>;

    /// The device stops (`revoked`) or may resume decoding its memory.
    ///
    /// Called with `memory_lock` held for writing, by which `memory_enabled` tells whether the
    /// device decodes memory now ([`MemoryReadGuard::memory_enabled`]); it can be `false` when
    /// `revoked` is not (runtime PM engaged by user space), and the memory stays revoked then.
    ///
    /// [`MemoryReadGuard::memory_enabled`]: super::MemoryReadGuard::memory_enabled
    fn move_notify(dev: &CoreDevice, revoked: bool, memory_enabled: bool);

    /// The device is being closed: every dma-buf of the exporter lets go of it.
    fn cleanup(dev: &CoreDevice);

    /// Revokes `buf` for good (`VFIO_DEVICE_FEATURE_DMA_BUF_REVOKE`).
    ///
    /// Returns [`ENODEV`] if `buf` is not a dma-buf of the exporter for `dev`.
    fn revoke(dev: &CoreDevice, buf: &DmaBuf) -> Result;

    /// Sets the memory attribute of future mmaps of `buf`
    /// (`VFIO_DEVICE_FEATURE_DMA_BUF_MEMATTR`).
    ///
    /// Returns [`ENODEV`] if `buf` is not a dma-buf of the exporter for `dev`.
    fn memattr(dev: &CoreDevice, buf: &DmaBuf, memattr: MemAttr) -> Result;
}

/// Converts a result for C.
fn to_c(r: Result<c_int>) -> c_int {
    r.unwrap_or_else(|e| e.to_errno())
}

/// Calls [`DmaBufExporter::init`].
#[doc(hidden)]
pub fn init<T: DmaBufExporter>() -> c_int {
    to_c(T::init().map(|()| 0))
}

/// Calls [`DmaBufExporter::export`].
///
/// # Safety
///
/// `vdev` is a device of vfio-pci-core that is open for the call; `req` points to the request,
/// checked as [`DmaBufRequest`] says, whose ranges are at the user address `ranges`.
#[doc(hidden)]
pub unsafe fn export<T: DmaBufExporter>(
    vdev: *mut bindings::vfio_pci_core_device,
    req: *const bindings::vfio_device_feature_dma_buf,
    ranges: *mut bindings::vfio_region_dma_range,
) -> c_int {
    // SAFETY: By the safety requirements.
    let (dev, req) = unsafe { (CoreDevice::from_raw(vdev), &*req) };
    let req = DmaBufRequest {
        bar: req.region_index,
        open_flags: req.open_flags,
        nr_ranges: req.nr_ranges,
    };
    let size = core::mem::size_of::<bindings::vfio_region_dma_range>();
    let Some(len) = (req.nr_ranges as usize).checked_mul(size) else {
        return EINVAL.to_errno();
    };
    let ranges = DmaRanges {
        slice: UserSlice::new(crate::uaccess::UserPtr::from_ptr(ranges.cast()), len),
        nr_ranges: req.nr_ranges,
    };
    to_c(T::export(dev, &req, ranges).and_then(|fd| c_int::try_from(fd).map_err(|_| EINVAL)))
}

/// Calls [`DmaBufExporter::move_notify`].
///
/// # Safety
///
/// `vdev` is a device of vfio-pci-core, valid for the call (a hot reset notifies the closed
/// devices of its set too), whose `memory_lock` the caller holds for writing.
#[doc(hidden)]
pub unsafe fn move_notify<T: DmaBufExporter>(
    vdev: *mut bindings::vfio_pci_core_device,
    revoked: bool,
) {
    // SAFETY: By the safety requirements.
    let dev = unsafe { CoreDevice::from_raw(vdev) };
    // The caller holds `memory_lock`, as `memory_enabled_locked` needs.
    T::move_notify(dev, revoked, dev.memory_enabled_locked())
}

/// Calls [`DmaBufExporter::cleanup`].
///
/// # Safety
///
/// `vdev` is a device of vfio-pci-core that is being closed; it is valid for the call.
#[doc(hidden)]
pub unsafe fn cleanup<T: DmaBufExporter>(vdev: *mut bindings::vfio_pci_core_device) {
    // SAFETY: By the safety requirements.
    T::cleanup(unsafe { CoreDevice::from_raw(vdev) })
}

/// Calls [`DmaBufExporter::revoke`].
///
/// # Safety
///
/// `vdev` is a device of vfio-pci-core that is open for the call; `dmabuf` is a dma-buf the
/// caller holds a reference to.
#[doc(hidden)]
pub unsafe fn revoke<T: DmaBufExporter>(
    vdev: *mut bindings::vfio_pci_core_device,
    dmabuf: *mut bindings::dma_buf,
) -> c_int {
    // SAFETY: By the safety requirements; `DmaBuf` is `repr(transparent)` over the C struct.
    let (dev, buf) = unsafe { (CoreDevice::from_raw(vdev), &*dmabuf.cast::<DmaBuf>()) };
    to_c(T::revoke(dev, buf).map(|()| 0))
}

/// Calls [`DmaBufExporter::memattr`].
///
/// # Safety
///
/// As for [`revoke`]; `memattr` is `VFIO_DEVICE_DMA_BUF_MEMATTR_NC` or `_WC`.
#[doc(hidden)]
pub unsafe fn memattr<T: DmaBufExporter>(
    vdev: *mut bindings::vfio_pci_core_device,
    dmabuf: *mut bindings::dma_buf,
    memattr: u32,
) -> c_int {
    let memattr = if memattr == bindings::vfio_device_dma_buf_memattr_VFIO_DEVICE_DMA_BUF_MEMATTR_WC
    {
        MemAttr::WriteCombine
    } else {
        MemAttr::NonCached
    };
    // SAFETY: By the safety requirements; `DmaBuf` is `repr(transparent)` over the C struct.
    let (dev, buf) = unsafe { (CoreDevice::from_raw(vdev), &*dmabuf.cast::<DmaBuf>()) };
    to_c(T::memattr(dev, buf, memattr).map(|()| 0))
}

/// Makes `T`, a [`DmaBufExporter`], the Rust dma-buf exporter of vfio-pci-core.
///
/// Defines the functions vfio-pci-core calls (`vfio_pci_dma_buf_rs_*()`, declared in
/// `vfio_pci_priv.h`). Use it once, in the object that `CONFIG_VFIO_PCI_DMABUF_RUST` links into
/// vfio-pci-core.
#[macro_export]
macro_rules! vfio_pci_dma_buf_exporter {
    ($t:ty) => {
        #[no_mangle]
        extern "C" fn vfio_pci_dma_buf_rs_init() -> $crate::ffi::c_int {
            $crate::vfio::pci::dmabuf::init::<$t>()
        }

        /// # Safety
        ///
        /// As for [`$crate::vfio::pci::dmabuf::export`]: vfio-pci-core's contract.
        #[no_mangle]
        unsafe extern "C" fn vfio_pci_dma_buf_rs_export(
            vdev: *mut $crate::bindings::vfio_pci_core_device,
            req: *const $crate::bindings::vfio_device_feature_dma_buf,
            ranges: *mut $crate::bindings::vfio_region_dma_range,
        ) -> $crate::ffi::c_int {
            // SAFETY: vfio-pci-core calls this as `export` requires.
            unsafe { $crate::vfio::pci::dmabuf::export::<$t>(vdev, req, ranges) }
        }

        /// # Safety
        ///
        /// As for [`$crate::vfio::pci::dmabuf::move_notify`]: vfio-pci-core's contract.
        #[no_mangle]
        unsafe extern "C" fn vfio_pci_dma_buf_rs_move(
            vdev: *mut $crate::bindings::vfio_pci_core_device,
            revoked: bool,
        ) {
            // SAFETY: vfio-pci-core calls this as `move_notify` requires.
            unsafe { $crate::vfio::pci::dmabuf::move_notify::<$t>(vdev, revoked) }
        }

        /// # Safety
        ///
        /// As for [`$crate::vfio::pci::dmabuf::cleanup`]: vfio-pci-core's contract.
        #[no_mangle]
        unsafe extern "C" fn vfio_pci_dma_buf_rs_cleanup(
            vdev: *mut $crate::bindings::vfio_pci_core_device,
        ) {
            // SAFETY: vfio-pci-core calls this as `cleanup` requires.
            unsafe { $crate::vfio::pci::dmabuf::cleanup::<$t>(vdev) }
        }

        /// # Safety
        ///
        /// As for [`$crate::vfio::pci::dmabuf::revoke`]: vfio-pci-core's contract.
        #[no_mangle]
        unsafe extern "C" fn vfio_pci_dma_buf_rs_revoke(
            vdev: *mut $crate::bindings::vfio_pci_core_device,
            dmabuf: *mut $crate::bindings::dma_buf,
        ) -> $crate::ffi::c_int {
            // SAFETY: vfio-pci-core calls this as `revoke` requires.
            unsafe { $crate::vfio::pci::dmabuf::revoke::<$t>(vdev, dmabuf) }
        }

        /// # Safety
        ///
        /// As for [`$crate::vfio::pci::dmabuf::memattr`]: vfio-pci-core's contract.
        #[no_mangle]
        unsafe extern "C" fn vfio_pci_dma_buf_rs_memattr(
            vdev: *mut $crate::bindings::vfio_pci_core_device,
            dmabuf: *mut $crate::bindings::dma_buf,
            memattr: u32,
        ) -> $crate::ffi::c_int {
            // SAFETY: vfio-pci-core calls this as `memattr` requires.
            unsafe { $crate::vfio::pci::dmabuf::memattr::<$t>(vdev, dmabuf, memattr) }
        }
    };
}
