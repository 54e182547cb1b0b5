//! The model driven through its registers, as a driver would, with the `vf::igbvf` helpers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use packet::{MacAddr, SharedMemory};
use vf::device::{ALL_ONES, EventFd, RegisterIo, VfDevice};
use vf::igbvf::descriptors::{
    AdvRxDescRead, AdvTxDataDesc, DESC_SIZE, RxChaining, RxWriteback, TxData, TxWriteback,
};
use vf::igbvf::mailbox::{
    Ack, MailboxAction, MailboxError, MailboxProtocol, MailboxWords, MessageType, PfMessage,
    Request, parse_ack, parse_pf_message, parse_reset_reply,
};
use vf::igbvf::regs::{self, Queue, Status, V2pMailbox, VMBMEM_WORDS, ctrl, srrctl_one_buffer};

use super::{SoftIgbvf, SoftIgbvfConfig, VfModelControl};
use crate::host::VfWire;

const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
/// Bound of every wait: generous, never part of an assertion.
const WAIT: Duration = Duration::from_secs(10);
const RING: u32 = 8;
const BUF: usize = 2048;

struct Vf {
    dev: Arc<SoftIgbvf>,
    ctl: VfModelControl,
    bar: Arc<dyn RegisterIo>,
    mbx: MailboxProtocol,
}

fn open() -> Vf {
    open_with(SoftIgbvfConfig::new(MacAddr(MAC)))
}

fn open_with(config: SoftIgbvfConfig) -> Vf {
    let (dev, ctl) = SoftIgbvf::new(config);
    let bar = dev.bar0();
    Vf {
        dev,
        ctl,
        bar,
        mbx: MailboxProtocol::new(u32::MAX),
    }
}

/// Polls `cond` until it holds or [`WAIT`] passes (a bounded wait on a condition).
fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::yield_now();
    }
    cond()
}

impl Vf {
    fn v2p(&self) -> u32 {
        self.bar.read32(regs::V2PMAILBOX)
    }

    /// Drives the mailbox protocol from `action` until the exchange ends.
    fn drive(&mut self, mut action: MailboxAction, msg: &[u32]) -> (MailboxAction, MailboxWords) {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "mailbox exchange never ended");
            action = match action {
                MailboxAction::ClaimBuffer => {
                    self.bar.write32(regs::V2PMAILBOX, V2pMailbox::VFU);
                    self.mbx.step(self.v2p())
                }
                MailboxAction::PostRequest => {
                    for (i, &word) in msg.iter().enumerate() {
                        self.bar.write32(regs::vmbmem(i).unwrap(), word);
                    }
                    self.bar.write32(regs::V2PMAILBOX, V2pMailbox::REQ);
                    self.mbx.step(self.v2p())
                }
                MailboxAction::Wait => {
                    std::thread::yield_now();
                    self.mbx.step(self.v2p())
                }
                MailboxAction::ReadMessage => {
                    let mut words = [0u32; VMBMEM_WORDS];
                    for (i, word) in words.iter_mut().enumerate() {
                        *word = self.bar.read32(regs::vmbmem(i).unwrap());
                    }
                    self.bar.write32(regs::V2PMAILBOX, V2pMailbox::ACK);
                    return (action, words);
                }
                done => return (done, [0; VMBMEM_WORDS]),
            };
        }
    }

    /// `CTRL.RST` and wait for the PF to finish it.
    fn vf_reset(&mut self) {
        self.bar.write32(regs::CTRL, ctrl::RST);
        let action = self.mbx.start_vf_reset();
        assert_eq!(self.drive(action, &[]).0, MailboxAction::ResetComplete);
    }

    /// Posts `req` and returns the PF's reply.
    fn request(&mut self, req: &Request) -> MailboxWords {
        let msg = req.encode().unwrap();
        let action = self.mbx.start_send(true);
        let (action, words) = self.drive(action, msg.as_words());
        assert_eq!(action, MailboxAction::ReadMessage);
        words
    }

    /// Waits for an unsolicited PF message and reads it.
    fn pf_message(&mut self) -> PfMessage {
        let mut action = MailboxAction::Idle;
        assert!(wait_for(|| {
            action = self.mbx.step(self.v2p());
            action != MailboxAction::Idle
        }));
        let (action, words) = self.drive(action, &[]);
        assert_eq!(action, MailboxAction::ReadMessage);
        parse_pf_message(words[0])
    }

    /// VF reset plus the `RESET` handshake; returns the MAC.
    fn bring_up(&mut self) -> [u8; 6] {
        self.vf_reset();
        self.bring_up_after_reset()
    }

    /// The `RESET` handshake after a VF reset; returns the MAC.
    fn bring_up_after_reset(&mut self) -> [u8; 6] {
        let reply = parse_reset_reply(&self.request(&Request::Reset)).unwrap();
        reply.mac.unwrap()
    }

    fn lpe(&mut self, size: u32) -> Result<Ack, MailboxError> {
        parse_ack(
            self.request(&Request::SetLpe(size))[0],
            MessageType::SET_LPE,
        )
    }
}

