//! Known-answer test: the worked example in `docs/audit-format.md`. Every
//! value in the document's `kat` and `note` blocks is recomputed here, once
//! with the implementation and once directly from the document's formulas
//! (BLAKE3, SHA-256 and Ed25519 used by hand), so the document and the code
//! cannot drift apart.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chaperone_log::chain::{self, GENESIS_TAG, RECORD_TAG};
use chaperone_log::checkpoint::{Checkpoint, NoteVersion};
use chaperone_log::keys::{Signer, Verifier};
use chaperone_log::merkle::{self, InclusionProof, LeafIndex, TreeHash, TreeSize};
use chaperone_log::{ChainHead, Seq, TreeHeads, export, heads, record};
use chaperone_store::{ActorRef, DecisionRecord, PolicyRef, RecordDraft, Verdict};
use ed25519_dalek::Verifier as _;
use serde_json::json;
use sha2::Digest as _;

struct Doc {
    values: BTreeMap<String, String>,
    note: String,
}

fn doc() -> Doc {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/audit-format.md");
    let text = std::fs::read_to_string(path).unwrap();
    let block = |info: &str| {
        let start = text.find(&format!("```{info}\n")).unwrap() + info.len() + 4;
        let end = start + text[start..].find("```").unwrap();
        text[start..end].to_owned()
    };
    let values = block("kat")
        .lines()
        .filter_map(|line| line.split_once(" = "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Doc {
        values,
        note: block("note"),
    }
}

impl Doc {
    fn get(&self, key: &str) -> &str {
        self.values
            .get(key)
            .unwrap_or_else(|| panic!("`{key}` is not in the worked example"))
    }

    fn hex(&self, key: &str) -> Vec<u8> {
        hex::decode(self.get(key)).unwrap()
    }
}

/// The example's events, as the host would hand them in.
fn drafts(digest: &str) -> Vec<RecordDraft> {
    let policy = PolicyRef {
        digest: digest.to_owned(),
        vendor: "celigo".into(),
        version: "0.1.0".into(),
    };
    vec![
        RecordDraft {
            account: "acme".into(),
            time_ms: 1_700_000_000_000,
            kind: "sync".into(),
            actor: None,
            request: json!({"step": "account", "plan": "paid", "policy": "celigo"}),
            decision: None,
            effects: json!([]),
            policy: None,
            input: None,
        },
        RecordDraft {
            account: "acme".into(),
            time_ms: 1_700_000_060_000,
            kind: "grant".into(),
            actor: Some(ActorRef::User {
                id: "u1".into(),
                email: Some("ann@acme.test".into()),
            }),
            request: json!({"environment": "prod", "scope": {"level": "admin"}, "expires_in": {"days": 5}}),
            decision: Some(DecisionRecord {
                verdict: Verdict::Allow,
                rule: "CEL-WHO".into(),
                message: "owner may grant".into(),
                rules: vec!["CEL-PLAN".into(), "CEL-WHO".into()],
            }),
            effects: json!([{"create_grant": {"environment": "prod", "expires_at": 1_700_432_060_000_i64, "scope": {"level": "admin"}}}]),
            policy: Some(policy.clone()),
            input: Some(json!({"now": 1_700_000_060_000_i64, "operation": "grant"})),
        },
        RecordDraft {
            account: "globex".into(),
            time_ms: 1_700_000_070_000,
            kind: "act".into(),
            actor: Some(ActorRef::Agent {
                email: "sam@vendor.test".into(),
            }),
            request: json!({"action": {"name": "users.update", "environment": "prod"}}),
            decision: Some(DecisionRecord {
                verdict: Verdict::Deny,
                rule: "CEL-PERMS".into(),
                message: "agents never change users".into(),
                rules: vec![],
            }),
            effects: json!([]),
            policy: Some(policy),
            input: Some(json!({"now": 1_700_000_070_000_i64, "operation": "act"})),
        },
        RecordDraft {
            account: "initech".into(),
            time_ms: 1_700_000_080_000,
            kind: "sync".into(),
            actor: None,
            request: json!({"step": "user", "id": "u7", "email": "bo@initech.test", "role": "admin"}),
            decision: None,
            effects: json!([]),
            policy: None,
            input: None,
        },
    ]
}

fn blake3_of(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    *hasher.finalize().as_bytes()
}

#[test]
fn tags_and_key_match_the_document() {
    let doc = doc();
    assert_eq!(doc.hex("genesis-tag-hex"), GENESIS_TAG);
    assert_eq!(doc.hex("record-tag-hex"), RECORD_TAG);
    let seed: [u8; 32] = doc.hex("key-seed-hex").try_into().unwrap();
    let signer = Signer::from_seed(doc.get("key-name"), seed).unwrap();
    assert_eq!(signer.encode(), doc.get("skey"));
    assert_eq!(signer.verifier().encode(), doc.get("vkey"));
    // The key id by hand: SHA-256(name || "\n" || 0x01 || public key)[..4].
    let (name, rest) = doc.get("vkey").split_once('+').unwrap();
    let (id, key) = rest.split_once('+').unwrap();
    let key = BASE64.decode(key).unwrap();
    assert_eq!(key[0], 0x01);
    let digest = sha2::Sha256::digest([name.as_bytes(), b"\n", &key].concat());
    assert_eq!(hex::encode(&digest[..4]), id);
    assert_eq!(
        blake3::hash(b"example policy module").to_hex().as_str(),
        doc.get("policy-digest")
    );
}

#[test]
fn records_and_chain_hashes_match_the_document() {
    let doc = doc();
    let mut heads: BTreeMap<String, ChainHead> = BTreeMap::new();
    for draft in drafts(doc.get("policy-digest")) {
        let account = draft.account.clone();
        let (seq, prev) = match heads.get(&account) {
            Some(head) => (head.seq.next().unwrap(), head.hash),
            None => {
                let genesis = chain::genesis(&account);
                assert_eq!(genesis.to_hex(), doc.get(&format!("genesis {account}")));
                let by_hand = blake3_of(&[&doc.hex("genesis-tag-hex"), account.as_bytes()]);
                assert_eq!(&by_hand, genesis.as_bytes());
                (Seq::FIRST, genesis)
            }
        };
        let bytes = record::encode(&draft, seq).unwrap();
        let documented = doc.get(&format!("bytes {account} {seq}"));
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), documented);
        let hash = chain::link(&prev, &bytes);
        assert_eq!(hash.to_hex(), doc.get(&format!("hash {account} {seq}")));
        let by_hand = blake3_of(&[
            &doc.hex("record-tag-hex"),
            prev.as_bytes(),
            documented.as_bytes(),
        ]);
        assert_eq!(&by_hand, hash.as_bytes());
        heads.insert(account, ChainHead { seq, hash });
    }
}

