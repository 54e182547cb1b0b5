//! A software Intel 82576 virtual function ("igbvf") and its PF, behind `vf::device`.
//!
//! [`SoftIgbvf::new`] (or [`SoftIgbvf::try_new`]) builds the device and returns two handles:
//! the device itself (`Arc<SoftIgbvf>`, a [`VfDevice`] the igbvf driver opens like a VFIO
//! device) and a [`VfModelControl`] for the test (the wire, faults, counters). Between the
//! driver and the model there are only BAR0 registers, DMA memory and eventfds; the register
//! offsets, the descriptor layouts and the mailbox words come from `vf::igbvf`, so model and
//! driver agree by construction, and the model behaves like the hardware (and a Linux igb PF),
//! not like any one driver.
//!
//! Modules:
//! - `regs_file`: BAR0 with the 82576 VF's side effects, MSI-X through `IVAR`/`EIMS`;
//! - `mailbox_pf`: `V2PMAILBOX`/`VMBMEM` and a PF answering like Linux igb;
//! - `rings`: the device-side DMA engine (TX and RX advanced descriptors, validated);
//! - `port`: the in-memory wire, the uplink ([`FrameSink`]), the counters ([`VfModelStats`],
//!   [`PfState`]) and the model as the vSwitch's [`VfWire`](crate::host::VfWire);
//! - `faults`: PF reset, link, surprise removal, planned removal, bad write-backs.
//!
//! Lifecycle: `new` creates one memfd of `dma_size` bytes as the function's DMA space (bus
//! address = offset in the memfd; the first page is never handed out, so bus address 0 is
//! never valid) and starts the DMA thread. With [`SoftIgbvfConfig::guest_memory`] the function
//! instead DMAs into the guest's memory ([`GuestDma`]: bus address `a` is offset
//! `a - memory.bus_addr(0)` of `memory`, bounds-checked) and `dma_alloc` carves page-aligned
//! allocations out of its `window`. With [`SoftIgbvfConfig::uplink`] transmitted frames go to
//! the uplink (a vSwitch) instead of the in-memory wire, handed over before the descriptor's
//! `DD` write-back, so a driver that saw the completion knows the frame is on the switch. The function starts with its rings off and link as
//! configured; the PF NACKs everything until the VF does `CTRL.RST` and the `RESET` handshake.
//! The DMA thread is the device: it wakes on every register write, injected frame and fault
//! (and every few milliseconds regardless), answers the mailbox as the PF, runs the rings and
//! raises interrupts; it touches only the register file and the DMA memfd. `release()` (or
//! dropping the `SoftIgbvf`) releases the function: registers read all ones, DMA stops, calls
//! fail with `Closed`; dropping the `SoftIgbvf` also stops and joins the thread. The
//! [`VfModelControl`] stays usable afterwards (to read counters and the wire).
//!
//! Lock order: the device lock (`Inner::state`) is the model's only lock taken on the data
//! path. The DMA thread holds it while it calls [`FrameSink::transmit`], so an uplink must
//! never call back into this model synchronously (the simulated host's `VfUplink` takes only
//! its own leaf locks and defers Loopback steering to the host thread). The vSwitch calls
//! [`VfWire::deliver`](crate::host::VfWire::deliver) and
//! [`VfWire::flush`](crate::host::VfWire::flush) holding none of its locks; they take the
//! device lock. Order: device lock → switch leaf locks, never the reverse. `dma` (the allocator) and
//! `config_space` are taken only after the device lock or alone. Dropping the `SoftIgbvf`
//! drops the uplink (breaking a switch → wire → model → uplink → switch cycle).
//!
//! Invariants: no driver input makes the model panic; anything a device would refuse is a
//! counted device error that stops the queue ([`VfModelStats::device_errors`]).

mod faults;
mod mailbox_pf;
mod port;
mod regs_file;
mod rings;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use packet::{MacAddr, MemError, SharedMemory};
use parking_lot::{Condvar, Mutex};
use vf::device::{
    CONFIG_SPACE_SIZE, DeviceError, EventFd, RegisterIo, VfDevice, check_config_range,
};
use vf::igbvf::regs::MSIX_VECTORS;

pub use port::{FrameSink, MailboxStats, PfState, VfModelStats};

