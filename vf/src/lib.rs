//! The SR-IOV virtual function: the accelerated path.
//!
//! This crate will hold, as the VF issue builds it:
//! - `device`: our own traits in front of `pci-driver` (register I/O, config space, DMA memory
//!   with bus addresses, interrupts as eventfds including the VFIO request IRQ, removal);
//! - `vfio`: the real backend over `/dev/vfio` (IOMMU type1 and no-IOMMU groups), with every
//!   ioctl and mmap in one module that has a scripted fake twin;
//! - `igbvf`: an Intel 82576 VF driver (mailbox, rings with advanced descriptors, link, reset
//!   and removal detection, counters);
//! - the `VfPort` trait that `bond` drives: `rx_burst`/`tx_burst` per queue, link, MAC, stop,
//!   release, events.
//!
//! Nothing is implemented yet.
