//! An appliance on hvnet's library: a MAC-swapping reflector on a failover port.
//!
//! Every frame the port receives for a unicast address goes back out of the queue it came in
//! on with its two addresses swapped; frames for a group address (broadcast, multicast) and
//! frames shorter than an Ethernet header are counted and freed. Each step an application
//! that embeds a [`FailoverPort`] takes is here, in order:
//!
//! 1. open the NetVSC bound to `uio_hv_generic` ([`UioDevice::open`]);
//! 2. negotiate NVSP and RNDIS with the host ([`SyntheticNic::open`]);
//! 3. say how a VF is found and driven ([`VfioIgbvfProvider`] in no-IOMMU mode, or [`NoVf`]);
//! 4. start the failover port over both ([`FailoverPort::open`]);
//! 5. one poller thread per [`FailoverQueue`]: `rx_burst`, the work, `tx_burst`; what the
//!    port does not take goes first next round, and nothing is dropped without a count;
//! 6. the port's events on the main thread ([`FailoverPort::next_event`]);
//! 7. stop: close the port while the pollers still run, then stop and join them, then print
//!    what every queue counted.
//!
//! It stops at a line or at the end of its standard input (Enter or Ctrl-D), or after
//! `--seconds N`. Ctrl-C (SIGINT's default action) ends the process at once, *without* the
//! clean close: no RNDIS HALT, the host's buffers not revoked. A real appliance blocks SIGINT
//! and SIGTERM in `main` before it starts any thread (`pthread_sigmask`, so every thread
//! inherits the mask) and waits for them in its main loop with `sigtimedwait` — `hvnet run`
//! does exactly that (`src/signals.rs`) — or uses the `signal-hook` crate. This example has
//! no unsafe code and no dependency beyond the workspace's, so it listens to its input instead.
//!
//! Against the simulated host, which loops every frame back on the queue it was sent on
//! (`--seed` starts the traffic; see docs/library.md):
//!
//! ```text
//! cargo build --bin hvnet --example appliance && cargo build -p hvnet-sim-uio
//! target/debug/hvnet sim-host --root /tmp/sim --port loopback           # terminal 1
//! LD_PRELOAD=target/debug/libhvnet_sim_uio.so target/debug/examples/appliance \
//!     --sysfs-root /tmp/sim --dev-root /tmp/sim/dev --queues 2 --seed 32    # terminal 2
//! ```

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use bond::{
    FailoverConfig, FailoverEvent, FailoverPort, FailoverQueue, FailoverQueueStats, NoVf,
    SystemClock, VfProvider, VfioIgbvfProvider,
};
use clap::Parser;
use netvsc::nic::{MAX_QUEUES, NicConfig, QueueStats, SyntheticNic};
use netvsc::vmbus::uio::{Guid, UioConfig, UioDevice};
use packet::ethernet::MIN_FRAME_LEN;
use packet::{EthernetFrame, MacAddr, Packet, Pool, PortQueue};

/// Frames moved per burst (DESIGN §3: bursts of 32–64).
const BURST: usize = 32;
/// Empty rounds a poller spins through before it rests between rounds.
const IDLE_SPINS: u32 = 256;
/// How long an idle poller rests. Far below the 50 ms after which the port stops counting on a
/// queue during a switch (`FailoverConfig::idle_queue`). An appliance with cores to spare
/// pins its pollers and never rests.
const IDLE_REST: Duration = Duration::from_micros(50);
/// How long the main thread waits for an event before it looks at its stop conditions again.
const TICK: Duration = Duration::from_millis(100);
/// Bursts a poller reads at most after the port closed: what the close received for it
/// (at most the NIC's staging list and the port's held frames, a few hundred bursts).
const FINAL_BURSTS: usize = 1024;
/// Events printed at most after the close (the control thread has stopped: a handful).
const FINAL_EVENTS: usize = 1024;
/// The destination of seed frames: a locally administered address, like testpmd's default peer.
const SEED_PEER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
/// The EtherType of seed frames: IEEE 802's "local experimental" one.
const SEED_ETHERTYPE: u16 = 0x88b5;

/// A MAC-swapping reflector on a failover port: what an appliance on hvnet does, step by step
/// (examples/appliance.rs, docs/library.md).
#[derive(Debug, Parser)]
#[command(name = "appliance")]
struct Args {
    /// Instance GUID of the NetVSC; default: the first one bound to uio_hv_generic.
    #[arg(long, value_name = "GUID")]
    instance: Option<Guid>,

