//! The simulated Hyper-V host: the VMBus host side, NetVSP, a vSwitch and fault injection.
//!
//! [`SimHost::start`] lays out a shared-memory VMBus ([`ShmBus`]), hands the guest its
//! [`ShmDevice`] and starts one host thread that serves every channel. Between the host thread
//! and the guest there are only shared-memory bytes and doorbells (eventfds and the monitor
//! page); [`SimHost`] itself is the test harness's control handle (link, VF, faults, stats,
//! the [`ExternalPort`]).
//!
//! Modules:
//! - `channel`: the host's ends of one VMBus channel (the same ring code the guest uses).
//! - `netvsp`: the NetVSP session — `init` (NVSP initialisation), `rndis` (control and
//!   OIDs), `rx` (receive buffer, delivery, completions), `tx` (guest sends), `vf`
//!   (association and data path).
//! - [`vswitch`]: loopback, the in-memory external port and the VF's port (steering by data
//!   path, the ordering promise at a data-path switch, the lock order with a VF).
//! - [`faults`] and [`stats`].
//!
//! Lifecycle of the host thread: it opens the primary channel (writing the host's ring header
//! fields), then loops: acknowledge a guest reopen (dropping its ring ends first, then starting
//! a fresh NetVSP session — this works even when the NetVSP worker is dead, as Hyper-V's VMBus
//! server does), apply control requests, steer the frames a VF sent in Loopback mode, poll the
//! session (drain each guest→host ring, answer, deliver receives), and when idle unmask the
//! guest's signals and sleep in `wait_guest_signal`, honouring both doorbells (eventfd and
//! monitor-page bits; the latter polled at the latency the guest wrote in the monitor page). Dropping [`SimHost`] stops and joins the thread (and unplugs a VF
//! port, breaking the switch → VF → uplink → switch cycle). The behaviour follows
//! `reference/netvsp-host-behaviour.md` (OpenVMM's netvsp) and is checked byte for byte against
//! the conformance transcripts (`tests/conformance_replay.rs`).

mod channel;
pub mod faults;
mod netvsp;
pub mod stats;
pub mod vswitch;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netvsc::vmbus::shm::{ChannelState, ShmBus, ShmConfig, ShmDevice, ShmHostSide};
use netvsc::vmbus::{DeviceError, Doorbell, VmbusDevice};
use packet::MacAddr;
use parking_lot::Mutex;

pub use faults::Fault;
pub use stats::{FlowDrops, HostStats, TeardownStep};
pub use vswitch::{ExternalPort, Paced, PortMode, VfUplink, VfWire};

use netvsp::{Command, Persist, Session, SessionConfig};
use stats::StatsCell;
use vswitch::Switch;

/// How long the host thread sleeps at most when nothing is pending and the guest wrote no
/// monitor latency (the monitor-page polling period for such a guest).
const IDLE_WAIT: Duration = Duration::from_millis(5);
/// The shortest monitor-page poll the host does, whatever latency the guest wrote (a guest
/// could write one unit, 100 ns, and keep a core busy).
const MIN_MONITOR_POLL: Duration = Duration::from_micros(10);
/// How long it sleeps at most while work waits on something other than a guest signal.
const BUSY_WAIT: Duration = Duration::from_micros(500);

/// The simulated host's configuration.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Sizes of the shared-memory bus (rings, buffers, channels).
    pub shm: ShmConfig,
    /// The NIC's MAC address (default `00:15:5d:01:02:03`, as in the transcripts).
    pub mac: MacAddr,
    /// The endpoint's queue count (subchannel requests must stay below it; capped at 64).
    pub max_queues: u16,
    /// The endpoint's link speed in bit/s (10 Gbit/s).
    pub link_speed_bps: u64,
    /// Where the guest's transmitted frames go (default [`PortMode::External`]).
    pub port: PortMode,
    /// The VF id (association serial) of a VF present from the start; `None` = no VF.
    pub vf: Option<u32>,
    /// Delay of the second transition of a same-state link toggle (5 s like OpenVMM; tests
    /// shorten it).
    pub link_delay: Duration,
    /// Delay between a VF association and the host making the device available (1 s).
    pub vf_device_delay: Duration,
    /// RSS indirection table size the endpoint reports (64 like the transcripts; 0 reports 128).
    pub rss_table_size: u16,
    /// Whether the endpoint claims transmit checksum and LSO offloads (as in the
    /// `rndis-offload-caps` transcript; default false).
    pub tx_offloads: bool,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            shm: ShmConfig::default(),
            mac: MacAddr([0x00, 0x15, 0x5d, 0x01, 0x02, 0x03]),
            max_queues: 64,
            link_speed_bps: 10_000_000_000,
            port: PortMode::External,
            vf: None,
            link_delay: Duration::from_secs(5),
            vf_device_delay: Duration::from_secs(1),
            rss_table_size: 64,
            tx_offloads: false,
        }
    }
}

