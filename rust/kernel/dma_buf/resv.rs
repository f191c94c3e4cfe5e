// SPDX-License-Identifier: GPL-2.0

//! Reservation objects.
//!
//! C header: [`include/linux/dma-resv.h`](srctree/include/linux/dma-resv.h)
//!
//! A reservation object ([`DmaResv`]) is a wound/wait mutex and the fences of the operations
//! pending on a buffer. Every dma-buf has one, shared with other buffers if its exporter says so
//! (DRM shares the one of the GEM object). Its lock serialises mapping, moving and revoking the
//! buffer; the fences tell when the device operations on it have finished.
//!
//! - [`DmaResv::lock`] and [`DmaResv::lock_interruptible`] lock one object and return a
//!   [`DmaResvGuard`]. Functions that hand out data the lock protects take a [`DmaResvLocked`],
//!   the exclusive proof of the lock, borrowed from the guard.
//! - [`DmaResvSet::lock_all`] locks several objects with a wound/wait acquire context: it backs
//!   off and retries on a deadlock against another task, so the order of the objects does not
//!   matter.
//! - [`DmaResv::wait`] waits for the fences of a usage class.

use crate::{
    bindings,
    error::to_result,
    prelude::*,
    task::MAX_SCHEDULE_TIMEOUT,
    time::Jiffies,
    types::{NotThreadSafe, Opaque},
};
use core::ptr;

/// A reservation object.
///
/// Wraps the C `struct dma_resv`. Only ever used by reference: the object belongs to a dma-buf or
/// to whatever embeds it.
///
/// # Invariants
///
/// A `&DmaResv` points to an initialized `struct dma_resv` that stays initialized for the lifetime
/// of the reference.
#[repr(transparent)]
pub struct DmaResv(Opaque<bindings::dma_resv>);

// SAFETY: A reservation object is not tied to a task; its lock and fence lists work from any task.
unsafe impl Send for DmaResv {}

// SAFETY: All methods taking `&self` use the object's own lock or its RCU-protected fence lists.
unsafe impl Sync for DmaResv {}

/// How the fences of a reservation object are used, from the most to the least restrictive.
///
/// Waiting for a usage class waits for the fences of that class and of every class listed before
/// it. Corresponds to the C `enum dma_resv_usage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum DmaResvUsage {
    /// Memory management by the kernel: moves and clears of the buffer. Every user must wait for
    /// these before it accesses the buffer.
    Kernel = bindings::dma_resv_usage_DMA_RESV_USAGE_KERNEL,
    /// Implicitly synchronised writes.
    Write = bindings::dma_resv_usage_DMA_RESV_USAGE_WRITE,
    /// Implicitly synchronised reads.
    Read = bindings::dma_resv_usage_DMA_RESV_USAGE_READ,
    /// Everything else, including explicitly synchronised accesses: all fences.
    Bookkeep = bindings::dma_resv_usage_DMA_RESV_USAGE_BOOKKEEP,
}

