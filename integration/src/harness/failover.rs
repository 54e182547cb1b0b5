//! A failover port against the simulated host and software VFs: [`FailoverRig`] and
//! [`SimPci`], the simulated vPCI bus the port's [`VfProvider`] looks at.
//!
//! The host associates a VF (NVSP 128) and, `vf_device_delay` later, makes its device
//! available ([`SimHost::vf_device_ready`]). When the port's control thread then probes, the
//! bus creates a [`SoftIgbvf`] in the guest's memory (so the VF and the synthetic NIC share
//! one pool, as on a real guest), plugs its port into the host's vSwitch, and opens it with
//! the igbvf driver, exactly as a real guest binds a VF through VFIO. The scenario methods
//! take the device away in the orders real hosts do ([`SimPci::eject_azure`],
//! [`SimPci::remove_openvmm`], [`SimPci::surprise_remove`]).
//!
//! Memory: each device gets one of [`VF_WINDOWS`] windows of [`VF_WINDOW_SIZE`] bytes of
//! guest memory (touched once at start, like pinned memory), in turn, so a window is reused only after that many later devices (frames a
//! test still holds from an old VF are long gone by then).

use std::sync::Arc;
use std::time::Duration;

use bond::{
    AttachedVf, FailoverConfig, FailoverPort, FailoverQueue, ManualClock, ProbeError, VfProvider,
    VfRequest,
};
use netvsc::nic::{NicConfig, SyntheticNic};
use netvsc::vmbus::VmbusDevice;
use packet::{MacAddr, SharedMemory};
use parking_lot::Mutex;
use vf::igbvf::{Igbvf, IgbvfConfig};
use vf::port::VfQueue;

use crate::harness::rig::RigError;
use crate::harness::traffic::TrafficCounts;
use crate::host::{HostConfig, SimHost};
use crate::vf_model::{GuestDma, SoftIgbvf, SoftIgbvfConfig, VfModelControl, VfModelStats};

/// Windows of guest memory the bus hands to VFs in turn.
pub const VF_WINDOWS: usize = 8;
/// Bytes of one window (two queue pairs of the igbvf driver need about 3.5 MiB).
pub const VF_WINDOW_SIZE: usize = 8 << 20;

/// A VF device on the simulated bus.
#[derive(Debug)]
struct SimVf {
    serial: u32,
    device: Arc<SoftIgbvf>,
    control: VfModelControl,
    /// The driver's port, to tell frames in flight in the rings from stranded ones (weak:
    /// the bus must not keep a released driver alive).
    driver: Option<std::sync::Weak<dyn vf::port::VfPort>>,
}

/// Counters of the simulated bus, over every device it ever had.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimPciStats {
    /// Devices created (each probe that found the host's VF ready).
    pub devices: u64,
    /// Devices the driver failed to open.
    pub open_failures: u64,
    /// Frames the devices received into their rings, summed over removed devices.
    pub rx_frames: u64,
    /// Frames the devices dropped for want of a posted receive descriptor.
    pub rx_no_descriptor: u64,
    /// Frames the devices took from the switch and then dropped because the function was
    /// disabled or released, or the frame was oversize.
    pub rx_dropped: u64,
    /// Frames the devices took from the switch and then dropped because the link went down.
    pub rx_dropped_link_down: u64,
    /// Frames the devices took from the switch and then lost because the device vanished.
    pub rx_dropped_gone: u64,
    /// Frames the devices took from the switch and then lost to a PF reset.
    pub rx_dropped_reset: u64,
    /// Frames the devices refused at once (the switch counts them in `rx_dropped_vf`).
    pub rx_refused: u64,
    /// Frames the current device wrote into its receive rings that its driver has neither
    /// read nor discarded at a PF reset yet (0 once the driver let the device go): in
    /// flight, not lost.
    pub rx_unread: u64,
    /// Frames the current device wrote into its receive rings that its driver discarded
    /// unread when the PF reset the function (the driver's `rx_dropped_reset`; 0 once the
    /// driver let the device go). Informational: [`FailoverRig::account`] counts them as
    /// stranded through `rx_frames` and `rx_unread`, so they are not added again.
    pub rx_discarded_reset: u64,
    /// Frames the devices transmitted (onto the vSwitch or dropped there).
    pub tx_frames: u64,
    /// Frames the devices dropped at transmit because their link was down.
    pub tx_wire_dropped: u64,
    /// Devices still alive (not dropped by everything that held them): after a removal only
    /// the current one may be.
    pub devices_alive: u64,
}

