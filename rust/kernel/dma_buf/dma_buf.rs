// SPDX-License-Identifier: GPL-2.0

//! The dma-buf object.
//!
//! C header: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h)
//!
//! A [`DmaBuf`] is a reference counted handle to a `struct dma_buf`, no matter who exported it.
//! The buffer's reservation object is locked with [`DmaBuf::lock`]; the returned [`ResvGuard`] is
//! the proof the lock is held that mapping and invalidating require.

use crate::{
    bindings,
    error::from_err_ptr,
    fs::{
        file::{self, FileDescriptorReservation},
        File, //
    },
    prelude::*,
    sync::aref::{ARef, AlwaysRefCounted},
    types::{NotThreadSafe, Opaque},
};
use core::ptr::{self, NonNull};

/// A dma-buf.
///
/// Wraps the C `struct dma_buf`. Obtained from [`DmaBuf::get`] for a file descriptor, from
/// [`DmaBuf::export`] for a new buffer, or as a reference in exporter callbacks.
///
/// # Invariants
///
/// The pointer to the inner `struct dma_buf` is valid and the buffer is fully exported: its
/// `file`, `size`, `ops` and `resv` are set and constant. Instances are always reference counted
/// (through the file of the buffer), see [`AlwaysRefCounted`].
#[repr(transparent)]
pub struct DmaBuf(Opaque<bindings::dma_buf>);

// SAFETY: A `struct dma_buf` is not tied to the thread that created it; its reference count and
// its reservation lock work from any thread.
unsafe impl Send for DmaBuf {}

// SAFETY: All methods of `DmaBuf` that take `&self` are safe to call concurrently: they read
// constant fields or use the C API's own locking.
unsafe impl Sync for DmaBuf {}

// SAFETY: By the type invariants, instances of `DmaBuf` are always reference counted, through the
// `struct file` of the buffer; `get_dma_buf()` and `dma_buf_put()` take and drop a reference.
unsafe impl AlwaysRefCounted for DmaBuf {
    #[inline]
    fn inc_ref(&self) {
        // SAFETY: By the type invariants, `self.as_raw()` is a valid dma-buf.
        unsafe { bindings::get_dma_buf(self.as_raw()) };
    }

    #[inline]
    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller owns a reference to `obj`, which it gives up here.
        unsafe { bindings::dma_buf_put(obj.cast().as_ptr()) };
    }
}

