//! Closing the NIC: the clean detach Linux and DPDK do before they let a NetVSC go
//! (reference §2.6; Linux `rndis_filter_close` then `rndis_filter_device_remove` and
//! `netvsc_device_remove`, DPDK `hn_dev_stop` then `hn_nvs_detach`).
//!
//! The sequence, every step bounded by the one deadline the caller gave:
//!
//! 1. The queues stop taking frames: `ready` is cleared under each queue's lock, which every
//!    burst takes, so a poller's next `tx_burst` takes nothing (its `rx_burst` goes on).
//! 2. RNDIS SET of the packet filter to 0, as both do when the port stops: the host delivers
//!    no more frames (it holds or drops and counts what arrives from now on), so what it has
//!    put in the rings is all there is to read.
//! 3. RNDIS HALT. No RNDIS reply comes; the host's transport completion (NVSP 108) of the
//!    send is the only answer, and it is waited for.
//! 4. What is in flight drains: every queue is read (frames go to its staging list for the
//!    application) until no send waits for its completion, no receive completion waits for
//!    room in the ring, and the incoming ring is empty (Linux waits for the same before it
//!    revokes anything: `netvsc_device_idle`).
//! 5. NVSP REVOKE_RECEIVE_BUFFER (103) with the id the handshake gave the receive buffer, then
//!    REVOKE_SEND_BUFFER (106) with the send buffer's; neither gets a reply.
//! 6. Every queue is detached (channel, buffers, send tables: a send still in flight is
//!    counted in `tx_failed`), the NIC is closed. Staged frames stay for `rx_burst`.
//! 7. The host reading the revokes is waited for on queue 0's outgoing ring (it says so by
//!    emptying the ring; DPDK, which cannot see that, lingers 200 ms instead): with uio the
//!    channel closes when the device file does, and revokes left unread would never count.
//!
//! A step that fails or runs out of time does not stop the ones after it (a host that is slow
//! to halt still gets its buffers revoked); the first error is returned. A dead channel skips
//! the conversation. Whatever the result, the NIC is closed afterwards: control calls fail
//! with [`NicError::Closed`], bursts return 0 once the staged frames are taken, the event
//! stream ends, and closing again does nothing.

use std::time::Instant;

use crate::nvsp::{self, NvspMessage};
use crate::rndis;
use crate::vmbus::packet::PACKET_TRAILER_SIZE;

use super::control::Bound;
use super::error::NicError;
use super::queue::{BURST_BUDGET, ChannelIo};
use super::shared::{Lifecycle, NicShared, PUMP_SLICE};

/// Keeps the first error of a sequence that goes on after a failed step.
#[derive(Debug, Default)]
struct FirstError(Option<NicError>);

impl FirstError {
    fn note<T>(&mut self, result: Result<T, NicError>) -> bool {
        match result {
            Ok(_) => true,
            Err(error) => {
                // The caller gets the first; the later ones are for whoever debugs.
                tracing::debug!(%error, "a step of closing the nic failed");
                self.0.get_or_insert(error);
                false
            }
        }
    }

    fn into_result(self) -> Result<(), NicError> {
        self.0.map_or(Ok(()), Err)
    }
}

impl NicShared {
    /// Closes the NIC (see the module docs); a closed NIC returns `Ok` at once.
    pub(crate) fn close(&self, bound: Bound) -> Result<(), NicError> {
        // A re-establish in progress (the watchdog) finishes first: it is bounded too.
        let Some(_session) = self.session_lock.try_lock_until(bound.deadline) else {
            return Err(bound.error("a session re-establish to end before closing"));
        };
        if self.is_closed() {
            return Ok(());
        }
        self.set_lifecycle(Lifecycle::Closing);
        for q in &self.queues {
            q.state.lock().ready = false;
        }
        let mut first = FirstError::default();
        let mut revoked = false;
        if self.is_dead() {
            first.note::<()>(Err(NicError::ChannelDead));
        } else {
            revoked = self.tell_the_host(bound, &mut first);
        }
        let mut primary = None;
        for (i, q) in self.queues.iter().enumerate() {
            let chan = q.state.lock().detach_taking_channel();
            if i == 0 {
                primary = chan;
            }
        }
        *self.sendbuf.lock() = None;
        self.control.reset(0..0);
        self.set_lifecycle(Lifecycle::Closed);
        // Wakes whoever waits in the inbox: their requests end with `Closed`.
        self.control.cond.notify_all();
        if revoked && let Some(mut chan) = primary {
            first.note(self.wait_host_read(&mut chan, bound));
            chan.out.clear_pending_send_size();
        }
        first.into_result()
    }

