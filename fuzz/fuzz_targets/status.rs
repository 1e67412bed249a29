//! Fuzzes the statuses Barge writes and reads back: arbitrary JSON (seeded
//! with real statuses from `fuzz/seeds/status/`) decoded as a Promotion's,
//! Stage's or Freight's status must never panic, and whatever decodes must
//! encode and decode to the same value, so a status the controller reads
//! and writes back loses nothing.

#![no_main]

use barge::api::{FreightStatus, PromotionStatus, StageStatus};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trips<T>(data: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(decoded) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let encoded = serde_json::to_vec(&decoded).expect("a decoded status encodes");
    let once: T = serde_json::from_slice(&encoded).expect("an encoded status decodes");
    let encoded_once = serde_json::to_vec(&once).expect("a decoded status encodes");
    let twice: T = serde_json::from_slice(&encoded_once).expect("an encoded status decodes");
    assert_eq!(twice, once);
    let encoded_twice = serde_json::to_vec(&twice).expect("a decoded status encodes");
    assert_eq!(encoded_twice, encoded_once, "encoding is not stable");
}

fuzz_target!(|data: &[u8]| {
    round_trips::<PromotionStatus>(data);
    round_trips::<StageStatus>(data);
    round_trips::<FreightStatus>(data);
});