#[test]
fn the_store_writes_the_documented_bytes() {
    let doc = doc();
    let fixture = super::Fixture::new();
    let store = fixture.store();
    for draft in drafts(doc.get("policy-digest")) {
        store.write(move |tx| tx.append(&draft)).unwrap();
    }
    for (account, count) in [("acme", 2), ("globex", 1), ("initech", 1)] {
        let records = store.records(account).unwrap();
        assert_eq!(records.len(), count);
        for stored in records {
            let seq = stored.seq;
            assert_eq!(
                stored.bytes,
                doc.get(&format!("bytes {account} {seq}")).as_bytes()
            );
            assert_eq!(
                stored.hash.to_hex(),
                doc.get(&format!("hash {account} {seq}"))
            );
        }
    }
}

#[test]
fn tree_proof_and_signed_note_match_the_document() {
    let doc = doc();
    let heads: Vec<(String, ChainHead)> = [("acme", 2), ("globex", 1), ("initech", 1)]
        .iter()
        .map(|(account, seq)| {
            let hash =
                chain::ChainHash::from_hex(doc.get(&format!("hash {account} {seq}"))).unwrap();
            (
                (*account).to_owned(),
                ChainHead {
                    seq: Seq::new(*seq).unwrap(),
                    hash,
                },
            )
        })
        .collect();
    let mut leaves = BTreeMap::new();
    for (account, head) in &heads {
        let line = heads::head_line(account, head);
        assert_eq!(line, doc.get(&format!("leaf {account}")));
        let leaf = blake3_of(&[&[0x00], line.as_bytes()]);
        assert_eq!(hex::encode(leaf), doc.get(&format!("leaf-hash {account}")));
        assert_eq!(merkle::leaf_hash(line.as_bytes()).as_bytes(), &leaf);
        leaves.insert(account.clone(), leaf);
    }
    // The leaves in increasing order of their hashes.
    let order: Vec<&str> = doc.get("leaf-order").split(' ').collect();
    let ordered: Vec<[u8; 32]> = order.iter().map(|a| leaves[*a]).collect();
    assert!(ordered.windows(2).all(|pair| pair[0] < pair[1]));
    assert_eq!(ordered.len(), leaves.len());
    // Three leaves: k = 2.
    let root = blake3_of(&[
        &[0x01],
        &blake3_of(&[&[0x01], &ordered[0], &ordered[1]]),
        &ordered[2],
    ]);
    assert_eq!(hex::encode(root), doc.get("root"));
    let tree: Vec<TreeHash> = ordered.iter().map(|l| TreeHash::from_bytes(*l)).collect();
    assert_eq!(merkle::root(&tree).as_bytes(), &root);
    let tree_heads = TreeHeads::new(heads.clone()).unwrap();
    assert_eq!(tree_heads.root().as_bytes(), &root);
    let in_order: Vec<&str> = tree_heads.iter().map(|(a, _)| a).collect();
    assert_eq!(in_order, order);

    let documented: Vec<&str> = doc.get("proof globex").split(' ').collect();
    let proof = InclusionProof {
        index: LeafIndex(documented[0].parse().unwrap()),
        size: TreeSize(documented[1].parse().unwrap()),
        path: documented[2..]
            .iter()
            .map(|h| TreeHash::from_hex(h).unwrap())
            .collect(),
    };
    let index = order.iter().position(|a| *a == "globex").unwrap();
    assert_eq!(proof.index.0, index as u64);
    assert_eq!(merkle::inclusion_proof(&tree, index).unwrap(), proof);
    merkle::verify_inclusion(&tree[index], &proof, &TreeHash::from_bytes(root)).unwrap();
    let head_proof = tree_heads.proof("globex").unwrap();
    assert_eq!(head_proof.proof, proof);
    assert_eq!(
        export::proof_line(&head_proof),
        doc.get("proof-line globex")
    );
    assert_eq!(
        export::header_line("globex", 1),
        doc.get("export-header globex")
    );

    let seed: [u8; 32] = doc.hex("key-seed-hex").try_into().unwrap();
    let signer = Signer::from_seed(doc.get("key-name"), seed).unwrap();
    let cp = Checkpoint::sign(&signer, 1_700_000_100_000, &tree_heads);
    assert_eq!(cp.note, doc.note);
    let verifier = Verifier::parse(doc.get("vkey")).unwrap();
    let opened = Checkpoint::open(&doc.note, &verifier).unwrap();
    assert_eq!(
        (opened.version, opened.tree_size, opened.listed),
        (NoteVersion::V2, 3, None)
    );
    assert_eq!(opened.root.as_bytes(), &root);
    for (account, _) in &heads {
        assert!(!doc.note.contains(account.as_str()), "{account}");
    }
    // The note text by hand.
    let text = format!(
        "{}\n3\n{}\nversion 2\ntime 1700000100000\n",
        doc.get("key-name"),
        BASE64.encode(root)
    );
    assert!(doc.note.starts_with(&format!("{text}\n")));

    // The signature by hand: Ed25519 over the note text, after the key id.
    let split = doc.note.rfind("\n\n").unwrap();
    let text = &doc.note[..=split];
    let line = doc.note[split + 2..].trim_end();
    let blob = BASE64.decode(line.rsplit_once(' ').unwrap().1).unwrap();
    let key = BASE64
        .decode(doc.get("vkey").splitn(3, '+').nth(2).unwrap())
        .unwrap();
    let public = ed25519_dalek::VerifyingKey::from_bytes(&key[1..].try_into().unwrap()).unwrap();
    let signature = ed25519_dalek::Signature::from_slice(&blob[4..]).unwrap();
    public.verify(text.as_bytes(), &signature).unwrap();
    assert_eq!(
        hex::encode(&blob[..4]),
        doc.get("vkey").split('+').nth(1).unwrap()
    );
}

