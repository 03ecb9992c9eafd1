//! Access control (RFC 6940 §7.3) with HIT identities, and the checks a node runs on the
//! values a Fetch brought back.
//!
//! Every writer is a HIT (R9): the "certificate" is the Ed25519 key, its Node-ID the HIT of
//! that key. So, with `H` the Resource-ID hash of [`crate::id::resource_id`]:
//!
//! | Policy | A value is accepted iff |
//! |---|---|
//! | NODE-MATCH | Resource-ID = H(signer HIT, 16 raw bytes) |
//! | USER-MATCH | Resource-ID = H(user name) |
//! | USER-NODE-MATCH | Resource-ID = H(user name) and dictionary key = signer HIT (16 raw bytes) |
//!
//! where the user name is the signer's HIT as RFC 5952 text ([`UserName::HitText`]), or
//! anything at all for Kinds whose names nobody attests ([`UserName::Unattested`]). The
//! reasons are in docs/OVERLAY.md, "Storage".
//!
//! A Fetch answer comes from whichever peer stores the Resource, and that peer may lie; so
//! the fetching node checks every value it received with [`verify_fetch_answer`] exactly
//! as a storing peer checks a Store, and keeps only what passes.

use super::kind::{AccessPolicy, KindDef, Kinds, UserName};
use super::signature::{is_synthetic, verify_value, Certificates, Signer};
use super::StorageError;
use crate::id::resource_id;
use crate::wire::{
    FetchAns, FetchReq, KindId, NameRecord, NodeId, ResourceId, Selector, StoredData,
    StoredDataValue,
};

/// The user name of `node` under `rule`, as the Resource Name bytes it hashes to; `None`
/// when no name is attested.
pub fn user_name(rule: UserName, node: NodeId) -> Option<Vec<u8>> {
    match rule {
        UserName::HitText => Some(hip::Hit::from(node).to_string().into_bytes()),
        UserName::Unattested | UserName::Claimed => None,
    }
}

/// The Resource-ID where `node` may write values of `def` (for the policies that fix one:
/// NODE-MATCH, and USER-MATCH / USER-NODE-MATCH with an attested user name).
pub fn owned_resource(def: &KindDef, node: NodeId) -> Option<ResourceId> {
    match def.policy {
        AccessPolicy::NodeMatch => Some(resource_id(&node.0)),
        AccessPolicy::UserMatch | AccessPolicy::UserNodeMatch => {
            user_name(def.user_name, node).map(|name| resource_id(&name))
        }
    }
}

/// May `signer` write `value` of Kind `def` at `resource`?
pub fn check(
    def: &KindDef,
    resource: &ResourceId,
    value: &StoredDataValue,
    signer: NodeId,
) -> Result<(), StorageError> {
    let denied = || StorageError::AccessDenied {
        kind: def.id,
        policy: def.policy,
    };
    let resource_ok = match (def.policy, def.user_name) {
        (AccessPolicy::NodeMatch, _) => *resource == resource_id(&signer.0),
        (_, UserName::Claimed) => claimed_name(value)
            .is_some_and(|rec| *resource == resource_id(&rec.name) && rec.hit == signer),
        (_, rule) => match user_name(rule, signer) {
            Some(name) => *resource == resource_id(&name),
            None => true,
        },
    };
    if !resource_ok {
        return Err(denied());
    }
    if def.policy == AccessPolicy::UserNodeMatch {
        match value {
            StoredDataValue::Dictionary { key, .. } if key[..] == signer.0[..] => {}
            _ => return Err(denied()),
        }
    }
    Ok(())
}

/// The [`NameRecord`] a value of a [`UserName::Claimed`] Kind carries, deletions included
/// (a deletion names what it deletes).
fn claimed_name(value: &StoredDataValue) -> Option<NameRecord> {
    NameRecord::parse(&value.data().value).ok()
}

/// Signature ([`verify_value`]) and access ([`check`]) of one value, and the value's layout
/// against its Kind's model.
pub fn authorize(
    def: &KindDef,
    resource: &ResourceId,
    data: &StoredData,
    certs: &Certificates,
) -> Result<Signer, StorageError> {
    if data.value.model() != def.model {
        return Err(StorageError::WrongModel(def.id));
    }
    let signer = verify_value(resource, def.id, data, certs)?;
    check(def, resource, &data.value, signer.node)?;
    Ok(signer)
}

/// A value of a Fetch answer that passed every check, with its writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedValue {
    pub data: StoredData,
    pub signer: NodeId,
}

