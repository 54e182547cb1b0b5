//! The mailbox: `V2PMAILBOX`/`VMBMEM` as the VF sees them, and a PF that answers like Linux igb.
//!
//! VF side: writing `VFU` takes the buffer (unless the PF holds it), writing `REQ` posts a
//! message and writing `ACK` acknowledges the PF's; any write without `VFU` releases the buffer.
//! `VMBMEM` writes count only while the VF holds the buffer. `PFSTS`, `PFACK` and `RSTD` clear
//! when read; `RSTI` is live.
//!
//! PF side (Linux `igb_rcv_msg_from_vf`, run by the DMA thread): a posted message is read and
//! acknowledged (`PFACK`), then answered in place (`PFSTS`). Words that already carry ACK or
//! NACK are ignored. `RESET` gets `RESET|ACK` and the administrator MAC in words 1–2 (or
//! `RESET|NACK` and zeros when there is none), enables the VF's queues and makes the VF clear
//! to send; the reply itself carries no CTS. Before that, every other request gets `NACK`
//! without CTS. Afterwards: `SET_MAC_ADDR` is acked only for the administrator MAC (any valid
//! MAC when there is none), `SET_MULTICAST`, `SET_VLAN` and `SET_LPE` (up to 9728 bytes) are
//! acked, anything else is nacked, all with CTS. Unsolicited messages (`PF_CONTROL_MSG` on a
//! link change or when a PF reset ends; the bare NACK after a PF reset) wait in an outbox until
//! the VF has acknowledged the previous message and does not hold the buffer.

use std::collections::{BTreeSet, VecDeque};

use vf::igbvf::mailbox::{
    MailboxWords, MessageType, Request, VT_MSGTYPE_ACK, VT_MSGTYPE_CTS, VT_MSGTYPE_NACK,
    is_valid_unicast,
};
use vf::igbvf::regs::{V2pMailbox, VMBMEM, VMBMEM_WORDS};

use super::port::PfState;
use super::regs_file::{Cause, Function};

/// Largest `SET_LPE` the PF accepts (Linux igb `MAX_JUMBO_FRAME_SIZE`).
pub(super) const MAX_JUMBO_FRAME_SIZE: u32 = 9728;
/// Max frame before any `SET_LPE` (1500-byte MTU, header, FCS).
const DEFAULT_MAX_FRAME: u32 = 1518;

/// The mailbox registers and the PF's record of the VF.
#[derive(Debug)]
pub(super) struct PfMailbox {
    pub mem: MailboxWords,
    vfu: bool,
    /// The VF posted a message the PF has not read yet.
    req: bool,
    pfsts: bool,
    pfack: bool,
    rstd: bool,
    rsti: bool,
    /// The VF reset; the PF has not handled it yet.
    vf_reset_pending: bool,
    /// The PF itself is in reset: it answers nothing.
    pub pf_in_reset: bool,
    /// A PF message the VF has not acknowledged (or superseded with a request).
    unacked: bool,
    /// After a PF reset: answer the VF's next ACK with a bare NACK.
    nack_on_ack: bool,
    outbox: VecDeque<u32>,
    /// The administrator MAC, if valid.
    admin_mac: Option<[u8; 6]>,
    pub state: PfState,
}

impl PfMailbox {
    /// A PF with `mac` as the administrator MAC (none when `mac` is not a valid unicast).
    pub fn new(mac: [u8; 6]) -> Self {
        let admin_mac = is_valid_unicast(&mac).then_some(mac);
        Self {
            mem: [0; VMBMEM_WORDS],
            vfu: false,
            req: false,
            pfsts: false,
            pfack: false,
            rstd: false,
            rsti: false,
            vf_reset_pending: false,
            pf_in_reset: false,
            unacked: false,
            nack_on_ack: false,
            outbox: VecDeque::new(),
            admin_mac,
            state: PfState {
                mac: admin_mac.unwrap_or([0; 6]),
                max_frame: DEFAULT_MAX_FRAME,
                ..PfState::default()
            },
        }
    }

