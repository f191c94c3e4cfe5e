// SPDX-License-Identifier: GPL-2.0

//! The Rust dma-buf exporter of vfio-pci-core.
//!
//! Exports slices of a BAR of a vfio-pci device as dma-bufs, as the C exporter in
//! `vfio_pci_dmabuf.c` does, with the same uAPI and the same semantics, when the module parameter
//! `vfio_pci_core.dmabuf_rust` is set. vfio-pci-core decodes the requests and calls this exporter
//! through `kernel::vfio::pci::dmabuf`; the memory is a `BarMemory`, which hands it out to
//! importers (PAL lists, P2P tables) and to mmaps of the dma-buf, and takes it back from all of
//! them when the device stops decoding memory, is reset or closed, or user space revokes the
//! dma-buf.
//!
//! Every dma-buf is in a registry of the exporter, by device, so that the notifications of a
//! device reach its dma-bufs. An entry stays until the device is closed, or until the dma-buf's
//! file is found gone, whichever comes first.

use kernel::{
    dma::DataDirection,
    dma_buf::{
        BarMemory, BarMemoryInit, BarSlice, DmaBuf, ExportOptions, ExportType, Exported, Exporter,
        ExporterAttachment, PalExport, SgtExport, WeakDmaBuf,
    },
    fs::file::{flags::O_CLOEXEC, FileDescriptorReservation},
    mm::{
        fault::{VmFault, VmFaultReason, VmOperations},
        virt::{flags::MAYSHARE, VmaNew},
    },
    new_mutex,
    page::PAGE_SIZE,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
        Arc, ArcBorrow, Mutex, SetOnce,
    },
    vfio::pci::{
        dmabuf::{DmaBufExporter, DmaBufRequest, DmaRange, DmaRanges, MemAttr},
        CoreDevice, Registration,
    },
};

kernel::object_of_module!(name: "vfio_pci_core_rust");
kernel::vfio_pci_dma_buf_exporter!(RustExporter);

/// `VFIO_DEVICE_DMA_BUF_MEMATTR_NC` and `_WC`, as the dma-buf keeps them.
const MEMATTR_NC: u32 = 0;
const MEMATTR_WC: u32 = 1;

/// A dma-buf of the exporter: its exporter data.
#[pin_data]
struct VfioDmaBuf {
    /// The memory attribute of future mmaps.
    memattr: Atomic<u32>,
    #[pin]
    mem: BarMemory<VfioDmaBuf, Registration>,
}

#[vtable]
impl Exporter for VfioDmaBuf {
    type Data = Arc<VfioDmaBuf>;
    type AttachData = ();
    // Importers that program an IOMMU themselves get the physical ranges, DMA API users a P2P
    // table, as from the C exporter.
    const MAPPING_TYPES: &'static [ExportType] = &[ExportType::Pal, ExportType::Sgt { p2p: true }];

    fn attach(this: ArcBorrow<'_, Self>, attach: &ExporterAttachment<Self>) -> Result {
        // A revoke after this check invalidates the attachment.
        if this.mem.is_revoked() {
            return Err(ENODEV);
        }
        // Every importer must be revocable: the BAR can go away.
        if !attach.is_revocable() {
            return Err(EOPNOTSUPP);
        }
        Ok(())
    }

    fn map_pal(this: ArcBorrow<'_, Self>, attach: &ExporterAttachment<Self>) -> Result<PalExport> {
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
        // Shared mappings only. For a dma-buf opened read-only, the core clears `VM_SHARED` (and
        // `VM_MAYWRITE`) of a `MAP_SHARED` mapping, but not `VM_MAYSHARE`.
        if vma.flags() & MAYSHARE == 0 {
            return Err(EINVAL);
        }
        let write_combine = this.memattr.load(Relaxed) == MEMATTR_WC;
        this.mem.mmap(buf, vma, write_combine)?;
        vma.set_ops(this.into())
    }

    fn mmap_order(this: ArcBorrow<'_, Self>, pgoff: usize, len: usize) -> u32 {
        this.mem.mmap_order(pgoff, len)
    }
}

#[vtable]
impl VmOperations for VfioDmaBuf {
    fn fault(this: ArcBorrow<'_, Self>, vmf: &mut VmFault<'_>) -> VmFaultReason {
        this.mem.fault(vmf)
    }

