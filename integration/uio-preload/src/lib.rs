//! `libhvnet_sim_uio.so`: an `LD_PRELOAD` library that makes the device node of `hvnet
//! sim-host` behave, for an unmodified client, as a `uio_hv_generic` node does.
//!
//! A real `/dev/uioN` is a character device: `mmap(fd, K × 4096)` maps uio map K (the offset
//! only selects the map). The simulated host's node is a unix stream socket instead
//! (docs/sim-host.md). This library changes three calls, and only for such sockets:
//!
//! - `open`, `open64`, `openat`, `openat64`: when the real call fails with `ENXIO` (what
//!   opening a socket's path gives) and the path is a unix socket, it connects to it, reads
//!   the handshake (where each map lies in the host's memory, and the memory's fd) and returns
//!   the connected socket. A node that does not answer within [`HANDSHAKE_TIMEOUT`] or answers
//!   wrongly fails the open with `EPROTO`;
//! - `mmap`, `mmap64` on such a socket: map K (`offset / 4096`) of the host's memory; an
//!   offset that is not a map, or a length past the map, is `EINVAL`;
//! - `fstat`, `fstat64` on a node with one map (a subchannel's `ring`) report that map's
//!   length as the size, as sysfs reports a binary attribute's;
//! - `close` on such a socket forgets it (and closes its memory fd);
//! - with `HVNET_SIM_DEV` set, `memfd_create("nohuge")` (DPDK's EAL without hugepages)
//!   answers with the host's memory (the `memory` node in that directory), which `mmap` then
//!   maps at file offset = virtual address, and `ftruncate` leaves as it is (up to its size):
//!   with `--iova-mode=va` the client's IOVAs are its virtual addresses, so every buffer it
//!   sends GPA-direct (DPDK's RNDIS messages, large frames) is the host's memory at that GPA.
//!
//! A client that opens `/dev/uioN` whatever it is told (DPDK) finds the sim host's node when
//! `HVNET_SIM_DEV` names its directory: an open of a missing `/dev/uioN` is retried there.
//!
//! Everything else — other files, and `read`, `write` and `poll` on the socket, which carry the
//! uio interrupt protocol unchanged — goes to libc untouched, with its `errno`.
//!
//! The whole library is system calls on raw pointers from the client, hence
//! `allow(unsafe_code)`; each block says what makes it sound.
#![allow(unsafe_code)]

mod handshake;

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use handshake::{HEADER, MAX_LEN, Maps, PAGE};

/// How long an open waits for the node's handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The environment variable naming the directory of the sim host's nodes (`ROOT/dev`), for
/// clients that open `/dev/uioN` whatever their configuration.
pub const DEV_ENV: &str = "HVNET_SIM_DEV";
/// Sockets of nodes open at once at most (DPDK keeps one, hvnet one per open device).
const MAX_OPEN: usize = 64;

/// An open node: the client's socket and the host's memory.
#[derive(Clone, Copy)]
struct Node {
    socket: c_int,
    memory: c_int,
    maps: Maps,
    /// The client's heap (a `memfd_create` answered with the host's memory): mapped at file
    /// offset = virtual address, so that the client's IOVA (its virtual address) is the
    /// host's GPA.
    heap: bool,
    /// The socket's (device, inode): an fd number the client reused without `close` (`dup2`
    /// over it, `close_range`) is not this node any more.
    identity: (u64, u64),
}

static NODES: Mutex<[Option<Node>; MAX_OPEN]> = Mutex::new([None; MAX_OPEN]);

fn nodes() -> std::sync::MutexGuard<'static, [Option<Node>; MAX_OPEN]> {
    // A panic while the lock was held cannot leave the table inconsistent (plain copies).
    NODES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The (device, inode) of an open fd.
fn identity(fd: c_int) -> Option<(u64, u64)> {
    // SAFETY: an all-zero stat is a valid value for fstat to fill; libc's own fstat (not the
    // hook) is called.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (real_fstat(fd, &mut st) == 0).then_some((st.st_dev, st.st_ino))
    }
}

