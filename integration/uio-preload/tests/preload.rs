//! The preload library in a real client process: `python3` (whose `os.open`, `mmap.mmap`,
//! `os.fstat` and `os.close` call libc's `open64`/`openat64`, `mmap64`, `fstat64` and
//! `close`; `ctypes` reaches `open`, `openat` and `mmap`) runs with
//! `LD_PRELOAD=libhvnet_sim_uio.so` against nodes this test serves with the
//! "hvnet-sim-uio v1" handshake, and prints what it saw; the test compares.
//!
//! `cargo test` neither builds nor links a cdylib for a test, so the test builds the library
//! itself, into a target directory of its own.
//!
//! Sending a memory fd with `SCM_RIGHTS` and creating it with `memfd_create` have no safe std
//! API, hence `allow(unsafe_code)`; each block says why it is sound.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PAGE: usize = 4096;
/// The byte filling page `i` of the host memory.
const FILL: [u8; 3] = [0xa0, 0xa1, 0xa2];
/// The event count the good node answers an interrupt enable with.
const EVENTS: u32 = 7;
/// The child's bound.
const BOUND: Duration = Duration::from_secs(30);

/// The library, built by this test into its own target directory (`cargo test` does not
/// build a cdylib for a test; a separate directory never waits for the lock of the build
/// running this test).
fn preload() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/preload-<hash> → target/sim-uio-preload
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("the target directory")
        .join("sim-uio-preload");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "hvnet-sim-uio", "--target-dir"])
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("running cargo build -p hvnet-sim-uio");
    assert!(status.success(), "building the preload library failed");
    let path = target.join("debug/libhvnet_sim_uio.so");
    assert!(
        path.exists(),
        "{} is missing after the build",
        path.display()
    );
    path
}

/// The real python3 (not a pyenv shim script), so the preload loads into python itself.
fn python() -> PathBuf {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("this test needs python3 on PATH");
    assert!(out.status.success(), "python3 -c failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Three pages of host memory, page `i` filled with `FILL[i]`.
fn host_memory() -> File {
    // SAFETY: the name is a NUL-terminated literal; memfd_create has no other inputs.
    let fd = unsafe { libc::memfd_create(c"hvnet-sim-uio-test".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just created and is owned by nothing else.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    for (i, &b) in FILL.iter().enumerate() {
        file.write_all_at(&[b; PAGE], (i * PAGE) as u64).unwrap();
    }
    file
}

fn handshake(magic: &[u8; 4], maps: &[(u64, u64)]) -> Vec<u8> {
    let mut out = magic.to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(maps.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for (offset, size) in maps {
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
    }
    out
}

/// One `sendmsg` of `bytes` with `fds` as SCM_RIGHTS (none: no control message).
fn send_with_fds(stream: &UnixStream, bytes: &[u8], fds: &[RawFd]) {
    let fd_bytes = size_of_val(fds) as u32;
    // SAFETY: CMSG_SPACE is pure arithmetic.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `control` holds CMSG_SPACE(fd_bytes) bytes, 8-aligned, so the first header
        // and its data of `fd_bytes` bytes lie inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                fd_bytes as usize,
            );
        }
    }
    // SAFETY: `msg` points at `iov` (over `bytes`, only read) and `control`, both alive for
    // the call, with their exact lengths.
    let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, 0) };
    assert_eq!(sent, bytes.len() as isize, "sendmsg");
}

/// What a node does with each connection.
#[derive(Clone, Copy)]
enum Node {
    /// Map 0 is page 2, map 1 pages 0–1; then echoes each interrupt write with `EVENTS`.
    Good,
    /// One map, page 1 (a subchannel's `ring`).
    Ring,
    BadMagic,
    NoFd,
    TwoFds,
    /// The header, then the connection closes.
    Truncated,
}

fn serve(path: &Path, node: Node, memory: &File) {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).unwrap();
    let memory = memory.try_clone().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let stream = stream.unwrap();
            let memory = memory.try_clone().unwrap();
            std::thread::spawn(move || answer(stream, node, &memory));
        }
    });
}

fn answer(mut stream: UnixStream, node: Node, memory: &File) {
    let fd = memory.as_raw_fd();
    let uio = handshake(
        b"hvsu",
        &[(2 * PAGE as u64, PAGE as u64), (0, 2 * PAGE as u64)],
    );
    match node {
        Node::Good => send_with_fds(&stream, &uio, &[fd]),
        Node::Ring => send_with_fds(&stream, &handshake(b"hvsu", &[(PAGE as u64, 4096)]), &[fd]),
        Node::BadMagic => send_with_fds(&stream, &handshake(b"hvsX", &[(0, 4096)]), &[fd]),
        Node::NoFd => send_with_fds(&stream, &uio, &[]),
        Node::TwoFds => send_with_fds(&stream, &uio, &[fd, fd]),
        Node::Truncated => send_with_fds(&stream, &uio[..16], &[fd]),
    }
    if !matches!(node, Node::Good) {
        return;
    }
    let mut word = [0u8; 4];
    while stream.read_exact(&mut word).is_ok() {
        assert_eq!(i32::from_le_bytes(word), 1, "the client enables interrupts");
        stream.write_all(&EVENTS.to_le_bytes()).unwrap();
    }
}

