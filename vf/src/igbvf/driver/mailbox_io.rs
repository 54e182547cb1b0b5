//! The mailbox handshake performed on registers.
//!
//! [`MailboxIo`] drives a [`MailboxProtocol`] (which does no I/O) against BAR0: it performs
//! each [`MailboxAction`], reads `V2PMAILBOX` back and feeds the raw value to the protocol, so
//! the read-to-clear bits are latched on every read. Every exchange is bounded by the
//! configured timeout measured on the [`Clock`]; polls are [`POLL_INTERVAL`] apart, as in
//! Linux `mbx.c`. The PF is untrusted: the 16 `VMBMEM` words are copied out once and parsed
//! from the copy.

use std::sync::Arc;
use std::time::Duration;

use packet::deadline;

use super::Clock;
use super::error::IgbvfError;
use crate::device::RegisterIo;
use crate::igbvf::mailbox::{
    MacAddress, MailboxAction, MailboxError, MailboxProtocol, MailboxWords, Message, MessageType,
    Request, parse_ack, parse_reset_reply,
};
use crate::igbvf::regs::{CTRL, EIMC, V2PMAILBOX, V2pMailbox, VMBMEM_WORDS, ctrl, vmbmem};

/// Pause between two polls of `V2PMAILBOX` (Linux: 500 µs).
pub(crate) const POLL_INTERVAL: Duration = Duration::from_micros(500);

/// How an exchange ended when it did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interrupted {
    /// The PF reset (`RSTI`/`RSTD`).
    PfReset,
    /// `V2PMAILBOX` read all ones.
    Removed,
    /// The budget ran out.
    TimedOut,
}

/// Register-level mailbox access for one device.
#[derive(Debug)]
pub(crate) struct MailboxIo {
    pub(crate) name: String,
    pub(crate) bar: Arc<dyn RegisterIo>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) timeout: Duration,
}

impl MailboxIo {
    /// A fresh protocol whose poll budget matches the timeout.
    pub(crate) fn protocol(&self) -> MailboxProtocol {
        let polls = self.timeout.as_micros() / POLL_INTERVAL.as_micros();
        MailboxProtocol::new(polls.clamp(1, u128::from(u32::MAX)) as u32)
    }

    /// Performs `action` and whatever follows until the exchange ends. `message` is posted on
    /// `PostRequest`. Returns the PF message read on `ReadMessage`, if any.
    pub(crate) fn run(
        &self,
        proto: &mut MailboxProtocol,
        mut action: MailboxAction,
        message: Option<&Message>,
    ) -> Result<Option<MailboxWords>, Interrupted> {
        let deadline = deadline::after(self.clock.now(), self.timeout);
        loop {
            action = match action {
                MailboxAction::Idle | MailboxAction::Complete | MailboxAction::ResetComplete => {
                    return Ok(None);
                }
                MailboxAction::PfReset => return Err(Interrupted::PfReset),
                MailboxAction::Removed => return Err(Interrupted::Removed),
                MailboxAction::TimedOut => return Err(Interrupted::TimedOut),
                MailboxAction::ClaimBuffer => {
                    self.bar.write32(V2PMAILBOX, V2pMailbox::VFU);
                    proto.step(self.bar.read32(V2PMAILBOX))
                }
                MailboxAction::PostRequest => {
                    if let Some(message) = message {
                        for (i, &word) in message.as_words().iter().enumerate() {
                            if let Some(offset) = vmbmem(i) {
                                self.bar.write32(offset, word);
                            }
                        }
                    }
                    self.bar.write32(V2PMAILBOX, V2pMailbox::REQ);
                    proto.step(self.bar.read32(V2PMAILBOX))
                }
                MailboxAction::Wait => {
                    if self.clock.now() >= deadline {
                        // Abandon the exchange but keep a latched reset for the caller.
                        let latched = proto.latched();
                        *proto = self.protocol();
                        return Err(if latched.intersects(V2pMailbox::RSTD) {
                            Interrupted::PfReset
                        } else {
                            Interrupted::TimedOut
                        });
                    }
                    self.clock.pause(POLL_INTERVAL);
                    proto.step(self.bar.read32(V2PMAILBOX))
                }
                MailboxAction::ReadMessage => {
                    let mut words = [0u32; VMBMEM_WORDS];
                    for (i, word) in words.iter_mut().enumerate() {
                        if let Some(offset) = vmbmem(i) {
                            *word = self.bar.read32(offset);
                        }
                    }
                    self.bar.write32(V2PMAILBOX, V2pMailbox::ACK);
                    return Ok(Some(words));
                }
            };
        }
    }

