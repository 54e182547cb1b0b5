//! One XDP socket: its UMEM (a pool), its four rings, and the frames the kernel holds.
//!
//! This module opts in to `unsafe` for one call: registering the pool's memory as the UMEM,
//! whose soundness rests on how this module lends chunks to the kernel.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use packet::{MemError, Packet, Pool, SharedMemory};

use super::ring::Ring;
use super::sys::{self, RingKind, UmemArea};
use crate::kernel::{ETH_HEADER, VLAN_TAG, fits};

/// How long a bind waits for the kernel to let go of a socket closed on the same queue.
const BIND_BUSY_WAIT: Duration = Duration::from_secs(2);
/// Kick attempts per transmit burst (in copy mode the kernel sends at most a batch per call).
const KICKS_PER_BURST: usize = 8;

/// UMEMs this process has registered and not yet released (sockets open).
static OPEN_UMEMS: AtomicUsize = AtomicUsize::new(0);

/// UMEMs this process has registered and not yet released: each open socket has one.
pub fn open_umems() -> usize {
    OPEN_UMEMS.load(Ordering::Acquire)
}

/// What one socket counted (its queue's poller writes them under the queue's lock).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XskCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_frame_errors: u64,
    pub rx_descriptor_errors: u64,
    pub rx_no_buffer: u64,
    pub rx_dropped_stop: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_lost: u64,
}

/// An open, bound XDP socket and the frames it has lent the kernel.
#[derive(Debug)]
pub struct Xsk {
    // The rings are unmapped before the socket closes, and the socket closes before the
    // tables and the pool go: the kernel stops using the UMEM before its buffers return.
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    fill: Ring<u64>,
    completion: Ring<u64>,
    fd: OwnedFd,
    /// Buffers on the fill ring (or being received into), by chunk.
    posted: Vec<Option<Packet>>,
    /// Frames on the TX ring not completed yet, by chunk.
    in_flight: Vec<Option<Packet>>,
    in_flight_count: usize,
    /// Packets on their way between the pool and the tables (kept for its capacity).
    scratch: Vec<Packet>,
    pool: Pool,
    chunk: u64,
    mtu: usize,
    /// The queue index on the interface.
    pub queue: u16,
    /// Whether the socket is zero-copy.
    pub zero_copy: bool,
    /// The socket is no longer bound (its device was unregistered): nothing more moves.
    pub unbound: bool,
    /// The kernel's `XDP_STATISTICS` as last read (the counters take the differences).
    kernel_seen: libc::xdp_statistics,
    /// What this socket counted.
    pub counters: XskCounters,
}

/// Settings of one socket.
#[derive(Clone, Copy, Debug)]
pub struct XskSetup {
    pub ifindex: u32,
    pub queue: u16,
    pub ring_size: u32,
    pub chunks: u32,
    pub chunk: u32,
    pub mtu: usize,
    /// `XDP_COPY` (generic mode, or zero-copy not wanted).
    pub copy: bool,
}

/// A socket call failed: what was being done.
fn context(op: &'static str) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{op}: {e}"))
}

fn memory(e: MemError) -> io::Error {
    io::Error::other(format!("the UMEM: {e}"))
}

