//! One AF_XDP socket per receive queue: UMEM, fill/completion/rx/tx rings, batch receive and
//! batch transmit.
//!
//! Built on `xdpilone` (pure Rust, no libxdp/libbpf C build, works with our own aya-loaded
//! program and XSKMAP). Each queue owns its UMEM, so queues never share ring state and one
//! dispatcher thread can serve several queues without locks.
//!
//! Frame lifecycle: at start half of the UMEM frames sit in the fill ring (kernel writes received
//! frames there) and half are free for transmit. A received frame goes back to the fill ring
//! once the batch is handled; a transmitted frame returns to the free list when the completion
//! ring reports it. No allocation happens after [`XskQueue::open`].
use std::{ffi::CString, num::NonZeroU32, os::fd::RawFd, ptr::NonNull};

use thiserror::Error;
use xdpilone::{
    xdp::XdpDesc, DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig,
};

/// Whether to ask the driver for zero-copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ZeroCopy {
    /// Try zero-copy, fall back to copy mode (veth and many drivers only do copy).
    Auto,
    /// Require zero-copy; fail if the driver cannot.
    On,
    /// Always copy mode.
    Off,
}

/// Sizes of one queue's UMEM and rings; all ring sizes must be powers of two.
#[derive(Debug, Clone, Copy)]
pub struct XskConfig {
    /// Bytes per UMEM frame (2048 or 4096); a power of two.
    pub frame_size: u32,
    /// Number of UMEM frames: the in-flight depth (rx ring + being handled + tx).
    pub frames: u32,
    /// Rx/tx/fill/completion ring size.
    pub ring_size: u32,
    /// Zero-copy request.
    pub zero_copy: ZeroCopy,
}

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            frame_size: 2048,
            frames: 16384,
            ring_size: 4096,
            zero_copy: ZeroCopy::Auto,
        }
    }
}

/// An AF_XDP set-up failure, with the step that failed.
#[derive(Debug, Error)]
#[error("AF_XDP {step} failed on {iface} queue {queue}: {errno}")]
pub struct XskError {
    step: &'static str,
    iface: String,
    queue: u32,
    errno: String,
}

/// Counters of one queue's data path.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct XskStats {
    /// Frames read from the rx ring.
    pub rx_frames: u64,
    /// Bytes in those frames.
    pub rx_bytes: u64,
    /// Frames put on the tx ring.
    pub tx_frames: u64,
    /// Replies not sent because no free UMEM frame or tx ring slot was available.
    pub tx_full: u64,
    /// Times the fill ring could not be topped up completely.
    pub fill_short: u64,
    /// Kernel-side drops reported by `XDP_STATISTICS` (rx ring full, invalid descriptors).
    pub kernel_rx_dropped: u64,
}

impl std::iter::Sum for XskStats {
    /// Totals over queues.
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), |a, b| Self {
            rx_frames: a.rx_frames + b.rx_frames,
            rx_bytes: a.rx_bytes + b.rx_bytes,
            tx_frames: a.tx_frames + b.tx_frames,
            tx_full: a.tx_full + b.tx_full,
            fill_short: a.fill_short + b.fill_short,
            kernel_rx_dropped: a.kernel_rx_dropped + b.kernel_rx_dropped,
        })
    }
}

/// An anonymous, page-aligned mapping backing a UMEM; unmapped on drop.
struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

