//! Hugging Face Hub model ids (`org/name` or `org/name@revision`) resolved to a model
//! folder through huggingface_hub's cache, downloading into it when online.
//!
//! The cache is the one transformers and `hf download` use, laid out as
//! huggingface_hub lays it out:
//!
//! ```text
//! $HF_HUB_CACHE (else $HF_HOME/hub, else ~/.cache/huggingface/hub)
//! └── models--org--name/
//!     ├── refs/main                 the commit hash the branch or tag `main` points to
//!     ├── blobs/<etag>              file contents
//!     └── snapshots/<commit hash>/  config.json, model.safetensors, ... (links to blobs)
//! ```
//!
//! A revision is a branch or tag (looked up in `refs/`) or a commit hash (a
//! `snapshots/` folder of that name). A snapshot counts as the model when it holds
//! config.json and a weights file; it is then used without any network access.
//! Otherwise, unless `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) is set, the files a
//! CTC model needs are downloaded from `HF_ENDPOINT` (default https://huggingface.co)
//! with `HF_TOKEN` (else the token file `hf auth login` wrote) by the `hf-hub` crate,
//! which writes the same blobs / snapshots / refs layout. Sharded checkpoints come with
//! every shard their `*.index.json` names.
//!
//! A local folder that exists wins over a Hub id of the same spelling, as in
//! transformers' `from_pretrained`.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::ModelError;
use crate::weights::WEIGHT_FILES;

/// The Hub's default endpoint.
const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Besides the weights: the files of a CTC model folder worth having (the ones a repo
/// lacks are skipped; config.json is required).
const MODEL_FILES: [&str; 6] = [
    "config.json",
    "vocab.json",
    "preprocessor_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
];

/// `org/name` with an optional `@revision` (branch, tag or commit hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubId {
    /// `org/name`.
    pub repo: String,
    /// The revision after `@`, if any (`main` otherwise).
    pub revision: Option<String>,
}

impl HubId {
    /// Parses `org/name[@revision]` under the Hub's naming rules (letters, digits,
    /// `-`, `_`, `.`; no `--` or `..`; not starting or ending with `-` or `.`; at most
    /// 96 characters). Anything else (a path with more parts, `./x/y`, a preset name)
    /// is not a Hub id.
    pub fn parse(spec: &str) -> Option<HubId> {
        let (repo, revision) = match spec.split_once('@') {
            Some((repo, revision)) if !revision.is_empty() => (repo, Some(revision.to_string())),
            Some(_) => return None,
            None => (spec, None),
        };
        let (org, name) = repo.split_once('/')?;
        let valid = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                && !part.starts_with(['-', '.'])
                && !part.ends_with(['-', '.'])
                && !part.contains("--")
                && !part.contains("..")
        };
        (repo.len() <= 96 && valid(org) && valid(name)).then(|| HubId {
            repo: repo.to_string(),
            revision,
        })
    }

    /// The revision to look up: the one given, else `main`.
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }

    /// The repository's folder in the cache: `models--org--name`.
    pub fn cache_folder(&self) -> String {
        format!("models--{}", self.repo.replace('/', "--"))
    }
}

impl std::fmt::Display for HubId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.repo)?;
        match &self.revision {
            Some(revision) => write!(f, "@{revision}"),
            None => Ok(()),
        }
    }
}

/// The environment variables huggingface_hub reads, captured once (tests build one
/// by hand instead of changing the process environment).
#[derive(Debug, Clone, Default)]
pub struct HubEnv {
    /// `HF_HUB_CACHE` (or its old name `HUGGINGFACE_HUB_CACHE`).
    pub hub_cache: Option<PathBuf>,
    /// `HF_HOME`.
    pub hf_home: Option<PathBuf>,
    /// `XDG_CACHE_HOME`, where `HF_HOME` defaults to `huggingface/`.
    pub xdg_cache_home: Option<PathBuf>,
    /// `HOME`.
    pub home: Option<PathBuf>,
    /// `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) is 1, ON, YES or TRUE.
    pub offline: bool,
    /// `HF_TOKEN`.
    pub token: Option<String>,
    /// `HF_TOKEN_PATH`.
    pub token_path: Option<PathBuf>,
    /// `HF_ENDPOINT`.
    pub endpoint: Option<String>,
}

