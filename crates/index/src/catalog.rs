//! The catalog's interface: everything the rest of the archive asks of the index, and the one
//! seam a second backend implements (SQLite today, [`crate::sqlite`]). Callers hold an
//! [`crate::Index`], which derefs to `dyn Catalog`, and never see a connection, a row or SQL.

use crate::*;
use futures::future::BoxFuture;
use strata_core::config::OnConflict;
use strata_core::BlobId;
use strata_dicom::record::InstanceRecord;

/// Writes a manual MPI decision to the decision journal from inside the transaction that makes
/// it, under the stamp given ([`Catalog::journal_stamp`], taken in that transaction); an error
/// undoes the decision. Called again when the transaction is retried (another archive process
/// writing the same PostgreSQL index won a race): the change made then is journaled again,
/// after the first, and replays over it.
pub type Journal = Box<dyn FnMut(&MpiChange, i64) -> Result<(), String> + Send>;

#[async_trait::async_trait]
pub trait Catalog: Send + Sync {
    /// Returns once everything committed before the call is durable (audit events are committed
    /// before their answer goes out and fsynced just after).
    async fn sync(&self) -> Result<(), IndexError>;

    /// Records an ingested instance (and the replica copies that failed while storing it) in one
    /// committed transaction. `on_conflict` decides what a different blob under an existing
    /// SOP Instance UID does.
    async fn insert_instance(
        &self,
        rec: InstanceRecord,
        on_conflict: OnConflict,
        failed_copies: Vec<(BlobId, usize, String)>,
    ) -> Result<InsertOutcome, IndexError>;

    /// [`Catalog::insert_instance`], with the audit event of the store committed in the same
    /// transaction: one fsync for both. A conflict writes no event (nothing was stored).
    async fn insert_instance_audited(
        &self,
        rec: InstanceRecord,
        on_conflict: OnConflict,
        failed_copies: Vec<(BlobId, usize, String)>,
        audit: Option<strata_core::audit::AuditEvent>,
    ) -> Result<InsertOutcome, IndexError>;

    /// Carries out a manual MPI operation by `actor`; `journal` records the resulting change
    /// durably before the transaction commits (if it fails, nothing changes), and `audit` is
    /// committed with it.
    async fn mpi_op(
        &self,
        op: MpiOp,
        actor: String,
        audit: strata_core::audit::AuditEvent,
        journal: Journal,
    ) -> Result<MpiChange, IndexError>;

    /// Applies a journaled MPI change (reindex).
    async fn mpi_replay(&self, change: MpiChange) -> Result<(), IndexError>;

    /// Re-runs the matcher over the keys no person decided; returns how many moved.
    async fn mpi_rematch(&self) -> Result<usize, IndexError>;

    /// Re-estimates the matcher's weights (EM, no labels) when the number of local keys has
    /// at least doubled since the last estimate (and is at least `min_records`). Returns the
    /// number of records the new model was estimated from.
    async fn mpi_estimate(
        &self,
        min_records: usize,
        force: bool,
    ) -> Result<Option<usize>, IndexError>;

    /// Registers local keys from demographics alone (a migrated patient master file), each
    /// matched as at ingest, in one transaction. None for a key already known. A large file is
    /// registered in calls of hundreds: on SQLite the end of every statement walks the
    /// in-memory journal of the pages the transaction changed so far, so one call of ten
    /// thousand costs the square of its size.
    async fn mpi_register(
        &self,
        identities: Vec<strata_mpi::Identity>,
    ) -> Result<Vec<Option<strata_mpi::Decision>>, IndexError>;

    async fn persons(&self, q: PersonSearch) -> Result<Vec<PersonSummary>, IndexError>;

    /// A person as the MPI sees it; None if there is no such person or it is outside `scope`
    /// (a patient reads their own person only).
    async fn person(&self, uid: String, scope: Scope) -> Result<Option<PersonView>, IndexError>;

    async fn review_items(&self, all: bool) -> Result<Vec<ReviewItem>, IndexError>;

    /// Scores demographics against stored persons without storing anything.
    async fn mpi_match(&self, identity: strata_mpi::Identity) -> Result<MatchAnswer, IndexError>;

