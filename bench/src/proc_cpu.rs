//! CPU time a process has used, read from Linux's `/proc`: how much of the machine a
//! server and the load generator each spent on a run, per operation. On a shared
//! two-core machine throughput moves by 10–20% from run to run, while the CPU spent
//! per operation is steadier and says why one server is faster than another.

use std::time::Duration;

/// User plus system CPU time in the text of `/proc/PID/stat` (fields 14 and 15, in
/// clock ticks of `ticks_per_second`); `None` when the text does not parse. The
/// command name (field 2) may hold spaces and parentheses, so fields are counted
/// from its last `)`.
pub fn cpu_time_from_stat(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // The first field after the name is field 3 (the state).
    let mut fields = after_name.split_whitespace().skip(14 - 3);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    let ticks = ticks_per_second.max(1);
    let total = user + system;
    Some(Duration::from_secs(total / ticks) + Duration::from_nanos((total % ticks) * 1_000_000_000 / ticks))
}

/// CPU time used so far by process `pid` (`None` if it is gone).
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    read(&format!("/proc/{pid}/stat"))
}

/// CPU time used so far by this process, every thread included.
pub fn own_cpu_time() -> Option<Duration> {
    read("/proc/self/stat")
}

fn read(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    cpu_time_from_stat(&stat, rustix::param::clock_ticks_per_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_counted_from_the_last_parenthesis_of_the_name() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 125 0 0 20 0 9 0 77 0 0";
        assert_eq!(cpu_time_from_stat(stat, 100), Some(Duration::from_millis(3750)));
        assert_eq!(cpu_time_from_stat(stat, 1000), Some(Duration::from_millis(375)));
    }

    #[test]
    fn truncated_or_garbled_text_gives_none() {
        assert_eq!(cpu_time_from_stat("4242 (name) S 1 2 3", 100), None);
        assert_eq!(cpu_time_from_stat("no parenthesis at all", 100), None);
        assert_eq!(cpu_time_from_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 ten 5", 100), None);
    }

    #[test]
    fn this_process_accumulates_cpu_time_while_it_works() {
        let before = own_cpu_time().expect("own CPU time");
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while own_cpu_time().expect("own CPU time") <= before {
            assert!(started.elapsed() < Duration::from_secs(10), "CPU time never grew");
            for i in 0..100_000u64 {
                x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
            }
        }
        std::hint::black_box(x);
        assert!(process_cpu_time(std::process::id()).expect("by PID") > before);
    }
}