impl HubEnv {
    /// Reads the variables from the process environment (empty values count as unset).
    pub fn from_env() -> HubEnv {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let path = |name: &str| var(name).map(|v| expand_home(&v));
        let truthy = |name: &str| {
            var(name)
                .is_some_and(|v| ["1", "ON", "YES", "TRUE"].contains(&v.to_uppercase().as_str()))
        };
        HubEnv {
            hub_cache: path("HF_HUB_CACHE").or_else(|| path("HUGGINGFACE_HUB_CACHE")),
            hf_home: path("HF_HOME"),
            xdg_cache_home: path("XDG_CACHE_HOME"),
            home: var("HOME").map(PathBuf::from),
            offline: truthy("HF_HUB_OFFLINE") || truthy("TRANSFORMERS_OFFLINE"),
            token: var("HF_TOKEN"),
            token_path: path("HF_TOKEN_PATH"),
            endpoint: var("HF_ENDPOINT"),
        }
    }

    /// `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
    fn hf_home(&self) -> Option<(PathBuf, &'static str)> {
        if let Some(home) = &self.hf_home {
            return Some((home.clone(), "HF_HOME"));
        }
        if let Some(xdg) = &self.xdg_cache_home {
            return Some((xdg.join("huggingface"), "XDG_CACHE_HOME"));
        }
        let home = self.home.as_ref()?;
        Some((home.join(".cache/huggingface"), "the default"))
    }

    /// The hub cache and where it came from: `HF_HUB_CACHE`, else `HF_HOME/hub`
    /// (`HF_HOME` itself defaulting to `~/.cache/huggingface`).
    pub fn cache_dir(&self) -> Option<(PathBuf, String)> {
        if let Some(cache) = &self.hub_cache {
            return Some((cache.clone(), "HF_HUB_CACHE".into()));
        }
        let (home, from) = self.hf_home()?;
        Some((home.join("hub"), format!("{from}: HF_HOME/hub")))
    }

    /// `HF_TOKEN`, else the token file (`HF_TOKEN_PATH`, else `HF_HOME/token`).
    fn token(&self) -> Option<String> {
        if let Some(token) = &self.token {
            return Some(token.clone());
        }
        let path = match &self.token_path {
            Some(path) => path.clone(),
            None => self.hf_home()?.0.join("token"),
        };
        let token = std::fs::read_to_string(path).ok()?;
        Some(token.trim().to_string()).filter(|t| !t.is_empty())
    }
}

/// `~` or `~/...` with the home folder, as huggingface_hub's `expanduser`.
fn expand_home(value: &str) -> PathBuf {
    match (value.strip_prefix('~'), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            PathBuf::from(home).join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(value),
    }
}

/// What `--model` names in `eval` and `transcribe`: an existing folder as is, a Hub id
/// resolved through the cache ([`resolve`]), any other path as is (loading it then
/// says what is missing).
pub fn resolve_folder(spec: &Path) -> Result<PathBuf, ModelError> {
    if spec.is_dir() {
        return Ok(spec.to_path_buf());
    }
    match spec.to_str().and_then(HubId::parse) {
        Some(id) => resolve(&id, &HubEnv::from_env()),
        None => Ok(spec.to_path_buf()),
    }
}

/// The snapshot folder of `id`: from the cache, else downloaded into it (unless
/// offline). The error lists every place looked at.
pub fn resolve(id: &HubId, env: &HubEnv) -> Result<PathBuf, ModelError> {
    let mut looked = vec![format!("local folder {}: not found", id.repo)];
    let Some((cache, from)) = env.cache_dir() else {
        looked.push("the Hugging Face cache: HF_HUB_CACHE, HF_HOME and HOME are all unset".into());
        return Err(not_found(id, looked, "no cache folder to look in", env));
    };
    looked.push(format!("cache {} (from {from}):", cache.display()));
    let found = match find_in_cache(&cache, id) {
        Ok(snapshot) => return Ok(snapshot),
        Err(lines) => lines,
    };
    looked.extend(found.into_iter().map(|line| format!("  {line}")));
    if env.offline {
        return Err(not_found(
            id,
            looked,
            "not in the cache, and HF_HUB_OFFLINE is set, so nothing was downloaded",
            env,
        ));
    }
    download(id, env, &cache).map_err(|reason| {
        let endpoint = env.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
        looked.push(format!("{endpoint}/{}: {reason}", id.repo));
        not_found(
            id,
            looked,
            "not in the cache, and downloading it failed",
            env,
        )
    })
}

