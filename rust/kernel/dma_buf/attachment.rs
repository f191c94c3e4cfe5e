// SPDX-License-Identifier: GPL-2.0

//! Importer attachments.
//!
//! C header: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h)
//!
//! An importer attaches its device to a [`DmaBuf`] with [`DmaBuf::attach`], listing the mapping
//! types it can use. The result is an [`Attachment`] typed by the negotiated mapping type; it
//! detaches when dropped. Mappings borrow the attachment and a [`ResvGuard`] of the buffer, so
//! they are unmapped before the attachment goes away and while the lock is still held.
//!
//! Every Rust importer is dynamic: the exporter may revoke or move the buffer, and tells the
//! importer through [`Importer::invalidate`], with the reservation lock held.

use super::{
    mapping::{self, ImportType, MappingType, Negotiated, Sgt},
    DmaBuf, ResvGuard,
};
use crate::{
    bindings,
    device::{Bound, Device},
    error::from_err_ptr,
    prelude::*,
    sync::aref::ARef,
};
use core::{marker::PhantomData, ptr::NonNull};

/// The importer side of an attachment.
///
/// Implemented by the importer's per-attachment data, which the [`Attachment`] owns.
pub trait Importer: Send + Sync + Sized + 'static {
    /// Called when the exporter revokes or moves the buffer.
    ///
    /// Runs with the reservation lock of the buffer held, so no mapping of the attachment exists
    /// at this point: mappings only live while the importer holds the lock. The importer must
    /// stop using addresses it derived from earlier mappings and map again, under the lock,
    /// before it uses the buffer again; after a revoke the new mapping fails.
    fn invalidate(&self) {}
}

/// An attachment of an importer's device to a [`DmaBuf`], negotiated to mapping type `M`.
///
/// Created by [`DmaBuf::attach`]; detached when dropped. `I` is the importer's data, which the
/// attachment owns and which receives the [`Importer::invalidate`] notifications.
///
/// # Invariants
///
/// - `raw` is a live attachment of `buf`, created by `dma_buf_mapping_attach()` with
///   `Self::importer_ops()` and `importer` as its importer ops and data, negotiated to the type
///   `M`; it is detached only in `drop`.
/// - `importer` stays at the same address until after the attachment is detached.
pub struct Attachment<M: MappingType, I: Importer> {
    raw: NonNull<bindings::dma_buf_attachment>,
    buf: ARef<DmaBuf>,
    importer: Pin<KBox<I>>,
    _dev: ARef<Device>,
    _type: PhantomData<M>,
}

// SAFETY: The attachment can be detached from any task, and `I` is `Send`.
unsafe impl<M: MappingType, I: Importer> Send for Attachment<M, I> {}

// SAFETY: Methods taking `&self` only read constant fields or call C functions that do their own
// locking, and `I` is `Sync`.
unsafe impl<M: MappingType, I: Importer> Sync for Attachment<M, I> {}

struct ImporterVTable<I: Importer>(PhantomData<I>);

impl<I: Importer> ImporterVTable<I> {
    const OPS: bindings::dma_buf_attach_ops = bindings::dma_buf_attach_ops {
        // Peer-to-peer support is part of the importer's SGT entry.
        allow_peer2peer: false,
        invalidate_mappings: Some(Self::invalidate_mappings),
    };

    /// # Safety
    ///
    /// `attach` is an attachment created by [`DmaBuf::attach`] for the importer type `I`, and is
    /// not detached yet.
    unsafe extern "C" fn invalidate_mappings(attach: *mut bindings::dma_buf_attachment) {
        // SAFETY: By the safety requirements, `attach` is valid and its `importer_priv` is the
        // `I` owned by the `Attachment`, which lives until after the detach.
        let importer = unsafe { &*(*attach).importer_priv.cast::<I>() };
        importer.invalidate();
    }
}

