// SPDX-License-Identifier: GPL-2.0

//! Read-write semaphores.
//!
//! C header: [`include/linux/rwsem.h`](srctree/include/linux/rwsem.h)
//!
//! A [`RwSem`] is the kernel's `struct rw_semaphore`: any number of readers or one writer hold
//! it at a time, and waiting for it sleeps. A [`RwSem<T>`] created in Rust protects the `T` it
//! holds: [`RwSem::read`] lends `&T`, [`RwSem::write`] `&mut T`. A semaphore embedded in a C
//! structure is reached with [`RwSem::from_raw`] as a `RwSem<()>`: it protects whatever the C code
//! says it does, and its guards only prove that it is held, in which mode, for how long.
//!
//! Lockdep sees every acquisition. A semaphore created in Rust gets its lock class from
//! [`new_rwsem!`], one per call site; a C one keeps the class its `init_rwsem()` gave it.

use crate::{
    bindings,
    error::to_result,
    prelude::*,
    str::CStr,
    sync::LockClassKey,
    types::{NotThreadSafe, Opaque},
};
use core::{cell::UnsafeCell, marker::PhantomPinned};
use pin_init::Wrapper;

/// Creates a [`RwSem`] initialiser with the given name and a newly-created lock class.
///
/// It uses the name if one is given, otherwise it generates one based on the file name and line
/// number.
#[macro_export]
macro_rules! new_rwsem {
    ($inner:expr $(, $name:literal)? $(,)?) => {
        $crate::sync::RwSem::new(
            $inner, $crate::optional_name!($($name)?), $crate::static_lock_class!())
    };
}
pub use new_rwsem;

/// A read-write semaphore.
///
/// Exposes the kernel's `struct rw_semaphore`. It must be pinned; create one with
/// [`new_rwsem!`] inside a [`pin_init!`] or [`stack_pin_init!`](pin_init::stack_pin_init).
///
/// # Invariants
///
/// `sem` is an initialised `struct rw_semaphore`. `data` is only read while `sem` is held and only
/// written while it is held for writing.
///
/// # Examples
///
/// ```
/// use kernel::sync::{new_rwsem, RwSem};
/// use pin_init::stack_pin_init;
///
/// stack_pin_init!(let sem = new_rwsem!(KVec::<u32>::new()));
///
/// sem.write().push(7, GFP_KERNEL)?;
/// {
///     let a = sem.read();
///     // More readers may hold it at once, but no writer.
///     let b = sem.try_read().ok_or(EBUSY)?;
///     assert!(sem.try_write().is_none());
///     assert_eq!((a[0], b.len()), (7, 1));
/// }
/// let w = sem.write();
/// // A writer may let readers in without letting go.
/// let r = w.downgrade();
/// assert!(sem.try_write().is_none());
/// assert_eq!(r.len(), 1);
/// # Ok::<(), Error>(())
/// ```
#[repr(C)]
#[pin_data]
pub struct RwSem<T: ?Sized> {
    #[pin]
    sem: Opaque<bindings::rw_semaphore>,
    #[pin]
    _pin: PhantomPinned,
    #[pin]
    data: UnsafeCell<T>,
}

// SAFETY: A `RwSem` can be moved to another thread (once it is not pinned any more, to drop it)
// iff the data it protects can.
unsafe impl<T: ?Sized + Send> Send for RwSem<T> {}

// SAFETY: Writers get `&mut T` from any thread, which needs `T: Send`; readers share `&T` between
// threads, which needs `T: Sync`.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwSem<T> {}

impl<T> RwSem<T> {
    /// Creates an initialiser of a semaphore protecting `t`, with lockdep class `key`.
    ///
    /// Use [`new_rwsem!`], which makes the name and the class.
    pub fn new(
        t: impl PinInit<T>,
        name: &'static CStr,
        key: Pin<&'static LockClassKey>,
    ) -> impl PinInit<Self> {
        pin_init!(Self {
            data <- UnsafeCell::pin_init(t),
            _pin: PhantomPinned,
            // SAFETY: `slot` is valid while the closure runs, and `name` and `key` live forever.
            sem <- Opaque::ffi_init(|slot| unsafe {
                bindings::__init_rwsem(slot, name.as_char_ptr(), key.as_ptr())
            }),
        })
    }
}

