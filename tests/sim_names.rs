//! ID-LOC names between whole nodes in the simulator: a member holding a granted name is
//! found by it from any other member; the storing peers refuse claims without a valid
//! grant (another member's grant, a grant its claimant signed itself), so they take
//! neither the name nor a slot of it, while the same member's granted claim is stored;
//! unknown names and names of other overlays are refused with their reason. A name claimed
//! at run time (`hipbone name claim`) is found, and after `name release` it is nobody's.
//! (That a
//! resolver also refuses such claims, should a storing peer keep them, is the unit test
//! of `overlay::names`.)

use hip::{Hit, HostIdentity};
use hipbone::config::Config;
use hipbone::node::overlay::Answer;
use hipbone::node::Node;
use hipbone::sim::nodes::{add_node, address, answer, identity, joined};
use hipbone::sim::Sim;
use overlay::storage::{self, KindDef};
use overlay::wire::{DataValue, NameRecord, NodeId, StoredDataValue};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::time::{Duration, Instant};

const OVERLAY: &str = "lab.example";

/// A member of OVERLAY whose signer is `signer`, holding `label` by `grant` if given.
fn config(bootstrap: Hit, signer: &HostIdentity, claim: Option<(&str, &str)>) -> Config {
    let key = hipbone::keys::encode_public(signer.public());
    let claim = claim.map_or(String::new(), |(label, grant)| {
        format!("label = \"{label}\"\ngrant = \"{grant}\"\n")
    });
    let text = format!(
        "[interface]\nidentity = \"/nonexistent/sim.key\"\n\n[overlay]\nname = \"{OVERLAY}\"\n\
         signers = [\"{key}\"]\n{claim}\n[[overlay.bootstrap]]\nhit = \"{bootstrap}\"\n\
         locators = [\"{}\"]\n",
        address(0)
    );
    Config::parse(&text, "simulated node").expect("the simulated configuration parses")
}

fn resolve(sim: &mut Sim<Node>, from: usize, name: &str) -> Result<Hit, String> {
    let now = sim.now();
    assert!(sim.node_mut(from).resolve(now, name, 1));
    match answer(sim, from) {
        Some(Answer::Resolved { hit, name: n, .. }) => {
            assert_eq!(n, name.trim_end_matches('.').to_ascii_lowercase());
            Ok(hit)
        }
        Some(Answer::Failed { error, .. } | Answer::NoSuchName { error, .. }) => Err(error),
        other => panic!("resolving {name}: {other:?}"),
    }
}

/// Node `who` (node `i`) stores a claim of `name` for itself, carrying `extension` as its
/// grant; whether the storing peers took it.
fn claim(
    sim: &mut Sim<Node>,
    who: &HostIdentity,
    i: usize,
    name: &str,
    extension: Vec<u8>,
) -> bool {
    let record = NameRecord {
        name: name.as_bytes().to_vec(),
        hit: NodeId::from(who.hit()),
        extension,
    };
    let value = StoredDataValue::Dictionary {
        key: who.hit().0.to_vec(),
        value: DataValue {
            exists: true,
            value: record.to_bytes(),
        },
    };
    let now = sim.now();
    let o = sim.node_mut(i).overlay.as_mut().unwrap();
    let time = o.node.storage_time(now);
    let resource = overlay::id::resource_id(name.as_bytes());
    let req = storage::signed_store(who, resource, KindDef::NAME_RECORD.id, time, 600, value);
    o.node.store(now, &req).expect("the claim goes out");
    let before = generation(sim, name);
    let end = now + Duration::from_secs(10);
    sim.run_until(end, |_| false);
    generation(sim, name) > before
}

/// The highest generation of `name`'s NAME-RECORD among the nodes that store it.
fn generation(sim: &Sim<Node>, name: &str) -> u64 {
    let resource = overlay::id::resource_id(name.as_bytes());
    (0..sim.len())
        .filter_map(|i| sim.node(i).overlay.as_ref())
        .map(|o| o.node.generation(&resource, KindDef::NAME_RECORD.id))
        .max()
        .unwrap_or(0)
}

