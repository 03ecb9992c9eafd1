//! ID-LOC names (docs/OVERLAY.md, "Names"): `label.overlay-name` points at a HIT only when
//! one of the overlay's signers granted it ([`NameGrant`]) and the HIT's owner stored the
//! claim. Anyone may store a claim under any name (each claimant has its own dictionary
//! entry), so resolvers decide by the grant: a claim without a valid grant from a signer
//! they know names nothing. An overlay without signers has no names to claim; each member
//! is still named by its HIT (`<32 hex digits>.overlay-name`), which nobody can take.

use crate::wire::{valid_name, NameGrant, NameRecord, NodeId};
use hip::{Hit, HostIdentity, PublicIdentity};

/// Why a name does not resolve, or a grant does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Not a name (lower-case letters, digits, `-`, dots; labels of 1 to 63 bytes).
    Invalid,
    /// Nobody claimed it.
    Unclaimed,
    /// A claim carries no grant (or one that does not parse).
    NoGrant,
    /// The grant is for another name or another HIT than the claim.
    Mismatch,
    /// Signed by a key that is not one of the overlay's signers.
    UnknownSigner,
    /// Its signature does not verify.
    BadSignature,
    /// It expired at this Unix time.
    Expired(u64),
    /// The overlay has no signers: no name can be granted.
    NoSigners,
}

impl core::fmt::Display for NameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NameError::Invalid => f.write_str("not a valid name"),
            NameError::Unclaimed => f.write_str("nobody holds this name"),
            NameError::NoGrant => f.write_str("the claim carries no name grant"),
            NameError::Mismatch => f.write_str("the grant is for another name or HIT"),
            NameError::UnknownSigner => {
                f.write_str("the grant's signer is not a signer of this overlay")
            }
            NameError::BadSignature => f.write_str("the grant's signature does not verify"),
            NameError::Expired(at) => write!(f, "the grant expired (at Unix time {at})"),
            NameError::NoSigners => f.write_str("this overlay has no signers, so no names"),
        }
    }
}

impl std::error::Error for NameError {}

/// `label.overlay`, checked: what a grant and a NAME-RECORD carry.
pub fn full_name(label: &str, overlay: &str) -> Result<Vec<u8>, NameError> {
    let name = format!("{label}.{overlay}").into_bytes();
    if label.contains('.') || !valid_name(&name) {
        return Err(NameError::Invalid);
    }
    Ok(name)
}

/// A grant of `name` to `hit` until `expires` (Unix seconds), signed by `signer`.
pub fn grant(
    signer: &HostIdentity,
    name: &[u8],
    hit: Hit,
    expires: u64,
) -> Result<NameGrant, NameError> {
    if !valid_name(name) {
        return Err(NameError::Invalid);
    }
    let mut g = NameGrant {
        name: name.to_vec(),
        hit: NodeId::from(hit),
        expires,
        signer: signer.public().public_bytes(),
        signature: [0; 64],
    };
    g.signature = signer.sign(&g.signed_bytes());
    Ok(g)
}

/// Whether `grant` gives `name` to `hit` at Unix time `now`, by one of `signers`.
pub fn check(
    grant: &NameGrant,
    name: &[u8],
    hit: NodeId,
    signers: &[[u8; 32]],
    now: u64,
) -> Result<(), NameError> {
    if signers.is_empty() {
        return Err(NameError::NoSigners);
    }
    if grant.name != name || grant.hit != hit {
        return Err(NameError::Mismatch);
    }
    if !signers.contains(&grant.signer) {
        return Err(NameError::UnknownSigner);
    }
    let key =
        PublicIdentity::from_public_bytes(grant.signer).map_err(|_| NameError::BadSignature)?;
    key.verify(&grant.signed_bytes(), &grant.signature)
        .map_err(|_| NameError::BadSignature)?;
    if grant.expires <= now {
        return Err(NameError::Expired(grant.expires));
    }
    Ok(())
}

