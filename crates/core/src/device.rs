//! Device selection from a string.
//!
//! burn 0.22 picks its backend at run time through [`Device`]; Kiln maps user-facing names onto
//! it. The default CPU device is burn's `flex` backend (pure Rust, SIMD, multi-threaded).
//! `ndarray` (deprecated upstream) stays available for comparison when the `ndarray` feature is
//! on (it is by default); `wgpu` needs the `wgpu` cargo feature.
//!
//! ```
//! let device = kiln_core::parse_device("cpu").unwrap();
//! assert_eq!(kiln_core::DeviceSpec::parse("flex").unwrap(), kiln_core::DeviceSpec::Flex);
//! assert!(kiln_core::parse_device("tpu").is_err());
//! # let _ = device;
//! ```

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::{Error, Result};

/// A device Kiln can run on, parsed from a string.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// burn's `flex` CPU backend (names: `cpu`, `flex`). The default.
    #[default]
    Flex,
    /// burn's deprecated NdArray CPU backend (name: `ndarray`).
    NdArray,
    /// A GPU through wgpu (names: `wgpu` for the best adapter, `wgpu:N` for discrete GPU N).
    Wgpu(Option<usize>),
}

/// The device names this build accepts, in order of preference.
pub fn available_devices() -> Vec<&'static str> {
    let mut names = vec!["cpu", "flex"];
    if cfg!(feature = "ndarray") {
        names.push("ndarray");
    }
    if cfg!(feature = "wgpu") {
        names.push("wgpu");
        names.push("wgpu:N");
    }
    names
}

fn unknown(name: &str, reason: impl Into<String>) -> Error {
    Error::UnknownDevice {
        name: name.to_string(),
        reason: reason.into(),
        available: available_devices().join(", "),
    }
}

impl DeviceSpec {
    /// Parses a device name (case-insensitive, surrounding spaces ignored).
    pub fn parse(name: &str) -> Result<Self> {
        let lower = name.trim().to_ascii_lowercase();
        let spec = match lower.as_str() {
            "cpu" | "flex" => DeviceSpec::Flex,
            "ndarray" => DeviceSpec::NdArray,
            "wgpu" | "gpu" => DeviceSpec::Wgpu(None),
            other => match other.strip_prefix("wgpu:") {
                Some(index) => {
                    let index = index.parse::<usize>().map_err(|_| {
                        unknown(
                            name,
                            format!("`{index}` is not a GPU index (expected wgpu:0, wgpu:1, ...)"),
                        )
                    })?;
                    DeviceSpec::Wgpu(Some(index))
                }
                None => return Err(unknown(name, "not a device name")),
            },
        };
        spec.check_compiled(name)?;
        Ok(spec)
    }

    fn check_compiled(&self, name: &str) -> Result<()> {
        match self {
            DeviceSpec::Flex => Ok(()),
            DeviceSpec::NdArray if cfg!(feature = "ndarray") => Ok(()),
            DeviceSpec::NdArray => Err(unknown(
                name,
                "this build has no ndarray backend (enable the `ndarray` feature of kiln-core)",
            )),
            DeviceSpec::Wgpu(_) if cfg!(feature = "wgpu") => Ok(()),
            DeviceSpec::Wgpu(_) => Err(unknown(
                name,
                "this build has no GPU backend (rebuild with the `wgpu` feature)",
            )),
        }
    }

    /// The burn device, without autodiff (for inference).
    pub fn device(&self) -> Device {
        match self {
            DeviceSpec::Flex => Device::flex(),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            DeviceSpec::NdArray => Device::ndarray(),
            #[cfg(feature = "wgpu")]
            DeviceSpec::Wgpu(index) => Device::wgpu(match index {
                None => burn::tensor::DeviceKind::DefaultDevice,
                Some(i) => burn::tensor::DeviceKind::DiscreteGpu(*i),
            }),
            // `parse` rejects backends this build lacks; a hand-built spec falls back to flex.
            #[allow(unreachable_patterns)]
            _ => Device::flex(),
        }
    }

    /// The burn device with autodiff switched on (for training).
    pub fn autodiff_device(&self) -> Device {
        self.device().autodiff()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Flex => f.write_str("cpu"),
            DeviceSpec::NdArray => f.write_str("ndarray"),
            DeviceSpec::Wgpu(None) => f.write_str("wgpu"),
            DeviceSpec::Wgpu(Some(i)) => write!(f, "wgpu:{i}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        DeviceSpec::parse(s)
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        DeviceSpec::parse(&s)
    }
}

impl From<DeviceSpec> for String {
    fn from(spec: DeviceSpec) -> String {
        spec.to_string()
    }
}

/// Parses a device name and returns the burn device (without autodiff).
pub fn parse_device(name: &str) -> Result<Device> {
    Ok(DeviceSpec::parse(name)?.device())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_specs() {
        assert_eq!(DeviceSpec::parse("cpu").unwrap(), DeviceSpec::Flex);
        assert_eq!(DeviceSpec::parse(" FLEX ").unwrap(), DeviceSpec::Flex);
        #[cfg(feature = "ndarray")]
        assert_eq!(DeviceSpec::parse("ndarray").unwrap(), DeviceSpec::NdArray);
        assert_eq!(DeviceSpec::parse("cpu").unwrap().to_string(), "cpu");
    }

    #[test]
    fn unknown_device_lists_available_ones() {
        let err = DeviceSpec::parse("tpu").unwrap_err().to_string();
        assert!(err.contains("unknown device `tpu`"), "{err}");
        assert!(err.contains("cpu, flex"), "{err}");
    }

    #[test]
    fn bad_gpu_index_is_named() {
        let err = DeviceSpec::parse("wgpu:x").unwrap_err().to_string();
        assert!(err.contains("`x` is not a GPU index"), "{err}");
    }

    #[cfg(not(feature = "wgpu"))]
    #[test]
    fn uncompiled_wgpu_is_a_clear_error() {
        let err = DeviceSpec::parse("wgpu:1").unwrap_err().to_string();
        assert!(err.contains("rebuild with the `wgpu` feature"), "{err}");
    }

    #[test]
    fn serde_round_trip() {
        let spec: DeviceSpec = serde_json::from_str("\"flex\"").unwrap();
        assert_eq!(spec, DeviceSpec::Flex);
        assert_eq!(serde_json::to_string(&spec).unwrap(), "\"cpu\"");
        assert!(serde_json::from_str::<DeviceSpec>("\"abacus\"").is_err());
    }

    #[test]
    fn autodiff_device_is_autodiff() {
        assert!(DeviceSpec::Flex.autodiff_device().is_autodiff());
        assert!(!DeviceSpec::Flex.device().is_autodiff());
    }
}