    /// Queues to ask for (the host may grant fewer); one poller thread each.
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_QUEUES)))]
    queues: u16,

    /// Use the VF the host offers (igbvf through VFIO, no-IOMMU), or stay synthetic.
    #[arg(long, value_enum, default_value_t = VfPolicy::On)]
    vf: VfPolicy,

    /// The sysfs root (a `hvnet sim-host --root DIR` for tests).
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    sysfs_root: PathBuf,

    /// Where device nodes are (DIR/dev for `hvnet sim-host`).
    #[arg(long, value_name = "DIR", default_value = "/dev")]
    dev_root: PathBuf,

    /// Frames each poller sends when it starts, to start traffic against a host that loops
    /// frames back (`hvnet sim-host --port loopback`); leave it out on a real network.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=1024))]
    seed: u16,

    /// Stop after SECONDS instead of at a line or the end of standard input.
    #[arg(long, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    seconds: Option<u64>,
}

/// Whether the port uses a VF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum VfPolicy {
    On,
    Off,
}

/// What one poller counted. Plain numbers: the poller owns them and hands them back when it
/// ends (an appliance that shows them live makes them relaxed atomics, updated once a burst).
/// When the poller ends, `rx + seeded = ignored + tx + unsent`.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    /// Frames `rx_burst` handed out.
    rx: u64,
    /// Received frames not reflected: shorter than a header, or sent to a group address.
    ignored: u64,
    /// Seed frames built.
    seeded: u64,
    /// Frames `tx_burst` took (seeds and reflections): from here on the port sends each or
    /// counts it.
    tx: u64,
    /// Frames the port did not take when first offered (its ring was full, a switch held
    /// transmit back to keep order, or it was closing): they went first in a later round.
    tx_deferred: u64,
    /// Frames still waiting for the port when it closed (it sends nothing after that), and
    /// those its close received for this queue: freed, counted here.
    unsent: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.rx += other.rx;
        self.ignored += other.ignored;
        self.seeded += other.seeded;
        self.tx += other.tx;
        self.tx_deferred += other.tx_deferred;
        self.unsent += other.unsent;
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rx={} ignored={} seeded={} tx={} tx_deferred={} unsent={}",
            self.rx, self.ignored, self.seeded, self.tx, self.tx_deferred, self.unsent
        )
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    // 1. The NetVSC, bound to uio_hv_generic (`hvnet bind` does that): found by class GUID
    //    under the sysfs root, its five maps checked and mapped, `/dev/uioN` opened.
    let device = UioDevice::open(UioConfig {
        sysfs_root: args.sysfs_root.clone(),
        dev_root: args.dev_root.clone(),
        instance: args.instance.clone(),
        ..UioConfig::default()
    })
    .context("opening the NetVSC through uio_hv_generic (`hvnet bind` binds it: docs/deploy.md)")?;
    let instance = device.info().instance.clone();

    // 2. The synthetic NIC: NVSP and RNDIS negotiated, the receive and send buffers given to
    //    the host, subchannels for the queues. `sriov` tells the host whether to offer a VF.
    let (nic, queues) = SyntheticNic::open(
        Box::new(device),
        NicConfig {
            queues: args.queues,
            sriov: args.vf == VfPolicy::On,
            ..NicConfig::default()
        },
    )
    .with_context(|| format!("negotiating NVSP and RNDIS with the host for {instance}"))?;
    println!(
        "attached: {instance}: NVSP {:#x}, NDIS {}.{}, MAC {}, MTU {}, link {}, {} queue(s)",
        nic.nvsp_version(),
        nic.ndis_version() >> 16,
        nic.ndis_version() & 0xffff,
        nic.mac(),
        nic.mtu(),
        if nic.link_up() { "up" } else { "down" },
        nic.queue_count()
    );

    // 3. How a VF is found when the host associates one: in the PCI slot the association
    //    names (else by MAC), bound to vfio-pci only if it is an igbvf, driven from here. Azure
    //    and Hyper-V guests have no vIOMMU: no-IOMMU VFIO, DMA from 2 MiB hugepages. `NoVf`
    //    finds nothing, and the port stays synthetic.
    let provider: Arc<dyn VfProvider> = match args.vf {
        VfPolicy::On => {
            let mut provider = VfioIgbvfProvider::no_iommu();
            provider.vfio.sysfs_root = args.sysfs_root.clone();
            provider.vfio.dev_root = args.dev_root.clone();
            Arc::new(provider)
        }
        VfPolicy::Off => Arc::new(NoVf),
    };

    // 4. The failover port: its control thread starts, the NIC's queues become the port's.
    let (port, queues) = FailoverPort::open(
        nic,
        queues,
        provider,
        FailoverConfig::default(),
        Arc::new(SystemClock),
    )
    .with_context(|| format!("starting the failover port over {instance}"))?;

    // What stops it: the time, or its input (started before any poller, so that failing to
    // start it leaves nothing running but the port, which dropping closes).
    let deadline = args
        .seconds
        .map(|s| packet::deadline::after(Instant::now(), Duration::from_secs(s)));
    let input = match deadline {
        Some(_) => None,
        None => Some(watch_input()?),
    };

    // 5. One poller per queue. A queue handle is `Send` and owned by its thread; the port (the
    //    control handle) is `Sync` and stays here. Transmit frames come from the port's pool,
    //    which both paths reach without a copy.
    let stop = Arc::new(AtomicBool::new(false));
    let mut pollers: Vec<(u16, JoinHandle<Counts>)> = Vec::new();
    for queue in queues {
        let poller = Poller {
            pool: port.pool().clone(),
            mac: port.mac(),
            stop: stop.clone(),
            pending: Vec::with_capacity(BURST),
            fresh: 0,
            seeds_left: args.seed,
            sequence: 0,
            counts: Counts::default(),
        };
        let index = queue.index();
        let spawned = std::thread::Builder::new()
            .name(format!("poll-{index}"))
            .spawn(move || poller.run(queue));
        match spawned {
            Ok(handle) => pollers.push((index, handle)),
            Err(error) => {
                // The pollers started so far must keep running while the port closes.
                port.close();
                stop.store(true, Ordering::Release);
                join(pollers);
                return Err(error).context("starting a poller thread");
            }
        }
    }
    let stop_source = match args.seconds {
        Some(seconds) => format!("after {seconds} s"),
        None => "with Enter or Ctrl-D".to_string(),
    };
    println!(
        "running: {} poller(s) reflecting, {} seed frame(s) each; stopping {stop_source}",
        pollers.len(),
        args.seed
    );

    // 6. The main thread: the port's events (the VF coming and going, the data path moving)
    //    until it is time to stop. `next_event` waits at most TICK, so the stop conditions
    //    are looked at that often.
    let why = loop {
        if let Some(at) = deadline
            && Instant::now() >= at
        {
            break "the time passed".to_string();
        }
        if let Some(input) = &input {
            match input.try_recv() {
                Ok(why) => break why,
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => {
                    break "the input watcher ended".to_string();
                }
            }
        }
        if let Some(event) = port.next_event(TICK) {
            println!("event: {}", describe(&event));
        }
    };

    // 7. Shutdown, in this order:
    //    - close the port while the pollers still run: it leaves the VF as a planned removal
    //      does (transmit back on synthetic, the VF drained into the pollers, then released),
    //      which needs the pollers; then it closes the NIC (packet filter 0, RNDIS HALT, what
    //      is in flight received for the pollers, the receive and send buffers revoked).
    //      Once the NIC's close starts `tx_burst` takes nothing, so what a poller has for the
    //      port waits;
    //    - the events the close caused;
    //    - stop the pollers: each frees what still waits and reads what the close received
    //      for it (both counted as unsent), then returns its counts;
    //    - the totals.
    println!("stopping ({why}): closing the port while the pollers run");
    port.close();
    for event in std::iter::from_fn(|| port.next_event(Duration::ZERO)).take(FINAL_EVENTS) {
        println!("event: {}", describe(&event));
    }
    stop.store(true, Ordering::Release);
    let (totals, panicked) = join(pollers);

    let stats = port.stats();
    let nic = port.nic().stats();
    let sum = |f: fn(&FailoverQueueStats) -> u64| -> u64 { stats.queues.iter().map(f).sum() };
    let nic_sum = |f: fn(&QueueStats) -> u64| -> u64 { nic.queues.iter().map(f).sum() };
    println!(
        "port: rx_synthetic={} rx_vf={} tx_synthetic={} tx_vf={} switches_to_vf={} \
         switches_to_synthetic={} lost_vf_tx={}",
        sum(|q| q.rx_synthetic),
        sum(|q| q.rx_vf),
        sum(|q| q.tx_synthetic),
        sum(|q| q.tx_vf),
        stats.switches_to_vf,
        stats.switches_to_synthetic.total(),
        stats.lost_vf_tx
    );
    println!(
        "nic: rx_packets={} tx_packets={} tx_dropped={} tx_failed={} rx_dropped_no_buffer={} \
         rx_dropped_overflow={} rx_dropped_malformed={}",
        nic_sum(|q| q.rx_packets),
        nic_sum(|q| q.tx_packets),
        nic_sum(|q| q.tx_dropped),
        nic_sum(|q| q.tx_failed),
        nic_sum(|q| q.rx_dropped_no_buffer),
        nic_sum(|q| q.rx_dropped_overflow),
        nic_sum(|q| q.rx_dropped_malformed)
    );
    println!("total: {totals}");
    anyhow::ensure!(
        panicked == 0,
        "{panicked} poller(s) panicked: the totals miss their counts"
    );
    println!("closed");
    Ok(())
}

