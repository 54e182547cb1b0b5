//! The settings of `hvnet run`: a TOML file (`--config`) and the same settings as flags, which
//! win over the file. Every value is checked here, once, with an error that names the bad
//! value and what is accepted; the rest of `run` sees only a valid [`RunConfig`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use netvsc::vmbus::uio::Guid;
use packet::MacAddr;
use serde::Deserialize;

/// The most queues a port may ask for (VMBus: the primary channel and 63 subchannels).
pub const MAX_QUEUES: u16 = 64;
/// The MTU range the synthetic NIC negotiates.
pub const MTU_RANGE: std::ops::RangeInclusive<u16> = 576..=9000;
/// The longest `duration` (a day).
pub const MAX_DURATION: u32 = 86_400;
/// The longest `stats_period`.
pub const MAX_STATS_PERIOD: u32 = 3600;
/// Frame sizes `txonly` generates (Ethernet header to payload end, no FCS); the upper end is
/// also capped by the MTU.
pub const TX_SIZE_RANGE: std::ops::RangeInclusive<u16> = 60..=9014;
/// testpmd's default `--eth-peer` for port 0: 02:00:00:00:00:00.
pub const DEFAULT_ETH_PEER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0]);

/// What the port does with its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ForwardMode {
    /// Receive and send back unchanged (to the peer port with `--peer`).
    Io,
    /// As io, with the source MAC set to the sending port's and the destination to
    /// `--eth-peer`.
    Mac,
    /// As io, with source and destination MAC swapped.
    Macswap,
    /// Only transmit: generated UDP frames of `--tx-size` bytes to `--eth-peer`.
    Txonly,
    /// Only receive, and free.
    Rxonly,
}

impl ForwardMode {
    /// The name testpmd gives the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Io => "io",
            Self::Mac => "mac",
            Self::Macswap => "macswap",
            Self::Txonly => "txonly",
            Self::Rxonly => "rxonly",
        }
    }
}

/// Whether the port uses the VF the host offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum VfPolicy {
    /// Attach the VF when the host offers one and hvnet has a driver for it.
    On,
    /// Stay on the synthetic path; the VF is left to the kernel.
    Off,
}

/// Which VF backend drives the VF the host offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum VfBackend {
    /// hvnet's own VFIO driver for the VFs it has one for (igbvf), AF_XDP on the kernel's
    /// netdev for any other (a packet socket where AF_XDP cannot be set up).
    Auto,
    /// Only hvnet's VFIO drivers; other VFs are left alone and counted.
    Vfio,
    /// AF_XDP on the kernel's netdev, whatever the VF.
    Afxdp,
    /// A packet socket (AF_PACKET) on the kernel's netdev, whatever the VF: the portable
    /// fallback and AF_XDP's baseline.
    Kernel,
}

/// Where the AF_XDP backend runs its XDP program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeSetting {
    /// Native where the driver's XDP can redirect (mlx5, MANA), generic otherwise (ixgbevf,
    /// iavf).
    Auto,
    /// In the driver's receive path; refused when the driver cannot redirect.
    Native,
    /// After the kernel built the skb: every interface has it.
    Generic,
}

impl XdpModeSetting {
    /// The backend's mode.
    pub fn mode(self) -> vf::kernel::XdpMode {
        match self {
            XdpModeSetting::Auto => vf::kernel::XdpMode::Auto,
            XdpModeSetting::Native => vf::kernel::XdpMode::Native,
            XdpModeSetting::Generic => vf::kernel::XdpMode::Generic,
        }
    }
}

/// A list of CPUs, written as the kernel writes them: `0-3,6`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

impl FromStr for CpuList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        const MAX_CPU: usize = 4095;
        let bad = |why: &str| format!("{text:?} is not a CPU list ({why}; e.g. 0-3,6)");
        let mut cpus = Vec::new();
        for part in text.split(',').map(str::trim) {
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let number = |s: &str| {
                s.parse::<usize>()
                    .ok()
                    .filter(|&n| n <= MAX_CPU)
                    .ok_or_else(|| bad(&format!("{s:?} is not a CPU number 0 to {MAX_CPU}")))
            };
            let (first, last) = (number(first)?, number(last)?);
            if first > last {
                return Err(bad(&format!("the range {part} runs backwards")));
            }
            for cpu in first..=last {
                if !cpus.contains(&cpu) {
                    cpus.push(cpu);
                }
            }
        }
        Ok(Self(cpus))
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.0.iter().map(usize::to_string).collect();
        f.write_str(&list.join(","))
    }
}

