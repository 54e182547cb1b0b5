//! The igbvf driver ([`Igbvf`]) against a hostile 82576 VF: a device, defined here, that behaves
//! like the hardware and a Linux igb PF unless the input tells it to lie. It can lie in every
//! register read (all-ones reads, mailbox words, `RXDCTL`/`TXDCTL`, heads, `STATUS`,
//! counters), in every PF answer, and in every DMA write-back (RX length, `DD`/`EOP`, error
//! bits; TX `DD` anywhere in the ring). The driver is opened against it with a virtual clock
//! and short timeouts, then driven through a sequence of data-path and control actions.
//!
//! Input: `[config][device]` then up to [`MAX_OPS`] ops, each an op byte (`% OPS`) and its
//! operands (missing operand bytes read as 0). Config: bit 0 two queues; bits 1–2 ring size
//! 8/16/32/64; bit 3 jumbo MTU; bit 4 no MSI-X; bit 5 no request IRQ; bits 6–7 MAC: the PF's
//! administrator MAC / none (RESET NACKed) and a configured one / none and a random one /
//! both, differing. Device: bit 0 link down at start; bit 1 config space fails; bits 2–4 the
//! Nth DMA allocation fails (0 never); bits 5–7 reads of a cleared queue enable bit that still
//! show it set (7: for ever).
//!
//! Ops 0–14 script the device (register lies, PF answers, honest and hostile write-backs,
//! PF reset, link, PF messages, surprise removal, the host's release request, interrupts);
//! ops 15–23 call the driver (`rx_burst`, `tx_burst`, `tx_pending`, `service`, `stop`,
//! `release`, `stats`, `set_multicast`, dropping the frames the application holds). The
//! driver is opened at the first driver op (or at the end); the device answers honestly unless
//! told otherwise, so most inputs reach the data path. After the ops the port is serviced,
//! stopped, released and dropped.
//!
//! Invariants: no panic; no hang (a driver call that polls the device more than
//! [`READ_LIMIT`] times, or waits longer than [`WAIT_LIMIT`] on its clock, fails); the
//! application never gets a frame longer than the RX buffer, or one from another queue;
//! per queue, frames `tx_burst` took = completed + dropped + lost + `tx_pending`, and
//! `rx_packets` = frames handed out; counters (the hardware's too) never decrease; no burst
//! moves a frame after `Removed`, `stop` or `release`, and `tx_pending` is 0 then and right
//! after `PfReset`; `ResetComplete` only follows `PfReset`, link events alternate; the
//! driver hands the device only DMA addresses inside its allocations; while the device has
//! not lied, the frames it receives and sends arrive intact and in order; after `release`
//! every transmit buffer is back in its pool, and after the drop every buffer.
#![no_main]

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use packet::{MacAddr, Packet, Pool, PortQueue, SharedMemory};
use vf::device::{ALL_ONES, DeviceError, EventFd, RegisterIo, VfDevice};
use vf::igbvf::descriptors::{DESC_SIZE, RxChecksum, RxCompletion, TxWriteback, rx_status, tx_cmd};
use vf::igbvf::mailbox::{MessageType, Request, VT_MSGTYPE_ACK, VT_MSGTYPE_CTS, VT_MSGTYPE_NACK};
use vf::igbvf::regs::{
    CTRL, Queue, STATUS, Status, V2PMAILBOX, V2pMailbox, VFGPRC, VFGPTC, VMBMEM_WORDS, ctrl, rdbah,
    rdbal, rdh, rdlen, rdt, rxdctl, srrctl, tdbah, tdbal, tdh, tdlen, tdt, txdctl, vmbmem,
};
use vf::igbvf::{Clock, Igbvf, IgbvfConfig, IgbvfQueue, QueueCounters};
use vf::port::{VfEvent, VfPort, VfQueue};

/// Ops decoded from one input at most.
const MAX_OPS: usize = 96;
/// Register reads one driver call may make before it counts as a hang.
const READ_LIMIT: u64 = 200_000;
/// Virtual time one driver call may wait before it counts as a hang (its bounds are ms).
const WAIT_LIMIT: Duration = Duration::from_secs(2);
/// Mailbox budget: 10 polls of 500 µs.
const MAILBOX_TIMEOUT: Duration = Duration::from_millis(5);
/// Queue-enable and link budget.
const LINK_WAIT: Duration = Duration::from_millis(2);
/// The PF's administrator MAC.
const ADMIN_MAC: [u8; 6] = [0x00, 0x15, 0x5d, 0x0a, 0x0b, 0x0c];
/// A MAC the port may be configured with.
const OWN_MAC: MacAddr = MacAddr([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01]);
/// First bytes of every frame long enough to carry a sequence number.
const MAGIC: [u8; 4] = *b"HVFZ";
/// Frames the application keeps from `rx_burst` at most.
const HELD_MAX: usize = 256;
/// `PCI_COMMAND` and its bus-master bit.
const PCI_COMMAND: usize = 0x04;
const PCI_COMMAND_MASTER: u8 = 0x04;

// ---------------------------------------------------------------------------------------------
// Input

/// Operand reader: missing bytes read as 0, so every input decodes.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        std::array::from_fn(|_| self.u8())
    }
}

// ---------------------------------------------------------------------------------------------
// Frames: both ends write and check the same pattern

fn queue_reg(index: usize) -> Queue {
    Queue::new(index as u8).expect("queue index 0 or 1")
}

/// A frame of `len` bytes: [`MAGIC`], the sequence number, then `seq ^ i`.
fn fill_frame(buf: &mut [u8], seq: u32) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = match i {
            0..4 => MAGIC[i],
            4..8 => seq.to_le_bytes()[i - 4],
            _ => (seq as u8) ^ (i as u8),
        };
    }
}

