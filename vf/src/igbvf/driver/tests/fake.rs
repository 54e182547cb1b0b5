//! A small scripted 82576 VF: registers in a map, an automatic PF answering the mailbox,
//! anonymous DMA memory with made-up bus addresses, and a virtual clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use packet::SharedMemory;
use parking_lot::Mutex;

use crate::device::{ALL_ONES, DeviceError, EventFd, RegisterIo, VfDevice};
use crate::igbvf::driver::Clock;
use crate::igbvf::mailbox::{
    MacAddress, MailboxWords, MessageType, Request, VT_MSGTYPE_ACK, VT_MSGTYPE_CTS, VT_MSGTYPE_NACK,
};
use crate::igbvf::regs::{
    CTRL, Queue, V2PMAILBOX, V2pMailbox, VMBMEM_WORDS, ctrl, rxdctl, txdctl, vmbmem,
};

pub(super) const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

/// Register file and PF script.
#[derive(Debug, Default)]
pub(super) struct Regs {
    pub values: HashMap<u32, u32>,
    pub writes: Vec<(u32, u32)>,
    pub removed: bool,
    /// `RESET` requests still to be NACKed (answered as a PF without an administrator MAC).
    pub reset_nacks: u32,
    /// NACK `SET_MAC_ADDR` (a PF with another administrator MAC).
    pub nack_set_mac: bool,
    /// The MAC the PF accepted with `SET_MAC_ADDR`.
    pub pf_mac: Option<MacAddress>,
    /// Reads of `RXDCTL`/`TXDCTL` that still show `ENABLE` after a write cleared it (a queue
    /// finishing its last descriptors); `u32::MAX`: it never clears.
    pub enable_lag: u32,
    /// Reads that showed a stale `ENABLE`.
    pub stale_enable_reads: u32,
    /// Requests the PF received, decoded.
    pub requests: Vec<Request>,
    /// `RESET` requests to answer with a late `RSTD` beside the ACK (a PF finishing a reset).
    pub late_rstd: u32,
    /// Queue control registers whose `ENABLE` was just cleared and may still read back set.
    lagging: Vec<u32>,
}

/// `RXDCTL.ENABLE` and `TXDCTL.ENABLE` (the same bit).
const DCTL_ENABLE: u32 = rxdctl::ENABLE;

fn is_queue_ctl(offset: u32) -> bool {
    [Queue::Q0, Queue::Q1]
        .iter()
        .any(|&q| offset == rxdctl(q) || offset == txdctl(q))
}

impl Regs {
    fn get(&self, offset: u32) -> u32 {
        self.values.get(&offset).copied().unwrap_or(0)
    }

    fn pf_answer(&mut self) {
        let mut words: MailboxWords = [0; VMBMEM_WORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = self.get(vmbmem(i).unwrap());
        }
        let request = Request::decode(&words).unwrap().unwrap();
        let msg_type = u32::from(request.msg_type().0);
        let request_is_reset = request.msg_type() == MessageType::RESET;
        let reply: [u32; 3] = if request.msg_type() == MessageType::RESET {
            if self.reset_nacks > 0 {
                self.reset_nacks -= 1;
                [msg_type | VT_MSGTYPE_NACK, 0, 0]
            } else {
                [
                    msg_type | VT_MSGTYPE_ACK | VT_MSGTYPE_CTS,
                    u32::from_le_bytes([MAC[0], MAC[1], MAC[2], MAC[3]]),
                    u32::from_le_bytes([MAC[4], MAC[5], 0, 0]),
                ]
            }
        } else if let Request::SetMacAddr(mac) = request {
            if self.nack_set_mac {
                [msg_type | VT_MSGTYPE_NACK | VT_MSGTYPE_CTS, 0, 0]
            } else {
                self.pf_mac = Some(mac);
                [msg_type | VT_MSGTYPE_ACK | VT_MSGTYPE_CTS, 0, 0]
            }
        } else {
            [msg_type | VT_MSGTYPE_ACK | VT_MSGTYPE_CTS, 0, 0]
        };
        self.requests.push(request);
        for (i, w) in reply.iter().enumerate() {
            self.values.insert(vmbmem(i).unwrap(), *w);
        }
        let mut mbx = self.get(V2PMAILBOX) & !V2pMailbox::VFU;
        if request_is_reset && self.late_rstd > 0 {
            self.late_rstd -= 1;
            mbx |= V2pMailbox::RSTD;
        }
        self.values
            .insert(V2PMAILBOX, mbx | V2pMailbox::PFACK | V2pMailbox::PFSTS);
    }
}