/// A ring of `ids` (the first is the bootstrap), every member knowing `signer` but a
/// forger, who names a signer of its own; one may hold a name from its configuration.
fn ring(
    rng: &mut ChaCha20Rng,
    signer: &HostIdentity,
    ids: &[HostIdentity],
    claim: Option<(usize, &str, &str)>,
    forger: Option<(usize, &HostIdentity)>,
) -> Sim<Node> {
    let mut sim: Sim<Node> = Sim::new(rng.next_u64(), Instant::now());
    for (i, id) in ids.iter().enumerate() {
        let held = claim
            .filter(|(at, ..)| *at == i)
            .map(|(_, label, grant)| (label, grant));
        let signer = forger.filter(|(at, _)| *at == i).map_or(signer, |(_, s)| s);
        let c = config(ids[0].hit(), signer, held);
        let me = HostIdentity::from_secret(*id.secret_bytes());
        add_node(&mut sim, i, me, &c);
        let at = sim.now() + Duration::from_millis(100);
        sim.run_until(at, |_| false);
    }
    let end = sim.now() + Duration::from_secs(120);
    sim.run_until(end, |sim| joined(sim) == ids.len());
    assert_eq!(joined(&sim), ids.len());
    sim
}

#[test]
fn a_granted_name_is_found_from_any_member_and_forged_claims_take_nothing() {
    let n = 24;
    let (alice_at, mallory_at) = (5, 9);
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let signer = identity(&mut rng);
    let ids: Vec<HostIdentity> = (0..n).map(|_| identity(&mut rng)).collect();
    let name = format!("alice.{OVERLAY}");
    let grant =
        hipbone::names::grant(&signer, "alice", OVERLAY, ids[alice_at].hit(), 30, 0).unwrap();
    let mut sim = ring(
        &mut rng,
        &signer,
        &ids,
        Some((alice_at, "alice", &grant)),
        None,
    );
    // Past the second store of alice's claim (a minute after the first), so that only
    // the claims below change what the storing peers hold.
    let settle = sim.now() + Duration::from_secs(90);
    sim.run_until(settle, |_| false);

    let alice = ids[alice_at].hit();
    for from in [0, 3, 17, 23] {
        assert_eq!(
            resolve(&mut sim, from, &name),
            Ok(alice),
            "from node {from}"
        );
    }
    // Upper case and a trailing dot are the same name.
    assert_eq!(resolve(&mut sim, 12, "Alice.Lab.Example."), Ok(alice));

    // Mallory claims the name with alice's grant, then with one she signed herself.
    let mallory = HostIdentity::from_secret(*ids[mallory_at].secret_bytes());
    let stolen = hipbone::names::parse_grant(&grant).unwrap().to_bytes();
    assert!(!claim(&mut sim, &mallory, mallory_at, &name, stolen));
    let own = hipbone::names::grant(&mallory, "alice", OVERLAY, mallory.hit(), 30, 0).unwrap();
    let own = hipbone::names::parse_grant(&own).unwrap().to_bytes();
    assert!(!claim(&mut sim, &mallory, mallory_at, &name, own));
    // The same path stores a claim the signer granted her (so the refusals were refusals).
    let hers = format!("mallory.{OVERLAY}");
    let granted = hipbone::names::grant(&signer, "mallory", OVERLAY, mallory.hit(), 30, 0);
    let granted = hipbone::names::parse_grant(&granted.unwrap())
        .unwrap()
        .to_bytes();
    assert!(claim(&mut sim, &mallory, mallory_at, &hers, granted));
    assert_eq!(resolve(&mut sim, 20, &hers), Ok(mallory.hit()));
    // A fresh resolver (nothing cached) still finds alice.
    assert_eq!(resolve(&mut sim, 20, &name), Ok(alice));
    // A name only mallory tried to claim is nobody's.
    let fake = format!("bob.{OVERLAY}");
    let bob = hipbone::names::grant(&mallory, "bob", OVERLAY, mallory.hit(), 30, 0).unwrap();
    let bob = hipbone::names::parse_grant(&bob).unwrap().to_bytes();
    assert!(!claim(&mut sim, &mallory, mallory_at, &fake, bob));
    let e = resolve(&mut sim, 20, &fake).unwrap_err();
    assert!(e.contains("nobody holds this name"), "{e}");
    let e = resolve(&mut sim, 20, &format!("carol.{OVERLAY}")).unwrap_err();
    assert!(e.contains("nobody holds this name"), "{e}");
    let e = resolve(&mut sim, 20, "alice.other.example").unwrap_err();
    assert!(e.contains("not a name of the overlay"), "{e}");
    // Every member is named by its HIT, with no lookup.
    let hex: String = alice.0.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        resolve(&mut sim, 20, &format!("{hex}.{OVERLAY}")),
        Ok(alice)
    );
}

