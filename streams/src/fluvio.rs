//! The [`Broker`] on a real Fluvio cluster, through the official `fluvio`
//! crate. One consumer stream per partition is kept open and reused while
//! reads go on from where the last one stopped; producers are kept per topic.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use fluvio::consumer::ConsumerConfigExt;
use fluvio::metadata::partition::PartitionSpec;
use fluvio::metadata::topic::TopicSpec;
use fluvio::{Fluvio, FluvioClusterConfig, Offset, TopicProducerPool};
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::sync::Mutex;

use crate::broker::{Broker, TopicRecord};
use crate::error::StreamError;

type RecordStream = Pin<Box<dyn Stream<Item = Result<TopicRecord, String>> + Send>>;

/// A connection to a Fluvio cluster.
pub struct FluvioBroker {
    client: Fluvio,
    streams: Mutex<HashMap<(String, u32), (i64, RecordStream)>>,
    producers: Mutex<HashMap<String, Arc<TopicProducerPool>>>,
}

fn unreachable(what: &'static str) -> impl Fn(anyhow::Error) -> StreamError {
    move |e| StreamError::Unreachable { what, message: format!("{e:#}") }
}

impl FluvioBroker {
    /// Connect to the cluster's SC at `endpoint` (`host:port`, plain TCP).
    ///
    /// # Errors
    /// When the cluster cannot be reached.
    pub async fn connect(endpoint: &str) -> Result<FluvioBroker, StreamError> {
        let client = Fluvio::connect_with_config(&FluvioClusterConfig::new(endpoint)).await.map_err(unreachable("connect"))?;
        Ok(FluvioBroker { client, streams: Mutex::new(HashMap::new()), producers: Mutex::new(HashMap::new()) })
    }

    /// Create `topic` with `partitions` partitions and one replica each, if it does not exist.
    ///
    /// # Errors
    /// When the cluster refuses.
    pub async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), StreamError> {
        let admin = self.client.admin().await;
        let existing = admin.list::<TopicSpec, String>(vec![topic.to_owned()]).await.map_err(unreachable("list topics"))?;
        if !existing.is_empty() {
            return Ok(());
        }
        admin.create(topic.to_owned(), false, TopicSpec::new_computed(partitions, 1, None)).await.map_err(unreachable("create topic"))
    }

    async fn open(&self, topic: &str, partition: u32, offset: i64) -> Result<RecordStream, StreamError> {
        let config = ConsumerConfigExt::builder()
            .topic(topic.to_owned())
            .partition(partition)
            .offset_start(Offset::absolute(offset).map_err(|e| StreamError::Platform { what: "offset", message: e.to_string() })?)
            .build()
            .map_err(|e| StreamError::Platform { what: "consumer config", message: e.to_string() })?;
        let stream = self.client.consumer_with_config(config).await.map_err(unreachable("consume"))?;
        Ok(Box::pin(stream.map(move |r| {
            r.map(|rec| TopicRecord { partition, offset: rec.offset(), key: rec.key().map(<[u8]>::to_vec), value: rec.value().to_vec() }).map_err(|e| format!("{e:?}"))
        })))
    }

    async fn producer(&self, topic: &str) -> Result<Arc<TopicProducerPool>, StreamError> {
        let mut producers = self.producers.lock().await;
        if let Some(p) = producers.get(topic) {
            return Ok(p.clone());
        }
        let p = Arc::new(self.client.topic_producer(topic.to_owned()).await.map_err(unreachable("producer"))?);
        producers.insert(topic.to_owned(), p.clone());
        Ok(p)
    }
}

impl Broker for FluvioBroker {
    async fn fetch(&self, topic: &str, partition: u32, offset: i64, max: usize, wait: Duration) -> Result<Vec<TopicRecord>, StreamError> {
        let mut streams = self.streams.lock().await;
        let key = (topic.to_owned(), partition);
        let reuse = streams.get(&key).is_some_and(|(next, _)| *next == offset);
        if !reuse {
            let stream = self.open(topic, partition, offset).await?;
            streams.insert(key.clone(), (offset, stream));
        }
        let (next, stream) = streams.get_mut(&key).expect("opened above");
        let mut out = Vec::new();
        let first = match tokio::time::timeout(wait, stream.next()).await {
            Err(_) => return Ok(out),
            Ok(first) => first,
        };
        let mut item = first;
        loop {
            match item {
                Some(Ok(rec)) => {
                    *next = rec.offset + 1;
                    out.push(rec);
                }
                Some(Err(e)) => {
                    // The stream is spent: the next fetch opens a new one at the right offset.
                    streams.remove(&key);
                    return if out.is_empty() { Err(StreamError::Unreachable { what: "fetch", message: e }) } else { Ok(out) };
                }
                None => {
                    streams.remove(&key);
                    return Ok(out);
                }
            }
            if out.len() >= max {
                return Ok(out);
            }
            // Take what has already arrived; do not wait for more.
            match stream.next().now_or_never() {
                Some(more) => item = more,
                None => return Ok(out),
            }
        }
    }

    async fn produce(&self, topic: &str, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StreamError> {
        let producer = self.producer(topic).await?;
        let mut outputs = Vec::with_capacity(records.len());
        for (key, value) in records {
            outputs.push(producer.send(key.clone(), value.clone()).await.map_err(unreachable("produce"))?);
        }
        producer.flush().await.map_err(unreachable("flush"))?;
        for o in outputs {
            o.wait().await.map_err(|e| StreamError::Unreachable { what: "produce", message: e.to_string() })?;
        }
        Ok(())
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<i64, StreamError> {
        let admin = self.client.admin().await;
        let name = format!("{topic}-{partition}");
        let found = admin.list::<PartitionSpec, String>(vec![name.clone()]).await.map_err(unreachable("list partitions"))?;
        found.first().map(|p| p.status.leader.hw).ok_or(StreamError::NoTopic(name))
    }

    async fn partitions(&self, topic: &str) -> Result<u32, StreamError> {
        let admin = self.client.admin().await;
        let found = admin.list::<TopicSpec, String>(vec![topic.to_owned()]).await.map_err(unreachable("list topics"))?;
        found.first().map(|t| t.spec.partitions()).ok_or_else(|| StreamError::NoTopic(topic.to_owned()))
    }
}
