//! Tests of the driver against a small scripted register fake ([`fake`]): the fake's PF
//! answers mailbox requests as Linux igb does, and the tests play the device's DMA side by
//! writing write-backs into ring memory by hand.

mod fake;

use std::sync::Arc;
use std::time::Duration;

use packet::{MacAddr, Packet, Pool, PortQueue, SharedMemory};

use super::{Igbvf, IgbvfConfig, IgbvfError, IgbvfQueue};
use crate::igbvf::descriptors::{
    AdvRxDescRead, AdvRxDescWb, AdvTxDataDesc, DESC_SIZE, RxChecksum, RxCompletion, TxWriteback,
    rx_status,
};
use crate::igbvf::mailbox::Request;
use crate::igbvf::regs::{
    CTRL, EIMC, EIMS, IVAR_MISC, IVAR0, Queue, STATUS, Status, V2PMAILBOX, V2pMailbox, ctrl, rdbah,
    rdbal, rdlen, rdt, rxdctl, srrctl, tdbah, tdbal, tdlen, tdt, txdctl, vmbmem,
};
use crate::port::{VfEvent, VfPort};
use fake::{FakeVf, MAC, TestClock};

const Q0: Queue = Queue::Q0;
const OWN_MAC: MacAddr = MacAddr([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0x01]);

fn open_with(config: IgbvfConfig, msix: bool) -> (Arc<FakeVf>, Igbvf, Vec<IgbvfQueue>) {
    let dev = FakeVf::new(msix);
    dev.set_reg(STATUS, Status::LU | Status::FD | Status::SPEED_1000);
    let (port, queues) = Igbvf::open_with_clock(dev.clone(), config, TestClock::new()).unwrap();
    (dev, port, queues)
}

fn open() -> (Arc<FakeVf>, Igbvf, Vec<IgbvfQueue>) {
    open_with(IgbvfConfig::default(), true)
}

fn ring_base(dev: &FakeVf, lo: u32, hi: u32) -> u64 {
    u64::from(dev.reg(lo)) | u64::from(dev.reg(hi)) << 32
}

fn rx_ring(dev: &FakeVf) -> SharedMemory {
    let base = ring_base(dev, rdbal(Q0), rdbah(Q0));
    dev.mem_at(base, dev.reg(rdlen(Q0)) as usize)
}

fn tx_ring(dev: &FakeVf) -> SharedMemory {
    let base = ring_base(dev, tdbal(Q0), tdbah(Q0));
    dev.mem_at(base, dev.reg(tdlen(Q0)) as usize)
}

fn read_desc(ring: &SharedMemory, i: usize) -> [u8; DESC_SIZE] {
    let mut bytes = [0; DESC_SIZE];
    ring.read(i * DESC_SIZE, &mut bytes).unwrap();
    bytes
}

fn posted_rx_addr(ring: &SharedMemory, i: usize) -> u64 {
    let desc: AdvRxDescRead = zerocopy::transmute!(read_desc(ring, i));
    desc.pkt_addr.get()
}

/// Plays the device: writes `frame` into the buffer posted in slot `i`, then the write-back.
fn device_receive(dev: &FakeVf, i: usize, frame: &[u8]) {
    let ring = rx_ring(dev);
    let addr = posted_rx_addr(&ring, i);
    dev.mem_at(addr, frame.len()).write(0, frame).unwrap();
    write_rx_wb(&ring, i, frame.len() as u16, rx_status::EOP);
}

