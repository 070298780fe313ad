use std::fs;

use super::*;
use crate::cluster::etcd::connect;
use crate::cluster::testing::TestEtcd;
use crate::watch::policy::Rules;

fn wanted(jobs: &[(&str, &str, &str)]) -> BTreeMap<String, Wanted> {
    jobs.iter()
        .map(|(name, file, source)| {
            let job = Wanted {
                name: name.to_string(),
                file: file.to_string(),
                source: source.to_string(),
            };
            (name.to_string(), job)
        })
        .collect()
}

fn record(name: &str, file: &str, source: &str, origin: Option<&str>) -> JobRecord {
    JobRecord {
        name: name.into(),
        file: file.into(),
        source: source.into(),
        applied_at: Timestamp::from_millis(1),
        applied_by: "root@h".into(),
        origin: origin.map(str::to_owned),
    }
}

fn current(records: Vec<JobRecord>) -> BTreeMap<String, Current> {
    records
        .into_iter()
        .enumerate()
        .map(|(i, r)| (r.name.clone(), Current { record: Ok(r), mod_revision: i as i64 + 2 }))
        .collect()
}

#[test]
fn the_plan_sorts_jobs_into_added_changed_unchanged_and_leaves_the_rest() {
    let want =
        wanted(&[("a", "/d/a.yaml", "A"), ("b", "/d/b.yaml", "B2"), ("c", "/d/c.yaml", "C")]);
    let have = current(vec![
        record("b", "/d/b.yaml", "B", None),
        record("c", "/elsewhere/c.yaml", "C", None),
        record("d", "/d/d.yaml", "D", None),
    ]);
    let plan = plan(&want, &have, &Owner::Hand);
    assert_eq!(plan.added, ["a"]);
    assert_eq!(plan.changed, ["b"]);
    // Same text from another file: nothing to write, the run id stays.
    assert_eq!(plan.unchanged, ["c"]);
    assert!(plan.removed.is_empty());
    assert_eq!(plan.left_alone, ["d"]);
    assert_eq!(
        plan.to_string(),
        "added a\nchanged b\nunchanged c\nleft alone (in the cluster, not in these files): d\n"
    );
}

#[test]
fn prune_removes_only_jobs_from_the_given_files_and_directories() {
    let want = wanted(&[("a", "/d/a.yaml", "A")]);
    let have = current(vec![
        record("gone-from-dir", "/d/x.yaml", "X", None),
        record("gone-from-file", "/e/one.yaml", "Y", None),
        record("deeper", "/d/sub/z.yaml", "Z", None),
        record("other", "/f/o.yaml", "O", None),
    ]);
    let owner = Owner::HandPruning {
        files: ["/e/one.yaml".to_owned()].into(),
        dirs: ["/d".to_owned()].into(),
    };
    let plan = plan(&want, &have, &owner);
    assert_eq!(plan.removed, ["gone-from-dir", "gone-from-file"]);
    assert_eq!(plan.left_alone, ["deeper", "other"]);
}

#[test]
fn a_publisher_touches_only_its_own_jobs() {
    let mine = "n1:/srv/pub";
    let want = wanted(&[("a", "/srv/pub/a.yaml", "A"), ("hand", "/srv/pub/h.yaml", "H2")]);
    let have = current(vec![
        record("hand", "/root/h.yaml", "H", None),
        record("old", "/srv/pub/old.yaml", "O", Some(mine)),
        record("theirs", "/srv/pub/t.yaml", "T", Some("n2:/srv/pub")),
    ]);
    let plan = plan(&want, &have, &Owner::Origin(mine.into()));
    assert_eq!(plan.added, ["a"]);
    assert!(plan.changed.is_empty());
    assert_eq!(plan.held_elsewhere, [("hand".to_owned(), "applied by root@h".to_owned())]);
    assert_eq!(plan.removed, ["old"]);
    assert_eq!(plan.left_alone, ["theirs"]);
}

