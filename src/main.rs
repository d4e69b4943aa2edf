//! The `strata` command: serve the archive, import files, get an instance back, export studies
//! as a media ZIP, list studies,
//! scrub the replicas, rebuild the index from one replica, link patient records into persons.

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use strata_archive::{self as archive, Archive};
use strata_core::audit::{AuditEvent, Outcome};
use strata_core::config::Config;
use strata_services::ingest::{Disposition, Source};

mod serve;

#[derive(Parser)]
#[command(name = "strata", version, about = "Strata: a DICOM imaging archive")]
struct Cli {
    /// Data directory: index, master key, default replicas.
    #[arg(
        long,
        global = true,
        env = "STRATA_DATA",
        default_value = "strata-data"
    )]
    data: PathBuf,
    /// Configuration file (default: <data>/strata.toml when it exists).
    #[arg(long, global = true, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the archive (the default command).
    Serve {
        /// HTTP listen address (http.listen).
        #[arg(long)]
        http: Option<String>,
        /// DIMSE listen address (dimse.listen).
        #[arg(long)]
        dimse: Option<String>,
    },
    /// Import DICOM files and folders (recursively).
    Import {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Files ingested at once (ingest.import_parallelism).
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
        /// Print one line per file as soon as it is stored (or refused).
        #[arg(long, short = 'v')]
        verbose: bool,
    },
    /// Write a stored instance, byte for byte as it was received.
    Get {
        sop_instance_uid: String,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Export studies, or a person's whole record, as a ZIP of DICOM media (PS3.10): the
    /// instances as stored, a DICOMDIR, README.TXT and INDEX.HTM with a picture of each series.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["study", "person"])))]
    Export {
        /// A Study Instance UID (repeat for several studies).
        #[arg(long)]
        study: Vec<String>,
        /// A person id of the master person index: every study of theirs.
        #[arg(long, conflicts_with = "study")]
        person: Option<String>,
        /// The ZIP file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// List the studies in the archive.
    Studies,
    /// Write de-identified copies of studies (PS3.15 Annex E Basic Profile with the options
    /// of `[deidentify]`) as PS3.10 files under DIR/<study>/<series>/<instance>.dcm, as a media
    /// ZIP (`--zip`), or push them to a research archive by STOW-RS (`--to-dicomweb`), with a
    /// report of what was done
    /// to each attribute (DIR/report.json, DIR/report.csv). UIDs, pseudonyms and date shifts are
    /// keyed by the project: the same project always gives the same ones. The stored instances
    /// are not changed.
    Deidentify {
        /// The research project (1 to 64 letters, digits, . _ -).
        #[arg(long)]
        project: String,
        /// A study to export, by its Study Instance UID (repeat for more).
        #[arg(long = "study", required = true)]
        studies: Vec<String>,
        #[arg(long)]
        out: PathBuf,
        /// Push the copies to this `[[dicomweb_peers]]` entry (a research archive) instead of
        /// writing them under DIR; the report is still written there.
        #[arg(long = "to-dicomweb", conflicts_with = "zip")]
        to_dicomweb: Option<String>,
        /// Write the copies as a media ZIP (DICOM/ files indexed by a DICOMDIR, README.TXT)
        /// instead of under DIR; the report is still written there.
        #[arg(long)]
        zip: Option<PathBuf>,
        /// Instances de-identified at once (default: the number of cores).
        #[arg(long, short = 'j')]
        jobs: Option<usize>,
    },
    /// Verify every blob on every replica; exit non-zero if anything is left unrepaired.
    Scrub {
        /// Rewrite missing or corrupt copies from a good one.
        #[arg(long)]
        repair: bool,
    },
    /// Users: add one or change a password (read from standard input), bind a patient user to
    /// a person, disable, enable or remove one, list them and their sessions. Every command is
    /// written to the audit trail, as the operating-system user who ran it.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API tokens: create one for a user (printed once), list them, or revoke one by its id.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The AE table: where C-MOVE may send (besides [[dimse.peers]] in strata.toml).
    Ae {
        #[command(subcommand)]
        command: AeCommand,
    },
    /// The audit trail: verify its hash chain, or list events.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The master person index: which patient records are one person.
    Mpi {
        #[command(subcommand)]
        command: MpiCommand,
    },
    /// Rebuild the index from one replica alone, or from the cold stores alone (stop the
    /// server first). With a cold tier, the blobs its stores hold are indexed too.
    Reindex {
        /// Replica number, 1 to N, in configuration order.
        #[arg(
            long,
            required_unless_present = "from_shards",
            conflicts_with = "from_shards"
        )]
        from_replica: Option<usize>,
        /// From the cold stores' shards alone (instances only: the journal and the audit
        /// trail are on the replicas).
        #[arg(long)]
        from_shards: bool,
    },
    /// Hot and cold tiers: what the policy would move (a dry run), or move it now.
    Tier {
        /// Report what would move and what it saves; move nothing.
        #[arg(long)]
        dry_run: bool,
        /// At most this many studies.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Move the index to another engine.
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
    /// A JPEG-LS / JPEG 2000 decoder process, started by the server itself: frames on standard
    /// input, samples on standard output.
    #[command(hide = true)]
    DecodeWorker {
        /// Address space it may take beyond what it holds at start.
        #[arg(long)]
        memory_bytes: u64,
    },
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Build the index in an empty PostgreSQL database from a replica (everything the index
    /// holds comes from the replicas), then run the archive on it with `index.url` (or
    /// STRATA_INDEX_URL). The archive must not be serving meanwhile.
    Migrate {
        /// postgres://user:password@host:port/database
        #[arg(long)]
        to: String,
        /// Replica number, 1 to N, in configuration order.
        #[arg(long, default_value_t = 1)]
        from_replica: usize,
    },
}

#[derive(Subcommand)]
enum MpiCommand {
    /// Link a CSV file of patient records into persons (no archive needed). Input columns:
    /// record_id,issuer,patient_id,family_name,given_name,middle_name,birth_date,sex,street,
    /// city,postcode,phone; output: record_id,person_id,decision (linked, new or review).
    Link {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// Also write the model estimated from the file (weights, thresholds) as JSON here.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Stop at the first malformed value (a birth date not YYYYMMDD, an unknown sex code).
        /// Without it such a value is read as missing, and the values so read are counted and
        /// their lines listed on standard error.
        #[arg(long)]
        strict: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is the first line of standard input.
    Add {
        name: String,
        /// admin, radiologist, integrator, modality or patient.
        #[arg(long)]
        role: String,
        /// For a patient user (required then, refused otherwise): the person of the person
        /// index whose studies are theirs, as `GET /api/persons` shows its id.
        #[arg(long)]
        person: Option<String>,
        /// The issuer of the local patient keys of what the user stores over STOW-RS,
        /// whatever the files say (IssuerOfPatientID). Unset: the user's name; an
        /// administrator's uploads keep the files' own issuer.
        #[arg(long)]
        issuer: Option<String>,
    },
    /// Set (or with --clear remove) the issuer of the local patient keys of what a user stores.
    Issuer {
        name: String,
        #[arg(required_unless_present = "clear")]
        issuer: Option<String>,
        #[arg(long, conflicts_with = "issuer")]
        clear: bool,
    },
    /// Bind a patient user to another person (after their person was merged into another, say).
    Bind {
        name: String,
        #[arg(long)]
        person: String,
    },
    /// List the users (disabled ones, and those who must change their password, say so).
    List,
    /// Set a user's password: the first line of standard input. The user's sessions end.
    Passwd {
        name: String,
        /// The user must change it at the next sign-in (a password chosen for them).
        #[arg(long)]
        temporary: bool,
    },
    /// Disable a user: every token and session refused, sessions ended; nothing deleted.
    Disable { name: String },
    /// Enable a disabled user again.
    Enable { name: String },
    /// Remove a user with their tokens and sessions.
    Remove { name: String },
    /// List live sessions (of one user, or everyone's) by id.
    Sessions { name: Option<String> },
    /// End a session, given its id as `user sessions` lists it.
    EndSession { id: String },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a bearer token for a user; it is printed once and only its hash is kept.
    Create {
        #[arg(long)]
        user: String,
        #[arg(long)]
        label: Option<String>,
        /// Days until it expires (1 to 3650).
        #[arg(long, default_value_t = strata_services::auth::DEFAULT_TOKEN_DAYS)]
        days: i64,
    },
    /// List tokens (of one user, or everyone's) by id, revoked and expired ones included.
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token: its id as `token list` shows it (or the token itself).
    Revoke { token: String },
}

#[derive(Subcommand)]
enum AeCommand {
    /// List the C-MOVE destinations, from strata.toml and managed here.
    List,
    /// Add or change a C-MOVE destination (takes effect at once, also in a running server).
    Add {
        aet: String,
        host: String,
        port: u16,
    },
    /// Remove a C-MOVE destination added with `ae add`.
    Remove { aet: String },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain; exit non-zero and name the first broken event if it is broken.
    Verify,
    /// Copy the events not yet on the replicas there now (a server does it every 30 s).
    Export,
    /// Print events as JSON lines, oldest first.
    List {
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        patient_id: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    // a decoder process needs no runtime, configuration or archive
    if let Some(Command::DecodeWorker { memory_bytes }) = cli.command {
        return match archive::serve_codec_worker(memory_bytes) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("strata {}: {e}", archive::CODEC_WORKER);
                std::process::ExitCode::from(2)
            }
        };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the runtime");
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strata: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    };
    // What is still running once the command is done (a connection a drain cut off, a blocking
    // read under way) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    // The person index's batch tools work on files alone: no configuration, no archive.
    if let Some(Command::Mpi { command }) = cli.command {
        return mpi(command);
    }
    let mut config = Config::load(&cli.data, cli.config.as_deref(), std::env::vars())?;
    // JPEG-LS and JPEG 2000 frames are decoded by this same program, in processes of their own
    config.render.codec_worker_program = std::env::current_exe().ok();
    let ok = std::process::ExitCode::SUCCESS;
    match cli.command.unwrap_or(Command::Serve {
        http: None,
        dimse: None,
    }) {
        Command::Serve { http, dimse } => {
            if let Some(h) = http {
                config.http.listen = h;
            }
            if let Some(d) = dimse {
                config.dimse.listen = d;
            }
            let _lock = archive::ServeLock::acquire(&config)?;
            serve::serve(Archive::open(config).await?).await?;
            Ok(ok)
        }
        Command::Import {
            paths,
            jobs,
            verbose,
        } => {
            if let Some(j) = jobs {
                config.ingest.import_parallelism = j.max(1);
            }
            import(Archive::open(config).await?, &paths, verbose).await
        }
        Command::Get {
            sop_instance_uid,
            output,
        } => {
            get(&*Archive::open(config).await?, &sop_instance_uid, &output).await?;
            Ok(ok)
        }
        Command::Export { study, person, out } => {
            export(
                &*Archive::open(config).await?,
                &study,
                person.as_deref(),
                &out,
            )
            .await?;
            Ok(ok)
        }
        Command::Studies => {
            studies(&*Archive::open(config).await?).await?;
            Ok(ok)
        }
        Command::Deidentify {
            project,
            studies,
            out,
            to_dicomweb,
            zip,
            jobs,
        } => {
            let jobs =
                jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            let to = match to_dicomweb {
                None => None,
                Some(name) => Some(
                    config
                        .dicomweb_peers
                        .iter()
                        .find(|p| p.name == name)
                        .cloned()
                        .ok_or_else(|| anyhow!("no [[dicomweb_peers]] entry is named {name}"))?,
                ),
            };
            deidentify(
                &*Archive::open(config).await?,
                &project,
                &studies,
                &out,
                match (&to, &zip) {
                    (Some(peer), _) => Copies::Push(peer),
                    (None, Some(file)) => Copies::Zip(file),
                    (None, None) => Copies::Files,
                },
                jobs,
            )
            .await
        }
        Command::Scrub { repair } => scrub(&*Archive::open(config).await?, repair).await,
        Command::User { command } => user(&*Archive::open(config).await?, command).await,
        Command::Token { command } => token(&*Archive::open(config).await?, command).await,
        Command::Ae { command } => ae(&*Archive::open(config).await?, command).await,
        Command::Audit { command } => audit(&*Archive::open(config).await?, command).await,
        Command::Mpi { command } => mpi(command),
        Command::Index {
            command: IndexCommand::Migrate { to, from_replica },
        } => {
            if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
                anyhow::bail!(
                    "--to: a PostgreSQL URL (postgres://user:password@host:port/database)"
                );
            }
            let r = archive::migrate_index_to(&config, &to, from_replica).await?;
            println!(
                "built the index in {} from replica {from_replica}: {} blobs, {} instances indexed, {} replacements replayed from {} journal entries, {} audit events restored",
                strata_index::redacted_url(&to),
                r.blobs, r.indexed, r.superseded, r.journal_entries, r.audit_events
            );
            println!(
                "set index.url (or STRATA_INDEX_URL) to this database to run the archive on it"
            );
            for (blob, why) in &r.unreadable {
                println!("unreadable blob {blob}: {why}");
            }
            Ok(if r.unreadable.is_empty() {
                ok
            } else {
                std::process::ExitCode::FAILURE
            })
        }
        Command::DecodeWorker { .. } => bail!("{} is started by the server", archive::CODEC_WORKER),
        Command::Tier { dry_run, limit } => {
            tier(&*Archive::open(config).await?, dry_run, limit).await
        }
        Command::Reindex { from_replica, .. } => {
            let r = archive::reindex(&config, from_replica).await?;
            let from = match from_replica {
                Some(n) => format!("replica {n}"),
                None => "the cold stores".to_string(),
            };
            println!(
                "reindexed from {from}: {} blobs, {} instances indexed, {} replacements replayed from {} journal entries, {} audit events restored",
                r.blobs, r.indexed, r.superseded, r.journal_entries, r.audit_events
            );
            if config.tiers.enabled() {
                println!(
                    "cold stores: {} blobs, {} of them indexed from their shards",
                    r.cold_blobs, r.cold_indexed
                );
            }
            for (blob, why) in &r.unreadable {
                println!("unreadable blob {blob}: {why}");
            }
            Ok(if r.unreadable.is_empty() {
                ok
            } else {
                std::process::ExitCode::FAILURE
            })
        }
    }
}

fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if !p.exists() {
            bail!("{}: no such file or folder", p.display());
        }
        for entry in walkdir::WalkDir::new(p)
            .follow_links(true)
            .sort_by_file_name()
        {
            let entry = entry.with_context(|| format!("walking {}", p.display()))?;
            if entry.file_type().is_file() {
                files.push(entry.into_path());
            }
        }
    }
    Ok(files)
}

async fn import(
    archive: Arc<Archive>,
    paths: &[PathBuf],
    verbose: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let files = collect_files(paths)?;
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} files {per_sec} eta {eta}")
            .expect("valid template"),
    );
    let started = std::time::Instant::now();
    let jobs = archive.config().ingest.import_parallelism;
    let mut results = futures::stream::iter(files.into_iter().map(|path| {
        let a = archive.clone();
        async move {
            let r = a.ingest().ingest_file(&path, &Source::Import).await;
            (path, r)
        }
    }))
    .buffer_unordered(jobs);
    let (mut stored, mut present, mut bytes) = (0u64, 0u64, 0u64);
    let mut refused = Vec::new();
    let mut out = std::io::stdout().lock();
    while let Some((path, r)) = results.next().await {
        bar.inc(1);
        match r {
            Ok(i) => {
                let what = match i.disposition {
                    Disposition::Stored | Disposition::Replaced => {
                        stored += 1;
                        bytes += i.size;
                        "stored"
                    }
                    Disposition::AlreadyPresent => {
                        present += 1;
                        "present"
                    }
                };
                if verbose {
                    writeln!(out, "{what} {} {}", i.sop_instance_uid, path.display())?;
                    out.flush()?;
                }
            }
            Err(e) => {
                if verbose {
                    writeln!(out, "refused {}: {e}", path.display())?;
                    out.flush()?;
                }
                refused.push((path, e));
            }
        }
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    writeln!(
        out,
        "imported in {secs:.1}s: {stored} stored ({:.1} MB), {present} already present, {} refused",
        bytes as f64 / 1e6,
        refused.len()
    )?;
    for (path, e) in &refused {
        writeln!(out, "  refused {}: {e}", path.display())?;
    }
    Ok(if refused.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

async fn get(archive: &Archive, uid: &str, output: &Path) -> anyhow::Result<()> {
    let dir = output
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing into {}", dir.display()))?;
    let mut w = std::io::BufWriter::new(tmp.as_file());
    let stored = match archive
        .reads()
        .read_instance(uid, |chunk| w.write_all(chunk))
        .await
    {
        Ok(stored) => stored,
        Err(e) => {
            let event = cli_event("cli.get", Outcome::Failure).detail(format!("{uid}: {e}"));
            if let Err(a) = archive.audit().record(event).await {
                eprintln!("strata: the audit trail cannot be written: {a}");
            }
            return Err(e.into());
        }
    };
    w.flush()?;
    drop(w);
    // audited before the file appears: a read the trail cannot record is not written out
    let event = cli_event("cli.get", Outcome::Success)
        .patient(
            Some(stored.patient_id.clone()),
            Some(stored.study_uid.clone()),
        )
        .detail(format!("instance {uid}"));
    archive.audit().record(event).await?;
    tmp.persist(output)
        .with_context(|| format!("writing {}", output.display()))?;
    // A copy found bad on the way is repaired now rather than left for a server that may not run.
    let (repaired, failed) = archive
        .maintenance()
        .run_repairs(Some(stored.blob_id))
        .await?;
    if repaired + failed > 0 {
        eprintln!(
            "strata: repaired {repaired} replica copies of this instance ({failed} failed, queued)"
        );
    }
    Ok(())
}

/// The audit event of a command run on this machine. Commands are not signed in (whoever can run
/// them can read the data directory): the event names the local account that ran one, with role
/// `cli`, and its user id as where it came from.
/// Writes the media ZIP of the studies, or of the person, into `out`: streamed into a
/// temporary file beside it, audited (one event per study) before it is written, and renamed
/// into place only once whole.
async fn export(
    archive: &Archive,
    studies: &[String],
    person: Option<&str>,
    out: &Path,
) -> anyhow::Result<()> {
    use strata_index::Scope;
    let media = archive.media();
    let found = match person {
        Some(p) => media.person(&p.to_ascii_lowercase(), Scope::All).await,
        None => media.studies(studies, Scope::All).await,
    };
    let export = match found {
        Ok(e) => e,
        Err(e) => {
            let what = person.map_or_else(|| studies.join(" "), |p| format!("person {p}"));
            let event = cli_event("cli.export", Outcome::Failure).detail(format!("{what}: {e}"));
            if let Err(a) = archive.audit().record(event).await {
                eprintln!("strata: the audit trail cannot be written: {a}");
            }
            bail!("{what}: {e}");
        }
    };
    for s in &export.studies {
        let event = cli_event("cli.export", Outcome::Success)
            .patient(Some(s.patient_id.clone()), Some(s.study_uid.clone()))
            .detail(format!("media ZIP, {} instances", s.instances));
        archive.audit().record(event).await?;
    }
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing into {}", dir.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
    let (studies_n, instances) = (export.studies.len(), export.instances);
    let source = archive
        .public_url()
        .map(String::from)
        .or_else(|| archive.config().http.public_url.clone())
        .unwrap_or_else(|| "this site".into());
    let mut zip = std::pin::pin!(media.zip(export, &source));
    let mut written = 0u64;
    while let Some(chunk) = zip.next().await {
        let chunk = chunk.context("exporting")?;
        written += chunk.len() as u64;
        w.write_all(&chunk)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    w.flush()?;
    drop(w);
    tmp.persist(out)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{}: {studies_n} study(ies), {instances} instance(s), {} MB",
        out.display(),
        written.div_ceil(1_000_000)
    );
    Ok(())
}

fn cli_event(action: &str, outcome: Outcome) -> AuditEvent {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let account = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("uid {uid}"));
    AuditEvent::now(&format!("cli:{account}"), "cli", action, outcome)
        .remote(format!("local, uid {uid}"))
}

async fn studies(archive: &Archive) -> anyhow::Result<()> {
    let list = archive.index().studies().await?;
    let event =
        cli_event("cli.studies", Outcome::Success).detail(format!("{} studies", list.len()));
    archive.audit().record(event).await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<28} {:<16} {:<10} {:<10} {:<32} {:>6} {:>9}  STUDY INSTANCE UID",
        "PATIENT", "PATIENT ID", "DATE", "MODALITY", "DESCRIPTION", "SERIES", "INSTANCES"
    )?;
    for s in &list {
        writeln!(
            out,
            "{:<28} {:<16} {:<10} {:<10} {:<32} {:>6} {:>9}  {}",
            clip(s.patient_name.as_deref().unwrap_or("")),
            clip(&s.patient_id),
            s.study_date.as_deref().unwrap_or(""),
            clip(&s.modalities),
            clip(s.description.as_deref().unwrap_or("")),
            s.num_series,
            s.num_instances,
            s.study_uid
        )?;
    }
    writeln!(out, "{} studies", list.len())?;
    Ok(())
}