/// A DMA area for one ring and its buffers.
struct RingMem {
    ring: SharedMemory,
    bufs: SharedMemory,
}

impl RingMem {
    fn new(dev: &SoftIgbvf) -> Self {
        Self {
            ring: dev.dma_alloc(RING as usize * DESC_SIZE).unwrap(),
            bufs: dev.dma_alloc(RING as usize * BUF).unwrap(),
        }
    }

    fn desc(&self, i: u32) -> [u8; DESC_SIZE] {
        let mut bytes = [0; DESC_SIZE];
        self.ring.read(i as usize * DESC_SIZE, &mut bytes).unwrap();
        bytes
    }

    fn set_desc(&self, i: u32, bytes: &[u8; DESC_SIZE]) {
        self.ring.write(i as usize * DESC_SIZE, bytes).unwrap();
    }

    fn buf_addr(&self, i: u32) -> u64 {
        self.bufs.bus_addr(i as usize * BUF)
    }
}

fn frame(seed: u8, len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| seed.wrapping_add(i as u8)).collect();
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f
}

fn setup_tx(vf: &Vf, q: Queue) -> RingMem {
    let mem = RingMem::new(&vf.dev);
    let base = mem.ring.bus_addr(0);
    vf.bar.write32(regs::tdbal(q), base as u32);
    vf.bar.write32(regs::tdbah(q), (base >> 32) as u32);
    vf.bar.write32(regs::tdlen(q), RING * DESC_SIZE as u32);
    vf.bar.write32(regs::tdh(q), 0);
    vf.bar.write32(regs::tdt(q), 0);
    vf.bar.write32(regs::txdctl(q), regs::txdctl::ENABLE);
    mem
}

fn setup_rx(vf: &Vf, q: Queue, armed: u32) -> RingMem {
    let mem = RingMem::new(&vf.dev);
    for i in 0..RING {
        mem.set_desc(i, &AdvRxDescRead::one_buffer(mem.buf_addr(i)).to_bytes());
    }
    let base = mem.ring.bus_addr(0);
    vf.bar.write32(regs::rdbal(q), base as u32);
    vf.bar.write32(regs::rdbah(q), (base >> 32) as u32);
    vf.bar.write32(regs::rdlen(q), RING * DESC_SIZE as u32);
    vf.bar
        .write32(regs::srrctl(q), srrctl_one_buffer(BUF, true).unwrap());
    vf.bar.write32(regs::rdh(q), 0);
    vf.bar.write32(regs::rdt(q), 0);
    vf.bar.write32(regs::rxdctl(q), regs::rxdctl::ENABLE);
    assert_ne!(vf.bar.read32(regs::rxdctl(q)) & regs::rxdctl::ENABLE, 0);
    vf.bar.write32(regs::rdt(q), armed);
    mem
}

/// Posts `frames` on TX queue `q` from descriptor `start`; returns the new tail.
fn post_tx(vf: &Vf, mem: &RingMem, q: Queue, start: u32, frames: &[Vec<u8>]) -> u32 {
    let mut tail = start;
    for f in frames {
        mem.bufs.write(tail as usize * BUF, f).unwrap();
        let desc = AdvTxDataDesc::single(mem.buf_addr(tail), f.len() as u16).unwrap();
        mem.set_desc(tail, &desc.to_bytes());
        tail = (tail + 1) % RING;
    }
    vf.bar.write32(regs::tdt(q), tail);
    tail
}

#[test]
fn reset_handshake_returns_the_mac_and_the_pf_nacks_before_it() {
    let mut vf = open();
    assert_eq!(
        vf.lpe(1518),
        Err(MailboxError::Nacked {
            msg_type: MessageType::SET_LPE,
            cts: false
        }),
        "no requests before the reset handshake"
    );
    assert_eq!(vf.bring_up(), MAC);
    assert_eq!(vf.lpe(9018), Ok(Ack { cts: true }));
    let pf = vf.ctl.pf_state();
    assert!(pf.cts && pf.vf_enabled);
    assert_eq!(pf.max_frame, 9018);
    let stats = vf.ctl.stats().mailbox;
    assert_eq!((stats.reset, stats.set_lpe), (1, 2));
    assert_eq!(vf.ctl.stats().vf_resets, 1);
}