/// How the PF of the simulated VFs answers.
#[derive(Clone, Debug)]
pub struct SimPciConfig {
    /// VF queue pairs (1 or 2).
    pub vf_queues: u16,
    /// Whether the PF has an administrator MAC for the VF (the NIC's, as Hyper-V assigns);
    /// without one the driver sets the MAC the port asks for.
    pub admin_mac: Option<MacAddr>,
    /// Whether new devices start with their link up.
    pub link_up: bool,
    /// Descriptors per ring of the driver.
    pub ring_size: u16,
}

impl Default for SimPciConfig {
    fn default() -> Self {
        Self {
            vf_queues: 2,
            admin_mac: None,
            link_up: true,
            ring_size: 256,
        }
    }
}

/// The simulated vPCI bus: a [`VfProvider`] over the host's VF. See the module docs.
#[derive(Debug)]
pub struct SimPci {
    host: Arc<SimHost>,
    memory: SharedMemory,
    windows: SharedMemory,
    config: Mutex<SimPciConfig>,
    next_window: Mutex<usize>,
    current: Mutex<Option<SimVf>>,
    stats: Mutex<SimPciStats>,
    /// Every device made, to tell which ones something still holds.
    made: Mutex<Vec<std::sync::Weak<SoftIgbvf>>>,
}

impl SimPci {
    fn new(host: Arc<SimHost>, windows: SharedMemory, config: SimPciConfig) -> Self {
        // Touch every page now, as a real guest's pinned DMA memory is: otherwise each new
        // VF's first traffic pays for page faults no real VF sees.
        let _ = windows.fill(0, windows.len(), 0);
        Self {
            memory: host.guest_memory(),
            host,
            windows,
            config: Mutex::new(config),
            next_window: Mutex::new(0),
            current: Mutex::new(None),
            stats: Mutex::new(SimPciStats::default()),
            made: Mutex::new(Vec::new()),
        }
    }

    /// Changes how later devices are made.
    pub fn configure(&self, f: impl FnOnce(&mut SimPciConfig)) {
        f(&mut self.config.lock());
    }

    /// The current device's model handle (faults, counters), if a device exists.
    pub fn vf(&self) -> Option<VfModelControl> {
        self.current.lock().as_ref().map(|v| v.control.clone())
    }

    /// Counters over every device, the current one included.
    pub fn stats(&self) -> SimPciStats {
        let mut stats = self.stats.lock().clone();
        if let Some(vf) = self.current.lock().as_ref() {
            // The driver's count first: read while frames move, the result errs towards
            // more unread (in flight), never towards frames wrongly called stranded.
            let read = vf
                .driver
                .as_ref()
                .and_then(std::sync::Weak::upgrade)
                .map(|driver| driver.stats());
            let device = vf.control.stats();
            add_device_stats(&mut stats, &device);
            // Every frame the device wrote is read by the driver (handed out or dropped and
            // counted), discarded by a PF reset (counted by the driver), or still unread in the
            // rings.
            if let Some(read) = read {
                stats.rx_discarded_reset = read.rx_dropped_reset;
                stats.rx_unread = device.rx_frames.saturating_sub(
                    read.rx_packets
                        + read.rx_no_buffer
                        + read.rx_frame_errors
                        + read.rx_descriptor_errors
                        + read.rx_dropped_reset,
                );
            }
        }
        let mut made = self.made.lock();
        made.retain(|d| d.strong_count() > 0);
        stats.devices_alive = made.len() as u64;
        stats
    }

    /// Azure's order: the host asks for the device (the VFIO request IRQ), waits at most
    /// `timeout` for the guest to let it go, then drops the association (NVSP 128 {0}) and
    /// the device. Whether the guest released it in time.
    pub fn eject_azure(&self, timeout: Duration) -> bool {
        let Some(control) = self.vf() else {
            return false;
        };
        control.request_release();
        let released = control.released_within(timeout);
        self.unplug();
        self.host.remove_vf();
        released
    }

    /// OpenVMM's order: the host moves the data path back (NVSP 129 {synthetic}), drops the
    /// association (NVSP 128 {0}), then waits at most `timeout` for the guest to release the
    /// device before removing it. Whether the guest released it in time.
    pub fn remove_openvmm(&self, timeout: Duration) -> bool {
        self.host.remove_vf();
        let released = self.vf().is_some_and(|c| c.released_within(timeout));
        self.unplug();
        released
    }

