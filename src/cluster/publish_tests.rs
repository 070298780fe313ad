use std::time::Instant;

use super::*;
use crate::cluster::etcd::connect;
use crate::cluster::testing::TestEtcd;

fn upsert(path: &str, text: &str) -> FileChange {
    FileChange::Upserted { path: PathBuf::from(path), bytes: text.as_bytes().to_vec() }
}

const A1: &str = "name: a\ncommand: [/bin/true]\n";
const A2: &str = "name: a\ncommand: [/bin/false]\n";
const A_BAD: &str = "name: a\ncommand: [/bin/true]\nprioritee: 2\n";

#[test]
fn the_last_good_text_of_each_file_stays_in_force() {
    let admission = AdmissionRules::default();
    let mut published = Published::new();
    published.absorb(
        vec![upsert("/p/a.yaml", A1), upsert("/p/b.yaml", "name: b\ncommand: [/bin/true]\n")],
        &admission,
    );
    assert_eq!(published.wanted()["a"].source, A1);
    assert_eq!(published.wanted()["a"].file, "/p/a.yaml");

    let notes = published.absorb(vec![upsert("/p/a.yaml", A_BAD)], &admission);
    assert!(matches!(&notes[..], [FileNote::Invalid { .. }]), "{notes:?}");
    assert_eq!(published.wanted()["a"].source, A1, "the bad edit leaves the last good text");

    published.absorb(vec![upsert("/p/a.yaml", A2)], &admission);
    assert_eq!(published.wanted()["a"].source, A2);

    // What the cluster cannot run is a problem of the file, like a typo.
    published
        .absorb(vec![upsert("/p/a.yaml", "name: a\ncommand: [/bin/true]\narray: 2\n")], &admission);
    assert_eq!(published.wanted()["a"].source, A2);

    published.absorb(vec![FileChange::Removed { path: "/p/a.yaml".into() }], &admission);
    assert_eq!(published.wanted().keys().collect::<Vec<_>>(), ["b"]);
}

async fn job_source(
    client: &mut Client,
    keys: &Keys,
    name: &str,
) -> Option<(String, Option<String>)> {
    let (jobs, _) = apply::read_jobs(client, keys).await.unwrap();
    jobs.get(name).map(|c| {
        let record = c.record.clone().unwrap();
        (record.source, record.origin)
    })
}

/// Polls etcd until `want` holds for job `name`; the publisher's watcher
/// waits for files to settle, so the change comes some time after the write.
async fn wait_for(
    client: &mut Client,
    keys: &Keys,
    name: &str,
    want: impl Fn(&Option<(String, Option<String>)>) -> bool,
) -> Option<(String, Option<String>)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = job_source(client, keys, name).await;
        if want(&got) || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_directory_follows_its_files_into_the_cluster() {
    let Some(etcd) = TestEtcd::start() else { return };
    let keys = Keys::new("/publish-t1");
    let config = etcd.config("n1", keys.prefix());
    let mut client = connect(&config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir_path = dir.path().to_owned();
    // A job applied by hand under a name the directory also uses.
    let hand =
        apply::Wanted { name: "h".into(), file: "/root/h.yaml".into(), source: "by hand".into() };
    let stamp = Stamp { applied_by: "root@x".into(), applied_at: Timestamp::now() };
    apply::apply(&mut client, &keys, &[("h".to_owned(), hand)].into(), &Owner::Hand, &stamp, false)
        .await
        .unwrap();
    std::fs::write(dir_path.join("a.yaml"), A1).unwrap();
    std::fs::write(dir_path.join("h.yaml"), "name: h\ncommand: [/bin/true]\n").unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(
        connect(&config).await.unwrap(),
        keys.clone(),
        dir_path.clone(),
        "n1".into(),
        AdmissionRules::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let origin = origin("n1", &dir_path);

    let got = wait_for(&mut client, &keys, "a", |g| g.is_some()).await;
    assert_eq!(got, Some((A1.to_owned(), Some(origin.clone()))));
    // The job applied by hand is left alone.
    assert_eq!(job_source(&mut client, &keys, "h").await, Some(("by hand".into(), None)));

    // A bad edit: the last good version stays in the cluster; a good one replaces it.
    std::fs::write(dir_path.join("a.yaml"), A_BAD).unwrap();
    std::fs::write(dir_path.join("b.yaml"), "name: b\ncommand: [/bin/true]\n").unwrap();
    // b's arrival shows the batch with the bad a was taken.
    wait_for(&mut client, &keys, "b", |g| g.is_some()).await.expect("b published");
    assert_eq!(job_source(&mut client, &keys, "a").await.unwrap().0, A1);
    std::fs::write(dir_path.join("a.yaml"), A2).unwrap();
    let got = wait_for(&mut client, &keys, "a", |g| g.as_ref().is_some_and(|(s, _)| s == A2)).await;
    assert_eq!(got.unwrap().0, A2);

    // A removed file takes its job out of the cluster.
    std::fs::remove_file(dir_path.join("a.yaml")).unwrap();
    assert_eq!(wait_for(&mut client, &keys, "a", |g| g.is_none()).await, None);
    assert!(job_source(&mut client, &keys, "b").await.is_some());
    assert_eq!(job_source(&mut client, &keys, "h").await.unwrap().0, "by hand");

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
