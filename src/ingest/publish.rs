//! Publish slots: where a pushed stream (`inputs = [{ url = "publish://" }]`) meets its
//! publisher. The stream's ingest pipeline owns an `appsrc` and parks it in the slot; a
//! publisher (an RTMP connection) claims the slot — one at a time — and pushes FLV into it.
//! `appsrc` pushes never block (leaky queue), so a network task never waits on GStreamer.

use crate::stream::{PublishFeed, Publishing, Refusal};
use gstreamer as gst;
use gstreamer_app as gst_app;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// One publishable stream.
#[derive(Debug, Default)]
pub struct Slot {
    /// The stream's `publish_key`, when it has one.
    key: Option<String>,
    /// A publisher holds the slot.
    busy: AtomicBool,
    /// The stream stopped taking publishers here (deleted, or a new key): a publisher still
    /// holding the slot is disconnected.
    closed: AtomicBool,
    /// The appsrc of the current ingest pipeline; `None` between pipelines.
    appsrc: Mutex<Option<gst_app::AppSrc>>,
}

/// All publishable streams by name; the control plane adds and removes slots as streams with
/// `publish://` inputs come and go.
#[derive(Debug, Default, Clone)]
pub struct PublishSlots {
    slots: Arc<RwLock<HashMap<String, Arc<Slot>>>>,
}

impl PublishSlots {
    pub fn new(streams: impl IntoIterator<Item = (String, Option<String>)>) -> Self {
        let slots = PublishSlots::default();
        for (name, key) in streams {
            slots.open(&name, key);
        }
        slots
    }

    /// Opens the slot of stream `name`. An open slot with the same key stays as it is, so a
    /// publisher keeps publishing across a restart of the stream's pipeline; with another key
    /// the old slot is closed and its publisher disconnected.
    pub fn open(&self, name: &str, key: Option<String>) {
        let mut slots = self.write();
        if slots.get(name).is_some_and(|s| s.key == key) {
            return;
        }
        let slot = Arc::new(Slot {
            key,
            ..Slot::default()
        });
        if let Some(old) = slots.insert(name.to_owned(), slot) {
            old.closed.store(true, Ordering::Release);
        }
    }

    /// Closes the slot of a stream that no longer takes publishers; its publisher is
    /// disconnected.
    pub fn close(&self, name: &str) {
        if let Some(old) = self.write().remove(name) {
            old.closed.store(true, Ordering::Release);
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Slot>>> {
        self.slots.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn is_empty(&self) -> bool {
        self.slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    pub(super) fn slot(&self, name: &str) -> Option<Arc<Slot>> {
        self.slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Claims `name` for a publisher presenting `key` (constant-time compare).
    pub fn claim(&self, name: &str, key: Option<&str>) -> Result<Claim, Refusal> {
        self.claim_as(name, key, false)
    }

    fn claim_as(&self, name: &str, key: Option<&str>, authorized: bool) -> Result<Claim, Refusal> {
        let slot = self.slot(name).ok_or(Refusal::UnknownStream)?;
        if let (Some(expected), false) = (&slot.key, authorized) {
            let given = key.unwrap_or("");
            let same = expected.len() == given.len()
                && expected
                    .bytes()
                    .zip(given.bytes())
                    .fold(0u8, |d, (a, b)| d | (a ^ b))
                    == 0;
            if !same {
                return Err(Refusal::BadKey);
            }
        }
        if slot.busy.swap(true, Ordering::AcqRel) {
            return Err(Refusal::Busy);
        }
        Ok(Claim { slot: slot.clone() })
    }
}

impl Publishing for PublishSlots {
    fn claim(
        &self,
        name: &str,
        key: Option<&str>,
        authorized: bool,
    ) -> Result<Box<dyn PublishFeed>, Refusal> {
        Ok(Box::new(self.claim_as(name, key, authorized)?))
    }
}

impl PublishFeed for Claim {
    fn push(&self, data: Vec<u8>) -> bool {
        Claim::push(self, data)
    }

    fn is_closed(&self) -> bool {
        Claim::is_closed(self)
    }
}

impl Slot {
    /// The ingest pipeline offers its appsrc (or withdraws it with `None`).
    pub(super) fn attach(&self, appsrc: Option<gst_app::AppSrc>) {
        *self.appsrc.lock().unwrap_or_else(PoisonError::into_inner) = appsrc;
    }

    /// True while a publisher holds the slot.
    pub(super) fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }
}

/// A publisher's hold on a slot; released on drop (the stream's pipeline then ends and waits
/// for the next publisher).
#[derive(Debug)]
pub struct Claim {
    slot: Arc<Slot>,
}

impl Claim {
    /// The stream no longer takes this publisher (deleted, or its key changed).
    pub fn is_closed(&self) -> bool {
        self.slot.closed.load(Ordering::Acquire)
    }

    /// Pushes bytes of the FLV stream; false when no pipeline is waiting for them.
    pub fn push(&self, data: Vec<u8>) -> bool {
        let guard = self
            .slot
            .appsrc
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(src) => src.push_buffer(gst::Buffer::from_mut_slice(data)).is_ok(),
            None => false,
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(src) = self
            .slot
            .appsrc
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = src.end_of_stream();
        }
        self.slot.busy.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_refuse_unknown_bad_key_and_second_publisher() {
        let slots = PublishSlots::new([
            ("open".to_owned(), None),
            ("locked".to_owned(), Some("s3cret".to_owned())),
        ]);
        assert_eq!(
            slots.claim("nope", None).unwrap_err(),
            Refusal::UnknownStream
        );
        assert_eq!(
            slots.claim("locked", Some("wrong")).unwrap_err(),
            Refusal::BadKey
        );
        assert_eq!(slots.claim("locked", None).unwrap_err(), Refusal::BadKey);
        let held = slots.claim("locked", Some("s3cret")).unwrap();
        assert_eq!(
            slots.claim("locked", Some("s3cret")).unwrap_err(),
            Refusal::Busy
        );
        drop(held);
        assert!(slots.claim("locked", Some("s3cret")).is_ok());
        assert!(slots.claim("open", None).is_ok());
    }

    #[test]
    fn reopening_keeps_the_publisher_unless_the_key_changed() {
        let slots = PublishSlots::new([("s".to_owned(), Some("k".to_owned()))]);
        let held = slots.claim("s", Some("k")).unwrap();
        slots.open("s", Some("k".to_owned()));
        assert!(!held.is_closed(), "a restart keeps the publisher");
        slots.open("s", Some("k2".to_owned()));
        assert!(held.is_closed(), "a new key disconnects it");
        let again = slots.claim("s", Some("k2")).unwrap();
        slots.close("s");
        assert!(again.is_closed());
        assert_eq!(
            slots.claim("s", Some("k2")).unwrap_err(),
            Refusal::UnknownStream
        );
    }
}
