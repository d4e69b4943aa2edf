//! C-FIND SCP (PS3.4 C.4.1) for the Patient Root and Study Root information models: the
//! identifier becomes an index query; each match goes back as a pending response with its
//! identifier, and a C-CANCEL stops the stream between two of them.

use super::message::{field, status, Command};
use super::{AssociationError, DataSink, Session};
use crate::audit::Outcome;
use crate::config::DimsePermission;
use crate::index::query::{Key, Level, Query, QueryError};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

pub async fn c_find(
    session: &mut Session<'_>,
    pc: u8,
    command: Command,
    data: Option<DataSink>,
) -> Result<(), AssociationError> {
    let fail = |st: u16, why: &str| {
        Command::response_to(&command, field::C_FIND_RSP, st, false).with_error_comment(why)
    };
    if !session.may(DimsePermission::Query) {
        session
            .audit("dimse.find", Outcome::Denied, None, None, String::new())
            .await;
        let rsp = fail(
            status::NOT_AUTHORIZED,
            &format!("{} may not query", session.calling_ae),
        );
        session.writer.send(pc, &rsp, None).await?;
        return Ok(());
    }
    let ctx = session.contexts[&pc].clone();
    let Some(ts) = TransferSyntaxRegistry.get(&ctx.transfer_syntax) else {
        session
            .writer
            .send(
                pc,
                &fail(status::UNABLE_TO_PROCESS, "unknown transfer syntax"),
                None,
            )
            .await?;
        return Ok(());
    };
    let identifier = match data {
        Some(DataSink::Memory(bytes)) => InMemDicomObject::read_dataset_with_ts(&bytes[..], ts),
        _ => {
            session
                .writer
                .send(
                    pc,
                    &fail(
                        status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
                        "C-FIND without an identifier",
                    ),
                    None,
                )
                .await?;
            return Ok(());
        }
    };
    let query = match identifier {
        Ok(id) => to_query(
            &id,
            &ctx.abstract_syntax,
            &session.archive.config.dimse.ae_title,
        ),
        Err(e) => Err(format!("unreadable identifier: {e}")),
    };
    let query = match query {
        Ok(q) => q,
        Err(why) => {
            session
                .writer
                .send(
                    pc,
                    &fail(status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, &why),
                    None,
                )
                .await?;
            return Ok(());
        }
    };
    let matches = match session.archive.index.find(query).await {
        Ok(m) => m,
        Err(QueryError::Invalid(why)) => {
            session
                .writer
                .send(
                    pc,
                    &fail(status::IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, &why),
                    None,
                )
                .await?;
            return Ok(());
        }
        Err(e) => {
            session
                .writer
                .send(pc, &fail(status::UNABLE_TO_PROCESS, &e.to_string()), None)
                .await?;
            return Ok(());
        }
    };
    tracing::info!(
        calling_ae = session.calling_ae,
        matches = matches.len(),
        "C-FIND"
    );
    let detail = format!("{} matches", matches.len());
    session
        .audit("dimse.find", Outcome::Success, None, None, detail)
        .await;
    let message_id = command.message_id();
    for m in matches {
        if session.cancelled(message_id).await {
            let rsp = Command::response_to(&command, field::C_FIND_RSP, status::CANCEL, false);
            session.writer.send(pc, &rsp, None).await?;
            return Ok(());
        }
        let mut bytes = Vec::new();
        if let Err(e) = m.write_dataset_with_ts(&mut bytes, ts) {
            session
                .writer
                .send(pc, &fail(status::UNABLE_TO_PROCESS, &e.to_string()), None)
                .await?;
            return Ok(());
        }
        let rsp = Command::response_to(&command, field::C_FIND_RSP, status::PENDING, true);
        session.writer.send(pc, &rsp, Some(&bytes)).await?;
    }
    let done = Command::response_to(&command, field::C_FIND_RSP, status::SUCCESS, false);
    session.writer.send(pc, &done, None).await?;
    Ok(())
}

/// Reads a C-FIND identifier into a query, checking the level against the information model.
fn to_query(id: &InMemDicomObject, model: &str, ae_title: &str) -> Result<Query, String> {
    let level_text = id
        .element_opt(tags::QUERY_RETRIEVE_LEVEL)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()))
        .ok_or("the identifier has no Query/Retrieve Level (0008,0052)")?;
    let level = Level::parse(&level_text).ok_or(format!(
        "Query/Retrieve Level {level_text:?} is not PATIENT, STUDY, SERIES or IMAGE"
    ))?;
    if model == uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND && level == Level::Patient {
        return Err("the Study Root model has no PATIENT level".into());
    }
    let keys = id
        .iter()
        .map(|e| Key {
            tag: e.header().tag,
            // sequences are returned, not matched
            value: if e.header().vr == dicom_core::VR::SQ {
                String::new()
            } else {
                e.to_str().map(|s| s.to_string()).unwrap_or_default()
            },
        })
        .collect();
    Ok(Query {
        level,
        keys,
        retrieve_ae_title: ae_title.to_string(),
        limit: None,
        offset: 0,
    })
}