#[test]
fn set_mac_addr_is_acked_only_for_the_assigned_mac() {
    let mut vf = open();
    vf.bring_up();
    let other = [0x02, 9, 9, 9, 9, 9];
    let reply = vf.request(&Request::SetMacAddr(other));
    assert_eq!(
        parse_ack(reply[0], MessageType::SET_MAC_ADDR),
        Err(MailboxError::Nacked {
            msg_type: MessageType::SET_MAC_ADDR,
            cts: true
        })
    );
    let reply = vf.request(&Request::SetMacAddr(MAC));
    assert_eq!(
        parse_ack(reply[0], MessageType::SET_MAC_ADDR),
        Ok(Ack { cts: true })
    );
    let reply = vf.request(&Request::SetVlan { vid: 5, add: true });
    assert!(parse_ack(reply[0], MessageType::SET_VLAN).is_ok());
    let reply = vf.request(&Request::SetMulticast(vec![0x123]));
    assert!(parse_ack(reply[0], MessageType::SET_MULTICAST).is_ok());
    let pf = vf.ctl.pf_state();
    assert!(pf.vlans.contains(&5));
    assert_eq!(pf.multicast, vec![0x123]);
}

#[test]
fn without_an_admin_mac_reset_is_nacked_and_the_vf_mac_accepted() {
    let mut vf = open_with(SoftIgbvfConfig::new(MacAddr([0; 6])));
    vf.vf_reset();
    let reply = parse_reset_reply(&vf.request(&Request::Reset)).unwrap();
    assert_eq!(reply.mac, None);
    let reply = vf.request(&Request::SetMacAddr(MAC));
    assert!(parse_ack(reply[0], MessageType::SET_MAC_ADDR).is_ok());
    assert_eq!(vf.ctl.pf_state().mac, MAC);
}

#[test]
fn tx_ring_puts_frames_on_the_wire_writes_dd_and_wraps() {
    let mut vf = open();
    vf.bring_up();
    let q = Queue::Q1;
    let mem = setup_tx(&vf, q);
    let mut tail = 0;
    let mut seed = 0u8;
    // 5 + 6 + 4 frames through an 8-descriptor ring: it wraps twice.
    for batch in [5usize, 6, 4] {
        let frames: Vec<Vec<u8>> = (0..batch)
            .map(|i| {
                seed += 1;
                frame(seed, 60 + i * 7)
            })
            .collect();
        let start = tail;
        tail = post_tx(&vf, &mem, q, tail, &frames);
        for f in &frames {
            let (queue, got) = vf.ctl.recv_frame(WAIT).expect("frame on the wire");
            assert_eq!(queue, 1);
            assert_eq!(&got, f);
        }
        assert!(wait_for(|| vf.bar.read32(regs::tdh(q)) == tail));
        for i in 0..batch as u32 {
            assert!(TxWriteback::is_done(&mem.desc((start + i) % RING)));
        }
    }
    assert_eq!(vf.bar.read32(regs::VFGPTC), 15);
    let stats = vf.ctl.stats();
    assert_eq!(stats.tx_frames, 15);
    assert_eq!(stats.device_errors, 0);
}

#[test]
fn tx_frame_over_two_descriptors_waits_for_eop() {
    let mut vf = open();
    vf.bring_up();
    let q = Queue::Q0;
    let mem = setup_tx(&vf, q);
    let f = frame(7, 100);
    mem.bufs.write(0, &f[..40]).unwrap();
    mem.bufs.write(BUF, &f[40..]).unwrap();
    let first = TxData {
        buffer_addr: mem.buf_addr(0),
        length: 40,
        eop: false,
        report_status: false,
        paylen: 100,
    };
    mem.set_desc(0, &AdvTxDataDesc::new(&first).unwrap().to_bytes());
    vf.bar.write32(regs::tdt(q), 1);
    let last = AdvTxDataDesc::single(mem.buf_addr(1), 60).unwrap();
    mem.set_desc(1, &last.to_bytes());
    vf.bar.write32(regs::tdt(q), 2);
    let (_, got) = vf.ctl.recv_frame(WAIT).unwrap();
    assert_eq!(got, f);
    assert!(wait_for(|| vf.bar.read32(regs::tdh(q)) == 2));
    assert!(TxWriteback::is_done(&mem.desc(1)));
    assert_eq!(vf.ctl.stats().tx_frames, 1);
}

#[test]
fn tx_buffer_outside_dma_memory_is_a_device_error_that_stops_the_queue() {
    let mut vf = open();
    vf.bring_up();
    let q = Queue::Q0;
    let mem = setup_tx(&vf, q);
    let desc = AdvTxDataDesc::single(1 << 40, 60).unwrap();
    mem.set_desc(0, &desc.to_bytes());
    vf.bar.write32(regs::tdt(q), 1);
    let stats = vf
        .ctl
        .wait_for_stats(WAIT, |s| s.device_errors == 1)
        .unwrap();
    assert!(stats.last_device_error.unwrap().starts_with("tx queue 0"));
    assert_eq!(vf.bar.read32(regs::tdh(q)), 0, "head did not move");
    // A later good frame stays queued: the queue is stopped.
    post_tx(&vf, &mem, q, 1, &[frame(1, 60)]);
    assert_eq!(vf.ctl.recv_frame(Duration::from_millis(50)), None);
}