/// The settings as the file holds them (and as flags give them): every one optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// The NetVSC to open.
    pub instance: Option<String>,
    /// Queues to ask for.
    pub queues: Option<u16>,
    /// Layer-3 MTU.
    pub mtu: Option<u16>,
    /// VF policy.
    pub vf: Option<VfPolicy>,
    /// VF backend.
    pub vf_backend: Option<VfBackend>,
    /// AF_XDP's XDP mode.
    pub xdp_mode: Option<XdpModeSetting>,
    /// Pollers' CPUs.
    pub cpus: Option<String>,
    /// sysfs root.
    pub sysfs_root: Option<PathBuf>,
    /// Device-node directory.
    pub dev_root: Option<PathBuf>,
    /// TAP device name.
    pub tap: Option<String>,
    /// Forwarding mode.
    pub forward: Option<ForwardMode>,
    /// The second port's NetVSC.
    pub peer: Option<String>,
    /// Destination MAC for mac and txonly.
    pub eth_peer: Option<String>,
    /// Frame size for txonly.
    pub tx_size: Option<u16>,
    /// Capture file.
    pub pcap: Option<PathBuf>,
    /// Seconds between two statistics prints.
    pub stats_period: Option<u32>,
    /// Seconds to run.
    pub duration: Option<u32>,
    /// Spin instead of resting when idle.
    pub busy_poll: Option<bool>,
    /// Send one burst of txonly frames on each queue before forwarding.
    pub tx_first: Option<bool>,
    /// Where to serve the Prometheus metrics.
    pub metrics_addr: Option<String>,
    /// Allow a wildcard metrics address.
    pub metrics_public: Option<bool>,
}

impl Settings {
    /// Reads a settings file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("in the config file {}", path.display()))
    }

    /// `self`, with every setting `over` gives replacing this one's.
    pub fn overridden_by(self, over: Settings) -> Self {
        Self {
            instance: over.instance.or(self.instance),
            queues: over.queues.or(self.queues),
            mtu: over.mtu.or(self.mtu),
            vf: over.vf.or(self.vf),
            vf_backend: over.vf_backend.or(self.vf_backend),
            xdp_mode: over.xdp_mode.or(self.xdp_mode),
            cpus: over.cpus.or(self.cpus),
            sysfs_root: over.sysfs_root.or(self.sysfs_root),
            dev_root: over.dev_root.or(self.dev_root),
            tap: over.tap.or(self.tap),
            forward: over.forward.or(self.forward),
            peer: over.peer.or(self.peer),
            eth_peer: over.eth_peer.or(self.eth_peer),
            tx_size: over.tx_size.or(self.tx_size),
            pcap: over.pcap.or(self.pcap),
            stats_period: over.stats_period.or(self.stats_period),
            duration: over.duration.or(self.duration),
            busy_poll: over.busy_poll.or(self.busy_poll),
            tx_first: over.tx_first.or(self.tx_first),
            metrics_addr: over.metrics_addr.or(self.metrics_addr),
            metrics_public: over.metrics_public.or(self.metrics_public),
        }
    }
}

/// What the port's queues are connected to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Application {
    /// A multi-queue TAP device of this name.
    Tap(String),
    /// A forwarding mode, with a second port when `peer` is set.
    Forward {
        /// The mode.
        mode: ForwardMode,
        /// The second port's NetVSC.
        peer: Option<Guid>,
    },
}

/// Every setting of `hvnet run`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunConfig {
    /// The NetVSC to open; `None`: the first bound to uio_hv_generic.
    pub instance: Option<Guid>,
    /// Queues to ask for (the host may grant fewer).
    pub queues: u16,
    /// Layer-3 MTU to negotiate.
    pub mtu: u16,
    /// VF policy.
    pub vf: VfPolicy,
    /// VF backend.
    pub vf_backend: VfBackend,
    /// AF_XDP's XDP mode.
    pub xdp_mode: XdpModeSetting,
    /// Pollers' CPUs (poller *i* on the *i mod n*-th); empty: not pinned.
    pub cpus: CpuList,
    /// sysfs root.
    pub sysfs_root: PathBuf,
    /// Device-node directory.
    pub dev_root: PathBuf,
    /// What the queues are connected to.
    pub application: Application,
    /// Destination MAC of `mac` and `txonly`.
    pub eth_peer: MacAddr,
    /// Frame size of `txonly`.
    pub tx_size: u16,
    /// Capture file, both directions.
    pub pcap: Option<PathBuf>,
    /// Time between two statistics prints; `None`: only at exit.
    pub stats_period: Option<Duration>,
    /// How long to run; `None`: until SIGINT or SIGTERM.
    pub duration: Option<Duration>,
    /// Spin when idle instead of resting.
    pub busy_poll: bool,
    /// Send one burst of txonly frames on each queue before forwarding (io, mac, macswap).
    pub tx_first: bool,
    /// Where the Prometheus metrics are served, the address policy applied; `None`: not.
    pub metrics: Option<std::net::SocketAddr>,
}