/// The node open on `fd`, if `fd` is still that node's socket (a stale entry is dropped).
fn node(fd: c_int) -> Option<Node> {
    let found = nodes().iter().flatten().find(|n| n.socket == fd).copied()?;
    if identity(fd) == Some(found.identity) {
        return Some(found);
    }
    let stale = {
        let mut table = nodes();
        table
            .iter_mut()
            .find(|n| n.is_some_and(|n| n.socket == fd && n.identity == found.identity))
            .and_then(Option::take)
    };
    if let Some(stale) = stale {
        // SAFETY: the stale node's memory fd is this library's, never handed to the client.
        unsafe { real_close(stale.memory) };
    }
    None
}

fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    unsafe { *libc::__errno_location() }
}

fn set_errno(value: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value }
}

/// The next definition of `name` after this library (libc's), looked up once.
fn next_symbol(cache: &AtomicUsize, name: &CStr) -> usize {
    let cached = cache.load(Ordering::Acquire);
    if cached != 0 {
        return cached;
    }
    // SAFETY: `name` is a NUL-terminated string; RTLD_NEXT is a valid pseudo-handle.
    let found = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    if found == 0 {
        // Without libc's own function nothing can work: fail loudly, not subtly.
        // SAFETY: abort has no preconditions.
        unsafe { libc::abort() }
    }
    cache.store(found, Ordering::Release);
    found
}