impl DmaBuf {
    /// Attaches the device `dev` of an importer to the buffer.
    ///
    /// `types` lists the mapping types the importer can use, best first; the exporter's order of
    /// preference wins, the importer's breaks ties. `importer` is the importer's data for this
    /// attachment; it receives the invalidate notifications.
    ///
    /// Returns the attachment, typed by the negotiated mapping type, or [`EOPNOTSUPP`] if the
    /// exporter offers none of `types`, or the error of the exporter's attach callback.
    pub fn attach<I: Importer>(
        &self,
        dev: &Device<Bound>,
        types: &[ImportType<'_>],
        importer: I,
    ) -> Result<Negotiated<I>> {
        if types.is_empty() {
            return Err(EINVAL);
        }
        let mut imp = KVec::with_capacity(types.len(), GFP_KERNEL)?;
        for ty in types {
            imp.push(ty.to_raw(), GFP_KERNEL)?;
        }
        let importer = KBox::pin(importer, GFP_KERNEL)?;
        let ops: &'static bindings::dma_buf_attach_ops = &ImporterVTable::<I>::OPS;

        // SAFETY: `self` is a valid buffer, `dev` a valid device, `imp` holds `imp.len()` valid
        // entries for the duration of the call, and `importer` stays at its address until the
        // attachment is detached (it moves into the `Attachment`, which detaches before dropping
        // it).
        let raw = from_err_ptr(unsafe {
            bindings::dma_buf_mapping_attach(
                self.as_raw(),
                dev.as_raw(),
                imp.as_ptr(),
                imp.len(),
                ops,
                (&raw const *importer).cast_mut().cast(),
            )
        })?;
        // `dma_buf_mapping_attach()` returns an attachment or an error pointer.
        let raw = NonNull::new(raw).ok_or(EINVAL)?;

        // SAFETY: `raw` is a valid attachment; its mapping type is constant after the attach.
        let ty = unsafe { (*raw.as_ptr()).map_type.type_ };
        let buf = ARef::from(self);
        let dev = ARef::from(&**dev);

        // INVARIANT: `raw` was just created for `buf` with `ops` and `importer`, and the type is
        // checked before the `Attachment` is built.
        Ok(if mapping::is_type::<Sgt>(ty) {
            Negotiated::Sgt(Attachment::new(raw, buf, importer, dev))
        } else {
            // The core only picks a type both sides listed; this is a bug in the exporter.
            // SAFETY: `raw` is an attachment of `self` that is not used afterwards.
            unsafe { bindings::dma_buf_detach(self.as_raw(), raw.as_ptr()) };
            return Err(EINVAL);
        })
    }
}

impl<M: MappingType, I: Importer> Attachment<M, I> {
    fn new(
        raw: NonNull<bindings::dma_buf_attachment>,
        buf: ARef<DmaBuf>,
        importer: Pin<KBox<I>>,
        dev: ARef<Device>,
    ) -> Self {
        Self {
            raw,
            buf,
            importer,
            _dev: dev,
            _type: PhantomData,
        }
    }

    /// Returns the raw attachment.
    #[inline]
    pub(crate) fn as_raw(&self) -> *mut bindings::dma_buf_attachment {
        self.raw.as_ptr()
    }

    /// Returns the buffer this attachment belongs to.
    #[inline]
    pub fn buf(&self) -> &DmaBuf {
        &self.buf
    }

    /// Returns the importer's data.
    #[inline]
    pub fn importer(&self) -> Pin<&I> {
        self.importer.as_ref()
    }

    /// Returns whether the attachment can use peer-to-peer addresses.
    #[inline]
    pub fn peer2peer(&self) -> bool {
        // SAFETY: By the type invariants, the attachment is valid; `peer2peer` is constant after
        // the attach.
        unsafe { (*self.as_raw()).peer2peer }
    }

    /// Checks that `resv` holds the reservation lock of the buffer of this attachment.
    pub(crate) fn check_locked(&self, resv: &ResvGuard<'_>) -> Result {
        if resv.is_locked(&self.buf) {
            Ok(())
        } else {
            Err(EINVAL)
        }
    }
}

impl<M: MappingType, I: Importer> Drop for Attachment<M, I> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, `raw` is a live attachment of `buf`. No mapping is left:
        // mappings borrow the attachment. After this no invalidate callback can reach
        // `importer`, which is dropped afterwards.
        unsafe { bindings::dma_buf_detach(self.buf.as_raw(), self.as_raw()) };
    }
}