use port::WIRE_CAPACITY;
use regs_file::Function;

/// The device's name (what a PCI address would be).
const DEVICE_NAME: &str = "soft-igbvf";
/// How long the DMA thread sleeps at most when nothing woke it.
const IDLE_POLL: Duration = Duration::from_millis(5);
/// DMA allocations are page-aligned.
const DMA_ALIGN: usize = 4096;
/// VFIO's MSI-X IRQ index, for errors.
const MSIX_IRQ_INDEX: u32 = 2;

/// Guest memory a [`SoftIgbvf`] DMAs into instead of its own memfd.
#[derive(Clone, Debug)]
pub struct GuestDma {
    /// Everything the device may DMA to; the bus address of byte `i` is `memory.bus_addr(i)`.
    pub memory: SharedMemory,
    /// Where `dma_alloc` carves allocations: a subregion of `memory` with correct bus
    /// addresses.
    pub window: SharedMemory,
}

/// Configuration of a [`SoftIgbvf`].
#[derive(Clone, Debug)]
pub struct SoftIgbvfConfig {
    /// The administrator MAC the PF hands out in its `RESET` reply. A multicast or all-zero
    /// address means "none": the PF then NACKs `RESET` and accepts the VF's own MAC.
    pub mac: MacAddr,
    /// Queue pairs the PF grants: 1 or 2 (an 82576 VF has 2), clamped to that range.
    pub queues: u16,
    /// Bytes of DMA memory (one memfd); allocations come out of it and are never reused.
    pub dma_size: usize,
    /// Initial link state.
    pub link_up: bool,
    /// DMA into guest memory instead of an own memfd of `dma_size` bytes (default `None`).
    pub guest_memory: Option<GuestDma>,
    /// Where transmitted frames go instead of the in-memory wire (default `None`).
    pub uplink: Option<Arc<dyn FrameSink>>,
}

impl SoftIgbvfConfig {
    /// Administrator MAC `mac`, two queue pairs, 16 MiB of DMA memory, link up.
    pub fn new(mac: MacAddr) -> Self {
        Self {
            mac,
            queues: 2,
            dma_size: 16 << 20,
            link_up: true,
            guest_memory: None,
            uplink: None,
        }
    }
}

impl Default for SoftIgbvfConfig {
    /// [`SoftIgbvfConfig::new`] with the locally administered MAC `02:00:00:00:00:01`.
    fn default() -> Self {
        Self::new(MacAddr([0x02, 0, 0, 0, 0, 0x01]))
    }
}

/// What the device thread, the BAR and the control handle share.
#[derive(Debug)]
struct Inner {
    state: Mutex<Function>,
    /// Wakes the DMA thread.
    work: Condvar,
    /// Wakes waiters on the wire, counters and release.
    changed: Condvar,
    /// The device-request eventfd.
    request: Arc<EventFd>,
}

impl Inner {
    fn wake(&self) {
        self.work.notify_all();
        self.changed.notify_all();
    }
}

/// BAR0 of the model.
#[derive(Debug)]
struct Bar0 {
    inner: Arc<Inner>,
}

impl RegisterIo for Bar0 {
    fn read32(&self, offset: u32) -> u32 {
        self.inner.state.lock().read(offset)
    }

    fn write32(&self, offset: u32, value: u32) {
        self.inner.state.lock().write(offset, value);
        self.inner.wake();
    }
}

/// DMA allocation state: a bump allocator over the own memfd or the guest-memory window.
#[derive(Debug)]
struct DmaSpace {
    /// Where allocations are carved from.
    memory: SharedMemory,
    /// Offset in `memory` of the next allocation.
    next: usize,
}

/// The software igbvf: a [`VfDevice`] for the driver. See the module docs for its lifecycle.
#[derive(Debug)]
pub struct SoftIgbvf {
    inner: Arc<Inner>,
    bar: Arc<Bar0>,
    dma: Mutex<DmaSpace>,
    config_space: Mutex<Vec<u8>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The test's handle on a [`SoftIgbvf`]: the wire, faults and counters. Cheap to clone.
#[derive(Clone, Debug)]
pub struct VfModelControl {
    inner: Arc<Inner>,
}

impl SoftIgbvf {
    /// Creates the device, its DMA memfd and its DMA thread; see [`try_new`](Self::try_new).
    ///
    /// # Panics
    ///
    /// If the memfd, the request eventfd or the thread cannot be created (the test host is out
    /// of resources).
    pub fn new(config: SoftIgbvfConfig) -> (Arc<Self>, VfModelControl) {
        match Self::try_new(config) {
            Ok(pair) => pair,
            Err(e) => panic!("cannot create the software igbvf: {e}"),
        }
    }