/// Declares `$real(...)`: a call of libc's `$name` with the same signature.
macro_rules! next {
    ($real:ident, $name:literal, fn($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty) => {
        /// libc's definition of the hooked function.
        ///
        /// # Safety
        /// The caller's obligations are those of libc's function.
        unsafe fn $real($($arg: $ty),*) -> $ret {
            static CACHE: AtomicUsize = AtomicUsize::new(0);
            let address = next_symbol(&CACHE, $name);
            // SAFETY: `address` is libc's definition of this very function (dlsym of the
            // same name), whose C signature is the one declared here.
            let f: unsafe extern "C" fn($($ty),*) -> $ret = unsafe { std::mem::transmute(address) };
            // SAFETY: the caller upholds libc's contract for the call.
            unsafe { f($($arg),*) }
        }
    };
}

next!(
    real_open,
    c"open",
    fn(path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int
);
next!(
    real_open64,
    c"open64",
    fn(path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int
);
next!(
    real_openat,
    c"openat",
    fn(dirfd: c_int, path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int
);
next!(
    real_openat64,
    c"openat64",
    fn(dirfd: c_int, path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int
);
next!(
    real_mmap,
    c"mmap",
    fn(
        addr: *mut c_void,
        len: usize,
        prot: c_int,
        flags: c_int,
        fd: c_int,
        offset: libc::off_t,
    ) -> *mut c_void
);
next!(
    real_mmap64,
    c"mmap64",
    fn(
        addr: *mut c_void,
        len: usize,
        prot: c_int,
        flags: c_int,
        fd: c_int,
        offset: libc::off64_t,
    ) -> *mut c_void
);
next!(real_close, c"close", fn(fd: c_int) -> c_int);
next!(
    real_memfd_create,
    c"memfd_create",
    fn(name: *const c_char, flags: libc::c_uint) -> c_int
);
next!(
    real_ftruncate,
    c"ftruncate",
    fn(fd: c_int, length: libc::off_t) -> c_int
);
next!(
    real_ftruncate64,
    c"ftruncate64",
    fn(fd: c_int, length: libc::off64_t) -> c_int
);
next!(
    real_fstat,
    c"fstat",
    fn(fd: c_int, st: *mut libc::stat) -> c_int
);
next!(
    real_fstat64,
    c"fstat64",
    fn(fd: c_int, st: *mut libc::stat64) -> c_int
);

/// After a real open: the fd, or for a socket path that gave `ENXIO` the connected node.
///
/// # Safety
/// `path` is null or a NUL-terminated string (the open's contract).
unsafe fn after_open(fd: c_int, dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    if fd >= 0 || path.is_null() {
        return fd;
    }
    let error = errno();
    // SAFETY: non-null and NUL-terminated per the caller.
    let path = unsafe { CStr::from_ptr(path) };
    if error == libc::ENOENT
        && let Some(node) = redirected(path)
    {
        return match attach(&node, flags) {
            Ok(socket) => socket,
            Err(e) => {
                set_errno(e.unwrap_or(error));
                -1
            }
        };
    }
    if error != libc::ENXIO {
        return fd;
    }
    if dirfd != libc::AT_FDCWD && path.to_bytes().first() != Some(&b'/') {
        // Relative to another directory: not resolved here.
        return fd;
    }
    match attach(path, flags) {
        Ok(socket) => socket,
        Err(None) => {
            set_errno(error);
            fd
        }
        Err(Some(e)) => {
            set_errno(e);
            -1
        }
    }
}

/// Where a missing `/dev/uioN` is looked for instead: `$HVNET_SIM_DEV/uioN`, for clients
/// whose device directory is compiled in (DPDK opens `/dev/uioN`).
fn redirected(path: &CStr) -> Option<std::ffi::CString> {
    let name = path.to_bytes().strip_prefix(b"/dev/")?;
    if !name.starts_with(b"uio") || name.contains(&b'/') {
        return None;
    }
    let dir = std::env::var_os(DEV_ENV)?;
    let mut full = std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()).to_vec();
    full.push(b'/');
    full.extend_from_slice(name);
    std::ffi::CString::new(full).ok()
}

/// Connects to the node at `path` and reads its handshake. `Err(None)`: `path` is not a unix
/// socket (the open's own error stands); `Err(Some(errno))`: it is, and attaching failed.
fn attach(path: &CStr, flags: c_int) -> Result<c_int, Option<c_int>> {
    // SAFETY: an all-zero stat is a valid value for stat to fill; `path` is NUL-terminated.
    let is_socket = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::stat(path.as_ptr(), &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFSOCK
    };
    if !is_socket {
        return Err(None);
    }
    // SAFETY: an all-zero sockaddr_un is valid (family set below).
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.to_bytes();
    if bytes.len() >= address.sun_path.len() {
        return Err(Some(libc::ENAMETOOLONG));
    }
    for (slot, &b) in address.sun_path.iter_mut().zip(bytes) {
        *slot = b as c_char;
    }
    let cloexec = if flags & libc::O_CLOEXEC != 0 {
        libc::SOCK_CLOEXEC
    } else {
        0
    };
    // SAFETY: plain socket creation.
    let socket = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | cloexec, 0) };
    if socket < 0 {
        return Err(Some(errno()));
    }
    let fail = |e: c_int| {
        // SAFETY: `socket` is ours and not yet handed to the client.
        unsafe { real_close(socket) };
        Err(Some(e))
    };
    // SAFETY: `address` is an initialised sockaddr_un of the size passed.
    let connected = unsafe {
        libc::connect(
            socket,
            (&raw const address).cast(),
            size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    if connected != 0 {
        return fail(errno());
    }
    match receive_handshake(socket) {
        Ok((memory, maps)) => {
            let mut table = nodes();
            match table.iter_mut().find(|n| n.is_none()) {
                Some(slot) => {
                    *slot = Some(Node {
                        socket,
                        memory,
                        maps,
                        heap: false,
                        identity: identity(socket).unwrap_or_default(),
                    });
                    Ok(socket)
                }
                None => {
                    drop(table);
                    // SAFETY: `memory` came with the handshake and is ours.
                    unsafe { real_close(memory) };
                    fail(libc::EMFILE)
                }
            }
        }
        Err(e) => fail(e),
    }
}

/// Sets the socket's receive timeout (zero: none).
fn receive_timeout(socket: c_int, timeout: Duration) -> Result<(), c_int> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: `tv` is an initialised timeval of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(errno()) }
}

/// Reads the handshake: the memory fd and the maps. Every fd received is closed on failure.
fn receive_handshake(socket: c_int) -> Result<(c_int, Maps), c_int> {
    receive_timeout(socket, HANDSHAKE_TIMEOUT)?;
    let mut buf = [0u8; MAX_LEN];
    let mut have = 0usize;
    let mut memory: Option<c_int> = None;
    let mut extra_fds = false;
    let result = loop {
        let want = if have < HEADER {
            HEADER
        } else {
            match handshake::total_len(&buf[..have]) {
                Ok(len) => len,
                Err(_) => break Err(libc::EPROTO),
            }
        };
        if have >= want {
            break match (handshake::parse(&buf[..have]), memory, extra_fds) {
                (Ok(maps), Some(fd), false) => Ok((fd, maps)),
                _ => Err(libc::EPROTO),
            };
        }
        match receive_some(socket, &mut buf[have..want]) {
            Ok((0, _)) => break Err(libc::EPROTO),
            Ok((n, fds)) => {
                have += n;
                for fd in fds.into_iter().flatten() {
                    if memory.is_none() {
                        memory = Some(fd);
                    } else {
                        extra_fds = true;
                        // SAFETY: an fd the server sent us, not handed on.
                        unsafe { real_close(fd) };
                    }
                }
            }
            Err(libc::EINTR) => {}
            // The receive timeout ran out.
            Err(libc::EAGAIN) => break Err(libc::EPROTO),
            Err(e) => break Err(e),
        }
    };
    let reset = receive_timeout(socket, Duration::ZERO);
    match (result, reset) {
        (Ok(ok), Ok(())) => Ok(ok),
        (Ok(_), Err(e)) | (Err(e), _) => {
            if let Some(fd) = memory {
                // SAFETY: the received memory fd, not handed on.
                unsafe { real_close(fd) };
            }
            Err(e)
        }
    }
}

/// One `recvmsg` into `buf`: bytes read and up to two fds that came with them.
fn receive_some(socket: c_int, buf: &mut [u8]) -> Result<(usize, [Option<c_int>; 2]), c_int> {
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control) as _;
    // SAFETY: `msg` describes `iov` (over `buf`) and `control`, both alive and writable for
    // the call, with their exact lengths.
    let n = unsafe { libc::recvmsg(socket, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(errno());
    }
    let mut fds = [None; 2];
    let mut found = 0;
    // SAFETY: the kernel filled `msg.msg_control` with `msg_controllen` bytes of cmsgs; the
    // CMSG_* walk stays inside them, and SCM_RIGHTS data is an array of ints whose count the
    // header's length gives.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let bytes = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..bytes / size_of::<c_int>() {
                    let fd = std::ptr::read_unaligned(data.cast::<c_int>().add(i));
                    if found < fds.len() {
                        fds[found] = Some(fd);
                        found += 1;
                    } else {
                        // More than we can use: closed, and the handshake is refused.
                        real_close(fd);
                        fds[1] = fds[1].or(Some(-1));
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, fds))
}

/// `mmap` of map `offset / 4096` of `node`'s memory.
///
/// # Safety
/// The caller's `mmap` contract (`addr` with `MAP_FIXED` is theirs to replace).
unsafe fn map_node(
    node: Node,
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    offset: i64,
) -> *mut c_void {
    if node.heap {
        // File offset = virtual address (+ the caller's offset): IOVA as VA is then GPA.
        let place = (addr as u64)
            .checked_add(u64::try_from(offset).unwrap_or(u64::MAX))
            .filter(|start| !addr.is_null() && start.is_multiple_of(PAGE))
            .filter(|start| {
                start
                    .checked_add(len as u64)
                    .zip(node.maps.get(0))
                    .is_some_and(|(end, m)| end <= m.size)
            });
        return match place {
            // SAFETY: the caller's contract (a fixed address they chose), with the host's
            // memory at an offset inside it.
            Some(start) => unsafe {
                real_mmap(addr, len, prot, flags, node.memory, start as libc::off_t)
            },
            None => {
                set_errno(libc::EINVAL);
                libc::MAP_FAILED
            }
        };
    }
    let map = u64::try_from(offset)
        .ok()
        .filter(|o| o.is_multiple_of(PAGE))
        .and_then(|o| node.maps.get(o / PAGE));
    match map {
        Some(map) if len > 0 && len as u64 <= map.size => {
            // SAFETY: the caller's contract, with the node's memory fd and the map's offset
            // (checked to fit an off_t when the handshake was parsed).
            unsafe {
                real_mmap(
                    addr,
                    len,
                    prot,
                    flags,
                    node.memory,
                    map.offset as libc::off_t,
                )
            }
        }
        _ => {
            set_errno(libc::EINVAL);
            libc::MAP_FAILED
        }
    }
}

/// The hooked `open`: see the crate docs. `mode` is C-variadic in libc's prototype; stable
/// Rust cannot define a variadic function, and on the targets this library is built for
/// (x86_64 SysV, aarch64 Linux) a variadic integer arrives where a third integer parameter
/// does. It is read only when `O_CREAT` or `O_TMPFILE` says the caller passed it, as libc does.
///
/// # Safety
/// libc's `open` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        let fd = real_open(path, flags, mode);
        after_open(fd, libc::AT_FDCWD, path, flags)
    }
}

