//! The PF↔VF mailbox: message formats and the `V2PMAILBOX` handshake as a pure state machine.
//!
//! A message is up to [`VMBMEM_WORDS`] 32-bit words in `VMBMEM`. Word 0 holds the message
//! type in bits 15:0, per-type info in bits 23:16, and the reply flags [`VT_MSGTYPE_ACK`],
//! [`VT_MSGTYPE_NACK`] and [`VT_MSGTYPE_CTS`] in bits 31:29 (Linux `mbx.h`, `E1000_VT_*`).
//! The 82576 mailbox has no API negotiation.
//!
//! Trust rules: the PF is untrusted. The driver copies all 16 words out of `VMBMEM` once, then
//! hands the copy to a `parse_*` function; anything malformed is a [`MailboxError`], never a
//! panic. [`MailboxProtocol`] does no I/O: the driver reads `V2PMAILBOX`, feeds the raw value
//! to [`MailboxProtocol::step`] and performs the returned [`MailboxAction`]. The protocol
//! latches the read-to-clear bits (`PFSTS`, `PFACK`, `RSTD`) on every value it is given, so
//! every read of `V2PMAILBOX` anywhere in the driver must go through it.

use thiserror::Error;

use super::regs::{V2pMailbox, VMBMEM_WORDS};

/// A whole mailbox buffer.
pub type MailboxWords = [u32; VMBMEM_WORDS];

/// An Ethernet MAC address as it appears on the wire.
pub type MacAddress = [u8; 6];

/// Message type mask of word 0.
pub const MSG_TYPE_MASK: u32 = 0xFFFF;
/// Shift of the info field of word 0 (`E1000_VT_MSGINFO_SHIFT`).
pub const MSGINFO_SHIFT: u32 = 16;
/// Mask of the info field of word 0 (`E1000_VT_MSGINFO_MASK`).
pub const MSGINFO_MASK: u32 = 0xFF << MSGINFO_SHIFT;
/// The request was handled (`E1000_VT_MSGTYPE_ACK`).
pub const VT_MSGTYPE_ACK: u32 = 1 << 31;
/// The request was refused (`E1000_VT_MSGTYPE_NACK`).
pub const VT_MSGTYPE_NACK: u32 = 1 << 30;
/// The PF is clear to send: it accepts requests from this VF (`E1000_VT_MSGTYPE_CTS`).
pub const VT_MSGTYPE_CTS: u32 = 1 << 29;

/// Most multicast hashes one `SET_MULTICAST` carries (Linux igbvf sends at most 30).
pub const MAX_MULTICAST_HASHES: usize = 30;
/// Largest VLAN ID.
pub const MAX_VLAN_ID: u16 = 4095;
/// Largest `SET_LPE` max frame size (the 14-bit `RLPML` field the PF programs).
pub const MAX_FRAME_LIMIT: u32 = 0x3FFF;

/// A mailbox message type (open: unknown values are kept, not rejected).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageType(pub u16);

impl MessageType {
    /// VF reset request; reply carries the MAC (`E1000_VF_RESET`).
    pub const RESET: Self = Self(0x01);
    /// Set the VF MAC address (`E1000_VF_SET_MAC_ADDR`).
    pub const SET_MAC_ADDR: Self = Self(0x02);
    /// Set the multicast hash list (`E1000_VF_SET_MULTICAST`).
    pub const SET_MULTICAST: Self = Self(0x03);
    /// Add or remove a VLAN filter (`E1000_VF_SET_VLAN`).
    pub const SET_VLAN: Self = Self(0x04);
    /// Set the max frame size (`E1000_VF_SET_LPE`).
    pub const SET_LPE: Self = Self(0x05);
    /// Promiscuous modes (`E1000_VF_SET_PROMISC`), PF-side only in igbvf.
    pub const SET_PROMISC: Self = Self(0x06);
    /// PF → VF notification, e.g. link change or PF reset (`E1000_PF_CONTROL_MSG`).
    pub const PF_CONTROL_MSG: Self = Self(0x0100);