    /// Creates the device, its DMA memfd and its DMA thread.
    pub fn try_new(config: SoftIgbvfConfig) -> Result<(Arc<Self>, VfModelControl), DeviceError> {
        let memory_error = |op, source| DeviceError::Memory {
            device: DEVICE_NAME.to_owned(),
            op,
            source,
        };
        let (memory, window, next) = match config.guest_memory {
            None => {
                let memory = SharedMemory::memfd("soft-igbvf-dma", config.dma_size.max(DMA_ALIGN))
                    .map_err(|e| memory_error("creating the dma memfd", e))?;
                (memory.clone(), memory, DMA_ALIGN)
            }
            Some(GuestDma { memory, window }) => {
                let start = window.bus_addr(0).checked_sub(memory.bus_addr(0));
                let inside = start.and_then(|s| s.checked_add(window.len() as u64));
                if inside.is_none_or(|end| end > memory.len() as u64) {
                    return Err(memory_error(
                        "checking the dma window",
                        MemError::OutOfBounds {
                            offset: start.unwrap_or(0) as usize,
                            len: window.len(),
                            size: memory.len(),
                        },
                    ));
                }
                // The first page-aligned bus address, never bus address 0.
                let align = DMA_ALIGN as u64;
                let mut next = ((align - window.bus_addr(0) % align) % align) as usize;
                if window.bus_addr(next) == 0 {
                    next += DMA_ALIGN;
                }
                (memory, window, next)
            }
        };
        let request = EventFd::new().map_err(|source| DeviceError::Io {
            device: DEVICE_NAME.to_owned(),
            op: "eventfd",
            source,
        })?;
        let queues = usize::from(config.queues.clamp(1, 2));
        let mut function = Function::new(queues, config.link_up, config.mac.0, memory);
        function.uplink = config.uplink;
        let inner = Arc::new(Inner {
            state: Mutex::new(function),
            work: Condvar::new(),
            changed: Condvar::new(),
            request: Arc::new(request),
        });
        let thread_inner = inner.clone();
        let thread = std::thread::Builder::new()
            .name("soft-igbvf".to_owned())
            .spawn(move || run(&thread_inner))
            .map_err(|source| DeviceError::Io {
                device: DEVICE_NAME.to_owned(),
                op: "spawning the dma thread",
                source,
            })?;
        let device = Arc::new(Self {
            bar: Arc::new(Bar0 {
                inner: inner.clone(),
            }),
            inner: inner.clone(),
            dma: Mutex::new(DmaSpace {
                memory: window,
                next,
            }),
            config_space: Mutex::new(config_space()),
            thread: Mutex::new(Some(thread)),
        });
        Ok((device, VfModelControl { inner }))
    }

    fn closed(&self) -> DeviceError {
        DeviceError::Closed {
            device: DEVICE_NAME.to_owned(),
        }
    }