impl DmaBuf {
    /// Creates a reference to a `struct dma_buf` from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid, exported `struct dma_buf` that stays alive for `'a`.
    #[inline]
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::dma_buf) -> &'a Self {
        // SAFETY: `DmaBuf` is `repr(transparent)` over `Opaque<bindings::dma_buf>`, and the caller
        // guarantees the buffer is valid for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Returns the raw `struct dma_buf` pointer.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::dma_buf {
        self.0.get()
    }

    /// Looks up the dma-buf behind the file descriptor `fd` of the current task.
    ///
    /// Returns [`EBADF`] if `fd` is not an open file descriptor and [`EINVAL`] if its file is not
    /// a dma-buf.
    pub fn get(fd: i32) -> Result<ARef<Self>> {
        // SAFETY: `dma_buf_get()` accepts any value of `fd`.
        let ptr = from_err_ptr(unsafe { bindings::dma_buf_get(fd) })?;

        // SAFETY: `dma_buf_get()` returned a valid buffer with a new reference, which the `ARef`
        // takes over. `ptr` is not NULL: `dma_buf_get()` returns a buffer or an error pointer.
        Ok(unsafe { ARef::from_raw(NonNull::new_unchecked(ptr.cast())) })
    }

    /// Returns the size of the buffer in bytes.
    #[inline]
    pub fn size(&self) -> usize {
        // SAFETY: By the type invariants, the buffer is valid and `size` is constant after export.
        unsafe { (*self.as_raw()).size }
    }

    /// Returns whether `file` is the file of this buffer.
    #[inline]
    pub fn is_file(&self, file: &File) -> bool {
        // SAFETY: By the type invariants, the buffer is valid and `file` is constant after export.
        ptr::eq(unsafe { (*self.as_raw()).file }, file.as_ptr())
    }

    /// Installs a new file descriptor for the buffer in the reserved slot `fd`.
    ///
    /// The file descriptor holds its own reference to the buffer. This cannot fail: reserve the
    /// slot first, with [`FileDescriptorReservation::get_unused_fd_flags`], and install it as the
    /// last step, when nothing can fail any more, so that user space never sees a file descriptor
    /// of a failed call.
    ///
    /// Returns the number of the file descriptor.
    pub fn fd_install(&self, fd: FileDescriptorReservation) -> u32 {
        let number = fd.reserved_fd();
        // SAFETY: By the type invariants, `file` is set and the buffer holds a reference to it
        // for as long as the buffer lives, which covers this call. dma-buf files are created by
        // `alloc_file_pseudo()` without `FMODE_ATOMIC_POS`, so no `fdget_pos()` holds their
        // position lock; the reference is only used to take a new reference for the file table.
        let file = unsafe { File::from_raw_file((*self.as_raw()).file) };
        fd.fd_install(ARef::from(file));
        number
    }

    /// Returns a new close-on-exec file descriptor for the buffer.
    ///
    /// A shortcut for [`DmaBuf::fd_install`] with a fresh reservation.
    pub fn new_fd(&self) -> Result<u32> {
        let fd = FileDescriptorReservation::get_unused_fd_flags(file::flags::O_CLOEXEC)?;
        Ok(self.fd_install(fd))
    }

    /// Locks the reservation object of the buffer.
    ///
    /// Sleeps until the lock is free. The lock is released when the returned guard is dropped.
    /// Mapping an attachment and invalidating the mappings of the buffer need the guard.
    ///
    /// Do not drop an [`Attachment`] of the buffer while holding the guard: detaching takes the
    /// lock.
    ///
    /// [`Attachment`]: super::Attachment
    pub fn lock(&self) -> ResvGuard<'_> {
        // SAFETY: By the type invariants, `resv` is a valid, initialized reservation object.
        // Without an acquire context `dma_resv_lock()` cannot fail.
        let ret = unsafe { bindings::dma_resv_lock((*self.as_raw()).resv, ptr::null_mut()) };
        debug_assert_eq!(ret, 0);
        // INVARIANT: The lock was acquired above.
        ResvGuard {
            buf: self,
            _not_send: NotThreadSafe,
        }
    }
}

impl PartialEq for DmaBuf {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        ptr::eq(self.as_raw(), other.as_raw())
    }
}

impl Eq for DmaBuf {}

/// Proof that the reservation lock of a [`DmaBuf`] is held.
///
/// Created by [`DmaBuf::lock`]; unlocks when dropped. It must be dropped in the task that took
/// the lock, so it is not [`Send`].
///
/// # Invariants
///
/// The reservation lock of `buf` is held by the current task for the lifetime of the guard.
pub struct ResvGuard<'a> {
    buf: &'a DmaBuf,
    _not_send: NotThreadSafe,
}

impl<'a> ResvGuard<'a> {
    /// Returns the buffer whose lock is held.
    #[inline]
    pub fn buf(&self) -> &'a DmaBuf {
        self.buf
    }

    /// Returns whether this guard holds the lock of `buf`.
    #[inline]
    pub fn is_locked(&self, buf: &DmaBuf) -> bool {
        self.buf == buf
    }

    /// Tells every importer of the buffer to give its mappings back.
    ///
    /// For exporters that move or revoke the memory of the buffer: each dynamic importer's
    /// invalidate callback runs before this returns, with the lock held.
    pub fn invalidate_mappings(&self) {
        // SAFETY: By the type invariants, the buffer is valid and its reservation lock is held,
        // as `dma_buf_invalidate_mappings()` requires.
        unsafe { bindings::dma_buf_invalidate_mappings(self.buf.as_raw()) };
    }
}

impl Drop for ResvGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: By the type invariants, the lock is held by this task.
        unsafe { bindings::dma_resv_unlock((*self.buf.as_raw()).resv) };
    }
}