    fn huge_fault(this: ArcBorrow<'_, Self>, vmf: &mut VmFault<'_>) -> VmFaultReason {
        this.mem.fault(vmf)
    }
}

/// A dma-buf of a device, in the registry.
struct Entry {
    /// The address of the device: only compared, while the device is open.
    dev: usize,
    buf: WeakDmaBuf<VfioDmaBuf>,
    data: Arc<VfioDmaBuf>,
}

/// Returns the address of `dev`, which identifies it in the registry.
fn id(dev: &CoreDevice) -> usize {
    core::ptr::from_ref(dev) as usize
}

/// The registry of the dma-bufs of every device.
static REGISTRY: SetOnce<Pin<KBox<Mutex<KVec<Entry>>>>> = SetOnce::new();

/// Returns the registry.
fn registry() -> Result<&'static Mutex<KVec<Entry>>> {
    REGISTRY.as_ref().map(|r| &**r).ok_or(ENODEV)
}

/// Calls `f` with each dma-buf of `dev`, and takes it out of the registry first if `remove`;
/// dma-bufs whose file is gone are taken out and released, whoever's they are: they keep their
/// device registered otherwise, until their release, which a dentry can hold up.
///
/// Allocates nothing, so that no notification can fail: one entry at a time, under the
/// registry's lock. The caller holds `memory_lock` of `dev`, which exports take to add entries,
/// so the entries of `dev` do not change meanwhile.
fn for_each(dev: &CoreDevice, remove: bool, mut f: impl FnMut(Arc<VfioDmaBuf>)) {
    let Ok(registry) = registry() else {
        return;
    };
    let id = id(dev);
    let mut i = 0;
    loop {
        let (data, gone) = {
            let mut entries = registry.lock();
            let Some(e) = entries.get(i) else {
                break;
            };
            // Its file is gone: no mmap, import or fd can reach it any more.
            let gone = e.buf.upgrade().is_none();
            if e.dev != id && !gone {
                i += 1;
                continue;
            }
            if gone || remove {
                match entries.remove(i) {
                    Ok(e) => (e.data, gone),
                    Err(_) => break,
                }
            } else {
                i += 1;
                (e.data.clone(), false)
            }
        };
        if gone {
            drop(data.mem.release().wait());
        } else {
            f(data);
        }
    }
}

/// Finds `buf` among the dma-bufs of `dev`.
fn find(dev: &CoreDevice, buf: &DmaBuf) -> Result<Arc<VfioDmaBuf>> {
    let entries = registry()?.lock();
    entries
        .iter()
        .find(|e| e.dev == id(dev) && e.buf.is(buf))
        .map(|e| e.data.clone())
        .ok_or(ENODEV)
}

/// Checks the ranges as the C exporter does, in the same order, and returns the length of the
/// dma-buf: the sum of the lengths.
fn check_ranges(reg: &Registration, bar: u32, ranges: &[DmaRange]) -> Result<usize> {
    // `dma_iova_try_alloc()` takes a length without its top bit, `DMA_IOVA_USE_SWIOTLB`.
    const USE_SWIOTLB: u64 = 1 << 63;
    let page = PAGE_SIZE as u64;
    let mut length = 0usize;
    for r in ranges {
        if r.length == 0 || !r.offset.is_multiple_of(page) || !r.length.is_multiple_of(page) {
            return Err(EINVAL);
        }
        let len = usize::try_from(r.length).map_err(|_| EINVAL)?;
        length = length.checked_add(len).ok_or(EINVAL)?;
    }
    if (length as u64) & USE_SWIOTLB != 0 {
        return Err(EINVAL);
    }
    // The C exporter looks up the BAR's P2P provider here: every memory BAR has one, also one
    // smaller than a page, whose ranges then fail below (`EOVERFLOW` first).
    let pdev = reg.pci_dev();
    if !pdev.is_assigned_memory_bar(bar) {
        return Err(EINVAL);
    }
    let (start, len) = (pdev.resource_start(bar)?, pdev.resource_len(bar)?);
    let max = start.checked_add(len).ok_or(EINVAL)?;
    for r in ranges {
        let paddr = start.checked_add(r.offset).ok_or(EOVERFLOW)?;
        let end = paddr.checked_add(r.length).ok_or(EOVERFLOW)?;
        if end > max {
            return Err(EINVAL);
        }
    }
    Ok(length)
}

