// SPDX-License-Identifier: GPL-2.0

//! Devices of vfio-pci-core, as the code that exports their memory sees them.
//!
//! C header: [`include/linux/vfio_pci_core.h`](srctree/include/linux/vfio_pci_core.h)
//!
//! vfio-pci-core keeps a `struct vfio_pci_core_device` for each PCI device bound to a VFIO PCI
//! driver. Code that hands the device's memory to others (user space mappings, dma-bufs) needs
//! three things from it, and [`CoreDevice`] gives only those:
//!
//! - a [`Registration`]: while one is held the device stays registered with VFIO, which keeps the
//!   PCI device bound (unbinding waits for every registration), so [`Registration::pci_dev`] is a
//!   bound device, whose BARs can be turned into checked [`BarRange`]s;
//! - its `memory_lock`, which vfio-pci-core holds for writing while it changes whether the
//!   device decodes memory (config space writes, resets, power state changes): a
//!   [`MemoryReadGuard`] or [`MemoryWriteGuard`];
//! - whether the device decodes memory now, which only means something under that lock:
//!   [`MemoryReadGuard::memory_enabled`].

pub mod dmabuf;

use crate::{
    bindings, device,
    pci::{self, BarRange},
    prelude::*,
    sync::{RwSem, RwSemReadGuard, RwSemWriteGuard},
    types::Opaque,
};
use core::ptr::NonNull;

/// A device of vfio-pci-core: `struct vfio_pci_core_device`.
///
/// # Invariants
///
/// References point to an initialised `struct vfio_pci_core_device` (`vfio_pci_core_init_dev()`
/// ran, `vfio_pci_core_release_dev()` did not).
#[repr(transparent)]
pub struct CoreDevice(Opaque<bindings::vfio_pci_core_device>);

impl CoreDevice {
    /// Borrows a device of vfio-pci-core.
    ///
    /// # Safety
    ///
    /// `ptr` points to an initialised `struct vfio_pci_core_device` that stays so for `'a`.
    #[inline]
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::vfio_pci_core_device) -> &'a Self {
        // SAFETY: `CoreDevice` is `repr(transparent)`; the caller guarantees validity for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Returns the raw `struct vfio_pci_core_device`.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::vfio_pci_core_device {
        self.0.get()
    }

    /// Returns the PCI device.
    #[inline]
    pub fn pci_dev(&self) -> &pci::Device {
        // SAFETY: By the type invariants, `pdev` is set: the PCI device the core device was made
        // for, which its driver's `remove()` releases the core device for, so that the PCI device
        // (whose driver data it is) outlives it.
        unsafe { &*(*self.as_raw()).pdev.cast() }
    }

    /// Returns `memory_lock`.
    #[inline]
    fn memory_lock(&self) -> &RwSem<()> {
        // SAFETY: By the type invariants, `memory_lock` was initialised by
        // `vfio_pci_core_init_dev()` and lives as long as the device.
        unsafe { RwSem::from_raw(&raw mut (*self.as_raw()).memory_lock) }
    }

    /// Takes `memory_lock` for reading: the device's memory decode does not change while the
    /// guard exists.
    pub fn memory_read(&self) -> MemoryReadGuard<'_> {
        MemoryReadGuard {
            dev: self,
            _guard: self.memory_lock().read(),
        }
    }

    /// Takes `memory_lock` for writing, as vfio-pci-core does to change the memory decode.
    pub fn memory_write(&self) -> MemoryWriteGuard<'_> {
        MemoryWriteGuard {
            dev: self,
            _guard: self.memory_lock().write(),
        }
    }

    /// Takes a registration reference, unless the device is being unregistered.
    pub fn try_get_registration(&self) -> Option<Registration> {
        // SAFETY: By the type invariants, the embedded `struct vfio_device` is valid.
        if !unsafe { bindings::vfio_device_try_get_registration(&raw mut (*self.as_raw()).vdev) } {
            return None;
        }
        // INVARIANT: A registration reference was just taken.
        Some(Registration {
            vdev: NonNull::from(self).cast(),
        })
    }

    /// Whether the device decodes memory: in D3 or with memory decode off, it does not.
    ///
    /// The caller holds `memory_lock`.
    pub(crate) fn memory_enabled_locked(&self) -> bool {
        // SAFETY: By the type invariants the device is valid, and the caller holds
        // `memory_lock`, under which vfio-pci-core changes both.
        unsafe {
            !(*self.as_raw()).pm_runtime_engaged
                && bindings::__vfio_pci_memory_enabled(self.as_raw())
        }
    }
}