/// The HIT `name` resolves to, from the claims a lookup brought back: each a NAME-RECORD
/// and the HIT that stored it (its value signature already checked, so the record's HIT
/// is the storer's). A claim holds with a valid grant to its storer; of several (a name
/// granted anew to another HIT), the grant that runs longest wins. With none, the reason
/// the first claim failed.
pub fn resolve(
    name: &[u8],
    claims: &[(NameRecord, NodeId)],
    signers: &[[u8; 32]],
    now: u64,
) -> Result<(Hit, u64), NameError> {
    if !valid_name(name) {
        return Err(NameError::Invalid);
    }
    if signers.is_empty() {
        return Err(NameError::NoSigners);
    }
    let mut best: Option<(Hit, u64)> = None;
    let mut first_error = None;
    for (record, storer) in claims {
        let held = if record.name != name || record.hit != *storer {
            Err(NameError::Mismatch)
        } else {
            NameGrant::parse(&record.extension)
                .map_err(|_| NameError::NoGrant)
                .and_then(|g| check(&g, name, *storer, signers, now).map(|()| g.expires))
        };
        match held {
            Ok(expires) if best.is_none_or(|(_, e)| expires > e) => {
                best = Some((Hit::from(*storer), expires))
            }
            Ok(_) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    best.ok_or(first_error.unwrap_or(NameError::Unclaimed))
}

/// The HIT a self-certifying name (`<32 hex digits of the HIT>.overlay`) names, with no
/// lookup; `None` for any other name.
pub fn hit_name(name: &str, overlay: &str) -> Option<Hit> {
    let label = name.strip_suffix(overlay)?.strip_suffix('.')?;
    if label.len() != 32
        || !label
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    let mut hit = [0u8; 16];
    for (i, byte) in hit.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&label[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(Hit(hit)).filter(Hit::is_orchid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn id(s: u8) -> HostIdentity {
        HostIdentity::from_secret([s; 32])
    }

    fn claim(owner: &HostIdentity, name: &[u8], grant: Option<&NameGrant>) -> (NameRecord, NodeId) {
        let hit = NodeId::from(owner.hit());
        let record = NameRecord {
            name: name.to_vec(),
            hit,
            extension: grant.map(NameGrant::to_bytes).unwrap_or_default(),
        };
        (record, hit)
    }

    #[test]
    fn a_granted_claim_resolves_and_every_forgery_is_refused_for_its_reason() {
        let (signer, alice, mallory, stranger) = (id(1), id(2), id(3), id(4));
        let signers = [signer.public().public_bytes()];
        let name = full_name("alice", "lab.example").unwrap();
        let good = grant(&signer, &name, alice.hit(), NOW + 3600).unwrap();
        let ok = resolve(&name, &[claim(&alice, &name, Some(&good))], &signers, NOW);
        assert_eq!(ok, Ok((alice.hit(), NOW + 3600)));

        // Mallory stores alice's grant under her own HIT, or a grant she signed herself,
        // or none at all.
        let stolen = claim(&mallory, &name, Some(&good));
        let self_signed = grant(&mallory, &name, mallory.hit(), NOW + 3600).unwrap();
        let cases = [
            (stolen.clone(), NameError::Mismatch),
            (
                claim(&mallory, &name, Some(&self_signed)),
                NameError::UnknownSigner,
            ),
            (claim(&mallory, &name, None), NameError::NoGrant),
        ];
        for (c, why) in cases {
            assert_eq!(resolve(&name, &[c], &signers, NOW), Err(why));
        }
        // A forged claim does not hide the good one, in either order.
        let both = [stolen, claim(&alice, &name, Some(&good))];
        assert_eq!(resolve(&name, &both, &signers, NOW).unwrap().0, alice.hit());
        // Expired; a signature that does not verify; another name's grant.
        assert_eq!(
            resolve(
                &name,
                &[claim(&alice, &name, Some(&good))],
                &signers,
                NOW + 3600
            ),
            Err(NameError::Expired(NOW + 3600))
        );
        let mut tampered = good.clone();
        tampered.expires += 86_400;
        assert_eq!(
            check(&tampered, &name, good.hit, &signers, NOW),
            Err(NameError::BadSignature)
        );
        let bob = full_name("bob", "lab.example").unwrap();
        assert_eq!(
            resolve(&bob, &[claim(&alice, &bob, Some(&good))], &signers, NOW),
            Err(NameError::Mismatch)
        );
        // Nobody, no signers.
        assert_eq!(
            resolve(&name, &[], &signers, NOW),
            Err(NameError::Unclaimed)
        );
        assert_eq!(
            resolve(&name, &[claim(&alice, &name, Some(&good))], &[], NOW),
            Err(NameError::NoSigners)
        );
        // A name granted anew to another HIT: the grant that runs longest wins.
        let regranted = grant(&signer, &name, stranger.hit(), NOW + 7200).unwrap();
        let claims = [
            claim(&alice, &name, Some(&good)),
            claim(&stranger, &name, Some(&regranted)),
        ];
        assert_eq!(
            resolve(&name, &claims, &signers, NOW).unwrap().0,
            stranger.hit()
        );
    }

    /// Known answer: the grant of "alice.lab.example" to the HIT of secret 2×32, until
    /// 2027-01-01, by the key of secret 1×32 (Ed25519 is deterministic, RFC 8032).
    #[test]
    fn grant_known_answer() {
        let name = full_name("alice", "lab.example").unwrap();
        let g = grant(&id(1), &name, id(2).hit(), 1_798_761_600).unwrap();
        let hex: String = g.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, KAT);
        assert_eq!(NameGrant::parse(&g.to_bytes()).unwrap(), g);
    }

    /// Computed independently with Python's `cryptography` package (Ed25519 over
    /// GRANT_CONTEXT and the fields), the HIT as `hip` derives it.
    const KAT: &str = "11616c6963652e6c61622e6578616d706c65\
        20010025ee0d4053967dfdaa300786e9000000006b36ec80\
        8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c\
        b35d14162bc4bc42c67b0fdd91d7020adcdfe95cb7fad40bc911355d2eed546c\
        bc59a64a933863b3550d6b275b7e389b5b99d14b068ad390f29fa751a2b56d0e";

    #[test]
    fn names_are_checked_and_hit_names_need_no_lookup() {
        assert_eq!(
            full_name("alice", "lab.example").unwrap(),
            b"alice.lab.example"
        );
        for bad in ["", "Alice", "a.b", "-a", &"a".repeat(64)] {
            assert_eq!(
                full_name(bad, "lab.example"),
                Err(NameError::Invalid),
                "{bad:?}"
            );
        }
        let hit = id(2).hit();
        let label: String = hit.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hit_name(&format!("{label}.lab.example"), "lab.example"),
            Some(hit)
        );
        assert_eq!(
            hit_name(&format!("{label}.other.example"), "lab.example"),
            None
        );
        assert_eq!(
            hit_name(
                &format!("{}.lab.example", label.to_uppercase()),
                "lab.example"
            ),
            None
        );
        assert_eq!(hit_name("alice.lab.example", "lab.example"), None);
        assert_eq!(
            hit_name(&format!("{}.lab.example", "00".repeat(16)), "lab.example"),
            None
        );
    }
}
