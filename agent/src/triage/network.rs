//! Sockets (TCP, UDP, v4 and v6, unix) with the pids that hold them, routes, interfaces and the
//! ARP table, as the agent's network namespace shows them.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;

use airf_evidence::triage::{Listener, Text};
use procfs::net::{TcpState, UdpState};
use serde::Serialize;

use super::log::Log;

/// One TCP or UDP socket.
#[derive(Debug, Clone, Serialize)]
pub struct SocketRecord {
    /// `tcp`, `tcp6`, `udp`, `udp6`.
    pub protocol: &'static str,
    /// `LISTEN`, `ESTABLISHED`, ... (UDP: `UNCONNECTED` or `ESTABLISHED`).
    pub state: String,
    pub local_address: String,
    pub local_port: u16,
    pub remote_address: String,
    pub remote_port: u16,
    pub uid: u32,
    pub inode: u64,
    pub pids: Vec<u32>,
}

/// One unix socket.
#[derive(Debug, Clone, Serialize)]
pub struct UnixRecord {
    /// `stream`, `dgram`, `seqpacket`.
    pub socket_type: String,
    pub state: String,
    pub inode: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Text>,
    pub pids: Vec<u32>,
}

/// One route.
#[derive(Debug, Clone, Serialize)]
pub struct RouteRecord {
    pub family: &'static str,
    pub interface: String,
    pub destination: String,
    pub prefix_length: u32,
    pub gateway: String,
    pub flags: u32,
    pub metric: u32,
}

/// One network interface.
#[derive(Debug, Clone, Serialize)]
pub struct InterfaceRecord {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operstate: Option<String>,
    /// IPv4 and IPv6 addresses with their prefix length.
    pub addresses: Vec<String>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// One ARP (IPv4 neighbour) entry.
#[derive(Debug, Clone, Serialize)]
pub struct NeighbourRecord {
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hw_address: Option<String>,
    pub device: String,
    pub flags: u32,
}

/// All of it.
#[derive(Debug, Default)]
pub struct Network {
    pub sockets: Vec<SocketRecord>,
    pub unix: Vec<UnixRecord>,
    pub routes: Vec<RouteRecord>,
    pub interfaces: Vec<InterfaceRecord>,
    pub neighbours: Vec<NeighbourRecord>,
}

fn tcp_state(s: &TcpState) -> &'static str {
    match s {
        TcpState::Established => "ESTABLISHED",
        TcpState::SynSent => "SYN_SENT",
        TcpState::SynRecv => "SYN_RECV",
        TcpState::FinWait1 => "FIN_WAIT1",
        TcpState::FinWait2 => "FIN_WAIT2",
        TcpState::TimeWait => "TIME_WAIT",
        TcpState::Close => "CLOSE",
        TcpState::CloseWait => "CLOSE_WAIT",
        TcpState::LastAck => "LAST_ACK",
        TcpState::Listen => "LISTEN",
        TcpState::Closing => "CLOSING",
        TcpState::NewSynRecv => "NEW_SYN_RECV",
    }
}

fn mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn unreadable(log: &mut Log, what: &str, e: &procfs::ProcError) {
    let errno = match e {
        procfs::ProcError::PermissionDenied(_) => Some("EACCES".to_owned()),
        procfs::ProcError::NotFound(_) => Some("ENOENT".to_owned()),
        _ => None,
    };
    log.unreadable_with(what, errno, e.to_string());
}

