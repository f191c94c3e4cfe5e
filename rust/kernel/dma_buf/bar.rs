// SPDX-License-Identifier: GPL-2.0

//! Memory of a PCI BAR that a dma-buf serves, and takes back.
//!
//! An exporter of device memory hands it out three ways: as page table entries of user space
//! mappings of the buffer, made at fault time; as physical address lists ([`PalExport`]) and as
//! tables mapped for a peer ([`SgtExport`]), to importers. All of it must be taken back before
//! the driver lets go of the device: after its `remove()` returns, the BAR may belong to another
//! driver, and the P2P provider that lists and tables point to is gone.
//!
//! [`BarMemory`] hands the memory out only while it holds what keeps the device bound
//! ([`KeepsBound`]), and only for the one buffer it serves. Before it lets go of that, or when it
//! takes the memory away for a while (the device stops decoding it), it zaps the mappings of the
//! buffer's file, tells the importers to give their lists and tables back, and then waits for
//! their fences and until every list and table came back. With it, a driver exports BAR memory
//! without `unsafe`.
//!
//! # Examples
//!
//! ```
//! use kernel::{
//!     dma::DataDirection,
//!     dma_buf::{
//!         BarMemory, BarMemoryInit, BarSlice, DmaBuf, ExportType, Exported, Exporter,
//!         ExporterAttachment, PalExport, SgtExport,
//!     },
//!     mm::{
//!         fault::{VmFault, VmFaultReason, VmOperations},
//!         virt::VmaNew,
//!     },
//!     pci::KeepsBound,
//!     prelude::*,
//!     sync::{aref::ARef, Arc, ArcBorrow},
//! };
//!
//! #[pin_data]
//! struct Buf<K: KeepsBound> {
//!     #[pin]
//!     mem: BarMemory<Buf<K>, K>,
//! }
//!
//! #[vtable]
//! impl<K: KeepsBound> Exporter for Buf<K> {
//!     type Data = Arc<Self>;
//!     type AttachData = ();
//!     const MAPPING_TYPES: &'static [ExportType] =
//!         &[ExportType::Pal, ExportType::Sgt { p2p: true }];
//!
//!     fn map_pal(
//!         this: ArcBorrow<'_, Self>,
//!         attach: &ExporterAttachment<Self>,
//!     ) -> Result<PalExport> {
//!         this.mem.pal(attach)
//!     }
//!
//!     fn map_sgt<'a>(
//!         this: ArcBorrow<'_, Self>,
//!         attach: &'a ExporterAttachment<Self>,
//!         dir: DataDirection,
//!     ) -> Result<SgtExport<'a>> {
//!         this.mem.sgt(attach, dir)
//!     }
//!
//!     fn mmap(this: ArcBorrow<'_, Self>, buf: &Exported<Self>, vma: &VmaNew) -> Result {
//!         this.mem.mmap(buf, vma, false)?;
//!         vma.set_ops(this.into())
//!     }
//! }
//!
//! #[vtable]
//! impl<K: KeepsBound> VmOperations for Buf<K> {
//!     fn fault(this: ArcBorrow<'_, Self>, vmf: &mut VmFault<'_>) -> VmFaultReason {
//!         this.mem.fault(vmf)
//!     }
//!
//!     fn huge_fault(this: ArcBorrow<'_, Self>, vmf: &mut VmFault<'_>) -> VmFaultReason {
//!         this.mem.fault(vmf)
//!     }
//! }
//!
//! /// Exports the first 2 pages of BAR 0 and the 2 after the next 2.
//! fn export<K: KeepsBound>(owner: K) -> Result<ARef<Exported<Buf<K>>>> {
//!     let page = kernel::page::PAGE_SIZE as u64;
//!     let slices = [BarSlice::new(0, 2 * page), BarSlice::new(4 * page, 2 * page)];
//!     let mem = BarMemoryInit::new(owner, 0, &slices)?;
//!     let size = mem.size();
//!     let data = Arc::pin_init(pin_init!(Buf { mem <- mem.init() }), GFP_KERNEL)?;
//!     let buf = DmaBuf::export::<Buf<K>>(data, size)?;
//!     // Before anybody else sees the buffer.
//!     buf.data().mem.bind(&buf)?;
//!     Ok(buf)
//! }
//! ```

