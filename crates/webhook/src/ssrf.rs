//! The SSRF guard: which addresses a webhook may reach. The client resolves the host itself, checks every
//! address with [`check`], and connects to the address it checked (no second resolution, so DNS rebinding
//! cannot swap it).
//!
//! Refused unless the connector allows private targets: loopback, private (RFC 1918, IPv6 unique local),
//! link-local (169.254.0.0/16 with the instance metadata service, fe80::/10), unspecified, shared address
//! space (100.64.0.0/10), multicast, broadcast and reserved ranges, and the same IPv4 addresses written as
//! IPv6 (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not a public target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7.
    Private,
    /// 169.254.0.0/16 (the instance metadata service), fe80::/10.
    LinkLocal,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// 100.64.0.0/10 (carrier-grade NAT).
    Shared,
    /// 224.0.0.0/4, ff00::/8.
    Multicast,
    /// 240.0.0.0/4 with the broadcast address, and other ranges reserved for special use.
    Reserved,
}

impl Forbidden {
    /// A short name for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link-local (the instance metadata service lives there)",
            Self::Unspecified => "unspecified",
            Self::Shared => "shared (carrier-grade NAT)",
            Self::Multicast => "multicast",
            Self::Reserved => "reserved",
        }
    }
}

impl std::fmt::Display for Forbidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why `ip` is not a public address, or `None` for a public one.
pub fn classify(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// `Ok` when `ip` may be reached: public, or any address when `allow_private`.
pub fn check(ip: IpAddr, allow_private: bool) -> Result<(), Forbidden> {
    match classify(ip) {
        Some(reason) if !allow_private => Err(reason),
        _ => Ok(()),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Forbidden> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b) {
        (0, _) => Forbidden::Unspecified,
        (127, _) => Forbidden::Loopback,
        (10, _) | (192, 168) => Forbidden::Private,
        (172, b) if (16..32).contains(&b) => Forbidden::Private,
        (169, 254) => Forbidden::LinkLocal,
        (100, b) if (64..128).contains(&b) => Forbidden::Shared,
        (224..=239, _) => Forbidden::Multicast,
        (240..=255, _) => Forbidden::Reserved,
        // IETF protocol assignments (192.0.0.0/24), benchmarking (198.18.0.0/15), documentation ranges.
        (192, 0) if c == 0 || c == 2 => Forbidden::Reserved,
        (198, 18 | 19) => Forbidden::Reserved,
        (198, 51) if c == 100 => Forbidden::Reserved,
        (203, 0) if c == 113 => Forbidden::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<Forbidden> {
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let seg = ip.segments();
    if ip.is_unspecified() {
        Some(Forbidden::Unspecified)
    } else if ip.is_loopback() {
        Some(Forbidden::Loopback)
    } else if seg[0] & 0xffc0 == 0xfe80 {
        Some(Forbidden::LinkLocal)
    } else if seg[0] & 0xfe00 == 0xfc00 {
        Some(Forbidden::Private)
    } else if seg[0] & 0xff00 == 0xff00 {
        Some(Forbidden::Multicast)
    } else if seg[0] & 0xffc0 == 0xfec0
        || (seg[0] == 0x2001 && seg[1] == 0x0db8)
        || seg[0] == 0x0100
    {
        // Deprecated site-local, documentation, discard-only.
        Some(Forbidden::Reserved)
    } else {
        None
    }
}

/// The IPv4 address an IPv6 address stands for: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`, not `::` or `::1`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:aabb:ccdd::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = ip.segments();
    let low =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    match seg {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(low(hi, lo)),
        [0, 0, 0, 0, 0, 0, hi, lo] if (hi, lo) != (0, 0) && (hi, lo) != (0, 1) => Some(low(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_metadata_service_and_link_local_are_refused() {
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "169.254.255.255",
            "fe80::1",
            "febf::1",
        ] {
            assert_eq!(classify(v(ip)), Some(Forbidden::LinkLocal), "{ip}");
        }
        // The IPv6 metadata endpoint of EC2 (fd00:ec2::254) is unique local.
        assert_eq!(classify(v("fd00:ec2::254")), Some(Forbidden::Private));
    }

    #[test]
    fn loopback_private_and_unspecified_are_refused() {
        let cases = [
            ("127.0.0.1", Forbidden::Loopback),
            ("127.255.255.254", Forbidden::Loopback),
            ("::1", Forbidden::Loopback),
            ("10.0.0.1", Forbidden::Private),
            ("10.255.255.255", Forbidden::Private),
            ("172.16.0.1", Forbidden::Private),
            ("172.31.255.255", Forbidden::Private),
            ("192.168.1.1", Forbidden::Private),
            ("fc00::1", Forbidden::Private),
            ("fdff:ffff::1", Forbidden::Private),
            ("0.0.0.0", Forbidden::Unspecified),
            ("0.1.2.3", Forbidden::Unspecified),
            ("::", Forbidden::Unspecified),
            ("100.64.0.1", Forbidden::Shared),
            ("100.127.255.255", Forbidden::Shared),
            ("224.0.0.1", Forbidden::Multicast),
            ("ff02::1", Forbidden::Multicast),
            ("255.255.255.255", Forbidden::Reserved),
            ("240.0.0.1", Forbidden::Reserved),
            ("192.0.0.8", Forbidden::Reserved),
            ("198.18.0.1", Forbidden::Reserved),
            ("2001:db8::1", Forbidden::Reserved),
        ];
        for (ip, want) in cases {
            assert_eq!(classify(v(ip)), Some(want), "{ip}");
        }
    }

    #[test]
    fn range_edges_just_outside_are_public() {
        for ip in [
            "172.15.255.255",
            "172.32.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "11.0.0.0",
            "9.255.255.255",
            "126.255.255.255",
            "128.0.0.0",
            "223.255.255.255",
            "1.1.1.1",
            "8.8.8.8",
            "52.94.76.1",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "fe7f::1",
            "fbff::1",
        ] {
            assert_eq!(classify(v(ip)), None, "{ip}");
        }
    }

    #[test]
    fn ipv4_written_as_ipv6_is_classified_as_its_ipv4() {
        let cases = [
            ("::ffff:169.254.169.254", Some(Forbidden::LinkLocal)),
            ("::ffff:127.0.0.1", Some(Forbidden::Loopback)),
            ("::ffff:10.1.2.3", Some(Forbidden::Private)),
            ("::ffff:0.0.0.0", Some(Forbidden::Unspecified)),
            ("::ffff:7f00:1", Some(Forbidden::Loopback)),
            ("::127.0.0.1", Some(Forbidden::Loopback)),
            ("::169.254.169.254", Some(Forbidden::LinkLocal)),
            ("64:ff9b::a9fe:a9fe", Some(Forbidden::LinkLocal)),
            ("64:ff9b::192.168.0.1", Some(Forbidden::Private)),
            ("2002:a9fe:a9fe::1", Some(Forbidden::LinkLocal)),
            ("2002:7f00:1::", Some(Forbidden::Loopback)),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::808:808", None),
            ("2002:808:808::1", None),
        ];
        for (ip, want) in cases {
            assert_eq!(classify(v(ip)), want, "{ip}");
        }
    }

    #[test]
    fn allow_private_lets_every_address_through() {
        for ip in ["127.0.0.1", "169.254.169.254", "::1", "10.0.0.1", "8.8.8.8"] {
            assert_eq!(check(v(ip), true), Ok(()), "{ip}");
        }
        assert_eq!(check(v("127.0.0.1"), false), Err(Forbidden::Loopback));
        assert_eq!(check(v("8.8.8.8"), false), Ok(()));
    }
}