    fn released(&self) -> bool {
        self.inner.state.lock().released
    }
}

/// The config space of an 82576 VF: vendor 8086, device 10ca, class Ethernet controller.
fn config_space() -> Vec<u8> {
    let mut space = vec![0u8; usize::from(CONFIG_SPACE_SIZE)];
    space[0..2].copy_from_slice(&0x8086u16.to_le_bytes());
    space[2..4].copy_from_slice(&0x10CAu16.to_le_bytes());
    space[8] = 0x01; // revision
    space[9..12].copy_from_slice(&[0x00, 0x00, 0x02]); // class 02 00 00
    space
}

/// The DMA thread: the device side of the model.
fn run(inner: &Inner) {
    let mut state = inner.state.lock();
    while !state.shutdown {
        let progressed = state.service();
        // Waiters also look for counters (device errors) that changed without progress.
        inner.changed.notify_all();
        if !progressed {
            inner.work.wait_for(&mut state, IDLE_POLL);
        }
    }
}

impl Function {
    /// One pass of the device: the PF's mailbox, the TX rings, the injected frames. Whether
    /// anything changed.
    fn service(&mut self) -> bool {
        if !self.alive() {
            let dropped = self.wire.rx_backlog.len() as u64;
            self.wire.rx_backlog.clear();
            if self.present {
                self.stats.rx_dropped_disabled += dropped;
            } else {
                self.stats.rx_dropped_gone += dropped;
            }
            return dropped > 0;
        }
        let mut changed = self.pf_service();
        for q in 0..self.queues {
            changed |= self.tx_service(q);
        }
        while let Some((q, frame)) = self.wire.rx_backlog.pop_front() {
            self.rx_deliver(q, &frame);
            changed = true;
        }
        changed
    }
}

impl Drop for SoftIgbvf {
    fn drop(&mut self) {
        {
            let mut state = self.inner.state.lock();
            state.shutdown = true;
            state.released = true;
            state.msix.clear();
            // Nobody will deliver what waits: dropped and counted, so a flush ends.
            let dropped = state.wire.rx_backlog.len() as u64;
            state.wire.rx_backlog.clear();
            state.stats.rx_dropped_disabled += dropped;
            state.uplink = None;
        }
        self.inner.wake();
        if let Some(thread) = self.thread.lock().take() {
            // The thread only panics on a model bug; the drop must not panic on top of it.
            let _ = thread.join();
        }
    }
}

impl VfDevice for SoftIgbvf {
    fn name(&self) -> &str {
        DEVICE_NAME
    }

    fn bar0(&self) -> Arc<dyn RegisterIo> {
        self.bar.clone()
    }

    fn config_read(&self, offset: u16, buf: &mut [u8]) -> Result<(), DeviceError> {
        check_config_range(DEVICE_NAME, offset, buf.len())?;
        let state = self.inner.state.lock();
        if state.released {
            return Err(self.closed());
        }
        if !state.present {
            buf.fill(0xFF);
            return Ok(());
        }
        let start = usize::from(offset);
        buf.copy_from_slice(&self.config_space.lock()[start..start + buf.len()]);
        Ok(())
    }

    fn config_write(&self, offset: u16, buf: &[u8]) -> Result<(), DeviceError> {
        check_config_range(DEVICE_NAME, offset, buf.len())?;
        let state = self.inner.state.lock();
        if state.released {
            return Err(self.closed());
        }
        if !state.present {
            return Ok(());
        }
        let mut space = self.config_space.lock();
        for (i, &byte) in buf.iter().enumerate() {
            let at = usize::from(offset) + i;
            // Vendor and device IDs are read-only.
            if at >= 4 {
                space[at] = byte;
            }
        }
        Ok(())
    }

    fn dma_alloc(&self, size: usize) -> Result<SharedMemory, DeviceError> {
        if self.released() {
            return Err(self.closed());
        }
        let mut dma = self.dma.lock();
        let exhausted = || DeviceError::IovaExhausted {
            device: DEVICE_NAME.to_owned(),
            size,
        };
        if size == 0 {
            return Err(DeviceError::Memory {
                device: DEVICE_NAME.to_owned(),
                op: "dma allocation",
                source: MemError::Empty,
            });
        }
        let rounded = size
            .checked_next_multiple_of(DMA_ALIGN)
            .ok_or_else(exhausted)?;
        let end = dma.next.checked_add(rounded).ok_or_else(exhausted)?;
        if end > dma.memory.len() {
            return Err(exhausted());
        }
        let region =
            dma.memory
                .subregion(dma.next, size)
                .map_err(|source| DeviceError::Memory {
                    device: DEVICE_NAME.to_owned(),
                    op: "dma allocation",
                    source,
                })?;
        dma.next = end;
        Ok(region)
    }

    fn dma_reachable(&self, memory: &SharedMemory) -> bool {
        self.inner.state.lock().dma.contains(memory)
    }

