//! Every system call of the AF_XDP backend: `bpf(2)` (the XSKMAP, the program, its link), the
//! XDP socket (UMEM registration, ring sizes and offsets, bind, wake-ups, statistics) and the
//! generic-netlink socket that asks the kernel what a driver's XDP can do.
//!
//! The `bpf_attr` layouts are the kernel's (`include/uapi/linux/bpf.h`), each the prefix of
//! the union that one command reads; the kernel accepts a shorter attribute than its own as
//! long as it is the prefix, and every byte passed is initialised (no padding holes: the
//! structs below are packed by construction, checked by their size assertions).
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use zerocopy::{Immutable, IntoBytes};

/// `bpf(2)` commands.
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;

/// `BPF_MAP_TYPE_XSKMAP`.
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
/// `BPF_PROG_TYPE_XDP`.
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `BPF_XDP`, the attach type of an XDP program.
const BPF_XDP: u32 = 37;

/// `XDP_FLAGS_SKB_MODE`: generic XDP, after the kernel built the skb (any interface).
pub const XDP_FLAGS_SKB_MODE: u32 = 2;
/// `XDP_FLAGS_DRV_MODE`: native XDP, in the driver's receive path.
pub const XDP_FLAGS_DRV_MODE: u32 = 4;

/// One eBPF instruction (`struct bpf_insn`): opcode, destination and source registers (low
/// and high nibble), offset, immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, IntoBytes, Immutable)]
#[repr(C)]
pub struct BpfInsn {
    /// Opcode.
    pub code: u8,
    /// `src << 4 | dst`.
    pub regs: u8,
    /// Signed offset.
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}
const _: () = assert!(size_of::<BpfInsn>() == 8);

/// `bpf_attr` for `BPF_MAP_CREATE` (up to `map_name`).
#[derive(IntoBytes, Immutable)]
#[repr(C)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    map_ifindex: u32,
}
const _: () = assert!(size_of::<MapCreateAttr>() == 48);

/// `bpf_attr` for `BPF_MAP_UPDATE_ELEM` and `BPF_MAP_DELETE_ELEM`.
#[derive(IntoBytes, Immutable)]
#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}
const _: () = assert!(size_of::<MapElemAttr>() == 32);

/// `bpf_attr` for `BPF_PROG_LOAD` (up to `expected_attach_type`).
#[derive(IntoBytes, Immutable)]
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}
const _: () = assert!(size_of::<ProgLoadAttr>() == 72);

/// `bpf_attr` for `BPF_LINK_CREATE` (the common head).
#[derive(IntoBytes, Immutable)]
#[repr(C)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}
const _: () = assert!(size_of::<LinkCreateAttr>() == 16);

/// `bpf(cmd, attr)`; the attribute is only read by the kernel (every command used here
/// returns its result as the return value).
fn bpf<A: IntoBytes + Immutable>(cmd: libc::c_long, attr: &A) -> io::Result<libc::c_long> {
    let bytes = attr.as_bytes();
    // SAFETY: `bytes` is an initialised buffer of `bytes.len()` bytes that lives for the call.
    // The kernel copies it in (`copy_from_bpfptr`); the addresses inside it (instructions,
    // license, key, value) point at memory the callers keep alive across this call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, bytes.as_ptr(), bytes.len()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// Takes ownership of a descriptor a system call just returned.
fn owned(raw: libc::c_long) -> OwnedFd {
    // SAFETY: `raw` is a new descriptor the kernel returned to this call, owned by nothing
    // else.
    unsafe { OwnedFd::from_raw_fd(raw as RawFd) }
}

/// A name in the kernel's 16-byte, NUL-terminated form.
fn object_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *o = b;
    }
    out
}

/// Creates an XSKMAP of `entries` slots (key: queue index, value: an XDP socket).
pub fn create_xskmap(name: &str, entries: u32) -> io::Result<OwnedFd> {
    let attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_XSKMAP,
        key_size: 4,
        value_size: 4,
        max_entries: entries,
        map_flags: 0,
        inner_map_fd: 0,
        numa_node: 0,
        map_name: object_name(name),
        map_ifindex: 0,
    };
    bpf(BPF_MAP_CREATE, &attr).map(owned)
}

/// Puts XDP socket `xsk` in slot `queue` of XSKMAP `map`.
pub fn xskmap_set(map: BorrowedFd<'_>, queue: u32, xsk: BorrowedFd<'_>) -> io::Result<()> {
    let key = queue;
    let value = xsk.as_raw_fd() as u32;
    let attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: 0,
    };
    bpf(BPF_MAP_UPDATE_ELEM, &attr).map(drop)
}

/// Empties slot `queue` of XSKMAP `map` (a missing entry is not an error).
pub fn xskmap_clear(map: BorrowedFd<'_>, queue: u32) -> io::Result<()> {
    let key = queue;
    let attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: &key as *const u32 as u64,
        value: 0,
        flags: 0,
    };
    match bpf(BPF_MAP_DELETE_ELEM, &attr) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other.map(drop),
    }
}