/// BAR0 of the fake.
#[derive(Debug, Default)]
pub(super) struct FakeBar {
    pub regs: Mutex<Regs>,
}

impl RegisterIo for FakeBar {
    fn read32(&self, offset: u32) -> u32 {
        let mut regs = self.regs.lock();
        if regs.removed {
            return ALL_ONES;
        }
        let mut value = regs.get(offset);
        if is_queue_ctl(offset) && value & DCTL_ENABLE == 0 && regs.lagging.contains(&offset) {
            if regs.enable_lag == 0 {
                regs.lagging.retain(|&o| o != offset);
            } else {
                if regs.enable_lag != u32::MAX {
                    regs.enable_lag -= 1;
                }
                regs.stale_enable_reads += 1;
                value |= DCTL_ENABLE;
            }
        }
        if offset == V2PMAILBOX {
            regs.values.insert(offset, value & !V2pMailbox::R2C_BITS);
        }
        value
    }

    fn write32(&self, offset: u32, value: u32) {
        let mut regs = self.regs.lock();
        if regs.removed {
            return;
        }
        regs.writes.push((offset, value));
        match offset {
            CTRL => {
                regs.values.insert(offset, value & !ctrl::RST);
            }
            V2PMAILBOX => {
                let current = regs.get(offset);
                if value & V2pMailbox::REQ != 0 {
                    regs.pf_answer();
                } else if value & V2pMailbox::VFU != 0 {
                    regs.values.insert(offset, current | V2pMailbox::VFU);
                } else if value & V2pMailbox::ACK != 0 {
                    regs.values.insert(offset, current & !V2pMailbox::VFU);
                }
            }
            _ => {
                if is_queue_ctl(offset) && value & DCTL_ENABLE == 0 {
                    regs.lagging.push(offset);
                }
                regs.values.insert(offset, value);
            }
        }
    }
}

/// The fake function.
#[derive(Debug)]
pub(super) struct FakeVf {
    pub bar: Arc<FakeBar>,
    pub msix_supported: bool,
    pub msix: Mutex<Vec<Arc<EventFd>>>,
    pub request: Arc<EventFd>,
    pub dma: Mutex<Vec<SharedMemory>>,
    pub released: Mutex<bool>,
    /// The first 256 bytes of configuration space.
    pub config: Mutex<[u8; 256]>,
}

impl FakeVf {
    /// Reads `buf.len()` bytes at bus address `addr` of the DMA memory handed out, as the
    /// device would; panics if no allocation holds them.
    pub fn dma_read(&self, addr: u64, buf: &mut [u8]) {
        let dma = self.dma.lock();
        let mem = dma
            .iter()
            .find(|m| addr >= m.bus_addr(0) && addr + buf.len() as u64 <= m.bus_addr(m.len()))
            .expect("the address lies in dma memory");
        mem.read((addr - mem.bus_addr(0)) as usize, buf).unwrap();
    }

    pub fn new(msix_supported: bool) -> Arc<Self> {
        Arc::new(Self {
            bar: Arc::default(),
            msix_supported,
            msix: Mutex::default(),
            request: Arc::new(EventFd::new().unwrap()),
            dma: Mutex::default(),
            released: Mutex::new(false),
            config: Mutex::new([0; 256]),
        })
    }

    pub fn reg(&self, offset: u32) -> u32 {
        self.bar.regs.lock().get(offset)
    }

    pub fn set_reg(&self, offset: u32, value: u32) {
        self.bar.regs.lock().values.insert(offset, value);
    }

