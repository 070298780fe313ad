//! Block I/O limits through the agent on this host (v1 `blkio`): a job
//! writing with `O_DIRECT` to the root disk under `write_bps: 1Mi` is held
//! near 1 MiB/s, and the run's I/O counters in `/metrics` (kept for live
//! runs only) show what it wrote.

mod agent_harness;

use std::os::unix::fs::MetadataExt;

use agent_harness::{job, secs, TestAgent};

const MIB: f64 = 1024.0 * 1024.0;
/// What the job writes: 64 KiB blocks, a few MiB in all.
const WRITTEN: u64 = 4 << 20;

/// `MAJ:MIN` of the block device holding `path` (a whole disk here: the
/// root filesystem is on `/dev/vda` itself).
fn device_of(path: &std::path::Path) -> (u32, u32) {
    let dev = std::fs::metadata(path).unwrap().dev();
    (libc::major(dev), libc::minor(dev))
}

#[test]
fn a_direct_writer_is_held_near_its_write_limit_and_its_bytes_are_counted() {
    let mut agent = TestAgent::new("");
    let (major, minor) = device_of(&agent.data);
    let disk = format!("{major}:{minor}");
    assert!(
        std::fs::read_to_string(format!("/sys/dev/block/{disk}/uevent"))
            .unwrap()
            .contains("DEVTYPE=disk"),
        "{} must be on a whole disk for a throttle on it to apply",
        agent.data.display()
    );
    agent.start();
    let out = agent.data_file("direct.out");
    let took = agent.data_file("direct.ns");
    let release = agent.data_file("direct.release");
    // The job stays until the test has read its counters.
    let script = format!(
        "start=$(date +%s%N); \
         dd if=/dev/zero of={out} bs=64k count={blocks} oflag=direct 2>/dev/null || exit 1; \
         end=$(date +%s%N); echo $((end - start)) > {took}.tmp; mv {took}.tmp {took}; \
         while [ ! -e {release} ]; do sleep 0.1; done",
        out = out.display(),
        took = took.display(),
        release = release.display(),
        blocks = WRITTEN / (64 << 10),
    );
    let limits = format!("resources: {{io: {{limits: [{{device: '{disk}', write_bps: 1Mi}}]}}}}\n");
    agent.write_job("direct.yaml", &job("direct", &script, &limits));
    agent.wait_for("the write to end", secs(60), || took.exists());

    assert_eq!(std::fs::metadata(&out).unwrap().len(), WRITTEN);
    let nanos: f64 = agent.read_data("direct.ns").trim().parse().unwrap();
    let rate = WRITTEN as f64 / MIB / (nanos / 1e9);
    println!("{} MiB written with O_DIRECT at {rate:.2} MiB/s under write_bps: 1Mi", WRITTEN >> 20);
    // The throttle lets a first slice through at once, so the rate is a
    // little above the limit; unthrottled, this disk takes hundreds of MiB/s.
    assert!((0.25..3.0).contains(&rate), "{rate:.2} MiB/s under a 1 MiB/s limit");

    let (_, _, metrics) = agent.http_get("/metrics", None);
    let prefix = format!(
        "corral_run_io_bytes_total{{job_name=\"direct\",run=\"direct-1\",device=\"{disk}\",direction=\"write\"}} "
    );
    let line = metrics.lines().find(|l| l.starts_with(&prefix));
    let counted: u64 = line
        .unwrap_or_else(|| panic!("no {prefix} in:\n{metrics}"))
        .strip_prefix(&prefix)
        .unwrap()
        .parse()
        .unwrap();
    println!("/metrics counted {counted} bytes written to {disk}");
    // The job's own writes, and at most a little for the file's metadata.
    assert!(
        (WRITTEN..=WRITTEN + (1 << 20)).contains(&counted),
        "counted {counted} bytes written, the job wrote {WRITTEN}"
    );
    std::fs::write(&release, "").unwrap();
    agent.wait_phase("direct-1", "succeeded", secs(30));
}