    /// The stored instance under a SOP Instance UID (a point read: on the calling thread).
    async fn instance(&self, sop_uid: &str) -> Result<Option<StoredInstance>, IndexError>;

    /// The SOP Class UID of a stored instance (a point read: on the calling thread).
    async fn instance_sop_class(&self, sop_uid: &str) -> Result<Option<String>, IndexError>;

    async fn studies(&self) -> Result<Vec<StudySummary>, IndexError>;

    async fn counts(&self) -> Result<Counts, IndexError>;

    /// Every blob the index refers to, current or superseded, but those the cold stores alone
    /// hold (the replicas' scrub has nothing of them to check).
    async fn blob_ids(&self) -> Result<Vec<BlobId>, IndexError>;

    /// Up to `limit` blobs the index refers to, in blob order, after `after` (from the first
    /// when None), but those the cold stores alone hold: how a worker walks the archive a
    /// batch at a time.
    async fn blob_ids_after(
        &self,
        after: Option<BlobId>,
        limit: usize,
    ) -> Result<Vec<BlobId>, IndexError>;

    /// Where worker `worker` has got to (None: it never ran).
    async fn worker_progress(&self, worker: String) -> Result<Option<WorkerProgress>, IndexError>;

    /// The next stamp of the decision journal, which names its entries in decision order: the
    /// later of `now` (ms) and the last stamp plus one, so one order across every archive
    /// process writing this index, whatever their clocks say.
    async fn journal_stamp(&self, now: i64) -> Result<i64, IndexError>;

    /// Records where a worker has got to.
    async fn set_worker_progress(&self, progress: WorkerProgress) -> Result<(), IndexError>;

    /// Notes that `studies` were read at `at` (ms): what the tier policy's "unread for" sees.
    async fn note_reads(&self, studies: Vec<String>, at: i64) -> Result<(), IndexError>;

    /// Hot studies past the tier policy's age and unread time, in study order.
    async fn tier_candidates(&self, q: TierQuery) -> Result<TierPage, IndexError>;

    /// The modalities of a study's series.
    async fn study_modalities(&self, study: String) -> Result<Vec<String>, IndexError>;

    /// The blobs a study's instances refer to, with their sizes.
    async fn study_blobs(&self, study: String) -> Result<Vec<(BlobId, u64)>, IndexError>;

    /// The studies whose instances refer to `blob`.
    async fn studies_of_blob(&self, blob: BlobId) -> Result<Vec<String>, IndexError>;

    /// Records blobs whose every shard is durable on the cold stores.
    async fn record_cold_blobs(&self, blobs: Vec<ColdBlob>) -> Result<(), IndexError>;

    /// Records whether the replicas hold these cold blobs too.
    async fn set_blobs_hot(&self, blobs: Vec<BlobId>, hot: bool) -> Result<(), IndexError>;

    /// Sets a study's tier (its reads are kept).
    async fn set_study_tier(&self, tier: StudyTier) -> Result<(), IndexError>;

    /// A study's tier row (None: hot, never read since it arrived).
    async fn study_tier(&self, study: String) -> Result<Option<StudyTier>, IndexError>;

    /// Restored studies whose time in the hot tier ended before `now`.
    async fn restored_expired(&self, now: i64, limit: usize) -> Result<Vec<StudyTier>, IndexError>;

    /// The cold tier's record of `blob`, if its shards are stored.
    async fn cold_blob(&self, blob: BlobId) -> Result<Option<ColdBlob>, IndexError>;

    /// Up to `limit` cold blobs after `after`, in blob order: the shard scrub's walk.
    async fn cold_blobs_after(
        &self,
        after: Option<BlobId>,
        limit: usize,
    ) -> Result<Vec<ColdBlob>, IndexError>;

    /// What the tiers hold in total.
    async fn tier_totals(&self) -> Result<TierTotals, IndexError>;

    /// Reads by one of `actions` from the audit trail: per study date and day, the studies
    /// read; and the studies read in all.
    async fn read_days(&self, actions: Vec<String>) -> Result<(Vec<ReadDays>, u64), IndexError>;

    /// The date of every study that has one.
    async fn study_dates(&self) -> Result<Vec<String>, IndexError>;