#[test]
fn tx_tail_beyond_the_ring_is_a_device_error() {
    let mut vf = open();
    vf.bring_up();
    let _mem = setup_tx(&vf, Queue::Q0);
    vf.bar.write32(regs::tdt(Queue::Q0), RING + 3);
    let stats = vf
        .ctl
        .wait_for_stats(WAIT, |s| s.device_errors == 1)
        .unwrap();
    assert_eq!(stats.tx_frames, 0);
}

#[test]
fn rx_ring_fills_posted_buffers_and_counts_drops() {
    let mut vf = open();
    vf.bring_up();
    let irqs = vf.dev.enable_msix(3).unwrap();
    vf.bar.write32(
        regs::IVAR0,
        regs::ivar0(Some(0), Some(1), None, None).unwrap(),
    );
    vf.bar.write32(regs::EIMS, 0b111);
    let q = Queue::Q0;
    let mem = setup_rx(&vf, q, RING - 1);
    let frames: Vec<Vec<u8>> = (0..RING as u8)
        .map(|i| frame(i, 64 + usize::from(i)))
        .collect();
    for f in &frames {
        vf.ctl.inject(0, f);
    }
    let stats = vf
        .ctl
        .wait_for_stats(WAIT, |s| {
            s.rx_frames + s.rx_no_descriptor == u64::from(RING)
        })
        .unwrap();
    assert_eq!(stats.rx_frames, u64::from(RING - 1));
    assert_eq!(
        stats.rx_no_descriptor, 1,
        "the last frame found no descriptor"
    );
    assert_eq!(vf.bar.read32(regs::rdh(q)), RING - 1);
    for (i, f) in frames.iter().take(RING as usize - 1).enumerate() {
        let c = RxWriteback::parse(&mem.desc(i as u32), BUF, RxChaining::SingleDescriptor)
            .unwrap()
            .expect("descriptor done");
        assert_eq!(usize::from(c.length), f.len());
        assert!(c.eop && c.vlan.is_none());
        let mut got = vec![0; f.len()];
        mem.bufs.read(i * BUF, &mut got).unwrap();
        assert_eq!(&got, f);
    }
    assert_eq!(vf.bar.read32(regs::VFGPRC), RING - 1);
    assert!(irqs[0].wait(WAIT).unwrap().is_some(), "rx vector signalled");
    // Re-arm descriptors 7 and 0..2 (wraparound) and receive again.
    for i in [RING - 1, 0, 1] {
        mem.set_desc(i, &AdvRxDescRead::one_buffer(mem.buf_addr(i)).to_bytes());
    }
    vf.bar.write32(regs::rdt(q), 2);
    for f in frames.iter().take(3) {
        vf.ctl.inject(0, f);
    }
    let stats = vf.ctl.wait_for_stats(WAIT, |s| {
        s.rx_frames + s.rx_no_descriptor == u64::from(RING + 3)
    });
    assert_eq!(
        stats.map(|s| s.rx_frames),
        Some(u64::from(RING + 2)),
        "{:?}",
        vf.ctl.stats()
    );
    assert_eq!(vf.bar.read32(regs::rdh(q)), 2);
    // Longer than the 2 KiB buffer: dropped, not chained; the descriptor stays posted.
    mem.set_desc(2, &AdvRxDescRead::one_buffer(mem.buf_addr(2)).to_bytes());
    vf.bar.write32(regs::rdt(q), 3);
    vf.ctl.inject(0, &frame(1, BUF + 1));
    vf.ctl.wait_for_stats(WAIT, |s| s.rx_oversize == 1).unwrap();
    assert_eq!(vf.bar.read32(regs::rdh(q)), 2);
}

#[test]
fn bad_writeback_reports_a_length_beyond_the_buffer() {
    let mut vf = open();
    vf.bring_up();
    let mem = setup_rx(&vf, Queue::Q1, 4);
    vf.ctl.inject_bad_writeback(1);
    vf.ctl.inject(1, &frame(3, 100));
    vf.ctl.inject(1, &frame(4, 100));
    vf.ctl.wait_for_stats(WAIT, |s| s.rx_frames == 2).unwrap();
    assert_eq!(
        RxWriteback::parse(&mem.desc(0), BUF, RxChaining::SingleDescriptor),
        Err(
            vf::igbvf::descriptors::DescriptorError::LengthExceedsBuffer {
                length: BUF as u16 + 1,
                buffer_size: BUF
            }
        )
    );
    let good = RxWriteback::parse(&mem.desc(1), BUF, RxChaining::SingleDescriptor);
    assert_eq!(
        good.unwrap().unwrap().length,
        100,
        "only the next write-back"
    );
    assert_eq!(vf.ctl.stats().bad_writebacks, 1);
}

