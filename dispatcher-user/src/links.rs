//! The shell side of handoff: carries out the router's [`Output`] and builds the [`Snapshot`]
//! it decides with.
//!
//! It owns what the sans-IO router must not touch: the producer end of each in-chassis
//! processor's fabric queue (pushes, then one publish and at most one eventfd wake-up per
//! batch at [`Links::flush`]), the LAN forwarding socket and its `sendmmsg` batch, and the load
//! board that processor threads and the LAN health monitor write. [`Links::refresh`] reads that
//! board once per receive batch into the snapshot, so the router sees one consistent value.
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering::Relaxed, Ordering::Release},
        mpsc, Arc,
    },
};

use fabric::{LoadReport, Producer, Proto};

use crate::{
    forward::Forwarder,
    pool::{Admin, Kind},
    route::{local_alive, Inbound, MemberSpec, MemberView, Output, Router, RouterConfig, Snapshot},
    stats::Published,
    status::{ProcessorStatus, Status, StatusBoard},
};
use dispatcher_common::PortProto;

/// How the dispatcher reaches one processor.
pub enum Link {
    /// A thread in this chassis: its fabric queue (claim 3).
    Local(Producer),
    /// A process on another host, over the LAN (claim 4).
    Remote(SocketAddr),
}

/// One processor as the shell knows it.
pub struct LinkedMember {
    /// What the router is told.
    pub spec: MemberSpec,
    /// How to reach it.
    pub link: Link,
    /// What it reports (in-chassis: written by its thread; remote: by the health monitor).
    pub load: Arc<LoadReport>,
}

impl LinkedMember {
    /// The same member for another dispatcher thread: a processor on another host (its
    /// address and load board are shared); `None` for an in-chassis one, whose queue
    /// producer belongs to one thread (each thread gets its own from [`fabric::fan_in`]).
    pub fn try_clone(&self) -> Option<Self> {
        match &self.link {
            Link::Remote(addr) => Some(Self {
                spec: self.spec,
                link: Link::Remote(*addr),
                load: Arc::clone(&self.load),
            }),
            Link::Local(_) => None,
        }
    }

    /// An in-chassis member on `port`.
    pub fn local(port: u16, capacity: u32, producer: Producer, load: Arc<LoadReport>) -> Self {
        Self {
            spec: MemberSpec::local(port, capacity),
            link: Link::Local(producer),
            load,
        }
    }

    /// The remote processor `entry` (its address, capacity and weight).
    pub fn remote_entry(entry: &crate::pool::ProcessorEntry, load: Arc<LoadReport>) -> Self {
        let mut m = Self::remote(entry.addr, entry.capacity, load);
        m.spec.weight = entry.weight;
        m
    }

    /// A member on another host at `addr`.
    pub fn remote(addr: SocketAddr, capacity: u32, load: Arc<LoadReport>) -> Self {
        Self {
            spec: MemberSpec::remote(addr, capacity),
            link: Link::Remote(addr),
            load,
        }
    }
}

/// Counters of carrying out handoffs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinkStats {
    /// Handoffs a fabric queue refused although the router saw room (never expected: the
    /// router is the only producer; counted to be sure). The sender retransmits.
    pub push_failed: u64,
    /// Datagrams handed to the kernel for processors on other hosts.
    pub lan_sent: u64,
    /// Datagrams the kernel refused (counted; the sender retransmits).
    pub lan_errors: u64,
}

impl LinkStats {
    /// Adds another dispatcher thread's counters.
    pub fn add(&mut self, o: &Self) {
        self.push_failed += o.push_failed;
        self.lan_sent += o.lan_sent;
        self.lan_errors += o.lan_errors;
    }
}

/// Every processor's link (index = processor id; `None`: no processor has that id), and the
/// snapshot built from their load board.
pub struct Links {
    members: Vec<Option<LinkedMember>>,
    forwarder: Option<Forwarder>,
    snapshot: Snapshot,
    origin_ns: u64,
    heartbeat_timeout_ns: u64,
    push_failed: u64,
}

impl Links {
    /// Links to `members`; `forwarder` is needed when any is remote (without it, handoffs to
    /// remote members are counted as failed). `origin_ns` is the dispatcher's start: in-chassis
    /// processors are alive until their first heartbeat is due.
    pub fn new(
        members: Vec<Option<LinkedMember>>,
        forwarder: Option<Forwarder>,
        cfg: &RouterConfig,
        origin_ns: u64,
    ) -> Self {
        Self {
            snapshot: Snapshot::new(members.len()),
            members,
            forwarder,
            origin_ns,
            heartbeat_timeout_ns: cfg.heartbeat_timeout_ns,
            push_failed: 0,
        }
    }