fn write_rx_wb(ring: &SharedMemory, i: usize, length: u16, status: u32) {
    let wb: AdvRxDescWb = RxCompletion {
        length,
        eop: true,
        vlan: None,
        frame_error: false,
        checksum: RxChecksum::NotChecked,
        loopback: false,
        pkt_info: 0,
        rss: 0,
        status_error: status,
    }
    .write_back();
    ring.write(i * DESC_SIZE, &wb.to_bytes()).unwrap();
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

/// A pool in memory the device can reach (its own DMA memory), as a caller's would be.
fn tx_pool(dev: &FakeVf) -> Pool {
    Pool::new(
        crate::device::VfDevice::dma_alloc(dev, 64 * 2048).unwrap(),
        2048,
    )
    .unwrap()
}

#[test]
fn open_resets_adopts_the_pf_mac_and_points_rings_at_dma_memory() {
    let (dev, port, queues) = open();
    assert!(dev.wrote(CTRL, ctrl::RST));
    assert_eq!(dev.requests(), vec![Request::Reset], "no LPE at mtu 1500");
    assert_eq!(port.mac().0, MAC);
    assert!(port.link_up());
    assert_eq!(port.queue_count(), 1);
    assert_eq!(queues.len(), 1);

    let rx_base = ring_base(&dev, rdbal(Q0), rdbah(Q0));
    let tx_base = ring_base(&dev, tdbal(Q0), tdbah(Q0));
    assert_eq!(rx_base % 128, 0);
    assert_eq!(tx_base % 128, 0);
    assert!(rx_base >> 32 != 0, "high half programmed");
    assert_eq!(dev.reg(rdlen(Q0)), 256 * 16);
    assert_eq!(dev.reg(tdlen(Q0)), 256 * 16);
    assert_eq!(dev.reg(srrctl(Q0)), 0x8200_0002);
    assert_ne!(dev.reg(rxdctl(Q0)) & rxdctl::ENABLE, 0);
    assert_ne!(dev.reg(txdctl(Q0)) & txdctl::ENABLE, 0);
    assert_eq!(dev.reg(rdt(Q0)), 255);
    assert_eq!(dev.reg(tdt(Q0)), 0);

    // Every RX descriptor posts a distinct pool buffer inside DMA memory.
    let ring = rx_ring(&dev);
    let mut addrs: Vec<u64> = (0..256).map(|i| posted_rx_addr(&ring, i)).collect();
    for &a in &addrs {
        dev.mem_at(a, 2048);
    }
    addrs.sort_unstable();
    addrs.dedup();
    assert_eq!(addrs.len(), 256);

    assert!(port.uses_msix());
    assert_eq!(dev.reg(IVAR0), 0x8180);
    assert_eq!(dev.reg(IVAR_MISC), 0x82);
    assert_eq!(dev.reg(EIMS), 0x7);
}

#[test]
fn open_turns_bus_mastering_on_and_release_turns_it_off() {
    // vfio-pci hands the function over with PCI_COMMAND.BME clear; without it the VF can
    // neither DMA nor raise MSI-X (found by the QEMU tier).
    let (dev, port, _queues) = open();
    let command = || {
        let config = dev.config.lock();
        u16::from_le_bytes([config[4], config[5]])
    };
    assert_eq!(command() & 0x4, 0x4, "bus mastering on after open");
    port.release().unwrap();
    assert_eq!(command() & 0x4, 0, "bus mastering off after release");
}

#[test]
fn jumbo_mtu_asks_the_pf_for_large_frames() {
    let config = IgbvfConfig {
        mtu: 9000,
        rx_buf_size: 10240,
        queues: 2,
        ..IgbvfConfig::default()
    };
    let (dev, port, queues) = open_with(config, false);
    assert_eq!(dev.requests(), vec![Request::Reset, Request::SetLpe(9022)]);
    assert_eq!(queues.len(), 2);
    assert_eq!(port.queue_count(), 2);
    assert!(!port.uses_msix(), "polled without msi-x");
    assert_eq!(dev.reg(srrctl(Queue::Q1)), 0x8200_000A);
    assert_eq!(dev.reg(rdt(Queue::Q1)), 255);
}

#[test]
fn a_reset_nack_without_a_mac_makes_the_driver_set_a_random_local_unicast_mac() {
    // Linux igb without an administrator MAC: `RESET|NACK`, no address, clear to send.
    let dev = FakeVf::new(true);
    dev.bar.regs.lock().reset_nacks = u32::MAX;
    let (port, _queues) =
        Igbvf::open_with_clock(dev.clone(), IgbvfConfig::default(), TestClock::new()).unwrap();
    let mac = port.mac().0;
    assert_eq!(
        mac[0] & 0x03,
        0x02,
        "{mac:02x?}: locally administered unicast"
    );
    assert_eq!(
        dev.requests(),
        vec![Request::Reset, Request::SetMacAddr(mac)]
    );
    assert_eq!(dev.bar.regs.lock().pf_mac, Some(mac));
}

#[test]
fn a_configured_mac_is_set_when_the_pf_has_none() {
    let dev = FakeVf::new(true);
    dev.bar.regs.lock().reset_nacks = u32::MAX;
    let config = IgbvfConfig {
        mac: Some(OWN_MAC),
        ..IgbvfConfig::default()
    };
    let (port, _queues) = Igbvf::open_with_clock(dev.clone(), config, TestClock::new()).unwrap();
    assert_eq!(port.mac(), OWN_MAC);
    assert_eq!(
        dev.requests(),
        vec![Request::Reset, Request::SetMacAddr(OWN_MAC.0)]
    );
}

#[test]
fn the_pf_administrator_mac_wins_over_a_configured_one() {
    let dev = FakeVf::new(true);
    let config = IgbvfConfig {
        mac: Some(OWN_MAC),
        ..IgbvfConfig::default()
    };
    let (port, _queues) = Igbvf::open_with_clock(dev.clone(), config, TestClock::new()).unwrap();
    assert_eq!(port.mac().0, MAC);
    assert_eq!(dev.requests(), vec![Request::Reset], "nothing to set");
}

#[test]
fn a_pf_refusing_the_drivers_mac_fails_open_with_mac_rejected() {
    let dev = FakeVf::new(true);
    {
        let mut regs = dev.bar.regs.lock();
        regs.reset_nacks = u32::MAX;
        regs.nack_set_mac = true;
    }
    let config = IgbvfConfig {
        mac: Some(OWN_MAC),
        ..IgbvfConfig::default()
    };
    let err = Igbvf::open_with_clock(dev, config, TestClock::new()).unwrap_err();
    assert!(
        matches!(err, IgbvfError::MacRejected { mac, .. } if mac == OWN_MAC.0),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "fake-vf: pf has no mac for the vf and refused 02:aa:bb:cc:dd:01"
    );
}

#[test]
fn after_a_pf_reset_the_driver_re_sends_its_own_mac() {
    let dev = FakeVf::new(true);
    dev.bar.regs.lock().reset_nacks = u32::MAX;
    let (port, _queues) =
        Igbvf::open_with_clock(dev.clone(), IgbvfConfig::default(), TestClock::new()).unwrap();
    let mac = port.mac().0;
    dev.bar.regs.lock().pf_mac = None;
    dev.set_reg(V2PMAILBOX, V2pMailbox::RSTD);
    assert_eq!(port.service(Duration::ZERO), vec![VfEvent::PfReset]);
    assert_eq!(port.service(Duration::ZERO), vec![VfEvent::ResetComplete]);
    assert_eq!(port.mac().0, mac, "the same mac");
    assert_eq!(
        dev.requests(),
        vec![
            Request::Reset,
            Request::SetMacAddr(mac),
            Request::Reset,
            Request::SetMacAddr(mac)
        ]
    );
    assert_eq!(dev.bar.regs.lock().pf_mac, Some(mac));
}

#[test]
fn a_late_rstd_during_the_reset_handshake_reposts_reset() {
    let dev = FakeVf::new(true);
    dev.bar.regs.lock().late_rstd = 1;
    let (port, _queues) =
        Igbvf::open_with_clock(dev.clone(), IgbvfConfig::default(), TestClock::new()).unwrap();
    assert_eq!(port.mac().0, MAC);
    assert_eq!(dev.requests(), vec![Request::Reset, Request::Reset]);
    let resets = dev
        .bar
        .regs
        .lock()
        .writes
        .iter()
        .filter(|&&w| w == (CTRL, ctrl::RST))
        .count();
    assert_eq!(resets, 1, "CTRL.RST is not repeated");
    assert_eq!(
        port.service(Duration::ZERO),
        vec![],
        "the late RSTD was consumed"
    );
}

#[test]
fn a_silent_pf_times_out_instead_of_hanging() {
    let dev = FakeVf::new(true);
    // RSTI stuck: the reset never completes.
    dev.set_reg(V2PMAILBOX, V2pMailbox::RSTI);
    let err = Igbvf::open_with_clock(dev, IgbvfConfig::default(), TestClock::new()).unwrap_err();
    assert!(matches!(err, IgbvfError::MailboxTimeout { .. }), "{err}");
}

#[test]
fn rx_burst_hands_out_written_back_frames_and_rearms_their_slots() {
    let (dev, port, mut queues) = open();
    let ring = rx_ring(&dev);
    let old0 = posted_rx_addr(&ring, 0);
    device_receive(&dev, 0, &frame(60, 1));
    device_receive(&dev, 1, &frame(1514, 7));

    let mut out = Vec::with_capacity(8);
    assert_eq!(queues[0].rx_burst(&mut out, 8), 2);
    assert_eq!(out[0].data(), frame(60, 1).as_slice());
    assert_eq!(out[1].data(), frame(1514, 7).as_slice());
    assert_eq!(
        out[0].bus_addr(),
        old0,
        "the buffer the device wrote is handed out"
    );
    // Re-armed with fresh buffers, DD clear, tail moved once past both.
    let new0 = posted_rx_addr(&ring, 0);
    assert_ne!(new0, old0);
    assert_eq!(read_desc(&ring, 0)[8] & 1, 0);
    assert_eq!(dev.reg(rdt(Q0)), 1);
    assert_eq!(
        queues[0].rx_burst(&mut out, 8),
        0,
        "nothing more written back"
    );

    let stats = port.stats();
    assert_eq!(stats.rx_packets, 2);
    assert_eq!(stats.rx_bytes, 60 + 1514);
    assert_eq!(out[0].meta.queue, 0);
}

#[test]
fn rx_burst_respects_max_and_resumes_where_it_stopped() {
    let (dev, _port, mut queues) = open();
    for i in 0..5 {
        device_receive(&dev, i, &frame(64, i as u8));
    }
    let mut out = Vec::new();
    assert_eq!(queues[0].rx_burst(&mut out, 3), 3);
    assert_eq!(queues[0].rx_burst(&mut out, 8), 2);
    assert_eq!(out[4].data(), frame(64, 4).as_slice());
    assert_eq!(dev.reg(rdt(Q0)), 4);
}

#[test]
fn a_descriptor_with_a_bad_length_is_counted_not_followed() {
    let (dev, port, mut queues) = open();
    let ring = rx_ring(&dev);
    let posted = posted_rx_addr(&ring, 0);
    write_rx_wb(&ring, 0, 60_000, rx_status::EOP);
    write_rx_wb(&ring, 1, 0, rx_status::EOP);
    write_rx_wb(&ring, 2, 100, 0); // no EOP with single-descriptor frames
    device_receive(&dev, 3, &frame(80, 3));
    let mut out = Vec::new();
    assert_eq!(queues[0].rx_burst(&mut out, 8), 1);
    assert_eq!(out[0].data(), frame(80, 3).as_slice());
    let stats = port.stats();
    assert_eq!(stats.rx_descriptor_errors, 3);
    assert_eq!(stats.rx_packets, 1);
    assert_eq!(
        posted_rx_addr(&ring, 0),
        posted,
        "slot re-armed with its own buffer"
    );
    assert_eq!(dev.reg(rdt(Q0)), 3);
}

#[test]
fn errored_frames_are_dropped_and_counted() {
    let (dev, port, mut queues) = open();
    let ring = rx_ring(&dev);
    write_rx_wb(&ring, 0, 60, rx_status::EOP | rx_status::CE);
    let mut out = Vec::new();
    assert_eq!(queues[0].rx_burst(&mut out, 8), 0);
    assert_eq!(port.stats().rx_frame_errors, 1);
    assert_eq!(dev.reg(rdt(Q0)), 0);
}

#[test]
fn no_free_buffer_drops_the_frame_and_reuses_its_buffer() {
    let (dev, port, mut queues) = open_with(
        IgbvfConfig {
            ring_size: 8,
            ..IgbvfConfig::default()
        },
        true,
    );
    // The pool has 24 buffers: 8 posted; hold 8 more, then receive 8 + 7 frames.
    let pool = queues[0].pool().clone();
    let hog: Vec<Packet> = (0..8).map(|_| pool.alloc().unwrap()).collect();
    let mut held = Vec::new();
    for round in 0..2 {
        for i in 0..8 {
            if round == 1 && i == 7 {
                break;
            }
            device_receive(&dev, i, &frame(60, i as u8));
        }
        queues[0].rx_burst(&mut held, 64);
    }
    assert_eq!(held.len(), 8);
    let stats = port.stats();
    assert_eq!(stats.rx_no_buffer, 7);
    drop(held);
    drop(hog);
    device_receive(&dev, 7, &frame(60, 9));
    let mut out = Vec::new();
    assert_eq!(queues[0].rx_burst(&mut out, 8), 1);
    assert_eq!(out[0].data(), frame(60, 9).as_slice());
}

#[test]
fn a_frame_the_device_cannot_reach_is_copied_into_the_queues_own_buffers() {
    let (dev, port, mut queues) = open();
    // Anonymous memory: its "bus addresses" mean nothing to the device.
    let foreign = Pool::new(SharedMemory::anonymous(16 * 2048).unwrap(), 2048).unwrap();
    let mut frames: Vec<Packet> = (0..3)
        .map(|i| foreign.alloc_from(&frame(100 + i, i as u8)).unwrap())
        .collect();
    let foreign_addrs: Vec<u64> = frames.iter().map(Packet::bus_addr).collect();
    assert_eq!(queues[0].tx_burst(&mut frames), 3);
    assert_eq!(
        foreign.available(),
        foreign.capacity(),
        "the originals went back"
    );
    let ring = tx_ring(&dev);
    for i in 0..3 {
        let desc: AdvTxDataDesc = zerocopy::transmute!(read_desc(&ring, i));
        let data = desc.decode();
        assert!(!foreign_addrs.contains(&data.buffer_addr));
        let mut bytes = vec![0u8; usize::from(data.length)];
        dev.dma_read(data.buffer_addr, &mut bytes);
        assert_eq!(
            bytes,
            frame(100 + i, i as u8),
            "the copy is what the device reads"
        );
    }
    assert_eq!(queues[0].counters().tx_bounced, 3);
    assert_eq!(port.stats().tx_lost, 0);
}

#[test]
fn tx_burst_posts_the_packets_bus_addresses_and_reclaims_after_dd() {
    let (dev, port, mut queues) = open();
    let pool = tx_pool(&dev);
    let mut frames: Vec<Packet> = (0..3)
        .map(|i| pool.alloc_from(&frame(100 + i, i as u8)).unwrap())
        .collect();
    let addrs: Vec<u64> = frames.iter().map(Packet::bus_addr).collect();
    assert_eq!(queues[0].tx_burst(&mut frames), 3);
    assert!(frames.is_empty());
    assert_eq!(dev.reg(tdt(Q0)), 3);
    let ring = tx_ring(&dev);
    for (i, &addr) in addrs.iter().enumerate() {
        let desc: AdvTxDataDesc = zerocopy::transmute!(read_desc(&ring, i));
        let data = desc.decode();
        assert_eq!(data.buffer_addr, addr);
        assert_eq!(usize::from(data.length), 100 + i);
        assert!(data.eop && data.report_status);
    }
    assert_eq!(pool.available(), pool.capacity() - 3);

    // The device completes the first two.
    for i in 0..2 {
        ring.write(i * DESC_SIZE, &TxWriteback::done().to_bytes())
            .unwrap();
    }
    assert_eq!(queues[0].tx_burst(&mut Vec::new()), 0);
    assert_eq!(pool.available(), pool.capacity() - 1);
    let stats = port.stats();
    assert_eq!(stats.tx_packets, 2);
    assert_eq!(stats.tx_bytes, 201);
}

#[test]
fn a_mixed_burst_is_posted_in_order_with_one_tail_write() {
    let (dev, port, mut queues) = open();
    let own = queues[0].pool().clone();
    let other = tx_pool(&dev);
    let foreign = Pool::new(SharedMemory::anonymous(4 * 2048).unwrap(), 2048).unwrap();
    let mut frames = vec![
        own.alloc_from(&frame(60, 1)).unwrap(),
        other.alloc_from(&frame(61, 2)).unwrap(),
        own.alloc().unwrap(),
        foreign.alloc_from(&frame(62, 3)).unwrap(),
        own.alloc_from(&frame(63, 4)).unwrap(),
    ];
    assert_eq!(queues[0].tx_burst(&mut frames), 5);
    assert!(frames.is_empty());
    assert_eq!(dev.reg(tdt(Q0)), 4);
    for partial in 1..4 {
        assert!(!dev.wrote(tdt(Q0), partial), "one tail write per burst");
    }
    let ring = tx_ring(&dev);
    for (i, (len, seed)) in [(60, 1), (61, 2), (62, 3), (63, 4)].into_iter().enumerate() {
        let desc: AdvTxDataDesc = zerocopy::transmute!(read_desc(&ring, i));
        let data = desc.decode();
        let mut bytes = vec![0u8; usize::from(data.length)];
        dev.dma_read(data.buffer_addr, &mut bytes);
        assert_eq!(bytes, frame(len, seed), "descriptor {i}");
    }
    let c = queues[0].counters();
    assert_eq!((c.tx_dropped, c.tx_bounced), (1, 1));
    for i in 0..4 {
        ring.write(i * DESC_SIZE, &TxWriteback::done().to_bytes())
            .unwrap();
    }
    assert_eq!(queues[0].tx_burst(&mut Vec::new()), 0);
    let stats = port.stats();
    assert_eq!((stats.tx_packets, stats.tx_bytes), (4, 60 + 61 + 62 + 63));
    assert_eq!(other.available(), other.capacity());
    assert_eq!(foreign.available(), foreign.capacity());
}

#[test]
fn a_whole_burst_taken_leaves_the_callers_vec_empty_with_its_buffer() {
    let (dev, _port, mut queues) = open();
    let pool = tx_pool(&dev);
    let mut frames = Vec::with_capacity(32);
    frames.extend((0..4).map(|i| pool.alloc_from(&frame(64, i)).unwrap()));
    let buffer = frames.as_ptr();
    assert_eq!(queues[0].tx_burst(&mut frames), 4);
    assert!(frames.is_empty());
    assert!(frames.capacity() >= 32, "the caller keeps its capacity");
    assert_eq!(frames.as_ptr(), buffer, "and its buffer: nothing allocated");
}

#[test]
fn tx_burst_leaves_what_does_not_fit_and_drops_oversized_frames() {
    let (dev, port, mut queues) = open_with(
        IgbvfConfig {
            ring_size: 8,
            ..IgbvfConfig::default()
        },
        true,
    );
    let pool = tx_pool(&dev);
    let mut frames: Vec<Packet> = vec![pool.alloc_from(&frame(1515, 0)).unwrap()];
    frames.extend((0..9).map(|i| pool.alloc_from(&frame(64, i)).unwrap()));
    // The oversized frame is taken (and dropped), then 7 of 9 fit (ring size - 1).
    assert_eq!(queues[0].tx_burst(&mut frames), 8);
    assert_eq!(frames.len(), 2);
    assert_eq!(
        frames[0].data(),
        frame(64, 7).as_slice(),
        "rest left in order"
    );
    assert_eq!(dev.reg(tdt(Q0)), 7);
    assert_eq!(queues[0].counters().tx_dropped, 1);
    assert_eq!(port.stats().tx_lost, 0);
}

#[test]
fn all_ones_reads_report_removed_and_queues_return_zero() {
    let (dev, port, mut queues) = open();
    let pool = tx_pool(&dev);
    let mut frames = vec![pool.alloc_from(&frame(64, 0)).unwrap()];
    assert_eq!(queues[0].tx_burst(&mut frames), 1);
    device_receive(&dev, 0, &frame(60, 0));
    dev.bar.regs.lock().removed = true;

    assert_eq!(port.service(Duration::ZERO), vec![VfEvent::Removed]);
    assert!(!port.link_up());
    assert_eq!(port.service(Duration::ZERO), vec![], "reported once");
    let mut out = Vec::new();
    assert_eq!(queues[0].rx_burst(&mut out, 8), 0);
    let mut more = vec![pool.alloc_from(&frame(64, 1)).unwrap()];
    assert_eq!(queues[0].tx_burst(&mut more), 0);
    assert_eq!(more.len(), 1, "left for the caller to send elsewhere");
    assert_eq!(port.stats().tx_lost, 1);
    assert_eq!(
        pool.available(),
        pool.capacity() - 1,
        "stranded frame freed"
    );
    assert!(port.stop(Duration::from_millis(10)).is_ok());
    assert!(port.release().is_ok());
}

#[test]
fn latched_rstd_reports_pf_reset_then_reinitialises_with_the_same_mac() {
    let (dev, port, mut queues) = open();
    let pool = tx_pool(&dev);
    let mut frames = vec![pool.alloc_from(&frame(64, 0)).unwrap()];
    assert_eq!(queues[0].tx_burst(&mut frames), 1);
    let ring = rx_ring(&dev);
    let posted: Vec<u64> = (0..256).map(|i| posted_rx_addr(&ring, i)).collect();
    device_receive(&dev, 0, &frame(60, 0)); // written back, then lost to the reset

    dev.set_reg(rdt(Q0), 0);
    dev.set_reg(V2PMAILBOX, V2pMailbox::RSTD);
    assert_eq!(port.service(Duration::ZERO), vec![VfEvent::PfReset]);
    let mut out = Vec::new();
    assert_eq!(queues[0].rx_burst(&mut out, 8), 0, "paused while resetting");
    assert_eq!(port.service(Duration::ZERO), vec![VfEvent::ResetComplete]);
    assert_eq!(port.mac().0, MAC);
    assert_eq!(dev.requests(), vec![Request::Reset, Request::Reset]);
    assert_eq!(dev.reg(rdt(Q0)), 255, "rings re-programmed");
    let again: Vec<u64> = (0..256).map(|i| posted_rx_addr(&ring, i)).collect();
    assert_eq!(again, posted, "same buffers re-posted");
    assert_eq!(port.stats().tx_lost, 1, "in flight at the reset");

    assert_eq!(
        queues[0].rx_burst(&mut out, 8),
        0,
        "stale write-back cleared"
    );
    device_receive(&dev, 0, &frame(70, 5));
    assert_eq!(queues[0].rx_burst(&mut out, 8), 1);
    assert_eq!(out[0].data(), frame(70, 5).as_slice());
    assert_eq!(port.service(Duration::ZERO), vec![]);
}

/// Frames the device wrote back and no poller took when the PF reset the function are lost
/// to the re-initialisation (it re-arms every slot): each is counted once in
/// `rx_dropped_reset`, at the report, and what arrives before the re-arm at the re-arm.
#[test]
fn frames_written_back_but_unread_at_a_pf_reset_are_counted_dropped_by_it_once() {
    let (dev, port, mut queues) = open();
    for i in 0..5 {
        device_receive(&dev, i, &frame(60 + i, i as u8));
    }
    let ring = rx_ring(&dev);
    write_rx_wb(&ring, 5, 60, rx_status::EOP | rx_status::CE); // errored: not a reset drop
    let mut out = Vec::new();
    assert_eq!(queues[0].rx_burst(&mut out, 2), 2, "the poller takes two");

    // The PF stays in reset: the report alone must count what the rings held.
    dev.set_reg(V2PMAILBOX, V2pMailbox::RSTI);
    assert_eq!(port.service(Duration::ZERO), vec![VfEvent::PfReset]);
    let stats = port.stats();
    assert_eq!(stats.rx_dropped_reset, 3, "written back, unread: {stats:?}");
    assert_eq!(stats.rx_frame_errors, 1, "counted as what it is");
    assert_eq!(stats.rx_packets, 2);
    assert_eq!(queues[0].counters().rx_dropped_reset, 3);

    // A write-back seen after the report (the ring restarted by an earlier attempt) is
    // counted just before the re-arm drops it.
    device_receive(&dev, 6, &frame(90, 6));
    dev.set_reg(V2PMAILBOX, V2pMailbox::RSTD);
    assert_eq!(port.service(Duration::ZERO), vec![VfEvent::ResetComplete]);
    assert_eq!(port.stats().rx_dropped_reset, 4);
    assert_eq!(
        queues[0].rx_burst(&mut out, 8),
        0,
        "nothing stale handed out"
    );

    device_receive(&dev, 0, &frame(70, 9));
    assert_eq!(queues[0].rx_burst(&mut out, 8), 1);
    assert_eq!(out[2].data(), frame(70, 9).as_slice());
    let stats = port.stats();
    assert_eq!(
        (
            stats.rx_packets,
            stats.rx_dropped_reset,
            stats.rx_frame_errors
        ),
        (3, 4, 1),
        "nothing counted twice"
    );
}

#[test]
fn a_pf_still_in_reset_is_waited_for_across_service_calls() {
    let (dev, port, _queues) = open();
    dev.set_reg(V2PMAILBOX, V2pMailbox::RSTI);
    assert_eq!(port.service(Duration::ZERO), vec![VfEvent::PfReset]);
    assert_eq!(port.service(Duration::ZERO), vec![], "reported once");
    assert_eq!(dev.requests().len(), 1, "no handshake while RSTI is set");
    dev.set_reg(V2PMAILBOX, V2pMailbox::RSTD);
    assert_eq!(port.service(Duration::ZERO), vec![VfEvent::ResetComplete]);
    assert_eq!(port.mac().0, MAC);
}

#[test]
fn open_does_not_fail_when_the_link_stays_down() {
    let dev = FakeVf::new(true);
    let (port, _queues) =
        Igbvf::open_with_clock(dev.clone(), IgbvfConfig::default(), TestClock::new()).unwrap();
    assert!(!port.link_up());
    dev.set_reg(STATUS, Status::LU);
    assert_eq!(port.service(Duration::ZERO), vec![VfEvent::LinkUp]);
}

#[test]
fn a_pf_control_message_without_cts_is_a_reset() {
    let (dev, port, _queues) = open();
    dev.set_reg(vmbmem(0).unwrap(), 0x0100);
    dev.set_reg(V2PMAILBOX, V2pMailbox::PFSTS);
    assert_eq!(port.service(Duration::ZERO), vec![VfEvent::PfReset]);
    assert_eq!(port.service(Duration::ZERO), vec![VfEvent::ResetComplete]);
}

#[test]
fn link_changes_are_reported() {
    let (dev, port, _queues) = open();
    dev.set_reg(STATUS, 0);
    assert_eq!(port.service(Duration::ZERO), vec![VfEvent::LinkDown]);
    assert!(!port.link_up());
    dev.set_reg(STATUS, Status::LU);
    assert_eq!(port.service(Duration::ZERO), vec![VfEvent::LinkUp]);
}

#[test]
fn the_request_irq_reports_release_requested() {
    let (dev, port, _queues) = open();
    dev.request.signal().unwrap();
    assert_eq!(
        port.service(Duration::from_secs(5)),
        vec![VfEvent::ReleaseRequested]
    );
    assert_eq!(port.service(Duration::ZERO), vec![]);
}

#[test]
fn stop_counts_untransmitted_frames_as_tx_lost() {
    let (dev, port, mut queues) = open();
    let pool = tx_pool(&dev);
    let mut frames: Vec<Packet> = (0..3)
        .map(|i| pool.alloc_from(&frame(64, i)).unwrap())
        .collect();
    assert_eq!(queues[0].tx_burst(&mut frames), 3);
    tx_ring(&dev)
        .write(0, &TxWriteback::done().to_bytes())
        .unwrap();
    port.stop(Duration::from_millis(50)).unwrap();
    let stats = port.stats();
    assert_eq!(stats.tx_packets, 1);
    assert_eq!(stats.tx_lost, 2);
    assert_eq!(dev.reg(rxdctl(Q0)) & rxdctl::ENABLE, 0);
    assert_eq!(dev.reg(txdctl(Q0)) & txdctl::ENABLE, 0);
    assert_eq!(pool.available(), pool.capacity());
    device_receive(&dev, 0, &frame(60, 0));
    let mut out = Vec::new();
    assert_eq!(
        queues[0].rx_burst(&mut out, 8),
        0,
        "stopped queues hand out nothing"
    );
    let mut more = vec![pool.alloc_from(&frame(64, 1)).unwrap()];
    assert_eq!(queues[0].tx_burst(&mut more), 0);
}

#[test]
fn release_disables_everything_and_queues_return_zero() {
    let (dev, port, mut queues) = open();
    assert_eq!(dev.msix.lock().len(), 3);
    port.release().unwrap();
    assert!(*dev.released.lock());
    assert!(dev.msix.lock().is_empty(), "msi-x disabled");
    assert!(dev.wrote(EIMC, 0x7));
    assert_eq!(dev.reg(rxdctl(Q0)) & rxdctl::ENABLE, 0);
    assert_eq!(dev.reg(txdctl(Q0)) & txdctl::ENABLE, 0);
    let mut out = Vec::new();
    assert_eq!(queues[0].rx_burst(&mut out, 8), 0);
    assert_eq!(port.service(Duration::ZERO), vec![]);
    assert!(port.release().is_ok(), "idempotent");
}

#[test]
fn config_validation_rejects_what_the_hardware_cannot_do() {
    assert!(IgbvfConfig::default().validate().is_ok());
    let bad = [
        IgbvfConfig {
            queues: 3,
            ..IgbvfConfig::default()
        },
        IgbvfConfig {
            ring_size: 100,
            ..IgbvfConfig::default()
        },
        IgbvfConfig {
            // A multiple of 8 the device takes, but the ring indices advance with a mask.
            ring_size: 24,
            ..IgbvfConfig::default()
        },
        IgbvfConfig {
            rx_buf_size: 1500,
            ..IgbvfConfig::default()
        },
        IgbvfConfig {
            mtu: 9000,
            ..IgbvfConfig::default()
        },
        IgbvfConfig {
            mailbox_timeout: Duration::ZERO,
            ..IgbvfConfig::default()
        },
        IgbvfConfig {
            mac: Some(MacAddr([0x03, 0, 0, 0, 0, 1])),
            ..IgbvfConfig::default()
        },
        IgbvfConfig {
            mac: Some(MacAddr([0; 6])),
            ..IgbvfConfig::default()
        },
    ];
    for config in bad {
        assert!(
            matches!(config.validate(), Err(IgbvfError::Config { .. })),
            "{config:?}"
        );
    }
}

#[test]
fn tx_ring_wraps_around_with_completions() {
    let (dev, port, mut queues) = open_with(
        IgbvfConfig {
            ring_size: 8,
            ..IgbvfConfig::default()
        },
        true,
    );
    let pool = tx_pool(&dev);
    let ring = tx_ring(&dev);
    let mut sent = 0;
    for round in 0..5u8 {
        let mut frames: Vec<Packet> = (0..5)
            .map(|i| pool.alloc_from(&frame(64, round + i)).unwrap())
            .collect();
        assert_eq!(queues[0].tx_burst(&mut frames), 5);
        for k in 0..5 {
            let i = (sent + k) % 8;
            ring.write(i * DESC_SIZE, &TxWriteback::done().to_bytes())
                .unwrap();
        }
        sent += 5;
        assert_eq!(dev.reg(tdt(Q0)) as usize, sent % 8);
    }
    queues[0].tx_burst(&mut Vec::new());
    assert_eq!(port.stats().tx_packets, 25);
    assert_eq!(pool.available(), pool.capacity());
}

mod untrusted_device {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the device writes into the RX ring, `rx_burst` neither panics nor reads
        /// out of bounds, and every descriptor it consumes is accounted for exactly once.
        #[test]
        fn arbitrary_rx_write_backs_are_counted_never_followed(
            descs in proptest::collection::vec(any::<[u8; DESC_SIZE]>(), 1..16),
        ) {
            let (dev, port, mut queues) = open_with(
                IgbvfConfig { ring_size: 16, ..IgbvfConfig::default() },
                false,
            );
            let ring = rx_ring(&dev);
            for (i, d) in descs.iter().enumerate() {
                ring.write(i * DESC_SIZE, d).unwrap();
            }
            let mut out = Vec::new();
            let handed = queues[0].rx_burst(&mut out, 64);
            prop_assert_eq!(handed, out.len());
            let c = queues[0].counters();
            let consumed = (dev.reg(rdt(Q0)) as usize + 1) % 16;
            prop_assert_eq!(
                c.rx_packets + c.rx_descriptor_errors + c.rx_frame_errors + c.rx_no_buffer,
                consumed as u64
            );
            for p in &out {
                prop_assert!(!p.is_empty() && p.len() <= 2048);
            }
            prop_assert_eq!(port.stats().rx_packets, handed as u64);
        }
    }
}