/// The sequence number of an intact frame; `None` for a short one. Panics on a corrupt one.
fn check_frame(buf: &[u8], what: &str) -> Option<u32> {
    if buf.len() < 8 {
        return None;
    }
    assert_eq!(
        buf[..4],
        MAGIC,
        "{what}: not a frame of ours: {:02x?}",
        &buf[..8]
    );
    let seq = u32::from_le_bytes(buf[4..8].try_into().unwrap());
    for (i, &b) in buf.iter().enumerate().skip(8) {
        assert_eq!(
            b,
            (seq as u8) ^ (i as u8),
            "{what}: frame {seq} corrupt at byte {i}"
        );
    }
    Some(seq)
}

/// Per-queue order check of intact frames.
#[derive(Debug, Default)]
struct Order([Option<u32>; 2]);

impl Order {
    fn check(&mut self, queue: usize, seq: Option<u32>, what: &str) {
        let Some(seq) = seq else { return };
        let last = &mut self.0[queue];
        assert!(
            last.is_none_or(|l| seq > l),
            "{what}: queue {queue}: frame {seq} after {last:?}"
        );
        *last = Some(seq);
    }
}

// ---------------------------------------------------------------------------------------------
// The device

/// A lie told on register reads.
#[derive(Debug)]
struct Glitch {
    /// The register it applies to; `None`: every register.
    offset: Option<u32>,
    /// Matching reads to let through first.
    skip: u8,
    /// Matching reads to lie on; `None`: for ever.
    remaining: Option<u8>,
    value: u32,
}

/// How the PF answers one request.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Honest,
    /// No answer at all.
    Silent,
    /// `PFACK`, but no reply message.
    AckOnly,
    /// The reply, but no `PFACK`.
    MessageOnly,
    /// `type | NACK | CTS`.
    Nack,
    /// These three words, with `PFACK | PFSTS`.
    Words([u32; 3]),
    /// The honest reply with `RSTD` beside it.
    ResetBeside,
}

impl Reply {
    fn decode(r: &mut Reader<'_>) -> Self {
        let mode = r.u8();
        let words = [r.u32(), r.u32(), r.u32()];
        match mode % 7 {
            0 => Reply::Honest,
            1 => Reply::Silent,
            2 => Reply::AckOnly,
            3 => Reply::MessageOnly,
            4 => Reply::Nack,
            5 => Reply::Words(words),
            _ => Reply::ResetBeside,
        }
    }
}

/// Everything of the device behind one lock.
#[derive(Debug, Default)]
struct DevState {
    regs: HashMap<u32, u32>,
    glitches: Vec<Glitch>,
    /// A register read returned something else than the honest value, or the PF posted a
    /// message or answer a Linux igb PF would not: the driver may rightly believe the rings
    /// stopped while they run, so frame contents are no longer checked.
    lied: bool,
    /// A write-back was forged on this queue.
    forged_rx: [bool; 2],
    forged_tx: [bool; 2],
    /// Surprise removal: every read all ones, writes and DMA dropped.
    removed: bool,
    released: bool,
    admin_mac: Option<[u8; 6]>,
    pf_in_reset: bool,
    /// The VF did the `RESET` handshake since its last reset.
    cts: bool,
    replies: VecDeque<Reply>,
    /// `VFU` claims to refuse.
    deny_vfu: u8,
    /// Reads of a cleared enable bit that still show it set (`u8::MAX`: for ever).
    enable_lag: u8,
    lagging: Vec<u32>,
    /// Frames the device sent, per queue, in order (checked, when it never lied).
    tx_order: Order,
    rx_seq: [u32; 2],
    /// Frames dropped for want of a descriptor or an enabled queue.
    rx_dropped: u64,
}

impl DevState {
    fn get(&self, offset: u32) -> u32 {
        self.regs.get(&offset).copied().unwrap_or(0)
    }

    fn set(&mut self, offset: u32, value: u32) {
        self.regs.insert(offset, value);
    }

    fn dead(&self) -> bool {
        self.removed || self.released
    }

    /// The honest value of a read, with its side effects.
    fn honest_read(&mut self, offset: u32) -> u32 {
        let mut value = self.get(offset);
        if is_queue_ctl(offset) && value & rxdctl::ENABLE == 0 && self.lagging.contains(&offset) {
            if self.enable_lag == 0 {
                self.lagging.retain(|&o| o != offset);
            } else {
                if self.enable_lag != u8::MAX {
                    self.enable_lag -= 1;
                }
                value |= rxdctl::ENABLE;
            }
        }
        if offset == V2PMAILBOX {
            self.set(offset, value & !V2pMailbox::R2C_BITS);
        }
        value
    }

    /// The first glitch for `offset` that is due, applied.
    fn lie(&mut self, offset: u32, honest: u32) -> u32 {
        let mut value = honest;
        if let Some(i) = self
            .glitches
            .iter()
            .position(|g| g.offset.is_none_or(|o| o == offset))
        {
            let g = &mut self.glitches[i];
            if g.skip > 0 {
                g.skip -= 1;
            } else {
                value = g.value;
                if let Some(n) = &mut g.remaining {
                    *n -= 1;
                    if *n == 0 {
                        self.glitches.remove(i);
                    }
                }
            }
        }
        self.lied |= value != honest;
        value
    }

    fn write(&mut self, offset: u32, value: u32) {
        match offset {
            CTRL => {
                if value & ctrl::RST != 0 {
                    self.vf_reset();
                }
                self.set(offset, value & !ctrl::RST);
            }
            V2PMAILBOX => {
                let current = self.get(offset);
                if value & V2pMailbox::REQ != 0 {
                    self.pf_answer();
                } else if value & V2pMailbox::VFU != 0 {
                    if self.deny_vfu > 0 {
                        self.deny_vfu -= 1;
                    } else {
                        self.set(offset, current | V2pMailbox::VFU);
                    }
                } else if value & V2pMailbox::ACK != 0 {
                    self.set(offset, current & !V2pMailbox::VFU);
                }
            }
            _ => {
                if is_queue_ctl(offset) && value & rxdctl::ENABLE == 0 {
                    self.lagging.push(offset);
                }
                self.set(offset, value);
            }
        }
    }

