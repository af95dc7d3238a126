//! A raised priority (a lower nice value) for the threads that feed a sound device.
//!
//! On a busy machine the device's callback thread competes with every other ordinary thread.
//! Woken more than a buffer late (about 20 ms through PulseAudio) it lets the device run dry,
//! and after such an underrun the sound's timing can be a millisecond or two off for seconds
//! (BENCHMARKS.md, "as heard"). PulseAudio runs its own main thread at nice -11 and its sinks'
//! threads at a real-time priority; the threads that feed it, cpal's callback thread and,
//! through ALSA's pulse plugin, libpulse's mainloop thread, would run at 0.
//!
//! A nice value, unlike a real-time policy, keeps them under the ordinary scheduler: favoured,
//! but never able to starve the rest, and never stuck behind a lock held by an ordinary thread
//! that a real-time one keeps off the CPU (the priority inversion for which cpal does not
//! promote plugin devices such as PulseAudio's to real time).
//!
//! Both threads are started while the stream is opened, and a thread starts with the nice
//! value of the thread that started it; so the opening thread takes the nice value for that
//! moment and then goes back to its own. Lowering a nice value needs `CAP_SYS_NICE` or an
//! `RLIMIT_NICE` allowance: without either, the stream opens at the ordinary priority.

/// The nice value PulseAudio gives its own main thread, and the default for the threads that
/// feed a sound device.
pub const AUDIO_NICE: i32 = -11;

/// Runs `f` with the calling thread's nice value set to `nice`, so that the threads `f` starts
/// inherit it, and then puts the caller's back. Also returns the nice value `f` ran at, or why
/// it could not be set (`f` then ran at the caller's).
pub(crate) fn with_nice<R>(nice: i32, f: impl FnOnce() -> R) -> (R, Result<i32, String>) {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        // On Linux a nice value belongs to a thread, named by its thread id.
        let me = Some(rustix::thread::gettid());
        let previous = getpriority_process(me).and_then(|previous| {
            setpriority_process(me, nice)?;
            Ok(previous)
        });
        let result = f();
        match previous {
            Ok(previous) => {
                // Raising a nice value back is always allowed.
                let _ = setpriority_process(me, previous);
                (result, Ok(nice))
            }
            Err(e) => (result, Err(format!("cannot set nice {nice}: {e}"))),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        (f(), Err(format!("nice {nice} is only set on Linux")))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn current_nice() -> std::io::Result<i32> {
        Ok(rustix::process::getpriority_process(Some(
            rustix::thread::gettid(),
        ))?)
    }

    #[test]
    fn threads_started_inside_get_the_nice_value_and_the_caller_gets_its_own_back() {
        // Runs on a thread of its own so that no other test's thread is touched.
        std::thread::spawn(|| {
            let before = current_nice().unwrap();
            let wanted = (before + 3).min(19);
            // Raising the nice value (a lower priority) is allowed to anyone, so this runs
            // everywhere; lowering it is what the device asks for, where permitted.
            let (inside, got) = with_nice(wanted, || {
                let inner = current_nice().unwrap();
                let child = std::thread::spawn(|| current_nice().unwrap())
                    .join()
                    .unwrap();
                (inner, child)
            });
            assert_eq!(got, Ok(wanted));
            assert_eq!(inside, (wanted, wanted));
            assert_eq!(current_nice().unwrap(), before);
        })
        .join()
        .unwrap();
    }
}
