//! The control handle: open, service, stop, release, stats.
//!
//! [`Igbvf`] owns the mailbox protocol state, the MAC, the link state and the interrupt
//! eventfds behind one lock taken by the control thread; it reaches each queue through the
//! queue's own lock, only to re-program it after a PF reset, to stop it, or to retire it.
//!
//! Removal: any all-ones read of `STATUS` or `V2PMAILBOX` marks the port removed once: every
//! queue becomes `Gone` (bursts return 0), frames stranded in TX rings are counted as
//! `tx_lost` (unless a queue already counted them itself, see `queue`), and
//! [`VfEvent::Removed`] is reported; nothing further touches the device but
//! [`VfPort::release`]. A PF reset counts the stranded frames the same way when it is
//! reported: the reset stopped the rings, and the re-initialisation starts them empty. The
//! frames written into the RX rings and not yet handed out are stranded too: they are counted
//! in `rx_dropped_reset` when the reset is reported, and whatever arrived since just before
//! the rings are re-armed.
//!
//! Interrupts: `service` waits in one `poll(2)` (through [`EventFd::wait_any`]) over the MSI-X
//! eventfds and the request eventfd, the only wait in the driver that is not measured on the
//! [`Clock`]; then it polls the device whatever fired.

use std::sync::Arc;
use std::time::{Duration, Instant};

use packet::{MacAddr, deadline};
use parking_lot::Mutex;

use super::error::IgbvfError;
use super::mac::{self, MacChoice};
use super::mailbox_io::{Interrupted, MailboxIo, POLL_INTERVAL};
use super::queue::{IgbvfQueue, QueueCounters, QueueInner, QueueState};
use super::{Clock, IgbvfConfig, SystemClock};
use crate::device::{ALL_ONES, DeviceError, EventFd, RegisterIo, VfDevice};
use crate::igbvf::mailbox::{
    MacAddress, MailboxAction, MailboxProtocol, PfMessage, Request, multicast_hash,
    parse_pf_message,
};
use crate::igbvf::regs::{
    CounterReadings, EIAC, EIAM, EIMC, EIMS, IVAR_MISC, IVAR0, MSIX_VECTORS, Queue, STATUS, Status,
    V2PMAILBOX, V2pMailbox, VfCounters, ivar_misc, ivar0, rxdctl, txdctl,
};
use crate::port::{VfEvent, VfPort, VfPortStats};

/// MSI-X vector of RX causes.
const VECTOR_RX: u8 = 0;
/// MSI-X vector of TX causes.
const VECTOR_TX: u8 = 1;
/// MSI-X vector of the mailbox ("other") cause.
const VECTOR_MAILBOX: u8 = 2;
/// Every vector's bit in `EIMS`/`EIMC`/`EIAC`/`EIAM`.
const ALL_VECTORS: u32 = (1 << MSIX_VECTORS) - 1;

#[derive(Debug)]
struct ControlState {
    proto: MailboxProtocol,
    mac: MacAddress,
    link_up: bool,
    /// MSI-X eventfds, empty in polling mode.
    msix: Vec<Arc<EventFd>>,
    removed: bool,
    stopped: bool,
    released: bool,
    /// A PF reset was reported and the function is not yet re-initialised.
    needs_reinit: bool,
    hw: VfCounters,
    /// Multicast hashes last accepted by the PF, re-sent after a PF reset.
    multicast: Vec<u16>,
}

