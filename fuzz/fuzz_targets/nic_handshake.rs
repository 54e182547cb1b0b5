//! The synthetic NIC's open (NVSP INIT with version fallback, NDIS config and version,
//! receive and send buffers, RNDIS INITIALIZE, queries and sets, offloads, subchannels and
//! RSS, packet filter) against a host whose every reply the fuzzer may change.
//!
//! The host is `netvsc::nic::fuzzing`'s synchronous `StepHost`: it answers inside the NIC's
//! waits, so an input always replays the same way. For each guest request the well-behaved
//! host would answer, the input supplies one directive saying what the host does instead;
//! when the input runs out the host behaves.
//!
//! Input: `[config][host max version][directive…]`.
//! - config: bits 0–1 queues − 1; bits 2–4 highest NVSP version offered (index into
//!   `nvsp::VERSIONS`, highest first, modulo 6); bit 5 SR-IOV; bits 6–7 MTU (1500, 576,
//!   9000, 4000).
//! - host max version: index into `nvsp::VERSIONS`; INIT above it is answered with NONE.
//! - directive: one opcode byte (modulo 12), then its operands:
//!   0 as is; 1 patch `[which][offset][4 bytes]` (reply `which`, bytes at `offset`, or the
//!   subchannel count of an offer); 2 raw `[which][len][len bytes]` (reply bytes replaced);
//!   3 silent (no reply: the request times out); 4 everything twice; 5 inject
//!   `[kind][len][len bytes]` before the replies (in-band NVSP, RNDIS control message,
//!   completion of control tid `bytes[0]`, data transfer-page packet); 6 truncate
//!   `[which][len]`; 7 drop reply `[which]`; 8 replies in reverse order; 9 the host closes the
//!   channel; 10 tid `[which][bit]` (flip a bit of a completion's tid or an RNDIS request
//!   id); 11 offer `[n]` more subchannels, then as is.
//!
//! Invariants: `open` returns within a bound, never panics; it fails only with a typed error,
//! and never (but for a timeout, which load can cause) when every directive was "as is".
//! When it succeeds, what it accepted is sane: MTU within `MIN_MTU..=config.mtu` and one the
//! host allowed; 1..=`config.queues` queues, no more than the host offered; a negotiated
//! version the host accepted; the MAC and link speed the host sent; the send section size and
//! receive buffer layout of a reply it accepted — and the session works: a frame the host
//! delivers is received, a frame the guest sends lands in a send section (or DMA memory) the
//! host can read, with its bytes intact.
#![no_main]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use netvsc::nic::fuzzing::{
    GuestKind, GuestPacket, HostIdentity, Reply, Responder, StepHost, Wake, WellBehaved,
    bus_config, step_bus,
};
use netvsc::nvsp::{self, NvspMessage};
use netvsc::rndis::{self, NdisReceiveScaleCapabilities, PacketInfo, RndisMessage};
use netvsc::{NicConfig, NicError, SyntheticNic};
use packet::PortQueue;

const CONTROL_TIMEOUT: Duration = Duration::from_millis(10);
const MTUS: [usize; 4] = [1500, 576, 9000, 4000];

/// What the host was asked and what it sent.
#[derive(Debug, Default)]
struct Log {
    /// Guest requests with the RNDIS message of control sends.
    requests: Vec<(GuestPacket, Option<Vec<u8>>)>,
    /// Replies actually written, in order.
    sent: Vec<Reply>,
    /// Whether every directive was "as is".
    clean: bool,
}

#[derive(Debug)]
struct Fuzzed {
    input: Vec<u8>,
    pos: usize,
    log: Arc<Mutex<Log>>,
}