    /// `CTRL.RST`, or a PF reset: the rings stop.
    fn stop_rings(&mut self) {
        for q in [Queue::Q0, Queue::Q1] {
            for reg in [rxdctl(q), txdctl(q)] {
                let v = self.get(reg);
                self.set(reg, v & !rxdctl::ENABLE);
            }
            for reg in [rdh(q), rdt(q), tdh(q), tdt(q)] {
                self.set(reg, 0);
            }
        }
    }

    fn vf_reset(&mut self) {
        self.stop_rings();
        self.cts = false;
    }

    fn post(&mut self, words: &[u32], bits: u32) {
        for (i, &w) in words.iter().enumerate() {
            self.set(vmbmem(i).unwrap(), w);
        }
        let v2p = self.get(V2PMAILBOX);
        self.set(V2PMAILBOX, (v2p & !V2pMailbox::VFU) | bits);
    }

    /// The PF reads the request in `VMBMEM` and answers, as Linux igb does unless a scripted
    /// [`Reply`] says otherwise.
    fn pf_answer(&mut self) {
        if self.pf_in_reset {
            return;
        }
        let mut words = [0u32; VMBMEM_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = self.get(vmbmem(i).unwrap());
        }
        let request = match Request::decode(&words) {
            Ok(Some(request)) => request,
            other => panic!("the driver posted a request that does not decode: {other:?}"),
        };
        let t = u32::from(request.msg_type().0);
        let honest: [u32; 3] = match &request {
            Request::Reset => {
                self.cts = true;
                match self.admin_mac {
                    Some(m) => [
                        t | VT_MSGTYPE_ACK | VT_MSGTYPE_CTS,
                        u32::from_le_bytes([m[0], m[1], m[2], m[3]]),
                        u32::from_le_bytes([m[4], m[5], 0, 0]),
                    ],
                    None => [t | VT_MSGTYPE_NACK, 0, 0],
                }
            }
            _ if !self.cts => [t | VT_MSGTYPE_NACK, 0, 0],
            Request::SetMacAddr(_) if self.admin_mac.is_some() => {
                [t | VT_MSGTYPE_NACK | VT_MSGTYPE_CTS, 0, 0]
            }
            _ => [t | VT_MSGTYPE_ACK | VT_MSGTYPE_CTS, 0, 0],
        };
        let both = V2pMailbox::PFACK | V2pMailbox::PFSTS;
        let reply = self.replies.pop_front().unwrap_or(Reply::Honest);
        self.lied |= !matches!(reply, Reply::Honest);
        match reply {
            Reply::Honest => self.post(&honest, both),
            Reply::Silent => {}
            Reply::AckOnly => self.post(&[], V2pMailbox::PFACK),
            Reply::MessageOnly => self.post(&honest, V2pMailbox::PFSTS),
            Reply::Nack => self.post(&[t | VT_MSGTYPE_NACK | VT_MSGTYPE_CTS, 0, 0], both),
            Reply::Words(words) => self.post(&words, both),
            Reply::ResetBeside => self.post(&honest, both | V2pMailbox::RSTD),
        }
    }

    fn pf_control(&mut self, extra: u32) {
        let cts = if self.cts { VT_MSGTYPE_CTS } else { 0 };
        self.post(
            &[u32::from(MessageType::PF_CONTROL_MSG.0) | cts | extra],
            V2pMailbox::PFSTS,
        );
    }
}

fn is_queue_ctl(offset: u32) -> bool {
    [Queue::Q0, Queue::Q1]
        .iter()
        .any(|&q| offset == rxdctl(q) || offset == txdctl(q))
}

/// What a driver call may spend; exceeding it is a hang.
#[derive(Debug, Default)]
struct Budget {
    reads: AtomicU64,
}

#[derive(Debug)]
struct FuzzBar {
    state: Arc<Mutex<DevState>>,
    budget: Arc<Budget>,
}

impl RegisterIo for FuzzBar {
    fn read32(&self, offset: u32) -> u32 {
        let reads = self.budget.reads.fetch_add(1, Ordering::Relaxed) + 1;
        assert!(
            reads <= READ_LIMIT,
            "hang: {reads} register reads in one driver call (offset {offset:#x})"
        );
        let mut st = self.state.lock().unwrap();
        let honest = if st.dead() {
            ALL_ONES
        } else {
            st.honest_read(offset)
        };
        st.lie(offset, honest)
    }

    fn write32(&self, offset: u32, value: u32) {
        let mut st = self.state.lock().unwrap();
        if !st.dead() {
            st.write(offset, value);
        }
    }
}

#[derive(Debug)]
struct FuzzVf {
    state: Arc<Mutex<DevState>>,
    bar: Arc<FuzzBar>,
    dma: Mutex<Vec<SharedMemory>>,
    /// The allocation (1-based) that fails; 0: none.
    fail_alloc: u8,
    allocs: Mutex<u8>,
    config: Mutex<[u8; 256]>,
    config_broken: bool,
    msix_supported: bool,
    msix: Mutex<Vec<Arc<EventFd>>>,
    request: Option<Arc<EventFd>>,
}