#[test]
fn pf_reset_shows_rsti_then_rstd_and_nacks_until_the_vf_resets() {
    let mut vf = open();
    vf.bring_up();
    let _mem = setup_rx(&vf, Queue::Q0, 4);
    vf.ctl.pf_reset_begin();
    assert!(V2pMailbox(vf.v2p()).contains(V2pMailbox::RSTI));
    assert_eq!(
        vf.bar.read32(regs::rxdctl(Queue::Q0)) & regs::rxdctl::ENABLE,
        0
    );
    vf.ctl.inject(0, &frame(1, 60));
    vf.ctl
        .wait_for_stats(WAIT, |s| s.rx_dropped_reset == 1)
        .unwrap();
    vf.ctl.pf_reset_end();
    vf.ctl
        .wait_for_stats(WAIT, |s| s.mailbox.pf_control == 1)
        .unwrap();
    let first = V2pMailbox(vf.v2p());
    assert!(first.contains(V2pMailbox::RSTD | V2pMailbox::PFSTS));
    assert!(!first.contains(V2pMailbox::RSTI));
    assert!(
        !V2pMailbox(vf.v2p()).intersects(V2pMailbox::R2C_BITS),
        "read to clear"
    );
    // Read the PF_CONTROL_MSG by hand (the protocol never saw those reads) and acknowledge it.
    vf.bar.write32(regs::V2PMAILBOX, V2pMailbox::VFU);
    assert!(V2pMailbox(vf.v2p()).contains(V2pMailbox::VFU));
    let word0 = vf.bar.read32(regs::vmbmem(0).unwrap());
    assert_eq!(parse_pf_message(word0), PfMessage::Control { cts: false });
    vf.bar.write32(regs::V2PMAILBOX, V2pMailbox::ACK);
    // The acknowledgement is answered with a bare NACK: the VF must reset.
    assert!(matches!(vf.pf_message(), PfMessage::Nack { .. }));
    assert_eq!(
        vf.lpe(1518),
        Err(MailboxError::Nacked {
            msg_type: MessageType::SET_LPE,
            cts: false
        })
    );
    assert_eq!(vf.bring_up(), MAC);
    assert_eq!(vf.lpe(1518), Ok(Ack { cts: true }));
    let stats = vf.ctl.stats();
    assert_eq!(stats.pf_resets, 1);
    assert_eq!((stats.mailbox.pf_control, stats.mailbox.pf_nack), (1, 1));
}

#[test]
fn link_follows_status_and_is_announced() {
    let mut vf = open();
    vf.bring_up();
    assert!(Status(vf.bar.read32(regs::STATUS)).link_up());
    vf.ctl.set_link(false);
    assert!(!Status(vf.bar.read32(regs::STATUS)).link_up());
    assert_eq!(vf.pf_message(), PfMessage::Control { cts: true });
}

#[test]
fn eicr_is_read_to_clear_and_eics_signals_unmasked_vectors() {
    let vf = open();
    let irqs = vf.dev.enable_msix(3).unwrap();
    vf.bar.write32(regs::EICS, 0b100);
    assert_eq!(irqs[2].try_consume().unwrap(), None, "masked");
    vf.bar.write32(regs::EIMS, 0b100);
    assert_eq!(
        irqs[2].try_consume().unwrap(),
        Some(1),
        "pending cause fires on unmask"
    );
    assert_eq!(vf.bar.read32(regs::EICR), 0b100);
    assert_eq!(vf.bar.read32(regs::EICR), 0);
}

#[test]
fn room_is_the_posted_descriptors_no_frame_is_headed_for() {
    let mut vf = open();
    vf.bring_up();
    let _mem = setup_rx(&vf, Queue::Q0, 4);
    assert_eq!(vf.ctl.room(0), 4);
    assert_eq!(vf.ctl.room(1), 0, "queue 1 is not enabled");
    vf.ctl.inject(0, &frame(1, 60));
    vf.ctl.wait_for_stats(WAIT, |s| s.rx_frames == 1).unwrap();
    assert_eq!(vf.ctl.room(0), 3, "one descriptor used");
    vf.ctl.set_link(false);
    assert_eq!(vf.ctl.room(0), 0, "nothing is taken while the link is down");
    assert!(!vf.ctl.deliver(0, &frame(2, 60)));
    let stats = vf.ctl.stats();
    assert_eq!(
        (stats.rx_refused, stats.rx_dropped_link_down),
        (1, 0),
        "a refusal is counted as one, not as a drop"
    );
    vf.ctl.set_link(true);
    assert_eq!(vf.ctl.room(0), 3);
    vf.ctl.surprise_remove();
    assert_eq!(vf.ctl.room(0), 0, "a device that is gone takes nothing");
}

