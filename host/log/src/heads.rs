//! The heads a checkpoint commits to: one per account, the leaves of its
//! Merkle tree (`docs/audit-format.md`, "Merkle tree over chain heads").
//!
//! A version 2 checkpoint's note names none of them: the store keeps each
//! checkpoint's heads, and an account's export carries its own head with
//! its inclusion proof ([`HeadProof`]), so that an auditor of one account
//! checks it against the signed root without seeing any other account.

use super::chain::{ChainHash, ChainHead, Seq};
use super::merkle::{self, InclusionProof, ProofError, TreeHash};
use super::record::valid_account;

/// The leaf data of an account's head: `head <account> <seq> <hex hash>`
/// (no newline). A version 1 note lists exactly these lines.
pub fn head_line(account: &str, head: &ChainHead) -> String {
    format!("head {account} {} {}", head.seq, head.hash.to_hex())
}

/// Parses a head line: `head`, a valid account id, a sequence number in
/// canonical decimal (1 to 2^63 - 1) and 64 lowercase hex digits, separated
/// by single spaces, and nothing else.
pub fn parse_head_line(line: &str) -> Option<(String, ChainHead)> {
    let mut parts = line.split(' ');
    let (Some("head"), Some(account), Some(seq), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if !valid_account(account) || hash.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let seq = parse_decimal::<u64>(seq).and_then(Seq::new)?;
    let hash = ChainHash::from_hex(hash)?;
    Some((account.to_owned(), ChainHead { seq, hash }))
}

/// A decimal without sign, leading zeros (except `0` itself) or other text.
pub(crate) fn parse_decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}

/// How a tree puts its leaves in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafOrder {
    /// By account id, bytewise: version 1 notes, which list their heads.
    Account,
    /// By leaf hash, bytewise: version 2. The hash covers the head's chain
    /// hash, so an account's leaf index says nothing about which ids the
    /// other accounts have.
    LeafHash,
}

/// Two heads for one account: not a tree of heads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("account `{0}` has two heads")]
pub struct DuplicateHead(pub String);

/// One leaf: an account's head and the hash of its head line.
#[derive(Debug, Clone, PartialEq)]
struct Leaf {
    account: String,
    head: ChainHead,
    hash: TreeHash,
}

/// The heads of a checkpoint's tree, one per account, in leaf order, with
/// the root over them.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeHeads {
    order: LeafOrder,
    leaves: Vec<Leaf>,
    /// Indices into `leaves`, sorted by account id.
    by_account: Vec<usize>,
    root: TreeHash,
}

impl TreeHeads {
    /// The tree of a version 2 checkpoint over these heads (in any order):
    /// leaves sorted by leaf hash.
    pub fn new(heads: Vec<(String, ChainHead)>) -> Result<TreeHeads, DuplicateHead> {
        TreeHeads::with_order(LeafOrder::LeafHash, heads)
    }

    /// The tree a version 1 note lists: leaves sorted by account id.
    pub(crate) fn listed(heads: Vec<(String, ChainHead)>) -> Result<TreeHeads, DuplicateHead> {
        TreeHeads::with_order(LeafOrder::Account, heads)
    }

    fn with_order(
        order: LeafOrder,
        heads: Vec<(String, ChainHead)>,
    ) -> Result<TreeHeads, DuplicateHead> {
        let mut leaves: Vec<Leaf> = heads
            .into_iter()
            .map(|(account, head)| Leaf {
                hash: merkle::leaf_hash(head_line(&account, &head).as_bytes()),
                account,
                head,
            })
            .collect();
        match order {
            LeafOrder::Account => {
                leaves.sort_unstable_by(|a, b| a.account.as_bytes().cmp(b.account.as_bytes()));
            }
            LeafOrder::LeafHash => {
                leaves.sort_unstable_by(|a, b| a.hash.as_bytes().cmp(b.hash.as_bytes()));
            }
        }
        let mut by_account: Vec<usize> = (0..leaves.len()).collect();
        by_account.sort_unstable_by(|&a, &b| account_of(&leaves, a).cmp(account_of(&leaves, b)));
        for pair in by_account.windows(2) {
            if let [a, b] = *pair
                && account_of(&leaves, a) == account_of(&leaves, b)
            {
                let account = String::from_utf8_lossy(account_of(&leaves, a)).into_owned();
                return Err(DuplicateHead(account));
            }
        }
        let hashes: Vec<TreeHash> = leaves.iter().map(|leaf| leaf.hash).collect();
        let root = merkle::root(&hashes);
        Ok(TreeHeads {
            order,
            leaves,
            by_account,
            root,
        })
    }

    /// How the leaves are ordered.
    pub fn order(&self) -> LeafOrder {
        self.order
    }

    /// The Merkle root over the leaves.
    pub fn root(&self) -> TreeHash {
        self.root
    }