#[test]
fn hardware_counters_accumulate_and_survive_a_pf_reset() {
    use crate::igbvf::regs::{VFGPRC, VFGPTC};
    let (dev, port, _queues) = open();
    dev.set_reg(VFGPRC, 10);
    dev.set_reg(VFGPTC, 4);
    assert_eq!(port.service(Duration::ZERO), vec![]);
    // The PF reset zeroes the registers: no wrap is counted.
    dev.set_reg(VFGPRC, 0);
    dev.set_reg(VFGPTC, 0);
    dev.set_reg(V2PMAILBOX, V2pMailbox::RSTD);
    assert_eq!(port.service(Duration::ZERO), vec![VfEvent::PfReset]);
    assert_eq!(port.service(Duration::ZERO), vec![VfEvent::ResetComplete]);
    dev.set_reg(VFGPRC, 5);
    port.service(Duration::ZERO);
    let stats = port.stats();
    assert_eq!(stats.hw_rx_packets, 15);
    assert_eq!(stats.hw_tx_packets, 4);
}

mod lost_transmits {
    //! `VfQueue::tx_pending` and `tx_lost`: every frame `tx_burst` took is completed or counted
    //! lost exactly once, and `tx_pending` reaches 0 whenever the ring can no longer complete.

    use super::*;
    use crate::port::VfQueue;