use super::{
    lease::Leases, DmaResvUsage, Exported, Exporter, ExporterAttachment, PalExport, SgtExport,
    WeakDmaBuf,
};
use crate::{
    bindings, c_str,
    dma::DataDirection,
    mm::{
        fault::{io_mapping_order, AddressSpace, VmFault, VmFaultReason},
        virt::VmaNew,
    },
    page::PAGE_SHIFT,
    pci::{BarRange, Device, KeepsBound},
    prelude::*,
    static_lock_class,
    str::CStr,
    sync::{aref::ARef, Arc, LockClassKey, RwSem, RwSemReadGuard},
};

/// A slice of a BAR: `len` bytes from byte `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarSlice {
    /// The offset in the BAR, in bytes.
    pub offset: u64,
    /// The length in bytes.
    pub len: u64,
}

impl BarSlice {
    /// Returns the slice of `len` bytes from byte `offset`.
    pub const fn new(offset: u64, len: u64) -> Self {
        Self { offset, len }
    }
}

/// A slice of the memory, checked against the BAR, and where it lies in the buffer.
struct Slice {
    slice: BarSlice,
    /// The page of the buffer the slice starts at.
    first_page: usize,
    /// The number of pages of the slice.
    pages: usize,
    /// Its first page frame when the memory was made: a placement hint for mappings only.
    pfn: usize,
}

/// What the state lock of a [`BarMemory`] protects.
struct State<T: Exporter, K> {
    /// What keeps the device bound; `None` once the memory is released for good.
    owner: Option<K>,
    /// Whether the memory is taken away for now.
    revoked: bool,
    /// The buffer the memory serves, once bound.
    buf: Option<WeakDmaBuf<T>>,
}

// The semaphore pins its data, but nothing relies on `owner` (moved in by value, taken out by
// value) staying in place.
impl<T: Exporter, K> Unpin for State<T, K> {}

/// The memory of slices of one PCI BAR, served by one dma-buf of the exporter `T`, while `K`
/// keeps the device bound.
///
/// Made with [`BarMemoryInit`], kept in the buffer's exporter data, bound to the buffer with
/// [`BarMemory::bind`] right after the export. The exporter's callbacks call
/// [`BarMemory::pal`], [`BarMemory::sgt`] and [`BarMemory::mmap`], its fault handler
/// [`BarMemory::fault`]: each hands out the memory only while it is neither revoked nor released,
/// and only for the bound buffer. [`BarMemory::revoke`] takes it away until
/// [`BarMemory::restore`]; [`BarMemory::release`] takes it away for good and gives `K` back. The
/// memory is the buffer's in order: the first slice at offset 0, the next one after it.
///
/// Lock order: the buffer's reservation lock, then the state lock (a `rw_semaphore`, which
/// faults take for reading with the mmap or VMA lock held). The revoke and release functions
/// take both: call them without the reservation lock of the buffer.
///
/// # Invariants
///
/// - The slices lie within the memory BAR `bar` of `state.owner`'s device, which the PCI core
///   assigned, and are page aligned; they add up to `size` bytes.
/// - Page table entries of the memory exist only in VMAs of the file of `state.buf`'s buffer;
///   lists and tables of it only with its importers, each holding a lease of `leases`.
/// - While `state.revoked` is set or `state.owner` is `None`, no entry, list or table is made.
///   Whoever sets one or the other (holding the state lock for writing) has zapped the entries,
///   invalidated the importers and waited for their fences and leases before `owner` is
///   dropped.
#[pin_data(PinnedDrop)]
pub struct BarMemory<T: Exporter, K: KeepsBound> {
    bar: u32,
    write_combine: bool,
    slices: KVec<Slice>,
    size: usize,
    leases: Arc<Leases>,
    #[pin]
    state: RwSem<State<T, K>>,
}

/// A [`BarMemory`] about to be made: checked slices, from [`BarMemoryInit::new`];
/// [`BarMemoryInit::init`] makes the memory.
pub struct BarMemoryInit<T: Exporter, K: KeepsBound> {
    owner: K,
    bar: u32,
    write_combine: bool,
    slices: KVec<Slice>,
    size: usize,
    leases: Arc<Leases>,
    _type: core::marker::PhantomData<fn() -> T>,
}