impl DmaResv {
    /// Creates a reference to a `struct dma_resv` from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to an initialized `struct dma_resv` that stays initialized for `'a`.
    #[inline]
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::dma_resv) -> &'a Self {
        // SAFETY: `DmaResv` is `repr(transparent)` over `Opaque<dma_resv>`, and the caller
        // guarantees the object is valid for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Returns the raw `struct dma_resv` pointer.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::dma_resv {
        self.0.get()
    }

    /// Locks the reservation object, sleeping until it is free.
    ///
    /// The lock is released when the returned guard is dropped. Not for use while holding the lock
    /// of another reservation object: use [`DmaResvSet::lock_all`] for that.
    pub fn lock(&self) -> DmaResvGuard<'_> {
        // SAFETY: By the type invariants, the object is initialized. Without an acquire context
        // `dma_resv_lock()` cannot fail.
        let ret = unsafe { bindings::dma_resv_lock(self.as_raw(), ptr::null_mut()) };
        debug_assert_eq!(ret, 0);
        // SAFETY: The lock was acquired above; the guard releases it.
        unsafe { DmaResvGuard::new(self) }
    }

    /// Locks the reservation object, sleeping until it is free or a signal arrives.
    ///
    /// Returns [`EINTR`] if a signal interrupted the wait.
    pub fn lock_interruptible(&self) -> Result<DmaResvGuard<'_>> {
        // SAFETY: By the type invariants, the object is initialized.
        to_result(unsafe {
            bindings::dma_resv_lock_interruptible(self.as_raw(), ptr::null_mut())
        })?;
        // SAFETY: The lock was acquired above; the guard releases it.
        Ok(unsafe { DmaResvGuard::new(self) })
    }

    /// Locks the reservation object if it is free, without sleeping.
    #[must_use = "the lock is released when the guard is dropped"]
    pub fn try_lock(&self) -> Option<DmaResvGuard<'_>> {
        // SAFETY: By the type invariants, the object is initialized.
        if unsafe { bindings::dma_resv_trylock(self.as_raw()) } {
            // SAFETY: The lock was acquired above; the guard releases it.
            Some(unsafe { DmaResvGuard::new(self) })
        } else {
            None
        }
    }

    /// Waits for the fences of `usage` (and of the stricter classes) to signal.
    ///
    /// Waits at most `timeout` jiffies, or without a limit if `timeout` is `None`. Needs no lock.
    /// Returns the jiffies left (at least 1) once the fences have signaled, [`ETIMEDOUT`] if they
    /// did not in time, and [`ERESTARTSYS`] if `interruptible` and a signal arrived.
    pub fn wait(
        &self,
        usage: DmaResvUsage,
        interruptible: bool,
        timeout: Option<Jiffies>,
    ) -> Result<Jiffies> {
        // `MAX_SCHEDULE_TIMEOUT` is positive; longer timeouts are no limit either.
        let max = MAX_SCHEDULE_TIMEOUT as Jiffies;
        let timeout = timeout.map_or(max, |t| t.min(max));
        // SAFETY: By the type invariants, the object is initialized; waiting needs no lock.
        let ret = unsafe {
            bindings::dma_resv_wait_timeout(self.as_raw(), usage as u32, interruptible, timeout)
        };
        match ret {
            0 => Err(ETIMEDOUT),
            // Errors are small negative numbers; `from_errno` only takes `c_int`.
            ret if ret < 0 => Err(Error::from_errno(ret as c_int)),
            ret => Ok(ret as Jiffies),
        }
    }

    /// Returns whether every fence of `usage` (and of the stricter classes) has signaled.
    pub fn is_signaled(&self, usage: DmaResvUsage) -> bool {
        // SAFETY: By the type invariants, the object is initialized; testing needs no lock.
        unsafe { bindings::dma_resv_test_signaled(self.as_raw(), usage as u32) }
    }
}

impl PartialEq for DmaResv {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        ptr::eq(self.as_raw(), other.as_raw())
    }
}

impl Eq for DmaResv {}

/// A held lock of a [`DmaResv`].
///
/// Returned by the lock functions; unlocks when dropped. Functions that only need the lock held
/// take a reference to a guard. Functions that hand out data the lock protects, or that change
/// it, take a [`DmaResvLocked`] borrowed from the guard instead.
///
/// # Invariants
///
/// The lock of `resv` is held by the current task for the lifetime of the guard.
#[must_use = "the lock is released when the guard is dropped"]
pub struct DmaResvGuard<'a> {
    resv: &'a DmaResv,
    _not_send: NotThreadSafe,
}

impl<'a> DmaResvGuard<'a> {
    /// Creates a guard for a lock the current task holds.
    ///
    /// # Safety
    ///
    /// The current task holds the lock of `resv`, and the new guard is what releases it (or it is
    /// never dropped).
    unsafe fn new(resv: &'a DmaResv) -> Self {
        // INVARIANT: By the safety requirements.
        Self {
            resv,
            _not_send: NotThreadSafe,
        }
    }

    /// Returns the reservation object whose lock is held.
    #[inline]
    pub fn resv(&self) -> &'a DmaResv {
        self.resv
    }

    /// Returns whether this guard holds the lock of `resv`.
    #[inline]
    pub fn holds(&self, resv: &DmaResv) -> bool {
        self.resv == resv
    }

    /// Returns the proof of the lock that functions handing out data it protects take.
    ///
    /// It borrows the guard mutably: while it, or what it was given for, is in use, there is no
    /// other proof of this lock.
    #[inline]
    pub fn locked(&mut self) -> DmaResvLocked<'_> {
        // INVARIANT: The guard holds the lock, and is borrowed mutably for the proof's lifetime.
        DmaResvLocked::new(self.resv)
    }
}

impl Drop for DmaResvGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariants, the lock is held by this task.
        unsafe { bindings::dma_resv_unlock(self.resv.as_raw()) };
    }
}

/// Proof that the current task holds the lock of a [`DmaResv`] that somebody else took.
///
/// What callbacks that C calls with the lock held get, such as
/// [`Importer::invalidate`](super::Importer::invalidate). Unlike a guard, it does not unlock, and
/// it gives no [`DmaResvLocked`]: the lock holder may have lent that out.
///
/// # Invariants
///
/// The current task holds the lock of `resv` for `'a`.
pub struct DmaResvHeld<'a> {
    resv: &'a DmaResv,
    _not_send: NotThreadSafe,
}

