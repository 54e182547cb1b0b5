//! `bond::FailoverPort` under sequences of events a host (and its VF) could choose, on the
//! simulated host ([`FailoverRig`]): VF offers and removals in the Azure and OpenVMM orders,
//! surprise removal, host-initiated switches, host and VF link changes, PF resets (whole, or
//! begun and never ended), the host's release request, host faults (dead channel, refused
//! switches, lost completions, corrupt packets…), bad VF write-backs, and the port's clock
//! moved past its watchdog and timeouts. Pollers run a little traffic, or none.
//!
//! Input: `[setup]` then up to [`MAX_ACTIONS`] actions, each an op byte (`% 18`) and one
//! operand byte (a missing byte reads as 0). Setup: bits 0–1 traffic (none / guest transmit
//! and receive / receive and the peer injecting / both); bit 2 two NIC queues; bit 3 one VF
//! queue; bit 4 the PF has an administrator MAC; bit 5 the device appears 5 ms after its
//! association; bit 6 the port closes while the pollers still run; bit 7 the VF is offered
//! from the start.
//!
//! Invariants: no panic (in the port, the NIC, the driver, or the simulated host and device);
//! after the actions, with the host healthy again (faults undone, a dead session given the
//! watchdog's chance) and the port's clock moved on by a keepalive period, a port whose host
//! holds no VF association ends `Synthetic` without a VF; `close()` returns; afterwards every VF attached was released, and no VF device is
//! held by anything but the bus (at most one), none once the bus let it go; every thread and
//! file descriptor of the input is gone when the rig is dropped. A hang anywhere (more than
//! [`INPUT_LIMIT`] for one input) aborts with the phase it hung in.
//!
//! Speed: every input starts its own rig (a host thread, a control thread, a device thread
//! per VF), with small rings and buffers and short bounds, so nothing carries over from one
//! input to the next. Most of an input's time is the rig touching every page of its 64 MiB of
//! VF memory at start (about 130 ms): expect 3–5 executions per second.
#![no_main]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bond::{FailoverConfig, FailoverQueue, FailoverStats, PortState};
use integration::harness::failover::{FailoverRig, FailoverRigConfig, SimPciConfig};
use integration::host::{Fault, SimHost};
use integration::harness::traffic::{PEER_MAC, TRAFFIC_ETHERTYPE};
use libfuzzer_sys::fuzz_target;
use netvsc::vmbus::shm::ShmConfig;
use packet::{MacAddr, Packet, Pool, PortQueue};

/// Actions decoded from one input at most.
const MAX_ACTIONS: usize = 16;
/// The VF's association serial (and a second one, for a VF swapped under the port).
const SERIAL: u32 = 7;
/// Longest an input may take before it counts as a hang.
const INPUT_LIMIT: Duration = Duration::from_secs(60);
/// Bound of the waits an action asks for.
const ACTION_WAIT: Duration = Duration::from_millis(300);
/// Bound of the port's catching up once the host is healthy again.
const SETTLE: Duration = Duration::from_secs(5);
/// Bound of threads and descriptors going away after the rig is dropped.
const TEARDOWN: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------------------------
// A watchdog for the whole process: an input that hangs aborts with the phase it hung in.

#[derive(Debug)]
struct Watchdog {
    armed: Mutex<Option<(Instant, &'static str)>>,
}

impl Watchdog {
    fn get() -> &'static Watchdog {
        static WATCHDOG: OnceLock<&'static Watchdog> = OnceLock::new();
        WATCHDOG.get_or_init(|| {
            let dog: &'static Watchdog = Box::leak(Box::new(Watchdog {
                armed: Mutex::new(None),
            }));
            std::thread::Builder::new()
                .name("fuzz-watchdog".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_millis(100));
                        if let Some((deadline, phase)) = *dog.armed.lock().unwrap()
                            && Instant::now() > deadline
                        {
                            eprintln!("hang: one input took over {INPUT_LIMIT:?}, in {phase}");
                            std::process::abort();
                        }
                    }
                })
                .expect("spawning the watchdog");
            dog
        })
    }

    fn arm(&self) {
        *self.armed.lock().unwrap() = Some((Instant::now() + INPUT_LIMIT, "start"));
    }

    fn phase(&self, phase: &'static str) {
        if let Some((_, p)) = self.armed.lock().unwrap().as_mut() {
            *p = phase;
        }
    }

    fn disarm(&self) {
        *self.armed.lock().unwrap() = None;
    }
}

// ---------------------------------------------------------------------------------------------
// Traffic: a poller per queue and a peer at the external port, both gentle.