#[test]
fn surprise_remove_reads_all_ones_and_stops_dma() {
    let mut vf = open();
    vf.bring_up();
    let _mem = setup_rx(&vf, Queue::Q0, 4);
    vf.ctl.surprise_remove();
    assert!(!vf.dev.is_present());
    for offset in [
        regs::CTRL,
        regs::STATUS,
        regs::V2PMAILBOX,
        regs::rdh(Queue::Q0),
    ] {
        assert_eq!(vf.bar.read32(offset), ALL_ONES);
    }
    assert_eq!(vf.dev.config_read16(0).unwrap(), 0xFFFF);
    vf.ctl.inject(0, &frame(1, 60));
    let stats = vf
        .ctl
        .wait_for_stats(WAIT, |s| s.rx_dropped_gone == 1)
        .unwrap();
    assert_eq!(stats.rx_frames, 0);
    assert_eq!(stats.rx_dropped_disabled, 0, "counted by its reason only");
}

#[test]
fn request_release_signals_the_request_eventfd_and_sees_the_release() {
    let vf = open();
    let request: Arc<EventFd> = vf.dev.request_irq().unwrap();
    assert!(!vf.ctl.released());
    vf.ctl.request_release();
    assert_eq!(request.wait(WAIT).unwrap(), Some(1));
    vf.dev.release().unwrap();
    assert!(vf.ctl.released_within(WAIT));
    assert_eq!(vf.bar.read32(regs::CTRL), ALL_ONES);
    assert!(matches!(
        vf.dev.dma_alloc(4096),
        Err(vf::device::DeviceError::Closed { .. })
    ));
}

#[test]
fn dma_allocations_have_memfd_offsets_as_bus_addresses() {
    let vf = open();
    let a = vf.dev.dma_alloc(100).unwrap();
    let b = vf.dev.dma_alloc(4096).unwrap();
    assert_eq!(a.bus_addr(0), 4096, "bus address 0 is never handed out");
    assert_eq!(b.bus_addr(0), 8192);
    assert_eq!(vf.dev.config_read16(0).unwrap(), 0x8086);
    assert_eq!(vf.dev.config_read16(2).unwrap(), 0x10CA);
}

/// One step a driver (or a broken one) might take.
#[derive(Clone, Debug)]
enum Action {
    Write(u32, u32),
    Read(u32),
    Dma(usize, Vec<u8>),
    Inject(u16, usize),
    PfReset,
    Link(bool),
}

