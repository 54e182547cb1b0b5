//! Task offloads during the RNDIS bring-up (reference §3.6, §3.10), as Linux
//! `rndis_netdev_set_hwcaps` does them: QUERY `OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES` with an
//! NDIS_OFFLOAD header sized by the NVSP version, then SET `OID_TCP_OFFLOAD_PARAMETERS`.
//!
//! What is requested is what this driver actually does: it computes no checksums for the host
//! to finish and never hands it a segment larger than the MTU, and it reports no receive
//! checksum results to the application. So every checksum offload is switched off (value 1,
//! transmit and receive off) and so is LSOv2 for IPv4 and IPv6 (value 1); everything else
//! (LSOv1, IPsec, RSC, encapsulation) is left unchanged (value 0). At NVSP ≤ 4 the object is
//! 22 bytes long and UDP checksum offload is off, as Linux and FreeBSD send it.
//!
//! Hosts differ: one that answers the capability query with a failure (`NOT_SUPPORTED`), with
//! an object that does not parse, or that refuses the SET does not fail the handshake; the
//! NIC logs it and goes on without recorded capabilities. Only a timeout or a dead channel
//! (the host is not answering at all) ends the handshake. The host follows a successful SET
//! with an INDICATE_STATUS `TASK_OFFLOAD_CURRENT_CONFIG`, which the receive path turns into
//! [`NicEvent::OffloadConfigChanged`](super::NicEvent::OffloadConfigChanged) like any other
//! indication; it carries no request id and never completes a control request.

use crate::rndis::{self, NdisOffload, NdisOffloadParameters};

use super::error::NicError;
use super::handshake::Steps;
use super::shared::NicShared;

/// The offload parameters the guest sets at `nvsp_version`: checksum offloads and LSOv2 off,
/// the rest unchanged (see the module docs). UDP checksum offload, which Linux forces off at
/// NVSP ≤ 4, is off at every version here.
pub(crate) fn offload_parameters(nvsp_version: u32) -> NdisOffloadParameters {
    let mut p = NdisOffloadParameters::new(nvsp_version);
    let off = rndis::NDIS_OFFLOAD_PARAMETERS_TX_RX_DISABLED;
    p.ipv4_checksum = off;
    p.tcp4_checksum = off;
    p.udp4_checksum = off;
    p.tcp6_checksum = off;
    p.udp6_checksum = off;
    p.lsov2_ipv4 = rndis::NDIS_OFFLOAD_PARAMETERS_DISABLED;
    p.lsov2_ipv6 = rndis::NDIS_OFFLOAD_PARAMETERS_DISABLED;
    p
}

/// Whether a failed offload step may be logged and skipped: the host answered, just not
/// with something usable. Anything else (timeout, dead channel, device failure) is fatal.
fn tolerable(error: &NicError) -> bool {
    matches!(
        error,
        NicError::HostRefused { .. } | NicError::Rndis { .. } | NicError::Protocol { .. }
    )
}

impl NicShared {
    /// Queries the host's offload capabilities (recorded for
    /// [`offload_capabilities`](super::SyntheticNic::offload_capabilities)) and sets the
    /// offload parameters. Tolerates hosts that support neither.
    pub(crate) fn configure_offloads(&self, version: u32, steps: Steps) -> Result<(), NicError> {
        *self.offload_caps.lock() = None;
        match self.query_offload_capabilities(version, steps) {
            Ok(caps) => {
                tracing::debug!(
                    revision = caps.header.revision,
                    ipv4_tx_checksum = caps.checksum.ipv4_tx_flags.get(),
                    ipv6_tx_checksum = caps.checksum.ipv6_tx_flags.get(),
                    lsov2_ipv4_max = caps.lso_v2.ipv4_max_offload_size.get(),
                    lsov2_ipv6_max = caps.lso_v2.ipv6_max_offload_size.get(),
                    "host offload capabilities"
                );
                *self.offload_caps.lock() = Some(caps);
            }
            Err(error) if tolerable(&error) => {
                tracing::info!(%error, "no offload capabilities from the host; going on");
            }
            Err(error) => return Err(error),
        }
        const WHAT: &str = "rndis set offload parameters";
        let params = offload_parameters(version);
        match self.rndis_set(
            rndis::OID_TCP_OFFLOAD_PARAMETERS,
            params.wire_bytes(),
            steps.bound(),
            WHAT,
        ) {
            Ok(()) => Ok(()),
            Err(error) if tolerable(&error) => {
                tracing::info!(%error, "the host refused the offload parameters; going on");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    fn query_offload_capabilities(
        &self,
        version: u32,
        steps: Steps,
    ) -> Result<NdisOffload, NicError> {
        const WHAT: &str = "rndis query offload hardware capabilities";
        let info = self.rndis_query(
            rndis::OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES,
            NdisOffload::query_input(version).wire_bytes(),
            steps.bound(),
            WHAT,
        )?;
        NdisOffload::parse(&info).map_err(|source| NicError::Rndis {
            what: WHAT,
            request_id: 0,
            source,
        })
    }
}
