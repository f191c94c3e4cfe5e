// SPDX-License-Identifier: GPL-2.0

//! VFIO: device access for user space.
//!
//! C header: [`include/linux/vfio.h`](srctree/include/linux/vfio.h)
//!
//! VFIO and its bus drivers are C modules; this module lets Rust code built into them use what
//! they keep. The kernel crate is built into the kernel image and cannot call symbols of a
//! module, so it is only available when `CONFIG_RUST_VFIO_PCI_CORE` is set, which needs
//! vfio-pci-core built in.

pub mod pci;
