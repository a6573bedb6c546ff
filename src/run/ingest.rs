//! Ingestion: an actor of its own that opens the inputs (files, folders, globs, Blob Storage
//! containers: [`crate::source`]), keeps this task's shard and phase, and streams the items to
//! the planner in chunks as it reads them. The planner pulls ([`NextChunk`]), so ingestion
//! never reads further ahead than one chunk: a container of a million blobs is listed and read
//! while the plan grows, not into memory first. It runs on the run's own thread: handing items
//! to another thread made planning slower (the allocator pays for memory freed on a thread
//! other than the one that allocated it; see load-tests/README.md, "plan").

use actix::prelude::*;

use crate::item::Item;
use crate::source::select::Selection;
use crate::source::{InputError, InputOptions, SourceError};

/// Items per chunk: large enough that the messages cost nothing next to parsing.
const CHUNK: usize = 1024;

/// Items read, or why a line could not be read as one, in input order.
pub type Chunk = Vec<Result<Item, SourceError>>;

type Items = Box<dyn Iterator<Item = Result<Item, SourceError>> + Send>;

/// Planner → ingestion: the next chunk, or `None` once the inputs are read to the end.
#[derive(Message)]
#[rtype(result = "Option<Chunk>")]
pub struct NextChunk;

pub struct Ingestion {
    /// `None` once read to the end.
    items: Option<Items>,
}

impl Ingestion {
    /// Opens the inputs (a Blob container is listed as it is read) with this task's selection.
    pub fn open(inputs: &[String], options: &InputOptions, selection: Selection) -> Result<Ingestion, InputError> {
        let sources = crate::source::open_inputs_with(inputs, options)?;
        Ok(Ingestion { items: Some(Box::new(selection.apply(crate::source::read_all(sources)))) })
    }
}

impl Actor for Ingestion {
    type Context = Context<Self>;
}

impl Handler<NextChunk> for Ingestion {
    type Result = MessageResult<NextChunk>;

    fn handle(&mut self, _: NextChunk, ctx: &mut Context<Self>) -> MessageResult<NextChunk> {
        let Some(items) = self.items.as_mut() else { return MessageResult(None) };
        let chunk: Chunk = items.by_ref().take(CHUNK).collect();
        if chunk.is_empty() {
            self.items = None;
            ctx.stop();
            return MessageResult(None);
        }
        MessageResult(Some(chunk))
    }
}

/// Pulls every chunk from `ingestion`, in order, into `each` (the planner's side).
pub async fn drain(ingestion: Recipient<NextChunk>, mut each: impl FnMut(Result<Item, SourceError>)) {
    // Each round reads at least one item or ends; an actor that went away ends it too.
    while let Ok(Some(chunk)) = ingestion.send(NextChunk).await {
        chunk.into_iter().for_each(&mut each);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::ItemKey;

    /// An Import-Jobs NDJSON file of twins `t0`… (the header on lines 1–3), with a line that is
    /// not JSON after twin `bad_after`.
    fn twins_ndjson(twins: usize, bad_after: Option<usize>) -> String {
        let mut text =
            String::from("{\"Section\": \"Header\"}\n{\"fileVersion\": \"1.0.0\"}\n{\"Section\": \"Twins\"}\n");
        for i in 0..twins {
            text.push_str(&format!("{{\"$dtId\":\"t{i}\",\"$metadata\":{{\"$model\":\"dtmi:a:b;1\"}}}}\n"));
            if bad_after == Some(i) {
                text.push_str("{not json\n");
            }
        }
        text
    }

    #[test]
    fn every_item_arrives_once_in_input_order_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.ndjson");
        let twins = CHUNK * 2 + 7;
        std::fs::write(&path, twins_ndjson(twins, Some(5))).unwrap();
        let input = vec![path.display().to_string()];
        let got = actix::System::new().block_on(async move {
            let ingestion = Ingestion::open(&input, &InputOptions::default(), Selection::default()).unwrap().start();
            let mut got = Vec::new();
            drain(ingestion.recipient(), |r| got.push(r)).await;
            got
        });
        assert_eq!(got.len(), twins + 1);
        let ids: Vec<String> = got
            .iter()
            .filter_map(|r| match r.as_ref().ok().map(Item::key) {
                Some(ItemKey::Twin { id }) => Some(id),
                _ => None,
            })
            .collect();
        assert_eq!(ids, (0..twins).map(|i| format!("t{i}")).collect::<Vec<_>>());
        let bad = got.iter().position(Result::is_err).unwrap();
        assert_eq!(bad, 6, "the bad line keeps its place");
        assert_eq!(got[bad].as_ref().unwrap_err().origin.line, 10);
    }

    #[test]
    fn a_shard_takes_only_its_items() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.ndjson");
        std::fs::write(&path, twins_ndjson(200, None)).unwrap();
        let input = vec![path.display().to_string()];
        let counts: Vec<usize> = (0..2)
            .map(|i| {
                let input = input.clone();
                actix::System::new().block_on(async move {
                    let shard = format!("{i}/2").parse().unwrap();
                    let selection = Selection { shard: Some(shard), ..Selection::default() };
                    let ingestion = Ingestion::open(&input, &InputOptions::default(), selection).unwrap().start();
                    let mut n = 0;
                    drain(ingestion.recipient(), |_| n += 1).await;
                    n
                })
            })
            .collect();
        assert_eq!(counts.iter().sum::<usize>(), 200);
        assert!(counts.iter().all(|&n| n > 50), "{counts:?}");
    }
}
