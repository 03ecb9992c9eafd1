//! `[esp]` and `[hip]`: the protocol parameters a deployment may tune — the security
//! associations' replay window, rekeying and queue, and the association limit and I1
//! retransmission — with their defaults (hip's own) and their ranges.
//! [`Config::to_hip_config`](super::Config::to_hip_config) lays them over hip's defaults.

use std::time::Duration;

use serde::Deserialize;

use super::report::{broken, in_range, Broken, KeyPath};

/// `[esp]`: the data plane's security associations.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Esp {
    /// Anti-replay window, in packets (hip rounds it up to a multiple of 64).
    pub replay_window: u32,
    /// Rekey an SA after this many packets.
    pub rekey_after_packets: u64,
    /// Rekey an SA after this many seconds; 0 = never by time (see [`Esp::rekey_after`]).
    pub rekey_after_seconds: u64,
    /// Packets held per peer while a base exchange is under way; beyond it the newest are
    /// dropped.
    pub queue_per_peer: u32,
}

impl Default for Esp {
    fn default() -> Self {
        Esp {
            replay_window: 8192,
            // 2^32: where a 32-bit sequence number would wrap.
            rekey_after_packets: 1 << 32,
            rekey_after_seconds: 3600,
            queue_per_peer: 64,
        }
    }
}

impl Esp {
    /// `rekey_after_seconds` as a duration; `None` when rekeying by time is off.
    pub fn rekey_after(&self) -> Option<Duration> {
        (self.rekey_after_seconds != 0).then(|| Duration::from_secs(self.rekey_after_seconds))
    }

    /// The rules of `[esp]`.
    pub(super) fn check(&self) -> Result<(), Broken> {
        let key = |k: &str| KeyPath::of(&["esp", k]);
        // The upper bound is hip's (a 128 KiB bitmap per SA); below 64 a window is smaller
        // than one bitmap word and than RFC 4303's recommended size.
        in_range(
            key("replay_window"),
            self.replay_window as usize,
            64,
            hip::esp::MAX_REPLAY_WINDOW,
            " packets",
        )?;
        // With 64-bit sequence numbers, at least 2^32 packets of margin for the rekey
        // exchange to finish before the counter would wrap.
        in_range(
            key("rekey_after_packets"),
            self.rekey_after_packets,
            1,
            u64::MAX - (1 << 32) + 1,
            " packets",
        )?;
        // Bounded so that `now + rekey_after` can never overflow an `Instant`.
        in_range(
            key("rekey_after_seconds"),
            self.rekey_after_seconds,
            0,
            u64::from(u32::MAX),
            " seconds (0 = never by time)",
        )?;
        in_range(
            key("queue_per_peer"),
            self.queue_per_peer,
            1,
            65536,
            " packets",
        )
    }
}

/// `[hip]`: the few [`hip::Config`] fields a deployment may need to change; the others keep
/// their defaults (see [`Config::to_hip_config`](super::Config::to_hip_config)).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HipSection {
    /// Most associations in any state at once.
    pub max_associations: usize,
    /// First I1 retransmission timeout, in milliseconds; doubles after each retry.
    pub i1_timeout_ms: u64,
    /// I1 transmissions before the exchange fails.
    pub i1_tries: u32,
}

impl Default for HipSection {
    fn default() -> Self {
        let hip = hip::Config::default();
        HipSection {
            max_associations: hip.max_associations,
            // hip's default is a few hundred milliseconds; saturate rather than fail on
            // an absurd value.
            i1_timeout_ms: u64::try_from(hip.i1_timeout.as_millis()).unwrap_or(u64::MAX),
            i1_tries: hip.i1_tries,
        }
    }
}

impl HipSection {
    /// The rules of `[hip]`.
    pub(super) fn check(&self) -> Result<(), Broken> {
        let key = |k: &str| KeyPath::of(&["hip", k]);
        if self.max_associations == 0 {
            return Err(broken(
                key("max_associations"),
                "hip.max_associations = 0 would refuse every association".to_owned(),
            ));
        }
        // Below 10 ms an I1 is retransmitted before any real path can answer; above a
        // minute one lost packet stalls a connection for minutes.
        in_range(key("i1_timeout_ms"), self.i1_timeout_ms, 10, 60_000, " ms")?;
        if self.i1_tries == 0 {
            return Err(broken(
                key("i1_tries"),
                "hip.i1_tries = 0 would never send an I1 (at least 1)".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{parse, refused};

    #[test]
    fn every_esp_and_hip_rule_names_its_key() {
        let cases = [
            (
                "[esp]\nreplay_window = 63",
                "esp.replay_window",
                "63 is outside 64..=1048576",
            ),
            (
                "[esp]\nreplay_window = 1048577",
                "esp.replay_window",
                "outside 64..=1048576",
            ),
            (
                "[esp]\nrekey_after_packets = 0",
                "esp.rekey_after_packets",
                "0 is outside 1..=18446744069414584320",
            ),
            (
                "[esp]\nrekey_after_seconds = 4294967296",
                "esp.rekey_after_seconds",
                "outside 0..=4294967295",
            ),
            (
                "[esp]\nqueue_per_peer = 0",
                "esp.queue_per_peer",
                "0 is outside 1..=65536",
            ),
            (
                "[esp]\nqueue_per_peer = 65537",
                "esp.queue_per_peer",
                "outside 1..=65536",
            ),
            (
                "[hip]\nmax_associations = 0",
                "hip.max_associations",
                "would refuse every association",
            ),
            (
                "[hip]\ni1_timeout_ms = 9",
                "hip.i1_timeout_ms",
                "9 is outside 10..=60000",
            ),
            (
                "[hip]\ni1_timeout_ms = 60001",
                "hip.i1_timeout_ms",
                "outside 10..=60000",
            ),
            (
                "[hip]\ni1_tries = 0",
                "hip.i1_tries",
                "would never send an I1",
            ),
        ];
        for (text, key, problem) in cases {
            let msg = refused(text, key);
            assert!(msg.contains(problem), "{text}: {msg}");
            assert!(msg.starts_with("hipbone.toml:2: "), "{text}: {msg}");
        }
        for text in [
            "[esp]\nreplay_window = 64\nrekey_after_seconds = 0\nqueue_per_peer = 65536",
            "[esp]\nreplay_window = 1048576\nrekey_after_packets = 1",
            "[esp]\nrekey_after_packets = 9223372036854775807",
            "[hip]\nmax_associations = 1\ni1_timeout_ms = 10\ni1_tries = 1",
        ] {
            if let Err(e) = parse(text) {
                panic!("{text}: {e}");
            }
        }
        assert_eq!(
            parse("[esp]\nrekey_after_seconds = 0\n")
                .unwrap()
                .esp
                .rekey_after(),
            None
        );
    }
}