/// The Rust dma-buf exporter of vfio-pci-core.
struct RustExporter;

impl DmaBufExporter for RustExporter {
    fn init() -> Result {
        let registry = KBox::pin_init(new_mutex!(KVec::new(), "vfio_pci_dmabuf_rs"), GFP_KERNEL)?;
        REGISTRY.populate(registry);
        Ok(())
    }

    fn export(dev: &CoreDevice, req: &DmaBufRequest, ranges: DmaRanges) -> Result<u32> {
        let ranges = ranges.read_all()?;
        // The C exporter takes it after the checks; only a device being unregistered fails.
        let reg = dev.try_get_registration().ok_or(ENODEV)?;
        let size = check_ranges(&reg, req.bar, &ranges)?;
        let mut slices = KVec::with_capacity(ranges.len(), GFP_KERNEL)?;
        for r in ranges.iter() {
            slices.push(BarSlice::new(r.offset, r.length), GFP_KERNEL)?;
        }
        let mem = BarMemoryInit::new(reg, req.bar, &slices)?;
        if mem.size() != size {
            return Err(EINVAL);
        }
        let data = Arc::pin_init(
            pin_init!(VfioDmaBuf {
                memattr: Atomic::new(MEMATTR_NC),
                mem <- mem.init(),
            }),
            GFP_KERNEL,
        )?;
        let opts = ExportOptions::new().open_flags(req.open_flags);
        let buf: ARef<Exported<VfioDmaBuf>> =
            DmaBuf::export_with::<VfioDmaBuf>(data.clone(), size, opts)?;
        data.mem.bind(&buf)?;
        let fd = FileDescriptorReservation::get_unused_fd_flags(req.open_flags & O_CLOEXEC)?;
        let entry = Entry {
            dev: id(dev),
            buf: buf.downgrade(),
            data: data.clone(),
        };
        {
            let memory = dev.memory_write();
            // Under the lock that the notifications come with: none is missed.
            if !memory.memory_enabled() {
                // Nothing is handed out yet: this does not wait.
                drop(data.mem.revoke());
            }
            registry()?.lock().push(entry, GFP_KERNEL)?;
            // Let go of the dma-bufs whose files are gone, as the C exporter's release does.
            for_each(dev, false, drop);
        }
        Ok(buf.fd_install(fd))
    }

    fn move_notify(dev: &CoreDevice, revoked: bool, memory_enabled: bool) {
        for_each(dev, false, |data| {
            if revoked {
                // Also waits for the importers of a revocation that runs already.
                drop(data.mem.revoke());
            } else if memory_enabled {
                data.mem.restore();
            }
        });
    }

    fn cleanup(dev: &CoreDevice) {
        let _memory = dev.memory_write();
        // The device is gone for good, and so is the memory of its dma-bufs.
        for_each(dev, true, |data| drop(data.mem.release().wait()));
    }

    fn revoke(dev: &CoreDevice, buf: &DmaBuf) -> Result {
        let data = find(dev, buf)?;
        let memory = dev.memory_write();
        if data.mem.is_released() {
            drop(memory);
            // Returns, like the first revoke, once the importers have let go.
            drop(data.mem.revoke());
            return Err(EBADFD);
        }
        let revocation = data.mem.release();
        // Wait for the importers without `memory_lock`: however long one takes, the device's
        // BAR faults and config accesses go on.
        drop(memory);
        drop(revocation.wait());
        Ok(())
    }

    fn memattr(dev: &CoreDevice, buf: &DmaBuf, memattr: MemAttr) -> Result {
        let data = find(dev, buf)?;
        let value = match memattr {
            MemAttr::WriteCombine if !data.mem.write_combine_ok() => return Err(EOPNOTSUPP),
            MemAttr::WriteCombine => MEMATTR_WC,
            MemAttr::NonCached => MEMATTR_NC,
        };
        // Read by mmap() without a lock: only future mmaps see it.
        data.memattr.store(value, Relaxed);
        Ok(())
    }
}