impl FuzzVf {
    fn lock(&self) -> MutexGuard<'_, DevState> {
        self.state.lock().unwrap()
    }

    /// DMA memory, not counted against the allocation that fails (the application's too).
    fn alloc(&self, size: usize) -> Result<SharedMemory, DeviceError> {
        let mut dma = self.dma.lock().unwrap();
        // Bus addresses 64 bytes off a page, so the driver's ring alignment is exercised.
        let base = dma
            .last()
            .map(|m| (m.bus_addr(m.len()) + 0x1000).next_multiple_of(0x1000) + 64)
            .unwrap_or(0x1_0000_0040);
        let mem = SharedMemory::anonymous(size)
            .map_err(|source| DeviceError::Memory {
                device: "fuzz-vf".into(),
                op: "dma",
                source,
            })?
            .with_bus_base(base);
        dma.push(mem.clone());
        Ok(mem)
    }

    fn closed(&self) -> DeviceError {
        DeviceError::Closed {
            device: "fuzz-vf".into(),
        }
    }

    /// The DMA memory at bus address `bus`, `len` bytes, if one allocation holds it all.
    fn mem_at(&self, bus: u64, len: usize) -> Option<SharedMemory> {
        let dma = self.dma.lock().unwrap();
        let end = bus.checked_add(len as u64)?;
        let region = dma
            .iter()
            .find(|m| bus >= m.bus_addr(0) && end <= m.bus_addr(m.len()))?;
        region
            .subregion((bus - region.bus_addr(0)) as usize, len)
            .ok()
    }

    /// The ring `lo`/`hi`/`len` point at; the driver must have put it in DMA memory.
    fn ring(&self, st: &DevState, lo: u32, hi: u32, len: u32) -> SharedMemory {
        let base = u64::from(st.get(lo)) | u64::from(st.get(hi)) << 32;
        self.mem_at(base, len as usize)
            .unwrap_or_else(|| panic!("ring at {base:#x}+{len:#x} is not in dma memory"))
    }

    /// The device receives `count` frames of `len` bytes on `queue`, as the hardware does.
    fn receive(&self, queue: usize, count: u8, len: u16) {
        let q = queue_reg(queue);
        let mut st = self.lock();
        for _ in 0..count {
            let size = st.get(rdlen(q)) as usize / DESC_SIZE;
            let (head, tail) = (st.get(rdh(q)) as usize, st.get(rdt(q)) as usize);
            if st.dead() || st.get(rxdctl(q)) & rxdctl::ENABLE == 0 || size == 0 {
                st.rx_dropped += 1;
                continue;
            }
            assert!(tail < size, "rx tail {tail} beyond a ring of {size}");
            if head == tail {
                st.rx_dropped += 1;
                continue;
            }
            let ring = self.ring(&st, rdbal(q), rdbah(q), st.get(rdlen(q)));
            let mut desc = [0u8; DESC_SIZE];
            ring.read(head * DESC_SIZE, &mut desc).unwrap();
            let addr = u64::from_le_bytes(desc[..8].try_into().unwrap());
            let buf_size = (st.get(srrctl(q)) & 0x7f) as usize * 1024;
            let len = usize::from(len).clamp(1, buf_size.max(1));
            let Some(buffer) = self.mem_at(addr, len) else {
                // A forged head may have moved onto descriptors the driver never posted.
                assert!(
                    st.forged_rx[queue],
                    "rx buffer {addr:#x}+{len} is not in dma memory"
                );
                st.rx_dropped += 1;
                continue;
            };
            let mut frame = vec![0u8; len];
            fill_frame(&mut frame, st.rx_seq[queue]);
            st.rx_seq[queue] += 1;
            buffer.write(0, &frame).unwrap();
            let wb = RxCompletion {
                length: len as u16,
                eop: true,
                vlan: None,
                frame_error: false,
                checksum: RxChecksum::NotChecked,
                loopback: false,
                pkt_info: 0,
                rss: 0,
                status_error: rx_status::EOP,
            }
            .write_back();
            ring.write(head * DESC_SIZE, &wb.to_bytes()).unwrap();
            st.set(rdh(q), ((head + 1) % size) as u32);
            let n = st.get(VFGPRC);
            st.set(VFGPRC, n.wrapping_add(1));
        }
    }

    /// The device sends up to `max` posted frames of `queue`, checking what it reads.
    fn transmit(&self, queue: usize, max: u8) {
        let q = queue_reg(queue);
        let mut st = self.lock();
        for _ in 0..max {
            let size = st.get(tdlen(q)) as usize / DESC_SIZE;
            let (head, tail) = (st.get(tdh(q)) as usize, st.get(tdt(q)) as usize);
            if st.dead() || st.get(txdctl(q)) & txdctl::ENABLE == 0 || size == 0 {
                return;
            }
            assert!(tail < size, "tx tail {tail} beyond a ring of {size}");
            if head == tail {
                return;
            }
            let ring = self.ring(&st, tdbal(q), tdbah(q), st.get(tdlen(q)));
            let mut desc = [0u8; DESC_SIZE];
            ring.read(head * DESC_SIZE, &mut desc).unwrap();
            let addr = u64::from_le_bytes(desc[..8].try_into().unwrap());
            let cmd = u32::from_le_bytes(desc[8..12].try_into().unwrap());
            let len = (cmd & tx_cmd::LEN_MASK) as usize;
            let posted = len > 0 && cmd & tx_cmd::EOP != 0 && cmd & tx_cmd::RS != 0;
            let buffer = self.mem_at(addr, len).filter(|_| posted);
            // A forged head may have moved onto descriptors the driver never posted.
            let Some(buffer) = buffer else {
                assert!(
                    st.forged_tx[queue],
                    "tx descriptor {head} is not a frame in dma memory: {desc:02x?}"
                );
                return;
            };
            let mut frame = vec![0u8; len];
            buffer.read(0, &mut frame).unwrap();
            if !st.lied && !st.forged_tx[queue] {
                let seq = check_frame(&frame, "device tx");
                st.tx_order.check(queue, seq, "device tx");
            }
            ring.write(head * DESC_SIZE, &TxWriteback::done().to_bytes())
                .unwrap();
            st.set(tdh(q), ((head + 1) % size) as u32);
            let n = st.get(VFGPTC);
            st.set(VFGPTC, n.wrapping_add(1));
        }
    }

    /// Writes `bytes` over descriptor `head + offset` of a ring, optionally moving the head
    /// past it: a forged write-back.
    fn forge(&self, rx: bool, queue: usize, offset: u8, advance: bool, bytes: [u8; DESC_SIZE]) {
        let q = queue_reg(queue);
        let mut st = self.lock();
        let (lo, hi, len, head) = if rx {
            (rdbal(q), rdbah(q), rdlen(q), rdh(q))
        } else {
            (tdbal(q), tdbah(q), tdlen(q), tdh(q))
        };
        let size = st.get(len) as usize / DESC_SIZE;
        if st.dead() || size == 0 {
            return;
        }
        let ring = self.ring(&st, lo, hi, st.get(len));
        let slot = (st.get(head) as usize + usize::from(offset)) % size;
        ring.write(slot * DESC_SIZE, &bytes).unwrap();
        if advance {
            st.set(head, ((slot + 1) % size) as u32);
        }
        if rx {
            st.forged_rx[queue] = true;
        } else {
            st.forged_tx[queue] = true;
        }
    }
}