    fn interrupted(&self, request: MessageType, why: Interrupted) -> IgbvfError {
        match why {
            Interrupted::PfReset => IgbvfError::PfReset {
                device: self.name.clone(),
                request,
            },
            Interrupted::Removed => IgbvfError::Removed {
                device: self.name.clone(),
                register: V2PMAILBOX,
            },
            Interrupted::TimedOut => IgbvfError::MailboxTimeout {
                device: self.name.clone(),
                request,
                timeout: self.timeout,
            },
        }
    }

    /// Posts `request` and returns the PF's reply (every request gets one on an 82576).
    pub(crate) fn request(
        &self,
        proto: &mut MailboxProtocol,
        request: &Request,
    ) -> Result<MailboxWords, IgbvfError> {
        let msg_type = request.msg_type();
        let message = request.encode().map_err(|source| IgbvfError::Mailbox {
            device: self.name.clone(),
            request: msg_type,
            source,
        })?;
        let action = proto.start_send(true);
        match self.run(proto, action, Some(&message)) {
            Ok(Some(words)) => Ok(words),
            Ok(None) => Err(self.interrupted(msg_type, Interrupted::TimedOut)),
            Err(why) => Err(self.interrupted(msg_type, why)),
        }
    }

    /// Posts a request that is answered with a plain ACK (`SET_LPE`, `SET_MAC_ADDR`, ...).
    pub(crate) fn request_acked(
        &self,
        proto: &mut MailboxProtocol,
        request: &Request,
    ) -> Result<(), IgbvfError> {
        let words = self.request(proto, request)?;
        parse_ack(words[0], request.msg_type())
            .map(|_| ())
            .map_err(|source| IgbvfError::Mailbox {
                device: self.name.clone(),
                request: request.msg_type(),
                source,
            })
    }

    /// Posts `SET_MAC_ADDR` for `mac` and requires the PF's `ACK`; a `NACK` is
    /// [`IgbvfError::MacRejected`].
    pub(crate) fn set_mac(
        &self,
        proto: &mut MailboxProtocol,
        mac: MacAddress,
    ) -> Result<(), IgbvfError> {
        match self.request_acked(proto, &Request::SetMacAddr(mac)) {
            Err(IgbvfError::Mailbox {
                source: MailboxError::Nacked { .. },
                ..
            }) => Err(IgbvfError::MacRejected {
                device: self.name.clone(),
                mac,
            }),
            other => other,
        }
    }

    /// Resets the function: interrupts masked, `CTRL.RST`, wait for `RSTI` to clear, then the
    /// `RESET` handshake; a PF reset signalled during the handshake (`RSTD` latched late) makes
    /// it post `RESET` again, within the mailbox timeout. Returns the PF's administrator MAC
    /// (`RESET|ACK`), or `None` when it has none (`RESET|NACK`, Linux igb without an
    /// administrator MAC: the VF is clear to send and sets its own with `SET_MAC_ADDR`).
    pub(crate) fn reset_function(
        &self,
        proto: &mut MailboxProtocol,
    ) -> Result<Option<MacAddress>, IgbvfError> {
        let deadline = deadline::after(self.clock.now(), self.timeout);
        let mut write_reset = true;
        loop {
            if write_reset {
                self.bar.write32(EIMC, u32::MAX);
                self.bar.write32(CTRL, ctrl::RST);
            }
            let action = proto.start_vf_reset();
            match self.run(proto, action, None) {
                Ok(_) | Err(Interrupted::PfReset) => {}
                Err(why) => return Err(self.interrupted(MessageType::RESET, why)),
            }
            let words = match self.request(proto, &Request::Reset) {
                Ok(words) => words,
                Err(IgbvfError::PfReset { .. }) if self.clock.now() < deadline => {
                    write_reset = false;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let reply = parse_reset_reply(&words).map_err(|source| IgbvfError::Mailbox {
                device: self.name.clone(),
                request: MessageType::RESET,
                source,
            })?;
            return Ok(reply.mac);
        }
    }
}