/// The hooked `open64` (see [`open`]).
///
/// # Safety
/// libc's `open64` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        let fd = real_open64(path, flags, mode);
        after_open(fd, libc::AT_FDCWD, path, flags)
    }
}

/// The hooked `openat` (see [`open`]; paths relative to a directory fd are passed through).
///
/// # Safety
/// libc's `openat` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn openat(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: libc::mode_t,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        let fd = real_openat(dirfd, path, flags, mode);
        after_open(fd, dirfd, path, flags)
    }
}

/// The hooked `openat64` (see [`openat`]).
///
/// # Safety
/// libc's `openat64` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn openat64(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: libc::mode_t,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        let fd = real_openat64(dirfd, path, flags, mode);
        after_open(fd, dirfd, path, flags)
    }
}

/// The hooked `mmap`: a node's map, or libc's.
///
/// # Safety
/// libc's `mmap` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mmap(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    offset: libc::off_t,
) -> *mut c_void {
    match node(fd) {
        // SAFETY: the caller's contract, passed on.
        Some(n) => unsafe { map_node(n, addr, len, prot, flags, offset) },
        // SAFETY: the caller's contract, passed on.
        None => unsafe { real_mmap(addr, len, prot, flags, fd, offset) },
    }
}

/// The hooked `mmap64`: a node's map, or libc's.
///
/// # Safety
/// libc's `mmap64` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mmap64(
    addr: *mut c_void,
    len: usize,
    prot: c_int,
    flags: c_int,
    fd: c_int,
    offset: libc::off64_t,
) -> *mut c_void {
    match node(fd) {
        // SAFETY: the caller's contract, passed on.
        Some(n) => unsafe { map_node(n, addr, len, prot, flags, offset) },
        // SAFETY: the caller's contract, passed on.
        None => unsafe { real_mmap64(addr, len, prot, flags, fd, offset) },
    }
}

