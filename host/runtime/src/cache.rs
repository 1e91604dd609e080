//! Compiled modules kept on disk, so that a restart or a second process
//! does not compile again what this host compiled before.
//!
//! An entry is what wasmtime's `serialize` made of a module this host
//! compiled, named by the module's digest, what it was compiled as (a core
//! module or a component) and a hash of the engine's configuration, and
//! prefixed with a BLAKE3 hash of those and of the artifact. On load, an
//! entry is used only if its hash matches (a torn or altered file, or one
//! renamed from another module, is recompiled and rewritten), and
//! wasmtime itself refuses an artifact from another version or
//! configuration. Loading an artifact runs native code the host compiled:
//! the cache directory must be as protected as the host's own binary
//! (whoever can write there can make the host run their code; the store's
//! directory is the default place, see `chaperone serve`).

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;

use crate::ModuleDigest;

/// What the bytes of an entry begin with.
const MAGIC: &[u8; 16] = b"chaperone-cwasm1";

/// Compiled artifacts in a directory.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

/// What a module was compiled as.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Core,
    Component,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Core => "core",
            Kind::Component => "component",
        }
    }
}

impl CompileCache {
    /// A cache in `dir`, created if missing.
    pub fn open(dir: impl AsRef<Path>) -> std::io::Result<CompileCache> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        Ok(CompileCache { dir })
    }

    /// Where the entries are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn name(engine: &Engine, digest: &ModuleDigest, kind: Kind) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        format!("{digest}.{}.{:016x}.cwasm", kind.name(), hasher.finish())
    }

    fn seal(name: &str, artifact: &[u8]) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new();
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        hasher.update(artifact);
        hasher.finalize()
    }

    /// The artifact kept for this module, if there is a sound one.
    pub(crate) fn get(
        &self,
        engine: &Engine,
        digest: &ModuleDigest,
        kind: Kind,
    ) -> Option<Vec<u8>> {
        let name = CompileCache::name(engine, digest, kind);
        let mut bytes = std::fs::read(self.dir.join(&name)).ok()?;
        let header = MAGIC.len() + blake3::OUT_LEN;
        let (head, artifact) = bytes.split_at_checked(header)?;
        let (magic, seal) = head.split_at(MAGIC.len());
        let sound = magic == MAGIC
            && <[u8; blake3::OUT_LEN]>::try_from(seal)
                .is_ok_and(|seal| blake3::Hash::from(seal) == CompileCache::seal(&name, artifact));
        if !sound {
            tracing::warn!(file = %self.dir.join(&name).display(), "a compiled module in the cache is damaged; compiling again");
            return None;
        }
        bytes.drain(..header);
        Some(bytes)
    }

    /// Keeps an artifact (written to a temporary file, then renamed, so a
    /// reader never sees half of one). Failing to is not an error: the
    /// module is compiled again next time.
    pub(crate) fn put(&self, engine: &Engine, digest: &ModuleDigest, kind: Kind, artifact: &[u8]) {
        let name = CompileCache::name(engine, digest, kind);
        let written = (|| -> std::io::Result<()> {
            let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
            file.write_all(MAGIC)?;
            file.write_all(CompileCache::seal(&name, artifact).as_bytes())?;
            file.write_all(artifact)?;
            file.as_file().sync_all()?;
            file.persist(self.dir.join(&name)).map_err(|e| e.error)?;
            Ok(())
        })();
        if let Err(error) = written {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot keep a compiled module");
        }
    }
}
