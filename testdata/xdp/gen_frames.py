#!/usr/bin/python3
"""Golden Ethernet frames for Switchyard's XDP program and user-space frame parser.

Regenerate (Debian: apt-get install -y python3-scapy; use the system python, which has scapy):

    /usr/bin/python3 testdata/xdp/gen_frames.py > testdata/xdp/frames.txt

The frames are built with scapy, independently of the Rust code under test
(dispatcher-user/src/frame.rs, dispatcher-ebpf/src/main.rs): expectations come from the
protocol specifications (RFC 791, RFC 8200, RFC 768, IEEE 802.1Q/802.1ad) and the program's
documented contract, never from running our own code. The output is deterministic.

Read by xdp-io/tests/xdp_golden.rs (BPF_PROG_TEST_RUN) and
xdp-io/tests/frame_fixtures.rs (frame::parse) through
xdp-io/tests/common/fixtures.rs.

Environment the XDP expectations assume: UDP ports 5060 (SIP) and 2427 (MGCP) in the
well-known-ports map, an AF_XDP socket in the XSKMAP at queue 0 (BPF_PROG_TEST_RUN's queue),
and the source guard as the case's `config` says (default `open`), with every source's token
bucket fresh (full) when the case starts.

Source-guard rules the expectations follow (documented in dispatcher-common): the guard only
looks at well-known-port UDP that is not malformed; with any allow prefix configured, only
listed sources pass, for both families (a v4-only list denies every IPv6 source); the rate
limit applies after the allow-list, to sources not exempt; a source's first datagram finds a
full bucket of `burst` tokens, each datagram takes one.

Output format: blocks separated by blank lines, `#` lines are comments, one `key: value` per
line:

    name:    unique case name
    xdp:     VERDICT COUNTER   XDP action (REDIRECT, PASS, DROP, ABORTED) and the one counter
                               that increments (redirected, passed, malformed, no_socket)
    parse:   ok | malformed | not-ip 0xNNNN | not-udp N | fragment
                               what frame::parse must return (`malformed` = any header that is
                               truncated or inconsistent)
    src:     ip:port           (parse: ok only) datagram source, IPv6 as [addr]:port
    dst:     ip:port           (parse: ok only) datagram destination
    vlan:    none | N          (parse: ok only) 802.1Q/802.1ad TCI as received (decimal)
    ttl:     N                 (parse: ok only) IPv4 TTL / IPv6 hop limit
    payload: OFFSET LENGTH     (parse: ok only) UDP payload position in the frame, length as
                               the UDP length field gives it (Ethernet padding excluded)
    frame:   hex               the whole frame, as XDP sees it
    config:  open | ITEM...    (optional, default open) source-guard maps the case runs under,
                               space-separated: allow=CIDR[,CIDR...] (allow-list),
                               rate=RATE/BURST (datagrams/s, bucket), exempt=CIDR[,CIDR...]
    prime:   N                 (optional, default 0) the frame is first run N times, each of
                               which must be REDIRECT redirected (uses up N tokens)
    repeat:  N                 (optional, default 1) then it is run N times, each of which must
                               give `xdp`
"""

import sys

from scapy.all import (  # type: ignore
    ARP,
    ICMP,
    IP,
    TCP,
    UDP,
    Dot1AD,
    Dot1Q,
    Ether,
    IPOption_NOP,
    IPOption_Router_Alert,
    IPv6,
    IPv6ExtHdrHopByHop,
    Padding,
    Raw,
    raw,
)

MAC_DISP = "02:00:00:00:00:01"
MAC_APP = "02:00:00:00:00:02"
V4_APP, V4_DISP = "198.18.0.2", "198.18.0.1"
V6_APP, V6_DISP = "2001:db8:5e::2", "2001:db8:5e::1"
SIP = b"INVITE sip:b@example.com SIP/2.0\r\n\r\n"
MGCP = b"CRCX 1001 ds/ds1-1/1@gw.example.net MGCP 1.0\r\nC: A3C47F21456789F0\r\n\r\n"

CASES = []


