//! A VF the kernel keeps: frames over a packet socket on the VF's netdev (copy mode).
//!
//! Every VF a Linux guest has (mlx5, MANA, ixgbevf, iavf, or a veth in tests) has a kernel
//! network interface. This backend leaves the device to its kernel driver and moves frames
//! through an `AF_PACKET` socket bound to that interface: one copy each way, one system call
//! per frame. It is the portable fallback and the baseline the AF_XDP backend is measured
//! against. Every system call is in `packet::netdev`; this module has no `unsafe`.
//!
//! Lifecycle ([`KernelVf::open`]):
//! - open resolves the interface's index (the port follows the index, so a rename by udev is
//!   followed and a removed interface is noticed even if another takes its name), checks that
//!   its MAC is the one asked for (Hyper-V gives a VF its synthetic NIC's MAC; anything else
//!   is refused with [`KernelVfError::MacMismatch`] and nothing is changed), sets the MTU asked
//!   for and brings the interface up when it is not (both restored at release), then opens
//!   one packet socket (seeing every frame the interface receives and none it sends) and an
//!   rtnetlink link monitor;
//! - [`service`](crate::port::VfPort::service) waits on the link monitor and reports [`LinkUp`](crate::port::VfEvent::LinkUp) /
//!   [`LinkDown`](crate::port::VfEvent::LinkDown) when the interface's running state (`IFF_UP` and `IFF_RUNNING`)
//!   changes and [`Removed`](crate::port::VfEvent::Removed) once its index is gone;
//! - [`stop`](crate::port::VfPort::stop) makes the queue hand out and take nothing more. There is nothing in
//!   flight to wait for: a frame `send()` accepted belongs to the kernel, which transmits it
//!   or counts it in the interface's own `tx_dropped`;
//! - [`release`](crate::port::VfPort::release) closes the socket (after any burst in progress) and restores the
//!   interface's MTU and administrative state if open changed them.
//!
//! One queue: frames received come from a pool the backend owns ([`KernelVfConfig::pool_buffers`]
//! buffers in anonymous memory), frames to send may come from any pool (they are copied by
//! the kernel). Frames that do not fit the MTU (plus the Ethernet header and one VLAN tag if
//! the frame carries one) or are shorter than an Ethernet header are dropped and counted,
//! both ways. Frames the kernel dropped because the socket's queue was full are counted in
//! `rx_no_buffer`.
//!
//! Counters ([`VfPortStats`](crate::port::VfPortStats)): `rx_*`/`tx_*` packets and bytes as
//! the socket moved them; `rx_frame_errors` (received frames truncated, oversize or runt);
//! `rx_no_buffer` (the kernel's `PACKET_STATISTICS` drops); `tx_lost` (frames `tx_burst`
//! took that the kernel refused or that do not fit the MTU: taken and never sent). The
//! hardware counters are not read (`hw_*` stay 0).
//!
//! The kernel's stack: every frame the VF receives would also go up the kernel's own stack,
//! which takes any frame for any of the host's addresses (a TAP device's, say) whatever
//! interface it came in on. Open raises a [`fence`] that drops them before the stack and
//! after the packet socket, and release takes it down.
//!
//! VLAN tags: packet sockets see received frames after the kernel took their 802.1Q tag out
//! (receive VLAN offload, or the stack's own untagging); the tag is read back
//! (`PACKET_AUXDATA`) into `PacketMeta::vlan_tci`, as the synthetic path reports it. A tag
//! asked for out of band on transmit (`PacketMeta::vlan_tci`) is inserted in the frame.

pub mod fence;
mod port;
mod queue;
pub mod xdp;

#[cfg(any(test, feature = "test-utils"))]
pub mod netns;
#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use packet::netdev;
use packet::{MacAddr, MemError, Pool, SharedMemory};
use parking_lot::RwLock;

pub use port::KernelVfPort;
pub use queue::KernelVfQueue;
pub use xdp::{XdpConfig, XdpInfo, XdpMode, XdpProgram, XdpVfQueue};

/// Ethernet header bytes.
const ETH_HEADER: usize = 14;
/// Bytes of one 802.1Q tag.
const VLAN_TAG: usize = 4;

