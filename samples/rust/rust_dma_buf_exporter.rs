// SPDX-License-Identifier: GPL-2.0

//! Rust dma-buf exporter sample.
//!
//! A misc device, `/dev/rust-dma-buf-exporter`, that exports page-backed dma-bufs. The
//! `RUST_DMA_BUF_EXPORT` ioctl allocates a zeroed buffer of the size it is given and returns a
//! dma-buf file descriptor for it, opened read-write or, with `RUST_DMA_BUF_EXPORT_READ_ONLY`,
//! read-only. The buffer can be mapped with `mmap(2)` on that descriptor (shared mappings only,
//! at any page offset; writable ones only of read-write descriptors) and imported by drivers
//! through the SGT mapping type.
//!
//! The ioctl argument, as C:
//!
//! ```c
//! struct rust_dma_buf_export {
//!         __u64 size;     /* in: bytes, a multiple of the page size */
//!         __u32 flags;    /* in: 0 or RUST_DMA_BUF_EXPORT_READ_ONLY */
//!         __s32 fd;       /* out: the dma-buf */
//! };
//! #define RUST_DMA_BUF_EXPORT _IOWR('|', 0x90, struct rust_dma_buf_export)
//! #define RUST_DMA_BUF_EXPORT_READ_ONLY 1
//! ```
//!
//! Errors: `EINVAL` for a size of 0 or not a multiple of the page size, or for unknown flags;
//! `E2BIG` for more than 16 MiB; `EFAULT` for a bad argument pointer. Nothing is left behind
//! on an error. tools/testing/selftests/drivers/dma-buf/rust_exporter.c tests it.

use kernel::{
    dma::DataDirection,
    dma_buf::{
        DmaBuf,
        ExportOptions,
        ExportType,
        Exported,
        Exporter,
        ExporterAttachment,
        SgtExport, //
    },
    fs::{
        file::{
            flags::O_CLOEXEC,
            FileDescriptorReservation, //
        },
        File, //
    },
    ioctl::_IOWR,
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    mm::virt::{
        flags as vm_flags,
        VmaNew, //
    },
    page::{
        Page,
        PAGE_SIZE, //
    },
    prelude::*,
    sync::{
        aref::ARef,
        Arc, //
    },
    transmute::{
        AsBytes,
        FromBytes, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

/// The argument of [`RUST_DMA_BUF_EXPORT`].
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct ExportArg {
    size: u64,
    flags: u32,
    fd: i32,
}

// SAFETY: `ExportArg` is plain integers without padding.
unsafe impl FromBytes for ExportArg {}
// SAFETY: `ExportArg` is plain integers without padding.
unsafe impl AsBytes for ExportArg {}

const RUST_DMA_BUF_EXPORT: u32 = _IOWR::<ExportArg>('|' as u32, 0x90);

/// The flag of [`RUST_DMA_BUF_EXPORT`] for a read-only file descriptor.
const RUST_DMA_BUF_EXPORT_READ_ONLY: u32 = 1;

/// The largest buffer the sample exports.
const MAX_SIZE: u64 = 16 << 20;

module! {
    type: RustDmaBufExporterModule,
    name: "rust_dma_buf_exporter",
    authors: ["Rust for Linux dma-buf contributors"],
    description: "Rust dma-buf exporter sample",
    license: "GPL",
    imports_ns: ["DMA_BUF"],
}

#[pin_data]
struct RustDmaBufExporterModule {
    #[pin]
    _miscdev: MiscDeviceRegistration<RustDmaBufDevice>,
}

impl kernel::InPlaceModule for RustDmaBufExporterModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let options = MiscDeviceOptions {
            name: c"rust-dma-buf-exporter",
        };
        try_pin_init!(Self {
            _miscdev <- MiscDeviceRegistration::register(options),
        })
    }
}

/// The pages of one exported buffer; owned by the buffer, shared with its SGT mappings.
struct Pages(Arc<KVec<Page>>);