/// One queue's poller: the frames it has for the port, the seeds left to send, its counts.
struct Poller {
    pool: Pool,
    mac: MacAddr,
    stop: Arc<AtomicBool>,
    /// Frames for the port, in order; what it does not take stays here and goes first.
    pending: Vec<Packet>,
    /// How many frames at the end of `pending` were never offered yet.
    fresh: usize,
    seeds_left: u16,
    sequence: u32,
    counts: Counts,
}

impl Poller {
    /// Rounds until told to stop (after the port closed), then what the close left for this
    /// queue; returns the counts.
    fn run(mut self, mut queue: FailoverQueue) -> Counts {
        let mut idle = 0u32;
        while !self.stop.load(Ordering::Acquire) {
            if self.round(&mut queue) != 0 {
                idle = 0;
            } else if idle < IDLE_SPINS {
                idle += 1;
                std::hint::spin_loop();
            } else {
                std::thread::sleep(IDLE_REST);
            }
        }
        // The port is closed and sends nothing more: what waits for it is freed, and what its
        // close received for this queue (bursts hand that out, then return 0) is read; both
        // counted as unsent.
        self.counts.unsent += self.pending.len() as u64;
        self.pending.clear();
        for _ in 0..FINAL_BURSTS {
            let n = queue.rx_burst(&mut self.pending, BURST);
            if n == 0 {
                break;
            }
            self.counts.rx += n as u64;
            self.reflect_pending();
            self.counts.unsent += self.pending.len() as u64;
            self.pending.clear();
        }
        self.counts
    }