/// An open igbvf port: the control handle ([`VfPort`]).
///
/// Behaviour beyond the trait's contract:
/// - `service` reads `V2PMAILBOX` (through the protocol, latching `RSTD`), `STATUS` and the
///   statistics registers on every call, whatever interrupt fired; a PF reset (`RSTI`, `RSTD`,
///   a control message without CTS, a bare NACK) is reported as [`VfEvent::PfReset`] at once
///   and the function is re-initialised on a later call (not while `RSTI` is still set, not
///   after `stop`), which reports [`VfEvent::ResetComplete`];
/// - `open` uses the PF's administrator MAC; when the PF has none it sends
///   [`IgbvfConfig::mac`] (or a random locally administered MAC) with `SET_MAC_ADDR` and fails
///   with [`IgbvfError::MacRejected`] if the PF refuses it; a configured MAC that differs from
///   the administrator's is ignored (logged at warn). A PF reset re-sends the same MAC;
/// - `service` waits in one `poll(2)` over the interrupt eventfds (a zero timeout does not
///   block; without MSI-X and request IRQ it does not wait);
/// - `stop` disables RX and waits for `RXDCTL.ENABLE` to read back clear, waits for TX
///   completions, then disables TX and waits for `TXDCTL.ENABLE` to read back clear, all
///   within its timeout on the [`Clock`] (an all-ones read ends every wait at once: the device
///   is gone); whatever is still in a TX ring is then counted in `tx_lost`;
/// - `release` stops first (draining TX for at most the mailbox timeout), masks interrupts,
///   disables MSI-X and releases the device; it is idempotent.
#[derive(Debug)]
pub struct Igbvf {
    device: Arc<dyn VfDevice>,
    mbx: MailboxIo,
    config: IgbvfConfig,
    queues: Vec<Arc<Mutex<QueueInner>>>,
    request: Option<Arc<EventFd>>,
    state: Mutex<ControlState>,
}

impl Igbvf {
    /// Opens the function with the wall clock; see [`Self::open_with_clock`].
    pub fn open(
        device: Arc<dyn VfDevice>,
        config: IgbvfConfig,
    ) -> Result<(Self, Vec<IgbvfQueue>), IgbvfError> {
        Self::open_with_clock(device, config, Arc::new(SystemClock))
    }

    /// Resets the function, negotiates with the PF, sets up rings and interrupts, and returns
    /// the control handle and one queue handle per queue. Every wait is bounded by `config`'s
    /// timeouts measured on `clock`.
    pub fn open_with_clock(
        device: Arc<dyn VfDevice>,
        config: IgbvfConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, Vec<IgbvfQueue>), IgbvfError> {
        config.validate()?;
        let bar = device.bar0();
        let name = device.name().to_owned();
        if bar.read32(STATUS) == ALL_ONES {
            return Err(IgbvfError::Removed {
                device: name,
                register: STATUS,
            });
        }
        // vfio-pci leaves bus mastering off: without it the VF can neither DMA nor raise MSI-X
        // (Linux igbvf calls pci_set_master at probe for the same reason).
        set_bus_master(device.as_ref(), true).map_err(|source| IgbvfError::Device {
            device: name.clone(),
            op: "enable bus mastering",
            source,
        })?;
        let mbx = MailboxIo {
            name: name.clone(),
            bar,
            clock,
            timeout: config.mailbox_timeout,
        };
        let mut proto = mbx.protocol();
        let admin = mbx.reset_function(&mut proto)?;
        let mac = match mac::choose(&name, admin, config.mac)? {
            MacChoice::Admin(mac) => mac,
            MacChoice::Own(mac) => {
                mbx.set_mac(&mut proto, mac)?;
                mac
            }
        };
        if config.mtu > packet::ethernet::DEFAULT_MTU {
            mbx.request_acked(&mut proto, &Request::SetLpe(config.max_frame() as u32))?;
        }
        let mut queues = Vec::with_capacity(usize::from(config.queues));
        let deadline = deadline::after(mbx.clock.now(), config.link_wait);
        for index in 0..config.queues {
            let queue = Queue::new(index as u8).ok_or_else(|| IgbvfError::Config {
                field: "queues",
                reason: format!("no queue {index}"),
            })?;
            let mut inner = QueueInner::new(&device, queue, &config)?;
            inner.program(mbx.clock.as_ref(), deadline)?;
            queues.push(Arc::new(Mutex::new(inner)));
        }
        // Without MSI-X the port is polled; without a request IRQ it never reports
        // `ReleaseRequested`.
        let msix = device
            .enable_msix(u32::from(MSIX_VECTORS))
            .unwrap_or_default();
        let request = device.request_irq().ok();
        let port = Self {
            device,
            mbx,
            config,
            queues,
            request,
            state: Mutex::new(ControlState {
                proto,
                mac,
                link_up: false,
                msix,
                removed: false,
                stopped: false,
                released: false,
                needs_reinit: false,
                hw: VfCounters::default(),
                multicast: Vec::new(),
            }),
        };
        {
            let mut st = port.state.lock();
            port.program_interrupts(&st)?;
            st.link_up = port.wait_for_link(deadline);
            st.hw = VfCounters::new(&port.read_counters());
        }
        let handles = port
            .queues
            .iter()
            .enumerate()
            .map(|(i, inner)| IgbvfQueue {
                inner: inner.clone(),
                index: i as u16,
                pool: inner.lock().rx.pool.clone(),
            })
            .collect();
        Ok((port, handles))
    }