/// Frames for the wire: 64 bytes of the traffic EtherType between `src` and `dst`.
fn frame(dst: MacAddr, src: MacAddr) -> [u8; 64] {
    let mut f = [0u8; 64];
    f[..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&TRAFFIC_ETHERTYPE.to_be_bytes());
    f
}

struct Traffic {
    stop: Arc<AtomicBool>,
    pollers: Vec<JoinHandle<FailoverQueue>>,
    peer: Option<JoinHandle<()>>,
}

impl Traffic {
    fn start(rig: &mut FailoverRig, guest_tx: bool, peer: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mac = rig.port.mac();
        let pollers = std::mem::take(&mut rig.queues)
            .into_iter()
            .map(|q| {
                let (stop, pool) = (stop.clone(), rig.port.pool().clone());
                std::thread::Builder::new()
                    .name("fuzz-poller".into())
                    .spawn(move || poll(q, &pool, mac, guest_tx, &stop))
                    .expect("spawning a poller")
            })
            .collect();
        let queues = rig.port.queue_count();
        let peer = peer.then(|| {
            let (stop, host) = (stop.clone(), rig.host.clone());
            std::thread::Builder::new()
                .name("fuzz-peer".into())
                .spawn(move || inject(&host, queues, mac, &stop))
                .expect("spawning the peer")
        });
        Self {
            stop,
            pollers,
            peer,
        }
    }

    /// Stops every thread; the queues come back (to be dropped).
    fn stop(self) -> Vec<FailoverQueue> {
        self.stop.store(true, Ordering::Release);
        if let Some(peer) = self.peer {
            peer.join().expect("the peer panicked");
        }
        self.pollers
            .into_iter()
            .map(|p| p.join().expect("a poller panicked"))
            .collect()
    }
}

