//! AF_XDP batch transmit on a real veth: frames received on the well-known port are answered
//! from the UMEM through the tx ring with headers and checksums we build ourselves. The peer's
//! kernel drops any reply with a wrong IP or UDP checksum, so a received echo proves the whole
//! transmit path. Needs root: `cargo xtask test`.
mod common;

use std::{
    net::UdpSocket,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use dispatcher_common::PortProto;
use xdp_io::{
    frame::{self, header_len, write_headers, FrameAddr},
    loader::{AttachMode, XdpProgram},
    xsk::{XskConfig, XskQueue},
};
use xtask::testbed::{self, in_netns, Testbed};

const N: usize = 300;

#[test]
#[ignore = "needs root, netns and the eBPF object: run `cargo xtask test`"]
fn replies_built_in_umem_reach_the_peer_socket() {
    common::require_root();
    let tb = Testbed::up(&common::tb_name("tx"), 1).expect("testbed");
    let peer = in_netns(&tb.app_ns, || UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ready = Arc::new(AtomicBool::new(false));

    let (iface, disp_ns) = (tb.disp_if.clone(), tb.disp_ns.clone());
    let ready2 = Arc::clone(&ready);
    let echoer = std::thread::spawn(move || {
        in_netns(&disp_ns, move || {
            let mut prog = XdpProgram::load().expect("load");
            prog.add_port(5060, PortProto::Sip).unwrap();
            let mut q = XskQueue::open(&iface, 0, XskConfig::default()).expect("xsk");
            prog.register_socket(0, &q.fd()).unwrap();
            prog.attach(&iface, AttachMode::Native).expect("attach");
            ready2.store(true, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(15);
            let mut echoed = 0;
            while echoed < N && Instant::now() < deadline {
                q.rx_batch(64, |bytes, tx| {
                    let f = frame::parse(bytes).expect("redirected frame parses");
                    let reply = FrameAddr::reply_to(&f);
                    let h = header_len(&reply);
                    if tx.send(|buf| {
                        buf.get_mut(h..h + f.payload.len())?
                            .copy_from_slice(f.payload);
                        write_headers(buf, &reply, f.payload.len()).ok()
                    }) {
                        echoed += 1;
                    }
                });
                q.idle_maintenance();
            }
            // Let the last completions drain before the socket goes away.
            std::thread::sleep(Duration::from_millis(200));
            q.idle_maintenance();
            (echoed, q.stats())
        })
        .expect("netns")
    });

    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "echoer never became ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    let to = (testbed::DISP_V4, 5060);
    let mut received = 0;
    let mut buf = [0u8; 2048];
    for i in 0..N {
        let msg = format!(
            "OPTIONS sip:{i}@example.com SIP/2.0\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(i)
        );
        peer.send_to(msg.as_bytes(), to).unwrap();
        let n = peer
            .recv(&mut buf)
            .expect("echo must arrive: TX path or checksums broken");
        assert_eq!(&buf[..n], msg.as_bytes(), "echo payload differs");
        received += 1;
    }
    let (echoed, stats) = echoer.join().unwrap();
    assert_eq!(received, N);
    assert_eq!(echoed, N);
    assert_eq!(stats.tx_frames, N as u64, "{stats:?}");
    assert_eq!(stats.tx_full, 0, "{stats:?}");
}