/// Loads `insns` as an XDP program named `name`; on a verifier refusal the error carries the
/// verifier's log.
pub fn load_xdp_program(name: &str, insns: &[BpfInsn]) -> io::Result<OwnedFd> {
    let license = c"Dual MIT/GPL";
    let mut log = vec![0u8; 16 * 1024];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: object_name(name),
        prog_ifindex: 0,
        expected_attach_type: BPF_XDP,
    };
    match bpf(BPF_PROG_LOAD, &attr) {
        Ok(fd) => Ok(owned(fd)),
        Err(e)
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            // Again with the verifier's log, to say why.
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let again = bpf(BPF_PROG_LOAD, &attr);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]).trim().to_string();
            match again {
                Ok(fd) => Ok(owned(fd)),
                Err(_) => Err(io::Error::new(e.kind(), format!("{e}; verifier: {text}"))),
            }
        }
        Err(e) => Err(e),
    }
}

/// Attaches XDP program `prog` to interface `ifindex` in mode `flags`
/// ([`XDP_FLAGS_DRV_MODE`] or [`XDP_FLAGS_SKB_MODE`]) through a BPF link: the program is
/// detached when the returned descriptor (and every copy of it) is closed.
pub fn attach_xdp(prog: BorrowedFd<'_>, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
    let attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags,
    };
    bpf(BPF_LINK_CREATE, &attr).map(owned)
}

/// Opens an XDP socket.
pub fn xsk_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned(raw as libc::c_long))
}

/// `setsockopt(SOL_XDP, name, value)` with a value the kernel only reads.
fn set_xdp_option<T: IntoBytes + Immutable + ?Sized>(
    fd: BorrowedFd<'_>,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let bytes = value.as_bytes();
    // SAFETY: `bytes` is an initialised buffer of `bytes.len()` bytes that lives for the call;
    // the kernel copies it in.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            name,
            bytes.as_ptr().cast(),
            bytes.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `struct xdp_umem_reg` (with `flags` and `tx_metadata_len`).
#[derive(IntoBytes, Immutable)]
#[repr(C)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}
const _: () = assert!(size_of::<UmemReg>() == 32);

/// A memory region registered as an XDP socket's UMEM: its address and length.
#[derive(Clone, Copy, Debug)]
pub struct UmemArea {
    /// The first byte (page-aligned).
    pub addr: *mut u8,
    /// Its length in bytes.
    pub len: usize,
}

/// Registers `area` with socket `fd` as its UMEM, cut in aligned chunks of `chunk_size` bytes
/// (a power of two, 2048 to the page size), no headroom of its own.
///
/// # Safety
/// From this call until `fd` is closed the kernel may write into any chunk the caller posts
/// on the fill ring and read any range it posts on the TX ring: `area` must stay mapped that
/// long, and the caller must not hold Rust references into a chunk while the kernel has it.
pub unsafe fn register_umem(fd: BorrowedFd<'_>, area: UmemArea, chunk_size: u32) -> io::Result<()> {
    let reg = UmemReg {
        addr: area.addr as u64,
        len: area.len as u64,
        chunk_size,
        headroom: 0,
        flags: 0,
        tx_metadata_len: 0,
    };
    set_xdp_option(fd, libc::XDP_UMEM_REG, &reg)
}

/// Which ring of an XDP socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingKind {
    /// Received frames (kernel produces descriptors).
    Rx,
    /// Frames to send (we produce descriptors).
    Tx,
    /// Free chunks for the kernel to receive into (we produce addresses).
    Fill,
    /// Chunks the kernel finished sending (kernel produces addresses).
    Completion,
}

impl RingKind {
    fn option(self) -> libc::c_int {
        match self {
            RingKind::Rx => libc::XDP_RX_RING,
            RingKind::Tx => libc::XDP_TX_RING,
            RingKind::Fill => libc::XDP_UMEM_FILL_RING,
            RingKind::Completion => libc::XDP_UMEM_COMPLETION_RING,
        }
    }

    fn page_offset(self) -> libc::off_t {
        match self {
            RingKind::Rx => libc::XDP_PGOFF_RX_RING,
            RingKind::Tx => libc::XDP_PGOFF_TX_RING,
            RingKind::Fill => libc::XDP_UMEM_PGOFF_FILL_RING as libc::off_t,
            RingKind::Completion => libc::XDP_UMEM_PGOFF_COMPLETION_RING as libc::off_t,
        }
    }

    /// Bytes of one entry: a descriptor on RX and TX, an address on fill and completion.
    pub fn entry_size(self) -> usize {
        match self {
            RingKind::Rx | RingKind::Tx => size_of::<libc::xdp_desc>(),
            RingKind::Fill | RingKind::Completion => size_of::<u64>(),
        }
    }
}

/// Sets the number of entries of ring `kind` (a power of two).
pub fn set_ring_size(fd: BorrowedFd<'_>, kind: RingKind, entries: u32) -> io::Result<()> {
    set_xdp_option(fd, kind.option(), &entries)
}

