// SPDX-License-Identifier: GPL-2.0

//! Checked ranges of PCI BARs: device memory to map to user space or to export.

use super::Device;
use crate::{
    bindings, device,
    io::PhysAddr,
    mm::fault::IoPfnRange,
    page::{PAGE_SHIFT, PAGE_SIZE},
    prelude::*,
};

/// A page-aligned range of a memory BAR of a bound PCI device.
///
/// Made by [`Device::bar_range`], which checks it against the BAR's resource. The memory is MMIO
/// of the device, never RAM. Mapping it into user space or handing it to other devices takes an
/// owner that takes it all back before the driver lets go of the device, after which the BAR may
/// belong to another driver: `kernel::dma_buf::BarMemory`.
///
/// # Invariants
///
/// `start..start + len` lies within BAR `bar` of `dev`, an `IORESOURCE_MEM` resource that the PCI
/// core assigned (in the resource tree, neither unset nor disabled); `start` and
/// `len` are multiples of `PAGE_SIZE`, and `len` is not zero.
#[derive(Clone, Copy)]
pub struct BarRange<'a> {
    dev: &'a Device<device::Bound>,
    bar: u32,
    start: PhysAddr,
    len: u64,
}

impl<'a> BarRange<'a> {
    /// Returns the device the range belongs to.
    #[inline]
    pub fn dev(&self) -> &'a Device<device::Bound> {
        self.dev
    }

    /// Returns the BAR the range belongs to.
    #[inline]
    pub fn bar(&self) -> u32 {
        self.bar
    }

    /// Returns the physical address the range starts at.
    #[inline]
    pub fn start(&self) -> PhysAddr {
        self.start
    }

    /// Returns the length of the range in bytes.
    #[inline]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Returns whether the range is empty: never, it is at least a page.
    #[inline]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Returns the page frames of the range, to map into user space from a fault handler.
    ///
    /// Returns [`EOVERFLOW`] if they do not fit a `usize` (a 32-bit kernel with 64-bit BARs).
    ///
    /// # Safety
    ///
    /// Every page table entry [`VmFault::insert_io`] makes from the returned range is zapped
    /// before the driver lets go of the device (its `unbind`/`remove` returns): after that, the
    /// BAR may belong to another driver, or move.
    ///
    /// [`VmFault::insert_io`]: crate::mm::fault::VmFault::insert_io
    pub(crate) unsafe fn pfn_range(&self) -> Result<IoPfnRange<'a>> {
        let pfn = usize::try_from(self.start >> PAGE_SHIFT).map_err(|_| EOVERFLOW)?;
        let pages = usize::try_from(self.len >> PAGE_SHIFT).map_err(|_| EOVERFLOW)?;
        // SAFETY: By the type invariants, the page frames are within a memory BAR of `dev` that
        // the PCI core assigned: MMIO, not RAM. The caller zaps what is inserted from them before
        // letting go of the device.
        Ok(unsafe { IoPfnRange::new(pfn, pages) })
    }
}

/// A value that keeps a PCI device bound to its driver for as long as it exists.
///
/// What an owner of device memory holds while others may reach that memory, such as
/// `kernel::dma_buf::BarMemory`: unbinding the device waits until the value is gone.
///
/// # Safety
///
/// [`KeepsBound::pci_dev`] returns the same device every time, and the `remove()` of its driver
/// does not return while the value exists.
pub unsafe trait KeepsBound: Send + Sync + 'static {
    /// Returns the device that is kept bound.
    fn pci_dev(&self) -> &Device<device::Bound>;
}

impl Device<device::Bound> {
    /// Returns the `len` bytes at `offset` of the memory BAR `bar`.
    ///
    /// Returns [`EINVAL`] if `bar` is not a standard BAR (0 to 5) or not a memory BAR that the
    /// PCI core assigned (in the resource tree, not unset or disabled), if `offset`
    /// or `len` is not a multiple of the page size or `len` is zero, if the BAR does not start
    /// at a page boundary, or if the range does not lie within the BAR; [`EOVERFLOW`] if
    /// `offset + len` wraps.
    pub fn bar_range(&self, bar: u32, offset: u64, len: u64) -> Result<BarRange<'_>> {
        if !self.is_assigned_memory_bar(bar) {
            return Err(EINVAL);
        }
        let page = PAGE_SIZE as u64;
        let (bar_start, bar_len) = (self.resource_start(bar)?, self.resource_len(bar)?);
        if len == 0
            || !offset.is_multiple_of(page)
            || !len.is_multiple_of(page)
            || !bar_start.is_multiple_of(page)
        {
            return Err(EINVAL);
        }
        let end = offset.checked_add(len).ok_or(EOVERFLOW)?;
        if end > bar_len {
            return Err(EINVAL);
        }
        // INVARIANT: The range was checked against the memory BAR above; `bar_start`, `offset`
        // and `len` are page aligned and `len` is not zero.
        Ok(BarRange {
            dev: self,
            bar,
            start: bar_start + offset,
            len,
        })
    }

    /// Returns whether `bar` is a standard BAR (0 to 5) that decodes memory and that the PCI core
    /// assigned: in the resource tree, not unset or disabled.
    ///
    /// [`Device::bar_range`] returns ranges of such a BAR only, and none of one smaller than a
    /// page.
    pub fn is_assigned_memory_bar(&self, bar: u32) -> bool {
        if bar >= bindings::PCI_STD_NUM_BARS {
            return false;
        }
        // SAFETY: `bar` is a standard BAR index; `self.as_raw()` is a valid `struct pci_dev`.
        let (flags, parent) = unsafe {
            let res = &raw const (*self.as_raw()).resource[bar as usize];
            ((*res).flags, (*res).parent)
        };
        // CAST: The flags are `u32` constants; resource flags are an `unsigned long`.
        let (mem, unusable) = (
            bindings::IORESOURCE_MEM as c_ulong,
            (bindings::IORESOURCE_UNSET | bindings::IORESOURCE_DISABLED) as c_ulong,
        );
        // Only a BAR the PCI core placed in the resource tree is known not to overlap RAM: a
        // conflicting one keeps its firmware address but is left unset and without a parent.
        flags & mem != 0 && flags & unusable == 0 && !parent.is_null()
    }
}