impl Xsk {
    /// Opens a socket on `setup.queue` of `setup.ifindex` with a UMEM of its own, its fill
    /// ring full, bound (not yet in any XSKMAP).
    pub fn open(setup: XskSetup) -> io::Result<Self> {
        let fd = sys::xsk_socket().map_err(context("opening an AF_XDP socket"))?;
        let bytes = (setup.chunks as usize)
            .checked_mul(setup.chunk as usize)
            .ok_or_else(|| io::Error::other("UMEM size overflows"))?;
        let memory_region = SharedMemory::anonymous(bytes).map_err(memory)?;
        let pool = Pool::new(memory_region, setup.chunk as usize).map_err(memory)?;
        debug_assert_eq!(pool.buf_size(), setup.chunk as usize);
        let area = UmemArea {
            addr: pool.memory().as_mut_ptr(),
            len: pool.memory().len(),
        };
        // SAFETY: the pool's memory (an anonymous mapping the pool keeps alive, through every
        // clone and every packet, past this socket: `Xsk` drops the socket before its pool)
        // is what is registered. The kernel touches a chunk only while it is posted on the
        // fill ring (its `Packet` parked in `posted`, never read by us until the RX ring hands
        // it back) or on the TX ring (parked in `in_flight` until the completion ring hands it
        // back): no Rust reference into a chunk exists while the kernel has it.
        unsafe { sys::register_umem(fd.as_fd(), area, setup.chunk) }
            .map_err(context("registering the UMEM"))?;
        for kind in [
            RingKind::Fill,
            RingKind::Completion,
            RingKind::Rx,
            RingKind::Tx,
        ] {
            sys::set_ring_size(fd.as_fd(), kind, setup.ring_size)
                .map_err(context("sizing the rings"))?;
        }
        let [rx_off, tx_off, fill_off, completion_off] =
            sys::ring_offsets(fd.as_fd()).map_err(context("reading the ring offsets"))?;
        let bad_layout = || io::Error::other("the kernel's ring layout does not fit its mapping");
        let map = |kind: RingKind, off: sys::RingOffsets| {
            let len = off.desc + setup.ring_size as usize * kind.entry_size();
            sys::map_ring(fd.as_fd(), kind, len).map_err(context("mapping a ring"))
        };
        let rx = Ring::new(
            map(RingKind::Rx, rx_off)?,
            rx_off,
            setup.ring_size,
            RingKind::Rx,
        )
        .ok_or_else(bad_layout)?;
        let tx = Ring::new(
            map(RingKind::Tx, tx_off)?,
            tx_off,
            setup.ring_size,
            RingKind::Tx,
        )
        .ok_or_else(bad_layout)?;
        let fill = Ring::new(
            map(RingKind::Fill, fill_off)?,
            fill_off,
            setup.ring_size,
            RingKind::Fill,
        )
        .ok_or_else(bad_layout)?;
        let completion = Ring::new(
            map(RingKind::Completion, completion_off)?,
            completion_off,
            setup.ring_size,
            RingKind::Completion,
        )
        .ok_or_else(bad_layout)?;
        let capacity = pool.capacity();
        OPEN_UMEMS.fetch_add(1, Ordering::AcqRel);
        let mut xsk = Self {
            rx,
            tx,
            fill,
            completion,
            fd,
            posted: std::iter::repeat_with(|| None).take(capacity).collect(),
            in_flight: std::iter::repeat_with(|| None).take(capacity).collect(),
            in_flight_count: 0,
            scratch: Vec::with_capacity(setup.ring_size as usize),
            pool,
            chunk: setup.chunk as u64,
            mtu: setup.mtu,
            queue: setup.queue,
            zero_copy: false,
            unbound: false,
            kernel_seen: zeroed_statistics(),
            counters: XskCounters::default(),
        };
        xsk.refill();
        let mut flags = libc::XDP_USE_NEED_WAKEUP;
        if setup.copy {
            flags |= libc::XDP_COPY;
        }
        // The kernel releases a closed socket's hold on its queue in deferred work: a socket
        // just closed on this queue (the last VF's, or a restart's) may still hold it for a
        // moment. Nothing signals the end of that work, so the bind is retried, bounded.
        let deadline = Instant::now() + BIND_BUSY_WAIT;
        loop {
            match sys::bind(xsk.fd.as_fd(), setup.ifindex, setup.queue as u32, flags) {
                Ok(()) => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(context("binding the AF_XDP socket")(e)),
            }
        }
        xsk.zero_copy = sys::zero_copy(xsk.fd.as_fd()).map_err(context("reading its mode"))?;
        Ok(xsk)
    }

    /// The socket.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The pool received frames come from (the UMEM).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The chunk a packet of this pool lies in.
    fn chunk_of(&self, p: &Packet) -> usize {
        ((p.bus_addr() - p.headroom() as u64) / self.chunk) as usize
    }

    /// Posts free buffers on the fill ring until it is full or the pool is empty.
    pub fn refill(&mut self) {
        let free = self.fill.free();
        // Taken from the pool in one go (one lock), then parked by chunk.
        let mut fresh = std::mem::take(&mut self.scratch);
        self.pool.alloc_bulk(&mut fresh, free as usize);
        let mut n = 0;
        for p in fresh.drain(..) {
            let index = self.chunk_of(&p);
            self.fill.write(n, index as u64 * self.chunk);
            self.posted[index] = Some(p);
            n += 1;
        }
        self.scratch = fresh;
        self.fill.submit(n);
        if self.zero_copy && n > 0 && self.fill.needs_wakeup() {
            let _ = sys::kick_rx(self.fd.as_fd());
        }
    }