    /// The type in `word0`.
    pub const fn of(word0: u32) -> Self {
        Self((word0 & MSG_TYPE_MASK) as u16)
    }
}

/// `SET_VLAN` info: add the filter (`E1000_VF_SET_VLAN_ADD`); absent means remove.
pub const SET_VLAN_ADD: u32 = 0x01 << MSGINFO_SHIFT;

/// A request from the VF to the PF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `RESET`: sent after `CTRL.RST`; the PF answers with [`ResetReply`].
    Reset,
    /// `SET_MAC_ADDR` with a unicast, non-zero address.
    SetMacAddr(MacAddress),
    /// `SET_MULTICAST` with up to [`MAX_MULTICAST_HASHES`] 12-bit hashes (see
    /// [`multicast_hash`]).
    SetMulticast(Vec<u16>),
    /// `SET_VLAN`: add (`true`) or remove a VLAN ID filter.
    SetVlan {
        /// VLAN ID, `0..=4095`.
        vid: u16,
        /// Add rather than remove.
        add: bool,
    },
    /// `SET_LPE`: max frame size in bytes, FCS included.
    SetLpe(u32),
}

/// Errors encoding requests and parsing PF messages.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum MailboxError {
    /// The PF refused the request. Without CTS the VF must redo `CTRL.RST` and `RESET`.
    #[error("pf nacked {msg_type:?} (cts {cts})")]
    Nacked {
        /// The type of the refused request.
        msg_type: MessageType,
        /// Whether the PF still accepts requests.
        cts: bool,
    },
    /// The reply is for another message type.
    #[error("expected a reply to {expected:?}, got word 0 {word0:#010x}")]
    WrongType {
        /// The request type sent.
        expected: MessageType,
        /// Word 0 received.
        word0: u32,
    },
    /// Word 0 has neither ACK nor NACK, or both.
    #[error("word 0 {0:#010x} is not an ack or nack")]
    NotAReply(u32),
    /// Word 0 carries ACK or NACK where a request was expected.
    #[error("word 0 {0:#010x} is a reply, not a request")]
    NotARequest(u32),
    /// The MAC address in a reply or request is multicast or all-zero.
    #[error("invalid mac address {0:02x?}")]
    InvalidMac(MacAddress),
    /// Too many multicast hashes for one message.
    #[error("{0} multicast hashes exceed {MAX_MULTICAST_HASHES}")]
    TooManyMulticast(usize),
    /// A multicast hash wider than 12 bits.
    #[error("multicast hash {0:#x} exceeds 12 bits")]
    MulticastHash(u16),
    /// VLAN ID above 4095.
    #[error("vlan id {0} out of range")]
    VlanId(u16),
    /// Max frame size out of range.
    #[error("max frame size {0} out of range")]
    FrameSize(u32),
}

/// An encoded message: the words to write to `VMBMEM` (the rest of the buffer is zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// The whole buffer.
    pub words: MailboxWords,
    /// How many leading words carry the message.
    pub len: usize,
}

impl Message {
    /// The words to write.
    pub fn as_words(&self) -> &[u32] {
        &self.words[..self.len.min(VMBMEM_WORDS)]
    }
}

/// Whether `mac` is usable as a station address: not multicast, not all-zero.
pub fn is_valid_unicast(mac: &MacAddress) -> bool {
    mac[0] & 1 == 0 && mac.iter().any(|&b| b != 0)
}

/// Words 1–2 carrying a MAC (bytes in memory order, little-endian words, as Linux `memcpy`s).
fn mac_to_words(mac: &MacAddress) -> [u32; 2] {
    [
        u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
        u32::from_le_bytes([mac[4], mac[5], 0, 0]),
    ]
}

fn mac_from_words(w1: u32, w2: u32) -> MacAddress {
    let a = w1.to_le_bytes();
    let b = w2.to_le_bytes();
    [a[0], a[1], a[2], a[3], b[0], b[1]]
}