def eth(*tags, **ether):
    """Ethernet header, app -> dispatcher, with the given VLAN tag layers."""
    frame = Ether(src=MAC_APP, dst=MAC_DISP, **ether)
    for t in tags:
        frame = frame / t
    return frame


def v4(dport=5060, sport=40000, payload=SIP, **ip):
    return IP(src=V4_APP, dst=V4_DISP, **ip) / UDP(sport=sport, dport=dport) / Raw(payload)


def v6(dport=5060, sport=40000, payload=SIP, **ip):
    return IPv6(src=V6_APP, dst=V6_DISP, **ip) / UDP(sport=sport, dport=dport) / Raw(payload)


def case(name, frame, xdp, parse, *, note=None, src=None, dst=None, vlan=None, ttl=None,
         payload=None, cut=None, config=None, prime=0, repeat=1):
    """One fixture. `frame` is a scapy packet or bytes; `cut` truncates it to that many bytes.

    For parse == "ok", `payload` is (offset, length) computed from the scapy layers, not from
    any assumption about our parser.
    """
    data = raw(frame) if not isinstance(frame, bytes) else frame
    if cut is not None:
        assert cut < len(data), name
        data = data[:cut]
    assert len(data) >= 14, f"{name}: BPF_PROG_TEST_RUN needs at least an Ethernet header"
    CASES.append(dict(name=name, xdp=xdp, parse=parse, note=note, src=src, dst=dst,
                      vlan=vlan, ttl=ttl, payload=payload, frame=data, config=config,
                      prime=prime, repeat=repeat))


def udp_payload(pkt):
    """(offset, length) of the UDP payload in `pkt`, from its UDP layer's length field."""
    data = raw(pkt)
    udp = pkt[UDP]
    udp_off = len(data) - len(raw(udp))
    # raw(udp) includes any Padding layer after it; the length field is what counts.
    length = UDP(raw(udp)).len - 8
    return (udp_off + 8, length)


def ok(name, pkt, xdp, *, src, dst, vlan=None, ttl=64, note=None, config=None, prime=0,
       repeat=1):
    case(name, pkt, xdp, "ok", src=src, dst=dst, vlan=vlan, ttl=ttl,
         payload=udp_payload(pkt), note=note, config=config, prime=prime, repeat=repeat)


A4 = f"{V4_APP}:40000"
D4 = f"{V4_DISP}:5060"
A6 = f"[{V6_APP}]:40000"
D6 = f"[{V6_DISP}]:5060"
REDIRECT = "REDIRECT redirected"
PASS = "PASS passed"
MALFORMED = "PASS malformed"

# --- steered to AF_XDP -------------------------------------------------------------------
ok("ipv4 udp 5060", eth() / v4(), REDIRECT, src=A4, dst=D4)
ok("ipv4 udp 2427", eth() / v4(2427, 2727, MGCP), REDIRECT,
   src=f"{V4_APP}:2727", dst=f"{V4_DISP}:2427")
ok("ipv6 udp 5060", eth() / v6(), REDIRECT, src=A6, dst=D6)
ok("ipv6 udp 2427", eth() / v6(2427, 2727, MGCP, hlim=255), REDIRECT,
   src=f"[{V6_APP}]:2727", dst=f"[{V6_DISP}]:2427", ttl=255)
ok("vlan ipv4 udp 5060", eth(Dot1Q(vlan=100)) / v4(), REDIRECT, src=A4, dst=D4, vlan=100)
ok("vlan ipv6 udp 2427", eth(Dot1Q(vlan=7)) / v6(2427, 2727), REDIRECT,
   src=f"[{V6_APP}]:2727", dst=f"[{V6_DISP}]:2427", vlan=7)
ok("vlan with priority and dei ipv4 udp 5060", eth(Dot1Q(prio=5, id=1, vlan=4000)) / v4(),
   REDIRECT, src=A4, dst=D4, vlan=(5 << 13) | (1 << 12) | 4000,
   note="the TCI is kept whole (PCP, DEI, VID)")
ok("802.1ad single tag ipv4 udp 5060", eth(Dot1AD(vlan=200)) / v4(), REDIRECT,
   src=A4, dst=D4, vlan=200, note="S-tag (0x88a8) counts as the one VLAN tag")