    /// Sends `n` frames on queue 0; returns the pool they came from.
    fn send(dev: &FakeVf, queues: &mut [IgbvfQueue], n: usize) -> Pool {
        let pool = tx_pool(dev);
        let mut frames: Vec<Packet> = (0..n)
            .map(|i| pool.alloc_from(&frame(64, i as u8)).unwrap())
            .collect();
        assert_eq!(queues[0].tx_burst(&mut frames), n);
        pool
    }

    #[test]
    fn tx_pending_counts_frames_until_the_device_completes_them() {
        let (dev, port, mut queues) = open();
        assert_eq!(VfQueue::index(&queues[0]), 0);
        assert_eq!(queues[0].tx_pending(), 0);
        let pool = send(&dev, &mut queues, 3);
        assert_eq!(queues[0].tx_pending(), 3);
        let ring = tx_ring(&dev);
        for i in 0..2 {
            ring.write(i * DESC_SIZE, &TxWriteback::done().to_bytes())
                .unwrap();
        }
        assert_eq!(queues[0].tx_pending(), 1, "completions reclaimed");
        assert_eq!(pool.available(), pool.capacity() - 1);
        let stats = port.stats();
        assert_eq!((stats.tx_packets, stats.tx_lost), (2, 0));
    }

    #[test]
    fn a_queue_that_finds_its_device_gone_counts_its_frames_lost_once() {
        let (dev, port, mut queues) = open();
        let pool = send(&dev, &mut queues, 3);
        dev.bar.regs.lock().removed = true;
        // The queue notices on its own (TDH reads all ones), before the control thread.
        assert_eq!(queues[0].tx_pending(), 0);
        assert_eq!(port.stats().tx_lost, 3);
        assert_eq!(pool.available(), pool.capacity(), "stranded frames freed");
        let mut more = vec![pool.alloc_from(&frame(64, 9)).unwrap()];
        assert_eq!(queues[0].tx_burst(&mut more), 0, "gone: takes nothing");
        assert_eq!(port.service(Duration::ZERO), vec![VfEvent::Removed]);
        port.stop(Duration::from_millis(10)).unwrap();
        port.release().unwrap();
        assert_eq!(port.stats().tx_lost, 3, "counted once");
        assert_eq!(queues[0].tx_pending(), 0);
    }