    /// Moves at most `max` received frames to `out`; how many. Each descriptor is validated
    /// (a chunk we posted, a frame inside it, a length the MTU allows) before its buffer is
    /// handed out.
    pub fn rx(&mut self, out: &mut Vec<Packet>, max: usize, queue: u16) -> usize {
        let n = self.rx.available().min(max.min(u32::MAX as usize) as u32);
        let mut received = 0;
        for i in 0..n {
            let desc = self.rx.read(i);
            let index = (desc.addr / self.chunk) as usize;
            let offset = (desc.addr % self.chunk) as usize;
            let Some(mut p) = self.posted.get_mut(index).and_then(Option::take) else {
                self.counters.rx_descriptor_errors += 1;
                continue;
            };
            let len = desc.len as usize;
            let head = p.headroom();
            let inside = offset >= head && offset + len <= self.chunk as usize;
            if !inside || desc.options & libc::XDP_PKT_CONTD != 0 {
                // A frame outside its chunk, or a multi-buffer frame (never asked for).
                self.counters.rx_descriptor_errors += 1;
                continue;
            }
            let skip = offset - head;
            p.set_len(skip);
            p.pull_head(skip);
            p.set_len(len);
            if !fits(self.mtu, p.data()) {
                self.counters.rx_frame_errors += 1;
                continue;
            }
            p.meta.queue = queue;
            self.counters.rx_packets += 1;
            self.counters.rx_bytes += len as u64;
            out.push(p);
            received += 1;
        }
        self.rx.release(n);
        if n > 0 {
            self.refill();
        }
        received
    }

    /// Takes back the buffers of completed transmits.
    pub fn reap(&mut self) {
        let n = self.completion.available();
        if n == 0 {
            return;
        }
        let mut done = std::mem::take(&mut self.scratch);
        for i in 0..n {
            let addr = self.completion.read(i);
            let index = (addr / self.chunk) as usize;
            match self.in_flight.get_mut(index).and_then(Option::take) {
                Some(p) => {
                    self.in_flight_count -= 1;
                    self.counters.tx_packets += 1;
                    self.counters.tx_bytes += p.len() as u64;
                    done.push(p);
                }
                // An address we never sent: the kernel's error, counted.
                None => self.counters.rx_descriptor_errors += 1,
            }
        }
        self.completion.release(n);
        // Back to the pool in one go.
        packet::pool::free_bulk(done.drain(..));
        self.scratch = done;
    }