    /// The `VMBMEM` word at `offset`, if it is one.
    pub fn vmbmem_index(&self, offset: u32) -> Option<usize> {
        let end = VMBMEM + 4 * VMBMEM_WORDS as u32;
        (VMBMEM..end)
            .contains(&offset)
            .then(|| ((offset - VMBMEM) / 4) as usize)
    }

    /// A VF write of `VMBMEM`: dropped unless the VF holds the buffer.
    pub fn write_vmbmem(&mut self, word: usize, value: u32) {
        if self.vfu {
            self.mem[word] = value;
        }
    }

    /// A VF read of `V2PMAILBOX`: the read-to-clear bits clear.
    pub fn read_v2p(&mut self) -> u32 {
        let mut value = 0;
        for (set, bit) in [
            (self.req, V2pMailbox::REQ),
            (self.vfu, V2pMailbox::VFU),
            (self.pfsts, V2pMailbox::PFSTS),
            (self.pfack, V2pMailbox::PFACK),
            (self.rsti, V2pMailbox::RSTI),
            (self.rstd, V2pMailbox::RSTD),
        ] {
            if set {
                value |= bit;
            }
        }
        self.pfsts = false;
        self.pfack = false;
        self.rstd = false;
        value
    }

    /// A VF write of `V2PMAILBOX`.
    pub fn write_v2p(&mut self, value: u32) {
        // The PF never holds the buffer between two register accesses (it works under the
        // same lock), so taking it always succeeds.
        self.vfu = value & V2pMailbox::VFU != 0;
        if value & V2pMailbox::REQ != 0 {
            self.req = true;
            // A new request supersedes whatever the PF posted before.
            self.unacked = false;
        }
        if value & V2pMailbox::ACK != 0 {
            self.unacked = false;
            if self.nack_on_ack && !self.state.cts {
                self.nack_on_ack = false;
                self.outbox.push_back(VT_MSGTYPE_NACK);
            }
        }
    }

    /// The VF reset: it loses the buffer, its clear-to-send and anything the PF had queued.
    pub fn vf_reset(&mut self) {
        self.vfu = false;
        self.req = false;
        self.rsti = true;
        self.vf_reset_pending = true;
        self.unacked = false;
        self.nack_on_ack = false;
        self.outbox.clear();
        self.state.cts = false;
        self.state.vf_enabled = false;
    }

    /// The PF starts a reset of its own: `RSTI`, no clear-to-send, nothing queued.
    pub fn pf_reset_begin(&mut self) {
        self.pf_in_reset = true;
        self.rsti = true;
        self.vfu = false;
        self.unacked = false;
        self.outbox.clear();
        self.state.cts = false;
        self.state.vf_enabled = false;
    }

    /// The PF is back: `RSTI` clears, `RSTD` and a `PF_CONTROL_MSG` (without CTS) tell the VF,
    /// and its acknowledgement is answered with a bare NACK: the VF must reset.
    pub fn pf_reset_end(&mut self) {
        if !self.pf_in_reset {
            return;
        }
        self.pf_in_reset = false;
        self.vf_reset_pending = false;
        self.rsti = false;
        self.rstd = true;
        self.nack_on_ack = true;
        self.outbox
            .push_back(u32::from(MessageType::PF_CONTROL_MSG.0));
    }

    /// Queue a link-change notification (`PF_CONTROL_MSG`, CTS if the VF is clear to send).
    pub fn notify_link(&mut self) {
        let mut word = u32::from(MessageType::PF_CONTROL_MSG.0);
        if self.state.cts {
            word |= VT_MSGTYPE_CTS;
        }
        self.outbox.push_back(word);
    }
}

fn mac_words(mac: &[u8; 6]) -> [u32; 2] {
    [
        u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
        u32::from_le_bytes([mac[4], mac[5], 0, 0]),
    ]
}