    /// The device vanishes without warning (reads return all ones); `notice_after` later
    /// the host notices and drops it (129 {synthetic}, 128 {0}). Until then it keeps steering
    /// the guest's frames to the dead VF, which drops them (counted). Whether the guest
    /// released the device within `timeout` after that.
    pub fn surprise_remove(&self, host_notices: impl FnOnce(), timeout: Duration) -> bool {
        let Some(control) = self.vf() else {
            return false;
        };
        control.surprise_remove();
        host_notices();
        self.host.remove_vf();
        let released = control.released_within(timeout);
        self.unplug();
        released
    }

    /// Pulls the device out of the vSwitch and off the bus.
    fn unplug(&self) {
        self.host.detach_vf_wire();
        if let Some(vf) = self.current.lock().take() {
            add_device_stats(&mut self.stats.lock(), &vf.control.stats());
            drop(vf.device);
        }
    }

    fn window(&self) -> Result<SharedMemory, ProbeError> {
        let mut next = self.next_window.lock();
        let slot = *next % VF_WINDOWS;
        *next += 1;
        self.windows
            .subregion(slot * VF_WINDOW_SIZE, VF_WINDOW_SIZE)
            .map_err(|e| ProbeError::Open {
                device: "soft-igbvf".into(),
                message: format!("no guest memory for the VF: {e}"),
            })
    }
}

fn add_device_stats(total: &mut SimPciStats, s: &VfModelStats) {
    total.rx_frames += s.rx_frames;
    total.rx_no_descriptor += s.rx_no_descriptor;
    total.rx_dropped += s.rx_oversize + s.rx_dropped_disabled;
    total.rx_dropped_link_down += s.rx_dropped_link_down;
    total.rx_dropped_gone += s.rx_dropped_gone;
    total.rx_dropped_reset += s.rx_dropped_reset;
    total.rx_refused += s.rx_refused;
    total.tx_frames += s.tx_frames;
    total.tx_wire_dropped += s.tx_wire_dropped;
}

impl VfProvider for SimPci {
    fn probe(&self, serial: u32, request: &VfRequest) -> Result<Option<AttachedVf>, ProbeError> {
        if self.host.vf_device_ready() != Some(serial) {
            return Ok(None);
        }
        if self
            .current
            .lock()
            .as_ref()
            .is_some_and(|v| v.serial == serial)
        {
            // Still bound from before (the host re-sent its association): nothing new.
            return Ok(None);
        }
        self.unplug();
        let config = self.config.lock().clone();
        let open_error = |message: String| ProbeError::Open {
            device: "soft-igbvf".into(),
            message,
        };
        let model = SoftIgbvfConfig {
            mac: config.admin_mac.unwrap_or(MacAddr([0; 6])),
            queues: config.vf_queues,
            dma_size: 0,
            link_up: config.link_up,
            guest_memory: Some(GuestDma {
                memory: self.memory.clone(),
                window: self.window()?,
            }),
            uplink: Some(Arc::new(self.host.vf_uplink())),
        };
        let (device, control) = SoftIgbvf::try_new(model).map_err(|e| open_error(e.to_string()))?;
        self.stats.lock().devices += 1;
        self.made.lock().push(Arc::downgrade(&device));
        self.host.attach_vf_wire(Arc::new(control.clone()));
        let driver = IgbvfConfig {
            queues: request.queues.clamp(1, config.vf_queues.clamp(1, 2)),
            ring_size: config.ring_size,
            mtu: request.mtu,
            mac: Some(request.mac),
            ..IgbvfConfig::default()
        };
        let opened = Igbvf::open(device.clone(), driver).map(|(port, queues)| {
            let port: Arc<dyn vf::port::VfPort> = Arc::new(port);
            (port, queues)
        });
        let weak = opened.as_ref().ok().map(|(port, _)| Arc::downgrade(port));
        *self.current.lock() = Some(SimVf {
            serial,
            device,
            control,
            driver: weak,
        });
        match opened {
            Ok((port, queues)) => Ok(Some(AttachedVf {
                name: format!("soft-igbvf-{serial}"),
                port,
                queues: queues
                    .into_iter()
                    .map(|q| Box::new(q) as Box<dyn VfQueue>)
                    .collect(),
            })),
            Err(e) => {
                self.stats.lock().open_failures += 1;
                self.unplug();
                Err(open_error(bond::provider::error_chain(&e)))
            }
        }
    }
}

/// Everything a failover rig is made of.
#[derive(Clone, Debug)]
pub struct FailoverRigConfig {
    /// The simulated host (the rig makes its DMA area large enough for the VF windows).
    pub host: HostConfig,
    /// The guest NIC (the rig sets `sriov`).
    pub nic: NicConfig,
    /// The failover port.
    pub failover: FailoverConfig,
    /// The simulated PCI bus.
    pub pci: SimPciConfig,
}