impl Area {
    fn new(len: usize) -> Result<Self, i32> {
        // SAFETY: anonymous private mapping, no file descriptor; checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        }
        Ok(Self {
            ptr: NonNull::new(p.cast()).ok_or(libc::ENOMEM)?,
            len,
        })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from a successful mmap and are unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One receive queue's AF_XDP socket with its UMEM and rings.
pub struct XskQueue {
    // Field order is drop order: rings and sockets before the UMEM, the UMEM before its memory.
    rx: RingRx,
    tx: RingTx,
    device: DeviceQueue,
    _socket: Socket,
    _umem: Umem,
    area: Area,
    /// Free frame addresses for transmit (a stack; preallocated).
    free: Vec<u64>,
    /// Received frame addresses to hand back to the fill ring (preallocated).
    refill: Vec<u64>,
    cfg: XskConfig,
    queue: u32,
    zero_copy: bool,
    stats: XskStats,
}

// SAFETY: an `XskQueue` exclusively owns its UMEM mapping, rings and socket; the `Arc`s and raw
// pointers inside xdpilone's types are shared only among the fields of this one value, so
// moving the whole value to the dispatcher thread cannot create shared mutable access.
unsafe impl Send for XskQueue {}

/// A frame to hand to [`XskQueue::rx_batch`]'s callback, with a way to transmit replies.
pub struct Transmit<'q> {
    q: &'q mut TxState,
}

/// The transmit half borrowed by the callback (split from the rx borrow).
struct TxState {
    base: NonNull<u8>,
    frame_size: u32,
    pending: [XdpDesc; 64],
    n: usize,
    free: *mut Vec<u64>,
    tx_full: u64,
}

impl Transmit<'_> {
    /// Builds a frame with `build` (given a whole UMEM frame; returns the length used, or `None`
    /// to send nothing) and queues it for transmit at the end of the batch.
    ///
    /// Returns false, and counts, when no frame or batch slot is free: the caller decides what
    /// a lost reply means (for SIP over UDP the peer retransmits).
    pub fn send(&mut self, build: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        let q = &mut *self.q;
        // SAFETY: `free` points at the queue's free list, which outlives this borrow and is not
        // otherwise touched while the batch runs.
        let free = unsafe { &mut *q.free };
        if q.n == q.pending.len() {
            q.tx_full += 1;
            return false;
        }
        let Some(addr) = free.pop() else {
            q.tx_full += 1;
            return false;
        };
        // SAFETY: `addr` is a frame-aligned offset of a frame we own (it came from the free
        // list, so neither the kernel nor another descriptor references it).
        let buf = unsafe {
            std::slice::from_raw_parts_mut(
                q.base.as_ptr().add(addr as usize),
                q.frame_size as usize,
            )
        };
        match build(buf) {
            Some(len) if len > 0 && len <= buf.len() => {
                q.pending[q.n] = XdpDesc {
                    addr,
                    len: len as u32,
                    options: 0,
                };
                q.n += 1;
                true
            }
            _ => {
                free.push(addr);
                false
            }
        }
    }
}

impl XskQueue {
    /// Creates, maps and binds the socket for `queue` of `iface`.
    ///
    /// The socket is bound but receives nothing until its fd is in the XSKMAP
    /// ([`crate::loader::XdpProgram::register_socket`]).
    pub fn open(iface: &str, queue: u32, cfg: XskConfig) -> Result<Self, XskError> {
        match cfg.zero_copy {
            ZeroCopy::On => Self::open_with(iface, queue, cfg, true),
            ZeroCopy::Off => Self::open_with(iface, queue, cfg, false),
            ZeroCopy::Auto => Self::open_with(iface, queue, cfg, true)
                .or_else(|_| Self::open_with(iface, queue, cfg, false)),
        }
    }