fn poll(
    mut queue: FailoverQueue,
    pool: &Pool,
    mac: MacAddr,
    guest_tx: bool,
    stop: &AtomicBool,
) -> FailoverQueue {
    let wire = frame(PEER_MAC, mac);
    let mut received: Vec<Packet> = Vec::new();
    let mut frames: Vec<Packet> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        queue.rx_burst(&mut received, 32);
        received.clear();
        if guest_tx {
            while frames.len() < 4 {
                let Some(p) = pool.alloc_from(&wire) else {
                    break;
                };
                frames.push(p);
            }
            queue.tx_burst(&mut frames);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    queue
}

fn inject(host: &SimHost, queues: u16, mac: MacAddr, stop: &AtomicBool) {
    let wire = frame(mac, PEER_MAC);
    while !stop.load(Ordering::Acquire) {
        for q in 0..queues {
            host.external().inject_on(q, &wire);
        }
        while host.external().try_recv().is_some() {}
        std::thread::sleep(Duration::from_micros(500));
    }
}

// ---------------------------------------------------------------------------------------------
// The rig and the actions

fn rig_config(setup: u8) -> FailoverRigConfig {
    let mut config = FailoverRigConfig::default();
    let nic_queues = 1 + u16::from(setup >> 2 & 1);
    config.host.shm = ShmConfig {
        max_channels: nic_queues,
        ring_size: 16 * 4096,
        receive_buffer_size: 1 << 20,
        send_buffer_size: 1 << 20,
        dma_size: 1 << 20,
        ..ShmConfig::default()
    };
    config.host.vf_device_delay = Duration::from_millis(if setup & 0x20 != 0 { 5 } else { 0 });
    config.host.link_delay = Duration::from_millis(20);
    config.host.vf = (setup & 0x80 != 0).then_some(SERIAL);
    config.nic.queues = nic_queues;
    config.nic.pool_buffers = 256;
    config.nic.control_timeout = Duration::from_secs(2);
    config.failover = FailoverConfig {
        vf_appear_timeout: Duration::from_secs(1),
        vf_probe_interval: Duration::ZERO,
        vf_reset_timeout: Duration::from_secs(1),
        switch_timeout: Duration::from_millis(100),
        ack_timeout: Duration::from_millis(50),
        drain_timeout: Duration::from_millis(50),
        vf_stop_timeout: Duration::from_millis(50),
        tx_order_timeout: Duration::from_millis(10),
        watchdog_interval: Duration::from_secs(2),
        watchdog_timeout: Duration::from_millis(500),
        tick: Duration::from_millis(1),
        idle_queue: Duration::from_millis(50),
    };
    config.pci = SimPciConfig {
        vf_queues: if setup & 8 != 0 { 1 } else { 2 },
        admin_mac: (setup & 0x10 != 0).then_some(config.host.mac),
        link_up: true,
        ring_size: 64,
    };
    config
}

/// What the test knows about the host's side.
#[derive(Debug, Default)]
struct Host {
    /// The host holds a VF association (its last word was 128 {1}).
    associated: bool,
    /// The device was rescinded: the session is gone for good.
    rescinded: bool,
    /// Faults injected: once the host counts as many, it has applied every earlier request.
    faults: u64,
}

impl Host {
    fn inject(&mut self, rig: &FailoverRig, fault: Fault) {
        self.rescinded |= fault == Fault::Rescind;
        self.faults += 1;
        rig.host.inject_fault(fault);
    }
}

fn wait(rig: &FailoverRig, done: impl FnMut(&FailoverStats) -> bool) {
    rig.port.wait_until(ACTION_WAIT, done);
}

fn act(rig: &FailoverRig, host: &mut Host, op: u8, a: u8) {
    let config = rig_config(0).failover;
    let timeout = Duration::from_millis(50 * u64::from(a % 5));
    match op % 18 {
        0 => {
            rig.host.offer_vf(SERIAL);
            host.associated = true;
        }
        1 => {
            // Another VF while one may be in use: the bus swaps the device under the port.
            rig.host.offer_vf(SERIAL + 1);
            host.associated = true;
        }
        2 => {
            rig.host.remove_vf();
            host.associated = false;
        }
        3 => rig.host.force_synthetic(),
        4 => rig.host.set_link(a & 1 != 0),
        5 => {
            if let Some(vf) = rig.pci.vf() {
                vf.set_link(a & 1 != 0);
            }
        }
        6 => {
            if let Some(vf) = rig.pci.vf() {
                vf.pf_reset();
            }
        }
        7 => {
            if let Some(vf) = rig.pci.vf() {
                vf.pf_reset_begin();
            }
        }
        8 => {
            if let Some(vf) = rig.pci.vf() {
                vf.pf_reset_end();
            }
        }
        9 => {
            if let Some(vf) = rig.pci.vf() {
                vf.request_release();
            }
        }
        10 => {
            let had_vf = rig.pci.vf().is_some();
            rig.pci.surprise_remove(
                || match a % 3 {
                    0 => {}
                    1 => wait(rig, |s| s.vf.is_none() || s.state == PortState::VfAttaching),
                    _ => std::thread::sleep(Duration::from_millis(5)),
                },
                timeout,
            );
            host.associated &= !had_vf;
        }
        11 => {
            let had_vf = rig.pci.vf().is_some();
            rig.pci.eject_azure(timeout);
            host.associated &= !had_vf;
        }
        12 => {
            rig.pci.remove_openvmm(timeout);
            host.associated = false;
        }
        13 => rig.clock.advance(match a % 5 {
            0 => Duration::from_millis(1),
            1 => Duration::from_millis(100),
            2 => config.watchdog_interval,
            3 => config.vf_reset_timeout,
            _ => config.vf_appear_timeout,
        }),
        14 => {
            let fault = match a % 13 {
                0 => Fault::RefuseVfSwitch(true),
                1 => Fault::RefuseVfSwitch(false),
                2 => Fault::DeadChannel,
                3 => Fault::DropCompletions(1 + u32::from(a >> 4 & 3)),
                4 => Fault::DuplicateCompletion,
                5 => Fault::WrongTid,
                6 => Fault::StopReading,
                7 => Fault::ResumeReading,
                8 => Fault::MalformedPacket,
                9 => Fault::BadTransferRange,
                10 => Fault::RevokeReceiveBuffer,
                11 => Fault::RingCorruption,
                _ => Fault::Rescind,
            };
            host.inject(rig, fault);
        }
        15 => match a % 6 {
            0 => std::thread::sleep(Duration::from_millis(1)),
            1 => std::thread::sleep(Duration::from_millis(5)),
            2 => std::thread::sleep(Duration::from_millis(20)),
            3 => wait(rig, |s| s.state == PortState::OnVf),
            4 => wait(rig, |s| s.state == PortState::Synthetic),
            _ => wait(rig, |s| s.state == PortState::VfAttaching),
        },
        16 => {
            if let Some(vf) = rig.pci.vf() {
                vf.inject_bad_writeback(u16::from(a & 1));
            }
        }
        _ => rig.pci.configure(|c| c.link_up = a & 1 == 0),
    }
}

/// The host healthy again, and a dead session given the watchdog's chance; then a port whose
/// host holds no association must end on synthetic without a VF.
fn settle(rig: &FailoverRig, host: &mut Host) {
    if host.rescinded {
        return;
    }
    host.inject(rig, Fault::ResumeReading);
    host.inject(rig, Fault::RefuseVfSwitch(false));
    // Requests are applied in order: once these two are, so is everything before them.
    let deadline = Instant::now() + SETTLE;
    while rig.host.stats().faults_injected < host.faults && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let config = rig_config(0).failover;
    // A stopped NetVSP worker (a fault, or a protocol error) is found by the next keepalive
    // and the port re-establishes the session.
    let mut alive = rig.host.stats().channel_alive;
    for _ in 0..3 {
        if alive {
            break;
        }
        rig.clock.advance(config.watchdog_interval);
        let deadline = Instant::now() + SETTLE;
        while !alive && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
            alive = rig.host.stats().channel_alive;
        }
    }
    assert!(
        alive,
        "the watchdog never re-established the session: {:#?}\nnic: {:?}\nhost: {:?}",
        rig.port.stats(),
        rig.port.nic().stats(),
        rig.host.stats()
    );
    if !host.associated {
        // Time passes: a VF stuck in reset is given up, a VF the re-established session
        // never associated is released. A bound set while the clock moves (a
        // re-establishment finishing just after the host's channel came back) counts from
        // the moment it was set: move the clock past it again, a few times.
        let passes = config
            .vf_reset_timeout
            .max(config.watchdog_interval)
            .max(config.vf_appear_timeout);
        let synthetic = |s: &FailoverStats| s.state == PortState::Synthetic && s.vf.is_none();
        let mut settled = false;
        for _ in 0..3 {
            rig.clock.advance(passes);
            if rig.port.wait_until(SETTLE / 3, synthetic) {
                settled = true;
                break;
            }
        }
        assert!(
            settled,
            "the host holds no VF association, yet the port stays on one: {:#?}\nbus: {:?}\n\
             host: {:?}",
            rig.port.stats(),
            rig.pci.stats(),
            rig.host.stats()
        );
    }
}