/// What [`KernelVf::open`] sets up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelVfConfig {
    /// The synthetic NIC's MTU: the interface is given it, and frames beyond it are dropped.
    pub mtu: usize,
    /// The synthetic NIC's MAC: the interface must have it.
    pub mac: MacAddr,
    /// Receive buffers in the backend's pool.
    pub pool_buffers: usize,
    /// Bytes of the socket's receive queue (the kernel's frames waiting for `rx_burst`).
    pub socket_buffer: usize,
    /// Keep the kernel's stack off the VF's received frames ([`fence`]; needs `nft`, package
    /// nftables). Without it the kernel also takes the frames addressed to its own addresses.
    pub fence_stack: bool,
}

impl Default for KernelVfConfig {
    /// MTU 1500, no MAC (set it), 1024 buffers, a 4 MiB socket queue, the stack fenced off.
    fn default() -> Self {
        Self {
            mtu: 1500,
            mac: MacAddr([0; 6]),
            pool_buffers: 1024,
            socket_buffer: 4 << 20,
            fence_stack: true,
        }
    }
}

/// Opening a kernel VF failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelVfError {
    /// A system call on the interface failed.
    #[error("{ifname}: {op}")]
    Interface {
        /// The interface.
        ifname: String,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The interface does not have the synthetic NIC's MAC, so it is not its VF.
    #[error("{ifname} has MAC {found}, not the synthetic NIC's {expected}: not its VF")]
    MacMismatch {
        /// The interface.
        ifname: String,
        /// Its MAC.
        found: MacAddr,
        /// The MAC asked for.
        expected: MacAddr,
    },
    /// The configuration cannot work.
    #[error("{ifname}: {message}")]
    Config {
        /// The interface.
        ifname: String,
        /// What is wrong.
        message: String,
    },
    /// The receive pool could not be made.
    #[error("{ifname}: receive pool")]
    Memory {
        /// The interface.
        ifname: String,
        /// The error.
        #[source]
        source: MemError,
    },
}

/// Counters the queue writes (one writer each, so a load and a store suffice) and the port
/// reads.
#[derive(Debug, Default)]
struct Counters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    rx_frame_errors: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    tx_lost: AtomicU64,
    /// Written by the port (the kernel's drop count, read at `service` and `stats`).
    rx_no_buffer: AtomicU64,
}

/// Adds `n` to a counter that only the calling thread writes.
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// What the port and its queue share.
#[derive(Debug)]
struct Shared {
    /// The interface's name at open (for errors and logs).
    ifname: String,
    mtu: usize,
    /// The packet socket; `None` once released, and with the AF_XDP transport. Bursts hold
    /// the read lock for their length, so release closes the socket only between bursts.
    socket: RwLock<Option<OwnedFd>>,
    /// The AF_XDP transport's sockets and program, if it is the one in use.
    xdp: Option<xdp::Sockets>,
    /// Set by `stop` and `release`: the queue hands out and takes nothing more.
    stopped: AtomicBool,
    /// Set by the queue when the socket reported the device down or gone: the port looks at
    /// the interface at its next `service` without waiting.
    socket_error: AtomicBool,
    counters: Counters,
}

/// Whether `frame` fits `mtu`: an Ethernet header, at most `mtu` bytes of payload, and one
/// more tag's worth if it carries an 802.1Q or 802.1ad tag.
fn fits(mtu: usize, frame: &[u8]) -> bool {
    if frame.len() < ETH_HEADER {
        return false;
    }
    let tagged = matches!(u16::from_be_bytes([frame[12], frame[13]]), 0x8100 | 0x88a8);
    let limit = mtu + ETH_HEADER + if tagged { VLAN_TAG } else { 0 };
    frame.len() <= limit
}

impl Shared {
    /// Whether `frame` fits the MTU (see [`fits`]).
    fn fits(&self, frame: &[u8]) -> bool {
        fits(self.mtu, frame)
    }

    /// A socket said the device is down or gone: the port looks at it next `service`.
    fn socket_failed(&self, error: &io::Error) {
        if !self.socket_error.swap(true, Ordering::AcqRel) {
            tracing::debug!(
                target: "hvnet::vf",
                ifname = self.ifname,
                %error,
                "kernel VF socket error"
            );
        }
    }
}

/// Opens kernel VFs; see the module docs.
#[derive(Debug)]
pub struct KernelVf;

/// What [`KernelVf::prepare`] checked and changed, for the transport to build on.
struct Prepared {
    index: u32,
    monitor: OwnedFd,
    restore: port::Restore,
}

