//! AF_XDP on the VF's netdev: the kernel keeps the device, frames bypass its stack.
//!
//! What [`KernelVf::open_xdp`](super::KernelVf::open_xdp) sets up on the VF's interface
//! (after the same checks and changes as the packet-socket transport: index, MAC, MTU, up):
//! - an XSKMAP and a six-instruction XDP program, loaded with `bpf(2)` (no ELF, no clang):
//!   `return bpf_redirect_map(&xskmap, ctx->rx_queue_index, XDP_PASS)` — every frame of a
//!   queue hvnet serves goes to that queue's socket, frames of any other queue go to the
//!   kernel's stack as before;
//! - one XDP socket per port queue (queue *i* on the interface's queue *i*, as many as the
//!   interface has), each with a UMEM of its own, and the program attached through a BPF link
//!   — in native mode where the driver's XDP can redirect (its `xdp_features`, asked over the
//!   `netdev` generic-netlink family), in generic mode otherwise or when asked
//!   ([`XdpMode`]). A link is detached when its descriptor closes, so a crashed hvnet leaves
//!   no program behind. Zero-copy is taken where the driver offers it (mlx5), copy mode
//!   otherwise (MANA, veth, generic mode); [`XdpInfo`] says which, and so do the log, `hvnet
//!   status` and the `hvnet_vf_info` metric.
//!
//! Frames and the UMEM: each queue's UMEM *is* the memory of a `packet::Pool` cut in chunks of
//! 2048 (or 4096, for MTUs above 1782) bytes, one pool buffer per chunk. Receive posts pool
//! buffers on the fill ring and hands the very buffer the kernel (or the NIC, in zero-copy)
//! wrote to the caller as a `Packet`: no copy in hvnet. Transmit sends a frame from the
//! queue's own pool in place (a received frame sent back out, as a forwarder does) and copies
//! any other frame once into a chunk — the one copy a frame from the synthetic path or a TAP
//! needs to reach memory the kernel may read. In copy mode the kernel copies once more, into
//! an skb on transmit and out of one on receive; that is the mode's cost, not hvnet's.
//!
//! Removal: the kernel owns the device, so there is no VFIO request IRQ. The port learns of a
//! removal from rtnetlink (the interface going down, then gone) and from the socket's calls
//! failing (`ENETDOWN`, `ENXIO`); an XDP socket's `poll` never reports it. A socket whose
//! device was unregistered cannot be bound again: every new VF gets new sockets. After a
//! removal the kernel gives back neither the chunks on the fill ring nor the frames on the TX
//! ring: the former are taken back silently (they held no frames), the latter are counted in
//! `tx_lost`, and frames the kernel had put on the RX ring before it stopped are still read.
//!
//! Counters per queue, summed by the port: what the rings moved, plus the kernel's
//! `XDP_STATISTICS` — frames it dropped for want of a fill-ring buffer or RX-ring room
//! (`rx_no_buffer`), invalid descriptors (`rx_descriptor_errors`, `tx_lost`).
//!
//! VLAN tags: the XDP program sees the frame as the driver gave it; with receive VLAN offload
//! on (mlx5's default) the tag is not in it and is lost, so hvnet's VLAN users must turn the
//! offload off on the VF (`ethtool -K <vf> rxvlan off`). A tag asked for out of band on
//! transmit is inserted in the frame.

pub mod features;
pub(super) mod queue;
pub(super) mod ring;
pub(super) mod sys;
#[cfg(test)]
mod tests;
mod xsk;

use std::io;
use std::os::fd::{AsFd, OwnedFd};

pub use features::{XdpFeatures, xdp_features};
pub use queue::XdpVfQueue;
pub use xsk::open_umems;
pub(super) use xsk::{Xsk, XskCounters, XskSetup};

/// Where the XDP program runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum XdpMode {
    /// Native where the driver's XDP can redirect (per its `xdp_features`; ixgbevf's and
    /// iavf's cannot: every redirected frame would be dropped), generic otherwise.
    #[default]
    Auto,
    /// In the driver's receive path, before an skb exists. Refused when the driver says it
    /// cannot redirect.
    Native,
    /// After the kernel built the skb: works on every interface, costs more.
    Generic,
}

impl XdpMode {
    /// The mode's name, as `--xdp-mode` takes it.
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Auto => "auto",
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

impl std::str::FromStr for XdpMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(XdpMode::Auto),
            "native" => Ok(XdpMode::Native),
            "generic" => Ok(XdpMode::Generic),
            other => Err(format!(
                "unknown XDP mode {other:?} (auto, native or generic)"
            )),
        }
    }
}