    /// What the router is told about each member, by id.
    pub fn specs_by_id(&self) -> Vec<(u16, MemberSpec)> {
        self.members
            .iter()
            .enumerate()
            .filter_map(|(id, m)| Some((id as u16, m.as_ref()?.spec)))
            .collect()
    }

    /// Puts `member` at processor id `id`, replacing what was there (whose queue producer is
    /// dropped: a replaced in-chassis processor sees its queue closed).
    pub fn insert(&mut self, id: u16, member: LinkedMember) {
        let k = usize::from(id);
        if self.members.len() <= k {
            self.members.resize_with(k + 1, || None);
            self.snapshot.members.resize(k + 1, MemberView::default());
        }
        self.members[k] = Some(member);
    }

    /// Changes the spec of processor `id` (capacity, weight) without touching its link.
    pub fn set_spec(&mut self, id: u16, spec: MemberSpec) {
        if let Some(Some(m)) = self.members.get_mut(usize::from(id)) {
            m.spec = spec;
        }
    }

    /// Takes processor `id` out; returns its link.
    pub fn remove(&mut self, id: u16) -> Option<LinkedMember> {
        let m = self.members.get_mut(usize::from(id))?.take();
        if let Some(v) = self.snapshot.members.get_mut(usize::from(id)) {
            *v = MemberView::default();
        }
        m
    }

    /// Processor `id`'s link and load board, if it has one.
    pub fn member(&self, id: u16) -> Option<&LinkedMember> {
        self.members.get(usize::from(id))?.as_ref()
    }

    /// Reads the load board into the snapshot (once per receive batch) and returns it.
    pub fn refresh(&mut self, now_ns: u64) -> &Snapshot {
        self.snapshot.epoch = self.snapshot.epoch.wrapping_add(1);
        for (m, v) in self.members.iter().zip(self.snapshot.members.iter_mut()) {
            let Some(m) = m else {
                continue;
            };
            let l = &m.load;
            *v = match &m.link {
                Link::Local(p) => MemberView {
                    alive: local_alive(
                        now_ns,
                        self.origin_ns,
                        l.heartbeat_ns.load(Relaxed),
                        self.heartbeat_timeout_ns,
                    ),
                    released_units: l.released_units.load(Relaxed),
                    reported_in_use: 0,
                    reports: 0,
                    reported_capacity: l.capacity_units.load(Relaxed),
                    queue_free: p.capacity().saturating_sub(p.depth()),
                    queue_capacity: p.capacity(),
                    pending_invites: l.pending_invites.load(Relaxed),
                    reported_max_pending: 0,
                },
                Link::Remote(_) => MemberView {
                    pending_invites: l.pending_invites.load(Relaxed),
                    reported_max_pending: l.max_pending_invites.load(Relaxed),
                    ..MemberView::remote(
                        l.up.load(Relaxed),
                        l.in_use_units.load(Relaxed),
                        l.reports.load(Relaxed),
                        l.capacity_units.load(Relaxed),
                    )
                },
            };
        }
        &self.snapshot
    }

    /// The snapshot last refreshed.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Pushes `out`'s handoffs for datagram `msg` received at `now_ns` (visible to the
    /// processors after [`Links::flush`]).
    pub fn carry_out(&mut self, now_ns: u64, msg: &Inbound<'_>, out: &Output) {
        let proto = match msg.proto {
            PortProto::Sip => Proto::Sip,
            PortProto::Mgcp => Proto::Mgcp,
        };
        for h in out.handoffs() {
            let bytes = out.bytes(h, msg.payload);
            let Some(Some(m)) = self.members.get_mut(usize::from(h.to)) else {
                self.push_failed += 1;
                continue;
            };
            let ok = match &mut m.link {
                Link::Local(producer) => producer.push_with(|slot| {
                    slot.proto = proto;
                    slot.src = msg.src;
                    slot.dst = msg.dst;
                    slot.received_ns = now_ns;
                    slot.units = h.units;
                    slot.fill(bytes)
                }),
                Link::Remote(addr) => match &mut self.forwarder {
                    Some(f) => f.queue(*addr, bytes),
                    None => false,
                },
            };
            if !ok {
                self.push_failed += 1;
            }
        }
    }