fn action() -> impl proptest::strategy::Strategy<Value = Action> {
    use proptest::prelude::*;
    let offsets = prop_oneof![
        Just(regs::CTRL),
        Just(regs::V2PMAILBOX),
        Just(regs::EIMS),
        Just(regs::EICS),
        Just(regs::IVAR0),
        (0..VMBMEM_WORDS).prop_map(|w| regs::vmbmem(w).unwrap()),
        (0u8..2, 0u32..16).prop_map(|(q, r)| regs::rdbal(Queue::new(q).unwrap()) + 4 * r),
        (0u8..2, 0u32..16).prop_map(|(q, r)| regs::tdbal(Queue::new(q).unwrap()) + 4 * r),
        any::<u32>(),
    ];
    prop_oneof![
        4 => (offsets.clone(), prop_oneof![any::<u32>(), 0u32..0x4000, Just(regs::rxdctl::ENABLE)])
            .prop_map(|(o, v)| Action::Write(o, v)),
        1 => offsets.prop_map(Action::Read),
        2 => (0usize..0x8000, proptest::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(o, b)| Action::Dma(o, b)),
        2 => (0u16..3, 0usize..3000).prop_map(|(q, l)| Action::Inject(q, l)),
        1 => Just(Action::PfReset),
        1 => any::<bool>().prop_map(Action::Link),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever a driver writes to the registers and DMA memory, the model neither panics nor
    /// stops serving: the DMA thread still drains injected frames and registers still answer.
    #[test]
    fn arbitrary_action_sequences_never_break_the_model(
        actions in proptest::collection::vec(action(), 1..80),
    ) {
        let mut vf = open();
        vf.bring_up();
        let dma = vf.dev.dma_alloc(0x8000).unwrap();
        for a in actions {
            match a {
                Action::Write(o, v) => vf.bar.write32(o, v),
                Action::Read(o) => {
                    vf.bar.read32(o);
                }
                Action::Dma(o, b) => {
                    let _ = dma.write(o, &b);
                }
                Action::Inject(q, len) => vf.ctl.inject(q, &vec![0xA5; len]),
                Action::PfReset => vf.ctl.pf_reset(),
                Action::Link(up) => vf.ctl.set_link(up),
            }
        }
        proptest::prop_assert!(vf.ctl.wait_rx_drained(WAIT));
        proptest::prop_assert_ne!(vf.bar.read32(regs::CTRL), ALL_ONES);
    }
}

#[test]
fn mailbox_replies_raise_the_ivar_misc_vector() {
    let mut vf = open();
    let irqs = vf.dev.enable_msix(3).unwrap();
    vf.bar.write32(regs::EIMC, ALL_ONES);
    vf.vf_reset();
    // The reset cleared the interrupt setup: program it as a driver does after CTRL.RST.
    vf.bar.write32(regs::IVAR_MISC, regs::ivar_misc(2).unwrap());
    vf.bar.write32(regs::EIAC, 0b100);
    vf.bar.write32(regs::EIMS, 0b100);
    assert_eq!(vf.bring_up_after_reset(), MAC);
    assert!(
        irqs[2].wait(WAIT).unwrap().is_some(),
        "mailbox vector signalled"
    );
    assert_eq!(irqs[0].try_consume().unwrap(), None);
    assert_eq!(irqs[1].try_consume().unwrap(), None);
}

#[test]
fn tx_waits_until_the_pf_enables_the_vf() {
    let mut vf = open();
    vf.vf_reset();
    let q = Queue::Q0;
    let mem = setup_tx(&vf, q);
    post_tx(&vf, &mem, q, 0, &[frame(9, 60)]);
    assert_eq!(vf.ctl.recv_frame(Duration::from_millis(20)), None);
    assert_eq!(vf.bar.read32(regs::tdh(q)), 0);
    vf.bring_up_after_reset();
    let (_, got) = vf.ctl.recv_frame(WAIT).expect("sent once enabled");
    assert_eq!(got, frame(9, 60));
}

// --- Guest memory and the uplink ------------------------------------------------------------

/// An uplink that records frames and whether the frame's TX descriptor was already done
/// when the frame arrived.
#[derive(Debug, Default)]
struct RecordingSink {
    ring: parking_lot::Mutex<Option<SharedMemory>>,
    frames: parking_lot::Mutex<Vec<(u16, Vec<u8>, bool)>>,
}

impl super::FrameSink for RecordingSink {
    fn transmit(&self, queue: u16, frame: &[u8]) {
        let mut frames = self.frames.lock();
        let index = frames.len();
        let done = self.ring.lock().as_ref().is_some_and(|ring| {
            let mut desc = [0u8; DESC_SIZE];
            ring.read(index % RING as usize * DESC_SIZE, &mut desc)
                .unwrap();
            TxWriteback::is_done(&desc)
        });
        frames.push((queue, frame.to_vec(), done));
    }
}

const GUEST_BASE: u64 = 0x4000_0000;

fn guest_dma(window_offset: usize, window_len: usize) -> super::GuestDma {
    let memory = SharedMemory::memfd("guest", 1 << 20)
        .unwrap()
        .with_bus_base(GUEST_BASE);
    let window = memory.subregion(window_offset, window_len).unwrap();
    super::GuestDma { memory, window }
}

#[test]
fn a_function_on_guest_memory_dmas_there_and_transmits_to_the_uplink_before_dd() {
    let dma = guest_dma(256 << 10, 256 << 10);
    let memory = dma.memory.clone();
    let sink = Arc::new(RecordingSink::default());
    let mut vf = open_with(SoftIgbvfConfig {
        guest_memory: Some(dma),
        uplink: Some(sink.clone()),
        ..SoftIgbvfConfig::new(MacAddr(MAC))
    });
    vf.bring_up();
    // Allocations come out of the window, with the guest's bus addresses.
    let probe = vf.dev.dma_alloc(100).unwrap();
    assert_eq!(probe.bus_addr(0), GUEST_BASE + (256 << 10));
    probe.write(0, &[0x5a]).unwrap();
    let mut byte = [0u8];
    memory.read(256 << 10, &mut byte).unwrap();
    assert_eq!(byte, [0x5a]);

    // TX: descriptors and buffers read from guest memory, frames to the uplink before DD.
    let q = Queue::Q0;
    let tx = setup_tx(&vf, q);
    *sink.ring.lock() = Some(tx.ring.clone());
    let frames: Vec<Vec<u8>> = (0..3).map(|i| frame(i, 60 + usize::from(i))).collect();
    let tail = post_tx(&vf, &tx, q, 0, &frames);
    assert!(wait_for(|| vf.bar.read32(regs::tdh(q)) == tail));
    let sent = sink.frames.lock().clone();
    let expected: Vec<(u16, Vec<u8>, bool)> =
        frames.iter().map(|f| (0, f.clone(), false)).collect();
    assert_eq!(
        sent, expected,
        "each frame reached the uplink before its DD"
    );
    for i in 0..tail {
        assert!(TxWriteback::is_done(&tx.desc(i)));
    }
    assert_eq!(
        vf.ctl.recv_frame(Duration::ZERO),
        None,
        "nothing on the in-memory wire"
    );

    // RX through the vSwitch's view: the frames land in guest memory.
    assert_eq!(vf.ctl.queues(), 2);
    let rx = setup_rx(&vf, Queue::Q1, RING - 1);
    let incoming = [frame(0x40, 70), frame(0x41, 80)];
    for f in &incoming {
        assert!(vf.ctl.deliver(1, f));
    }
    assert!(vf.ctl.flush(WAIT));
    assert_eq!(vf.ctl.stats().rx_frames, 2);
    for (i, f) in incoming.iter().enumerate() {
        let offset = (rx.buf_addr(i as u32) - GUEST_BASE) as usize;
        let mut got = vec![0u8; f.len()];
        memory.read(offset, &mut got).unwrap();
        assert_eq!(&got, f);
    }

    // A buffer below the guest memory's first bus address is outside DMA memory.
    let q1 = Queue::Q1;
    let bad = setup_tx(&vf, q1);
    let desc = AdvTxDataDesc::single(0x1000, 60).unwrap();
    bad.set_desc(0, &desc.to_bytes());
    vf.bar.write32(regs::tdt(q1), 1);
    vf.ctl
        .wait_for_stats(WAIT, |s| s.device_errors == 1)
        .unwrap();

    // A released function refuses what the switch delivers, counted.
    vf.dev.release().unwrap();
    let before = vf.ctl.stats();
    assert!(!vf.ctl.deliver(0, &frame(1, 60)));
    let after = vf.ctl.stats();
    assert_eq!(after.rx_refused, before.rx_refused + 1);
    assert_eq!(after.rx_dropped_disabled, before.rx_dropped_disabled);
    assert!(vf.ctl.flush(WAIT));
}

#[test]
fn a_guest_dma_window_hands_out_page_aligned_allocations_until_full() {
    // A window starting mid-page: the first allocation is at the next page.
    let vf = open_with(SoftIgbvfConfig {
        guest_memory: Some(guest_dma(0x1800, 3 * 4096)),
        ..SoftIgbvfConfig::new(MacAddr(MAC))
    });
    assert_eq!(
        vf.dev.dma_alloc(10).unwrap().bus_addr(0),
        GUEST_BASE + 0x2000
    );
    assert_eq!(
        vf.dev.dma_alloc(4096).unwrap().bus_addr(0),
        GUEST_BASE + 0x3000
    );
    assert!(matches!(
        vf.dev.dma_alloc(4096),
        Err(vf::device::DeviceError::IovaExhausted { .. })
    ));
    // Bus address 0 is never handed out.
    let memory = SharedMemory::memfd("guest", 1 << 16).unwrap();
    let window = memory.clone();
    let vf = open_with(SoftIgbvfConfig {
        guest_memory: Some(super::GuestDma { memory, window }),
        ..SoftIgbvfConfig::new(MacAddr(MAC))
    });
    assert_eq!(vf.dev.dma_alloc(10).unwrap().bus_addr(0), 4096);
    // A window outside the memory is refused.
    let dma = guest_dma(0, 4096);
    let other = SharedMemory::memfd("other", 4096).unwrap();
    assert!(
        SoftIgbvf::try_new(SoftIgbvfConfig {
            guest_memory: Some(super::GuestDma {
                memory: dma.memory,
                window: other,
            }),
            ..SoftIgbvfConfig::new(MacAddr(MAC))
        })
        .is_err()
    );
}

#[test]
fn a_function_on_the_simulated_hosts_memory_transmits_through_the_vswitch() {
    use crate::host::{HostConfig, SimHost};
    let (host, _device) = SimHost::start(HostConfig {
        shm: netvsc::vmbus::shm::ShmConfig {
            dma_size: 1 << 20,
            ..Default::default()
        },
        ..HostConfig::default()
    })
    .unwrap();
    let memory = host.guest_memory();
    let layout = host.host_side().layout().clone();
    let window = memory
        .subregion(layout.dma_offset, layout.dma_size)
        .unwrap();
    let mut vf = open_with(SoftIgbvfConfig {
        guest_memory: Some(super::GuestDma { memory, window }),
        uplink: Some(Arc::new(host.vf_uplink())),
        ..SoftIgbvfConfig::new(MacAddr(MAC))
    });
    host.attach_vf_wire(Arc::new(vf.ctl.clone()));
    vf.bring_up();
    let q = Queue::Q1;
    let tx = setup_tx(&vf, q);
    assert!(tx.ring.bus_addr(0) >= layout.dma_offset as u64);
    let frames: Vec<Vec<u8>> = (0..4).map(|i| frame(i, 64)).collect();
    post_tx(&vf, &tx, q, 0, &frames);
    for f in &frames {
        let mut got = None;
        assert!(wait_for(|| {
            got = host.external().try_recv();
            got.is_some()
        }));
        assert_eq!(got, Some((1, f.clone())));
    }
    assert_eq!(host.stats().tx_from_vf, 4);
    host.detach_vf_wire();
}
