//! `--pcap FILE`: every frame the application received and every frame a port took for
//! transmit, in one pcapng file that tshark, Wireshark and tcpdump read.
//!
//! One interface per port (`hvnet port N`), nanosecond timestamps, and the direction in each
//! packet's flags (inbound 1, outbound 2: `tshark -Y 'frame.packet_flags_direction == 1'`
//! counts what a port received). Pollers write whole bursts under one lock; the file is
//! buffered and flushed at exit. A write that fails stops the capture (logged once, frames
//! after it counted as not captured), never the port.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use parking_lot::Mutex;
use pcap_file::DataLink;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};

/// Which way a frame went, as pcapng's `epb_flags` direction bits say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received by the port.
    Inbound,
    /// Taken by the port for transmit.
    Outbound,
}

impl Direction {
    fn flags(self) -> u32 {
        match self {
            Self::Inbound => 1,
            Self::Outbound => 2,
        }
    }
}

/// An open capture file.
pub struct Capture {
    writer: Mutex<Option<PcapNgWriter<BufWriter<File>>>>,
    written: AtomicU64,
    missed: AtomicU64,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("open", &self.writer.lock().is_some())
            .field("written", &self.written)
            .field("missed", &self.missed)
            .finish()
    }
}

impl Capture {
    /// Creates `path` with one interface per port.
    pub fn create(path: &Path, ports: usize) -> anyhow::Result<Self> {
        let file = File::create(path)
            .with_context(|| format!("creating the capture file {}", path.display()))?;
        let mut writer = PcapNgWriter::new(BufWriter::new(file))
            .with_context(|| format!("writing {}", path.display()))?;
        for port in 0..ports {
            writer
                .write_pcapng_block(InterfaceDescriptionBlock {
                    linktype: DataLink::ETHERNET,
                    snaplen: 0,
                    options: vec![
                        InterfaceDescriptionOption::IfName(Cow::Owned(format!(
                            "hvnet port {port}"
                        ))),
                        InterfaceDescriptionOption::IfTsResol(9),
                    ],
                })
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(Self {
            writer: Mutex::new(Some(writer)),
            written: AtomicU64::new(0),
            missed: AtomicU64::new(0),
        })
    }

    /// Writes `frames` of port `port`, all going `direction`.
    pub fn write<'a>(
        &self,
        port: usize,
        direction: Direction,
        frames: impl ExactSizeIterator<Item = &'a [u8]>,
    ) {
        let count = frames.len() as u64;
        if count == 0 {
            return;
        }
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let mut guard = self.writer.lock();
        let Some(writer) = guard.as_mut() else {
            self.missed.fetch_add(count, Ordering::Relaxed);
            return;
        };
        let mut done = 0;
        for frame in frames {
            let block = EnhancedPacketBlock {
                interface_id: port as u32,
                timestamp,
                original_len: frame.len() as u32,
                data: Cow::Borrowed(frame),
                options: vec![EnhancedPacketOption::Flags(direction.flags())],
            };
            if let Err(e) = writer.write_pcapng_block(block) {
                tracing::error!("the capture stopped: {e}");
                *guard = None;
                break;
            }
            done += 1;
        }
        self.written.fetch_add(done, Ordering::Relaxed);
        self.missed.fetch_add(count - done, Ordering::Relaxed);
    }

    /// Flushes the file; how many frames it holds and how many it missed.
    pub fn finish(&self) -> anyhow::Result<(u64, u64)> {
        if let Some(mut writer) = self.writer.lock().take() {
            writer
                .get_mut()
                .flush()
                .context("flushing the capture file")?;
        }
        Ok((
            self.written.load(Ordering::Relaxed),
            self.missed.load(Ordering::Relaxed),
        ))
    }
}

#[cfg(test)]
mod tests {
    use pcap_file::pcapng::{Block, PcapNgReader};

    use super::*;

    #[test]
    fn frames_read_back_with_their_port_direction_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pcapng");
        let capture = Capture::create(&path, 2).unwrap();
        let a = [0xaau8; 60];
        let b = [0xbbu8; 1514];
        capture.write(0, Direction::Inbound, [&a[..], &b[..]].into_iter());
        capture.write(1, Direction::Outbound, [&b[..]].into_iter());
        assert_eq!(capture.finish().unwrap(), (3, 0));
        // Writing after the end is counted, not lost silently.
        capture.write(0, Direction::Inbound, [&a[..]].into_iter());
        assert_eq!(capture.finish().unwrap(), (3, 1));

        let mut reader = PcapNgReader::new(File::open(&path).unwrap()).unwrap();
        let mut interfaces = 0;
        let mut packets = Vec::new();
        while let Some(block) = reader.next_block() {
            match block.unwrap() {
                Block::InterfaceDescription(i) => {
                    assert_eq!(i.linktype, DataLink::ETHERNET);
                    interfaces += 1;
                }
                Block::EnhancedPacket(p) => {
                    let flags = match p.options.as_slice() {
                        [EnhancedPacketOption::Flags(f)] => Some(*f),
                        _ => None,
                    };
                    packets.push((p.interface_id, flags, p.data.len(), p.data[0]));
                }
                _ => {}
            }
        }
        assert_eq!(interfaces, 2);
        assert_eq!(
            packets,
            vec![
                (0, Some(1), 60, 0xaa),
                (0, Some(1), 1514, 0xbb),
                (1, Some(2), 1514, 0xbb)
            ]
        );
    }
}
