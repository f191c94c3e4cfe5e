// SPDX-License-Identifier: GPL-2.0

//! Importer attachments.
//!
//! C header: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h)
//!
//! An importer attaches its device to a [`DmaBuf`] with [`DmaBuf::attach`] or
//! [`DmaBuf::attach_pinned`], listing the mapping types it can use. The result is an
//! [`Attachment`] typed by the negotiated mapping type; it detaches when dropped. It keeps a
//! reference to the device, which C keeps a pointer to; the importer must drop it before the
//! device is unbound, e.g. by keeping it in its driver data.
//!
//! The attachment owns its mapping. The importer maps it under the reservation lock and keeps
//! using the addresses after it releases the lock: the mapping stays until the importer unmaps
//! it, the exporter invalidates it, or the attachment is dropped. Reading the mapping needs the
//! exclusive proof of the lock ([`DmaResvLocked`]) again, so no reference to it is left when the
//! abstraction unmaps it.
//!
//! - Dynamic attachments ([`DmaBuf::attach`]) follow the buffer when the exporter moves or
//!   revokes it. The exporter invalidates the mappings under the lock (this can happen inside any
//!   call into the exporter, [`Attachment::map`] included); the importer's
//!   [`Importer::invalidate`] runs first and stops its device's use of the addresses, then the
//!   abstraction unmaps. [`Attachment::map`] waits for the fences of pending moves and clears
//!   before it returns a new mapping.
//! - Pinned attachments ([`DmaBuf::attach_pinned`]) are for importers that cannot take
//!   invalidations. The C core pins the buffer for their mappings through the exporter's pin
//!   callback, if it has one; exporters without one (Rust exporters have none) do not move
//!   their buffers, and exporters that must be able to revoke them refuse pinned attachments.
//!
//! # Examples
//!
//! An importer of scatter-gather tables. It matches on the negotiated type (more types may come),
//! maps under the lock and keeps the addresses until the exporter invalidates the mapping:
//!
//! ```
//! use kernel::{
//!     device::{Bound, Device},
//!     dma::DataDirection,
//!     dma_buf::{Attachment, DmaBuf, ImportType, Importer, Invalidation, Negotiated, Sgt},
//!     prelude::*,
//!     sync::atomic::{Atomic, Relaxed},
//! };
//!
//! struct MyImporter {
//!     dma_len: Atomic<usize>,
//! }
//!
//! impl Importer for MyImporter {
//!     fn invalidate(&self, inv: &Invalidation<'_>) {
//!         // Stop the device's use of the addresses, in bounded time: the mapping goes away when
//!         // this returns.
//!         if inv.sgt().is_some() {
//!             self.dma_len.store(0, Relaxed);
//!         }
//!     }
//! }
//!
//! fn import(fd: u32, dev: &Device<Bound>) -> Result<Attachment<Sgt, MyImporter>> {
//!     let buf = DmaBuf::get(fd)?;
//!     let types = [ImportType::Sgt { p2p: false }];
//!     let importer = MyImporter { dma_len: Atomic::new(0) };
//!     let Negotiated::Sgt(attach) = buf.attach(dev, &types, importer)? else {
//!         return Err(EOPNOTSUPP);
//!     };
//!     let mut resv = buf.lock();
//!     let sgt = attach.map(dev, resv.locked(), DataDirection::ToDevice)?;
//!     // Program the device with the addresses here.
//!     let len = sgt.iter().map(|entry| entry.dma_len() as usize).sum();
//!     attach.importer().dma_len.store(len, Relaxed);
//!     drop(resv);
//!     // The mapping stays when the lock is released; the attachment unmaps and detaches when it
//!     // is dropped.
//!     Ok(attach)
//! }
//! ```

use super::{
    mapping::{self, ImportType, MappingType, Negotiated, Sgt},
    DmaBuf, DmaResvHeld, DmaResvLocked, DmaResvUsage, SgtMapping,
};
use crate::{
    bindings,
    device::{Bound, Device},
    dma::DataDirection,
    error::from_err_ptr,
    prelude::*,
    sync::aref::ARef,
};
use core::{cell::UnsafeCell, marker::PhantomData, ptr::NonNull};

/// The importer side of a dynamic attachment.
///
/// Implemented by the importer's per-attachment data, which the [`Attachment`] owns.
pub trait Importer: Send + Sync + Sized + 'static {
    /// Called when the exporter moves or revokes the buffer, with its reservation lock held.
    ///
    /// `inv` has the proof of the lock and the attachment's mapping, if it had one. The importer
    /// stops its device's use of the addresses, in bounded time (the exporter may hold other
    /// locks, and its device may wait): when this returns, the abstraction unmaps. To use the
    /// buffer again, the importer maps again, under the lock; after a revoke the new mapping
    /// fails.
    ///
    /// This can run inside any call into the exporter made with the lock held, including
    /// [`Attachment::map`] of this attachment. It must not take other reservation locks or
    /// drop an attachment of a buffer with this reservation object: both take locks the caller
    /// may hold.
    fn invalidate(&self, inv: &Invalidation<'_>);
}