    pub fn wrote(&self, offset: u32, value: u32) -> bool {
        self.bar.regs.lock().writes.contains(&(offset, value))
    }

    pub fn requests(&self) -> Vec<Request> {
        self.bar.regs.lock().requests.clone()
    }

    /// The DMA memory at bus address `bus`, `len` bytes.
    pub fn mem_at(&self, bus: u64, len: usize) -> SharedMemory {
        let dma = self.dma.lock();
        let region = dma
            .iter()
            .find(|m| bus >= m.bus_addr(0) && bus + len as u64 <= m.bus_addr(m.len()))
            .expect("bus address inside a dma allocation");
        region
            .subregion((bus - region.bus_addr(0)) as usize, len)
            .unwrap()
    }
}

impl VfDevice for FakeVf {
    fn name(&self) -> &str {
        "fake-vf"
    }

    fn bar0(&self) -> Arc<dyn RegisterIo> {
        self.bar.clone()
    }

    fn config_read(&self, offset: u16, buf: &mut [u8]) -> Result<(), DeviceError> {
        let config = self.config.lock();
        let start = usize::from(offset).min(config.len());
        let end = (start + buf.len()).min(config.len());
        buf.fill(0);
        buf[..end - start].copy_from_slice(&config[start..end]);
        Ok(())
    }

    fn config_write(&self, offset: u16, buf: &[u8]) -> Result<(), DeviceError> {
        let mut config = self.config.lock();
        let start = usize::from(offset).min(config.len());
        let end = (start + buf.len()).min(config.len());
        config[start..end].copy_from_slice(&buf[..end - start]);
        Ok(())
    }

    fn dma_alloc(&self, size: usize) -> Result<SharedMemory, DeviceError> {
        let mut dma = self.dma.lock();
        // Bus addresses start 64 bytes off a page, so ring alignment is exercised.
        let base = dma
            .last()
            .map(|m| (m.bus_addr(m.len()) + 0x1000).next_multiple_of(0x1000) + 64)
            .unwrap_or(0x1_0000_0040);
        let mem = SharedMemory::anonymous(size)
            .map_err(|source| DeviceError::Memory {
                device: "fake-vf".into(),
                op: "dma",
                source,
            })?
            .with_bus_base(base);
        dma.push(mem.clone());
        Ok(mem)
    }

    fn dma_reachable(&self, memory: &SharedMemory) -> bool {
        self.dma.lock().iter().any(|m| m.contains(memory))
    }

    fn enable_msix(&self, vectors: u32) -> Result<Vec<Arc<EventFd>>, DeviceError> {
        if !self.msix_supported {
            return Err(DeviceError::Unsupported {
                device: "fake-vf".into(),
                what: "msi-x",
            });
        }
        let fds: Vec<_> = (0..vectors)
            .map(|_| Arc::new(EventFd::new().unwrap()))
            .collect();
        *self.msix.lock() = fds.clone();
        Ok(fds)
    }

    fn disable_msix(&self) -> Result<(), DeviceError> {
        self.msix.lock().clear();
        Ok(())
    }

    fn request_irq(&self) -> Result<Arc<EventFd>, DeviceError> {
        Ok(self.request.clone())
    }

    fn is_present(&self) -> bool {
        !self.bar.regs.lock().removed
    }

    fn release(&self) -> Result<(), DeviceError> {
        *self.released.lock() = true;
        self.bar.regs.lock().removed = true;
        Ok(())
    }

    fn reset(&self) -> Result<(), DeviceError> {
        Ok(())
    }
}

/// A clock whose `pause` advances virtual time instead of sleeping.
#[derive(Debug)]
pub(super) struct TestClock {
    now: Mutex<Instant>,
}

impl TestClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            now: Mutex::new(Instant::now()),
        })
    }
}

impl Clock for TestClock {
    fn now(&self) -> Instant {
        *self.now.lock()
    }

    fn pause(&self, duration: Duration) {
        *self.now.lock() += duration;
    }
}
