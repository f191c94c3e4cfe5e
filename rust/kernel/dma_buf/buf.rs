// SPDX-License-Identifier: GPL-2.0

//! The dma-buf object.
//!
//! C header: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h)
//!
//! A [`DmaBuf`] is a reference counted handle to a `struct dma_buf`, no matter who exported it.
//! The buffer's reservation object ([`DmaBuf::resv`]) is locked with [`DmaBuf::lock`]; the
//! returned [`DmaResvGuard`] is the proof the lock is held that mapping and invalidating
//! require.

use crate::{
    bindings,
    error::from_err_ptr,
    fs::{
        file::{self, FileDescriptorReservation},
        File, //
    },
    prelude::*,
    sync::aref::{ARef, AlwaysRefCounted},
    types::Opaque,
};
use core::ptr::{self, NonNull};

use super::{DmaResv, DmaResvGuard};

/// A dma-buf.
///
/// Wraps the C `struct dma_buf`. Obtained from [`DmaBuf::get`] for a file descriptor, from
/// [`DmaBuf::export`] for a new buffer, or as a reference in exporter callbacks.
///
/// # Invariants
///
/// The pointer to the inner `struct dma_buf` is valid and the buffer is fully exported: its
/// `size`, `ops` and `resv` are set and constant, and its `file` is set and constant while a
/// reference to the buffer exists (the core clears it when the file is released, after the last
/// reference). Instances are always reference counted (through the file of the buffer), see
/// [`AlwaysRefCounted`].
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
    pub fn get(fd: u32) -> Result<ARef<Self>> {
        // Numbers beyond `c_int::MAX` are no file descriptors either.
        let fd = c_int::try_from(fd).map_err(|_| EBADF)?;
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
        // SAFETY: By the type invariants, the buffer is valid, and `file` is set and constant while
        // `self` refers to it.
        ptr::eq(unsafe { (*self.as_raw()).file }, file.as_ptr())
    }

    /// Installs a new file descriptor for the buffer in the reserved slot `fd`.
    ///
    /// The file descriptor holds a reference of its own to the buffer. This cannot fail: reserve
    /// the slot first, with [`FileDescriptorReservation::get_unused_fd_flags`], and install it as
    /// the last step, when nothing can fail any more, so that user space never sees a file
    /// descriptor of a failed call. Emits the `dma_buf_fd` trace event.
    ///
    /// Returns the number of the file descriptor.
    pub fn fd_install(&self, fd: FileDescriptorReservation) -> u32 {
        let number = fd.reserved_fd();
        // The file table takes over this reference.
        self.inc_ref();
        // SAFETY: By the type invariants, the buffer is valid and its file is set. `number` is a
        // slot the current task reserved (a reservation is not `Send`), and `fd` is forgotten
        // below, so the slot is filled exactly once and not released. `dma_buf_fd_install()`
        // gives the reference taken above to the file table.
        unsafe { bindings::dma_buf_fd_install(self.as_raw(), number as c_int) };
        core::mem::forget(fd);
        number
    }

    /// Returns a new close-on-exec file descriptor for the buffer.
    ///
    /// A shortcut for [`DmaBuf::fd_install`] with a fresh reservation.
    pub fn new_fd(&self) -> Result<u32> {
        let fd = FileDescriptorReservation::get_unused_fd_flags(file::flags::O_CLOEXEC)?;
        Ok(self.fd_install(fd))
    }

    /// Returns the reservation object of the buffer.
    ///
    /// Buffers may share one with other buffers, when their exporter says so.
    #[inline]
    pub fn resv(&self) -> &DmaResv {
        // SAFETY: By the type invariants, `resv` is set and initialized, and stays so until the
        // buffer is released: the exporter keeps a shared one alive that long.
        unsafe { DmaResv::from_raw((*self.as_raw()).resv) }
    }

    /// Locks the reservation object of the buffer, sleeping until it is free.
    ///
    /// A shortcut for [`DmaResv::lock`] on [`DmaBuf::resv`]. Mapping an attachment and
    /// invalidating the mappings of the buffer need the guard.
    ///
    /// Do not drop an [`Attachment`] of the buffer, or of a buffer sharing its reservation
    /// object, while holding the guard: detaching takes the lock.
    ///
    /// [`Attachment`]: super::Attachment
    #[inline]
    pub fn lock(&self) -> DmaResvGuard<'_> {
        self.resv().lock()
    }
}

impl PartialEq for DmaBuf {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        ptr::eq(self.as_raw(), other.as_raw())
    }
}

impl Eq for DmaBuf {}