    #[test]
    fn a_removal_seen_by_service_first_counts_the_frames_once() {
        let (dev, port, mut queues) = open();
        send(&dev, &mut queues, 4);
        dev.bar.regs.lock().removed = true;
        assert_eq!(port.service(Duration::ZERO), vec![VfEvent::Removed]);
        assert_eq!(queues[0].tx_pending(), 0);
        port.release().unwrap();
        assert_eq!(queues[0].tx_pending(), 0);
        assert_eq!(port.stats().tx_lost, 4);
    }

    #[test]
    fn release_with_frames_in_flight_counts_them_once() {
        let (dev, port, mut queues) = open();
        let pool = send(&dev, &mut queues, 5);
        port.release().unwrap();
        assert_eq!(queues[0].tx_pending(), 0);
        assert_eq!(port.stats().tx_lost, 5);
        assert_eq!(pool.available(), pool.capacity());
        port.release().unwrap();
        assert_eq!(port.stats().tx_lost, 5, "idempotent");
    }

    #[test]
    fn a_pf_reset_counts_the_stranded_frames_when_it_is_reported() {
        let (dev, port, mut queues) = open();
        send(&dev, &mut queues, 2);
        // The PF stays in reset: the re-initialisation waits, tx_pending must not.
        dev.set_reg(V2PMAILBOX, V2pMailbox::RSTI);
        assert_eq!(port.service(Duration::ZERO), vec![VfEvent::PfReset]);
        assert_eq!(queues[0].tx_pending(), 0);
        assert_eq!(port.stats().tx_lost, 2);
        dev.set_reg(V2PMAILBOX, V2pMailbox::RSTD);
        assert_eq!(port.service(Duration::ZERO), vec![VfEvent::ResetComplete]);
        assert_eq!(
            port.stats().tx_lost,
            2,
            "not again at the re-initialisation"
        );
        send(&dev, &mut queues, 1);
        assert_eq!(queues[0].tx_pending(), 1, "running again");
    }