    fn enable_msix(&self, vectors: u32) -> Result<Vec<Arc<EventFd>>, DeviceError> {
        if vectors == 0 || vectors > u32::from(MSIX_VECTORS) {
            return Err(DeviceError::IrqUnavailable {
                device: DEVICE_NAME.to_owned(),
                index: MSIX_IRQ_INDEX,
                requested: vectors,
                available: u32::from(MSIX_VECTORS),
            });
        }
        let fds = (0..vectors)
            .map(|_| EventFd::new().map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| DeviceError::Io {
                device: DEVICE_NAME.to_owned(),
                op: "eventfd",
                source,
            })?;
        let mut state = self.inner.state.lock();
        if state.released {
            return Err(self.closed());
        }
        state.msix = fds.clone();
        Ok(fds)
    }

    fn disable_msix(&self) -> Result<(), DeviceError> {
        let mut state = self.inner.state.lock();
        if state.released {
            return Err(self.closed());
        }
        state.msix.clear();
        Ok(())
    }

    fn request_irq(&self) -> Result<Arc<EventFd>, DeviceError> {
        if self.released() {
            return Err(self.closed());
        }
        Ok(self.inner.request.clone())
    }

    fn is_present(&self) -> bool {
        self.inner.state.lock().alive()
    }

    fn release(&self) -> Result<(), DeviceError> {
        {
            let mut state = self.inner.state.lock();
            state.released = true;
            state.msix.clear();
        }
        self.inner.wake();
        Ok(())
    }

    fn reset(&self) -> Result<(), DeviceError> {
        {
            let mut state = self.inner.state.lock();
            if state.released {
                return Err(self.closed());
            }
            if state.present {
                state.vf_reset();
            }
        }
        self.inner.wake();
        Ok(())
    }
}

impl VfModelControl {
    fn with_state<R>(&self, f: impl FnOnce(&mut Function) -> R) -> R {
        let result = f(&mut self.inner.state.lock());
        self.inner.wake();
        result
    }

    /// Waits up to `timeout` until `done` holds for the device state; whether it did.
    fn wait_until(&self, timeout: Duration, done: impl Fn(&Function) -> bool) -> bool {
        let deadline = packet::deadline::after(Instant::now(), timeout);
        let mut state = self.inner.state.lock();
        loop {
            if done(&state) {
                return true;
            }
            if self
                .inner
                .changed
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                return done(&state);
            }
        }
    }

    /// Puts a frame on the wire towards the VF's RX queue `queue`. The DMA thread delivers it
    /// into the next posted buffer or drops and counts it ([`VfModelStats`]).
    pub fn inject(&self, queue: u16, frame: &[u8]) {
        self.with_state(|f| {
            if f.wire.rx_backlog.len() >= WIRE_CAPACITY {
                f.stats.rx_dropped_disabled += 1;
            } else {
                f.wire.rx_backlog.push_back((queue, frame.to_vec()));
            }
        });
    }

    /// Takes the oldest frame the VF transmitted, waiting up to `timeout`: `(queue, frame)`.
    pub fn recv_frame(&self, timeout: Duration) -> Option<(u16, Vec<u8>)> {
        let deadline = packet::deadline::after(Instant::now(), timeout);
        let mut state = self.inner.state.lock();
        loop {
            if let Some(frame) = state.wire.tx.pop_front() {
                return Some(frame);
            }
            if self
                .inner
                .changed
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                return state.wire.tx.pop_front();
            }
        }
    }

    /// The counters now.
    pub fn stats(&self) -> VfModelStats {
        self.inner.state.lock().stats.clone()
    }

    /// Waits up to `timeout` until `done` holds for the counters; the counters if it did.
    pub fn wait_for_stats(
        &self,
        timeout: Duration,
        done: impl Fn(&VfModelStats) -> bool,
    ) -> Option<VfModelStats> {
        self.wait_until(timeout, |f| done(&f.stats))
            .then(|| self.stats())
    }

    /// Waits up to `timeout` until the DMA thread has taken every injected frame (delivered or
    /// dropped); whether it has.
    pub fn wait_rx_drained(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |f| f.wire.rx_backlog.is_empty())
    }

    /// What the PF holds for the VF (clear-to-send, MAC, max frame, filters).
    pub fn pf_state(&self) -> PfState {
        self.inner.state.lock().mbx.state.clone()
    }

    /// Whether the link is up.
    pub fn link_up(&self) -> bool {
        self.inner.state.lock().link_up
    }
}
