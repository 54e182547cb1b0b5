//! `hvnet sim-host`: the simulated Hyper-V host as a process any netvsc client attaches to.
//!
//! [`SimHostServer::start`] starts a [`SimHost`] and publishes, under a root directory, what
//! a Hyper-V guest's kernel shows a `uio_hv_generic` user ([`tree`]) and a device node a
//! client opens and maps ([`uio`]). A client runs with `--sysfs-root ROOT` (hvnet; DPDK reads
//! `/sys`, so the root is bind-mounted over it inside a mount namespace) and the preload
//! library `libhvnet_sim_uio.so` (`integration/uio-preload`), which makes the node's socket
//! behave as a uio node. The client's rings, interrupt page, monitor page and receive and
//! send buffers are the host's shared memory, so the host sees nothing but bytes and monitor
//! trigger bits, as with a guest in the same process.
//!
//! One host serves one client at a time, session after session: a client that opens the node
//! after the last one closed it gets a new session (see [`uio`]).
//!
//! Subchannels are published as the host offers them (`channels`), up to the bus's channel
//! count (8 by default).
//!
//! A DPDK client's heap is the host's memory too: the `memory` node (see `uio::HeapNode`)
//! hands it to EAL through the preload library, mapped so that the client's IOVAs (its
//! virtual addresses) are the host's GPAs, which [`GUEST_MEMORY`] covers.
//!
//! [`ctl`]: scripting the host from outside (`hvnet sim-host ctl`).

mod channels;
pub mod ctl;
mod sys;
pub mod tap;
pub mod tree;
pub mod uio;
pub mod vf_iface;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use netvsc::vmbus::VmbusDevice;
use netvsc::vmbus::shm::{ShmConfig, ShmLayout};
use packet::PAGE_SIZE;

use crate::host::{HostConfig, HostError, SimHost};
use tree::{DeviceEntry, Tree};
use uio::{UioMap, UioNode, UioNodeStats};

/// The instance GUID the simulated NetVSC has unless told otherwise.
pub const DEFAULT_INSTANCE: &str = "5c5a8d2e-7b1f-4c3d-9e6a-0123456789ab";
/// The primary channel's relid (as a small guest's first NIC often has).
pub const DEFAULT_RELID: u32 = 14;
/// The guest memory the host serves (sparse): its GPAs cover a DPDK client's heap, which
/// EAL places from 4 GiB up and whose IOVAs are its virtual addresses.
pub const GUEST_MEMORY: usize = 16 << 30;

/// How the served host is made.
#[derive(Clone, Debug)]
pub struct SimHostConfig {
    /// The host (its queue count is capped at the bus's channel count).
    pub host: HostConfig,
    /// The NetVSC's instance GUID.
    pub instance: String,
    /// The primary channel's relid.
    pub relid: u32,
    /// The interface that is the VF's port ([`vf_iface`]): the host's end of a veth pair.
    pub vf_iface: Option<String>,
    /// A TAP device to create as the vSwitch's external port ([`tap`]).
    pub tap: Option<String>,
}

impl Default for SimHostConfig {
    fn default() -> Self {
        Self {
            host: HostConfig::default(),
            instance: DEFAULT_INSTANCE.into(),
            relid: DEFAULT_RELID,
            vf_iface: None,
            tap: None,
        }
    }
}