    #[test]
    fn a_stop_that_times_out_leaves_nothing_pending() {
        let (dev, port, mut queues) = open();
        send(&dev, &mut queues, 3);
        port.stop(Duration::from_millis(5)).unwrap();
        assert_eq!(queues[0].tx_pending(), 0);
        assert_eq!(port.stats().tx_lost, 3);
    }
}

mod stop_waits_for_the_queues {
    use super::*;
    use crate::igbvf::driver::Clock;

    fn open_clocked() -> (Arc<FakeVf>, Igbvf, Vec<IgbvfQueue>, Arc<TestClock>) {
        let dev = FakeVf::new(true);
        dev.set_reg(STATUS, Status::LU);
        let clock = TestClock::new();
        let (port, queues) =
            Igbvf::open_with_clock(dev.clone(), IgbvfConfig::default(), clock.clone()).unwrap();
        (dev, port, queues, clock)
    }

    #[test]
    fn stop_polls_until_the_enable_bits_read_back_clear() {
        let (dev, port, _queues, _clock) = open_clocked();
        dev.bar.regs.lock().enable_lag = 6;
        port.stop(Duration::from_secs(1)).unwrap();
        let regs = dev.bar.regs.lock();
        assert_eq!(regs.enable_lag, 0, "read until the lag ran out");
        assert_eq!(regs.stale_enable_reads, 6);
        drop(regs);
        assert_eq!(dev.reg(rxdctl(Q0)) & rxdctl::ENABLE, 0);
        assert_eq!(dev.reg(txdctl(Q0)) & txdctl::ENABLE, 0);
    }

