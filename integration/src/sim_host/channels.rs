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
//!
//! A `ring` appears only once it is listening: binding a unix socket creates its file before
//! `listen`, and a client that connects in between is refused (`ECONNREFUSED`), which a sysfs
//! attribute never does. So each is bound under a hidden name in its directory and renamed
//! into place.

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

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
        let ring = listen_at(&dir)?;
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
            let ring = listen_at(&dir)?;
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

/// A non-blocking listener on `dir/ring`, the file appearing there only once the socket
/// listens: bound as `dir/.r`, then renamed (the socket is found by its file's inode, which
/// the rename keeps). The hidden name is shorter than `ring`, so a tree whose `ring` paths fit
/// a socket address fits it too; clients look for `ring` only.
fn listen_at(dir: &Path) -> io::Result<UnixListener> {
    let pending = dir.join(".r");
    let _ = fs::remove_file(&pending);
    let ring = UnixListener::bind(&pending)?;
    ring.set_nonblocking(true)?;
    if let Err(e) = fs::rename(&pending, dir.join("ring")) {
        let _ = fs::remove_file(&pending);
        return Err(e);
    }
    Ok(ring)
}

impl Drop for Subchannels {
    fn drop(&mut self) {
        self.withdraw();
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A client polling for `ring` files connects to each as soon as it appears, while the
    /// host publishes and withdraws subchannels over and over: no connect is ever refused.
    #[test]
    fn a_ring_that_a_client_can_see_is_already_listening() {
        const PRIMARY: u32 = 10;
        const SUBCHANNELS: usize = 8;
        const ROUNDS: usize = 300;
        let root = std::env::temp_dir().join(format!("hvnet-sim-rings-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let channels_dir = root.join("channels");
        fs::create_dir_all(channels_dir.join(PRIMARY.to_string())).unwrap();
        let rings = (0..=SUBCHANNELS as u64)
            .map(|i| UioMap {
                name: "ring".into(),
                offset: i * 4096,
                size: 4096,
            })
            .collect();
        let mut host = Subchannels::new(channels_dir.clone(), PRIMARY, rings).unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let client = {
            let stop = stop.clone();
            let paths: Vec<PathBuf> = (1..=SUBCHANNELS as u32)
                .map(|i| channels_dir.join((PRIMARY + i).to_string()).join("ring"))
                .collect();
            std::thread::spawn(move || {
                // At most one connection to each published listener (a backlog never fills):
                // once connected, the next is after the ring was seen gone.
                let mut connected = vec![false; paths.len()];
                let (mut accepted, mut refused) = (0u64, Vec::new());
                while !stop.load(Ordering::Acquire) {
                    for (path, connected) in paths.iter().zip(&mut connected) {
                        if !path.exists() {
                            *connected = false;
                            continue;
                        }
                        if *connected {
                            continue;
                        }
                        match UnixStream::connect(path) {
                            Ok(_) => {
                                accepted += 1;
                                *connected = true;
                            }
                            // Withdrawn between the look and the connect.
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => refused.push(e.to_string()),
                        }
                    }
                }
                (accepted, refused)
            })
        };
        for _ in 0..ROUNDS {
            host.publish(SUBCHANNELS).unwrap();
            assert_eq!(host.count(), SUBCHANNELS);
            host.withdraw();
        }
        stop.store(true, Ordering::Release);
        let (accepted, refused) = client.join().unwrap();
        drop(host);
        let _ = fs::remove_dir_all(&root);
        assert!(
            refused.is_empty(),
            "{} connect(s) failed: {refused:?}",
            refused.len()
        );
        // The client did take part (each round publishes for a while).
        assert!(accepted > 0);
    }
}