/// The 12-bit multicast table hash of `mac` for the VF's 4096-bit table (Linux
/// `e1000_hash_mc_addr_vf` with filter type 0): bits 47:36 of the address.
pub fn multicast_hash(mac: &MacAddress) -> u16 {
    ((u16::from(mac[4]) >> 4) | (u16::from(mac[5]) << 4)) & 0x0FFF
}

impl Request {
    /// The request's message type.
    pub fn msg_type(&self) -> MessageType {
        match self {
            Self::Reset => MessageType::RESET,
            Self::SetMacAddr(_) => MessageType::SET_MAC_ADDR,
            Self::SetMulticast(_) => MessageType::SET_MULTICAST,
            Self::SetVlan { .. } => MessageType::SET_VLAN,
            Self::SetLpe(_) => MessageType::SET_LPE,
        }
    }

    /// Encode into mailbox words, validating the arguments.
    pub fn encode(&self) -> Result<Message, MailboxError> {
        let mut words = [0u32; VMBMEM_WORDS];
        words[0] = u32::from(self.msg_type().0);
        let len = match self {
            Self::Reset => 1,
            Self::SetMacAddr(mac) => {
                if !is_valid_unicast(mac) {
                    return Err(MailboxError::InvalidMac(*mac));
                }
                words[1..3].copy_from_slice(&mac_to_words(mac));
                3
            }
            Self::SetMulticast(hashes) => {
                if hashes.len() > MAX_MULTICAST_HASHES {
                    return Err(MailboxError::TooManyMulticast(hashes.len()));
                }
                if let Some(&bad) = hashes.iter().find(|&&h| h > 0x0FFF) {
                    return Err(MailboxError::MulticastHash(bad));
                }
                words[0] |= (hashes.len() as u32) << MSGINFO_SHIFT;
                // The PF reads a u16 array starting at word 1: two hashes per word, low first.
                for (i, &hash) in hashes.iter().enumerate() {
                    words[1 + i / 2] |= u32::from(hash) << (16 * (i % 2));
                }
                1 + hashes.len().div_ceil(2)
            }
            Self::SetVlan { vid, add } => {
                if *vid > MAX_VLAN_ID {
                    return Err(MailboxError::VlanId(*vid));
                }
                if *add {
                    words[0] |= SET_VLAN_ADD;
                }
                words[1] = u32::from(*vid);
                2
            }
            Self::SetLpe(max_frame) => {
                if *max_frame == 0 || *max_frame > MAX_FRAME_LIMIT {
                    return Err(MailboxError::FrameSize(*max_frame));
                }
                words[1] = *max_frame;
                2
            }
        };
        Ok(Message { words, len })
    }

    /// Decode a request as a PF (or an emulated PF) reads it, validating like [`Self::encode`].
    /// `Ok(None)` for a type this crate does not model (a PF NACKs those).
    pub fn decode(words: &MailboxWords) -> Result<Option<Self>, MailboxError> {
        let word0 = words[0];
        if word0 & (VT_MSGTYPE_ACK | VT_MSGTYPE_NACK) != 0 {
            return Err(MailboxError::NotARequest(word0));
        }
        let info = (word0 & MSGINFO_MASK) >> MSGINFO_SHIFT;
        let request = match MessageType::of(word0) {
            MessageType::RESET => Self::Reset,
            // Info 1/2 are the extra unicast filter operations (`E1000_VF_MAC_FILTER_CLR`/
            // `_ADD`), which this crate does not model.
            MessageType::SET_MAC_ADDR if info != 0 => return Ok(None),
            MessageType::SET_MAC_ADDR => {
                let mac = mac_from_words(words[1], words[2]);
                if !is_valid_unicast(&mac) {
                    return Err(MailboxError::InvalidMac(mac));
                }
                Self::SetMacAddr(mac)
            }
            MessageType::SET_MULTICAST => {
                let count = info as usize;
                if count > MAX_MULTICAST_HASHES {
                    return Err(MailboxError::TooManyMulticast(count));
                }
                let hashes: Vec<u16> = (0..count)
                    .map(|i| (words[1 + i / 2] >> (16 * (i % 2))) as u16)
                    .collect();
                if let Some(&bad) = hashes.iter().find(|&&h| h > 0x0FFF) {
                    return Err(MailboxError::MulticastHash(bad));
                }
                Self::SetMulticast(hashes)
            }
            MessageType::SET_VLAN => {
                let vid = words[1];
                if vid > u32::from(MAX_VLAN_ID) {
                    return Err(MailboxError::VlanId(vid.min(u32::from(u16::MAX)) as u16));
                }
                Self::SetVlan {
                    vid: vid as u16,
                    add: word0 & SET_VLAN_ADD != 0,
                }
            }
            MessageType::SET_LPE => {
                let max_frame = words[1];
                if max_frame == 0 || max_frame > MAX_FRAME_LIMIT {
                    return Err(MailboxError::FrameSize(max_frame));
                }
                Self::SetLpe(max_frame)
            }
            _ => return Ok(None),
        };
        Ok(Some(request))
    }
}

