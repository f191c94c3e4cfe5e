// SPDX-License-Identifier: GPL-2.0

//! DMA-buf: sharing buffers between drivers and with user space.
//!
//! C headers: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h),
//! [`include/linux/dma-buf-mapping.h`](srctree/include/linux/dma-buf-mapping.h),
//! [`include/linux/dma-resv.h`](srctree/include/linux/dma-resv.h)
//!
//! A dma-buf is a buffer one driver, the exporter, shares with others, the importers, and with
//! user space, as a file descriptor. This module lets Rust drivers be either:
//!
//! - [`DmaBuf`]: the reference counted buffer, from a file descriptor ([`DmaBuf::get`]) or a new
//!   export ([`DmaBuf::export`]); its reservation object is a [`DmaResv`].
//! - [`Exporter`]: the `struct dma_buf_ops` callbacks, with the exporter's data owned by the
//!   buffer until it is released; [`Exported`] and [`WeakDmaBuf`] are the exporter's handles.
//! - [`Attachment`]: an importer's attachment, detached on drop, typed by the negotiated mapping
//!   type ([`Negotiated`]), owning its mapping.
//! - The mapping types [`Sgt`] (a DMA-mapped scatter-gather table, [`SgtMapping`],
//!   [`SgtExport`]) and [`Pal`] (the physical address list, [`PalExport`]; exporters only: the C
//!   core hands physical addresses to iommufd alone).
//! - `BarMemory` (with `CONFIG_PCI`): memory of a PCI BAR that a buffer serves to user space
//!   mappings and importers, and takes back from all of them before the driver lets go of the
//!   device.
//!
//! Modules using these abstractions import the `DMA_BUF` symbol namespace
//! (`imports_ns: ["DMA_BUF"]` in `module!`): the generic code they instantiate calls the C core's
//! functions, which are exported in it.
//!
//! Each file has the documentation and examples of its part. See also
//! [`Documentation/driver-api/dma-buf.rst`](srctree/Documentation/driver-api/dma-buf.rst).

mod attachment;
#[cfg(CONFIG_PCI)]
mod bar;
mod buf;
mod exporter;
#[cfg(CONFIG_RUST_DMA_BUF_KUNIT_TEST)]
mod kunit;
mod lease;
mod mapping;
mod pal;
mod resv;
mod sgt;

pub use self::attachment::{Attachment, Importer, Invalidation, Pinned};
#[cfg(CONFIG_PCI)]
pub use self::bar::{BarMemory, BarMemoryInit, BarSlice, Revocation};
pub use self::buf::DmaBuf;
pub use self::exporter::{
    AttachDataRef, DataRef, ExportOptions, Exported, Exporter, ExporterAttachment, ResvOwner,
    WeakDmaBuf,
};
pub use self::mapping::{ExportType, ImportType, MappingType, Negotiated, Pal, Sgt};
pub use self::pal::{P2pProvider, PalExport, PhysRange};
pub use self::resv::{DmaResv, DmaResvGuard, DmaResvHeld, DmaResvLocked, DmaResvSet, DmaResvUsage};
pub use self::sgt::{SgtExport, SgtMapping};