impl<'a> DmaResvHeld<'a> {
    /// Creates the proof for a callback.
    ///
    /// # Safety
    ///
    /// The current task holds the lock of `resv` for `'a`.
    pub(crate) unsafe fn new(resv: &'a DmaResv) -> Self {
        // SAFETY: `resv` is valid; `dma_resv_assert_held()` only checks, with lockdep.
        unsafe { bindings::dma_resv_assert_held(resv.as_raw()) };
        // INVARIANT: By the safety requirements.
        Self {
            resv,
            _not_send: NotThreadSafe,
        }
    }

    /// Returns the reservation object whose lock is held.
    #[inline]
    pub fn resv(&self) -> &'a DmaResv {
        self.resv
    }

    /// Returns whether this is the proof of the lock of `resv`.
    #[inline]
    pub fn holds(&self, resv: &DmaResv) -> bool {
        self.resv == resv
    }
}

/// Exclusive proof that the current task holds the lock of a [`DmaResv`].
///
/// Borrowed from a [`DmaResvGuard`] ([`DmaResvGuard::locked`]) or a [`DmaResvSet`]
/// ([`DmaResvSet::locked`]), which stay mutably borrowed while the proof lives and while what a
/// function returned for it is used. So a function that takes it can hand out references to data
/// the lock protects: nothing else that needs the proof, such as invalidating the mappings of a
/// buffer, can run until those references are gone. It is not a guard: it does not unlock.
///
/// # Invariants
///
/// The current task holds the lock of `resv` for `'a`, and no other `DmaResvLocked` of this lock
/// exists during `'a`.
#[must_use = "the proof is only useful when given to a function that needs it"]
pub struct DmaResvLocked<'a> {
    resv: &'a DmaResv,
    _not_send: NotThreadSafe,
}

impl<'a> DmaResvLocked<'a> {
    /// Creates a proof. The caller keeps the invariants.
    fn new(resv: &'a DmaResv) -> Self {
        Self {
            resv,
            _not_send: NotThreadSafe,
        }
    }

    /// Returns the reservation object whose lock is held.
    #[inline]
    pub fn resv(&self) -> &'a DmaResv {
        self.resv
    }

    /// Returns whether this is the proof of the lock of `resv`.
    #[inline]
    pub fn holds(&self, resv: &DmaResv) -> bool {
        self.resv == resv
    }
}

/// A wound/wait acquire context of the reservation object class.
///
/// # Invariants
///
/// `ctx` is initialized with `ww_acquire_init()` for `reservation_ww_class` and finished with
/// `ww_acquire_fini()` when dropped, after every lock taken with it is released.
#[pin_data(PinnedDrop)]
struct AcquireCtx {
    #[pin]
    ctx: Opaque<bindings::ww_acquire_ctx>,
}

impl AcquireCtx {
    fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            ctx <- Opaque::ffi_init(|ctx: *mut bindings::ww_acquire_ctx| {
                // SAFETY: `ctx` is valid for writes and pinned; `reservation_ww_class` is the
                // static class of every reservation object.
                unsafe { bindings::ww_acquire_init(ctx, &raw mut bindings::reservation_ww_class) }
            }),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for AcquireCtx {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariants, the context is initialized and nothing is locked with
        // it any more.
        unsafe { bindings::ww_acquire_fini(self.ctx.get()) };
    }
}

/// Several reservation objects locked together.
///
/// [`DmaResvSet::lock_all`] locks them with one wound/wait acquire context; dropping the set
/// unlocks them all. [`DmaResvSet::locked`] lends the proof of one of the locks.
///
/// # Invariants
///
/// The current task holds the lock of each object of `locked`, taken with `_ctx`, which is done
/// acquiring; each object is listed once.
#[must_use = "the locks are released when the set is dropped"]
pub struct DmaResvSet<'a> {
    locked: KVec<&'a DmaResv>,
    // Finished when dropped, after `drop` released the locks.
    _ctx: Pin<KBox<AcquireCtx>>,
    _not_send: NotThreadSafe,
}

/// Releases the locks of `locked`, taken with one acquire context.
///
/// # Safety
///
/// The current task holds the lock of each object of `locked`, once.
unsafe fn unlock_all(locked: &mut KVec<&DmaResv>) {
    for resv in locked.drain_all() {
        // SAFETY: By the safety requirements, the lock is held by this task.
        unsafe { bindings::dma_resv_unlock(resv.as_raw()) };
    }
}

