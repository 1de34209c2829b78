//! Measuring a benchmark's child process from inside: its peak RSS, its CPU time, one CPU to run on.

/// This process's peak resident set (`VmHWM`), in KiB; 0 where `/proc` has no answer.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Pins this thread (and the threads it starts later) to the last CPU: one measurement, one core.
pub fn pin_to_one_cpu() {
    // SAFETY: sched_setaffinity on the calling thread with a zeroed, then filled, cpu_set_t owned here.
    unsafe {
        let ncpu = libc::sysconf(libc::_SC_NPROCESSORS_ONLN).max(1) as usize;
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(ncpu - 1, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// User plus system CPU time of this process so far, in seconds: unlike wall time, barely moved by the other
/// processes sharing the machine.
pub fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the zeroed struct owned here.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}