/// Returns whether entries with a write-combining protection for `ranges` really are
/// write-combining; see [`BarMemory::write_combine_ok`].
fn write_combines(dev: &Device<crate::device::Bound>, bar: u32, ranges: &[BarRange<'_>]) -> bool {
    // SAFETY: `dev` is a valid PCI device and `bar` a standard BAR (the ranges are of it).
    let flags = unsafe { bindings::pci_resource_flags(dev.as_raw(), bar as c_int) };
    // CAST: The flag is a `u32` constant; resource flags are an `unsigned long`.
    if flags & bindings::IORESOURCE_PREFETCH as c_ulong == 0 {
        return false;
    }
    let base = bindings::pgprot_t::default();
    // SAFETY: Computing page protections has no requirements.
    let (wc, uc) = unsafe {
        (
            bindings::pgprot_mmio(base, true),
            bindings::pgprot_mmio(base, false),
        )
    };
    if wc.pgprot == uc.pgprot {
        return false;
    }
    // A BAR has one memory type: the first page of each range tells, as for the faults.
    ranges.iter().all(|r| {
        usize::try_from(r.start() >> PAGE_SHIFT)
            // SAFETY: Looking up the memory type of a page frame has no requirements.
            .is_ok_and(|pfn| unsafe { bindings::pfnmap_cachemode_pfn(pfn, wc) }.pgprot == wc.pgprot)
    })
}

/// Returns the lockdep name and class of the state locks.
///
/// Not generic, unlike its caller: the class key is a static of this function, and lockdep wants
/// one name for it, not one copy per crate that instantiates the caller. Never inlined: the name
/// would be copied into the crate it is inlined into.
#[inline(never)]
fn state_lock_class() -> (&'static CStr, Pin<&'static LockClassKey>) {
    (c_str!("dma_buf_bar_memory"), static_lock_class!())
}

impl<T: Exporter, K: KeepsBound> BarMemoryInit<T, K> {
    /// Checks the slices `slices` of BAR `bar` of the device that `owner` keeps bound, for the
    /// memory of a buffer.
    ///
    /// Returns [`EINVAL`] if `slices` is empty or a slice is not within the BAR, as
    /// [`Device::bar_range`] checks, [`EOVERFLOW`] if a slice wraps or the slices add up to more
    /// than a `usize`.
    pub fn new(owner: K, bar: u32, slices: &[BarSlice]) -> Result<Self> {
        if slices.is_empty() {
            return Err(EINVAL);
        }
        let dev = owner.pci_dev();
        let mut checked = KVec::with_capacity(slices.len(), GFP_KERNEL)?;
        let mut ranges = KVec::with_capacity(slices.len(), GFP_KERNEL)?;
        let mut size = 0usize;
        for s in slices {
            let range = dev.bar_range(bar, s.offset, s.len)?;
            ranges.push(range, GFP_KERNEL)?;
            let len = usize::try_from(range.len()).map_err(|_| EOVERFLOW)?;
            let pfn = usize::try_from(range.start() >> PAGE_SHIFT).map_err(|_| EOVERFLOW)?;
            checked.push(
                Slice {
                    slice: *s,
                    first_page: size >> PAGE_SHIFT,
                    pages: len >> PAGE_SHIFT,
                    pfn,
                },
                GFP_KERNEL,
            )?;
            size = size.checked_add(len).ok_or(EOVERFLOW)?;
        }
        let write_combine = write_combines(dev, bar, &ranges);
        drop(ranges);
        Ok(Self {
            owner,
            bar,
            write_combine,
            slices: checked,
            size,
            leases: Leases::new()?,
            _type: core::marker::PhantomData,
        })
    }

    /// Returns the size of the memory, which is the size of the buffer to export.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Returns the initialiser of the memory.
    pub fn init(self) -> impl PinInit<BarMemory<T, K>> {
        // INVARIANT: `new` checked the slices against the BAR of `owner`'s device; nothing is
        // handed out yet.
        let (name, key) = state_lock_class();
        pin_init!(BarMemory {
            bar: self.bar,
            write_combine: self.write_combine,
            slices: self.slices,
            size: self.size,
            leases: self.leases,
            state <- RwSem::new(
                State {
                    owner: Some(self.owner),
                    revoked: false,
                    buf: None,
                },
                name,
                key,
            ),
        })
    }
}

impl<T: Exporter, K: KeepsBound> BarMemory<T, K> {
    /// Returns the size of the memory in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Makes `buf` the buffer the memory serves: the only one whose mappings and importers get
    /// it. Call it once, right after the export, before the buffer reaches anybody else.
    ///
    /// Returns [`EINVAL`] if `buf` is not the size of the memory, [`EBUSY`] if the memory serves
    /// a buffer already.
    pub fn bind(&self, buf: &Exported<T>) -> Result {
        if buf.size() != self.size {
            return Err(EINVAL);
        }
        let mut state = self.state.write();
        if state.buf.is_some() {
            return Err(EBUSY);
        }
        state.buf = Some(buf.downgrade());
        Ok(())
    }

    /// Returns whether the memory is taken away, for now ([`BarMemory::revoke`]) or for good
    /// ([`BarMemory::release`]).
    pub fn is_revoked(&self) -> bool {
        let state = self.state.read();
        state.revoked || state.owner.is_none()
    }

    /// Returns whether the memory is released for good.
    pub fn is_released(&self) -> bool {
        self.state.read().owner.is_none()
    }

    /// Returns the state, read-locked, and the device, if the memory may be handed out for
    /// `buf`: [`ENODEV`] if it is revoked or released, [`EINVAL`] if `buf` is not the buffer it
    /// serves.
    fn serving(&self, buf: &Exported<T>) -> Result<RwSemReadGuard<'_, State<T, K>>> {
        let state = self.state.read();
        if !state.buf.as_ref().is_some_and(|w| w.is(buf)) {
            return Err(EINVAL);
        }
        if state.revoked || state.owner.is_none() {
            return Err(ENODEV);
        }
        Ok(state)
    }

    /// Returns whether mappings of the memory can really be write-combining: the BAR is
    /// prefetchable (write-combining lets the CPU merge writes and read speculatively, which
    /// registers with side effects do not take), the architecture has a write-combining memory
    /// type, and the entries that faults insert get it. Where the architecture keeps a memory
    /// type per physical range (x86 with PAT), the entries get that one: a BAR that a driver
    /// mapped uncached stays uncached. Decided when the memory was made, for good.
    pub fn write_combine_ok(&self) -> bool {
        self.write_combine
    }

    /// Returns the checked ranges of the slices, of `dev`.
    fn bar_ranges<'a>(&self, dev: &'a Device<crate::device::Bound>) -> Result<KVec<BarRange<'a>>> {
        let mut ranges = KVec::with_capacity(self.slices.len(), GFP_KERNEL)?;
        for s in self.slices.iter() {
            ranges.push(
                dev.bar_range(self.bar, s.slice.offset, s.slice.len)?,
                GFP_KERNEL,
            )?;
        }
        Ok(ranges)
    }

    /// Returns the physical address list of the memory, for [`Exporter::map_pal`].
    ///
    /// Returns [`EINVAL`] if `attach` is not an attachment of the buffer the memory serves,
    /// [`ENODEV`] if the memory is revoked or released, [`EOPNOTSUPP`] if the importer does not
    /// honour invalidation (the memory could not be taken back from it) or the device has no P2P
    /// provider for the BAR.
    pub fn pal(&self, attach: &ExporterAttachment<T>) -> Result<PalExport> {
        let state = self.serving(attach.buf())?;
        if !attach.is_revocable() {
            return Err(EOPNOTSUPP);
        }
        let dev = state.owner.as_ref().ok_or(ENODEV)?.pci_dev();
        let ranges = self.bar_ranges(dev)?;
        // SAFETY: The list holds a lease, and by the type invariants the memory is taken from the
        // importers of the buffer (which `serving` checked `attach` is one of), and the leases
        // waited for, before the device is let go of.
        unsafe { PalExport::from_bar_ranges(&ranges, Some(self.leases.take())) }
    }

    /// Returns a table of the memory mapped for the importer's device, for
    /// [`Exporter::map_sgt`]. The C functions it calls assert (with lockdep) that the
    /// reservation lock is held, as it is there and when the core unmaps.
    ///
    /// Errors as [`BarMemory::pal`]; [`EOPNOTSUPP`] also if the importer does not take
    /// peer-to-peer addresses; else the error of the mapping.
    pub fn sgt<'a>(
        &self,
        attach: &'a ExporterAttachment<T>,
        dir: DataDirection,
    ) -> Result<SgtExport<'a>> {
        let state = self.serving(attach.buf())?;
        if !attach.is_revocable() {
            return Err(EOPNOTSUPP);
        }
        let dev = state.owner.as_ref().ok_or(ENODEV)?.pci_dev();
        let ranges = self.bar_ranges(dev)?;
        // SAFETY: The table holds a lease; by the type invariants the memory is taken from the
        // importers of the buffer (which `serving` checked `attach` is one of), and the leases
        // waited for, before the device is let go of.
        unsafe { SgtExport::from_bar_ranges(attach, &ranges, dir, Some(self.leases.take())) }
    }

    /// Sets up a mapping of the buffer, for [`Exporter::mmap`]: device memory, uncached or
    /// write-combining, filled by [`BarMemory::fault`] at fault time.
    ///
    /// Returns [`EINVAL`] if `buf` is not the buffer the memory serves, or as
    /// [`VmaNew::set_io_pfnmap`]; [`ENODEV`] if the memory is released. A revoked memory can be
    /// mapped: faults fail until it is restored.
    pub fn mmap(&self, buf: &Exported<T>, vma: &VmaNew, write_combine: bool) -> Result {
        let state = self.state.read();
        if !state.buf.as_ref().is_some_and(|w| w.is(buf)) {
            return Err(EINVAL);
        }
        if state.owner.is_none() {
            return Err(ENODEV);
        }
        vma.set_io_pfnmap(write_combine)
    }

    /// Returns the largest order of the entries [`BarMemory::fault`] can map a mapping of `len`
    /// bytes from page `pgoff` of the buffer with, at addresses congruent to its offsets modulo
    /// the entry size: for [`Exporter::mmap_order`]. The largest that one of the slices allows
    /// (see [`io_mapping_order`]), from where the BAR was when the memory was made.
    pub fn mmap_order(&self, pgoff: usize, len: usize) -> u32 {
        self.slices
            .iter()
            .map(|s| io_mapping_order(s.pfn, s.pages, s.first_page, pgoff, len >> PAGE_SHIFT))
            .max()
            .unwrap_or(0)
    }

    /// Handles a fault of a mapping of the buffer, of any size: maps the memory at the faulting
    /// offset, or returns [`VmFaultReason::SIGBUS`] if the memory is revoked or released, the
    /// offset is not within the memory, or the VMA is not of the buffer's file.
    pub fn fault(&self, vmf: &mut VmFault<'_>) -> VmFaultReason {
        let state = self.state.read();
        let Some(owner) = state.owner.as_ref() else {
            return VmFaultReason::SIGBUS;
        };
        // SAFETY: The fault holds the mmap or VMA lock, which keeps the VMA and its file.
        let file = unsafe { (*vmf.vma().as_ptr()).vm_file };
        if state.revoked || !state.buf.as_ref().is_some_and(|w| w.has_file(file)) {
            return VmFaultReason::SIGBUS;
        }
        let pgoff = vmf.pgoff();
        let Some(s) = self
            .slices
            .iter()
            .find(|s| pgoff >= s.first_page && pgoff - s.first_page < s.pages)
        else {
            return VmFaultReason::SIGBUS;
        };
        let range = match owner
            .pci_dev()
            .bar_range(self.bar, s.slice.offset, s.slice.len)
        {
            Ok(range) => range,
            Err(e) => return VmFaultReason::from_error(e),
        };
        // SAFETY: The entry goes into a VMA of the file of the buffer the memory serves (checked
        // above); by the type invariants its entries are zapped, under the state lock held for
        // writing (which waits for this fault), before the device is let go of.
        match unsafe { range.pfn_range() } {
            Ok(pfns) => vmf.insert_io(&pfns, s.first_page),
            Err(e) => VmFaultReason::from_error(e),
        }
    }

    /// Takes the memory away for now, until [`BarMemory::restore`]: zaps the mappings of the
    /// buffer, so that the next access faults (and gets `SIGBUS`), and tells its importers to
    /// give their lists and tables back. New lists, tables and faults fail meanwhile.
    ///
    /// The returned [`Revocation`] waits, when dropped or with [`Revocation::wait`], until the
    /// importers' fences signalled and every list and table came back: call that before the
    /// device stops decoding the memory. The first step is quick and can run under a lock that
    /// the importers do not need; the second can take as long as an importer likes.
    pub fn revoke(&self) -> Revocation<'_, T, K> {
        self.take_back(|state| {
            state.revoked = true;
            None
        })
    }

    /// Hands the memory out again after [`BarMemory::revoke`]. Returns `false` if it was not
    /// revoked, or is released.
    pub fn restore(&self) -> bool {
        let mut state = self.state.write();
        if !state.revoked || state.owner.is_none() {
            return false;
        }
        state.revoked = false;
        true
    }

    /// Takes the memory away for good, as [`BarMemory::revoke`]; the returned [`Revocation`]
    /// gives back what keeps the device bound once the memory is all back
    /// ([`Revocation::wait`]), `None` if it was released already.
    pub fn release(&self) -> Revocation<'_, T, K> {
        self.take_back(|state| state.owner.take())
    }

    /// The first step of taking the memory back: `f` changes the state, then, if the memory was
    /// handed out until then, the mappings are zapped and the importers invalidated.
    fn take_back(&self, f: impl FnOnce(&mut State<T, K>) -> Option<K>) -> Revocation<'_, T, K> {
        loop {
            let (bound, buf) = {
                let state = self.state.read();
                let buf = state.buf.as_ref();
                (buf.is_some(), buf.and_then(WeakDmaBuf::upgrade))
            };
            // A buffer that is bound but cannot be upgraded is being released: its mappings and
            // attachments are gone, it has nothing to take back.
            let mut resv = buf.as_ref().map(|b| b.lock());
            let mut state = self.state.write();
            if !bound && state.buf.is_some() {
                // Bound since: lock the buffer first.
                continue;
            }
            let was_live = !state.revoked && state.owner.is_some();
            let owner = f(&mut state);
            if was_live {
                // Ended by the `Revocation`, once it waited.
                self.leases.begin_revoke();
            }
            if let (true, Some(b)) = (was_live, &buf) {
                // SAFETY: The buffer's file, and so its mapping, lives while `b` is held.
                let mapping = unsafe { AddressSpace::from_raw((*(*b.as_raw()).file).f_mapping) };
                // Faults wait for the state lock, then see the new state and fail.
                mapping.unmap_all();
            }
            drop(state);
            if let (true, Some(b), Some(guard)) = (was_live, &buf, resv.as_mut()) {
                // Importers that map again from their callback see the new state and fail.
                // `guard` holds the buffer's own lock, so this cannot fail.
                let _ = b.invalidate_mappings(guard.locked());
            }
            drop(resv);
            return Revocation {
                mem: self,
                buf,
                took: was_live,
                owner,
                waited: false,
            };
        }
    }
}

