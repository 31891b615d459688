//! CPU time of a future: the thread CPU time spent inside its polls, summed.
//! A run may move between worker threads; each poll is measured on the
//! thread that runs it.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is
    // supported on every Linux this runs on.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `future`, returning its output and the CPU time its polls took.
pub async fn measure<F: Future>(future: F) -> (F::Output, Duration) {
    let mut future = pin!(future);
    let mut spent = Duration::ZERO;
    let output = std::future::poll_fn(|cx| {
        let start = thread_cpu_now();
        let poll = future.as_mut().poll(cx);
        spent += thread_cpu_now().saturating_sub(start);
        match poll {
            Poll::Ready(output) => Poll::Ready(output),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    (output, spent)
}
