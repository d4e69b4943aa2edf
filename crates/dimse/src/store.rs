//! C-STORE SCP (PS3.4 B.2): the data set is spooled as it arrives, wrapped in the file meta it
//! lacks, and handed to the one ingest path; the response goes out only once ingest says the
//! instance is durable.

use super::message::{field, status, Command};
use super::{AssociationError, DataSink, Session};
use dicom_core::VR;
use dicom_dictionary_std::tags;
use strata_core::audit::Outcome;
use strata_core::config::DimsePermission;
use strata_services::ingest::{IngestError, Source};

/// Starts the spool of an incoming C-STORE: the Part-10 header first, the data set after it.
pub fn spool_for(session: &Session<'_>, pc: u8, command: &Command) -> DataSink {
    let mut spool = session.archive.ingest().spool();
    let ctx = &session.contexts[&pc];
    let sop_class = command
        .affected_sop_class()
        .unwrap_or_else(|| ctx.abstract_syntax.clone());
    let sop_instance = command.affected_sop_instance().unwrap_or_default();
    match strata_dicom::part10::part10_header(
        &sop_class,
        &sop_instance,
        &ctx.transfer_syntax,
        &session.calling_ae,
    ) {
        Ok(header) => match spool.append(&header) {
            Ok(()) => DataSink::Spool(spool),
            Err(e) => DataSink::Refused {
                status: status::PROCESSING_FAILURE,
                reason: format!("the data set could not be spooled: {e}"),
            },
        },
        // an unusable command (no SOP Instance UID, say): read the data set, then refuse
        Err(e) => DataSink::Refused {
            status: status::CANNOT_UNDERSTAND,
            reason: e.to_string(),
        },
    }
}

pub async fn c_store(
    session: &mut Session<'_>,
    pc: u8,
    command: Command,
    data: Option<DataSink>,
) -> Result<(), AssociationError> {
    let sop_instance = command.affected_sop_instance().unwrap_or_default();
    let respond = |st: u16, comment: Option<String>| {
        let mut rsp = Command::response_to(&command, field::C_STORE_RSP, st, false).with(
            tags::AFFECTED_SOP_INSTANCE_UID,
            VR::UI,
            sop_instance.clone(),
        );
        if let Some(c) = comment {
            rsp = rsp.with_error_comment(&c);
        }
        rsp
    };
    let rsp = if !session.may(DimsePermission::Store) {
        session
            .audit(
                "dimse.store",
                Outcome::Denied,
                None,
                None,
                sop_instance.clone(),
            )
            .await;
        respond(
            status::NOT_AUTHORIZED,
            Some(format!("{} may not store", session.calling_ae)),
        )
    } else {
        match data {
            Some(DataSink::Spool(spool)) => {
                // the success audit event is written by ingest, with the instance's index row
                let (issuer, trust_issuer) =
                    super::key_issuer(&session.archive.config().dimse, &session.calling_ae);
                let source = Source::Dimse {
                    calling_ae: session.calling_ae.clone(),
                    remote: session.remote.clone(),
                    issuer,
                    trust_issuer,
                };
                match session.archive.ingest().ingest_spool(spool, &source).await {
                    Ok(_) => respond(status::SUCCESS, None),
                    Err(e) => {
                        tracing::warn!(
                            calling_ae = session.calling_ae,
                            sop_instance,
                            "C-STORE refused: {e}"
                        );
                        let detail = format!("{sop_instance}: {e}");
                        session
                            .audit("dimse.store", Outcome::Failure, None, None, detail)
                            .await;
                        respond(store_status(&e), Some(e.to_string()))
                    }
                }
            }
            Some(DataSink::Refused { status, reason }) => {
                let detail = format!("{sop_instance}: {reason}");
                session
                    .audit("dimse.store", Outcome::Failure, None, None, detail)
                    .await;
                respond(status, Some(reason))
            }
            _ => respond(
                status::CANNOT_UNDERSTAND,
                Some("the request has no data set".into()),
            ),
        }
    };
    session.writer.send(pc, &rsp, None).await?;
    Ok(())
}

/// The C-STORE status for a refused instance (PS3.4 B.2.3, PS3.7 C).
fn store_status(e: &IngestError) -> u16 {
    match e {
        IngestError::Invalid(_) | IngestError::WrongStudy { .. } => status::CANNOT_UNDERSTAND,
        IngestError::Conflict { .. } => status::DUPLICATE_SOP_INSTANCE,
        IngestError::Refused { .. } => status::NOT_AUTHORIZED,
        IngestError::TooLarge { .. }
        | IngestError::Store(_)
        | IngestError::Index(_)
        | IngestError::Io(_) => status::OUT_OF_RESOURCES,
    }
}
