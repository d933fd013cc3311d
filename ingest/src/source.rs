//! Where a request comes from, and whether that address may send reports at all.
//!
//! The client's address is the direct peer's, unless that peer is one of the configured
//! trusted proxies (`DLR_TRUSTED_PROXIES`): then `X-Forwarded-For` is read from the right,
//! skipping every hop that is itself a trusted proxy, and the first other address is the
//! client. Entries to the left of it were written by the client and are never believed.
//! An entry that is not an address ends the walk with the address unknown, and an unknown
//! address is refused whenever an allow-list (`DLR_ALLOW_CIDRS`) is configured.

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// The header a proxy appends the address it received a request from to.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// Which addresses may send reports and which peers may speak for others.
#[derive(Clone, Debug, Default)]
pub struct SourcePolicy {
    /// Networks a client must be in; empty means every address is allowed.
    pub allow: Vec<IpNet>,
    /// Peers whose `X-Forwarded-For` is believed; empty means it is never read.
    pub trusted_proxies: Vec<IpNet>,
}

impl SourcePolicy {
    /// The client's address, or `None` when it cannot be known.
    pub fn client_address(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let mut client = peer.map(|ip| ip.to_canonical())?;
        if !self.is_trusted_proxy(client) {
            return Some(client);
        }

        let hops: Vec<&str> = headers
            .get_all(FORWARDED_FOR)
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        for hop in hops.iter().rev() {
            let Ok(address) = hop.trim().parse::<IpAddr>() else {
                return None;
            };
            client = address.to_canonical();
            if !self.is_trusted_proxy(client) {
                break;
            }
        }
        Some(client)
    }

    /// Whether a client at `address` may send reports.
    pub fn allows(&self, address: Option<IpAddr>) -> bool {
        if self.allow.is_empty() {
            return true;
        }
        address.is_some_and(|ip| self.allow.iter().any(|net| net.contains(&ip)))
    }

    fn is_trusted_proxy(&self, address: IpAddr) -> bool {
        self.trusted_proxies
            .iter()
            .any(|net| net.contains(&address))
    }
}

/// Parses a comma-separated list of networks in CIDR form; a bare address stands for
/// itself alone. Returns the first entry that is neither.
pub fn parse_networks(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| format!("`{entry}` is not an address or a network in CIDR form"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn policy(allow: &str, trusted: &str) -> SourcePolicy {
        SourcePolicy {
            allow: parse_networks(allow).unwrap(),
            trusted_proxies: parse_networks(trusted).unwrap(),
        }
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                HeaderName::from_static(FORWARDED_FOR),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let policy = policy("", "10.0.0.0/8");
        let headers = forwarded(&["203.0.113.9"]);

        assert_eq!(
            policy.client_address(ip("192.0.2.1"), &headers),
            ip("192.0.2.1")
        );
        assert_eq!(
            policy.client_address(ip("10.1.1.1"), &headers),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_hops_are_skipped_from_the_right_and_client_entries_are_not_believed() {
        let policy = policy("", "10.0.0.0/8, 172.16.0.1");
        let headers = forwarded(&["198.51.100.1, 203.0.113.9", "172.16.0.1"]);

        let client = policy.client_address(ip("10.0.0.2"), &headers);

        assert_eq!(client, ip("203.0.113.9"));
    }

    #[test]
    fn a_garbled_hop_makes_the_address_unknown_and_refused_by_an_allow_list() {
        let policy = policy("203.0.113.0/24", "10.0.0.0/8");
        let headers = forwarded(&["203.0.113.9, not-an-ip"]);

        let client = policy.client_address(ip("10.0.0.2"), &headers);

        assert_eq!(client, None);
        assert!(!policy.allows(client));
        assert!(policy.allows(ip("203.0.113.200")));
        assert!(!policy.allows(ip("203.0.114.1")));
    }

    #[test]
    fn ipv4_mapped_ipv6_peers_match_ipv4_networks() {
        let policy = policy("127.0.0.0/8", "");

        let client = policy.client_address(ip("::ffff:127.0.0.1"), &HeaderMap::new());

        assert_eq!(client, ip("127.0.0.1"));
        assert!(policy.allows(client));
    }

    #[test]
    fn network_lists_accept_bare_addresses_and_name_a_bad_entry() {
        let nets = parse_networks(" 10.0.0.0/8 ,2001:db8::/32, 192.0.2.7 ,").unwrap();

        assert_eq!(nets.len(), 3);
        assert_eq!(nets[2].to_string(), "192.0.2.7/32");
        let err = parse_networks("10.0.0.0/8, 10.0.0.0/33").unwrap_err();
        assert!(err.contains("10.0.0.0/33"), "{err}");
    }
}