impl RwSem<()> {
    /// Borrows a semaphore that C code owns.
    ///
    /// # Safety
    ///
    /// `ptr` points to an initialised `struct rw_semaphore` that stays alive for `'a`.
    #[inline]
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::rw_semaphore) -> &'a Self {
        // SAFETY: `Self` is `repr(C)` and its only field that is not a ZST is the semaphore at
        // offset 0, so it has the layout of `struct rw_semaphore`; the caller guarantees that it
        // is initialised and valid for `'a`.
        unsafe { &*ptr.cast() }
    }
}

impl<T: ?Sized> RwSem<T> {
    /// Returns the raw `struct rw_semaphore`.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::rw_semaphore {
        self.sem.get()
    }

    /// Acquires the semaphore for reading, sleeping until no writer holds it.
    #[inline]
    pub fn read(&self) -> RwSemReadGuard<'_, T> {
        // SAFETY: By the type invariants, `sem` is initialised.
        unsafe { bindings::down_read(self.as_raw()) };
        // SAFETY: The semaphore was just acquired for reading.
        unsafe { RwSemReadGuard::new(self) }
    }

    /// Acquires the semaphore for reading, unless a fatal signal comes first.
    ///
    /// Returns [`EINTR`] if a fatal signal is pending.
    #[inline]
    pub fn read_killable(&self) -> Result<RwSemReadGuard<'_, T>> {
        // SAFETY: By the type invariants, `sem` is initialised.
        to_result(unsafe { bindings::down_read_killable(self.as_raw()) })?;
        // SAFETY: The semaphore was just acquired for reading.
        Ok(unsafe { RwSemReadGuard::new(self) })
    }

    /// Acquires the semaphore for reading if that needs no waiting.
    // `Option<T>` is not `#[must_use]` even if `T` is, thus the attribute is needed here.
    #[must_use = "if unused, the semaphore will be immediately released"]
    #[inline]
    pub fn try_read(&self) -> Option<RwSemReadGuard<'_, T>> {
        // SAFETY: By the type invariants, `sem` is initialised.
        if unsafe { bindings::down_read_trylock(self.as_raw()) } == 0 {
            return None;
        }
        // SAFETY: The semaphore was just acquired for reading.
        Some(unsafe { RwSemReadGuard::new(self) })
    }

    /// Acquires the semaphore for writing, sleeping until nobody else holds it.
    #[inline]
    pub fn write(&self) -> RwSemWriteGuard<'_, T> {
        // SAFETY: By the type invariants, `sem` is initialised.
        unsafe { bindings::down_write(self.as_raw()) };
        // SAFETY: The semaphore was just acquired for writing.
        unsafe { RwSemWriteGuard::new(self) }
    }

    /// Acquires the semaphore for writing, unless a fatal signal comes first.
    ///
    /// Returns [`EINTR`] if a fatal signal is pending.
    #[inline]
    pub fn write_killable(&self) -> Result<RwSemWriteGuard<'_, T>> {
        // SAFETY: By the type invariants, `sem` is initialised.
        to_result(unsafe { bindings::down_write_killable(self.as_raw()) })?;
        // SAFETY: The semaphore was just acquired for writing.
        Ok(unsafe { RwSemWriteGuard::new(self) })
    }

    /// Acquires the semaphore for writing if that needs no waiting.
    // `Option<T>` is not `#[must_use]` even if `T` is, thus the attribute is needed here.
    #[must_use = "if unused, the semaphore will be immediately released"]
    #[inline]
    pub fn try_write(&self) -> Option<RwSemWriteGuard<'_, T>> {
        // SAFETY: By the type invariants, `sem` is initialised.
        if unsafe { bindings::down_write_trylock(self.as_raw()) } == 0 {
            return None;
        }
        // SAFETY: The semaphore was just acquired for writing.
        Some(unsafe { RwSemWriteGuard::new(self) })
    }
}