/// huggingface_hub's lookup: `refs/<revision>` names the commit whose snapshot holds
/// the files; a revision that is not in `refs/` may be a commit hash itself. On a miss,
/// one line per path looked at.
pub fn find_in_cache(cache: &Path, id: &HubId) -> Result<PathBuf, Vec<String>> {
    let repo = cache.join(id.cache_folder());
    if !repo.is_dir() {
        return Err(vec![format!("{}: not found", repo.display())]);
    }
    let revision = id.revision();
    let reference = repo.join("refs").join(revision);
    let mut lines = Vec::new();
    let commit = match std::fs::read_to_string(&reference) {
        Ok(hash) => hash.trim().to_string(),
        Err(_) => {
            lines.push(format!("{}: not found", reference.display()));
            revision.to_string()
        }
    };
    let snapshot = repo.join("snapshots").join(&commit);
    if !snapshot.is_dir() {
        lines.push(format!("{}: not found", snapshot.display()));
        return Err(lines);
    }
    let has = |name: &str| snapshot.join(name).is_file();
    if !has("config.json") {
        lines.push(format!("{}: no config.json", snapshot.display()));
        return Err(lines);
    }
    if !WEIGHT_FILES.iter().any(|name| has(name)) {
        lines.push(format!(
            "{}: no weights ({})",
            snapshot.display(),
            WEIGHT_FILES.join(", ")
        ));
        return Err(lines);
    }
    Ok(snapshot)
}

fn not_found(id: &HubId, looked: Vec<String>, why: &str, env: &HubEnv) -> ModelError {
    let hint = if env.offline {
        format!(
            "download it where the network is reachable (`hf download {}`, or a run without \
             HF_HUB_OFFLINE), point HF_HUB_CACHE or HF_HOME at a cache that holds it, or pass a \
             local model folder",
            id.repo
        )
    } else {
        "check the id and revision on the Hub, set HF_TOKEN for a gated or private model, \
         or pass a local model folder"
            .to_string()
    };
    ModelError::HubModelNotFound {
        id: id.to_string(),
        why: why.to_string(),
        looked_up: looked,
        hint,
    }
}

/// Downloads config.json, the vocabulary and processor files the repo has, and its
/// weights (every shard of a sharded checkpoint) into `cache`; returns the snapshot.
fn download(id: &HubId, env: &HubEnv, cache: &Path) -> Result<PathBuf, String> {
    let mut builder = ApiBuilder::from_cache(Cache::new(cache.to_path_buf()))
        .with_progress(true)
        .with_token(env.token());
    if let Some(endpoint) = &env.endpoint {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
    }
    let api = builder.build().map_err(|e| e.to_string())?;
    let repo = api.repo(Repo::with_revision(
        id.repo.clone(),
        RepoType::Model,
        id.revision().to_string(),
    ));
    let info = repo.info().map_err(|e| e.to_string())?;
    let listed: BTreeSet<&str> = info.siblings.iter().map(|s| s.rfilename.as_str()).collect();
    if !listed.contains("config.json") {
        return Err("the repository has no config.json (not a transformers model)".into());
    }
    let snapshot = cache
        .join(id.cache_folder())
        .join("snapshots")
        .join(&info.sha);
    let fetch = |name: &str| -> Result<PathBuf, String> {
        let local = snapshot.join(name);
        if local.is_file() {
            return Ok(local);
        }
        repo.download(name).map_err(|e| format!("{name}: {e}"))
    };
    for name in MODEL_FILES.iter().filter(|name| listed.contains(*name)) {
        fetch(name)?;
    }
    for name in weight_files(&listed, &fetch)? {
        fetch(&name)?;
    }
    Ok(snapshot)
}

/// The weights to download: the first of [`WEIGHT_FILES`] the repo has and, for an
/// index, the shards it names.
fn weight_files(
    listed: &BTreeSet<&str>,
    fetch: &dyn Fn(&str) -> Result<PathBuf, String>,
) -> Result<Vec<String>, String> {
    let Some(name) = WEIGHT_FILES.iter().find(|name| listed.contains(*name)) else {
        return Err(format!(
            "the repository has no weights ({})",
            WEIGHT_FILES.join(", ")
        ));
    };
    if !name.ends_with(".index.json") {
        return Ok(vec![name.to_string()]);
    }
    let index = fetch(name)?;
    shards_of_index(&index)
}