    /// The configuration the port was opened with.
    pub fn config(&self) -> &IgbvfConfig {
        &self.config
    }

    /// Snapshots of every queue's counters, in queue order. TX completions the device has
    /// written back are reclaimed first, so `tx_packets` is current.
    pub fn queue_counters(&self) -> Vec<QueueCounters> {
        self.queues
            .iter()
            .map(|q| {
                let mut inner = q.lock();
                inner.reclaim_tx();
                inner.counters
            })
            .collect()
    }

    /// Asks the PF to deliver frames for these multicast groups (`SET_MULTICAST`: the 82576
    /// filters by a 12-bit hash of each address, at most 30 hashes; duplicates are sent once).
    /// The list replaces the previous one and is re-sent after a PF reset. An empty list
    /// clears the filter.
    pub fn set_multicast(&self, groups: &[MacAddr]) -> Result<(), IgbvfError> {
        let mut hashes: Vec<u16> = groups.iter().map(|g| multicast_hash(&g.0)).collect();
        hashes.sort_unstable();
        hashes.dedup();
        let mut st = self.state.lock();
        if st.removed || st.released {
            return Err(IgbvfError::Removed {
                device: self.mbx.name.clone(),
                register: V2PMAILBOX,
            });
        }
        self.mbx
            .request_acked(&mut st.proto, &Request::SetMulticast(hashes.clone()))?;
        st.multicast = hashes;
        Ok(())
    }

    /// Whether MSI-X is in use (otherwise the port is polled).
    pub fn uses_msix(&self) -> bool {
        !self.state.lock().msix.is_empty()
    }

    fn program_interrupts(&self, st: &ControlState) -> Result<(), IgbvfError> {
        let bar = &self.mbx.bar;
        if st.msix.is_empty() {
            bar.write32(EIMC, ALL_VECTORS);
            return Ok(());
        }
        let second = |v| (self.config.queues > 1).then_some(v);
        let register_error = |register| {
            move |source| IgbvfError::Register {
                device: self.mbx.name.clone(),
                register,
                source,
            }
        };
        let ivar = ivar0(
            Some(VECTOR_RX),
            Some(VECTOR_TX),
            second(VECTOR_RX),
            second(VECTOR_TX),
        )
        .map_err(register_error(IVAR0))?;
        let misc = ivar_misc(VECTOR_MAILBOX).map_err(register_error(IVAR_MISC))?;
        bar.write32(IVAR0, ivar);
        bar.write32(IVAR_MISC, misc);
        bar.write32(EIAC, ALL_VECTORS);
        bar.write32(EIAM, ALL_VECTORS);
        bar.write32(EIMS, ALL_VECTORS);
        Ok(())
    }

    /// Polls `STATUS.LU` until the link is up or `deadline` passes; a link still down is not
    /// an error (`service` reports it when it comes up).
    fn wait_for_link(&self, deadline: Instant) -> bool {
        loop {
            let status = Status(self.mbx.bar.read32(STATUS));
            if status.link_up() || status.is_removed() || self.clock().now() >= deadline {
                return status.link_up();
            }
            self.clock().pause(POLL_INTERVAL);
        }
    }

    fn read_counters(&self) -> CounterReadings {
        VfCounters::REGISTERS.map(|r| self.mbx.bar.read32(r))
    }

    fn clock(&self) -> &dyn Clock {
        self.mbx.clock.as_ref()
    }