ok("ipv4 with options udp 5060",
   eth() / IP(src=V4_APP, dst=V4_DISP, options=[IPOption_Router_Alert(), IPOption_NOP(),
                                                IPOption_NOP(), IPOption_NOP(), IPOption_NOP()])
   / UDP(sport=40000, dport=5060) / Raw(SIP),
   REDIRECT, src=A4, dst=D4, note="IHL 7: the UDP header starts after 28 bytes of IPv4")
ok("ipv4 df set udp 5060", eth() / v4(flags="DF", ttl=1), REDIRECT, src=A4, dst=D4, ttl=1,
   note="DF is not a fragment")
ok("ipv4 udp 5060 empty payload", eth() / v4(payload=b""), REDIRECT, src=A4, dst=D4,
   note="UDP length 8, a 42-byte frame (no Ethernet padding)")
ok("ipv4 udp 5060 with ethernet padding", eth() / v4(payload=b"OPTIONS") / Padding(b"\0" * 11),
   REDIRECT, src=A4, dst=D4, note="the payload ends where the UDP length says, not at the frame end")

# --- passed to the kernel: not for a well-known port, or not ours to handle --------------
ok("ipv4 udp 5099 (processor port)", eth() / v4(5099), PASS, src=A4, dst=f"{V4_DISP}:5099")
ok("ipv4 udp 22", eth() / v4(22), PASS, src=A4, dst=f"{V4_DISP}:22")
ok("ipv6 udp 5070", eth() / v6(5070), PASS, src=A6, dst=f"[{V6_DISP}]:5070")
ok("ipv4 udp source port 5060 to 40000", eth() / v4(40000, 5060), PASS,
   src=f"{V4_APP}:5060", dst=f"{V4_DISP}:40000", note="only the destination port steers")
case("ipv4 tcp 5060", eth() / IP(src=V4_APP, dst=V4_DISP) / TCP(sport=40000, dport=5060),
     PASS, "not-udp 6")
case("ipv4 icmp", eth() / IP(src=V4_APP, dst=V4_DISP) / ICMP(), PASS, "not-udp 1")
case("arp", eth() / ARP(hwsrc=MAC_APP, psrc=V4_APP, pdst=V4_DISP), PASS, "not-ip 0x0806")
case("vlan arp", eth(Dot1Q(vlan=100)) / ARP(hwsrc=MAC_APP, psrc=V4_APP, pdst=V4_DISP), PASS,
     "not-ip 0x0806")
case("qinq ipv4 udp 5060", eth(Dot1AD(vlan=200), Dot1Q(vlan=100)) / v4(), PASS,
     "not-ip 0x8100", note="only one VLAN tag is walked; a second tag is left to the kernel")
case("ipv4 first fragment to 5060", eth() / v4(flags="MF"), PASS, "fragment")
case("ipv4 later fragment",
     eth() / IP(src=V4_APP, dst=V4_DISP, proto=17, frag=16) / Raw(SIP), PASS, "fragment",
     note="offset 16*8, no UDP header")
case("ipv4 last fragment with df clear and offset",
     eth() / IP(src=V4_APP, dst=V4_DISP, flags=0, frag=1) / UDP(sport=40000, dport=5060)
     / Raw(SIP), PASS, "fragment", note="bytes at the UDP position are not a UDP header")
case("ipv6 with extension header",
     eth() / IPv6(src=V6_APP, dst=V6_DISP) / IPv6ExtHdrHopByHop() / UDP(sport=40000, dport=5060)
     / Raw(SIP), PASS, "not-udp 0")

# --- malformed: counted, then passed -------------------------------------------------------
full4 = raw(eth() / v4())
case("ethernet header only", full4, MALFORMED, "malformed", cut=14)
case("truncated ipv4 header", full4, MALFORMED, "malformed", cut=14 + 12)
case("ipv4 header without udp", full4, MALFORMED, "malformed", cut=14 + 20)
case("truncated udp header", full4, MALFORMED, "malformed", cut=14 + 20 + 4)
case("ipv4 ihl < 5", eth() / v4(ihl=3), MALFORMED, "malformed")
case("ipv4 ethertype with version 5", eth() / v4(version=5), MALFORMED, "malformed")
case("ipv4 ethertype with version 6",
     eth(type=0x0800) / v6(), MALFORMED, "malformed",
     note="an IPv6 packet behind the IPv4 ethertype")
