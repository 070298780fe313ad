//! Job files: any bytes through the compiler the agent and `corral validate` use.
//!
//! Beyond not panicking: a file either compiles to jobs or is refused with at least
//! one diagnostic naming the file; every compiled job's name is a valid cgroup name for
//! its runs, so a job that compiles can always be given a cgroup; a compiled schedule
//! matches some day (the compiler refuses the ones that never fire); and compiling is
//! deterministic.

#![no_main]

use std::path::Path;

use corral::cgroup::CgroupName;
use corral::spec::compile_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let file = Path::new("jobs/fuzz.yaml");
    let compiled = compile_bytes(file, bytes);
    match &compiled {
        Ok(jobs) => {
            for job in jobs {
                let name = job.spec.name.as_str();
                assert!(
                    corral::vocab::JobName::parse(name).is_ok(),
                    "compiled name {name:?} is not a job name"
                );
                for seq in [1, u64::MAX] {
                    if let Err(e) = CgroupName::for_run(name, seq) {
                        panic!("job {name:?} compiled, but run {seq} gets no cgroup: {e}");
                    }
                }
                if let Some(recurrence) = &job.spec.recurrence {
                    assert!(
                        recurrence.schedule.matches_some_day(),
                        "schedule {:?} compiled but never fires",
                        recurrence.schedule.as_str()
                    );
                }
                assert_eq!(job.origin.file, file);
            }
        }
        Err(diagnostics) => {
            assert!(!diagnostics.0.is_empty(), "refused without a reason");
            for d in &diagnostics.0 {
                assert_eq!(d.file, file);
                let shown = d.to_string();
                assert!(shown.starts_with("jobs/fuzz.yaml"), "{shown}");
            }
        }
    }
    assert_eq!(compile_bytes(file, bytes), compiled, "compiling twice differs");
});