/// What [`Importer::invalidate`] gets: proof of the lock, and the mapping going away.
///
/// The proof is a [`DmaResvHeld`], which gives no [`DmaResvLocked`], so the importer cannot map,
/// unmap or invalidate from the callback.
pub struct Invalidation<'a> {
    resv: &'a DmaResvHeld<'a>,
    sgt: Option<&'a SgtMapping>,
}

impl<'a> Invalidation<'a> {
    /// Returns the proof of the reservation lock, which the caller of the invalidation holds.
    #[inline]
    pub fn resv(&self) -> &'a DmaResvHeld<'a> {
        self.resv
    }

    /// Returns the SGT mapping of the attachment that is about to be unmapped, if it had one.
    #[inline]
    pub fn sgt(&self) -> Option<&'a SgtMapping> {
        self.sgt
    }
}

/// The importer data of a pinned attachment, from [`DmaBuf::attach_pinned`].
///
/// Pinned attachments get no invalidations: the buffer does not move while they have it mapped.
pub struct Pinned;

/// The mapping an attachment holds.
pub(crate) enum MappingSlot {
    None,
    Sgt(SgtMapping),
}

/// What C points to as the importer data of an attachment.
///
/// # Invariants
///
/// `mapping` is only accessed with the reservation lock of the attachment's buffer held, by the
/// task holding it, through the functions below; a reference from [`AttachInner::mapping`] is
/// only used while nothing can call [`AttachInner::replace`], see there.
struct AttachInner<I> {
    importer: I,
    mapping: UnsafeCell<MappingSlot>,
}

// SAFETY: `importer` is `Send`, and the mapping holds no thread-bound state.
unsafe impl<I: Send> Send for AttachInner<I> {}

// SAFETY: `importer` is `Sync`; `mapping` is only accessed under the reservation lock, by the
// type invariants.
unsafe impl<I: Sync> Sync for AttachInner<I> {}

impl<I> AttachInner<I> {
    /// Puts `new` into the mapping slot and returns what was there.
    ///
    /// The caller drops the old mapping (which unmaps) after this returns, with the lock still
    /// held: dropping it calls into the exporter, which may invalidate, and so replace again.
    ///
    /// # Safety
    ///
    /// The current task holds the reservation lock of the attachment's buffer, and no reference
    /// returned by [`AttachInner::mapping`] is in use.
    unsafe fn replace(&self, new: MappingSlot) -> MappingSlot {
        // SAFETY: Exclusive by the safety requirements; the reference ends within this function.
        unsafe { core::mem::replace(&mut *self.mapping.get(), new) }
    }

    /// Returns the mapping slot.
    ///
    /// # Safety
    ///
    /// The current task holds the reservation lock of the attachment's buffer, and nothing calls
    /// [`AttachInner::replace`] while the returned reference is in use.
    unsafe fn mapping(&self) -> &MappingSlot {
        // SAFETY: No mutable reference exists while the returned one is in use, by the safety
        // requirements.
        unsafe { &*self.mapping.get() }
    }
}

/// An attachment of an importer's device to a [`DmaBuf`], negotiated to mapping type `M`.
///
/// Created by [`DmaBuf::attach`] (`I` is the importer's data, which the attachment owns and which
/// receives the [`Importer::invalidate`] notifications) or by [`DmaBuf::attach_pinned`] (`I` is
/// [`Pinned`]). Unmapped and detached when dropped; the drop takes the reservation lock.
///
/// # Invariants
///
/// - `raw` is a live attachment of `buf`, created by `dma_buf_mapping_attach()` with `inner` as
///   its importer data (and with `ImporterVTable::<I>::OPS` as importer ops unless `I` is
///   [`Pinned`]), negotiated to the type `M`; it is detached only in `drop`.
/// - `inner` stays at the same address until after the attachment is detached.
/// - `dev` is the device C keeps pointers to, `attach->dev` and the SGT entry's `dma_dev`.
/// - A reference from `inner.mapping()` is only handed out for as long as a [`DmaResvLocked`]
///   of the buffer's lock is borrowed: no replace runs meanwhile, as replacing needs such a
///   proof or happens in an invalidation, which needs one too (see
///   [`Exported::invalidate_mappings`]) or a call into the exporter, which takes one.
///
/// [`Exported::invalidate_mappings`]: super::Exported::invalidate_mappings
#[must_use = "dropping the attachment detaches it"]
pub struct Attachment<M: MappingType, I> {
    raw: NonNull<bindings::dma_buf_attachment>,
    buf: ARef<DmaBuf>,
    inner: Pin<KBox<AttachInner<I>>>,
    dev: ARef<Device>,
    _type: PhantomData<M>,
}