/// What `strata deidentify` writes into its report: the project, the options, and per instance
/// (named by its new UIDs only) what was done to every attribute, or why it was refused.
#[derive(serde::Serialize)]
struct DeidentifyReport {
    project: String,
    profile: Vec<&'static str>,
    private_safe_list: Vec<strata_core::config::SafePrivate>,
    instances: Vec<strata_dicom::deidentify::Report>,
    refused: Vec<RefusedInstance>,
}

#[derive(serde::Serialize)]
struct RefusedInstance {
    /// The UID the instance would have had in this project.
    sop_instance_uid: String,
    reason: String,
}

/// Instances of a study pushed to a research archive in one STOW-RS request, at most.
const PUSH_BATCH: usize = 25;

/// Where `strata deidentify` puts the copies.
enum Copies<'a> {
    /// PS3.10 files under the output folder.
    Files,
    /// A media ZIP.
    Zip(&'a Path),
    /// A research archive, by STOW-RS.
    Push(&'a strata_core::config::DicomwebPeer),
}

/// A media ZIP being written: the files sent on `files` go in as they come; `task` ends once
/// `files` is dropped and the ZIP is durable.
struct ZipOut {
    files: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts writing the media ZIP `file` of the files to come.
fn zip_writer(file: &Path, what: String) -> anyhow::Result<ZipOut> {
    use tokio::io::AsyncWriteExt;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let files =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) })
            .boxed();
    let path = file.to_path_buf();
    let out =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let task = tokio::spawn(async move {
        let mut out = tokio::fs::File::from_std(out);
        let mut chunks = std::pin::pin!(strata_services::media::files::files_zip(files, &what));
        while let Some(chunk) = chunks.next().await {
            out.write_all(&chunk?).await?;
        }
        out.sync_all().await?;
        Ok(())
    });
    Ok(ZipOut { files: tx, task })
}

