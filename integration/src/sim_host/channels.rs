//! Channels as the kernel shows them to a `uio_hv_generic` user: after the host offers
//! them, `channels/<relid>/{subchannel_id,monitor_id,ring}` per subchannel, the `ring` file
//! (both rings, guest→host first) mapped whole at offset 0.
//!
//! `uio_hv_generic` opens a subchannel as soon as it is offered and then creates its `ring`
//! file, so [`Subchannels::offer`] opens them on the bus first and publishes each directory
//! with its `ring` last (clients poll for it). Each `ring` is a node of its own (a unix
//! socket answering the "hvnet-sim-uio v1" handshake with the one map), as the primary
//! node is; a client that opens it gets the handshake and the server's end is closed (there is
//! no interrupt protocol on a ring file).

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use packet::SharedMemory;

use super::sys;
use super::uio::{UioMap, handshake};

/// One published subchannel.
#[derive(Debug)]
struct Published {
    dir: PathBuf,
    ring: UnixListener,
    handshake: Vec<u8>,
}

/// The subchannels of the current session.
#[derive(Debug)]
pub(crate) struct Subchannels {
    /// `bus/vmbus/devices/<instance>/channels`.
    channels_dir: PathBuf,
    primary_relid: u32,
    /// Channel `i`'s rings (index `i`; index 0, the primary's, unused).
    rings: Vec<UioMap>,
    /// The primary channel's `ring` (DPDK looks for it before it asks for subchannels).
    primary: Published,
    published: Vec<Published>,
}

impl Subchannels {
    /// Publishes the primary channel's `ring` (its directory exists already); subchannels
    /// come with [`publish`](Self::publish).
    pub(crate) fn new(
        channels_dir: PathBuf,
        primary_relid: u32,
        rings: Vec<UioMap>,
    ) -> io::Result<Self> {
        let dir = channels_dir.join(primary_relid.to_string());
        let ring = UnixListener::bind(dir.join("ring"))?;
        ring.set_nonblocking(true)?;
        let primary = Published {
            dir,
            ring,
            handshake: handshake(&rings[..1]),
        };
        Ok(Self {
            channels_dir,
            primary_relid,
            rings,
            primary,
            published: Vec::new(),
        })
    }

    /// Subchannels published now.
    pub(crate) fn count(&self) -> usize {
        self.published.len()
    }

    /// The most subchannels the bus lays out.
    pub(crate) fn max(&self) -> usize {
        self.rings.len().saturating_sub(1)
    }

    /// Publishes subchannels `count() + 1 ..= count` (already opened on the bus).
    pub(crate) fn publish(&mut self, count: usize) -> io::Result<()> {
        for i in self.published.len() + 1..=count.min(self.max()) {
            let relid = self.primary_relid + i as u32;
            let dir = self.channels_dir.join(relid.to_string());
            // A client lists the directory while it appears: it must appear with its
            // attributes written (as sysfs makes it), so it is made under a name no client
            // reads and renamed into place; the ring comes last.
            let pending = self.channels_dir.join(format!(".pending-{relid}"));
            let _ = fs::remove_dir_all(&pending);
            fs::create_dir_all(&pending)?;
            fs::write(pending.join("subchannel_id"), format!("{i}\n"))?;
            // The bus's monitor id of channel i is i.
            fs::write(pending.join("monitor_id"), format!("{i}\n"))?;
            fs::rename(&pending, &dir)?;
            let ring = UnixListener::bind(dir.join("ring"))?;
            ring.set_nonblocking(true)?;
            self.published.push(Published {
                dir,
                ring,
                handshake: handshake(std::slice::from_ref(&self.rings[i])),
            });
        }
        Ok(())
    }

    /// Answers every client waiting on a `ring`.
    pub(crate) fn serve(&self, memory: &SharedMemory) {
        let Some(fd) = memory.fd() else {
            return;
        };
        for p in std::iter::once(&self.primary).chain(&self.published) {
            while let Ok((stream, _)) = p.ring.accept() {
                if let Err(e) = sys::send_with_fd(&stream, &p.handshake, fd.as_fd()) {
                    tracing::warn!("sim-host: answering {}/ring: {e}", p.dir.display());
                }
            }
        }
    }

    /// Removes every subchannel (a new session: the kernel rescinds the old ones).
    pub(crate) fn withdraw(&mut self) {
        for p in self.published.drain(..) {
            let _ = fs::remove_dir_all(&p.dir);
        }
    }
}

impl Drop for Subchannels {
    fn drop(&mut self) {
        self.withdraw();
    }
}
