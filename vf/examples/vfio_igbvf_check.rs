//! The guest side of the QEMU tier (`tests/qemu/run`): drives one 82576 VF through real VFIO
//! with the igbvf driver, exchanges checked frames with the host end of the wire
//! (`tests/qemu/wire.py`), then waits for the host to take the VF back (the VFIO request IRQ,
//! fired by `echo 0 > sriov_numvfs` in the guest's init script) and releases it.
//!
//! Usage: `vfio_igbvf_check --bdf 0000:01:10.0 [--mode type1|noiommu] [--tx-frames N]
//! [--rx-frames M] [--remove-start-file PATH] [--request-wait-secs S]`
//!
//! Protocol with `wire.py` (all frames ethertype 0x88b5, payload tag first):
//! - `HVNET-HELLO` + round + M (u32 BE each), VF -> host, to the host MAC: the host answers each one with
//!   M `HVNET-RX` frames (seq 0..M) unicast to the hello's source MAC;
//! - `HVNET-RX` + seq + count (u32 BE each) + pattern, host -> VF: checked here, byte for byte;
//! - `HVNET-TX` + seq + count + pattern, VF -> host, to the host MAC: checked by `wire.py`.
//!
//! Prints `RESULT name=<check> ok=0|1 ...` lines (one per check) and `READY-FOR-REMOVAL` when the
//! init script may remove the VF. Times are guest uptime (`/proc/uptime`, 10 ms resolution), the
//! same clock the init script stamps the removal with. Exit status 0 only if every check passed.
//!
//! One thing is done here that the driver does not do (see `tx_pool`): frames are sent from a
//! pool whose buffers never cross a 4 KiB page, because QEMU's igb model drops a TX buffer that
//! crosses an IOVA page behind the emulated VT-d (`pci_dma_map` returns short) yet still writes
//! DD. Real hardware has no such limit. The check also confirms that the driver switched bus
//! mastering on (vfio-pci leaves it off).

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use packet::{MacAddr, Packet, Pool, PortQueue};
use vf::device::VfDevice;
use vf::igbvf::{Igbvf, IgbvfConfig, IgbvfQueue};
use vf::port::{VfEvent, VfPort};
use vf::vfio::{IommuMode, VfioConfig, VfioDevice};

/// Ethertype of every test frame (IEEE 802 local experimental).
const ETHERTYPE: u16 = 0x88b5;
/// The host end of the wire (`wire.py` uses the same address).
const HOST_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x48, 0x56, 0x01]);
const TAG_HELLO: &[u8] = b"HVNET-HELLO";
const TAG_RX: &[u8] = b"HVNET-RX";
const TAG_TX: &[u8] = b"HVNET-TX";
/// Largest frame either side sends (no FCS): a full 1500-byte MTU.
const MAX_FRAME: usize = 1514;
const MIN_FRAME: usize = 60;

#[derive(Debug)]
struct Args {
    bdf: String,
    mode: IommuMode,
    tx_frames: u32,
    rx_frames: u32,
    remove_start_file: Option<String>,
    request_wait: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        bdf: String::new(),
        mode: IommuMode::Type1,
        tx_frames: 64,
        rx_frames: 32,
        remove_start_file: None,
        request_wait: Duration::from_secs(20),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u32>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--bdf" => args.bdf = value()?,
            "--mode" => {
                args.mode = match value()?.as_str() {
                    "type1" => IommuMode::Type1,
                    "noiommu" => IommuMode::NoIommu,
                    other => return Err(format!("unknown mode {other}")),
                }
            }
            "--tx-frames" => args.tx_frames = number(value()?)?,
            "--rx-frames" => args.rx_frames = number(value()?)?,
            "--remove-start-file" => args.remove_start_file = Some(value()?),
            "--request-wait-secs" => {
                args.request_wait = Duration::from_secs(u64::from(number(value()?)?));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.bdf.is_empty() {
        return Err("--bdf is required".to_owned());
    }
    Ok(args)
}

/// Guest uptime in seconds (the clock the init script uses too).
fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Length of test frame `seq` (`salt` differs per direction): spread over 60..=1514 bytes.
fn frame_len(seq: u32, salt: u32) -> usize {
    MIN_FRAME + ((seq.wrapping_mul(salt) as usize) % (MAX_FRAME - MIN_FRAME + 1))
}

/// Payload byte `k` (counted from the start of the frame) of test frame `seq`.
fn pattern_byte(seq: u32, k: usize, mul: u32, add: u32) -> u8 {
    (seq.wrapping_mul(mul)
        .wrapping_add((k as u32).wrapping_mul(7))
        .wrapping_add(add)) as u8
}

/// Builds a test frame: header, tag, seq, count, then the pattern up to its length.
fn build_frame(
    dst: MacAddr,
    src: MacAddr,
    tag: &[u8],
    seq: u32,
    count: u32,
    len: usize,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(len.max(MIN_FRAME));
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(tag);
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&count.to_be_bytes());
    while f.len() < len.max(MIN_FRAME) {
        let k = f.len();
        f.push(pattern_byte(seq, k, 31, 0x11));
    }
    f
}

