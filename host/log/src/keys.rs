//! The log's Ed25519 key pair, in the C2SP signed-note key encodings:
//! `PATH.key` holds `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>`
//! (mode 0600), `PATH.pub` holds `<name>+<key id>+<base64(0x01 || public key)>`.
//! The key id is the first four bytes of
//! `SHA-256(name || "\n" || 0x01 || public key)`, in hex.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::Digest as _;

/// The signature algorithm byte of Ed25519 in C2SP signed notes.
pub const ALG_ED25519: u8 = 0x01;

/// The prefix of an encoded private key.
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";

/// Errors reading or writing key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read or written.
    #[error("cannot access key file `{path}`")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A key file does not hold a key in the expected encoding.
    #[error("key file `{path}` is malformed: {detail}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A key text does not hold a key in the expected encoding.
    #[error("malformed key: {0}")]
    Parse(String),
}

/// The private key file of the store at `db`: `db` with `.key` appended.
pub fn private_key_path(db: &Path) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push(".key");
    PathBuf::from(path)
}

/// The public key file of the store at `db`: `db` with `.pub` appended.
pub fn public_key_path(db: &Path) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push(".pub");
    PathBuf::from(path)
}

/// The key id of an Ed25519 key with this name.
pub fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut hasher = sha2::Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ALG_ED25519]);
    hasher.update(public.as_bytes());
    let digest = hasher.finalize();
    let mut id = [0u8; 4];
    for (slot, byte) in id.iter_mut().zip(digest.iter()) {
        *slot = *byte;
    }
    id
}

/// Whether `name` can name a key: non-empty, no whitespace, no `+`.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '+')
}

/// The private half: signs checkpoints. Its name is the log's origin.
pub struct Signer {
    name: String,
    key: SigningKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Signer, KeyError> {
        if !valid_key_name(name) {
            return Err(KeyError::Parse(format!("`{name}` cannot name a key")));
        }
        Ok(Signer {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// A fresh random key pair, named `chaperone/<16 hex digits of BLAKE3(public key)>`.
    pub fn generate() -> Signer {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let fingerprint = blake3::hash(key.verifying_key().as_bytes());
        let name = format!(
            "chaperone/{}",
            hex::encode(fingerprint.as_bytes().get(..8).unwrap_or_default())
        );
        Signer { name, key }
    }

    /// The key name (and log origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public half.
    pub fn verifier(&self) -> Verifier {
        Verifier::new(&self.name, self.key.verifying_key())
    }

    /// Signs a message.
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.key.sign(message)
    }

    /// `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>`.
    pub fn encode(&self) -> String {
        let id = key_id(&self.name, &self.key.verifying_key());
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{PRIVATE_PREFIX}{}+{}+{}",
            self.name,
            hex::encode(id),
            BASE64.encode(&raw)
        )
    }

    /// Parses [`Signer::encode`]'s text (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Signer, KeyError> {
        let rest = text
            .trim()
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or_else(|| KeyError::Parse("not a private key".into()))?;
        let (name, id, raw) = split_key(rest)?;
        let seed: [u8; 32] = raw
            .try_into()
            .map_err(|_| KeyError::Parse("the seed is not 32 bytes".into()))?;
        let signer = Signer::from_seed(&name, seed)?;
        if key_id(&name, &signer.key.verifying_key()) != id {
            return Err(KeyError::Parse("the key id does not match the key".into()));
        }
        Ok(signer)
    }
}

/// The public half: verifies checkpoints.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl Verifier {
    fn new(name: &str, key: VerifyingKey) -> Verifier {
        Verifier {
            name: name.to_owned(),
            id: key_id(name, &key),
            key,
        }
    }

    /// The key name (the log's origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id.
    pub fn id(&self) -> [u8; 4] {
        self.id
    }

    /// Verifies a signature over `message` (strict Ed25519 verification).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        self.key.verify_strict(message, signature).is_ok()
    }

    /// `<name>+<key id>+<base64(0x01 || public key)>`.
    pub fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            BASE64.encode(&raw)
        )
    }

    /// Parses [`Verifier::encode`]'s text (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Verifier, KeyError> {
        let (name, id, raw) = split_key(text.trim())?;
        let bytes: [u8; 32] = raw
            .try_into()
            .map_err(|_| KeyError::Parse("the public key is not 32 bytes".into()))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| KeyError::Parse("not an Ed25519 public key".into()))?;
        if !valid_key_name(&name) {
            return Err(KeyError::Parse(format!("`{name}` cannot name a key")));
        }
        let verifier = Verifier::new(&name, key);
        if verifier.id != id {
            return Err(KeyError::Parse("the key id does not match the key".into()));
        }
        Ok(verifier)
    }
}

