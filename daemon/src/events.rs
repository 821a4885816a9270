//! The `/events` feed: every action is broadcast to live subscribers and kept in a bounded
//! ring so `since` can replay recent history. A slow subscriber misses events (it is told
//! nothing more), it never slows the daemon.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::sync::broadcast;

const KEEP: usize = 1024;

#[derive(Debug, Clone)]
pub struct Event {
    pub kind: &'static str,
    pub action: String,
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    pub time: SystemTime,
}

impl Event {
    /// The JSON line Docker sends (with the legacy `status`/`id`/`from` for containers and
    /// images, which older clients still read).
    pub fn to_json(&self) -> serde_json::Value {
        let d = self.time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut v = json!({
            "Type": self.kind,
            "Action": self.action,
            "Actor": {"ID": self.id, "Attributes": self.attributes},
            "scope": "local",
            "time": d.as_secs(),
            "timeNano": d.as_nanos() as u64,
        });
        if self.kind == "container" || self.kind == "image" {
            v["status"] = json!(self.action);
            v["id"] = json!(self.id);
            if let Some(img) = self.attributes.get("image") {
                v["from"] = json!(img);
            }
        }
        v
    }
}

pub struct Events {
    tx: broadcast::Sender<Arc<Event>>,
    recent: Mutex<VecDeque<Arc<Event>>>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(256).0,
            recent: Mutex::new(VecDeque::with_capacity(KEEP)),
        }
    }
}

impl Events {
    pub fn publish(
        &self,
        kind: &'static str,
        action: impl Into<String>,
        id: &str,
        attributes: impl IntoIterator<Item = (String, String)>,
    ) {
        let e = Arc::new(Event {
            kind,
            action: action.into(),
            id: id.to_string(),
            attributes: attributes.into_iter().collect(),
            time: SystemTime::now(),
        });
        let mut r = self.recent.lock().unwrap();
        if r.len() == KEEP {
            r.pop_front();
        }
        r.push_back(e.clone());
        // Under the ring's lock, so a subscriber sees each event once: in the replay or live.
        let _ = self.tx.send(e);
    }

    /// Past events from `since` on, and a receiver for everything after them.
    pub fn subscribe(
        &self,
        since: Option<SystemTime>,
    ) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        let r = self.recent.lock().unwrap();
        let past = match since {
            Some(t) => r.iter().filter(|e| e.time >= t).cloned().collect(),
            None => Vec::new(),
        };
        (past, self.tx.subscribe())
    }
}