// SAFETY: The attachment can be detached from any task, and `I` is `Send`.
unsafe impl<M: MappingType, I: Send> Send for Attachment<M, I> {}

// SAFETY: Methods taking `&self` read constant fields, call C functions that do their own
// locking, or need the reservation lock; `I` is `Sync`.
unsafe impl<M: MappingType, I: Sync> Sync for Attachment<M, I> {}

struct ImporterVTable<I: Importer>(PhantomData<I>);

impl<I: Importer> ImporterVTable<I> {
    const OPS: bindings::dma_buf_attach_ops = bindings::dma_buf_attach_ops {
        // Peer-to-peer support is part of the importer's SGT entry.
        allow_peer2peer: false,
        invalidate_mappings: Some(Self::invalidate_mappings),
    };

    /// # Safety
    ///
    /// `attach` is an attachment created by [`DmaBuf::attach`] for the importer type `I`, not
    /// detached yet, and the reservation lock of its buffer is held.
    unsafe extern "C" fn invalidate_mappings(attach: *mut bindings::dma_buf_attachment) {
        // SAFETY: By the safety requirements, `attach` is valid and its `importer_priv` is the
        // `AttachInner<I>` owned by the `Attachment`, which lives until after the detach.
        let inner = unsafe { &*(*attach).importer_priv.cast::<AttachInner<I>>() };
        // SAFETY: The buffer of a live attachment is valid.
        let buf = unsafe { DmaBuf::from_raw((*attach).dmabuf) };
        // SAFETY: The caller of the invalidation holds the lock for the duration of the callback.
        let resv = unsafe { DmaResvHeld::new(buf.resv()) };
        // SAFETY: The lock is held by this task. No reference from `mapping()` is in use: those
        // only live while a `DmaResvLocked` is borrowed, and an invalidation needs one
        // (`Exported::invalidate_mappings`) or happens in a call into the exporter, which takes
        // one and holds no such reference during the call.
        let old = unsafe { inner.replace(MappingSlot::None) };
        let sgt = match &old {
            MappingSlot::Sgt(sgt) => Some(sgt),
            MappingSlot::None => None,
        };
        inner
            .importer
            .invalidate(&Invalidation { resv: &resv, sgt });
        // Unmaps, with the lock held: the importer's device is done with the addresses.
        drop(old);
    }
}

impl DmaBuf {
    /// Attaches the device `dev` of an importer to the buffer.
    ///
    /// `types` lists the mapping types the importer can use, best first; the exporter's order of
    /// preference wins, the importer's breaks ties. Mappings are for `dev`. `importer` is the
    /// importer's data for this attachment; it receives the invalidate notifications.
    ///
    /// Returns the attachment, typed by the negotiated mapping type, [`EINVAL`] if `types` is
    /// empty, [`EOPNOTSUPP`] if the exporter offers none of `types`, or the error of the
    /// exporter's attach callback. Takes the buffer's reservation lock: not to be called with it
    /// held.
    pub fn attach<I: Importer>(
        &self,
        dev: &Device<Bound>,
        types: &[ImportType],
        importer: I,
    ) -> Result<Negotiated<I>> {
        self.attach_with(dev, types, importer, Some(&ImporterVTable::<I>::OPS))
    }

    /// Attaches the device `dev` of an importer that cannot take invalidations.
    ///
    /// Like [`DmaBuf::attach`], but the buffer must stay in place while it is mapped: the C core
    /// pins it through the exporter's pin callback, if it has one. Exporters that must be able to
    /// revoke their buffers refuse pinned attachments, typically with [`EOPNOTSUPP`].
    pub fn attach_pinned(
        &self,
        dev: &Device<Bound>,
        types: &[ImportType],
    ) -> Result<Negotiated<Pinned>> {
        self.attach_with(dev, types, Pinned, None)
    }

