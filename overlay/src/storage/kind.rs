//! Kinds (RFC 6940 §7.4.5): what a Kind-ID means to the store — its data model, who may
//! write it, and how much of it one Resource may hold — and the registry of the Kinds an
//! overlay knows.
//!
//! The registry is the overlay configuration's `<required-kinds>` in code. It is the
//! `models` callback of the wire parsers ([`Kinds::model`]), so a Kind the registry does
//! not know cannot be parsed, stored or fetched: the node answers Error_Unknown_Kind
//! ([`Kinds::parse_store`] collects the full list for it).

use super::StorageError;
use crate::wire::{DataModel, FetchReq, KindId, StoreReq, WireError};

/// Who may write a value (RFC 6940 §7.3; hipbone's certificate-less reading is in
/// docs/OVERLAY.md, "Storage"). The signer is always the HIT of the Ed25519 key that
/// signed the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessPolicy {
    /// Resource-ID = H(signer's user name), the user name chosen by [`UserName`].
    UserMatch,
    /// Resource-ID = H(signer's Node-ID as its 16 raw bytes).
    NodeMatch,
    /// Dictionary Kinds only: Resource-ID = H(signer's user name) **and** dictionary key =
    /// signer's Node-ID (16 raw bytes).
    UserNodeMatch,
}

/// What "the signer's user name" is for [`AccessPolicy::UserMatch`] and
/// [`AccessPolicy::UserNodeMatch`]. RFC 6940 takes it from the X.509 certificate; our
/// certificates (R9) are bare keys, so a Kind says which reading it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserName {
    /// The signer's HIT as RFC 5952 text (`2001:25:…`, lower case, `::` for the longest
    /// zero run): the only name a raw key attests.
    HitText,
    /// No name is attested: the Resource Name is whatever the writer claims, and only the
    /// dictionary key binds an entry to its writer (under USER-NODE-MATCH). R11's
    /// NAME-RECORD until configuration-signed name grants exist; safe only in closed
    /// overlays (RFC 6940 §4.1's Sybil caveat).
    Unattested,
    /// The value names its Resource Name: it is a [`NameRecord`](crate::wire::NameRecord)
    /// whose `name` hashes to the Resource-ID and whose `hit` is the signer. One key can
    /// then write only where the names it claims lead, one entry per name; whether it may
    /// claim a name at all is the resolver's question (name grants). NAME-RECORD.
    Claimed,
}

/// One Kind's definition: the configuration's `<kind>` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KindDef {
    pub id: KindId,
    pub model: DataModel,
    pub policy: AccessPolicy,
    pub user_name: UserName,
    /// Values one Resource may hold of this Kind: 1 for single values, entries for
    /// dictionaries, the array's length (gaps included) for arrays.
    pub max_count: u32,
    /// Bytes of one value (`DataValue.value`, without its length prefix).
    pub max_size: u32,
    /// Seconds a value is kept at most, whatever lifetime its Store asks for: a value
    /// that outlives its owner's refreshes would be a record nobody can correct.
    pub max_lifetime: u32,
}

/// SIP-REGISTRATION (RFC 7904): the value is a `SipRegistration`, the dictionary key the
/// registering device's Node-ID.
pub const SIP_REGISTRATION: KindId = 0x1;
/// HIT-LOCATOR (R11): a host's locators, stored at H(16 raw HIT bytes).
pub const HIT_LOCATOR: KindId = 0xF000_0001;
/// NAME-RECORD (R11): a peer name, stored at H(`label.overlay-name`), keyed by the owner.
pub const NAME_RECORD: KindId = 0xF000_0002;
/// DEBUG-ARRAY: a free-form array for `hipbone overlay store|fetch`, stored at H(16 raw
/// HIT bytes) of its writer. NODE-MATCH so that even the debugging Kind has an owner.
pub const DEBUG_ARRAY: KindId = 0xF000_0003;

impl KindDef {
    /// SIP-REGISTRATION as RFC 7904 §7 defines it; the user name is the HIT text until
    /// name grants exist (R14 (a)). 16 devices per AOR; 1 KiB fits a route with a long
    /// destination list.
    pub const SIP_REGISTRATION: KindDef = KindDef {
        id: SIP_REGISTRATION,
        model: DataModel::Dictionary,
        policy: AccessPolicy::UserNodeMatch,
        user_name: UserName::HitText,
        max_count: 16,
        max_lifetime: 86_400,
        max_size: 1024,
    };

    /// HIT-LOCATOR (R11): single value, only the HIT's owner writes. 1 KiB holds ~50 IPv6
    /// locators with ports.
    pub const HIT_LOCATOR: KindDef = KindDef {
        id: HIT_LOCATOR,
        model: DataModel::Single,
        policy: AccessPolicy::NodeMatch,
        user_name: UserName::HitText,
        max_count: 1,
        max_lifetime: 3_600,
        max_size: 1024,
    };