/// The AF_XDP transport's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpConfig {
    /// Where the program runs.
    pub mode: XdpMode,
    /// Queues to open (the port's queue count); fewer if the interface has fewer.
    pub queues: u16,
    /// Entries of each ring (RX, TX, fill, completion): a power of two, 64 to 16384.
    pub ring_size: u32,
    /// Chunks in each queue's UMEM (the queue's pool): at least twice `ring_size`, so that
    /// the fill ring stays full while frames are out with the caller.
    pub chunks: u32,
    /// Refuse copy mode where zero-copy was expected? No: copy is always accepted; with this
    /// set, zero-copy is not even tried (`XDP_COPY`).
    pub force_copy: bool,
}

impl Default for XdpConfig {
    /// Auto mode, one queue, 1024-entry rings, 4096 chunks (8 MiB at MTU 1500), zero-copy
    /// where the driver has it.
    fn default() -> Self {
        Self {
            mode: XdpMode::Auto,
            queues: 1,
            ring_size: 1024,
            chunks: 4096,
            force_copy: false,
        }
    }
}

/// What the AF_XDP transport ended up with on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpInfo {
    /// Native (`true`) or generic XDP.
    pub native: bool,
    /// Whether the sockets are zero-copy.
    pub zero_copy: bool,
    /// Queues opened.
    pub queues: u16,
}

impl XdpInfo {
    /// `native` or `generic`, then `zero-copy` or `copy`: what logs, status and metrics say.
    pub fn describe(&self) -> String {
        format!(
            "{} XDP, {}",
            if self.native { "native" } else { "generic" },
            if self.zero_copy { "zero-copy" } else { "copy" }
        )
    }
}

/// Program and map names (as `bpftool prog` shows them).
const PROGRAM_NAME: &str = "hvnet_xsk";
const MAP_NAME: &str = "hvnet_xsks";
/// Slots of the XSKMAP: the most queues a port has.
pub(super) const MAP_ENTRIES: u32 = 64;
/// `XDP_PASS`: what the program does with a frame of a queue no socket serves.
const XDP_PASS: i32 = 2;
/// `bpf_redirect_map`'s helper number.
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// `ld_imm64`'s source register value that says "the immediate is a map descriptor".
const BPF_PSEUDO_MAP_FD: u8 = 1;

/// The program: `r2 = ctx->rx_queue_index; r1 = map; r3 = XDP_PASS; return
/// bpf_redirect_map(r1, r2, r3)`. The fallback action in the flags' low bits needs Linux 5.3.
pub fn program(map_fd: i32) -> [sys::BpfInsn; 6] {
    use sys::BpfInsn;
    let insn = |code: u8, dst: u8, src: u8, off: i16, imm: i32| BpfInsn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    };
    [
        // BPF_LDX | BPF_MEM | BPF_W: r2 = *(u32 *)(r1 + 16), xdp_md.rx_queue_index.
        insn(0x61, 2, 1, 16, 0),
        // BPF_LD | BPF_DW | BPF_IMM, two slots: r1 = the map.
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        // BPF_ALU64 | BPF_MOV | BPF_K: r3 = XDP_PASS.
        insn(0xb7, 3, 0, 0, XDP_PASS),
        // BPF_JMP | BPF_CALL: r0 = bpf_redirect_map(r1, r2, r3).
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        // BPF_JMP | BPF_EXIT: return r0.
        insn(0x95, 0, 0, 0, 0),
    ]
}

/// The redirect program and its XSKMAP, loaded (not attached). Loading needs CAP_BPF and
/// CAP_NET_ADMIN; attaching a loaded program (through a BPF link) and putting sockets in its
/// map need no capability. So a program loaded once at start, and shared, lets every later
/// VF arrival be served with CAP_NET_RAW alone (its sockets) — see
/// [`KernelVf::open_xdp_with`](super::KernelVf::open_xdp_with).
#[derive(Debug)]
pub struct XdpProgram {
    pub(super) map: OwnedFd,
    pub(super) prog: OwnedFd,
}

impl XdpProgram {
    /// Creates the map and loads the program (needs CAP_BPF and CAP_NET_ADMIN).
    pub fn load() -> io::Result<Self> {
        let map = sys::create_xskmap(MAP_NAME, MAP_ENTRIES)
            .map_err(|e| io::Error::new(e.kind(), format!("creating the XSKMAP: {e}")))?;
        let insns = program(std::os::fd::AsRawFd::as_raw_fd(&map));
        let prog = sys::load_xdp_program(PROGRAM_NAME, &insns)
            .map_err(|e| io::Error::new(e.kind(), format!("loading the XDP program: {e}")))?;
        Ok(Self { map, prog })
    }

    /// Attaches the program to `ifindex` natively (`true`) or generically; the link.
    pub fn attach(&self, ifindex: u32, native: bool) -> io::Result<OwnedFd> {
        let flags = if native {
            sys::XDP_FLAGS_DRV_MODE
        } else {
            sys::XDP_FLAGS_SKB_MODE
        };
        sys::attach_xdp(self.prog.as_fd(), ifindex, flags)
    }
}

