//! The `processor replay` command: revalidates quarantined and dead-lettered messages
//! under the current rules and feeds the ones that now pass back into the pipeline.
//!
//! For each of the two queues, the command takes as many messages as the queue held when
//! it started, one at a time and unacknowledged. A message that now yields a valid report
//! is published to the report exchange, and only after the broker confirms it is the
//! original acknowledged; a message that still fails is returned to its queue at the end.
//! Nothing is lost if the command dies halfway: unacknowledged messages go back.

use crate::settings::Settings;
use lapin::{
    options::{
        BasicAckOptions, BasicGetOptions, BasicNackOptions, ConfirmSelectOptions,
        QueueDeclareOptions,
    },
    types::ShortString,
    BasicProperties, Channel,
};
use log::info;
use serde::Serialize;
use shared::{amqp, parse::parse_raw, quarantine::QuarantineRecord, ParseContext, Report};
use std::time::Duration;

/// What happened to one queue's messages.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueSummary {
    /// Messages looked at.
    pub examined: u32,
    /// Messages that now pass and were fed back into the pipeline.
    pub moved: u32,
    /// Messages that still fail and were returned to their queue.
    pub kept: u32,
}

/// What the command did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    /// The quarantine queue.
    pub quarantine: QueueSummary,
    /// The dead-letter queue.
    pub dead_letter: QueueSummary,
}

/// Bound on waiting for the broker to confirm a replayed report.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// Which queue a message came from, and so how to read it.
#[derive(Clone, Copy)]
enum Source {
    Quarantine,
    DeadLetter,
}

/// Runs one replay over both queues.
pub async fn replay(settings: &Settings) -> Result<ReplaySummary, lapin::Error> {
    let connection = amqp::connect(&settings.amqp, "dlr-processor-replay").await?;
    let channel = connection.create_channel().await?;
    amqp::declare_topology(&channel, &settings.amqp).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    let quarantine = replay_queue(&channel, settings, Source::Quarantine).await?;
    let dead_letter = replay_queue(&channel, settings, Source::DeadLetter).await?;

    let _ = connection.close(200, "replay done".into()).await;
    let summary = ReplaySummary {
        quarantine,
        dead_letter,
    };
    info!("replay finished summary={}", serde_json::json!(summary));
    Ok(summary)
}

async fn replay_queue(
    channel: &Channel,
    settings: &Settings,
    source: Source,
) -> Result<QueueSummary, lapin::Error> {
    let queue = match source {
        Source::Quarantine => settings.amqp.quarantine_queue.as_str(),
        Source::DeadLetter => settings.amqp.dead_letter_queue.as_str(),
    };
    let passive = QueueDeclareOptions {
        passive: true,
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let waiting = channel
        .queue_declare(queue.into(), passive, Default::default())
        .await?
        .message_count();

    let mut summary = QueueSummary::default();
    let mut kept_tags = Vec::new();
    for _ in 0..waiting {
        let Some(message) = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await?
        else {
            break;
        };
        let delivery = message.delivery;
        summary.examined += 1;

        match revalidate(&delivery.data, settings, source) {
            Some(report) => {
                publish_report(channel, settings, &report).await?;
                channel
                    .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
                    .await?;
                summary.moved += 1;
            }
            None => {
                kept_tags.push(delivery.delivery_tag);
                summary.kept += 1;
            }
        }
    }

    for tag in kept_tags {
        let requeue = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        channel.basic_nack(tag, requeue).await?;
    }
    Ok(summary)
}

/// The report a message yields under the current rules, if it yields one now.
fn revalidate(data: &[u8], settings: &Settings, source: Source) -> Option<Report> {
    let (raw, received_at) = match source {
        Source::Quarantine => {
            let record = QuarantineRecord::from_json(data).ok()?;
            (record.raw, record.received_at)
        }
        Source::DeadLetter => {
            let report = Report::from_envelope_json(data).ok()?;
            (report.raw, report.received_at)
        }
    };
    let ctx = ParseContext {
        zone: settings.gateway_zone,
        received_at,
        rules: &settings.rules,
    };
    parse_raw(raw, &ctx).ok()
}

async fn publish_report(
    channel: &Channel,
    settings: &Settings,
    report: &Report,
) -> Result<(), lapin::Error> {
    let properties = BasicProperties::default()
        .with_content_type(ShortString::from("application/json"))
        .with_message_id(ShortString::from(report.msg_id.as_str()));
    let routing = (
        settings.amqp.exchange.as_str(),
        settings.amqp.queue.as_str(),
    );
    let payload = report.to_envelope_json();
    amqp::publish_confirmed(channel, routing, &payload, properties, CONFIRM_TIMEOUT).await?;
    Ok(())
}