    /// Publishes everything pushed in this batch (one release store per queue, a wake-up only
    /// for a parked processor) and sends the LAN batch.
    pub fn flush(&mut self) {
        for m in self.members.iter_mut().flatten() {
            if let Link::Local(p) = &mut m.link {
                p.commit();
            }
        }
        if let Some(f) = &mut self.forwarder {
            f.flush();
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> LinkStats {
        let (lan_sent, lan_errors) = self
            .forwarder
            .as_ref()
            .map_or((0, 0), |f| (f.sent, f.errors));
        LinkStats {
            push_failed: self.push_failed,
            lan_sent,
            lan_errors,
        }
    }
}

/// A change to the pool or the routing configuration, sent by the control side (reload,
/// `ctl`) and applied by the dispatcher thread between two receive batches: the thread never
/// stops or waits for it, and no decision sees half of a change.
pub enum Command {
    /// Put a processor at `id` (a new one, or one replacing a removed one).
    Insert {
        /// Its id.
        id: u16,
        /// Its link and load board.
        member: LinkedMember,
        /// Its operator state.
        admin: Admin,
    },
    /// Change the capacity, weight or pending cap of processor `id`, keeping its link and
    /// what the router assigned it.
    SetSpec {
        /// Its id.
        id: u16,
        /// The new spec.
        spec: MemberSpec,
    },
    /// Take processor `id` out of the pool.
    Remove {
        /// Its id.
        id: u16,
    },
    /// Set processor `id`'s operator state.
    SetAdmin {
        /// Its id.
        id: u16,
        /// The state.
        admin: Admin,
    },
    /// Apply a new routing configuration (policy, answers, rewrites, keys).
    Reconfigure(Box<RouterConfig>),
}

impl Command {
    /// The same command for another dispatcher thread (`None`: an in-chassis processor's
    /// insertion, which the control side never sends; see [`LinkedMember::try_clone`]).
    fn try_clone(&self) -> Option<Self> {
        Some(match self {
            Command::Insert { id, member, admin } => Command::Insert {
                id: *id,
                member: member.try_clone()?,
                admin: *admin,
            },
            Command::SetSpec { id, spec } => Command::SetSpec {
                id: *id,
                spec: *spec,
            },
            Command::Remove { id } => Command::Remove { id: *id },
            Command::SetAdmin { id, admin } => Command::SetAdmin {
                id: *id,
                admin: *admin,
            },
            Command::Reconfigure(cfg) => Command::Reconfigure(cfg.clone()),
        })
    }
}

/// The control side's end: sends [`Command`]s to every dispatcher thread.
#[derive(Clone)]
pub struct ControlSender {
    threads: Vec<(mpsc::Sender<Command>, Arc<AtomicBool>)>,
}

impl ControlSender {
    /// Queues `cmd` for every dispatcher thread; each applies it before its next batch
    /// (within [`crate::stats::PUBLISH_EVERY_NS`] when idle), so for a moment some threads
    /// may decide with the old state and some with the new, never with half of a change.
    /// False when a thread has stopped.
    pub fn send(&self, cmd: Command) -> bool {
        let mut ok = true;
        for (tx, waiting) in self.threads.iter().skip(1) {
            match cmd.try_clone() {
                Some(c) => ok &= tx.send(c).is_ok(),
                None => {
                    tracing::warn!("an in-chassis processor cannot be inserted at runtime with several dispatcher threads");
                    ok = false;
                }
            }
            waiting.store(true, Release);
        }
        if let Some((tx, waiting)) = self.threads.first() {
            ok &= tx.send(cmd).is_ok();
            waiting.store(true, Release);
        }
        ok
    }
}

/// The dispatcher thread's end: one relaxed load per batch tells whether anything waits.
pub struct ControlInbox {
    rx: mpsc::Receiver<Command>,
    waiting: Arc<AtomicBool>,
}

impl ControlInbox {
    /// Everything waiting (tests read what the control side sent).
    #[cfg(test)]
    pub(crate) fn take_all(&self) -> Vec<Command> {
        self.rx.try_iter().collect()
    }
}

/// A connected sender and inbox (one dispatcher thread).
pub fn control_channel() -> (ControlSender, ControlInbox) {
    let (sender, mut inboxes) = control_channels(1);
    (sender, inboxes.remove(0))
}

/// A sender and one inbox per dispatcher thread (`threads` ≥ 1).
pub fn control_channels(threads: usize) -> (ControlSender, Vec<ControlInbox>) {
    let mut senders = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..threads.max(1) {
        let (tx, rx) = mpsc::channel();
        let waiting = Arc::new(AtomicBool::new(false));
        senders.push((tx, Arc::clone(&waiting)));
        inboxes.push(ControlInbox { rx, waiting });
    }
    (ControlSender { threads: senders }, inboxes)
}

/// The router and its links, as one dispatcher thread drives them: refresh the snapshot once
/// per receive batch, decide and carry out each datagram, flush at the end of the batch.
pub struct Dispatch {
    /// The sans-IO core.
    pub router: Router,
    /// Its handoff executor.
    pub links: Links,
    out: Output,
    inbox: Option<ControlInbox>,
    status: Option<Arc<StatusBoard>>,
    /// Which dispatcher thread this is (its row in the status board and the counters).
    thread: usize,
}

impl Dispatch {
    /// Pairs `router` with `links` (built over the same members, in the same order).
    pub fn new(router: Router, links: Links) -> Self {
        Self {
            router,
            links,
            out: Output::new(),
            inbox: None,
            status: None,
            thread: 0,
        }
    }

    /// Makes this dispatcher thread `thread` of several: its processors share their
    /// assigned units with the other threads' routers through their load boards (see
    /// [`Router::share_units`]), and it publishes into row `thread`.
    pub fn on_thread(mut self, thread: usize) -> Self {
        self.thread = thread;
        for (id, m) in self.links.members.iter().enumerate() {
            if let Some(m) = m {
                self.router.share_units(id as u16, Arc::clone(&m.load));
            }
        }
        self
    }

    /// Takes pool and configuration changes from `inbox` and publishes its [`Status`] into
    /// `status` every [`crate::stats::PUBLISH_EVERY_NS`].
    pub fn with_control(mut self, inbox: ControlInbox, status: Arc<StatusBoard>) -> Self {
        self.inbox = Some(inbox);
        self.status = Some(status);
        self
    }

    /// Starts a receive batch at `now_ns`: applies waiting control commands, reads the load
    /// board into a fresh snapshot.
    pub fn begin_batch(&mut self, now_ns: u64) {
        if self.inbox.as_ref().is_some_and(|i| i.waiting.load(Relaxed)) {
            self.apply_commands();
        }
        self.links.refresh(now_ns);
    }

    /// Applies every waiting command.
    fn apply_commands(&mut self) {
        let Some(inbox) = &self.inbox else { return };
        inbox.waiting.store(false, Relaxed);
        while let Ok(cmd) = inbox.rx.try_recv() {
            match cmd {
                Command::Insert { id, member, admin } => {
                    let (spec, load) = (member.spec, Arc::clone(&member.load));
                    self.links.insert(id, member);
                    self.router.set_member(id, spec);
                    self.router.share_units(id, load);
                    self.router.set_admin(id, admin);
                }
                Command::SetSpec { id, spec } => {
                    self.links.set_spec(id, spec);
                    self.router.set_member(id, spec);
                }
                Command::Remove { id } => {
                    self.router.remove_member(id);
                    self.links.remove(id);
                }
                Command::SetAdmin { id, admin } => {
                    self.router.set_admin(id, admin);
                }
                Command::Reconfigure(cfg) => {
                    self.links.heartbeat_timeout_ns = cfg.heartbeat_timeout_ns;
                    self.router.reconfigure(*cfg);
                }
            }
        }
    }

    /// The periodic publication (the shells call it every
    /// [`crate::stats::PUBLISH_EVERY_NS`], busy or idle): applies waiting commands, stores
    /// the counters for the periodic log line and, with a control side, the [`Status`].
    /// `rx` is what the shell received so far.
    pub fn publish(&mut self, now_ns: u64, rx: u64, published: &Published) {
        self.apply_commands();
        published.store(self.thread, &self.router.stats(), rx);
        if let Some(board) = self.status.clone() {
            board.try_publish(self.thread, self.status(now_ns, rx));
        }
    }

    /// What the operator sees now (see [`crate::status`]).
    pub fn status(&mut self, now_ns: u64, rx: u64) -> Status {
        self.links.refresh(now_ns);
        let epoch = self.links.snapshot().epoch;
        let mut processors = Vec::new();
        for id in 0..self.router.members().len() {
            let Some(lm) = self.links.member(id as u16) else {
                continue;
            };
            let view = self.links.snapshot().members[id];
            let heard = lm.load.heartbeat_ns.load(Relaxed);
            let m = &self.router.members()[id];
            if !m.present {
                continue;
            }
            let (spec, admin, forwarded, new_dialogs) =
                (m.spec, m.admin, m.forwarded, m.new_dialogs);
            let st = self.router.member_view_state(id, epoch, &view);
            processors.push(ProcessorStatus {
                id: id as u16,
                addr: spec.addr,
                kind: if spec.remote {
                    Kind::Remote
                } else {
                    Kind::Local
                },
                admin,
                alive: view.alive,
                state: crate::status::State::of(admin, view.alive, st.in_use, st.pending),
                units_in_use: st.in_use,
                capacity: if spec.capacity > 0 {
                    spec.capacity
                } else {
                    view.reported_capacity
                },
                weight: spec.weight,
                pending_invites: st.pending,
                forwarded,
                new_dialogs,
                last_heard_ms: (heard > 0).then(|| now_ns.saturating_sub(heard) / 1_000_000),
            });
        }
        Status {
            rx,
            dispatcher_cpu_ns: crate::stats::thread_cpu_ns(),
            router: self.router.stats(),
            links: self.links.stats(),
            processors,
            ..Status::default()
        }
    }

    /// Decides one datagram and queues its handoffs; returns the reply for its source, if any.
    pub fn handle(&mut self, now_ns: u64, msg: &Inbound<'_>) -> Option<&[u8]> {
        self.router
            .handle(now_ns, msg, self.links.snapshot(), &mut self.out);
        self.links.carry_out(now_ns, msg, &self.out);
        self.out.reply()
    }

    /// Ends a batch: publishes the queued handoffs to the processors.
    pub fn flush(&mut self) {
        self.links.flush();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;

    #[test]
    fn control_commands_reach_every_dispatcher_thread() {
        let (sender, inboxes) = control_channels(3);
        let load = LoadReport::new(0);
        let remote = LinkedMember::remote("198.18.0.9:5070".parse().unwrap(), 10, load);
        assert!(sender.send(Command::Insert {
            id: 4,
            member: remote,
            admin: Admin::Active,
        }));
        assert!(sender.send(Command::SetAdmin {
            id: 4,
            admin: Admin::Draining,
        }));
        for inbox in &inboxes {
            assert!(inbox.waiting.load(Relaxed));
            let got = inbox.take_all();
            assert!(
                matches!(&got[..], [Command::Insert { id: 4, member, .. }, Command::SetAdmin { id: 4, admin: Admin::Draining }]
                    if matches!(member.link, Link::Remote(a) if a.port() == 5070)),
                "every thread gets both commands, in order"
            );
        }
        // An in-chassis processor's queue producer belongs to one thread: it cannot fan out.
        let (producer, _consumer) = fabric::channel(4).unwrap();
        let local = LinkedMember::local(5071, 0, producer, LoadReport::new(0));
        assert!(!sender.send(Command::Insert {
            id: 5,
            member: local,
            admin: Admin::Active,
        }));
    }

    #[test]
    fn refresh_copies_the_pending_invites_and_the_router_refuses_at_the_cap() {
        let (producer, _consumer) = fabric::channel(16).unwrap();
        let load = LoadReport::new(0);
        let mut member = LinkedMember::local(5070, 0, producer, Arc::clone(&load));
        member.spec.max_pending = 2;
        let cfg = RouterConfig::default();
        let now = fabric::monotonic_ns();
        let links = Links::new(vec![Some(member)], None, &cfg, now);
        let router = Router::new(cfg, vec![links.specs_by_id()[0].1]);
        let mut d = Dispatch::new(router, links);
        let invite = |i: u32| {
            format!(
                "INVITE sip:svc@198.18.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 198.18.0.2:5060;branch=z9hG4bK-{i}\r\nMax-Forwards: 70\r\nFrom: <sip:a@198.18.0.2>;tag=f{i}\r\nTo: <sip:svc@198.18.0.1>\r\nCall-ID: c{i}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let send = |d: &mut Dispatch, i: u32| {
            let bytes = invite(i);
            let msg = Inbound {
                proto: PortProto::Sip,
                src: "198.18.0.2:5060".parse().unwrap(),
                dst: "198.18.0.1:5060".parse().unwrap(),
                payload: bytes.as_bytes(),
            };
            d.begin_batch(now);
            let reply = d.handle(now, &msg).map(<[u8]>::to_vec);
            d.flush();
            reply
        };
        load.pending_invites.store(1, Relaxed);
        d.links.refresh(now);
        assert_eq!(d.links.snapshot().members[0].pending_invites, 1);
        assert_eq!(send(&mut d, 1), None, "1 < 2: handed");
        load.pending_invites.store(2, Relaxed);
        let r = send(&mut d, 2).expect("at the cap: the dispatcher answers");
        assert!(r.starts_with(b"SIP/2.0 503 "));
        assert_eq!(d.router.stats().overload, 1);
    }
}