/// What an `HVNET-RX` frame must be: from the host, to us, exact length and pattern.
fn check_rx_frame(frame: &[u8], own: MacAddr) -> Result<Option<u32>, String> {
    let hdr = 14 + TAG_RX.len();
    if frame.len() < 14
        || frame[12..14] != ETHERTYPE.to_be_bytes()
        || !frame[14..].starts_with(TAG_RX)
    {
        return Ok(None); // not a test frame (the PF's ARP/ND traffic, ...)
    }
    if frame.len() < hdr + 8 {
        return Err(format!("short test frame ({} bytes)", frame.len()));
    }
    let seq = u32::from_be_bytes(frame[hdr..hdr + 4].try_into().expect("4 bytes"));
    if frame[0..6] != own.0 || frame[6..12] != HOST_MAC.0 {
        return Err(format!("seq {seq}: wrong addresses {:02x?}", &frame[0..12]));
    }
    let want = frame_len(seq, 131);
    if frame.len() != want {
        return Err(format!(
            "seq {seq}: length {} instead of {want}",
            frame.len()
        ));
    }
    if let Some(k) = (hdr + 8..frame.len()).find(|&k| frame[k] != pattern_byte(seq, k, 13, 0x5a)) {
        return Err(format!("seq {seq}: payload differs at byte {k}"));
    }
    Ok(Some(seq))
}

/// Stride of the transmit buffers: a divisor of 4 KiB, so no frame crosses a page.
const TX_BUF: usize = 2048;

/// The pool frames are sent from. QEMU's igb model maps a TX buffer with one
/// `pci_dma_map` and drops the frame (still writing `DD`) when the mapping comes back shorter,
/// which behind the emulated VT-d happens whenever the buffer crosses a 4 KiB IOVA page; the
/// driver's own pool has 2176-byte buffers (2048 + headroom) that do. A page-aligned DMA
/// region cut into 2048-byte buffers never crosses a page.
fn tx_pool(dev: &dyn VfDevice) -> Result<Pool, String> {
    let mem = dev.dma_alloc(TX_BUF * 128).map_err(|e| e.to_string())?;
    if mem.bus_addr(0) % 4096 != 0 {
        return Err(format!(
            "tx pool at {:#x} is not page aligned",
            mem.bus_addr(0)
        ));
    }
    Pool::new(mem, TX_BUF).map_err(|e| e.to_string())
}

/// PCI_COMMAND and its bus-master enable bit.
const PCI_COMMAND: u16 = 0x04;
const PCI_COMMAND_MASTER: u16 = 0x04;

/// Whether PCI_COMMAND.BME is set (the driver must have set it in `open`).
fn bus_master_on(dev: &dyn VfDevice) -> bool {
    dev.config_read16(PCI_COMMAND)
        .is_ok_and(|cmd| cmd & PCI_COMMAND_MASTER != 0)
}

fn result(name: &str, ok: bool, detail: &str) -> bool {
    println!("RESULT name={name} ok={} {detail}", u8::from(ok));
    ok
}