impl VfDevice for FuzzVf {
    fn name(&self) -> &str {
        "fuzz-vf"
    }

    fn bar0(&self) -> Arc<dyn RegisterIo> {
        self.bar.clone()
    }

    fn config_read(&self, offset: u16, buf: &mut [u8]) -> Result<(), DeviceError> {
        if self.config_broken || self.lock().released {
            return Err(self.closed());
        }
        let config = self.config.lock().unwrap();
        let start = usize::from(offset).min(config.len());
        let end = (start + buf.len()).min(config.len());
        buf.fill(0);
        buf[..end - start].copy_from_slice(&config[start..end]);
        Ok(())
    }

    fn config_write(&self, offset: u16, buf: &[u8]) -> Result<(), DeviceError> {
        if self.config_broken || self.lock().released {
            return Err(self.closed());
        }
        let mut config = self.config.lock().unwrap();
        let start = usize::from(offset).min(config.len());
        let end = (start + buf.len()).min(config.len());
        config[start..end].copy_from_slice(&buf[..end - start]);
        Ok(())
    }

    fn dma_alloc(&self, size: usize) -> Result<SharedMemory, DeviceError> {
        let mut allocs = self.allocs.lock().unwrap();
        *allocs = allocs.saturating_add(1);
        if *allocs == self.fail_alloc || self.lock().released {
            return Err(self.closed());
        }
        drop(allocs);
        self.alloc(size)
    }

    fn dma_reachable(&self, memory: &SharedMemory) -> bool {
        self.dma.lock().unwrap().iter().any(|m| m.contains(memory))
    }

    fn enable_msix(&self, vectors: u32) -> Result<Vec<Arc<EventFd>>, DeviceError> {
        if !self.msix_supported {
            return Err(DeviceError::Unsupported {
                device: "fuzz-vf".into(),
                what: "msi-x",
            });
        }
        let fds: Vec<_> = (0..vectors)
            .map(|_| Arc::new(EventFd::new().expect("eventfd")))
            .collect();
        *self.msix.lock().unwrap() = fds.clone();
        Ok(fds)
    }

    fn disable_msix(&self) -> Result<(), DeviceError> {
        self.msix.lock().unwrap().clear();
        Ok(())
    }

    fn request_irq(&self) -> Result<Arc<EventFd>, DeviceError> {
        self.request
            .clone()
            .ok_or_else(|| DeviceError::Unsupported {
                device: "fuzz-vf".into(),
                what: "request irq",
            })
    }

    fn is_present(&self) -> bool {
        !self.lock().dead()
    }

    fn release(&self) -> Result<(), DeviceError> {
        self.lock().released = true;
        Ok(())
    }

    fn reset(&self) -> Result<(), DeviceError> {
        Ok(())
    }
}