    /// Waits up to `timeout` (real time: the kernel ends this wait, not the [`Clock`]) for
    /// any MSI-X vector or the request IRQ, in one `poll(2)`, and consumes the MSI-X signals
    /// (the request's is left for the caller). No eventfds: no wait.
    fn wait_for_interrupt(&self, msix: &[Arc<EventFd>], timeout: Duration) {
        let mut fds: Vec<&EventFd> = msix.iter().map(AsRef::as_ref).collect();
        if let Some(request) = &self.request {
            fds.push(request);
        }
        if fds.is_empty() {
            return;
        }
        // A failed wait (out of memory) is a wait that saw nothing: the device is polled anyway.
        let ready = EventFd::wait_any(&fds, timeout).unwrap_or_default();
        for (fd, _) in msix.iter().zip(&ready).filter(|(_, ready)| **ready) {
            // Auto-masked causes are re-armed by the next interrupt; the count is not needed.
            let _ = fd.try_consume();
        }
    }

    fn mark_removed(&self, st: &mut ControlState, events: &mut Vec<VfEvent>) {
        if st.removed {
            return;
        }
        st.removed = true;
        st.link_up = false;
        for queue in &self.queues {
            let mut inner = queue.lock();
            inner.state = QueueState::Gone;
            inner.forget_tx();
        }
        events.push(VfEvent::Removed);
    }

    /// Re-initialises the function in place after a PF reset: `CTRL.RST`, the `RESET`
    /// handshake (the PF must give back our MAC, or accept it again), `SET_LPE`, the rings
    /// re-programmed with the buffers they hold, the interrupts re-programmed.
    fn reinit(&self, st: &mut ControlState) -> Result<(), IgbvfError> {
        for queue in &self.queues {
            let mut inner = queue.lock();
            inner.state = QueueState::Resetting;
            inner.forget_tx();
        }
        // The same MAC as before: the PF's again, or ours re-sent (the PF forgot it, or now
        // has another administrator MAC, which refuses ours and fails the re-initialisation).
        let admin = self.mbx.reset_function(&mut st.proto)?;
        if admin != Some(st.mac) {
            self.mbx.set_mac(&mut st.proto, st.mac)?;
        }
        if self.config.mtu > packet::ethernet::DEFAULT_MTU {
            self.mbx.request_acked(
                &mut st.proto,
                &Request::SetLpe(self.config.max_frame() as u32),
            )?;
        }
        if !st.multicast.is_empty() {
            let hashes = st.multicast.clone();
            self.mbx
                .request_acked(&mut st.proto, &Request::SetMulticast(hashes))?;
        }
        let deadline = deadline::after(self.clock().now(), self.config.link_wait);
        for queue in &self.queues {
            let mut inner = queue.lock();
            // The function is reset (`CTRL.RST` above): whatever the ring received since the
            // reset was reported (a queue that an earlier, failed attempt had restarted) is
            // counted before the re-arm drops it.
            inner.discard_rx();
            inner.program(self.clock(), deadline)?;
        }
        self.program_interrupts(st)?;
        st.hw.rebase(&self.read_counters());
        Ok(())
    }

    /// Disables RX and waits for `RXDCTL.ENABLE` to clear, waits for TX completions, then
    /// disables TX and waits for `TXDCTL.ENABLE` to clear (82576 datasheet: a queue is off
    /// only once its enable bit reads back 0), all until `deadline`; then counts what is left
    /// in the TX rings as lost. An all-ones read ends every wait at once (the device is gone).
    fn stop_locked(&self, st: &mut ControlState, deadline: Instant) {
        if st.stopped {
            return;
        }
        let bar = &self.mbx.bar;
        let mut gone = st.removed;
        for queue in &self.queues {
            let mut inner = queue.lock();
            if !gone {
                gone = !clear_enable(bar.as_ref(), rxdctl(inner.queue), rxdctl::ENABLE);
            }
            if inner.state != QueueState::Gone {
                inner.state = QueueState::Stopped;
            }
        }
        if !gone {
            gone = !self.wait_enables_clear(rxdctl, rxdctl::ENABLE, deadline);
        }
        loop {
            let mut pending = 0;
            for queue in &self.queues {
                let mut inner = queue.lock();
                inner.reclaim_tx();
                pending += inner.tx.in_flight.len();
            }
            if pending == 0 || gone || self.clock().now() >= deadline {
                break;
            }
            if bar.read32(STATUS) == ALL_ONES {
                gone = true;
                break;
            }
            self.clock().pause(POLL_INTERVAL);
        }
        for queue in &self.queues {
            let inner = queue.lock();
            if !gone {
                gone = !clear_enable(bar.as_ref(), txdctl(inner.queue), txdctl::ENABLE);
            }
        }
        if !gone {
            self.wait_enables_clear(txdctl, txdctl::ENABLE, deadline);
        }
        for queue in &self.queues {
            queue.lock().forget_tx();
        }
        st.stopped = true;
    }