impl KernelVf {
    /// Opens the VF whose kernel interface is `ifname` (in the calling thread's network
    /// namespace) with a packet socket: its control handle and its one queue.
    pub fn open(
        ifname: &str,
        config: KernelVfConfig,
    ) -> Result<(KernelVfPort, Vec<KernelVfQueue>), KernelVfError> {
        let fail = |op: &'static str| {
            let ifname = ifname.to_string();
            move |source| KernelVfError::Interface { ifname, op, source }
        };
        let config_error = |message: String| KernelVfError::Config {
            ifname: ifname.to_string(),
            message,
        };
        if config.pool_buffers == 0 {
            return Err(config_error("the receive pool needs buffers".into()));
        }
        Self::check_mtu(ifname, config.mtu)?;
        let buf_size = packet::pool::HEADROOM + config.mtu + ETH_HEADER + VLAN_TAG;
        let buf_size = buf_size.next_multiple_of(64);
        let memory_error = |source| KernelVfError::Memory {
            ifname: ifname.to_string(),
            source,
        };
        let bytes = buf_size
            .checked_mul(config.pool_buffers)
            .ok_or_else(|| config_error(format!("{} buffers", config.pool_buffers)))?;
        let pool = Pool::new(
            SharedMemory::anonymous(bytes).map_err(memory_error)?,
            buf_size,
        )
        .map_err(memory_error)?;
        let Prepared {
            index,
            monitor,
            mut restore,
        } = Self::prepare(ifname, &config, config.fence_stack)?;
        let opened = (|| {
            let socket =
                netdev::open_packet_socket(ifname).map_err(fail("opening a packet socket"))?;
            netdev::enable_packet_auxdata(std::os::fd::AsFd::as_fd(&socket))
                .map_err(fail("asking for VLAN tags"))?;
            // A smaller queue than asked for only means more drops under load (counted).
            if let Err(error) =
                netdev::set_receive_buffer(std::os::fd::AsFd::as_fd(&socket), config.socket_buffer)
            {
                tracing::debug!(target: "hvnet::vf", ifname, %error, "socket receive buffer");
            }
            let flags = netdev::interface_flags(ifname).map_err(fail("reading its flags"))?;
            Ok((socket, flags))
        })();
        let (socket, flags) = match opened {
            Ok(opened) => opened,
            Err(e) => return Err(Self::undo(ifname, &mut restore, e)),
        };
        let shared = Arc::new(Shared {
            ifname: ifname.to_string(),
            mtu: config.mtu,
            socket: RwLock::new(Some(socket)),
            xdp: None,
            stopped: AtomicBool::new(false),
            socket_error: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let link_up = flags.up() && flags.running();
        tracing::info!(
            target: "hvnet::vf",
            ifname,
            index,
            mac = %config.mac,
            mtu = config.mtu,
            link_up,
            "kernel VF open (AF_PACKET, copy mode)"
        );
        let port = KernelVfPort::new(shared.clone(), config.mac, monitor, restore, link_up);
        Ok((port, vec![KernelVfQueue::new(shared, pool)]))
    }

    /// Opens the VF whose kernel interface is `ifname` with AF_XDP (see [`xdp`]): its control
    /// handle and one queue per socket (`xdp.queues`, or fewer if the interface has fewer).
    /// `config.pool_buffers`, `socket_buffer` and `fence_stack` are not used: each socket's
    /// UMEM is its pool, and redirected frames never reach the kernel's stack. Loads a
    /// program of its own (CAP_BPF and CAP_NET_ADMIN); see [`open_xdp_with`](Self::open_xdp_with).
    pub fn open_xdp(
        ifname: &str,
        config: KernelVfConfig,
        xdp: XdpConfig,
    ) -> Result<(KernelVfPort, Vec<XdpVfQueue>), KernelVfError> {
        let program = XdpProgram::load().map_err(|source| KernelVfError::Interface {
            ifname: ifname.to_string(),
            op: "setting up XDP",
            source,
        })?;
        Self::open_xdp_with(ifname, config, xdp, Arc::new(program))
    }

    /// [`open_xdp`](Self::open_xdp) with a program loaded before (and shared by the VFs one
    /// after another; each release empties the map slots it filled). Needs CAP_NET_RAW (the
    /// sockets), and CAP_NET_ADMIN only when the interface's MTU or state must change; the
    /// UMEMs count against RLIMIT_MEMLOCK unless CAP_IPC_LOCK.
    pub fn open_xdp_with(
        ifname: &str,
        config: KernelVfConfig,
        xdp: XdpConfig,
        program: Arc<XdpProgram>,
    ) -> Result<(KernelVfPort, Vec<XdpVfQueue>), KernelVfError> {
        let fail = |op: &'static str| {
            let ifname = ifname.to_string();
            move |source| KernelVfError::Interface { ifname, op, source }
        };
        let config_error = |message: String| KernelVfError::Config {
            ifname: ifname.to_string(),
            message,
        };
        Self::check_mtu(ifname, config.mtu)?;
        let chunk = xdp::chunk_size(config.mtu).ok_or_else(|| {
            config_error(format!(
                "MTU {} needs frames larger than a page: the AF_XDP transport takes at most {}",
                config.mtu,
                4096 - xdp::XDP_PACKET_HEADROOM - ETH_HEADER - VLAN_TAG
            ))
        })?;
        if !xdp.ring_size.is_power_of_two() || !(64..=16_384).contains(&xdp.ring_size) {
            return Err(config_error(format!(
                "ring size {} is not a power of two from 64 to 16384",
                xdp.ring_size
            )));
        }
        if (xdp.chunks as u64) < 2 * xdp.ring_size as u64 {
            return Err(config_error(format!(
                "{} chunks cannot keep a {}-entry fill ring full (at least twice the ring size)",
                xdp.chunks, xdp.ring_size
            )));
        }
        if xdp.queues == 0 || xdp.queues as u32 > xdp::MAP_ENTRIES {
            return Err(config_error(format!(
                "{} queues: 1 to {} are served",
                xdp.queues,
                xdp::MAP_ENTRIES
            )));
        }
        let Prepared {
            index,
            monitor,
            mut restore,
        } = Self::prepare(ifname, &config, false)?;
        let opened = (|| {
            let features = match xdp::xdp_features(index) {
                Ok(features) => features,
                Err(error) => {
                    tracing::debug!(target: "hvnet::vf", ifname, %error, "reading xdp_features");
                    None
                }
            };
            let can_redirect = features.map(|f| f.can_redirect());
            let native = match xdp.mode {
                XdpMode::Native if can_redirect == Some(false) => {
                    return Err(config_error(
                        "the driver's native XDP cannot redirect to a socket (its xdp_features \
                         lack REDIRECT): use generic mode"
                            .into(),
                    ));
                }
                XdpMode::Native => true,
                XdpMode::Generic => false,
                XdpMode::Auto => can_redirect == Some(true),
            };
            let (link, native) = match program.attach(index, native) {
                Ok(link) => (link, native),
                Err(error) if native && xdp.mode == XdpMode::Auto => {
                    tracing::warn!(
                        target: "hvnet::vf",
                        ifname,
                        %error,
                        "native XDP refused: generic mode"
                    );
                    let link = program
                        .attach(index, false)
                        .map_err(fail("attaching the XDP program (generic)"))?;
                    (link, false)
                }
                Err(error) => return Err(fail("attaching the XDP program")(error)),
            };
            let mut sockets = Vec::new();
            for queue in 0..xdp.queues {
                let setup = xdp::XskSetup {
                    ifindex: index,
                    queue,
                    ring_size: xdp.ring_size,
                    chunks: xdp.chunks,
                    chunk,
                    mtu: config.mtu,
                    copy: !native || xdp.force_copy,
                };
                match xdp::Xsk::open(setup) {
                    Ok(xsk) => sockets.push(xsk),
                    // The interface has no queue `queue`: serve the ones it has.
                    Err(e) if queue > 0 && e.raw_os_error() == Some(libc::EINVAL) => break,
                    Err(e) => return Err(fail("opening its AF_XDP sockets")(e)),
                }
            }
            for xsk in &sockets {
                xdp::sys::xskmap_set(
                    std::os::fd::AsFd::as_fd(&program.map),
                    xsk.queue as u32,
                    xsk.fd(),
                )
                .map_err(fail("adding a socket to the XSKMAP"))?;
            }
            let flags = netdev::interface_flags(ifname).map_err(fail("reading its flags"))?;
            Ok((sockets, link, native, flags))
        })();
        let (sockets, link, native, flags) = match opened {
            Ok(opened) => opened,
            Err(e) => return Err(Self::undo(ifname, &mut restore, e)),
        };
        let info = XdpInfo {
            native,
            zero_copy: sockets.iter().all(|x| x.zero_copy),
            queues: sockets.len() as u16,
        };
        let pools: Vec<Pool> = sockets.iter().map(|x| x.pool().clone()).collect();
        let shared = Arc::new(Shared {
            ifname: ifname.to_string(),
            mtu: config.mtu,
            socket: RwLock::new(None),
            xdp: Some(xdp::Sockets {
                queues: sockets
                    .into_iter()
                    .map(|x| parking_lot::Mutex::new(Some(x)))
                    .collect(),
                program,
                link: parking_lot::Mutex::new(Some(link)),
                info,
                retired: parking_lot::Mutex::new(xdp::XskCounters::default()),
            }),
            stopped: AtomicBool::new(false),
            socket_error: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let link_up = flags.up() && flags.running();
        tracing::info!(
            target: "hvnet::vf",
            ifname,
            index,
            mac = %config.mac,
            mtu = config.mtu,
            link_up,
            queues = info.queues,
            "kernel VF open (AF_XDP, {})",
            info.describe()
        );
        let port = KernelVfPort::new(shared.clone(), config.mac, monitor, restore, link_up);
        let queues = pools
            .into_iter()
            .enumerate()
            .map(|(i, pool)| XdpVfQueue::new(shared.clone(), i as u16, pool))
            .collect();
        Ok((port, queues))
    }

    fn check_mtu(ifname: &str, mtu: usize) -> Result<(), KernelVfError> {
        if !(68..=65_535).contains(&mtu) {
            return Err(KernelVfError::Config {
                ifname: ifname.to_string(),
                message: format!("MTU {mtu} is not 68 to 65535"),
            });
        }
        Ok(())
    }

    /// Checks the interface is the VF asked for (its MAC), opens a link monitor, and gives
    /// it the MTU asked for, the fence (if `fence`) and the up state; what it changed is in
    /// the returned `restore`, undone on error here.
    fn prepare(
        ifname: &str,
        config: &KernelVfConfig,
        fence: bool,
    ) -> Result<Prepared, KernelVfError> {
        let fail = |op: &'static str| {
            let ifname = ifname.to_string();
            move |source| KernelVfError::Interface { ifname, op, source }
        };
        let index = netdev::interface_index(ifname).map_err(fail("looking it up"))?;
        let found = netdev::interface_mac(ifname).map_err(fail("reading its MAC"))?;
        if found != config.mac {
            return Err(KernelVfError::MacMismatch {
                ifname: ifname.to_string(),
                found,
                expected: config.mac,
            });
        }
        let monitor = netdev::open_link_monitor().map_err(fail("opening a link monitor"))?;
        // From here on the interface may be changed: `restore` undoes it on every way out.
        let mut restore = port::Restore {
            index,
            mtu: None,
            brought_up: false,
            fence: None,
        };
        let changed = (|| {
            let mtu = netdev::interface_mtu(ifname).map_err(fail("reading its MTU"))?;
            if mtu as usize != config.mtu {
                netdev::set_mtu(ifname, config.mtu as u32).map_err(fail("setting its MTU"))?;
                restore.mtu = Some(mtu);
            }
            if fence {
                restore.fence = Some(
                    fence::raise(ifname, index).map_err(fail("fencing the kernel stack off it"))?,
                );
            }
            // Up before a socket binds: a socket bound to a down interface starts with an
            // error pending.
            let was_up = netdev::set_interface_up(ifname, true).map_err(fail("bringing it up"))?;
            restore.brought_up = !was_up;
            Ok(())
        })();
        match changed {
            Ok(()) => Ok(Prepared {
                index,
                monitor,
                restore,
            }),
            Err(e) => Err(Self::undo(ifname, &mut restore, e)),
        }
    }

    /// Undoes what `prepare` changed after `error`; the error.
    fn undo(ifname: &str, restore: &mut port::Restore, error: KernelVfError) -> KernelVfError {
        if let Err(e) = restore.apply(ifname) {
            tracing::warn!(target: "hvnet::vf", ifname, error = %e, "restoring the interface");
        }
        error
    }
}