impl Default for FailoverRigConfig {
    /// Two queues, a VF device 10 ms after its association, the port's timers on a manual
    /// clock that starts still (the watchdog fires only when a test advances it), and the
    /// switch's bounds long enough for a loaded machine.
    fn default() -> Self {
        let host = HostConfig {
            vf_device_delay: Duration::from_millis(10),
            ..HostConfig::default()
        };
        let nic = NicConfig {
            queues: 2,
            sriov: true,
            ..NicConfig::default()
        };
        // The bounds a switch waits under are generous: the suites run on loaded machines,
        // where a poller or the software VF's thread can be set aside for hundreds of
        // milliseconds, and a bound that runs out lets the switch go on out of order (counted,
        // but what the ordering suites must not see). A bound that matters to a test is set
        // there.
        let failover = FailoverConfig {
            vf_probe_interval: Duration::ZERO,
            watchdog_interval: Duration::from_secs(2),
            watchdog_timeout: Duration::from_secs(2),
            ack_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(5),
            vf_stop_timeout: Duration::from_secs(5),
            tx_order_timeout: Duration::from_secs(2),
            idle_queue: Duration::from_millis(500),
            ..FailoverConfig::default()
        };
        Self {
            host,
            nic,
            failover,
            pci: SimPciConfig::default(),
        }
    }
}

/// A failover port over a NIC on the simulated host, with the simulated PCI bus as its VF
/// provider. Fields drop in order: the port (leaving and releasing any VF) first.
#[derive(Debug)]
pub struct FailoverRig {
    /// The port's control handle.
    pub port: FailoverPort,
    /// The port's queues (move them to poller threads).
    pub queues: Vec<FailoverQueue>,
    /// The simulated bus (VF faults, removal orders, device counters).
    pub pci: Arc<SimPci>,
    /// The simulated host.
    pub host: Arc<SimHost>,
    /// The port's clock.
    pub clock: ManualClock,
}

impl FailoverRig {
    /// Starts the host, opens the NIC (with SR-IOV) and the failover port over it.
    pub fn start(mut config: FailoverRigConfig) -> Result<Self, RigError> {
        let windows = VF_WINDOWS * VF_WINDOW_SIZE;
        config.host.shm.dma_size += windows;
        config.nic.sriov = true;
        let (host, mut device) = SimHost::start(config.host).map_err(RigError::Host)?;
        let host = Arc::new(host);
        let vf_memory = device
            .dma_memory(windows)
            .map_err(|e| RigError::Host(e.into()))?;
        let (nic, queues) =
            SyntheticNic::open(Box::new(device), config.nic).map_err(RigError::Nic)?;
        let pci = Arc::new(SimPci::new(host.clone(), vf_memory, config.pci));
        let clock = ManualClock::new();
        let (port, queues) = FailoverPort::open(
            nic,
            queues,
            pci.clone(),
            config.failover,
            Arc::new(clock.clone()),
        )
        .map_err(RigError::Failover)?;
        Ok(Self {
            port,
            queues,
            pci,
            host,
            clock,
        })
    }
}

/// Where the frames of a traffic run went, by reason ([`FailoverRig::account`]). Every frame
/// the peer injected and every frame the port's `tx_burst` took was delivered or is in exactly
/// one of these counts; `*_unaccounted` is what is in none (0 when the run balances; negative
/// if something was counted twice).
///
/// The reasons (docs/failover.md states the guarantees in them):
/// - **stranded**: in a VF's rings, or on its wire, when the VF went (surprise removal) or was
///   reset in place (a PF reset);
/// - **overload**: no receive descriptor on the VF, no buffer or staging room in the guest, the
///   external port full: a poller or the peer that did not keep up;
/// - **link down**: taken by a VF whose link then went down;
/// - **failover**: taken by a VF after it was disabled or released: what a correct failover
///   never lets happen.
///
/// Frames the switch refused at injection (packet filter, queue not open, a VF that refused)
/// never entered: they are not in `peer_injected` but in `refused`, which must equal the
/// peer's refusals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Towards the guest, stranded.
    pub rx_stranded: u64,
    /// Towards the guest, overload.
    pub rx_overload: u64,
    /// Towards the guest, link down.
    pub rx_link_down: u64,
    /// Towards the guest, failover.
    pub rx_failover: u64,
    /// Towards the guest, in no count: injected − delivered − the counts above.
    pub rx_unaccounted: i64,
    /// Frames the switch refused at injection, by its own counters.
    pub refused: u64,
    /// Towards the peer, stranded: taken by a VF that went and never sent (`lost_vf_tx`).
    pub tx_stranded: u64,
    /// Towards the peer, overload: the external port's FIFO was full.
    pub tx_overload: u64,
    /// Towards the peer, link down: sent by a VF onto a dead link.
    pub tx_link_down: u64,
    /// Towards the peer, in no count: taken − received − the counts above.
    pub tx_unaccounted: i64,
}