/// Proof that a [`RwSem`] is held for reading; lends `&T`.
///
/// Releases the semaphore when dropped.
///
/// # Invariants
///
/// The current task holds `sem` for reading for the lifetime of the guard.
#[must_use = "the semaphore is released immediately when the guard is unused"]
pub struct RwSemReadGuard<'a, T: ?Sized> {
    sem: &'a RwSem<T>,
    _not_send: NotThreadSafe,
}

impl<'a, T: ?Sized> RwSemReadGuard<'a, T> {
    /// # Safety
    ///
    /// The current task holds `sem` for reading, and this guard is to release it.
    #[inline]
    unsafe fn new(sem: &'a RwSem<T>) -> Self {
        // SAFETY: The semaphore is initialised, by the invariants of `RwSem`.
        unsafe { bindings::rwsem_assert_held(sem.as_raw()) };
        // INVARIANT: The caller guarantees that the semaphore is held for reading.
        Self {
            sem,
            _not_send: NotThreadSafe,
        }
    }

    /// Returns the semaphore this guard holds.
    #[inline]
    pub fn rwsem(&self) -> &'a RwSem<T> {
        self.sem
    }
}

// SAFETY: Sharing the guard only shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwSemReadGuard<'_, T> {}

impl<T: ?Sized> core::ops::Deref for RwSemReadGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: By the type invariants, the semaphore is held for reading: nobody writes `data`.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T: ?Sized> Drop for RwSemReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariants, the current task holds the semaphore for reading.
        unsafe { bindings::up_read(self.sem.as_raw()) };
    }
}

/// Proof that a [`RwSem`] is held for writing; lends `&mut T`.
///
/// Releases the semaphore when dropped.
///
/// # Invariants
///
/// The current task holds `sem` for writing for the lifetime of the guard.
#[must_use = "the semaphore is released immediately when the guard is unused"]
pub struct RwSemWriteGuard<'a, T: ?Sized> {
    sem: &'a RwSem<T>,
    _not_send: NotThreadSafe,
}

impl<'a, T: ?Sized> RwSemWriteGuard<'a, T> {
    /// # Safety
    ///
    /// The current task holds `sem` for writing, and this guard is to release it.
    #[inline]
    unsafe fn new(sem: &'a RwSem<T>) -> Self {
        // SAFETY: The semaphore is initialised, by the invariants of `RwSem`.
        unsafe { bindings::rwsem_assert_held_write(sem.as_raw()) };
        // INVARIANT: The caller guarantees that the semaphore is held for writing.
        Self {
            sem,
            _not_send: NotThreadSafe,
        }
    }

    /// Returns the semaphore this guard holds.
    #[inline]
    pub fn rwsem(&self) -> &'a RwSem<T> {
        self.sem
    }

    /// Lets readers in, without letting another writer in between.
    #[inline]
    pub fn downgrade(self) -> RwSemReadGuard<'a, T> {
        let sem = self.sem;
        core::mem::forget(self);
        // SAFETY: The current task holds the semaphore for writing, by the type invariants, and
        // the write guard that would release it is gone.
        unsafe { bindings::downgrade_write(sem.as_raw()) };
        // SAFETY: The semaphore is now held for reading, and released by the new guard only.
        unsafe { RwSemReadGuard::new(sem) }
    }
}

// SAFETY: Sharing the guard only shares `&T`.
unsafe impl<T: ?Sized + Sync> Sync for RwSemWriteGuard<'_, T> {}

impl<T: ?Sized> core::ops::Deref for RwSemWriteGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: By the type invariants, the semaphore is held for writing.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T: ?Sized + Unpin> core::ops::DerefMut for RwSemWriteGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: By the type invariants, the semaphore is held for writing: this guard is the
        // only way to `data`, and it is borrowed mutably.
        unsafe { &mut *self.sem.data.get() }
    }
}