/// Where the producer, consumer, flags and entries of one ring are in its mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingOffsets {
    /// The producer index (a `u32`).
    pub producer: usize,
    /// The consumer index (a `u32`).
    pub consumer: usize,
    /// The flags word (a `u32`; `XDP_RING_NEED_WAKEUP`).
    pub flags: usize,
    /// The first entry.
    pub desc: usize,
}

/// The offsets of the four rings of socket `fd` (in the order rx, tx, fill, completion).
pub fn ring_offsets(fd: BorrowedFd<'_>) -> io::Result<[RingOffsets; 4]> {
    // SAFETY: an all-zero xdp_mmap_offsets is a valid value (integers only).
    let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `off`, owned here, and the length it
    // wrote into `len`, a local.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
            (&mut off as *mut libc::xdp_mmap_offsets).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != size_of::<libc::xdp_mmap_offsets>() {
        // The v1 layout (before 5.4) has no flags word: need_wakeup needs it.
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel's XDP rings have no flags word (Linux 5.4 or later is needed)",
        ));
    }
    let one = |r: libc::xdp_ring_offset| RingOffsets {
        producer: r.producer as usize,
        consumer: r.consumer as usize,
        flags: r.flags as usize,
        desc: r.desc as usize,
    };
    Ok([one(off.rx), one(off.tx), one(off.fr), one(off.cr)])
}

/// One ring's shared mapping; unmapped on drop.
#[derive(Debug)]
pub struct RingMapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; `RingMapping` only unmaps it on drop. Every
// access through its pointer is made (and argued) by `ring`, from one thread at a time.
unsafe impl Send for RingMapping {}

impl RingMapping {
    /// The mapping's first byte.
    pub fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Its length.
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for RingMapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from a successful mmap and are unmapped exactly once.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Maps ring `kind` of socket `fd`, `len` bytes (its entries' offset plus their size).
pub fn map_ring(fd: BorrowedFd<'_>, kind: RingKind, len: usize) -> io::Result<RingMapping> {
    // SAFETY: a fresh shared mapping of the socket's ring: no existing memory is affected.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            kind.page_offset(),
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
    Ok(RingMapping { ptr, len })
}

/// Binds socket `fd` to queue `queue` of interface `ifindex` with `flags` (`XDP_COPY`,
/// `XDP_ZEROCOPY`, `XDP_USE_NEED_WAKEUP`).
pub fn bind(fd: BorrowedFd<'_>, ifindex: u32, queue: u32, flags: u16) -> io::Result<()> {
    let addr = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: flags,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: 0,
    };
    // SAFETY: `addr` is a sockaddr_xdp owned here, passed with its exact size; the kernel
    // only reads it.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_xdp).cast(),
            size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether socket `fd` was bound in zero-copy mode (`XDP_OPTIONS`).
pub fn zero_copy(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut options = libc::xdp_options { flags: 0 };
    let mut len = size_of::<libc::xdp_options>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `options`, owned here.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            libc::XDP_OPTIONS,
            (&mut options as *mut libc::xdp_options).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(options.flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
}

/// The kernel's counters of socket `fd` (`XDP_STATISTICS`), readable after the device is gone.
pub fn statistics(fd: BorrowedFd<'_>) -> io::Result<libc::xdp_statistics> {
    // SAFETY: an all-zero xdp_statistics is a valid value (integers only).
    let mut stats: libc::xdp_statistics = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::xdp_statistics>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `stats`, owned here.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            libc::XDP_STATISTICS,
            (&mut stats as *mut libc::xdp_statistics).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stats)
}

/// Asks the kernel to transmit what is on socket `fd`'s TX ring (in copy mode it does so
/// inside this call).
pub fn kick_tx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: no buffer and no address: the kernel reads nothing from this process.
    let rc = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks the driver to look at socket `fd`'s fill ring again (zero-copy `need_wakeup`).
pub fn kick_rx(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: no buffer and no address: the kernel writes nothing into this process.
    let rc = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens a blocking generic-netlink socket (for request and answer).
pub fn genetlink_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_GENERIC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned(raw as libc::c_long))
}

/// `CAP_NET_RAW`.
#[cfg(test)]
pub const CAP_NET_RAW: u32 = 13;

/// Leaves the calling thread (capabilities are per thread) with only the capabilities in
/// `keep`, effective and permitted, none inheritable. It cannot take the others back.
#[cfg(test)]
pub fn keep_only_capabilities(keep: &[u32]) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // _LINUX_CAPABILITY_VERSION_3: two 32-bit words of each set.
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    for &cap in keep {
        let word = &mut data[(cap / 32) as usize];
        word.effective |= 1 << (cap % 32);
        word.permitted |= 1 << (cap % 32);
    }
    // SAFETY: `header` and `data` are owned here, of the layout capset(2) reads for version 3
    // (a header and two data words); the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