    /// Takes or renews the lease `claim` asks for when it is free (expired or released) or
    /// already the claimant's, in one statement; returns the lease as it stands after, held by
    /// another node when it was not free ([`Lease::held_by`] tells).
    async fn acquire_lease(&self, claim: LeaseClaim) -> Result<Lease, IndexError>;

    /// Frees, as of `now`, every lease the process `incarnation` of node `holder` holds: it is
    /// stopping, and another node may take them at once. Returns how many.
    async fn release_leases(
        &self,
        holder: String,
        incarnation: String,
        now: i64,
    ) -> Result<usize, IndexError>;

    /// Every lease, held or expired, by name.
    async fn leases(&self) -> Result<Vec<Lease>, IndexError>;

    /// Creates a queued send with its items, all pending; returns its id.
    async fn create_send(&self, new: NewSend) -> Result<i64, IndexError>;

    /// The most recent sends first, at most `limit`.
    async fn send_jobs(&self, limit: i64) -> Result<Vec<SendJob>, IndexError>;

    /// The sends not yet over (queued or running), oldest first.
    async fn active_send_jobs(&self) -> Result<Vec<SendJob>, IndexError>;

    async fn send_job(&self, id: i64) -> Result<Option<SendJob>, IndexError>;

    /// A send's items in order.
    async fn send_items(&self, id: i64) -> Result<Vec<SendItem>, IndexError>;

    /// Up to `limit` pending items of a send due by `now` (ms), in order.
    async fn due_send_items(
        &self,
        id: i64,
        now: i64,
        limit: i64,
    ) -> Result<Vec<SendItem>, IndexError>;

    /// Records the attempts just made on items of a send.
    async fn record_send_attempts(
        &self,
        id: i64,
        attempts: Vec<ItemAttempt>,
    ) -> Result<(), IndexError>;

    /// Sets a send's state (`running` stamps its start, `done` and `failed` its end).
    async fn set_send_state(&self, id: i64, state: String, now: i64) -> Result<(), IndexError>;

    /// Puts a send's failed items back in the queue; returns how many.
    async fn retry_send(&self, id: i64, now: i64) -> Result<usize, IndexError>;

    /// Creates a share of `studies` until `expires_at`, for the token hashing to
    /// `token_hash`; returns its id.
    async fn create_share(
        &self,
        token_hash: String,
        created_by: String,
        label: Option<String>,
        expires_at: i64,
        studies: Vec<String>,
    ) -> Result<i64, IndexError>;

    /// Every share, the most recent first.
    async fn shares(&self) -> Result<Vec<Share>, IndexError>;

    /// The live share whose token hashes to `token_hash`.
    async fn share_by_token(&self, token_hash: String) -> Result<Option<Share>, IndexError>;

    /// Revokes a share; false when there is no such live share.
    async fn revoke_share(&self, id: i64) -> Result<bool, IndexError>;

    /// Writes node `node.id`'s heartbeat: its row, created or replaced; and forgets the nodes
    /// last seen before `forget_before` (ms).
    async fn heartbeat(&self, node: NodeRow, forget_before: i64) -> Result<(), IndexError>;

    /// Every node that ever wrote a heartbeat, by id.
    async fn nodes(&self) -> Result<Vec<NodeRow>, IndexError>;

    /// Issues an access letter for a live person with at least one confirmed key; why not
    /// otherwise.
    async fn create_letter(
        &self,
        letter: NewLetter,
    ) -> Result<Result<LetterRow, LetterRefusal>, IndexError>;

    /// A user's own viewer layouts, as (kind of study, layout JSON).
    async fn viewer_layouts(&self, user: String) -> Result<Vec<(String, String)>, IndexError>;

    /// Remembers `layout` (JSON) as `user`'s viewer layout for `kind`; None forgets it.
    async fn put_viewer_layout(
        &self,
        user: String,
        kind: String,
        layout: Option<String>,
    ) -> Result<(), IndexError>;

    /// Every access letter (or one person's, by uid), newest first.
    async fn letters(&self, person: Option<String>) -> Result<Vec<LetterRow>, IndexError>;

    /// Revokes access letter `id` (by `by`); the letter as it is then, None if there is none.
    async fn revoke_letter(&self, id: i64, by: String) -> Result<Option<LetterRow>, IndexError>;

