//! The simulated host's uio node: what `uio_hv_generic` and the kernel's VMBus driver do for
//! a client of a NetVSC, played over a unix socket.
//!
//! A real `/dev/uioN` is a character device: `mmap(fd, K × 4096)` maps uio map K (the offset
//! only selects the map), 4-byte writes enable or disable interrupts and 4-byte reads return
//! the interrupt count. No file can do the first, so the node is a unix stream socket at the
//! node's path, and the client runs with the `hvnet-sim-uio` preload library
//! (`integration/uio-preload`), which turns `open` of such a path into a connection and `mmap`
//! of map K into a map of the memory fd this server sends.
//!
//! **Protocol "hvnet-sim-uio v1".** On accept the server sends one message: 16 bytes of header
//! (`b"hvsu"`, version `1`, map count, `0`, little-endian `u32`s), then per map its offset and
//! size in the memory fd (little-endian `u64`s, page multiples), with the memory fd attached
//! (`SCM_RIGHTS`). After it the stream is the uio interrupt protocol: the client writes
//! 4-byte `i32`s (1 enables interrupts, 0 disables), the server writes 4-byte `u32` counts.
//!
//! **The kernel's part.** The first open of a real node opens the primary channel; the last
//! close closes it. Here the bus opens the primary channel when it is made, and a client that
//! comes after every connection of the previous one closed gets a new session: the server
//! reopens the channel (the host zeroes the rings and acknowledges once its new session is
//! ready) before it answers the client. Interrupts the host raises on the primary channel are
//! passed to every client that enabled them, as counts; clients that do not read lose counts,
//! never block the host (a real uio count also coalesces).

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use netvsc::vmbus::VmbusDevice;
use netvsc::vmbus::shm::{CTRL_SUBCHANNELS_OFFERED, ShmDevice};
use packet::SharedMemory;

use super::channels::Subchannels;
use super::sys;

/// The handshake's magic.
pub const MAGIC: [u8; 4] = *b"hvsu";
/// The handshake's version.
pub const VERSION: u32 = 1;
/// How long the server waits for the host to acknowledge a new session.
const REOPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest the server sleeps between looking at its socket and its clients.
const TICK: Duration = Duration::from_millis(1);
/// The most clients connected at once (DPDK opens the node six times at most at once).
const MAX_CLIENTS: usize = 64;

/// One uio map as the client sees it: index K is mapped by `mmap(fd, K × 4096)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UioMap {
    /// The map's uio name (`txrx_rings`, `int_page`, `monitor_page`, `recv:<gpadl>`,
    /// `send:<gpadl>`).
    pub name: String,
    /// Byte offset in the memory fd.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
}

/// The handshake bytes for `maps`.
pub fn handshake(maps: &[UioMap]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 16 * maps.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(maps.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for map in maps {
        out.extend_from_slice(&map.offset.to_le_bytes());
        out.extend_from_slice(&map.size.to_le_bytes());
    }
    out
}

/// Counters of the node.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct UioNodeStats {
    /// Connections accepted (each `open` of the node).
    pub opens: u64,
    /// Sessions started (a client after every connection of the previous one closed).
    pub sessions: u64,
    /// Connections open now.
    pub clients: u64,
    /// Interrupt counts written to clients.
    pub interrupts: u64,
    /// Connections refused (handshake failed, too many clients, or the reopen failed).
    pub refused: u64,
    /// Subchannels published in the current session.
    pub subchannels: u64,
}

#[derive(Debug, Default)]
struct Counters {
    opens: AtomicU64,
    sessions: AtomicU64,
    clients: AtomicU64,
    interrupts: AtomicU64,
    refused: AtomicU64,
    subchannels: AtomicU64,
}