    /// NAME-RECORD (R11): dictionary keyed by the owner's HIT under any claimed name; 16
    /// claimants per name at most.
    pub const NAME_RECORD: KindDef = KindDef {
        id: NAME_RECORD,
        model: DataModel::Dictionary,
        policy: AccessPolicy::UserNodeMatch,
        user_name: UserName::Claimed,
        max_count: 16,
        max_lifetime: 86_400,
        max_size: 512,
    };

    /// DEBUG-ARRAY: see [`DEBUG_ARRAY`].
    pub const DEBUG_ARRAY: KindDef = KindDef {
        id: DEBUG_ARRAY,
        model: DataModel::Array,
        policy: AccessPolicy::NodeMatch,
        user_name: UserName::HitText,
        max_count: 64,
        max_lifetime: 86_400,
        max_size: 1024,
    };

    /// Longest array a Kind may define. An array's length counts its gaps and a Fetch
    /// returns each gap as a synthesised entry, so the length bounds the answer.
    pub const MAX_ARRAY_LEN: u32 = 4096;

    /// Why this definition cannot be used, if it cannot.
    fn problem(&self) -> Option<&'static str> {
        if self.id == 0 {
            return Some("Kind-ID 0 is invalid");
        }
        if self.max_count == 0 {
            return Some("max_count is 0");
        }
        if self.max_lifetime == 0 {
            return Some("max_lifetime is 0");
        }
        if self.model == DataModel::Single && self.max_count != 1 {
            return Some("a single-value Kind holds exactly one value");
        }
        // A Fetch of an array synthesises its gaps: the length must stay small.
        if self.model == DataModel::Array && self.max_count > KindDef::MAX_ARRAY_LEN {
            return Some("array max_count above KindDef::MAX_ARRAY_LEN");
        }
        if self.policy == AccessPolicy::UserNodeMatch && self.model != DataModel::Dictionary {
            return Some("USER-NODE-MATCH needs a dictionary");
        }
        None
    }
}

/// The Kinds an overlay knows. Bounded by [`Kinds::MAX`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kinds {
    // Sorted by id: a handful of entries, looked up on every value.
    defs: Vec<KindDef>,
}

impl Kinds {
    /// Most Kinds one overlay may define. A configuration document lists a few; 256 leaves
    /// room without letting a document grow the table without limit.
    pub const MAX: usize = 256;

    /// A registry of `defs`. Refuses duplicates, more than [`Kinds::MAX`] entries and
    /// definitions that cannot work (Kind-ID 0, `max_count` 0, a single value with a count
    /// other than 1, USER-NODE-MATCH on something other than a dictionary).
    pub fn new(defs: impl IntoIterator<Item = KindDef>) -> Result<Kinds, StorageError> {
        let mut sorted: Vec<KindDef> = Vec::new();
        for def in defs {
            if sorted.len() == Kinds::MAX {
                return Err(StorageError::BadKindDef(
                    def.id,
                    "more Kinds than Kinds::MAX",
                ));
            }
            if let Some(why) = def.problem() {
                return Err(StorageError::BadKindDef(def.id, why));
            }
            match sorted.binary_search_by_key(&def.id, |d| d.id) {
                Ok(_) => return Err(StorageError::BadKindDef(def.id, "defined twice")),
                Err(at) => sorted.insert(at, def),
            }
        }
        Ok(Kinds { defs: sorted })
    }

    /// The Kinds hipbone uses: SIP-REGISTRATION, HIT-LOCATOR, NAME-RECORD, DEBUG-ARRAY.
    pub fn hipbone() -> Kinds {
        Kinds {
            defs: vec![
                KindDef::SIP_REGISTRATION,
                KindDef::HIT_LOCATOR,
                KindDef::NAME_RECORD,
                KindDef::DEBUG_ARRAY,
            ],
        }
    }

    pub fn get(&self, id: KindId) -> Option<&KindDef> {
        self.defs
            .binary_search_by_key(&id, |d| d.id)
            .ok()
            .and_then(|i| self.defs.get(i))
    }

    /// The model of a Kind: the `models` callback of [`StoreReq::parse`],
    /// [`FetchReq::parse`] and [`FetchAns::parse`](crate::wire::FetchAns::parse).
    pub fn model(&self, id: KindId) -> Option<DataModel> {
        self.get(id).map(|d| d.model)
    }

    pub fn iter(&self) -> impl Iterator<Item = &KindDef> {
        self.defs.iter()
    }