/// The PF's answer to [`Request::Reset`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetReply {
    /// The administrator-set MAC (`RESET|ACK`), or `None` when the PF has none (`RESET|NACK`
    /// with a zeroed MAC, modern Linux igb): the VF then picks its own and sends
    /// `SET_MAC_ADDR`.
    pub mac: Option<MacAddress>,
    /// Whether word 0 carried CTS (Linux igb does not set it on this reply).
    pub cts: bool,
}

/// Parse the 3-word reply to `RESET` (word 0, MAC in words 1–2).
///
/// Linux igb writes only 3 words; word 3 (ixgbe's multicast filter type) is stale buffer
/// content on an 82576 and is ignored.
pub fn parse_reset_reply(words: &MailboxWords) -> Result<ResetReply, MailboxError> {
    let word0 = words[0];
    if MessageType::of(word0) != MessageType::RESET {
        return Err(MailboxError::WrongType {
            expected: MessageType::RESET,
            word0,
        });
    }
    let cts = word0 & VT_MSGTYPE_CTS != 0;
    match word0 & (VT_MSGTYPE_ACK | VT_MSGTYPE_NACK) {
        VT_MSGTYPE_ACK => {
            let mac = mac_from_words(words[1], words[2]);
            if !is_valid_unicast(&mac) {
                return Err(MailboxError::InvalidMac(mac));
            }
            Ok(ResetReply {
                mac: Some(mac),
                cts,
            })
        }
        VT_MSGTYPE_NACK => Ok(ResetReply { mac: None, cts }),
        _ => Err(MailboxError::NotAReply(word0)),
    }
}

/// An accepted request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Whether the PF still accepts requests; Linux igbvf treats a missing CTS as "reset".
    pub cts: bool,
}

/// Parse the 1-word ACK/NACK the PF sends for every request but `RESET`.
pub fn parse_ack(word0: u32, expected: MessageType) -> Result<Ack, MailboxError> {
    if MessageType::of(word0) != expected {
        return Err(MailboxError::WrongType { expected, word0 });
    }
    let cts = word0 & VT_MSGTYPE_CTS != 0;
    match word0 & (VT_MSGTYPE_ACK | VT_MSGTYPE_NACK) {
        VT_MSGTYPE_ACK => Ok(Ack { cts }),
        VT_MSGTYPE_NACK => Err(MailboxError::Nacked {
            msg_type: expected,
            cts,
        }),
        _ => Err(MailboxError::NotAReply(word0)),
    }
}

/// A message the PF posted without being asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PfMessage {
    /// `PF_CONTROL_MSG`: link changed or the PF reset; re-check link and mailbox. `cts` says
    /// whether the PF accepts requests (false after a PF reset: redo the VF reset).
    Control {
        /// CTS flag.
        cts: bool,
    },
    /// A bare NACK of anything: the PF lost our state (seen after a PF reset).
    Nack {
        /// Word 0.
        word0: u32,
    },
    /// Anything else (kept for counting and logging).
    Other {
        /// Word 0.
        word0: u32,
    },
}