/// `strata deidentify`: each study read (and the read audited, before anything is written),
/// each instance de-identified and written as it comes — or, pushed to `to`, kept until its
/// study is done and posted in batches; refused instances named on standard error by their
/// stored UID (the operator's view) and in the report by their project UID, as are those the
/// research archive did not take.
async fn deidentify(
    archive: &Archive,
    project: &str,
    studies: &[String],
    out: &Path,
    copies: Copies<'_>,
    jobs: usize,
) -> anyhow::Result<std::process::ExitCode> {
    let to = match copies {
        Copies::Push(peer) => Some(peer),
        _ => None,
    };
    let client = match to {
        Some(_) => Some(strata_http::dicomweb::stow_client::client().map_err(|e| anyhow!(e))?),
        None => None,
    };
    let mut zip = match copies {
        Copies::Zip(file) => Some(zip_writer(
            file,
            format!("De-identified copies for the research project {project}."),
        )?),
        _ => None,
    };
    let mut pushed = 0;
    let service = archive.deidentification();
    let project = service.project(project)?;
    let cfg = service.config();
    let mut profile = vec!["basic"];
    for (on, name) in [
        (cfg.modified_dates, "modified dates"),
        (cfg.patient_characteristics, "patient characteristics"),
        (cfg.device_identity, "device identity"),
        (cfg.clean_descriptors, "clean descriptors"),
    ] {
        if on {
            profile.push(name);
        }
    }
    let mut report = DeidentifyReport {
        project: project.name.clone(),
        profile,
        private_safe_list: cfg.private_safe.clone(),
        instances: Vec::new(),
        refused: Vec::new(),
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let started = std::time::Instant::now();
    for study in studies {
        let refs = match service.study_instances(study).await {
            Ok(refs) => refs,
            Err(e) => {
                let event = cli_event("cli.deidentify", Outcome::Failure)
                    .detail(format!("project {}: study {study}: {e}", project.name));
                archive.audit().record(event).await?;
                bail!("study {study}: {e}");
            }
        };
        let event = cli_event("cli.deidentify", Outcome::Success)
            .patient(Some(refs[0].patient_id.clone()), Some(study.clone()))
            .detail(format!(
                "project {}: {} instances read for de-identification",
                project.name,
                refs.len()
            ));
        archive.audit().record(event).await?;
        // with a research archive to push to: this study's copies, until it is done
        let mut to_push: Vec<(String, Vec<u8>)> = Vec::new();
        service
            .each(&project, refs, jobs, |r, outcome| -> anyhow::Result<()> {
                match outcome {
                    Ok(d) if to.is_some() => {
                        to_push.push((d.report.sop_instance_uid.clone(), d.part10));
                        report.instances.push(d.report);
                    }
                    Ok(d) if zip.is_some() => {
                        if let Some(z) = &zip {
                            z.files
                                .send(d.part10)
                                .map_err(|_| anyhow!("writing the ZIP stopped"))?;
                        }
                        report.instances.push(d.report);
                    }
                    Ok(d) => {
                        let dir = out
                            .join(&d.report.study_instance_uid)
                            .join(&d.report.series_instance_uid);
                        std::fs::create_dir_all(&dir)
                            .with_context(|| format!("creating {}", dir.display()))?;
                        let file = dir.join(format!("{}.dcm", d.report.sop_instance_uid));
                        std::fs::write(&file, &d.part10)
                            .with_context(|| format!("writing {}", file.display()))?;
                        report.instances.push(d.report);
                    }
                    Err(e) => {
                        eprintln!("strata: refused {}: {e}", r.sop_uid);
                        report.refused.push(RefusedInstance {
                            sop_instance_uid: service.project_uid(&project, &r.sop_uid),
                            reason: e.to_string(),
                        });
                    }
                }
                Ok(())
            })
            .await?;
        if let (Some(peer), Some(client)) = (to, &client) {
            while !to_push.is_empty() {
                let batch: Vec<(String, Vec<u8>)> =
                    to_push.drain(..to_push.len().min(PUSH_BATCH)).collect();
                let (sops, parts): (Vec<String>, Vec<_>) = batch
                    .into_iter()
                    .map(|(sop, bytes)| (sop, Ok(bytes)))
                    .unzip();
                let outcomes =
                    strata_http::dicomweb::stow_client::post_instances(client, peer, &sops, parts)
                        .await;
                for (sop, outcome) in sops.into_iter().zip(outcomes) {
                    match outcome {
                        Ok(()) => pushed += 1,
                        Err(e) => {
                            eprintln!("strata: {} did not take {sop}: {e}", peer.name);
                            report.instances.retain(|i| i.sop_instance_uid != sop);
                            report.refused.push(RefusedInstance {
                                sop_instance_uid: sop,
                                reason: format!("{} did not take it: {e}", peer.name),
                            });
                        }
                    }
                }
            }
        }
    }
    if let Some(ZipOut { files, task }) = zip.take() {
        drop(files);
        task.await??;
    }
    if let Some(peer) = to {
        let event = cli_event("cli.deidentify.push", Outcome::Success).detail(format!(
            "project {}: {pushed} de-identified instances pushed to {}",
            project.name, peer.name
        ));
        archive.audit().record(event).await?;
    }
    write_reports(out, &report)?;
    let written = match copies {
        Copies::Push(peer) => format!("pushed to {}", peer.name),
        Copies::Zip(file) => format!("written to {}", file.display()),
        Copies::Files => "written".into(),
    };
    println!(
        "de-identified in {:.1}s for project {}: {} instances {written}, {} refused; report in {}",
        started.elapsed().as_secs_f64(),
        project.name,
        report.instances.len(),
        report.refused.len(),
        out.join("report.json").display()
    );
    Ok(if report.refused.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// report.json (everything) and report.csv (one line per attribute of each instance).
fn write_reports(out: &Path, report: &DeidentifyReport) -> anyhow::Result<()> {
    let json = out.join("report.json");
    std::fs::write(&json, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let mut csv = String::from("sop_instance_uid,tag,name,action,rule\n");
    for i in &report.instances {
        for a in &i.attributes {
            csv.push_str(&format!(
                "{},{},\"{}\",{},\"{}\"\n",
                i.sop_instance_uid,
                a.tag,
                a.name.replace('"', "\"\""),
                a.action,
                a.rule
            ));
        }
    }
    for r in &report.refused {
        csv.push_str(&format!(
            "{},,,refused,\"{}\"\n",
            r.sop_instance_uid,
            r.reason.replace('"', "\"\"")
        ));
    }
    let path = out.join("report.csv");
    std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn clip(s: &str) -> String {
    if s.chars().count() > 32 {
        s.chars().take(31).chain(std::iter::once('…')).collect()
    } else {
        s.to_string()
    }
}

async fn scrub(archive: &Archive, repair: bool) -> anyhow::Result<std::process::ExitCode> {
    let stale = archive.maintenance().remove_stale_staging();
    if stale > 0 {
        println!("scrub: removed {stale} staging files of writes a crash cut short");
    }
    let blobs = archive.maintenance().all_blobs().await?;
    let (r, left) = archive.maintenance().scrub(&blobs, repair).await?;
    println!(
        "scrub: {} blobs, {} copies checked, {} missing, {} corrupt, {} repaired, {} unrepaired, {} lost",
        r.blobs, r.checked, r.missing, r.corrupt, r.repaired, r.unrepaired, r.lost
    );
    for l in &left {
        println!(
            "  blob {} on replica {}: {}",
            l.blob,
            l.replica + 1,
            l.reason
        );
    }
    let mut healthy = r.unrepaired == 0;
    if archive.tiers().shards().is_some() {
        let s = archive.tiers().scrub_shards(repair).await?;
        println!("scrub: {} cold blobs, {} lost", s.blobs, s.lost);
        for h in &s.stores {
            println!(
                "  cold store {} ({}): {} good, {} missing, {} corrupt, {} repaired",
                h.store, h.url, h.good, h.missing, h.corrupt, h.repaired
            );
            healthy &= h.missing + h.corrupt == h.repaired;
        }
        healthy &= s.lost == 0;
    }
    Ok(if healthy {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// `strata tier`: the policy's dry run, or its moves now.
async fn tier(
    archive: &Archive,
    dry_run: bool,
    limit: usize,
) -> anyhow::Result<std::process::ExitCode> {
    let tiers = archive.tiers();
    let plan = if dry_run {
        tiers.plan(limit).await?
    } else {
        tiers.apply(limit, std::time::Duration::ZERO).await?
    };
    let verb = if dry_run { "would move" } else { "moved" };
    for s in &plan.studies {
        println!(
            "{} {} ({} instances, {} bytes)",
            verb, s.study_uid, s.instances, s.bytes
        );
    }
    println!(
        "{verb} {} studies to cold: {} instances, {} bytes; the replicas hold {} bytes of them, the cold stores {}: {} bytes saved",
        plan.studies.len(),
        plan.instances,
        plan.bytes,
        plan.hot_bytes,
        plan.cold_bytes,
        plan.saved_bytes()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

async fn audit(archive: &Archive, command: AuditCommand) -> anyhow::Result<std::process::ExitCode> {
    use strata_core::audit::Verdict;
    use strata_index::AuditFilter;
    match command {
        AuditCommand::Verify => match archive.audit().verify().await? {
            Verdict::Intact { events } => {
                println!("audit trail intact: {events} events");
                Ok(std::process::ExitCode::SUCCESS)
            }
            Verdict::Broken { id, reason } => {
                println!("audit trail BROKEN at event {id}: {reason}");
                Ok(std::process::ExitCode::FAILURE)
            }
        },
        AuditCommand::Export => {
            println!(
                "copied {} audit events to the replicas",
                archive.maintenance().export_audit().await?
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        AuditCommand::List {
            actor,
            action,
            patient_id,
            limit,
        } => {
            let filter = AuditFilter {
                actor,
                action,
                patient_id,
                limit,
                ..Default::default()
            };
            let mut out = std::io::stdout().lock();
            for e in archive.audit().events(filter).await? {
                writeln!(out, "{}", serde_json::to_string(&e)?)?;
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

async fn ae(archive: &Archive, command: AeCommand) -> anyhow::Result<std::process::ExitCode> {
    match command {
        AeCommand::List => {
            let (configured, managed) = archive.admin().peers().await?;
            let n = configured.len() + managed.len();
            let event = cli_event("cli.ae.list", Outcome::Success)
                .detail(format!("{n} AE title{}", if n == 1 { "" } else { "s" }));
            archive.audit().record(event).await?;
            for p in &configured {
                println!("{:<16} {}:{}  (strata.toml)", p.aet, p.host, p.port);
            }
            for p in managed {
                println!("{:<16} {}:{}", p.aet, p.host, p.port);
            }
        }
        AeCommand::Add { aet, host, port } => {
            let peer = archive.admin().add_peer(&aet, &host, port).await?;
            let detail = format!("{} at {}:{}", peer.aet, peer.host, peer.port);
            audited(archive, "cli.ae.add", detail).await?;
            println!("added {}", peer.aet);
        }
        AeCommand::Remove { aet } => {
            if !archive.admin().remove_peer(&aet).await? {
                bail!("no managed AE titled {aet}");
            }
            audited(archive, "cli.ae.remove", aet.clone()).await?;
            println!("removed {aet}");
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The audit event of an administrative command run here. Whoever can run `strata` on the
/// data directory administers the archive; the event names them by their operating-system
/// user.
async fn audited(archive: &Archive, action: &str, detail: String) -> anyhow::Result<()> {
    use strata_core::audit::{AuditEvent, Outcome};
    let who = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "-".into());
    let event = AuditEvent::now(&who, "cli", action, Outcome::Success)
        .remote("local")
        .detail(detail);
    archive.audit().record(event).await?;
    Ok(())
}

/// The first line of standard input as a new password, refused unless it may be one.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if let Err(why) = strata_services::auth::check_new_password(&password) {
        bail!("{why} (first line of standard input)");
    }
    Ok(password)
}

/// Refuses what is not a user name before anything is written.
fn user_name(name: &str) -> anyhow::Result<()> {
    if !strata_services::auth::valid_user_name(name) {
        bail!(
            "{:?} is not a user name (letters, digits, . _ - @; at most 64)",
            strata_core::audit::capped(name, 64)
        );
    }
    Ok(())
}

/// A time in milliseconds since the epoch, as UTC.
fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

async fn user(archive: &Archive, command: UserCommand) -> anyhow::Result<std::process::ExitCode> {
    use strata_services::auth::{hash_password, Role};
    match command {
        UserCommand::Add {
            name,
            role,
            person,
            issuer,
        } => {
            user_name(&name)?;
            let Some(role) = Role::parse(&role) else {
                bail!("{role:?} is not a role (admin, radiologist, integrator, modality, patient)");
            };
            match (role, &person) {
                (Role::Patient, None) => bail!(
                    "a patient user is bound to a person: give --person <person-id> \
                     (the id `GET /api/persons` shows)"
                ),
                (Role::Patient, Some(_)) => {}
                (_, Some(_)) => bail!(
                    "--person binds a patient user only, not a user of the {} role",
                    role.as_str()
                ),
                (_, None) => {}
            }
            let person = person.map(|p| p.to_ascii_lowercase());
            let password = password_from_stdin()?;
            let hash = hash_password(&password);
            if !archive
                .admin()
                .add_user(
                    &name,
                    role.as_str(),
                    hash,
                    person.as_deref(),
                    issuer.as_deref(),
                )
                .await?
            {
                bail!("a user named {name} exists already");
            }
            let mut detail = format!("user {name}, role {}", role.as_str());
            if let Some(i) = &issuer {
                detail.push_str(&format!(", issuer {}", strata_core::audit::capped(i, 64)));
            }
            audited(archive, "cli.user.add", detail).await?;
            match person {
                Some(p) => println!("added {name} ({}, person {p})", role.as_str()),
                None => println!("added {name} ({})", role.as_str()),
            }
        }
        UserCommand::Issuer {
            name,
            issuer,
            clear: _,
        } => {
            user_name(&name)?;
            if !archive.admin().set_issuer(&name, issuer.as_deref()).await? {
                bail!("no user named {name}");
            }
            let what = match &issuer {
                Some(i) => format!("issuer {}", strata_core::audit::capped(i, 64)),
                None => "issuer cleared".to_string(),
            };
            audited(archive, "cli.user.issuer", format!("user {name}: {what}")).await?;
            println!("{name}: {what}");
        }
        UserCommand::Bind { name, person } => {
            user_name(&name)?;
            let person = person.to_ascii_lowercase();
            archive.admin().bind_user(&name, &person).await?;
            audited(
                archive,
                "cli.user.bind",
                format!("user {name} to person {person}"),
            )
            .await?;
            println!("bound {name} to person {person}");
        }
        UserCommand::List => {
            let users = archive.admin().users().await?;
            audited(
                archive,
                "cli.users",
                format!("{} users listed", users.len()),
            )
            .await?;
            for u in users {
                let mut flags = String::new();
                if u.disabled {
                    flags.push_str("  disabled");
                }
                if u.must_change_password {
                    flags.push_str("  must change password");
                }
                if let Some(i) = &u.issuer {
                    flags.push_str(&format!("  issuer {i}"));
                }
                match u.person {
                    Some(p) => println!("{:<24} {:<12} person {p}{flags}", u.name, u.role),
                    None => println!("{:<24} {:<12}{flags}", u.name, u.role),
                }
            }
        }
        UserCommand::Passwd { name, temporary } => {
            user_name(&name)?;
            let hash = hash_password(&password_from_stdin()?);
            if !archive
                .admin()
                .set_password(&name, hash, temporary, None)
                .await?
            {
                bail!("no user named {name}");
            }
            let detail = if temporary {
                format!("user {name}: password set, to be changed at sign-in")
            } else {
                format!("user {name}: password set")
            };
            audited(archive, "cli.user.passwd", detail).await?;
            println!("changed the password of {name}; their sessions ended");
        }
        UserCommand::Disable { name } => set_disabled(archive, &name, true).await?,
        UserCommand::Enable { name } => set_disabled(archive, &name, false).await?,
        UserCommand::Remove { name } => {
            user_name(&name)?;
            if !archive.admin().remove_user(&name).await? {
                bail!("no user named {name}");
            }
            let detail = format!("user {name}, with their tokens and sessions");
            audited(archive, "cli.user.remove", detail).await?;
            println!("removed {name} with their tokens and sessions");
        }
        UserCommand::Sessions { name } => {
            if let Some(n) = &name {
                user_name(n)?;
            }
            let list = archive.admin().sessions(name.as_deref()).await?;
            let whose = name.map(|n| format!(" of {n}")).unwrap_or_default();
            let detail = format!("{} sessions{whose} listed", list.len());
            audited(archive, "cli.sessions", detail).await?;
            for s in list {
                println!(
                    "{}  {:<24} since {}  until {}",
                    s.id,
                    s.user,
                    when(s.created_at),
                    when(s.expires_at)
                );
            }
        }
        UserCommand::EndSession { id } => {
            let Some(user) = archive.admin().end_session(&id, None).await? else {
                bail!("no live session {id} (`strata user sessions` lists them)");
            };
            audited(
                archive,
                "cli.session.end",
                format!("session {id} of user {user}"),
            )
            .await?;
            println!("ended session {id} of {user}");
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `strata user disable|enable NAME`.
async fn set_disabled(archive: &Archive, name: &str, disabled: bool) -> anyhow::Result<()> {
    user_name(name)?;
    if !archive.admin().set_disabled(name, disabled).await? {
        bail!("no user named {name}");
    }
    let (action, done) = if disabled {
        ("cli.user.disable", "disabled")
    } else {
        ("cli.user.enable", "enabled")
    };
    audited(archive, action, format!("user {name}")).await?;
    println!("{done} {name}");
    Ok(())
}

async fn token(archive: &Archive, command: TokenCommand) -> anyhow::Result<std::process::ExitCode> {
    use strata_services::auth::{new_secret, secret_hash, token_expiry, MAX_TOKEN_DAYS};
    match command {
        TokenCommand::Create { user, label, days } => {
            user_name(&user)?;
            let Some(expires_at) = token_expiry(Some(days)) else {
                bail!("--days must be 1 to {MAX_TOKEN_DAYS}");
            };
            let token = new_secret("stk_");
            let Some(id) = archive
                .admin()
                .add_token(&user, secret_hash(&token), label, Some(expires_at))
                .await?
            else {
                bail!("no user named {user}");
            };
            let detail = format!("token {id} for user {user}");
            audited(archive, "cli.token.create", detail).await?;
            eprintln!("token {id} for {user}, expires {}", when(expires_at));
            println!("{token}");
        }
        TokenCommand::List { user } => {
            if let Some(u) = &user {
                user_name(u)?;
            }
            let list = archive.admin().tokens(user.as_deref()).await?;
            let whose = user.map(|u| format!(" of {u}")).unwrap_or_default();
            let detail = format!("{} tokens{whose} listed", list.len());
            audited(archive, "cli.tokens", detail).await?;
            let now = strata_core::now_ms();
            for t in list {
                let state = match (t.revoked_at, t.expires_at) {
                    (Some(r), _) => format!("revoked {}", when(r)),
                    (None, Some(e)) if e <= now => format!("expired {}", when(e)),
                    (None, Some(e)) => format!("expires {}", when(e)),
                    (None, None) => "never expires".into(),
                };
                println!(
                    "{:>6}  {:<24} {:<24} {state}",
                    t.id,
                    t.user,
                    t.label.as_deref().unwrap_or("-")
                );
            }
        }
        TokenCommand::Revoke { token } => {
            let token = token.trim();
            let revoked = match token.parse::<i64>() {
                Ok(id) => archive
                    .admin()
                    .revoke_token_id(id)
                    .await?
                    .map(|user| format!("token {id} of user {user}")),
                Err(_) => archive
                    .admin()
                    .revoke_token(secret_hash(token))
                    .await?
                    .then(|| "a token given by its value".to_string()),
            };
            let Some(detail) = revoked else {
                bail!("no live token like that (`strata token list` shows their ids)");
            };
            audited(archive, "cli.token.revoke", detail).await?;
            println!("revoked");
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Lines listed per field when reporting malformed values; the count is always whole.
const MALFORMED_LINES_SHOWN: usize = 20;

/// Tells on standard error which values `strata mpi link` read as missing, field by field: how
/// many, and on which lines (the first [`MALFORMED_LINES_SHOWN`]).
fn report_malformed(input: &Path, malformed: &[strata_mpi::Malformed]) {
    if malformed.is_empty() {
        return;
    }
    let mut fields: Vec<&str> = malformed.iter().map(|m| m.field).collect();
    fields.dedup();
    fields.sort_unstable();
    fields.dedup();
    eprintln!(
        "{}: {} malformed values read as missing",
        input.display(),
        malformed.len()
    );
    for field in fields {
        let of: Vec<&strata_mpi::Malformed> =
            malformed.iter().filter(|m| m.field == field).collect();
        let lines: Vec<String> = of
            .iter()
            .take(MALFORMED_LINES_SHOWN)
            .map(|m| format!("{} ({:?})", m.line, m.value))
            .collect();
        let more = if of.len() > MALFORMED_LINES_SHOWN {
            format!(" and {} more", of.len() - MALFORMED_LINES_SHOWN)
        } else {
            String::new()
        };
        eprintln!(
            "  {field}: {} on lines {}{more}",
            of.len(),
            lines.join(", ")
        );
    }
}

fn mpi(command: MpiCommand) -> anyhow::Result<std::process::ExitCode> {
    use strata_mpi::{self as mpi, Decision};
    match command {
        MpiCommand::Link {
            input,
            output,
            model,
            strict,
        } => {
            let started = std::time::Instant::now();
            let file = std::fs::File::open(&input)
                .with_context(|| format!("reading {}", input.display()))?;
            let read = mpi::read_records(std::io::BufReader::new(file), strict)
                .with_context(|| format!("{}", input.display()))?;
            report_malformed(&input, &read.malformed);
            let (ids, identities): (Vec<String>, Vec<mpi::Identity>) = read
                .records
                .into_iter()
                .map(|r| (r.record_id, r.identity))
                .unzip();
            let linked = mpi::link_batch_with_model(&identities);
            let dir = output
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("writing into {}", dir.display()))?;
            mpi::write_links(std::io::BufWriter::new(tmp.as_file()), &ids, &linked.links)?;
            tmp.persist(&output)
                .with_context(|| format!("writing {}", output.display()))?;
            if let Some(path) = model {
                std::fs::write(&path, serde_json::to_vec_pretty(&linked.model)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let count = |d: Decision| linked.links.iter().filter(|(_, x)| *x == d).count();
            let persons = linked.links.iter().map(|(p, _)| *p + 1).max().unwrap_or(0);
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "linked {} records in {secs:.2}s ({:.0}/s): {persons} persons; {} linked, {} new, {} review; {} candidate pairs; EM {} iterations, match proportion {:.4}, thresholds {:.2} / {:.2} bits",
                ids.len(),
                ids.len() as f64 / secs.max(1e-9),
                count(Decision::Linked),
                count(Decision::New),
                count(Decision::Review),
                linked.candidate_pairs,
                linked.model.iterations,
                linked.model.match_proportion,
                linked.model.upper,
                linked.model.lower,
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