    fn attach_with<I: Send + Sync + 'static>(
        &self,
        dev: &Device<Bound>,
        types: &[ImportType],
        importer: I,
        ops: Option<&'static bindings::dma_buf_attach_ops>,
    ) -> Result<Negotiated<I>> {
        if types.is_empty() {
            return Err(EINVAL);
        }
        let mut imp = KVec::with_capacity(types.len(), GFP_KERNEL)?;
        for ty in types {
            imp.push(ty.to_raw(dev), GFP_KERNEL)?;
        }
        let inner = KBox::pin(
            AttachInner {
                importer,
                mapping: UnsafeCell::new(MappingSlot::None),
            },
            GFP_KERNEL,
        )?;

        // SAFETY: `self` is a valid buffer, `dev` a valid device, `imp` holds `imp.len()` valid
        // entries for the duration of the call, `ops` is NULL or lives forever, and `inner` stays
        // at its address until the attachment is detached (it moves into the `Attachment`, which
        // detaches before dropping it). C keeps pointers to `dev` only, which the `Attachment`
        // holds a reference to.
        let raw = from_err_ptr(unsafe {
            bindings::dma_buf_mapping_attach(
                self.as_raw(),
                dev.as_raw(),
                imp.as_ptr(),
                imp.len(),
                ops.map_or(core::ptr::null(), |ops| ops),
                (&raw const *inner).cast_mut().cast(),
            )
        })?;
        // `dma_buf_mapping_attach()` returns an attachment or an error pointer.
        let raw = NonNull::new(raw).ok_or(EINVAL)?;

        // SAFETY: `raw` is a valid attachment; its mapping type is constant after the attach.
        let ty = unsafe { (*raw.as_ptr()).map_type.type_ };
        if !mapping::is_type::<Sgt>(ty) {
            // The core only picks a type both sides listed; this is a bug in the exporter.
            // SAFETY: `raw` is an attachment of `self` that is not used afterwards.
            unsafe { bindings::dma_buf_detach(self.as_raw(), raw.as_ptr()) };
            return Err(EINVAL);
        }

        // INVARIANT: `raw` was just created for `self` with `ops` and `inner`, of the SGT type
        // (checked above), with `dev` as its device and DMA device.
        Ok(Negotiated::Sgt(Attachment {
            raw,
            buf: self.into(),
            inner,
            dev: ARef::from(&**dev),
            _type: PhantomData,
        }))
    }
}

impl<M: MappingType, I> Attachment<M, I> {
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

    /// Returns the importer's device.
    #[inline]
    pub fn dev(&self) -> &Device {
        &self.dev
    }

    /// Returns the importer's data.
    #[inline]
    pub fn importer(&self) -> &I {
        &self.inner.importer
    }

    /// Returns whether the attachment can use peer-to-peer addresses.
    #[inline]
    pub fn peer2peer(&self) -> bool {
        // SAFETY: By the type invariants, the attachment is valid; `peer2peer` is constant after
        // the attach.
        unsafe { (*self.as_raw()).peer2peer }
    }

    /// Checks that `locked` is the proof of the lock of this attachment's buffer.
    fn check(&self, locked: &DmaResvLocked<'_>) -> Result {
        if locked.holds(self.buf.resv()) {
            Ok(())
        } else {
            Err(EINVAL)
        }
    }

    /// Returns whether the attachment is mapped.
    ///
    /// Returns [`EINVAL`] if `locked` is the proof of the lock of another reservation object.
    pub fn is_mapped(&self, locked: DmaResvLocked<'_>) -> Result<bool> {
        self.check(&locked)?;
        // SAFETY: The lock is held (checked above), and `locked` is borrowed for this call, so
        // nothing replaces the slot while the reference is used, by the type invariants.
        Ok(!matches!(
            unsafe { self.inner.mapping() },
            MappingSlot::None
        ))
    }

    /// Unmaps the attachment, if it is mapped.
    ///
    /// The importer's device must no longer use the addresses of the mapping. Returns [`EINVAL`]
    /// if `locked` is the proof of the lock of another reservation object.
    pub fn unmap(&self, locked: DmaResvLocked<'_>) -> Result {
        self.check(&locked)?;
        // SAFETY: The lock is held (checked above), and no reference from `mapping()` is in use:
        // it would borrow a proof of the lock, and `locked` is the only one.
        let old = unsafe { self.inner.replace(MappingSlot::None) };
        // Unmaps, with the lock held.
        drop(old);
        Ok(())
    }
}