/// Classify an unsolicited PF message by word 0.
pub fn parse_pf_message(word0: u32) -> PfMessage {
    let cts = word0 & VT_MSGTYPE_CTS != 0;
    if MessageType::of(word0) == MessageType::PF_CONTROL_MSG
        && word0 & (VT_MSGTYPE_ACK | VT_MSGTYPE_NACK) == 0
    {
        PfMessage::Control { cts }
    } else if word0 & (VT_MSGTYPE_ACK | VT_MSGTYPE_NACK) == VT_MSGTYPE_NACK {
        PfMessage::Nack { word0 }
    } else {
        PfMessage::Other { word0 }
    }
}

/// What the driver does next for the mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailboxAction {
    /// Nothing to do (idle, no PF message pending).
    Idle,
    /// Write `VFU` to `V2PMAILBOX`, read it back, and step with the value read.
    ClaimBuffer,
    /// The buffer is ours: write the request words to `VMBMEM`, write `REQ` to `V2PMAILBOX`
    /// (which also releases `VFU`), read it back, and step.
    PostRequest,
    /// Wait one poll interval (Linux: 500 µs), read `V2PMAILBOX` and step.
    Wait,
    /// The PF posted a message and the buffer is ours: copy out all 16 `VMBMEM` words, write
    /// `ACK` to `V2PMAILBOX` (releasing the buffer), then parse the copy. The exchange is over.
    ReadMessage,
    /// The request was acknowledged and no reply is expected. The exchange is over.
    Complete,
    /// The PF reset (`RSTI` or `RSTD` seen): the exchange is over; redo `CTRL.RST` and the
    /// `RESET` handshake.
    PfReset,
    /// After [`MailboxProtocol::start_vf_reset`]: `RSTI` is clear, post [`Request::Reset`].
    ResetComplete,
    /// The poll budget ran out. Linux igbvf treats this as link down and resets.
    TimedOut,
    /// `V2PMAILBOX` read all-ones: the device is gone.
    Removed,
}

/// Which exchange is in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailboxPhase {
    /// No exchange; steps look for PF messages and resets.
    Idle,
    /// Taking the buffer to post a request.
    ClaimForSend {
        /// Whether a reply message follows the ACK.
        expect_reply: bool,
    },
    /// Request posted; waiting for `PFACK`.
    AwaitPfAck {
        /// Whether a reply message follows the ACK.
        expect_reply: bool,
    },
    /// Waiting for `PFSTS` (the reply).
    AwaitMessage,
    /// Taking the buffer to read a PF message.
    ClaimForRead,
    /// `CTRL.RST` written; waiting for `RSTI` to clear.
    AwaitVfReset,
}

/// The `V2PMAILBOX` handshake (Linux `mbx.c`), without I/O.
///
/// Sending: [`Self::start_send`] → `ClaimBuffer` → `PostRequest` → `Wait`… → `Complete`, or
/// with a reply expected → `Wait`… → `ClaimBuffer` → `ReadMessage`. Receiving: while idle,
/// [`Self::step`] returns `ClaimBuffer` when `PFSTS` is latched, then `ReadMessage`. A VF
/// reset: [`Self::start_vf_reset`] after writing `CTRL.RST`, then `Wait`… until `RSTI` clears
/// → `ResetComplete` (now post `RESET`). `RSTD` is not required after `CTRL.RST` (QEMU
/// only raises it when the PF writes `CTRL_EXT.PFRSTD`, reference §3.5).
///
/// Every action that ends an exchange returns the protocol to [`MailboxPhase::Idle`].
#[derive(Clone, Debug)]
pub struct MailboxProtocol {
    latched: u32,
    phase: MailboxPhase,
    polls: u32,
    max_polls: u32,
}

impl MailboxProtocol {
    /// Linux igbvf's budget: 2000 polls of 500 µs.
    pub const DEFAULT_MAX_POLLS: u32 = 2000;

