//! The golden XDP frames (`testdata/xdp/frames.txt`, built with scapy, independently of our
//! own frame writer) through user-space `frame::parse`: the fields of every frame it must
//! accept, the reason for every frame it must reject, and agreement with the XDP program's
//! verdict where the two are meant to agree. No privileges needed; `xdp_golden.rs` runs the
//! same frames through the XDP program.
mod common;

use common::fixtures::{self, Action, Fixture, ParseExpect};
use dispatcher_common::Counter;
use xdp_io::frame::{parse, FrameError};

/// Whether `parse` gave what the fixture expects; `Err` says how not.
fn check(f: &Fixture) -> Result<(), String> {
    let got = parse(&f.frame);
    match (&f.parse, got) {
        (ParseExpect::Ok(want), Ok(p)) => {
            let offset = p.payload.as_ptr() as usize - f.frame.as_ptr() as usize;
            let have = (p.src, p.dst, p.vlan, p.ttl, offset, p.payload.len());
            let want_t = (
                want.src,
                want.dst,
                want.vlan,
                want.ttl,
                want.payload_offset,
                want.payload_len,
            );
            if have != want_t {
                return Err(format!(
                    "(src, dst, vlan, ttl, payload offset, payload len) = {have:?}, want {want_t:?}"
                ));
            }
            if p.dst_mac[..] != f.frame[0..6] || p.src_mac[..] != f.frame[6..12] {
                return Err(format!("MACs {:?} / {:?}", p.dst_mac, p.src_mac));
            }
            Ok(())
        }
        (ParseExpect::Malformed, Err(FrameError::Truncated(_) | FrameError::Malformed(_))) => {
            Ok(())
        }
        (ParseExpect::NotIp(t), Err(FrameError::NotIp(g))) if *t == g => Ok(()),
        (ParseExpect::NotUdp(t), Err(FrameError::NotUdp(g))) if *t == g => Ok(()),
        (ParseExpect::Fragment, Err(FrameError::Fragment)) => Ok(()),
        (want, got) => Err(format!("parse gave {got:?}, want {want:?}")),
    }
}

#[test]
fn fixtures_through_frame_parse() {
    let all = fixtures::load();
    fixtures::assert_original_cases_covered(&all);
    let failures: Vec<String> = all
        .iter()
        .filter_map(|f| check(f).err().map(|e| format!("{}: {e}", f.name)))
        .collect();
    assert!(
        failures.is_empty(),
        "frame::parse disagrees with the fixtures:\n{}",
        failures.join("\n")
    );
}

/// The XDP program and `frame::parse` walk the same headers: what one calls malformed the
/// other must reject as truncated or malformed, everything redirected must parse, and what is
/// passed as not ours either parses (another port) or is rejected as not IP, not UDP or a
/// fragment. Checked on the fixtures' expectations, which both sides are tested against.
#[test]
fn xdp_verdict_and_parse_agree() {
    let mut bad = Vec::new();
    for f in fixtures::load() {
        let agree = match (f.action, f.counter, &f.parse) {
            (Action::Pass, Counter::Malformed, p) => *p == ParseExpect::Malformed,
            (_, Counter::Malformed, _) => false, // the program passes what it counts malformed
            (Action::Redirect, Counter::Redirected, p) => matches!(p, ParseExpect::Ok(_)),
            (Action::Pass, Counter::Passed, p) => !matches!(p, ParseExpect::Malformed),
            (Action::Pass, Counter::NoSocket, p) => matches!(p, ParseExpect::Ok(_)),
            // The source guard only judges well-formed well-known-port datagrams.
            (Action::Drop, Counter::DroppedNotAllowed | Counter::DroppedRate, p) => {
                matches!(p, ParseExpect::Ok(_))
            }
            _ => false,
        };
        if !agree {
            bad.push(format!(
                "{}: xdp {:?}/{:?} vs parse {:?}",
                f.name, f.action, f.counter, f.parse
            ));
        }
    }
    assert!(bad.is_empty(), "inconsistent fixtures:\n{}", bad.join("\n"));
}

/// Every prefix of an accepted frame that ends before its payload does is rejected as
/// truncated or malformed (never accepted with a shorter payload, never "not ours").
#[test]
fn truncations_of_accepted_frames_are_rejected() {
    for f in fixtures::load() {
        let ParseExpect::Ok(p) = &f.parse else {
            continue;
        };
        for cut in 0..p.payload_offset + p.payload_len {
            match parse(&f.frame[..cut]) {
                Err(FrameError::Truncated(_) | FrameError::Malformed(_)) => {}
                other => panic!("{} cut at {cut}: {other:?}", f.name),
            }
        }
    }
}

#[test]
fn fixture_format_errors_are_reported() {
    let good = "name: a\nxdp: PASS passed\nparse: not-ip 0x0806\nframe: 00\n";
    assert_eq!(fixtures::parse_fixtures(good).unwrap().len(), 1);
    let guarded = "name: a\nxdp: DROP dropped_rate\nparse: fragment\nconfig: allow=10.0.0.0/8,::1 rate=5/7 exempt=10.1.0.0/16\nprime: 7\nrepeat: 2\nframe: 00\n";
    let f = &fixtures::parse_fixtures(guarded).unwrap()[0];
    assert_eq!(f.config.allow, ["10.0.0.0/8", "::1"]);
    assert_eq!(f.config.rate, Some((5, 7)));
    assert_eq!(f.config.exempt, ["10.1.0.0/16"]);
    assert_eq!((f.prime, f.repeat, f.counter), (7, 2, Counter::DroppedRate));
    for bad in [
        "name: a\nxdp: PASS passed\nparse: fragment\n",
        "name: a\nxdp: PASS lost\nparse: fragment\nframe: 00\n",
        "name: a\nxdp: TX passed\nparse: fragment\nframe: 00\n",
        "name: a\nxdp: PASS passed\nparse: fragment\nframe: 0\n",
        "name: a\nxdp: PASS passed\nparse: fragment\nttl: 1\nframe: 00\n",
        "name: a\nxdp: PASS passed\nparse: ok\nframe: 00\n",
        "name: a\nxdp: PASS passed\nparse: fragment\nframe: 00\n\nname: a\nxdp: PASS passed\nparse: fragment\nframe: 00\n",
        "name: a\nxdp: PASS passed\nparse: fragment\nconfig: rate=1\nframe: 00\n",
        "name: a\nxdp: PASS passed\nparse: fragment\nconfig: deny=1.2.3.4\nframe: 00\n",
        "name: a\nxdp: PASS passed\nparse: fragment\nrepeat: 0\nframe: 00\n",
        "name: a\nxdp: PASS passed\nparse: fragment\nprime: x\nframe: 00\n",
    ] {
        assert!(fixtures::parse_fixtures(bad).is_err(), "accepted {bad:?}");
    }
}