/// Reads every table; `owners` maps socket inodes to the pids holding them.
pub fn collect(owners: &HashMap<u64, Vec<u32>>, log: &mut Log) -> Network {
    let mut net = Network::default();
    let pids = |inode: u64| owners.get(&inode).cloned().unwrap_or_default();
    let socket = |protocol: &'static str,
                  state: &str,
                  local: SocketAddr,
                  remote: SocketAddr,
                  uid: u32,
                  inode: u64| SocketRecord {
        protocol,
        state: state.to_owned(),
        local_address: local.ip().to_string(),
        local_port: local.port(),
        remote_address: remote.ip().to_string(),
        remote_port: remote.port(),
        uid,
        inode,
        pids: pids(inode),
    };
    for (protocol, table) in [("tcp", procfs::net::tcp()), ("tcp6", procfs::net::tcp6())] {
        match table {
            Ok(entries) => net.sockets.extend(entries.into_iter().map(|e| {
                socket(
                    protocol,
                    tcp_state(&e.state),
                    e.local_address,
                    e.remote_address,
                    e.uid,
                    e.inode,
                )
            })),
            Err(e) => unreadable(log, &format!("/proc/net/{protocol}"), &e),
        }
    }
    for (protocol, table) in [("udp", procfs::net::udp()), ("udp6", procfs::net::udp6())] {
        match table {
            Ok(entries) => net.sockets.extend(entries.into_iter().map(|e| {
                let state = match e.state {
                    UdpState::Established => "ESTABLISHED",
                    UdpState::Close => "UNCONNECTED",
                };
                socket(
                    protocol,
                    state,
                    e.local_address,
                    e.remote_address,
                    e.uid,
                    e.inode,
                )
            })),
            Err(e) => unreadable(log, &format!("/proc/net/{protocol}"), &e),
        }
    }
    match procfs::net::unix() {
        Ok(entries) => net.unix.extend(entries.into_iter().map(|e| UnixRecord {
            socket_type: match e.socket_type {
                1 => "stream".to_owned(),
                2 => "dgram".to_owned(),
                5 => "seqpacket".to_owned(),
                n => n.to_string(),
            },
            state: format!("{:?}", e.state).to_ascii_uppercase(),
            inode: e.inode,
            path: e.path.map(|p| Text(p.as_os_str().as_bytes().to_vec())),
            pids: pids(e.inode),
        })),
        Err(e) => unreadable(log, "/proc/net/unix", &e),
    }
    match procfs::net::route() {
        Ok(entries) => net.routes.extend(entries.into_iter().map(|r| RouteRecord {
            family: "ipv4",
            interface: r.iface,
            destination: r.destination.to_string(),
            prefix_length: u32::from(r.mask).count_ones(),
            gateway: r.gateway.to_string(),
            flags: u32::from(r.flags),
            metric: r.metrics,
        })),
        Err(e) => unreadable(log, "/proc/net/route", &e),
    }
    match std::fs::read_to_string("/proc/net/ipv6_route") {
        Ok(text) => net.routes.extend(text.lines().filter_map(parse_ipv6_route)),
        Err(e) => log.unreadable("/proc/net/ipv6_route", &e),
    }
    match procfs::net::arp() {
        Ok(entries) => net
            .neighbours
            .extend(entries.into_iter().map(|a| NeighbourRecord {
                address: a.ip_address.to_string(),
                hw_address: a.hw_address.map(|m| mac(&m)),
                device: a.device,
                flags: a.flags.bits(),
            })),
        Err(e) => unreadable(log, "/proc/net/arp", &e),
    }
    net.interfaces = interfaces(log);
    net
}

/// One line of `/proc/net/ipv6_route`: dest, dest prefix, src, src prefix, next hop, metric,
/// refcnt, use, flags, device (hex except the device).
pub fn parse_ipv6_route(line: &str) -> Option<RouteRecord> {
    let f: Vec<&str> = line.split_ascii_whitespace().collect();
    let addr = |s: &str| -> Option<String> {
        let n = u128::from_str_radix(s, 16).ok()?;
        (s.len() == 32).then(|| Ipv6Addr::from(n).to_string())
    };
    Some(RouteRecord {
        family: "ipv6",
        destination: addr(f.first()?)?,
        prefix_length: u32::from_str_radix(f.get(1)?, 16).ok()?,
        gateway: addr(f.get(4)?)?,
        metric: u32::from_str_radix(f.get(5)?, 16).ok()?,
        flags: u32::from_str_radix(f.get(8)?, 16).ok()?,
        interface: (*f.get(9)?).to_owned(),
    })
}