case("ipv4 ihl beyond frame",
     eth() / v4(ihl=15, payload=b"x"), MALFORMED, "malformed",
     note="IHL 15 = 60 header bytes, more than the frame holds after the IPv4 start")
case("udp length beyond frame", eth() / IP(src=V4_APP, dst=V4_DISP)
     / UDP(sport=40000, dport=5060, len=8 + len(SIP) + 100) / Raw(SIP), MALFORMED, "malformed")
case("udp length one beyond frame", eth() / IP(src=V4_APP, dst=V4_DISP)
     / UDP(sport=40000, dport=5060, len=8 + len(SIP) + 1) / Raw(SIP), MALFORMED, "malformed")
case("udp length < 8", eth() / IP(src=V4_APP, dst=V4_DISP)
     / UDP(sport=40000, dport=5060, len=4) / Raw(SIP), MALFORMED, "malformed")
case("ipv6 udp length beyond frame", eth() / IPv6(src=V6_APP, dst=V6_DISP)
     / UDP(sport=40000, dport=5060, len=8 + len(SIP) + 1) / Raw(SIP), MALFORMED, "malformed")
case("vlan tag truncated", eth(Dot1Q(vlan=100)) / v4(), MALFORMED, "malformed", cut=16)
full6 = raw(eth() / v6())
case("truncated ipv6 header", full6, MALFORMED, "malformed", cut=14 + 30)
case("truncated ipv6 udp header", full6, MALFORMED, "malformed", cut=14 + 40 + 6)
case("ipv6 ethertype with version 4", eth(type=0x86DD) / v4() / Raw(b"\0" * 20), MALFORMED,
     "malformed", note="an IPv4 packet (padded past 40 bytes) behind the IPv6 ethertype")
case("ipv4 total length beyond frame",
     eth() / IP(src=V4_APP, dst=V4_DISP, len=20 + 8 + len(SIP) + 10)
     / UDP(sport=40000, dport=5060) / Raw(SIP), MALFORMED, "malformed",
     note="the IPv4 header claims 10 bytes more than the frame holds (RFC 791 total length)")
case("udp length beyond ipv4 total length",
     eth() / IP(src=V4_APP, dst=V4_DISP, len=20 + 8 + 10)
     / UDP(sport=40000, dport=5060) / Raw(SIP), MALFORMED, "malformed",
     note="the datagram ends 10 bytes into the payload; the rest of the frame is not part of it")
case("udp length into ethernet padding",
     eth() / IP(src=V4_APP, dst=V4_DISP) / UDP(sport=40000, dport=5060, len=8 + 7 + 4)
     / Raw(b"OPTIONS") / Padding(b"\0" * 11), MALFORMED, "malformed",
     note="UDP length reaches 4 bytes past the IPv4 datagram, into the frame's padding")
case("ipv4 total length shorter than its header",
     eth() / IP(src=V4_APP, dst=V4_DISP, len=19) / UDP(sport=40000, dport=5060) / Raw(SIP),
     MALFORMED, "malformed")
case("ipv6 payload length beyond frame",
     eth() / IPv6(src=V6_APP, dst=V6_DISP, plen=8 + len(SIP) + 10)
     / UDP(sport=40000, dport=5060) / Raw(SIP), MALFORMED, "malformed",
     note="RFC 8200 payload length 10 bytes more than the frame holds")
case("udp length beyond ipv6 payload length",
     eth() / IPv6(src=V6_APP, dst=V6_DISP, plen=8 + 10)
     / UDP(sport=40000, dport=5060) / Raw(SIP), MALFORMED, "malformed")
case("vlan truncated ipv4 header", eth(Dot1Q(vlan=100)) / v4(), MALFORMED, "malformed",
     cut=18 + 19)

# --- source guard: allow-list ------------------------------------------------------------
V4_OTHER, V6_OTHER = "198.18.0.3", "2001:db8:5e::3"
V4_FAR = "203.0.113.7"
DROP_NA = "DROP dropped_not_allowed"
DROP_RATE = "DROP dropped_rate"