#[test]
fn a_bad_record_is_overwritten_when_wanted_and_otherwise_reported() {
    let bad = |key: &str| Current {
        record: Err(BadRecord { key: key.into(), reason: "garbage".into() }),
        mod_revision: 9,
    };
    let have: BTreeMap<String, Current> =
        [("a".to_owned(), bad("/p/jobs/a")), ("z".to_owned(), bad("/p/jobs/z"))].into();
    let owner = Owner::HandPruning { files: BTreeSet::new(), dirs: ["/d".to_owned()].into() };
    let plan = plan(&wanted(&[("a", "/d/a.yaml", "A")]), &have, &owner);
    assert_eq!(plan.changed, ["a"]);
    assert_eq!(plan.bad, ["z"]);
    assert!(plan.removed.is_empty());
}

/// One cluster job in a generated case: name index, text, origin and file.
type Case = (u8, u8, Option<u8>, u8);

fn case_record(&(name, text, origin, file): &Case) -> JobRecord {
    record(
        &format!("j{name}"),
        &format!("/d{file}/j{name}.yaml"),
        &format!("T{text}"),
        origin.map(|o| format!("n{o}:/p")).as_deref(),
    )
}

proptest::proptest! {
    /// Whatever is wanted and whatever the cluster holds: each wanted job
    /// lands in exactly one of added / changed / unchanged / held
    /// elsewhere, each other job in exactly one of removed / left alone /
    /// bad; only the owner's jobs are removed; nothing unchanged is written.
    #[test]
    fn the_plan_accounts_for_every_job_once(
        wanted_cases in proptest::collection::vec((0u8..12, 0u8..3, proptest::option::of(0u8..2), 0u8..2), 0..10),
        current_cases in proptest::collection::vec((0u8..12, 0u8..3, proptest::option::of(0u8..2), 0u8..2), 0..10),
        bad in proptest::collection::btree_set(0u8..12, 0..3),
        owner_kind in 0u8..3,
    ) {
        let want: BTreeMap<String, Wanted> = wanted_cases
            .iter()
            .map(|c| {
                let r = case_record(c);
                (r.name.clone(), Wanted { name: r.name, file: r.file, source: r.source })
            })
            .collect();
        let mut have = current(current_cases.iter().map(case_record).collect());
        for b in &bad {
            let key = format!("/p/jobs/j{b}");
            have.insert(format!("j{b}"), Current {
                record: Err(BadRecord { key, reason: "x".into() }),
                mod_revision: 1,
            });
        }
        let owner = match owner_kind {
            0 => Owner::Hand,
            1 => Owner::HandPruning { files: BTreeSet::new(), dirs: ["/d0".to_owned()].into() },
            _ => Owner::Origin("n0:/p".into()),
        };
        let plan = plan(&want, &have, &owner);
        let count = |name: &String, lists: &[&Vec<String>]| lists.iter().filter(|l| l.contains(name)).count();
        let held: Vec<String> = plan.held_elsewhere.iter().map(|(n, _)| n.clone()).collect();
        for name in want.keys() {
            proptest::prop_assert_eq!(count(name, &[&plan.added, &plan.changed, &plan.unchanged, &held]), 1);
            proptest::prop_assert_eq!(count(name, &[&plan.removed, &plan.left_alone, &plan.bad]), 0);
        }
        for (name, c) in &have {
            if want.contains_key(name) {
                if plan.unchanged.contains(name) {
                    proptest::prop_assert_eq!(&c.record.as_ref().unwrap().source, &want[name].source);
                }
                continue;
            }
            proptest::prop_assert_eq!(count(name, &[&plan.removed, &plan.left_alone, &plan.bad]), 1);
            if plan.removed.contains(name) {
                proptest::prop_assert!(owner.owns(c.record.as_ref().unwrap()));
            }
        }
        for name in plan.added.iter() {
            proptest::prop_assert!(!have.contains_key(name));
        }
        if owner == Owner::Hand {
            proptest::prop_assert!(plan.removed.is_empty() && plan.held_elsewhere.is_empty());
        }
    }
}

