//! Replicas on S3, against Garage (a real distributed S3 server) on loopback, in the two layouts
//! the README documents: three independent providers as the three replicas with a write quorum
//! of two, and one Garage cluster that keeps three copies itself as one replica. DICOM goes in
//! through the archive's doors (storescu) and comes out (WADO, `strata get`) with its data set
//! byte for byte as sent (C-STORE carries no file meta group: the archive writes its own).

mod common;

use common::garage::Garage;
use common::{add_user, base, http, sop_uid, text, token, tool, uids, Api, Server, TestArchive};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use strata_synth::{Modality, SynthOptions};

/// A small CT study of its own (`seed` makes its UIDs): two series of three slices.
fn study(seed: u64) -> SynthOptions {
    SynthOptions {
        seed,
        patients: 1,
        studies: 1,
        series_per_study: 2,
        slices: 3,
        rows: 64,
        cols: 64,
        modality: Some(Modality::Ct),
        noise: true,
    }
}

/// Sends `files` to the server with dcmtk's storescu; insists every one was acknowledged.
fn store(server: &Server, files: &[PathBuf]) {
    let mut args: Vec<String> = [
        "-aet",
        "MODALITY",
        "-aec",
        "STRATA",
        "-to",
        "10",
        "-ta",
        "10",
        "-td",
        "60",
        "-v",
        "127.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(server.port());
    args.extend(files.iter().map(|f| f.display().to_string()));
    let out = tool(120, "storescu", &args);
    let log = text(&out);
    assert_eq!(
        log.matches("Received Store Response (Success)").count(),
        files.len(),
        "every instance acknowledged:\n{log}\nserver:\n{}",
        server.log_text()
    );
}

/// The data set of a Part-10 file: what follows its file meta group.
fn data_set(part10: &[u8]) -> &[u8] {
    assert!(
        part10.len() > 144 && &part10[128..132] == b"DICM",
        "not Part 10"
    );
    // (0002,0000) UL, explicit VR little endian: tag, "UL", length 4, the group's length
    assert_eq!(&part10[132..138], &[2, 0, 0, 0, b'U', b'L']);
    let group_len = u32::from_le_bytes(part10[140..144].try_into().unwrap()) as usize;
    &part10[144 + group_len..]
}

/// Whether `got` holds the data set of the file sent.
fn same_instance(got: &[u8], sent: &Path) -> bool {
    data_set(got) == data_set(&std::fs::read(sent).unwrap())
}

/// The instance of `file` through WADO-URI, as the archive answers it.
fn wado(server: &Server, bearer: &str, file: &Path) -> Vec<u8> {
    let [study, series, sop] = uids(file);
    let uri = format!(
        "{}/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}&contentType=application/dicom",
        base(server)
    );
    let got = http("GET", &uri, &[("Authorization", bearer)], None);
    assert_eq!(got.status, 200, "{sop}: {}", got.text());
    got.body
}

/// The repair queue's length as `/metrics` reports it.
fn repair_queue(server: &Server, bearer: &str) -> u64 {
    let got = http(
        "GET",
        &format!("{}/metrics", base(server)),
        &[("Authorization", bearer)],
        None,
    );
    assert_eq!(got.status, 200, "{}", got.text());
    got.text()
        .lines()
        // `strata_repair_queue_length{node="…"} N`
        .find(|l| {
            l.starts_with("strata_repair_queue_length{")
                || l.starts_with("strata_repair_queue_length ")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("strata_repair_queue_length in /metrics")
}

/// `strata get` of every file, each data set compared byte for byte with what was sent.
fn get_each(t: &TestArchive, files: &[PathBuf]) {
    let got = t.path("got.dcm");
    for f in files {
        t.ok(&["get", &sop_uid(f), "-o", got.to_str().unwrap()]);
        assert!(
            same_instance(&std::fs::read(&got).unwrap(), f),
            "{} differs",
            f.display()
        );
    }
}

/// Writes `strata.toml` with these replicas and quorum, the repair worker looking every second
/// and the background scrub off (the test runs `strata scrub` itself).
fn configure(t: &TestArchive, replicas: &[String], quorum: usize) {
    let list = replicas
        .iter()
        .map(|r| format!("{r:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::create_dir_all(t.data()).unwrap();
    std::fs::write(
        t.data().join("strata.toml"),
        format!(
            "[store]\nreplicas = [{list}]\nwrite_quorum = {quorum}\n[repair]\ninterval_seconds = 1\n[scrub]\nblobs_per_second = 0\n"
        ),
    )
    .unwrap();
}

/// The archive's admin: a token of theirs.
fn admin(t: &TestArchive) -> String {
    add_user(t, "admin", "admin");
    token(t, "admin")
}

/// Asserts no credential appears in what the archive logged.
fn no_secrets_in(log: &str, garages: &[&Garage]) {
    for g in garages {
        assert!(!log.contains(&g.secret), "a secret key in the log:\n{log}");
        assert!(
            !log.contains(&g.key_id),
            "an access key id in the log:\n{log}"
        );
    }
}

#[test]
fn three_providers_with_a_quorum_of_two_ingest_through_an_outage_and_heal() {
    // Three single-node Garages, each with a key of its own, started side by side.
    let (mut garages, env, urls) = common::garage::three_providers();
    let t = TestArchive::new().with_env(env);
    configure(&t, &urls, 2);
    let before = t.generate("before", &study(1));
    let during = t.generate("during", &study(2));
    let stowed = t.generate("stowed", &study(3));
    let admin = admin(&t);
    let bearer = format!("Bearer {admin}");
    let mut server = t.serve();

    store(&server, &before);
    assert_eq!(
        repair_queue(&server, &bearer),
        0,
        "all three took every copy"
    );

    // Provider B goes down: ingest goes on with A and C, and B's copies wait in the queue.
    garages[1].stop(0);
    let started = Instant::now();
    store(&server, &during);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "a provider down costs retries, not minutes: {:?}",
        started.elapsed()
    );
    let api = Api::new(&server, &admin);
    for f in &stowed {
        let answer = api.stow(f);
        assert_eq!(answer.status, 200, "STOW-RS: {}", answer.text());
    }
    assert!(
        repair_queue(&server, &bearer) >= (during.len() + stowed.len()) as u64,
        "B's missed copies are queued"
    );
    let ready = http("GET", &format!("{}/readyz", base(&server)), &[], None);
    assert_eq!(
        ready.status,
        200,
        "two of three meet the quorum: {}",
        ready.text()
    );
    assert!(
        ready.text().contains("\"replicas_reachable\":2"),
        "{}",
        ready.text()
    );
    for f in before.iter().chain(&during).chain(&stowed) {
        assert!(same_instance(&wado(&server, &bearer, f), f));
    }

    // B comes back: the repair worker writes what it missed, and empties the queue.
    garages[1].restart(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while repair_queue(&server, &bearer) > 0 {
        assert!(
            Instant::now() < deadline,
            "the repair queue did not drain:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    server.stop();
    let log = server.log_text();
    no_secrets_in(&log, &garages.iter().collect::<Vec<_>>());

    let all: Vec<PathBuf> = before.into_iter().chain(during).chain(stowed).collect();
    let n = all.len();
    let scrub = t.ok(&["scrub"]);
    assert!(
        scrub.contains(&format!(
            "{n} blobs, {} copies checked, 0 missing, 0 corrupt",
            3 * n
        )) && scrub.contains("0 unrepaired, 0 lost"),
        "{scrub}"
    );

    // B alone is the archive: with A and C down and the index gone, B rebuilds it, and every
    // instance reads back from B byte for byte.
    garages[0].stop(0);
    garages[2].stop(0);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(t.data().join(format!("index.sqlite{suffix}")));
    }
    let reindexed = t.ok(&["reindex", "--from-replica", "2"]);
    assert!(
        reindexed.contains(&format!("{n} instances indexed")),
        "{reindexed}"
    );
    get_each(&t, &all);
}

#[test]
fn one_garage_cluster_of_three_nodes_as_a_replica_loses_nothing_when_a_node_dies() {
    let mut cluster = Garage::cluster(3);
    // the usual variables, as a deployment with one S3 provider has them
    let t = TestArchive::new().with_env(cluster.credentials("AWS_"));
    let local = format!("file://{}", t.data().join("replica-a").display());
    configure(&t, &[local, cluster.replica_url(0, None)], 2);
    let before = t.generate("before", &study(11));
    let during = t.generate("during", &study(12));
    let after = t.generate("after", &study(13));
    let bearer = format!("Bearer {}", admin(&t));
    let mut server = t.serve();

    store(&server, &before);
    // A node other than the one the archive talks to dies while a study comes in, as in a
    // crash: the cluster's own quorum (two of its three copies) still takes every write.
    std::thread::scope(|s| {
        let sending = s.spawn(|| store(&server, &during));
        std::thread::sleep(Duration::from_millis(300));
        cluster.stop(2);
        sending.join().unwrap();
    });
    store(&server, &after);
    let all: Vec<PathBuf> = before.into_iter().chain(during).chain(after).collect();
    for f in &all {
        assert!(same_instance(&wado(&server, &bearer, f), f));
    }
    assert_eq!(repair_queue(&server, &bearer), 0, "no copy was missed");
    server.stop();
    no_secrets_in(&server.log_text(), &[&cluster]);

    let n = all.len();
    let scrub = t.ok(&["scrub"]);
    assert!(
        scrub.contains(&format!(
            "{n} blobs, {} copies checked, 0 missing, 0 corrupt",
            2 * n
        )),
        "{scrub}\n{}",
        cluster.logs()
    );
    // The cluster alone, one node still down, holds every instance byte for byte.
    std::fs::remove_dir_all(t.data().join("replica-a").join("blobs")).unwrap();
    get_each(&t, &all);
}

/// The store itself on Garage, through object_store's S3 client, in a storage class: a blob
/// written twice (plain PUTs, no `If-None-Match`, which Garage does not honour), a large one
/// through a multipart upload, byte ranges read back by ranged GETs of only the segments they need, and a refused
/// key reported without a word of it.
#[tokio::test(flavor = "multi_thread")]
async fn blobs_on_garage_are_overwritten_uploaded_in_parts_and_read_by_range() {
    use std::sync::Arc;
    use strata_store::{address_of, address_of_file, crypt::MasterKey, Replica, Replicas, Store};
    let g = tokio::task::spawn_blocking(Garage::single).await.unwrap();
    let env = g.credentials("AWS_").into_iter();
    // every object written in the storage class the URL names (Garage takes the header and
    // keeps one class; AWS, Google and Azure honour it)
    let url = format!("{}&storage_class=STANDARD", g.replica_url(0, None));
    let replica = Replica::open_with_env(&url, env).unwrap();
    let store = Store::new(
        Arc::new(MasterKey::from_secret(&[5; 32])),
        Replicas::new(vec![replica], 1),
    );

    let plain: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let id = address_of(store.address_key(), &plain);

    // A refused key: the error says so, and names neither the key nor its secret.
    let wrong_secret = "0".repeat(64);
    let wrong = [
        ("AWS_ACCESS_KEY_ID".to_string(), g.key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), wrong_secret.clone()),
    ];
    let refused = Store::new(
        Arc::new(MasterKey::from_secret(&[5; 32])),
        Replicas::new(
            vec![Replica::open_with_env(&g.replica_url(0, None), wrong.into_iter()).unwrap()],
            1,
        ),
    );
    let error = refused.put(&id, &plain).await.unwrap_err().to_string();
    assert!(error.contains("403"), "{error}");
    assert!(
        !error.contains(&g.key_id) && !error.contains(&wrong_secret),
        "{error}"
    );
    for _ in 0..2 {
        let report = store.put(&id, &plain).await.unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
    }
    let mut back = Vec::new();
    store
        .read_to(&id, |c| {
            back.extend_from_slice(c);
            Ok(())
        })
        .await
        .unwrap();
    assert!(back == plain, "the overwritten blob reads back whole");

    // 20 MB: three parts of 8 MiB at most, never whole in memory on the way in
    let dir = tempfile::tempdir().unwrap();
    let big_file = dir.path().join("big");
    let big: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(&big_file, &big).unwrap();
    let big_id = address_of_file(store.address_key(), &big_file).unwrap();
    let report = store.put_file(&big_id, &big_file).await.unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    store.verify(&big_id, 0).await.unwrap();
    for r in [
        0..1u64,
        65_535..65_537,
        9_000_000..9_400_000,
        19_999_990..20_000_100,
    ] {
        let (got, bad) = store.read_range(&big_id, r.clone()).await.unwrap();
        let end = (r.end as usize).min(big.len());
        assert!(got == big[r.start as usize..end], "{r:?}");
        assert!(bad.is_empty(), "{bad:?}");
    }
}