/// Sends `frames` (copied into buffers of `pool`), retrying while the ring is full; returns how
/// many were taken, bounded by `deadline`.
fn send(
    queue: &mut IgbvfQueue,
    pool: &Pool,
    port: &Igbvf,
    frames: &[Vec<u8>],
    deadline: Instant,
) -> usize {
    let mut batch: Vec<Packet> = Vec::new();
    let mut next = 0;
    let mut taken = 0;
    while (next < frames.len() || !batch.is_empty()) && Instant::now() < deadline {
        while next < frames.len() {
            match pool.alloc_from(&frames[next]) {
                Some(p) => {
                    batch.push(p);
                    next += 1;
                }
                None => break,
            }
        }
        taken += queue.tx_burst(&mut batch);
        if next < frames.len() || !batch.is_empty() {
            // ring or pool full: let completions come back (waits on the MSI-X eventfds)
            port.service(Duration::from_millis(5));
        }
    }
    taken
}

struct Run {
    args: Args,
    all_ok: bool,
}

impl Run {
    fn check(&mut self, name: &str, ok: bool, detail: &str) {
        self.all_ok &= result(name, ok, detail);
    }

    /// Services the port until the link is up (bounded); logs every event.
    fn wait_link(&self, port: &Igbvf, budget: Duration) -> bool {
        let deadline = Instant::now() + budget;
        while !port.link_up() && Instant::now() < deadline {
            for e in port.service(Duration::from_millis(50)) {
                println!("event {e:?} at {:.2}", uptime());
            }
        }
        port.link_up()
    }