fn guid(field: &str, text: &str) -> anyhow::Result<Guid> {
    text.parse::<Guid>()
        .map_err(|e| anyhow::anyhow!("{field} {text:?}: {e}"))
}

fn in_range<T: PartialOrd + fmt::Display + Copy>(
    field: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> anyhow::Result<T> {
    if !range.contains(&value) {
        bail!(
            "{field} {value} is out of range: {} to {} accepted",
            range.start(),
            range.end()
        );
    }
    Ok(value)
}

impl RunConfig {
    /// Checks `settings` and fills in the defaults.
    pub fn from_settings(s: Settings) -> anyhow::Result<Self> {
        let application = match (&s.tap, s.forward) {
            (Some(_), Some(_)) => bail!(
                "tap and forward both set: the port's queues go to one application, a TAP device or a forwarding mode"
            ),
            (None, None) => bail!(
                "nothing to run: set tap NAME (the kernel stack on the port) or forward io|mac|macswap|txonly|rxonly"
            ),
            (Some(name), None) => {
                if s.peer.is_some() {
                    bail!("peer is for forward modes: a TAP device is one port");
                }
                packet::netdev::check_ifname(name).map_err(|e| anyhow::anyhow!("tap: {e}"))?;
                Application::Tap(name.clone())
            }
            (None, Some(mode)) => Application::Forward {
                mode,
                peer: s.peer.as_deref().map(|p| guid("peer", p)).transpose()?,
            },
        };
        let instance = s
            .instance
            .as_deref()
            .map(|i| guid("instance", i))
            .transpose()?;
        if let (
            Application::Forward {
                peer: Some(peer), ..
            },
            Some(instance),
        ) = (&application, &instance)
            && peer == instance
        {
            bail!("peer {peer} is the port itself: give the second NetVSC's GUID");
        }
        if matches!(&application, Application::Forward { peer: Some(_), .. }) && instance.is_none()
        {
            bail!("with peer set, instance must be set too: which NetVSC is port 0");
        }
        let mtu = in_range("mtu", s.mtu.unwrap_or(1500), MTU_RANGE)?;
        let tx_size = in_range("tx-size", s.tx_size.unwrap_or(64), TX_SIZE_RANGE)?;
        if usize::from(tx_size) > usize::from(mtu) + 14 {
            bail!(
                "tx-size {tx_size} is larger than a frame at mtu {mtu} ({} bytes)",
                usize::from(mtu) + 14
            );
        }
        let eth_peer = match &s.eth_peer {
            Some(text) => text.parse::<MacAddr>().map_err(|e| {
                anyhow::anyhow!("eth-peer {text:?}: {e} (six hex bytes, e.g. 02:00:00:00:00:01)")
            })?,
            None => DEFAULT_ETH_PEER,
        };
        let cpus = match &s.cpus {
            Some(text) => text
                .parse::<CpuList>()
                .map_err(|e| anyhow::anyhow!("cpus: {e}"))?,
            None => CpuList(Vec::new()),
        };
        let tx_first = s.tx_first.unwrap_or(false);
        if tx_first
            && !matches!(
                application,
                Application::Forward {
                    mode: ForwardMode::Io | ForwardMode::Mac | ForwardMode::Macswap,
                    ..
                }
            )
        {
            bail!("tx-first seeds a forwarding loop: it goes with forward io, mac or macswap");
        }
        let seconds = |v: Option<u32>, field: &str, max: u32| -> anyhow::Result<Option<Duration>> {
            match v {
                None | Some(0) if field == "stats-period" => Ok(None),
                None => Ok(None),
                Some(n) => Ok(Some(Duration::from_secs(
                    in_range(field, n, 1..=max)?.into(),
                ))),
            }
        };
        let metrics = match &s.metrics_addr {
            None => None,
            Some(text) => {
                let addr = telemetry::parse_addr(text)
                    .map_err(|e| anyhow::anyhow!("metrics-addr {text:?}: {e}"))?;
                Some(
                    telemetry::check_policy(addr, s.metrics_public.unwrap_or(false))
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                )
            }
        };
        Ok(Self {
            instance,
            queues: in_range("queues", s.queues.unwrap_or(1), 1..=MAX_QUEUES)?,
            mtu,
            vf: s.vf.unwrap_or(VfPolicy::On),
            vf_backend: s.vf_backend.unwrap_or(VfBackend::Auto),
            xdp_mode: s.xdp_mode.unwrap_or(XdpModeSetting::Auto),
            cpus,
            sysfs_root: s.sysfs_root.unwrap_or_else(|| "/sys".into()),
            dev_root: s.dev_root.unwrap_or_else(|| "/dev".into()),
            application,
            eth_peer,
            tx_size,
            pcap: s.pcap,
            stats_period: seconds(s.stats_period, "stats-period", MAX_STATS_PERIOD)?,
            duration: seconds(s.duration, "duration", MAX_DURATION)?,
            busy_poll: s.busy_poll.unwrap_or(false),
            tx_first,
            metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parse(text: &str) -> anyhow::Result<RunConfig> {
        let settings: Settings = toml::from_str(text)?;
        RunConfig::from_settings(settings)
    }

    fn error(text: &str) -> String {
        format!("{:#}", parse(text).expect_err("accepted"))
    }

    #[test]
    fn a_full_file_gives_every_setting() {
        let c = parse(
            r#"
            instance = "{ED963694-E847-4B2A-85AF-BC9CFC11D6F3}"
            queues = 4
            mtu = 9000
            vf = "off"
            vf-backend = "kernel"
            xdp-mode = "generic"
            cpus = "2-3,6"
            sysfs-root = "/tmp/sim"
            dev-root = "/tmp/sim/dev"
            forward = "macswap"
            peer = "f8615163-df3e-46c5-913f-f2d2f965ed0e"
            eth-peer = "02:00:00:00:00:01"
            tx-size = 1514
            pcap = "/tmp/x.pcap"
            stats-period = 5
            duration = 30
            busy-poll = true
            tx-first = true
            metrics-addr = "127.0.0.1:9464"
            "#,
        )
        .unwrap();
        assert_eq!(
            c.instance.as_ref().map(Guid::as_str),
            Some("ed963694-e847-4b2a-85af-bc9cfc11d6f3")
        );
        assert_eq!((c.queues, c.mtu, c.vf), (4, 9000, VfPolicy::Off));
        assert_eq!(c.vf_backend, VfBackend::Kernel);
        assert_eq!(c.xdp_mode, XdpModeSetting::Generic);
        assert_eq!(c.cpus, CpuList(vec![2, 3, 6]));
        assert_eq!(c.sysfs_root, PathBuf::from("/tmp/sim"));
        assert!(matches!(
            c.application,
            Application::Forward {
                mode: ForwardMode::Macswap,
                peer: Some(_)
            }
        ));
        assert_eq!(c.eth_peer, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(c.tx_size, 1514);
        assert_eq!(c.stats_period, Some(Duration::from_secs(5)));
        assert_eq!(c.duration, Some(Duration::from_secs(30)));
        assert!(c.busy_poll && c.tx_first);
        assert_eq!(c.metrics, Some("127.0.0.1:9464".parse().unwrap()));
    }

    #[test]
    fn defaults_are_one_queue_1500_vf_on_unpinned() {
        let c = parse(r#"tap = "hv0""#).unwrap();
        assert_eq!((c.queues, c.mtu, c.vf), (1, 1500, VfPolicy::On));
        assert!(c.cpus.0.is_empty() && c.instance.is_none() && c.pcap.is_none());
        assert_eq!(c.application, Application::Tap("hv0".into()));
        assert_eq!((c.stats_period, c.duration), (None, None));
        assert_eq!(c.sysfs_root, PathBuf::from("/sys"));
    }

    #[test]
    fn every_bad_value_is_named_with_what_is_accepted() {
        for (text, expected) in [
            (
                "tap = \"x\"\nquues = 2",
                "unknown field `quues`, expected one of",
            ),
            (
                "tap = \"x\"\nqueues = 0",
                "queues 0 is out of range: 1 to 64 accepted",
            ),
            (
                "tap = \"x\"\nqueues = 65",
                "queues 65 is out of range: 1 to 64 accepted",
            ),
            (
                "tap = \"x\"\nmtu = 100",
                "mtu 100 is out of range: 576 to 9000 accepted",
            ),
            (
                "tap = \"x\"\nvf = \"maybe\"",
                "unknown variant `maybe`, expected `on` or `off`",
            ),
            (
                "forward = \"fast\"",
                "unknown variant `fast`, expected one of `io`, `mac`",
            ),
            (
                "tap = \"x\"\ncpus = \"3-1\"",
                "the range 3-1 runs backwards",
            ),
            ("tap = \"x\"\ncpus = \"a\"", "\"a\" is not a CPU number"),
            ("tap = \"x\"\ninstance = \"eth0\"", "instance \"eth0\""),
            ("forward = \"io\"\neth-peer = \"zz\"", "eth-peer \"zz\""),
            (
                "forward = \"txonly\"\ntx-size = 59",
                "tx-size 59 is out of range: 60 to 9014",
            ),
            (
                "forward = \"txonly\"\ntx-size = 2000",
                "larger than a frame at mtu 1500",
            ),
            (
                "tap = \"x\"\nduration = 0",
                "duration 0 is out of range: 1 to 86400",
            ),
            ("tap = \"a/b\"", "tap: \"a/b\" is not an interface name"),
            ("tap = \"x\"\nforward = \"io\"", "tap and forward both set"),
            ("", "nothing to run"),
            (
                "tap = \"x\"\npeer = \"f8615163-df3e-46c5-913f-f2d2f965ed0e\"",
                "peer is for forward modes",
            ),
            (
                "forward = \"io\"\npeer = \"f8615163-df3e-46c5-913f-f2d2f965ed0e\"",
                "instance must be set",
            ),
            (
                "forward = \"io\"\npeer = \"f8615163-df3e-46c5-913f-f2d2f965ed0e\"\ninstance = \"f8615163-df3e-46c5-913f-f2d2f965ed0e\"",
                "is the port itself",
            ),
            (
                "queues = \"four\"\ntap = \"x\"",
                "invalid type: string \"four\", expected u16",
            ),
            (
                "tap = \"x\"\nvf-backend = \"dpdk\"",
                "unknown variant `dpdk`, expected one of `auto`, `vfio`, `afxdp`, `kernel`",
            ),
            (
                "tap = \"x\"\ntx-first = true",
                "tx-first seeds a forwarding loop",
            ),
            (
                "forward = \"txonly\"\ntx-first = true",
                "it goes with forward io, mac or macswap",
            ),
            (
                "tap = \"x\"\nmetrics-addr = \"0.0.0.0:9464\"",
                "refusing to serve metrics on 0.0.0.0:9464",
            ),
            (
                "tap = \"x\"\nmetrics-addr = \"metrics.example\"",
                "metrics-addr \"metrics.example\"",
            ),
        ] {
            let message = error(text);
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn flags_override_the_file_setting_by_setting() {
        let file: Settings = toml::from_str("tap = \"x\"\nqueues = 4\nmtu = 9000").unwrap();
        let flags = Settings {
            queues: Some(2),
            ..Settings::default()
        };
        let c = RunConfig::from_settings(file.overridden_by(flags)).unwrap();
        assert_eq!((c.queues, c.mtu), (2, 9000));
    }

    #[test]
    fn a_stats_period_of_zero_means_only_at_exit() {
        let c = parse("tap = \"x\"\nstats-period = 0").unwrap();
        assert_eq!(c.stats_period, None);
    }

    proptest! {
        #[test]
        fn cpu_lists_round_trip(cpus in proptest::collection::btree_set(0usize..4096, 1..32)) {
            let list = CpuList(cpus.into_iter().collect());
            prop_assert_eq!(list.to_string().parse::<CpuList>().unwrap(), list);
        }

        #[test]
        fn any_cpu_list_text_is_parsed_or_refused_without_panic(text in "[0-9,\\- ]{0,24}") {
            if let Ok(list) = text.parse::<CpuList>() {
                prop_assert!(list.0.iter().all(|&c| c <= 4095));
            }
        }
    }
}