    /// Frames on the TX ring not completed yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight_count
    }

    /// Asks the kernel to send what is on the TX ring (in copy mode it does so in the call).
    /// An error that says the device is down or gone is returned; a full queue is not.
    pub fn kick(&mut self) -> io::Result<()> {
        if self.zero_copy && !self.tx.needs_wakeup() {
            return Ok(());
        }
        for _ in 0..KICKS_PER_BURST {
            match sys::kick_tx(self.fd.as_fd()) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::EINTR)
                    ) => {}
                Err(e) => {
                    if e.raw_os_error() == Some(libc::ENXIO) {
                        self.unbound = true;
                    }
                    return Err(e);
                }
            }
            self.tx.free();
            if self.tx.outstanding() == 0 || self.zero_copy {
                break;
            }
        }
        Ok(())
    }

    /// Puts frames from the front of `frames` on the TX ring: a frame of this socket's own
    /// pool in place, any other copied into a chunk (with the VLAN tag its metadata asks for
    /// inserted). Frames that do not fit the MTU are taken and counted in `tx_lost`. Stops
    /// when the ring or the pool is full; how many frames were taken.
    pub fn tx(&mut self, frames: &mut Vec<Packet>) -> usize {
        self.reap();
        let room = self.tx.free() as usize;
        // Only this queue allocates from the pool, so what is free now stays free.
        let mut chunks = self.pool.available();
        let mut take = 0;
        for p in frames.iter().take(room) {
            let in_place = p.is_from(&self.pool) && p.meta.vlan_tci.is_none();
            if !in_place {
                if chunks == 0 {
                    break;
                }
                chunks -= 1;
            }
            take += 1;
        }
        let mut n = 0;
        for p in frames.drain(..take) {
            let tagged = p.meta.vlan_tci.is_some();
            let wire_len = p.len() + if tagged { VLAN_TAG } else { 0 };
            if p.len() < ETH_HEADER || !fits_wire(self.mtu, p.data(), tagged) {
                self.counters.tx_lost += 1;
                continue;
            }
            let frame = if p.is_from(&self.pool) && !tagged {
                p
            } else {
                let Some(mut q) = self.pool.alloc() else {
                    // Counted above: cannot happen, but a frame is never dropped uncounted.
                    self.counters.tx_lost += 1;
                    continue;
                };
                if wire_len > q.max_len() {
                    self.counters.tx_lost += 1;
                    continue;
                }
                q.set_len(wire_len);
                let data = q.data_mut();
                match p.meta.vlan_tci {
                    None => data.copy_from_slice(p.data()),
                    Some(tci) => {
                        let src = p.data();
                        data[..12].copy_from_slice(&src[..12]);
                        data[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
                        data[14..16].copy_from_slice(&tci.to_be_bytes());
                        data[16..].copy_from_slice(&src[12..]);
                    }
                }
                q
            };
            let index = self.chunk_of(&frame);
            self.tx.write(
                n,
                libc::xdp_desc {
                    addr: frame.bus_addr(),
                    len: frame.len() as u32,
                    options: 0,
                },
            );
            self.in_flight[index] = Some(frame);
            self.in_flight_count += 1;
            n += 1;
        }
        self.tx.submit(n);
        take
    }

    /// The kernel's counters since the last look, added to ours: frames it dropped for want
    /// of a fill-ring buffer or RX-ring room (`rx_no_buffer`), invalid fill addresses
    /// (`rx_descriptor_errors`).
    pub fn collect_kernel_stats(&mut self) {
        let Ok(now) = sys::statistics(self.fd.as_fd()) else {
            return;
        };
        let seen = &self.kernel_seen;
        let delta = |a: u64, b: u64| a.saturating_sub(b);
        self.counters.rx_no_buffer +=
            delta(now.rx_dropped, seen.rx_dropped) + delta(now.rx_ring_full, seen.rx_ring_full);
        self.counters.rx_descriptor_errors += delta(now.rx_invalid_descs, seen.rx_invalid_descs);
        self.kernel_seen = now;
    }

    /// Waits (until `deadline`) for the frames on the TX ring to complete, then counts what
    /// did not in `tx_lost` and the frames left on the RX ring in `rx_dropped_stop`.
    pub fn stop(&mut self, deadline: Instant) {
        loop {
            self.reap();
            if self.in_flight_count == 0 || self.unbound {
                break;
            }
            if self.kick().is_err() || Instant::now() >= deadline {
                break;
            }
            std::thread::yield_now();
        }
        self.abandon_in_flight();
        let left = self.rx.available();
        self.counters.rx_dropped_stop += left as u64;
        self.rx.release(left);
    }

    /// Counts every frame still on the TX ring as lost and takes its buffer back.
    pub fn abandon_in_flight(&mut self) {
        self.reap();
        if self.in_flight_count > 0 {
            self.counters.tx_lost += self.in_flight_count as u64;
            for slot in &mut self.in_flight {
                slot.take();
            }
            self.in_flight_count = 0;
        }
    }
}

impl Drop for Xsk {
    fn drop(&mut self) {
        OPEN_UMEMS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether `frame` (with a 4-byte tag to be inserted when `tagged`) fits `mtu`.
fn fits_wire(mtu: usize, frame: &[u8], tagged: bool) -> bool {
    if !tagged {
        return fits(mtu, frame);
    }
    // The inserted tag is the one the MTU allows for.
    frame.len() <= mtu + ETH_HEADER
}

fn zeroed_statistics() -> libc::xdp_statistics {
    libc::xdp_statistics {
        rx_dropped: 0,
        rx_invalid_descs: 0,
        tx_invalid_descs: 0,
        rx_ring_full: 0,
        rx_fill_ring_empty_descs: 0,
        tx_ring_empty_descs: 0,
    }
}