    /// Polls every queue's `register(queue)` until `bit` reads back clear or `deadline`
    /// passes (each is read at least once); false as soon as a read returns all ones.
    fn wait_enables_clear(
        &self,
        register: impl Fn(Queue) -> u32,
        bit: u32,
        deadline: Instant,
    ) -> bool {
        for queue in &self.queues {
            let offset = register(queue.lock().queue);
            loop {
                let value = self.mbx.bar.read32(offset);
                if value == ALL_ONES {
                    return false;
                }
                if value & bit == 0 || self.clock().now() >= deadline {
                    break;
                }
                self.clock().pause(POLL_INTERVAL);
            }
        }
        true
    }
}

impl VfPort for Igbvf {
    fn mac(&self) -> MacAddr {
        MacAddr(self.state.lock().mac)
    }

    fn link_up(&self) -> bool {
        self.state.lock().link_up
    }

    fn queue_count(&self) -> u16 {
        self.config.queues
    }

    fn service(&self, timeout: Duration) -> Vec<VfEvent> {
        let mut events = Vec::new();
        let msix = {
            let st = self.state.lock();
            if st.released {
                return events;
            }
            st.msix.clone()
        };
        self.wait_for_interrupt(&msix, timeout);
        let requested = self
            .request
            .as_ref()
            .is_some_and(|request| matches!(request.try_consume(), Ok(Some(_))));
        let mut st = self.state.lock();
        if st.released {
            return events;
        }
        if !st.removed {
            self.poll_device(&mut st, &mut events);
        }
        if requested {
            events.push(VfEvent::ReleaseRequested);
        }
        events
    }

    fn stop(&self, timeout: Duration) -> Result<(), DeviceError> {
        let mut st = self.state.lock();
        if st.released {
            return Ok(());
        }
        let deadline = deadline::after(self.clock().now(), timeout);
        self.stop_locked(&mut st, deadline);
        Ok(())
    }

    fn release(&self) -> Result<(), DeviceError> {
        let mut st = self.state.lock();
        if st.released {
            return Ok(());
        }
        let deadline = deadline::after(self.clock().now(), self.config.mailbox_timeout);
        self.stop_locked(&mut st, deadline);
        for queue in &self.queues {
            queue.lock().state = QueueState::Gone;
        }
        if !st.removed {
            self.mbx.bar.write32(EIMC, ALL_VECTORS);
            // Stop the function from mastering the bus before its memory is given back. A
            // failure here is not worth failing the release for: the release follows.
            let _ = set_bus_master(self.device.as_ref(), false);
        }
        let msix_result = if st.msix.is_empty() {
            Ok(())
        } else {
            st.msix.clear();
            self.device.disable_msix()
        };
        st.released = true;
        st.link_up = false;
        let release_result = self.device.release();
        msix_result.and(release_result)
    }

    fn stats(&self) -> VfPortStats {
        let mut stats = VfPortStats::default();
        for q in self.queue_counters() {
            stats.rx_packets += q.rx_packets;
            stats.rx_bytes += q.rx_bytes;
            stats.tx_packets += q.tx_packets;
            stats.tx_bytes += q.tx_bytes;
            stats.rx_descriptor_errors += q.rx_descriptor_errors;
            stats.rx_frame_errors += q.rx_frame_errors;
            stats.rx_no_buffer += q.rx_no_buffer;
            stats.rx_dropped_reset += q.rx_dropped_reset;
            stats.tx_lost += q.tx_lost;
        }
        let st = self.state.lock();
        stats.hw_rx_packets = st.hw.gprc.total();
        stats.hw_tx_packets = st.hw.gptc.total();
        stats
    }
}