fn interfaces(log: &mut Log) -> Vec<InterfaceRecord> {
    let stats = procfs::net::dev_status().unwrap_or_default();
    let mut names: Vec<String> = stats.keys().cloned().collect();
    names.sort();
    let mut addresses: HashMap<String, Vec<String>> = HashMap::new();
    match nix::ifaddrs::getifaddrs() {
        Ok(list) => {
            for a in list {
                let Some(addr) = a.address else { continue };
                let prefix = a
                    .netmask
                    .as_ref()
                    .and_then(|m| {
                        m.as_sockaddr_in()
                            .map(|m| m.ip().to_bits().count_ones())
                            .or_else(|| m.as_sockaddr_in6().map(|m| m.ip().to_bits().count_ones()))
                    })
                    .unwrap_or(0);
                let ip = addr
                    .as_sockaddr_in()
                    .map(|s| s.ip().to_string())
                    .or_else(|| addr.as_sockaddr_in6().map(|s| s.ip().to_string()));
                if let Some(ip) = ip {
                    addresses
                        .entry(a.interface_name.clone())
                        .or_default()
                        .push(format!("{ip}/{prefix}"));
                }
            }
        }
        Err(e) => log.unreadable_with("getifaddrs", Some(format!("{e:?}")), e.desc().to_owned()),
    }
    names
        .into_iter()
        .map(|name| {
            let sys = std::path::Path::new("/sys/class/net").join(&name);
            let read = |f: &str| {
                std::fs::read_to_string(sys.join(f))
                    .ok()
                    .map(|s| s.trim().to_owned())
            };
            let s = stats.get(&name);
            InterfaceRecord {
                mac: read("address"),
                mtu: read("mtu").and_then(|m| m.parse().ok()),
                operstate: read("operstate"),
                addresses: addresses.remove(&name).unwrap_or_default(),
                rx_bytes: s.map_or(0, |s| s.recv_bytes),
                tx_bytes: s.map_or(0, |s| s.sent_bytes),
                name,
            }
        })
        .collect()
}

/// The listening sockets: TCP in LISTEN, UDP bound and unconnected.
pub fn listeners(sockets: &[SocketRecord]) -> Vec<Listener> {
    sockets
        .iter()
        .filter(|s| {
            s.state == "LISTEN" || (s.protocol.starts_with("udp") && s.state == "UNCONNECTED")
        })
        .map(|s| Listener {
            protocol: s.protocol.to_owned(),
            local: if s.local_address.contains(':') {
                format!("[{}]:{}", s.local_address, s.local_port)
            } else {
                format!("{}:{}", s.local_address, s.local_port)
            },
            pids: s.pids.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ipv6_routes() {
        let r = parse_ipv6_route("fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0").unwrap();
        assert_eq!(r.destination, "fe80::");
        assert_eq!(r.prefix_length, 64);
        assert_eq!(r.metric, 256);
        assert_eq!(r.interface, "eth0");
        assert!(parse_ipv6_route("zz 40").is_none());
    }

    /// A socket this test listens on is found, in LISTEN, held by this process.
    #[test]
    fn finds_a_listening_socket_and_its_owner() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut log = Log::default();
        let procs = super::super::processes::collect(
            std::path::Path::new("/proc"),
            super::super::processes::ProcessOptions {
                cmdline_bytes: 100,
                exe_bytes: 0,
                environment: false,
            },
            None,
            100,
            &super::super::log::Deadline::new(std::time::Duration::from_secs(60)),
            &mut log,
            &mut |_, _| {},
        );
        let net = collect(&procs.socket_owners, &mut log);
        let s = net
            .sockets
            .iter()
            .find(|s| s.protocol == "tcp" && s.local_port == port)
            .unwrap();
        assert_eq!(s.state, "LISTEN");
        assert!(s.pids.contains(&std::process::id()), "{s:?}");
        assert!(
            listeners(&net.sockets)
                .iter()
                .any(|l| l.local == format!("127.0.0.1:{port}"))
        );
        assert!(net.interfaces.iter().any(|i| i.name == "lo"));
    }

    proptest! {
        #[test]
        fn the_route_parser_never_panics(line in "\\PC{0,200}") {
            let _ = parse_ipv6_route(&line);
        }
    }
}