def v4_from(src, dport=5060, sport=40000, payload=SIP):
    return IP(src=src, dst=V4_DISP) / UDP(sport=sport, dport=dport) / Raw(payload)


def v6_from(src, dport=5060, sport=40000, payload=SIP):
    return IPv6(src=src, dst=V6_DISP) / UDP(sport=sport, dport=dport) / Raw(payload)


ALLOW2 = "allow=198.18.0.2/32"
ok("guard allow ipv4 listed source", eth() / v4(), REDIRECT, src=A4, dst=D4, config=ALLOW2)
ok("guard allow ipv4 unlisted source", eth() / v4_from(V4_OTHER), DROP_NA,
   src=f"{V4_OTHER}:40000", dst=D4, config=ALLOW2,
   note="dropped by policy, still a well-formed frame for frame::parse")
ok("guard allow ipv4 prefix covers source", eth() / v4_from("198.19.1.1"), REDIRECT,
   src="198.19.1.1:40000", dst=D4, config="allow=198.18.0.0/15")
ok("guard allow ipv4 source outside prefix", eth() / v4_from(V4_FAR, 2427, 2727, MGCP),
   DROP_NA, src=f"{V4_FAR}:2727", dst=f"{V4_DISP}:2427", config="allow=198.18.0.0/15")
ok("guard allow list of ipv4 only denies ipv6", eth() / v6(), DROP_NA, src=A6, dst=D6,
   config=ALLOW2, note="any prefix configured: only listed sources pass, for both families")
ok("guard allow ipv6 listed prefix", eth() / v6(), REDIRECT, src=A6, dst=D6,
   config="allow=2001:db8:5e::/64")
ok("guard allow ipv6 unlisted source", eth() / v6_from(V6_OTHER), DROP_NA,
   src=f"[{V6_OTHER}]:40000", dst=D6, config="allow=2001:db8:5e::2/128")
ok("guard allow list of ipv6 only denies ipv4", eth() / v4(), DROP_NA, src=A4, dst=D4,
   config="allow=2001:db8:5e::/64")
ok("guard allow both families ipv6", eth() / v6(), REDIRECT, src=A6, dst=D6,
   config="allow=198.18.0.2/32,2001:db8:5e::/64")
ok("guard allow both families ipv4", eth() / v4(), REDIRECT, src=A4, dst=D4,
   config="allow=198.18.0.2/32,2001:db8:5e::/64")
ok("guard vlan allow ipv4 unlisted source", eth(Dot1Q(vlan=100)) / v4_from(V4_OTHER), DROP_NA,
   src=f"{V4_OTHER}:40000", dst=D4, vlan=100, config=ALLOW2)
ok("guard vlan allow ipv6 listed source", eth(Dot1Q(vlan=7)) / v6(2427, 2727), REDIRECT,
   src=f"[{V6_APP}]:2727", dst=f"[{V6_DISP}]:2427", vlan=7, config="allow=2001:db8:5e::2/128")
ok("guard 802.1ad allow ipv4 unlisted source", eth(Dot1AD(vlan=200)) / v4_from(V4_FAR),
   DROP_NA, src=f"{V4_FAR}:40000", dst=D4, vlan=200, config=ALLOW2)
ok("guard allow list leaves processor ports alone", eth() / v4_from(V4_OTHER, 5099), PASS,
   src=f"{V4_OTHER}:40000", dst=f"{V4_DISP}:5099", config=ALLOW2)
case("guard allow list leaves tcp alone",
     eth() / IP(src=V4_OTHER, dst=V4_DISP) / TCP(sport=40000, dport=5060), PASS, "not-udp 6",
     config=ALLOW2)
case("guard allow list counts malformed as malformed",
     eth() / IP(src=V4_OTHER, dst=V4_DISP) / UDP(sport=40000, dport=5060, len=4) / Raw(SIP),
     MALFORMED, "malformed", config=ALLOW2, note="header checks come before the guard")