/// The hooked `close`: forgets a node (closing its memory fd), then closes the fd.
///
/// # Safety
/// libc's `close` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    let forgotten = {
        let mut table = nodes();
        table
            .iter_mut()
            .find(|n| n.is_some_and(|n| n.socket == fd))
            .and_then(Option::take)
    };
    if let Some(node) = forgotten {
        // SAFETY: the memory fd is this library's, never handed to the client.
        unsafe { real_close(node.memory) };
    }
    // SAFETY: the caller's contract, passed on.
    unsafe { real_close(fd) }
}

/// The size a node shows `fstat`: its one map's length (a `ring` file); `None` for anything
/// else.
fn node_size(fd: c_int) -> Option<u64> {
    node(fd)
        .filter(|n| n.maps.count == 1)
        .and_then(|n| n.maps.get(0))
        .map(|m| m.size)
}

/// The hooked `fstat`: libc's, with a ring node's size.
///
/// # Safety
/// libc's `fstat` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fstat(fd: c_int, st: *mut libc::stat) -> c_int {
    // SAFETY: the caller's contract, passed on.
    let rc = unsafe { real_fstat(fd, st) };
    if rc == 0
        && !st.is_null()
        && let Some(size) = node_size(fd)
    {
        // SAFETY: libc just filled `*st`, a valid, writable stat of the caller's.
        unsafe { (*st).st_size = size as libc::off_t };
    }
    rc
}

/// The hooked `fstat64`: libc's, with a ring node's size.
///
/// # Safety
/// libc's `fstat64` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fstat64(fd: c_int, st: *mut libc::stat64) -> c_int {
    // SAFETY: the caller's contract, passed on.
    let rc = unsafe { real_fstat64(fd, st) };
    if rc == 0
        && !st.is_null()
        && let Some(size) = node_size(fd)
    {
        // SAFETY: libc just filled `*st`, a valid, writable stat64 of the caller's.
        unsafe { (*st).st_size = size as libc::off64_t };
    }
    rc
}

