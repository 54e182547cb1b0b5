//! The failover port with a VF the kernel keeps (`vf::kernel`, found by
//! `bond::KernelVfProvider`), over both of its transports — a packet socket (AF_PACKET) and
//! AF_XDP, in native and in generic XDP mode: the VF is one end of a veth pair (`vf0`, with the synthetic
//! NIC's MAC) whose other end (`host0`) is the simulated host's VF wire
//! (`integration::sim_host::vf_iface::VfIfacePort`, what `hvnet sim-host --vf-iface` uses):
//! down until the host offers the VF, up while it does, down when it removes it.
//!
//! Each test runs in a network namespace of its own (`vf::kernel::netns`): the veth, the
//! simulated host's threads and the port's control thread are all in it, and the machine's
//! namespace is never touched. They need root and `ip`; off CI they are skipped with a
//! notice, in CI they fail.
//!
//! Accounting: the kernel gives no per-frame drop reasons on a veth, so what went into the
//! VF's wire and never came out of the VF (and the reverse) is measured from both ends:
//! `to_vf − rx_vf` towards the guest, `tx_vf − lost_vf_tx − tx_dropped − from_vf` towards the
//! peer, where `tx_dropped` is the kernel's count of frames the VF's interface dropped because
//! its far end was down (the link-down reason). A surprise removal strands some, counted here.
//!
//! What holds for both transports (no VFIO request IRQ: the kernel owns the device): in
//! OpenVMM's order (association first) a planned removal loses nothing. In Azure's order
//! (the device goes first) the host stops steering to the VF before it goes, so nothing is
//! lost towards the guest, but frames the guest sends on the VF between the link dropping
//! and the port noticing (a link-monitor wake-up later) are dropped by the kernel, counted by
//! it as link-down drops, and nowhere else lost.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bond::{
    FailoverConfig, FailoverEvent, FailoverPort, FailoverQueue, FailoverStats, KernelVfProvider,
    ManualClock, PortState, SwitchReason, VfProvider, VfRequest,
};
use integration::harness::traffic::{Traffic, TrafficConfig, TrafficCounts};
use integration::host::{HostConfig, SimHost};
use integration::sim_host::vf_iface::VfIfacePort;
use netvsc::nic::{NicConfig, SyntheticNic};
use vf::kernel::netns::{self, in_new_namespace, ip};
use vf::kernel::{XdpConfig, XdpMode};

/// Upper bound of every wait (a hang fails the test, it never blocks it).
const DEADLINE: Duration = Duration::from_secs(30);
const SERIAL: u32 = 7;
const PHASE_FRAMES: u64 = 2_000;
const VF: &str = "vf0";
const HOST_END: &str = "host0";

/// Which transport the kernel VF backend uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    /// A packet socket.
    Packet,
    /// AF_XDP with the XDP program in this mode.
    Xdp(XdpMode),
}

/// A failover port over the simulated host's NIC, with the kernel VF provider, the VF on a
/// veth whose far end is the host's VF wire. Fields drop in order: the port first.
struct KernelRig {
    port: FailoverPort,
    queues: Vec<FailoverQueue>,
    wire: VfIfacePort,
    host: Arc<SimHost>,
    _clock: ManualClock,
}

