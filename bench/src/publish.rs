//! Publishing straight to the broker with lapin, the way ingest does: persistent,
//! mandatory, confirm mode, channels used round-robin, one confirm awaited per message.
//!
//! Used for the raw publish ceiling and to pre-fill the queue the processor drains.

use crate::{error::Result, load::Worker, workload::Workload};
use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::ShortString,
    BasicProperties, Channel, Confirmation, Connection,
};
use shared::amqp::{self, AmqpSettings};
use std::sync::Arc;

/// What each message carries.
#[derive(Clone)]
pub enum Payloads {
    /// The same bytes every time: the typical envelope, built once.
    Same(Arc<Vec<u8>>),
    /// Report `i` of the workload, so every message is a distinct report.
    Reports(Arc<Workload>),
}

/// One broker connection with channels in confirm mode.
pub struct Publishers {
    connection: Connection,
    channels: Vec<Channel>,
    settings: AmqpSettings,
}

impl Publishers {
    /// Connects and puts `channel_count` channels in confirm mode.
    pub async fn open(settings: &AmqpSettings, channel_count: usize) -> Result<Publishers> {
        let connection = amqp::connect(settings, "dlr-bench-publisher").await?;
        let mut channels = Vec::with_capacity(channel_count);
        for _ in 0..channel_count.max(1) {
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            channels.push(channel);
        }

        Ok(Publishers {
            connection,
            channels,
            settings: settings.clone(),
        })
    }

    /// `count` workers publishing `payloads`, spread round-robin over the channels, as
    /// ingest spreads its requests.
    pub fn workers(&self, count: usize, payloads: &Payloads) -> Vec<PublishWorker> {
        (0..count)
            .map(|i| PublishWorker {
                channel: self.channels[i % self.channels.len()].clone(),
                exchange: self.settings.exchange.clone(),
                routing_key: self.settings.queue.clone(),
                payloads: payloads.clone(),
            })
            .collect()
    }

    /// Closes the connection.
    pub async fn close(self) {
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// Publishes one message at a time on its channel and waits for its confirm.
pub struct PublishWorker {
    channel: Channel,
    exchange: String,
    routing_key: String,
    payloads: Payloads,
}

impl Worker for PublishWorker {
    async fn call(&mut self, index: u64) -> bool {
        let built;
        let payload: &[u8] = match &self.payloads {
            Payloads::Same(bytes) => bytes,
            Payloads::Reports(workload) => {
                built = workload.envelope(index);
                &built
            }
        };
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/json"))
            .with_message_id(ShortString::from(format!("bench-{index}")))
            .with_timestamp(chrono::Utc::now().timestamp().max(0) as u64);
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };

        let published = self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                self.routing_key.as_str().into(),
                options,
                payload,
                properties,
            )
            .await;
        match published {
            Ok(confirm) => matches!(confirm.await, Ok(Confirmation::Ack(None))),
            Err(_) => false,
        }
    }
}