    /// The access letter whose code hashes to `code_hash`, revoked and expired ones included
    /// (a point read: on the calling thread).
    async fn letter_by_code(&self, code_hash: String) -> Result<Option<LetterHolder>, IndexError>;

    /// Records a use of access letter `id` (a download, or opening it).
    async fn letter_used(&self, id: i64, download: bool) -> Result<(), IndexError>;

    /// Every SOP Instance UID with its blob, for checks that walk the whole archive.
    async fn instance_blobs(&self) -> Result<Vec<(String, BlobId)>, IndexError>;

    async fn enqueue_repairs(&self, items: Vec<(BlobId, usize, String)>) -> Result<(), IndexError>;

    async fn due_repairs(&self, limit: usize) -> Result<Vec<RepairItem>, IndexError>;

    async fn repairs_for(&self, blob: BlobId) -> Result<Vec<RepairItem>, IndexError>;

    async fn repair_done(&self, blob: BlobId, replica: usize) -> Result<(), IndexError>;

    async fn repair_failed(&self, item: RepairItem, reason: String) -> Result<(), IndexError>;

    async fn repair_queue_len(&self) -> Result<i64, IndexError>;

    /// Closes every connection (so the WAL is folded into the database file) and stops the
    /// writer. The index is unusable afterwards.
    async fn close(&self) -> Result<(), IndexError>;

    /// Matches `q` against the index (C-FIND, QIDO-RS).
    async fn find(
        &self,
        q: query::Query,
    ) -> Result<Vec<dicom_object::InMemDicomObject>, query::QueryError>;

    /// Appends an event to the audit trail, chained to the last one; returns once it is
    /// durable. For events of changes, administration and refusals.
    async fn audit(&self, event: strata_core::audit::AuditEvent) -> Result<(), IndexError>;

    /// The audit event of a read of patient data (a search, a retrieval, a rendered view),
    /// handed to the writer at once: the caller prepares its answer while the event commits,
    /// and awaits the future before sending anything. The future resolves once the event is
    /// committed, or fails; the answer must not go out unless it resolved `Ok`. Committed
    /// means in the index's WAL: from then on the event survives the archive process crashing,
    /// and the writer's WAL thread starts its fsync within half a millisecond (a power cut in
    /// between can lose it). Waiting for the fsync was most of a small search's time, and a read
    /// changes nothing stored.
    fn audit_read(
        &self,
        event: strata_core::audit::AuditEvent,
    ) -> BoxFuture<'static, Result<(), IndexError>>;

    /// The id of the last audit event in the index (0 when there is none).
    async fn audit_last_id(&self) -> Result<i64, IndexError>;

    /// The id of the last audit event copied to the replicas.
    async fn audit_exported(&self) -> Result<i64, IndexError>;

    async fn set_audit_exported(&self, last_id: i64) -> Result<(), IndexError>;

    /// Puts back audit events exactly as they were (ids and hashes), for reindex.
    async fn restore_audit(
        &self,
        events: Vec<strata_core::audit::StoredEvent>,
    ) -> Result<(), IndexError>;

    /// Audit events matching the filter, oldest first.
    async fn audit_events(
        &self,
        filter: AuditFilter,
    ) -> Result<Vec<strata_core::audit::StoredEvent>, IndexError>;

    /// The C-MOVE destinations managed at run time.
    async fn peers(&self) -> Result<Vec<strata_core::config::DimsePeer>, IndexError>;

    async fn set_peer(&self, p: strata_core::config::DimsePeer) -> Result<(), IndexError>;

    async fn remove_peer(&self, aet: String) -> Result<bool, IndexError>;

    /// The instances under a study (and series, and instance) within `scope`, in series and
    /// instance order. Empty when there are none, or none the scope may see: the caller cannot
    /// tell the two apart, so an answer never confirms that someone else's study exists.
    async fn instances_under(
        &self,
        study: String,
        series: Option<String>,
        sop: Option<String>,
        scope: Scope,
    ) -> Result<Vec<InstanceRef>, IndexError>;

    /// The studies of instances `sops`, each once.
    async fn studies_of_instances(&self, sops: Vec<String>) -> Result<Vec<String>, IndexError>;

    /// What retention decides by, for `studies` (those the index holds).
    async fn study_facts(&self, studies: Vec<String>) -> Result<Vec<StudyFacts>, IndexError>;