/// The child: every line is `name value`, compared by the test.
const CLIENT: &str = r#"
import ctypes, mmap, os, struct, sys
d = sys.argv[1]
def fds(): return len(os.listdir("/proc/self/fd"))
def pages(m, n): return ",".join(bytes(sorted(set(m[i*4096:(i+1)*4096]))).hex() for i in range(n))
def err(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return str(e.errno)
before = fds()
fd = os.open(d + "/good", os.O_RDWR)
m0 = mmap.mmap(fd, 4096, offset=0)
print("map0", pages(m0, 1))
m0[0] = 0x55
m1 = mmap.mmap(fd, 8192, offset=4096)
print("map1", pages(m1, 2))
print("map2", err(lambda: mmap.mmap(fd, 4096, offset=8192)))
print("map0-too-long", err(lambda: mmap.mmap(fd, 8192, offset=0)))
os.write(fd, struct.pack("<i", 1))
print("events", struct.unpack("<I", os.read(fd, 4))[0])
os.close(fd)
root = os.open("/", os.O_RDONLY)
fd = os.open(d + "/good", os.O_RDWR, dir_fd=root)
print("openat-map1", pages(mmap.mmap(fd, 4096, offset=4096), 1))
os.close(fd)
os.close(root)
fd = os.open(d + "/ring", os.O_RDWR)
print("ring-size", os.fstat(fd).st_size)
os.close(fd)
# The same through the symbols without "64" (python itself calls open64, mmap64, ...).
c = ctypes.CDLL(None, use_errno=True)
c.open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint]
c.openat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint]
c.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t] + [ctypes.c_int] * 3 + [ctypes.c_long]
c.mmap.restype = ctypes.c_void_p
c.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
def c_map(fd, offset):
    p = c.mmap(None, 4096, mmap.PROT_READ, mmap.MAP_SHARED, fd, offset)
    if p == ctypes.c_void_p(-1).value:
        return str(ctypes.get_errno())
    page = ctypes.string_at(p, 4096)
    c.munmap(p, 4096)
    return bytes(sorted(set(page))).hex()
fd = c.open((d + "/good").encode(), os.O_RDWR, 0)
print("c-open-map1", c_map(fd, 4096))
print("c-open-map2", c_map(fd, 8192))
c.close(fd)
fd = c.openat(-100, (d + "/good").encode(), os.O_RDWR, 0)  # AT_FDCWD
print("c-openat-map0", c_map(fd, 0))
c.close(fd)
m0.close(); m1.close()
print("leaked-fds", fds() - before)
with open(d + "/plain") as f: print("plain", f.read())
print("missing", err(lambda: os.open(d + "/missing", os.O_RDONLY)))
os.umask(0)
os.close(os.open(d + "/created", os.O_CREAT | os.O_WRONLY, 0o640))
print("created-mode", oct(os.stat(d + "/created").st_mode & 0o777))
for bad in ["bad-magic", "no-fd", "two-fds", "truncated"]:
    print(bad, err(lambda: os.open(d + "/" + bad, os.O_RDWR)))
print("leaked-fds-after-bad", fds() - before)
"#;

#[test]
fn an_unmodified_client_opens_maps_and_closes_a_simulated_node() {
    let preload = preload();
    let python = python();
    let dir = std::env::temp_dir().join(format!("hvnet-sim-uio-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let memory = host_memory();
    for (name, node) in [
        ("good", Node::Good),
        ("ring", Node::Ring),
        ("bad-magic", Node::BadMagic),
        ("no-fd", Node::NoFd),
        ("two-fds", Node::TwoFds),
        ("truncated", Node::Truncated),
    ] {
        serve(&dir.join(name), node, &memory);
    }
    std::fs::write(dir.join("plain"), "just a file").unwrap();

    let mut child = Command::new(python)
        .args(["-c", CLIENT])
        .arg(&dir)
        .env("LD_PRELOAD", &preload)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting python3");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > BOUND {
            let _ = child.kill();
            panic!("the client did not finish within {BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        status.success(),
        "client failed: {status}\n{stdout}\n{stderr}"
    );

    let einval = libc::EINVAL.to_string();
    let eproto = libc::EPROTO.to_string();
    let enoent = libc::ENOENT.to_string();
    let events = EVENTS.to_string();
    let expected = [
        ("map0", "a2"),
        ("map1", "a0,a1"),
        ("map2", &einval),
        ("map0-too-long", &einval),
        ("events", &events),
        ("openat-map1", "a0"),
        ("ring-size", "4096"),
        ("c-open-map1", "a0"),
        ("c-open-map2", &einval),
        ("c-openat-map0", "55a2"), // with the byte written through map0 above
        ("leaked-fds", "0"),
        ("plain", "just a file"),
        ("missing", &enoent),
        ("created-mode", "0o640"),
        ("bad-magic", &eproto),
        ("no-fd", &eproto),
        ("two-fds", &eproto),
        ("truncated", &eproto),
        ("leaked-fds-after-bad", "0"),
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    let expected: Vec<String> = expected.iter().map(|(k, v)| format!("{k} {v}")).collect();
    assert_eq!(lines, expected, "stderr:\n{stderr}");

    // The client's write went to the host's memory: map 0 is a shared map of page 2.
    let mut byte = [0u8; 1];
    memory.read_exact_at(&mut byte, 2 * PAGE as u64).unwrap();
    assert_eq!(byte[0], 0x55);
    let _ = std::fs::remove_dir_all(&dir);
}