/// Why a served host did not start.
#[derive(Debug, thiserror::Error)]
pub enum SimHostError {
    /// The host itself.
    #[error("starting the simulated host")]
    Host(#[from] HostError),
    /// Its bus.
    #[error("the simulated bus")]
    Device(#[from] netvsc::vmbus::DeviceError),
    /// Writing the tree or serving the node.
    #[error("publishing under {path}")]
    Publish {
        /// What was being written.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The VF's interface.
    #[error("the VF port on interface {name:?}")]
    VfIface {
        /// The interface.
        name: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The TAP device.
    #[error("creating the TAP device {name:?}")]
    Tap {
        /// The device.
        name: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A bad instance GUID.
    #[error("instance {0:?} is not a GUID (8-4-4-4-12 hex digits)")]
    Instance(String),
}

/// A host served under a root; dropping it stops serving and removes what it published.
#[derive(Debug)]
pub struct SimHostServer {
    /// `None` only while dropping: the control socket and the node go first (no client can
    /// come), then the tree.
    ctl: Option<ctl::CtlServer>,
    node: Option<Arc<UioNode>>,
    vf: Option<Arc<vf_iface::VfIfacePort>>,
    tap: Option<Arc<tap::TapPort>>,
    mac: packet::MacAddr,
    host: Arc<SimHost>,
    tree: Tree,
    entry: DeviceEntry,
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl SimHostServer {
    /// Starts the host and publishes it under `root`.
    pub fn start(root: &Path, config: SimHostConfig) -> Result<Self, SimHostError> {
        let instance = config.instance.to_ascii_lowercase();
        if !is_guid(&instance) {
            return Err(SimHostError::Instance(config.instance));
        }
        let mut host_config = config.host;
        host_config.max_queues = host_config.max_queues.min(host_config.shm.max_channels);
        // The DMA area runs to GUEST_MEMORY: clients' heaps (their IOVAs, see `uio`) lie in
        // it. Sparse: only pages a client touches cost memory.
        let without = ShmLayout::new(&ShmConfig {
            dma_size: 0,
            ..host_config.shm.clone()
        })?;
        host_config.shm.dma_size = GUEST_MEMORY
            .saturating_sub(without.total_size)
            .max(host_config.shm.dma_size);
        let layout = ShmLayout::new(&host_config.shm)?;
        let shm = host_config.shm.clone();
        let mac = host_config.mac;
        let (host, mut device) = SimHost::start(host_config)?;
        // The interrupt page: a page of the bus memory nothing else uses.
        let int_page = device.dma_memory(PAGE_SIZE)?;
        let maps = vec![
            UioMap {
                name: "txrx_rings".into(),
                offset: layout.outgoing_ring_offset(0) as u64,
                size: 2 * layout.ring_size as u64,
            },
            UioMap {
                name: "int_page".into(),
                offset: int_page.offset_in_mapping() as u64,
                size: PAGE_SIZE as u64,
            },
            UioMap {
                name: "monitor_page".into(),
                offset: layout.monitor_offset as u64,
                size: PAGE_SIZE as u64,
            },
            UioMap {
                name: format!("recv:{}", shm.receive_gpadl),
                offset: layout.receive_buffer_offset as u64,
                size: layout.receive_buffer_size as u64,
            },
            UioMap {
                name: format!("send:{}", shm.send_gpadl),
                offset: layout.send_buffer_offset as u64,
                size: layout.send_buffer_size as u64,
            },
        ];
        let entry = DeviceEntry {
            instance,
            relid: config.relid,
            // The bus's monitor id of channel i is i.
            monitor_id: 0,
            uio: "uio0".into(),
            maps: maps.clone(),
        };
        let publish_error = |path: &Path, source| SimHostError::Publish {
            path: path.to_path_buf(),
            source,
        };
        let tree = Tree::publish(root, &entry).map_err(|e| publish_error(root, e))?;
        let memory = host.guest_memory();
        let rings = (0..layout.max_channels)
            .map(|i| UioMap {
                name: format!("ring {i}"),
                offset: layout.outgoing_ring_offset(i) as u64,
                size: 2 * layout.ring_size as u64,
            })
            .collect();
        let subchannels =
            match channels::Subchannels::new(tree.device_dir.join("channels"), config.relid, rings)
            {
                Ok(subchannels) => subchannels,
                Err(e) => {
                    tree.remove(&entry);
                    return Err(publish_error(&tree.device_dir.join("channels"), e));
                }
            };
        let heap_start = int_page.offset_in_mapping() + PAGE_SIZE;
        let heap = match uio::HeapNode::bind(
            &tree.root.join("dev/memory"),
            layout.total_size as u64,
            (heap_start, layout.total_size - heap_start),
        ) {
            Ok(heap) => heap,
            Err(e) => {
                tree.remove(&entry);
                return Err(publish_error(&tree.root.join("dev/memory"), e));
            }
        };
        let node = match UioNode::serve(&tree.node, device, memory, maps, subchannels, heap) {
            Ok(node) => node,
            Err(e) => {
                tree.remove(&entry);
                return Err(publish_error(&tree.node, e));
            }
        };
        let node = Arc::new(node);
        let host = Arc::new(host);
        let vf = match &config.vf_iface {
            None => None,
            Some(name) => match vf_iface::VfIfacePort::open(name, host.clone()) {
                Ok(port) => Some(Arc::new(port)),
                Err(source) => {
                    drop(node);
                    tree.remove(&entry);
                    return Err(SimHostError::VfIface {
                        name: name.clone(),
                        source,
                    });
                }
            },
        };
        let tap = match &config.tap {
            None => None,
            Some(name) => match tap::TapPort::open(name, host.clone()) {
                Ok(port) => Some(Arc::new(port)),
                Err(source) => {
                    drop((vf, node));
                    tree.remove(&entry);
                    return Err(SimHostError::Tap {
                        name: name.clone(),
                        source,
                    });
                }
            },
        };
        let ctl = {
            let counted = node.clone();
            match ctl::CtlServer::serve(
                &tree.root.join("ctl"),
                host.clone(),
                ctl::Ports {
                    vf: vf.clone(),
                    tap: tap.clone(),
                },
                move || counted.stats(),
            ) {
                Ok(ctl) => ctl,
                Err(e) => {
                    drop(node);
                    tree.remove(&entry);
                    return Err(publish_error(&tree.root.join("ctl"), e));
                }
            }
        };
        Ok(Self {
            ctl: Some(ctl),
            node: Some(node),
            vf,
            tap,
            mac,
            host,
            tree,
            entry,
        })
    }

    /// The host (link, VF and fault scripting, counters).
    pub fn host(&self) -> &Arc<SimHost> {
        &self.host
    }

    /// The published tree's paths.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// The device's instance GUID.
    pub fn instance(&self) -> &str {
        &self.entry.instance
    }

    /// The synthetic NIC's MAC (a VF's port must carry it to be adopted as the VF).
    pub fn mac(&self) -> packet::MacAddr {
        self.mac
    }

    /// The TAP port, if the host has one.
    pub fn tap_port(&self) -> Option<&tap::TapPort> {
        self.tap.as_deref()
    }

    /// The VF's port, if the host has one.
    pub fn vf_port(&self) -> Option<&vf_iface::VfIfacePort> {
        self.vf.as_deref()
    }

    /// The node's counters (opens, sessions, interrupts).
    pub fn node_stats(&self) -> UioNodeStats {
        self.node.as_ref().map(|n| n.stats()).unwrap_or_default()
    }
}

impl Drop for SimHostServer {
    fn drop(&mut self) {
        drop(self.ctl.take());
        drop(self.node.take());
        drop(self.vf.take());
        drop(self.tap.take());
        self.tree.remove(&self.entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_guids_are_checked() {
        assert!(is_guid(DEFAULT_INSTANCE));
        assert!(!is_guid("5c5a8d2e-7b1f-4c3d-9e6a"));
        assert!(!is_guid("5c5a8d2e-7b1f-4c3d-9e6a-0123456789ag"));
        assert!(!is_guid("{5c5a8d2e-7b1f-4c3d-9e6a-0123456789ab}"));
    }

    #[test]
    fn the_tree_is_published_and_removed() {
        let dir = std::env::temp_dir().join(format!("hvnet-sim-tree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let server = SimHostServer::start(&dir, SimHostConfig::default()).unwrap();
        let devices = dir.join("bus/vmbus/devices");
        // hvnet's own sysfs reader finds it as a NetVSC on uio.
        let found =
            netvsc::vmbus::uio::sysfs::devices_of_class(&dir, netvsc::vmbus::NETVSC_CLASS_ID)
                .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].instance, DEFAULT_INSTANCE);
        assert_eq!(found[0].relid, DEFAULT_RELID);
        assert_eq!(found[0].monitor_id, Some(0));
        assert_eq!(found[0].uio.as_deref(), Some("uio0"));
        let maps = netvsc::vmbus::uio::sysfs::read_maps(&dir, "uio0").unwrap();
        let names: Vec<&str> = maps.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names[..3], ["txrx_rings", "int_page", "monitor_page"]);
        assert!(names[3].starts_with("recv:") && names[4].starts_with("send:"));
        assert!(dir.join("dev/uio0").exists());
        assert!(
            SimHostServer::start(&dir, SimHostConfig::default()).is_err(),
            "a second host on the same root is refused"
        );
        drop(server);
        assert!(!devices.exists() && !dir.join("dev/uio0").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