/// The hooked `memfd_create`: DPDK's heap as the host's memory (see the crate docs).
///
/// # Safety
/// libc's `memfd_create` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memfd_create(name: *const c_char, flags: libc::c_uint) -> c_int {
    // SAFETY: `name` is NUL-terminated per the contract (null is passed on to libc).
    let heap = !name.is_null() && unsafe { CStr::from_ptr(name) }.to_bytes() == b"nohuge";
    if heap && let Some(dir) = std::env::var_os(DEV_ENV) {
        let mut path = std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()).to_vec();
        path.extend_from_slice(b"/memory");
        let Ok(path) = std::ffi::CString::new(path) else {
            set_errno(libc::EINVAL);
            return -1;
        };
        let cloexec = if flags & libc::MFD_CLOEXEC != 0 {
            libc::O_CLOEXEC
        } else {
            0
        };
        return match attach(&path, cloexec) {
            Ok(socket) => {
                let mut table = nodes();
                if let Some(node) = table.iter_mut().flatten().find(|n| n.socket == socket) {
                    node.heap = true;
                }
                socket
            }
            Err(e) => {
                set_errno(e.unwrap_or(libc::ENOENT));
                -1
            }
        };
    }
    // SAFETY: the caller's contract, passed on.
    unsafe { real_memfd_create(name, flags) }
}

/// For the heap node: `ftruncate` within the host's memory succeeds and changes nothing
/// (the host's memory must keep its size); `None` for any other fd.
fn heap_truncate(fd: c_int, length: i64) -> Option<c_int> {
    let node = node(fd).filter(|n| n.heap)?;
    let size = node.maps.get(0).map_or(0, |m| m.size);
    if u64::try_from(length).is_ok_and(|l| l <= size) {
        Some(0)
    } else {
        set_errno(libc::EINVAL);
        Some(-1)
    }
}

/// The hooked `ftruncate`: on the heap node, a size within the host's memory succeeds and
/// changes nothing (the host's memory keeps its size).
///
/// # Safety
/// libc's `ftruncate` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ftruncate(fd: c_int, length: libc::off_t) -> c_int {
    match heap_truncate(fd, length) {
        Some(rc) => rc,
        // SAFETY: the caller's contract, passed on.
        None => unsafe { real_ftruncate(fd, length) },
    }
}

/// The hooked `ftruncate64` (see `ftruncate`).
///
/// # Safety
/// libc's `ftruncate64` contract.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ftruncate64(fd: c_int, length: libc::off64_t) -> c_int {
    match heap_truncate(fd, length) {
        Some(rc) => rc,
        // SAFETY: the caller's contract, passed on.
        None => unsafe { real_ftruncate64(fd, length) },
    }
}

/// `RTE_ETH_QUEUE_STATE_STARTED`.
const DPDK_QUEUE_STARTED: u8 = 1;
/// Offset of `queue_state` in DPDK 22.11's `struct rte_eth_rxq_info` (ABI 23; 128 bytes).
const DPDK_RXQ_INFO_STATE: usize = 89;
/// Offset of `queue_state` in DPDK 22.11's `struct rte_eth_txq_info` (ABI 23; 64 bytes).
const DPDK_TXQ_INFO_STATE: usize = 58;

next!(
    real_rx_queue_info_get,
    c"rte_eth_rx_queue_info_get",
    fn(port: u16, queue: u16, info: *mut u8) -> c_int
);
next!(
    real_tx_queue_info_get,
    c"rte_eth_tx_queue_info_get",
    fn(port: u16, queue: u16, info: *mut u8) -> c_int
);

/// Marks a queue the real call reported as started, when running against the sim host.
///
/// DPDK 22.11's netvsc PMD never records its queues as started, so `rte_eth_*_queue_info_get`
/// says STOPPED and testpmd disables every forwarding stream on them (a DPDK-side issue: the
/// queues run). With `HVNET_SIM_DEV` set, a successful call reports STARTED instead. The
/// offsets are DPDK 22.11's (librte_ethdev.so.23), read from its headers with `offsetof`.
///
/// # Safety
/// `info` points at the caller's struct of at least `state_offset + 1` bytes.
unsafe fn mark_started(rc: c_int, info: *mut u8, state_offset: usize) -> c_int {
    if rc == 0 && !info.is_null() && std::env::var_os(DEV_ENV).is_some() {
        // SAFETY: per the caller, the byte is inside the struct DPDK just filled.
        unsafe { *info.add(state_offset) = DPDK_QUEUE_STARTED };
    }
    rc
}