/// `memory_lock` of a [`CoreDevice`], held for reading.
#[must_use = "the lock is released immediately when the guard is unused"]
pub struct MemoryReadGuard<'a> {
    dev: &'a CoreDevice,
    _guard: RwSemReadGuard<'a, ()>,
}

impl MemoryReadGuard<'_> {
    /// Whether the device decodes memory: not in a low power state, memory decode enabled in
    /// the command register user space sees, and runtime PM not engaged by user space. It stays
    /// so while the guard exists.
    pub fn memory_enabled(&self) -> bool {
        self.dev.memory_enabled_locked()
    }
}

/// `memory_lock` of a [`CoreDevice`], held for writing.
#[must_use = "the lock is released immediately when the guard is unused"]
pub struct MemoryWriteGuard<'a> {
    dev: &'a CoreDevice,
    _guard: RwSemWriteGuard<'a, ()>,
}

impl MemoryWriteGuard<'_> {
    /// Whether the device decodes memory; see [`MemoryReadGuard::memory_enabled`].
    pub fn memory_enabled(&self) -> bool {
        self.dev.memory_enabled_locked()
    }
}

/// A registration reference on a [`CoreDevice`].
///
/// While it exists, the device stays registered with VFIO, and so bound to its PCI driver:
/// unregistering, which the driver's `remove()` does, waits until every reference is gone (and
/// asks user space to let go meanwhile).
///
/// # Invariants
///
/// `vdev` is an initialised `struct vfio_pci_core_device` on which this value holds a
/// registration reference (`vfio_device_try_get_registration()`).
pub struct Registration {
    vdev: NonNull<bindings::vfio_pci_core_device>,
}

// SAFETY: The reference is not tied to a task: any task may drop it.
unsafe impl Send for Registration {}

// SAFETY: Shared references only give access to `CoreDevice`, which is `Sync`.
unsafe impl Sync for Registration {}

// SAFETY: Every access to the C device goes through functions and locks that may be used from
// any task.
unsafe impl Send for CoreDevice {}

// SAFETY: As for `Send`.
unsafe impl Sync for CoreDevice {}

impl Registration {
    /// Returns the device.
    #[inline]
    pub fn device(&self) -> &CoreDevice {
        // SAFETY: By the type invariants, the device is registered, and so not released, for as
        // long as `self` exists.
        unsafe { CoreDevice::from_raw(self.vdev.as_ptr()) }
    }

    /// Returns the PCI device, bound while the registration exists.
    #[inline]
    pub fn pci_dev(&self) -> &pci::Device<device::Bound> {
        let pdev: *const pci::Device = self.device().pci_dev();
        // SAFETY: `pci::Device` is `repr(transparent)` whatever its context. The device is
        // registered with VFIO, so its driver's `remove()` has not returned (it waits for the
        // registration to go): it is bound for as long as `self` exists.
        unsafe { &*pdev.cast() }
    }

    /// Returns the `len` bytes at `offset` of BAR `bar` of the PCI device; see
    /// [`pci::Device::bar_range`].
    pub fn bar_range(&self, bar: u32, offset: u64, len: u64) -> Result<BarRange<'_>> {
        self.pci_dev().bar_range(bar, offset, len)
    }
}

// SAFETY: `pci_dev` returns the device of the registration, always the same; while the
// registration exists, the driver's `remove()` waits for it (see the type's documentation).
unsafe impl pci::KeepsBound for Registration {
    fn pci_dev(&self) -> &pci::Device<device::Bound> {
        Registration::pci_dev(self)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, this value holds a registration reference on the
        // device, which keeps it valid; it is dropped once, here.
        unsafe { bindings::vfio_device_put_registration(&raw mut (*self.vdev.as_ptr()).vdev) };
    }
}

/// What the KUnit tests share: QEMU's edu device, bound to vfio-pci at boot.
#[cfg(CONFIG_KUNIT = "y")]
mod test_support {
    use super::*;
    use crate::{c_str, str::CStr};

    const EDU: (u32, u32) = (0x1234, 0x11e8);