impl<T: ?Sized> Drop for RwSemWriteGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariants, the current task holds the semaphore for writing.
        unsafe { bindings::up_write(self.sem.as_raw()) };
    }
}

#[kunit_tests(rust_rwsem)]
mod tests {
    use super::*;
    use crate::{
        c_str,
        sync::{
            atomic::{Atomic, Relaxed},
            static_lock_class, Arc, Completion,
        },
        time::{delay::fsleep, Delta},
        workqueue,
    };

    /// Whether the raw semaphore is held in some mode, asked as the C code would.
    fn raw_state(sem: *mut bindings::rw_semaphore) -> (bool, bool) {
        // SAFETY: The callers pass initialised semaphores.
        let read = unsafe { bindings::down_read_trylock(sem) } != 0;
        if read {
            // SAFETY: Just acquired for reading.
            unsafe { bindings::up_read(sem) };
        }
        // SAFETY: As above.
        let write = unsafe { bindings::down_write_trylock(sem) } != 0;
        if write {
            // SAFETY: Just acquired for writing.
            unsafe { bindings::up_write(sem) };
        }
        (read, write)
    }

    /// Guards on a semaphore that C initialised and owns hold it in the mode they say.
    #[test]
    fn c_owned() -> Result {
        let key = static_lock_class!();
        let raw = KBox::pin_init(
            Opaque::<bindings::rw_semaphore>::ffi_init(|slot| {
                // SAFETY: `slot` is valid; the name and the key are static.
                unsafe {
                    bindings::__init_rwsem(slot, c_str!("rust_rwsem_c").as_char_ptr(), key.as_ptr())
                }
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: `raw` is initialised and outlives `sem`.
        let sem = unsafe { RwSem::from_raw(raw.get()) };
        let mut seen = KVec::new();

        seen.push(raw_state(raw.get()), GFP_KERNEL)?;
        {
            let _r = sem.read();
            seen.push(raw_state(raw.get()), GFP_KERNEL)?;
        }
        {
            let w = sem.write();
            seen.push(raw_state(raw.get()), GFP_KERNEL)?;
            let _r = w.downgrade();
            seen.push(raw_state(raw.get()), GFP_KERNEL)?;
        }
        {
            let w = sem.try_write().ok_or(EBUSY)?;
            let busy = (sem.try_read().is_some(), sem.try_write().is_some());
            drop(w);
            seen.push(busy, GFP_KERNEL)?;
        }
        seen.push(raw_state(raw.get()), GFP_KERNEL)?;

        // (read, write) possible: free, read held, write held, downgraded, try_write held, free.
        let want = [
            (true, true),
            (true, false),
            (false, false),
            (true, false),
            (false, false),
            (true, true),
        ];
        assert_eq!(&seen[..], &want[..]);
        Ok(())
    }

    #[pin_data]
    struct Shared {
        #[pin]
        sem: RwSem<u32>,
        #[pin]
        started: Completion,
        #[pin]
        done: Completion,
        seen: Atomic<u32>,
    }

    /// A reader in another task waits for the writer, and sees what it wrote.
    #[test]
    fn writer_excludes_reader() -> Result {
        let shared = Arc::pin_init(
            pin_init!(Shared {
                sem <- new_rwsem!(1),
                started <- Completion::new(),
                done <- Completion::new(),
                seen: Atomic::new(0),
            }),
            GFP_KERNEL,
        )?;
        let mut w = shared.sem.write();
        let other = shared.clone();
        workqueue::system().try_spawn(GFP_KERNEL, move || {
            other.started.complete_all();
            let r = other.sem.read();
            other.seen.store(*r, Relaxed);
            drop(r);
            other.done.complete_all();
        })?;
        // The work runs and is about to take the semaphore: give it long enough to get it, were
        // it not blocked.
        shared.started.wait_for_completion();
        fsleep(Delta::from_millis(50));
        let early = shared.seen.load(Relaxed);
        *w = 2;
        drop(w);
        shared.done.wait_for_completion();

        assert_eq!(early, 0);
        assert_eq!(shared.seen.load(Relaxed), 2);
        Ok(())
    }
}