/// The hooked `rte_eth_rx_queue_info_get` (DPDK): a queue of a port on the sim host reads
/// back as started (DPDK 22.11's netvsc PMD never records its queues as started, and testpmd
/// then disables every stream on them).
///
/// # Safety
/// DPDK's contract: `info` points at a `struct rte_eth_rxq_info` (128 bytes in 22.11).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rte_eth_rx_queue_info_get(port: u16, queue: u16, info: *mut u8) -> c_int {
    // SAFETY: the caller's contract, passed on; the struct holds the state byte.
    unsafe {
        mark_started(
            real_rx_queue_info_get(port, queue, info),
            info,
            DPDK_RXQ_INFO_STATE,
        )
    }
}

/// The hooked `rte_eth_tx_queue_info_get` (DPDK): see `rte_eth_rx_queue_info_get`.
///
/// # Safety
/// DPDK's contract: `info` points at a `struct rte_eth_txq_info` (64 bytes in 22.11).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rte_eth_tx_queue_info_get(port: u16, queue: u16, info: *mut u8) -> c_int {
    // SAFETY: the caller's contract, passed on; the struct holds the state byte.
    unsafe {
        mark_started(
            real_tx_queue_info_get(port, queue, info),
            info,
            DPDK_TXQ_INFO_STATE,
        )
    }
}

/// Size of DPDK 22.11's `struct rte_eth_conf` (ABI 23), read from its headers with `sizeof`.
const DPDK_ETH_CONF_SIZE: usize = 2272;
/// Offset of `intr_conf` in it (`offsetof`); `rmv` is bit 2 of that 32-bit word.
const DPDK_ETH_CONF_INTR: usize = 2264;
const DPDK_INTR_RMV: u32 = 1 << 2;

next!(
    real_dev_configure,
    c"rte_eth_dev_configure",
    fn(port: u16, rx_queues: u16, tx_queues: u16, conf: *const u8) -> c_int
);

/// The hooked `rte_eth_dev_configure` (DPDK): with `HVNET_SIM_DEV` set, a port that refuses
/// the removal interrupt (`-EINVAL` with `intr_conf.rmv` set) is configured again without
/// it.
///
/// DPDK 22.11's netvsc PMD asks its VF for removal interrupts when it adopts one, and only
/// PCI devices (mlx5 among them) have them; the sim host's VF is a kernel interface a vdev
/// such as `net_af_packet` drives, which has none, so the PMD would never take it. The host
/// tells the client's VF is gone by the association message instead (`remove-vf`). The
/// caller's struct is not written: the retry passes a copy.
///
/// # Safety
/// DPDK's contract: `conf` points at a `struct rte_eth_conf` (2272 bytes in 22.11).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn rte_eth_dev_configure(
    port: u16,
    rx_queues: u16,
    tx_queues: u16,
    conf: *const u8,
) -> c_int {
    // SAFETY: the caller's contract, passed on.
    let rc = unsafe { real_dev_configure(port, rx_queues, tx_queues, conf) };
    if rc != -libc::EINVAL || conf.is_null() || std::env::var_os(DEV_ENV).is_none() {
        return rc;
    }
    let mut copy = [0u8; DPDK_ETH_CONF_SIZE];
    // SAFETY: per the caller, `conf` points at DPDK_ETH_CONF_SIZE readable bytes; `copy` is
    // a distinct local array of that size.
    unsafe { std::ptr::copy_nonoverlapping(conf, copy.as_mut_ptr(), DPDK_ETH_CONF_SIZE) };
    let word = &mut copy[DPDK_ETH_CONF_INTR..DPDK_ETH_CONF_INTR + 4];
    let intr = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]);
    if intr & DPDK_INTR_RMV == 0 {
        return rc;
    }
    word.copy_from_slice(&(intr & !DPDK_INTR_RMV).to_ne_bytes());
    // SAFETY: `copy` is a whole `struct rte_eth_conf` (the caller's, one bit cleared), alive
    // for the call; DPDK copies it into the port's data.
    unsafe { real_dev_configure(port, rx_queues, tx_queues, copy.as_ptr()) }
}