    /// The Kinds in `ids` that this registry does not know, in order, without repeats.
    pub fn unknown(&self, ids: &[KindId]) -> Vec<KindId> {
        let mut out: Vec<KindId> = Vec::new();
        for &id in ids {
            if self.get(id).is_none() && !out.contains(&id) {
                out.push(id);
            }
        }
        out
    }

    /// Parses a Store body, turning an unknown Kind into [`StorageError::UnknownKinds`]
    /// naming every unknown Kind of the request (what Error_Unknown_Kind carries).
    pub fn parse_store(&self, body: &[u8]) -> Result<StoreReq, StorageError> {
        StoreReq::parse(body, |k| self.model(k))
            .map_err(|e| self.parse_error(e, StoreReq::kinds(body)))
    }

    /// [`parse_store`](Self::parse_store) for a Fetch body.
    pub fn parse_fetch(&self, body: &[u8]) -> Result<FetchReq, StorageError> {
        FetchReq::parse(body, |k| self.model(k))
            .map_err(|e| self.parse_error(e, FetchReq::kinds(body)))
    }

    fn parse_error(&self, e: WireError, kinds: Result<Vec<KindId>, WireError>) -> StorageError {
        match (e, kinds) {
            (WireError::UnknownKind(k), Ok(all)) => {
                let unknown = self.unknown(&all);
                StorageError::UnknownKinds(if unknown.is_empty() { vec![k] } else { unknown })
            }
            (WireError::UnknownKind(k), Err(_)) => StorageError::UnknownKinds(vec![k]),
            (e, _) => StorageError::Malformed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ResourceId, StoreKindData};

    #[test]
    fn hipbone_kinds_are_valid_and_sorted() {
        let k = Kinds::hipbone();
        assert_eq!(Kinds::new(k.iter().copied()), Ok(k.clone()));
        assert_eq!(k.model(SIP_REGISTRATION), Some(DataModel::Dictionary));
        assert_eq!(k.model(HIT_LOCATOR), Some(DataModel::Single));
        assert_eq!(k.model(NAME_RECORD), Some(DataModel::Dictionary));
        assert_eq!(k.model(DEBUG_ARRAY), Some(DataModel::Array));
        assert_eq!(k.model(0x104), None);
        // The private range of RFC 6940 §14.6 (digest §2.20).
        for id in [HIT_LOCATOR, NAME_RECORD, DEBUG_ARRAY] {
            assert!((0xF000_0001..=0xFFFF_FFFE).contains(&id));
        }
    }

    #[test]
    fn bad_definitions_are_refused() {
        let sip = KindDef::SIP_REGISTRATION;
        assert!(Kinds::new([sip, sip]).is_err());
        assert!(Kinds::new([KindDef { id: 0, ..sip }]).is_err());
        assert!(Kinds::new([KindDef {
            max_count: 0,
            ..sip
        }])
        .is_err());
        assert!(Kinds::new([KindDef {
            model: DataModel::Array,
            ..sip
        }])
        .is_err());
        assert!(Kinds::new([KindDef {
            max_count: 2,
            ..KindDef::HIT_LOCATOR
        }])
        .is_err());
        let array = KindDef::DEBUG_ARRAY;
        let longest = KindDef {
            max_count: KindDef::MAX_ARRAY_LEN,
            ..array
        };
        assert!(Kinds::new([longest]).is_ok());
        assert!(Kinds::new([KindDef {
            max_count: KindDef::MAX_ARRAY_LEN + 1,
            ..array
        }])
        .is_err());
        let many = (1..=Kinds::MAX as u32 + 1).map(|id| KindDef { id, ..sip });
        assert!(Kinds::new(many).is_err());
        let enough = (1..=Kinds::MAX as u32).map(|id| KindDef { id, ..sip });
        assert_eq!(Kinds::new(enough).map(|k| k.iter().count()), Ok(Kinds::MAX));
    }

    #[test]
    fn unknown_kinds_are_all_named() {
        let req = StoreReq {
            resource: ResourceId(vec![1; 16]),
            replica_number: 0,
            kind_data: [0x104, HIT_LOCATOR, 0x105, 0x104]
                .into_iter()
                .map(|kind| StoreKindData {
                    kind,
                    generation: 0,
                    values: vec![],
                })
                .collect(),
        };
        let kinds = Kinds::hipbone();
        assert_eq!(
            kinds.parse_store(&req.to_bytes()),
            Err(StorageError::UnknownKinds(vec![0x104, 0x105]))
        );
        assert_eq!(
            kinds.parse_store(&[1, 2]),
            Err(StorageError::Malformed(WireError::Truncated))
        );
        let fine = StoreReq {
            kind_data: vec![],
            ..req
        };
        assert_eq!(kinds.parse_store(&fine.to_bytes()), Ok(fine));
    }
}