    /// Steps 2 to 5 of the module docs; whether both revokes were written.
    fn tell_the_host(&self, bound: Bound, first: &mut FirstError) -> bool {
        first.note(self.rndis_set(
            rndis::OID_GEN_CURRENT_PACKET_FILTER,
            &0u32.to_le_bytes(),
            bound,
            "rndis set packet filter 0 (close)",
        ));
        if first.note(self.rndis_post(bound, "rndis halt", rndis::encode_halt)) {
            tracing::info!("RNDIS HALT sent");
        }
        first.note(self.drain(bound));
        let receive = NvspMessage::RevokeReceiveBuffer(nvsp::Message1RevokeReceiveBuffer::new(
            nvsp::RECEIVE_BUFFER_ID,
        ));
        let send = NvspMessage::RevokeSendBuffer(nvsp::Message1RevokeSendBuffer::new(
            nvsp::SEND_BUFFER_ID,
        ));
        let receive = first.note(self.nvsp_post(&receive, bound, "nvsp revoke receive buffer"));
        let send = first.note(self.nvsp_post(&send, bound, "nvsp revoke send buffer"));
        let revoked = receive && send;
        if revoked {
            tracing::info!("receive and send buffers revoked");
        }
        revoked
    }

    /// Reads every live queue until all are quiescent (step 4 of the module docs).
    fn drain(&self, bound: Bound) -> Result<(), NicError> {
        let live = usize::from(self.queue_count());
        loop {
            let mut quiescent = true;
            for q in self.queues.iter().take(live) {
                let mut st = q.state.lock();
                let mut room = 0;
                st.service(self, None, &mut room, BURST_BUDGET);
                st.flush();
                quiescent &= st.quiescent();
            }
            if quiescent {
                return Ok(());
            }
            if self.is_dead() {
                return Err(NicError::ChannelDead);
            }
            if bound.expired() {
                self.control.count_timeout();
                return Err(bound.error("the sends and receives in flight to drain"));
            }
            self.sleep_on_queues(bound.deadline);
        }
    }

    /// Sleeps (one bounded slice) until the host signals a live queue, unless one already
    /// has something to read. A queue whose completion backlog is full asked the host, in
    /// `service`, to signal once it reads the guest's ring; that wakes the sleep too.
    fn sleep_on_queues(&self, deadline: Instant) {
        let slice = deadline
            .saturating_duration_since(Instant::now())
            .min(PUMP_SLICE);
        if slice.is_zero() {
            return;
        }
        let live = usize::from(self.queue_count());
        let mut ready = false;
        for q in self.queues.iter().take(live) {
            let st = q.state.lock();
            if st.chan.is_some() {
                ready |= st.arm_interrupt();
            }
        }
        if !ready && let Err(error) = self.device.lock().wait_for_interrupt(slice) {
            tracing::debug!(%error, "waiting for the host failed");
            self.device_failed(&error);
        }
        for q in self.queues.iter().take(live) {
            q.state.lock().mask_interrupt();
        }
    }

    /// Waits until the host has read everything in queue 0's outgoing ring (step 7 of the
    /// module docs). The ring asks the host to signal once it is empty.
    fn wait_host_read(&self, chan: &mut ChannelIo, bound: Bound) -> Result<(), NicError> {
        const WHAT: &str = "the host to read the buffer revokes";
        let ring_err = |source| NicError::Ring { queue: 0, source };
        // `pending_send_sz` = the whole data area: the host signals once it is all free.
        let whole = chan.out.memory().data_size() - PACKET_TRAILER_SIZE;
        loop {
            if chan.out.is_empty().map_err(ring_err)? {
                return Ok(());
            }
            if bound.expired() {
                self.control.count_timeout();
                return Err(bound.error(WHAT));
            }
            if chan.out.request_space(whole).map_err(ring_err)? {
                continue;
            }
            let slice = bound
                .deadline
                .saturating_duration_since(Instant::now())
                .min(PUMP_SLICE);
            if let Err(error) = self.device.lock().wait_for_interrupt(slice) {
                self.device_failed(&error);
                return Err(error.into());
            }
        }
    }
}
