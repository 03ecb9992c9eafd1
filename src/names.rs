//! ID-LOC names at the command line and in the configuration: grants in base64 (as keys
//! are), and `hipbone name grant` (docs/OVERLAY.md, "Names").

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hip::{Hit, HostIdentity};
use overlay::wire::NameGrant;

/// A grant as `hipbone name grant` prints it.
pub fn encode_grant(grant: &NameGrant) -> String {
    STANDARD.encode(grant.to_bytes())
}

/// A grant from its base64 text; the message names what is wrong.
pub fn parse_grant(text: &str) -> Result<NameGrant, String> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| "the grant is not base64 (as `hipbone name grant` prints it)".to_string())?;
    NameGrant::parse(&bytes).map_err(|e| format!("the grant does not parse: {e}"))
}

/// `hipbone name grant LABEL HIT`: the grant of `label.overlay` to `hit` for `days` days
/// from `now` (Unix seconds), signed by `signer`, in base64.
pub fn grant(
    signer: &HostIdentity,
    label: &str,
    overlay: &str,
    hit: Hit,
    days: u32,
    now: u64,
) -> anyhow::Result<String> {
    let name = overlay::names::full_name(label, &overlay.to_ascii_lowercase()).map_err(|_| {
        anyhow::anyhow!(
            "{label:?} is not a label of a name (lower-case letters, digits and '-', at most \
             63, no dots), or {overlay:?} is not an overlay name"
        )
    })?;
    if days == 0 {
        anyhow::bail!("--days must be at least 1");
    }
    let expires = now + u64::from(days) * 86_400;
    let g = overlay::names::grant(signer, &name, hit, expires)
        .map_err(|e| anyhow::anyhow!("cannot grant the name: {e}"))?;
    Ok(encode_grant(&g))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_printed_grant_reads_back_and_names_its_faults() {
        let signer = HostIdentity::from_secret([1; 32]);
        let hit = HostIdentity::from_secret([2; 32]).hit();
        let text = grant(&signer, "alice", "Lab.Example", hit, 30, 1_800_000_000).unwrap();
        let g = parse_grant(&format!("{text}\n")).unwrap();
        assert_eq!(g.name, b"alice.lab.example");
        assert_eq!(g.hit.0, hit.0);
        assert_eq!(g.expires, 1_800_000_000 + 30 * 86_400);
        assert!(parse_grant("not base64!")
            .unwrap_err()
            .contains("not base64"));
        assert!(parse_grant("AAAA").unwrap_err().contains("does not parse"));
        let bad = grant(&signer, "Alice", "lab.example", hit, 30, 0).unwrap_err();
        assert!(bad.to_string().contains("not a label"), "{bad}");
        assert!(grant(&signer, "alice", "lab.example", hit, 0, 0).is_err());
    }
}
