// SPDX-License-Identifier: GPL-2.0

//! DMA-buf: sharing buffers between drivers and with user space.
//!
//! C headers: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h),
//! [`include/linux/dma-buf-mapping.h`](srctree/include/linux/dma-buf-mapping.h)
//!
//! A dma-buf is a buffer one driver, the exporter, shares with others, the importers, and with
//! user space, as a file descriptor. This module lets Rust drivers be either:
//!
//! - [`DmaBuf`]: the reference counted buffer, from a file descriptor ([`DmaBuf::get`]) or a new
//!   export ([`DmaBuf::export`]); [`DmaBuf::lock`] takes its reservation lock.
//! - [`Exporter`]: the `struct dma_buf_ops` callbacks, with the exporter's data owned by the
//!   buffer until it is released.
//! - [`Attachment`]: an importer's attachment, detached on drop, typed by the negotiated mapping
//!   type ([`Negotiated`]).
//! - The mapping types [`Sgt`] (a DMA-mapped scatter-gather table, [`SgtMapping`]) and [`Pal`]
//!   (the physical address list, [`PalExport`]; exporters only: the C core hands physical
//!   addresses to iommufd alone). Mappings borrow the attachment and the reservation lock guard:
//!   they are unmapped exactly once, before the attachment is gone and while the lock is held, so
//!   a revoke (which needs the lock) never finds one in use.
//!
//! See [`Documentation/driver-api/dma-buf.rst`](srctree/Documentation/driver-api/dma-buf.rst).
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
//!     const MAPPING_TYPES: &'static [ExportType] = &[ExportType::Sgt { p2p: false }];
//!
//!     fn map_sgt(
//!         pages: ArcBorrow<'_, KVec<Page>>,
//!         attach: &ExporterAttachment,
//!         dir: DataDirection,
//!     ) -> Result<SgtExport> {
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
//! # Ok::<(), Error>(())
//! ```
//!
//! An importer of scatter-gather tables. It matches on the negotiated type (more types may come),
//! and each mapping only lives while the lock is held:
//!
//! ```
//! use kernel::{
//!     device::{Bound, Device},
//!     dma::DataDirection,
//!     dma_buf::{DmaBuf, ImportType, Importer, Negotiated},
//!     prelude::*,
//! };
//!
//! struct MyImporter;
//!
//! impl Importer for MyImporter {
//!     fn invalidate(&self) {
//!         // Stop using the addresses of earlier mappings.
//!     }
//! }
//!
//! fn import(fd: i32, dev: &Device<Bound>) -> Result<usize> {
//!     let buf = DmaBuf::get(fd)?;
//!     let types = [ImportType::Sgt { dma_dev: dev, p2p: false }];
//!     let len = match buf.attach(dev, &types, MyImporter)? {
//!         Negotiated::Sgt(attach) => {
//!             let resv = buf.lock();
//!             let sgt = attach.map(&resv, DataDirection::ToDevice)?;
//!             sgt.iter().map(|entry| entry.dma_len() as usize).sum()
//!         }
//!         _ => return Err(EOPNOTSUPP),
//!     };
//!     // The mapping was unmapped and the lock released at the end of its arm; the attachment
//!     // detaches here.
//!     Ok(len)
//! }
//! ```

mod attachment;
#[expect(clippy::module_inception)]
mod dma_buf;
mod exporter;
#[cfg(CONFIG_KUNIT)]
mod kunit;
mod mapping;
mod pal;
mod sgt;

pub use self::attachment::{Attachment, Importer};
pub use self::dma_buf::{DmaBuf, ResvGuard};
pub use self::exporter::{DataRef, Exporter, ExporterAttachment};
pub use self::mapping::{ExportType, ImportType, MappingType, Negotiated, Pal, Sgt};
pub use self::pal::{P2pProvider, PalExport, PhysRange};
pub use self::sgt::{SgtExport, SgtMapping};