fn rules() -> LoadRules {
    LoadRules { files: Rules::checking_as(nix::unistd::geteuid()), admission: None }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn loading_keeps_each_files_whole_text_and_refuses_what_the_cluster_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let two = "name: a\ncommand: [/bin/true]\n---\nname: b\ncommand: [/bin/true]\n";
    write(dir.path(), "two.yaml", two);
    let loaded = load(&[dir.path()], &rules());
    assert!(loaded.is_ok());
    assert_eq!(loaded.wanted.len(), 2);
    assert_eq!(loaded.wanted["b"].source, two);
    let canonical = fs::canonicalize(dir.path()).unwrap();
    assert_eq!(loaded.wanted["a"].file, canonical.join("two.yaml").display().to_string());
    assert!(loaded.dirs_given.contains(&canonical.display().to_string()));

    let bad = write(
        dir.path(),
        "bad.yaml",
        "name: c\ncommand: [/bin/true]\nafter: [a]\n---\nname: d\ncommand: [/bin/true]\n\
         array: 3\n",
    );
    let loaded = load(std::slice::from_ref(&bad), &rules());
    assert!(!loaded.is_ok());
    assert!(loaded.wanted.is_empty());
    let problems: Vec<String> = loaded.diagnostics().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with(&format!("{}:3:", bad.display())), "{problems:?}");
    assert!(problems[0].contains("after: refused: a cluster job cannot wait"), "{problems:?}");
    assert!(
        problems[1].contains("arrays run on one node: use corral submit there"),
        "{problems:?}"
    );

    // A name defined twice across the files: refused as validate refuses it.
    let first = write(dir.path(), "first.yaml", "name: dup\ncommand: [/bin/true]\n");
    let second = write(dir.path(), "second.yaml", "name: dup\ncommand: [/bin/false]\n");
    let loaded = load(&[first.clone(), second.clone()], &rules());
    assert!(loaded.wanted.is_empty());
    let problems: Vec<String> = loaded.diagnostics().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [format!(
            "{}:1:1: name: job \"dup\" is also defined at {}:1:1",
            second.display(),
            first.display()
        )]
    );
}

// ---- against a real etcd -------------------------------------------------

fn stamp() -> Stamp {
    Stamp { applied_by: "root@test".into(), applied_at: Timestamp::now() }
}