/// Splits `<name>+<hex id>+<base64(0x01 || key)>` into name, id and key bytes.
fn split_key(text: &str) -> Result<(String, [u8; 4], Vec<u8>), KeyError> {
    // Names cannot hold `+`; base64 can.
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(KeyError::Parse("expected `<name>+<key id>+<key>`".into()));
    };
    let mut id_bytes = [0u8; 4];
    hex::decode_to_slice(id, &mut id_bytes)
        .map_err(|_| KeyError::Parse("the key id is not 8 hex digits".into()))?;
    let raw = BASE64
        .decode(key)
        .map_err(|_| KeyError::Parse("the key is not base64".into()))?;
    let Some((&alg, key)) = raw.split_first() else {
        return Err(KeyError::Parse("the key is empty".into()));
    };
    if alg != ALG_ED25519 {
        return Err(KeyError::Parse(format!(
            "unsupported key algorithm {alg:#04x}"
        )));
    }
    Ok((name.to_owned(), id_bytes, key.to_vec()))
}

/// Reads the private key of the store at `db`, if its file exists.
pub fn load_signer(db: &Path) -> Result<Option<Signer>, KeyError> {
    let path = private_key_path(db);
    match std::fs::read_to_string(&path) {
        Ok(text) => Signer::parse(&text)
            .map(Some)
            .map_err(|e| malformed(&path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KeyError::Io { path, source }),
    }
}

/// Reads a public key file.
pub fn load_verifier(path: &Path) -> Result<Verifier, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })?;
    Verifier::parse(&text).map_err(|e| malformed(path, e))
}

fn malformed(path: &Path, error: KeyError) -> KeyError {
    let detail = match error {
        KeyError::Parse(detail) => detail,
        other => other.to_string(),
    };
    KeyError::Malformed {
        path: path.to_owned(),
        detail,
    }
}

/// Loads the private key of the store at `db`, creating a fresh key pair
/// (`db.key` with mode 0600, `db.pub`) if there is none.
pub fn load_or_create(db: &Path) -> Result<Signer, KeyError> {
    if let Some(signer) = load_signer(db)? {
        if !public_key_path(db).exists() {
            write_public(db, &signer)?;
        }
        return Ok(signer);
    }
    let signer = Signer::generate();
    let path = private_key_path(db);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let io = |source| KeyError::Io {
        path: path.clone(),
        source,
    };
    let mut file = options.open(&path).map_err(io)?;
    file.write_all(format!("{}\n", signer.encode()).as_bytes())
        .map_err(io)?;
    file.sync_all().map_err(io)?;
    write_public(db, &signer)?;
    Ok(signer)
}

fn write_public(db: &Path, signer: &Signer) -> Result<(), KeyError> {
    let path = public_key_path(db);
    std::fs::write(&path, format!("{}\n", signer.verifier().encode()))
        .map_err(|source| KeyError::Io { path, source })
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip() {
        let signer = Signer::from_seed("example.com/log", [7; 32]).unwrap();
        let again = Signer::parse(&signer.encode()).unwrap();
        assert_eq!(again.encode(), signer.encode());
        let verifier = Verifier::parse(&signer.verifier().encode()).unwrap();
        assert_eq!(verifier, signer.verifier());
        let sig = signer.sign(b"hello");
        assert!(verifier.verify(b"hello", &sig));
        assert!(!verifier.verify(b"hellp", &sig));
    }

    #[test]
    fn rejects_mismatched_id() {
        let signer = Signer::from_seed("a", [7; 32]).unwrap();
        let text = signer.verifier().encode().replacen("a+", "b+", 1);
        assert!(Verifier::parse(&text).is_err());
        assert!(Verifier::parse("nonsense").is_err());
        assert!(Signer::from_seed("a b", [0; 32]).is_err());
    }

    #[test]
    fn creates_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let signer = load_or_create(&db).unwrap();
        let again = load_or_create(&db).unwrap();
        assert_eq!(signer.encode(), again.encode());
        let verifier = load_verifier(&public_key_path(&db)).unwrap();
        assert_eq!(verifier, signer.verifier());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(private_key_path(&db))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
