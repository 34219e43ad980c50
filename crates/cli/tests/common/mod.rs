//! Helpers shared by the CLI's integration tests.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A Python with `package` (a pinned PyPI requirement, `name==version`) importable, checked
/// by running `check`, and the `PYTHONPATH` it needs: a venv in `target/tmp/<dir>-venv`, made
/// when missing; where `python3 -m venv` is unavailable (a Debian Python without
/// python3-venv), `pip install --target target/tmp/<dir>-packages`. `KILN_PYTHON` names
/// another interpreter, as for `kiln fetch`. Fails naming the package when neither works
/// (offline).
pub fn python_with(package: &str, check: &str, dir: &str) -> (PathBuf, Option<PathBuf>) {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let system = PathBuf::from(std::env::var("KILN_PYTHON").unwrap_or_else(|_| "python3".into()));
    let has = |p: &Path, path: Option<&Path>| {
        let mut cmd = Command::new(p);
        cmd.args(["-c", check]).stderr(Stdio::null());
        if let Some(dir) = path {
            cmd.env("PYTHONPATH", dir);
        }
        cmd.status().is_ok_and(|s| s.success())
    };
    let venv = tmp.join(format!("{dir}-venv"));
    let in_venv = venv.join("bin").join("python");
    let packages = tmp.join(format!("{dir}-packages"));
    if has(&in_venv, None) {
        return (in_venv, None);
    }
    if has(&system, Some(&packages)) {
        return (system, Some(packages));
    }
    let pip = |python: &Path, extra: &[&OsStr]| {
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(extra)
            .arg(package)
            .status()
            .is_ok_and(|s| s.success())
    };
    let made = Command::new(&system)
        .args(["-m", "venv"])
        .arg(&venv)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if made && pip(&in_venv, &[]) && has(&in_venv, None) {
        return (in_venv, None);
    }
    let target = [OsStr::new("--target"), packages.as_os_str()];
    assert!(
        pip(&system, &target) && has(&system, Some(&packages)),
        "installing {package} from PyPI (into a venv, or with pip --target {}) failed (offline?)",
        packages.display()
    );
    (system, Some(packages))
}
