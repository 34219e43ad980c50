//! Where datasets live: an explicit `--data-dir`, else the `KILN_DATA_DIR` environment variable,
//! else a per-user cache folder (`$XDG_CACHE_HOME/kiln/data`, `~/.cache/kiln/data`).

use std::path::PathBuf;

/// Environment variable naming the data directory.
pub const ENV: &str = "KILN_DATA_DIR";

/// Resolves the data directory from an explicit flag, the environment, or the user cache.
pub fn resolve(flag: Option<PathBuf>) -> PathBuf {
    if let Some(dir) = flag {
        return dir;
    }
    if let Some(dir) = std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    user_cache().join("data")
}

/// Kiln's per-user cache folder: `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln` (datasets
/// default to its `data/`, fetched models to its `models/`).
pub fn user_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("kiln")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_flag_wins() {
        assert_eq!(resolve(Some(PathBuf::from("/x"))), PathBuf::from("/x"));
    }
}