impl Pages {
    fn new(nr_pages: usize) -> Result<Self> {
        let mut pages = KVec::with_capacity(nr_pages, GFP_KERNEL)?;
        for _ in 0..nr_pages {
            // Charged to the memory cgroup of the task that asks for the buffer.
            pages.push(
                Page::alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO)?,
                GFP_KERNEL,
            )?;
        }
        Ok(Self(Arc::new(pages, GFP_KERNEL)?))
    }
}

/// The exporter of the sample's buffers.
struct PageExporter;

#[vtable]
impl Exporter for PageExporter {
    type Data = KBox<Pages>;
    type AttachData = ();
    const MAPPING_TYPES: &'static [ExportType] = &[ExportType::Sgt { p2p: false }];

    fn map_sgt<'a>(
        pages: &Pages,
        attach: &'a ExporterAttachment<Self>,
        dir: DataDirection,
    ) -> Result<SgtExport<'a>> {
        SgtExport::from_pages(attach, &pages.0, dir)
    }

    fn mmap(pages: &Pages, _buf: &Exported<Self>, vma: &VmaNew) -> Result {
        // The pages are inserted now, so the mapping needs no fault handler. Private mappings
        // would copy on write and hide the buffer's pages: refuse them. Test `MAYSHARE`: for a
        // read-only file, the core clears `SHARED` (and `MAYWRITE`) of a `MAP_SHARED` mapping.
        if vma.flags() & vm_flags::MAYSHARE == 0 {
            return Err(EINVAL);
        }
        let vma = vma.set_mixedmap();
        let nr_pages = (vma.end() - vma.start()) / PAGE_SIZE;
        // The core checked that the mapping lies within the buffer.
        let first = vma.pgoff();
        let last = first.checked_add(nr_pages).ok_or(EINVAL)?;
        let pages = pages.0.get(first..last).ok_or(EINVAL)?;
        for (i, page) in pages.iter().enumerate() {
            vma.vm_insert_page(vma.start() + i * PAGE_SIZE, page)?;
        }
        Ok(())
    }
}

/// An open file of the misc device.
struct RustDmaBufDevice;

impl RustDmaBufDevice {
    /// Exports a buffer as `arg` asks and reserves a descriptor for it.
    fn export(
        arg: &ExportArg,
    ) -> Result<(ARef<Exported<PageExporter>>, FileDescriptorReservation)> {
        if arg.flags & !RUST_DMA_BUF_EXPORT_READ_ONLY != 0
            || arg.size == 0
            || arg.size & (PAGE_SIZE as u64 - 1) != 0
        {
            return Err(EINVAL);
        }
        if arg.size > MAX_SIZE {
            return Err(E2BIG);
        }
        let size = usize::try_from(arg.size)?;
        let fd = FileDescriptorReservation::get_unused_fd_flags(O_CLOEXEC)?;
        let pages = KBox::new(Pages::new(size / PAGE_SIZE)?, GFP_KERNEL)?;
        let opts = if arg.flags & RUST_DMA_BUF_EXPORT_READ_ONLY != 0 {
            ExportOptions::new().read_only()
        } else {
            ExportOptions::new()
        };
        Ok((DmaBuf::export_with::<PageExporter>(pages, size, opts)?, fd))
    }
}

#[vtable]
impl MiscDevice for RustDmaBufDevice {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        Ok(KBox::new(RustDmaBufDevice, GFP_KERNEL)?)
    }

    fn ioctl(_me: &RustDmaBufDevice, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            RUST_DMA_BUF_EXPORT => {
                let (mut reader, mut writer) =
                    UserSlice::new(UserPtr::from_addr(arg), size_of::<ExportArg>()).reader_writer();
                let mut export: ExportArg = reader.read()?;
                let (buf, fd) = Self::export(&export)?;
                export.fd = i32::try_from(fd.reserved_fd())?;
                // If this fails, dropping `buf` and `fd` undoes the export.
                writer.write(&export)?;
                // Installing the descriptor is the last step: it cannot fail.
                buf.fd_install(fd);
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }
}