impl KernelRig {
    /// Makes the veth and starts the host, its VF wire, the NIC and the port (in the calling
    /// thread's namespace).
    fn start(transport: Transport) -> Self {
        // No IPv6 in the namespace: its neighbour discovery would be frames in the traffic.
        for conf in ["all", "default"] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1");
        }
        let host_config = HostConfig {
            vf_device_delay: Duration::from_millis(10),
            ..HostConfig::default()
        };
        netns::veth(VF, HOST_END, host_config.mac);
        let (host, device) = SimHost::start(host_config).expect("starting the host");
        let host = Arc::new(host);
        let wire = VfIfacePort::open(HOST_END, host.clone()).expect("opening the VF wire");
        let nic = NicConfig {
            queues: 1,
            sriov: true,
            ..NicConfig::default()
        };
        let (nic, queues) = SyntheticNic::open(Box::new(device), nic).expect("opening the NIC");
        let provider = KernelVfProvider {
            // No PCI tree: the VF is found by its MAC among the namespace's interfaces.
            pci_sysfs_root: PathBuf::from("/nonexistent-hvnet-pci"),
            net_sysfs_root: PathBuf::from("/sys"),
            xdp: match transport {
                Transport::Packet => None,
                Transport::Xdp(mode) => Some(XdpConfig {
                    mode,
                    ring_size: 512,
                    chunks: 2048,
                    ..XdpConfig::default()
                }),
            },
            ..KernelVfProvider::default()
        };
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
        let clock = ManualClock::new();
        let (port, queues) = FailoverPort::open(
            nic,
            queues,
            Arc::new(provider),
            failover,
            Arc::new(clock.clone()),
        )
        .expect("opening the failover port");
        Self {
            port,
            queues,
            wire,
            host,
            _clock: clock,
        }
    }

    fn traffic(&mut self) -> Traffic<FailoverQueue> {
        Traffic::start(
            std::mem::take(&mut self.queues),
            self.port.pool().clone(),
            self.port.mac(),
            self.host.clone(),
            TrafficConfig::default(),
        )
    }

    fn wait_port(&self, what: &str, done: impl FnMut(&FailoverStats) -> bool) {
        assert!(
            self.port.wait_until(DEADLINE, done),
            "port never got to: {what}; stats: {:#?}",
            self.port.stats()
        );
    }

    /// The host offers the VF (the device comes up, then NVSP 128); waits until the port is
    /// on it.
    fn offer(&self) {
        let before = self.port.stats().switches_to_vf;
        self.wire.plug().expect("plugging the VF in");
        self.host.offer_vf(SERIAL);
        self.wait_port("on the VF", |s| {
            s.state == PortState::OnVf && s.switches_to_vf > before
        });
    }

    /// Where every frame went (see the module docs).
    fn account(&self, c: &TrafficCounts) -> Accounting {
        let wire = self.wire.stats();
        let port = self.port.stats();
        let host = self.host.stats();
        let nic = self.port.nic().stats();
        let rx_vf: u64 = port.queues.iter().map(|q| q.rx_vf).sum();
        let tx_vf: u64 = port.queues.iter().map(|q| q.tx_vf).sum();
        let nic_overload: u64 = nic
            .queues
            .iter()
            .map(|q| q.rx_dropped_no_buffer + q.rx_dropped_overflow)
            .sum();
        // The VF's transmit drops, by the kernel: frames sent on the VF after its far end went
        // down (0 once the interface is gone, which only a surprise removal does).
        let tx_link_down =
            std::fs::read_to_string(format!("/sys/class/net/{VF}/statistics/tx_dropped"))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(0);
        let rx_vf_missing = wire.to_vf as i64 - rx_vf as i64;
        let tx_vf_missing =
            tx_vf as i64 - port.lost_vf_tx as i64 - wire.from_vf as i64 - tx_link_down as i64;
        let injected = (c.peer_injected + c.peer_injected_broadcast) as i64;
        let delivered = (c.guest_received + c.guest_received_broadcast) as i64;
        Accounting {
            rx_vf_missing,
            tx_vf_missing,
            tx_vf_lost: port.lost_vf_tx,
            tx_link_down,
            refused: host.rx_dropped_vf,
            rx_unaccounted: injected - delivered - nic_overload as i64 - rx_vf_missing,
            tx_unaccounted: c.guest_sent as i64
                - c.peer_received as i64
                - host.tx_dropped_port_full as i64
                - port.lost_vf_tx as i64
                - tx_link_down as i64
                - tx_vf_missing,
        }
    }

    /// Stops traffic once every frame is accounted for; checks order and the balance.
    fn finish(&self, traffic: Traffic<FailoverQueue>) -> (TrafficCounts, Accounting) {
        let settled = |c: &TrafficCounts| {
            let a = self.account(c);
            a.rx_unaccounted == 0 && a.tx_unaccounted == 0
        };
        let (counts, _queues) = traffic.stop(DEADLINE, settled);
        let a = self.account(&counts);
        let evidence = format!(
            "{a:?}\n{counts:?}\nwire: {:?}\nport: {:?}\nhost: {:?}",
            self.wire.stats(),
            self.port.stats(),
            self.host.stats()
        );
        assert_eq!(counts.guest_reordered, 0, "reordered: {evidence}");
        assert_eq!(counts.peer_reordered, 0, "reordered: {evidence}");
        assert_eq!(counts.guest_bad + counts.peer_bad, 0, "corrupt: {evidence}");
        assert_eq!(
            a.rx_unaccounted, 0,
            "unaccounted towards the guest: {evidence}"
        );
        assert_eq!(
            a.tx_unaccounted, 0,
            "unaccounted towards the peer: {evidence}"
        );
        (counts, a)
    }
}