impl Accounting {
    /// Whether every frame is delivered or in exactly one count (and the refusals agree).
    pub fn balanced(&self, c: &TrafficCounts) -> bool {
        self.rx_unaccounted == 0 && self.tx_unaccounted == 0 && self.refused == c.peer_refused
    }

    /// Frames the failover itself lost, both ways (zero in every scenario).
    pub fn failover_lost(&self) -> u64 {
        self.rx_failover
    }

    /// Frames lost to overload, both ways.
    pub fn overload(&self) -> u64 {
        self.rx_overload + self.tx_overload
    }

    /// Frames stranded on a VF that went, both ways.
    pub fn stranded(&self) -> u64 {
        self.rx_stranded + self.tx_stranded
    }

    /// Frames lost to a VF link that went down, both ways.
    pub fn link_down(&self) -> u64 {
        self.rx_link_down + self.tx_link_down
    }
}

impl FailoverRig {
    /// Starts [`Traffic`](crate::harness::traffic::Traffic) over the port's queues (moved out of
    /// [`queues`](Self::queues)), the peer at the host's external port.
    pub fn start_traffic(
        &mut self,
        config: crate::harness::traffic::TrafficConfig,
    ) -> crate::harness::traffic::Traffic<FailoverQueue> {
        let queues = std::mem::take(&mut self.queues);
        crate::harness::traffic::Traffic::start(
            queues,
            self.port.pool().clone(),
            self.port.mac(),
            self.host.clone(),
            config,
        )
    }

    /// Accounts for the frames of a traffic run over this rig by reason (see
    /// [`Accounting`]).
    ///
    /// Read while frames still move, the counts err towards "in flight" (unaccounted), never
    /// towards a loss: `c` is read first, then the bus (the driver before its device), then
    /// the port, so a frame on its way is never seen as stranded.
    pub fn account(&self, c: &TrafficCounts) -> Accounting {
        let bus = self.pci.stats();
        let port = self.port.stats();
        let host = self.host.stats();
        let nic = self.port.nic().stats();
        let rx_vf: u64 = port.queues.iter().map(|q| q.rx_vf).sum();
        let nic_overload: u64 = nic
            .queues
            .iter()
            .map(|q| q.rx_dropped_no_buffer + q.rx_dropped_overflow)
            .sum();
        // Frames written into a VF's rings that no poller got: stranded (left in the rings of
        // a VF that went, or discarded unread by a PF reset), unless the current VF's driver
        // has yet to read them.
        let in_rings = bus.rx_frames.saturating_sub(rx_vf + bus.rx_unread);
        let rx_stranded = in_rings + bus.rx_dropped_gone + bus.rx_dropped_reset;
        let rx_overload = bus.rx_no_descriptor + nic_overload;
        let rx_link_down = bus.rx_dropped_link_down;
        let rx_failover = bus.rx_dropped;
        let rx_lost = rx_stranded + rx_overload + rx_link_down + rx_failover;
        let injected = c.peer_injected + c.peer_injected_broadcast;
        let delivered = c.guest_received + c.guest_received_broadcast;
        let refused = host.rx_dropped_vf
            + host.rx_dropped_no_queue
            + host.rx_dropped_filtered
            + host.rx_dropped_no_buffer
            + host.rx_dropped_ring_full;
        let tx_stranded = port.lost_vf_tx;
        let tx_overload = host.tx_dropped_port_full;
        let tx_link_down = bus.tx_wire_dropped;
        let signed = |a: u64, b: u64| a as i64 - b as i64;
        Accounting {
            rx_stranded,
            rx_overload,
            rx_link_down,
            rx_failover,
            rx_unaccounted: signed(injected, delivered + rx_lost),
            refused,
            tx_stranded,
            tx_overload,
            tx_link_down,
            tx_unaccounted: signed(
                c.guest_sent,
                c.peer_received + tx_stranded + tx_overload + tx_link_down,
            ),
        }
    }
}