#[pinned_drop]
impl<T: Exporter, K: KeepsBound> PinnedDrop for BarMemory<T, K> {
    fn drop(self: Pin<&mut Self>) {
        // Usually the buffer is gone and nothing is left to take back. If it lives on (the
        // memory was kept elsewhere), it must not keep the memory after the device.
        drop(self.release().wait());
    }
}

/// Memory of a [`BarMemory`] being taken back, from [`BarMemory::revoke`] or
/// [`BarMemory::release`].
///
/// Waits, when dropped or with [`Revocation::wait`], until the fences of the buffer signalled and
/// every list and table made of the memory came back.
#[must_use = "dropping it waits for the importers at once"]
pub struct Revocation<'a, T: Exporter, K: KeepsBound> {
    mem: &'a BarMemory<T, K>,
    buf: Option<ARef<Exported<T>>>,
    /// Whether this revocation took the memory away (rather than finding it taken).
    took: bool,
    owner: Option<K>,
    waited: bool,
}

impl<T: Exporter, K: KeepsBound> Revocation<'_, T, K> {
    /// Waits until the memory is all back; returns what kept the device bound if this released
    /// the memory.
    pub fn wait(mut self) -> Option<K> {
        self.settle();
        self.owner.take()
    }

    fn settle(&mut self) {
        if self.waited {
            return;
        }
        if self.took {
            // The importers' fences, then their lists and tables.
            if let Some(b) = &self.buf {
                // Without a timeout and uninterruptible, this cannot fail.
                let _ = b.resv().wait(DmaResvUsage::Bookkeep, false, None);
            }
            self.mem.leases.wait();
            self.mem.leases.end_revoke();
        } else {
            // The memory was taken already: wait for the revocations that took it, if they
            // still wait for the importers, and for the lists and tables, not for fences again.
            self.mem.leases.wait_revokes();
            self.mem.leases.wait();
        }
        self.waited = true;
    }
}

impl<T: Exporter, K: KeepsBound> Drop for Revocation<'_, T, K> {
    fn drop(&mut self) {
        // The owner (if any) is dropped after this, once the memory is back.
        self.settle();
    }
}