    /// One round; how many frames moved (0: nothing came, or the port took nothing).
    fn round(&mut self, queue: &mut FailoverQueue) -> usize {
        // What the port left last time goes before anything new, so nothing is reordered or
        // dropped; while it does not take it all, nothing new is received. That is
        // back-pressure: the host (or the VF) holds, and counts what it must drop.
        if !self.pending.is_empty() {
            return self.offer(queue);
        }
        if self.seeds_left > 0 {
            self.build_seeds(queue.index());
            return self.offer(queue);
        }
        let n = queue.rx_burst(&mut self.pending, BURST);
        if n == 0 {
            return 0;
        }
        self.counts.rx += n as u64;
        self.reflect_pending();
        self.fresh = self.pending.len();
        self.offer(queue);
        n
    }

    /// Reflects the frames in `pending` (just received), freeing and counting the others.
    fn reflect_pending(&mut self) {
        let before = self.pending.len();
        self.pending.retain_mut(reflect);
        self.counts.ignored += (before - self.pending.len()) as u64;
    }

    /// Offers `pending` to the port; how many frames it took.
    fn offer(&mut self, queue: &mut FailoverQueue) -> usize {
        let taken = queue.tx_burst(&mut self.pending);
        self.counts.tx += taken as u64;
        // The port takes from the front: what it left of the new frames is their end.
        self.counts.tx_deferred += self.pending.len().min(self.fresh) as u64;
        self.fresh = 0;
        taken
    }