async fn records(client: &mut Client, keys: &Keys) -> BTreeMap<String, (JobRecord, i64)> {
    let (jobs, _) = read_jobs(client, keys).await.unwrap();
    jobs.into_iter().map(|(name, c)| (name, (c.record.unwrap(), c.mod_revision))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_writes_each_job_once_in_one_transaction_and_only_what_changed() {
    let Some(etcd) = TestEtcd::start() else { return };
    let keys = Keys::new("/apply-t1");
    let mut client = connect(&etcd.config("n1", keys.prefix())).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", "name: a\ncommand: [/bin/true]\n");
    write(
        dir.path(),
        "bc.yaml",
        "name: b\ncommand: [/bin/true]\n---\nname: c\ncommand: [/bin/true]\n",
    );
    let owner = Owner::Hand;

    let first = load(&[dir.path()], &rules());
    let applied = apply(&mut client, &keys, &first.wanted, &owner, &stamp(), false).await.unwrap();
    assert_eq!(applied.plan.added, ["a", "b", "c"]);
    let revision = applied.revision.unwrap();
    let stored = records(&mut client, &keys).await;
    assert_eq!(stored.len(), 3);
    // One transaction: every key carries its revision.
    assert!(stored.values().all(|(_, rev)| *rev == revision), "{stored:?}");
    assert_eq!(stored["c"].0.source, fs::read_to_string(dir.path().join("bc.yaml")).unwrap());

    // The same files again: nothing is written.
    let again = apply(&mut client, &keys, &first.wanted, &owner, &stamp(), false).await.unwrap();
    assert_eq!(again.revision, None);
    assert_eq!(again.plan.unchanged, ["a", "b", "c"]);
    assert_eq!(records(&mut client, &keys).await, stored);

    // One file changed: only its job is written.
    write(dir.path(), "a.yaml", "name: a\ncommand: [/bin/false]\n");
    let second = load(&[dir.path()], &rules());
    let changed = apply(&mut client, &keys, &second.wanted, &owner, &stamp(), false).await.unwrap();
    assert_eq!(changed.plan.changed, ["a"]);
    let after = records(&mut client, &keys).await;
    assert_eq!(after["a"].1, changed.revision.unwrap());
    assert_eq!((after["b"].1, after["c"].1), (revision, revision));

    // A bad file: load refuses it and nothing reaches etcd.
    write(dir.path(), "a.yaml", "name: a\ncommand: [/bin/true]\nprioritee: 3\n");
    let bad = load(&[dir.path()], &rules());
    assert!(!bad.is_ok() && bad.wanted.is_empty());
    let problem = bad.diagnostics().next().unwrap().to_string();
    assert!(
        problem.starts_with(&format!("{}:3:1:", dir.path().join("a.yaml").display())),
        "{problem}"
    );

    // --prune with the directory: a job whose file is gone is removed.
    fs::remove_file(dir.path().join("a.yaml")).unwrap();
    let pruned = load(&[dir.path()], &rules());
    let owner =
        Owner::HandPruning { files: pruned.files_given.clone(), dirs: pruned.dirs_given.clone() };
    let dry = apply(&mut client, &keys, &pruned.wanted, &owner, &stamp(), true).await.unwrap();
    assert_eq!((dry.plan.removed.clone(), dry.revision), (vec!["a".to_owned()], None));
    assert!(records(&mut client, &keys).await.contains_key("a"), "a dry run writes nothing");
    let done = apply(&mut client, &keys, &pruned.wanted, &owner, &stamp(), false).await.unwrap();
    assert_eq!(done.plan.removed, ["a"]);
    assert_eq!(records(&mut client, &keys).await.keys().collect::<Vec<_>>(), ["b", "c"]);

    // delete: one transaction, unknown names reported.
    let deleted = delete(&mut client, &keys, &["b".into(), "nope".into()]).await.unwrap();
    assert_eq!((deleted.deleted, deleted.unknown), (vec!["b".to_owned()], vec!["nope".to_owned()]));
    assert_eq!(records(&mut client, &keys).await.keys().collect::<Vec<_>>(), ["c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_between_read_and_write_fails_the_transaction() {
    let Some(etcd) = TestEtcd::start() else { return };
    let keys = Keys::new("/apply-t2");
    let mut client = connect(&etcd.config("n1", keys.prefix())).await.unwrap();
    let want = wanted(&[("a", "/d/a.yaml", "name: a\ncommand: [/bin/true]\n")]);
    let (before, _) = read_jobs(&mut client, &keys).await.unwrap();
    let plan = plan(&want, &before, &Owner::Hand);
    assert_eq!(plan.added, ["a"]);
    // Someone else writes the key after our read.
    let theirs = record("a", "/x/a.yaml", "theirs", None);
    client.put(keys.job("a"), encode(&theirs), None).await.unwrap();
    let txn = transaction(&keys, &plan, &want, &before, &Owner::Hand, &stamp());
    assert!(!client.txn(txn).await.unwrap().succeeded());
    assert_eq!(records(&mut client, &keys).await["a"].0, theirs, "theirs stays");
    // apply reads afresh and goes through on its retry.
    let applied = apply(&mut client, &keys, &want, &Owner::Hand, &stamp(), false).await.unwrap();
    assert_eq!(applied.plan.changed, ["a"]);
    // A record that does not parse is reported by read_jobs, not a failure.
    client.put(keys.job("junk"), "{", None).await.unwrap();
    let (jobs, _) = read_jobs(&mut client, &keys).await.unwrap();
    assert!(jobs["junk"].record.as_ref().unwrap_err().to_string().contains("/apply-t2/jobs/junk"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_larger_than_etcd_takes_is_refused_whole_with_the_reason() {
    let Some(etcd) = TestEtcd::start() else { return };
    let keys = Keys::new("/apply-t3");
    let mut client = connect(&etcd.config("n1", keys.prefix())).await.unwrap();
    // etcd's default --max-txn-ops is 128; the test member keeps it.
    let names: Vec<String> = (0..129).map(|i| format!("j{i}")).collect();
    let jobs: Vec<(&str, &str, &str)> =
        names.iter().map(|n| (n.as_str(), "/d/x.yaml", "X")).collect();
    let error =
        apply(&mut client, &keys, &wanted(&jobs), &Owner::Hand, &stamp(), false).await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, ApplyError::Write { keys: 129, .. }), "{text}");
    assert!(text.contains("--max-txn-ops"), "{text}");
    assert!(read_jobs(&mut client, &keys).await.unwrap().0.is_empty(), "nothing was written");
}