    /// QEMU's edu device, if vfio-pci has it (`vfio-pci.ids=1234:11e8`), with a reference.
    pub(super) struct Edu(pub(super) *mut bindings::pci_dev);

    impl Edu {
        pub(super) fn get() -> Option<Self> {
            // SAFETY: Looking a device up has no requirements; it comes with a reference.
            let pdev = unsafe { bindings::pci_get_device(EDU.0, EDU.1, core::ptr::null_mut()) };
            if pdev.is_null() {
                return None;
            }
            let edu = Self(pdev);
            // SAFETY: `pdev` is valid; the name of a bound driver is a static string. The test
            // task holds no lock that binding takes, and a change while it runs is not expected.
            let bound = unsafe {
                let drv = (*pdev).driver;
                !drv.is_null() && CStr::from_char_ptr((*drv).name) == c_str!("vfio-pci")
            };
            bound.then_some(edu)
        }

        pub(super) fn vdev(&self) -> &CoreDevice {
            // SAFETY: vfio-pci keeps its `struct vfio_pci_core_device` as the driver data of the
            // bound device; the test does not unbind it.
            unsafe {
                CoreDevice::from_raw(bindings::dev_get_drvdata(&raw mut (*self.0).dev).cast())
            }
        }

        pub(super) fn registrations(&self) -> i32 {
            // SAFETY: The device is valid; a racy read of a counter is what the test wants.
            unsafe {
                core::ptr::read_volatile(
                    &raw const (*self.vdev().as_raw()).vdev.refcount.refs.counter,
                )
            }
        }
    }

    impl Drop for Edu {
        fn drop(&mut self) {
            // SAFETY: The reference of `pci_get_device()`.
            unsafe { bindings::pci_dev_put(self.0) };
        }
    }
}

#[kunit_tests(rust_vfio_pci)]
mod tests {
    use super::test_support::*;
    use super::*;
    use crate::c_str;
    use crate::kunit::skip;

    /// A registration counts as one and keeps the PCI device it points to.
    #[test]
    fn registration() {
        let Some(edu) = Edu::get() else {
            return skip(c_str!("no edu device bound to vfio-pci"));
        };
        let before = edu.registrations();
        let reg = edu.vdev().try_get_registration();
        let during = edu.registrations();
        let same = reg
            .as_ref()
            .is_some_and(|r| core::ptr::eq(r.pci_dev().as_raw(), edu.0));
        drop(reg);
        let after = edu.registrations();

        assert!(same);
        assert_eq!((during - before, after), (1, before));
    }

    /// The guards hold the C `memory_lock` in their mode; a closed device decodes no memory.
    #[test]
    fn memory_lock() {
        let Some(edu) = Edu::get() else {
            return skip(c_str!("no edu device bound to vfio-pci"));
        };
        let vdev = edu.vdev();
        // SAFETY: `vdev` is valid.
        let raw = unsafe { &raw mut (*vdev.as_raw()).memory_lock };
        let try_both = || {
            // SAFETY: `raw` is the initialised `memory_lock`; what is taken is released.
            unsafe {
                let r = bindings::down_read_trylock(raw) != 0;
                if r {
                    bindings::up_read(raw);
                }
                let w = bindings::down_write_trylock(raw) != 0;
                if w {
                    bindings::up_write(raw);
                }
                (r, w)
            }
        };
        let (read, read_enabled) = {
            let g = vdev.memory_read();
            (try_both(), g.memory_enabled())
        };
        let (write, write_enabled) = {
            let g = vdev.memory_write();
            (try_both(), g.memory_enabled())
        };
        let free = try_both();

        assert_eq!(
            (read, write, free),
            ((true, false), (false, false), (true, true))
        );
        // Nobody opened the device: no virtual config space, no memory for user space.
        assert!(!read_enabled && !write_enabled);
    }
}

/// Checked BAR ranges of a vfio-pci device.
#[cfg(all(CONFIG_DMA_SHARED_BUFFER, CONFIG_PCI_P2PDMA))]
#[kunit_tests(rust_vfio_pci_bar_export)]
mod bar_export_tests {
    use super::test_support::*;
    use super::*;
    use crate::kunit::skip;
    use crate::{c_str, dma_buf::PalExport, page::PAGE_SIZE};

    const P: u64 = PAGE_SIZE as u64;