    fn exchange(&mut self, port: &Igbvf, queue: &mut IgbvfQueue, tx_pool: &Pool) {
        let own = port.mac();
        // RX first: hello rounds until every injected frame arrived intact. The PF may still be
        // finishing the reset it does after enabling VFs, so a round can be lost: retry.
        let want = self.args.rx_frames;
        let mut got = BTreeSet::new();
        let (mut bad, mut other, mut rounds) = (0u32, 0u32, 0u32);
        let mut first_err = String::new();
        let t0 = Instant::now();
        let mut rx = Vec::new();
        while (got.len() as u32) < want && rounds < 10 {
            let hello = build_frame(HOST_MAC, own, TAG_HELLO, rounds, want, MIN_FRAME);
            send(
                queue,
                tx_pool,
                port,
                &[hello],
                Instant::now() + Duration::from_secs(1),
            );
            rounds += 1;
            let round_end = Instant::now() + Duration::from_secs(2);
            while (got.len() as u32) < want && Instant::now() < round_end {
                for e in port.service(Duration::from_millis(20)) {
                    println!("event {e:?} at {:.2}", uptime());
                }
                queue.rx_burst(&mut rx, 64);
                for p in rx.drain(..) {
                    match check_rx_frame(p.data(), own) {
                        Ok(Some(seq)) if seq < want => {
                            got.insert(seq);
                        }
                        Ok(Some(seq)) => {
                            bad += 1;
                            first_err = format!("seq {seq} out of range");
                        }
                        Ok(None) => other += 1,
                        Err(e) => {
                            bad += 1;
                            if first_err.is_empty() {
                                first_err = e;
                            }
                        }
                    }
                }
            }
        }
        let ok = got.len() as u32 == want && bad == 0;
        let err = if first_err.is_empty() {
            String::new()
        } else {
            format!(" first_error=\"{first_err}\"")
        };
        self.check(
            "rx",
            ok,
            &format!(
                "frames={}/{want} bad={bad} other={other} hello_rounds={rounds} ms={}{err}",
                got.len(),
                t0.elapsed().as_millis()
            ),
        );

        // TX: N frames with a pattern; the host checks them; here, every one must complete.
        let n = self.args.tx_frames;
        let frames: Vec<_> = (0..n)
            .map(|seq| build_frame(HOST_MAC, own, TAG_TX, seq, n, frame_len(seq, 97)))
            .collect();
        let bytes: usize = frames.iter().map(Vec::len).sum();
        // `service` refreshes the hardware counters (VFGPTC) kept in the stats
        port.service(Duration::ZERO);
        let before = port.stats();
        let t0 = Instant::now();
        let taken = send(
            queue,
            tx_pool,
            port,
            &frames,
            Instant::now() + Duration::from_secs(5),
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut stats = port.stats();
        while stats.tx_packets - before.tx_packets < taken as u64 && Instant::now() < deadline {
            port.service(Duration::from_millis(5));
            stats = port.stats();
        }
        let ms = t0.elapsed().as_millis();
        port.service(Duration::ZERO);
        stats = port.stats();
        let done = stats.tx_packets - before.tx_packets;
        let lost = stats.tx_lost - before.tx_lost;
        let hw_tx = stats.hw_tx_packets - before.hw_tx_packets;
        self.check(
            "tx",
            // VFGPTC counts what the NIC really put on the wire: a frame dropped after `DD`
            // shows here
            taken == frames.len() && done == u64::from(n) && lost == 0 && hw_tx == u64::from(n),
            &format!(
                "frames={done}/{n} taken={taken} bytes={bytes} lost={lost} hw_tx={hw_tx} ms={ms} tx_buf={TX_BUF}",
            ),
        );
    }

    /// Waits for the request IRQ, then stops and releases; the init script stamped the start
    /// of `echo 0 > sriov_numvfs` in `remove_start_file`.
    fn removal(&mut self, port: &Igbvf) {
        println!("READY-FOR-REMOVAL at {:.2}", uptime());
        let deadline = Instant::now() + self.args.request_wait;
        let mut requested = None;
        let mut seen = Vec::new();
        while requested.is_none() && Instant::now() < deadline {
            for e in port.service(Duration::from_millis(200)) {
                if e == VfEvent::ReleaseRequested {
                    requested = Some(uptime());
                } else {
                    seen.push(e);
                }
            }
        }
        let start = self
            .args
            .remove_start_file
            .as_deref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|s| s.trim().parse::<f64>().ok());
        let Some(t_req) = requested else {
            self.check(
                "release-request",
                false,
                &format!(
                    "no request irq within {:?}; other events {seen:?}",
                    self.args.request_wait
                ),
            );
            let _ = port.release();
            return;
        };
        let t = Instant::now();
        let stop = port.stop(Duration::from_millis(200));
        let release = port.release();
        let t_rel = uptime();
        let since = |x: f64| start.map_or(f64::NAN, |s| (x - s) * 1000.0);
        self.check(
            "release-request",
            start.is_some(),
            &format!("after_ms={:.0} other_events={seen:?}", since(t_req)),
        );
        let released_ms = since(t_rel);
        self.check(
            "released",
            stop.is_ok() && release.is_ok() && released_ms < 1000.0,
            &format!(
                "after_ms={released_ms:.0} stop_release_ms={} stop={stop:?} release={release:?} limit_ms=1000",
                t.elapsed().as_millis()
            ),
        );
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("vfio_igbvf_check: {e}");
            return ExitCode::from(2);
        }
    };
    let mut run = Run { args, all_ok: true };
    let t0 = Instant::now();
    let dev = match VfioDevice::open_kernel(&run.args.bdf, &VfioConfig::new(run.args.mode)) {
        Ok(d) => d,
        Err(e) => {
            run.check("open", false, &format!("vfio: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let group = dev.group();
    let dev: Arc<dyn VfDevice> = Arc::new(dev);
    let vfio_ms = t0.elapsed().as_millis();
    let config = IgbvfConfig {
        ring_size: 128,
        mailbox_timeout: Duration::from_secs(3),
        link_wait: Duration::from_secs(3),
        ..IgbvfConfig::default()
    };
    let (port, mut queues) = match Igbvf::open(dev.clone(), config) {
        Ok(p) => p,
        Err(e) => {
            run.check("open", false, &format!("igbvf: {e}"));
            let _ = dev.release();
            return ExitCode::FAILURE;
        }
    };
    let link = run.wait_link(&port, Duration::from_secs(10));
    let bme = bus_master_on(dev.as_ref());
    run.check(
        "open",
        link && bme && queues.len() == 1,
        &format!(
            "mode={:?} group={group} mac={} link={link} msix={} bme_by_driver={bme} vfio_ms={vfio_ms} \
             open_ms={}",
            run.args.mode,
            port.mac(),
            port.uses_msix(),
            t0.elapsed().as_millis()
        ),
    );
    if link {
        match tx_pool(dev.as_ref()) {
            Ok(pool) => run.exchange(&port, &mut queues[0], &pool),
            Err(e) => run.check("tx", false, &format!("tx pool: {e}")),
        }
    }
    run.removal(&port);
    drop(queues);
    drop(port);
    if run.all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