/// The distinct shard files a `*.index.json`'s `weight_map` names, in order.
fn shards_of_index(index: &Path) -> Result<Vec<String>, String> {
    let bad = |why: String| format!("{}: {why}", index.display());
    let text = std::fs::read_to_string(index).map_err(|e| bad(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no weight_map object".into()))?;
    let mut shards = BTreeSet::new();
    for file in map.values() {
        let file = file
            .as_str()
            .ok_or_else(|| bad("a weight_map value is not a file name".into()))?;
        shards.insert(file.to_string());
    }
    Ok(shards.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_and_what_is_not_one() {
        let id = HubId::parse("facebook/wav2vec2-base-960h").unwrap();
        assert_eq!(id.repo, "facebook/wav2vec2-base-960h");
        assert_eq!(id.revision(), "main");
        assert_eq!(id.cache_folder(), "models--facebook--wav2vec2-base-960h");
        let id = HubId::parse("org/name@refs/pr/3").unwrap();
        assert_eq!(id.revision(), "refs/pr/3");
        assert_eq!(id.to_string(), "org/name@refs/pr/3");
        for not in [
            "tiny",
            "./x/y",
            "a/b/c",
            "/abs",
            "org/",
            "org/name@",
            "org/-x",
            "org/a--b",
            "org/a..b",
            "run/best.json.",
            "o rg/name",
        ] {
            assert_eq!(HubId::parse(not), None, "{not}");
        }
    }

    #[test]
    fn cache_dir_follows_huggingface_hub_precedence() {
        let mut env = HubEnv {
            home: Some("/home/u".into()),
            ..HubEnv::default()
        };
        assert_eq!(
            env.cache_dir().unwrap().0,
            PathBuf::from("/home/u/.cache/huggingface/hub")
        );
        env.xdg_cache_home = Some("/xdg".into());
        assert_eq!(
            env.cache_dir().unwrap().0,
            PathBuf::from("/xdg/huggingface/hub")
        );
        env.hf_home = Some("/hf".into());
        assert_eq!(env.cache_dir().unwrap().0, PathBuf::from("/hf/hub"));
        env.hub_cache = Some("/cache".into());
        assert_eq!(env.cache_dir().unwrap().0, PathBuf::from("/cache"));
        assert!(HubEnv::default().cache_dir().is_none());
    }

    #[test]
    fn a_revision_resolves_through_refs_or_as_a_commit_hash() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--org--name");
        let hash = "0123456789abcdef0123456789abcdef01234567";
        let snapshot = repo.join("snapshots").join(hash);
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::create_dir_all(repo.join("refs/refs/pr")).unwrap();
        std::fs::write(repo.join("refs/main"), hash).unwrap();
        std::fs::write(repo.join("refs/refs/pr/1"), format!("{hash}\n")).unwrap();
        let id = |s: &str| HubId::parse(s).unwrap();
        // config.json alone is not a model.
        std::fs::write(snapshot.join("config.json"), "{}").unwrap();
        let miss = find_in_cache(cache.path(), &id("org/name")).unwrap_err();
        assert!(miss[0].ends_with(&format!("{hash}: no weights ({})", WEIGHT_FILES.join(", "))));
        std::fs::write(snapshot.join("model.safetensors"), "").unwrap();
        let by_hash = format!("org/name@{hash}");
        for spec in ["org/name", "org/name@refs/pr/1", by_hash.as_str()] {
            assert_eq!(find_in_cache(cache.path(), &id(spec)), Ok(snapshot.clone()));
        }
        let miss = find_in_cache(cache.path(), &id("org/name@v2")).unwrap_err();
        assert_eq!(
            miss,
            [
                format!("{}: not found", repo.join("refs/v2").display()),
                format!("{}: not found", repo.join("snapshots/v2").display()),
            ]
        );
        let miss = find_in_cache(cache.path(), &id("org/other")).unwrap_err();
        assert_eq!(
            miss,
            [format!(
                "{}: not found",
                cache.path().join("models--org--other").display()
            )]
        );
    }

    #[test]
    fn offline_misses_list_the_places_looked_at_and_never_download() {
        let cache = tempfile::tempdir().unwrap();
        let env = HubEnv {
            hub_cache: Some(cache.path().to_path_buf()),
            offline: true,
            // An endpoint nothing listens on: reaching for it would fail differently.
            endpoint: Some("http://127.0.0.1:9".into()),
            ..HubEnv::default()
        };
        let err = resolve(&HubId::parse("org/absent").unwrap(), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("org/absent"), "{err}");
        assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
        assert!(err.contains("local folder org/absent: not found"), "{err}");
        assert!(
            err.contains(&format!(
                "cache {} (from HF_HUB_CACHE)",
                cache.path().display()
            )),
            "{err}"
        );
        assert!(err.contains("models--org--absent: not found"), "{err}");
        assert!(!err.contains("127.0.0.1"), "{err}");
        assert!(!cache.path().join("models--org--absent").exists());
    }

    #[test]
    fn shards_of_an_index_are_listed_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("model.safetensors.index.json");
        std::fs::write(
            &index,
            r#"{"metadata": {}, "weight_map": {"a": "model-00002-of-00002.safetensors",
                "b": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}}"#,
        )
        .unwrap();
        assert_eq!(
            shards_of_index(&index).unwrap(),
            [
                "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors"
            ]
        );
        std::fs::write(&index, "{}").unwrap();
        assert!(shards_of_index(&index)
            .unwrap_err()
            .contains("no weight_map"));
    }
}