impl<I: 'static> Attachment<Sgt, I> {
    /// Maps the buffer for the importer's device, or returns the mapping it already has.
    ///
    /// `dev` must be the attachment's device, bound: the exporter DMA maps for it. `locked` must
    /// be the proof of the buffer's reservation lock; the returned mapping borrows it. The
    /// mapping itself stays after the lock is released, until [`Attachment::unmap`], an
    /// invalidation by the exporter or the drop of the attachment; reading it needs the lock
    /// again ([`Attachment::mapping`]).
    ///
    /// A new mapping of a dynamic attachment is returned once the fences of pending moves and
    /// clears ([`DmaResvUsage::Kernel`]) have signaled, so that the device can use it right away.
    /// The exporter may invalidate from inside this call ([`Importer::invalidate`] then runs
    /// without a mapping to give back).
    ///
    /// Returns [`EINVAL`] if `locked` is the proof of the lock of another reservation object,
    /// `dev` is not the attachment's device or `dir` is [`DataDirection::None`], [`EBUSY`] if the
    /// attachment is mapped with another direction, [`ENODEV`] if the exporter revoked the
    /// buffer, [`ERESTARTSYS`] if a signal interrupted the wait (nothing stays mapped then), or
    /// the exporter's error.
    pub fn map<'a>(
        &'a self,
        dev: &Device<Bound>,
        locked: DmaResvLocked<'a>,
        dir: DataDirection,
    ) -> Result<&'a SgtMapping> {
        self.check(&locked)?;
        if dir == DataDirection::None || !core::ptr::eq(dev.as_raw(), self.dev.as_raw()) {
            return Err(EINVAL);
        }
        // SAFETY: The lock is held (checked above), and `locked` is borrowed for `'a`, so nothing
        // replaces the slot while the reference is used, by the type invariants.
        if let MappingSlot::Sgt(sgt) = unsafe { self.inner.mapping() } {
            return if sgt.dir() == dir {
                Ok(sgt)
            } else {
                Err(EBUSY)
            };
        }
        // No reference to the slot is held across the call: the exporter may invalidate.
        // SAFETY: By the type invariants, the attachment is live and of the SGT type, and the
        // reservation lock of its buffer is held (checked above).
        let sgt =
            from_err_ptr(unsafe { bindings::dma_buf_map_attachment(self.as_raw(), dir.into()) })?;
        // `dma_buf_map_attachment()` returns a table or an error pointer.
        let sgt = NonNull::new(sgt).ok_or(EINVAL)?;
        // SAFETY: `sgt` was just mapped from this live attachment with `dir`, and is unmapped only
        // by dropping the mapping, which happens with the lock held, before the detach.
        let new = unsafe { SgtMapping::new(self.as_raw(), sgt, dir) };

        // The C core waits for static (pinned) importers; dynamic ones wait themselves.
        if self.is_dynamic() {
            if let Err(e) = locked.resv().wait(DmaResvUsage::Kernel, true, None) {
                // Unmaps, with the lock held.
                drop(new);
                return Err(e);
            }
        }
        // SAFETY: The lock is held, and no reference from `mapping()` is in use: it would borrow a
        // proof of the lock, and `locked` is the only one.
        let old = unsafe { self.inner.replace(MappingSlot::Sgt(new)) };
        // Nothing, unless the exporter mapped for somebody in its invalidation.
        drop(old);
        self.mapping(locked)?.ok_or(EINVAL)
    }

    /// Returns the mapping of the attachment, if it has one.
    ///
    /// Returns [`EINVAL`] if `locked` is the proof of the lock of another reservation object.
    pub fn mapping<'a>(&'a self, locked: DmaResvLocked<'a>) -> Result<Option<&'a SgtMapping>> {
        self.check(&locked)?;
        // SAFETY: The lock is held (checked above), and `locked` is borrowed for `'a`, so nothing
        // replaces the slot while the reference is used, by the type invariants.
        Ok(match unsafe { self.inner.mapping() } {
            MappingSlot::Sgt(sgt) => Some(sgt),
            MappingSlot::None => None,
        })
    }

    /// Returns whether the attachment is dynamic, i.e. takes invalidations.
    fn is_dynamic(&self) -> bool {
        // SAFETY: By the type invariants, the attachment is valid; `importer_ops` is constant.
        !unsafe { (*self.as_raw()).importer_ops }.is_null()
    }
}

impl<M: MappingType, I> Drop for Attachment<M, I> {
    fn drop(&mut self) {
        {
            let _resv = self.buf.lock();
            // SAFETY: The lock is held, and no reference from `mapping()` is in use: they borrow
            // the attachment, which is being dropped.
            let old = unsafe { self.inner.replace(MappingSlot::None) };
            // Unmaps, with the lock held.
            drop(old);
        }
        // SAFETY: By the type invariants, `raw` is a live attachment of `buf`, with no mapping
        // left. After this no invalidate callback can reach `inner`, which is dropped afterwards,
        // before the device.
        unsafe { bindings::dma_buf_detach(self.buf.as_raw(), self.as_raw()) };
    }
}