case("guard allow list leaves fragments alone",
     eth() / IP(src=V4_OTHER, dst=V4_DISP, flags="MF") / UDP(sport=40000, dport=5060)
     / Raw(SIP), PASS, "fragment", config=ALLOW2)

# --- source guard: per-source rate limit ---------------------------------------------------
ok("guard rate ipv4 within burst", eth() / v4(), REDIRECT, src=A4, dst=D4, config="rate=1/3",
   prime=2, note="third datagram of a burst of 3")
ok("guard rate ipv4 over burst", eth() / v4(), DROP_RATE, src=A4, dst=D4, config="rate=1/3",
   prime=3, note="burst 3: the 4th datagram within the same second is dropped")
ok("guard rate ipv4 stays over", eth() / v4(), DROP_RATE, src=A4, dst=D4, config="rate=1/1",
   prime=1, repeat=5, note="a drop takes no token and gives none back")
ok("guard rate ipv6 over burst", eth() / v6(), DROP_RATE, src=A6, dst=D6, config="rate=1/2",
   prime=2)
ok("guard rate vlan ipv4 over burst", eth(Dot1Q(vlan=100)) / v4(), DROP_RATE, src=A4, dst=D4,
   vlan=100, config="rate=1/1", prime=1)
ok("guard rate vlan ipv6 over burst", eth(Dot1Q(vlan=7)) / v6(2427, 2727), DROP_RATE,
   src=f"[{V6_APP}]:2727", dst=f"[{V6_DISP}]:2427", vlan=7, config="rate=1/2", prime=2)
ok("guard rate ipv4 exempt source", eth() / v4(), REDIRECT, src=A4, dst=D4,
   config="rate=1/1 exempt=198.18.0.2/32", prime=3)
ok("guard rate ipv6 exempt prefix", eth() / v6(), REDIRECT, src=A6, dst=D6,
   config="rate=1/1 exempt=2001:db8::/32", prime=3)
ok("guard rate other source's exemption does not apply", eth() / v4(), DROP_RATE, src=A4,
   dst=D4, config="rate=1/1 exempt=198.18.0.3/32,2001:db8:5e::2/128", prime=1)
ok("guard rate leaves processor ports alone", eth() / v4(5099), PASS, src=A4,
   dst=f"{V4_DISP}:5099", config="rate=1/1", repeat=4)
ok("guard allow and rate: unlisted source counts as not allowed", eth() / v4_from(V4_OTHER),
   DROP_NA, src=f"{V4_OTHER}:40000", dst=D4, config=f"{ALLOW2} rate=1/1", repeat=3,
   note="the allow-list is checked first; a denied source takes no token")
ok("guard allow and rate: listed source over rate", eth() / v4(), DROP_RATE, src=A4, dst=D4,
   config=f"{ALLOW2} rate=1/1", prime=1)


def main(out):
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    out.write("# Generated by testdata/xdp/gen_frames.py; do not edit. Regenerate with\n")
    out.write("#   /usr/bin/python3 testdata/xdp/gen_frames.py > testdata/xdp/frames.txt\n")
    out.write("# Frames built with scapy, independently of the Rust code under test; format and\n")
    out.write("# the XDP environment assumed are described in the script's docstring.\n")
    for c in CASES:
        out.write("\n")
        if c["note"]:
            out.write(f"# {c['note']}\n")
        out.write(f"name: {c['name']}\n")
        out.write(f"xdp: {c['xdp']}\n")
        out.write(f"parse: {c['parse']}\n")
        if c["parse"] == "ok":
            out.write(f"src: {c['src']}\n")
            out.write(f"dst: {c['dst']}\n")
            out.write(f"vlan: {'none' if c['vlan'] is None else c['vlan']}\n")
            out.write(f"ttl: {c['ttl']}\n")
            off, length = c["payload"]
            out.write(f"payload: {off} {length}\n")
        if c["config"]:
            out.write(f"config: {c['config']}\n")
        if c["prime"]:
            out.write(f"prime: {c['prime']}\n")
        if c["repeat"] != 1:
            out.write(f"repeat: {c['repeat']}\n")
        out.write(f"frame: {c['frame'].hex()}\n")


if __name__ == "__main__":
    main(sys.stdout)