    /// Builds a burst of seed frames into `pending` (fewer if the pool runs dry, which ends
    /// the seeding: `seeded` says how many were built).
    fn build_seeds(&mut self, queue: u16) {
        while self.pending.len() < BURST && self.seeds_left > 0 {
            let frame = seed_frame(self.mac, queue, self.sequence);
            let Some(packet) = self.pool.alloc_from(&frame) else {
                self.seeds_left = 0;
                return;
            };
            self.pending.push(packet);
            self.fresh += 1;
            self.counts.seeded += 1;
            self.sequence += 1;
            self.seeds_left -= 1;
        }
    }
}

/// Swaps the addresses of a frame sent to a unicast address; whether it did. The frame came
/// from the host: it is looked at through the checked view, never indexed blindly.
fn reflect(packet: &mut Packet) -> bool {
    let Ok(frame) = EthernetFrame::new_checked(packet.data()) else {
        return false;
    };
    let (dst, src, ethertype) = (frame.dst(), frame.src(), frame.ethertype());
    // Its reflection would carry a group source address, which no switch forwards.
    if dst.is_multicast() {
        return false;
    }
    let Ok(mut frame) = EthernetFrame::new_checked(packet.data_mut()) else {
        return false;
    };
    frame.set_header(src, dst, ethertype);
    true
}

/// A minimum-size seed frame from `mac` to [`SEED_PEER`]: the queue and a sequence number.
fn seed_frame(mac: MacAddr, queue: u16, sequence: u32) -> [u8; MIN_FRAME_LEN] {
    let mut bytes = [0u8; MIN_FRAME_LEN];
    let (header, payload) = bytes.split_at_mut(packet::ethernet::HEADER_LEN);
    if let Ok(mut frame) = EthernetFrame::new_checked(header) {
        frame.set_header(SEED_PEER, mac, SEED_ETHERTYPE);
    }
    payload[..2].copy_from_slice(&queue.to_be_bytes());
    payload[2..6].copy_from_slice(&sequence.to_be_bytes());
    bytes
}

/// Waits for the pollers to end and prints each one's counts; the sum of them and how many
/// pollers panicked.
fn join(pollers: Vec<(u16, JoinHandle<Counts>)>) -> (Counts, usize) {
    let mut totals = Counts::default();
    let mut panicked = 0;
    for (index, poller) in pollers {
        match poller.join() {
            Ok(counts) => {
                println!("queue {index}: {counts}");
                totals.add(&counts);
            }
            Err(_) => {
                println!("queue {index}: its poller panicked");
                panicked += 1;
            }
        }
    }
    (totals, panicked)
}

/// A thread that reads one line of standard input and says why it stopped reading.
fn watch_input() -> anyhow::Result<mpsc::Receiver<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("input".into())
        .spawn(move || {
            let mut line = String::new();
            let why = match std::io::stdin().lock().read_line(&mut line) {
                Ok(0) => "end of input".to_string(),
                Ok(_) => "a line on the input".to_string(),
                Err(error) => format!("reading the input failed: {error}"),
            };
            let _ = tx.send(why);
        })
        .context("starting the input watcher")?;
    Ok(rx)
}

/// An event in the words operators grep for (Linux's netvsc logs the same).
fn describe(event: &FailoverEvent) -> String {
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    match event {
        FailoverEvent::VfAssociated { serial } => format!("VF associated: serial {serial}"),
        FailoverEvent::VfAttached { serial, device } => {
            format!("VF registering: {device} (serial {serial})")
        }
        FailoverEvent::VfAttachFailed { serial, error } => {
            format!("VF attach failed: serial {serial}: {error}")
        }
        FailoverEvent::SwitchedToVf { duration } => {
            format!("Data path switched to VF ({:.3} ms)", ms(duration))
        }
        FailoverEvent::SwitchedToSynthetic {
            reason,
            failover,
            complete,
        } => format!(
            "Data path switched from VF ({}): synthetic after {:.3} ms, VF drained after {:.3} ms",
            reason.as_str(),
            ms(failover),
            ms(complete)
        ),
        FailoverEvent::SwitchRefused => "Data path switch to VF refused by the host".into(),
        FailoverEvent::VfReleased {
            serial,
            reason,
            tx_lost,
        } => format!(
            "VF unregistering: serial {serial} ({}), {tx_lost} frame(s) it had taken not sent",
            reason.as_str()
        ),
        FailoverEvent::SessionReestablished { duration } => {
            format!("host session re-established in {:.3} ms", ms(duration))
        }
        FailoverEvent::SessionLost { error } => format!("host session lost: {error}"),
    }
}