/// A clock whose `pause` advances virtual time; a call that waits too long is a hang.
#[derive(Debug)]
struct VirtualClock {
    now: Mutex<Instant>,
    call_started: Mutex<Instant>,
}

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        *self.now.lock().unwrap()
    }

    fn pause(&self, duration: Duration) {
        let mut now = self.now.lock().unwrap();
        *now += duration;
        let waited = *now - *self.call_started.lock().unwrap();
        assert!(
            waited <= WAIT_LIMIT,
            "hang: a driver call waited {waited:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The application and its checks

/// One open port and what the application knows about it.
struct App {
    port: Igbvf,
    queues: Vec<IgbvfQueue>,
    rx_pools: Vec<Pool>,
    /// Transmit buffers the device reaches, and ones it does not (bounced by the driver).
    tx_dma: Pool,
    tx_plain: Pool,
    held: Vec<Packet>,
    tx_seq: u32,
    /// Per queue: frames `tx_burst` took, frames `rx_burst` handed out.
    taken: Vec<u64>,
    handed: Vec<u64>,
    last: Vec<QueueCounters>,
    rx_order: Order,
    /// The hardware packet counters (received, sent) last read.
    hw: (u64, u64),
    /// The driver reported `Removed`, a `PfReset` not yet completed, the port was stopped or
    /// released.
    removed: bool,
    resetting: bool,
    stopped: bool,
    released: bool,
    link_up: bool,
}

impl App {
    /// Whether bursts must move nothing. (Between `PfReset` and `ResetComplete` a queue the
    /// failed re-initialisation already re-programmed may run: not checked.)
    fn frozen(&self) -> bool {
        self.removed || self.stopped || self.released
    }

    fn events(&mut self, events: &[VfEvent]) {
        for &event in events {
            match event {
                VfEvent::LinkUp | VfEvent::LinkDown => {
                    let up = event == VfEvent::LinkUp;
                    assert_ne!(up, self.link_up, "{event:?} without a change: {events:?}");
                    self.link_up = up;
                }
                VfEvent::PfReset => {
                    assert!(!self.resetting, "a second PfReset before ResetComplete");
                    self.resetting = true;
                }
                VfEvent::ResetComplete => {
                    assert!(self.resetting, "ResetComplete without PfReset: {events:?}");
                    self.resetting = false;
                }
                VfEvent::Removed => {
                    assert!(!self.removed, "Removed twice");
                    self.removed = true;
                }
                VfEvent::ReleaseRequested => {}
            }
        }
        if !self.removed && !self.released {
            assert_eq!(self.port.link_up(), self.link_up, "link state vs events");
        }
    }

    /// The per-queue invariants, after every op.
    fn check(&mut self) {
        let frozen = self.frozen();
        for (i, q) in self.queues.iter_mut().enumerate() {
            let pending = q.tx_pending() as u64;
            let c = q.counters();
            assert_eq!(
                self.taken[i],
                c.tx_packets + c.tx_dropped + c.tx_lost + pending,
                "queue {i}: taken vs completed + dropped + lost + pending: {c:?}"
            );
            assert_eq!(
                self.handed[i], c.rx_packets,
                "queue {i}: handed out vs rx_packets"
            );
            if frozen {
                assert_eq!(
                    pending, 0,
                    "queue {i}: frames pending on a dead ring: {c:?}"
                );
            }
            let p = self.last[i];
            for (now, before) in [
                (c.rx_packets, p.rx_packets),
                (c.rx_bytes, p.rx_bytes),
                (c.tx_packets, p.tx_packets),
                (c.tx_bytes, p.tx_bytes),
                (c.rx_descriptor_errors, p.rx_descriptor_errors),
                (c.rx_frame_errors, p.rx_frame_errors),
                (c.rx_no_buffer, p.rx_no_buffer),
                (c.tx_lost, p.tx_lost),
                (c.tx_dropped, p.tx_dropped),
                (c.tx_bounced, p.tx_bounced),
            ] {
                assert!(
                    now >= before,
                    "queue {i}: a counter went down: {p:?} → {c:?}"
                );
            }
            self.last[i] = c;
        }
    }

    fn rx_burst(&mut self, dev: &FuzzVf, queue: usize, max: usize, hold: bool) {
        let buf_size = self.port.config().rx_buf_size;
        let mut out = Vec::new();
        let n = self.queues[queue].rx_burst(&mut out, max);
        assert_eq!(n, out.len());
        assert!(n <= max);
        if self.frozen() {
            assert_eq!(n, 0, "rx_burst moved frames on a frozen queue");
        }
        self.handed[queue] += n as u64;
        let trusted = {
            let st = dev.lock();
            !st.lied && !st.forged_rx[queue]
        };
        for p in out {
            assert!(
                p.len() <= buf_size && p.len() <= p.max_len(),
                "a {}-byte frame from {buf_size}-byte buffers",
                p.len()
            );
            assert_eq!(usize::from(p.meta.queue), queue);
            if trusted {
                let seq = check_frame(p.data(), "application rx");
                self.rx_order.check(queue, seq, "application rx");
            }
            if hold && self.held.len() < HELD_MAX {
                self.held.push(p);
            }
        }
    }

    fn tx_burst(&mut self, queue: usize, count: u8, len: u16, dma: bool) {
        let pool = if dma { &self.tx_dma } else { &self.tx_plain };
        let mut frames = Vec::new();
        for _ in 0..count {
            let Some(mut p) = pool.alloc() else { break };
            let len = usize::from(len).min(p.max_len());
            p.set_len(len);
            fill_frame(p.data_mut(), self.tx_seq);
            self.tx_seq += 1;
            frames.push(p);
        }
        let before = frames.len();
        let n = self.queues[queue].tx_burst(&mut frames);
        assert!(n <= before);
        assert_eq!(
            frames.len(),
            before - n,
            "tx_burst took {n} but left {}",
            frames.len()
        );
        if self.frozen() {
            assert_eq!(n, 0, "tx_burst took frames on a frozen queue");
        }
        self.taken[queue] += n as u64;
    }

    fn release(&mut self) {
        // An error is the device's (disabling MSI-X, releasing it), not a broken invariant.
        let _ = self.port.release();
        self.released = true;
        assert!(self.port.service(Duration::ZERO).is_empty());
        self.check();
        assert_eq!(
            self.tx_dma.available(),
            self.tx_dma.capacity(),
            "transmit buffers still held after release"
        );
        assert_eq!(self.tx_plain.available(), self.tx_plain.capacity());
    }
}

fn open(
    dev: &Arc<FuzzVf>,
    clock: &Arc<VirtualClock>,
    budget: &Budget,
    config: IgbvfConfig,
) -> Option<App> {
    start_call(clock, budget);
    let (port, queues) = Igbvf::open_with_clock(dev.clone(), config.clone(), clock.clone()).ok()?;
    assert_eq!(queues.len(), usize::from(config.queues));
    let n = queues.len();
    let rx_pools = queues.iter().map(|q| q.pool().clone()).collect();
    // Buffers as large as the RX ones, so oversize frames reach the driver too.
    let buf = config.rx_buf_size + packet::pool::HEADROOM;
    let tx_dma = Pool::new(dev.alloc(32 * buf).expect("dma memory"), buf).unwrap();
    let tx_plain = Pool::new(SharedMemory::anonymous(32 * buf).unwrap(), buf).unwrap();
    let link_up = port.link_up();
    Some(App {
        port,
        queues,
        rx_pools,
        tx_dma,
        tx_plain,
        held: Vec::new(),
        tx_seq: 0,
        taken: vec![0; n],
        handed: vec![0; n],
        last: vec![QueueCounters::default(); n],
        rx_order: Order::default(),
        hw: (0, 0),
        removed: false,
        resetting: false,
        stopped: false,
        released: false,
        link_up,
    })
}

fn start_call(clock: &VirtualClock, budget: &Budget) {
    budget.reads.store(0, Ordering::Relaxed);
    *clock.call_started.lock().unwrap() = *clock.now.lock().unwrap();
}

/// Ops that script the device; the rest call the driver.
const DEVICE_OPS: u8 = 15;
/// Ops in all.
const OPS: u8 = 24;

fn run(data: &[u8]) {
    let mut r = Reader(data);
    let config_byte = r.u8();
    let device_byte = r.u8();
    let jumbo = config_byte & 8 != 0;
    let (admin_mac, configured) = match config_byte >> 6 {
        0 => (Some(ADMIN_MAC), None),
        1 => (None, Some(OWN_MAC)),
        2 => (None, None),
        _ => (Some(ADMIN_MAC), Some(OWN_MAC)),
    };
    let config = IgbvfConfig {
        queues: 1 + u16::from(config_byte & 1),
        ring_size: 8 << ((config_byte >> 1) & 3),
        mtu: if jumbo { 9000 } else { 1500 },
        rx_buf_size: if jumbo { 10240 } else { 2048 },
        mailbox_timeout: MAILBOX_TIMEOUT,
        link_wait: LINK_WAIT,
        mac: configured,
    };
    let link_up = device_byte & 1 == 0;
    let state = Arc::new(Mutex::new(DevState {
        admin_mac,
        enable_lag: match device_byte >> 5 {
            7 => u8::MAX,
            n => n,
        },
        ..DevState::default()
    }));
    state.lock().unwrap().set(
        STATUS,
        Status::FD | Status::SPEED_1000 | if link_up { Status::LU } else { 0 },
    );
    let budget = Arc::new(Budget::default());
    let dev = Arc::new(FuzzVf {
        bar: Arc::new(FuzzBar {
            state: state.clone(),
            budget: budget.clone(),
        }),
        state,
        dma: Mutex::new(Vec::new()),
        fail_alloc: (device_byte >> 2) & 7,
        allocs: Mutex::new(0),
        config: Mutex::new([0; 256]),
        config_broken: device_byte & 2 != 0,
        msix_supported: config_byte & 0x10 == 0,
        msix: Mutex::new(Vec::new()),
        request: (config_byte & 0x20 == 0).then(|| Arc::new(EventFd::new().expect("eventfd"))),
    });
    let clock = Arc::new(VirtualClock {
        now: Mutex::new(Instant::now()),
        call_started: Mutex::new(Instant::now()),
    });

    let mut app: Option<App> = None;
    let mut open_tried = false;
    for _ in 0..MAX_OPS {
        if r.0.is_empty() {
            break;
        }
        let op = r.u8() % OPS;
        if op < DEVICE_OPS {
            device_op(&dev, op, &mut r);
            continue;
        }
        if !open_tried {
            open_tried = true;
            app = open(&dev, &clock, &budget, config.clone());
        }
        let Some(app) = app.as_mut() else {
            // The open failed: nothing to drive.
            return;
        };
        start_call(&clock, &budget);
        driver_op(app, &dev, op, &mut r);
        start_call(&clock, &budget);
        app.check();
    }
    if !open_tried {
        app = open(&dev, &clock, &budget, config.clone());
    }
    let Some(mut app) = app else { return };
    finish(&mut app, &dev, &clock, &budget);
    let rx_pools = std::mem::take(&mut app.rx_pools);
    drop(app);
    for (i, pool) in rx_pools.iter().enumerate() {
        assert_eq!(
            pool.available(),
            pool.capacity(),
            "queue {i}: buffers leaked"
        );
    }
}

fn device_op(dev: &FuzzVf, op: u8, r: &mut Reader<'_>) {
    match op {
        0 => {
            // A lie on reads of one register (or every register).
            let selector = r.u8();
            let shape = r.u8();
            let value = match r.u32() {
                v if shape & 0x80 != 0 => v | ALL_ONES,
                v => v,
            };
            let q = queue_reg(usize::from(selector >> 7));
            let offset = match selector % 13 {
                0 => Some(STATUS),
                1 => Some(V2PMAILBOX),
                2 => vmbmem(0),
                3 => vmbmem(1),
                4 => vmbmem(2),
                5 => Some(rxdctl(q)),
                6 => Some(txdctl(q)),
                7 => Some(tdh(q)),
                8 => Some(rdh(q)),
                9 => Some(VFGPRC),
                10 => Some(VFGPTC),
                11 => Some(CTRL),
                _ => None,
            };
            dev.lock().glitches.push(Glitch {
                offset,
                skip: (shape >> 3) & 0xf,
                remaining: match shape & 7 {
                    0 => None,
                    n => Some(n),
                },
                value,
            });
        }
        1 => {
            let reply = Reply::decode(r);
            dev.lock().replies.push_back(reply);
        }
        2 => dev.lock().deny_vfu = r.u8() & 0x3f,
        3 => {
            let b = r.u8();
            let len = r.u16();
            dev.receive(usize::from(b & 1), (b >> 1) & 0xf, len);
        }
        4 => {
            // A forged RX write-back: any length, status and VLAN.
            let flags = r.u8();
            let length = r.u16();
            let mut status = r.u32();
            let vlan = r.u16();
            if flags & 2 != 0 {
                status |= rx_status::DD;
            }
            let mut bytes = [0u8; DESC_SIZE];
            bytes[8..12].copy_from_slice(&status.to_le_bytes());
            bytes[12..14].copy_from_slice(&length.to_le_bytes());
            bytes[14..16].copy_from_slice(&vlan.to_le_bytes());
            dev.forge(
                true,
                usize::from(flags & 1),
                flags >> 4,
                flags & 4 != 0,
                bytes,
            );
        }
        5 => {
            let flags = r.u8();
            let bytes = r.bytes::<DESC_SIZE>();
            let rx = flags & 8 != 0;
            dev.forge(
                rx,
                usize::from(flags & 1),
                flags >> 4,
                flags & 4 != 0,
                bytes,
            );
        }
        6 => {
            let b = r.u8();
            dev.transmit(usize::from(b & 1), b >> 1);
        }
        7 => {
            // A forged TX write-back anywhere in the ring.
            let flags = r.u8();
            let status = r.u32();
            let mut bytes = [0u8; DESC_SIZE];
            bytes[12..16].copy_from_slice(&status.to_le_bytes());
            dev.forge(
                false,
                usize::from(flags & 1),
                flags >> 4,
                flags & 4 != 0,
                bytes,
            );
        }
        8 => {
            let mut st = dev.lock();
            if !st.pf_in_reset {
                st.pf_in_reset = true;
                st.cts = false;
                st.stop_rings();
                let v2p = st.get(V2PMAILBOX);
                st.set(V2PMAILBOX, v2p | V2pMailbox::RSTI);
            }
        }
        9 => {
            let mut st = dev.lock();
            if st.pf_in_reset {
                st.pf_in_reset = false;
                let v2p = st.get(V2PMAILBOX);
                st.set(V2PMAILBOX, (v2p & !V2pMailbox::RSTI) | V2pMailbox::RSTD);
                st.pf_control(0);
            }
        }
        10 => {
            let up = r.u8() & 1 != 0;
            let mut st = dev.lock();
            let status = st.get(STATUS);
            if (status & Status::LU != 0) != up {
                st.set(STATUS, status ^ Status::LU);
                st.pf_control(0);
            }
        }
        11 => {
            let word = r.u32();
            let mut st = dev.lock();
            st.post(&[word], V2pMailbox::PFSTS);
            st.lied = true;
        }
        12 => dev.lock().removed = true,
        13 => {
            if let Some(request) = &dev.request {
                request.signal().expect("eventfd");
            }
        }
        _ => {
            let v = usize::from(r.u8());
            let msix = dev.msix.lock().unwrap();
            if !msix.is_empty() {
                msix[v % msix.len()].signal().expect("eventfd");
            }
        }
    }
}

fn driver_op(app: &mut App, dev: &FuzzVf, op: u8, r: &mut Reader<'_>) {
    let queues = app.queues.len();
    match op - DEVICE_OPS {
        0 => {
            let b = r.u8();
            app.rx_burst(
                dev,
                usize::from(b & 1) % queues,
                usize::from(b >> 2),
                b & 2 != 0,
            );
        }
        1 => {
            let b = r.u8();
            let len = r.u16();
            let count = (b >> 2) & 0x1f;
            app.tx_burst(usize::from(b & 1) % queues, count, len, b & 2 == 0);
        }
        2 => {
            let q = usize::from(r.u8()) % queues;
            app.queues[q].tx_pending();
        }
        3 => {
            let events = app.port.service(Duration::ZERO);
            if app.released {
                assert!(events.is_empty());
            }
            app.events(&events);
            if events.contains(&VfEvent::PfReset) || events.contains(&VfEvent::Removed) {
                for (i, q) in app.queues.iter_mut().enumerate() {
                    assert_eq!(
                        q.tx_pending(),
                        0,
                        "queue {i}: frames pending after {events:?}"
                    );
                }
            }
        }
        4 => {
            let timeout = Duration::from_micros(u64::from(r.u8()) * 50);
            app.port.stop(timeout).expect("stop does not fail");
            app.stopped = true;
        }
        5 => app.release(),
        6 => {
            let stats = app.port.stats();
            let total: u64 = app.taken.iter().sum();
            assert!(stats.tx_packets + stats.tx_lost <= total, "{stats:?}");
            // The hardware counters accumulate across wraps and resets: they never go down.
            let hw = (stats.hw_rx_packets, stats.hw_tx_packets);
            assert!(
                hw.0 >= app.hw.0 && hw.1 >= app.hw.1,
                "hardware counters went down: {:?} → {hw:?}",
                app.hw
            );
            app.hw = hw;
        }
        7 => {
            let n = r.u8() % 40;
            let groups: Vec<MacAddr> = (0..n).map(|i| MacAddr([0x01, 0, 0x5e, 0, 1, i])).collect();
            let _ = app.port.set_multicast(&groups);
        }
        _ => app.held.clear(),
    }
}

/// Services, stops and releases the port; everything is accounted for and given back.
fn finish(app: &mut App, dev: &FuzzVf, clock: &VirtualClock, budget: &Budget) {
    start_call(clock, budget);
    let events = app.port.service(Duration::ZERO);
    if !app.released {
        app.events(&events);
    }
    start_call(clock, budget);
    app.port.stop(MAILBOX_TIMEOUT).expect("stop does not fail");
    app.stopped = true;
    app.check();
    start_call(clock, budget);
    app.release();
    let st = dev.lock();
    assert!(st.released, "release did not release the device");
    let command = dev.config.lock().unwrap()[PCI_COMMAND];
    if !app.removed && !st.removed && !dev.config_broken {
        assert_eq!(command & PCI_COMMAND_MASTER, 0, "bus mastering left on");
    }
    drop(st);
    app.held.clear();
}

fuzz_target!(|data: &[u8]| run(data));
