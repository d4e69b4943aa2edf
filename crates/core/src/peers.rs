//! Connections counted per client address, so that one host (a misbehaving modality, a
//! slowloris client) cannot take every slot of a door. Both doors use it: HTTP for its
//! connections, DIMSE for its associations.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// How many connections each address holds now.
#[derive(Default)]
pub struct PerAddress(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in a [`PerAddress`] table, given back when dropped.
pub struct AddressHold {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    /// A place for one more connection from `ip`, if it holds fewer than `max`.
    pub fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressHold> {
        let mut table = self.0.lock().expect("connection table");
        let n = table.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressHold {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for AddressHold {
    fn drop(&mut self) {
        let mut table = self.table.0.lock().expect("connection table");
        if let Some(n) = table.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                table.remove(&self.ip);
            }
        }
    }
}

/// An address or a network (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`): what
/// `http.trusted_proxies` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let bad = || format!("{s:?} is not an address or a network (address/prefix)");
        let (address, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let network = canonical(address.parse::<IpAddr>().map_err(|_| bad())?);
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        if prefix > bits {
            return Err(bad());
        }
        Ok(Cidr { network, prefix })
    }
}

impl Cidr {
    /// True when `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let keep = |bits: u32, prefix: u8| -> u128 {
            if prefix == 0 {
                0
            } else {
                (!0u128 << (bits - prefix as u32)) & (!0u128 >> (128 - bits))
            }
        };
        match (self.network, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = keep(32, self.prefix);
                u128::from(u32::from(n)) & mask == u128::from(u32::from(a)) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = keep(128, self.prefix);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4 address written as IPv6 (`::ffff:192.0.2.7`, as a dual-stack socket reports it) is
/// the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The client behind `peer`: when `peer` is one of the `trusted` proxies, the right-most
/// address of the `X-Forwarded-For` values (in header order) that is not itself a trusted
/// proxy; otherwise, and when that entry is not an address, `peer` itself. Whatever a client
/// writes in the header is ignored unless a trusted proxy connected, and only the entries the
/// trusted proxies appended are believed.
pub fn forwarded_client<'a>(
    peer: IpAddr,
    trusted: &[Cidr],
    forwarded_for: impl Iterator<Item = &'a str>,
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = hop_address(hop) else {
            return client;
        };
        client = canonical(ip);
        if !is_trusted(client) {
            return client;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, with or without a port (`[::1]:443`, `192.0.2.7:80`).
fn hop_address(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_their_addresses_only() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one: Cidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "proxy", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_forwarded_client_is_believed_only_from_a_trusted_proxy() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // a client writing the header itself is ignored
        assert_eq!(
            forwarded_client(ip("198.51.100.1"), &trusted, ["203.0.113.9"].into_iter()),
            ip("198.51.100.1")
        );
        // through the proxy: the right-most untrusted entry; what the client prepended is not
        // believed
        assert_eq!(
            forwarded_client(
                ip("10.0.0.2"),
                &trusted,
                ["6.6.6.6, 203.0.113.9", "10.0.0.5"].into_iter()
            ),
            ip("203.0.113.9")
        );
        assert_eq!(
            forwarded_client(ip("10.0.0.2"), &trusted, ["203.0.113.9:4711"].into_iter()),
            ip("203.0.113.9")
        );
        // no header, or garbage where the client should be: the proxy's own address
        assert_eq!(
            forwarded_client(ip("10.0.0.2"), &trusted, std::iter::empty()),
            ip("10.0.0.2")
        );
        assert_eq!(
            forwarded_client(ip("10.0.0.2"), &trusted, ["unknown"].into_iter()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn an_address_holds_at_most_its_share_and_gets_places_back() {
        let table = Arc::new(PerAddress::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = table.take(a, 2).unwrap();
        let _second = table.take(a, 2).unwrap();
        assert!(table.take(a, 2).is_none(), "a third from one address");
        assert!(
            table.take(b, 2).is_some(),
            "another address is not affected"
        );
        drop(first);
        assert!(
            table.take(a, 2).is_some(),
            "a place given back is free again"
        );
    }
}
