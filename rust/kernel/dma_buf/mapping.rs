// SPDX-License-Identifier: GPL-2.0

//! Mapping types and their negotiation.
//!
//! C header: [`include/linux/dma-buf-mapping.h`](srctree/include/linux/dma-buf-mapping.h)
//!
//! A mapping type is one way for an importer to get at the memory of a dma-buf. The importer
//! lists the types it can use ([`ImportType`]), the exporter the types it offers
//! ([`ExportType`]), each in its own order of preference; when the importer attaches, the core
//! picks the exporter's most preferred type that the importer also accepts. The result is a
//! [`Negotiated`] attachment, one variant per type, which the importer has to match on: each
//! variant only has the map function of its type.
//!
//! See also the "Mapping types" section of
//! [`Documentation/driver-api/dma-buf.rst`](srctree/Documentation/driver-api/dma-buf.rst).

use self::private::Sealed as _;
use super::Attachment;
use crate::{
    bindings,
    device::{Bound, Device},
};

/// The SGT mapping type: a DMA-mapped scatter-gather table.
///
/// Mapped with [`Attachment::<Sgt, _>::map`](super::Attachment::map) into an
/// [`SgtMapping`](super::SgtMapping), which the attachment owns.
pub enum Sgt {}

/// The PAL mapping type: the physical address list of the buffer.
///
/// Rust drivers can only offer it, as exporters ([`ExportType::Pal`]): the C core lets only
/// the importers that program an IOMMU themselves (iommufd) map it, and those are C modules.
pub enum Pal {}

/// A mapping type known to the Rust abstractions, [`Sgt`] or [`Pal`].
///
/// This trait is sealed; it cannot be implemented outside of this module.
pub trait MappingType: private::Sealed + 'static {
    /// The name of the type, as in debugfs.
    const NAME: &'static str;
}

impl MappingType for Sgt {
    const NAME: &'static str = "sgt";
}

impl MappingType for Pal {
    const NAME: &'static str = "pal";
}

mod private {
    pub trait Sealed {
        /// Returns the C singleton of the mapping type.
        fn c_type() -> *const crate::bindings::dma_buf_mapping_type;
    }

    impl Sealed for super::Sgt {
        fn c_type() -> *const crate::bindings::dma_buf_mapping_type {
            &raw const crate::bindings::dma_buf_mapping_sgt_type
        }
    }

    impl Sealed for super::Pal {
        fn c_type() -> *const crate::bindings::dma_buf_mapping_type {
            &raw const crate::bindings::dma_buf_mapping_pal_type
        }
    }
}

/// Returns whether `ty`, the mapping type of an attachment, is `M`.
pub(crate) fn is_type<M: MappingType>(ty: *const bindings::dma_buf_mapping_type) -> bool {
    core::ptr::eq(ty, M::c_type())
}

/// One entry of an importer's list of mapping types.
///
/// Passed, best first, to [`DmaBuf::attach`](super::DmaBuf::attach).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ImportType {
    /// The importer takes a scatter-gather table DMA-mapped for its device.
    Sgt {
        /// Whether the importer can use peer-to-peer (PCI MMIO) addresses without
        /// `struct page`s.
        p2p: bool,
    },
}

impl ImportType {
    /// Returns the C entry for this importer entry, for the importer's device `dev`.
    pub(crate) fn to_raw(self, dev: &Device<Bound>) -> bindings::dma_buf_mapping_match {
        let mut raw: bindings::dma_buf_mapping_match = pin_init::zeroed();
        match self {
            ImportType::Sgt { p2p } => {
                raw.type_ = Sgt::c_type();
                raw.__bindgen_anon_1.sgt.dma_dev = dev.as_raw();
                raw.__bindgen_anon_1.sgt.p2p = p2p;
            }
        }
        raw
    }
}

/// One entry of an exporter's list of mapping types.
///
/// Listed, best first, in [`Exporter::MAPPING_TYPES`](super::Exporter::MAPPING_TYPES).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ExportType {
    /// The exporter hands out DMA-mapped scatter-gather tables, from
    /// [`Exporter::map_sgt`](super::Exporter::map_sgt).
    Sgt {
        /// The buffer can only be reached peer-to-peer (it is PCI MMIO), so only importers that
        /// accept peer-to-peer addresses match.
        p2p: bool,
    },
    /// The exporter hands out the physical address list of the buffer, from
    /// [`Exporter::map_pal`](super::Exporter::map_pal).
    Pal,
}

impl ExportType {
    /// Returns the C entry for this exporter entry, with the exporter's ops of its type.
    pub(crate) fn to_raw(
        self,
        sgt_ops: &'static bindings::dma_buf_sgt_exp_ops,
        pal_ops: &'static bindings::dma_buf_pal_exp_ops,
    ) -> bindings::dma_buf_mapping_match {
        let mut raw: bindings::dma_buf_mapping_match = pin_init::zeroed();
        match self {
            ExportType::Sgt { p2p } => {
                raw.type_ = Sgt::c_type();
                raw.__bindgen_anon_1.sgt.exp_ops = sgt_ops;
                raw.__bindgen_anon_1.sgt.p2p = p2p;
            }
            ExportType::Pal => {
                raw.type_ = Pal::c_type();
                raw.__bindgen_anon_1.pal.exp_ops = pal_ops;
            }
        }
        raw
    }
}

/// An attachment after mapping-type negotiation.
///
/// Returned by [`DmaBuf::attach`](super::DmaBuf::attach) and
/// [`DmaBuf::attach_pinned`](super::DmaBuf::attach_pinned); one variant per mapping type a Rust
/// importer can list. Importers outside the kernel crate must expect more variants to come.
#[non_exhaustive]
#[must_use = "dropping the attachment detaches it"]
pub enum Negotiated<I> {
    /// The exporter and the importer agreed on the SGT type.
    Sgt(Attachment<Sgt, I>),
}

impl<I> Negotiated<I> {
    /// Returns the name of the negotiated mapping type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Negotiated::Sgt(_) => Sgt::NAME,
        }
    }
}