    /// The bad ranges give their documented errors.
    #[test]
    fn bar_range_errors() -> Result {
        let Some(edu) = Edu::get() else {
            skip(c_str!("no edu device bound to vfio-pci"));
            return Ok(());
        };
        let reg = edu.vdev().try_get_registration().ok_or(ENODEV)?;
        let len = reg.pci_dev().resource_len(0)?;
        let errs = [
            reg.bar_range(0, 0, len + P).err(),
            reg.bar_range(0, len, P).err(),
            reg.bar_range(0, 100, P).err(),
            reg.bar_range(0, 0, 100).err(),
            reg.bar_range(0, 0, 0).err(),
            reg.bar_range(0, u64::MAX - P + 1, 2 * P).err(),
            // edu has no BAR 1, and 6 is no standard BAR.
            reg.bar_range(1, 0, P).err(),
            reg.bar_range(6, 0, P).err(),
            // SAFETY: Nothing is exported: the call fails.
            unsafe { PalExport::from_bar_ranges(&[], None) }.err(),
        ];
        let whole = reg.bar_range(0, 0, len).map(|r| (r.len(), r.is_empty()));
        let memory_bars = [0, 1, 6].map(|bar| reg.pci_dev().is_assigned_memory_bar(bar));
        // A failed assertion ends the test without dropping what it holds: nothing may be left
        // that keeps edu from being unbound later.
        drop(reg);

        assert_eq!(
            errs,
            [
                Some(EINVAL),
                Some(EINVAL),
                Some(EINVAL),
                Some(EINVAL),
                Some(EINVAL),
                Some(EOVERFLOW),
                Some(EINVAL),
                Some(EINVAL),
                Some(EINVAL)
            ]
        );
        assert_eq!(whole, Ok((len, false)));
        assert_eq!(memory_bars, [true, false, false]);
        Ok(())
    }
}

/// Memory of a vfio-pci device's BAR served by dma-bufs with
/// [`BarMemory`](crate::dma_buf::BarMemory): checked slices, physical address lists and P2P tables
/// for importers, mmap() faults, and the memory taken back (revoked, restored, released) from all
/// of them.
#[cfg(all(CONFIG_DMA_SHARED_BUFFER, CONFIG_PCI_P2PDMA))]
#[kunit_tests(rust_vfio_pci_bar_memory)]
mod bar_memory_tests {
    use super::test_support::*;
    use super::*;
    use crate::kunit::skip;
    use crate::{
        c_str,
        dma::DataDirection,
        dma_buf::{
            BarMemory, BarMemoryInit, BarSlice, DmaBuf, ExportType, Exported, Exporter,
            ExporterAttachment, ImportType, Importer, Invalidation, Negotiated, PalExport,
            SgtExport,
        },
        error::to_result,
        mm::{
            fault::{VmFault, VmFaultReason, VmOperations},
            virt::VmaNew,
        },
        page::PAGE_SIZE,
        sync::{
            aref::ARef,
            atomic::{Atomic, Relaxed},
            Arc, ArcBorrow, Completion,
        },
        time::{delay::fsleep, Delta},
        uaccess::{UserPtr, UserSlice},
        workqueue,
    };

    const P: u64 = PAGE_SIZE as u64;
    /// Pages 0-1 and 4-5 of BAR 0.
    const SLICES: [BarSlice; 2] = [BarSlice::new(0, 2 * P), BarSlice::new(4 * P, 2 * P)];

    #[pin_data]
    struct BarBuf {
        #[pin]
        mem: BarMemory<BarBuf, Registration>,
    }

    #[vtable]
    impl Exporter for BarBuf {
        type Data = Arc<BarBuf>;
        type AttachData = ();
        const MAPPING_TYPES: &'static [ExportType] =
            &[ExportType::Pal, ExportType::Sgt { p2p: true }];

        fn map_pal(
            this: ArcBorrow<'_, Self>,
            attach: &ExporterAttachment<Self>,
        ) -> Result<PalExport> {
            this.mem.pal(attach)
        }