/// What the port and its queues share of the AF_XDP transport.
#[derive(Debug)]
pub(super) struct Sockets {
    /// One socket per queue; `None` once released.
    pub queues: Vec<parking_lot::Mutex<Option<Xsk>>>,
    /// The program and its map (kept for the link's life).
    pub program: std::sync::Arc<XdpProgram>,
    /// The link that attaches the program; closing it detaches it.
    pub link: parking_lot::Mutex<Option<OwnedFd>>,
    /// What the transport ended up with.
    pub info: XdpInfo,
    /// The counters of sockets already released.
    pub retired: parking_lot::Mutex<XskCounters>,
}

impl Sockets {
    /// The counters of every socket, live and released, summed.
    pub fn counters(&self) -> XskCounters {
        let mut sum = self.retired.lock().clone();
        for queue in &self.queues {
            if let Some(xsk) = queue.lock().as_mut() {
                xsk.collect_kernel_stats();
                add(&mut sum, &xsk.counters);
            }
        }
        sum
    }

    /// Waits for every queue's transmits (until `deadline`) and stops it.
    pub fn stop(&self, deadline: std::time::Instant) {
        for queue in &self.queues {
            if let Some(xsk) = queue.lock().as_mut() {
                xsk.stop(deadline);
            }
        }
    }

    /// Detaches the program and closes every socket, counting what they still held.
    pub fn release(&self) {
        drop(self.link.lock().take());
        for (index, queue) in self.queues.iter().enumerate() {
            let Some(mut xsk) = queue.lock().take() else {
                continue;
            };
            xsk.abandon_in_flight();
            xsk.collect_kernel_stats();
            let _ = sys::xskmap_clear(self.program.map.as_fd(), index as u32);
            add(&mut self.retired.lock(), &xsk.counters);
        }
    }
}

/// Adds `b` to `a`.
fn add(a: &mut XskCounters, b: &XskCounters) {
    a.rx_packets += b.rx_packets;
    a.rx_bytes += b.rx_bytes;
    a.rx_frame_errors += b.rx_frame_errors;
    a.rx_descriptor_errors += b.rx_descriptor_errors;
    a.rx_no_buffer += b.rx_no_buffer;
    a.rx_dropped_stop += b.rx_dropped_stop;
    a.tx_packets += b.tx_packets;
    a.tx_bytes += b.tx_bytes;
    a.tx_lost += b.tx_lost;
}

/// The chunk size for frames of `mtu` bytes of payload (plus an Ethernet header and a VLAN
/// tag) behind the kernel's 256 bytes of XDP headroom; `None` beyond a page (multi-buffer
/// frames are not supported).
pub fn chunk_size(mtu: usize) -> Option<u32> {
    let need = XDP_PACKET_HEADROOM + mtu + super::ETH_HEADER + super::VLAN_TAG;
    [2048u32, 4096].into_iter().find(|&c| need <= c as usize)
}

/// Bytes the kernel keeps in front of every received frame in a chunk.
pub const XDP_PACKET_HEADROOM: usize = 256;

#[cfg(test)]
mod program_tests {
    use super::*;
    use zerocopy::IntoBytes;

    #[test]
    fn the_program_is_the_six_slot_redirect_with_its_map() {
        let insns = program(0x0102_0304);
        let bytes: Vec<u8> = insns.iter().flat_map(|i| i.as_bytes().to_vec()).collect();
        let expected: Vec<u8> = [
            "61 12 10 00 00 00 00 00",
            "18 11 00 00 04 03 02 01",
            "00 00 00 00 00 00 00 00",
            "b7 03 00 00 02 00 00 00",
            "85 00 00 00 33 00 00 00",
            "95 00 00 00 00 00 00 00",
        ]
        .iter()
        .flat_map(|l| l.split(' ').map(|b| u8::from_str_radix(b, 16).unwrap()))
        .collect();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn chunks_fit_the_mtu_or_are_refused() {
        assert_eq!(chunk_size(1500), Some(2048));
        assert_eq!(chunk_size(2048 - 256 - 18), Some(2048));
        assert_eq!(chunk_size(2048 - 256 - 17), Some(4096));
        assert_eq!(chunk_size(4096 - 256 - 18), Some(4096));
        assert_eq!(chunk_size(9000), None);
    }

    #[test]
    fn modes_parse_and_name_themselves() {
        for mode in [XdpMode::Auto, XdpMode::Native, XdpMode::Generic] {
            assert_eq!(mode.name().parse::<XdpMode>(), Ok(mode));
        }
        assert!(
            "drv"
                .parse::<XdpMode>()
                .unwrap_err()
                .contains("auto, native or generic")
        );
    }
}