    /// An idle protocol that gives up after `max_polls` consecutive `Wait`/`ClaimBuffer`
    /// retries within one exchange.
    pub fn new(max_polls: u32) -> Self {
        Self {
            latched: 0,
            phase: MailboxPhase::Idle,
            polls: 0,
            max_polls,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> MailboxPhase {
        self.phase
    }

    /// The read-to-clear bits latched so far and not yet consumed.
    pub fn latched(&self) -> V2pMailbox {
        V2pMailbox(self.latched)
    }

    /// Begin posting a request; perform the returned action.
    pub fn start_send(&mut self, expect_reply: bool) -> MailboxAction {
        self.enter(MailboxPhase::ClaimForSend { expect_reply });
        MailboxAction::ClaimBuffer
    }

    /// The driver wrote `CTRL.RST`: wait for the PF to finish; perform the returned action.
    pub fn start_vf_reset(&mut self) -> MailboxAction {
        self.enter(MailboxPhase::AwaitVfReset);
        MailboxAction::Wait
    }

    fn enter(&mut self, phase: MailboxPhase) {
        self.phase = phase;
        self.polls = 0;
    }

    fn finish(&mut self, action: MailboxAction) -> MailboxAction {
        self.enter(MailboxPhase::Idle);
        action
    }

    fn take(&mut self, bits: u32) -> bool {
        let seen = self.latched & bits != 0;
        self.latched &= !bits;
        seen
    }

    fn retry(&mut self, action: MailboxAction) -> MailboxAction {
        self.polls += 1;
        if self.polls > self.max_polls {
            self.finish(MailboxAction::TimedOut)
        } else {
            action
        }
    }

    /// Feed one raw `V2PMAILBOX` read and get the next action.
    pub fn step(&mut self, raw: u32) -> MailboxAction {
        let now = V2pMailbox(raw);
        if now.is_removed() {
            return self.finish(MailboxAction::Removed);
        }
        self.latched |= raw & V2pMailbox::R2C_BITS;
        let resetting = now.intersects(V2pMailbox::RSTI);

        if self.phase == MailboxPhase::AwaitVfReset {
            if resetting {
                return self.retry(MailboxAction::Wait);
            }
            // Anything latched before or during the reset is stale.
            self.latched = 0;
            return self.finish(MailboxAction::ResetComplete);
        }
        if resetting || self.take(V2pMailbox::RSTD) {
            self.latched = 0;
            return self.finish(MailboxAction::PfReset);
        }

        match self.phase {
            MailboxPhase::Idle => {
                if self.take(V2pMailbox::PFSTS) {
                    self.enter(MailboxPhase::ClaimForRead);
                    MailboxAction::ClaimBuffer
                } else {
                    MailboxAction::Idle
                }
            }
            MailboxPhase::ClaimForSend { expect_reply } => {
                if now.contains(V2pMailbox::VFU) {
                    // As Linux: drop stale message/ack indications before posting.
                    self.take(V2pMailbox::PFSTS | V2pMailbox::PFACK);
                    self.enter(MailboxPhase::AwaitPfAck { expect_reply });
                    MailboxAction::PostRequest
                } else {
                    self.retry(MailboxAction::ClaimBuffer)
                }
            }
            MailboxPhase::AwaitPfAck { expect_reply } => {
                if !self.take(V2pMailbox::PFACK) {
                    return self.retry(MailboxAction::Wait);
                }
                if !expect_reply {
                    return self.finish(MailboxAction::Complete);
                }
                self.enter(MailboxPhase::AwaitMessage);
                self.await_message()
            }
            MailboxPhase::AwaitMessage => self.await_message(),
            MailboxPhase::ClaimForRead => {
                if now.contains(V2pMailbox::VFU) {
                    self.finish(MailboxAction::ReadMessage)
                } else {
                    self.retry(MailboxAction::ClaimBuffer)
                }
            }
            MailboxPhase::AwaitVfReset => self.finish(MailboxAction::ResetComplete),
        }
    }

    fn await_message(&mut self) -> MailboxAction {
        if self.take(V2pMailbox::PFSTS) {
            self.enter(MailboxPhase::ClaimForRead);
            MailboxAction::ClaimBuffer
        } else {
            self.retry(MailboxAction::Wait)
        }
    }
}

impl Default for MailboxProtocol {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_POLLS)
    }
}

#[cfg(test)]
mod tests;