/// Prints the worked example's figures that come from the tree and the
/// signature, for `docs/audit-format.md` (run it by name after a change to
/// the format; never write the figures by hand).
#[test]
#[ignore = "prints the worked example's figures: run it by name to regenerate them"]
fn print_the_worked_example() {
    let doc = doc();
    let heads: Vec<(String, ChainHead)> = [("acme", 2), ("globex", 1), ("initech", 1)]
        .iter()
        .map(|(account, seq)| {
            let hash =
                chain::ChainHash::from_hex(doc.get(&format!("hash {account} {seq}"))).unwrap();
            let head = ChainHead {
                seq: Seq::new(*seq).unwrap(),
                hash,
            };
            ((*account).to_owned(), head)
        })
        .collect();
    let tree = TreeHeads::new(heads).unwrap();
    let order: Vec<&str> = tree.iter().map(|(a, _)| a).collect();
    println!("leaf-order = {}", order.join(" "));
    println!("root = {}", tree.root().to_hex());
    let proof = tree.proof("globex").unwrap();
    let path: Vec<String> = proof.proof.path.iter().map(TreeHash::to_hex).collect();
    println!(
        "proof globex = {} {} {}",
        proof.proof.index.0,
        proof.proof.size.0,
        path.join(" ")
    );
    println!(
        "export-header globex = {}",
        export::header_line("globex", 1)
    );
    println!("proof-line globex = {}", export::proof_line(&proof));
    let seed: [u8; 32] = doc.hex("key-seed-hex").try_into().unwrap();
    let signer = Signer::from_seed(doc.get("key-name"), seed).unwrap();
    print!(
        "{}",
        Checkpoint::sign(&signer, 1_700_000_100_000, &tree).note
    );
}