    /// The number of heads (the tree size).
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// Whether there is no head.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// The heads, in leaf order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, ChainHead)> + '_ {
        self.leaves
            .iter()
            .map(|leaf| (leaf.account.as_str(), leaf.head))
    }

    /// The sum of the heads' sequence numbers (orders checkpoints of one
    /// time: the one that can extend the other has the larger sum).
    pub fn seq_sum(&self) -> u128 {
        self.leaves
            .iter()
            .map(|leaf| u128::from(leaf.head.seq.get()))
            .sum()
    }

    /// The leaf index of `account`'s head.
    fn position(&self, account: &str) -> Option<usize> {
        let found = self
            .by_account
            .binary_search_by(|&i| account_of(&self.leaves, i).cmp(account.as_bytes()))
            .ok()?;
        self.by_account.get(found).copied()
    }

    /// `account`'s head.
    pub fn head(&self, account: &str) -> Option<ChainHead> {
        let index = self.position(account)?;
        self.leaves.get(index).map(|leaf| leaf.head)
    }

    /// `account`'s head with its inclusion proof: what the account's export
    /// carries.
    pub fn proof(&self, account: &str) -> Option<HeadProof> {
        let index = self.position(account)?;
        let hashes: Vec<TreeHash> = self.leaves.iter().map(|leaf| leaf.hash).collect();
        let proof = merkle::inclusion_proof(&hashes, index)?;
        let leaf = self.leaves.get(index)?;
        Some(HeadProof {
            account: leaf.account.clone(),
            head: leaf.head,
            proof,
        })
    }
}

fn account_of(leaves: &[Leaf], index: usize) -> &[u8] {
    leaves
        .get(index)
        .map_or(&[][..], |leaf| leaf.account.as_bytes())
}

/// One account's head and its inclusion proof in a checkpoint's tree.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadProof {
    /// The account.
    pub account: String,
    /// Its head in the checkpoint.
    pub head: ChainHead,
    /// The audit path of its leaf.
    pub proof: InclusionProof,
}

impl HeadProof {
    /// The leaf data: the head line.
    pub fn line(&self) -> String {
        head_line(&self.account, &self.head)
    }

    /// Checks that the head line is leaf `proof.index` of a tree of
    /// `proof.size` leaves whose root is `root`.
    pub fn verify(&self, root: &TreeHash) -> Result<(), ProofError> {
        let leaf = merkle::leaf_hash(self.line().as_bytes());
        merkle::verify_inclusion(&leaf, &self.proof, root)
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;
    use crate::chain::genesis;

    fn heads(names: &[&str]) -> Vec<(String, ChainHead)> {
        names
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let head = ChainHead {
                    seq: Seq::new(i as u64 + 1).unwrap(),
                    hash: genesis(a),
                };
                ((*a).to_owned(), head)
            })
            .collect()
    }

    #[test]
    fn leaves_are_in_leaf_hash_order_and_every_proof_verifies() {
        let names = ["globex", "acme", "initech", "umbrella", "hooli"];
        let tree = TreeHeads::new(heads(&names)).unwrap();
        assert_eq!(tree.len(), 5);
        let hashes: Vec<TreeHash> = tree
            .iter()
            .map(|(a, h)| merkle::leaf_hash(head_line(a, &h).as_bytes()))
            .collect();
        assert!(hashes.windows(2).all(|p| p[0].as_bytes() < p[1].as_bytes()));
        assert_eq!(tree.root(), merkle::root(&hashes));
        // The same heads in another order: the same tree.
        let mut reversed = heads(&names);
        reversed.reverse();
        assert_eq!(TreeHeads::new(reversed).unwrap(), tree);
        for name in names {
            let proof = tree.proof(name).unwrap();
            assert_eq!(proof.head, tree.head(name).unwrap());
            proof.verify(&tree.root()).unwrap();
            assert_eq!(
                parse_head_line(&proof.line()),
                Some((name.to_owned(), proof.head))
            );
        }
        assert_eq!(tree.proof("nobody"), None);
        assert_eq!(tree.seq_sum(), 15);
    }

    #[test]
    fn an_account_twice_is_refused() {
        let mut twice = heads(&["acme", "globex"]);
        twice.push(twice[0].clone());
        assert_eq!(TreeHeads::new(twice), Err(DuplicateHead("acme".to_owned())));
    }

    #[test]
    fn head_lines_are_strict() {
        let hash = "ab".repeat(32);
        assert!(parse_head_line(&format!("head acme 1 {hash}")).is_some());
        for bad in [
            format!("head acme 0 {hash}"),
            format!("head acme 01 {hash}"),
            format!("head acme 1 {}", hash.to_uppercase()),
            format!("head acme  1 {hash}"),
            format!("head ac\"me 1 {hash}"),
            format!("head acme 1 {hash} "),
            format!("head acme 9223372036854775808 {hash}"),
        ] {
            assert_eq!(parse_head_line(&bad), None, "{bad}");
        }
    }
}
