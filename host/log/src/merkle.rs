//! The Merkle tree over chain heads: RFC 6962 shape (RFC 9162, section 2.1)
//! with BLAKE3 as the hash, so one account's head is proven by a short
//! inclusion proof (`docs/audit-format.md`, "Merkle tree").

/// Prefix of a leaf hash: `BLAKE3(LEAF_PREFIX || leaf data)`.
pub const LEAF_PREFIX: u8 = 0x00;

/// Prefix of an interior node hash: `BLAKE3(NODE_PREFIX || left || right)`.
pub const NODE_PREFIX: u8 = 0x01;

blake3_hash_type!(
    /// A hash in the tree (a leaf, an interior node or the root). Compared
    /// in constant time.
    TreeHash
);

/// A leaf's position in the tree, from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LeafIndex(pub u64);

/// The number of leaves in a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TreeSize(pub u64);

/// The hash of a leaf with this data.
pub fn leaf_hash(data: &[u8]) -> TreeHash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[LEAF_PREFIX]);
    hasher.update(data);
    TreeHash(*hasher.finalize().as_bytes())
}

/// The hash of an interior node.
pub fn node_hash(left: &TreeHash, right: &TreeHash) -> TreeHash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[NODE_PREFIX]);
    hasher.update(&left.0);
    hasher.update(&right.0);
    TreeHash(*hasher.finalize().as_bytes())
}

/// The root of the tree over these leaf hashes; `BLAKE3("")` for none.
pub fn root(leaves: &[TreeHash]) -> TreeHash {
    match leaves {
        [] => TreeHash(*blake3::hash(b"").as_bytes()),
        [only] => *only,
        _ => {
            let (left, right) = leaves.split_at(split_point(leaves.len()));
            node_hash(&root(left), &root(right))
        }
    }
}

/// The largest power of two smaller than `n` (for `n >= 2`).
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// An inclusion proof: the audit path of one leaf (RFC 9162, 2.1.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The proven leaf's position.
    pub index: LeafIndex,
    /// The tree's size.
    pub size: TreeSize,
    /// The sibling hashes, from the leaf up.
    pub path: Vec<TreeHash>,
}

/// The inclusion proof of leaf `index`; `None` if it is out of range.
pub fn inclusion_proof(leaves: &[TreeHash], index: usize) -> Option<InclusionProof> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    audit_path(leaves, index, &mut path);
    Some(InclusionProof {
        index: LeafIndex(u64::try_from(index).ok()?),
        size: TreeSize(u64::try_from(leaves.len()).ok()?),
        path,
    })
}

/// PATH(m, D[n]) with the leaf-most sibling first.
fn audit_path(leaves: &[TreeHash], index: usize, path: &mut Vec<TreeHash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split_point(leaves.len());
    let (left, right) = leaves.split_at(k);
    if index < k {
        audit_path(left, index, path);
        path.push(root(right));
    } else {
        audit_path(right, index - k, path);
        path.push(root(left));
    }
}

/// Why an inclusion proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The index is not below the tree size.
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange {
        /// The claimed index.
        index: u64,
        /// The claimed size.
        size: u64,
    },
    /// The path has the wrong length for this index and size.
    #[error("the audit path has the wrong length")]
    WrongLength,
    /// The path leads to another root.
    #[error("the audit path leads to another root")]
    RootMismatch,
}

/// Verifies that `leaf` is leaf `proof.index` of the tree of `proof.size`
/// leaves whose root is `root` (RFC 9162, 2.1.3.2).
pub fn verify_inclusion(
    leaf: &TreeHash,
    proof: &InclusionProof,
    root: &TreeHash,
) -> Result<(), ProofError> {
    let (index, size) = (proof.index.0, proof.size.0);
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut f_n = index;
    let mut s_n = size - 1;
    let mut r = *leaf;
    for p in &proof.path {
        if s_n == 0 {
            return Err(ProofError::WrongLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength);
    }
    if r == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<TreeHash> {
        (0..n)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn every_proof_verifies_and_tampering_fails() {
        for n in 1..=33 {
            let ls = leaves(n);
            let r = root(&ls);
            for (i, leaf) in ls.iter().enumerate() {
                let proof = inclusion_proof(&ls, i).unwrap();
                assert_eq!(verify_inclusion(leaf, &proof, &r), Ok(()), "n={n} i={i}");
                let other = leaf_hash(b"other");
                assert!(verify_inclusion(&other, &proof, &r).is_err());
                if n > 1 {
                    let mut wrong = proof.clone();
                    wrong.index = LeafIndex((proof.index.0 + 1) % n as u64);
                    assert!(verify_inclusion(leaf, &wrong, &r).is_err(), "n={n} i={i}");
                    let mut short = proof.clone();
                    short.path.pop();
                    assert!(verify_inclusion(leaf, &short, &r).is_err());
                }
                let mut long = proof.clone();
                long.path.push(other);
                assert!(verify_inclusion(leaf, &long, &r).is_err());
            }
        }
    }

    #[test]
    fn shape_matches_rfc_6962() {
        let ls = leaves(3);
        let expected = node_hash(&node_hash(&ls[0], &ls[1]), &ls[2]);
        assert_eq!(root(&ls), expected);
        assert_eq!(root(&[]), TreeHash(*blake3::hash(b"").as_bytes()));
        assert_eq!(inclusion_proof(&ls, 3), None);
    }
}