impl Fuzzed {
    fn byte(&mut self) -> u8 {
        let b = self.input.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    fn exhausted(&self) -> bool {
        self.pos >= self.input.len()
    }
}

fn bytes_mut(reply: &mut Reply) -> Option<&mut Vec<u8>> {
    match reply {
        Reply::Completion { payload, .. } | Reply::InBand { payload, .. } => Some(payload),
        Reply::Rndis(bytes) => Some(bytes),
        Reply::OfferSubchannels(_) => None,
    }
}

impl Fuzzed {
    /// Applies one directive to `replies`; returns injections to send first, and whether the
    /// host closes the channel.
    fn direct(&mut self, host: &mut StepHost, replies: &mut Vec<Reply>) -> (Vec<Reply>, bool) {
        if self.exhausted() {
            return (Vec::new(), false);
        }
        let op = self.byte() % 12;
        if op != 0 {
            self.log.lock().unwrap().clean = false;
        }
        let n = replies.len().max(1);
        let mut inject = Vec::new();
        match op {
            1 => {
                let which = usize::from(self.byte()) % n;
                let offset = usize::from(self.byte());
                let value = self.bytes(4);
                match replies.get_mut(which) {
                    Some(Reply::OfferSubchannels(count)) => *count = u16::from(value[0] % 8),
                    Some(r) => {
                        if let Some(b) = bytes_mut(r).filter(|b| !b.is_empty()) {
                            let at = offset % b.len();
                            for (i, v) in value.iter().enumerate() {
                                if let Some(x) = b.get_mut(at + i) {
                                    *x = *v;
                                }
                            }
                        }
                    }
                    None => {}
                }
            }
            2 => {
                let which = usize::from(self.byte()) % n;
                let len = usize::from(self.byte());
                let raw = self.bytes(len);
                if let Some(b) = replies.get_mut(which).and_then(bytes_mut) {
                    *b = raw;
                }
            }
            3 => replies.clear(),
            4 => {
                let again = replies.clone();
                replies.extend(again);
            }
            5 => {
                let kind = self.byte() % 4;
                let len = usize::from(self.byte());
                let raw = self.bytes(len);
                match kind {
                    0 => inject.push(Reply::InBand {
                        tid: nvsp::HOST_VF_ASSOCIATION_TRANSACTION_ID,
                        completion_requested: false,
                        payload: raw,
                    }),
                    1 => inject.push(Reply::Rndis(raw)),
                    2 => inject.push(Reply::Completion {
                        tid: (3 << 56) | u64::from(raw.first().copied().unwrap_or(0)),
                        payload: raw.get(1..).unwrap_or_default().to_vec(),
                    }),
                    _ => {
                        let _ = host.send_rndis(0, &[&raw], nvsp::DATA_CHANNEL_TYPE, true);
                    }
                }
            }
            6 => {
                let which = usize::from(self.byte()) % n;
                let len = usize::from(self.byte());
                if let Some(b) = replies.get_mut(which).and_then(bytes_mut) {
                    b.truncate(len);
                }
            }
            7 => {
                let which = usize::from(self.byte()) % n;
                if which < replies.len() {
                    replies.remove(which);
                }
            }
            8 => replies.reverse(),
            9 => {
                replies.clear();
                return (inject, true);
            }
            10 => {
                let which = usize::from(self.byte()) % n;
                let bit = self.byte();
                match replies.get_mut(which) {
                    Some(Reply::Completion { tid, .. }) => *tid ^= 1 << (bit % 64),
                    Some(Reply::Rndis(b)) if b.len() >= 12 => b[8 + usize::from(bit % 4)] ^= 1,
                    _ => {}
                }
            }
            11 => inject.push(Reply::OfferSubchannels(u16::from(self.byte() % 8))),
            _ => {}
        }
        (inject, false)
    }
}

impl Responder for Fuzzed {
    fn respond(&mut self, host: &mut StepHost) -> Wake {
        let packets = host
            .read_guest(0)
            .expect("the guest never corrupts its outgoing ring");
        let mut wrote = false;
        for packet in packets {
            assert!(
                matches!(
                    packet.kind,
                    GuestKind::InBand | GuestKind::GpaDirect | GuestKind::Completion
                ),
                "the guest sent {:?} during the handshake",
                packet.kind
            );
            if packet.kind == GuestKind::Completion {
                continue;
            }
            let rndis = match NvspMessage::parse_from_guest(&packet.payload) {
                Ok(NvspMessage::SendRndisPacket(m)) => host.rndis_of(&packet, &m),
                _ => None,
            };
            let mut replies = host.answer(&packet);
            self.log.lock().unwrap().requests.push((packet, rndis));
            if replies.is_empty() {
                continue;
            }
            let (inject, dead) = self.direct(host, &mut replies);
            for reply in inject.iter().chain(&replies) {
                if host.send_reply(0, reply).unwrap_or(false) {
                    wrote = true;
                    self.log.lock().unwrap().sent.push(reply.clone());
                }
            }
            if dead {
                let _ = host.side().mark_dead();
                return Wake::Quiet;
            }
        }
        if wrote { Wake::Signalled } else { Wake::Quiet }
    }
}

/// The payloads of the completions sent for `tid`, as the guest reads them: zero-padded to 8
/// bytes by the ring.
fn completions_of(log: &Log, tid: u64) -> Vec<Vec<u8>> {
    log.sent
        .iter()
        .filter_map(|r| match r {
            Reply::Completion { tid: t, payload } if *t == tid => {
                let mut padded = payload.clone();
                padded.resize(payload.len().next_multiple_of(8), 0);
                Some(padded)
            }
            _ => None,
        })
        .collect()
}

/// The information buffers of successful QUERY_CMPLTs answering a guest QUERY of `oid`.
fn accepted_answers(log: &Log, oid: u32) -> Vec<Vec<u8>> {
    let ids: Vec<u32> = log
        .requests
        .iter()
        .filter_map(|(_, r)| match RndisMessage::parse(r.as_deref()?) {
            Ok(RndisMessage::Query(q)) if q.oid == oid => Some(q.request_id),
            _ => None,
        })
        .collect();
    log.sent
        .iter()
        .filter_map(|r| match r {
            Reply::Rndis(bytes) => match RndisMessage::parse(bytes) {
                Ok(RndisMessage::QueryComplete(c))
                    if ids.contains(&c.request_id) && c.status == rndis::STATUS_SUCCESS =>
                {
                    Some(c.info.get(bytes).unwrap_or_default().to_vec())
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn u32_of(info: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(info.get(..4)?.try_into().ok()?))
}

/// Checks what a successful open accepted against what the host sent.
fn check_accepted(
    nic: &SyntheticNic,
    queues: usize,
    config: &NicConfig,
    host: &StepHost,
    log: &Log,
) {
    let mtu = nic.mtu();
    assert!(
        (netvsc::nic::MIN_MTU..=config.mtu).contains(&mtu),
        "mtu {mtu}"
    );
    let count = nic.queue_count();
    assert_eq!(usize::from(count), queues);
    assert!((1..=config.queues).contains(&count), "{count} queues");
    assert!(
        count - 1 <= host.side().subchannels_offered(),
        "more queues than offered"
    );
    if count > 1 {
        let caps: Vec<u32> = accepted_answers(log, rndis::OID_GEN_RECEIVE_SCALE_CAPABILITIES)
            .iter()
            .filter_map(|i| NdisReceiveScaleCapabilities::parse(i).ok())
            .map(|c| c.number_of_receive_queues.get())
            .collect();
        assert!(
            caps.iter().any(|&q| u32::from(count) <= q),
            "queues beyond rss caps {caps:?}"
        );
    }

    let version = nic.nvsp_version();
    assert!(nvsp::is_known_version(version) && version <= config.max_nvsp_version);
    let accepted_init = log.requests.iter().any(|(p, _)| {
        matches!(NvspMessage::parse_from_guest(&p.payload),
            Ok(NvspMessage::Init(m)) if m.protocol_version.get() == version)
            && completions_of(log, p.tid).iter().any(|c| {
                matches!(NvspMessage::parse(c),
                    Ok(NvspMessage::InitComplete(m)) if m.status.get() == nvsp::STATUS_SUCCESS)
            })
    });
    assert!(
        accepted_init,
        "version {version:#x} was never accepted by the host"
    );

    let request_tid = |ty: u32| {
        log.requests
            .iter()
            .filter(|(p, _)| {
                NvspMessage::parse_from_guest(&p.payload).is_ok_and(|m| m.msg_type() == ty)
            })
            .map(|(p, _)| p.tid)
            .collect::<Vec<_>>()
    };
    let rx_ok = request_tid(nvsp::MESSAGE1_TYPE_SEND_RECEIVE_BUFFER)
        .into_iter()
        .flat_map(|tid| completions_of(log, tid))
        .any(|c| match NvspMessage::parse(&c) {
            Ok(NvspMessage::SendReceiveBufferComplete(v)) => v.validate(host.rxbuf().len()).is_ok(),
            _ => false,
        });
    assert!(rx_ok, "no acceptable receive buffer reply was sent");

    let mac = nic.mac().0;
    let macs = accepted_answers(log, rndis::OID_802_3_CURRENT_ADDRESS);
    assert!(
        macs.iter().any(|i| i.get(..6) == Some(&mac[..])),
        "mac {mac:x?} not sent"
    );
    let frames: Vec<u32> = accepted_answers(log, rndis::OID_GEN_MAXIMUM_FRAME_SIZE)
        .iter()
        .filter_map(|i| u32_of(i))
        .collect();
    assert!(
        frames
            .iter()
            .any(|&f| config.mtu.min((f as usize).max(netvsc::nic::MIN_MTU)) == mtu),
        "mtu {mtu} from none of {frames:?}"
    );
    if version >= nvsp::VERSION_5 {
        let speed = nic.link_speed();
        let speeds = accepted_answers(log, rndis::OID_GEN_LINK_SPEED);
        assert!(
            speeds
                .iter()
                .any(|i| u32_of(i).map(|s| u64::from(s) * 100) == Some(speed)),
            "link speed {speed} not sent"
        );
    }
}

/// The send section sizes the guest may have accepted.
fn section_sizes(log: &Log, sendbuf_len: usize) -> Vec<usize> {
    let tids: Vec<u64> = log
        .requests
        .iter()
        .filter(|(p, _)| {
            matches!(
                NvspMessage::parse_from_guest(&p.payload),
                Ok(NvspMessage::SendSendBuffer(_))
            )
        })
        .map(|(p, _)| p.tid)
        .collect();
    let sizes: Vec<usize> = tids
        .iter()
        .flat_map(|&tid| completions_of(log, tid))
        .filter_map(|c| match NvspMessage::parse(&c) {
            Ok(NvspMessage::SendSendBufferComplete(m))
                if m.status.get() == nvsp::STATUS_SUCCESS =>
            {
                Some(m.section_size.get() as usize)
            }
            _ => None,
        })
        .collect();
    assert!(
        sizes.iter().any(|&s| s > 0 && s <= sendbuf_len),
        "no usable send section size was sent ({sizes:?})"
    );
    sizes
}

/// The session works: a delivered frame is received, a sent frame reaches the host intact.
fn check_session(
    nic: &SyntheticNic,
    queues: &mut [netvsc::SyntheticQueue],
    handle: &netvsc::nic::fuzzing::StepHandle,
    sizes: &[usize],
) {
    handle.set_responder(WellBehaved);
    let frame: Vec<u8> = (0..60u8).map(|i| i ^ 0x5a).collect();
    let mut msg = vec![0u8; rndis::HOST_RX_FRAME_OFFSET + frame.len()];
    rndis::write_host_packet(&mut msg, &frame, &PacketInfo::default()).unwrap();
    let delivered = handle
        .host()
        .send_rndis(0, &[&msg], nvsp::DATA_CHANNEL_TYPE, true)
        .unwrap();
    if delivered.is_some() {
        let mut got = Vec::new();
        for _ in 0..8 {
            queues[0].rx_burst(&mut got, 64);
            handle.host().observe();
        }
        assert!(
            got.iter().any(|p| p.data() == &frame[..]),
            "delivered frame not received"
        );
    }

    let out: Vec<u8> = (0..100u8).collect();
    let mut frames = vec![nic.pool().alloc_from(&out).unwrap()];
    let taken = queues[0].tx_burst(&mut frames);
    let packets = handle.host().read_guest(0).unwrap();
    if taken == 0 {
        return;
    }
    let mut host = handle.host();
    let sendbuf = host.sendbuf().clone();
    let sent = packets
        .iter()
        .find_map(|p| match NvspMessage::parse_from_guest(&p.payload) {
            Ok(NvspMessage::SendRndisPacket(m))
                if m.channel_type.get() == nvsp::DATA_CHANNEL_TYPE =>
            {
                Some((p, m))
            }
            _ => None,
        });
    let (packet, m) = sent.expect("the host saw the guest's send");
    let index = m.send_buffer_section_index.get();
    let candidates: Vec<Vec<u8>> = if index == nvsp::NO_SEND_SECTION {
        assert_eq!(packet.kind, GuestKind::GpaDirect);
        vec![
            host.rndis_of(packet, &m)
                .expect("gpa ranges inside guest memory"),
        ]
    } else {
        let size = m.send_buffer_section_size.get() as usize;
        sizes
            .iter()
            .filter(|&&s| s > 0 && size <= s && (index as usize + 1) * s <= sendbuf.len())
            .map(|&s| {
                let mut b = vec![0u8; size];
                sendbuf.read(index as usize * s, &mut b).unwrap();
                b
            })
            .collect()
    };
    let intact = candidates
        .iter()
        .any(|bytes| match RndisMessage::parse(bytes) {
            Ok(RndisMessage::Packet(p)) => p.frame.get(bytes) == Some(&out[..]),
            _ => false,
        });
    assert!(intact, "sent frame not found intact (section {index})");
    // Completed like a well-behaved host does, so the close that follows has nothing to wait
    // for.
    let payload = NvspMessage::SendRndisPacketComplete(nvsp::Message1SendRndisPacketComplete::new(
        nvsp::STATUS_SUCCESS,
    ))
    .to_vec(nvsp::PACKET_SIZE_V61);
    let tid = packet.tid;
    host.send_reply(0, &Reply::Completion { tid, payload })
        .expect("the guest's ring");
}

fuzz_target!(|data: &[u8]| {
    let (&cfg, rest) = data.split_first().unwrap_or((&0, &[]));
    let (&host_max, directives) = rest.split_first().unwrap_or((&0, &[]));
    let versions = nvsp::VERSIONS;
    let config = NicConfig {
        mtu: MTUS[usize::from(cfg >> 6)],
        queues: 1 + u16::from(cfg & 3),
        max_nvsp_version: versions[usize::from((cfg >> 2) & 7) % versions.len()],
        sriov: cfg & 0x20 != 0,
        pool_buffers: netvsc::nic::MIN_POOL_BUFFERS,
        control_timeout: CONTROL_TIMEOUT,
        ..NicConfig::default()
    };
    let identity = HostIdentity {
        max_version: versions[usize::from(host_max) % versions.len()],
        ..HostIdentity::default()
    };
    let mut bus = bus_config();
    // Jumbo frames need a bigger pool.
    bus.dma_size = 256 * 4096;
    let (handle, device) = step_bus(identity, &bus).expect("bus");
    let log = Arc::new(Mutex::new(Log {
        clean: true,
        ..Log::default()
    }));
    handle.set_responder(Fuzzed {
        input: directives.to_vec(),
        pos: 0,
        log: log.clone(),
    });

    let start = Instant::now();
    let result = SyntheticNic::open(Box::new(device), config.clone());
    let elapsed = start.elapsed();
    assert_eq!(
        handle.host().excess_completions(),
        0,
        "the guest completed a transfer-page packet twice or one never sent"
    );
    assert!(elapsed < Duration::from_secs(3), "open took {elapsed:?}");

    match result {
        Ok((nic, mut queues)) => {
            let sizes = {
                let host = handle.host();
                let log = log.lock().unwrap();
                check_accepted(&nic, queues.len(), &config, &host, &log);
                section_sizes(&log, host.sendbuf().len())
            };
            check_session(&nic, &mut queues, &handle, &sizes);
            // The well-behaved host answers the close at once (dropping the NIC would close
            // it too): a clean session closes cleanly and in bound.
            let start = Instant::now();
            let closed = nic.close(Duration::from_secs(1));
            assert!(nic.is_closed());
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "close took {:?}",
                start.elapsed()
            );
            if log.lock().unwrap().clean {
                assert!(
                    matches!(closed, Ok(()) | Err(NicError::Timeout { .. })),
                    "close against a well-behaved host failed: {closed:?}"
                );
            }
        }
        Err(NicError::Timeout { .. }) => {}
        Err(error) => assert!(
            !log.lock().unwrap().clean,
            "open failed against a well-behaved host: {error}"
        ),
    }
});