/// `hipbone name claim LABEL --grant G` on node `i`: its answer.
fn claim_at_run_time(sim: &mut Sim<Node>, i: usize, label: &str, grant: &str) -> Answer {
    let grant = hipbone::names::parse_grant(grant).unwrap();
    let now = sim.now();
    assert!(sim.node_mut(i).claim_name(now, label, grant, 7));
    answer(sim, i).expect("the claim is answered")
}

#[test]
fn a_name_claimed_at_run_time_is_found_and_after_its_release_is_nobodys() {
    let n = 12;
    let (carol_at, other_at, forger_at) = (4, 6, 7);
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let signer = identity(&mut rng);
    let stranger = identity(&mut rng);
    let ids: Vec<HostIdentity> = (0..n).map(|_| identity(&mut rng)).collect();
    let mut sim = ring(&mut rng, &signer, &ids, None, Some((forger_at, &stranger)));
    let carol = ids[carol_at].hit();
    let name = format!("carol.{OVERLAY}");

    // Grants that do not hold are refused at once, and nothing is stored.
    let theirs = hipbone::names::grant(&signer, "carol", OVERLAY, ids[other_at].hit(), 30, 0);
    let refused = claim_at_run_time(&mut sim, carol_at, "carol", &theirs.unwrap());
    assert!(
        matches!(&refused, Answer::Failed { error, .. } if error.contains("another name or HIT")),
        "{refused:?}"
    );
    let forged = hipbone::names::grant(&stranger, "carol", OVERLAY, carol, 30, 0).unwrap();
    let refused = claim_at_run_time(&mut sim, carol_at, "carol", &forged);
    assert!(
        matches!(&refused, Answer::Failed { error, .. } if error.contains("not a signer")),
        "{refused:?}"
    );
    let grant = hipbone::names::grant(&signer, "carol", OVERLAY, carol, 30, 0).unwrap();
    let refused = claim_at_run_time(&mut sim, carol_at, "dave", &grant);
    assert!(matches!(refused, Answer::Failed { .. }), "{refused:?}");
    assert!(resolve(&mut sim, 11, &name).is_err());

    // A forger whose node knows a signer of its own: its node takes the grant, the storing
    // peers do not, and the node then holds no name.
    let own = hipbone::names::grant(&stranger, "carol", OVERLAY, ids[forger_at].hit(), 30, 0);
    let refused = claim_at_run_time(&mut sim, forger_at, "carol", &own.unwrap());
    assert!(
        matches!(&refused, Answer::Failed { error, .. } if error.contains("no valid grant")),
        "{refused:?}"
    );
    let list = sim
        .node(forger_at)
        .overlay
        .as_ref()
        .unwrap()
        .names(sim.now());
    assert_eq!(list.name, None);

    // The signer's grant: answered once the claim is stored, then found from elsewhere.
    let held = claim_at_run_time(&mut sim, carol_at, "carol", &grant);
    assert_eq!(
        held,
        Answer::Named {
            request: 7,
            name: name.clone(),
            held: true
        }
    );
    let list = sim
        .node(carol_at)
        .overlay
        .as_ref()
        .unwrap()
        .names(sim.now());
    assert_eq!(list.name.as_deref(), Some(name.as_str()));
    assert_eq!(list.state, Some("stored"));
    assert_eq!(resolve(&mut sim, 9, &name), Ok(carol));
    let list = sim.node(9).overlay.as_ref().unwrap().names(sim.now());
    assert_eq!(list.resolved.len(), 1);
    assert_eq!(list.resolved[0].hit, carol.to_string());

    // Released: deleted where it was stored; a resolver with nothing cached finds nobody.
    let now = sim.now();
    assert!(sim.node_mut(carol_at).release_name(now, 8));
    let released = answer(&mut sim, carol_at);
    assert_eq!(
        released,
        Some(Answer::Named {
            request: 8,
            name: name.clone(),
            held: false
        })
    );
    let e = resolve(&mut sim, 10, &name).unwrap_err();
    assert!(e.contains("nobody holds this name"), "{e}");
    // It is not stored again later, and what resolvers cached runs out within five
    // minutes; there is nothing left to release.
    let later = sim.now() + Duration::from_secs(310);
    sim.run_until(later, |_| false);
    for from in [9, 11] {
        let e = resolve(&mut sim, from, &name).unwrap_err();
        assert!(
            e.contains("nobody holds this name"),
            "from node {from}: {e}"
        );
    }
    let now = sim.now();
    assert!(sim.node_mut(carol_at).release_name(now, 9));
    let again = answer(&mut sim, carol_at);
    assert!(
        matches!(&again, Some(Answer::Failed { error, .. }) if error.contains("holds no name")),
        "{again:?}"
    );
}
