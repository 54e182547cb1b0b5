//! The SR-IOV virtual function: the accelerated path.
//!
//! Modules:
//! - [`device`]: our own traits in front of any PCI backend (`pci-driver`'s are sealed):
//!   [`device::VfDevice`] with BAR0 register I/O ([`device::RegisterIo`]), bounded config-space
//!   access, DMA memory with bus addresses, interrupts as eventfds (MSI-X and the VFIO
//!   device-request IRQ), presence and reset; one error type, [`device::DeviceError`];
//! - [`vfio`]: the real backend over `/dev/vfio` (IOMMU type1 and no-IOMMU groups), with every
//!   ioctl, open, eventfd and mmap in [`vfio::sys`] behind a trait that has a scripted fake twin;
//! - `igbvf`: the Intel 82576 VF driver over [`device::VfDevice`] (mailbox, rings with advanced
//!   descriptors, link, reset and removal detection, counters).
//! - [`kernel`]: a VF the kernel keeps (any VF with a netdev: mlx5, MANA, ixgbevf, iavf, a
//!   veth in tests), frames over a packet socket on its interface (copy mode).
//! - [`port`]: [`port::VfPort`], the control face `bond` drives (link, MAC, events, stop,
//!   release), and [`port::VfQueue`], the queue face (a `packet::PortQueue` that also reports
//!   its index and the transmits still in flight).

pub mod device;
pub mod igbvf;
pub mod kernel;
pub mod port;
pub mod vfio;