/// Where the frames of a run went (see the module docs).
#[derive(Debug)]
struct Accounting {
    /// Written into the VF's wire, never handed out by the VF.
    rx_vf_missing: i64,
    /// Sent by the VF, never read from its wire.
    tx_vf_missing: i64,
    /// Taken by the VF and counted lost by it.
    tx_vf_lost: u64,
    /// Sent on the VF and dropped by the kernel because the far end was down.
    tx_link_down: u64,
    /// Refused at injection (the host steered to a VF whose wire was gone).
    refused: u64,
    rx_unaccounted: i64,
    tx_unaccounted: i64,
}

impl Accounting {
    fn lossless(&self) -> bool {
        self.rx_vf_missing == 0 && self.tx_vf_missing == 0 && self.tx_vf_lost == 0
    }
}

/// Runs `body` on a fresh rig with `transport` in a namespace of its own, if the machine
/// allows.
fn with_rig(
    test: &'static str,
    transport: Transport,
    body: impl FnOnce(KernelRig) + Send + 'static,
) {
    if !netns::runnable(test) {
        return;
    }
    in_new_namespace(test, move || body(KernelRig::start(transport)));
}

/// The VF's name as the port reports it: the interface, then the transport.
fn vf_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Packet => "vf0 [AF_PACKET]",
        Transport::Xdp(XdpMode::Generic) => "vf0 [AF_XDP: generic XDP, copy]",
        Transport::Xdp(_) => "vf0 [AF_XDP: native XDP, copy]",
    }
}

/// Planned removal in `order` under traffic: lossless, in order, back on synthetic.
fn planned_removal(mut rig: KernelRig, transport: Transport, eject_first: bool) {
    let traffic = rig.traffic();
    assert!(
        traffic.wait_progress(PHASE_FRAMES, DEADLINE),
        "{:?}",
        traffic.counts()
    );
    rig.offer();
    assert!(
        traffic.wait_progress(PHASE_FRAMES, DEADLINE),
        "{:?}",
        traffic.counts()
    );
    let wire = rig.wire.stats();
    assert!(wire.to_vf > 0, "the host never steered to the VF: {wire:?}");
    assert!(wire.from_vf > 0, "the guest never sent on the VF: {wire:?}");
    let port = rig.port.stats();
    assert_eq!(port.vf.as_deref(), Some(vf_name(transport)), "{port:?}");

    if eject_first {
        // Azure's order (sim-host ctl `remove-vf --order eject-first`): the device goes (the
        // host steers to synthetic, the link drops), then NVSP 128 {0}.
        rig.wire.unplug().unwrap();
        rig.host.remove_vf();
    } else {
        // OpenVMM's order: 129 {synthetic} and 128 {0}, the guest lets the VF go, then the
        // device goes.
        rig.host.remove_vf();
        rig.wait_port("the VF released", |s| s.vf_released == 1);
        rig.wire.unplug().unwrap();
    }
    rig.wait_port("back on synthetic, the VF released", |s| {
        s.state == PortState::Synthetic && s.vf_released == 1
    });
    assert!(
        traffic.wait_progress(PHASE_FRAMES, DEADLINE),
        "{:?}",
        traffic.counts()
    );
    let (counts, a) = rig.finish(traffic);
    let port_full = rig.host.stats().tx_dropped_port_full;
    let tx_lost = counts.guest_sent - counts.peer_received - port_full;
    assert_eq!(
        a.rx_vf_missing, 0,
        "lost towards the guest: {a:?} {counts:?}"
    );
    assert_eq!(a.tx_vf_lost, 0, "{a:?}");
    if eject_first {
        // Only the link-down window is lost, only towards the peer, and every such frame is
        // in the kernel's count (which may also hold frames that were not the guest's).
        eprintln!("eject first: {tx_lost} frames lost at link down ({a:?})");
        assert!(
            tx_lost <= a.tx_link_down,
            "lost beyond the link-down window: {a:?} {counts:?}"
        );
    } else {
        assert_eq!(
            tx_lost, 0,
            "a planned removal lost frames: {a:?} {counts:?}"
        );
        assert!(a.lossless(), "{a:?} {counts:?}");
    }
    assert_eq!(a.refused, 0, "{a:?}");
    let stats = rig.port.stats();
    assert_eq!(stats.switches_to_vf, 1);
    assert_eq!(stats.lost_vf_tx, 0);
    // The VF's interface is left as open found it: up (the test made it so).
    assert!(packet::netdev::interface_flags(VF).unwrap().up());
}