        fn map_sgt<'a>(
            this: ArcBorrow<'_, Self>,
            attach: &'a ExporterAttachment<Self>,
            dir: DataDirection,
        ) -> Result<SgtExport<'a>> {
            this.mem.sgt(attach, dir)
        }

        fn mmap(this: ArcBorrow<'_, Self>, buf: &Exported<Self>, vma: &VmaNew) -> Result {
            this.mem.mmap(buf, vma, false)?;
            vma.set_ops(this.into())
        }
    }

    #[vtable]
    impl VmOperations for BarBuf {
        fn fault(this: ArcBorrow<'_, Self>, vmf: &mut VmFault<'_>) -> VmFaultReason {
            this.mem.fault(vmf)
        }
    }

    /// Exports `SLICES` of edu's BAR 0.
    fn export(edu: &Edu) -> Result<ARef<Exported<BarBuf>>> {
        let reg = edu.vdev().try_get_registration().ok_or(ENODEV)?;
        let mem = BarMemoryInit::new(reg, 0, &SLICES)?;
        let size = mem.size();
        let data = Arc::pin_init(pin_init!(BarBuf { mem <- mem.init() }), GFP_KERNEL)?;
        let buf = DmaBuf::export::<BarBuf>(data, size)?;
        buf.data().mem.bind(&buf)?;
        Ok(buf)
    }

    /// Lets delayed file releases (of buffers dropped by the test's kthread) run.
    fn flush_fput() {
        // SAFETY: Waiting for delayed file releases has no requirements.
        unsafe { bindings::flush_delayed_fput() };
    }

    struct Peer(Arc<Atomic<i32>>);

    impl Importer for Peer {
        fn invalidate(&self, _inv: &Invalidation<'_>) {
            self.0.fetch_add(1, Relaxed);
        }
    }

    /// A PAL import the way iommufd makes one, with the core's C functions, counting the
    /// invalidations.
    ///
    /// # Invariants
    ///
    /// `raw` is a live attachment of `buf` from `dma_buf_pal_attach()` whose importer data is
    /// `invalidated`; it is detached only in `drop`.
    struct PalImport {
        raw: NonNull<bindings::dma_buf_attachment>,
        buf: ARef<DmaBuf>,
        invalidated: Arc<Atomic<i32>>,
    }

    /// # Safety
    ///
    /// `attach` is an attachment of a [`PalImport`], not detached yet.
    unsafe extern "C" fn pal_invalidate(attach: *mut bindings::dma_buf_attachment) {
        // SAFETY: By the safety requirements, `importer_priv` is the counter of a `PalImport`,
        // which keeps it alive until after the detach.
        let invalidated = unsafe { &*(*attach).importer_priv.cast::<Atomic<i32>>() };
        invalidated.fetch_add(1, Relaxed);
    }

    static PAL_OPS: bindings::dma_buf_attach_ops = bindings::dma_buf_attach_ops {
        allow_peer2peer: true,
        invalidate_mappings: Some(pal_invalidate),
    };

    /// A list mapped from a [`PalImport`]; given back when dropped.
    struct PalList<'a> {
        import: &'a PalImport,
        phys: NonNull<bindings::dma_buf_phys_list>,
    }

    impl PalImport {
        fn new(buf: &DmaBuf, dev: &pci::Device<device::Bound>) -> Result<Self> {
            let invalidated = Arc::new(Atomic::new(0), GFP_KERNEL)?;
            let priv_: *const Atomic<i32> = &*invalidated;
            // SAFETY: `buf` and `dev` are valid. `PAL_OPS` is a static whose callback takes
            // `importer_priv` for the counter `priv_` points to, which the import keeps until
            // after the detach.
            let raw = crate::error::from_err_ptr(unsafe {
                bindings::dma_buf_pal_attach(
                    buf.as_raw(),
                    dev.as_ref().as_raw(),
                    &PAL_OPS,
                    priv_.cast_mut().cast(),
                )
            })?;
            // INVARIANT: `raw` was just attached to `buf` with `invalidated` as importer data.
            Ok(Self {
                raw: NonNull::new(raw).ok_or(EINVAL)?,
                buf: buf.into(),
                invalidated,
            })
        }

        fn map(&self) -> Result<PalList<'_>> {
            let _resv = self.buf.lock();
            // SAFETY: By the type invariants, `raw` is a live PAL attachment; its buffer's lock
            // is held.
            let phys = crate::error::from_err_ptr(unsafe {
                bindings::dma_buf_pal_map(self.raw.as_ptr())
            })?;
            Ok(PalList {
                import: self,
                phys: NonNull::new(phys).ok_or(EINVAL)?,
            })
        }
    }

    impl PalList<'_> {
        /// The number of ranges, the first range, and the provider's device.
        fn read(&self) -> (usize, u64, usize, *mut bindings::device) {
            let raw = self.phys.as_ptr();
            // SAFETY: The core checked the list, which is ours until it is given back in `drop`;
            // its provider stays valid meanwhile.
            unsafe {
                let r = (&raw const (*raw).ranges).cast::<bindings::phys_vec>();
                (
                    (*raw).nr_ranges,
                    (*r).paddr,
                    (*r).len,
                    (*(*raw).provider).owner,
                )
            }
        }
    }

    impl Drop for PalList<'_> {
        fn drop(&mut self) {
            let _resv = self.import.buf.lock();
            // SAFETY: The list was mapped from the import's attachment, and the lock is held.
            unsafe { bindings::dma_buf_pal_unmap(self.import.raw.as_ptr(), self.phys.as_ptr()) };
        }
    }

    impl Drop for PalImport {
        fn drop(&mut self) {
            // SAFETY: By the type invariants, `raw` is a live attachment of `buf`; the lists
            // borrow the import, so none is left.
            unsafe { bindings::dma_buf_detach(self.buf.as_raw(), self.raw.as_ptr()) };
        }
    }

    /// Bad slices, sizes and second bindings give their documented errors.
    #[test]
    fn errors() -> Result {
        let Some(edu) = Edu::get() else {
            skip(c_str!("no edu device bound to vfio-pci"));
            return Ok(());
        };
        let before = edu.registrations();
        let reg = || edu.vdev().try_get_registration().ok_or(ENODEV);
        let len = reg()?.pci_dev().resource_len(0)?;
        let new = |bar, slices: &[BarSlice]| -> Result<usize> {
            BarMemoryInit::<BarBuf, Registration>::new(reg()?, bar, slices).map(|m| m.size())
        };
        let errs = [
            new(0, &[]).err(),
            new(0, &[BarSlice::new(0, len + P)]).err(),
            new(0, &[BarSlice::new(0, P), BarSlice::new(len, P)]).err(),
            new(0, &[BarSlice::new(100, P)]).err(),
            new(0, &[BarSlice::new(u64::MAX - P + 1, 2 * P)]).err(),
            new(1, &[BarSlice::new(0, P)]).err(),
        ];
        let sizes = new(0, &SLICES);
        let buf = export(&edu)?;
        let other = export(&edu)?;
        // Bound once, to its own buffer.
        let rebind = [
            buf.data().mem.bind(&buf).err(),
            buf.data().mem.bind(&other).err(),
        ];
        // A buffer of 3 pages cannot be served by 4 pages of memory.
        let mem = BarMemoryInit::new(reg()?, 0, &SLICES)?;
        let data = Arc::pin_init(pin_init!(BarBuf { mem <- mem.init() }), GFP_KERNEL)?;
        let short = DmaBuf::export::<BarBuf>(data, 3 * PAGE_SIZE)?;
        let short_bind = short.data().mem.bind(&short).err();
        drop((buf, other, short));
        flush_fput();
        let after = edu.registrations();

        assert_eq!(
            errs,
            [
                Some(EINVAL),
                Some(EINVAL),
                Some(EINVAL),
                Some(EINVAL),
                Some(EOVERFLOW),
                Some(EINVAL)
            ]
        );
        assert_eq!(sizes, Ok(4 * PAGE_SIZE));
        assert_eq!(rebind, [Some(EBUSY), Some(EBUSY)]);
        assert_eq!(short_bind, Some(EINVAL));
        // Every registration taken was given back.
        assert_eq!(after, before);
        Ok(())
    }

    /// A work item running a test's `work`: 0 while it runs, 1 or 2 once it returned `false`
    /// or `true`.
    struct Work {
        done: Arc<Completion>,
        finished: Arc<Atomic<u32>>,
    }

    impl Work {
        /// Runs `work` on the buffer's data in a work item; returns once it started and had
        /// 100 ms to finish, were it not blocked.
        fn start(
            buf: &Exported<BarBuf>,
            work: impl FnOnce(&BarBuf) -> bool + Send + 'static,
        ) -> Result<Self> {
            let started = Arc::pin_init(Completion::new(), GFP_KERNEL)?;
            let done = Arc::pin_init(Completion::new(), GFP_KERNEL)?;
            let finished = Arc::new(Atomic::new(0u32), GFP_KERNEL)?;
            let data = Arc::<BarBuf>::from(buf.data());
            let (s, d, f) = (started.clone(), done.clone(), finished.clone());
            workqueue::system().try_spawn(GFP_KERNEL, move || {
                s.complete_all();
                f.store(if work(&data) { 2 } else { 1 }, Relaxed);
                d.complete_all();
            })?;
            started.wait_for_completion();
            fsleep(Delta::from_millis(100));
            Ok(Self { done, finished })
        }

        /// What the work returned, `None` if it has not yet.
        fn result(&self) -> Option<bool> {
            match self.finished.load(Relaxed) {
                0 => None,
                v => Some(v == 2),
            }
        }

        /// Waits for the work; returns what it returned.
        fn wait(self) -> Option<bool> {
            self.done.wait_for_completion();
            self.result()
        }
    }

    /// A PAL import gets the slices and the BAR's provider; a revocation invalidates it and
    /// waits until the list came back; while revoked, maps fail; restored, they work again; a
    /// release waits for the last list before it lets go of the device.
    #[test]
    fn pal_revoke_release() -> Result {
        let Some(edu) = Edu::get() else {
            skip(c_str!("no edu device bound to vfio-pci"));
            return Ok(());
        };
        let reg = edu.vdev().try_get_registration().ok_or(ENODEV)?;
        let (dev, start) = (reg.pci_dev(), reg.pci_dev().resource_start(0)?);
        let registrations = edu.registrations();
        let buf = export(&edu)?;
        let exported = edu.registrations() - registrations;
        let import = PalImport::new(&buf, dev)?;

        let list = import.map()?.read();
        // Revoke in a work item while a list is out: the revocation invalidates the import at
        // once, and its wait returns once the list is back.
        let held = import.map()?;
        let revoke = Work::start(&buf, |data| {
            drop(data.mem.revoke());
            true
        })?;
        let (invalidated, revoked_map) = (import.invalidated.load(Relaxed), import.map().err());
        let revoked_early = revoke.result();
        drop(held);
        let revoked_late = revoke.wait();
        let restored = buf.data().mem.restore();
        let again = import.map().map(|l| l.read().0);

        // Release in a work item while a list is out: it waits for the list before it lets go
        // of the device.
        let held = import.map()?;
        // Whether this release let go of the device.
        let release = Work::start(&buf, |data| data.mem.release().wait().is_some())?;
        let early = (release.result(), edu.registrations() - registrations);
        drop(held);
        let late = (release.wait(), edu.registrations() - registrations);
        let released_map = import.map().err();
        let second = buf.data().mem.release().wait().is_some();
        let dev = dev.as_ref().as_raw();
        drop(import);
        drop(buf);
        flush_fput();
        // A failed assertion ends the test without dropping what it holds.
        drop(reg);

        assert_eq!(exported, 1);
        assert_eq!(list, (2, start, 2 * PAGE_SIZE, dev));
        assert_eq!((invalidated, revoked_map), (1, Some(ENODEV)));
        assert_eq!((restored, again), (true, Ok(2)));
        // While the list is out, neither waits; the device stays held.
        assert_eq!((revoked_early, revoked_late), (None, Some(true)));
        assert_eq!(early, (None, 1));
        assert_eq!(late, (Some(true), 0));
        assert_eq!((released_map, second), (Some(ENODEV), false));
        Ok(())
    }

    /// A P2P table for the device itself has the bus addresses of the slices; a revocation
    /// takes it from the Rust importer, and maps fail until the memory is restored.
    #[test]
    fn sgt_revoke() -> Result {
        let Some(edu) = Edu::get() else {
            skip(c_str!("no edu device bound to vfio-pci"));
            return Ok(());
        };
        let reg = edu.vdev().try_get_registration().ok_or(ENODEV)?;
        let start = reg.pci_dev().resource_start(0)?;
        let dev = reg.pci_dev().as_ref();
        let buf = export(&edu)?;
        let invalidated = Arc::new(Atomic::new(0), GFP_KERNEL)?;
        let Negotiated::Sgt(att) = buf.attach(
            dev,
            &[ImportType::Sgt { p2p: true }],
            Peer(invalidated.clone()),
        )?;
        let mut entries = KVec::new();
        {
            let mut resv = buf.lock();
            let map = att.map(dev, resv.locked(), DataDirection::Bidirectional)?;
            for e in map.iter() {
                entries.push((e.dma_address(), e.dma_len()), GFP_KERNEL)?;
            }
        }
        // The Rust importer gives its table back when invalidated: the wait does not block.
        buf.data().mem.revoke().wait();
        let (mapped, revoked_map) = {
            let mut resv = buf.lock();
            let mapped = att.is_mapped(resv.locked())?;
            (
                mapped,
                att.map(dev, resv.locked(), DataDirection::Bidirectional)
                    .err(),
            )
        };
        let restored = buf.data().mem.restore();
        let again = {
            let mut resv = buf.lock();
            att.map(dev, resv.locked(), DataDirection::Bidirectional)
                .map(|m| m.iter().count())
        };
        drop(att);
        drop(buf);
        flush_fput();
        // A failed assertion ends the test without dropping what it holds.
        drop(reg);

        // x86 maps bus addresses 1:1 to CPU physical addresses.
        assert_eq!(&entries[..], &[(start, 2 * P), (start + 4 * P, 2 * P)]);
        assert_eq!(
            (invalidated.load(Relaxed), mapped, revoked_map),
            (1, false, Some(ENODEV))
        );
        assert_eq!((restored, again), (true, Ok(2)));
        Ok(())
    }

    /// Reads the `u32` at `addr` of the test's mm.
    fn read_u32(addr: usize) -> Result<u32> {
        UserSlice::new(UserPtr::from_addr(addr), 4)
            .reader()
            .read::<u32>()
    }

    /// Maps `len` bytes of the buffer's file shared and read-only into the test's mm.
    fn map(buf: &Exported<BarBuf>, len: usize) -> Result<usize> {
        // From `include/uapi/asm-generic/mman-common.h`, which x86 uses.
        const PROT_READ: c_ulong = 0x1;
        const MAP_SHARED: c_ulong = 0x01;
        // SAFETY: The buffer's file is valid while `buf` is; the mm is the test task's own.
        let ret =
            unsafe { bindings::vm_mmap((*buf.as_raw()).file, 0, len, PROT_READ, MAP_SHARED, 0) };
        // `vm_mmap()` returns an address or a negative errno.
        match i32::try_from(ret as isize) {
            Ok(errno) if errno < 0 => Err(Error::from_errno(errno)),
            _ => Ok(ret),
        }
    }

    /// Mappings of the buffer can be read; revoked, every access faults and fails until the
    /// memory is restored; released, it fails for good and new mappings are refused.
    ///
    /// What is read is not checked: edu answers 4-byte reads only, and user copies may read
    /// byte by byte. The `rust_mm_fault_io` suite checks the data of such mappings on ivshmem's
    /// RAM-backed BAR, and the VFIO selftests through the dma-buf mmaps of both exporters.
    #[test]
    fn mmap_revoke_release() -> Result {
        let Some(edu) = Edu::get() else {
            skip(c_str!("no edu device bound to vfio-pci"));
            return Ok(());
        };
        // SAFETY: Attaching an mm to a kthread (KUnit's) has no requirements.
        to_result(unsafe { bindings::kunit_attach_mm() })?;
        let buf = export(&edu)?;
        let len = 4 * PAGE_SIZE;
        let addr = map(&buf, len)?;
        let mem = &buf.data().mem;
        let id = read_u32(addr);
        mem.revoke().wait();
        let revoked = read_u32(addr).err();
        let restored = (mem.restore(), read_u32(addr));
        drop(mem.release().wait());
        let released = read_u32(addr).err();
        let remap = map(&buf, len).err();
        // SAFETY: The range is the mapping made above, in the test's own mm.
        let unmapped = to_result(unsafe { bindings::vm_munmap(addr, len) });
        drop(buf);
        flush_fput();

        assert!(id.is_ok());
        assert_eq!(revoked, Some(EFAULT));
        assert_eq!((restored.0, restored.1.is_ok()), (true, true));
        assert_eq!(
            (released, remap, unmapped),
            (Some(EFAULT), Some(ENODEV), Ok(()))
        );
        Ok(())
    }
}