    fn open_with(iface: &str, queue: u32, cfg: XskConfig, zc: bool) -> Result<Self, XskError> {
        let err = |step: &'static str, errno: String| XskError {
            step,
            iface: iface.to_owned(),
            queue,
            errno,
        };
        let len = cfg.frames as usize * cfg.frame_size as usize;
        let area = Area::new(len)
            .map_err(|e| err("mmap", std::io::Error::from_raw_os_error(e).to_string()))?;
        let umem_cfg = UmemConfig {
            fill_size: cfg.ring_size,
            complete_size: cfg.ring_size,
            frame_size: cfg.frame_size,
            headroom: 0,
            flags: 0,
        };
        let slice = NonNull::slice_from_raw_parts(area.ptr, len);
        // SAFETY: `area` is page aligned, `len` bytes long, and outlives `umem` (field order).
        let umem = unsafe { Umem::new(umem_cfg, slice) }
            .map_err(|e| err("UMEM registration", e.to_string()))?;
        let mut info = IfInfo::invalid();
        let name = CString::new(iface)
            .map_err(|_| err("interface lookup", "name has a NUL byte".into()))?;
        info.from_name(&name)
            .map_err(|e| err("interface lookup", e.to_string()))?;
        info.set_queue(queue);
        let socket = Socket::with_shared(&info, &umem).map_err(|e| err("socket", e.to_string()))?;
        let device = umem
            .fq_cq(&socket)
            .map_err(|e| err("fill/completion rings", e.to_string()))?;
        let ring = NonZeroU32::new(cfg.ring_size);
        let mode = if zc {
            SocketConfig::XDP_BIND_ZEROCOPY
        } else {
            SocketConfig::XDP_BIND_COPY
        };
        let user = umem
            .rx_tx(
                &socket,
                &SocketConfig {
                    rx_size: ring,
                    tx_size: ring,
                    bind_flags: SocketConfig::XDP_BIND_NEED_WAKEUP | mode,
                },
            )
            .map_err(|e| err("rx/tx rings", e.to_string()))?;
        let rx = user
            .map_rx()
            .map_err(|e| err("rx ring mmap", e.to_string()))?;
        let tx = user
            .map_tx()
            .map_err(|e| err("tx ring mmap", e.to_string()))?;
        umem.bind(&user).map_err(|e| {
            err(
                if zc {
                    "bind (zero-copy)"
                } else {
                    "bind (copy)"
                },
                e.to_string(),
            )
        })?;
        let frames = cfg.frames;
        let fill_count = (frames / 2).min(cfg.ring_size);
        let mut q = Self {
            rx,
            tx,
            device,
            _socket: socket,
            _umem: umem,
            area,
            free: Vec::with_capacity(frames as usize),
            refill: Vec::with_capacity(frames as usize),
            cfg,
            queue,
            zero_copy: zc,
            stats: XskStats::default(),
        };
        // Frames [0, fill_count) go to the fill ring, the rest are free for transmit.
        let mut fill = q.device.fill(fill_count);
        let filled = fill.insert((0..fill_count).map(|i| u64::from(i) * u64::from(cfg.frame_size)));
        fill.commit();
        drop(fill);
        q.free.extend(
            (filled..frames)
                .rev()
                .map(|i| u64::from(i) * u64::from(cfg.frame_size)),
        );
        Ok(q)
    }

    /// The socket fd, for the XSKMAP and for `poll()`.
    pub fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// Receive queue index this socket is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Whether the bind used zero-copy (false: copy mode).
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Counters so far (kernel drop counters are refreshed by [`XskQueue::refresh_kernel_stats`]).
    pub fn stats(&self) -> XskStats {
        self.stats
    }

    /// Reads `XDP_STATISTICS` from the kernel (a syscall: call it off the per-packet path).
    pub fn refresh_kernel_stats(&mut self) {
        if let Some(dropped) = self.kernel_dropped() {
            self.stats.kernel_rx_dropped = dropped;
        }
    }

    fn kernel_dropped(&self) -> Option<u64> {
        #[repr(C)]
        #[derive(Default)]
        struct XdpStatistics {
            rx_dropped: u64,
            rx_invalid_descs: u64,
            tx_invalid_descs: u64,
            rx_ring_full: u64,
            rx_fill_ring_empty_descs: u64,
            tx_ring_empty_descs: u64,
        }
        let mut st = XdpStatistics::default();
        let mut len = std::mem::size_of::<XdpStatistics>() as libc::socklen_t;
        const SOL_XDP: libc::c_int = 283;
        const XDP_STATISTICS: libc::c_int = 7;
        // SAFETY: valid fd, out-pointer and length for getsockopt.
        let r = unsafe {
            libc::getsockopt(
                self.fd(),
                SOL_XDP,
                XDP_STATISTICS,
                (&mut st as *mut XdpStatistics).cast(),
                &mut len,
            )
        };
        (r == 0).then_some(st.rx_dropped + st.rx_invalid_descs + st.rx_ring_full)
    }

    /// Handles up to `max` received frames: `handle(frame, tx)` is called for each, replies
    /// queued through `tx` are transmitted with one ring commit (and at most one kick) at the end,
    /// and the received frames go back to the fill ring. Returns the number of frames handled.
    pub fn rx_batch(&mut self, max: u32, mut handle: impl FnMut(&[u8], &mut Transmit<'_>)) -> u32 {
        self.reap_completions();
        let base = self.area.ptr;
        let frame_mask = !(u64::from(self.cfg.frame_size) - 1);
        let mut txs = TxState {
            base,
            frame_size: self.cfg.frame_size,
            pending: [XdpDesc::default(); 64],
            n: 0,
            free: &mut self.free,
            tx_full: 0,
        };
        let mut n = 0;
        {
            let mut reader = self.rx.receive(max.min(64));
            while let Some(desc) = reader.read() {
                n += 1;
                let end = desc.addr.saturating_add(u64::from(desc.len));
                if end <= self.area.len as u64 {
                    // SAFETY: the kernel handed us [addr, addr+len) inside the UMEM (checked
                    // above); it will not write it again until we return it to the fill ring.
                    let frame = unsafe {
                        std::slice::from_raw_parts(
                            base.as_ptr().add(desc.addr as usize),
                            desc.len as usize,
                        )
                    };
                    self.stats.rx_bytes += u64::from(desc.len);
                    handle(frame, &mut Transmit { q: &mut txs });
                }
                self.refill.push(desc.addr & frame_mask);
            }
            reader.release();
        }
        self.stats.rx_frames += u64::from(n);
        self.stats.tx_full += txs.tx_full;
        if txs.n > 0 {
            let mut w = self.tx.transmit(txs.n as u32);
            let sent = w.insert(txs.pending[..txs.n].iter().copied()) as usize;
            w.commit();
            drop(w);
            // Descriptors the ring had no room for go back to the free list.
            for d in &txs.pending[sent..txs.n] {
                self.free.push(d.addr);
                self.stats.tx_full += 1;
            }
            self.stats.tx_frames += sent as u64;
            if self.tx.needs_wakeup() {
                self.tx.wake();
            }
        }
        self.refill_ring();
        n
    }

    fn reap_completions(&mut self) {
        let mut c = self.device.complete(self.cfg.ring_size);
        while let Some(addr) = c.read() {
            self.free.push(addr & !(u64::from(self.cfg.frame_size) - 1));
        }
        c.release();
    }

    fn refill_ring(&mut self) {
        if self.refill.is_empty() {
            return;
        }
        let want = self.refill.len() as u32;
        let mut f = self.device.fill(want);
        let done = f.insert(self.refill.iter().copied()) as usize;
        f.commit();
        drop(f);
        if done < self.refill.len() {
            self.stats.fill_short += 1;
        }
        self.refill.drain(..done);
        if self.device.needs_wakeup() {
            self.device.wake();
        }
    }

    /// Whether frames are waiting in the rx ring (a relaxed peek, no syscall).
    pub fn has_rx(&self) -> bool {
        self.rx.available() > 0
    }

    /// Flushes completions so transmitted frames are reusable; call when idle.
    pub fn idle_maintenance(&mut self) {
        self.reap_completions();
        if self.tx.pending() > 0 && self.tx.needs_wakeup() {
            self.tx.wake();
        }
    }
}
