//! Several `strata serve` processes on one PostgreSQL index (each its own data directory, the
//! same master key, replicas and database), receiving the same new patients and studies at the
//! same moment: one person per patient, one study row with every instance, no store refused,
//! one intact audit chain, and a reindex from a replica that gives the same persons and
//! studies.

mod common;

use common::{text, tool, IndexEngine, TestArchive};
use strata_index::{Index, PersonSearch};
use strata_synth::{self as synth, Modality, SynthOptions};

const NAMES: [&str; 4] = ["SMITH^JOHN", "JONES^MARY", "BROWN^PETER", "TAYLOR^SUSAN"];
/// Instances of each round's study: two series of four.
const INSTANCES: usize = 8;

/// Writes round `round`'s study (a new patient, `C<round>`) under `dir`; returns its files.
fn round_study(dir: &std::path::Path, round: usize) -> Vec<std::path::PathBuf> {
    let opts = SynthOptions {
        seed: 4200 + round as u64,
        patients: 1,
        studies: 1,
        series_per_study: 2,
        slices: INSTANCES / 2,
        rows: 16,
        cols: 16,
        modality: Some(Modality::Ct),
        noise: false,
    };
    std::fs::create_dir_all(dir).unwrap();
    let mut files = vec![];
    for (i, mut spec) in synth::plan(&opts).unwrap().into_iter().enumerate() {
        spec.patient_name = NAMES[round].into();
        spec.patient_id = format!("C{round}");
        spec.patient_birth_date = format!("19{}0{}1{}", 50 + round, 1 + round, round);
        spec.patient_sex = "M".into();
        spec.study_instance_uid = format!("2.25.8{round}1");
        spec.series_instance_uid = format!("2.25.8{round}2{}", i / (INSTANCES / 2));
        spec.sop_instance_uid = format!("2.25.8{round}3{i}");
        let f = dir.join(format!("{i}.dcm"));
        std::fs::write(&f, synth::instance_bytes(&spec)).unwrap();
        files.push(f);
    }
    files
}

/// The persons as sets of local keys (`issuer/id`), sorted: what a person is, whichever key
/// founded it (and so named it) first.
async fn persons(index: &Index) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = index
        .persons(PersonSearch::default())
        .await
        .unwrap()
        .into_iter()
        .map(|p| {
            let mut keys: Vec<String> = p
                .identifiers
                .iter()
                .map(|i| format!("{}/{}", i.issuer, i.patient_id))
                .collect();
            keys.sort();
            keys
        })
        .collect();
    out.sort();
    out
}

/// The studies as the index lists them: UID, patient, series and instances.
async fn studies(index: &Index) -> Vec<String> {
    let mut out: Vec<String> = index
        .studies()
        .await
        .unwrap()
        .into_iter()
        .map(|s| {
            format!(
                "{} {} {} {}",
                s.study_uid, s.patient_id, s.num_series, s.num_instances
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_on_one_postgres_index_store_the_same_new_patients_at_once() {
    let mut t = TestArchive::on(IndexEngine::Postgres);
    let replicas: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|r| format!("file://{}", t.path(&format!("replica-{r}")).display()))
        .collect();
    t.env = vec![
        ("STRATA_MASTER_KEY".into(), "5a".repeat(32)),
        ("STRATA_STORE_REPLICAS".into(), replicas.join(",")),
    ];
    let nodes = [t.node(), t.node()];
    let servers = [t.serve(), nodes[0].serve(), nodes[1].serve()];

    for round in 0..NAMES.len() {
        let files = round_study(&t.path(&format!("round-{round}")), round);
        // Even rounds: every instance to every node, from one modality (one local key).
        // Odd rounds: a third of the study to each node, each called by its own AE title (so
        // three local keys, which the matcher links by their demographics; an instance is not
        // sent twice, as its Part-10 header names the AE title it came from).
        let sends = servers.iter().enumerate().map(|(n, server)| {
            let (aet, mine): (String, Vec<_>) = if round % 2 == 0 {
                ("MODALITY".into(), files.clone())
            } else {
                let mine = files
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % 3 == n)
                    .map(|(_, f)| f.clone())
                    .collect();
                (format!("NODE{n}"), mine)
            };
            let port = server.port();
            std::thread::spawn(move || {
                let mut args: Vec<String> = ["-aet", &aet, "-aec", "STRATA", "-to", "20"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                args.extend(["-v".into(), "127.0.0.1".into(), port]);
                args.extend(mine.iter().map(|f| f.display().to_string()));
                let out = tool(120, "storescu", &args);
                (out.status.success(), mine.len(), text(&out))
            })
        });
        for send in sends.collect::<Vec<_>>() {
            let (ok, sent, log) = send.join().unwrap();
            let stored = log.matches("Received Store Response (Success)").count();
            assert!(
                ok && stored == sent,
                "round {round}: {stored}/{sent}\n{log}"
            );
        }
    }
    drop(servers);

    let index = t.open().await.index;
    let found = persons(&index).await;
    let expected: Vec<Vec<String>> = (0..NAMES.len())
        .map(|round| {
            if round % 2 == 0 {
                vec![format!("MODALITY/C{round}")]
            } else {
                (0..3).map(|n| format!("NODE{n}/C{round}")).collect()
            }
        })
        .collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(found, expected, "one person per patient");
    let listed = studies(&index).await;
    assert_eq!(listed.len(), NAMES.len(), "{listed:?}");
    for s in &listed {
        assert!(
            s.ends_with(&format!(" 2 {INSTANCES}")),
            "every instance of the study: {listed:?}"
        );
    }
    index.close().await.unwrap();

    let verdict = t.ok(&["audit", "verify"]);
    assert!(verdict.contains("intact"), "{verdict}");

    // The replicas alone, into a new database, give the same persons and studies.
    let mut fresh = t.node();
    fresh.index_url = Some(strata_testkit::postgres::database());
    let out = fresh.ok(&["reindex", "--from-replica", "1"]);
    assert!(
        out.contains(&format!("{} instances indexed", NAMES.len() * INSTANCES)),
        "{out}"
    );
    let rebuilt = fresh.open().await.index;
    assert_eq!(persons(&rebuilt).await, found);
    assert_eq!(studies(&rebuilt).await, listed);
    rebuilt.close().await.unwrap();
}