    /// [`Catalog::study_facts`] of up to `limit` studies after `after`, in study order.
    async fn study_facts_page(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<StudyFacts>, IndexError>;

    /// Places a legal hold on a person (by its id) or a study; returns its id.
    async fn place_hold(
        &self,
        person: Option<String>,
        study: Option<String>,
        reason: String,
        by: String,
        at: i64,
    ) -> Result<i64, IndexError>;

    /// Releases a hold in force; false if there is none of that id.
    async fn release_hold(&self, id: i64, by: String, at: i64) -> Result<bool, IndexError>;

    /// The holds, or those in force only.
    async fn holds(&self, in_force_only: bool) -> Result<Vec<Hold>, IndexError>;

    /// Whether a hold in force covers study `study` of patient key `patient_fk`.
    async fn is_held(&self, study: String, patient_fk: i64) -> Result<bool, IndexError>;

    /// Records a batch of studies proposed for deletion, leaving out those another batch holds
    /// waiting; returns its id and how many studies it holds (None: every study was taken).
    async fn propose_expiry(
        &self,
        items: Vec<ExpiryItem>,
        at: i64,
    ) -> Result<Option<(i64, usize)>, IndexError>;

    /// The latest expiry batches first.
    async fn expiry_batches(&self, limit: usize) -> Result<Vec<ExpiryBatch>, IndexError>;

    async fn expiry_batch(&self, id: i64) -> Result<Option<ExpiryBatch>, IndexError>;

    async fn expiry_items(&self, id: i64) -> Result<Vec<ExpiryItem>, IndexError>;

    /// Moves a batch from state `from` to `to` by `by`'s decision; false if it was not in `from`.
    async fn decide_expiry(
        &self,
        id: i64,
        from: &'static str,
        to: &'static str,
        by: String,
        at: i64,
    ) -> Result<bool, IndexError>;

    /// Sets what became of a study of a batch.
    async fn expiry_outcome(
        &self,
        id: i64,
        study: String,
        outcome: &'static str,
    ) -> Result<(), IndexError>;

    /// Marks an approved batch's deletion finished.
    async fn finish_expiry(&self, id: i64, at: i64) -> Result<(), IndexError>;

    /// Studies of batches proposed or being deleted.
    async fn expiry_pending(&self) -> Result<Vec<String>, IndexError>;

    /// Takes the instances `sops` of study `study` out of the index for rejection note `note`
    /// (title `code`), keeping their blobs for the purge; returns those taken.
    async fn reject_instances(
        &self,
        study: String,
        sops: Vec<String>,
        note: String,
        code: String,
        at: i64,
    ) -> Result<Vec<String>, IndexError>;

    /// Whether a rejection note took `sop` out of the index (purged since or not).
    async fn is_rejected(&self, sop: String) -> Result<bool, IndexError>;

    /// Rejected instances not purged yet, earliest first; with `before`, those rejected before
    /// it; with `after` (a rejection time and SOP Instance UID), those after it.
    async fn rejected_instances(
        &self,
        before: Option<i64>,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<RejectedInstance>, IndexError>;

    /// Marks rejected instances purged; returns those purged and the blobs they used. With
    /// `unless_held`, those a hold in force covers are left.
    async fn forget_rejected(
        &self,
        sops: Vec<String>,
        unless_held: bool,
    ) -> Result<(Vec<String>, Vec<BlobId>), IndexError>;

    /// Removes instances and their history from the index (and the cold tier's records of
    /// them), returning the blobs they used; with `unless_held`, nothing when a hold in force
    /// covers a study of theirs ([`IndexError::Held`]).
    async fn delete_instances(
        &self,
        sops: Vec<String>,
        unless_held: bool,
    ) -> Result<Vec<BlobId>, IndexError>;

    /// True when the database answers: part of readiness.
    async fn ping(&self) -> bool;

    async fn count_users(&self) -> Result<i64, IndexError>;

    /// Creates a user; false if the name is taken. `person` (a person uid) binds a patient
    /// user; a person that does not exist (any more) leaves the user unbound, so it sees
    /// nothing until bound again (callers check the person first with [`Catalog::bindable`]).
    /// `must_change_password` makes the user choose a new password at the first sign-in.
    /// Binding confirms the keys of the person `confirmed` names (all of them when None).
    async fn create_user(&self, user: NewUser) -> Result<bool, IndexError>;

    /// Sets (None: clears) the issuer of the keys of what a user stores; false if there is no
    /// such user.
    async fn set_user_issuer(
        &self,
        name: String,
        issuer: Option<String>,
    ) -> Result<bool, IndexError>;

    /// The local keys a live person holds now (what binding a user to them confirms).
    async fn person_keys(&self, uid: String) -> Result<Vec<strata_mpi::LocalKey>, IndexError>;

    /// Whether a user may be bound to the person `uid`: it exists and was not merged away.
    async fn bindable(&self, uid: String) -> Result<Result<(), BindRefusal>, IndexError>;

    /// Binds a user to the person `uid` (a live one), replacing any earlier binding, and
    /// confirms the keys of the person `confirmed` names (all of them when None).
    async fn bind_user(
        &self,
        name: String,
        uid: String,
        confirmed: Option<Vec<strata_mpi::LocalKey>>,
    ) -> Result<Result<(), BindRefusal>, IndexError>;

    async fn users(&self) -> Result<Vec<UserRow>, IndexError>;

    /// What signing in needs to know of a user.
    async fn user_credentials(&self, name: String) -> Result<Option<Credentials>, IndexError>;

    /// Replaces a user's password hash and sets whether it must be changed at the next
    /// sign-in; ends every session of the user but `keep_session` (the hash of the session
    /// that made the change). False if there is no such user.
    async fn set_password(
        &self,
        name: String,
        password_hash: String,
        must_change: bool,
        keep_session: Option<String>,
    ) -> Result<bool, IndexError>;

    /// Disables (every credential refused, every session ended) or enables a user; false if
    /// there is no such user.
    async fn set_disabled(&self, name: String, disabled: bool) -> Result<bool, IndexError>;

    /// Removes a user with its tokens and sessions; false if there is no such user.
    async fn remove_user(&self, name: String) -> Result<bool, IndexError>;

    /// Records a token for a user, live until `expires_at` (None: forever); its id, None if
    /// there is no such user.
    async fn add_token(
        &self,
        user: String,
        token_hash: String,
        label: Option<String>,
        expires_at: Option<i64>,
    ) -> Result<Option<i64>, IndexError>;

    /// Revokes a token; false if no live token has that hash.
    async fn revoke_token(&self, token_hash: String) -> Result<bool, IndexError>;

    /// The tokens (all of them, or one user's), revoked and expired ones included.
    async fn tokens(&self, user: Option<String>) -> Result<Vec<TokenRow>, IndexError>;

    /// The hash of the token with row id `id` (as [`TokenRow`] names it) and its user.
    async fn token_hash(&self, id: i64) -> Result<Option<(String, String)>, IndexError>;

    /// The live sessions (all of them, or one user's).
    async fn sessions(&self, user: Option<String>) -> Result<Vec<SessionRow>, IndexError>;

    /// Ends the session named `id` (as [`SessionRow`] names it), when it belongs to `user` if
    /// one is given; the user it belonged to, None if there was no such session.
    async fn end_session(
        &self,
        id: String,
        user: Option<String>,
    ) -> Result<Option<String>, IndexError>;

    /// The user holding a live token.
    async fn token_principal(&self, token_hash: String)
        -> Result<Option<PrincipalRow>, IndexError>;

    async fn create_session(
        &self,
        id_hash: String,
        user: String,
        expires_at: i64,
    ) -> Result<(), IndexError>;

    /// The user of a live session.
    async fn session_principal(&self, id_hash: String) -> Result<Option<PrincipalRow>, IndexError>;

    async fn delete_session(&self, id_hash: String) -> Result<(), IndexError>;

    /// Records a sign-in attempt of `name` from `remote` as a failure until it is shown right
    /// ([`Catalog::login_succeeded`]), so attempts made at once count against each other;
    /// returns its id and the failures within `window_ms`, this one included.
    async fn login_attempt(
        &self,
        name: String,
        remote: String,
        window_ms: i64,
    ) -> Result<(i64, LoginFailures), IndexError>;

    /// Forgets attempt `id`: its password was right.
    async fn login_succeeded(&self, id: i64) -> Result<(), IndexError>;
}