    #[test]
    fn an_enable_bit_that_never_clears_ends_the_wait_at_the_deadline() {
        let (dev, port, mut queues, clock) = open_clocked();
        let pool = tx_pool(&dev);
        let mut frames = vec![pool.alloc_from(&frame(64, 0)).unwrap()];
        assert_eq!(queues[0].tx_burst(&mut frames), 1);
        dev.bar.regs.lock().enable_lag = u32::MAX;
        let start = clock.now();
        port.stop(Duration::from_millis(50)).unwrap();
        let waited = clock.now() - start;
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        assert!(waited < Duration::from_millis(52), "{waited:?}: bounded");
        assert_eq!(port.stats().tx_lost, 1);
    }

    #[test]
    fn a_stop_with_no_bound_waits_without_overflowing_its_deadline() {
        let (dev, port, _queues, clock) = open_clocked();
        dev.bar.regs.lock().enable_lag = 6;
        let start = clock.now();
        port.stop(Duration::MAX).unwrap();
        assert!(clock.now() > start, "polled until the bits cleared");
        assert_eq!(dev.reg(rxdctl(Q0)) & rxdctl::ENABLE, 0);
        assert_eq!(dev.reg(txdctl(Q0)) & txdctl::ENABLE, 0);
    }

    #[test]
    fn a_device_gone_during_stop_ends_the_waits_at_once() {
        let (dev, port, mut queues, clock) = open_clocked();
        let pool = tx_pool(&dev);
        let mut frames = vec![pool.alloc_from(&frame(64, 0)).unwrap()];
        assert_eq!(queues[0].tx_burst(&mut frames), 1);
        dev.bar.regs.lock().removed = true;
        let start = clock.now();
        port.stop(Duration::from_secs(10)).unwrap();
        assert_eq!(clock.now(), start, "no pause: all-ones reads end the waits");
        assert_eq!(port.stats().tx_lost, 1);
        assert_eq!(port.service(Duration::ZERO), vec![VfEvent::Removed]);
        assert_eq!(port.stats().tx_lost, 1, "counted once");
    }
}

