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
    fn memory_enabled_locked(&self) -> bool {
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

/// Checked BAR ranges of a vfio-pci device, exported as physical address lists and as
/// scatter-gather tables mapped for a peer.
#[cfg(all(CONFIG_DMA_SHARED_BUFFER, CONFIG_PCI_P2PDMA))]
#[kunit_tests(rust_vfio_pci_bar_export)]
mod bar_export_tests {
    use super::test_support::*;
    use super::*;
    use crate::kunit::skip;
    use crate::{
        c_str,
        dma::DataDirection,
        dma_buf::{
            DmaBuf, ExportType, Exporter, ExporterAttachment, ImportType, Importer, Invalidation,
            Negotiated, PalExport, SgtExport,
        },
        page::PAGE_SIZE,
        sync::{Arc, ArcBorrow},
    };

    const P: u64 = PAGE_SIZE as u64;

    /// Two slices of BAR 0: pages 0-1 and 4-5.
    fn slices(reg: &Registration) -> Result<[BarRange<'_>; 2]> {
        Ok([reg.bar_range(0, 0, 2 * P)?, reg.bar_range(0, 4 * P, 2 * P)?])
    }

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
            unsafe { PalExport::from_bar_ranges(&[]) }.err(),
        ];
        let whole = reg.bar_range(0, 0, len).map(|r| (r.len(), r.is_empty()));

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
        Ok(())
    }

    /// A PAL list of BAR slices has their physical ranges and the BAR's provider.
    #[test]
    fn pal_from_bar() -> Result {
        let Some(edu) = Edu::get() else {
            skip(c_str!("no edu device bound to vfio-pci"));
            return Ok(());
        };
        let reg = edu.vdev().try_get_registration().ok_or(ENODEV)?;
        let start = reg.pci_dev().resource_start(0)?;
        // SAFETY: The list is freed below, before `reg` lets go of the device.
        let raw = unsafe { PalExport::from_bar_ranges(&slices(&reg)?) }?.into_raw();
        // SAFETY: `raw` is a list just built, with its ranges; it is freed below.
        let (provider, ranges) = unsafe {
            let r = (&raw const (*raw).ranges).cast::<bindings::phys_vec>();
            (
                (*raw).provider,
                [
                    (*raw).nr_ranges as u64,
                    (*r).paddr,
                    (*r).len as u64,
                    (*r.add(1)).paddr,
                    (*r.add(1)).len as u64,
                ],
            )
        };
        // SAFETY: `raw` came from `into_raw` and C never saw it.
        drop(unsafe { PalExport::from_raw(raw) });
        // SAFETY: The device is bound (registered); BAR 0 is a standard BAR.
        let expected = unsafe { bindings::pcim_p2pdma_provider(edu.0, 0) };

        assert_eq!(ranges, [2, start, 2 * P, start + 4 * P, 2 * P]);
        assert!(!provider.is_null() && provider == expected);
        Ok(())
    }

    struct BarExporter {
        reg: Registration,
    }

    #[vtable]
    impl Exporter for BarExporter {
        type Data = Arc<BarExporter>;
        type AttachData = ();
        const MAPPING_TYPES: &'static [ExportType] = &[ExportType::Sgt { p2p: true }];

        fn map_sgt<'a>(
            this: ArcBorrow<'_, BarExporter>,
            attach: &'a ExporterAttachment<Self>,
            dir: DataDirection,
        ) -> Result<SgtExport<'a>> {
            // SAFETY: `map_sgt` runs with the reservation lock held. The buffer holds the
            // registration until it is released, after its last table came back.
            unsafe { SgtExport::from_bar_ranges(attach, &slices(&this.reg)?, dir) }
        }
    }

    struct Peer;

    impl Importer for Peer {
        fn invalidate(&self, _inv: &Invalidation<'_>) {}
    }

    /// A table of BAR slices mapped for the device itself has the bus addresses of the slices,
    /// and mapping it for a table of the wrong size fails.
    #[test]
    fn sgt_from_bar() -> Result {
        let Some(edu) = Edu::get() else {
            skip(c_str!("no edu device bound to vfio-pci"));
            return Ok(());
        };
        let reg = edu.vdev().try_get_registration().ok_or(ENODEV)?;
        let start = reg.pci_dev().resource_start(0)?;
        let other = edu.vdev().try_get_registration().ok_or(ENODEV)?;
        let buf = DmaBuf::export::<BarExporter>(
            Arc::new(BarExporter { reg: other }, GFP_KERNEL)?,
            4 * PAGE_SIZE,
        )?;
        let dev = reg.pci_dev().as_ref();
        let Negotiated::Sgt(att) = buf.attach(dev, &[ImportType::Sgt { p2p: true }], Peer)?;
        let mut entries = KVec::new();
        {
            let mut resv = buf.lock();
            let map = att.map(dev, resv.locked(), DataDirection::Bidirectional)?;
            for e in map.iter() {
                entries.push((e.dma_address(), e.dma_len()), GFP_KERNEL)?;
            }
        }
        drop(att);
        // A buffer of 3 pages cannot be described by 4 pages of ranges.
        let short = DmaBuf::export::<BarExporter>(
            Arc::new(
                BarExporter {
                    reg: edu.vdev().try_get_registration().ok_or(ENODEV)?,
                },
                GFP_KERNEL,
            )?,
            3 * PAGE_SIZE,
        )?;
        let Negotiated::Sgt(att) = short.attach(dev, &[ImportType::Sgt { p2p: true }], Peer)?;
        let short_err = {
            let mut resv = short.lock();
            att.map(dev, resv.locked(), DataDirection::Bidirectional)
                .err()
        };
        drop(att);
        drop(short);
        drop(buf);
        // The buffers hold registrations until their files are released.
        // SAFETY: Waiting for delayed file releases has no requirements.
        unsafe { bindings::flush_delayed_fput() };

        // x86 maps bus addresses 1:1 to CPU physical addresses.
        assert_eq!(&entries[..], &[(start, 2 * P), (start + 4 * P, 2 * P)]);
        assert_eq!(short_err, Some(EINVAL));
        Ok(())
    }
}