/// Errors starting the simulated host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The shared-memory bus or a ring could not be set up.
    #[error("simulated VMBus")]
    Device(#[from] DeviceError),
    /// The configuration is invalid.
    #[error("invalid host configuration: {0}")]
    Config(String),
    /// The host thread could not be started.
    #[error("starting the host thread")]
    Thread(#[source] std::io::Error),
}

/// What the control handle and the host thread share.
#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    commands: Mutex<Vec<Command>>,
    /// Commands issued, and applied by the host thread (see [`SimHost::settle`]).
    commands_issued: AtomicU64,
    commands_applied: AtomicU64,
    stats: Arc<StatsCell>,
}

/// The simulated host's control handle (`Send + Sync`). Dropping it stops and joins the host
/// thread.
#[derive(Debug)]
pub struct SimHost {
    shared: Arc<Shared>,
    host_side: ShmHostSide,
    external: ExternalPort,
    switch: Arc<Switch>,
    /// A guest doorbell of channel 0, used only to wake the host thread for a control request.
    kick: Arc<dyn Doorbell>,
    thread: Option<JoinHandle<()>>,
}

impl SimHost {
    /// Lays out the bus, starts the host thread and returns the guest's device.
    pub fn start(config: HostConfig) -> Result<(SimHost, ShmDevice), HostError> {
        if config.max_queues == 0 {
            return Err(HostError::Config("max_queues must be at least 1".into()));
        }
        let bus = ShmBus::new(&config.shm)?;
        let host_side = bus.host_side();
        let device = bus.guest_device();
        let kick = bus.guest_device().doorbell(0)?;
        let stats = Arc::new(StatsCell::default());
        let switch = Arc::new(Switch::new(config.port, stats.clone()));
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            commands: Mutex::new(Vec::new()),
            commands_issued: AtomicU64::new(0),
            commands_applied: AtomicU64::new(0),
            stats: stats.clone(),
        });
        let session_config = SessionConfig {
            mac: config.mac,
            max_queues: config.max_queues,
            link_speed_bps: config.link_speed_bps,
            tx_offloads: config.tx_offloads,
            rss_table_size: config.rss_table_size,
            link_delay: config.link_delay,
            vf_device_delay: config.vf_device_delay,
        };
        let persist = Persist {
            link_up: true,
            vf_serial: config.vf,
            ..Persist::default()
        };
        let session = Session::new(
            session_config,
            host_side.clone(),
            stats,
            switch.clone(),
            persist,
        )?;
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("hvnet-sim-host".into())
            .spawn(move || host_thread(thread_shared, session))
            .map_err(HostError::Thread)?;
        Ok((
            SimHost {
                shared,
                host_side,
                external: ExternalPort::new(switch.clone()),
                switch,
                kick,
                thread: Some(thread),
            },
            device,
        ))
    }

    /// The vSwitch's in-memory external port.
    pub fn external(&self) -> &ExternalPort {
        &self.external
    }

    /// The endpoint reports link `up`: a change is indicated at once (RNDIS `0x4001000B` /
    /// `0x4001000C`); the current state again is a toggle, the second indication following
    /// `link_delay` later.
    pub fn set_link(&self, up: bool) {
        self.command(Command::SetLink(up));
    }

    /// Sends an RNDIS NETWORK_CHANGE indication.
    pub fn network_change(&self) {
        self.command(Command::NetworkChange);
    }

    /// The backend gains the VF `serial`: `{128, 1, serial}` once the session allows it
    /// (NVSP ≥ 4, SR-IOV capability, RNDIS initialised).
    pub fn offer_vf(&self, serial: u32) {
        self.command(Command::OfferVf(serial));
    }

    /// The backend loses its VF, in OpenVMM's order: if the data path is the VF, host
    /// `SWITCH_DATA_PATH {synthetic}` (tid `0x8000000000000001`), then `{128, 0, serial}`.
    pub fn remove_vf(&self) {
        self.command(Command::RemoveVf);
    }

    /// A host-initiated `SWITCH_DATA_PATH {synthetic}`.
    pub fn force_synthetic(&self) {
        self.command(Command::ForceSynthetic);
    }

    /// Injects `fault` (see [`Fault`]).
    pub fn inject_fault(&self, fault: Fault) {
        self.command(Command::Fault(fault));
    }

    /// Plugs the VF's port into the vSwitch (replacing any): while the guest's data path is
    /// the VF, unicast frames for the guest go to `wire` (see [`vswitch`]). A harness calls
    /// this when the simulated PCI device appears.
    pub fn attach_vf_wire(&self, wire: Arc<dyn VfWire>) {
        self.switch.set_vf_wire(Some(wire));
    }

    /// Pulls the VF's port out: everything goes to the synthetic path again. A harness calls
    /// this when the simulated PCI device goes.
    pub fn detach_vf_wire(&self) {
        self.switch.set_vf_wire(None);
    }

    /// The VF's uplink into the vSwitch (hand it to the VF as where its transmissions go).
    pub fn vf_uplink(&self) -> VfUplink {
        VfUplink::new(self.switch.clone(), self.kick.clone())
    }

    /// The serial of the VF whose device the host has made available to the guest (the
    /// association went out and `vf_device_delay` elapsed, or the guest already switched to
    /// it); `None` before that and after removal.
    pub fn vf_device_ready(&self) -> Option<u32> {
        self.switch.vf_device()
    }

    /// Whether the guest's data path is the VF (the vSwitch's steering flag).
    pub fn data_path_vf(&self) -> bool {
        self.switch.data_path_vf()
    }

    /// The whole bus memfd, the guest's "physical memory" (bus address = offset).
    pub fn guest_memory(&self) -> packet::SharedMemory {
        self.host_side.memory().clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> HostStats {
        self.shared.stats.snapshot()
    }

    /// The frames dropped on their way out of the external port, and on their way to the
    /// guest (the sum of [`rx_dropped_ring_full`](HostStats::rx_dropped_ring_full),
    /// [`rx_dropped_no_buffer`](HostStats::rx_dropped_no_buffer) and
    /// [`rx_dropped_filtered`](HostStats::rx_dropped_filtered)): what a traffic loop that polls
    /// needs to know when its frames are all accounted for, in a few loads, where
    /// [`stats`](Self::stats) takes a lock and copies every counter and history.
    pub fn flow_drops(&self) -> FlowDrops {
        let stats = &self.shared.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FlowDrops {
            to_external: load(&stats.tx_dropped_port_full),
            to_guest: load(&stats.rx_dropped_ring_full)
                + load(&stats.rx_dropped_no_buffer)
                + load(&stats.rx_dropped_filtered),
        }
    }

    /// The raw host side of the bus, for tests.
    pub fn host_side(&self) -> &ShmHostSide {
        &self.host_side
    }

    fn command(&self, command: Command) {
        let mut commands = self.shared.commands.lock();
        commands.push(command);
        self.shared.commands_issued.fetch_add(1, Ordering::AcqRel);
        drop(commands);
        let _ = self.kick.signal();
    }

    /// Waits at most `timeout` until the host thread has applied every command issued before
    /// the call (link, VF, faults); whether it did. The link a query answers, for example, is
    /// the new one once this returns `true`.
    pub fn settle(&self, timeout: Duration) -> bool {
        let issued = self.shared.commands_issued.load(Ordering::Acquire);
        let deadline = packet::deadline::after(Instant::now(), timeout);
        while self.shared.commands_applied.load(Ordering::Acquire) < issued {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }
}

impl Drop for SimHost {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let _ = self.kick.signal();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Breaks the switch → wire → VF → uplink → switch cycle.
        self.switch.set_vf_wire(None);
    }
}