mod interrupt_wait {
    use std::time::Instant;

    use super::*;

    #[test]
    fn an_msix_signal_ends_a_long_service_wait_and_is_consumed() {
        let (dev, port, _queues) = open();
        let vector = dev.msix.lock()[1].clone();
        let signaller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            vector.signal().unwrap();
        });
        let start = Instant::now();
        assert_eq!(port.service(Duration::from_secs(60)), vec![]);
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "woken by the vector"
        );
        signaller.join().unwrap();
        assert_eq!(
            dev.msix.lock()[1].try_consume().unwrap(),
            None,
            "the signal was consumed"
        );
    }

    #[test]
    fn a_zero_timeout_polls_the_mailbox_without_waiting() {
        let (dev, port, _queues) = open();
        dev.set_reg(V2PMAILBOX, V2pMailbox::RSTD);
        // Nothing signalled: with a zero timeout the poll only looks, then the mailbox is read.
        assert_eq!(port.service(Duration::ZERO), vec![VfEvent::PfReset]);
    }

    #[test]
    fn the_request_irq_is_seen_by_a_wait_over_every_eventfd() {
        let (dev, port, _queues) = open();
        let request = dev.request.clone();
        let signaller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            request.signal().unwrap();
        });
        let start = Instant::now();
        assert_eq!(
            port.service(Duration::from_secs(60)),
            vec![VfEvent::ReleaseRequested]
        );
        assert!(start.elapsed() < Duration::from_secs(30));
        signaller.join().unwrap();
    }
}