#[test]
fn kernel_vf_switch_and_planned_removal_association_first_lose_nothing() {
    let t = Transport::Packet;
    with_rig("kernel_vf_planned_association_first", t, move |rig| {
        planned_removal(rig, t, false)
    });
}

#[test]
fn kernel_vf_planned_removal_eject_first_loses_only_the_counted_link_down_window() {
    let t = Transport::Packet;
    with_rig("kernel_vf_planned_eject_first", t, move |rig| {
        planned_removal(rig, t, true)
    });
}

#[test]
fn afxdp_native_switch_and_planned_removal_association_first_lose_nothing() {
    let t = Transport::Xdp(XdpMode::Native);
    with_rig("afxdp_native_planned_association_first", t, move |rig| {
        planned_removal(rig, t, false)
    });
}

#[test]
fn afxdp_generic_switch_and_planned_removal_association_first_lose_nothing() {
    let t = Transport::Xdp(XdpMode::Generic);
    with_rig("afxdp_generic_planned_association_first", t, move |rig| {
        planned_removal(rig, t, false)
    });
}

#[test]
fn afxdp_native_planned_removal_eject_first_loses_only_the_counted_link_down_window() {
    let t = Transport::Xdp(XdpMode::Native);
    with_rig("afxdp_native_planned_eject_first", t, move |rig| {
        planned_removal(rig, t, true)
    });
}

#[test]
fn afxdp_generic_planned_removal_eject_first_loses_only_the_counted_link_down_window() {
    let t = Transport::Xdp(XdpMode::Generic);
    with_rig("afxdp_generic_planned_eject_first", t, move |rig| {
        planned_removal(rig, t, true)
    });
}

#[test]
fn kernel_vf_surprise_removal_is_counted_and_never_hangs() {
    with_rig("kernel_vf_surprise", Transport::Packet, surprise_removal);
}

#[test]
fn afxdp_native_surprise_removal_is_counted_and_never_hangs() {
    let t = Transport::Xdp(XdpMode::Native);
    with_rig("afxdp_native_surprise", t, surprise_removal);
}

#[test]
fn afxdp_generic_surprise_removal_is_counted_and_never_hangs() {
    let t = Transport::Xdp(XdpMode::Generic);
    with_rig("afxdp_generic_surprise", t, surprise_removal);
}

/// The VF's link goes down under traffic (its device dies under the host, which keeps
/// steering to it for a while: those frames are refused and counted) and comes back: the
/// port leaves the VF, returns to it on the same sockets, and every frame is accounted for,
/// in order.
#[test]
fn afxdp_link_down_and_up_under_traffic_leaves_and_returns_to_the_vf() {
    let t = Transport::Xdp(XdpMode::Native);
    with_rig("afxdp_link_down_up", t, |mut rig| {
        let traffic = rig.traffic();
        rig.offer();
        assert!(
            traffic.wait_progress(PHASE_FRAMES, DEADLINE),
            "{:?}",
            traffic.counts()
        );
        rig.wire.fail().unwrap();
        rig.wait_port("off the VF at link down", |s| {
            // Off the data path, the VF kept (attached, its link down).
            s.switches_to_synthetic.get(SwitchReason::LinkDown) == 1
                && s.state == PortState::VfAttaching
        });
        assert!(
            traffic.wait_progress(PHASE_FRAMES, DEADLINE),
            "{:?}",
            traffic.counts()
        );
        rig.wire.plug().unwrap();
        rig.wait_port("back on the VF at link up", |s| {
            s.state == PortState::OnVf && s.switches_to_vf == 2
        });
        assert!(
            traffic.wait_progress(PHASE_FRAMES, DEADLINE),
            "{:?}",
            traffic.counts()
        );
        let (counts, a) = rig.finish(traffic);
        eprintln!("link down/up: {a:?}");
        assert_eq!(counts.guest_reordered + counts.peer_reordered, 0);
        let stats = rig.port.stats();
        assert_eq!(stats.vf_attached, 1, "the same VF, not reopened: {stats:?}");
    });
}