/// How long the host sleeps with nothing to do: [`IDLE_WAIT`], or less if the guest asked in
/// the monitor page to have its trigger bits noticed sooner (a guest that signals only there,
/// as DPDK's PMD does, is then served within the latency it wrote, as on Hyper-V). Never
/// below [`MIN_MONITOR_POLL`], whatever the guest wrote.
fn idle_wait(monitor_latency: Option<Duration>) -> Duration {
    monitor_latency.map_or(IDLE_WAIT, |latency| {
        latency.clamp(MIN_MONITOR_POLL, IDLE_WAIT)
    })
}

/// The host thread (see the module docs).
fn host_thread(shared: Arc<Shared>, mut session: Session) {
    let host_side = session.host_side.clone();
    while !shared.stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if let Some(generation) = host_side.pending_reopen()
            && host_side.state() != ChannelState::Rescinded
        {
            session = match reopen(session, &host_side, generation) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(target: "hvnet::host", "reopen failed: {e}");
                    return;
                }
            };
            stats::bump(&shared.stats.reopens, 1);
        }
        let commands = std::mem::take(&mut *shared.commands.lock());
        let applied = commands.len() as u64;
        for command in commands {
            session.command(command, now);
        }
        shared.commands_applied.fetch_add(applied, Ordering::AcqRel);
        let _ = host_side.take_monitor_pending();
        if let Some(wire) = session.switch.vf_wire() {
            wire.pump_uplink();
        }
        let steered = session.switch.steer_vf_loopback();
        if session.poll(now) || steered {
            continue;
        }
        if session.arm() {
            continue;
        }
        let mut timeout = if session.has_backlog() || session.switch.has_vf_loopback() {
            BUSY_WAIT
        } else {
            idle_wait(host_side.monitor_latency().ok().flatten())
        };
        if let Some(deadline) = session.next_deadline() {
            timeout = timeout.min(deadline.saturating_duration_since(Instant::now()));
        }
        if host_side.wait_guest_signal(timeout).is_err() {
            std::thread::sleep(timeout);
        }
    }
}

/// Acknowledges a guest reopen: the old session's ring ends go first, then the rings are
/// zeroed, a fresh session opens the primary channel, and only then is the reopen
/// acknowledged (a guest never talks to a session that is not there yet).
fn reopen(
    session: Session,
    host_side: &ShmHostSide,
    generation: u32,
) -> Result<Session, DeviceError> {
    let config = session.config.clone();
    let stats = session.stats.clone();
    let switch = session.switch.clone();
    let persist = session.into_persist();
    host_side.prepare_reopen()?;
    let session = Session::new(config, host_side.clone(), stats, switch, persist)?;
    // Acknowledged only now: a guest that sees the ack finds the new session ready.
    host_side.finish_reopen(generation)?;
    Ok(session)
}
