//! Fault injection: PF reset, link changes, surprise removal, planned removal, bad write-backs.
//!
//! Every fault is applied under the device lock, so the driver sees it between two register
//! accesses, never in the middle of one; the DMA thread is woken to act on it.

use std::time::Duration;

use super::VfModelControl;
use super::regs_file::{Cause, Function, HwCounters};

impl Function {
    fn pf_reset_begin(&mut self) {
        if self.mbx.pf_in_reset {
            return;
        }
        // The VF hears about it (if its mailbox vector is unmasked) before the reset clears
        // its interrupt setup.
        self.raise(Cause::Mailbox);
        self.reset_queues_and_interrupts();
        // The whole device resets, its statistics registers included.
        self.counters = HwCounters::default();
        self.mbx.pf_reset_begin();
        self.stats.pf_resets += 1;
    }
}

impl VfModelControl {
    /// A whole PF reset: [`pf_reset_begin`](Self::pf_reset_begin) then
    /// [`pf_reset_end`](Self::pf_reset_end). The VF sees `RSTD` (latched, read-to-clear), a
    /// `PF_CONTROL_MSG` without CTS and, once it acknowledges that, a bare NACK; its rings are
    /// stopped and every request but `RESET` is nacked until it redoes `CTRL.RST` and `RESET`.
    pub fn pf_reset(&self) {
        self.pf_reset_begin();
        self.pf_reset_end();
    }

    /// The PF goes into reset: `RSTI` is set, the VF's rings, interrupt setup and statistics
    /// registers are reset (its queues stop), it loses clear-to-send, and the PF answers
    /// nothing until [`pf_reset_end`](Self::pf_reset_end).
    pub fn pf_reset_begin(&self) {
        self.with_state(Function::pf_reset_begin);
    }

    /// The PF is back: `RSTI` clears, `RSTD` is set and the PF posts `PF_CONTROL_MSG` without
    /// CTS. No effect unless a PF reset is in progress.
    pub fn pf_reset_end(&self) {
        self.with_state(|f| f.mbx.pf_reset_end());
    }

    /// Sets the PF's link: `STATUS.LU` follows at once, and a change is announced with a
    /// `PF_CONTROL_MSG` (with CTS if the VF is clear to send). While the link is down, received
    /// frames are dropped and transmitted frames are lost on the wire.
    pub fn set_link(&self, up: bool) {
        self.with_state(|f| {
            if f.link_up != up {
                f.link_up = up;
                f.mbx.notify_link();
            }
        });
    }

    /// The device disappears: every register read returns all ones, writes are dropped, DMA
    /// stops, `is_present` is false. Nothing is signalled.
    pub fn surprise_remove(&self) {
        self.with_state(|f| f.present = false);
    }

    /// The host asks for the device back: signals the device-request eventfd (the one
    /// `request_irq` returns). Whether the driver then released the device:
    /// [`released`](Self::released), [`released_within`](Self::released_within).
    pub fn request_release(&self) {
        // A full eventfd counter still reads as signalled.
        let _ = self.inner.request.signal();
        self.with_state(|f| f.stats.release_requests += 1);
    }

    /// Whether the driver released the device (or dropped it).
    pub fn released(&self) -> bool {
        self.inner.state.lock().released
    }

    /// Waits up to `timeout` for the driver to release the device; whether it did.
    pub fn released_within(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |f| f.released)
    }

    /// The next RX write-back on `queue` reports a length one byte beyond the queue's buffer
    /// size (the frame itself is written normally): a value a real device never produces.
    /// Ignored for a queue the VF does not have.
    pub fn inject_bad_writeback(&self, queue: u16) {
        self.with_state(|f| {
            if let Some(flag) = f.bad_writeback.get_mut(usize::from(queue)) {
                *flag = true;
            }
        });
    }
}
