//! C-FIND SCP (PS3.4 C.4.1) for the Patient Root and Study Root information models: the
//! identifier becomes an index query; each match goes back as a pending response with its
//! identifier, and a C-CANCEL stops the stream between two of them.

use super::message::{field, status, Command};
use super::{attr_text, AssociationError, DataSink, Session};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use strata_core::audit::{AuditEvent, Outcome};
use strata_core::config::DimsePermission;
use strata_index::query::{Key, Level, Query, QueryError};

pub async fn c_find(
    session: &mut Session<'_>,
    pc: u8,
    command: Command,
    data: Option<DataSink>,
) -> Result<(), AssociationError> {
    let cap = session.archive.config().dimse.max_find_results;
    let mut matches = match matches(session, pc, data, cap).await {
        Ok(m) => m,
        Err((st, why)) => {
            let outcome = if st == status::NOT_AUTHORIZED {
                Outcome::Denied
            } else {
                Outcome::Failure
            };
            session
                .audit("dimse.find", outcome, None, None, why.clone())
                .await;
            let rsp = Command::response_to(&command, field::C_FIND_RSP, st, false)
                .with_error_comment(&why);
            session.writer.send(pc, &rsp, None).await?;
            return Ok(());
        }
    };
    let over = matches.len() > cap;
    matches.truncate(cap);
    tracing::info!(
        calling_ae = session.calling_ae,
        matches = matches.len(),
        over,
        "C-FIND"
    );
    // The audit event commits while the matches go out; the final response waits for it.
    let event = AuditEvent::now(&session.calling_ae, "dimse", "dimse.find", Outcome::Success)
        .remote(&session.remote)
        .detail(format!(
            "{} matches{}",
            matches.len(),
            if over { " (more not sent)" } else { "" }
        ));
    let audited = session.archive.audit().record_read(event);
    let ts = session.syntax(pc);
    let message_id = command.message_id();
    for m in matches {
        if session.cancelled(message_id).await {
            let rsp = Command::response_to(&command, field::C_FIND_RSP, status::CANCEL, false);
            session.writer.send(pc, &rsp, None).await?;
            return Ok(());
        }
        let mut bytes = Vec::new();
        if let Err(e) = m.write_dataset_with_ts(&mut bytes, ts) {
            let rsp = Command::response_to(
                &command,
                field::C_FIND_RSP,
                status::UNABLE_TO_PROCESS,
                false,
            )
            .with_error_comment(&e.to_string());
            session.writer.send(pc, &rsp, None).await?;
            return Ok(());
        }
        let rsp = Command::response_to(&command, field::C_FIND_RSP, status::PENDING, true);
        session.writer.send(pc, &rsp, Some(&bytes)).await?;
    }
    if audited.await.is_err() {
        tracing::error!("audit trail write failed for a C-FIND");
    }
    let done = if over {
        Command::response_to(&command, field::C_FIND_RSP, status::OUT_OF_RESOURCES, false)
            .with_error_comment(&format!(
                "more than {cap} matches (dimse.max_find_results): narrow the query"
            ))
    } else {
        Command::response_to(&command, field::C_FIND_RSP, status::SUCCESS, false)
    };
    session.writer.send(pc, &done, None).await?;
    Ok(())
}

/// The identifiers matching the request, or the failure status and why.
async fn matches(
    session: &Session<'_>,
    pc: u8,
    data: Option<DataSink>,
    cap: usize,
) -> Result<Vec<InMemDicomObject>, (u16, String)> {
    if !session.may(DimsePermission::Query) {
        return Err((
            status::NOT_AUTHORIZED,
            format!("{} may not query", session.calling_ae),
        ));
    }
    let bad = |why: String| (status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, why);
    let identifier = session.identifier(pc, data).map_err(bad)?;
    let model = &session.contexts[&pc].abstract_syntax;
    let mut query =
        to_query(&identifier, model, &session.archive.config().dimse.ae_title).map_err(bad)?;
    // One more than the cap: enough to know the cap was passed.
    query.limit = Some(cap + 1);
    session
        .archive
        .index()
        .find(query)
        .await
        .map_err(|e| match e {
            QueryError::Invalid(why) => bad(why),
            e => (status::UNABLE_TO_PROCESS, e.to_string()),
        })
}

/// Reads a C-FIND identifier into a query, checking the level against the information model.
fn to_query(id: &InMemDicomObject, model: &str, ae_title: &str) -> Result<Query, String> {
    let level_text = attr_text(id, tags::QUERY_RETRIEVE_LEVEL);
    if level_text.is_empty() {
        return Err("the identifier has no Query/Retrieve Level (0008,0052)".into());
    }
    let level = Level::parse(&level_text).ok_or(format!(
        "Query/Retrieve Level {level_text:?} is not PATIENT, STUDY, SERIES or IMAGE"
    ))?;
    if model == uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND && level == Level::Patient {
        return Err("the Study Root model has no PATIENT level".into());
    }
    let keys = id
        .iter()
        .map(|e| {
            let sequence = e.header().vr == dicom_core::VR::SQ;
            Key {
                tag: e.header().tag,
                value: if sequence {
                    String::new()
                } else {
                    e.to_str().map(|s| s.to_string()).unwrap_or_default()
                },
                item: if sequence {
                    e.items().and_then(|i| i.first().cloned())
                } else {
                    None
                },
            }
        })
        .collect();
    Ok(Query {
        level,
        keys,
        retrieve_ae_title: ae_title.to_string(),
        limit: None,
        offset: 0,
        fuzzy: false,
        // DIMSE peers are authorised by AE title, as systems of the hospital; no patient
        // account reaches the archive over DIMSE.
        scope: strata_index::Scope::All,
    })
}