/// The good values of one Kind of a Fetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedKind {
    pub kind: KindId,
    pub generation: u64,
    pub values: Vec<VerifiedValue>,
}

/// What [`verify_fetch_answer`] kept and what it refused. RFC 6940 §7.4.2 lets a node use
/// the good part of an answer; `rejected` is there so that it can also say (log, count,
/// try another replica) that the storing peer sent something bad.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifiedFetch {
    pub kinds: Vec<VerifiedKind>,
    /// One entry per refused value (or per refused Kind response).
    pub rejected: Vec<(KindId, StorageError)>,
}

/// Checks a Fetch answer against the request that asked for it: only Kinds the request
/// named, once each; only dictionary keys it asked for (when it named keys); every value
/// signed by a key in `certs` (the answer's security block) and allowed by the Kind's
/// policy at the request's Resource-ID. Synthesised "does not exist" entries are dropped
/// silently: they assert only absence. Never fails as a whole: bad values are listed in
/// [`VerifiedFetch::rejected`].
pub fn verify_fetch_answer(
    kinds: &Kinds,
    req: &FetchReq,
    ans: &FetchAns,
    certs: &Certificates,
) -> VerifiedFetch {
    let mut out = VerifiedFetch::default();
    for response in &ans.kind_responses {
        let kind = response.kind;
        let spec = req.specifiers.iter().find(|s| s.kind == kind);
        let Some((spec, def)) = spec.zip(kinds.get(kind)) else {
            out.rejected.push((kind, StorageError::Unrequested(kind)));
            continue;
        };
        if out.kinds.iter().any(|k| k.kind == kind) {
            out.rejected.push((kind, StorageError::DuplicateKind(kind)));
            continue;
        }
        let mut good = VerifiedKind {
            kind,
            generation: response.generation,
            values: Vec::new(),
        };
        for data in &response.values {
            if is_synthetic(data) {
                continue;
            }
            let requested = match (&spec.selector, &data.value) {
                (Selector::Dictionary(keys), StoredDataValue::Dictionary { key, .. }) => {
                    keys.is_empty() || keys.contains(key)
                }
                _ => true,
            };
            if !requested {
                out.rejected.push((kind, StorageError::Unrequested(kind)));
                continue;
            }
            match authorize(def, &req.resource, data, certs) {
                Ok(signer) => good.values.push(VerifiedValue {
                    data: data.clone(),
                    signer: signer.node,
                }),
                Err(e) => out.rejected.push((kind, e)),
            }
        }
        out.kinds.push(good);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::kind::{HIT_LOCATOR, NAME_RECORD};
    use crate::storage::signature::sign_value;
    use crate::wire::{DataValue, FetchKindResponse, Signature, StoredDataSpecifier};
    use hip::HostIdentity;

    fn node(id: &HostIdentity) -> NodeId {
        NodeId::from(id.hit())
    }

    fn dict(key: &[u8]) -> StoredDataValue {
        StoredDataValue::Dictionary {
            key: key.to_vec(),
            value: DataValue {
                exists: true,
                value: b"v".to_vec(),
            },
        }
    }

    fn single() -> StoredDataValue {
        StoredDataValue::Single(DataValue {
            exists: true,
            value: b"v".to_vec(),
        })
    }

    #[test]
    fn the_user_name_is_the_hit_text() {
        let id = HostIdentity::from_secret([1; 32]);
        let text = id.hit().to_string();
        assert!(text.starts_with("2001:25:"), "{text}");
        assert_eq!(
            user_name(UserName::HitText, node(&id)),
            Some(text.into_bytes())
        );
        assert_eq!(user_name(UserName::Unattested, node(&id)), None);
        // A fixed HIT, so the text form itself is pinned (RFC 5952: lower case, the longest
        // zero run compressed, no leading zeros).
        let hit = NodeId(
            crate::storage::signature::tests::hex("20010025000000000000abcd00000001")
                .try_into()
                .unwrap(),
        );
        assert_eq!(
            user_name(UserName::HitText, hit),
            Some(b"2001:25::abcd:0:1".to_vec())
        );
    }

    #[test]
    fn node_match_accepts_the_owner_only() {
        let alice = HostIdentity::from_secret([1; 32]);
        let bob = HostIdentity::from_secret([2; 32]);
        let def = KindDef::HIT_LOCATOR;
        let at = resource_id(&alice.hit().0);
        assert_eq!(owned_resource(&def, node(&alice)), Some(at.clone()));
        assert_eq!(check(&def, &at, &single(), node(&alice)), Ok(()));
        assert!(check(&def, &at, &single(), node(&bob)).is_err());
        // The text form is USER-MATCH's name, not NODE-MATCH's.
        let text = resource_id(alice.hit().to_string().as_bytes());
        assert!(check(&def, &text, &single(), node(&alice)).is_err());
    }

    #[test]
    fn user_match_accepts_the_owner_only() {
        let alice = HostIdentity::from_secret([1; 32]);
        let bob = HostIdentity::from_secret([2; 32]);
        let def = KindDef {
            id: 0xF000_0010,
            policy: AccessPolicy::UserMatch,
            ..KindDef::HIT_LOCATOR
        };
        let at = resource_id(alice.hit().to_string().as_bytes());
        assert_eq!(owned_resource(&def, node(&alice)), Some(at.clone()));
        assert_eq!(check(&def, &at, &single(), node(&alice)), Ok(()));
        assert!(check(&def, &at, &single(), node(&bob)).is_err());
        assert!(check(&def, &resource_id(&alice.hit().0), &single(), node(&alice)).is_err());
    }

    #[test]
    fn user_node_match_needs_name_and_key() {
        let alice = HostIdentity::from_secret([1; 32]);
        let bob = HostIdentity::from_secret([2; 32]);
        let def = KindDef::SIP_REGISTRATION;
        let at = resource_id(alice.hit().to_string().as_bytes());
        let a = node(&alice);
        assert_eq!(check(&def, &at, &dict(&a.0), a), Ok(()));
        // Right name, someone else's key; and Bob writing under Alice's name.
        assert!(check(&def, &at, &dict(&node(&bob).0), a).is_err());
        assert!(check(&def, &at, &dict(&node(&bob).0), node(&bob)).is_err());
        // The key is the 16 raw bytes, nothing longer or shorter.
        assert!(check(&def, &at, &dict(&a.0[..15]), a).is_err());
        assert!(check(&def, &at, &dict(&[&a.0[..], &[0]].concat()), a).is_err());
        assert!(check(&def, &at, &single(), a).is_err());
        // A claimed AOR is not Alice's user name.
        assert!(check(&def, &resource_id(b"alice@example.com"), &dict(&a.0), a).is_err());
    }

    /// A NAME-RECORD entry of `owner` for `name`, naming `hit`.
    fn name_entry(owner: NodeId, name: &[u8], hit: NodeId) -> StoredDataValue {
        StoredDataValue::Dictionary {
            key: owner.0.to_vec(),
            value: DataValue {
                exists: true,
                value: NameRecord {
                    name: name.to_vec(),
                    hit,
                    extension: Vec::new(),
                }
                .to_bytes(),
            },
        }
    }

    #[test]
    fn unattested_names_bind_only_the_key() {
        let alice = HostIdentity::from_secret([1; 32]);
        let bob = HostIdentity::from_secret([2; 32]);
        let def = KindDef {
            user_name: UserName::Unattested,
            ..KindDef::NAME_RECORD
        };
        let at = resource_id(b"www.hipsip.example.net");
        let (a, b) = (node(&alice), node(&bob));
        assert_eq!(owned_resource(&def, a), None);
        assert_eq!(check(&def, &at, &dict(&a.0), a), Ok(()));
        assert_eq!(check(&def, &at, &dict(&b.0), b), Ok(()));
        assert!(check(&def, &at, &dict(&a.0), b).is_err());
    }

    #[test]
    fn a_claimed_name_is_stored_only_at_its_hash_naming_its_signer() {
        let alice = HostIdentity::from_secret([1; 32]);
        let bob = HostIdentity::from_secret([2; 32]);
        let def = KindDef::NAME_RECORD;
        let name = b"www.hipsip.example.net";
        let at = resource_id(name);
        let (a, b) = (node(&alice), node(&bob));
        assert_eq!(owned_resource(&def, a), None);
        assert_eq!(check(&def, &at, &name_entry(a, name, a), a), Ok(()));
        assert_eq!(check(&def, &at, &name_entry(b, name, b), b), Ok(()));
        // Anywhere else than the name's hash: one key cannot fill a range with entries.
        let elsewhere = resource_id(b"other.hipsip.example.net");
        assert!(check(&def, &elsewhere, &name_entry(a, name, a), a).is_err());
        // Naming another HIT, under another's key, or not a record at all.
        assert!(check(&def, &at, &name_entry(a, name, b), a).is_err());
        assert!(check(&def, &at, &name_entry(a, name, a), b).is_err());
        assert!(check(&def, &at, &dict(&a.0), a).is_err());
        // A name in another case would be another Resource: refused as malformed.
        assert!(check(
            &def,
            &resource_id(b"WWW.hipsip.example.net"),
            &name_entry(a, b"WWW.hipsip.example.net", a),
            a
        )
        .is_err());
    }

    fn signed(
        id: &HostIdentity,
        resource: &ResourceId,
        kind: KindId,
        value: StoredDataValue,
    ) -> StoredData {
        let mut data = StoredData {
            storage_time: 5,
            lifetime: 60,
            value,
            signature: Signature::anonymous(),
        };
        sign_value(id, resource, kind, &mut data);
        data
    }

    #[test]
    fn fetch_answers_keep_only_what_verifies() {
        let kinds = Kinds::hipbone();
        let alice = HostIdentity::from_secret([1; 32]);
        let bob = HostIdentity::from_secret([2; 32]);
        let mallory = HostIdentity::from_secret([3; 32]);
        let (a, b) = (node(&alice), node(&bob));
        let at = resource_id(b"www.hipsip.example.net");
        let name = b"www.hipsip.example.net";
        let good_a = signed(&alice, &at, NAME_RECORD, name_entry(a, name, a));
        let good_b = signed(&bob, &at, NAME_RECORD, name_entry(b, name, b));
        // Mallory's signature on an entry keyed by Alice; and Alice's entry with its value
        // changed by the storing peer.
        let stolen_key = signed(&mallory, &at, NAME_RECORD, name_entry(a, name, a));
        let mut altered = good_a.clone();
        if let StoredDataValue::Dictionary { value, .. } = &mut altered.value {
            value.value = b"evil".to_vec();
        }
        let absent = StoredData {
            storage_time: 0,
            lifetime: 0,
            value: StoredDataValue::Dictionary {
                key: vec![7; 16],
                value: DataValue {
                    exists: false,
                    value: vec![],
                },
            },
            signature: Signature::anonymous(),
        };
        let req = FetchReq {
            resource: at.clone(),
            specifiers: vec![StoredDataSpecifier {
                kind: NAME_RECORD,
                generation: 0,
                selector: Selector::Dictionary(vec![]),
            }],
        };
        let locator_of_a = signed(&alice, &resource_id(&a.0), HIT_LOCATOR, single());
        let ans = FetchAns {
            kind_responses: vec![
                FetchKindResponse {
                    kind: NAME_RECORD,
                    generation: 4,
                    values: vec![good_a.clone(), stolen_key, altered, absent, good_b.clone()],
                },
                // Not asked for.
                FetchKindResponse {
                    kind: HIT_LOCATOR,
                    generation: 1,
                    values: vec![locator_of_a],
                },
            ],
        };
        let mut certs = Certificates::new();
        for id in [&alice, &bob, &mallory] {
            certs.insert_identity(id.public());
        }
        let v = verify_fetch_answer(&kinds, &req, &ans, &certs);
        assert_eq!(
            v.kinds,
            vec![VerifiedKind {
                kind: NAME_RECORD,
                generation: 4,
                values: vec![
                    VerifiedValue {
                        data: good_a.clone(),
                        signer: a
                    },
                    VerifiedValue {
                        data: good_b,
                        signer: b
                    },
                ],
            }]
        );
        assert_eq!(
            v.rejected,
            vec![
                (
                    NAME_RECORD,
                    StorageError::AccessDenied {
                        kind: NAME_RECORD,
                        policy: AccessPolicy::UserNodeMatch
                    }
                ),
                (NAME_RECORD, StorageError::BadSignature),
                (HIT_LOCATOR, StorageError::Unrequested(HIT_LOCATOR)),
            ]
        );

        // Asking for Bob's key only: Alice's entry is unrequested.
        let only_b = FetchReq {
            specifiers: vec![StoredDataSpecifier {
                kind: NAME_RECORD,
                generation: 0,
                selector: Selector::Dictionary(vec![b.0.to_vec()]),
            }],
            ..req
        };
        let ans = FetchAns {
            kind_responses: vec![FetchKindResponse {
                kind: NAME_RECORD,
                generation: 4,
                values: vec![good_a],
            }],
        };
        let v = verify_fetch_answer(&kinds, &only_b, &ans, &certs);
        assert!(v.kinds[0].values.is_empty());
        assert_eq!(
            v.rejected,
            vec![(NAME_RECORD, StorageError::Unrequested(NAME_RECORD))]
        );
    }
}
