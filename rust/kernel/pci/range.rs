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
/// of the device, never RAM, so it may be mapped into user space ([`BarRange::pfn_range`]) and
/// handed to importers of a dma-buf as a physical address list.
///
/// Whoever maps it, to user space or for another device, must take those mappings down before
/// the driver lets go of the device (for example, zap and invalidate in its unbind path): after
/// that, the BAR may belong to another driver.
///
/// # Invariants
///
/// `start..start + len` lies within BAR `bar` of `dev`, an `IORESOURCE_MEM` resource; `start` and
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
    pub fn pfn_range(&self) -> IoPfnRange<'a> {
        // CAST: Both fit a `usize`: they are within a resource, whose ends are
        // `resource_size_t`, which is no wider than `usize` on the architectures with PCI BARs
        // that `VM_PFNMAP` can map.
        let (pfn, pages) = (
            (self.start >> PAGE_SHIFT) as usize,
            (self.len >> PAGE_SHIFT) as usize,
        );
        // SAFETY: By the type invariants, the page frames are within a memory BAR of `dev`: MMIO,
        // not RAM, of a device bound for `'a`.
        unsafe { IoPfnRange::new(pfn, pages) }
    }
}

impl Device<device::Bound> {
    /// Returns the `len` bytes at `offset` of the memory BAR `bar`.
    ///
    /// Returns [`EINVAL`] if `bar` is not a standard BAR (0 to 5) or not a memory BAR, if `offset`
    /// or `len` is not a multiple of the page size or `len` is zero, if the BAR does not start
    /// at a page boundary, or if the range does not lie within the BAR; [`EOVERFLOW`] if
    /// `offset + len` wraps.
    pub fn bar_range(&self, bar: u32, offset: u64, len: u64) -> Result<BarRange<'_>> {
        if bar >= bindings::PCI_STD_NUM_BARS {
            return Err(EINVAL);
        }
        // SAFETY: `bar` is a standard BAR index; `self.as_raw()` is a valid `struct pci_dev`.
        let flags = unsafe { bindings::pci_resource_flags(self.as_raw(), bar.try_into()?) };
        // CAST: The flag is a `u32` constant; resource flags are an `unsigned long`.
        if flags & bindings::IORESOURCE_MEM as c_ulong == 0 {
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
}