/// Threads and open file descriptors of the process.
fn resources() -> (usize, usize) {
    let count = |dir| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    (count("/proc/self/task"), count("/proc/self/fd"))
}

fn run(data: &[u8]) {
    let dog = Watchdog::get();
    let before = resources();
    dog.arm();
    let mut bytes = data.iter().copied();
    let setup = bytes.next().unwrap_or(0);
    let mut rig = FailoverRig::start(rig_config(setup)).expect("starting the failover rig");
    let traffic =
        (setup & 3 != 0).then(|| Traffic::start(&mut rig, setup & 1 != 0, setup & 2 != 0));
    let mut host = Host {
        associated: setup & 0x80 != 0,
        ..Host::default()
    };

    dog.phase("actions");
    for _ in 0..MAX_ACTIONS {
        let Some(op) = bytes.next() else { break };
        let a = bytes.next().unwrap_or(0);
        act(&rig, &mut host, op, a);
    }

    dog.phase("settle");
    settle(&rig, &mut host);

    dog.phase("close");
    let close_with_pollers = setup & 0x40 != 0;
    let mut traffic = traffic;
    if !close_with_pollers && let Some(t) = traffic.take() {
        drop(t.stop());
    }
    rig.port.close();
    if let Some(t) = traffic.take() {
        drop(t.stop());
    }
    drop(std::mem::take(&mut rig.queues));
    let stats = rig.port.stats();
    assert_eq!(stats.vf, None, "a VF after close: {stats:#?}");
    assert_eq!(stats.state, PortState::Synthetic, "{stats:#?}");
    assert_eq!(
        stats.vf_attached, stats.vf_released,
        "a VF attached and never released: {stats:#?}"
    );
    let alive = rig.pci.stats().devices_alive;
    assert!(
        alive <= 1,
        "{alive} VF devices alive after close: {stats:#?}"
    );
    // The bus lets its device go (the host's OpenVMM-order removal): nothing holds one now.
    rig.pci.remove_openvmm(Duration::ZERO);
    let bus = rig.pci.stats();
    assert_eq!(
        bus.devices_alive, 0,
        "a VF device outlives its removal: {bus:?}"
    );

    dog.phase("drop");
    drop(rig);
    dog.disarm();
    let deadline = Instant::now() + TEARDOWN;
    loop {
        let after = resources();
        if after.0 <= before.0 && after.1 <= before.1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "threads or file descriptors outlive the rig: (threads, fds) {before:?} → {after:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fuzz_target!(|data: &[u8]| run(data));
