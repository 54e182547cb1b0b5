#!/usr/bin/env python3
"""Host end of the QEMU guest's wire for tests/qemu/run.

QEMU's igb uses `-netdev dgram` over a pair of UNIX datagram sockets: one datagram per
Ethernet frame. This end binds --host-sock, sends to --qemu-sock, and speaks the protocol of
vf/examples/vfio_igbvf_check.rs (ethertype 0x88b5):

- on every `HVNET-HELLO` (round, count) from the VF it injects `count` `HVNET-RX` frames, seq
  0..count, unicast to the hello's source MAC, each with its own length and byte pattern;
- every `HVNET-TX` frame (seq, count) must come from that MAC to HOST_MAC with exactly the
  length and pattern of its seq; all `count` seqs must arrive.

Ends when <host-sock>.stop appears or after --max-secs; prints one summary line
`WIRE ... ok=0|1` on stdout and logs every frame to --log.
"""
import argparse
import os
import socket
import struct
import time

ETHERTYPE = 0x88B5
HOST_MAC = bytes([0x02, 0x00, 0x00, 0x48, 0x56, 0x01])
TAG_HELLO = b"HVNET-HELLO"
TAG_RX = b"HVNET-RX"
TAG_TX = b"HVNET-TX"
MIN_FRAME = 60
MAX_FRAME = 1514


def frame_len(seq, salt):
    return MIN_FRAME + (seq * salt) % (MAX_FRAME - MIN_FRAME + 1)


def pattern_byte(seq, k, mul, add):
    return (seq * mul + k * 7 + add) & 0xFF


def build_frame(dst, src, tag, seq, count, length, mul, add):
    f = bytearray(dst + src + struct.pack(">H", ETHERTYPE) + tag + struct.pack(">II", seq, count))
    while len(f) < max(length, MIN_FRAME):
        f.append(pattern_byte(seq, len(f), mul, add))
    return bytes(f)


def mac(b):
    return ":".join(f"{x:02x}" for x in b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host-sock", required=True)
    ap.add_argument("--qemu-sock", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--max-secs", type=float, default=300)
    a = ap.parse_args()

    if os.path.exists(a.host_sock):
        os.unlink(a.host_sock)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(a.host_sock)
    s.settimeout(0.1)
    stop_file = a.host_sock + ".stop"

    vf_mac = None
    tx_seen, tx_expected = set(), None
    tx_bad = tx_dup = hellos = injected = from_guest = 0
    first_bad = ""
    t0 = time.monotonic()
    with open(a.log, "w", buffering=1) as log:
        log.write(f"# wire up: host={a.host_sock} qemu={a.qemu_sock}\n")
        while time.monotonic() - t0 < a.max_secs and not os.path.exists(stop_file):
            try:
                data = s.recv(65536)
            except socket.timeout:
                continue
            from_guest += 1
            now = time.monotonic() - t0
            et = int.from_bytes(data[12:14], "big") if len(data) >= 14 else 0
            log.write(f"{now:8.3f} len={len(data)} dst={mac(data[0:6])} src={mac(data[6:12])} "
                      f"type={et:#06x} {data[14:30]!r}\n")
            if et != ETHERTYPE:
                continue
            body = data[14:]
            if body.startswith(TAG_HELLO) and len(body) >= len(TAG_HELLO) + 8:
                rnd, count = struct.unpack_from(">II", body, len(TAG_HELLO))
                vf_mac = data[6:12]
                hellos += 1
                for seq in range(count):
                    f = build_frame(vf_mac, HOST_MAC, TAG_RX, seq, count, frame_len(seq, 131), 13, 0x5A)
                    try:
                        s.sendto(f, a.qemu_sock)
                        injected += 1
                    except OSError as e:  # QEMU gone or its queue full: the guest retries
                        log.write(f"# inject seq {seq} failed: {e}\n")
                log.write(f"# hello round {rnd} from {mac(vf_mac)}: injected {count} frames\n")
            elif body.startswith(TAG_TX) and len(body) >= len(TAG_TX) + 8:
                seq, count = struct.unpack_from(">II", body, len(TAG_TX))
                tx_expected = count
                want = build_frame(HOST_MAC, vf_mac or b"\0" * 6, TAG_TX, seq, count,
                                   frame_len(seq, 97), 31, 0x11)
                # the NIC may pad short frames; it must not change a byte of the frame
                if data[:len(want)] != want or len(data) != len(want) or seq >= count:
                    tx_bad += 1
                    if not first_bad:
                        diff = next((i for i in range(min(len(data), len(want))) if data[i] != want[i]), None)
                        first_bad = f"seq={seq} len={len(data)} want_len={len(want)} first_diff={diff}"
                elif seq in tx_seen:
                    tx_dup += 1
                else:
                    tx_seen.add(seq)
        log.write(f"# done after {time.monotonic() - t0:.1f}s\n")
    ok = tx_expected is not None and tx_expected > 0 and len(tx_seen) == tx_expected and tx_bad == 0
    print(f"WIRE tx_frames={len(tx_seen)}/{tx_expected} tx_bad={tx_bad} tx_dup={tx_dup} "
          f"hellos={hellos} injected={injected} guest_frames={from_guest} "
          f"vf_mac={mac(vf_mac) if vf_mac else 'none'} ok={int(ok)}"
          + (f" first_bad=\"{first_bad}\"" if first_bad else ""))


if __name__ == "__main__":
    main()
