//! The station address: whose MAC the VF uses.
//!
//! The PF answers `RESET` with `ACK` and its administrator MAC, or, when the administrator set
//! none, with `NACK` and no address (Linux igb `igb_vf_reset_msg`; the VF is clear to send
//! either way). Then the driver picks the MAC itself, like Linux igbvf (`igbvf_probe`, then
//! `e1000_rar_set_vf`): [`IgbvfConfig::mac`](super::IgbvfConfig::mac) if set, else a random
//! locally administered unicast address, sent with `SET_MAC_ADDR`, whose `ACK` is required.
//!
//! The PF wins: when it has an administrator MAC and a different one is configured, the
//! administrator's is used (and a warning logged), since the PF would refuse any other.
//!
//! Lifecycle: chosen once at open; after a PF reset the same MAC is re-sent (`reinit`), so the
//! MAC never changes while the port is open.

use std::fs::File;
use std::io::{self, Read};

use packet::MacAddr;

use super::error::IgbvfError;
use crate::igbvf::mailbox::MacAddress;

/// Where the MAC in use came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MacChoice {
    /// The PF's administrator MAC: nothing to send.
    Admin(MacAddress),
    /// The driver's own (configured or random): must be sent with `SET_MAC_ADDR`.
    Own(MacAddress),
}

/// Picks the MAC from the PF's `RESET` answer (`admin`) and the configuration.
pub(crate) fn choose(
    device: &str,
    admin: Option<MacAddress>,
    configured: Option<MacAddr>,
) -> Result<MacChoice, IgbvfError> {
    match (admin, configured) {
        (Some(admin), Some(configured)) => {
            if configured.0 != admin {
                tracing::warn!(
                    device,
                    admin = %MacAddr(admin),
                    %configured,
                    "the pf assigned an administrator mac; using it instead of the configured one"
                );
            }
            Ok(MacChoice::Admin(admin))
        }
        (Some(admin), None) => Ok(MacChoice::Admin(admin)),
        (None, Some(configured)) => Ok(MacChoice::Own(configured.0)),
        (None, None) => random_local_unicast()
            .map(MacChoice::Own)
            .map_err(|source| IgbvfError::RandomMac {
                device: device.to_owned(),
                source,
            }),
    }
}

/// Six random bytes from `/dev/urandom`, made a locally administered (bit 1 of byte 0 set)
/// unicast (bit 0 clear) address, as Linux `eth_random_addr` does.
pub(crate) fn random_local_unicast() -> io::Result<MacAddress> {
    let mut mac = [0u8; 6];
    File::open("/dev/urandom")?.read_exact(&mut mac)?;
    Ok(local_unicast(mac))
}

/// `bytes` with the locally administered bit set and the multicast bit clear.
fn local_unicast(mut bytes: MacAddress) -> MacAddress {
    bytes[0] = (bytes[0] | 0x02) & !0x01;
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::igbvf::mailbox::is_valid_unicast;

    const ADMIN: MacAddress = [0x00, 0x15, 0x5d, 1, 2, 3];
    const OWN: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 1]);

    #[test]
    fn the_pf_administrator_mac_wins_over_the_configured_one() {
        assert_eq!(
            choose("d", Some(ADMIN), Some(OWN)).unwrap(),
            MacChoice::Admin(ADMIN)
        );
        assert_eq!(
            choose("d", Some(ADMIN), None).unwrap(),
            MacChoice::Admin(ADMIN)
        );
        assert_eq!(choose("d", None, Some(OWN)).unwrap(), MacChoice::Own(OWN.0));
    }

    #[test]
    fn without_any_mac_a_random_locally_administered_unicast_one_is_used() {
        let MacChoice::Own(a) = choose("d", None, None).unwrap() else {
            panic!("must be sent to the pf");
        };
        let b = random_local_unicast().unwrap();
        for mac in [a, b] {
            assert_eq!(mac[0] & 0x03, 0x02, "{mac:02x?}: local, unicast");
            assert!(is_valid_unicast(&mac));
        }
        assert_ne!(a, b, "46 random bits twice");
    }

    #[test]
    fn local_unicast_only_touches_the_two_low_bits_of_byte_0() {
        assert_eq!(
            local_unicast([0xff; 6]),
            [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(local_unicast([0; 6]), [0x02, 0, 0, 0, 0, 0]);
    }
}
