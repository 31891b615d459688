//! The system calls beneath QuickJS, answered inside the guest.
//!
//! QuickJS's C library (wasi-libc) and Rust's standard library are written
//! against WASI preview 1. A script needs only three things of the system: the
//! time (`new Date()`, `Date.now()`), randomness (`Math.random`'s seed,
//! `crypto.randomUUID`) and somewhere for stray stdio to go. This module
//! defines the preview 1 functions those libraries import, under the names
//! wasi-libc imports them by (`__imported_wasi_snapshot_preview1_<name>`),
//! and answers them from the world's own `clock` and `random` imports. The
//! linker resolves the C library's imports to these definitions; the guest
//! builder points the one Rust's standard library keeps (`random_get`, under
//! a mangled name) at the same definition. The module therefore imports
//! nothing from WASI: the component needs no WASI adapter and the host no
//! WASI context.
//!
//! There are no files, no environment and no arguments: stdout and stderr
//! accept and drop what is written (console output goes through the `log`
//! import), stdin is empty.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::scriptbox::sandbox::{clock, random};

// Preview 1 error numbers.
const SUCCESS: i32 = 0;
const BADF: i32 = 8;
const INVAL: i32 = 28;
const NOSYS: i32 = 52;
const SPIPE: i32 = 70;

// Preview 1 clock ids.
const REALTIME: i32 = 0;
const MONOTONIC: i32 = 1;
const PROCESS_CPUTIME: i32 = 2;
const THREAD_CPUTIME: i32 = 3;

/// `filetype::character_device`, what stdio reports itself as.
const CHARACTER_DEVICE: u8 = 2;

/// Set once the host is there to answer: false while Wizer initialises the
/// engine at build time, so whatever initialisation reads (the clock, when
/// QuickJS notes its time origin) is the same on every build; true from the
/// first call of an export.
static HOST: AtomicBool = AtomicBool::new(false);

/// Marks the start of a call from the host.
pub fn host_is_here() {
    HOST.store(true, Ordering::Relaxed);
}

fn host() -> bool {
    HOST.load(Ordering::Relaxed)
}

/// One stdio buffer as wasi-libc passes it.
#[repr(C)]
struct IoVec {
    buf: *mut u8,
    len: usize,
}

#[unsafe(no_mangle)]
unsafe extern "C" fn __imported_wasi_snapshot_preview1_clock_time_get(
    id: i32,
    _precision: i64,
    time: *mut u64,
) -> i32 {
    let now = if !host() {
        0
    } else {
        match id {
            REALTIME => clock::now_ms().saturating_mul(1_000_000),
            MONOTONIC | PROCESS_CPUTIME | THREAD_CPUTIME => clock::monotonic_ns(),
            _ => return INVAL,
        }
    };
    // SAFETY: the C library passes a pointer to a u64 of its own.
    unsafe { time.write(now) };
    SUCCESS
}

#[unsafe(no_mangle)]
unsafe extern "C" fn __imported_wasi_snapshot_preview1_random_get(buf: *mut u8, len: usize) -> i32 {
    if !host() {
        // Initialisation draws a few bytes (Rust's `HashMap` keys); they land
        // in the snapshot, so they must be the same on every build.
        // SAFETY: `buf` holds `len` bytes.
        unsafe { buf.write_bytes(0, len) };
        return SUCCESS;
    }
    let mut filled = 0;
    while filled < len {
        let chunk = random::fill((len - filled).min(1 << 16) as u32);
        if chunk.is_empty() {
            return NOSYS;
        }
        let n = chunk.len().min(len - filled);
        // SAFETY: `buf` holds `len` bytes (the caller's buffer) and `n`
        // stays within what is left of it.
        unsafe { std::ptr::copy_nonoverlapping(chunk.as_ptr(), buf.add(filled), n) };
        filled += n;
    }
    SUCCESS
}

#[unsafe(no_mangle)]
unsafe extern "C" fn __imported_wasi_snapshot_preview1_environ_sizes_get(
    count: *mut usize,
    bytes: *mut usize,
) -> i32 {
    // SAFETY: both point at the caller's own usize.
    unsafe {
        count.write(0);
        bytes.write(0);
    }
    SUCCESS
}

#[unsafe(no_mangle)]
unsafe extern "C" fn __imported_wasi_snapshot_preview1_environ_get(
    _environ: *mut *mut u8,
    _buf: *mut u8,
) -> i32 {
    SUCCESS
}

#[unsafe(no_mangle)]
unsafe extern "C" fn __imported_wasi_snapshot_preview1_fd_write(
    fd: i32,
    iovs: *const IoVec,
    iovs_len: usize,
    written: *mut usize,
) -> i32 {
    if fd != 1 && fd != 2 {
        return BADF;
    }
    // SAFETY: the caller passes `iovs_len` buffers and a usize to count in.
    unsafe {
        let total = (0..iovs_len).map(|i| (*iovs.add(i)).len).sum();
        written.write(total);
    }
    SUCCESS
}

#[unsafe(no_mangle)]
unsafe extern "C" fn __imported_wasi_snapshot_preview1_fd_read(
    fd: i32,
    _iovs: *const IoVec,
    _iovs_len: usize,
    read: *mut usize,
) -> i32 {
    if fd != 0 {
        return BADF;
    }
    // SAFETY: the caller passes a usize to count in. Stdin is empty.
    unsafe { read.write(0) };
    SUCCESS
}

#[unsafe(no_mangle)]
unsafe extern "C" fn __imported_wasi_snapshot_preview1_fd_close(fd: i32) -> i32 {
    if (0..=2).contains(&fd) { SUCCESS } else { BADF }
}

#[unsafe(no_mangle)]
unsafe extern "C" fn __imported_wasi_snapshot_preview1_fd_seek(
    fd: i32,
    _offset: i64,
    _whence: i32,
    _position: *mut u64,
) -> i32 {
    if (0..=2).contains(&fd) { SPIPE } else { BADF }
}

/// `fdstat` as preview 1 lays it out.
#[repr(C)]
struct FdStat {
    filetype: u8,
    flags: u16,
    rights_base: u64,
    rights_inheriting: u64,
}

#[unsafe(no_mangle)]
unsafe extern "C" fn __imported_wasi_snapshot_preview1_fd_fdstat_get(
    fd: i32,
    stat: *mut FdStat,
) -> i32 {
    if !(0..=2).contains(&fd) {
        return BADF;
    }
    // SAFETY: the caller passes an fdstat of its own.
    unsafe {
        stat.write(FdStat {
            filetype: CHARACTER_DEVICE,
            flags: 0,
            rights_base: u64::MAX,
            rights_inheriting: 0,
        })
    };
    SUCCESS
}

#[unsafe(no_mangle)]
unsafe extern "C" fn __imported_wasi_snapshot_preview1_proc_exit(_code: i32) -> ! {
    core::arch::wasm32::unreachable()
}