impl Igbvf {
    /// One pass over the mailbox, presence, reset and link state.
    fn poll_device(&self, st: &mut ControlState, events: &mut Vec<VfEvent>) {
        let mut pf_reset = false;
        let mut removed = false;
        let raw = self.mbx.bar.read32(V2PMAILBOX);
        let action = st.proto.step(raw);
        match action {
            MailboxAction::Removed => removed = true,
            MailboxAction::PfReset => pf_reset = true,
            MailboxAction::ClaimBuffer => match self.mbx.run(&mut st.proto, action, None) {
                Ok(Some(words)) => match parse_pf_message(words[0]) {
                    PfMessage::Control { cts: false } | PfMessage::Nack { .. } => pf_reset = true,
                    PfMessage::Control { cts: true } | PfMessage::Other { .. } => {}
                },
                Ok(None) | Err(Interrupted::TimedOut) => {}
                Err(Interrupted::PfReset) => pf_reset = true,
                Err(Interrupted::Removed) => removed = true,
            },
            _ => {}
        }
        let mut status = Status(self.mbx.bar.read32(STATUS));
        if removed || status.is_removed() {
            self.mark_removed(st, events);
            return;
        }
        // A PF reset is reported on its own first, so the control thread can move traffic
        // away at once; the re-initialisation (which may wait for the PF) runs on the next
        // call, and again on every call until it succeeds.
        let reported_now = pf_reset && !st.needs_reinit;
        if reported_now {
            st.needs_reinit = true;
            for queue in &self.queues {
                let mut inner = queue.lock();
                if inner.state == QueueState::Running {
                    inner.state = QueueState::Resetting;
                }
                // The reset stopped the rings; they restart empty.
                inner.forget_tx();
                inner.discard_rx();
            }
            events.push(VfEvent::PfReset);
        }
        // While the PF is still in reset (RSTI) the handshake cannot succeed: try again on a
        // later call instead of blocking this one for the whole mailbox budget.
        if st.needs_reinit
            && !reported_now
            && !st.stopped
            && !V2pMailbox(raw).intersects(V2pMailbox::RSTI)
        {
            match self.reinit(st) {
                Ok(()) => {
                    st.needs_reinit = false;
                    events.push(VfEvent::ResetComplete);
                }
                Err(IgbvfError::Removed { .. }) => {
                    self.mark_removed(st, events);
                    return;
                }
                // Retried on the next service call.
                Err(_) => {}
            }
            status = Status(self.mbx.bar.read32(STATUS));
            if status.is_removed() {
                self.mark_removed(st, events);
                return;
            }
        }
        if status.link_up() != st.link_up {
            st.link_up = status.link_up();
            events.push(if st.link_up {
                VfEvent::LinkUp
            } else {
                VfEvent::LinkDown
            });
        }
        // A reset zeroes the statistics registers: they are rebased by `reinit`, not read as a
        // wrap in between.
        if !st.needs_reinit {
            let readings = self.read_counters();
            st.hw.update(&readings);
        }
    }
}

/// Clears `bit` in the queue control register at `offset` (read-modify-write); false if the
/// read returned all ones (the device is gone; nothing is written).
fn clear_enable(bar: &dyn RegisterIo, offset: u32, bit: u32) -> bool {
    let value = bar.read32(offset);
    if value == ALL_ONES {
        return false;
    }
    bar.write32(offset, value & !bit);
    true
}

/// PCI configuration-space offset of the command register.
const PCI_COMMAND: u16 = 0x04;
/// Bus-master enable in the command register.
const PCI_COMMAND_MASTER: u16 = 0x04;

/// Sets or clears bus mastering (PCI_COMMAND.BME), leaving the other command bits alone.
fn set_bus_master(device: &dyn VfDevice, on: bool) -> Result<(), DeviceError> {
    let command = device.config_read16(PCI_COMMAND)?;
    let wanted = if on {
        command | PCI_COMMAND_MASTER
    } else {
        command & !PCI_COMMAND_MASTER
    };
    if wanted != command {
        device.config_write16(PCI_COMMAND, wanted)?;
    }
    Ok(())
}