/// The host removes the VF (planned), the port runs without one, then the host offers it
/// again: new sockets on the new offer, and nothing lost in either move.
#[test]
fn afxdp_vf_absent_then_offered_again_loses_nothing() {
    let t = Transport::Xdp(XdpMode::Native);
    with_rig("afxdp_reoffer", t, |mut rig| {
        let traffic = rig.traffic();
        rig.offer();
        assert!(
            traffic.wait_progress(PHASE_FRAMES, DEADLINE),
            "{:?}",
            traffic.counts()
        );
        rig.host.remove_vf();
        rig.wait_port("the VF released", |s| s.vf_released == 1);
        rig.wire.unplug().unwrap();
        rig.wait_port("on synthetic", |s| s.state == PortState::Synthetic);
        assert!(
            traffic.wait_progress(PHASE_FRAMES, DEADLINE),
            "{:?}",
            traffic.counts()
        );
        rig.offer();
        assert!(
            traffic.wait_progress(PHASE_FRAMES, DEADLINE),
            "{:?}",
            traffic.counts()
        );
        let wire = rig.wire.stats();
        let (counts, a) = rig.finish(traffic);
        assert!(a.lossless(), "{a:?} {counts:?}");
        let port_full = rig.host.stats().tx_dropped_port_full;
        assert_eq!(counts.guest_sent - counts.peer_received - port_full, 0);
        let stats = rig.port.stats();
        assert_eq!(
            (stats.vf_attached, stats.switches_to_vf),
            (2, 2),
            "{stats:?}"
        );
        assert!(wire.from_vf > 0 && wire.to_vf > 0, "{wire:?}");
    });
}

fn surprise_removal(mut rig: KernelRig) {
    {
        let traffic = rig.traffic();
        rig.offer();
        assert!(
            traffic.wait_progress(PHASE_FRAMES, DEADLINE),
            "{:?}",
            traffic.counts()
        );
        // The device vanishes under traffic; the host notices only once the guest left it.
        ip(&["link", "del", VF]);
        // The kernel takes the interface down before it unregisters it: the port may see the
        // link go down first (and leave the VF then, draining its socket) or the removal at
        // once; either way it leaves once and releases the VF as removed.
        rig.wait_port("off the removed VF", |s| {
            let left = s.switches_to_synthetic.get(SwitchReason::Removed)
                + s.switches_to_synthetic.get(SwitchReason::LinkDown);
            left == 1 && s.vf_released == 1
        });
        let released =
            std::iter::from_fn(|| rig.port.next_event(Duration::ZERO)).find_map(|e| match e {
                FailoverEvent::VfReleased { reason, .. } => Some(reason),
                _ => None,
            });
        assert_eq!(released, Some(SwitchReason::Removed));
        rig.host.detach_vf_wire();
        rig.host.remove_vf();
        rig.wait_port("on synthetic", |s| s.state == PortState::Synthetic);
        // Traffic resumes on synthetic.
        assert!(
            traffic.wait_progress(PHASE_FRAMES, DEADLINE),
            "{:?}",
            traffic.counts()
        );
        let (counts, a) = rig.finish(traffic);
        eprintln!("surprise removal: {a:?}");
        assert!(
            a.rx_vf_missing >= 0 && a.tx_vf_missing >= 0,
            "{a:?} {counts:?}"
        );
        let stats = rig.port.stats();
        assert_eq!(stats.vf_attached, 1);
        assert_eq!(stats.state, PortState::Synthetic);
    }
}

#[test]
fn kernel_vf_provider_finds_the_vf_by_mac_and_skips_a_tap_with_it() {
    if !netns::runnable("kernel_vf_provider") {
        return;
    }
    in_new_namespace("kernel_vf_provider", || {
        let mac = HostConfig::default().mac;
        // A TAP with the NIC's MAC sorts first; it must not be taken for the VF.
        let _tap = packet::netdev::open_tap("tap0", 1).unwrap();
        packet::netdev::set_mac("tap0", mac).unwrap();
        netns::veth(VF, HOST_END, mac);
        let provider = KernelVfProvider {
            pci_sysfs_root: PathBuf::from("/nonexistent-hvnet-pci"),
            ..KernelVfProvider::default()
        };
        let request = VfRequest {
            mac,
            mtu: 1500,
            queues: 2,
        };
        let vf = provider
            .probe(SERIAL, &request)
            .expect("probing")
            .expect("the VF is found");
        assert_eq!(vf.name, "vf0 [AF_PACKET]");
        assert_eq!(vf.port.mac(), mac);
        assert_eq!(vf.queues.len(), 1);
        vf.port.release().unwrap();
        // Without the veth, only the TAP has the MAC: no VF.
        ip(&["link", "del", VF]);
        assert!(provider.probe(SERIAL, &request).unwrap().is_none());
    });
}