impl Function {
    /// One pass of the PF over the mailbox; whether anything changed.
    pub(super) fn pf_service(&mut self) -> bool {
        if self.mbx.pf_in_reset {
            return false;
        }
        let mut changed = false;
        if self.mbx.vf_reset_pending {
            // The PF has handled the VF's reset (its VFLR event).
            self.mbx.vf_reset_pending = false;
            self.mbx.rsti = false;
            self.mbx.rstd = true;
            self.raise(Cause::Mailbox);
            changed = true;
        }
        if self.mbx.req && !self.mbx.vfu {
            self.mbx.req = false;
            let words = self.mbx.mem;
            self.mbx.pfack = true;
            if let Some(reply) = self.pf_answer(&words) {
                self.mbx.mem[..reply.len()].copy_from_slice(&reply);
                self.mbx.pfsts = true;
                self.mbx.unacked = true;
            }
            self.raise(Cause::Mailbox);
            return true;
        }
        if !self.mbx.vfu
            && !self.mbx.req
            && !self.mbx.unacked
            && let Some(word) = self.mbx.outbox.pop_front()
        {
            if MessageType::of(word) == MessageType::PF_CONTROL_MSG {
                self.stats.mailbox.pf_control += 1;
            } else {
                self.stats.mailbox.pf_nack += 1;
            }
            self.mbx.mem[0] = word;
            self.mbx.pfsts = true;
            self.mbx.unacked = true;
            self.raise(Cause::Mailbox);
            changed = true;
        }
        changed
    }

    /// The PF's reply to the VF's words, or `None` when it sends none.
    fn pf_answer(&mut self, words: &MailboxWords) -> Option<Vec<u32>> {
        let word0 = words[0];
        if word0 & (VT_MSGTYPE_ACK | VT_MSGTYPE_NACK) != 0 {
            self.stats.mailbox.ignored += 1;
            return None;
        }
        let stats = &mut self.stats.mailbox;
        match MessageType::of(word0) {
            MessageType::RESET => stats.reset += 1,
            MessageType::SET_MAC_ADDR => stats.set_mac_addr += 1,
            MessageType::SET_MULTICAST => stats.set_multicast += 1,
            MessageType::SET_VLAN => stats.set_vlan += 1,
            MessageType::SET_LPE => stats.set_lpe += 1,
            _ => stats.other += 1,
        }
        if MessageType::of(word0) == MessageType::RESET {
            return Some(self.pf_reset_vf_msg());
        }
        if !self.mbx.state.cts {
            self.stats.mailbox.nacked += 1;
            return Some(vec![word0 | VT_MSGTYPE_NACK]);
        }
        let accepted = match Request::decode(words) {
            Ok(Some(Request::SetMacAddr(mac))) => match self.mbx.admin_mac {
                Some(admin) => admin == mac,
                None => {
                    self.mbx.state.mac = mac;
                    true
                }
            },
            Ok(Some(Request::SetMulticast(hashes))) => {
                self.mbx.state.multicast = hashes;
                true
            }
            Ok(Some(Request::SetVlan { vid, add })) => {
                if add {
                    self.mbx.state.vlans.insert(vid);
                } else {
                    self.mbx.state.vlans.remove(&vid);
                }
                true
            }
            Ok(Some(Request::SetLpe(max_frame))) if max_frame <= MAX_JUMBO_FRAME_SIZE => {
                self.mbx.state.max_frame = max_frame;
                true
            }
            _ => false,
        };
        let flag = if accepted {
            self.stats.mailbox.acked += 1;
            VT_MSGTYPE_ACK
        } else {
            self.stats.mailbox.nacked += 1;
            VT_MSGTYPE_NACK
        };
        Some(vec![word0 | flag | VT_MSGTYPE_CTS])
    }

    /// Linux igb `igb_vf_reset_msg`: clear the VF's filters, enable its queues, make it clear
    /// to send, answer with the MAC.
    fn pf_reset_vf_msg(&mut self) -> Vec<u32> {
        let state = &mut self.mbx.state;
        state.multicast.clear();
        state.vlans = BTreeSet::new();
        state.max_frame = DEFAULT_MAX_FRAME;
        state.cts = true;
        state.vf_enabled = true;
        let reset = u32::from(MessageType::RESET.0);
        match self.mbx.admin_mac {
            Some(mac) => {
                self.stats.mailbox.acked += 1;
                let [w1, w2] = mac_words(&mac);
                vec![reset | VT_MSGTYPE_ACK, w1, w2]
            }
            None => {
                self.stats.mailbox.nacked += 1;
                vec![reset | VT_MSGTYPE_NACK, 0, 0]
            }
        }
    }
}