impl<'a> DmaResvSet<'a> {
    /// Locks every object of `resvs`, in any order, without deadlocking against other tasks that
    /// lock several reservation objects.
    ///
    /// When another task holds one of the locks and has precedence, this releases the locks it
    /// took, sleeps on the contended one and starts over. Objects listed more than once (buffers
    /// can share one) are locked once. If `interruptible`, a signal ends the wait with
    /// [`EINTR`], with nothing locked.
    pub fn lock_all(resvs: &[&'a DmaResv], interruptible: bool) -> Result<Self> {
        let ctx = KBox::pin_init(AcquireCtx::new(), GFP_KERNEL)?;
        let mut locked = KVec::with_capacity(resvs.len(), GFP_KERNEL)?;
        // The object the last attempt lost on; it is locked first on the next attempt.
        let mut contended: Option<usize> = None;
        let res = loop {
            let mut deadlock = None;
            let mut error = None;
            for (i, resv) in resvs.iter().enumerate() {
                if contended == Some(i) {
                    continue;
                }
                // SAFETY: `resv` is initialized and `ctx` is an initialized, pinned acquire
                // context of the reservation class.
                let ret = unsafe {
                    if interruptible {
                        bindings::dma_resv_lock_interruptible(resv.as_raw(), ctx.ctx.get())
                    } else {
                        bindings::dma_resv_lock(resv.as_raw(), ctx.ctx.get())
                    }
                };
                match ret {
                    0 => {
                        if let Err(e) = Self::push(&mut locked, resv) {
                            error = Some(e);
                            break;
                        }
                    }
                    // Listed before (or the contended one, locked first): already held.
                    ret if ret == EALREADY.to_errno() => (),
                    ret if ret == EDEADLK.to_errno() => {
                        deadlock = Some(i);
                        break;
                    }
                    ret => {
                        error = Some(Error::from_errno(ret));
                        break;
                    }
                }
            }
            if let Some(e) = error {
                break Err(e);
            }
            let Some(i) = deadlock else {
                break Ok(());
            };
            // Back off: release everything, then sleep until the contended lock is free.
            // SAFETY: The objects of `locked` were locked above, once each.
            unsafe { unlock_all(&mut locked) };
            let resv = resvs[i];
            // SAFETY: As above; no lock of `ctx` is held, as the slow path requires.
            let ret = unsafe {
                if interruptible {
                    bindings::dma_resv_lock_slow_interruptible(resv.as_raw(), ctx.ctx.get())
                } else {
                    bindings::dma_resv_lock_slow(resv.as_raw(), ctx.ctx.get());
                    0
                }
            };
            if ret != 0 {
                break Err(Error::from_errno(ret));
            }
            if let Err(e) = Self::push(&mut locked, resv) {
                break Err(e);
            }
            contended = Some(i);
        };
        if let Err(e) = res {
            // SAFETY: The objects of `locked` were locked above, once each.
            unsafe { unlock_all(&mut locked) };
            return Err(e);
        }
        // SAFETY: `ctx` is initialized; every lock is taken.
        unsafe { bindings::ww_acquire_done(ctx.ctx.get()) };
        // INVARIANT: Every object of `resvs` was locked once with `ctx`, which is done.
        Ok(Self {
            locked,
            _ctx: ctx,
            _not_send: NotThreadSafe,
        })
    }

    /// Adds `resv`, just locked, to `locked`; unlocks it if that fails.
    fn push(locked: &mut KVec<&'a DmaResv>, resv: &'a DmaResv) -> Result {
        // The capacity is reserved for every object, so this does not allocate.
        locked.push(resv, GFP_KERNEL).inspect_err(|_| {
            // SAFETY: The caller just locked `resv`, and it is not in `locked`.
            unsafe { bindings::dma_resv_unlock(resv.as_raw()) };
        })?;
        Ok(())
    }

    /// Returns whether the lock of `resv` is in the set.
    pub fn contains(&self, resv: &DmaResv) -> bool {
        self.locked.contains(&resv)
    }

    /// Returns the proof of the lock of `resv`, or `None` if it is not in the set.
    ///
    /// It borrows the set mutably, like [`DmaResvGuard::locked`] borrows a guard.
    #[must_use]
    pub fn locked(&mut self, resv: &DmaResv) -> Option<DmaResvLocked<'_>> {
        let resv = *self.locked.iter().find(|r| **r == resv)?;
        // INVARIANT: The set holds the lock, and is borrowed mutably for the proof's lifetime.
        Some(DmaResvLocked::new(resv))
    }
}

impl Drop for DmaResvSet<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, the objects of `locked` are locked once each.
        unsafe { unlock_all(&mut self.locked) };
    }
}