/// The served node; dropping it stops the server and removes the socket.
#[derive(Debug)]
pub struct UioNode {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

struct Client {
    stream: UnixStream,
    irq_enabled: bool,
    /// Bytes of a 4-byte write not yet complete.
    partial: Vec<u8>,
}

impl UioNode {
    /// Serves the node at `path` for the guest side `device` of a bus whose memory is
    /// `memory`, describing `maps`, and publishes the subchannels the host offers.
    pub(crate) fn serve(
        path: &Path,
        device: ShmDevice,
        memory: SharedMemory,
        maps: Vec<UioMap>,
        subchannels: Subchannels,
        heap: HeapNode,
    ) -> io::Result<Self> {
        if memory.fd().is_none() {
            return Err(io::Error::other("the bus memory has no file to hand out"));
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let thread = {
            let (stop, counters) = (stop.clone(), counters.clone());
            let bytes = handshake(&maps);
            std::thread::Builder::new()
                .name("sim-uio".into())
                .spawn(move || {
                    let mut node = Served {
                        device,
                        memory,
                        handshake: bytes,
                        subchannels,
                        subchannels_opened: false,
                        heap,
                        clients: Vec::new(),
                        sessions: 0,
                    };
                    node.run(&listener, &stop, &counters);
                })?
        };
        Ok(Self {
            path: path.to_path_buf(),
            stop,
            counters,
            thread: Some(thread),
        })
    }

    /// The node's counters.
    pub fn stats(&self) -> UioNodeStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &self.counters;
        UioNodeStats {
            opens: get(&c.opens),
            sessions: get(&c.sessions),
            clients: get(&c.clients),
            interrupts: get(&c.interrupts),
            refused: get(&c.refused),
            subchannels: get(&c.subchannels),
        }
    }
}

impl Drop for UioNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The server thread's state.
struct Served {
    device: ShmDevice,
    memory: SharedMemory,
    handshake: Vec<u8>,
    subchannels: Subchannels,
    /// Whether this session's offered subchannels were opened on the bus.
    subchannels_opened: bool,
    heap: HeapNode,
    clients: Vec<Client>,
    sessions: u64,
}

impl Served {
    /// The server loop: accepts, answers, publishes subchannels, relays interrupts, until
    /// `stop`.
    fn run(&mut self, listener: &UnixListener, stop: &AtomicBool, counters: &Counters) {
        while !stop.load(Ordering::Acquire) {
            self.accept(listener, counters);
            self.clients.retain_mut(read_client);
            counters
                .clients
                .store(self.clients.len() as u64, Ordering::Relaxed);
            self.offer_subchannels(counters);
            self.subchannels.serve(&self.memory);
            self.heap.serve(&self.memory, self.clients.is_empty());
            // Waiting for the host's interrupt paces the loop; without a channel to wait on
            // (a dead session), a short sleep does.
            match self.device.wait_for_interrupt(TICK) {
                Ok(true) => {
                    for c in self.clients.iter_mut().filter(|c| c.irq_enabled) {
                        // Non-blocking: a client that does not read loses counts, as they
                        // coalesce on a real node too.
                        if c.stream.write_all(&1u32.to_ne_bytes()).is_ok() {
                            counters.interrupts.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Ok(false) => {}
                Err(_) => std::thread::sleep(TICK),
            }
        }
    }

    /// Once the host offered subchannels this session: opens them on the bus and publishes
    /// them, as `uio_hv_generic` does on the offers.
    fn offer_subchannels(&mut self, counters: &Counters) {
        if self.subchannels_opened {
            return;
        }
        let offered = self
            .memory
            .atomic_u32(CTRL_SUBCHANNELS_OFFERED)
            .map(|w| w.load(Ordering::Acquire))
            .unwrap_or(0) as usize;
        if offered == 0 {
            return;
        }
        self.subchannels_opened = true;
        let count = offered.min(self.subchannels.max()) as u16;
        match self.device.open_subchannels(count, REOPEN_TIMEOUT) {
            Ok(_) => match self.subchannels.publish(usize::from(count)) {
                Ok(()) => {
                    counters
                        .subchannels
                        .store(self.subchannels.count() as u64, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!("sim-host: publishing {count} subchannels: {e}"),
            },
            Err(e) => tracing::warn!("sim-host: opening {count} subchannels: {e}"),
        }
    }

    /// Accepts every waiting connection.
    fn accept(&mut self, listener: &UnixListener, counters: &Counters) {
        loop {
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("sim-host uio node: accept failed: {e}");
                    return;
                }
            };
            counters.opens.fetch_add(1, Ordering::Relaxed);
            if self.clients.len() >= MAX_CLIENTS {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // The first open after every connection of the last session closed: a new
            // session, as the kernel opens the channel again on a fresh open of the node (and
            // the old session's subchannels are gone).
            if self.clients.is_empty() {
                if self.sessions > 0 {
                    self.subchannels.withdraw();
                    self.subchannels_opened = false;
                    counters.subchannels.store(0, Ordering::Relaxed);
                    if let Err(e) = self.device.reopen(REOPEN_TIMEOUT) {
                        tracing::warn!(
                            "sim-host uio node: the host did not open a new session: {e}"
                        );
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                self.sessions += 1;
                counters.sessions.store(self.sessions, Ordering::Relaxed);
            }
            let Some(fd) = self.memory.fd() else {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let sent = stream
                .set_nonblocking(true)
                .and_then(|()| sys::send_with_fd(&stream, &self.handshake, fd.as_fd()));
            match sent {
                Ok(()) => self.clients.push(Client {
                    stream,
                    irq_enabled: false,
                    partial: Vec::new(),
                }),
                Err(e) => {
                    tracing::warn!("sim-host uio node: handshake failed: {e}");
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Reads what the client wrote (interrupt enable and disable); `false` once it closed.
fn read_client(client: &mut Client) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match client.stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                client.partial.extend_from_slice(&buf[..n]);
                let whole = client.partial.len() / 4 * 4;
                for word in client.partial[..whole].chunks_exact(4) {
                    let value = i32::from_ne_bytes([word[0], word[1], word[2], word[3]]);
                    client.irq_enabled = value != 0;
                }
                client.partial.drain(..whole);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_is_the_documented_bytes() {
        let maps = [
            UioMap {
                name: "txrx_rings".into(),
                offset: 0x2000,
                size: 0x4000,
            },
            UioMap {
                name: "int_page".into(),
                offset: 0x9000,
                size: 0x1000,
            },
        ];
        let bytes = handshake(&maps);
        assert_eq!(&bytes[..4], b"hvsu");
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 2);
        assert_eq!(&bytes[12..16], &[0; 4]);
        assert_eq!(
            u64::from_le_bytes(bytes[16..24].try_into().unwrap()),
            0x2000
        );
        assert_eq!(
            u64::from_le_bytes(bytes[24..32].try_into().unwrap()),
            0x4000
        );
        assert_eq!(
            u64::from_le_bytes(bytes[32..40].try_into().unwrap()),
            0x9000
        );
        assert_eq!(
            u64::from_le_bytes(bytes[40..48].try_into().unwrap()),
            0x1000
        );
        assert_eq!(bytes.len(), 48);
    }
}

/// The `memory` node: hands a client the host's memory for its heap (DPDK's EAL without
/// hugepages, through the preload library), so that its IOVAs are the host's GPAs.
///
/// The client keeps the connection while it lives. When a client comes and no other holds
/// the memory and no client has the device open, the client-heap part of the memory is
/// zeroed first (EAL assumes fresh memory is zero; a second client would otherwise find the
/// first one's heap).
#[derive(Debug)]
pub(crate) struct HeapNode {
    path: PathBuf,
    listener: UnixListener,
    handshake: Vec<u8>,
    /// Where clients' heaps may lie: zeroed between clients.
    heap: (usize, usize),
    holders: Vec<UnixStream>,
}

impl HeapNode {
    /// Serves at `path` the memory of `size` bytes, zeroing `heap` (offset, length) between
    /// clients.
    pub(crate) fn bind(path: &Path, size: u64, heap: (usize, usize)) -> io::Result<Self> {
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            path: path.to_path_buf(),
            listener,
            handshake: handshake(&[UioMap {
                name: "memory".into(),
                offset: 0,
                size,
            }]),
            heap,
            holders: Vec::new(),
        })
    }

    fn serve(&mut self, memory: &SharedMemory, device_idle: bool) {
        self.holders.retain_mut(|h| {
            let mut byte = [0u8; 1];
            match h.read(&mut byte) {
                Ok(0) => false,
                Ok(_) => true,
                Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            }
        });
        let Some(fd) = memory.fd() else {
            return;
        };
        while let Ok((stream, _)) = self.listener.accept() {
            if self.holders.is_empty() && device_idle {
                let (offset, len) = self.heap;
                if let Err(e) = sys::punch_hole(fd.as_fd(), offset, len) {
                    tracing::warn!("sim-host: zeroing the client heap area: {e}");
                }
            }
            match stream
                .set_nonblocking(true)
                .and_then(|()| sys::send_with_fd(&stream, &self.handshake, fd.as_fd()))
            {
                Ok(()) => self.holders.push(stream),
                Err(e) => tracing::warn!("sim-host: answering the memory node: {e}"),
            }
        }
    }
}

impl Drop for HeapNode {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
