//! Loopback tests of the batches.
use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use super::*;

fn sock(addr: &str) -> UdpSocket {
    bind(addr.parse().unwrap(), 4 << 20).unwrap()
}

/// Receives until `want` datagrams arrived (or 5 s): (source, payload, truncated) each.
fn drain(rx: &UdpSocket, b: &mut RecvBatch, want: usize) -> Vec<(SocketAddr, Vec<u8>, bool)> {
    let mut got = Vec::new();
    let t = Instant::now();
    while got.len() < want && t.elapsed() < Duration::from_secs(5) {
        let n = b.recv(rx).unwrap();
        assert!(n <= b.slots());
        assert_eq!(n, b.len());
        for d in b.iter() {
            got.push((d.src().unwrap(), d.payload().to_vec(), d.truncated()));
        }
        if n == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    got
}

#[test]
fn loopback_more_than_one_batch_keeps_order() {
    let (tx, rx) = (sock("127.0.0.1:0"), sock("127.0.0.1:0"));
    let dst = rx.local_addr().unwrap();
    let mut s = SendBatch::new(8, 64);
    let mut st = FlushStats::default();
    for i in 0..20u32 {
        if s.is_full() {
            assert_eq!(s.len(), 8);
            st += s.flush(&tx, Busy::Skip);
            assert!(s.is_empty());
        }
        s.slot()[..4].copy_from_slice(&i.to_be_bytes());
        s.commit(4, dst);
    }
    st += s.flush(&tx, Busy::Skip);
    assert_eq!((st.sent, st.errors), (20, 0));
    assert!(st.calls >= 3, "three batches: {st:?}");
    let mut r = RecvBatch::new(8, 64);
    let got = drain(&rx, &mut r, 20);
    assert_eq!(got.len(), 20);
    for (i, (src, p, trunc)) in got.iter().enumerate() {
        assert_eq!(*src, tx.local_addr().unwrap());
        assert_eq!(p.as_slice(), &(i as u32).to_be_bytes(), "order kept");
        assert!(!trunc);
    }
    assert_eq!(r.recv(&rx).unwrap(), 0, "nothing left: 0, not an error");
    assert!(r.get(0).is_none());
}

#[test]
fn loopback_v6() {
    let (tx, rx) = (sock("[::1]:0"), sock("[::1]:0"));
    let mut s = SendBatch::new(4, 16);
    assert!(s.push(rx.local_addr().unwrap(), b"v6"));
    assert_eq!(s.flush(&tx, Busy::Skip).sent, 1);
    let got = drain(&rx, &mut RecvBatch::new(4, 16), 1);
    assert_eq!(got, vec![(tx.local_addr().unwrap(), b"v6".to_vec(), false)]);
}

#[test]
fn truncation_is_flagged() {
    let (tx, rx) = (sock("127.0.0.1:0"), sock("127.0.0.1:0"));
    let dst = rx.local_addr().unwrap();
    let long = [7u8; 100];
    let stats =
        SendBatch::new(4, 128).send(&tx, [(dst, &long[..]), (dst, &long[..16])], Busy::Skip);
    assert_eq!(stats.sent, 2);
    let got = drain(&rx, &mut RecvBatch::new(4, 16), 2);
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].1.len(), got[0].2),
        (16, true),
        "cut to the buffer, flagged"
    );
    assert_eq!(
        (got[1].1.len(), got[1].2),
        (16, false),
        "exactly full is whole"
    );
}

#[test]
fn a_refused_datagram_is_counted_and_the_rest_still_go() {
    let (tx, rx) = (sock("127.0.0.1:0"), sock("127.0.0.1:0"));
    let dst = rx.local_addr().unwrap();
    let v6: SocketAddr = "[::1]:9".parse().unwrap();
    let mut s = SendBatch::new(8, 8);
    for (i, d) in [dst, dst, v6, dst, v6].into_iter().enumerate() {
        assert!(s.push(d, &[i as u8]));
    }
    let st = s.flush(&tx, Busy::Skip);
    assert_eq!((st.sent, st.errors), (3, 2));
    let got: Vec<u8> = drain(&rx, &mut RecvBatch::new(8, 8), 3)
        .into_iter()
        .map(|g| g.1[0])
        .collect();
    assert_eq!(got, vec![0, 1, 3]);
}

#[test]
fn borrowed_send_spans_batches_and_flushes_queued_first() {
    let (tx, rx) = (sock("127.0.0.1:0"), sock("127.0.0.1:0"));
    let dst = rx.local_addr().unwrap();
    let mut s = SendBatch::new(4, 8);
    assert!(s.push(dst, &[0]));
    let data: Vec<[u8; 1]> = (1..=9u8).map(|i| [i]).collect();
    let st = s.send(
        &tx,
        data.iter().map(|d| (dst, &d[..])),
        Busy::Wait { polls: 100 },
    );
    assert_eq!((st.sent, st.errors), (10, 0));
    assert!(s.is_empty());
    let got: Vec<u8> = drain(&rx, &mut RecvBatch::new(64, 8), 10)
        .into_iter()
        .map(|g| g.1[0])
        .collect();
    assert_eq!(got, (0..10).collect::<Vec<u8>>());
}

#[test]
fn push_refuses_when_full_or_too_long() {
    let dst: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut s = SendBatch::new(2, 4);
    assert!(!s.push(dst, b"12345"), "longer than a slot");
    assert!(s.push(dst, b"1234"));
    s.slot()[0] = b'x';
    s.commit(99, dst);
    assert!(s.is_full());
    assert!(!s.push(dst, b"1"));
    assert_eq!(s.len(), 2);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(s.flush(&tx, Busy::Skip).sent, 2);
}
